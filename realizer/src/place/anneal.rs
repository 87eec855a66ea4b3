//! Simulated annealing over the hosts of movable VMs (see [`anneal`]).

use mx_xir::Mode;

use super::{Ctx, State, mix, swap_free};
use crate::fabric::Fabric;
use crate::matching::Need;

/// Anneals the local optimum where it pays (see the comment inside).
pub(crate) fn run(ctx: &Ctx, state: &mut State) {
    let (needs, fabric, cand, opts) = (ctx.needs, ctx.fabric, ctx.cand, ctx.opts);
    // Anneal the local optimum (moves and swaps of movable VMs, weighted
    // crossing links plus oversubscribed uplinks and trunks as the cost):
    // on small instances, which the greedy pass and local search leave well
    // above the optimum, and on any instance whose links ask more of an
    // uplink or trunk than it has, which the greedy pass does not look at.
    let links = &fabric.links;
    let over = || {
        let hosts: Vec<usize> = state
            .host_of
            .iter()
            .map(|h| h.map_or(0, |(h, _)| h))
            .collect();
        fabric.binding() && fabric.overflow(&fabric.load(links, &hosts)) > 0
    };
    // (Restarts of a large instance that oversubscribe stay as they are: the
    // penalty in their score keeps them from being chosen.)
    let repair = || opts.restart == 0 && over();
    if needs.len() <= ANNEAL_LIMIT || repair() {
        let movable: Vec<bool> = needs
            .iter()
            .map(|n| {
                matches!(state.host_of[n.index], Some((_, Mode::Vm))) && !n.holds_host_devices()
            })
            .collect();
        let mut hosts: Vec<usize> = state
            .host_of
            .iter()
            .map(|h| h.map_or(usize::MAX, |(h, _)| h))
            .collect();
        let metal = &state.metal;
        let allowed = |ni: usize, h: usize| cand.ok(ni, h, Mode::Vm) && !metal[h];
        anneal(
            needs,
            links,
            fabric,
            &movable,
            &allowed,
            &mut hosts,
            &mut state.free,
            opts.seed ^ (u64::from(opts.restart) << 32),
        );
        for (ni, h) in hosts.into_iter().enumerate() {
            if movable[ni] {
                state.host_of[ni] = Some((h, Mode::Vm));
            }
        }
    }
}

/// Instances the annealing pass runs on (it is quadratic-ish in effort).
pub(crate) const ANNEAL_LIMIT: usize = 300;

/// Simulated annealing over the hosts of movable VMs: a move sends one VM
/// to another allowed host with room, a swap trades two VMs' hosts when both
/// fit; the cost is the links' weighted crossing endpoints (as the exact
/// engine counts them) plus the fabric's penalty for oversubscribed uplinks
/// and trunks. Deterministic for a seed; keeps the best assignment seen.
#[allow(clippy::too_many_arguments)]
pub(crate) fn anneal(
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

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use mx_xir::Mode;

    /// From a scattered start, annealing never ends worse than it began,
    /// keeps every host within its room, and is the same for the same seed.
    #[test]
    fn annealing_improves_and_stays_sound() {
        let fac = hypervisors(&[8, 8, 8]);
        let ring: Vec<(usize, usize)> = (0..9).map(|i| (i, (i + 1) % 9)).collect();
        let exp = vms(&[2; 9], &ring);
        let run = || {
            with(&exp, &fac, |ctx, mut st| {
                for (i, n) in ctx.needs.iter().enumerate() {
                    st.assign(n, i % 3, Mode::Vm); // every link crosses
                }
                let before = crossing(ctx, &st);
                super::run(ctx, &mut st);
                let after = crossing(ctx, &st);
                assert!(after < before, "{before} -> {after}");
                assert!(sound(ctx, &st));
                st.host_of.clone()
            })
        };
        assert_eq!(run(), run());
    }
}
