//! TLS and roles against a real etcd 3.4: each agent reads only its host's
//! desired state and writes only its host's status; only the coordinator
//! publishes; no certificate, no access.

use mx_store::access::{self, COORDINATOR, TlsFiles, agent_user};
use mx_store::layout;
use mx_store::testkit::Etcd;

#[test]
fn an_agent_cannot_touch_another_hosts_keys() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let hosts = vec!["hv0".to_string(), "hv1".to_string()];
    let made = access::make_certificates(&certs, &["127.0.0.1".into()], &hosts).unwrap();
    assert_eq!(
        made,
        ["server", "root", COORDINATOR, "agent-hv0", "agent-hv1"]
    );
    // Run again: nothing to make, hosts can be added.
    assert!(
        access::make_certificates(&certs, &["127.0.0.1".into()], &hosts)
            .unwrap()
            .is_empty()
    );
    let etcd = Etcd::start_tls(dir.path(), &certs).expect("etcd with TLS starts");
    access::grant(&etcd.connect().unwrap(), &hosts).expect("users and roles");

    let coordinator = etcd.connect_as(COORDINATOR).unwrap();
    coordinator.put(&layout::want("hv0", "exp"), "w0").unwrap();
    coordinator.put(&layout::want("hv1", "exp"), "w1").unwrap();
    coordinator.put(&layout::commit("exp"), "g").unwrap();

    let hv0 = etcd.connect_as(&agent_user("hv0")).unwrap();
    // Its own host: reads its wants and every commit, writes its status
    // and takes its agent key.
    assert_eq!(
        hv0.get_prefix(&layout::want_prefix("hv0")).unwrap().1.len(),
        1
    );
    assert!(hv0.get(&layout::commit("exp")).unwrap().is_some());
    hv0.put(&layout::status("hv0", "exp", "vm/a"), "done")
        .unwrap();
    let lease = hv0.lease(5).unwrap();
    assert_eq!(
        hv0.create(&layout::agent("hv0"), b"me", &lease).unwrap(),
        None
    );
    // Another host: refused, and nothing is written.
    let denied = |r: Result<(), mx_store::StoreError>| {
        let e = r.expect_err("refused");
        assert!(e.0.contains("permission denied"), "{e}");
    };
    denied(hv0.put(&layout::status("hv1", "exp", "vm/b"), "forged"));
    denied(hv0.put(&layout::want("hv1", "exp"), "forged"));
    denied(hv0.put(&layout::want("hv0", "exp"), "self-served"));
    denied(hv0.put(&layout::commit("exp"), "forged"));
    denied(hv0.get_prefix(&layout::want_prefix("hv1")).map(|_| ()));
    denied(hv0.create(&layout::agent("hv1"), b"me", &lease).map(|_| ()));
    assert_eq!(
        coordinator
            .get(&layout::want("hv1", "exp"))
            .unwrap()
            .unwrap()
            .value,
        b"w1"
    );
    assert!(
        coordinator
            .get(&layout::status("hv1", "exp", "vm/b"))
            .unwrap()
            .is_none()
    );

    // Without a client certificate, or with one from another CA, no access.
    let other = dir.path().join("other");
    access::make_certificates(&other, &["127.0.0.1".into()], &hosts).unwrap();
    let stranger = TlsFiles {
        ca: certs.join("ca.pem"),
        ..TlsFiles::in_dir(&other, &agent_user("hv0"))
    };
    assert!(mx_store::Store::connect_with(&etcd.url, Some(&stranger)).is_err());
    assert!(mx_store::Store::connect_with(&etcd.url, None).is_err());
}
