//! Materializing and running: `up` from a model or from bundles, its
//! dry run (`plan`), `resume` and `down`. Each says, as a type, whether
//! anything was touched and what became of the allocation.

use std::path::Path;

use mx_diag::{Diagnostic, code};

use crate::{RealizeError, RealizeRequest, Realized, TableAt, ToolError, realize, release};

/// Why `up` stopped short, and what it gave back.
pub enum UpStop {
    /// Realizing failed: nothing was allocated.
    Realize(RealizeError),
    /// The experiment is up on this machine already: nothing was allocated.
    AlreadyUp(Vec<Diagnostic>),
    /// Materializing failed, the bundles are unusable, or the runtime
    /// refused before touching anything. An allocation this call made was
    /// given back (`released` says whether that worked; `None` when it
    /// made none: bundles were realized earlier, and their allocation is
    /// the realizer's business).
    Released {
        diagnostics: Vec<Diagnostic>,
        released: Option<Result<(), ToolError>>,
    },
    /// The guest images could not be built (the tool's trouble); an
    /// allocation this call made was given back, as for `Released`.
    Images {
        error: ToolError,
        released: Option<Result<(), ToolError>>,
    },
    /// The store could not be written (the tool's trouble); an allocation
    /// this call made was given back, as for `Released`.
    Store {
        error: ToolError,
        released: Option<Result<(), ToolError>>,
    },
    /// The runtime started and failed: what it did is recorded in its
    /// state directory for `down` (or `up --resume`), and the allocation
    /// stays with it.
    Failed(mx_runtime::UpError),
}

/// What `up` brought up.
pub struct Up {
    pub realized: Realized,
    pub bundles: Vec<mx_materializer::Bundle>,
    pub plan: mx_runtime::Plan,
}

/// What `up` reports while it works.
pub enum UpEvent<'a> {
    /// Realized (and allocated); `tasks` fragments are about to run.
    Realized(&'a Realized, usize),
    /// Bundles checked; this many fragments are about to run (or, for
    /// `down`, to be taken down).
    Bundles(usize),
    /// A task started or ended.
    Task(mx_runtime::Event<'a>),
}

/// Realizes, allocates, materializes and runs an experiment on this
/// machine, reporting progress through `report`. Every way it can stop
/// says whether the allocation was kept.
pub fn up(
    req: &RealizeRequest,
    rt: &mx_runtime::Runtime,
    report: &mut dyn FnMut(UpEvent),
) -> Result<Up, UpStop> {
    let name = req
        .options
        .name
        .clone()
        .unwrap_or_else(|| req.experiment.name.clone());
    if rt.state_dir(&name).exists() {
        return Err(UpStop::AlreadyUp(vec![
            Diagnostic::error(
                code::E0403,
                format!(
                    "experiment `{name}` is already up on this machine (state in {})",
                    rt.state_dir(&name).display()
                ),
            )
            .help(format!(
                "`mxc status {name}` shows it; `mxc down {name}` removes it; `mxc up --resume` finishes a run that failed"
            )),
        ]));
    }
    let realized = realize(req).map_err(UpStop::Realize)?;
    let name = realized.realization.name.clone();
    let release_it = || realized.allocated.then(|| release(&req.db, &name));
    let give_back = |diagnostics: Vec<Diagnostic>| UpStop::Released {
        diagnostics,
        released: release_it(),
    };
    let bundles = match mx_materializer::materialize(&realized.realization) {
        Ok(b) => b,
        Err(d) => return Err(give_back(vec![d])),
    };
    if let Err(e) = rt.ensure_images(&bundles) {
        return Err(UpStop::Images {
            error: ToolError(e),
            released: release_it(),
        });
    }
    report(UpEvent::Realized(
        &realized,
        bundles.iter().map(|b| b.fragments.len()).sum(),
    ));
    match rt.up(&bundles, &mut |e| report(UpEvent::Task(e))) {
        Ok(plan) => Ok(Up {
            realized,
            bundles,
            plan,
        }),
        // Nothing was touched: give the allocation back.
        Err(mx_runtime::UpError::Refused(d)) => Err(give_back(d)),
        Err(e) => Err(UpStop::Failed(e)),
    }
}

/// What `up` would do: the realization (a dry run: nothing allocated), its
/// bundles and the runtime's plan. Nothing on the machine is touched.
pub struct Planned {
    pub realized: Realized,
    pub bundles: Vec<mx_materializer::Bundle>,
    pub plan: mx_runtime::Plan,
}

/// Why a plan could not be made; nothing was allocated or touched.
pub enum PlanStop {
    Realize(RealizeError),
    /// Materializing failed or the runtime refused the bundles.
    Refused(Vec<Diagnostic>),
}

/// The dry run of [`up`]: realizes without allocating, materializes and
/// plans. `req.dry_run` must be set: a plan never allocates.
pub fn plan(req: &RealizeRequest, rt: &mx_runtime::Runtime) -> Result<Planned, PlanStop> {
    assert!(req.dry_run, "a plan is made from a dry run");
    let realized = realize(req).map_err(PlanStop::Realize)?;
    let bundles = mx_materializer::materialize(&realized.realization)
        .map_err(|d| PlanStop::Refused(vec![d]))?;
    let (plan, _) = rt.plan(&bundles, false).map_err(PlanStop::Refused)?;
    Ok(Planned {
        realized,
        bundles,
        plan,
    })
}

/// Bundles written by `mxc materialize`, checked (digests, names, paths)
/// and planned; nothing on the machine is touched.
pub fn plan_bundles(
    dir: &Path,
    rt: &mx_runtime::Runtime,
) -> Result<(Vec<mx_materializer::Bundle>, mx_runtime::Plan), Vec<Diagnostic>> {
    let bundles = mx_runtime::bundle::load_dir(dir).map_err(|d| vec![d])?;
    let (plan, _) = rt.plan(&bundles, false)?;
    Ok((bundles, plan))
}

/// What `up` from bundles brought up.
pub struct BundlesUp {
    pub bundles: Vec<mx_materializer::Bundle>,
    pub plan: mx_runtime::Plan,
}

/// `up` from bundles written by `mxc materialize`: checked before anything
/// is touched, then run. The bundles were realized (and allocated) by an
/// earlier `mxc realize`; whatever happens here, that allocation is left
/// alone (`mxc relinquish` gives it back).
pub fn up_bundles(
    dir: &Path,
    rt: &mx_runtime::Runtime,
    report: &mut dyn FnMut(UpEvent),
) -> Result<BundlesUp, UpStop> {
    let refused = |diagnostics| UpStop::Released {
        diagnostics,
        released: None,
    };
    let bundles = mx_runtime::bundle::load_dir(dir).map_err(|d| refused(vec![d]))?;
    // Checked before images are built for them: bundles are untrusted.
    rt.plan(&bundles, false).map_err(refused)?;
    if let Err(e) = rt.ensure_images(&bundles) {
        return Err(UpStop::Images {
            error: ToolError(e),
            released: None,
        });
    }
    report(UpEvent::Bundles(
        bundles.iter().map(|b| b.fragments.len()).sum(),
    ));
    match rt.up(&bundles, &mut |e| report(UpEvent::Task(e))) {
        Ok(plan) => Ok(BundlesUp { bundles, plan }),
        Err(mx_runtime::UpError::Refused(d)) => Err(refused(d)),
        Err(mx_runtime::UpError::AlreadyUp(d)) => Err(UpStop::AlreadyUp(d)),
        Err(e) => Err(UpStop::Failed(e)),
    }
}

/// Finishes a run of `name` that failed, from the bundles in its state
/// directory; the allocation stays as it is.
pub fn resume(
    name: &mx_xir::Name,
    rt: &mx_runtime::Runtime,
    report: &mut dyn FnMut(UpEvent),
) -> Result<mx_runtime::Plan, Vec<Diagnostic>> {
    let total = rt
        .bundles(name)
        .map(|b| b.iter().map(|b| b.fragments.len()).sum())
        .unwrap_or(0);
    report(UpEvent::Bundles(total));
    rt.resume(name, &mut |e| report(UpEvent::Task(e)))
}

/// Why `down` stopped short.
pub enum DownStop {
    /// The runtime could not take the experiment down (it is not up, or a
    /// task failed); the allocation is kept, so nothing is handed out
    /// twice while the experiment may still hold it.
    Runtime(Vec<Diagnostic>),
    /// The experiment is down, but its allocation could not be given back.
    Allocation(ToolError),
}

/// Takes `name` down on this machine, then gives its allocation in `db`
/// back (an experiment brought up from bundles may have none there).
/// `report` sees the runtime's progress, a task count first.
pub fn down(
    name: &mx_xir::Name,
    db: &TableAt,
    rt: &mx_runtime::Runtime,
    report: &mut dyn FnMut(UpEvent),
) -> Result<(), DownStop> {
    let total = rt
        .bundles(name)
        .map(|b| b.iter().map(|b| b.fragments.len()).sum())
        .unwrap_or(0);
    report(UpEvent::Bundles(total));
    rt.down(name, false, &mut |e| report(UpEvent::Task(e)))
        .map_err(DownStop::Runtime)?;
    crate::release_if_held(db, name).map_err(DownStop::Allocation)
}

/// The operations `down` would run, dependents first; nothing is touched.
pub fn down_plan(
    name: &mx_xir::Name,
    rt: &mx_runtime::Runtime,
) -> Result<Vec<String>, Vec<Diagnostic>> {
    rt.down(name, true, &mut |_| {})
}
