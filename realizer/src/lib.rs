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

pub mod ilp;
pub mod links;
pub mod matching;
pub mod place;
pub mod table;
pub mod usage;
pub mod verify;

use mx_diag::Diagnostic;
use mx_xir::{Experiment, Facility, Realization};

pub use usage::Usage;

/// Realization options.
#[derive(Clone, Debug)]
pub struct Options {
    /// Name of the realization (defaults to the experiment's).
    pub name: Option<String>,
    /// Seed for tie-breaking; the same inputs and seed give the same result.
    pub seed: u64,
    /// Record every candidate's verdict (for `--explain`).
    pub explain: bool,
    /// Which engine places the nodes.
    pub solver: Solver,
}

/// The placement engine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Solver {
    /// The exact engine for small instances, the heuristic otherwise.
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

/// Realizes `exp` on `fac` given `usage`, or explains why it cannot be done.
pub fn realize(
    exp: &Experiment,
    fac: &Facility,
    usage: &Usage,
    opts: &Options,
) -> Result<Outcome, Vec<Diagnostic>> {
    let needs = matching::needs(exp);
    let placement = place::place(exp, fac, usage, &needs, opts)?;
    let name = opts.name.clone().unwrap_or_else(|| exp.name.clone());
    let mut real = Realization::new(
        &name,
        &exp.source.path,
        &fac.name,
        placement.engine,
        opts.seed,
    );
    real.nodes = placement.placements;
    real.links = links::plan(exp, fac, usage, &real.nodes, &needs).map_err(|d| vec![d])?;
    Ok(Outcome {
        realization: real,
        explanation: placement.explanation,
    })
}
