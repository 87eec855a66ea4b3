//! Host-by-host construction, for instances the greedy pass cannot pack:
//! where demand equals capacity, a pass that places nodes one at a time in
//! graph order strands cores (a host half filled with one group, the rest
//! of the group with nowhere to go). This pass fills one host at a time
//! instead: it seeds the host, then adds the unplaced VM with the most
//! links into it (ties: the most neighbours in common with what the host
//! holds, then the largest), as long as one fits. A group of VMs that
//! exactly fills a host ends up on it together, and only the links between
//! groups cross hosts.
//!
//! Nodes the pass does not move (bare metal, VMs holding host devices) are
//! placed first, by the greedy pass's rules.

use std::collections::BTreeSet;

use mx_xir::Mode;

use super::{Ctx, State, greedy, mix};

/// Neighbours of a node past which its second-order contribution is not
/// counted: a LAN of thousands makes every member a neighbour of every
/// other, and counting common neighbours through it would be quadratic.
const SECOND_ORDER_DEGREE: usize = 64;

/// Places every node into a fresh `state`; returns the nodes left over.
pub(crate) fn run(ctx: &Ctx, state: &mut State) -> Vec<usize> {
    let needs = ctx.needs;
    let plain = |ni: usize| needs[ni].mode != Some(Mode::Metal) && !needs[ni].holds_host_devices();
    // Bare metal and device holders first, as the greedy pass places them.
    let fixed: Vec<usize> = (0..needs.len()).filter(|&ni| !plain(ni)).collect();
    let mut failed = greedy::run_subset(ctx, state, &fixed);
    let n = needs.len();
    let mut unplaced: BTreeSet<usize> = (0..n)
        .filter(|&ni| plain(ni) && state.host_of[ni].is_none())
        .collect();
    // Per node: links into the host being filled, and neighbours in common
    // with what it holds.
    let mut links_in = vec![0i64; n];
    let mut second = vec![0i64; n];
    let mut touched: Vec<usize> = Vec::new();
    let rank: Vec<u64> = (0..ctx.fac.hosts.len() as u64)
        .map(|i| mix(ctx.opts.seed, i))
        .collect();
    let mut open: Vec<usize> = (0..ctx.fac.hosts.len())
        .filter(|&h| !state.metal[h])
        .collect();
    while !unplaced.is_empty() {
        // The next host: the roomiest (ties by the seeded rank).
        let Some(pos) = (0..open.len()).max_by_key(|&i| {
            let h = open[i];
            (state.free[h].0, state.free[h].1, std::cmp::Reverse(rank[h]))
        }) else {
            break;
        };
        let h = open.swap_remove(pos);
        let fits = |ni: usize, state: &State| {
            ctx.cand.ok(ni, h, Mode::Vm) && state.fits(&needs[ni], h, Mode::Vm)
        };
        // Seed: the most constrained, then largest, node that fits.
        let Some(seed) = unplaced
            .iter()
            .copied()
            .filter(|&ni| fits(ni, state))
            .max_by_key(|&ni| (needs[ni].cores, needs[ni].memory, std::cmp::Reverse(ni)))
        else {
            continue;
        };
        let mut next = Some(seed);
        while let Some(v) = next {
            state.assign(&needs[v], h, Mode::Vm);
            unplaced.remove(&v);
            // What v brings: links into the host for its neighbours, and
            // common neighbours for theirs.
            for &w in &ctx.adj[v] {
                if links_in[w] == 0 && second[w] == 0 {
                    touched.push(w);
                }
                links_in[w] += 1;
                if ctx.adj[w].len() <= SECOND_ORDER_DEGREE {
                    for &x in &ctx.adj[w] {
                        if x != v {
                            if links_in[x] == 0 && second[x] == 0 {
                                touched.push(x);
                            }
                            second[x] += 1;
                        }
                    }
                }
            }
            next = touched
                .iter()
                .copied()
                .filter(|&x| unplaced.contains(&x) && fits(x, state))
                .max_by_key(|&x| {
                    (
                        links_in[x],
                        second[x],
                        needs[x].cores,
                        needs[x].memory,
                        std::cmp::Reverse(x),
                    )
                });
            if next.is_none() {
                // Nothing linked fits: fill the rest with the largest that
                // does, so no room is stranded.
                next = unplaced
                    .iter()
                    .copied()
                    .filter(|&x| fits(x, state))
                    .max_by_key(|&x| (needs[x].cores, needs[x].memory, std::cmp::Reverse(x)));
            }
        }
        for &x in &touched {
            links_in[x] = 0;
            second[x] = 0;
        }
        touched.clear();
    }
    failed.extend(unplaced);
    failed.sort_unstable();
    failed
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;

    /// Demand equal to capacity: each host is filled exactly by the group
    /// that belongs on it, and only the link between groups crosses.
    #[test]
    fn exact_fits_fill_host_by_host() {
        let fac = hypervisors(&[10, 10]);
        let exp = vms(&[6, 4, 4, 6], &[(0, 1), (2, 3), (1, 2)]);
        with(&exp, &fac, |ctx, mut st| {
            assert!(super::run(ctx, &mut st).is_empty(), "{:?}", st.host_of);
            assert!(st.free.iter().all(|f| f.0 == 0), "{:?}", st.free);
            assert_eq!(crossing(ctx, &st), 1);
            assert!(sound(ctx, &st));
        });
    }
}
