//! Bundles of the example experiments: snapshots of every fragment, byte
//! identity across runs, and the refusals.

use std::path::Path;

fn compile(path: &str) -> mx_compiler::Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join(path)).expect("read model");
    mx_compiler::compile(path, &text, &mx_compiler::Options::default())
}

fn realize(model: &str, facility: &str) -> mx_xir::Realization {
    let exp = compile(model).xir.expect("experiment");
    let fac = compile(facility).facility.expect("facility");
    mx_realizer::realize(&exp, &fac, &Default::default(), &Default::default())
        .expect("realizes")
        .realization
}

#[test]
fn local_example_bundles() {
    let real = realize("examples/local.mx", "examples/facilities/local.mx");
    let bundles = mx_materializer::materialize(&real).expect("materializes");
    assert_eq!(bundles.len(), 2);
    for b in &bundles {
        let text: String = b.fragments.iter().map(mx_materializer::to_json).collect();
        insta::assert_snapshot!(format!("local-{}", b.host), text);
    }
    // Every kind of local link is there.
    let kinds: std::collections::BTreeSet<&str> = bundles
        .iter()
        .flat_map(|b| &b.fragments)
        .map(|f| f.spec.kind())
        .collect();
    for k in [
        "netns",
        "vtep",
        "tap",
        "bridge",
        "xdp_pair",
        "vm",
        "emulation",
    ] {
        assert!(kinds.contains(k), "no {k} fragment: {kinds:?}");
    }
}

#[test]
fn bundles_are_byte_identical() {
    let real = realize("examples/local.mx", "examples/facilities/local.mx");
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    mx_materializer::write(&a, &mx_materializer::materialize(&real).unwrap()).unwrap();
    let again = realize("examples/local.mx", "examples/facilities/local.mx");
    mx_materializer::write(&b, &mx_materializer::materialize(&again).unwrap()).unwrap();
    let mut files = 0;
    for host in ["ns0", "ns1"] {
        for e in std::fs::read_dir(a.join(host)).unwrap() {
            let e = e.unwrap();
            let other = std::fs::read(b.join(host).join(e.file_name())).unwrap();
            assert_eq!(std::fs::read(e.path()).unwrap(), other, "{:?}", e.path());
            files += 1;
        }
    }
    assert!(files > 10);
}

#[test]
fn experiments_get_distinct_devices_and_macs() {
    let exp = compile("examples/local.mx").xir.expect("experiment");
    let fac = compile("examples/facilities/local.mx")
        .facility
        .expect("facility");
    let one = mx_realizer::realize(&exp, &fac, &Default::default(), &Default::default())
        .unwrap()
        .realization;
    // A second experiment whose name would give it the same tag (here: the
    // same name) gets another from the table, and with it other devices.
    let mut usage = mx_realizer::Usage::default();
    usage.tags.insert(one.tag);
    let two = mx_realizer::realize(&exp, &fac, &usage, &Default::default())
        .unwrap()
        .realization;
    assert_ne!(one.tag, two.tag);
    let (a, b) = (
        mx_materializer::materialize(&one).unwrap(),
        mx_materializer::materialize(&two).unwrap(),
    );
    let devices = |bs: &[mx_materializer::Bundle]| -> std::collections::BTreeSet<String> {
        bs.iter()
            .flat_map(|b| &b.fragments)
            .flat_map(|f| match &f.spec {
                mx_xir::Spec::Tap { device, .. }
                | mx_xir::Spec::Bridge { device, .. }
                | mx_xir::Spec::Vtep { device, .. } => vec![device.to_string()],
                mx_xir::Spec::Vm(vm) => vm.nics.iter().map(|n| n.mac.to_string()).collect(),
                _ => Vec::new(),
            })
            .collect()
    };
    assert!(devices(&a).is_disjoint(&devices(&b)));
    assert!(devices(&a).len() > 10);
}

#[test]
fn vxlan_needs_underlay_addresses() {
    let mut real = realize("examples/local.mx", "examples/facilities/local.mx");
    for h in &mut real.hosts {
        h.underlay = None;
        h.netns = false;
    }
    let err = mx_materializer::materialize(&real).unwrap_err();
    assert_eq!(err.code, "E0401");
    assert!(err.message.contains("underlay"), "{}", err.message);
}

#[test]
fn clock_below_the_hosts_gives_a_cpu_share() {
    let mut real = realize("examples/local.mx", "examples/facilities/local.mx");
    real.hosts[0].clock = Some(2_600_000_000);
    real.nodes[0].profile.clock = Some(2_200_000_000);
    let bundles = mx_materializer::materialize(&real).unwrap();
    let vm = bundles
        .iter()
        .flat_map(|b| &b.fragments)
        .find_map(|f| match &f.spec {
            mx_xir::Spec::Vm(v) if v.name == real.nodes[0].node => Some(v.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(vm.cpu_share, Some(0.8462));
}
