//! Helpers shared by the pipeline's tests.

use std::path::{Path, PathBuf};

use mx_pipeline::{Document, compile_file};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A repository model that compiles to an experiment, with its file.
pub fn experiment(rel: &str) -> (mx_xir::Experiment, mx_diag::SourceFile) {
    let c = compile_file(&root().join(rel), &Default::default()).expect("reads");
    match c.doc {
        Some(Document::Experiment(x)) => (*x, c.report.file),
        _ => panic!("{rel} is an experiment: {:?}", c.report.diagnostics),
    }
}
