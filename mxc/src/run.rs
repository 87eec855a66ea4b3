//! `mxc materialize`, `up`, `down`, `status` and `image`: the commands that
//! turn realizations into running experiments on this machine.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use mx_diag::Diagnostic;
use mx_runtime::{Event, Runtime, Status as TaskStatus};
use mx_xir::Name;

use crate::{ModelOptions, RealizeArgs, RealizeFormat, SolverArg, Status};
use mx_diag::HumanStyle;

/// The facility `mxc up` uses when none is given: this machine.
pub const LOCAL_FACILITY: (&str, &str) = (
    "<built-in>/local.mx",
    include_str!("../../examples/facilities/local.mx"),
);

#[derive(Args)]
pub struct MaterializeArgs {
    /// The realization (JSON, from `mxc realize -o`).
    realization: PathBuf,
    /// Write one bundle per host into this directory.
    #[arg(short, long, value_name = "DIR")]
    output: PathBuf,
}

#[derive(Args)]
pub struct UpArgs {
    /// The experiment model.
    model: PathBuf,
    /// The facility model (default: this machine, examples/facilities/local.mx).
    #[arg(long, value_name = "FAC")]
    facility: Option<PathBuf>,
    /// Print the task DAG and every operation; change nothing, allocate nothing.
    #[arg(long)]
    dry_run: bool,
    /// The allocation table: a file, or a shared store as etcd://HOST:PORT
    /// (default: $MX_DB, else ~/.local/share/mx/alloc.db).
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,
    /// Name of the experiment (default: the model's).
    #[arg(long, value_name = "NAME", value_parser = crate::parse_name)]
    name: Option<Name>,
    /// Seed for the realizer.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Run the DAG of an experiment that is already (partly) up again, from
    /// its state: after a crash, or once a failed task's cause is fixed.
    #[arg(long, conflicts_with = "dry_run")]
    resume: bool,
    /// Bring it up on the facility's hosts through their agents
    /// (`mxc agent`), coordinated through this store: etcd://HOST:PORT.
    #[arg(long, value_name = "URL", conflicts_with = "resume")]
    store: Option<String>,
    #[command(flatten)]
    model_options: ModelOptions,
}

#[derive(Args)]
pub struct DownArgs {
    /// The experiment.
    #[arg(value_parser = crate::parse_name)]
    name: Name,
    /// Print the teardown operations; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Take it down on every host through their agents (etcd://HOST:PORT).
    #[arg(long, value_name = "URL", conflicts_with = "dry_run")]
    store: Option<String>,
    /// The allocation table: a file, or a shared store as etcd://HOST:PORT
    /// (default: $MX_DB, else ~/.local/share/mx/alloc.db).
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,
}

#[derive(Args)]
pub struct StatusArgs {
    /// The experiment (default: list them all).
    #[arg(value_parser = crate::parse_name)]
    name: Option<Name>,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
    /// Every host's tasks as their agents report them (etcd://HOST:PORT);
    /// without a name, the agents.
    #[arg(long, value_name = "URL")]
    store: Option<String>,
}

/// Shows the runtime's findings with the one human renderer.
pub(crate) fn show(diags: &[Diagnostic]) {
    eprint!(
        "{}",
        mx_diag::render_unsourced(diags, crate::human_style(crate::Color::Auto))
    );
}

pub fn materialize(args: &MaterializeArgs) -> Status {
    let text = match std::fs::read_to_string(&args.realization) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", args.realization.display());
            return Status::Error;
        }
    };
    let real: mx_xir::Realization = match serde_json::from_str(&text) {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "error: {}:{}:{}: not a realization: {e}",
                args.realization.display(),
                e.line(),
                e.column()
            );
            eprintln!("  help: write one with `mxc realize MODEL -o realization.json`");
            return Status::Failure;
        }
    };
    let bundles = match mx_materializer::materialize(&real) {
        Ok(b) => b,
        Err(d) => {
            show(&[d]);
            return Status::Failure;
        }
    };
    if let Err(e) = mx_materializer::write(&args.output, &bundles) {
        eprintln!("error: cannot write {}: {e}", args.output.display());
        return Status::Error;
    }
    for b in &bundles {
        eprintln!(
            "{}/{}: {} fragments",
            args.output.display(),
            b.host,
            b.fragments.len()
        );
    }
    Status::Success
}

/// Shows task progress: a line that updates in place on a terminal, one
/// line per finished task otherwise.
struct Progress {
    tty: bool,
    total: usize,
    done: usize,
    started: Instant,
}

impl Progress {
    fn new(total: usize) -> Progress {
        Progress {
            tty: std::io::stderr().is_terminal(),
            total,
            done: 0,
            started: Instant::now(),
        }
    }

    /// A pipeline event: a task count starts the count over.
    fn on(&mut self, e: mx_pipeline::UpEvent) {
        match e {
            mx_pipeline::UpEvent::Realized(_, total) | mx_pipeline::UpEvent::Bundles(total) => {
                *self = Progress::new(total)
            }
            mx_pipeline::UpEvent::Task(e) => self.event(e),
        }
    }

    fn event(&mut self, e: Event) {
        let mut err = std::io::stderr().lock();
        match e {
            Event::Start(id) if self.tty => {
                let _ = write!(
                    err,
                    "\r\x1b[K[{:>3}/{}] {:>5.1}s  {id}",
                    self.done,
                    self.total,
                    self.started.elapsed().as_secs_f64()
                );
            }
            Event::Start(_) => {}
            Event::End(id, res, ms) => {
                self.done += 1;
                if self.tty {
                    let _ = write!(err, "\r\x1b[K");
                }
                match res {
                    Ok(None) if self.tty => {}
                    Ok(None) => {
                        let _ = writeln!(
                            err,
                            "[{:>3}/{}] ok    {id} ({ms} ms)",
                            self.done, self.total
                        );
                    }
                    Ok(Some(note)) => {
                        let _ = writeln!(
                            err,
                            "[{:>3}/{}] ok    {id} ({ms} ms): {note}",
                            self.done, self.total
                        );
                    }
                    Err(e) => {
                        let _ = writeln!(
                            err,
                            "[{:>3}/{}] FAIL  {id} ({ms} ms): {e}",
                            self.done, self.total
                        );
                    }
                }
            }
        }
    }
}

pub fn up(args: &UpArgs, style: HumanStyle) -> Status {
    let rt = Runtime::from_env();
    let started = Instant::now();
    let mut progress = Progress::new(0);
    if args.model.is_dir() {
        if args.dry_run {
            return match mx_pipeline::plan_bundles(&args.model, &rt) {
                Ok((_, plan)) => crate::write_stdout(&plan.dag.describe()),
                Err(d) => {
                    show(&d);
                    Status::Failure
                }
            };
        }
        let result = mx_pipeline::up_bundles(&args.model, &rt, &mut |e| progress.on(e));
        return match result {
            Ok(up) => {
                show_up(&up.plan, &up.bundles, &up.bundles[0].experiment, started);
                Status::Success
            }
            Err(stop) => show_stop(stop, args, style),
        };
    }
    // Compiled once: `--resume` needs only its name, and the pipeline
    // takes the same output (it refuses a second `up` of the same
    // experiment before realizing, which would otherwise trip over the
    // first one's allocation with a less useful message).
    let Ok(compiled) = crate::compile_file(&args.model, &args.model_options) else {
        return Status::Error;
    };
    if args.resume && !args.dry_run {
        let name = args.name.clone().or_else(|| match &compiled.1 {
            Some(crate::Document::Experiment(x)) => Some(x.name.clone()),
            _ => None,
        });
        let Some(n) = name else {
            eprintln!(
                "error: {} does not compile to an experiment",
                args.model.display()
            );
            return Status::Failure;
        };
        return match mx_pipeline::resume(&n, &rt, &mut |e| progress.on(e)) {
            Ok(_) => {
                eprintln!("`{n}` is up");
                Status::Success
            }
            Err(d) => {
                show(&d);
                Status::Failure
            }
        };
    }
    let rargs = realize_args(args);
    let (report, exp) = match crate::experiment_of(&rargs, style, Some(compiled)) {
        Ok(x) => x,
        Err(s) => return s,
    };
    let request = crate::realize_request(&rargs, &exp, &report.file, LOCAL_FACILITY);
    if args.dry_run {
        return match mx_pipeline::plan(&request, &rt) {
            Ok(p) => {
                crate::show_realized(&p.realized, &rargs, style, &request.db);
                crate::write_stdout(&describe_plan(&p.plan, &p.realized.realization.name))
            }
            Err(mx_pipeline::PlanStop::Realize(e)) => crate::show_realize_error(&e, &rargs, style),
            Err(mx_pipeline::PlanStop::Refused(d)) => {
                show(&d);
                Status::Failure
            }
        };
    }
    if let Some(store) = &args.store {
        return crate::dist::up(
            &request,
            store,
            &|r| crate::show_realized(r, &rargs, style, &request.db),
            &|stop| show_stop(stop, args, style),
        );
    }
    let result = mx_pipeline::up(&request, &rt, &mut |e| match e {
        mx_pipeline::UpEvent::Realized(out, _) => {
            crate::show_realized(out, &rargs, style, &request.db);
            progress.on(e)
        }
        e => progress.on(e),
    });
    match result {
        Ok(up) => {
            show_up(
                &up.plan,
                &up.bundles,
                &up.realized.realization.name,
                started,
            );
            Status::Success
        }
        Err(stop) => show_stop(stop, args, style),
    }
}

/// `up`'s model options as the realize arguments the pipeline reads.
fn realize_args(args: &UpArgs) -> RealizeArgs {
    RealizeArgs {
        model: args.model.clone(),
        facility: args.facility.clone(),
        dry_run: args.dry_run,
        db: args.db.clone(),
        name: args.name.clone(),
        seed: args.seed,
        solver: SolverArg::Auto,
        format: RealizeFormat::Text,
        output: None,
        explain: false,
        model_options: args.model_options.clone(),
    }
}

/// The dry run of `up`: the task DAG and each task's operations.
fn describe_plan(plan: &mx_runtime::Plan, name: &Name) -> String {
    let mut out = String::new();
    out.push_str(&format!("# the task DAG of `{name}`\n"));
    out.push_str(&plan.dag.describe());
    out.push_str("\n# operations, task by task\n");
    for (t, ops) in plan.dag.tasks.iter().zip(&plan.ops) {
        out.push_str(&format!("{}:\n", t.fragment.id));
        for op in ops {
            out.push_str(&format!("    {op}\n"));
        }
    }
    out
}

/// Why `up` stopped, and what became of the allocation.
fn show_stop(stop: mx_pipeline::UpStop, args: &UpArgs, style: HumanStyle) -> Status {
    let released = |r: Option<Result<(), mx_pipeline::ToolError>>| {
        if let Some(Err(e)) = r {
            eprintln!("warning: the allocation was not given back: {e}");
        }
    };
    match stop {
        mx_pipeline::UpStop::Realize(e) => {
            crate::show_realize_error(&e, &realize_args(args), style)
        }
        mx_pipeline::UpStop::AlreadyUp(d) => {
            show(&d);
            Status::Failure
        }
        mx_pipeline::UpStop::Released {
            diagnostics,
            released: r,
        } => {
            show(&diagnostics);
            released(r);
            Status::Failure
        }
        mx_pipeline::UpStop::Images { error, released: r }
        | mx_pipeline::UpStop::Store { error, released: r } => {
            eprintln!("error: {error}");
            released(r);
            Status::Error
        }
        mx_pipeline::UpStop::Failed(e) => {
            show(e.diagnostics());
            Status::Failure
        }
    }
}

/// The end of a successful `up`: the runtime's notes and a summary.
fn show_up(
    plan: &mx_runtime::Plan,
    bundles: &[mx_materializer::Bundle],
    name: &Name,
    started: Instant,
) {
    for n in &plan.notes {
        eprintln!("note: {n}");
    }
    let total: usize = bundles.iter().map(|b| b.fragments.len()).sum();
    let vms = bundles
        .iter()
        .flat_map(|b| &b.fragments)
        .filter(|f| matches!(f.spec, mx_xir::Spec::Vm(_)))
        .count();
    eprintln!(
        "`{name}` is up: {total} tasks, {vms} VMs ready in {:.1} s; `mxc status {name}` shows it, `mxc down {name}` removes it",
        started.elapsed().as_secs_f64(),
    );
}

pub fn down(args: &DownArgs) -> Status {
    if let Some(store) = &args.store {
        let db = mx_pipeline::TableAt::new(args.db.as_deref());
        return crate::dist::down(&args.name, &db, store);
    }
    let rt = Runtime::from_env();
    if args.dry_run {
        return match mx_pipeline::down_plan(&args.name, &rt) {
            Ok(ops) => {
                let mut out = format!("# teardown of `{}`, dependents first\n", args.name);
                for op in ops {
                    out.push_str(&format!("{op}\n"));
                }
                crate::write_stdout(&out)
            }
            Err(d) => {
                show(&d);
                Status::Failure
            }
        };
    }
    let db = mx_pipeline::TableAt::new(args.db.as_deref());
    let mut progress = Progress::new(0);
    let started = Instant::now();
    match mx_pipeline::down(&args.name, &db, &rt, &mut |e| progress.on(e)) {
        Ok(()) => {
            eprintln!(
                "`{}` is down ({:.1} s)",
                args.name,
                started.elapsed().as_secs_f64()
            );
            Status::Success
        }
        Err(mx_pipeline::DownStop::Runtime(d)) => {
            show(&d);
            Status::Failure
        }
        Err(mx_pipeline::DownStop::Allocation(e)) => {
            eprintln!(
                "error: `{}` is down, but its allocation remains: {e}",
                args.name
            );
            Status::Error
        }
    }
}

pub fn status(args: &StatusArgs) -> Status {
    if let Some(store) = &args.store {
        return crate::dist::status(args.name.as_ref(), store, args.json);
    }
    let rt = Runtime::from_env();
    let Some(name) = &args.name else {
        let mut out = String::new();
        for n in rt.list() {
            let phase = rt
                .status(&n)
                .map(|s| s.phase)
                .unwrap_or_else(|_| "unreadable".into());
            out.push_str(&format!("{n:<24} {phase}\n"));
        }
        if out.is_empty() {
            eprintln!("no experiment is up on this machine");
            return Status::Success;
        }
        return crate::write_stdout(&out);
    };
    let state = match rt.status(name) {
        Ok(s) => s,
        Err(d) => {
            show(&[d]);
            return Status::Failure;
        }
    };
    let vms: Vec<Name> = state
        .tasks
        .iter()
        .filter_map(|t| t.id.strip_prefix("vm/"))
        .filter_map(|v| Name::new(v).ok())
        .collect();
    if args.json {
        let guests: serde_json::Map<String, serde_json::Value> = vms
            .iter()
            .map(|v| {
                (
                    v.to_string(),
                    serde_json::json!({ "running": rt.vm_alive(name, v), "console": rt.guest_report(name, v) }),
                )
            })
            .collect();
        let doc = serde_json::json!({ "state": state, "guests": guests });
        return crate::write_stdout(&format!(
            "{}\n",
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        ));
    }
    let mut out = format!(
        "experiment `{name}`: {} (accelerator {})\n\n",
        state.phase, state.accel
    );
    for t in &state.tasks {
        let s = match t.status {
            TaskStatus::Pending => "pending",
            TaskStatus::Running => "running",
            TaskStatus::Done => "done",
            TaskStatus::Failed => "FAILED",
            TaskStatus::Skipped => "skipped",
            TaskStatus::Down => "down",
        };
        out.push_str(&format!("{s:<8} {:<32} {:<8} {:>6} ms", t.id, t.host, t.ms));
        if !t.message.is_empty() {
            out.push_str(&format!("  {}", t.message.lines().next().unwrap_or("")));
        }
        out.push('\n');
    }
    if !vms.is_empty() {
        out.push_str("\nguests (their console reports):\n");
        for v in &vms {
            let alive = rt.vm_alive(name, v);
            out.push_str(&format!(
                "  {v}: QEMU {}\n",
                if alive { "running" } else { "NOT RUNNING" }
            ));
            for line in rt.guest_report(name, v) {
                out.push_str(&format!("  {line}\n"));
            }
        }
    }
    crate::write_stdout(&out)
}

#[derive(Args)]
pub struct TdfControlArgs {
    #[arg(long)]
    socket: PathBuf,
    #[arg(long)]
    cgroup: String,
    #[arg(long)]
    tdf: f64,
    #[arg(long)]
    shift: u32,
    #[arg(long)]
    period: u64,
    #[arg(long)]
    share: f64,
}

/// Runs until the VM's QEMU goes away (its QMP socket closes).
pub fn tdf_control(args: &TdfControlArgs) -> Status {
    // It ends when QMP fails: that is the VM going, not an error.
    let _ = mx_runtime::real::tdf_control(
        &args.socket,
        &args.cgroup,
        args.tdf,
        args.shift,
        args.period,
        args.share,
    );
    Status::Success
}
