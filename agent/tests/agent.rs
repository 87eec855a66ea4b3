//! Agents against a real etcd 3.4: one agent per host, status written only
//! under the lease, and desired state followed across compaction and an
//! etcd restart.

use std::time::{Duration, Instant};

use mx_agent::desired::{Follower, Want};
use mx_agent::{AgentError, Registration};
use mx_store::layout;
use mx_store::testkit::Etcd;

fn etcd(dir: &std::path::Path) -> Etcd {
    Etcd::start(dir).expect("etcd starts (apt-get install etcd-server)")
}

fn want(generation: &str) -> Vec<u8> {
    serde_json::to_vec(&Want {
        generation: generation.into(),
        up: true,
        chunks: 1,
        before_vms: Vec::new(),
    })
    .unwrap()
}

#[test]
fn a_second_agent_for_a_host_is_refused_until_the_first_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = etcd(dir.path());
    let (a, b) = (etcd.connect().unwrap(), etcd.connect().unwrap());
    let first = Registration::register(&a, "hv0").expect("first agent");
    let err = Registration::register(&b, "hv0")
        .err()
        .expect("second refused");
    match &err {
        AgentError::Duplicate { host, holder, .. } => {
            assert_eq!(host, "hv0");
            assert_eq!(holder.as_ref().map(|h| h.pid), Some(std::process::id()));
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("already has an agent"), "{err}");
    // Other hosts are independent.
    let other = Registration::register(&b, "hv1").expect("another host");
    // The first writes status; an agent of another host cannot write as it.
    let key = layout::status("hv0", "exp", "vm/a");
    assert!(first.put(&a, &key, b"done").unwrap());
    assert!(
        !b.put_as(&layout::agent("hv0"), &other.lease, &key, b"forged")
            .unwrap()
    );
    // A graceful stop frees the host at once.
    first.release(&a);
    let again = Registration::register(&b, "hv0").expect("free after release");
    assert!(again.holds());
}

#[test]
fn a_killed_agents_host_is_free_within_its_lease() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = etcd(dir.path());
    let a = etcd.connect().unwrap();
    let first = Registration::register(&a, "hv0").expect("registers");
    // As `kill -9` would: renewals stop, nothing is revoked.
    drop(first);
    drop(a);
    let b = etcd.connect().unwrap();
    let start = Instant::now();
    loop {
        match Registration::register(&b, "hv0") {
            Ok(_) => break,
            Err(AgentError::Duplicate { .. }) => {
                assert!(
                    start.elapsed() < Duration::from_secs(mx_agent::TTL_SECS as u64 + 3),
                    "the dead agent's lease never expired"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn desired_state_is_followed_and_acted_on_only_when_committed() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = etcd(dir.path());
    let s = etcd.connect().unwrap();
    s.put(&layout::want("hv0", "exp"), want("g1")).unwrap();
    s.put(&layout::want("hv1", "exp"), want("g1")).unwrap();
    let mut f = Follower::start(&s, "hv0").unwrap();
    assert_eq!(f.desired().wants.len(), 1, "only its own host's wants");
    assert!(f.desired().committed().is_empty(), "nothing committed yet");
    s.put(&layout::commit("exp"), "g1").unwrap();
    wait_until(&mut f, |d| d.committed().len() == 1);
    // A new generation published but not committed is not acted on.
    s.put(&layout::want("hv0", "exp"), want("g2")).unwrap();
    wait_until(&mut f, |d| d.wants["exp"].generation == "g2");
    assert!(f.desired().committed().is_empty());
    s.put(&layout::commit("exp"), "g2").unwrap();
    wait_until(&mut f, |d| d.committed().len() == 1);
    s.delete_prefix(&layout::want("hv0", "exp")).unwrap();
    wait_until(&mut f, |d| d.wants.is_empty());
    assert_eq!(f.reads, 1, "followed by watching alone");
}

#[test]
fn a_lost_watch_resumes_where_it_was_and_reads_again_if_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let mut etcd = etcd(dir.path());
    let s = etcd.connect().unwrap();
    s.put(&layout::want("hv0", "exp"), want("g1")).unwrap();
    s.put(&layout::commit("exp"), "g1").unwrap();
    let mut f = Follower::start(&s, "hv0").unwrap();
    // The store restarts: the watch is lost, and resumes from the last
    // revision it saw without reading everything again.
    etcd.restart().expect("restarts");
    let w = etcd.connect().unwrap();
    w.put(&layout::want("hv0", "two"), want("g1")).unwrap();
    w.put(&layout::commit("two"), "g1").unwrap();
    wait_until(&mut f, |d| d.committed().len() == 2);
    assert_eq!(f.reads, 1, "resumed, not read again");
    // It restarts again, and while the agent is away its history is
    // compacted past where its watch was: it reads the state whole.
    etcd.restart().expect("restarts");
    let w = etcd.connect().unwrap();
    for i in 0..20 {
        w.put(&layout::want("hv0", &format!("e{i}")), want("g"))
            .unwrap();
        w.put(&layout::commit(&format!("e{i}")), "g").unwrap();
    }
    w.delete_prefix(&layout::want("hv0", "exp")).unwrap();
    w.compact(w.revision().unwrap()).unwrap();
    wait_until(&mut f, |d| d.committed().len() == 21);
    assert!(!f.desired().wants.contains_key("exp"));
    assert_eq!(f.reads, 2, "read again once, after the compaction");
}

#[test]
fn a_new_generation_is_committed_once_and_hosts_it_drops_are_told_down() {
    use mx_agent::coordinator;
    let dir = tempfile::tempdir().unwrap();
    let etcd = etcd(dir.path());
    let s = etcd.connect().unwrap();
    let bundle = |host: &str| mx_materializer::Bundle {
        experiment: mx_xir::Name::new("exp").unwrap(),
        host: mx_xir::Name::new(host).unwrap(),
        fragments: Vec::new(),
    };
    let g1 = coordinator::publish(&s, &[bundle("hv0"), bundle("hv1")]).unwrap();
    assert_eq!(coordinator::committed(&s, "exp").unwrap(), Some(g1.clone()));
    let g2 = coordinator::publish(&s, &[bundle("hv0")]).unwrap();
    assert_ne!(g1, g2);
    assert_eq!(coordinator::committed(&s, "exp").unwrap(), Some(g2.clone()));
    let want = |h: &str| -> Want {
        serde_json::from_slice(&s.get(&layout::want(h, "exp")).unwrap().unwrap().value).unwrap()
    };
    assert!(want("hv0").up && want("hv0").generation == g2);
    assert!(
        !want("hv1").up && want("hv1").generation == g2,
        "hv1 is told down"
    );
    // Only the committed generation's bundle is kept.
    let (_, chunks) = s.get_prefix(layout::BUNDLE).unwrap();
    assert!(
        !chunks.is_empty() && chunks.iter().all(|c| c.key.contains(&g2)),
        "{chunks:?}"
    );
    // Withdrawn, every host is told down; forgotten, nothing is left.
    let told = coordinator::withdraw(&s, &mx_xir::Name::new("exp").unwrap()).unwrap();
    assert_eq!(told.len(), 2);
    coordinator::forget(&s, &mx_xir::Name::new("exp").unwrap()).unwrap();
    assert!(s.get_prefix("/mx/").unwrap().1.is_empty());
}

/// Follows until `done` holds (at most 15 s).
fn wait_until(f: &mut Follower, done: impl Fn(&mx_agent::desired::Desired) -> bool) {
    let start = Instant::now();
    while !done(f.desired()) {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "desired state never arrived: {:?}",
            f.desired()
        );
        let _ = f.wait(Duration::from_millis(500));
    }
}
