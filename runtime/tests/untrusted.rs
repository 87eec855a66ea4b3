//! Bundles, state directories and names are untrusted input to a runtime
//! that runs as root: each crafted input here must be refused before
//! anything on the machine is touched (issue 12's findings, one test each).

use std::path::Path;

use mx_runtime::Runtime;
use serde_json::Value;
use sha2::Digest;

mod common;
use common::bundles;

fn name(s: &str) -> mx_xir::Name {
    s.parse().unwrap()
}

fn runtime(root: &Path) -> Runtime {
    Runtime {
        root: root.to_path_buf(),
        images: root.join("images"),
        bpf: root.join("bpf"),
        cgroup: "mx-test".into(),
        workers: 2,
    }
}

/// Edits the first fragment of `host`'s bundle under `dir` that `pick`
/// chooses, and re-digests it, so only validation can catch the change.
fn edit(dir: &Path, host: &str, pick: impl Fn(&Value) -> bool, change: impl FnOnce(&mut Value)) {
    let m = dir.join(host).join("manifest.json");
    let mut manifest: Value = serde_json::from_str(&std::fs::read_to_string(&m).unwrap()).unwrap();
    for e in manifest["fragments"].as_array_mut().unwrap() {
        let file = dir.join(host).join(e["file"].as_str().unwrap());
        let mut f: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        if pick(&f) {
            change(&mut f);
            let text = serde_json::to_string_pretty(&f).unwrap();
            std::fs::write(&file, &text).unwrap();
            e["sha256"] = mx_materializer::hex(&sha2::Sha256::digest(text.as_bytes())).into();
            std::fs::write(&m, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
            return;
        }
    }
    panic!("no such fragment in {host}'s bundle");
}

fn written() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    mx_materializer::write(d.path(), &bundles()).unwrap();
    d
}

fn refused(dir: &Path, want: &str) {
    let msg = match mx_runtime::bundle::load_dir(dir) {
        Err(d) => d.message,
        Ok(b) => match mx_runtime::bundle::validate(&b) {
            Err(ds) => ds
                .iter()
                .map(|d| d.message.clone())
                .collect::<Vec<_>>()
                .join("\n"),
            Ok(()) => panic!("accepted; wanted a refusal mentioning `{want}`"),
        },
    };
    assert!(msg.contains(want), "wanted `{want}` in: {msg}");
}

#[test]
fn an_empty_manifest_naming_the_root_directory_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let canary = d.path().join("canary");
    std::fs::write(&canary, "still here").unwrap();
    std::fs::create_dir(d.path().join("x")).unwrap();
    std::fs::write(
        d.path().join("x/manifest.json"),
        format!(
            "{{\"version\": \"{}\", \"experiment\": \"e\", \"host\": \"/\", \"fragments\": []}}",
            mx_xir::FRAGMENT_VERSION
        ),
    )
    .unwrap();
    refused(d.path(), "malformed manifest");
    // The same with a plain host name but no fragments, in a directory of
    // another name.
    std::fs::write(
        d.path().join("x/manifest.json"),
        format!(
            "{{\"version\": \"{}\", \"experiment\": \"e\", \"host\": \"y\", \"fragments\": []}}",
            mx_xir::FRAGMENT_VERSION
        ),
    )
    .unwrap();
    refused(d.path(), "is for host `y`");
    assert!(canary.exists());
}

#[test]
fn qemu_options_cannot_be_injected_through_the_machine_type() {
    let d = written();
    edit(
        d.path(),
        "ns0",
        |f| f["kind"] == "vm",
        |f| f["machine"] = "virt,dumpdtb=/etc/shadow".into(),
    );
    refused(d.path(), "malformed fragment");
}

#[test]
fn gpu_fields_reaching_sysfs_are_checked() {
    for (field, value) in [
        ("mdev_type", "../../../../tmp"),
        ("parent", "../../x/y/z.0"),
        ("uuid", "00000000-0000-0000-0000-000000000000/../x"),
    ] {
        let d = written();
        edit(
            d.path(),
            "ns0",
            |f| f["kind"] == "vm",
            |f| {
                f["gpu"] = serde_json::json!({
                    "via": "mdev", "model": "l40", "parent": "0000:5e:00.0",
                    "mdev_type": "nvidia-1155", "uuid": "00cd0aa9-6d78-4000-8000-000001000000"
                });
                f["gpu"][field] = value.into();
            },
        );
        refused(d.path(), "malformed fragment");
    }
}

#[test]
fn namespaces_are_mx_namespaces_of_the_bundles_host() {
    let d = written();
    edit(
        d.path(),
        "ns0",
        |f| f["kind"] == "netns",
        |f| f["netns"] = "mxh-ns1".into(),
    );
    refused(d.path(), "a host's namespace is `mxh-<host>`");
    let d = written();
    edit(
        d.path(),
        "ns0",
        |f| f["kind"] == "netns",
        |f| f["underlay_netns"] = "cni-1234".into(),
    );
    refused(d.path(), "malformed fragment");
}

#[test]
fn a_tap_naming_a_device_of_the_host_is_refused() {
    let d = written();
    edit(
        d.path(),
        "ns0",
        |f| f["kind"] == "tap",
        |f| f["device"] = "docker0".into(),
    );
    refused(d.path(), "is not named `t");
}

#[test]
fn two_experiments_never_hold_one_tag_on_a_machine() {
    let root = tempfile::tempdir().unwrap();
    let rt = runtime(root.path());
    let (a, b) = (name("a"), name("b"));
    std::fs::create_dir_all(rt.state_dir(&a)).unwrap();
    std::fs::write(rt.state_dir(&a).join("state.json"), "{}").unwrap();
    rt.claim_tag(0x123456, &a).expect("free");
    rt.claim_tag(0x123456, &a).expect("its own, again (resume)");
    let e = rt.claim_tag(0x123456, &b).unwrap_err();
    assert_eq!(e.code, "E0403");
    assert!(e.message.contains("experiment `a`"), "{}", e.message);
    rt.claim_tag(0x123457, &b).expect("another tag");
    // Once `a` is gone, its claim is stale.
    std::fs::remove_dir_all(rt.state_dir(&a)).unwrap();
    rt.claim_tag(0x123456, &b).expect("stale claim taken over");
}

#[test]
fn down_checks_the_bundles_it_tears_down() {
    let (_root, rt, n, canary) = empty_state();
    let dir = rt.state_dir(&n);
    mx_materializer::write(&dir.join("bundles"), &bundles()).unwrap();
    // A VM named to walk out of the state directory.
    edit(
        &dir.join("bundles"),
        "ns0",
        |f| f["kind"] == "vm",
        |f| f["name"] = "../../../outside".into(),
    );
    state_refused(&rt, &n, &canary, "a bundle directory");
}

/// A runtime in a temporary root with an empty state directory for
/// `local`, and a canary directory beside the root that a path walking out
/// of the state would reach.
fn empty_state() -> (tempfile::TempDir, Runtime, mx_xir::Name, std::path::PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let canary = root.path().join("outside");
    std::fs::create_dir(&canary).unwrap();
    let rt = runtime(&root.path().join("run"));
    let n = name("local");
    std::fs::create_dir_all(rt.state_dir(&n)).unwrap();
    (root, rt, n, canary)
}

/// Saves a state for `n` beside the bundles written into its state
/// directory, and checks that down (dry and real) and resume refuse them
/// (E0402) and touch nothing.
fn state_refused(rt: &Runtime, n: &mx_xir::Name, canary: &Path, what: &str) {
    let dir = rt.state_dir(n);
    let state = mx_runtime::State {
        experiment: n.clone(),
        tag: mx_realizer::preferred_tag("local"),
        netns_hosts: vec![],
        accel: "tcg".into(),
        phase: "up".into(),
        tasks: vec![],
    };
    state.save(&dir).unwrap();
    for dry in [true, false] {
        let errs = rt.down(n, dry, &mut |_| {}).unwrap_err();
        assert!(errs.iter().all(|e| e.code == "E0402"), "{what}: {errs:?}");
    }
    assert!(rt.resume(n, &mut |_| {}).is_err(), "{what}");
    assert!(canary.exists() && dir.exists(), "{what}");
}

/// The state keeps its bundles in one file (`bundles.json`); that copy is
/// checked as a bundle directory is: a VM named to walk out of the state
/// directory, or a fragment slipped into another host's bundle, and down
/// and resume refuse before anything is touched.
#[test]
fn the_states_copy_of_the_bundles_is_checked_too() {
    type Tamper = fn(&mut Value);
    let tampers: [(&str, Tamper); 2] = [
        ("outside", |b| {
            let f = b[0]["fragments"]
                .as_array_mut()
                .unwrap()
                .iter_mut()
                .find(|f| f["kind"] == "vm")
                .unwrap();
            f["name"] = "../../../outside".into();
        }),
        ("another host's", |b| {
            let f = b[0]["fragments"][0].clone();
            b[1]["fragments"].as_array_mut().unwrap().push(f);
        }),
    ];
    for (what, tamper) in tampers {
        let (_root, rt, n, canary) = empty_state();
        let dir = rt.state_dir(&n);
        let mut copy = serde_json::to_value(bundles()).unwrap();
        tamper(&mut copy);
        std::fs::write(dir.join("bundles.json"), copy.to_string()).unwrap();
        state_refused(&rt, &n, &canary, what);
    }
    // Untampered, the same copy is read back as it was written.
    let root = tempfile::tempdir().unwrap();
    let rt = runtime(&root.path().join("run"));
    let n = name("local");
    let dir = rt.state_dir(&n);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("bundles.json"),
        serde_json::to_vec(&bundles()).unwrap(),
    )
    .unwrap();
    assert_eq!(rt.bundles(&n).unwrap(), bundles());
}

#[test]
fn guest_console_output_cannot_drive_the_terminal() {
    let root = tempfile::tempdir().unwrap();
    let rt = runtime(root.path());
    let (e, vm) = (name("e"), name("a"));
    let vdir = rt.state_dir(&e).join("vm/a");
    std::fs::create_dir_all(&vdir).unwrap();
    std::fs::write(
        vdir.join("serial.log"),
        "boot\nMX-PING a 10.0.0.2 ok\x1b[2J\x1b]0;owned\x07\r\nMX-READY a\n",
    )
    .unwrap();
    let lines = rt.guest_report(&e, &vm);
    assert_eq!(lines.len(), 2, "{lines:?}");
    for l in &lines {
        assert!(!l.chars().any(char::is_control), "{l:?}");
    }
    assert!(lines[0].starts_with("MX-PING a 10.0.0.2 ok"));
}

/// An XDP pair joins a tap to another tap or to the VTEP of its
/// point-to-point link: pointed at another device of the host (here the
/// experiment's bridge), it is refused; at the host's VTEP, taken.
#[test]
fn an_xdp_pair_joins_taps_and_vteps_only() {
    let device_of = |kind: &str| {
        bundles()
            .iter()
            .flat_map(|b| &b.fragments)
            .find_map(|f| match &f.spec {
                mx_xir::Spec::Bridge { device, .. }
                    if kind == "bridge" && f.host.as_str() == "ns0" =>
                {
                    Some(device.to_string())
                }
                mx_xir::Spec::Vtep { device, .. } if kind == "vtep" && f.host.as_str() == "ns0" => {
                    Some(device.to_string())
                }
                _ => None,
            })
            .expect("a device of that kind on ns0")
    };
    let d = written();
    let bridge = device_of("bridge");
    edit(
        d.path(),
        "ns0",
        |f| f["kind"] == "xdp_pair",
        |f| f["b"] = bridge.into(),
    );
    refused(
        d.path(),
        "an XDP pair joins a tap to another tap or to a VTEP",
    );
    let d = written();
    let vtep = device_of("vtep");
    edit(
        d.path(),
        "ns0",
        |f| f["kind"] == "xdp_pair",
        |f| f["b"] = vtep.into(),
    );
    let b = mx_runtime::bundle::load_dir(d.path()).expect("loads");
    assert_eq!(mx_runtime::bundle::validate(&b), Ok(()));
}
