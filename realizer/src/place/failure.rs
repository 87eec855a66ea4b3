//! Why nodes could not be placed, in the model's terms: E0301 per node,
//! at the constraints that rule hosts out, and a summary of demand against
//! supply when many fail.

use mx_diag::code;
use std::collections::BTreeMap;

use mx_diag::Diagnostic;
use mx_xir::{Facility, Mode};

use crate::gpus;
use crate::matching::{Need, Verdict, host_verdict};
use crate::usage::Usage;

/// Hosts grouped by the constraint (span) and reason that rule them out.
type ReasonGroups<'a> = BTreeMap<(Option<(u32, u32)>, String), Vec<&'a str>>;

/// `--explain`: every node against every host, with each mode's verdict.
pub(crate) fn verdict_lines(needs: &[Need], fac: &Facility) -> Vec<String> {
    let mut explanation = Vec::new();
    {
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

    explanation
}

pub(crate) fn forced(mode: Mode) -> Verdict {
    Verdict {
        constraint: None,
        reason: match mode {
            Mode::Vm => "the node must be a VM".into(),
            Mode::Metal => "the node must be bare metal".into(),
        },
    }
}

/// Names a group of hosts compactly: `hv0, hv1` or `hv0..hv63 (64 hosts)`.
pub fn group(names: &[&str]) -> String {
    match names.len() {
        0 => String::new(),
        1..=3 => names.join(", "),
        n => format!("{}..{} ({n} hosts)", names[0], names[n - 1]),
    }
}

pub(crate) fn explain_failure(n: &Need, fac: &Facility, usage: &Usage) -> Diagnostic {
    let mut d = Diagnostic::error(
        code::E0301,
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
pub(crate) fn capacity_summary(
    needs: &[Need],
    fac: &Facility,
    usage: &Usage,
    failed: &[usize],
) -> Diagnostic {
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
        code::E0301,
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

#[cfg(test)]
mod tests {
    use super::super::testkit::*;

    /// A node no host can take is blamed on the constraint that rules the
    /// hosts out, at that constraint.
    #[test]
    fn a_failure_points_at_the_constraint() {
        let fac = hypervisors(&[8, 8]);
        let src = "a = topo.device('a', virt == true, cores == 64)\n";
        let exp = experiment(src);
        with(&exp, &fac, |ctx, _| {
            let d = super::explain_failure(&ctx.needs[0], &fac, &Default::default());
            assert_eq!(d.code, "E0301");
            let at = src.find("cores == 64").expect("constraint");
            assert!(
                d.labels
                    .iter()
                    .any(|l| l.start == at && l.text.contains("hv0")),
                "{d:?}"
            );
        });
    }
}
