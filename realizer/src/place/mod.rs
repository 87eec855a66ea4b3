//! Placement: which host (and as what) every node runs on.
//!
//! Passes over one [`State`], each in its own module:
//! 1. [`Candidates`]: which hosts can take each node, as bare metal or as a
//!    VM (constraints only, filtered in parallel, shared between hosts
//!    nothing tells apart);
//! 2. a construction: the exact engine ([`crate::ilp`]) where asked for, or
//!    [`greedy`]: nodes depth first over the experiment graph (most
//!    constrained first), each onto the candidate that keeps it next to its
//!    placed neighbours, then best fit; where that leaves nodes out (hosts
//!    filled exactly), [`fill`] builds again host by host;
//! 3. [`local`]: moves and swaps that keep more links on one host;
//! 4. [`anneal`]: simulated annealing of the local optimum on small
//!    instances, and wherever an uplink or trunk is oversubscribed;
//! 5. on failure, [`Unplaced`] says which nodes did not fit, and
//!    [`failure`] explains them.
//!
//! Ties break by a seeded order of hosts, so a seed reproduces a
//! realization exactly.
//!
//! Each pass has unit tests beside it, on facilities and experiments written
//! as small models (`testkit`): what it must achieve (neighbours together,
//! exact fits filled, no worse after annealing) and that the state stays
//! within every host's room.

mod anneal;
mod devices;
pub(crate) mod failure;
mod fill;
mod greedy;
mod local;

use std::collections::{BTreeMap, BTreeSet};

use mx_diag::Diagnostic;
use mx_xir::{Facility, GpuGrant, Mode, Placement};
use rayon::prelude::*;

use crate::fabric::Fabric;
use crate::gpus::{self, GpuUse};
use crate::matching::{Need, host_verdict};
use crate::usage::{Usage, free_cores};
use crate::{Options, Solver};

pub use failure::{group, size};

/// A placement.
pub struct Placed {
    pub placements: Vec<Placement>,
    pub explanation: Vec<String>,
    /// `ilp` or `heuristic`.
    pub engine: &'static str,
}

/// Nodes no pass could place, with what the facility had left: the
/// caller decides how hard to look for the reason (see
/// [`Unplaced::explain`]).
pub struct Unplaced {
    /// The nodes left out, by index.
    pub failed: Vec<usize>,
    /// The usage after what was placed (boxed: it is large, and failures
    /// are rare).
    usage: Box<Usage>,
    /// Candidate bits per node and host (see [`Candidates`]).
    pub flags: Vec<Verdicts>,
}

impl Unplaced {
    /// Diagnostics for the failure: the smallest set of nodes that cannot
    /// fit together where room is what ran out (only when `conflicts`: the
    /// analysis can take seconds, so it runs once every engine has failed),
    /// else E0301 per node at the constraints that rule hosts out.
    pub fn explain(
        &self,
        needs: &[Need],
        fac: &Facility,
        usage: &Usage,
        conflicts: bool,
    ) -> Vec<Diagnostic> {
        let failed = &self.failed;
        if conflicts && let Some(c) = crate::conflict::find(needs, fac, usage, &self.flags) {
            let mut diags = vec![c];
            diags.extend(
                failed
                    .iter()
                    .filter(|&&ni| self.flags[ni].iter().all(|&f| f == 0))
                    .take(3)
                    .map(|&ni| failure::explain_failure(&needs[ni], fac, &self.usage)),
            );
            return diags;
        }
        let mut diags: Vec<Diagnostic> = failed
            .iter()
            .take(3)
            .map(|&ni| failure::explain_failure(&needs[ni], fac, &self.usage))
            .collect();
        if failed.len() > 3 {
            diags.push(failure::capacity_summary(needs, fac, usage, failed));
        }
        diags
    }
}

/// Per host: bit 0 set if the node can be bare metal there, bit 1 if a VM.
/// Shared between nodes that ask the same of a host.
pub type Verdicts = std::sync::Arc<[u8]>;

/// Which hosts can take each node, by its constraints alone (not by what is
/// free): bit 0 of `flags[node][host]` for bare metal, bit 1 for a VM.
pub(crate) struct Candidates {
    pub flags: Vec<Verdicts>,
}

impl Candidates {
    /// Filters in parallel. Nodes that ask the same of a host (same mode,
    /// slice, constraints and NIC needs: most nodes of a large experiment
    /// are alike) share one verdict per host, and hosts with identical
    /// declarations share a verdict (a facility has a few kinds of host,
    /// many times over), unless the node pins a host by name.
    fn new(fac: &Facility, needs: &[Need]) -> Candidates {
        let mut classes: BTreeMap<String, usize> = BTreeMap::new();
        let class_of: Vec<usize> = fac
            .hosts
            .iter()
            .map(|h| {
                let key = format!(
                    "{:?} {:?} {:?} {:?} {:?} {:?}",
                    (&h.roles, h.virt_alloc, h.cores, h.memory, h.disk, h.clock),
                    &h.arch,
                    (h.membus, h.pcie),
                    &h.gpus,
                    &h.nics,
                    (h.reserved_cores, h.reserved_memory)
                );
                let next = classes.len();
                *classes.entry(key).or_insert(next)
            })
            .collect();
        // Nodes by what they ask of a host.
        let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
        let mut first: Vec<usize> = Vec::new();
        let kind_of: Vec<usize> = needs
            .iter()
            .map(|n| {
                let next = kinds.len();
                let k = *kinds.entry(need_key(n)).or_insert(next);
                if k == next {
                    first.push(n.index);
                }
                k
            })
            .collect();
        let per_kind: Vec<Verdicts> = first
            .par_iter()
            .map(|&ni| {
                let n = &needs[ni];
                let pinned = n.node.constraints.iter().any(|c| c.property == "host");
                let mut memo: Vec<Option<u8>> = vec![None; classes.len()];
                fac.hosts
                    .iter()
                    .enumerate()
                    .map(|(hi, h)| {
                        let compute = || {
                            let metal =
                                n.mode != Some(Mode::Vm) && host_verdict(n, h, Mode::Metal).is_ok();
                            let vm =
                                n.mode != Some(Mode::Metal) && host_verdict(n, h, Mode::Vm).is_ok();
                            u8::from(metal) | (u8::from(vm) << 1)
                        };
                        if pinned {
                            compute()
                        } else {
                            *memo[class_of[hi]].get_or_insert_with(compute)
                        }
                    })
                    .collect()
            })
            .collect();
        Candidates {
            flags: kind_of.iter().map(|&k| per_kind[k].clone()).collect(),
        }
    }

    /// Whether host `hi` can take node `ni` in `mode`.
    pub fn ok(&self, ni: usize, hi: usize, mode: Mode) -> bool {
        self.flags[ni][hi]
            & match mode {
                Mode::Metal => 1,
                Mode::Vm => 2,
            }
            != 0
    }
}

/// What a node asks of a host, as a key: everything [`host_verdict`]
/// reads (its mode, slice, constraints without their spans, GPU and NIC
/// needs), nothing of where in the model it was written.
fn need_key(n: &Need) -> String {
    use std::fmt::Write;
    let mut k = format!(
        "{:?} {} {} {} {:?} {}",
        n.mode, n.cores, n.memory, n.disk, n.gpu, n.pin
    );
    for c in &n.node.constraints {
        let _ = write!(k, "|{} {:?} {:?} {:?}", c.property, c.op, c.value, c.unit);
    }
    let mut nics: Vec<String> = n.nics.iter().map(|(_, _, x)| format!("{x:?}")).collect();
    nics.sort();
    nics.dedup();
    let _ = write!(k, "|{nics:?}");
    k
}

/// What placement has decided so far, by node and host index: the state
/// every pass reads and changes.
pub(crate) struct State<'f> {
    fac: &'f Facility,
    /// The usage, plus what this placement took (device picks and failure
    /// explanations read it).
    pub u: Usage,
    /// Free cores, memory and disk for VMs, per host.
    pub free: Vec<(u32, u64, u64)>,
    /// Held whole by a bare-metal node, per host.
    pub metal: Vec<bool>,
    /// Nothing allocated at all (bare metal needs that), per host.
    pub idle: Vec<bool>,
    /// VFs taken by this placement, per (host, NIC), and whole ports per host.
    vfs_taken: BTreeMap<(usize, usize), u32>,
    ports_taken: BTreeMap<usize, u32>,
    /// GPUs taken per host (by index), and cores held by pinned VMs.
    gpu_used: Vec<BTreeMap<u32, GpuUse>>,
    pinned: Vec<BTreeSet<u32>>,
    /// Where each node is, and the GPU and cores it holds.
    pub host_of: Vec<Option<(usize, Mode)>>,
    gpu_of: Vec<Option<GpuGrant>>,
    cpus_of: Vec<Vec<u32>>,
}

impl<'f> State<'f> {
    fn new(fac: &'f Facility, usage: &Usage, nodes: usize) -> State<'f> {
        let u = usage.clone();
        State {
            fac,
            free: fac.hosts.iter().map(|h| u.free(h)).collect(),
            metal: fac
                .hosts
                .iter()
                .map(|h| u.hosts.get(h.name.as_str()).is_some_and(|x| x.metal))
                .collect(),
            idle: fac.hosts.iter().map(|h| u.idle(&h.name)).collect(),
            vfs_taken: BTreeMap::new(),
            ports_taken: BTreeMap::new(),
            gpu_used: fac.hosts.iter().map(|h| u.host(&h.name).gpus).collect(),
            pinned: fac.hosts.iter().map(|h| u.host(&h.name).pinned).collect(),
            host_of: vec![None; nodes],
            gpu_of: vec![None; nodes],
            cpus_of: vec![Vec::new(); nodes],
            u,
        }
    }

    /// Whether host `hi` has room for node `n` in `mode` now (its
    /// candidacy is the caller's business).
    pub fn fits(&self, n: &Need, hi: usize, mode: Mode) -> bool {
        let h = &self.fac.hosts[hi];
        match mode {
            Mode::Metal => self.idle[hi],
            Mode::Vm => {
                let (c, m, d) = self.free[hi];
                !self.metal[hi]
                    && c >= n.cores
                    && m >= n.memory
                    && d >= n.disk
                    && (!n.holds_endpoints()
                        || devices::endpoint_room(
                            n,
                            h,
                            hi,
                            &self.u,
                            &self.vfs_taken,
                            &self.ports_taken,
                        ))
                    && n.gpu
                        .as_ref()
                        .is_none_or(|g| gpus::pick(h, &self.gpu_used[hi], g).is_some())
                    && (!n.pin || free_cores(h, &self.pinned[hi], n.cores).is_some())
            }
        }
    }

    /// Places node `n` on host `hi` in `mode`, taking its room and devices.
    pub fn assign(&mut self, n: &Need, hi: usize, mode: Mode) {
        let ni = n.index;
        self.host_of[ni] = Some((hi, mode));
        let h = &self.fac.hosts[hi];
        let e = self.u.hosts.entry(h.name.to_string()).or_default();
        self.idle[hi] = false;
        match mode {
            Mode::Metal => {
                e.metal = true;
                self.metal[hi] = true;
            }
            Mode::Vm => {
                e.cores += n.cores;
                e.memory += n.memory;
                e.disk += n.disk;
                self.free[hi].0 -= n.cores;
                self.free[hi].1 -= n.memory;
                self.free[hi].2 -= n.disk;
                if let Some(g) = &n.gpu
                    && let Some(grant) = gpus::pick(h, &self.gpu_used[hi], g)
                {
                    gpus::take(&mut self.gpu_used[hi], &grant);
                    gpus::take(&mut e.gpus, &grant);
                    self.gpu_of[ni] = Some(grant);
                }
                if n.pin
                    && let Some(cores) = free_cores(h, &self.pinned[hi], n.cores)
                {
                    self.pinned[hi].extend(cores.iter().copied());
                    e.pinned.extend(cores.iter().copied());
                    self.cpus_of[ni] = cores;
                }
            }
        }
        devices::reserve_endpoints(
            n,
            h,
            hi,
            &self.u,
            &mut self.vfs_taken,
            &mut self.ports_taken,
        );
    }

    /// Moves a VM that holds no host devices to host `to` (which has room).
    /// Only room is tracked: `u` is not updated (it serves failures, and a
    /// placement that moves VMs has none).
    pub fn move_vm(&mut self, n: &Need, to: usize) {
        let Some((from, Mode::Vm)) = self.host_of[n.index] else {
            return;
        };
        self.free[from].0 += n.cores;
        self.free[from].1 += n.memory;
        self.free[from].2 += n.disk;
        self.free[to].0 -= n.cores;
        self.free[to].1 -= n.memory;
        self.free[to].2 -= n.disk;
        self.idle[to] = false;
        self.host_of[n.index] = Some((to, Mode::Vm));
    }

    /// The placements, in node order (every node must be placed).
    fn placements(&self, needs: &[Need]) -> Vec<Placement> {
        needs
            .iter()
            .map(|n| {
                let (hi, mode) = self.host_of[n.index].expect("every node placed");
                let h = &self.fac.hosts[hi];
                let arch = n
                    .node
                    .constraints
                    .iter()
                    .find(|c| c.property == "arch" && c.op == mx_xir::Op::Eq)
                    .and_then(|c| {
                        if let mx_xir::Value::Text(t) = &c.value {
                            Some(t.clone())
                        } else {
                            None
                        }
                    })
                    .unwrap_or_else(|| h.arch.clone());
                let (cores, memory, disk) = match mode {
                    Mode::Metal => (h.cores, h.memory, h.disk),
                    Mode::Vm => (n.cores, n.memory, n.disk),
                };
                Placement {
                    node: n.node.name.clone(),
                    host: h.name.clone(),
                    mode,
                    cores,
                    memory,
                    disk,
                    arch,
                    profile: Default::default(),
                    gpu: self.gpu_of[n.index].clone(),
                    cpus: self.cpus_of[n.index].clone(),
                    routes: Vec::new(),
                    forward: false,
                    span: n.node.span,
                }
            })
            .collect()
    }
}

/// What every pass shares: the nodes, their candidates and links.
pub(crate) struct Ctx<'a, 'n> {
    pub fac: &'a Facility,
    pub needs: &'a [Need<'n>],
    pub fabric: &'a Fabric,
    pub cand: &'a Candidates,
    /// Per node, the nodes it shares a link with (once per shared link).
    pub adj: Vec<Vec<usize>>,
    pub opts: &'a Options,
}

pub(crate) fn mix(seed: u64, i: u64) -> u64 {
    // splitmix64: a fixed, portable hash for seeded tie-breaking.
    let mut z = seed.wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Per node, the nodes it shares a link with (once per shared link), for
/// locality. Restarts (see `realize`) walk the graph differently:
/// neighbours in a seeded order, components from a seeded node among
/// equals.
fn adjacency(nodes: usize, fabric: &Fabric, opts: &Options) -> Vec<Vec<usize>> {
    let mut adj: Vec<Vec<usize>> = vec![Vec::new(); nodes];
    for ids in &fabric.links {
        for &a in ids {
            for &b in ids {
                if a != b {
                    adj[a].push(b);
                }
            }
        }
    }
    if opts.restart > 0 {
        for (i, list) in adj.iter_mut().enumerate() {
            let k = list.len();
            if k > 1 {
                list.rotate_left(
                    (mix(opts.seed ^ u64::from(opts.restart), i as u64) % k as u64) as usize,
                );
            }
        }
    }
    adj
}

/// Places every node, or says which could not be placed.
pub fn place(
    fac: &Facility,
    usage: &Usage,
    needs: &[Need],
    fabric: &Fabric,
    opts: &Options,
) -> Result<Placed, Unplaced> {
    let cand = Candidates::new(fac, needs);
    let explanation = if opts.explain {
        failure::verdict_lines(needs, fac)
    } else {
        Vec::new()
    };
    let ctx = Ctx {
        fac,
        needs,
        fabric,
        cand: &cand,
        adj: adjacency(needs.len(), fabric, opts),
        opts,
    };
    let mut state = State::new(fac, usage, needs.len());

    // The exact engine, when asked for or when the instance is small.
    let use_ilp = match opts.solver {
        Solver::Heuristic => false,
        // The program does not model GPUs or pinned cores: their VMs are
        // placed greedily.
        Solver::Ilp => needs.iter().all(|n| n.gpu.is_none() && !n.pin),
        Solver::Auto => crate::ilp::fits(needs, fac),
    };
    if use_ilp {
        let room = crate::ilp::Room {
            free: &state.free,
            idle: &state.idle,
            metal_taken: &state.metal,
        };
        if let Ok(assign) = crate::ilp::solve(
            needs,
            fac,
            &cand.flags,
            &room,
            &fabric.links,
            fabric,
            crate::ilp::time_limit(),
        ) {
            for (ni, a) in assign.into_iter().enumerate() {
                state.host_of[ni] = Some(a);
            }
            return Ok(Placed {
                placements: state.placements(needs),
                explanation,
                engine: "ilp",
            });
        }
    }

    let failed = greedy::run(&ctx, &mut state);
    if !failed.is_empty() {
        // Where the greedy walk strands room (hosts filled exactly), build
        // again host by host.
        let mut again = State::new(fac, usage, needs.len());
        if fill::run(&ctx, &mut again).is_empty() {
            state = again;
        } else {
            return Err(Unplaced {
                failed,
                usage: Box::new(state.u),
                flags: cand.flags,
            });
        }
    }
    local::run(&ctx, &mut state);
    anneal::run(&ctx, &mut state);
    Ok(Placed {
        placements: state.placements(needs),
        explanation,
        engine: "heuristic",
    })
}

/// Free capacity after VM `a` on host `ha` and VM `b` on `hb` trade hosts
/// (the caller checked both fit).
pub(crate) fn swap_free(
    free: &mut [(u32, u64, u64)],
    (ha, a): (usize, &Need),
    (hb, b): (usize, &Need),
) {
    free[ha] = (
        free[ha].0 + a.cores - b.cores,
        free[ha].1 + a.memory - b.memory,
        free[ha].2 + a.disk - b.disk,
    );
    free[hb] = (
        free[hb].0 + b.cores - a.cores,
        free[hb].1 + b.memory - a.memory,
        free[hb].2 + b.disk - a.disk,
    );
}

/// Facilities and experiments for the passes' unit tests, written as
/// small models, and the context every pass takes.
#[cfg(test)]
pub(crate) mod testkit {
    use super::*;
    use mx_xir::Experiment;

    /// Hypervisors with the given cores (64 GiB each) on one leaf.
    pub fn hypervisors(cores: &[u32]) -> Facility {
        let mut src = String::from(
            "fac = facility('hvs')\nsw = fac.switch('sw0', role=leaf, vxlan=True, underlay='10.0.0.254')\n",
        );
        for (i, c) in cores.iter().enumerate() {
            src.push_str(&format!(
                "h{i} = fac.host('hv{i}', roles=[hypervisor], cores={c}, memory=gb(64), disk=tb(1), underlay='10.0.0.{}', nics=[nic(x710, ports=1)])\nfac.cable(h{i}.port(0), sw.port({i}))\n",
                i + 1
            ));
        }
        let out = mx_compiler::compile("hvs.mx", &src, &Default::default());
        out.facility
            .unwrap_or_else(|| panic!("{:?}", out.diagnostics))
    }

    /// An experiment model.
    pub fn experiment(src: &str) -> Experiment {
        let out = mx_compiler::compile("exp.mx", src, &Default::default());
        out.xir.unwrap_or_else(|| panic!("{:?}", out.diagnostics))
    }

    /// VMs of the given cores (1 GiB each), `v0`, `v1`, ..., and links
    /// between the pairs given.
    pub fn vms(cores: &[u32], links: &[(usize, usize)]) -> Experiment {
        let mut src = String::new();
        for (i, c) in cores.iter().enumerate() {
            src.push_str(&format!(
                "v{i} = topo.device('v{i}', virt == true, cores == {c}, memory == gb(1))\n"
            ));
        }
        for (a, b) in links {
            src.push_str(&format!("topo.connect([v{a}, v{b}])\n"));
        }
        experiment(&src)
    }

    /// Runs `f` with the context and a fresh state for `exp` on `fac`.
    pub fn with<R>(exp: &Experiment, fac: &Facility, f: impl FnOnce(&Ctx, State) -> R) -> R {
        let usage = Usage::default();
        let needs = crate::matching::needs(exp);
        let fabric = Fabric::new(exp, fac, &usage);
        let cand = Candidates::new(fac, &needs);
        let opts = Options::default();
        let ctx = Ctx {
            fac,
            needs: &needs,
            fabric: &fabric,
            cand: &cand,
            adj: adjacency(needs.len(), &fabric, &opts),
            opts: &opts,
        };
        f(&ctx, State::new(fac, &usage, needs.len()))
    }

    /// Links whose endpoints are on more than one host.
    pub fn crossing(ctx: &Ctx, state: &State) -> usize {
        ctx.fabric
            .links
            .iter()
            .filter(|ids| {
                let hosts: BTreeSet<usize> = ids
                    .iter()
                    .filter_map(|&n| state.host_of[n].map(|(h, _)| h))
                    .collect();
                hosts.len() > 1
            })
            .count()
    }

    /// Every VM's host has room left for what it holds.
    pub fn sound(ctx: &Ctx, state: &State) -> bool {
        let mut used = vec![0u32; ctx.fac.hosts.len()];
        for (ni, at) in state.host_of.iter().enumerate() {
            if let Some((h, Mode::Vm)) = at {
                used[*h] += ctx.needs[ni].cores;
            }
        }
        used.iter()
            .zip(&ctx.fac.hosts)
            .all(|(u, h)| *u <= h.cores - h.reserved_cores)
    }
}

#[cfg(test)]
mod tests {
    use super::testkit::*;
    use super::*;

    #[test]
    fn candidates_follow_the_constraints_not_the_room() {
        let fac = hypervisors(&[4, 16]);
        let exp = experiment(
            "a = topo.device('a', virt == true, cores == 8)\nb = topo.device('b', metal == true)\nc = topo.device('c', virt == true, host == 'hv0')\n",
        );
        with(&exp, &fac, |ctx, _| {
            let c = ctx.cand;
            assert!(!c.ok(0, 0, Mode::Vm), "8 cores do not fit a 4-core host");
            assert!(c.ok(0, 1, Mode::Vm));
            assert!(!c.ok(0, 1, Mode::Metal), "virt == true is a VM");
            assert!(!c.ok(1, 0, Mode::Vm), "metal == true is bare metal");
            assert!(
                c.ok(2, 0, Mode::Vm) && !c.ok(2, 1, Mode::Vm),
                "pinned by name"
            );
        });
    }

    #[test]
    fn the_state_takes_and_keeps_room() {
        let fac = hypervisors(&[16, 16]);
        let exp = vms(&[10, 8, 6], &[]);
        with(&exp, &fac, |ctx, mut st| {
            let n = ctx.needs;
            st.assign(&n[0], 0, Mode::Vm);
            assert_eq!(st.free[0].0, 16 - 10 - fac.hosts[0].reserved_cores);
            assert!(!st.fits(&n[1], 0, Mode::Vm), "8 more cores do not fit");
            assert!(st.fits(&n[2], 0, Mode::Vm));
            assert!(
                !st.fits(&n[1], 0, Mode::Metal),
                "a host with a VM is not idle"
            );
            st.assign(&n[1], 1, Mode::Metal);
            assert!(
                !st.fits(&n[2], 1, Mode::Vm),
                "a bare-metal host takes no VMs"
            );
            st.move_vm(&n[0], 1);
            assert_eq!(st.host_of[0], Some((1, Mode::Vm)));
            assert_eq!(
                st.free[0].0,
                16 - fac.hosts[0].reserved_cores,
                "room given back"
            );
        });
    }

    #[test]
    fn adjacency_lists_each_shared_link() {
        let fac = hypervisors(&[16]);
        let exp = vms(&[1, 1, 1], &[(0, 1), (1, 2), (0, 1)]);
        with(&exp, &fac, |ctx, _| {
            assert_eq!(ctx.adj[0], vec![1, 1]);
            assert_eq!(ctx.adj[1].len(), 3);
            assert_eq!(ctx.adj[2], vec![1]);
        });
    }
}
