//! The store's primitives against a real etcd 3.4: leases that hold a key
//! and let it go, writes only while a lease holds, watches that resume
//! after compaction.

use std::time::{Duration, Instant};

use mx_store::testkit::Etcd;
use mx_store::{Change, Step};

fn etcd(dir: &std::path::Path) -> Etcd {
    Etcd::start(dir).expect("etcd starts (apt-get install etcd-server)")
}

#[test]
fn a_leased_key_has_one_holder_until_its_lease_goes() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = etcd(dir.path());
    let (a, b) = (etcd.connect().unwrap(), etcd.connect().unwrap());
    let la = a.lease(2).unwrap();
    assert_eq!(a.create("/t/holder", b"a", &la).unwrap(), None);
    let lb = b.lease(2).unwrap();
    let held = b
        .create("/t/holder", b"b", &lb)
        .unwrap()
        .expect("held by a");
    assert_eq!(held.value, b"a");
    // Only the holder writes through it.
    assert!(a.put_as("/t/holder", &la, "/t/status", b"from a").unwrap());
    assert!(!b.put_as("/t/holder", &lb, "/t/status", b"from b").unwrap());
    assert_eq!(b.get("/t/status").unwrap().unwrap().value, b"from a");
    // Kept alive in the background past its TTL while nothing calls.
    std::thread::sleep(Duration::from_secs(3));
    assert!(la.alive());
    assert!(b.create("/t/holder", b"b", &lb).unwrap().is_some());
    // Revoked: the key goes at once and b takes it; a writes nothing more.
    let la_id = la.id;
    a.revoke(la);
    assert_eq!(b.create("/t/holder", b"b", &lb).unwrap(), None);
    let stale = a.lease(2).unwrap();
    assert_ne!(stale.id, la_id);
    assert!(!a.put_as("/t/holder", &stale, "/t/status", b"late").unwrap());
    assert_eq!(a.get("/t/status").unwrap().unwrap().value, b"from a");
}

#[test]
fn batched_writes_keep_the_last_value_and_need_the_lease() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = etcd(dir.path());
    let s = etcd.connect().unwrap();
    let mine = s.lease(5).unwrap();
    let other = s.lease(5).unwrap();
    assert_eq!(s.create("/t/holder", b"me", &mine).unwrap(), None);
    let w = |k: &str, v: &str| (k.to_string(), v.as_bytes().to_vec());
    let batch = [w("/t/a", "running"), w("/t/b", "done"), w("/t/a", "done")];
    assert!(s.put_all_as("/t/holder", &mine, &batch).unwrap());
    assert_eq!(s.get("/t/a").unwrap().unwrap().value, b"done");
    assert!(
        !s.put_all_as("/t/holder", &other, &[w("/t/a", "forged")])
            .unwrap()
    );
    assert_eq!(s.get("/t/a").unwrap().unwrap().value, b"done");
    let many: Vec<_> = (0..128).map(|i| w(&format!("/t/{i}"), "x")).collect();
    assert!(
        s.put_all_as("/t/holder", &mine, &many)
            .unwrap_err()
            .0
            .contains("128")
    );
}

#[test]
fn a_key_whose_holder_died_is_free_once_its_lease_expires() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = etcd(dir.path());
    let a = etcd.connect().unwrap();
    let la = a.lease(1).unwrap();
    assert_eq!(a.create("/t/h", b"a", &la).unwrap(), None);
    // Dropping the lease stops its renewals, as a killed process would.
    drop(la);
    drop(a);
    let b = etcd.connect().unwrap();
    let lb = b.lease(5).unwrap();
    let start = Instant::now();
    while b.create("/t/h", b"b", &lb).unwrap().is_some() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the lease never expired"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_watch_sees_changes_from_its_revision_and_reports_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = etcd(dir.path());
    let s = etcd.connect().unwrap();
    s.put("/w/a", "1").unwrap();
    let (rev, entries) = s.get_prefix("/w/").unwrap();
    assert_eq!(entries.len(), 1);
    s.put("/w/b", "2").unwrap();
    s.delete_prefix("/w/a").unwrap();
    s.put("/other", "x").unwrap();
    let mut w = s.watch("/w/", rev + 1).unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match w.next(Duration::from_secs(5)).unwrap() {
            Step::Changes { changes, .. } => seen.extend(changes),
            Step::Idle => panic!("changes were missed: {seen:?}"),
            Step::Compacted { .. } => panic!("nothing was compacted"),
        }
    }
    assert_eq!(
        seen,
        [
            Change::Put {
                key: "/w/b".into(),
                value: b"2".to_vec()
            },
            Change::Delete { key: "/w/a".into() }
        ]
    );
    drop(w);
    // History compacted past the revision a reader had: its watch says so,
    // and it reads again.
    s.put("/w/c", "3").unwrap();
    let now = s.revision().unwrap();
    s.compact(now).unwrap();
    let mut old = s.watch("/w/", rev + 1).unwrap();
    match old.next(Duration::from_secs(5)).unwrap() {
        Step::Compacted { revision } => assert_eq!(revision, now),
        other => panic!("expected compaction, got {other:?}"),
    }
}
