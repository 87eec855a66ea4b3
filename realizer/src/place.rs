//! Greedy placement: nodes in depth-first order over the experiment graph
//! (most constrained first), each onto the candidate that keeps it next to
//! its already placed neighbours (same host, then same leaf), then packs
//! best-fit. Ties break by a seeded order of hosts, so a seed reproduces a
//! realization exactly.

use std::collections::{BTreeMap, BTreeSet};

use mx_diag::Diagnostic;
use mx_xir::{Facility, Mode, Placement};
use rayon::prelude::*;

use crate::fabric::Fabric;
use crate::gpus::{self, GpuUse};
use crate::matching::{Need, NicNeed, Verdict, host_verdict, nic_model_ok};
use crate::usage::{Usage, free_cores, uplink};
use crate::{Options, Solver};

pub struct Placed {
    pub placements: Vec<Placement>,
    pub explanation: Vec<String>,
    /// `ilp` or `heuristic`.
    pub engine: &'static str,
}

/// Per node and host: can it be bare metal there, and can it be a VM there
/// (ignoring what is already allocated)?
/// Per host: bit 0 set if the node can be bare metal there, bit 1 if a VM.
type Verdicts = Vec<u8>;

/// Lower is better: (-links kept on one host, VM on a dual host, -neighbours on the leaf, cores left, seeded rank).
type Score = (i64, i64, i64, u64, u64);

/// Hosts grouped by the constraint (span) and reason that rule them out.
type ReasonGroups<'a> = BTreeMap<(Option<(u32, u32)>, String), Vec<&'a str>>;

fn mix(seed: u64, i: u64) -> u64 {
    // splitmix64: a fixed, portable hash for seeded tie-breaking.
    let mut z = seed.wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub fn place(
    fac: &Facility,
    usage: &Usage,
    needs: &[Need],
    fabric: &Fabric,
    opts: &Options,
) -> Result<Placed, Vec<Diagnostic>> {
    // Candidate filtering, in parallel; collected in node order. Hosts with
    // identical declarations share a verdict (a facility has a few kinds of
    // host, many times over), unless the node pins a host by name.
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
    let verdicts: Vec<Verdicts> = needs
        .par_iter()
        .map(|n| {
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

    let mut explanation = Vec::new();
    if opts.explain {
        for n in needs {
            for h in &fac.hosts {
                let say = |mode: Mode| {
                    if n.mode.is_some_and(|m| m != mode) {
                        return forced(n.mode.unwrap_or(mode)).reason;
                    }
                    match host_verdict(n, h, mode) {
                        Ok(()) => "candidate".to_string(),
                        Err(v) => v.reason,
                    }
                };
                explanation.push(format!(
                    "{}\t{}\tmetal: {}\tvm: {}",
                    n.node.name,
                    h.name,
                    say(Mode::Metal),
                    say(Mode::Vm)
                ));
            }
        }
    }

    // Experiment adjacency, for locality.
    let mut adj: Vec<Vec<usize>> = vec![Vec::new(); needs.len()];
    for ids in &fabric.links {
        for &a in ids {
            for &b in ids {
                if a != b {
                    adj[a].push(b);
                }
            }
        }
    }
    // Restarts (see `realize`) walk the graph differently: neighbours in a
    // seeded order, components from a seeded node among equals.
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
    let order = dfs_order(needs, &verdicts, &adj, opts.seed, opts.restart);
    // Cores asked by each node's connected group of VMs (bare-metal nodes
    // neither count nor join groups).
    let mut group_cores = vec![0u64; needs.len()];
    {
        let vm = |i: usize| needs[i].mode != Some(Mode::Metal);
        let mut seen = vec![false; needs.len()];
        for s in 0..needs.len() {
            if seen[s] || !vm(s) {
                continue;
            }
            let (mut members, mut stack) = (Vec::new(), vec![s]);
            seen[s] = true;
            while let Some(x) = stack.pop() {
                members.push(x);
                for &y in &adj[x] {
                    if !seen[y] && vm(y) {
                        seen[y] = true;
                        stack.push(y);
                    }
                }
            }
            let total: u64 = members.iter().map(|&i| u64::from(needs[i].cores)).sum();
            for i in members {
                group_cores[i] = total;
            }
        }
    }
    let leaf: Vec<Option<String>> = fac
        .hosts
        .iter()
        .map(|h| uplink(fac, &h.name).map(|(_, l)| l))
        .collect();
    let rank: Vec<u64> = (0..fac.hosts.len() as u64)
        .map(|i| mix(opts.seed, i))
        .collect();

    let mut u = usage.clone();
    // Hot-loop state by host index: free VM capacity, bare-metal holds, idleness.
    let mut free: Vec<(u32, u64, u64)> = fac.hosts.iter().map(|h| u.free(h)).collect();
    let mut metal: Vec<bool> = fac
        .hosts
        .iter()
        .map(|h| u.hosts.get(h.name.as_str()).is_some_and(|x| x.metal))
        .collect();
    let mut idle: Vec<bool> = fac.hosts.iter().map(|h| u.idle(&h.name)).collect();
    let mut vfs_taken: BTreeMap<(usize, usize), u32> = BTreeMap::new();
    let mut ports_taken: BTreeMap<usize, u32> = BTreeMap::new();
    let mut host_of: Vec<Option<(usize, Mode)>> = vec![None; needs.len()];
    // GPUs taken per host (by index), and the GPU each VM was given.
    let mut gpu_used: Vec<BTreeMap<u32, GpuUse>> =
        fac.hosts.iter().map(|h| u.host(&h.name).gpus).collect();
    let mut gpu_of: Vec<Option<mx_xir::GpuGrant>> = vec![None; needs.len()];
    // Cores held by pinned VMs per host, and each pinned VM's cores.
    let mut pinned: Vec<BTreeSet<u32>> = fac.hosts.iter().map(|h| u.host(&h.name).pinned).collect();
    let mut cpus_of: Vec<Vec<u32>> = vec![Vec::new(); needs.len()];
    let mut failed = Vec::new();

    // The exact engine, when asked for or when the instance is small.
    let use_ilp = match opts.solver {
        Solver::Heuristic => false,
        // The program does not model GPUs or pinned cores: their VMs are
        // placed greedily.
        Solver::Ilp => needs.iter().all(|n| n.gpu.is_none() && !n.pin),
        Solver::Auto => crate::ilp::fits(needs, fac),
    };
    let mut engine = "heuristic";
    if use_ilp {
        let room = crate::ilp::Room {
            free: &free,
            idle: &idle,
            metal_taken: &metal,
        };
        if let Ok(assign) = crate::ilp::solve(
            needs,
            fac,
            &verdicts,
            &room,
            &fabric.links,
            fabric,
            crate::ilp::time_limit(),
        ) {
            for (ni, a) in assign.into_iter().enumerate() {
                host_of[ni] = Some(a);
            }
            engine = "ilp";
        }
    }

    for &ni in order.iter().filter(|_| engine == "heuristic") {
        let n = &needs[ni];
        let hw_endpoints = n
            .nics
            .iter()
            .any(|(_, _, x)| matches!(x, NicNeed::Vf(_) | NicNeed::Port(_)));
        let neighbours: Vec<usize> = adj[ni]
            .iter()
            .filter_map(|&m| host_of[m].map(|(h, _)| h))
            .collect();
        let mut best: Option<(Score, usize, Mode)> = None;
        // Unset mode: a node that pins its size (`cores == 4`) takes an exact
        // bare-metal match first, else a VM slice; a node that does not is a
        // VM first, so it does not take a whole machine it has not asked for.
        let exact =
            n.node.constraints.iter().any(|c| {
                matches!(c.property.as_str(), "cores" | "memory") && c.op == mx_xir::Op::Eq
            });
        let modes = match (n.mode, exact) {
            (Some(Mode::Metal), _) | (None, true) => [Mode::Metal, Mode::Vm],
            _ => [Mode::Vm, Mode::Metal],
        };
        for mode in modes {
            for (hi, h) in fac.hosts.iter().enumerate() {
                let ok = match mode {
                    Mode::Metal => verdicts[ni][hi] & 1 != 0,
                    Mode::Vm => verdicts[ni][hi] & 2 != 0,
                };
                if !ok {
                    continue;
                }
                let fits = match mode {
                    Mode::Metal => idle[hi],
                    Mode::Vm => {
                        let (c, m, d) = free[hi];
                        !metal[hi]
                            && c >= n.cores
                            && m >= n.memory
                            && d >= n.disk
                            && (!hw_endpoints
                                || endpoint_room(n, h, hi, &u, &vfs_taken, &ports_taken))
                            && n.gpu
                                .as_ref()
                                .is_none_or(|g| gpus::pick(h, &gpu_used[hi], g).is_some())
                            && (!n.pin || free_cores(h, &pinned[hi], n.cores).is_some())
                    }
                };
                if !fits {
                    continue;
                }
                let together = neighbours.iter().filter(|&&x| x == hi).count() as i64;
                let near = neighbours
                    .iter()
                    .filter(|&&x| leaf[x].is_some() && leaf[x] == leaf[hi])
                    .count() as i64;
                let left = match mode {
                    Mode::Metal => 0,
                    // The first node of a linked group: best fit for the
                    // whole group where one host holds it, else the roomiest
                    // host (localized abundance), so its neighbours follow.
                    Mode::Vm if neighbours.is_empty() => {
                        let f = u64::from(free[hi].0);
                        if f >= group_cores[ni] {
                            f - group_cores[ni]
                        } else {
                            (1 << 32) + u64::from(u32::MAX) - f
                        }
                    }
                    Mode::Vm => u64::from(free[hi].0 - n.cores),
                };
                // VMs stay off dual-personality hosts when they can, leaving those for bare metal.
                let dual = i64::from(mode == Mode::Vm && h.has_role(mx_xir::Role::Metal));
                let key = (-together, dual, -near, left, rank[hi]);
                if best.as_ref().is_none_or(|(k, _, _)| key < *k) {
                    best = Some((key, hi, mode));
                }
            }
            if best.is_some() {
                break;
            }
        }
        match best {
            Some((_, hi, mode)) => {
                host_of[ni] = Some((hi, mode));
                let h = &fac.hosts[hi];
                let e = u.hosts.entry(h.name.to_string()).or_default();
                idle[hi] = false;
                match mode {
                    Mode::Metal => {
                        e.metal = true;
                        metal[hi] = true;
                    }
                    Mode::Vm => {
                        e.cores += n.cores;
                        e.memory += n.memory;
                        e.disk += n.disk;
                        free[hi].0 -= n.cores;
                        free[hi].1 -= n.memory;
                        free[hi].2 -= n.disk;
                        if let Some(g) = &n.gpu
                            && let Some(grant) = gpus::pick(h, &gpu_used[hi], g)
                        {
                            gpus::take(&mut gpu_used[hi], &grant);
                            gpus::take(&mut e.gpus, &grant);
                            gpu_of[ni] = Some(grant);
                        }
                        if n.pin
                            && let Some(cores) = free_cores(h, &pinned[hi], n.cores)
                        {
                            pinned[hi].extend(cores.iter().copied());
                            e.pinned.extend(cores.iter().copied());
                            cpus_of[ni] = cores;
                        }
                    }
                }
                reserve_endpoints(n, h, hi, &u, &mut vfs_taken, &mut ports_taken);
            }
            None => failed.push(ni),
        }
    }
    // Local search: move a VM to the host holding more of its neighbours
    // when that host has room, until nothing moves (bounded passes).
    if failed.is_empty() && engine == "heuristic" {
        for _pass in 0..4 {
            let mut moved = 0;
            for ni in 0..needs.len() {
                let Some((hi, Mode::Vm)) = host_of[ni] else {
                    continue;
                };
                let n = &needs[ni];
                if n.holds_host_devices() {
                    continue; // VFs, ports, GPUs or cores were reserved on this host
                }
                let mut counts: BTreeMap<usize, i64> = BTreeMap::new();
                for &m in &adj[ni] {
                    if let Some((h, _)) = host_of[m] {
                        *counts.entry(h).or_default() += 1;
                    }
                }
                let here = counts.get(&hi).copied().unwrap_or(0);
                let target = counts
                    .iter()
                    .filter(|&(&t, &c)| {
                        t != hi
                            && c > here
                            && verdicts[ni][t] & 2 != 0
                            && !metal[t]
                            && free[t].0 >= n.cores
                            && free[t].1 >= n.memory
                            && free[t].2 >= n.disk
                    })
                    .max_by_key(|&(&t, &c)| (c, std::cmp::Reverse(t)))
                    .map(|(&t, _)| t);
                if let Some(t) = target {
                    free[hi].0 += n.cores;
                    free[hi].1 += n.memory;
                    free[hi].2 += n.disk;
                    free[t].0 -= n.cores;
                    free[t].1 -= n.memory;
                    free[t].2 -= n.disk;
                    idle[t] = false;
                    // (`u` only serves failure explanations, and there are none here.)
                    host_of[ni] = Some((t, Mode::Vm));
                    moved += 1;
                }
            }
            // Swaps, on instances small enough for a pairwise pass: two VMs
            // on different hosts trade places when that keeps more links local
            // and both fit.
            if needs.len() <= 300 {
                let movable = |ni: usize, host_of: &Vec<Option<(usize, Mode)>>| {
                    matches!(host_of[ni], Some((_, Mode::Vm))) && !needs[ni].holds_host_devices()
                };
                let on = |ni: usize, h: usize, host_of: &Vec<Option<(usize, Mode)>>| -> i64 {
                    adj[ni]
                        .iter()
                        .filter(|&&m| host_of[m].is_some_and(|(x, _)| x == h))
                        .count() as i64
                };
                for a in 0..needs.len() {
                    if !movable(a, &host_of) {
                        continue;
                    }
                    for b in a + 1..needs.len() {
                        if !movable(b, &host_of) {
                            continue;
                        }
                        let (Some((ha, _)), Some((hb, _))) = (host_of[a], host_of[b]) else {
                            continue;
                        };
                        if ha == hb || verdicts[a][hb] & 2 == 0 || verdicts[b][ha] & 2 == 0 {
                            continue;
                        }
                        let ab = adj[a].iter().filter(|&&m| m == b).count() as i64;
                        let gain = on(a, hb, &host_of) - on(a, ha, &host_of) + on(b, ha, &host_of)
                            - on(b, hb, &host_of)
                            - 2 * ab;
                        if gain <= 0 {
                            continue;
                        }
                        let (na, nb) = (&needs[a], &needs[b]);
                        let fits = |h: usize, gets: &Need, gives: &Need| {
                            free[h].0 + gives.cores >= gets.cores
                                && free[h].1 + gives.memory >= gets.memory
                                && free[h].2 + gives.disk >= gets.disk
                        };
                        if !fits(hb, na, nb) || !fits(ha, nb, na) {
                            continue;
                        }
                        swap_free(&mut free, (ha, na), (hb, nb));
                        host_of[a] = Some((hb, Mode::Vm));
                        host_of[b] = Some((ha, Mode::Vm));
                        moved += 1;
                    }
                }
            }
            if moved == 0 {
                break;
            }
        }
    }
    // Anneal the local optimum (moves and swaps of movable VMs, weighted
    // crossing links plus oversubscribed uplinks and trunks as the cost):
    // on small instances, which the greedy pass and local search leave well
    // above the optimum, and on any instance whose links ask more of an
    // uplink or trunk than it has, which the greedy pass does not look at.
    let links = &fabric.links;
    let over = || {
        let hosts: Vec<usize> = host_of.iter().map(|h| h.map_or(0, |(h, _)| h)).collect();
        fabric.binding() && fabric.overflow(&fabric.load(links, &hosts)) > 0
    };
    // (Restarts of a large instance that oversubscribe stay as they are: the
    // penalty in their score keeps them from being chosen.)
    let repair = || opts.restart == 0 && over();
    if failed.is_empty() && engine == "heuristic" && (needs.len() <= ANNEAL_LIMIT || repair()) {
        let movable: Vec<bool> = needs
            .iter()
            .map(|n| matches!(host_of[n.index], Some((_, Mode::Vm))) && !n.holds_host_devices())
            .collect();
        let mut hosts: Vec<usize> = host_of
            .iter()
            .map(|h| h.map_or(usize::MAX, |(h, _)| h))
            .collect();
        let allowed = |ni: usize, h: usize| verdicts[ni][h] & 2 != 0 && !metal[h];
        anneal(
            needs,
            links,
            fabric,
            &movable,
            &allowed,
            &mut hosts,
            &mut free,
            opts.seed ^ (u64::from(opts.restart) << 32),
        );
        for (ni, h) in hosts.into_iter().enumerate() {
            if movable[ni] {
                host_of[ni] = Some((h, Mode::Vm));
            }
        }
    }
    if !failed.is_empty() {
        failed.sort_unstable();
        // Room, not constraints: the smallest set of nodes that cannot fit
        // together says more than which nodes the greedy order left out.
        if let Some(c) = crate::conflict::find(needs, fac, usage, &verdicts) {
            let mut diags = vec![c];
            diags.extend(
                failed
                    .iter()
                    .filter(|&&ni| verdicts[ni].iter().all(|&f| f == 0))
                    .take(3)
                    .map(|&ni| explain_failure(&needs[ni], fac, &u)),
            );
            return Err(diags);
        }
        let mut diags: Vec<Diagnostic> = failed
            .iter()
            .take(3)
            .map(|&ni| explain_failure(&needs[ni], fac, &u))
            .collect();
        if failed.len() > 3 {
            diags.push(capacity_summary(needs, fac, usage, &failed));
        }
        return Err(diags);
    }
    let placements = needs
        .iter()
        .map(|n| {
            let (hi, mode) = host_of[n.index].expect("every node placed");
            let h = &fac.hosts[hi];
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
            match mode {
                Mode::Metal => Placement {
                    node: n.node.name.clone(),
                    host: h.name.clone(),
                    mode,
                    cores: h.cores,
                    memory: h.memory,
                    disk: h.disk,
                    arch,
                    profile: Default::default(),
                    gpu: None,
                    cpus: Vec::new(),
                    span: n.node.span,
                },
                Mode::Vm => Placement {
                    node: n.node.name.clone(),
                    host: h.name.clone(),
                    mode,
                    cores: n.cores,
                    memory: n.memory,
                    disk: n.disk,
                    arch,
                    profile: Default::default(),
                    gpu: gpu_of[n.index].clone(),
                    cpus: cpus_of[n.index].clone(),
                    span: n.node.span,
                },
            }
        })
        .collect();
    Ok(Placed {
        placements,
        explanation,
        engine,
    })
}

/// Free capacity after VM `a` on host `ha` and VM `b` on `hb` trade hosts
/// (the caller checked both fit).
fn swap_free(free: &mut [(u32, u64, u64)], (ha, a): (usize, &Need), (hb, b): (usize, &Need)) {
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

/// Instances the annealing pass runs on (it is quadratic-ish in effort).
const ANNEAL_LIMIT: usize = 300;

/// Simulated annealing over the hosts of movable VMs: a move sends one VM
/// to another allowed host with room, a swap trades two VMs' hosts when both
/// fit; the cost is the links' weighted crossing endpoints (as the exact
/// engine counts them) plus the fabric's penalty for oversubscribed uplinks
/// and trunks. Deterministic for a seed; keeps the best assignment seen.
#[allow(clippy::too_many_arguments)]
fn anneal(
    needs: &[Need],
    links: &[Vec<usize>],
    fabric: &Fabric,
    movable: &[bool],
    allowed: &dyn Fn(usize, usize) -> bool,
    hosts: &mut [usize],
    free: &mut [(u32, u64, u64)],
    seed: u64,
) {
    let ids: Vec<usize> = (0..needs.len()).filter(|&i| movable[i]).collect();
    if ids.len() < 2 || free.len() < 2 {
        return;
    }
    let mut on: Vec<Vec<usize>> = vec![Vec::new(); needs.len()];
    for (li, l) in links.iter().enumerate() {
        for &n in l {
            if !on[n].contains(&li) {
                on[n].push(li);
            }
        }
    }
    // Device loads are tracked only when some uplink or trunk could overflow.
    let track = fabric.binding();
    let mut load = if track {
        fabric.load(links, hosts)
    } else {
        Vec::new()
    };
    let mut cost: i64 = fabric.crossing(links, hosts) + fabric.overflow(&load);
    let (mut best, mut best_hosts) = (cost, hosts.to_vec());
    let mut state = seed ^ 0xA5A5_5A5A_DEAD_BEEF;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(state, 0)
    };
    let steps = 20_000 + 400 * ids.len() as u64;
    let (t0, t1) = (1.5f64, 0.02f64);
    let fits = |f: &(u32, u64, u64), n: &Need| f.0 >= n.cores && f.1 >= n.memory && f.2 >= n.disk;
    let mut touched: Vec<usize> = Vec::new();
    let mut old: Vec<(usize, u64)> = Vec::new();
    let mut devs: Vec<usize> = Vec::new();
    // The cost of the touched links, taking (`sign` -1) or giving back (+1)
    // their device loads and remembering each device's load before.
    let mut part = |touched: &[usize],
                    hosts: &[usize],
                    load: &mut Vec<u64>,
                    old: &mut Vec<(usize, u64)>,
                    sign: i64|
     -> i64 {
        let mut c = 0;
        for &li in touched {
            let l = &links[li];
            c += fabric.weight[li]
                * l.iter()
                    .skip(1)
                    .filter(|&&n| hosts[n] != hosts[l[0]])
                    .count() as i64;
            if let (true, Some(d)) = (track, fabric.demand[li]) {
                fabric.loads(l.iter().map(|&n| hosts[n]), &mut devs);
                for &x in &devs {
                    if !old.iter().any(|&(y, _)| y == x) {
                        old.push((x, load[x]));
                    }
                    load[x] = if sign < 0 { load[x] - d } else { load[x] + d };
                }
            }
        }
        c
    };
    let penalty_delta = |load: &[u64], old: &[(usize, u64)]| -> i64 {
        old.iter()
            .map(|&(d, was)| fabric.penalty(d, load[d]) - fabric.penalty(d, was))
            .sum()
    };
    for step in 0..steps {
        if cost == 0 {
            break;
        }
        let t = t0 * (t1 / t0).powf(step as f64 / steps as f64);
        let a = ids[(next() % ids.len() as u64) as usize];
        let ha = hosts[a];
        let swap = next() % 2 == 0;
        touched.clear();
        touched.extend(&on[a]);
        // The other VM of a swap, or the target host of a move.
        let (b, h) = if swap {
            let b = ids[(next() % ids.len() as u64) as usize];
            let hb = hosts[b];
            if hb == ha || !allowed(a, hb) || !allowed(b, ha) {
                continue;
            }
            let (na, nb) = (&needs[a], &needs[b]);
            let room = |h: usize, gets: &Need, gives: &Need| {
                let f = free[h];
                fits(
                    &(f.0 + gives.cores, f.1 + gives.memory, f.2 + gives.disk),
                    gets,
                )
            };
            if !room(hb, na, nb) || !room(ha, nb, na) {
                continue;
            }
            for &li in &on[b] {
                if !touched.contains(&li) {
                    touched.push(li);
                }
            }
            (Some(b), hb)
        } else {
            // Mostly towards a neighbour's host; sometimes anywhere.
            let h = if next() % 4 != 0 && !touched.is_empty() {
                let l = &links[touched[(next() % touched.len() as u64) as usize]];
                hosts[l[(next() % l.len() as u64) as usize]]
            } else {
                (next() % free.len() as u64) as usize
            };
            if h == ha || !allowed(a, h) || !fits(&free[h], &needs[a]) {
                continue;
            }
            (None, h)
        };
        old.clear();
        let before = part(&touched, hosts, &mut load, &mut old, -1);
        hosts[a] = h;
        if let Some(b) = b {
            hosts[b] = ha;
        }
        let after = part(&touched, hosts, &mut load, &mut old, 1);
        let delta = after - before + penalty_delta(&load, &old);
        if delta <= 0 || (next() % 1_000_000) as f64 / 1e6 < (-(delta as f64) / t).exp() {
            match b {
                Some(b) => swap_free(free, (ha, &needs[a]), (h, &needs[b])),
                None => {
                    let n = &needs[a];
                    free[ha] = (
                        free[ha].0 + n.cores,
                        free[ha].1 + n.memory,
                        free[ha].2 + n.disk,
                    );
                    free[h] = (
                        free[h].0 - n.cores,
                        free[h].1 - n.memory,
                        free[h].2 - n.disk,
                    );
                }
            }
            cost += delta;
        } else {
            hosts[a] = ha;
            if let Some(b) = b {
                hosts[b] = h;
            }
            for &(d, was) in &old {
                load[d] = was;
            }
        }
        if cost < best {
            best = cost;
            best_hosts.copy_from_slice(hosts);
        }
    }
    // Back to the best seen, with the free capacity that goes with it
    // (everything given back before anything is taken, so no host dips
    // below what it will have).
    let moved: Vec<usize> = (0..hosts.len())
        .filter(|&i| hosts[i] != best_hosts[i])
        .collect();
    for &i in &moved {
        let (n, h) = (&needs[i], hosts[i]);
        free[h] = (
            free[h].0 + n.cores,
            free[h].1 + n.memory,
            free[h].2 + n.disk,
        );
    }
    for &i in &moved {
        let (n, h) = (&needs[i], best_hosts[i]);
        free[h] = (
            free[h].0 - n.cores,
            free[h].1 - n.memory,
            free[h].2 - n.disk,
        );
    }
    hosts.copy_from_slice(&best_hosts);
}

fn forced(mode: Mode) -> Verdict {
    Verdict {
        constraint: None,
        reason: match mode {
            Mode::Vm => "the node must be a VM".into(),
            Mode::Metal => "the node must be bare metal".into(),
        },
    }
}

/// Free VFs and ports for the node's endpoints on host `hi`.
fn endpoint_room(
    n: &Need,
    h: &mx_xir::Host,
    hi: usize,
    u: &Usage,
    vfs: &BTreeMap<(usize, usize), u32>,
    ports: &BTreeMap<usize, u32>,
) -> bool {
    let used = u.host(&h.name);
    let mut want_vf: BTreeMap<usize, u32> = BTreeMap::new();
    let mut want_ports = 0;
    for (_, _, need) in &n.nics {
        match need {
            NicNeed::Vf(cs) => {
                let Some(ni) = h.nics.iter().enumerate().position(|(i, nic)| {
                    let taken = used.vfs.get(&i).map_or(0, |s| s.len() as u32)
                        + vfs.get(&(hi, i)).copied().unwrap_or(0)
                        + want_vf.get(&i).copied().unwrap_or(0);
                    nic.max_vfs > taken && nic_model_ok(cs, &nic.model)
                }) else {
                    return false;
                };
                *want_vf.entry(ni).or_default() += 1;
            }
            NicNeed::Port(_) => want_ports += 1,
            NicNeed::Virtual(_) | NicNeed::Any => {}
        }
    }
    // One port stays the host's uplink.
    let free_ports = h
        .ports()
        .saturating_sub(1 + used.ports.len() as u32 + ports.get(&hi).copied().unwrap_or(0));
    want_ports <= free_ports
}

fn reserve_endpoints(
    n: &Need,
    h: &mx_xir::Host,
    hi: usize,
    u: &Usage,
    vfs: &mut BTreeMap<(usize, usize), u32>,
    ports: &mut BTreeMap<usize, u32>,
) {
    let used = u.host(&h.name);
    for (_, _, need) in &n.nics {
        match need {
            NicNeed::Vf(cs) => {
                if let Some(ni) = h.nics.iter().enumerate().position(|(i, nic)| {
                    let taken = used.vfs.get(&i).map_or(0, |s| s.len() as u32)
                        + vfs.get(&(hi, i)).copied().unwrap_or(0);
                    nic.max_vfs > taken && nic_model_ok(cs, &nic.model)
                }) {
                    *vfs.entry((hi, ni)).or_default() += 1;
                }
            }
            NicNeed::Port(_) => *ports.entry(hi).or_default() += 1,
            NicNeed::Virtual(_) | NicNeed::Any => {}
        }
    }
}

/// Depth-first over each connected component, starting from its node with
/// the fewest candidate hosts, so constrained nodes choose first and
/// neighbours follow them.
fn dfs_order(
    needs: &[Need],
    verdicts: &[Verdicts],
    adj: &[Vec<usize>],
    seed: u64,
    restart: u32,
) -> Vec<usize> {
    let choices: Vec<usize> = verdicts
        .iter()
        .map(|v| v.iter().filter(|&&f| f != 0).count())
        .collect();
    // Bare-metal nodes go first: they need whole hosts, which VMs would otherwise fragment.
    let mut seeds: Vec<usize> = (0..needs.len()).collect();
    let tie = |i: usize| {
        if restart == 0 {
            i as u64
        } else {
            mix(seed ^ u64::from(restart), i as u64)
        }
    };
    seeds.sort_by_key(|&i| (needs[i].mode != Some(Mode::Metal), choices[i], tie(i)));
    let mut seen = vec![false; needs.len()];
    let mut order = Vec::with_capacity(needs.len());
    for s in seeds {
        if seen[s] {
            continue;
        }
        seen[s] = true;
        if needs[s].mode == Some(Mode::Metal) {
            order.push(s);
            continue;
        }
        // Depth first: a path through the graph fills one host with nodes
        // that are linked to each other, where breadth first would fill it
        // with a frontier of nodes far apart.
        let mut stack = vec![(s, 0usize)];
        order.push(s);
        while let Some((x, k)) = stack.pop() {
            if let Some(&y) = adj[x].get(k) {
                stack.push((x, k + 1));
                if !seen[y] {
                    seen[y] = true;
                    order.push(y);
                    stack.push((y, 0));
                }
            }
        }
    }
    order
}

/// Names a group of hosts compactly: `hv0, hv1` or `hv0..hv63 (64 hosts)`.
pub(crate) fn group(names: &[&str]) -> String {
    match names.len() {
        0 => String::new(),
        1..=3 => names.join(", "),
        n => format!("{}..{} ({n} hosts)", names[0], names[n - 1]),
    }
}

fn explain_failure(n: &Need, fac: &Facility, usage: &Usage) -> Diagnostic {
    let mut d = Diagnostic::error(
        "E0301",
        format!("no resource can host node `{}`", n.node.name),
    )
    .primary(n.node.span.range(), "cannot be placed");
    // Group hosts by the constraint that rules them out (for the mode the node may use).
    let mut by_reason: ReasonGroups = BTreeMap::new();
    let mut capacity_only = Vec::new();
    for h in &fac.hosts {
        let check = |mode: Mode| {
            if n.mode.is_some_and(|m| m != mode) {
                Err(forced(n.mode.unwrap_or(mode)))
            } else {
                host_verdict(n, h, mode)
            }
        };
        let (metal, vm) = (check(Mode::Metal), check(Mode::Vm));
        let verdict = match (&metal, &vm) {
            (Err(a), Err(b)) => Some(if a.constraint.is_some() { a } else { b }),
            _ => None,
        };
        match verdict {
            Some(v) => {
                let key = v.constraint.as_ref().map(|c| (c.span.start, c.span.end));
                by_reason
                    .entry((key, v.reason.clone()))
                    .or_default()
                    .push(&h.name);
            }
            None => capacity_only.push(h),
        }
    }
    // One label per constraint, naming every group of hosts it rules out.
    let mut per_span: BTreeMap<(u32, u32), Vec<String>> = BTreeMap::new();
    for ((span, reason), hosts) in &by_reason {
        if let Some(sp) = span {
            per_span
                .entry(*sp)
                .or_default()
                .push(format!("{}: {reason}", group(hosts)));
        }
    }
    for ((s, e), parts) in per_span {
        d = d.secondary(
            s as usize..e as usize,
            format!("rules out {}", parts.join("; ")),
        );
    }
    let mut notes: Vec<String> = by_reason
        .iter()
        .filter(|((span, _), _)| span.is_none())
        .map(|((_, reason), hosts)| format!("{}: {reason}", group(hosts)))
        .collect();
    let mut only_devices = false;
    if let Some(g) = &n.gpu {
        let short: Vec<&str> = capacity_only
            .iter()
            .filter(|h| gpus::pick(h, &usage.host(&h.name).gpus, g).is_none())
            .map(|h| h.name.as_str())
            .collect();
        // When GPUs are all that is short, the slice sizes are beside the point.
        only_devices = !short.is_empty() && short.len() == capacity_only.len();
        if !short.is_empty() {
            notes.push(format!(
                "{} on {} {} taken",
                if g.virtual_ {
                    "every virtual GPU of the matching GPUs"
                } else {
                    "every matching GPU"
                },
                group(&short),
                if short.len() == 1 { "is" } else { "are" }
            ));
        }
    }
    if !capacity_only.is_empty() && !only_devices {
        // These would do, but are full: say how much is left on the roomiest hypervisor.
        let hypervisors: Vec<&&mx_xir::Host> = capacity_only
            .iter()
            .filter(|h| {
                h.has_role(mx_xir::Role::Hypervisor) && h.virt_alloc && !usage.host(&h.name).metal
            })
            .collect();
        let best = hypervisors
            .iter()
            .max_by_key(|h| (usage.free(h).0, usage.free(h).1));
        if n.mode == Some(Mode::Metal) || best.is_none() {
            notes.push(format!(
                "the matching bare-metal hosts are all allocated ({})",
                group(
                    &capacity_only
                        .iter()
                        .map(|h| h.name.as_str())
                        .collect::<Vec<_>>()
                )
            ));
        } else if let Some(best) = best {
            let (c, m, disk) = usage.free(best);
            notes.push(format!(
                "needs a VM of {} core{}, {} and {} of disk; the largest free slice is {c} core{}, {} and {} of disk on {}",
                n.cores,
                if n.cores == 1 { "" } else { "s" },
                size(n.memory),
                size(n.disk),
                if c == 1 { "" } else { "s" },
                size(m),
                size(disk),
                best.name
            ));
        }
    }
    if notes.is_empty() {
        notes.push("relax the labelled constraints; `mxc realize --explain` lists every host and its verdict".into());
    }
    d.help(notes.join("; "))
}

/// Bytes as GiB or MiB, whichever reads better.
pub fn size(b: u64) -> String {
    if b >= 1 << 30 && b.is_multiple_of(1 << 30) || b >= 10 << 30 {
        format!("{} GiB", b >> 30)
    } else {
        format!("{} MiB", b >> 20)
    }
}

/// When many nodes fail, the smallest useful statement of the conflict:
/// what the experiment asks of the hypervisors against what they have free.
fn capacity_summary(needs: &[Need], fac: &Facility, usage: &Usage, failed: &[usize]) -> Diagnostic {
    let vm_needs: Vec<&Need> = needs
        .iter()
        .filter(|n| n.mode != Some(Mode::Metal))
        .collect();
    let (want_c, want_m) = vm_needs
        .iter()
        .fold((0u64, 0u64), |(c, m), n| (c + n.cores as u64, m + n.memory));
    let (have_c, have_m) = fac
        .hosts
        .iter()
        .filter(|h| {
            h.has_role(mx_xir::Role::Hypervisor) && h.virt_alloc && !usage.host(&h.name).metal
        })
        .fold((0u64, 0u64), |(c, m), h| {
            let (fc, fm, _) = usage.free(h);
            (c + fc as u64, m + fm)
        });
    let first = &needs[failed[3]];
    let mut d = Diagnostic::error(
        "E0301",
        format!("{} more nodes cannot be placed", failed.len() - 3),
    )
    .primary(first.node.span.range(), "among them");
    for &ni in failed.iter().skip(4).take(3) {
        if needs[ni].node.span != first.node.span {
            d = d.secondary(
                needs[ni].node.span.range(),
                format!("and `{}`", needs[ni].node.name),
            );
        }
    }
    d.help(format!(
        "the experiment's VMs ask for {want_c} cores and {} in all; the facility's hypervisors have {have_c} cores and {} free",
        size(want_m),
        size(have_m)
    ))
}
