//! End to end on this machine, with the real binary: `mxc up` of the
//! one-machine example (4 VMs on 2 namespace hypervisors: an XDP pair, a
//! bridged LAN, a VXLAN link), every guest pings every neighbour, then
//! `mxc down` leaves nothing behind. Plus the faults: a QEMU that dies, a
//! task that fails half-way, a second `up`, tampered bundles.
//!
//! These need root, QEMU and the kernel features of a Linux host; without
//! root or QEMU they say so and pass, unless `MX_REQUIRE_E2E=1` (set by
//! `.ci/run`) makes that a failure. They share the host namespaces, so they
//! run one at a time.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

mod common;
use common::{Env, can_run, root};

static SERIAL: Mutex<()> = Mutex::new(());

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn up_pings_and_down_leaves_nothing() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !can_run() {
        return;
    }
    let env = Env::new("main");
    let up = env.mxc(&["up", "examples/local.mx"]);
    assert!(up.status.success(), "mxc up failed:\n{}", stderr(&up));
    assert!(
        stderr(&up).contains("`local` is up: 23 tasks, 4 VMs ready"),
        "{}",
        stderr(&up)
    );

    let guests = env.pings("local");
    let expect = [
        ("a", vec!["10.0.1.2", "10.0.2.2", "10.0.2.3"]),
        ("b", vec!["10.0.1.1", "10.0.2.1", "10.0.2.3"]),
        ("c", vec!["10.0.2.1", "10.0.2.2", "10.0.3.2"]),
        ("d", vec!["10.0.3.1"]),
    ];
    for (vm, ips) in expect {
        let console: Vec<&str> = guests[vm]["console"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l.as_str())
            .collect();
        assert!(
            console.contains(&format!("MX-READY {vm}").as_str()),
            "{vm}: {console:?}"
        );
        for ip in ips {
            let line = format!("MX-PING {vm} {ip} ok");
            assert!(
                console.contains(&line.as_str()),
                "{vm} cannot reach {ip}: {console:?}"
            );
        }
        assert!(guests[vm]["running"].as_bool().unwrap());
    }

    // The XDP pair is really there: both taps carry a program.
    let links = Command::new("ip")
        .args(["-n", "mxh-ns0", "-d", "link", "show"])
        .output()
        .unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    assert_eq!(links.matches("prog/xdp").count(), 2, "{links}");

    // A second `up` of the same experiment is refused, and changes nothing.
    let again = env.mxc(&["up", "examples/local.mx"]);
    assert_eq!(again.status.code(), Some(1), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("E0403") && stderr(&again).contains("already up"),
        "{}",
        stderr(&again)
    );
    assert!(
        env.status("local")["guests"]["a"]["running"]
            .as_bool()
            .unwrap()
    );

    // Another experiment whose bundles carry `local`'s tag (realized
    // against another allocation table, then renamed) would name the same
    // devices and group: it is refused before anything is touched.
    let real = env.dir.join("other.json");
    let realized = Command::new(env!("CARGO_BIN_EXE_mxc"))
        .args(["realize", "examples/local.mx", "--facility"])
        .arg("examples/facilities/local.mx")
        .args(["--dry-run", "-o"])
        .arg(&real)
        .current_dir(root())
        .env("MX_DB", env.dir.join("another.db"))
        .output()
        .unwrap();
    assert!(realized.status.success(), "{}", stderr(&realized));
    let text = std::fs::read_to_string(&real).unwrap().replacen(
        "\"name\": \"local\"",
        "\"name\": \"other\"",
        1,
    );
    std::fs::write(&real, text).unwrap();
    let bundles = env.dir.join("other-bundles");
    let mat = env.mxc(&[
        "materialize",
        real.to_str().unwrap(),
        "-o",
        bundles.to_str().unwrap(),
    ]);
    assert!(mat.status.success(), "{}", stderr(&mat));
    let other = env.mxc(&["up", bundles.to_str().unwrap()]);
    assert_eq!(other.status.code(), Some(1), "{}", stderr(&other));
    assert!(
        stderr(&other).contains("E0403") && stderr(&other).contains("which experiment `local`"),
        "{}",
        stderr(&other)
    );
    assert!(!env.dir.join("run/other").exists());
    let guests = env.pings("local");
    assert!(guests["a"]["running"].as_bool().unwrap());

    let down = env.mxc(&["down", "local"]);
    assert!(down.status.success(), "mxc down failed:\n{}", stderr(&down));
    env.assert_clean("local");
    // The allocation went back too.
    let alloc = env.mxc(&["alloc", "show"]);
    assert!(!String::from_utf8_lossy(&alloc.stdout).contains("local"));
    // And down again says there is nothing to take down.
    let twice = env.mxc(&["down", "local"]);
    assert_eq!(twice.status.code(), Some(1));
    assert!(stderr(&twice).contains("not up"), "{}", stderr(&twice));
}

#[test]
fn a_qemu_that_dies_is_reported_and_cleaned_up() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !can_run() {
        return;
    }
    let env = Env::new("dies");
    let up = env.mxc(&["up", "examples/local.mx"]);
    assert!(up.status.success(), "{}", stderr(&up));
    let pidfile = env.dir.join("run/local/vm/d/qemu.pid");
    let pid = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .to_string();
    assert!(
        Command::new("kill")
            .args(["-9", &pid])
            .status()
            .unwrap()
            .success()
    );
    let start = Instant::now();
    while env.status("local")["guests"]["d"]["running"]
        .as_bool()
        .unwrap()
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "status still says d runs"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = env.mxc(&["status", "local"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("d: QEMU NOT RUNNING"));
    let down = env.mxc(&["down", "local"]);
    assert!(down.status.success(), "{}", stderr(&down));
    env.assert_clean("local");
}

#[test]
fn a_task_that_fails_stops_the_run_resume_finishes_it_and_down_cleans_up() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !can_run() {
        return;
    }
    let env = Env::new("fails");
    // Occupy the name of the LAN's bridge on ns0 with a device that is not
    // a bridge (a veth): enslaving the taps to it fails half-way through the DAG.
    let tag = mx_tag("local");
    assert!(
        Command::new("ip")
            .args(["netns", "add", "mxh-ns0"])
            .status()
            .unwrap()
            .success()
    );
    let dummy = format!("b{tag}1");
    let peer = format!("p{tag}");
    assert!(
        Command::new("ip")
            .args([
                "-n", "mxh-ns0", "link", "add", &dummy, "type", "veth", "peer", "name", &peer
            ])
            .status()
            .unwrap()
            .success()
    );
    let up = env.mxc(&["up", "examples/local.mx"]);
    assert_eq!(up.status.code(), Some(1), "{}", stderr(&up));
    assert!(
        stderr(&up).contains("E0404") && stderr(&up).contains(&format!("bridge/ns0/{dummy}")),
        "{}",
        stderr(&up)
    );
    let s = env.status("local");
    assert_eq!(s["state"]["phase"], "failed");
    let tasks = s["state"]["tasks"].as_array().unwrap();
    let of = |id: &str| tasks.iter().find(|t| t["id"] == id).unwrap()["status"].clone();
    assert_eq!(of(&format!("bridge/ns0/{dummy}")), "failed");
    // The VMs on that bridge never started.
    assert_eq!(of("vm/a"), "skipped");
    // Fix the cause, and the run resumes where it stopped.
    assert!(
        Command::new("ip")
            .args(["-n", "mxh-ns0", "link", "del", &dummy])
            .status()
            .unwrap()
            .success()
    );
    let resumed = env.mxc(&["up", "examples/local.mx", "--resume"]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    let guests = env.pings("local");
    let a: Vec<&str> = guests["a"]["console"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l.as_str())
        .collect();
    assert!(a.contains(&"MX-PING a 10.0.2.3 ok"), "{a:?}");
    let down = env.mxc(&["down", "local"]);
    assert!(down.status.success(), "{}", stderr(&down));
    env.assert_clean("local");
}

/// A device that is not the experiment's (here: a veth squatting on the name
/// of one of its taps) is neither adopted by `up` nor deleted by `down`'s
/// device tasks. (The namespace is mx's: when the last experiment on the
/// host leaves, it goes, with whatever was put into it.)
#[test]
fn a_device_that_is_not_the_experiments_is_never_adopted_or_deleted() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !can_run() {
        return;
    }
    let env = Env::new("foreign");
    let tap = format!("t{}0", mx_tag("local"));
    let ip = |args: &[&str]| {
        let o = Command::new("ip").args(args).output().unwrap();
        assert!(o.status.success(), "ip {args:?}: {}", stderr(&o));
    };
    ip(&["netns", "add", "mxh-ns0"]);
    ip(&[
        "-n", "mxh-ns0", "link", "add", &tap, "type", "veth", "peer", "name", "squat1",
    ]);
    let up = env.mxc(&["up", "examples/local.mx"]);
    assert_eq!(up.status.code(), Some(1), "{}", stderr(&up));
    assert!(
        stderr(&up).contains("is not this experiment's"),
        "{}",
        stderr(&up)
    );
    // Still there, and still not a tap: up did not touch it.
    let show = Command::new("ip")
        .args(["-n", "mxh-ns0", "-d", "link", "show", &tap])
        .output()
        .unwrap();
    assert!(show.status.success(), "{tap} was deleted");
    assert!(String::from_utf8_lossy(&show.stdout).contains("veth"));
    let down = env.mxc(&["down", "local"]);
    assert!(down.status.success(), "{}", stderr(&down));
    assert!(
        stderr(&down).contains(&format!(
            "device `{tap}` in mxh-ns0 exists and is not this experiment's"
        )) && stderr(&down).contains("left alone"),
        "{}",
        stderr(&down)
    );
    env.assert_clean("local");
}

#[test]
fn tampered_bundles_are_refused_before_anything_is_touched() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !can_run() {
        return;
    }
    let env = Env::new("tamper");
    let real = env.dir.join("real.json");
    let out = env.mxc(&[
        "realize",
        "examples/local.mx",
        "--facility",
        "examples/facilities/local.mx",
        "--dry-run",
        "-o",
        real.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let bundles = env.dir.join("bundles");
    let out = env.mxc(&[
        "materialize",
        real.to_str().unwrap(),
        "-o",
        bundles.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Turn d's VM into a 64-vCPU one.
    let vm = std::fs::read_dir(bundles.join("ns1"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("vm-d.json"))
        .unwrap();
    let text = std::fs::read_to_string(&vm)
        .unwrap()
        .replace("\"vcpus\": 1", "\"vcpus\": 64");
    std::fs::write(&vm, text).unwrap();
    let up = env.mxc(&["up", bundles.to_str().unwrap()]);
    assert_eq!(up.status.code(), Some(1), "{}", stderr(&up));
    assert!(
        stderr(&up).contains("E0402") && stderr(&up).contains("does not match its digest"),
        "{}",
        stderr(&up)
    );
    for ns in ["mxh-ns0", "mxh-ns1", "mxu-local"] {
        assert!(
            !Path::new("/run/netns").join(ns).exists(),
            "namespace {ns} was created"
        );
    }
    assert!(!env.dir.join("run/local").exists());
}

/// The device-name tag an experiment gets from an empty allocation table.
fn mx_tag(name: &str) -> String {
    mx_materializer::tag_hex(mx_realizer::preferred_tag(name))
}
