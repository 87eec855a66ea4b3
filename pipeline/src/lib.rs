//! The pipeline as library calls, with typed outcomes: [`compile_file`]
//! reads and compiles a model file, [`realize`] realizes an experiment
//! against a facility and (unless a dry run) commits it to the allocation
//! table. Nothing here prints: every call returns what happened, the
//! reports to show and whether anything was allocated, and `mxc` renders
//! it. Materializing and running are the runtime's (`mx-runtime`), whose
//! `Runtime::up` says as a type whether anything was touched; [`up`] chains
//! them all and says whether the allocation was kept, and the rest of a
//! run ([`plan`], [`up_bundles`], [`resume`], [`down`]) is in `run.rs`.

use std::path::Path;
use std::time::{Duration, Instant};

use mx_diag::{Diagnostic, FileReport, SourceFile, code};

/// Stack for the compiler thread: parsing and evaluation recurse (bounded
/// by E0106 and E0219), and a generous fixed stack makes those bounds, not
/// the caller's thread, decide when a model is too deep.
const COMPILE_STACK: usize = 256 << 20;

/// What a model compiles to: an experiment or a facility.
#[derive(serde::Serialize)]
#[serde(untagged)]
pub enum Document {
    Experiment(Box<mx_xir::Experiment>),
    Facility(Box<mx_xir::Facility>),
}

/// A model file, compiled.
pub struct Compiled {
    /// The file with its diagnostics.
    pub report: FileReport,
    /// What it compiled to, when it had no errors.
    pub doc: Option<Document>,
    /// Lines the model printed with `print()`.
    pub printed: Vec<String>,
    /// Time per compiler phase.
    pub timings: mx_compiler::Timings,
}

/// Why a call could not do its work: the tool's trouble, not the model's
/// (exit status 2). Nothing was allocated.
#[derive(Debug)]
pub struct ToolError(pub String);

impl std::fmt::Display for ToolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Reads and compiles `path` on a thread with a large stack.
pub fn compile_file(path: &Path, opts: &mx_compiler::Options) -> Result<Compiled, ToolError> {
    let name = path.display().to_string();
    let read =
        read::read_model(path).map_err(|err| ToolError(format!("cannot read {name}: {err}")))?;
    let bytes = match read {
        Ok(bytes) => bytes,
        Err(len) => return Ok(compiled(name, String::new(), mx_compiler::too_large(len))),
    };
    let (text, output) = std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("mxc-compile".to_owned())
            .stack_size(COMPILE_STACK)
            .spawn_scoped(scope, || mx_compiler::compile_source(&name, bytes, opts));
        match worker {
            Ok(handle) => handle.join().map_err(|_| {
                ToolError(format!(
                    "the compiler crashed on {name}; this is a bug in mxc"
                ))
            }),
            Err(err) => Err(ToolError(format!(
                "cannot start the compiler thread: {err}"
            ))),
        }
    })?;
    Ok(compiled(name, text, output))
}

fn compiled(name: String, text: String, output: mx_compiler::Output) -> Compiled {
    let report = FileReport::new(SourceFile::new(name, text), output.diagnostics);
    let doc = match (output.xir, output.facility) {
        (Some(x), _) => Some(Document::Experiment(Box::new(x))),
        (None, Some(f)) => Some(Document::Facility(Box::new(f))),
        (None, None) => None,
    };
    Compiled {
        report,
        doc,
        printed: output.printed,
        timings: output.timings,
    }
}

/// Where the facility model comes from.
pub enum FacilitySource<'a> {
    /// A file.
    File(&'a Path),
    /// A model built into the caller, shown under `path`.
    Builtin { path: &'a str, text: &'a str },
}

/// What to realize, against what, and where allocations are kept.
pub struct RealizeRequest<'a> {
    pub experiment: &'a mx_xir::Experiment,
    /// The experiment's file, so failures point into it.
    pub experiment_file: &'a SourceFile,
    pub facility: FacilitySource<'a>,
    pub options: mx_realizer::Options,
    /// The allocation table.
    pub db: TableAt,
    /// Realize against the table without writing it (and without creating it).
    pub dry_run: bool,
}

/// A realization, and what the call did.
pub struct Realized {
    pub realization: mx_xir::Realization,
    /// The realizer's reasoning (`--explain`).
    pub explanation: Vec<String>,
    /// The facility with its warnings.
    pub facility: FileReport,
    /// Whether the realization was committed to the table.
    pub allocated: bool,
    /// Time in the realizer and in the independent checker.
    pub realize_time: Duration,
    pub check_time: Duration,
}

/// Why a realization was not made. In every case nothing was allocated.
pub enum RealizeError {
    /// The tool could not do its work (a file or the table).
    Tool(ToolError),
    /// The facility model has errors: its report.
    Facility(FileReport),
    /// The facility file is not a facility model.
    NotFacility(String),
    /// The realizer refused (boxed: it is large, and the `Ok` path is
    /// the common one).
    Refused(Box<Refusal>),
}

/// A realization the realizer refused to make.
pub struct Refusal {
    /// The facility's own report (warnings).
    pub facility: FileReport,
    /// Diagnostics on the experiment's file, which may point into the
    /// facility's (it is in `others`).
    pub failure: FileReport,
    /// The realizer's reasoning (`--explain`).
    pub explanation: Vec<String>,
}

/// Compiles the facility, realizes `req.experiment` against it and the
/// table's usage, checks the result with the independent checker, and
/// commits it unless a dry run.
pub fn realize(req: &RealizeRequest) -> Result<Realized, RealizeError> {
    let (fac_path, fac_bytes): (String, Result<Vec<u8>, usize>) = match req.facility {
        FacilitySource::File(p) => match read::read_model(p) {
            Ok(t) => (p.display().to_string(), t),
            Err(err) => {
                return Err(RealizeError::Tool(ToolError(format!(
                    "cannot read {}: {err}",
                    p.display()
                ))));
            }
        },
        FacilitySource::Builtin { path, text } => (path.to_string(), Ok(text.into())),
    };
    let (fac_text, out) = match fac_bytes {
        Ok(bytes) => {
            mx_compiler::compile_source(&fac_path, bytes, &mx_compiler::Options::default())
        }
        Err(len) => (String::new(), mx_compiler::too_large(len)),
    };
    let facility = FileReport::new(SourceFile::new(fac_path.clone(), fac_text), out.diagnostics);
    if facility.errors() > 0 {
        return Err(RealizeError::Facility(facility));
    }
    let Some(fac) = out.facility else {
        return Err(RealizeError::NotFacility(fac_path));
    };
    let exp = req.experiment;
    let mut times = (Duration::ZERO, Duration::ZERO);
    let mut explanation = Vec::new();
    let mut attempt = |usage: &mx_realizer::Usage| -> Result<mx_xir::Realization, Vec<Diagnostic>> {
        let t0 = Instant::now();
        let out = mx_realizer::realize(exp, &fac, usage, &req.options)?;
        let t1 = Instant::now();
        let problems = mx_realizer::verify::verify(exp, &fac, usage, &out.realization);
        times = (t1 - t0, t1.elapsed());
        explanation = out.explanation;
        if !problems.is_empty() {
            return Err(vec![
                Diagnostic::error(
                    code::E0304,
                    "the realizer produced an unsound realization; nothing was allocated",
                )
                .help(format!(
                    "this is a bug in mx; the checker found: {}",
                    problems.join("; ")
                )),
            ]);
        }
        Ok(out.realization)
    };
    let open = || req.db.open();
    let tool = |e: mx_realizer::table::TableError| RealizeError::Tool(ToolError(e.to_string()));
    let result = if req.dry_run {
        // A dry run reads the table if there is one, and never creates it.
        let usage = if req.db.exists() {
            open().and_then(|t| t.usage(&fac)).map_err(tool)?
        } else {
            mx_realizer::Usage::default()
        };
        attempt(&usage)
    } else {
        let mut table = open().map_err(tool)?;
        let name = req.options.name.clone().unwrap_or_else(|| exp.name.clone());
        table.commit(&name, &fac, &mut attempt).map_err(tool)?
    };
    match result {
        Ok(realization) => Ok(Realized {
            realization,
            explanation,
            facility,
            allocated: !req.dry_run,
            realize_time: times.0,
            check_time: times.1,
        }),
        Err(diagnostics) => {
            let mut failure = FileReport::new(req.experiment_file.clone(), diagnostics);
            // Realize errors may point into the facility as well.
            failure.others.push(facility.file.clone());
            Err(RealizeError::Refused(Box::new(Refusal {
                facility,
                failure,
                explanation,
            })))
        }
    }
}

/// Gives back what `name` holds, if it holds anything (`down` of an
/// experiment brought up from bundles may find nothing in this table).
pub fn release_if_held(db: &TableAt, name: &mx_xir::Name) -> Result<(), ToolError> {
    if !db.exists() {
        return Ok(());
    }
    match db.open().and_then(|mut t| t.relinquish(name)) {
        Ok(()) | Err(mx_realizer::table::TableError::Missing(_)) => Ok(()),
        Err(e) => Err(ToolError(e.to_string())),
    }
}

/// Gives back the allocation of `name`, when nothing came of it.
pub fn release(db: &TableAt, name: &mx_xir::Name) -> Result<(), ToolError> {
    db.open()
        .and_then(|mut t| t.relinquish(name))
        .map_err(|e| ToolError(e.to_string()))
}

pub mod distributed;
pub mod output;
mod read;
mod run;
mod table;
pub use run::*;
pub use table::TableAt;
