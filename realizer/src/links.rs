//! Link planning: how each experiment link is built on the facility.
//!
//! Colocated point-to-point links become an XDP redirect pair, colocated
//! LANs a local filtering bridge, and links between hosts a VXLAN segment
//! with a VNI from the pool (VTEPs on each host's underlay address).
//! Endpoints attach with a tap (emulated NIC), an SR-IOV VF, or a whole
//! port; VFs and ports carry a VLAN tag that is unique on their leaf switch
//! and shared by the link's endpoints on that leaf (VLAN switch tagging).

use mx_diag::code;
use std::collections::{BTreeMap, BTreeSet};

use mx_diag::Diagnostic;
use mx_xir::{
    Attachment, Emulation, EndpointPlan, Experiment, Facility, LinkKind, LinkPlan, Mode, Name, Op,
    Placement, Value,
};

use crate::matching::{Need, NicNeed, nic_model_ok};
use crate::usage::{Usage, cabled_to, leaf_of, uplink};

/// VNIs handed out from here up.
pub const VNI_BASE: u32 = 10_000;
/// VLAN tags handed out per leaf.
pub const VLAN_RANGE: std::ops::RangeInclusive<u16> = 100..=4094;

pub fn plan(
    exp: &Experiment,
    fac: &Facility,
    usage: &Usage,
    placements: &[Placement],
    needs: &[Need],
) -> Result<Vec<LinkPlan>, Diagnostic> {
    let index = crate::matching::node_index(exp);
    let mut vnis: BTreeSet<u32> = usage.vnis.clone();
    let mut vlans: BTreeMap<String, BTreeSet<u16>> = usage.vlans.clone();
    let mut vfs: BTreeMap<(String, usize), BTreeSet<u32>> = BTreeMap::new();
    for (h, u) in &usage.hosts {
        for (nic, set) in &u.vfs {
            vfs.insert((h.clone(), *nic), set.clone());
        }
    }
    let mut ports: BTreeMap<String, BTreeSet<u32>> = usage
        .hosts
        .iter()
        .map(|(h, u)| (h.clone(), u.ports.clone()))
        .collect();
    let mut out = Vec::with_capacity(exp.links.len());
    let mut next_vni = VNI_BASE;
    let host_index: BTreeMap<&str, usize> = fac
        .hosts
        .iter()
        .enumerate()
        .map(|(i, h)| (h.name.as_str(), i))
        .collect();
    for (li, link) in exp.links.iter().enumerate() {
        let mut hosts: Vec<Name> = link
            .endpoints
            .iter()
            .map(|e| placements[index[e.node.as_str()]].host.clone())
            .collect();
        hosts.sort();
        hosts.dedup();
        // One VLAN tag per leaf this link touches through a VF or port.
        let mut link_vlan: BTreeMap<String, u16> = BTreeMap::new();
        let mut tag_on =
            |leaf: &str, vlans: &mut BTreeMap<String, BTreeSet<u16>>| -> Result<u16, Diagnostic> {
                if let Some(t) = link_vlan.get(leaf) {
                    return Ok(*t);
                }
                let used = vlans.entry(leaf.to_string()).or_default();
                let t = VLAN_RANGE
                    .clone()
                    .find(|t| !used.contains(t))
                    .ok_or_else(|| {
                        Diagnostic::error(
                            code::E0303,
                            format!("leaf switch `{leaf}` has no free VLAN tag"),
                        )
                        .primary(link.span.range(), "this link needs one")
                        .help("relinquish experiments on that leaf, or use virtual NICs")
                    })?;
                used.insert(t);
                link_vlan.insert(leaf.to_string(), t);
                Ok(t)
            };
        let mut endpoints = Vec::with_capacity(link.endpoints.len());
        for (ei, ep) in link.endpoints.iter().enumerate() {
            let ni = index[ep.node.as_str()];
            let p = &placements[ni];
            let host = &fac.hosts[host_index[p.host.as_str()]];
            let need = needs[ni]
                .nics
                .iter()
                .find(|(l, e, _)| *l == li && *e == ei)
                .map(|(_, _, n)| n.clone())
                .unwrap_or(NicNeed::Any);
            let no_port = || {
                Diagnostic::error(
                    code::E0302,
                    format!(
                        "host `{}` has no free port for node `{}`",
                        host.name, ep.node
                    ),
                )
                .primary(link.span.range(), "on this link")
                .help("the host's ports are cabled to no switch, or all in use")
            };
            // The leaf behind a host port, as the attachment records it.
            let leaf = |port: u32| -> Result<(Name, u32), Diagnostic> {
                let (sw, sp) = cabled_to(fac, &host.name, port).ok_or_else(no_port)?;
                Ok((mx_xir::safe_name(&sw), sp))
            };
            let attach = match (p.mode, need) {
                (Mode::Vm, NicNeed::Virtual(model)) => Attachment::Tap { model },
                (Mode::Vm, NicNeed::Any) => Attachment::Tap {
                    model: "virtio".into(),
                },
                (Mode::Vm, NicNeed::Vf(cs)) => {
                    let mut chosen = None;
                    for (i, nic) in host.nics.iter().enumerate() {
                        if nic.max_vfs == 0 || !nic_model_ok(&cs, &nic.model) {
                            continue;
                        }
                        // A physical function handed to a VM whole cannot
                        // serve VFs until it is given back.
                        let pf = host.nics[..i].iter().map(|n| n.ports).sum::<u32>();
                        if ports
                            .get(host.name.as_str())
                            .is_some_and(|t| t.contains(&pf))
                        {
                            continue;
                        }
                        let used = vfs.entry((host.name.to_string(), i)).or_default();
                        if let Some(vf) = (0..nic.max_vfs).find(|v| !used.contains(v)) {
                            used.insert(vf);
                            chosen = Some((pf, vf));
                            break;
                        }
                    }
                    let (port, vf) = chosen.ok_or_else(|| {
                        Diagnostic::error(code::E0302, format!("host `{}` has no free VF for node `{}`", host.name, ep.node))
                            .primary(link.span.range(), "on this link")
                            .secondary_in(&fac.source.path, host.span.range(), "every VF of this host's NICs is taken")
                            .help("fewer vfio endpoints per host, or a facility with more SR-IOV capacity")
                    })?;
                    // A PF that is not cabled itself reaches the fabric
                    // through the host's uplink.
                    let (switch, switch_port) = leaf(port).or_else(|_| {
                        let (up, _) = uplink(fac, &host.name).ok_or_else(no_port)?;
                        leaf(up)
                    })?;
                    Attachment::Vf {
                        port,
                        vf,
                        vlan: tag_on(&switch, &mut vlans)?,
                        switch,
                        switch_port,
                    }
                }
                (Mode::Vm, NicNeed::Port(cs)) => {
                    // Physical functions serving VFs stay in that mode
                    // until their VFs are released.
                    let serving: BTreeSet<u32> = host
                        .nics
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| {
                            vfs.get(&(host.name.to_string(), *i))
                                .is_some_and(|u| !u.is_empty())
                        })
                        .map(|(i, _)| host.nics[..i].iter().map(|n| n.ports).sum::<u32>())
                        .collect();
                    let taken = ports.entry(host.name.to_string()).or_default();
                    let up = uplink(fac, &host.name).map(|(p, _)| p);
                    let port = (0..host.ports())
                        .find(|&port| {
                            Some(port) != up
                                && !taken.contains(&port)
                                && !serving.contains(&port)
                                && host
                                    .nic_of_port(port)
                                    .is_some_and(|(n, _)| nic_model_ok(&cs, &host.nics[n].model))
                                && leaf_of(fac, &host.name, port).is_some()
                        })
                        .ok_or_else(no_port)?;
                    taken.insert(port);
                    let (switch, switch_port) = leaf(port)?;
                    Attachment::Port {
                        port,
                        vlan: tag_on(&switch, &mut vlans)?,
                        switch,
                        switch_port,
                    }
                }
                // Bare metal: the host's uplink, VLAN-tagged per link (a trunk).
                (Mode::Metal, _) => {
                    let (port, _) = uplink(fac, &host.name).ok_or_else(no_port)?;
                    let (switch, switch_port) = leaf(port)?;
                    Attachment::Port {
                        port,
                        vlan: tag_on(&switch, &mut vlans)?,
                        switch,
                        switch_port,
                    }
                }
            };
            endpoints.push(EndpointPlan {
                node: ep.node.clone(),
                socket: ep.socket,
                host: host.name.clone(),
                attach,
                addrs: ep
                    .addrs
                    .iter()
                    .filter_map(|a| a.cidr.parse().ok())
                    .collect(),
                emulation: ep.constraints.iter().find_map(|c| match (&c.op, &c.value) {
                    (mx_xir::Op::Eq, mx_xir::Value::Text(t)) if c.property == "emulation" => {
                        Some(t.clone())
                    }
                    _ => None,
                }),
            });
        }
        let shaped = emulation(link).is_some();
        let kind = link_kind(&hosts, &endpoints, shaped);
        if kind == LinkKind::Vxlan {
            tunnel_endpoints(fac, link, &endpoints)?;
        }
        let vni = (kind == LinkKind::Vxlan).then(|| {
            // A cursor, not a scan from the start: VNIs are handed out in order.
            while vnis.contains(&next_vni) {
                next_vni += 1;
            }
            vnis.insert(next_vni);
            next_vni
        });
        out.push(LinkPlan {
            link: link.name.clone(),
            kind,
            vni,
            hosts,
            endpoints,
            emulation: emulation(link),
            span: link.span,
        });
    }
    uplinks_hold(fac, &out, usage)?;
    Ok(out)
}

/// How a link is built, from where its endpoints are and how they attach:
/// taps on one host are joined there (an XDP pair, a bridge); VFs and ports
/// behind one leaf are joined by the leaf's VLAN; anything else is a VXLAN
/// segment, which hypervisors with taps join through their own VTEPs and
/// leaves with VFs or ports through theirs (the seed's hybrid virtio + vfio
/// case: the global/local boundary spread over two mechanisms).
///
/// A link that is shaped (capacity, latency or loss, or an endpoint's
/// emulation profile) is never an XDP pair: the redirect hands packets from
/// tap to tap below the traffic control layer, where the shaping lives.
pub fn link_kind(hosts: &[Name], endpoints: &[EndpointPlan], shaped: bool) -> LinkKind {
    let taps = endpoints
        .iter()
        .filter(|e| matches!(e.attach, Attachment::Tap { .. }))
        .count();
    let leaves: BTreeSet<&Name> = endpoints.iter().filter_map(|e| e.attach.switch()).collect();
    let shaped = shaped || endpoints.iter().any(|e| e.emulation.is_some());
    match (taps == endpoints.len(), leaves.len()) {
        (true, _) if hosts.len() == 1 && endpoints.len() == 2 && !shaped => LinkKind::XdpPair,
        (true, _) if hosts.len() == 1 => LinkKind::Bridge,
        (false, 1) if taps == 0 => LinkKind::Switched,
        _ => LinkKind::Vxlan,
    }
}

/// A VXLAN segment needs a tunnel endpoint wherever it is joined: on every
/// host with a tap on the link, and on every leaf with a VF or port on it.
fn tunnel_endpoints(
    fac: &Facility,
    link: &mx_xir::Link,
    endpoints: &[EndpointPlan],
) -> Result<(), Diagnostic> {
    for e in endpoints {
        let missing = match e.attach.switch() {
            None => fac
                .host(&e.host)
                .is_some_and(|h| h.underlay.is_none())
                .then(|| (format!("host `{}`", e.host), "has no underlay address")),
            Some(sw) => match fac.switches.iter().find(|s| s.name == *sw) {
                Some(s) if !s.vxlan => Some((
                    format!("leaf `{sw}`"),
                    "cannot map VLANs to VNIs (vxlan=False)",
                )),
                Some(s) if s.underlay.is_none() => {
                    Some((format!("leaf `{sw}`"), "has no underlay address"))
                }
                Some(_) => None,
                None => Some((format!("`{sw}`"), "is not a switch of the facility")),
            },
        };
        if let Some((what, why)) = missing {
            return Err(Diagnostic::error(
                code::E0307,
                format!("link `{}` needs a VXLAN tunnel endpoint on {what}, which {why}", link.name),
            )
            .primary(link.span.range(), format!("node `{}` joins it there", e.node))
            .help("give hosts and leaf switches `underlay='...'` (leaves also vxlan=True) in the facility, or keep the link's endpoints on one host with virtual NICs"));
        }
    }
    Ok(())
}

/// What a host's uplink carries: the cable's capacity, or the NIC port's if lower.
pub fn uplink_capacity(fac: &Facility, host: &str) -> Option<u64> {
    let (port, _) = uplink(fac, host)?;
    let h = fac.host(host)?;
    let nic = h.nic_of_port(port).map(|(n, _)| h.nics[n].capacity);
    let cable = fac.cable_at(host, port).map(|c| c.capacity);
    match (nic, cable) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The capacity that links crossing hosts ask of each host's uplink and of
/// each leaf switch's trunk to the spines: a link spanning several hosts
/// takes its capacity once on each of them, and once on each of its leaves
/// when it spans several leaves. Links without a capacity constraint are
/// best effort and count for nothing. Keyed by device (host or switch) name.
pub fn uplink_demand<'a>(
    fac: &Facility,
    plans: &'a [LinkPlan],
) -> BTreeMap<String, (u64, Vec<&'a LinkPlan>)> {
    let mut demand: BTreeMap<String, (u64, Vec<&LinkPlan>)> = BTreeMap::new();
    for p in plans.iter().filter(|p| p.hosts.len() > 1) {
        let Some(cap) = p.emulation.as_ref().and_then(|e| e.capacity) else {
            continue;
        };
        let leaves: std::collections::BTreeSet<String> = p
            .hosts
            .iter()
            .filter_map(|h| uplink(fac, h).map(|(_, l)| l))
            .collect();
        let spans = p
            .hosts
            .iter()
            .map(|h| h.to_string())
            .chain(if leaves.len() > 1 {
                leaves.into_iter().collect()
            } else {
                Vec::new()
            });
        for d in spans {
            let e = demand.entry(d).or_default();
            e.0 += cap;
            e.1.push(p);
        }
    }
    demand
}

/// Refuses a plan whose crossing links ask more of a host's uplink, or of a
/// leaf's trunk, than it carries (E0305), naming the largest of them.
fn uplinks_hold(fac: &Facility, plans: &[LinkPlan], usage: &Usage) -> Result<(), Diagnostic> {
    for (device, (mine, links)) in uplink_demand(fac, plans) {
        let leaf = fac.host(&device).is_none();
        let have = if leaf {
            crate::fabric::trunk_capacity(fac, &device)
        } else {
            uplink_capacity(fac, &device)
        };
        let Some(have) = have else {
            continue;
        };
        // Other experiments' links already use part of it.
        let want = mine + usage.uplink.get(&device).copied().unwrap_or(0);
        if want > have {
            let mut links = links;
            links.sort_by_key(|p| std::cmp::Reverse(p.emulation.as_ref().and_then(|e| e.capacity)));
            let mut d = Diagnostic::error(
                code::E0305,
                format!(
                    "links crossing {} `{device}` ask for {} and its {} carries {}{}",
                    if leaf { "leaf" } else { "host" },
                    rate(mine),
                    if leaf {
                        "trunk to the spines"
                    } else {
                        "uplink"
                    },
                    rate(have),
                    match usage.uplink.get(&device) {
                        Some(&used) if used > 0 =>
                            format!(" of which {} is already allocated", rate(used)),
                        _ => String::new(),
                    }
                ),
            )
            .primary(links[0].span.range(), "the largest of them");
            for l in links.iter().skip(1).take(3) {
                d = d.secondary(l.span.range(), "also crosses it");
            }
            return Err(d.help(
                "placement found no way to keep enough of these links off it; lower their capacity, keep their endpoints together (`host == ...`), or realize onto hosts with faster uplinks",
            ));
        }
    }
    Ok(())
}

fn rate(bps: u64) -> String {
    if bps >= 1_000_000_000 && bps.is_multiple_of(1_000_000_000) {
        format!("{} Gb/s", bps / 1_000_000_000)
    } else {
        format!("{} Mb/s", bps / 1_000_000)
    }
}

/// Capacity, latency and loss asked of a link; the value to emulate is the
/// one the constraint pins (`==`) or bounds (`<=`, `<`).
pub(crate) fn emulation(link: &mx_xir::Link) -> Option<Emulation> {
    let pick = |prop: &str| {
        link.constraints
            .iter()
            .filter(|c| c.property == prop)
            .find_map(|c| match (c.op, &c.value) {
                (Op::Eq | Op::Le | Op::Ge, Value::Int(i)) => Some(*i as f64),
                (Op::Eq | Op::Le | Op::Ge, Value::Float(f)) => Some(*f),
                (Op::Lt, Value::Int(i)) => Some((*i - 1) as f64),
                _ => None,
            })
    };
    let e = Emulation {
        capacity: pick("capacity").map(|v| v as u64),
        latency: pick("latency").map(|v| v as u64),
        loss: pick("loss"),
    };
    (e.capacity.is_some() || e.latency.is_some() || e.loss.is_some()).then_some(e)
}
