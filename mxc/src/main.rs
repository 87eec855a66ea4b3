//! `mxc`, the mx command line.
//!
//! Deliberately thin: it parses arguments, reads files, calls
//! [`mx_compiler::compile`], renders diagnostics with `mx-diag` and maps the
//! outcome to an exit code. Anything a library could do lives in a library.
//!
//! Exit codes: 0 clean (warnings allowed unless `--deny-warnings`),
//! 1 the models have diagnostics, 2 `mxc` itself failed (bad arguments, an
//! unreadable file); clap already exits 2 on usage errors.

mod access;
mod dist;
mod image;
mod run;

use std::collections::BTreeMap;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use mx_diag::{FileReport, HumanStyle, codes};

/// Width for human output when `COLUMNS` is not set.
const DEFAULT_WIDTH: usize = 100;

#[derive(Parser)]
#[command(
    name = "mxc",
    version,
    about = "Compile .mx network-testbed experiment models to XIR"
)]
struct Cli {
    /// When to colour diagnostics: `auto` colours only a terminal, and only
    /// when `NO_COLOR` is unset.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = Color::Auto, global = true)]
    color: Color,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compile one model and write its XIR (to stdout unless -o is given).
    Compile(CompileArgs),
    /// Compile models and report their diagnostics; writes no XIR.
    Check(CheckArgs),
    /// Explain a diagnostic code, or list them all with --list.
    Explain(ExplainArgs),
    /// Map a model onto a facility: place every node, plan every link, and
    /// record the allocations (unless --dry-run).
    Realize(RealizeArgs),
    /// Free everything a realization holds.
    Relinquish(RelinquishArgs),
    /// Show the allocation table.
    Alloc(AllocArgs),
    /// Turn a realization into fragment bundles, one per host.
    Materialize(run::MaterializeArgs),
    /// Compile, realize, materialize and run an experiment on this machine.
    Up(run::UpArgs),
    /// Tear an experiment down and give back its allocation.
    Down(run::DownArgs),
    /// Show the experiments that are up, or one experiment's tasks and guests.
    Status(run::StatusArgs),
    /// Run a command in a node's guest; exits with its status (255 when mxc
    /// cannot reach the guest).
    Exec(access::ExecArgs),
    /// Copy a file into a guest (LOCAL NODE:PATH) or out of one (NODE:PATH LOCAL).
    Cp(access::CpArgs),
    /// Attach to a node's serial console; Ctrl-] detaches.
    Console(access::ConsoleArgs),
    /// Log in to a node with ssh (images with sshd), over the management path.
    Ssh(access::SshArgs),
    /// (internal) ssh's ProxyCommand for `mxc ssh`.
    #[command(hide = true)]
    Proxy(access::ProxyArgs),
    /// Guest images: list them, build them from Debian packages, import
    /// cloud images.
    Image(image::ImageArgs),
    /// Run a facility host's (or switch's) agent: it follows the host's
    /// desired state in the store and brings experiments up and down there.
    Agent(dist::AgentArgs),
    /// Set up a store for a facility: certificates, users and roles.
    Store(dist::StoreArgs),
    /// (internal) Hold a time-dilated VM's clock; started by `mxc up`.
    #[command(hide = true)]
    TdfControl(run::TdfControlArgs),
}

#[derive(Args)]
struct CompileArgs {
    /// The model to compile.
    model: PathBuf,
    /// Write the XIR here instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    #[command(flatten)]
    model_options: ModelOptions,
}

#[derive(Args)]
struct CheckArgs {
    /// The models to check.
    #[arg(required = true)]
    models: Vec<PathBuf>,
    /// Output format: human goes to stderr, json and sarif to stdout.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
    #[command(flatten)]
    model_options: ModelOptions,
}

/// Options shared by every command that compiles.
#[derive(Args, Clone)]
struct ModelOptions {
    /// Set a model parameter read with `param('K', default)`; repeatable.
    #[arg(long = "set", value_name = "K=V", value_parser = parse_key_value)]
    set: Vec<(String, String)>,
    /// Evaluation steps a model may take (E0212 past it).
    #[arg(long, value_name = "N")]
    step_limit: Option<u64>,
    /// Memory a model's values may take, in MiB (E0213 past it).
    #[arg(long, value_name = "MB")]
    memory_limit: Option<u64>,
    /// Fail (exit 1) on warnings too.
    #[arg(long)]
    deny_warnings: bool,
    /// Print time per phase and peak memory on stderr.
    #[arg(long)]
    timings: bool,
}

impl ModelOptions {
    fn compiler_options(&self) -> mx_compiler::Options {
        let defaults = mx_compiler::Options::default();
        mx_compiler::Options {
            // Later `--set`s of the same key win, as with most CLIs.
            params: self.set.iter().cloned().collect::<BTreeMap<_, _>>(),
            step_limit: self.step_limit.unwrap_or(defaults.step_limit),
            memory_limit: self
                .memory_limit
                .map_or(defaults.memory_limit, |mib| mib.saturating_mul(1 << 20)),
        }
    }

    /// Whether `report` makes the run fail.
    fn fails(&self, report: &FileReport) -> bool {
        report.errors() > 0 || (self.deny_warnings && report.warnings() > 0)
    }
}

#[derive(Args)]
struct RealizeArgs {
    /// The experiment model.
    model: PathBuf,
    /// The facility model (default: the built-in `lab` facility, examples/facilities/lab.mx).
    #[arg(long, value_name = "FAC")]
    facility: Option<PathBuf>,
    /// Plan against the current allocations, but allocate nothing.
    #[arg(long)]
    dry_run: bool,
    /// The allocation table: a file, or a shared store as etcd://HOST:PORT
    /// (default: $MX_DB, else ~/.local/share/mx/alloc.db).
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,
    /// Name of the realization (default: the experiment's name).
    #[arg(long, value_name = "NAME", value_parser = parse_name)]
    name: Option<mx_xir::Name>,
    /// Seed for tie-breaking; the same inputs and seed give the same realization.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Placement engine: the exact ILP (small instances), the heuristic, or auto.
    #[arg(long, value_enum, default_value_t = SolverArg::Auto)]
    solver: SolverArg,
    /// Output format.
    #[arg(long, value_enum, default_value_t = RealizeFormat::Text)]
    format: RealizeFormat,
    /// Write the realization XIR (JSON) here instead of printing it.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// List every host and its verdict for every node.
    #[arg(long)]
    explain: bool,
    #[command(flatten)]
    model_options: ModelOptions,
}

#[derive(Args)]
struct RelinquishArgs {
    /// The realization's name.
    name: String,
    /// The allocation table: a file, or a shared store as etcd://HOST:PORT
    /// (default: $MX_DB, else ~/.local/share/mx/alloc.db).
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,
}

#[derive(Args)]
struct AllocArgs {
    #[command(subcommand)]
    command: AllocCommand,
}

#[derive(Subcommand)]
enum AllocCommand {
    /// Print every allocation: realization, host, node, slice.
    Show {
        /// The allocation table: a file, or a shared store as etcd://HOST:PORT
        /// (default: $MX_DB, else ~/.local/share/mx/alloc.db).
        #[arg(long, value_name = "PATH")]
        db: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum SolverArg {
    Auto,
    Ilp,
    Heuristic,
}

#[derive(Clone, Copy, ValueEnum)]
enum RealizeFormat {
    Text,
    Json,
}

/// The facility `mxc realize` uses when none is given, so a first command works.
const DEFAULT_FACILITY: (&str, &str) = (
    "<built-in>/lab.mx",
    include_str!("../../examples/facilities/lab.mx"),
);

#[derive(Args)]
struct ExplainArgs {
    /// A code such as `E0201`, or its name such as `undefined-name`.
    #[arg(required_unless_present = "list")]
    code: Option<String>,
    /// List every code with a one-line summary.
    #[arg(long, conflicts_with = "code")]
    list: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Human,
    Json,
    Sarif,
}

/// The outcome of a run, ordered so the worst one wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Status {
    Success,
    Failure,
    Error,
    /// A guest command's own exit status (`mxc exec`).
    Code(u8),
}

impl From<Status> for ExitCode {
    fn from(status: Status) -> Self {
        ExitCode::from(match status {
            Status::Success => 0,
            Status::Failure => 1,
            Status::Error => 2,
            Status::Code(c) => c,
        })
    }
}

/// Models of 100,000 nodes make millions of small allocations; mimalloc
/// handles them several times faster than glibc's allocator. Built without
/// transparent huge pages (`no_thp`): on the VMs we measure, zeroing 2 MiB
/// pages at first touch cost a 100,000-node compile 0.3-0.4 s of system
/// time (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let style = human_style(cli.color);
    match cli.command {
        Command::Compile(args) => compile(&args, style),
        Command::Check(args) => check(&args, style),
        Command::Explain(args) => explain(&args),
        Command::Realize(args) => realize(&args, style),
        Command::Relinquish(args) => relinquish(&args),
        Command::Alloc(args) => alloc(&args),
        Command::Materialize(args) => run::materialize(&args),
        Command::Up(args) => run::up(&args, style),
        Command::Down(args) => run::down(&args),
        Command::Status(args) => run::status(&args),
        Command::Exec(args) => access::exec(&args),
        Command::Cp(args) => access::cp(&args),
        Command::Console(args) => access::console(&args),
        Command::Ssh(args) => access::ssh(&args),
        Command::Proxy(args) => access::proxy(&args),
        Command::Image(args) => image::image(&args),
        Command::TdfControl(args) => run::tdf_control(&args),
        Command::Agent(args) => dist::agent(&args),
        Command::Store(args) => dist::store_admin(&args),
    }
    .into()
}

fn human_style(color: Color) -> HumanStyle {
    let color = match color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => {
            io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    };
    let width = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse().ok())
        .filter(|&w: &usize| w > 0)
        .unwrap_or(DEFAULT_WIDTH);
    HumanStyle { color, width }
}

pub(crate) use mx_pipeline::Document;

fn compile(args: &CompileArgs, style: HumanStyle) -> Status {
    let Ok((report, xir)) = compile_file(&args.model, &args.model_options) else {
        return Status::Error;
    };
    eprint!("{}", mx_diag::render_human(&report, style));
    if args.model_options.fails(&report) {
        if report.errors() == 0 {
            eprintln!("error: warnings are denied; no XIR written");
        }
        return Status::Failure;
    }
    let Some(mut xir) = xir else {
        // The compiler promises XIR whenever there is no error.
        eprintln!(
            "error: the compiler produced no XIR for {}",
            report.file.path
        );
        return Status::Error;
    };
    // Streamed, so a 100,000-node document is never held twice in memory.
    let started = std::time::Instant::now();
    let written = match &args.output {
        Some(path) => {
            mx_pipeline::output::replace_file(path, None, |file| write_document(&mut xir, file))
        }
        None => write_document(&mut xir, &mut io::stdout()),
    };
    // The process is about to exit; freeing a large model only costs time.
    std::mem::forget(xir);
    if args.model_options.timings {
        eprintln!(
            "timings: write {} ms, peak memory {}",
            started.elapsed().as_millis(),
            peak_memory().unwrap_or_else(|| "unknown".into())
        );
    }
    match written {
        Ok(()) => Status::Success,
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Status::Success,
        Err(err) => {
            let to = args
                .output
                .as_ref()
                .map_or("stdout".to_string(), |p| p.display().to_string());
            eprintln!("error: cannot write {to}: {err}");
            Status::Error
        }
    }
}

fn check(args: &CheckArgs, style: HumanStyle) -> Status {
    let mut status = Status::Success;
    let mut reports = Vec::new();
    for model in &args.models {
        match compile_file(model, &args.model_options) {
            Ok((report, _)) => {
                if let Format::Human = args.format {
                    // Per file, so each report follows what that model printed.
                    eprint!("{}", mx_diag::render_human(&report, style));
                }
                reports.push(report);
            }
            Err(()) => status = Status::Error,
        }
    }
    let failed = reports
        .iter()
        .filter(|r| args.model_options.fails(r))
        .count();
    if failed > 0 {
        status = status.max(Status::Failure);
    }
    match args.format {
        Format::Human => {
            eprint!("{}", check_summary(args, &reports, failed, status));
            status
        }
        Format::Json => status.max(write_stdout(&mx_diag::render_json(&reports))),
        Format::Sarif => status.max(write_stdout(&mx_diag::render_sarif(
            &reports,
            env!("CARGO_PKG_VERSION"),
        ))),
    }
}

/// The last line of a human `check`: `ok: 3 models checked`, or how many
/// models failed. A single failing model already ended its report with its
/// counts, so it only gets a line when denied warnings are why it failed.
/// Nothing when `mxc` itself failed: that was already said.
fn check_summary(
    args: &CheckArgs,
    reports: &[FileReport],
    failed: usize,
    status: Status,
) -> String {
    let models = |n: usize| if n == 1 { "model" } else { "models" };
    let denied = args.model_options.deny_warnings
        && reports.iter().any(|r| r.errors() == 0 && r.warnings() > 0);
    match status {
        Status::Success => {
            let warnings: usize = reports.iter().map(FileReport::warnings).sum();
            let warnings = match warnings {
                0 => String::new(),
                1 => ", 1 warning".to_owned(),
                n => format!(", {n} warnings"),
            };
            format!(
                "ok: {} {} checked{warnings}\n",
                reports.len(),
                models(reports.len())
            )
        }
        Status::Failure if reports.len() > 1 => format!(
            "error: {failed} of {} models failed the check{}\n",
            reports.len(),
            if denied { " (warnings are denied)" } else { "" }
        ),
        Status::Failure if denied => "error: warnings are denied\n".to_owned(),
        Status::Failure | Status::Error | Status::Code(_) => String::new(),
    }
}

/// Reads and compiles `path`, showing what the model printed on stderr.
/// A file that cannot be read is reported here and gives `Err`.
/// A model file compiled: its report and what it compiled to.
pub(crate) type Compiled = (FileReport, Option<Document>);

pub(crate) fn compile_file(path: &Path, options: &ModelOptions) -> Result<Compiled, ()> {
    let compiled = match mx_pipeline::compile_file(path, &options.compiler_options()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Err(());
        }
    };
    if options.timings {
        let t = compiled.timings;
        eprintln!(
            "timings: {}: parse {} ms, evaluate {} ms, check and lower {} ms",
            compiled.report.file.path,
            t.parse.as_millis(),
            t.eval.as_millis(),
            t.check.as_millis()
        );
    }
    let mut stderr = io::stderr().lock();
    for line in &compiled.printed {
        // Nothing useful to do if stderr is gone.
        let _ = writeln!(stderr, "{line}");
    }
    Ok((compiled.report, compiled.doc))
}

/// Compiles (unless given the compilation), shows the model's report and
/// gives back its experiment; `Err` carries the exit status.
pub(crate) fn experiment_of(
    args: &RealizeArgs,
    style: HumanStyle,
    compiled: Option<Compiled>,
) -> Result<(FileReport, mx_xir::Experiment), Status> {
    let compiled = match compiled {
        Some(c) => Ok(c),
        None => compile_file(&args.model, &args.model_options),
    };
    let Ok((report, doc)) = compiled else {
        return Err(Status::Error);
    };
    eprint!("{}", mx_diag::render_human(&report, style));
    if args.model_options.fails(&report) {
        return Err(Status::Failure);
    }
    let Some(Document::Experiment(exp)) = doc else {
        eprintln!("error: {} is not an experiment model", report.file.path);
        return Err(Status::Error);
    };
    Ok((report, *exp))
}

/// The pipeline's request for `args`.
pub(crate) fn realize_request<'a>(
    args: &'a RealizeArgs,
    exp: &'a mx_xir::Experiment,
    file: &'a mx_diag::SourceFile,
    default_facility: (&'a str, &'a str),
) -> mx_pipeline::RealizeRequest<'a> {
    mx_pipeline::RealizeRequest {
        experiment: exp,
        experiment_file: file,
        facility: match &args.facility {
            Some(p) => mx_pipeline::FacilitySource::File(p),
            None => mx_pipeline::FacilitySource::Builtin {
                path: default_facility.0,
                text: default_facility.1,
            },
        },
        options: mx_realizer::Options {
            name: args.name.clone(),
            seed: args.seed,
            explain: args.explain,
            solver: match args.solver {
                SolverArg::Auto => mx_realizer::Solver::Auto,
                SolverArg::Ilp => mx_realizer::Solver::Ilp,
                SolverArg::Heuristic => mx_realizer::Solver::Heuristic,
            },
            restart: 0,
        },
        db: mx_pipeline::TableAt::new(args.db.as_deref()),
        dry_run: args.dry_run,
    }
}

fn show_explanation(args: &RealizeArgs, lines: &[String]) {
    if args.explain {
        for line in lines {
            eprintln!("{line}");
        }
    }
}

/// Shows why a realization was not made; the exit status.
pub(crate) fn show_realize_error(
    e: &mx_pipeline::RealizeError,
    args: &RealizeArgs,
    style: HumanStyle,
) -> Status {
    match e {
        mx_pipeline::RealizeError::Tool(e) => {
            eprintln!("error: {e}");
            Status::Error
        }
        mx_pipeline::RealizeError::Facility(fac) => {
            eprint!("{}", mx_diag::render_human(fac, style));
            Status::Failure
        }
        mx_pipeline::RealizeError::NotFacility(path) => {
            eprintln!("error: {path} is not a facility model (it has no `facility('name')`)");
            Status::Error
        }
        mx_pipeline::RealizeError::Refused(r) => {
            eprint!("{}", mx_diag::render_human(&r.facility, style));
            show_explanation(args, &r.explanation);
            eprint!("{}", mx_diag::render_human(&r.failure, style));
            Status::Failure
        }
    }
}

/// Shows what realizing did.
pub(crate) fn show_realized(
    out: &mx_pipeline::Realized,
    args: &RealizeArgs,
    style: HumanStyle,
    db: &mx_pipeline::TableAt,
) {
    eprint!("{}", mx_diag::render_human(&out.facility, style));
    if args.model_options.timings {
        eprintln!(
            "timings: realize {} ms ({}), check {} ms",
            out.realize_time.as_millis(),
            out.realization.solver,
            out.check_time.as_millis()
        );
    }
    show_explanation(args, &out.explanation);
    if out.allocated {
        eprintln!("allocated `{}` in {db}", out.realization.name);
    }
    if args.model_options.timings {
        eprintln!(
            "timings: peak memory {}",
            peak_memory().unwrap_or_else(|| "unknown".into())
        );
    }
}

/// Compiles, realizes and (unless a dry run) allocates; diagnostics are
/// shown here, and `Err` carries the exit status.
pub(crate) fn realize_model(
    args: &RealizeArgs,
    style: HumanStyle,
    default_facility: (&str, &str),
    compiled: Option<Compiled>,
) -> Result<mx_xir::Realization, Status> {
    let (report, exp) = experiment_of(args, style, compiled)?;
    let request = realize_request(args, &exp, &report.file, default_facility);
    match mx_pipeline::realize(&request) {
        Ok(out) => {
            show_realized(&out, args, style, &request.db);
            Ok(out.realization)
        }
        Err(e) => Err(show_realize_error(&e, args, style)),
    }
}

/// An experiment's nodes and links are serialized on two threads; a
/// facility is written as it is.
fn write_document(
    doc: &mut mx_pipeline::Document,
    out: &mut (impl io::Write + Send),
) -> io::Result<()> {
    match doc {
        mx_pipeline::Document::Experiment(x) => mx_xir::write_experiment_threaded(x, out),
        facility => mx_xir::write_json_pretty_threaded(&*facility, out),
    }
}

fn realize(args: &RealizeArgs, style: HumanStyle) -> Status {
    let real = match realize_model(args, style, DEFAULT_FACILITY, None) {
        Ok(r) => r,
        Err(status) => return status,
    };
    // `-o FILE` takes the document: stdout stays quiet, as with `compile -o`.
    if let Some(path) = &args.output {
        // Streamed: a realization of 100,000 VMs is 130 MB of JSON.
        let written = mx_pipeline::output::replace_file(path, None, |file| {
            mx_xir::write_json_pretty_threaded(&real, file)
        });
        if let Err(err) = written {
            eprintln!("error: cannot write {}: {err}", path.display());
            return Status::Error;
        }
        eprintln!(
            "wrote realization `{}` ({} nodes, {} links) to {}",
            real.name,
            real.nodes.len(),
            real.links.len(),
            path.display()
        );
        return Status::Success;
    }
    let text = match args.format {
        RealizeFormat::Json => mx_xir::to_json_pretty(&real),
        RealizeFormat::Text => realization_table(&real),
    };
    write_stdout(&text)
}

fn relinquish(args: &RelinquishArgs) -> Status {
    let db = mx_pipeline::TableAt::new(args.db.as_deref());
    if !db.exists() {
        eprintln!("error: no allocation table at {db}");
        return Status::Failure;
    }
    match db.open().and_then(|mut t| t.relinquish(&args.name)) {
        Ok(()) => {
            eprintln!("relinquished `{}`", args.name);
            Status::Success
        }
        Err(e @ mx_realizer::table::TableError::Missing(_)) => {
            eprintln!("error: {e}");
            Status::Failure
        }
        Err(e) => {
            eprintln!("error: {e}");
            Status::Error
        }
    }
}

fn alloc(args: &AllocArgs) -> Status {
    let AllocCommand::Show { db } = &args.command;
    let db = mx_pipeline::TableAt::new(db.as_deref());
    if !db.exists() {
        return write_stdout("no allocations\n");
    }
    let rows = match db.open().and_then(|t| t.rows()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Status::Error;
        }
    };
    if rows.is_empty() {
        return write_stdout("no allocations\n");
    }
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<20} {:<12} {:<12} {:<20} {:<6} {:>6} {:>10} {:>10}",
        "REALIZATION", "FACILITY", "HOST", "NODE", "AS", "CORES", "MEMORY", "DISK"
    );
    for r in rows {
        let (c, m, d) = if r.mode == "metal" {
            (
                "whole".to_string(),
                "whole".to_string(),
                "whole".to_string(),
            )
        } else {
            (
                r.cores.to_string(),
                mx_realizer::place::size(r.memory),
                mx_realizer::place::size(r.disk),
            )
        };
        let _ = writeln!(
            s,
            "{:<20} {:<12} {:<12} {:<20} {:<6} {:>6} {:>10} {:>10}",
            r.realization, r.facility, r.host, r.node, r.mode, c, m, d
        );
    }
    write_stdout(&s)
}

/// The realization as two readable tables: nodes, then links.
fn realization_table(real: &mx_xir::Realization) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "realization `{}` of {} on facility `{}` (solver {}, seed {})",
        real.name, real.experiment.path, real.facility, real.solver, real.seed
    );
    let _ = writeln!(
        s,
        "\n{:<20} {:<12} {:<6} {:>6} {:>10} {:>10}",
        "NODE", "HOST", "AS", "CORES", "MEMORY", "DISK"
    );
    for p in &real.nodes {
        let mode = match p.mode {
            mx_xir::Mode::Metal => "metal",
            mx_xir::Mode::Vm => "vm",
        };
        // A GPU held: `gpu a100#0 0000:3b:00.0`, `... slice 1 (mdev)`.
        let gpu = p.gpu.as_ref().map_or(String::new(), |g| {
            let mut t = format!("  gpu {}#{}", g.model, g.index);
            if let Some(d) = &g.device {
                t.push_str(&format!(" {d}"));
            }
            if let Some(sl) = g.slice {
                t.push_str(&format!(" slice {sl}"));
                if let Some(via) = &g.via {
                    t.push_str(&format!(" ({via})"));
                }
            }
            t
        });
        let _ = writeln!(
            s,
            "{:<20} {:<12} {:<6} {:>6} {:>10} {:>10}{gpu}",
            p.node,
            p.host,
            mode,
            p.cores,
            mx_realizer::place::size(p.memory),
            mx_realizer::place::size(p.disk)
        );
    }
    let _ = writeln!(
        s,
        "\n{:<28} {:<9} {:<24} VNI / VLAN / ATTACHMENTS",
        "LINK", "KIND", "HOSTS"
    );
    for l in &real.links {
        let kind = match l.kind {
            mx_xir::LinkKind::XdpPair => "xdp-pair",
            mx_xir::LinkKind::Bridge => "bridge",
            mx_xir::LinkKind::Vxlan => "vxlan",
            mx_xir::LinkKind::Switched => "switched",
        };
        let mut extra: Vec<String> = l.vni.map(|v| format!("vni {v}")).into_iter().collect();
        for e in &l.endpoints {
            match &e.attach {
                mx_xir::Attachment::Tap { model } => extra.push(format!("{}: tap {model}", e.node)),
                mx_xir::Attachment::Vf { port, vf, vlan, .. } => {
                    extra.push(format!("{}: vf {vf} of port {port}, vlan {vlan}", e.node))
                }
                mx_xir::Attachment::Port { port, vlan, .. } => {
                    extra.push(format!("{}: port {port}, vlan {vlan}", e.node))
                }
            }
        }
        if let Some(em) = &l.emulation {
            let mut parts = Vec::new();
            if let Some(c) = em.capacity {
                parts.push(format!("{} Mb/s", c / 1_000_000));
            }
            if let Some(d) = em.latency {
                parts.push(format!("{} ms", d as f64 / 1e6));
            }
            if let Some(p) = em.loss {
                parts.push(format!("loss {p}"));
            }
            extra.push(format!("emulated: {}", parts.join(", ")));
        }
        let _ = writeln!(
            s,
            "{:<28} {:<9} {:<24} {}",
            l.link,
            kind,
            l.hosts.join(","),
            extra.join("; ")
        );
    }
    s
}

/// Peak resident memory of this process, from Linux's `VmHWM`.
fn peak_memory() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(format!("{} MiB", kb / 1024))
}

fn write_stdout(text: &str) -> Status {
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Status::Success,
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Status::Success,
        Err(err) => {
            eprintln!("error: cannot write to stdout: {err}");
            Status::Error
        }
    }
}

fn explain(args: &ExplainArgs) -> Status {
    if args.list {
        let width = codes::CODES.iter().map(|c| c.name.len()).max().unwrap_or(0);
        let list: String = codes::CODES
            .iter()
            .map(|c| format!("{}  {:width$}  {}\n", c.code, c.name, c.summary))
            .collect();
        return write_stdout(&list);
    }
    let code = args.code.as_deref().unwrap_or_default();
    match codes::lookup(code) {
        Some(info) => write_stdout(&format!(
            "{} ({}): {}\n\n{}\n",
            info.code, info.name, info.summary, info.explanation
        )),
        None => {
            eprintln!("error: unknown diagnostic code `{code}`");
            eprintln!("hint: `mxc explain --list` lists every code");
            Status::Error
        }
    }
}

/// Parses an experiment or realization name (exit 2 on a bad one): names
/// become directory names, so `..` or `/etc` must never pass.
pub(crate) fn parse_name(arg: &str) -> Result<mx_xir::Name, String> {
    mx_xir::Name::new(arg).map_err(|e| e.to_string())
}

/// Parses `--set K=V`; clap turns the `Err` into a usage error (exit 2).
fn parse_key_value(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((key, _)) if key.trim().is_empty() => {
            Err(format!("expected K=V with a non-empty K, found `{arg}`"))
        }
        Some((key, value)) => Ok((key.trim().to_owned(), value.to_owned())),
        None => Err(format!("expected K=V, found `{arg}` (no `=`)")),
    }
}
