//! Plumbing benchmark: N taps, N/10 bridges with 10 taps each and N/10
//! VXLAN devices (each a bridge port) in one namespace host, brought up and
//! taken down through the runtime's DAG, worker pool and netlink executor,
//! exactly as `mxc up` / `mxc down` do it. Needs root.
//!
//!     cargo run --release -p mx-runtime --example plumbing -- 1000 [WORKERS] [PORTS_PER_BRIDGE]
//!
//! PORTS_PER_BRIDGE 0 makes bare taps (as XDP pairs use), no bridges.

use std::time::Instant;

use mx_materializer::Bundle;
use mx_runtime::exec::{self, Context, Direction, State, Status, TaskState};
use mx_xir::{FRAGMENT_VERSION, Fragment, IfName, Name, Scope, Spec};

/// Times every operation (with MX_BENCH_DEBUG) to show where time goes.
struct Timed<'a>(
    &'a mx_runtime::real::Real,
    std::sync::Mutex<Vec<(u128, String)>>,
);

impl exec::Executor for Timed<'_> {
    fn run(&self, op: &mx_runtime::plan::Op, ctx: &Context) -> Result<Option<String>, String> {
        let t = Instant::now();
        let r = self.0.run(op, ctx);
        self.1
            .lock()
            .unwrap()
            .push((t.elapsed().as_micros(), format!("{op} -> {r:?}")));
        r
    }
}

/// The benchmark's experiment tag: its devices are named after it.
const TAG: u32 = 0x0b0b0b;

fn frag(id: String, scope: Scope, spec: Spec) -> Fragment {
    Fragment {
        version: FRAGMENT_VERSION.into(),
        id,
        experiment: name("plumbing"),
        tag: TAG,
        host: name("bench"),
        scope,
        spec,
    }
}

fn name(s: &str) -> Name {
    s.parse().expect("a name")
}

fn dev(kind: char, n: usize) -> IfName {
    format!("{kind}{TAG:06x}{n:x}")
        .parse()
        .expect("an interface name")
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let workers: usize = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(8);
    let mut fragments = vec![frag(
        "netns/bench".into(),
        Scope::Global,
        Spec::Netns {
            netns: "mxh-bench".parse().expect("a namespace"),
            underlay_netns: "mxu-bench".parse().expect("a namespace"),
            underlay_addr: "198.51.100.1/24".parse().expect("a prefix"),
            device: "mxul".parse().expect("an interface name"),
            peer: "u0b0b0b".parse().expect("an interface name"),
        },
    )];
    let per: usize = std::env::args()
        .nth(3)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    if per == 0 {
        for t in 0..n {
            let dev = dev('t', t);
            fragments.push(frag(
                format!("tap/{dev}"),
                Scope::Local,
                Spec::Tap {
                    device: dev,
                    vm: name("none"),
                },
            ));
        }
    }
    let bridges = if per == 0 { 0 } else { n.div_ceil(per) };
    for b in 0..bridges {
        let vx = dev('v', b);
        fragments.push(frag(
            format!("vtep/{vx}"),
            Scope::Global,
            Spec::Vtep {
                device: vx.clone(),
                vni: 20000 + b as u32,
                local: "198.51.100.1".parse().expect("an address"),
                remotes: vec!["198.51.100.2".parse().expect("an address")],
                port: 4789,
            },
        ));
        let mut ports = vec![vx];
        for t in (b * per)..((b + 1) * per).min(n) {
            let tap = dev('t', t);
            fragments.push(frag(
                format!("tap/{tap}"),
                Scope::Local,
                Spec::Tap {
                    device: tap.clone(),
                    vm: name("none"),
                },
            ));
            ports.push(tap);
        }
        let br = dev('b', b);
        fragments.push(frag(
            format!("bridge/{br}"),
            Scope::Local,
            Spec::Bridge { device: br, ports },
        ));
    }
    let bundles = vec![Bundle {
        experiment: name("plumbing"),
        host: name("bench"),
        fragments,
    }];
    mx_runtime::bundle::validate(&bundles).expect("valid bundle");
    let dag = mx_runtime::dag::build(&bundles);
    let hosts = vec!["bench".to_string()];
    let root = std::env::temp_dir().join("mx-plumbing-bench");
    let _ = std::fs::remove_dir_all(&root);
    let rt = mx_runtime::Runtime {
        root: root.clone(),
        workers,
        ..mx_runtime::Runtime::from_env()
    };
    let (_, paths) = rt.plan(&bundles, false).expect("plan");
    let ctx = Context {
        experiment: "plumbing".into(),
        root: root.clone(),
    };
    let mut state = State {
        experiment: name("plumbing"),
        tag: TAG,
        netns_hosts: hosts.clone(),
        accel: "tcg".into(),
        phase: "bench".into(),
        tasks: dag
            .tasks
            .iter()
            .map(|t| TaskState {
                id: t.fragment.id.clone(),
                host: t.fragment.host.to_string(),
                status: Status::Pending,
                message: String::new(),
                ms: 0,
            })
            .collect(),
    };
    let ops_up: usize = dag
        .tasks
        .iter()
        .map(|t| mx_runtime::plan::up(&t.fragment, Some("mxh-bench".into()), &paths).len())
        .sum();
    let real = mx_runtime::real::Real::default();
    let t0 = Instant::now();
    exec::run(
        &dag,
        Direction::Up,
        &real,
        &ctx,
        &paths,
        &hosts,
        &mut state,
        None,
        workers,
        &mut |_| {},
        &exec::open_gate,
    )
    .expect("up");
    let up = t0.elapsed();
    let count = std::process::Command::new("ip")
        .args(["-n", "mxh-bench", "-o", "link", "show"])
        .output()
        .expect("ip");
    let links = String::from_utf8_lossy(&count.stdout).lines().count();
    if std::env::var_os("MX_BENCH_DEBUG").is_some() {
        for l in String::from_utf8_lossy(&count.stdout).lines().take(6) {
            eprintln!("{l}");
        }
    }
    let t1 = Instant::now();
    let timed = Timed(&real, Default::default());
    exec::run(
        &dag,
        Direction::Down,
        &timed,
        &ctx,
        &paths,
        &hosts,
        &mut state,
        None,
        workers,
        &mut |_| {},
        &exec::open_gate,
    )
    .expect("down");
    if std::env::var_os("MX_BENCH_DEBUG").is_some() {
        let mut v = timed.1.into_inner().unwrap();
        v.sort();
        for (us, op) in v.iter().rev().take(8) {
            eprintln!("op {us} us: {op}");
        }
    }
    let down = t1.elapsed();
    if std::env::var_os("MX_BENCH_DEBUG").is_some() {
        let mut slow: Vec<&TaskState> = state.tasks.iter().collect();
        slow.sort_by_key(|t| std::cmp::Reverse(t.ms));
        for t in slow.iter().take(5) {
            eprintln!("slow: {} {} ms {}", t.id, t.ms, t.message);
        }
    }
    drop(real);
    let interfaces = n + 2 * bridges;
    println!(
        "interfaces: {interfaces} ({n} taps, {bridges} bridges, {bridges} VXLAN), {links} links seen in the namespace"
    );
    println!("workers: {workers}");
    println!(
        "up:   {:.3} s, {ops_up} operations, {:.0} operations/s, {:.0} interfaces/s",
        up.as_secs_f64(),
        ops_up as f64 / up.as_secs_f64(),
        interfaces as f64 / up.as_secs_f64()
    );
    println!(
        "down: {:.3} s, {:.0} interfaces/s (one netlink group delete per namespace, then the namespaces)",
        down.as_secs_f64(),
        interfaces as f64 / down.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(root);
}
