//! The runtime's checks and plans, without touching the machine: bundles
//! that were altered are refused, and the dry-run plan is exact.

use std::path::Path;

use mx_runtime::Runtime;

mod common;
use common::{bundles, bundles_of, compile};

/// Installed images the plans see, the same on every machine: the busybox
/// guest and a Debian disk image, as `image.json` and empty files.
const IMAGES: &str = "/tmp/mx-plan-test-images";

fn install_images() {
    let images: [(&str, &str, &[&str]); 3] = [
        (
            "mx-busybox",
            r#"{"name":"mx-busybox","arch":"x86_64","kind":"initramfs","description":"test","kernel":"vmlinuz","initrd":"initramfs.cpio.gz","agent":"mx_agent","os":"busybox"}"#,
            &["vmlinuz", "initramfs.cpio.gz"],
        ),
        (
            "bookworm",
            r#"{"name":"bookworm","arch":"x86_64","kind":"disk","description":"test","kernel":"vmlinux","disk":"base.qcow2","disk_bus":"nvme","append":["root=/dev/nvme0n1","rootwait","rw"],"agent":"qga","ssh":true,"os":"Debian 12"}"#,
            &["vmlinux", "base.qcow2"],
        ),
        (
            "2204",
            r#"{"name":"2204","arch":"x86_64","kind":"cloud","description":"test","disk":"base.qcow2","agent":"mx_agent","ssh":true,"os":"Ubuntu 22.04","ready_timeout_s":600}"#,
            &["base.qcow2"],
        ),
    ];
    for (key, info, files) in images {
        let dir = Path::new(IMAGES).join(key);
        std::fs::create_dir_all(&dir).unwrap();
        for f in files {
            std::fs::write(dir.join(f), b"").unwrap();
        }
        // Written whole and renamed, for tests running side by side.
        let tmp = dir.join(format!("image.json.{:?}", std::thread::current().id()));
        std::fs::write(&tmp, info).unwrap();
        std::fs::rename(&tmp, dir.join("image.json")).unwrap();
    }
}

fn runtime() -> Runtime {
    install_images();
    Runtime {
        root: "/var/lib/mx/run".into(),
        images: IMAGES.into(),
        bpf: "/sys/fs/bpf/mx".into(),
        cgroup: "mx".into(),
        workers: 4,
    }
}

/// The example's bundles, written to a fresh private directory.
fn scratch() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    mx_materializer::write(d.path(), &bundles()).unwrap();
    d
}

fn name(s: &str) -> mx_xir::Name {
    s.parse().unwrap()
}

#[test]
fn dry_run_plan_snapshot() {
    let (plan, _) = runtime().plan(&bundles(), false).expect("plans");
    let mut out = plan.dag.describe();
    for (t, ops) in plan.dag.tasks.iter().zip(&plan.ops) {
        out.push_str(&format!("{}:\n", t.fragment.id));
        for op in ops {
            out.push_str(&format!("    {op}\n"));
        }
    }
    insta::assert_snapshot!(out);
}

/// Two LANs and a router with a Debian node: names tables, routes and
/// forwarding in the guests' configuration, a copy-on-write overlay, sshd's
/// port and the agent's for the disk image.
#[test]
fn guest_plan_snapshot() {
    let (plan, _) = runtime()
        .plan(&bundles_of("examples/lans.py"), false)
        .expect("plans");
    let mut out = String::new();
    for (t, ops) in plan.dag.tasks.iter().zip(&plan.ops) {
        out.push_str(&format!("{}:\n", t.fragment.id));
        for op in ops {
            out.push_str(&format!("    {op}\n"));
            if let mx_runtime::plan::Op::WriteFile { path, content } = op
                && !path.ends_with("setup")
            {
                for line in content.lines() {
                    out.push_str(&format!("        | {line}\n"));
                }
            }
        }
    }
    insta::assert_snapshot!(out);
}

/// A node on an imported cloud image: the firmware boots its overlay, a
/// NoCloud seed (whose files are shown) and mx's scripts through fw_cfg, a
/// longer wait for ready.
#[test]
fn cloud_plan_snapshot() {
    let (plan, _) = runtime()
        .plan(&bundles_of("examples/cloud.py"), false)
        .expect("plans");
    let mut out = String::new();
    for (t, ops) in plan.dag.tasks.iter().zip(&plan.ops) {
        if !t.fragment.id.to_string().starts_with("vm/") {
            continue;
        }
        out.push_str(&format!("{}:\n", t.fragment.id));
        for op in ops {
            out.push_str(&format!("    {op}\n"));
            if let mx_runtime::plan::Op::WriteSeed { files, .. } = op {
                for (file, content) in files {
                    out.push_str(&format!("      {file}:\n"));
                    for line in content.lines() {
                        out.push_str(&format!("        | {line}\n"));
                    }
                }
            }
        }
    }
    insta::assert_snapshot!(out);
}

/// The seed is a FAT filesystem labelled CIDATA holding the files, the
/// same bytes for the same files.
#[test]
fn the_cloud_seed_is_a_cidata_filesystem() {
    use std::io::Read;
    let files = vec![
        ("meta-data".to_string(), "instance-id: x\n".to_string()),
        ("user-data".to_string(), "#cloud-config\n".repeat(1000)),
    ];
    let image = mx_runtime::real::seed_image(&files).unwrap();
    assert_eq!(image, mx_runtime::real::seed_image(&files).unwrap());
    let fs = fatfs::FileSystem::new(std::io::Cursor::new(image), fatfs::FsOptions::new()).unwrap();
    assert_eq!(fs.volume_label().trim_end(), "CIDATA");
    for (name, content) in &files {
        let mut text = String::new();
        fs.root_dir()
            .open_file(name)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(&text, content);
    }
}

/// An image that is not installed stops the plan, dry run or not, naming
/// what is installed and how to get the missing one.
#[test]
fn a_missing_image_is_refused_with_the_fix() {
    let mut rt = runtime();
    let empty = tempfile::tempdir().unwrap();
    rt.images = empty.path().into();
    let err = rt
        .plan(&bundles_of("examples/lans.py"), false)
        .err()
        .expect("refused");
    let text = format!("{err:?}");
    assert!(text.contains("bookworm"), "{text}");
    assert!(text.contains("mxc image --build bookworm"), "{text}");
}

#[test]
fn dag_orders_stages_and_dependencies() {
    let (plan, _) = runtime().plan(&bundles(), false).unwrap();
    for (i, t) in plan.dag.tasks.iter().enumerate() {
        for &d in &t.deps {
            assert!(d < i);
            assert!(plan.dag.tasks[d].stage <= t.stage);
        }
        if let mx_xir::Spec::Vm(_) = t.fragment.spec {
            // A VM waits for every global piece (its tunnels' far ends too).
            for (j, g) in plan.dag.tasks.iter().enumerate() {
                if g.fragment.scope == mx_xir::Scope::Global {
                    assert!(
                        t.deps.contains(&j),
                        "{} does not wait for {}",
                        t.fragment.id,
                        g.fragment.id
                    );
                }
            }
        }
    }
}

#[test]
fn written_bundles_load_back_identical() {
    let d = scratch();
    let loaded = mx_runtime::bundle::load_dir(d.path()).expect("loads");
    assert_eq!(loaded, bundles());
}

#[test]
fn a_tampered_fragment_is_refused() {
    let d = scratch();
    let f = std::fs::read_dir(d.path().join("ns0"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("-vm-"))
        .unwrap();
    let text = std::fs::read_to_string(&f)
        .unwrap()
        .replace("\"vcpus\": 1", "\"vcpus\": 9");
    std::fs::write(&f, text).unwrap();
    let err = mx_runtime::bundle::load_dir(d.path()).unwrap_err();
    assert_eq!(err.code, "E0402");
    assert!(
        err.message.contains("does not match its digest"),
        "{}",
        err.message
    );
}

#[test]
fn a_malformed_fragment_is_refused_with_its_location() {
    let d = scratch();
    // Re-digest the broken file so only the parse can catch it.
    let m = d.path().join("ns1/manifest.json");
    let mut manifest: mx_xir::Manifest =
        serde_json::from_str(&std::fs::read_to_string(&m).unwrap()).unwrap();
    let e = &mut manifest.fragments[0];
    let broken = "{ \"version\": \"mx-fragment/0.2\", \"id\": \n";
    std::fs::write(d.path().join("ns1").join(&e.file), broken).unwrap();
    use sha2::Digest;
    e.sha256 = mx_materializer::hex(&sha2::Sha256::digest(broken.as_bytes()));
    std::fs::write(&m, mx_materializer::to_json(&manifest)).unwrap();
    let err = mx_runtime::bundle::load_dir(d.path()).unwrap_err();
    assert_eq!(err.code, "E0402");
    assert!(
        err.message.contains("malformed fragment") && err.message.contains(":2:"),
        "{}",
        err.message
    );
}

#[test]
fn foreign_names_and_dangling_references_are_refused() {
    let mut b = bundles();
    for f in b.iter_mut().flat_map(|b| b.fragments.iter_mut()) {
        if let mx_xir::Spec::Tap { device, .. } = &mut f.spec
            && device.ends_with('0')
        {
            // A device of the host's, not the experiment's.
            *device = "docker0".parse().unwrap();
        }
    }
    let errs = mx_runtime::bundle::validate(&b).unwrap_err();
    let text: Vec<String> = errs.iter().map(|e| e.message.clone()).collect();
    assert!(errs.iter().all(|e| e.code == "E0402"));
    assert!(
        text.iter()
            .any(|m| m.contains("`docker0` is not named `t")
                && m.contains("after the experiment's tag")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|m| m.contains("is not defined on host ns0")),
        "{text:?}"
    );
}

#[test]
fn another_version_is_refused() {
    let mut b = bundles();
    b[0].fragments[0].version = "mx-fragment/9".into();
    let errs = mx_runtime::bundle::validate(&b).unwrap_err();
    assert!(
        errs[0].message.contains("expected `mx-fragment/0.2`"),
        "{:?}",
        errs[0].message
    );
}

#[test]
fn teardown_reverses_the_dag() {
    // A dry run of down over a fake state: dependents go first.
    let root = tempfile::tempdir().unwrap();
    let rt = Runtime {
        root: root.path().to_path_buf(),
        ..runtime()
    };
    let b = bundles();
    let dir = rt.state_dir(&name("local"));
    std::fs::create_dir_all(&dir).unwrap();
    mx_materializer::write(&dir.join("bundles"), &b).unwrap();
    let state = mx_runtime::State {
        experiment: name("local"),
        tag: mx_realizer::preferred_tag("local"),
        netns_hosts: vec!["ns0".into(), "ns1".into()],
        accel: "tcg".into(),
        phase: "up".into(),
        tasks: vec![],
    };
    state.save(&dir).unwrap();
    let ops = rt.down(&name("local"), true, &mut |_| {}).expect("dry run");
    let pos = |needle: &str| {
        ops.iter()
            .position(|o| o.contains(needle))
            .unwrap_or_else(|| panic!("no `{needle}` in {ops:#?}"))
    };
    let t = mx_materializer::tag_hex(mx_realizer::preferred_tag("local"));
    // LAN taps (2, 3, 4) only after their bridge (1); XDP taps (0, 1) after the pair.
    assert!(pos(&format!("link del b{t}1")) < pos(&format!("link del t{t}2")));
    assert!(pos("xdp unpin") < pos(&format!("link del t{t}0")));
    assert!(pos("qmp quit /") < pos(&format!("link del t{t}0")));
    assert!(pos(&format!("link del t{t}6")) < pos("netns del mxh-ns1"));
    assert!(pos("netns del mxh-ns0") < pos("netns del mxu-local"));
}

/// VFs and whole ports on a facility that has them: the exact sysfs,
/// netlink and QEMU operations, and on a machine without SR-IOV or VFIO the
/// refusal, before anything is touched.
#[test]
fn vf_and_passthrough_plans() {
    let src = "net = topology('sriov')\n\
               a = net.device('a', cores == 2, host == 'hv0')\n\
               b = net.device('b', cores == 2, host == 'hv1')\n\
               c = net.device('c', cores == 2, host == 'hv2')\n\
               l = net.connect([a, b])\n\
               l[a].spec(nic == vfio)\n\
               l[b].spec(nic == vfio)\n\
               m = net.connect([a, c])\n\
               p = net.connect([c, b])\n\
               p[c].spec(nic == passthrough)\n";
    let exp = mx_compiler::compile("sriov.mx", src, &mx_compiler::Options::default())
        .xir
        .expect("experiment");
    // Three hypervisors on one leaf, both ports of their SR-IOV NICs cabled.
    let fsrc = "fac = facility('sriov')\n\
                leaf = fac.switch('leaf', role=leaf, vxlan=True, underlay='10.0.0.254')\n\
                for i in range(3):\n\
                \x20   hv = fac.host(f'hv{i}', roles=[hypervisor], cores=16, memory=gb(64), disk=tb(1), underlay=f'10.0.0.{i + 1}',\n\
                \x20                 nics=[nic(connectx5, ports=2, capacity=gbps(25), vfs=8, devices=['enp59s0f0', 'enp59s0f1'])])\n\
                \x20   fac.cable(hv.port(0), leaf.port(2 * i))\n\
                \x20   fac.cable(hv.port(1), leaf.port(2 * i + 1))\n";
    let fac = mx_compiler::compile("sriov-fac.mx", fsrc, &mx_compiler::Options::default());
    assert!(fac.diagnostics.is_empty(), "{:?}", fac.diagnostics);
    let fac = fac.facility.expect("facility");
    let real = mx_realizer::realize(&exp, &fac, &Default::default(), &Default::default())
        .expect("realizes")
        .realization;
    let bundles = mx_materializer::materialize(&real).expect("materializes");
    let (plan, _) = runtime().plan(&bundles, false).expect("plans");
    let mut out = String::new();
    for (t, ops) in plan.dag.tasks.iter().zip(&plan.ops) {
        if matches!(
            t.fragment.spec,
            mx_xir::Spec::Vf { .. } | mx_xir::Spec::SwitchVlan { .. } | mx_xir::Spec::Vm(_)
        ) {
            out.push_str(&format!("{}:\n", t.fragment.id));
            for op in ops {
                out.push_str(&format!("    {op}\n"));
            }
        }
    }
    insta::assert_snapshot!(out);
    // a is hybrid: a virtio NIC on a tap and a VF.
    assert!(out.contains("vfio-pci,host=@pci(enp59s0f0-vf0)"), "{out}");
    assert!(
        out.contains("bind /sys/class/net/enp59s0f1/device to vfio-pci"),
        "{out}"
    );
    let sriov = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .any(|e| e.unwrap().path().join("device/sriov_totalvfs").exists());
    if !sriov {
        let errs = runtime().plan(&bundles, true).map(|_| ()).unwrap_err();
        let text: Vec<&str> = errs.iter().map(|e| e.message.as_str()).collect();
        assert!(errs.iter().all(|e| e.code == "E0405"), "{text:?}");
        assert!(
            text.iter().any(|m| m.contains("needs an SR-IOV NIC")),
            "{text:?}"
        );
        assert!(text.iter().any(|m| m.contains("needs VFIO")), "{text:?}");
    }
}

/// GPUs on a facility that names them: a whole GPU bound to vfio-pci, a
/// mediated device cut from another, a VF of a third; the exact sysfs and
/// QEMU operations up and down, and on a machine without the devices or
/// VFIO the refusal, before anything is touched.
#[test]
fn gpu_plans_for_passthrough_mdev_and_vf() {
    let src = "net = topology('g')\n\
               w = net.device('w', gpu == 'a100', gpu_mode == passthrough, pcie == gen4(16))\n\
               m = net.device('m', gpu == 'l40', gpu_mode == virtual)\n\
               v = net.device('v', gpu == 'mi210', gpu_mode == virtual)\n\
               net.connect([w, m, v])\n";
    let exp = mx_compiler::compile("g.mx", src, &mx_compiler::Options::default())
        .xir
        .expect("experiment");
    let fsrc = "fac = facility('gpus')\n\
                fac.host('hv0', roles=[hypervisor], cores=16, memory=gb(64), disk=tb(1), pcie=gen4(16),\n\
                \x20        gpus=[gpu('a100', devices=['0000:3b:00.0']),\n\
                \x20              gpu('l40', devices=['0000:5e:00.0'], mdev='nvidia-1155', slices=4),\n\
                \x20              gpu('mi210', devices=['0000:af:00.0'], vfs=8)])\n";
    let fac = mx_compiler::compile("gpus.mx", fsrc, &mx_compiler::Options::default());
    assert!(fac.diagnostics.is_empty(), "{:?}", fac.diagnostics);
    let real = mx_realizer::realize(
        &exp,
        &fac.facility.unwrap(),
        &Default::default(),
        &Default::default(),
    )
    .expect("realizes")
    .realization;
    let bundles = mx_materializer::materialize(&real).expect("materializes");
    let (plan, paths) = runtime().plan(&bundles, false).expect("plans");
    let mut out = String::new();
    for (t, up) in plan.dag.tasks.iter().zip(&plan.ops) {
        let down = mx_runtime::plan::down(&t.fragment, None, &paths);
        if let mx_xir::Spec::Vm(vm) = &t.fragment.spec {
            out.push_str(&format!("{} ({:?}):\n", t.fragment.id, vm.gpu));
            for op in up {
                out.push_str(&format!("    {op}\n"));
            }
            out.push_str("  down:\n");
            for op in &down {
                out.push_str(&format!("    {op}\n"));
            }
        }
    }
    insta::assert_snapshot!(out);
    for want in [
        "bind /sys/bus/pci/devices/0000:3b:00.0 to vfio-pci",
        "vfio-pci,host=@pci(gpu-0000:3b:00.0),bus=rpgpu,id=gpu0",
        "x-speed=16,x-width=16",
        "mdev_supported_types/nvidia-1155/create",
        "vfio-pci,sysfsdev=/sys/bus/mdev/devices/",
        "/sys/bus/pci/devices/0000:af:00.0/sriov_numvfs at least 1",
        "bind /sys/bus/pci/devices/0000:af:00.0/virtfn0 to vfio-pci",
        "give gpu-0000:3b:00.0 back",
        "/remove",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    // Here: no such PCI devices (or no VFIO): refused, nothing touched.
    if !Path::new("/sys/bus/pci/devices/0000:3b:00.0").exists() {
        let errs = runtime().plan(&bundles, true).map(|_| ()).unwrap_err();
        let text: Vec<&str> = errs.iter().map(|e| e.message.as_str()).collect();
        assert!(errs.iter().all(|e| e.code == "E0405"), "{text:?}");
        for dev in ["0000:3b:00.0", "0000:5e:00.0", "0000:af:00.0"] {
            assert!(
                text.iter()
                    .any(|m| m.contains(dev) && m.contains("no PCI device")),
                "{dev}: {text:?}"
            );
        }
    }
}

/// A GPU the facility does not locate cannot be materialized.
#[test]
fn a_gpu_without_an_address_is_not_materialized() {
    let src = "net = topology('g')\nt = net.device('t', gpu == 'a100')\n";
    let exp = mx_compiler::compile("g.mx", src, &mx_compiler::Options::default())
        .xir
        .expect("experiment");
    let fsrc = "fac = facility('gpus')\nfac.host('hv0', roles=[hypervisor], cores=16, memory=gb(64), disk=tb(1), gpus=[gpu('a100', count=2)])\n";
    let fac = mx_compiler::compile("gpus.mx", fsrc, &mx_compiler::Options::default());
    let real = mx_realizer::realize(
        &exp,
        &fac.facility.unwrap(),
        &Default::default(),
        &Default::default(),
    )
    .expect("realizes")
    .realization;
    let err = mx_materializer::materialize(&real).expect_err("no address");
    assert_eq!(err.code, "E0401");
    assert!(err.message.contains("PCI address"), "{}", err.message);
}

/// A riscv64 VM runs under qemu-system-riscv64 with an image installed by
/// hand; without one it is refused before anything is touched, saying where
/// the image goes.
#[test]
fn a_riscv64_vm_without_an_image_is_refused() {
    let src = "net = topology('rv')\nr = net.device('r', arch == riscv64)\n";
    let exp = mx_compiler::compile("rv.mx", src, &mx_compiler::Options::default())
        .xir
        .expect("experiment");
    let fac = compile("examples/facilities/local.mx")
        .facility
        .expect("facility");
    let real = mx_realizer::realize(&exp, &fac, &Default::default(), &Default::default())
        .expect("realizes")
        .realization;
    let bundles = mx_materializer::materialize(&real).expect("materializes");
    let rt = runtime();
    // A dry run says so too.
    for check_machine in [false, true] {
        let errs = rt.plan(&bundles, check_machine).map(|_| ()).unwrap_err();
        let e = errs
            .iter()
            .find(|e| e.code == "E0405" && e.message.contains("image `mx-busybox` for riscv64"))
            .unwrap_or_else(|| panic!("{errs:?}"));
        assert!(
            e.help
                .as_deref()
                .is_some_and(|h| h.contains("for x86_64 and aarch64 only")
                    && h.contains("mx-busybox-riscv64")),
            "{e:?}"
        );
    }
    // Installed by hand, it runs under qemu-system-riscv64.
    let tmp = tempfile::tempdir().unwrap();
    let rt = Runtime {
        images: tmp.path().to_path_buf(),
        ..rt
    };
    let dir = rt.images.join("mx-busybox-riscv64");
    std::fs::create_dir_all(&dir).expect("image dir");
    std::fs::write(dir.join("Image"), b"kernel").expect("kernel");
    std::fs::write(dir.join("initramfs.cpio.gz"), b"initramfs").expect("initramfs");
    std::fs::write(
        dir.join("image.json"),
        r#"{"name":"mx-busybox","arch":"riscv64","kind":"initramfs","description":"by hand","kernel":"Image","initrd":"initramfs.cpio.gz","agent":"qga"}"#,
    )
    .expect("image.json");
    let (plan, _) = rt.plan(&bundles, false).expect("plans");
    let qemu = plan
        .ops
        .iter()
        .flatten()
        .map(|op| op.to_string())
        .find(|op| op.contains("qemu-system-"))
        .expect("a QEMU op");
    assert!(
        qemu.contains("qemu-system-riscv64 -name r -machine virt,") && qemu.contains("/Image "),
        "{qemu}"
    );
}

/// Realizes and materializes inline sources, then plans without probing
/// the machine.
fn plan_of(exp: &str, fac: &str) -> (mx_runtime::Plan, Vec<mx_materializer::Bundle>) {
    let opts = mx_compiler::Options::default();
    let exp = mx_compiler::compile("exp.mx", exp, &opts)
        .xir
        .expect("experiment");
    let fac = mx_compiler::compile("fac.mx", fac, &opts);
    assert!(fac.diagnostics.is_empty(), "{:?}", fac.diagnostics);
    let real = mx_realizer::realize(
        &exp,
        &fac.facility.expect("facility"),
        &Default::default(),
        &Default::default(),
    )
    .expect("realizes")
    .realization;
    let bundles = mx_materializer::materialize(&real).expect("materializes");
    let (plan, _) = runtime().plan(&bundles, false).expect("plans");
    (plan, bundles)
}

/// Two namespace hypervisors and a leaf emulated in a namespace, each
/// hypervisor's NIC with VFs.
const EMULATED_LEAF: &str = "fac = facility('emu')\n\
    leaf = fac.switch('leaf', role=leaf, vxlan=True, underlay='192.0.2.9', netns=True)\n\
    for i in range(2):\n\
    \x20   hv = fac.host(f'hv{i}', roles=[hypervisor], cores=8, memory=gb(16), disk=gb(40), underlay=f'192.0.2.{i + 1}', netns=True,\n\
    \x20                 nics=[nic(x710, ports=1, capacity=gbps(10), vfs=4)])\n\
    \x20   fac.cable(hv.port(0), leaf.port(i))\n";

#[test]
fn crossing_point_to_point_links_map_taps_into_their_vteps() {
    let exp = "net = topology('xv')\n\
               a = net.device('a', host == 'hv0')\n\
               b = net.device('b', host == 'hv1')\n\
               c = net.device('c', host == 'hv0')\n\
               d = net.device('d', host == 'hv1')\n\
               net.connect([a, b])\n\
               net.connect([c, d], capacity == mbps(100))\n\
               net.connect([a, c, d])\n";
    let (plan, _) = plan_of(exp, EMULATED_LEAF);
    let ids: Vec<&str> = plan
        .dag
        .tasks
        .iter()
        .map(|t| t.fragment.id.as_str())
        .collect();
    let xdp_vtep = |h: &str| {
        plan.dag.tasks.iter().filter(|t| {
            t.fragment.host.as_str() == h
                && matches!(&t.fragment.spec, mx_xir::Spec::XdpPair { b, .. } if b.starts_with('v'))
        })
        .count()
    };
    // The unshaped a-b: a tap-to-VTEP redirect on each host, no bridge.
    assert_eq!((xdp_vtep("hv0"), xdp_vtep("hv1")), (1, 1), "{ids:?}");
    // The shaped c-d and the LAN keep a bridge on each host.
    let bridges = |h: &str| {
        plan.dag
            .tasks
            .iter()
            .filter(|t| {
                t.fragment.host.as_str() == h
                    && matches!(t.fragment.spec, mx_xir::Spec::Bridge { .. })
            })
            .count()
    };
    assert_eq!((bridges("hv0"), bridges("hv1")), (2, 2), "{ids:?}");
    // The redirect waits for both of its devices.
    let t = plan
        .dag
        .tasks
        .iter()
        .find(|t| {
            t.fragment.host.as_str() == "hv0"
                && matches!(&t.fragment.spec, mx_xir::Spec::XdpPair { b, .. } if b.starts_with('v'))
        })
        .unwrap();
    let deps: Vec<&str> = t
        .deps
        .iter()
        .map(|d| plan.dag.tasks[*d].fragment.id.as_str())
        .collect();
    assert!(deps.iter().any(|d| d.starts_with("vtep/hv0/")), "{deps:?}");
    assert!(deps.iter().any(|d| d.starts_with("tap/")), "{deps:?}");
}

#[test]
fn an_emulated_leaf_switches_emulated_vfs() {
    let exp = "net = topology('ev')\n\
               a = net.device('a', host == 'hv0')\n\
               b = net.device('b', host == 'hv1')\n\
               l = net.connect([a, b])\n\
               l[a].spec(nic == vfio)\n\
               l[b].spec(nic == vfio)\n";
    let (plan, bundles) = plan_of(exp, EMULATED_LEAF);
    // The leaf has a bundle of its own: its namespace and its ports.
    let leaf = bundles
        .iter()
        .find(|b| b.host.as_str() == "leaf")
        .expect("leaf bundle");
    assert!(
        leaf.fragments
            .iter()
            .any(|f| matches!(f.spec, mx_xir::Spec::Netns { .. }))
    );
    let mut out = String::new();
    for (t, ops) in plan.dag.tasks.iter().zip(&plan.ops) {
        if matches!(
            t.fragment.spec,
            mx_xir::Spec::Vf { .. } | mx_xir::Spec::SwitchVlan { .. }
        ) {
            let deps: Vec<&str> = t
                .deps
                .iter()
                .map(|d| plan.dag.tasks[*d].fragment.id.as_str())
                .collect();
            out.push_str(&format!("{} (after {}):\n", t.fragment.id, deps.join(", ")));
            for op in ops {
                out.push_str(&format!("    {op}\n"));
            }
        }
    }
    insta::assert_snapshot!(out);
    // Each VF waits for its leaf port; each leaf port for its host's
    // namespace; the guest's NIC is a virtio NIC on the VF's tap.
    assert!(
        out.contains("vf/hv0-0-0 (after netns/hv0, switch_vlan/leaf-0-"),
        "{out}"
    );
    assert!(out.contains("after netns/hv1, netns/leaf)"), "{out}");
    let vm = plan
        .ops
        .iter()
        .flatten()
        .find_map(|op| match op {
            mx_runtime::plan::Op::QemuStart { argv, .. } => Some(argv.join(" ")),
            _ => None,
        })
        .expect("a VM");
    assert!(vm.contains("tap,id=n0,ifname=f0v0"), "{vm}");
    assert!(!vm.contains("vfio-pci"), "{vm}");
}
