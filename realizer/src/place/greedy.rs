//! The greedy construction: nodes depth first over the experiment graph
//! (most constrained first), each onto the candidate that keeps it next to
//! its already placed neighbours (same host, then same leaf), then packs
//! best fit.

use std::collections::BTreeMap;

use mx_xir::Mode;

use super::{Ctx, State, Verdicts, mix};
use crate::matching::Need;
use crate::usage::uplink;

/// Lower is better: (-links kept on one host, VM on a dual host, -neighbours on the leaf, cores left, seeded rank).
type Score = (i64, i64, i64, u64, u64);

/// Places what it can; returns the nodes it could not place, sorted.
pub(crate) fn run(ctx: &Ctx, state: &mut State) -> Vec<usize> {
    place(ctx, state, None)
}

/// Places only the nodes in `subset` (sorted), in the order the whole
/// graph's walk would reach them.
pub(crate) fn run_subset(ctx: &Ctx, state: &mut State, subset: &[usize]) -> Vec<usize> {
    place(ctx, state, Some(subset))
}

fn place(ctx: &Ctx, state: &mut State, subset: Option<&[usize]>) -> Vec<usize> {
    let (needs, fac, adj, opts) = (ctx.needs, ctx.fac, &ctx.adj, ctx.opts);
    let verdicts = &ctx.cand.flags;
    let order = dfs_order(needs, verdicts, adj, opts.seed, opts.restart);
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
    // Each host's leaf switch, as a number, and the hosts on each leaf.
    let mut leaves: BTreeMap<String, usize> = BTreeMap::new();
    let leaf: Vec<Option<usize>> = fac
        .hosts
        .iter()
        .map(|h| {
            uplink(fac, &h.name).map(|(_, l)| {
                let next = leaves.len();
                *leaves.entry(l).or_insert(next)
            })
        })
        .collect();
    let mut on_leaf: Vec<Vec<usize>> = vec![Vec::new(); leaves.len()];
    for (hi, l) in leaf.iter().enumerate() {
        if let Some(l) = l {
            on_leaf[*l].push(hi);
        }
    }
    let rank: Vec<u64> = (0..fac.hosts.len() as u64)
        .map(|i| mix(opts.seed, i))
        .collect();

    let mut failed = Vec::new();
    for &ni in order
        .iter()
        .filter(|ni| subset.is_none_or(|s| s.binary_search(ni).is_ok()))
    {
        let n = &needs[ni];
        let neighbours: Vec<usize> = adj[ni]
            .iter()
            .filter_map(|&m| state.host_of[m].map(|(h, _)| h))
            .collect();
        let mut best: Option<(Score, usize, Mode)> = None;
        // Unset mode: a node that pins its size (`cores == 4`) takes an exact
        // bare-metal match first, else a VM slice; a node that does not is a
        // VM first, so it does not take a whole machine it has not asked for.
        let exact = n
            .node
            .constraints
            .iter()
            .any(|c| matches!(&*c.property, "cores" | "memory") && c.op == mx_xir::Op::Eq);
        let modes = match (n.mode, exact) {
            (Some(Mode::Metal), _) | (None, true) => [Mode::Metal, Mode::Vm],
            _ => [Mode::Vm, Mode::Metal],
        };
        // The score of host `hi` for the node, if it can take it now.
        let score = |hi: usize, mode: Mode, state: &State| -> Option<Score> {
            if !ctx.cand.ok(ni, hi, mode) || !state.fits(n, hi, mode) {
                return None;
            }
            let together = neighbours.iter().filter(|&&x| x == hi).count() as i64;
            let near = neighbours
                .iter()
                .filter(|&&x| leaf[x].is_some() && leaf[x] == leaf[hi])
                .count() as i64;
            let left = match mode {
                Mode::Metal => 0,
                // The first node of a linked group: best fit for the whole
                // group where one host holds it, else the roomiest host
                // (localized abundance), so its neighbours follow.
                Mode::Vm if neighbours.is_empty() => {
                    let f = u64::from(state.free[hi].0);
                    if f >= group_cores[ni] {
                        f - group_cores[ni]
                    } else {
                        (1 << 32) + u64::from(u32::MAX) - f
                    }
                }
                Mode::Vm => u64::from(state.free[hi].0 - n.cores),
            };
            // VMs stay off dual-personality hosts when they can, leaving
            // those for bare metal.
            let dual = i64::from(mode == Mode::Vm && fac.hosts[hi].has_role(mx_xir::Role::Metal));
            Some((-together, dual, -near, left, rank[hi]))
        };
        let consider = |best: &mut Option<(Score, usize, Mode)>,
                        hosts: &mut dyn Iterator<Item = usize>,
                        mode: Mode| {
            for hi in hosts {
                if let Some(key) = score(hi, mode, state)
                    && best.as_ref().is_none_or(|(k, _, _)| key < *k)
                {
                    *best = Some((key, hi, mode));
                }
            }
        };
        for mode in modes {
            // The best host is where a neighbour is, if one has room (the
            // score puts links kept on one host first); else, if a host on
            // a neighbour's leaf that is not dual-personality has room, it
            // is one of those; else any host. Looking in that order gives
            // what a scan of every host gives, without the scan.
            if mode == Mode::Vm && !neighbours.is_empty() {
                let mut mine = neighbours.clone();
                mine.sort_unstable();
                mine.dedup();
                consider(&mut best, &mut mine.iter().copied(), mode);
                if best.is_some() {
                    break;
                }
                let mut near: Vec<usize> = mine.iter().filter_map(|&h| leaf[h]).collect();
                near.sort_unstable();
                near.dedup();
                consider(
                    &mut best,
                    &mut near.iter().flat_map(|&l| on_leaf[l].iter().copied()),
                    mode,
                );
                if best.is_some_and(|((_, dual, ..), _, _)| dual == 0) {
                    break;
                }
            }
            consider(&mut best, &mut (0..fac.hosts.len()), mode);
            if best.is_some() {
                break;
            }
        }
        match best {
            Some((_, hi, mode)) => state.assign(n, hi, mode),
            None => failed.push(ni),
        }
    }
    failed.sort_unstable();
    failed
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
    // Counted once per shared verdict.
    let mut counted: std::collections::HashMap<*const u8, usize> = Default::default();
    let choices: Vec<usize> = verdicts
        .iter()
        .map(|v| {
            *counted
                .entry(v.as_ptr())
                .or_insert_with(|| v.iter().filter(|&&f| f != 0).count())
        })
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

#[cfg(test)]
mod tests {
    use super::super::testkit::*;

    #[test]
    fn linked_vms_go_next_to_each_other() {
        let fac = hypervisors(&[8, 8, 8]);
        // Two triangles: each fits one host.
        let exp = vms(
            &[2, 2, 2, 2, 2, 2],
            &[(0, 1), (1, 2), (2, 0), (3, 4), (4, 5), (5, 3)],
        );
        with(&exp, &fac, |ctx, mut st| {
            assert!(super::run(ctx, &mut st).is_empty());
            assert!(st.host_of.iter().all(Option::is_some));
            assert_eq!(crossing(ctx, &st), 0, "{:?}", st.host_of);
            assert!(sound(ctx, &st));
        });
    }

    #[test]
    fn what_has_no_room_is_left_over() {
        let fac = hypervisors(&[8, 8]);
        let exp = vms(&[6, 6, 6], &[]);
        with(&exp, &fac, |ctx, mut st| {
            let failed = super::run(ctx, &mut st);
            assert_eq!(failed.len(), 1, "{:?}", st.host_of);
            assert!(st.host_of[failed[0]].is_none());
            assert!(sound(ctx, &st));
        });
    }
}
