//! Local search: move a VM to the host holding more of its neighbours when
//! that host has room, and swap pairs of VMs when that keeps more links
//! local and both fit, until nothing moves (bounded passes).

use std::collections::BTreeMap;

use mx_xir::Mode;

use super::{Ctx, State, swap_free};
use crate::matching::Need;

pub(crate) fn run(ctx: &Ctx, state: &mut State) {
    let (needs, adj, cand) = (ctx.needs, &ctx.adj, ctx.cand);
    {
        for _pass in 0..4 {
            let mut moved = 0;
            for ni in 0..needs.len() {
                let Some((hi, Mode::Vm)) = state.host_of[ni] else {
                    continue;
                };
                let n = &needs[ni];
                if n.holds_host_devices() {
                    continue; // VFs, ports, GPUs or cores were reserved on this host
                }
                let mut counts: BTreeMap<usize, i64> = BTreeMap::new();
                for &m in &adj[ni] {
                    if let Some((h, _)) = state.host_of[m] {
                        *counts.entry(h).or_default() += 1;
                    }
                }
                let here = counts.get(&hi).copied().unwrap_or(0);
                let target = counts
                    .iter()
                    .filter(|&(&t, &c)| {
                        t != hi
                            && c > here
                            && cand.ok(ni, t, Mode::Vm)
                            && !state.metal[t]
                            && state.free[t].0 >= n.cores
                            && state.free[t].1 >= n.memory
                            && state.free[t].2 >= n.disk
                    })
                    .max_by_key(|&(&t, &c)| (c, std::cmp::Reverse(t)))
                    .map(|(&t, _)| t);
                if let Some(t) = target {
                    state.move_vm(n, t);
                    moved += 1;
                }
            }
            // Swaps, on instances small enough for a pairwise pass: two VMs
            // on different hosts trade places when that keeps more links local
            // and both fit.
            if needs.len() <= 300 {
                let movable = |ni: usize, host_of: &[Option<(usize, Mode)>]| {
                    matches!(host_of[ni], Some((_, Mode::Vm))) && !needs[ni].holds_host_devices()
                };
                let on = |ni: usize, h: usize, host_of: &[Option<(usize, Mode)>]| -> i64 {
                    adj[ni]
                        .iter()
                        .filter(|&&m| host_of[m].is_some_and(|(x, _)| x == h))
                        .count() as i64
                };
                for a in 0..needs.len() {
                    if !movable(a, &state.host_of) {
                        continue;
                    }
                    for b in a + 1..needs.len() {
                        if !movable(b, &state.host_of) {
                            continue;
                        }
                        let (Some((ha, _)), Some((hb, _))) = (state.host_of[a], state.host_of[b])
                        else {
                            continue;
                        };
                        if ha == hb || !cand.ok(a, hb, Mode::Vm) || !cand.ok(b, ha, Mode::Vm) {
                            continue;
                        }
                        let ab = adj[a].iter().filter(|&&m| m == b).count() as i64;
                        let gain = on(a, hb, &state.host_of) - on(a, ha, &state.host_of)
                            + on(b, ha, &state.host_of)
                            - on(b, hb, &state.host_of)
                            - 2 * ab;
                        if gain <= 0 {
                            continue;
                        }
                        let (na, nb) = (&needs[a], &needs[b]);
                        let free = &state.free;
                        let fits = |h: usize, gets: &Need, gives: &Need| {
                            free[h].0 + gives.cores >= gets.cores
                                && free[h].1 + gives.memory >= gets.memory
                                && free[h].2 + gives.disk >= gets.disk
                        };
                        if !fits(hb, na, nb) || !fits(ha, nb, na) {
                            continue;
                        }
                        swap_free(&mut state.free, (ha, na), (hb, nb));
                        state.host_of[a] = Some((hb, Mode::Vm));
                        state.host_of[b] = Some((ha, Mode::Vm));
                        moved += 1;
                    }
                }
            }
            if moved == 0 {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use mx_xir::Mode;

    #[test]
    fn a_vm_moves_to_its_neighbours() {
        let fac = hypervisors(&[16, 16]);
        let exp = vms(&[2, 2, 2], &[(0, 1), (1, 2)]);
        with(&exp, &fac, |ctx, mut st| {
            // A poor start: the middle VM apart from both neighbours.
            st.assign(&ctx.needs[0], 0, Mode::Vm);
            st.assign(&ctx.needs[1], 1, Mode::Vm);
            st.assign(&ctx.needs[2], 0, Mode::Vm);
            assert_eq!(crossing(ctx, &st), 2);
            super::run(ctx, &mut st);
            assert_eq!(crossing(ctx, &st), 0, "{:?}", st.host_of);
            assert!(sound(ctx, &st));
        });
    }

    #[test]
    fn a_full_host_takes_no_more() {
        let fac = hypervisors(&[4, 16]);
        let exp = vms(&[4, 4], &[(0, 1)]);
        with(&exp, &fac, |ctx, mut st| {
            assert_eq!(fac.hosts[0].reserved_cores, 0);
            st.assign(&ctx.needs[0], 0, Mode::Vm);
            st.assign(&ctx.needs[1], 1, Mode::Vm);
            super::run(ctx, &mut st);
            // Host 0 is full: the only move that joins them is to host 1.
            assert_eq!(crossing(ctx, &st), 0, "{:?}", st.host_of);
            assert_eq!(st.host_of[0], Some((1, Mode::Vm)));
            assert!(sound(ctx, &st));
        });
    }
}
