//! The realizer: maps an experiment (XIR) onto a facility (XIR), given what
//! is already allocated, and plans every link.
//!
//! 1. [`matching`]: what each node needs and which hosts can give it
//!    (filtered in parallel with rayon, results in facility order);
//! 2. [`place`]: a greedy placement that keeps linked nodes together and packs
//!    best-fit, deterministic for a seed;
//! 3. [`links`]: XDP pairs, bridges and VXLAN segments, VFs and ports with
//!    VLAN tags unique per leaf, VNIs from the pool;
//! 4. [`verify`]: an independent checker that every test runs on the result;
//!    [`table`]: the SQLite allocation table that realizations commit to;
//! 5. when no realization exists, diagnostics that say why in the model's
//!    terms, with spans.
//!
//! ```
//! # let exp = mx_xir::Experiment::new("e", "e.mx");
//! # let fac = mx_xir::Facility::new("f", "f.mx");
//! let usage = mx_realizer::Usage::default();
//! let result = mx_realizer::realize(&exp, &fac, &usage, &mx_realizer::Options::default());
//! assert!(result.is_ok()); // nothing to place
//! ```

pub mod conflict;
pub mod fabric;
pub mod gpus;
pub mod ilp;
pub mod links;
pub mod matching;
pub mod network;
pub mod place;
pub mod table;
pub mod usage;
pub mod verify;

use mx_diag::Diagnostic;
use mx_diag::code;
use mx_xir::{Experiment, Facility, Realization};

pub use usage::Usage;

/// Extra walks of the heuristic tried by [`realize`] on instances of at most
/// [`RESTART_LIMIT`] nodes.
const RESTARTS: u32 = 32;
const RESTART_LIMIT: usize = 2000;

/// Realization options.
#[derive(Clone, Debug)]
pub struct Options {
    /// Name of the realization (defaults to the experiment's).
    pub name: Option<mx_xir::Name>,
    /// Seed for tie-breaking; the same inputs and seed give the same result.
    pub seed: u64,
    /// Record every candidate's verdict (for `--explain`).
    pub explain: bool,
    /// Which engine places the nodes.
    pub solver: Solver,
    /// Which restart of the heuristic this is (0: the plain run); set by
    /// [`realize`] when it tries several walks and keeps the best.
    pub restart: u32,
}

/// The placement engine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Solver {
    /// The heuristic; the exact engine where it fails on a small instance.
    #[default]
    Auto,
    /// The integer linear program (optimal; small instances).
    Ilp,
    /// Greedy placement plus local search (any size).
    Heuristic,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            name: None,
            seed: 1,
            explain: false,
            solver: Solver::Auto,
            restart: 0,
        }
    }
}

/// A successful realization, plus the candidate report when asked for.
#[derive(Debug)]
pub struct Outcome {
    /// The realization.
    pub realization: Realization,
    /// One line per (node, host) when `explain` was set.
    pub explanation: Vec<String>,
}

/// The `==` constraints of a node that shape its VM rather than choose a host.
fn profile(n: &mx_xir::Node) -> mx_xir::Profile {
    use mx_xir::{Op, Value};
    let mut p = mx_xir::Profile::default();
    for c in n.constraints.iter().filter(|c| c.op == Op::Eq) {
        match (&*c.property, &c.value) {
            ("image", Value::Text(t)) => p.image = Some(t.clone()),
            ("clock", Value::Int(hz)) if *hz > 0 => p.clock = Some(*hz as u64),
            ("tdf", Value::Int(f)) if *f > 0 => p.tdf = Some(*f as f64),
            ("tdf", Value::Float(f)) if *f > 0.0 => p.tdf = Some(*f),
            ("pcie", Value::Pcie(x)) => p.pcie = Some(*x),
            ("membus", Value::Membus(m)) => p.membus = Some(*m),
            ("gpu", Value::Text(t)) => p.gpu = Some(t.clone()),
            ("gpu_mode", Value::Text(t)) => p.gpu_mode = Some(t.clone()),
            _ => {}
        }
    }
    p.pin = n.properties.get("pin").and_then(|v| v.as_bool()) == Some(true);
    if let Some(args) = n.properties.get("kernel_args").and_then(|v| v.as_str()) {
        p.kernel_args = args.split_whitespace().map(str::to_string).collect();
    }
    p
}

/// The tag a realization named `name` prefers: 24 bits of its name's
/// SHA-256, so a name keeps its tag (and device names) while it is free.
pub fn preferred_tag(name: &str) -> u32 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(name.as_bytes());
    u32::from_be_bytes([0, d[0], d[1], d[2]])
}

/// The first tag at or after the preferred one (wrapping in 24 bits, never
/// 0) that no other realization in the table holds.
pub fn free_tag(name: &str, used: &std::collections::BTreeSet<u32>) -> Option<u32> {
    let start = preferred_tag(name);
    (0..1u32 << 24)
        .map(|i| (start + i) & 0x00ff_ffff)
        .find(|t| *t != 0 && !used.contains(t))
}

/// Realizes `exp` on `fac` given `usage`, or explains why it cannot be done.
pub fn realize(
    exp: &Experiment,
    fac: &Facility,
    usage: &Usage,
    opts: &Options,
) -> Result<Outcome, Vec<Diagnostic>> {
    let needs = matching::needs(exp);
    let fabric = fabric::Fabric::new(exp, fac, usage);
    // `auto`: the heuristic, which with its annealing pass matches the
    // optimum on small instances in milliseconds; the exact engine where the
    // heuristic fails and the instance is small enough for it, since packing
    // that exactly fits (demand equals capacity) can defeat a greedy pass.
    let heuristic = Options {
        solver: Solver::Heuristic,
        ..opts.clone()
    };
    // Conflict analysis (which can take seconds) runs only once every
    // engine has failed.
    let explain = |u: place::Unplaced| u.explain(&needs, fac, usage, true);
    let mut placement = match opts.solver {
        Solver::Auto => match place::place(fac, usage, &needs, &fabric, &heuristic) {
            Ok(p) => p,
            Err(_) if ilp::fits(&needs, fac) => place::place(
                fac,
                usage,
                &needs,
                &fabric,
                &Options {
                    solver: Solver::Ilp,
                    ..opts.clone()
                },
            )
            .map_err(explain)?,
            Err(u) => return Err(explain(u)),
        },
        _ => place::place(fac, usage, &needs, &fabric, opts).map_err(explain)?,
    };
    // The heuristic depends on the order it walks the graph: on instances of
    // moderate size, try a few more walks (in parallel) and keep the one of
    // lowest cost; ties keep the earliest, so the result is still a function
    // of the seed.
    if placement.engine == "heuristic" && needs.len() <= RESTART_LIMIT {
        use rayon::prelude::*;
        let links = &fabric.links;
        let host_index: std::collections::HashMap<&str, usize> = fac
            .hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (h.name.as_str(), i))
            .collect();
        // The engines' own cost: weighted crossing links, plus the penalty
        // for oversubscribed uplinks and trunks.
        let crossing = |p: &[mx_xir::Placement]| -> i64 {
            let hosts: Vec<usize> = p.iter().map(|x| host_index[x.host.as_str()]).collect();
            fabric.crossing(links, &hosts) + fabric.overflow(&fabric.load(links, &hosts))
        };
        let tries: Vec<place::Placed> = (1..=RESTARTS)
            .into_par_iter()
            .filter_map(|k| {
                place::place(
                    fac,
                    usage,
                    &needs,
                    &fabric,
                    &Options {
                        restart: k,
                        solver: Solver::Heuristic,
                        ..opts.clone()
                    },
                )
                .ok()
            })
            .collect();
        let mut best = crossing(&placement.placements);
        for t in tries {
            let c = crossing(&t.placements);
            if c < best {
                best = c;
                placement = place::Placed {
                    explanation: placement.explanation,
                    ..t
                };
            }
        }
    }
    let name = opts.name.clone().unwrap_or_else(|| exp.name.clone());
    let tag = free_tag(&name, &usage.tags).ok_or_else(|| {
        vec![
            Diagnostic::error(code::E0308, "every experiment tag is held by a realization").help(
                "relinquish realizations that are no longer up (`mxc alloc show` lists them)",
            ),
        ]
    })?;
    let mut real = Realization::new(
        &name,
        &exp.source.path,
        &fac.name,
        placement.engine,
        opts.seed,
    );
    real.tag = tag;
    real.nodes = placement.placements;
    for (p, n) in real.nodes.iter_mut().zip(&exp.nodes) {
        p.profile = profile(n);
    }
    real.links = links::plan(exp, fac, usage, &real.nodes, &needs).map_err(|d| vec![d])?;
    // The experiment's own IP network: addresses, routes, names.
    let asks = network::Asks::of(exp);
    if asks.addressing {
        network::assign(exp, &mut real.links).map_err(|d| vec![d])?;
    }
    if asks.routing {
        let index = matching::node_index(exp);
        for (p, r) in
            real.nodes
                .iter_mut()
                .zip(network::routes(exp.nodes.len(), &real.links, &index))
        {
            p.routes = r.routes;
            p.forward = r.forward;
        }
    }
    real.resolve_names = asks.resolution;
    let used: std::collections::BTreeSet<&str> =
        real.nodes.iter().map(|p| p.host.as_str()).collect();
    real.hosts = fac
        .hosts
        .iter()
        .filter(|h| used.contains(h.name.as_str()))
        .map(|h| mx_xir::HostPlan {
            name: h.name.clone(),
            arch: h.arch.clone(),
            clock: h.clock,
            underlay: h.underlay,
            netns: h.netns,
            ports: if h.nics.iter().any(|n| !n.devices.is_empty()) {
                h.nics
                    .iter()
                    .flat_map(|n| (0..n.ports as usize).map(|i| n.devices.get(i).cloned()))
                    .collect()
            } else {
                Vec::new()
            },
        })
        .collect();
    // The leaves that VFs and ports reach the experiment through.
    let leaves: std::collections::BTreeSet<&str> = real
        .links
        .iter()
        .flat_map(|l| &l.endpoints)
        .filter_map(|e| e.attach.switch().map(|s| s.as_str()))
        .collect();
    real.switches = fac
        .switches
        .iter()
        .filter(|s| leaves.contains(s.name.as_str()))
        .map(|s| mx_xir::SwitchPlan {
            name: s.name.clone(),
            underlay: s.underlay,
            netns: s.netns,
        })
        .collect();
    Ok(Outcome {
        realization: real,
        explanation: placement.explanation,
    })
}
