//! The DAG's semantics with a fake executor, on the one-machine example's
//! plan: up runs a task only after its dependencies, stops launching at the
//! first failure and marks what never ran as skipped; down runs dependents
//! first and carries on past failures so that as much as possible goes.

use std::collections::BTreeMap;
use std::sync::Mutex;

use mx_runtime::Runtime;
use mx_runtime::exec::{self, Context, Direction, Executor, State, Status};
use mx_runtime::plan::Op;

mod common;
use common::bundles;

/// Records which task each operation belonged to (by the order tasks
/// start), and fails every operation of one task.
struct Fake {
    fail: Option<String>,
    log: Mutex<Vec<String>>,
}

impl Executor for Fake {
    fn run(&self, op: &Op, _ctx: &Context) -> Result<Option<String>, String> {
        let text = op.to_string();
        self.log.lock().unwrap().push(text.clone());
        match &self.fail {
            Some(needle) if text.contains(needle.as_str()) => Err("injected".into()),
            _ => Ok(None),
        }
    }
}

fn runtime() -> Runtime {
    Runtime {
        root: "/var/lib/mx/run".into(),
        images: "/tmp/mx-dag-test-images".into(),
        bpf: "/sys/fs/bpf/mx".into(),
        cgroup: "mx".into(),
        workers: 4,
    }
}

/// Runs the example's DAG one way with `fake`; returns the outcome and the
/// final status of every task by id, and the order tasks ended in.
fn drive(
    dir: Direction,
    fake: &Fake,
    workers: usize,
) -> (Result<(), String>, BTreeMap<String, Status>, Vec<String>) {
    // The images only need to exist for planning.
    let images = std::path::Path::new("/tmp/mx-dag-test-images/mx-busybox");
    std::fs::create_dir_all(images).unwrap();
    for f in ["vmlinuz", "initramfs.cpio.gz"] {
        std::fs::write(images.join(f), b"").unwrap();
    }
    let (plan, paths) = runtime().plan(&bundles(), false).expect("plans");
    let mut state = State {
        experiment: "local".parse().unwrap(),
        tag: 0,
        netns_hosts: vec!["ns0".into(), "ns1".into()],
        accel: "tcg".into(),
        phase: "starting".into(),
        tasks: plan
            .dag
            .tasks
            .iter()
            .map(|t| exec::TaskState {
                id: t.fragment.id.clone(),
                host: t.fragment.host.to_string(),
                status: Status::Pending,
                message: String::new(),
                ms: 0,
            })
            .collect(),
    };
    let ctx = Context {
        experiment: "local".into(),
        root: "/var/lib/mx/run".into(),
    };
    let mut ended = Vec::new();
    let res = exec::run(
        &plan.dag,
        dir,
        fake,
        &ctx,
        &paths,
        &state.netns_hosts.clone(),
        &mut state,
        None,
        workers,
        &mut |e| {
            if let exec::Event::End(id, _, _) = e {
                ended.push(id.to_string());
            }
        },
        &exec::open_gate,
    );
    let status = state
        .tasks
        .iter()
        .map(|t| (t.id.clone(), t.status))
        .collect();
    // Dependencies, to check the order against.
    (res, status, ended)
}

fn deps() -> Vec<(String, Vec<String>)> {
    let (plan, _) = runtime().plan(&bundles(), false).expect("plans");
    plan.dag
        .tasks
        .iter()
        .map(|t| {
            (
                t.fragment.id.clone(),
                t.deps
                    .iter()
                    .map(|&d| plan.dag.tasks[d].fragment.id.clone())
                    .collect(),
            )
        })
        .collect()
}

fn fake(fail: Option<&str>) -> Fake {
    Fake {
        fail: fail.map(str::to_string),
        log: Mutex::new(Vec::new()),
    }
}

#[test]
fn up_runs_every_task_after_its_dependencies() {
    for workers in [1, 4, 64] {
        let (res, status, ended) = drive(Direction::Up, &fake(None), workers);
        res.expect("up succeeds");
        assert!(status.values().all(|&s| s == Status::Done), "{status:?}");
        let at = |id: &str| ended.iter().position(|e| e == id).unwrap();
        for (id, ds) in deps() {
            for d in ds {
                assert!(at(&d) < at(&id), "{id} ended before its dependency {d}");
            }
        }
    }
}

#[test]
fn up_stops_at_the_first_failure_and_skips_the_rest() {
    // The first namespace fails: nothing that depends on it may run.
    let f = fake(Some("netns add mxh-ns0"));
    let (res, status, _) = drive(Direction::Up, &f, 1);
    let err = res.expect_err("up fails");
    assert!(
        err.contains("netns/ns0") && err.contains("injected"),
        "{err}"
    );
    assert_eq!(status["netns/ns0"], Status::Failed);
    for (id, ds) in deps() {
        if ds.iter().any(|d| d == "netns/ns0") {
            assert_ne!(
                status[&id],
                Status::Done,
                "{id} ran after its dependency failed"
            );
        }
    }
    assert!(
        status.values().any(|&s| s == Status::Skipped),
        "nothing was marked skipped: {status:?}"
    );
    assert!(
        !status
            .values()
            .any(|&s| s == Status::Pending || s == Status::Running),
        "{status:?}"
    );
}

#[test]
fn down_runs_dependents_first_and_carries_on_past_failures() {
    let (res, status, ended) = drive(Direction::Down, &fake(None), 4);
    res.expect("down succeeds");
    assert!(status.values().all(|&s| s == Status::Down), "{status:?}");
    let at = |id: &str| ended.iter().position(|e| e == id).unwrap();
    for (id, ds) in deps() {
        for d in ds {
            assert!(
                at(&id) < at(&d),
                "{d} was taken down before {id}, which needs it"
            );
        }
    }

    // A VM that cannot be stopped: everything else still goes, and the
    // first failure is reported.
    let f = fake(Some("qmp quit"));
    let (res, status, _) = drive(Direction::Down, &f, 4);
    let err = res.expect_err("down reports the failure");
    assert!(err.contains("vm/") && err.contains("injected"), "{err}");
    let failed = status.values().filter(|&&s| s == Status::Failed).count();
    assert!(failed >= 1);
    assert_eq!(
        failed + status.values().filter(|&&s| s == Status::Down).count(),
        status.len(),
        "every task was attempted: {status:?}"
    );
    assert_eq!(status["netns/ns0"], Status::Down);
}
