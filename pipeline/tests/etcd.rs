//! The allocation table on etcd against the SQLite one, and the failure
//! cases a shared table must survive. Runs a real etcd (Debian's 3.4).

mod common;

use common::{experiment, root};
use std::path::Path;

use mx_pipeline::{Document, FacilitySource, RealizeRequest, TableAt, compile_file, realize};
use mx_realizer::table::Allocations;

fn etcd(dir: &Path) -> mx_store::testkit::Etcd {
    mx_store::testkit::Etcd::start(dir).expect("etcd starts (apt-get install etcd-server)")
}

/// Realizes `rel` as `name` on the local facility into `db`.
fn realize_as(rel: &str, name: &str, db: &TableAt) -> Result<mx_xir::Realization, String> {
    let (exp, file) = experiment(rel);
    let fac = root().join("examples/facilities/local.mx");
    let req = RealizeRequest {
        experiment: &exp,
        experiment_file: &file,
        facility: FacilitySource::File(&fac),
        options: mx_realizer::Options {
            name: Some(mx_xir::Name::new(name).expect("name")),
            ..Default::default()
        },
        db: db.clone(),
        dry_run: false,
    };
    match realize(&req) {
        Ok(r) => Ok(r.realization),
        Err(mx_pipeline::RealizeError::Refused(r)) => Err(format!(
            "refused: {:?}",
            r.failure
                .diagnostics
                .iter()
                .map(|d| d.code)
                .collect::<Vec<_>>()
        )),
        Err(mx_pipeline::RealizeError::Tool(e)) => Err(format!("tool: {e}")),
        Err(_) => Err("other".into()),
    }
}

fn facility() -> mx_xir::Facility {
    match compile_file(
        &root().join("examples/facilities/local.mx"),
        &Default::default(),
    )
    .expect("reads")
    .doc
    {
        Some(Document::Facility(f)) => *f,
        _ => panic!("the local facility compiles"),
    }
}

/// The same sequence of realizations and relinquishments, on SQLite and on
/// etcd: the same outcomes, realizations, rows and usage.
#[test]
fn the_etcd_table_records_what_the_sqlite_table_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd = etcd(dir.path());
    let tables = [
        TableAt::File(dir.path().join("alloc.db")),
        TableAt::Store(etcd.url.to_string()),
    ];
    let steps: &[(&str, &str)] = &[
        ("examples/hello.mx", "one"),
        ("examples/local.mx", "two"),
        ("examples/hello.mx", "three"),
        ("-", "one"),
        ("examples/hello.mx", "four"),
        ("examples/hello.mx", "five"),
    ];
    let mut outcomes: Vec<Vec<String>> = vec![Vec::new(), Vec::new()];
    for (t, db) in tables.iter().enumerate() {
        for (model, name) in steps {
            let out = if *model == "-" {
                mx_pipeline::release(db, &mx_xir::Name::new(*name).unwrap())
                    .map(|()| "released".to_string())
                    .map_err(|e| e.to_string())
            } else {
                realize_as(model, name, db).map(|r| mx_xir::to_json_pretty(&r))
            };
            outcomes[t].push(format!("{name}: {out:?}"));
        }
    }
    assert_eq!(outcomes[0], outcomes[1]);
    assert!(
        outcomes[0].iter().filter(|o| o.contains("Ok(\"{")).count() >= 3,
        "{outcomes:#?}"
    );
    let fac = facility();
    let (sqlite, etcd_table) = (tables[0].open().unwrap(), tables[1].open().unwrap());
    assert_eq!(sqlite.rows().unwrap(), etcd_table.rows().unwrap());
    assert_eq!(sqlite.usage(&fac).unwrap(), etcd_table.usage(&fac).unwrap());
    assert!(!etcd_table.rows().unwrap().is_empty());
}

/// A writer that dies after publishing its document and before the commit
/// leaves chunks no index points at: they hold nothing, the name can be
/// realized, and they are removed then.
#[test]
fn a_crash_between_publish_and_commit_holds_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd = etcd(dir.path());
    let db = TableAt::Store(etcd.url.to_string());
    // Realize `x` elsewhere to get a document, then publish it as `crashed`
    // would have, without committing.
    let scratch = TableAt::File(dir.path().join("scratch.db"));
    let mut doc = realize_as("examples/hello.mx", "crashed", &scratch).expect("realizes");
    doc.name = mx_xir::Name::new("crashed").unwrap();
    let url = mx_store::StoreUrl::parse(&etcd.url.to_string()).unwrap();
    let table = mx_store::alloc::EtcdTable::open(&url).expect("opens");
    table.publish_only(&doc).expect("publishes");
    let store = etcd.connect().expect("connects");
    let (_, keys) = store.get_prefix("/mx/alloc/doc/crashed/").unwrap();
    assert!(!keys.is_empty());
    // Nothing is held: two hellos still fit the local facility.
    let fac = facility();
    assert_eq!(
        table.usage(&fac).unwrap(),
        mx_realizer::Usage::default(),
        "orphan chunks count for nothing"
    );
    assert!(table.rows().unwrap().is_empty());
    assert!(realize_as("examples/hello.mx", "other", &db).is_ok());
    // The name is free, and committing it removes the orphan.
    let real = realize_as("examples/hello.mx", "crashed", &db).expect("the name is free");
    let (_, keys) = store.get_prefix("/mx/alloc/doc/crashed/").unwrap();
    let generations: std::collections::BTreeSet<&str> = keys
        .iter()
        .map(|e| e.key.split('/').nth(5).unwrap_or(""))
        .collect();
    assert_eq!(
        generations.len(),
        1,
        "only the committed document remains: {keys:?}"
    );
    assert_eq!(table.realization("crashed").unwrap(), real);
}

/// An etcd restart loses nothing committed, and a store that is down is
/// the tool's trouble, reported as such, with nothing recorded.
#[test]
fn commits_survive_an_etcd_restart_and_a_dead_store_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut etcd = etcd(dir.path());
    let db = TableAt::Store(etcd.url.to_string());
    let first = realize_as("examples/hello.mx", "kept", &db).expect("realizes");
    etcd.restart().expect("restarts");
    let table = db.open().expect("opens after the restart");
    assert_eq!(table.realization("kept").unwrap(), first);
    drop(table);
    drop(etcd);
    let err = realize_as("examples/hello.mx", "late", &db).unwrap_err();
    assert!(
        err.starts_with("tool: ") && err.contains("cannot reach the store"),
        "{err}"
    );
}
