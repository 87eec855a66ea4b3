//! The pipeline's calls and their typed outcomes, on the repository's
//! examples.

use std::path::{Path, PathBuf};

use mx_pipeline::{
    Document, FacilitySource, RealizeError, RealizeRequest, compile_file, realize, release,
};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn experiment(rel: &str) -> (mx_xir::Experiment, mx_diag::SourceFile) {
    let c = compile_file(&root().join(rel), &Default::default()).expect("reads");
    match c.doc {
        Some(Document::Experiment(x)) => (*x, c.report.file),
        _ => panic!("{rel} is an experiment: {:?}", c.report.diagnostics),
    }
}

fn request<'a>(
    exp: &'a mx_xir::Experiment,
    file: &'a mx_diag::SourceFile,
    fac: &'a Path,
    db: PathBuf,
    dry_run: bool,
) -> RealizeRequest<'a> {
    RealizeRequest {
        experiment: exp,
        experiment_file: file,
        facility: FacilitySource::File(fac),
        options: Default::default(),
        db,
        dry_run,
    }
}

#[test]
fn compiling_a_missing_file_is_the_tools_trouble() {
    let e = compile_file(Path::new("/nonexistent/model.mx"), &Default::default())
        .err()
        .expect("no such file");
    assert!(
        e.to_string().contains("cannot read /nonexistent/model.mx"),
        "{e}"
    );
}

#[test]
fn a_dry_run_allocates_nothing_and_a_real_one_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("alloc.db");
    let fac = root().join("examples/facilities/local.mx");
    let (exp, file) = experiment("examples/hello.mx");
    let dry = realize(&request(&exp, &file, &fac, db.clone(), true))
        .ok()
        .expect("realizes");
    assert!(!dry.allocated);
    assert!(!db.exists(), "a dry run never creates the table");
    let real = realize(&request(&exp, &file, &fac, db.clone(), false))
        .ok()
        .expect("realizes");
    assert!(real.allocated);
    assert_eq!(
        mx_xir::to_json_pretty(&dry.realization),
        mx_xir::to_json_pretty(&real.realization)
    );
    release(&db, &real.realization.name).expect("released");
    // Released: the same name can be allocated again.
    assert!(realize(&request(&exp, &file, &fac, db, false)).is_ok());
}

#[test]
fn a_refusal_points_into_the_experiment_and_carries_the_facility() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fac = root().join("examples/facilities/local.mx");
    let src = "a = topo.device('a', virt == true, cores == 64)\n";
    let path = dir.path().join("big.mx");
    std::fs::write(&path, src).expect("write");
    let c = compile_file(&path, &Default::default()).expect("reads");
    let Some(Document::Experiment(exp)) = c.doc else {
        panic!("compiles")
    };
    let Err(RealizeError::Refused(refusal)) = realize(&request(
        &exp,
        &c.report.file,
        &fac,
        dir.path().join("alloc.db"),
        false,
    )) else {
        panic!("64 cores fit nowhere")
    };
    let failure = refusal.failure;
    assert_eq!(failure.file.path, c.report.file.path);
    assert!(failure.errors() > 0);
    assert_eq!(failure.others.len(), 1, "the facility's text is at hand");
    // The table may exist, but holds nothing.
    let t = mx_realizer::table::Table::open(&dir.path().join("alloc.db")).expect("opens");
    assert!(t.rows().expect("rows").is_empty());
}

#[test]
fn a_facility_with_errors_is_reported_as_such() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("fac.mx");
    std::fs::write(&bad, "fac = facility('x')\nfac.host('h', cores=)\n").expect("write");
    let (exp, file) = experiment("examples/hello.mx");
    match realize(&request(&exp, &file, &bad, dir.path().join("a.db"), true)) {
        Err(RealizeError::Facility(r)) => assert!(r.errors() > 0),
        _ => panic!("the facility has a syntax error"),
    }
    let missing = dir.path().join("missing.mx");
    assert!(matches!(
        realize(&request(
            &exp,
            &file,
            &missing,
            dir.path().join("a.db"),
            true
        )),
        Err(RealizeError::Tool(_))
    ));
}
