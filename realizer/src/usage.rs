//! What is already allocated on a facility, and what a realization adds.
//!
//! The allocation table (persisted by the caller) is loaded into a [`Usage`]
//! before realizing; a realization's own demands are added to a copy as it
//! is built, so a host is never over-committed within or across experiments.

use std::collections::{BTreeMap, BTreeSet};

use mx_xir::{Attachment, Facility, Host, Mode, Realization};

/// Per-host consumption.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostUse {
    pub cores: u32,
    pub memory: u64,
    pub disk: u64,
    /// A bare-metal allocation holds the whole host.
    pub metal: bool,
    /// VFs in use per NIC index.
    pub vfs: BTreeMap<usize, BTreeSet<u32>>,
    /// Ports in use (passthrough or metal access).
    pub ports: BTreeSet<u32>,
    /// GPUs held by VMs, by index.
    pub gpus: BTreeMap<u32, crate::gpus::GpuUse>,
    /// Host cores held by pinned VMs.
    pub pinned: BTreeSet<u32>,
}

/// Consumption of a whole facility.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub hosts: BTreeMap<String, HostUse>,
    pub vnis: BTreeSet<u32>,
    /// VLAN tags in use per leaf switch.
    pub vlans: BTreeMap<String, BTreeSet<u16>>,
    /// Bits per second of link capacity crossing each host's uplink and
    /// each leaf switch's trunk, by device name.
    pub uplink: BTreeMap<String, u64>,
    /// Experiment tags in use (in every facility: a tag names devices on
    /// the machines an experiment runs on).
    pub tags: BTreeSet<u32>,
}

impl Usage {
    pub fn host(&self, name: &str) -> HostUse {
        self.hosts.get(name).cloned().unwrap_or_default()
    }

    /// Free cores, memory and disk on `host` for VMs.
    pub fn free(&self, host: &Host) -> (u32, u64, u64) {
        let u = self.hosts.get(host.name.as_str());
        let (c, m, d) = u.map_or((0, 0, 0), |u| (u.cores, u.memory, u.disk));
        (
            (host.cores - host.reserved_cores).saturating_sub(c),
            (host.memory - host.reserved_memory).saturating_sub(m),
            host.disk.saturating_sub(d),
        )
    }

    /// Whether nothing at all is allocated on `host` (bare metal needs that).
    pub fn idle(&self, host: &str) -> bool {
        self.hosts
            .get(host)
            .is_none_or(|u| *u == HostUse::default())
    }

    /// Adds a realization's allocations.
    pub fn add(&mut self, fac: &Facility, real: &Realization) {
        self.tags.insert(real.tag);
        for (host, (bps, _)) in crate::links::uplink_demand(fac, &real.links) {
            *self.uplink.entry(host.to_string()).or_default() += bps;
        }
        for p in &real.nodes {
            let u = self.hosts.entry(p.host.to_string()).or_default();
            match p.mode {
                Mode::Metal => u.metal = true,
                Mode::Vm => {
                    u.cores += p.cores;
                    u.memory += p.memory;
                    u.disk += p.disk;
                    if let Some(g) = &p.gpu {
                        crate::gpus::take(&mut u.gpus, g);
                    }
                    u.pinned.extend(p.cpus.iter().copied());
                }
            }
        }
        for l in &real.links {
            if let Some(v) = l.vni {
                self.vnis.insert(v);
            }
            for e in &l.endpoints {
                let host = fac.host(&e.host);
                match &e.attach {
                    Attachment::Vf { port, vf, vlan, .. } => {
                        let nic = host
                            .and_then(|h| h.nic_of_port(*port))
                            .map_or(0, |(n, _)| n);
                        self.hosts
                            .entry(e.host.to_string())
                            .or_default()
                            .vfs
                            .entry(nic)
                            .or_default()
                            .insert(*vf);
                        if let Some(leaf) = host.and_then(|h| leaf_of(fac, &h.name, *port)) {
                            self.vlans.entry(leaf).or_default().insert(*vlan);
                        }
                    }
                    Attachment::Port { port, vlan, .. } => {
                        // A bare-metal node's own uplink is part of its host, not a port taken.
                        let metal = real
                            .nodes
                            .iter()
                            .any(|p| p.node == e.node && p.mode == Mode::Metal);
                        if !metal {
                            self.hosts
                                .entry(e.host.to_string())
                                .or_default()
                                .ports
                                .insert(*port);
                        }
                        if let Some(leaf) = leaf_of(fac, &e.host, *port) {
                            self.vlans.entry(leaf).or_default().insert(*vlan);
                        }
                    }
                    Attachment::Tap { .. } => {}
                }
            }
        }
    }
}

/// The switch a host port is cabled to.
pub fn leaf_of(fac: &Facility, host: &str, port: u32) -> Option<String> {
    cabled_to(fac, host, port).map(|(s, _)| s)
}

/// The device and port at the other end of a host port's cable.
pub fn cabled_to(fac: &Facility, host: &str, port: u32) -> Option<(String, u32)> {
    fac.cabled_to(host, port).map(|(d, p)| (d.to_string(), p))
}

/// The first cabled port of a host, used as its uplink.
pub fn uplink(fac: &Facility, host: &str) -> Option<(u32, String)> {
    let h = fac.host(host)?;
    (0..h.ports()).find_map(|p| leaf_of(fac, host, p).map(|l| (p, l)))
}

/// The `want` lowest host cores a pinned VM can take on `host`: past the
/// cores kept for the host itself, not held by another pinned VM.
pub fn free_cores(host: &Host, pinned: &BTreeSet<u32>, want: u32) -> Option<Vec<u32>> {
    let cores: Vec<u32> = (host.reserved_cores..host.cores)
        .filter(|c| !pinned.contains(c))
        .take(want as usize)
        .collect();
    (cores.len() == want as usize).then_some(cores)
}
