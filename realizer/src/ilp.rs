//! The exact engine: placement as an integer linear program (good_lp).
//!
//! Variables: `x[n][h]` (node n is a VM on host h) and `y[n][h]` (node n is
//! host h, bare metal), only where the node's constraints allow it. Each node
//! is placed once; VM slices fit each host's free cores, memory and disk
//! (exact fit allowed); a bare-metal node holds its host alone. The objective
//! counts links that cross hosts: for each pair (first endpoint, other
//! endpoint) a `z >= p[a][h] - p[b][h]` for every host, where `p = x + y`.
//! Small penalties reproduce the heuristic's preferences (exact bare-metal
//! matches, VMs off dual-personality hosts) without outweighing one link.
//!
//! The program grows with nodes × hosts × links, so `--solver auto` uses it
//! only for small instances (see [`fits`]), and a time limit hands anything
//! the solver cannot prove optimal in time to the heuristic.

use good_lp::{
    Expression, ProblemVariables, Solution, SolverModel, Variable, WithTimeLimit, variable,
};
use mx_xir::{Facility, Mode};

use crate::fabric::Fabric;
use crate::matching::{Need, NicNeed};

/// Instances the exact engine takes under `--solver auto`.
///
/// Branch and bound grows quickly with nodes × hosts: 60 VMs on 8 hosts ran
/// for minutes with microlp. Past this size the heuristic answers.
pub fn fits(needs: &[Need], fac: &Facility) -> bool {
    needs.len() <= 30
        && needs.len() * fac.hosts.len() <= 300
        && needs.iter().all(|n| {
            n.gpu.is_none()
                && !n.pin
                && n.nics
                    .iter()
                    .all(|(_, _, x)| matches!(x, NicNeed::Any | NicNeed::Virtual(_)))
        })
}

/// The backend: HiGHS unless built without the `highs` feature. Named
/// explicitly, since good_lp's `default_solver` prefers microlp whenever
/// that is compiled in too.
#[cfg(feature = "highs")]
use good_lp::highs as SOLVER;
#[cfg(not(feature = "highs"))]
use good_lp::microlp as SOLVER;

/// Which backend the exact engine uses.
pub const BACKEND: &str = if cfg!(feature = "highs") {
    "HiGHS"
} else {
    "microlp"
};

/// Seconds the solver may take before the heuristic answers instead. The
/// realization records which engine produced it (`solver`).
pub const TIME_LIMIT: f64 = 20.0;

/// The time limit in force: [`TIME_LIMIT`], or `MX_ILP_SECONDS` where set,
/// so a benchmark can let the solver run until it proves an optimum.
pub fn time_limit() -> f64 {
    std::env::var("MX_ILP_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .unwrap_or(TIME_LIMIT)
}

/// What the hosts have left, by host index.
pub struct Room<'a> {
    /// Free cores, memory and disk for VMs.
    pub free: &'a [(u32, u64, u64)],
    /// Nothing allocated at all (bare metal needs that).
    pub idle: &'a [bool],
    /// Held whole by a bare-metal node.
    pub metal_taken: &'a [bool],
}

/// Why the exact engine gave no placement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unsolved {
    /// Proven: no placement exists.
    Infeasible,
    /// No optimum proven in time, or the solver failed.
    Unknown,
}

/// Per node, the chosen (host index, mode), or why there is none.
///
/// `links` lists each link's endpoint nodes. Hosts that no constraint can
/// tell apart (same candidacy for every node, same room, same uplink, same
/// leaf) are interchangeable, so the program breaks their symmetry: the
/// i-th node may open the k-th such host only once the (k-1)-th holds an
/// earlier node. Without that, branch and bound revisits every relabelling
/// of the hosts and proves nothing on 30 nodes over 8 identical hosts.
pub fn solve(
    needs: &[Need],
    fac: &Facility,
    flags: &[crate::place::Verdicts],
    room: &Room,
    links: &[Vec<usize>],
    fabric: &Fabric,
    limit: f64,
) -> Result<Vec<(usize, Mode)>, Unsolved> {
    let (free, idle, metal_taken) = (room.free, room.idle, room.metal_taken);
    let hosts = fac.hosts.len();
    let mut vars = ProblemVariables::new();
    // x[n][h], y[n][h] where allowed.
    let mut x: Vec<Vec<Option<Variable>>> = vec![vec![None; hosts]; needs.len()];
    let mut y: Vec<Vec<Option<Variable>>> = vec![vec![None; hosts]; needs.len()];
    let mut objective = Expression::from(0.0);
    let exact: Vec<bool> = needs
        .iter()
        .map(|n| {
            n.node
                .constraints
                .iter()
                .any(|c| matches!(&*c.property, "cores" | "memory") && c.op == mx_xir::Op::Eq)
        })
        .collect();
    for (ni, n) in needs.iter().enumerate() {
        // A node that pins its size takes an exact bare-metal match when one
        // is free: that is a rule, not a preference, so no VM variables.
        let metal_first =
            exact[ni] && n.mode.is_none() && (0..hosts).any(|h| flags[ni][h] & 1 != 0 && idle[h]);
        for h in 0..hosts {
            if flags[ni][h] & 2 != 0 && !metal_taken[h] && !metal_first {
                let v = vars.add(variable().binary());
                let dual = fac.hosts[h].has_role(mx_xir::Role::Metal);
                objective +=
                    v * (if exact[ni] { 0.01 } else { 0.0 } + if dual { 0.001 } else { 0.0 });
                x[ni][h] = Some(v);
            }
            if flags[ni][h] & 1 != 0 && idle[h] {
                let v = vars.add(variable().binary());
                objective += v * if exact[ni] { 0.0 } else { 0.01 };
                y[ni][h] = Some(v);
            }
        }
    }
    // One z per (first endpoint, other endpoint), weighted by the link.
    let mut pairs = Vec::new();
    for (li, l) in links.iter().enumerate() {
        for &b in l.iter().skip(1) {
            let v = vars.add(variable().min(0.0).max(1.0));
            objective += v * fabric.weight[li] as f64;
            pairs.push((l[0], b, v));
        }
    }
    // Uplinks and trunks that the links could oversubscribe: per (link,
    // device) a `t` that is 1 when the link has endpoints on both sides of
    // the device, and the links' capacities times `t` within its room.
    let total: u64 = fabric.demand.iter().flatten().sum();
    let limited: Vec<(usize, u64)> = fabric
        .room
        .iter()
        .enumerate()
        .filter_map(|(d, r)| r.filter(|&r| r < total).map(|r| (d, r)))
        .collect();
    let mut t: Vec<(usize, usize, Variable)> = Vec::new();
    for &(d, _) in &limited {
        for (li, _) in links.iter().enumerate() {
            if fabric.demand[li].is_some_and(|c| c > 0) {
                t.push((li, d, vars.add(variable().min(0.0).max(1.0))));
            }
        }
    }
    #[allow(unused_mut)]
    let mut model = vars
        .minimise(objective)
        .using(SOLVER)
        .with_time_limit(limit);
    // `MX_ILP_LOG=1`: the solver's own progress (bounds, gap) on stdout, for
    // benchmarks of the instances it cannot close.
    #[cfg(feature = "highs")]
    if std::env::var_os("MX_ILP_LOG").is_some() {
        model.set_verbose(true);
    }
    let p = |ni: usize, h: usize| -> Expression {
        let mut e = Expression::from(0.0);
        if let Some(v) = x[ni][h] {
            e += v;
        }
        if let Some(v) = y[ni][h] {
            e += v;
        }
        e
    };
    // A device's side of a node: on the host, or on one of the leaf's hosts.
    let side = |ni: usize, d: usize| -> Expression {
        if d < hosts {
            p(ni, d)
        } else {
            let mut e = Expression::from(0.0);
            for h in (0..hosts).filter(|&h| fabric.leaf[h] == Some(d)) {
                e += p(ni, h);
            }
            e
        }
    };
    for ni in 0..needs.len() {
        let mut once = Expression::from(0.0);
        let mut any = false;
        for h in 0..hosts {
            for v in [x[ni][h], y[ni][h]].into_iter().flatten() {
                once += v;
                any = true;
            }
        }
        if !any {
            return Err(Unsolved::Infeasible); // no candidate at all
        }
        model = model.with(once.eq(1.0));
    }
    for h in 0..hosts {
        let (mut c, mut m, mut d) = (
            Expression::from(0.0),
            Expression::from(0.0),
            Expression::from(0.0),
        );
        let mut vms = Expression::from(0.0);
        let mut count = 0.0;
        let mut metals = Expression::from(0.0);
        for (ni, n) in needs.iter().enumerate() {
            if let Some(v) = x[ni][h] {
                c += v * n.cores as f64;
                // Demands round up and capacities down, so MiB units never over-commit.
                m += v * n.memory.div_ceil(1 << 20) as f64;
                d += v * n.disk.div_ceil(1 << 20) as f64;
                vms += v;
                count += 1.0;
            }
            if let Some(v) = y[ni][h] {
                metals += v;
            }
        }
        if count > 0.0 {
            model = model
                .with(c.leq(free[h].0 as f64))
                .with(m.leq((free[h].1 >> 20) as f64))
                .with(d.leq((free[h].2 >> 20) as f64));
        }
        // A bare-metal node holds its host alone.
        let big = count + 1.0;
        model = model.with((metals * big + vms).leq(big));
    }
    for &(a, b, z) in &pairs {
        for h in 0..hosts {
            let (pa, pb) = (p(a, h), p(b, h));
            model = model
                .with((pa.clone() - pb.clone()).leq(z))
                .with((pb - pa).leq(z));
        }
    }
    for &(d, r) in &limited {
        let mut used = Expression::from(0.0);
        for &(li, _, v) in t.iter().filter(|(_, dd, _)| *dd == d) {
            let l = &links[li];
            for &a in l {
                for &b in l {
                    if a != b {
                        model = model.with((side(a, d) - side(b, d)).leq(v));
                    }
                }
            }
            // Megabits, so the coefficients stay well scaled.
            used += v * (fabric.demand[li].unwrap_or(0) as f64 / 1e6);
        }
        model = model.with(used.leq((r / 1_000_000) as f64));
    }
    // Symmetry: hosts in one class are interchangeable.
    let mut classes: std::collections::BTreeMap<Vec<u64>, Vec<usize>> = Default::default();
    for h in 0..hosts {
        let mut key: Vec<u64> = (0..needs.len())
            .map(|ni| u64::from(x[ni][h].is_some()) | u64::from(y[ni][h].is_some()) << 1)
            .collect();
        key.extend([
            u64::from(free[h].0),
            free[h].1,
            free[h].2,
            u64::from(fac.hosts[h].has_role(mx_xir::Role::Metal)),
            fabric.room[h].map_or(u64::MAX, |r| r.min(u64::MAX - 1)),
            // Leaves matter only where a trunk is limited.
            if limited.iter().any(|&(d, _)| d >= hosts) {
                fabric.leaf[h].map_or(u64::MAX, |l| l as u64)
            } else {
                0
            },
        ]);
        classes.entry(key).or_default().push(h);
    }
    for class in classes.values().filter(|c| c.len() > 1) {
        let members: Vec<usize> = (0..needs.len())
            .filter(|&ni| x[ni][class[0]].is_some() || y[ni][class[0]].is_some())
            .collect();
        for (i, &ni) in members.iter().enumerate() {
            for (k, &h) in class.iter().enumerate().skip(1) {
                if k > i {
                    // The i-th node cannot open a host past the i-th.
                    model = model.with(p(ni, h).eq(0.0));
                } else {
                    let mut earlier = Expression::from(0.0);
                    for &nj in &members[..i] {
                        earlier += p(nj, class[k - 1]);
                    }
                    model = model.with(p(ni, h).leq(earlier));
                }
            }
        }
    }
    // The solver runs on its own thread and is abandoned past the time
    // limit: microlp checks its own limit only between branch-and-bound
    // nodes, and one node can take minutes. An abandoned solve keeps a core
    // busy until the process exits; `mxc` exits right after realizing.
    let n = needs.len();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("mx-ilp".into())
        .spawn(move || {
            let result = match model.solve() {
                Err(good_lp::ResolutionError::Infeasible) => Err(Unsolved::Infeasible),
                Err(_) => Err(Unsolved::Unknown),
                // Only a proven optimum counts; a time-limited incumbent
                // would make the result depend on the machine's speed.
                Ok(sol) if !matches!(sol.status(), good_lp::SolutionStatus::Optimal) => {
                    Err(Unsolved::Unknown)
                }
                Ok(sol) => (0..n)
                    .map(|ni| {
                        (0..hosts).find_map(|h| {
                            if x[ni][h].is_some_and(|v| sol.value(v) > 0.5) {
                                Some((h, Mode::Vm))
                            } else if y[ni][h].is_some_and(|v| sol.value(v) > 0.5) {
                                Some((h, Mode::Metal))
                            } else {
                                None
                            }
                        })
                    })
                    .collect::<Option<Vec<_>>>()
                    .ok_or(Unsolved::Unknown),
            };
            let _ = tx.send(result);
        })
        .map_err(|_| Unsolved::Unknown)?;
    rx.recv_timeout(std::time::Duration::from_secs_f64(limit + 1.0))
        .unwrap_or(Err(Unsolved::Unknown))
}
