//! The pipeline's calls and their typed outcomes, on the repository's
//! examples.

mod common;

use common::{experiment, root};
use std::path::{Path, PathBuf};

use mx_pipeline::{
    Document, FacilitySource, RealizeError, RealizeRequest, compile_file, realize, release,
};

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
        db: mx_pipeline::TableAt::File(db),
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
    release(
        &mx_pipeline::TableAt::File(db.clone()),
        &real.realization.name,
    )
    .expect("released");
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

/// A runtime whose state lives in `dir`: nothing here runs as root.
fn runtime(dir: &Path) -> mx_runtime::Runtime {
    let mut rt = mx_runtime::Runtime::from_env();
    rt.root = dir.join("run");
    rt.images = dir.join("images");
    rt
}

#[test]
fn a_plan_realizes_without_allocating_and_touches_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("alloc.db");
    let fac = root().join("examples/facilities/local.mx");
    let (exp, file) = experiment("examples/local.mx");
    let rt = runtime(dir.path());
    let Ok(planned) = mx_pipeline::plan(&request(&exp, &file, &fac, db.clone(), true), &rt) else {
        panic!("plans");
    };
    assert!(!planned.realized.allocated);
    assert!(!db.exists(), "a plan never creates the table");
    assert!(!rt.root.exists(), "a plan touches no state");
    let vms = planned
        .bundles
        .iter()
        .flat_map(|b| &b.fragments)
        .filter(|f| matches!(f.spec, mx_xir::Spec::Vm(_)))
        .count();
    assert!(vms > 0 && planned.plan.dag.tasks.len() > vms);
}

#[test]
fn bundles_are_checked_before_anything_and_their_allocation_is_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("alloc.db");
    let fac = root().join("examples/facilities/local.mx");
    let (exp, file) = experiment("examples/local.mx");
    let real = realize(&request(&exp, &file, &fac, db.clone(), false))
        .ok()
        .expect("realizes");
    let bundles = mx_materializer::materialize(&real.realization).expect("materializes");
    let out = dir.path().join("bundles");
    mx_materializer::write(&out, &bundles).expect("writes");
    let rt = runtime(dir.path());
    let Ok((loaded, plan)) = mx_pipeline::plan_bundles(&out, &rt) else {
        panic!("the bundles as written are accepted");
    };
    assert_eq!(loaded.len(), bundles.len());
    assert!(!plan.dag.tasks.is_empty());
    // Tamper with one fragment: refused before images or state, and the
    // allocation made by `realize` stays (it is not this call's).
    let vm = std::fs::read_dir(out.join(&*bundles[0].host))
        .expect("host dir")
        .map(|e| e.expect("entry").path())
        .find(|p| p.to_string_lossy().contains("vm-"))
        .expect("a VM fragment");
    let text = std::fs::read_to_string(&vm).expect("reads");
    std::fs::write(&vm, text.replacen("\"vcpus\": 1", "\"vcpus\": 64", 1)).expect("writes");
    let stop = mx_pipeline::up_bundles(&out, &rt, &mut |_| {});
    match stop {
        Err(mx_pipeline::UpStop::Released {
            diagnostics,
            released: None,
        }) => assert!(
            diagnostics.iter().any(|d| d.message.contains("digest")),
            "{diagnostics:?}"
        ),
        _ => panic!("tampered bundles are refused, and no allocation is given back"),
    }
    assert!(
        !rt.root.exists() && !rt.images.exists(),
        "nothing was touched"
    );
    let again = realize(&request(&exp, &file, &fac, db, false));
    assert!(again.is_err(), "the allocation is still held");
}

/// A LAN's name joins its members' endpoints; a big LAN's is long, and its
/// VMs' NICs carry it: planned, not refused as a malformed bundle (it was,
/// past 200 bytes).
#[test]
fn a_lan_with_a_long_name_is_planned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("lan.mx");
    std::fs::write(
        &model,
        "net = topology('biglan')\n\
         n = [net.device(f'node-with-a-rather-long-name-{i}', cores == 1, memory == mb(256)) for i in range(8)]\n\
         net.connect(n)\n\
         experiment(net)\n",
    )
    .expect("writes");
    let c = compile_file(&model, &Default::default()).expect("reads");
    let Some(Document::Experiment(exp)) = c.doc else {
        panic!("compiles: {:?}", c.report.diagnostics)
    };
    let fac = root().join("examples/facilities/local.mx");
    let db = dir.path().join("alloc.db");
    let rt = runtime(dir.path());
    let Ok(planned) = mx_pipeline::plan(&request(&exp, &c.report.file, &fac, db, true), &rt) else {
        panic!("a LAN with a long name is planned");
    };
    let lan = &planned.realized.realization.links[0];
    let name = planned
        .bundles
        .iter()
        .flat_map(|b| &b.fragments)
        .find_map(|f| match &f.spec {
            mx_xir::Spec::Vm(vm) => Some(vm.nics[0].link.clone()),
            _ => None,
        })
        .expect("a VM");
    assert!(name.len() > 200, "{name}");
    assert_eq!(lan.endpoints.len(), 8);
}
