//! Fragments to a task DAG. Dependencies come from the fragments
//! themselves: a bridge needs its ports, an XDP pair its taps, a VM the
//! local network its taps are part of plus every global piece (so a guest
//! that pings at boot finds its tunnels) and its host's names file,
//! emulation the VM behind the tap;
//! everything on a one-machine host needs the host's namespace.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use mx_materializer::Bundle;
use mx_xir::{Fragment, NicAttach, Scope, Spec};

/// One node of the DAG.
#[derive(Clone, Debug)]
pub struct Task {
    /// The fragment it carries out.
    pub fragment: Fragment,
    /// Indices of the tasks it waits for.
    pub deps: Vec<usize>,
    /// The stage, for display: 0 global, 1 local network, 2 VMs, 3 emulation.
    pub stage: u8,
}

/// The tasks of an experiment, in a topological order.
#[derive(Clone, Debug, Default)]
pub struct Dag {
    /// Tasks; every task's dependencies come before it.
    pub tasks: Vec<Task>,
}

fn stage(f: &Fragment) -> u8 {
    match (&f.spec, f.scope) {
        (_, Scope::Global) => 0,
        (Spec::Vm(_), _) => 2,
        (Spec::Emulation { .. }, _) => 3,
        _ => 1,
    }
}

/// Builds the DAG for an experiment's bundles.
pub fn build(bundles: &[Bundle]) -> Dag {
    let mut frags: Vec<&Fragment> = bundles.iter().flat_map(|b| &b.fragments).collect();
    // Stages in order; within a stage, host then bundle order, except that
    // namespaces come first and switch ports next: a switch plugs its
    // cables into hosts' namespaces, and an emulated VF waits for its cable.
    frags.sort_by_key(|f| {
        let rank = match f.spec {
            Spec::Netns { .. } => 0,
            Spec::SwitchVlan { .. } => 1,
            _ => 2,
        };
        (stage(f), rank)
    });
    // (host, device) -> task that creates it; host -> namespace task.
    let mut device: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let mut netns: BTreeMap<&str, usize> = BTreeMap::new();
    let mut vm: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    let mut tap_users: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
    let mut globals = Vec::new();
    // (host behind the port, host port, VLAN) -> the switch task.
    let mut switch_ports: BTreeMap<(&str, u32, u16), usize> = BTreeMap::new();
    for (i, f) in frags.iter().enumerate() {
        let h = f.host.as_str();
        match &f.spec {
            Spec::SwitchVlan {
                peer, port, vlan, ..
            } => {
                switch_ports.insert((peer.as_str(), *port, *vlan), i);
            }
            Spec::Netns { .. } => {
                netns.insert(h, i);
            }
            Spec::Vtep { device: d, .. }
            | Spec::Tap { device: d, .. }
            | Spec::Bridge { device: d, .. } => {
                device.insert((h, d.as_str()), i);
            }
            Spec::Vm(v) => {
                vm.insert((h, v.name.as_str()), i);
            }
            Spec::Names { .. } => {
                names.insert(h, i);
            }
            _ => {}
        }
        if f.scope == Scope::Global {
            globals.push(i);
        }
        match &f.spec {
            Spec::Bridge { ports, .. } => {
                for p in ports {
                    tap_users.entry((h, p.as_str())).or_default().push(i);
                }
            }
            Spec::XdpPair { a, b } => {
                tap_users.entry((h, a.as_str())).or_default().push(i);
                tap_users.entry((h, b.as_str())).or_default().push(i);
            }
            _ => {}
        }
    }
    let mut tasks = Vec::with_capacity(frags.len());
    for (i, f) in frags.iter().enumerate() {
        let h = f.host.as_str();
        let mut deps = Vec::new();
        if !matches!(f.spec, Spec::Netns { .. }) {
            deps.extend(netns.get(h));
        }
        let dev = |d: &str| device.get(&(h, d)).copied();
        match &f.spec {
            Spec::SwitchVlan { peer, .. } => deps.extend(netns.get(peer.as_str())),
            Spec::Vf { pf_port, vlan, .. } => deps.extend(switch_ports.get(&(h, *pf_port, *vlan))),
            Spec::Bridge { ports, .. } => deps.extend(ports.iter().filter_map(|p| dev(p))),
            Spec::XdpPair { a, b } => deps.extend([dev(a), dev(b)].into_iter().flatten()),
            Spec::Vm(v) => {
                deps.extend(&globals);
                // The guest reads the names file at boot.
                deps.extend(names.get(h));
                for n in &v.nics {
                    if let NicAttach::Tap { device: d } = &n.attach {
                        deps.extend(dev(d));
                        deps.extend(tap_users.get(&(h, d.as_str())).into_iter().flatten());
                    }
                }
            }
            Spec::Emulation { device: d, .. } => {
                deps.extend(dev(d));
                let owner = frags.iter().find_map(|g| match &g.spec {
                    Spec::Tap {
                        device: t,
                        vm: owner,
                    } if t == d && g.host == f.host => Some(owner.as_str()),
                    _ => None,
                });
                if let Some(o) = owner {
                    deps.extend(vm.get(&(h, o)));
                }
            }
            _ => {}
        }
        deps.retain(|&d| d < i);
        deps.sort_unstable();
        deps.dedup();
        tasks.push(Task {
            fragment: (*f).clone(),
            deps,
            stage: stage(f),
        });
    }
    Dag { tasks }
}

impl Dag {
    /// A readable listing: one line per task with what it waits for.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for (i, t) in self.tasks.iter().enumerate() {
            let deps: Vec<String> = t
                .deps
                .iter()
                .map(|d| self.tasks[*d].fragment.id.clone())
                .collect();
            let _ = writeln!(
                s,
                "{i:>3}  {:<28} host {:<10} stage {}{}",
                t.fragment.id,
                t.fragment.host,
                ["global", "network", "vms", "emulation"][t.stage as usize],
                if deps.is_empty() {
                    String::new()
                } else {
                    format!("  after {}", deps.join(", "))
                }
            );
        }
        s
    }

    /// For each task, the tasks that wait for it.
    pub fn dependents(&self) -> Vec<Vec<usize>> {
        let mut out = vec![Vec::new(); self.tasks.len()];
        for (i, t) in self.tasks.iter().enumerate() {
            for &d in &t.deps {
                out[d].push(i);
            }
        }
        out
    }
}
