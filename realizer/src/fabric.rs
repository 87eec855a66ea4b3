//! The fabric's capacity as placement sees it: what each link costs when it
//! crosses hosts, and what links that cross hosts ask of each host's uplink
//! and of each leaf switch's trunk to the spines.
//!
//! Both engines use this model, so they optimize the same thing: the sum of
//! the weights of crossing link endpoints, where a link's weight is its
//! capacity (in units of the experiment's smallest link), and a penalty for
//! every uplink or trunk asked for more than it has free. The planner
//! ([`crate::links`]) and the checker ([`crate::verify`]) then hold the
//! result to the same capacities, each on its own.

use mx_xir::{Experiment, Facility};

use crate::usage::{Usage, uplink};

/// A link without a capacity constraint weighs as much as a 1 Gb/s one: it is
/// best effort, but still traffic worth keeping on one host.
const BEST_EFFORT: u64 = 1_000_000_000;

/// Penalty for oversubscribing a device by one smallest link's capacity, in
/// crossing-endpoint weights: a few crossings are better than one overflow.
const OVERFLOW: i64 = 8;

/// The capacity (bits per second) a link asks for, if it constrains it.
pub fn capacity(link: &mx_xir::Link) -> Option<u64> {
    crate::links::emulation(link).and_then(|e| e.capacity)
}

/// The capacity a link's crossing counts for, best effort included.
fn nominal(link: &mx_xir::Link) -> u64 {
    capacity(link).unwrap_or(BEST_EFFORT).max(1)
}

/// Per link, its weight: its capacity over the smallest link's, at least 1.
/// All links alike (the common case) weigh 1 each.
pub fn weights(exp: &Experiment) -> Vec<i64> {
    let unit = exp.links.iter().map(nominal).min().unwrap_or(1);
    exp.links
        .iter()
        .map(|l| nominal(l).div_ceil(unit).min(1 << 20) as i64)
        .collect()
}

/// The trunk of a leaf switch: the summed capacity of its cables to other
/// switches (traffic spreads over the spines). `None` when it has none.
pub fn trunk_capacity(fac: &Facility, leaf: &str) -> Option<u64> {
    let switches: std::collections::BTreeSet<&str> =
        fac.switches.iter().map(|s| s.name.as_str()).collect();
    let caps: Vec<u64> = fac
        .cables
        .iter()
        .filter(|c| {
            let [a, b] = &c.ends;
            (a.device == leaf && switches.contains(b.device.as_str()) && b.device != leaf)
                || (b.device == leaf && switches.contains(a.device.as_str()) && a.device != leaf)
        })
        .map(|c| c.capacity)
        .collect();
    (!caps.is_empty()).then(|| caps.iter().sum())
}

/// The devices that links crossing hosts load, by index: hosts first (in
/// facility order), then leaf switches.
pub struct Fabric {
    /// Per host, the index (past the hosts) of its leaf, when cabled.
    pub leaf: Vec<Option<usize>>,
    /// Per device, the capacity still free for this experiment; `None` for
    /// devices that are not limited (uncabled hosts, leaves without a trunk).
    pub room: Vec<Option<u64>>,
    /// Device names: the hosts, then the leaves found behind them.
    pub names: Vec<String>,
    /// Per link, the capacity it asks for (`None`: best effort, loads nothing).
    pub demand: Vec<Option<u64>>,
    /// Per link, its weight (see [`weights`]).
    pub weight: Vec<i64>,
    /// Per link, its endpoints' node indices (in experiment order).
    pub links: Vec<Vec<usize>>,
    /// The smallest capacity any link asks for: the unit of the overflow penalty.
    pub unit: u64,
}

impl Fabric {
    pub fn new(exp: &Experiment, fac: &Facility, usage: &Usage) -> Fabric {
        let hosts = fac.hosts.len();
        let mut names: Vec<String> = fac.hosts.iter().map(|h| h.name.to_string()).collect();
        let mut leaf = Vec::with_capacity(hosts);
        for h in &fac.hosts {
            leaf.push(uplink(fac, &h.name).map(|(_, l)| {
                names.iter().skip(hosts).position(|n| *n == l).map_or_else(
                    || {
                        names.push(l.clone());
                        names.len() - 1
                    },
                    |i| hosts + i,
                )
            }));
        }
        let used = |d: &str| usage.uplink.get(d).copied().unwrap_or(0);
        let room = names
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let cap = if i < hosts {
                    crate::links::uplink_capacity(fac, d)
                } else {
                    trunk_capacity(fac, d)
                };
                cap.map(|c| c.saturating_sub(used(d)))
            })
            .collect();
        let demand: Vec<Option<u64>> = exp.links.iter().map(capacity).collect();
        let index = crate::matching::node_index(exp);
        Fabric {
            links: exp
                .links
                .iter()
                .map(|l| l.endpoints.iter().map(|e| index[e.node.as_str()]).collect())
                .collect(),
            leaf,
            room,
            names,
            unit: demand.iter().flatten().copied().min().unwrap_or(1).max(1),
            demand,
            weight: weights(exp),
        }
    }

    /// A fabric that limits nothing, for placements without links.
    pub fn none(hosts: usize) -> Fabric {
        Fabric {
            leaf: vec![None; hosts],
            room: vec![None; hosts],
            names: Vec::new(),
            demand: Vec::new(),
            weight: Vec::new(),
            links: Vec::new(),
            unit: 1,
        }
    }

    /// Whether any placement could oversubscribe a device: otherwise the
    /// capacities need no attention at all.
    pub fn binding(&self) -> bool {
        let total: u64 = self.demand.iter().flatten().sum();
        self.room.iter().flatten().any(|&r| r < total)
    }

    /// The devices a link loads, given the host of each of its endpoints:
    /// every host it spans, when it spans several, and every leaf it spans,
    /// when it spans several.
    pub fn loads(&self, hosts: impl Iterator<Item = usize> + Clone, out: &mut Vec<usize>) {
        out.clear();
        let mut it = hosts.clone();
        let Some(first) = it.next() else { return };
        if it.all(|h| h == first) {
            return;
        }
        for h in hosts.clone() {
            if !out.contains(&h) {
                out.push(h);
            }
        }
        let leaves: Vec<usize> = hosts.filter_map(|h| self.leaf[h]).collect();
        if leaves.iter().any(|&l| l != leaves[0]) {
            for l in leaves {
                if !out.contains(&l) {
                    out.push(l);
                }
            }
        }
    }

    /// Per device, the capacity that `links` ask of it when endpoint nodes
    /// sit on `host_of` (node index to host index).
    pub fn load(&self, links: &[Vec<usize>], host_of: &[usize]) -> Vec<u64> {
        let mut load = vec![0u64; self.names.len()];
        let mut devs = Vec::new();
        for (li, l) in links.iter().enumerate() {
            let Some(c) = self.demand[li] else { continue };
            self.loads(l.iter().map(|&n| host_of[n]), &mut devs);
            for &d in &devs {
                load[d] += c;
            }
        }
        load
    }

    /// The penalty for `load` on device `d`: [`OVERFLOW`] per smallest link's
    /// worth of capacity past its room.
    pub fn penalty(&self, d: usize, load: u64) -> i64 {
        match self.room[d] {
            Some(room) if load > room => OVERFLOW * (load - room).div_ceil(self.unit) as i64,
            _ => 0,
        }
    }

    /// The total penalty of a load vector.
    pub fn overflow(&self, load: &[u64]) -> i64 {
        load.iter()
            .enumerate()
            .map(|(d, &l)| self.penalty(d, l))
            .sum()
    }

    /// The weighted crossing cost of `links` (first endpoint against each
    /// other one, as the exact engine counts it).
    pub fn crossing(&self, links: &[Vec<usize>], host_of: &[usize]) -> i64 {
        links
            .iter()
            .enumerate()
            .map(|(li, l)| {
                self.weight[li]
                    * l.iter()
                        .skip(1)
                        .filter(|&&n| host_of[n] != host_of[l[0]])
                        .count() as i64
            })
            .sum()
    }
}
