//! An independent check of a realization, written apart from the solver so
//! the two cannot share a mistake: every constraint holds for the resource
//! chosen, no host gives out more than it has, and VNIs, VLAN tags and VFs
//! are unique where they must be. Tests run it on every realization.

use std::collections::{BTreeMap, BTreeSet};

use mx_xir::{Attachment, Experiment, Facility, LinkKind, Mode, Op, Realization, Role, Value};

use crate::usage::{Usage, leaf_of};

/// Problems found; empty when the realization is sound.
pub fn verify(exp: &Experiment, fac: &Facility, usage: &Usage, real: &Realization) -> Vec<String> {
    let mut bad = Vec::new();
    if real.nodes.len() != exp.nodes.len() {
        bad.push(format!(
            "{} nodes placed for {} in the experiment",
            real.nodes.len(),
            exp.nodes.len()
        ));
        return bad;
    }
    let mut used: BTreeMap<&str, (u64, u64, u64, usize, bool)> = BTreeMap::new();
    for (node, p) in exp.nodes.iter().zip(&real.nodes) {
        if node.name != p.node {
            bad.push(format!(
                "placement order: expected `{}`, found `{}`",
                node.name, p.node
            ));
            continue;
        }
        let Some(h) = fac.host(&p.host) else {
            bad.push(format!("`{}` placed on unknown host `{}`", p.node, p.host));
            continue;
        };
        let e = used.entry(&h.name).or_default();
        e.3 += 1;
        match p.mode {
            Mode::Metal => {
                e.4 = true;
                if !h.roles.contains(&Role::Metal) {
                    bad.push(format!(
                        "`{}` is bare metal on `{}`, which is not a metal host",
                        p.node, h.name
                    ));
                }
            }
            Mode::Vm => {
                e.0 += p.cores as u64;
                e.1 += p.memory;
                e.2 += p.disk;
                if !(h.roles.contains(&Role::Hypervisor) && h.virt_alloc) {
                    bad.push(format!(
                        "`{}` is a VM on `{}`, which does not allocate VMs",
                        p.node, h.name
                    ));
                }
            }
        }
        for c in &node.constraints {
            let have: Option<i64> = match &*c.property {
                "cores" => Some(p.cores as i64),
                "memory" => Some(p.memory as i64),
                "disk" => Some(p.disk as i64),
                _ => None,
            };
            if let Some(v) = have
                && !int_holds(c.op, &c.value, v)
            {
                bad.push(format!(
                    "`{}` gets {} = {v}, violating {} {:?}",
                    p.node,
                    c.property,
                    c.op.as_str(),
                    c.value
                ));
            }
            let flag = |b: bool| matches!((c.op, &c.value), (Op::Eq, Value::Bool(x)) if *x == b);
            if c.property == "virt"
                && ((flag(true) && p.mode != Mode::Vm) || (flag(false) && p.mode != Mode::Metal))
            {
                bad.push(format!("`{}` violates its virt constraint", p.node));
            }
            if c.property == "host"
                && matches!((c.op, &c.value), (Op::Eq, Value::Text(t)) if *t != h.name)
            {
                bad.push(format!(
                    "`{}` is pinned elsewhere but placed on `{}`",
                    p.node, h.name
                ));
            }
            if c.property == "arch"
                && p.mode == Mode::Metal
                && matches!((c.op, &c.value), (Op::Eq, Value::Text(t)) if *t != h.arch)
            {
                bad.push(format!(
                    "`{}` needs another architecture than `{}` has",
                    p.node, h.name
                ));
            }
        }
    }
    for (name, (c, m, d, count, metal)) in &used {
        let h = fac.host(name).expect("checked above");
        let prior = usage.host(name);
        if *metal && (*count > 1 || !usage.idle(name)) {
            bad.push(format!("bare-metal host `{name}` is shared"));
        }
        if *c + prior.cores as u64 > (h.cores - h.reserved_cores) as u64 {
            bad.push(format!(
                "`{name}` over-committed: {} cores of {}",
                c + prior.cores as u64,
                h.cores - h.reserved_cores
            ));
        }
        if *m + prior.memory > h.memory - h.reserved_memory {
            bad.push(format!("`{name}` over-committed on memory"));
        }
        if *d + prior.disk > h.disk {
            bad.push(format!("`{name}` over-committed on disk"));
        }
    }
    gpus(exp, fac, usage, real, &mut bad);
    pins(fac, usage, real, &mut bad);
    let mut vnis: BTreeSet<u32> = usage.vnis.clone();
    let mut tags: BTreeMap<(String, u16), &str> = BTreeMap::new();
    let mut vfs: BTreeSet<(String, u32, u32)> = BTreeSet::new();
    let placed_by_name: std::collections::HashMap<&str, &mx_xir::Placement> =
        real.nodes.iter().map(|p| (p.node.as_str(), p)).collect();
    // Hosts the realization gives a tunnel endpoint.
    let tunnels: BTreeSet<&str> = real
        .hosts
        .iter()
        .filter(|h| h.underlay.is_some())
        .map(|h| h.name.as_str())
        .collect();
    for (link, plan) in exp.links.iter().zip(&real.links) {
        if link.name != plan.link || plan.endpoints.len() != link.endpoints.len() {
            bad.push(format!("link `{}` planned as `{}`", link.name, plan.link));
            continue;
        }
        shape(fac, real, &tunnels, plan, &mut bad);
        if let Some(v) = plan.vni
            && !vnis.insert(v)
        {
            bad.push(format!("VNI {v} used twice"));
        }
        for (ep, e) in link.endpoints.iter().zip(&plan.endpoints) {
            let placed = placed_by_name.get(ep.node.as_str());
            if placed.map(|p| p.host.as_str()) != Some(e.host.as_str()) {
                bad.push(format!(
                    "`{}`: endpoint `{}` is not where its node is",
                    plan.link, ep.node
                ));
            }
            let (port, vlan) = match &e.attach {
                Attachment::Tap { .. } => continue,
                Attachment::Vf { port, vf, vlan, .. } => {
                    if !vfs.insert((e.host.to_string(), *port, *vf)) {
                        bad.push(format!("VF {vf} of port {port} on `{}` used twice", e.host));
                    }
                    let max = fac
                        .host(&e.host)
                        .and_then(|h| h.nic_of_port(*port).map(|(n, _)| h.nics[n].max_vfs))
                        .unwrap_or(0);
                    if *vf >= max {
                        bad.push(format!(
                            "VF {vf} does not exist on `{}` port {port}",
                            e.host
                        ));
                    }
                    (*port, *vlan)
                }
                Attachment::Port { port, vlan, .. } => (*port, *vlan),
            };
            let Some(leaf) = leaf_of(fac, &e.host, port) else {
                bad.push(format!("`{}` port {port} is not cabled", e.host));
                continue;
            };
            if usage.vlans.get(&leaf).is_some_and(|s| s.contains(&vlan)) {
                bad.push(format!("VLAN {vlan} on `{leaf}` is already allocated"));
            }
            match tags.get(&(leaf.clone(), vlan)) {
                Some(other) if *other != plan.link => bad.push(format!(
                    "VLAN {vlan} on `{leaf}` used by `{other}` and `{}`",
                    plan.link
                )),
                _ => {
                    tags.insert((leaf, vlan), &plan.link);
                }
            }
        }
    }
    modes(usage, real, &mut bad);
    uplinks(fac, usage, real, &mut bad);
    if real.tag == 0 || real.tag >= 1 << 24 || usage.tags.contains(&real.tag) {
        bad.push(format!("tag {:#x} is not free", real.tag));
    }
    for h in &real.hosts {
        if h.netns && h.underlay.is_none() {
            bad.push(format!("netns host `{}` has no underlay address", h.name));
        }
    }
    bad
}

/// Whether the materializer can build `plan` as planned: the kind fits the
/// endpoints (an XDP pair is two taps on one host, a bridge taps on one
/// host, a switched link VFs and ports behind one leaf, anything else VXLAN
/// with a VNI), every VF and port names the switch port its cable reaches,
/// and every VXLAN segment has a tunnel endpoint wherever it is joined.
fn shape(
    fac: &Facility,
    real: &Realization,
    tunnels: &BTreeSet<&str>,
    plan: &mx_xir::LinkPlan,
    bad: &mut Vec<String>,
) {
    let hosts: BTreeSet<&str> = plan.endpoints.iter().map(|e| e.host.as_str()).collect();
    let mut taps = 0;
    let mut leaves: BTreeSet<&str> = BTreeSet::new();
    for e in &plan.endpoints {
        match &e.attach {
            Attachment::Tap { .. } => taps += 1,
            Attachment::Vf {
                port,
                switch,
                switch_port,
                ..
            }
            | Attachment::Port {
                port,
                switch,
                switch_port,
                ..
            } => {
                leaves.insert(switch);
                // A PF without a cable of its own reaches the leaf through
                // the host's uplink.
                let reached = [Some(*port), crate::usage::uplink(fac, &e.host).map(|u| u.0)]
                    .into_iter()
                    .flatten()
                    .filter_map(|p| crate::usage::cabled_to(fac, &e.host, p))
                    .any(|(s, sp)| s == switch.as_str() && sp == *switch_port);
                if !reached {
                    bad.push(format!(
                        "`{}`: `{}` port {port} is not cabled to `{switch}` port {switch_port}",
                        plan.link, e.host
                    ));
                }
            }
        }
    }
    let all_taps = taps == plan.endpoints.len();
    let ok = match plan.kind {
        LinkKind::XdpPair => {
            all_taps
                && taps == 2
                && hosts.len() == 1
                && plan.vni.is_none()
                && plan.emulation.is_none()
                && plan.endpoints.iter().all(|e| e.emulation.is_none())
        }
        LinkKind::Bridge => all_taps && hosts.len() == 1 && plan.vni.is_none(),
        LinkKind::Switched => taps == 0 && leaves.len() == 1 && plan.vni.is_none(),
        LinkKind::Vxlan => plan.vni.is_some() && (hosts.len() > 1 || !all_taps),
    };
    if !ok {
        bad.push(format!(
            "`{}`: a {:?} link cannot join {} taps and {} VFs or ports on {} hosts{}",
            plan.link,
            plan.kind,
            taps,
            plan.endpoints.len() - taps,
            hosts.len(),
            if plan.vni.is_some() {
                " with a VNI"
            } else {
                ""
            }
        ));
    }
    if plan.kind != LinkKind::Vxlan {
        return;
    }
    for e in plan
        .endpoints
        .iter()
        .filter(|e| e.attach.switch().is_none())
    {
        if !tunnels.contains(e.host.as_str()) {
            bad.push(format!(
                "`{}`: host `{}` joins a VXLAN segment without an underlay address",
                plan.link, e.host
            ));
        }
    }
    for leaf in leaves {
        let capable = fac.switches.iter().any(|s| s.name == leaf && s.vxlan);
        let planned = real
            .switches
            .iter()
            .any(|s| s.name == leaf && s.underlay.is_some());
        if !(capable && planned) {
            bad.push(format!(
                "`{}`: leaf `{leaf}` joins a VXLAN segment without a tunnel endpoint",
                plan.link
            ));
        }
    }
}

/// A physical function serves VFs or is handed to a VM whole, never both
/// (counting what other experiments hold).
/// Every VM that asks for a GPU holds one that exists, is of its model and
/// is free: a whole GPU alone, slices only of a virtualizable GPU, within its
/// count, and none held twice (here or by earlier realizations).
fn gpus(
    exp: &Experiment,
    fac: &Facility,
    usage: &Usage,
    real: &Realization,
    bad: &mut Vec<String>,
) {
    let mut taken: BTreeMap<&str, BTreeMap<u32, crate::gpus::GpuUse>> = BTreeMap::new();
    for (node, p) in exp.nodes.iter().zip(&real.nodes) {
        let asks = node
            .constraints
            .iter()
            .any(|c| c.property == "gpu" || c.property == "gpu_mode");
        let Some(h) = fac.host(&p.host) else { continue };
        let g = match (&p.gpu, p.mode) {
            (None, Mode::Vm) if asks => {
                bad.push(format!("`{}` asks for a GPU and holds none", p.node));
                continue;
            }
            (Some(_), Mode::Metal) => {
                bad.push(format!("`{}` is bare metal but holds a GPU grant", p.node));
                continue;
            }
            (Some(g), _) => g,
            (None, _) => continue,
        };
        let Some((_, decl, k)) = crate::gpus::units(h).find(|(i, _, _)| *i == g.index) else {
            bad.push(format!(
                "`{}` holds GPU {} of `{}`, which has no such GPU",
                p.node, g.index, h.name
            ));
            continue;
        };
        if decl.model != g.model || decl.devices.get(k) != g.device.as_ref() {
            bad.push(format!(
                "`{}`: GPU {} of `{}` is not as recorded",
                p.node, g.index, h.name
            ));
        }
        for c in node.constraints.iter().filter(|c| c.property == "gpu") {
            if !crate::matching::holds_text(c, &decl.model) {
                bad.push(format!(
                    "`{}` gets a {} GPU, violating its gpu constraint",
                    p.node, decl.model
                ));
            }
        }
        let virtual_ = node.constraints.iter().any(|c| {
            c.property == "gpu_mode" && matches!(&c.value, Value::Text(t) if t == "virtual")
        });
        if virtual_ != g.slice.is_some() {
            bad.push(format!("`{}` holds a GPU in the wrong mode", p.node));
        }
        let host_taken = taken
            .entry(&h.name)
            .or_insert_with(|| usage.host(&h.name).gpus);
        let u = host_taken.entry(g.index).or_default();
        match g.slice {
            None if !u.free() => bad.push(format!(
                "GPU {} of `{}` is given whole while in use",
                g.index, h.name
            )),
            None => u.whole = true,
            Some(s) if !decl.virtualizable || s >= decl.slices => bad.push(format!(
                "`{}` holds virtual GPU {s} of GPU {} of `{}`, which offers {}",
                p.node, g.index, h.name, decl.slices
            )),
            Some(s) if u.whole || !u.slices.insert(s) => bad.push(format!(
                "virtual GPU {s} of GPU {} of `{}` is held twice",
                g.index, h.name
            )),
            Some(_) => {}
        }
    }
}

/// A pinned VM holds one host core per vCPU, past the host's reserved
/// cores, and no core is held twice.
fn pins(fac: &Facility, usage: &Usage, real: &Realization, bad: &mut Vec<String>) {
    let mut held: BTreeMap<&str, BTreeSet<u32>> = BTreeMap::new();
    for p in real.nodes.iter().filter(|p| p.mode == Mode::Vm) {
        if !p.profile.pin && p.cpus.is_empty() {
            continue;
        }
        let Some(h) = fac.host(&p.host) else { continue };
        if p.cpus.len() != p.cores as usize {
            bad.push(format!(
                "`{}` is pinned with {} cores for {} vCPUs",
                p.node,
                p.cpus.len(),
                p.cores
            ));
        }
        let taken = held
            .entry(&h.name)
            .or_insert_with(|| usage.host(&h.name).pinned);
        for &c in &p.cpus {
            if c < h.reserved_cores || c >= h.cores {
                bad.push(format!(
                    "`{}` is pinned to core {c} of `{}`, which VMs cannot have",
                    p.node, h.name
                ));
            } else if !taken.insert(c) {
                bad.push(format!("core {c} of `{}` is pinned twice", h.name));
            }
        }
    }
}

fn modes(usage: &Usage, real: &Realization, bad: &mut Vec<String>) {
    let vms: BTreeSet<&str> = real
        .nodes
        .iter()
        .filter(|p| p.mode == mx_xir::Mode::Vm)
        .map(|p| p.node.as_str())
        .collect();
    let mut serving: BTreeSet<(String, u32)> = BTreeSet::new();
    let mut whole: BTreeSet<(String, u32)> = usage
        .hosts
        .iter()
        .flat_map(|(h, u)| u.ports.iter().map(move |p| (h.clone(), *p)))
        .collect();
    for e in real.links.iter().flat_map(|l| &l.endpoints) {
        match &e.attach {
            Attachment::Vf { port, .. } => {
                serving.insert((e.host.to_string(), *port));
            }
            Attachment::Port { port, .. } if vms.contains(e.node.as_str()) => {
                whole.insert((e.host.to_string(), *port));
            }
            _ => {}
        }
    }
    for (h, p) in serving.intersection(&whole) {
        bad.push(format!(
            "`{h}` port {p} serves VFs and is passed through whole"
        ));
    }
}

/// Uplink and trunk capacity, checked apart from the planner's own check:
/// for every host, the capacity of the links that leave it fits its uplink
/// port; for every leaf switch, the capacity of the links that leave it
/// fits its cables to the other switches.
fn uplinks(fac: &Facility, usage: &Usage, real: &Realization, bad: &mut Vec<String>) {
    let mut want: BTreeMap<&str, u64> =
        usage.uplink.iter().map(|(h, b)| (h.as_str(), *b)).collect();
    // A host's leaf: the switch on its lowest-numbered cabled port (one
    // pass over the cables, remembered per device).
    let mut lowest: BTreeMap<&str, (u32, &str)> = BTreeMap::new();
    for c in &fac.cables {
        let [a, b] = &c.ends;
        for (me, other) in [(a, b), (b, a)] {
            let e = lowest
                .entry(me.device.as_str())
                .or_insert((me.port, other.device.as_str()));
            if (me.port, other.device.as_str()) < *e {
                *e = (me.port, other.device.as_str());
            }
        }
    }
    let leaf_of = |h: &str| -> Option<&str> { lowest.get(h).map(|(_, s)| *s) };
    // Each device's first cable in facility order: (its port, capacity).
    let mut first_cable: BTreeMap<&str, (u32, u64)> = BTreeMap::new();
    for c in &fac.cables {
        for e in &c.ends {
            first_cable
                .entry(e.device.as_str())
                .or_insert((e.port, c.capacity));
        }
    }
    for l in &real.links {
        let hosts: BTreeSet<&str> = l.endpoints.iter().map(|e| e.host.as_str()).collect();
        if hosts.len() < 2 {
            continue;
        }
        if let Some(c) = l.emulation.as_ref().and_then(|e| e.capacity) {
            let leaves: BTreeSet<&str> = hosts.iter().filter_map(|h| leaf_of(h)).collect();
            for h in &hosts {
                *want.entry(h).or_default() += c;
            }
            if leaves.len() > 1 {
                for s in leaves {
                    *want.entry(s).or_default() += c;
                }
            }
        }
    }
    for (h, w) in want {
        if fac.switches.iter().any(|s| s.name == h) {
            let trunk: Vec<u64> = fac
                .cables
                .iter()
                .filter(|c| {
                    let [a, b] = &c.ends;
                    let other = if a.device == h {
                        &b.device
                    } else if b.device == h {
                        &a.device
                    } else {
                        return false;
                    };
                    fac.switches.iter().any(|s| s.name == *other)
                })
                .map(|c| c.capacity)
                .collect();
            let cap: u64 = trunk.iter().sum();
            if !trunk.is_empty() && w > cap {
                bad.push(format!(
                    "trunk of leaf `{h}` oversubscribed: {w} b/s for {cap} b/s"
                ));
            }
            continue;
        }
        let Some(host) = fac.host(h) else { continue };
        // The first cable listing the host: its port's capacity, or the
        // NIC's if lower.
        let cap = first_cable.get(h).map(|&(p, cable)| {
            host.nic_of_port(p)
                .map_or(cable, |(n, _)| cable.min(host.nics[n].capacity))
        });
        if let Some(cap) = cap
            && w > cap
        {
            bad.push(format!(
                "uplink of `{h}` oversubscribed: {w} b/s for {cap} b/s"
            ));
        }
    }
}

fn int_holds(op: Op, v: &Value, have: i64) -> bool {
    let w = |v: &Value| {
        if let Value::Int(i) = v {
            Some(*i)
        } else {
            None
        }
    };
    match (op, v) {
        (Op::In, Value::List(items)) => items.iter().any(|x| w(x) == Some(have)),
        (Op::Eq, v) => w(v) == Some(have),
        (Op::Ne, v) => w(v) != Some(have),
        (Op::Lt, v) => w(v).is_some_and(|x| have < x),
        (Op::Le, v) => w(v).is_some_and(|x| have <= x),
        (Op::Gt, v) => w(v).is_some_and(|x| have > x),
        (Op::Ge, v) => w(v).is_some_and(|x| have >= x),
        _ => false,
    }
}
