//! Agents through the real binary and a real etcd: a VM whose link crosses
//! to a host whose agent is away waits for that host's tunnel at the
//! runtime's gate, on its own worker, while everything else of its host
//! comes up and reports done; once the other agent arrives, `up` finishes,
//! and `down` leaves nothing. (VMs are no-op tasks here,
//! `MX_BENCH_NOOP_VMS`: what is tested is the agents' scheduling, not
//! QEMU; `bench/multihost.sh` boots real guests.)

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

mod common;
use common::{can_run, private_dir, root, text};

const FACILITY: &str = "\
fac = facility('gates')
sw = fac.switch('underlay', role=leaf, vxlan=True)
for i in range(2):
    hv = fac.host(f'ga{i}', roles=[hypervisor], cores=64, memory=gb(64), disk=gb(1000),
                  reserved_cores=0, reserved_memory=gb(1), underlay=f'198.51.100.{i + 1}', netns=True,
                  nics=[nic(x710, ports=1, capacity=gbps(100))])
    fac.cable(hv.port(0), sw.port(i))
";

/// Four VMs on `ga0` in a ring with one VM on `ga1`, and a LAN on `ga0`.
const MODEL: &str = "\
net = topology('gated')
n = [net.device(f'v{i}', cores == 1, memory == mb(256), host == ('ga1' if i == 4 else 'ga0')) for i in range(5)]
for i in range(5):
    net.connect([n[i], n[(i + 1) % 5]])
net.connect(n[0:4])
experiment(net)
";

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn mxc(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mxc"));
    c.current_dir(root())
        .env("MX_DB", dir.join("alloc.db"))
        .env("NO_COLOR", "1");
    c
}

fn agent(dir: &Path, url: &str, host: &str) -> Agent {
    let log = std::fs::File::create(dir.join(format!("agent-{host}.log"))).unwrap();
    let child = mxc(dir)
        .args(["agent", "--store", url, "--host", host, "--state-dir"])
        .arg(dir.join(host))
        .env("MX_BENCH_NOOP_VMS", "1")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    Agent(child)
}

/// Each task's status on `host`, by task.
fn statuses(dir: &Path, url: &str, host: &str) -> serde_json::Map<String, serde_json::Value> {
    let out = mxc(dir)
        .args(["status", "gated", "--store", url, "--json"])
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    doc["hosts"][host]["tasks"]
        .as_object()
        .cloned()
        .unwrap_or_default()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(60), "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn vms_wait_for_another_hosts_tunnel_without_holding_up_their_host() {
    if !can_run() {
        return;
    }
    let dir = private_dir("mx-agents-");
    let etcd = mx_store::testkit::Etcd::start(&dir).expect("etcd starts");
    let url = etcd.url.to_string();
    std::fs::write(dir.join("fac.mx"), FACILITY).unwrap();
    std::fs::write(dir.join("exp.mx"), MODEL).unwrap();
    let ga0 = agent(&dir, &url, "ga0");
    let up_log = std::fs::File::create(dir.join("up.log")).unwrap();
    let mut up = mxc(&dir)
        .arg("up")
        .arg(dir.join("exp.mx"))
        .arg("--facility")
        .arg(dir.join("fac.mx"))
        .args(["--store", &url])
        .stdout(up_log.try_clone().unwrap())
        .stderr(up_log)
        .spawn()
        .unwrap();
    // Everything of ga0 but its VMs comes up; the VMs have started and
    // wait, at the gate, for ga1's tunnel.
    let mut last = serde_json::Map::new();
    wait_for("ga0's plumbing did not all come up", || {
        last = statuses(&dir, &url, "ga0");
        let plumbing: Vec<_> = last.iter().filter(|(t, _)| !t.starts_with("vm/")).collect();
        !plumbing.is_empty() && plumbing.iter().all(|(_, s)| s["status"] == "done")
    });
    std::thread::sleep(Duration::from_millis(500));
    let vms: Vec<_> = statuses(&dir, &url, "ga0")
        .into_iter()
        .filter(|(t, _)| t.starts_with("vm/"))
        .collect();
    assert_eq!(vms.len(), 4, "{last:?}");
    assert!(
        vms.iter().all(|(_, s)| s["status"] == "running"),
        "ga0's VMs should wait for ga1: {vms:?}"
    );
    assert!(up.try_wait().unwrap().is_none(), "up finished without ga1");
    // The other agent arrives: its tunnel comes up, the VMs go on, up ends.
    let ga1 = agent(&dir, &url, "ga1");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = up.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "up did not end");
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = std::fs::read_to_string(dir.join("up.log")).unwrap();
    assert!(status.success(), "{log}");
    assert!(
        statuses(&dir, &url, "ga0")
            .values()
            .all(|s| s["status"] == "done")
    );
    let down = mxc(&dir)
        .args(["down", "gated", "--store", &url])
        .output()
        .unwrap();
    assert!(down.status.success(), "{}", text(&down.stderr));
    drop((ga0, ga1));
    for ns in ["mxh-ga0", "mxh-ga1", "mxu-gates"] {
        assert!(
            !Path::new("/run/netns").join(ns).exists(),
            "namespace {ns} is left"
        );
    }
    drop(etcd);
    let _ = std::fs::remove_dir_all(&dir);
}
