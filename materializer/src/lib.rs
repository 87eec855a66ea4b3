//! The materializer: a realization in, one bundle of self-describing
//! fragments per host out.
//!
//! Everything here is a pure function of the realization: device names, MACs
//! and file names are derived from the realization's tag (held in the
//! allocation table, so no two experiments share one) and the order of its
//! nodes and links, so the same realization gives byte-identical bundles and
//! a second experiment on the same host gets different names.
//!
//! ```
//! let (e, f) = ("e".parse().unwrap(), "f".parse().unwrap());
//! let mut real = mx_xir::Realization::new(&e, "e.mx", &f, "heuristic", 1);
//! real.tag = 0x00ab_cdef; // held in the allocation table
//! let bundles = mx_materializer::materialize(&real).unwrap();
//! assert!(bundles.is_empty()); // nothing placed, nothing to do
//! ```

use mx_diag::code;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use std::net::Ipv4Addr;

use mx_diag::Diagnostic;
use mx_xir::{
    Attachment, FRAGMENT_VERSION, Fragment, HostPlan, IfName, Ipv4Cidr, LinkKind, Mac, Machine,
    Manifest, ManifestEntry, Mode, Name, NameEntry, NetnsName, NicAttach, Realization, Scope, Spec,
    SwitchPlan, Uuid, VmGpu, VmNic, VmSpec,
};
use sha2::{Digest, Sha256};

/// The image a VM boots when the model names none: the bundled busybox guest.
pub const DEFAULT_IMAGE: &str = "mx-busybox";
/// UDP port of the VXLAN tunnels.
pub const VXLAN_PORT: u16 = 4789;

/// The fragments for one host, in the order the runtime's DAG would run them.
/// Its JSON form (`{experiment, host, fragments}`) is what the store carries
/// and the runtime keeps in an experiment's state.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Bundle {
    /// The experiment.
    pub experiment: Name,
    /// The host (or switch).
    pub host: Name,
    /// Its fragments.
    pub fragments: Vec<Fragment>,
}

/// The tag as it appears in device names: six hex digits.
pub fn tag_hex(tag: u32) -> String {
    format!("{tag:06x}")
}

/// A short tag derived from a host's name, for the host-side name of its
/// underlay veth (shared by every experiment on the host).
fn host_tag(name: &str) -> String {
    let d = Sha256::digest(name.as_bytes());
    format!("{:02x}{:02x}{:02x}", d[0], d[1], d[2])
}

/// The namespace a `netns` host lives in.
pub fn host_netns(host: &str) -> Result<NetnsName, Diagnostic> {
    NetnsName::new(format!("mxh-{host}"))
        .map_err(|e| unmaterializable(e.to_string(), "rename the host"))
}

/// The namespace holding a one-machine facility's underlay bridge.
pub fn underlay_netns(facility: &str) -> Result<NetnsName, Diagnostic> {
    NetnsName::new(format!("mxu-{facility}"))
        .map_err(|e| unmaterializable(e.to_string(), "rename the facility"))
}

/// A device name mx derives; refused (never truncated) if the kernel would
/// not take it.
fn ifname(name: String) -> Result<IfName, Diagnostic> {
    IfName::new(name).map_err(|e| unmaterializable(e.to_string(), "realize it again"))
}

/// Turns a realization into bundles, one per host (and per leaf switch with
/// VLANs to set), sorted by name.
pub fn materialize(real: &Realization) -> Result<Vec<Bundle>, Diagnostic> {
    if real.tag == 0 || real.tag >= 1 << 24 {
        return Err(unmaterializable(
            format!(
                "realization `{}` holds no experiment tag (it was made before tags were allocated)",
                real.name
            ),
            "realize it again with this mxc",
        ));
    }
    let t = tag_hex(real.tag);
    let tag_bytes = real.tag;
    let hosts: BTreeMap<&str, &HostPlan> =
        real.hosts.iter().map(|h| (h.name.as_str(), h)).collect();
    let switches: BTreeMap<&str, &SwitchPlan> =
        real.switches.iter().map(|s| (s.name.as_str(), s)).collect();
    let mut out: BTreeMap<Name, Vec<Fragment>> = BTreeMap::new();
    let frag = |host: &Name, scope: Scope, id: String, spec: Spec| Fragment {
        version: FRAGMENT_VERSION.to_string(),
        id,
        experiment: real.name.clone(),
        tag: real.tag,
        host: host.clone(),
        scope,
        spec,
    };

    // One-machine hosts and switches: their namespace and underlay
    // attachment.
    let netns_devices = real
        .hosts
        .iter()
        .filter(|h| h.netns)
        .map(|h| (&h.name, h.underlay))
        .chain(
            real.switches
                .iter()
                .filter(|s| s.netns)
                .map(|s| (&s.name, s.underlay)),
        );
    for (name, underlay) in netns_devices {
        let Some(addr) = underlay else {
            return Err(unmaterializable(
                format!("netns device `{name}` has no underlay address"),
                "give it `underlay='192.0.2.N'` in the facility model",
            ));
        };
        out.entry(name.clone()).or_default().push(frag(
            name,
            Scope::Global,
            format!("netns/{name}"),
            Spec::Netns {
                netns: host_netns(name)?,
                underlay_netns: underlay_netns(&real.facility)?,
                underlay_addr: Ipv4Cidr { addr, len: 24 },
                device: ifname("mxul".to_string())?,
                peer: ifname(format!("u{}", host_tag(name)))?,
            },
        ));
    }

    // VM NICs, built link by link, then attached to their VMs in socket order.
    let mut nics: BTreeMap<&str, Vec<(u32, VmNic)>> = BTreeMap::new();
    let mut neighbours: BTreeMap<&str, BTreeSet<Ipv4Addr>> = BTreeMap::new();
    let mode: BTreeMap<&str, Mode> = real
        .nodes
        .iter()
        .map(|p| (p.node.as_str(), p.mode))
        .collect();
    let mut local: BTreeMap<Name, Vec<Fragment>> = BTreeMap::new();
    let mut nic_count: u32 = 0;
    let mut switch_vlans: BTreeSet<(Name, u32, u16)> = BTreeSet::new();
    let port_device = |host: &str, port: u32| -> Option<IfName> {
        hosts.get(host).and_then(|h| h.port_device(port)).cloned()
    };
    let underlay = |h: &str| -> Result<Ipv4Addr, Diagnostic> {
        hosts.get(h).and_then(|p| p.underlay).ok_or_else(|| {
            unmaterializable(
                format!("host `{h}` carries a VXLAN segment but has no underlay address"),
                "give the host `underlay='...'` in the facility model",
            )
        })
    };
    let leaf_underlay = |sw: &str| -> Result<Ipv4Addr, Diagnostic> {
        switches.get(sw).and_then(|p| p.underlay).ok_or_else(|| {
            unmaterializable(
                format!("leaf `{sw}` carries a VXLAN segment but has no underlay address"),
                "give the leaf `vxlan=True, underlay='...'` in the facility model",
            )
        })
    };
    for (li, link) in real.links.iter().enumerate() {
        // The segment's tunnel endpoints: hosts with taps on it, and the
        // leaves its VFs and ports hang off.
        let mut tap_hosts: BTreeSet<&str> = BTreeSet::new();
        let mut leaves: BTreeSet<&str> = BTreeSet::new();
        for ep in &link.endpoints {
            match ep.attach.switch() {
                None => tap_hosts.insert(ep.host.as_str()),
                Some(sw) => leaves.insert(sw.as_str()),
            };
        }
        let mut vteps: BTreeMap<&str, Ipv4Addr> = BTreeMap::new();
        if link.kind == LinkKind::Vxlan {
            for h in &tap_hosts {
                vteps.insert(h, underlay(h)?);
            }
            for sw in &leaves {
                vteps.insert(sw, leaf_underlay(sw)?);
            }
        }
        let others = |me: &str| -> Vec<Ipv4Addr> {
            let mut v: Vec<Ipv4Addr> = vteps
                .iter()
                .filter(|(d, _)| **d != me)
                .map(|(_, a)| *a)
                .collect();
            v.sort();
            v.dedup();
            v
        };
        // A point-to-point segment between two hosts' taps, unshaped: each
        // host maps its tap straight into its VTEP with an XDP redirect, as
        // the seed prefers, instead of a bridge per link per host (whose
        // teardown alone costs the kernel about 16 ms). Shaped links keep
        // the bridge: the redirect passes below the qdiscs that shape.
        let xdp_vtep = link.kind == LinkKind::Vxlan
            && link.endpoints.len() == 2
            && leaves.is_empty()
            && tap_hosts.len() == 2
            && link.emulation.is_none()
            && link
                .endpoints
                .iter()
                .all(|e| e.emulation.is_none() && matches!(e.attach, Attachment::Tap { .. }));
        let mut taps: BTreeMap<&str, Vec<IfName>> = BTreeMap::new();
        for ep in &link.endpoints {
            let ips: Vec<Ipv4Addr> = link
                .endpoints
                .iter()
                .filter(|o| o.node != ep.node)
                .flat_map(|o| o.addrs.iter().map(|a| a.addr))
                .collect();
            let vm = mode.get(ep.node.as_str()) == Some(&Mode::Vm);
            let mac = mac(tag_bytes, nic_count)?;
            nic_count += 1;
            // A VF's or a whole port's leaf port carries the link's VLAN
            // (tagged by the NIC for VFs), mapped to the VNI where the
            // segment reaches beyond the leaf.
            if let Attachment::Vf {
                port,
                vlan,
                switch,
                switch_port,
                ..
            }
            | Attachment::Port {
                port,
                vlan,
                switch,
                switch_port,
            } = &ep.attach
                && switch_vlans.insert((switch.clone(), *switch_port, *vlan))
            {
                let vxlan = link.kind == LinkKind::Vxlan;
                out.entry(switch.clone()).or_default().push(frag(
                    switch,
                    Scope::Global,
                    format!("switch_vlan/{switch}-{switch_port}-{vlan}"),
                    Spec::SwitchVlan {
                        switch_port: *switch_port,
                        peer: ep.host.clone(),
                        port: *port,
                        vlan: *vlan,
                        untagged: matches!(ep.attach, Attachment::Port { .. }),
                        vni: link.vni.filter(|_| vxlan),
                        local: vteps.get(switch.as_str()).copied(),
                        remotes: if vxlan { others(switch) } else { Vec::new() },
                    },
                ));
            }
            let (attach, model) = match &ep.attach {
                Attachment::Tap { model } => {
                    let device = ifname(format!("t{t}{:x}", nic_count - 1))?;
                    taps.entry(&ep.host).or_default().push(device.clone());
                    local.entry(ep.host.clone()).or_default().push(frag(
                        &ep.host,
                        Scope::Local,
                        format!("tap/{device}"),
                        Spec::Tap {
                            device: device.clone(),
                            vm: ep.node.clone(),
                        },
                    ));
                    if let Some(name) = &ep.emulation {
                        let p = profile(name).ok_or_else(|| {
                            unmaterializable(
                                format!("`{name}` is not an emulation profile"),
                                "one of wifi, optical, lte, satellite",
                            )
                        })?;
                        local.entry(ep.host.clone()).or_default().push(frag(
                            &ep.host,
                            Scope::Local,
                            format!("emulation/{device}-sender"),
                            Spec::Emulation {
                                device: device.clone(),
                                rate: Some(p.rate),
                                latency: Some(p.latency),
                                loss: (p.loss > 0.0).then_some(p.loss),
                                jitter: (p.jitter > 0).then_some(p.jitter),
                                sender: true,
                                profile: Some(name.clone()),
                            },
                        ));
                    }
                    (NicAttach::Tap { device }, model.clone())
                }
                Attachment::Vf { port, vf, vlan, .. } => {
                    let pf = port_device(&ep.host, *port);
                    out.entry(ep.host.clone()).or_default().push(frag(
                        &ep.host,
                        Scope::Global,
                        format!("vf/{}-{port}-{vf}", ep.host),
                        Spec::Vf {
                            pf_port: *port,
                            pf: pf.clone(),
                            vf: *vf,
                            vlan: *vlan,
                            mac: mac.clone(),
                            spoofcheck: true,
                        },
                    ));
                    (
                        NicAttach::Vf {
                            pf_port: *port,
                            pf,
                            vf: *vf,
                        },
                        "vf".to_string(),
                    )
                }
                Attachment::Port { port, .. } => (
                    NicAttach::Passthrough {
                        port: *port,
                        device: port_device(&ep.host, *port),
                    },
                    "passthrough".to_string(),
                ),
            };
            if vm {
                neighbours.entry(&ep.node).or_default().extend(ips);
                let no_offload = link.kind == LinkKind::XdpPair || xdp_vtep;
                nics.entry(&ep.node).or_default().push((
                    ep.socket,
                    VmNic {
                        link: link.link.clone(),
                        model,
                        mac,
                        addrs: ep.addrs.clone(),
                        attach,
                        no_offload,
                    },
                ));
            }
        }
        match link.kind {
            LinkKind::XdpPair => {
                let pair = match taps.iter().next() {
                    Some((host, pair)) if taps.len() == 1 && pair.len() == 2 => (host, pair),
                    _ => {
                        return Err(unmaterializable(
                            format!(
                                "XDP link `{}` does not join two taps on one host",
                                link.link
                            ),
                            "an XDP pair joins two VMs' virtual NICs on one hypervisor; realize it again",
                        ));
                    }
                };
                let (host, pair) = pair;
                let host = hosts.get(host).map(|h| h.name.clone()).ok_or_else(|| {
                    unmaterializable(
                        format!("host `{host}` is not in the realization"),
                        "realize it again",
                    )
                })?;
                local.entry(host.clone()).or_default().push(frag(
                    &host,
                    Scope::Local,
                    format!("xdp_pair/{}-{}", pair[0], pair[1]),
                    Spec::XdpPair {
                        a: pair[0].clone(),
                        b: pair[1].clone(),
                    },
                ));
            }
            LinkKind::Switched => {}
            LinkKind::Bridge | LinkKind::Vxlan => {
                if link.kind == LinkKind::Bridge && (taps.len() != 1 || !leaves.is_empty()) {
                    return Err(unmaterializable(
                        format!(
                            "bridged link `{}` does not join taps on one host",
                            link.link
                        ),
                        "realize it again",
                    ));
                }
                for (host, ports) in &taps {
                    let hname = hosts.get(host).map(|h| h.name.clone()).ok_or_else(|| {
                        unmaterializable(
                            format!("host `{host}` is not in the realization"),
                            "realize it again",
                        )
                    })?;
                    let mut ports = ports.clone();
                    if link.kind == LinkKind::Vxlan {
                        let vni = link.vni.ok_or_else(|| {
                            unmaterializable(
                                format!("VXLAN link `{}` has no VNI", link.link),
                                "realize it again",
                            )
                        })?;
                        let device = ifname(format!("v{t}{li:x}"))?;
                        out.entry(hname.clone()).or_default().push(frag(
                            &hname,
                            Scope::Global,
                            format!("vtep/{host}/{device}"),
                            Spec::Vtep {
                                device: device.clone(),
                                vni,
                                local: underlay(host)?,
                                remotes: others(host),
                                port: VXLAN_PORT,
                            },
                        ));
                        if xdp_vtep && ports.len() == 1 {
                            local.entry(hname.clone()).or_default().push(frag(
                                &hname,
                                Scope::Local,
                                format!("xdp_pair/{}-{}", ports[0], device),
                                Spec::XdpPair {
                                    a: ports[0].clone(),
                                    b: device,
                                },
                            ));
                            continue;
                        }
                        ports.push(device);
                    }
                    let device = ifname(format!("b{t}{li:x}"))?;
                    local.entry(hname.clone()).or_default().push(frag(
                        &hname,
                        Scope::Local,
                        format!("bridge/{host}/{device}"),
                        Spec::Bridge { device, ports },
                    ));
                }
            }
        }
        if let Some(em) = &link.emulation {
            for (host, devs) in &taps {
                let Some(h) = hosts.get(host) else { continue };
                for d in devs {
                    local.entry(h.name.clone()).or_default().push(frag(
                        &h.name,
                        Scope::Local,
                        format!("emulation/{d}"),
                        Spec::Emulation {
                            device: d.clone(),
                            rate: em.capacity,
                            latency: em.latency,
                            loss: em.loss,
                            jitter: None,
                            sender: false,
                            profile: None,
                        },
                    ));
                }
            }
        }
    }

    // VMs, in experiment order.
    let mut neighbour_names = if real.resolve_names {
        neighbour_names(real)
    } else {
        BTreeMap::new()
    };
    for p in real.nodes.iter().filter(|p| p.mode == Mode::Vm) {
        let memory_mib = p.memory / (1 << 20);
        if p.cores == 0 || memory_mib < 64 {
            return Err(unmaterializable(
                format!(
                    "node `{}` asks for {} cores and {memory_mib} MiB",
                    p.node, p.cores
                ),
                "a VM needs at least one core and 64 MiB",
            ));
        }
        let mut vm_nics = nics.remove(p.node.as_str()).unwrap_or_default();
        vm_nics.sort_by_key(|(socket, _)| *socket);
        let host_clock = hosts.get(p.host.as_str()).and_then(|h| h.clock);
        let cpu_share = match (p.profile.clock, host_clock) {
            (Some(want), Some(have)) if want < have => {
                Some((want as f64 / have as f64 * 1e4).round() / 1e4)
            }
            _ => None,
        };
        let machine = match p.arch.as_str() {
            "x86_64" => Machine::Q35,
            _ => Machine::Virt,
        };
        let image = match &p.profile.image {
            None => Name::new(DEFAULT_IMAGE).expect("a plain name"),
            Some(i) => Name::new(i.as_str()).map_err(|e| {
                unmaterializable(
                    format!("node `{}`: image {e}", p.node),
                    "images are named like `bookworm` or `mx-busybox`",
                )
            })?,
        };
        local.entry(p.host.clone()).or_default().push(frag(
            &p.host,
            Scope::Local,
            format!("vm/{}", p.node),
            Spec::Vm(Box::new(VmSpec {
                name: p.node.clone(),
                arch: p.arch.clone(),
                machine,
                vcpus: p.cores,
                memory_mib,
                disk: p.disk,
                image,
                nics: vm_nics.into_iter().map(|(_, n)| n).collect(),
                cpu_share,
                tdf: p.profile.tdf,
                pcie: p.profile.pcie,
                membus: p.profile.membus,
                kernel_args: p.profile.kernel_args.clone(),
                // Held in the allocation table, so pinned VMs of different
                // experiments never share a core.
                cpus: p.cpus.clone(),
                gpu: vm_gpu(p, tag_bytes)?,
                neighbours: neighbours
                    .remove(p.node.as_str())
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
                routes: p.routes.clone(),
                forward: p.forward,
                hosts: neighbour_names.remove(p.node.as_str()).unwrap_or_default(),
            })),
        ));
    }

    // Names: every node's experiment address (the first address of its
    // lowest-numbered interface that has one), for the guests of every host
    // with VMs to resolve.
    if real.resolve_names {
        let entries = names(real);
        let vm_hosts: BTreeSet<&Name> = real
            .nodes
            .iter()
            .filter(|p| p.mode == Mode::Vm)
            .map(|p| &p.host)
            .collect();
        if !entries.is_empty() {
            for h in vm_hosts {
                local.entry(h.clone()).or_default().push(frag(
                    h,
                    Scope::Local,
                    format!("names/{h}"),
                    Spec::Names {
                        entries: entries.clone(),
                    },
                ));
            }
        }
    }

    // Global fragments first, then local ones by kind (taps, bridges, XDP,
    // names, VMs, emulation): the order the runtime's DAG runs them in.
    let rank = |f: &Fragment| match f.spec {
        Spec::Netns { .. } => 0,
        Spec::Vtep { .. } | Spec::Vf { .. } | Spec::SwitchVlan { .. } => 1,
        Spec::Tap { .. } => 2,
        Spec::Bridge { .. } => 3,
        Spec::XdpPair { .. } => 4,
        Spec::Names { .. } => 5,
        Spec::Vm(_) => 6,
        Spec::Emulation { .. } => 7,
    };
    for (host, frags) in local {
        out.entry(host).or_default().extend(frags);
    }
    Ok(out
        .into_iter()
        .map(|(host, mut fragments)| {
            fragments.sort_by_key(|f| rank(f)); // stable: creation order within a kind
            Bundle {
                experiment: real.name.clone(),
                host,
                fragments,
            }
        })
        .collect())
}

/// Every node's experiment address, in node order: the first address of
/// its lowest-numbered interface (socket) that has one. Nodes without an
/// address do not resolve.
pub fn names(real: &Realization) -> Vec<NameEntry> {
    let first = first_addresses(real);
    real.nodes
        .iter()
        .filter_map(|p| {
            first.get(p.node.as_str()).map(|&(_, addr, _)| NameEntry {
                name: p.node.clone(),
                addr,
            })
        })
        .collect()
}

/// Each node's experiment address: (socket, address, link index).
fn first_addresses(real: &Realization) -> BTreeMap<&str, (u32, Ipv4Addr, usize)> {
    let mut first: BTreeMap<&str, (u32, Ipv4Addr, usize)> = BTreeMap::new();
    for (li, l) in real.links.iter().enumerate() {
        for e in &l.endpoints {
            if let Some(a) = e.addrs.first() {
                let best = first
                    .entry(e.node.as_str())
                    .or_insert((e.socket, a.addr, li));
                if e.socket < best.0 {
                    *best = (e.socket, a.addr, li);
                }
            }
        }
    }
    first
}

/// Where a node's neighbour resolves to another address than its
/// experiment address: when that address is on no link the two share, the
/// neighbour's name means its address on the first link they do share (in
/// the node's socket order), so `ping NAME` reaches a neighbour without
/// routes. By node, then neighbour.
pub fn neighbour_names(real: &Realization) -> BTreeMap<&str, Vec<NameEntry>> {
    let first = first_addresses(real);
    // The links each node is on, to ask whether two nodes share one.
    let mut on: std::collections::HashSet<(&str, usize)> = Default::default();
    for (li, l) in real.links.iter().enumerate() {
        for e in &l.endpoints {
            on.insert((e.node.as_str(), li));
        }
    }
    let mut best: BTreeMap<(&str, &str), (u32, Ipv4Addr, &Name)> = BTreeMap::new();
    for (li, l) in real.links.iter().enumerate() {
        for m in &l.endpoints {
            let (Some(a), Some(&(_, _, home))) = (m.addrs.first(), first.get(m.node.as_str()))
            else {
                continue;
            };
            if home == li {
                continue;
            }
            for n in &l.endpoints {
                if n.node == m.node || on.contains(&(n.node.as_str(), home)) {
                    continue;
                }
                let e = best
                    .entry((n.node.as_str(), m.node.as_str()))
                    .or_insert((n.socket, a.addr, &m.node));
                if n.socket < e.0 {
                    *e = (n.socket, a.addr, &m.node);
                }
            }
        }
    }
    let mut out: BTreeMap<&str, Vec<NameEntry>> = BTreeMap::new();
    for ((n, _), (_, addr, m)) in best {
        out.entry(n).or_default().push(NameEntry {
            name: m.clone(),
            addr,
        });
    }
    out
}

/// How a VM's GPU grant is handed over, or why it cannot be.
fn vm_gpu(p: &mx_xir::Placement, tag: u32) -> Result<Option<VmGpu>, Diagnostic> {
    let Some(g) = &p.gpu else {
        return Ok(None);
    };
    let Some(device) = g.device.clone() else {
        return Err(unmaterializable(
            format!(
                "node `{}` holds GPU {} of host {}, whose PCI address the facility does not name",
                p.node, g.index, p.host
            ),
            "name the GPUs' addresses in the facility: gpu(..., devices=['0000:3b:00.0'])",
        ));
    };
    let model = g.model.clone();
    Ok(Some(match (g.slice, g.via.as_deref(), &g.mdev) {
        (None, ..) => VmGpu::Passthrough { model, device },
        (Some(s), Some("mdev"), Some(t)) => VmGpu::Mdev {
            model,
            parent: device,
            mdev_type: t.clone(),
            // Deterministic: the experiment's tag and the slice's place.
            uuid: Uuid::new(format!(
                "{tag:08x}-6d78-4000-8000-{:06x}{:06x}",
                g.index & 0xff_ffff,
                s & 0xff_ffff
            ))
            .map_err(|e| unmaterializable(e.to_string(), "realize it again"))?,
        },
        (Some(s), Some("vf"), _) => VmGpu::Vf {
            model,
            parent: device,
            vf: s,
        },
        (Some(_), ..) => {
            return Err(unmaterializable(
                format!(
                    "node `{}` holds a virtual GPU of host {}'s GPU {}, and the facility does not say how it is shared",
                    p.node, p.host, g.index
                ),
                "declare the sharing: gpu(..., mdev='nvidia-472', slices=4) or gpu(..., vfs=8)",
            ));
        }
    }))
}

/// A named sender-side emulation profile.
pub struct EmulationProfile {
    /// Rate in bits per second.
    pub rate: u64,
    /// One-way delay in nanoseconds.
    pub latency: u64,
    /// Delay variation in nanoseconds.
    pub jitter: u64,
    /// Loss fraction.
    pub loss: f64,
}

/// The profiles `emulation == ...` names on a vNIC: typical figures of the
/// medium (802.11g-class WiFi, a metro fibre hop, LTE, geostationary
/// satellite), documented in FIDELITY.md.
pub fn profile(name: &str) -> Option<EmulationProfile> {
    let (rate, latency, jitter, loss) = match name {
        "wifi" => (54_000_000, 2_000_000, 1_000_000, 0.005),
        "optical" => (10_000_000_000, 5_000, 0, 0.0),
        "lte" => (50_000_000, 30_000_000, 10_000_000, 0.001),
        "satellite" => (10_000_000, 300_000_000, 20_000_000, 0.005),
        _ => return None,
    };
    Some(EmulationProfile {
        rate,
        latency,
        jitter,
        loss,
    })
}

/// A locally administered MAC: the experiment tag, then the NIC's index.
/// An experiment has at most 65,536 NICs, so MACs never wrap into another
/// NIC's.
fn mac(tag: u32, index: u32) -> Result<Mac, Diagnostic> {
    if index > 0xffff {
        return Err(unmaterializable(
            "the experiment has more than 65,536 NICs".to_string(),
            "split it into several experiments",
        ));
    }
    Mac::new(format!(
        "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        (tag >> 16) & 0xff,
        (tag >> 8) & 0xff,
        tag & 0xff,
        (index >> 8) & 0xff,
        index & 0xff
    ))
    .map_err(|e| unmaterializable(e.to_string(), "realize it again"))
}

fn unmaterializable(message: String, help: &str) -> Diagnostic {
    Diagnostic::error(code::E0401, message).help(help)
}

/// The file name of a fragment inside its bundle.
pub fn file_name(index: usize, f: &Fragment) -> String {
    format!("{index:03}-{}.json", f.id.replace('/', "-"))
}

/// Writes each bundle to `dir/<host>/`: the fragments, then `manifest.json`
/// with their digests. Existing bundle directories are replaced; a host is
/// a [`Name`], so `dir/<host>` is always a directory inside `dir`.
pub fn write(dir: &Path, bundles: &[Bundle]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for b in bundles {
        let hdir = dir.join(&b.host);
        if hdir.exists() {
            std::fs::remove_dir_all(&hdir)?;
        }
        std::fs::create_dir_all(&hdir)?;
        let mut entries = Vec::new();
        for (i, f) in b.fragments.iter().enumerate() {
            let text = to_json(f);
            let file = file_name(i, f);
            std::fs::write(hdir.join(&file), &text)?;
            entries.push(ManifestEntry {
                id: f.id.clone(),
                file,
                sha256: hex(&Sha256::digest(text.as_bytes())),
            });
        }
        let manifest = Manifest {
            version: FRAGMENT_VERSION.to_string(),
            experiment: b.experiment.clone(),
            host: b.host.clone(),
            fragments: entries,
        };
        std::fs::write(hdir.join("manifest.json"), to_json(&manifest))?;
    }
    Ok(())
}

/// Pretty JSON with a trailing newline, the form every bundle file has.
pub fn to_json<T: serde::Serialize>(v: &T) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("fragments serialize");
    s.push('\n');
    s
}

/// Lowercase hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
