//! Capacity conflicts: when nodes fail for lack of room rather than for a
//! constraint no host meets, the smallest set of nodes that cannot fit
//! together, so the experimenter knows what to shrink or drop.
//!
//! Two certificates, both proofs rather than guesses:
//! 1. aggregate: nodes that can only use hosts H ask more cores (memory,
//!    disk; or whole hosts, for bare metal) than H has free. The smallest
//!    such set is the largest demands first, so it is minimum for H.
//! 2. packing: the total fits but the pieces do not (three 10-core VMs, two
//!    16-core hosts). On small instances the exact engine proves the set
//!    infeasible, then drops nodes (smallest first) as long as what remains
//!    is still proven infeasible, which leaves a set where every node
//!    matters.

use mx_diag::code;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use mx_diag::Diagnostic;
use mx_xir::{Facility, Mode};

use crate::fabric::Fabric;
use crate::ilp::{self, Room, Unsolved};
use crate::matching::Need;
use crate::place::size;
use crate::usage::Usage;

/// Largest instance the packing certificate runs the exact engine on.
const PACKING_LIMIT: usize = 30;
/// Time for each exact feasibility check, and for all of them: the
/// analysis runs after every engine has failed, and a user waits for it.
const CHECK: f64 = 2.0;
const BUDGET: Duration = Duration::from_secs(6);

/// A set of nodes that cannot be placed together, and why.
struct Conflict {
    members: Vec<usize>,
    /// What runs short: `cores`, `memory`, `disk` or `hosts`.
    resource: &'static str,
    hosts: Vec<usize>,
    /// `Some(free)` for an aggregate certificate; `None` for packing.
    free: Option<u64>,
}

/// The smallest conflict found among `needs`, as a diagnostic (E0306);
/// `None` when there is none to prove (the failure is not about room, or
/// the instance is too large for the packing certificate).
pub fn find(
    needs: &[Need],
    fac: &Facility,
    usage: &Usage,
    flags: &[crate::place::Verdicts],
) -> Option<Diagnostic> {
    let agg = aggregate(needs, fac, usage, flags);
    // The exact engine shrinks the aggregate set where the pieces already
    // conflict (three of five VMs may be enough), or finds one of its own.
    let start = agg.as_ref().map(|c| c.members.clone());
    let packed = packing(needs, fac, usage, flags, start.as_deref());
    let c = match (agg, packed) {
        (Some(a), Some(p)) if p.members.len() < a.members.len() => p,
        (Some(a), _) => a,
        (None, p) => p?,
    };
    Some(render(&c, needs, fac, usage))
}

fn demand(n: &Need, resource: &str) -> u64 {
    match resource {
        "cores" => u64::from(n.cores),
        "memory" => n.memory,
        "disk" => n.disk,
        _ => 1,
    }
}

fn free_of(usage: &Usage, h: &mx_xir::Host, resource: &str) -> u64 {
    if usage.host(&h.name).metal {
        return 0;
    }
    let (c, m, d) = usage.free(h);
    match resource {
        "cores" => u64::from(c),
        "memory" => m,
        _ => d,
    }
}

fn aggregate(
    needs: &[Need],
    fac: &Facility,
    usage: &Usage,
    flags: &[crate::place::Verdicts],
) -> Option<Conflict> {
    let hosts = fac.hosts.len();
    let only = |ni: usize, bit: u8| (0..hosts).all(|h| flags[ni][h] & (3 ^ bit) == 0);
    // Per node: the hosts it could use in its only mode (None: flexible or unplaceable).
    let cands: Vec<Option<(Mode, Vec<usize>)>> = (0..needs.len())
        .map(|ni| {
            let n = &needs[ni];
            let vm = n.mode == Some(Mode::Vm) || only(ni, 2);
            let metal = n.mode == Some(Mode::Metal) || only(ni, 1);
            let (mode, bit) = match (vm, metal) {
                (true, false) => (Mode::Vm, 2),
                (false, true) => (Mode::Metal, 1),
                _ => return None,
            };
            let hs: Vec<usize> = (0..hosts).filter(|&h| flags[ni][h] & bit != 0).collect();
            (!hs.is_empty()).then_some((mode, hs))
        })
        .collect();
    // Candidate host sets, keyed by mode (VM first), each with the union of a mode's sets.
    let key = |m: Mode| u8::from(m == Mode::Metal);
    let mut sets: BTreeSet<(u8, Vec<usize>)> = cands
        .iter()
        .flatten()
        .map(|(m, hs)| (key(*m), hs.clone()))
        .collect();
    for mode in [Mode::Vm, Mode::Metal] {
        let all: BTreeSet<usize> = sets
            .iter()
            .filter(|(m, _)| *m == key(mode))
            .flat_map(|(_, hs)| hs.iter().copied())
            .collect();
        if !all.is_empty() {
            sets.insert((key(mode), all.into_iter().collect()));
        }
    }
    let mut best: Option<Conflict> = None;
    for (k, hs) in &sets {
        let mode = &if *k == 0 { Mode::Vm } else { Mode::Metal };
        let inside: BTreeSet<usize> = hs.iter().copied().collect();
        let confined: Vec<usize> = (0..needs.len())
            .filter(|&ni| {
                cands[ni]
                    .as_ref()
                    .is_some_and(|(m, c)| m == mode && c.iter().all(|h| inside.contains(h)))
            })
            .collect();
        let resources: &[&'static str] = match mode {
            Mode::Vm => &["cores", "memory", "disk"],
            Mode::Metal => &["hosts"],
        };
        for &r in resources {
            let free: u64 = match mode {
                Mode::Vm => hs.iter().map(|&h| free_of(usage, &fac.hosts[h], r)).sum(),
                Mode::Metal => hs
                    .iter()
                    .filter(|&&h| usage.idle(&fac.hosts[h].name))
                    .count() as u64,
            };
            let mut order = confined.clone();
            order.sort_by_key(|&ni| (std::cmp::Reverse(demand(&needs[ni], r)), ni));
            let mut sum = 0;
            for (k, &ni) in order.iter().enumerate() {
                sum += demand(&needs[ni], r);
                if sum > free {
                    // One node alone is E0301's to explain.
                    if k >= 1 && best.as_ref().is_none_or(|b| k + 1 < b.members.len()) {
                        let mut members = order[..=k].to_vec();
                        members.sort_unstable();
                        best = Some(Conflict {
                            members,
                            resource: r,
                            hosts: hs.clone(),
                            free: Some(free),
                        });
                    }
                    break;
                }
            }
        }
    }
    best
}

/// The packing certificate, shrinking `start` (already proven infeasible)
/// or else all nodes.
fn packing(
    needs: &[Need],
    fac: &Facility,
    usage: &Usage,
    flags: &[crate::place::Verdicts],
    start: Option<&[usize]>,
) -> Option<Conflict> {
    if needs.len() > PACKING_LIMIT
        || needs.iter().any(|n| {
            n.gpu.is_some()
                || n.pin
                || n.nics.iter().any(|(_, _, x)| {
                    !matches!(
                        x,
                        crate::matching::NicNeed::Any | crate::matching::NicNeed::Virtual(_)
                    )
                })
        })
    {
        return None;
    }
    let free: Vec<(u32, u64, u64)> = fac.hosts.iter().map(|h| usage.free(h)).collect();
    let idle: Vec<bool> = fac.hosts.iter().map(|h| usage.idle(&h.name)).collect();
    let metal: Vec<bool> = fac
        .hosts
        .iter()
        .map(|h| usage.host(&h.name).metal)
        .collect();
    let room = Room {
        free: &free,
        idle: &idle,
        metal_taken: &metal,
    };
    let fabric = Fabric::none(fac.hosts.len());
    let proven_infeasible = |set: &[usize]| {
        let sub: Vec<Need> = set.iter().map(|&i| needs[i].clone()).collect();
        let fl: Vec<crate::place::Verdicts> = set.iter().map(|&i| flags[i].clone()).collect();
        ilp::solve(&sub, fac, &fl, &room, &[], &fabric, CHECK) == Err(Unsolved::Infeasible)
    };
    let begun = Instant::now();
    let mut set: Vec<usize> = match start {
        Some(s) => s.to_vec(),
        // Nodes no host matches at all are E0301's, not part of a conflict.
        None => (0..needs.len())
            .filter(|&i| flags[i].iter().any(|&f| f != 0))
            .collect(),
    };
    if start.is_none() && !proven_infeasible(&set) {
        return None;
    }
    let mut order = set.clone();
    order.sort_by_key(|&i| (needs[i].cores, needs[i].memory, needs[i].disk, i));
    for i in order {
        if begun.elapsed() > BUDGET {
            break; // what is left is still proven infeasible, if not minimal
        }
        let without: Vec<usize> = set.iter().copied().filter(|&j| j != i).collect();
        if !without.is_empty() && proven_infeasible(&without) {
            set = without;
        }
    }
    if set.len() < 2 {
        return None; // one node that fits nowhere: E0301 says why
    }
    let hosts: BTreeSet<usize> = set
        .iter()
        .flat_map(|&i| (0..fac.hosts.len()).filter(move |&h| flags[i][h] != 0))
        .collect();
    Some(Conflict {
        members: set,
        resource: "cores",
        hosts: hosts.into_iter().collect(),
        free: None,
    })
}

/// Names a group of hosts compactly (see [`crate::place::group`]).
fn group(fac: &Facility, hosts: &[usize]) -> String {
    let names: Vec<&str> = hosts.iter().map(|&h| fac.hosts[h].name.as_str()).collect();
    crate::place::group(&names)
}

fn amount(resource: &str, v: u64) -> String {
    match resource {
        "cores" => format!("{v} core{}", if v == 1 { "" } else { "s" }),
        "hosts" => format!("{v} whole host{}", if v == 1 { "" } else { "s" }),
        _ => size(v),
    }
}

fn render(c: &Conflict, needs: &[Need], fac: &Facility, usage: &Usage) -> Diagnostic {
    // Up to four names, else three and a count.
    let names = |members: &[usize]| -> String {
        let who: Vec<String> = members
            .iter()
            .map(|&i| format!("`{}`", needs[i].node.name))
            .collect();
        if who.len() <= 4 {
            who.join(", ")
        } else {
            format!("{} and {} more", who[..3].join(", "), who.len() - 3)
        }
    };
    let listed = names(&c.members);
    let amount_of = |n: &Need| match c.resource {
        "hosts" => "a whole host".to_string(),
        r if c.free.is_some() => amount(r, demand(n, r)),
        _ => format!(
            "{}, {}",
            amount("cores", u64::from(n.cores)),
            size(n.memory)
        ),
    };
    // One label per distinct span (nodes made in one loop share theirs).
    let mut spans: Vec<(mx_xir::Span, Vec<usize>)> = Vec::new();
    for &i in &c.members {
        let sp = needs[i].node.span;
        match spans.iter_mut().find(|(s, _)| *s == sp) {
            Some((_, v)) => v.push(i),
            None => spans.push((sp, vec![i])),
        }
    }
    let label = |group: &[usize]| -> String {
        let each: BTreeSet<String> = group.iter().map(|&i| amount_of(&needs[i])).collect();
        let few = names(group);
        match (group.len(), each.len()) {
            (1, _) => format!("{few} needs {}", amount_of(&needs[group[0]])),
            (_, 1) => format!(
                "{few} need {} each",
                each.into_iter().next().unwrap_or_default()
            ),
            (n, _) if n > 4 => {
                let r = if c.free.is_some() {
                    c.resource
                } else {
                    "cores"
                };
                let d: Vec<u64> = group.iter().map(|&i| demand(&needs[i], r)).collect();
                let (lo, hi) = (
                    d.iter().min().copied().unwrap_or(0),
                    d.iter().max().copied().unwrap_or(0),
                );
                format!(
                    "{few} need {} to {} each",
                    amount(r, lo).split(' ').next().unwrap_or_default(),
                    amount(r, hi)
                )
            }
            _ => group
                .iter()
                .map(|&i| format!("`{}` needs {}", needs[i].node.name, amount_of(&needs[i])))
                .collect::<Vec<_>>()
                .join("; "),
        }
    };
    let mut d = Diagnostic::error(
        code::E0306,
        format!(
            "{} nodes cannot be placed together: {listed}",
            c.members.len()
        ),
    )
    .primary(spans[0].0.range(), label(&spans[0].1));
    for (sp, group) in spans.iter().skip(1).take(7) {
        d = d.secondary(sp.range(), label(group));
    }
    // The hosts they could use, in the facility model.
    for &h in c.hosts.iter().take(4) {
        let host = &fac.hosts[h];
        let (fc, fm, _) = usage.free(host);
        d = d.secondary_in(
            &fac.source.path,
            host.span.range(),
            format!("`{}`: {fc} cores and {} free", host.name, size(fm)),
        );
    }
    let hosts = group(fac, &c.hosts);
    let help = match c.free {
        Some(free) => {
            let want: u64 = c
                .members
                .iter()
                .map(|&i| demand(&needs[i], c.resource))
                .sum();
            format!(
                "together they ask for {}; the hosts they can use ({hosts}) have {} free, and no fewer of them ask for more. Shrink or drop one, or relinquish experiments that hold these hosts (`mxc alloc show`)",
                amount(c.resource, want),
                amount(c.resource, free),
            )
        }
        None => {
            let free: Vec<String> = c
                .hosts
                .iter()
                .take(4)
                .map(|&h| {
                    let (fc, fm, _) = usage.free(&fac.hosts[h]);
                    format!("{} has {fc} cores and {}", fac.hosts[h].name, size(fm))
                })
                .collect();
            format!(
                "in total they would fit the hosts they can use ({hosts}), but not host by host, since a VM lives on one host ({}); shrink or drop one of them",
                free.join(", "),
            )
        }
    };
    d.help(help)
}
