//! Running a DAG: a fixed pool of workers takes tasks whose dependencies
//! are done (up) or whose dependents are gone (down). The coordinating
//! thread alone writes the state file (at most every 100 ms and at the
//! end), so `mxc status` and `mxc down` find a record after a crash.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::dag::Dag;
use crate::plan::{self, Op, Paths};

/// Carries out operations: the real machine, or a printer for dry runs.
pub trait Executor: Sync {
    /// Does one operation. `Ok(Some(note))` succeeds with a warning to show.
    fn run(&self, op: &Op, ctx: &Context) -> Result<Option<String>, String>;
}

/// What operations may need to know beyond themselves.
#[derive(Clone, Debug)]
pub struct Context {
    /// The experiment.
    pub experiment: String,
    /// The runtime's state root (every experiment's directory is under it).
    pub root: PathBuf,
}

/// A task's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Not started.
    Pending,
    /// Started; a crash here leaves it half done.
    Running,
    /// Up.
    Done,
    /// Failed; see the message.
    Failed,
    /// Not started because the run stopped.
    Skipped,
    /// Taken down.
    Down,
}

/// One task's record.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskState {
    /// Fragment id.
    pub id: String,
    /// Host.
    pub host: String,
    /// State.
    pub status: Status,
    /// Error or warning.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Milliseconds it took.
    #[serde(default)]
    pub ms: u64,
}

/// The state file of an experiment (`state.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct State {
    /// The experiment.
    pub experiment: mx_xir::Name,
    /// Its tag on this machine (0 in state written before tags).
    #[serde(default)]
    pub tag: u32,
    /// Hosts that are namespaces on this machine.
    pub netns_hosts: Vec<String>,
    /// The accelerator the VMs run with.
    pub accel: String,
    /// `up`, `failed`, `down-failed`, `starting`.
    pub phase: String,
    /// Tasks in DAG order.
    pub tasks: Vec<TaskState>,
}

impl State {
    /// Reads `dir/state.json`.
    pub fn load(dir: &Path) -> Result<State, String> {
        let p = dir.join("state.json");
        let text =
            std::fs::read_to_string(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{} is corrupt: {e}", p.display()))
    }

    /// Writes `dir/state.json` atomically (write, fsync, rename).
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        use std::io::Write;
        let tmp = dir.join("state.json.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(mx_materializer::to_json(self).as_bytes())?;
        f.sync_all()?;
        std::fs::rename(tmp, dir.join("state.json"))
    }
}

/// How often a run's state is saved at most while tasks run.
const SAVE_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// Something to show while tasks run.
pub enum Event<'a> {
    /// A task started.
    Start(&'a str),
    /// A task ended (`Err` holds its error).
    End(&'a str, &'a Result<Option<String>, String>, u64),
}

/// Which way to run the DAG.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Bring everything up.
    Up,
    /// Take everything down, dependents first.
    Down,
}

/// What a task waits for on its worker, after [`Event::Start`] and before
/// its operations: another host's pieces, say. It blocks only that
/// worker; the scheduler goes on starting and finishing other tasks.
pub type Gate<'a> = dyn Fn(&str) + Sync + 'a;

/// A gate that lets every task through.
pub fn open_gate(_: &str) {}

/// Runs every task of `dag` in `dir`'s state. Up stops launching tasks at
/// the first failure and returns it; down carries on past failures (so as
/// much as possible is removed) and returns the first.
#[allow(clippy::too_many_arguments)]
pub fn run(
    dag: &Dag,
    dir: Direction,
    exec: &dyn Executor,
    ctx: &Context,
    paths: &Paths,
    netns_hosts: &[String],
    state: &mut State,
    state_dir: Option<&Path>,
    workers: usize,
    progress: &mut dyn FnMut(Event),
    gate: &Gate<'_>,
) -> Result<(), String> {
    let n = dag.tasks.len();
    let dependents = dag.dependents();
    // Up: wait for dependencies; down: wait for dependents.
    let waits: Vec<Vec<usize>> = match dir {
        Direction::Up => dag.tasks.iter().map(|t| t.deps.clone()).collect(),
        Direction::Down => dependents.clone(),
    };
    let releases: Vec<Vec<usize>> = match dir {
        Direction::Up => dependents,
        Direction::Down => dag.tasks.iter().map(|t| t.deps.clone()).collect(),
    };
    let mut remaining: Vec<usize> = waits.iter().map(Vec::len).collect();
    let mut ready: std::collections::VecDeque<usize> =
        (0..n).filter(|&i| remaining[i] == 0).collect();
    let mut running = 0usize;
    let mut finished = 0usize;
    let mut first_err: Option<String> = None;
    // The state is saved (written and synced) at most every 100 ms while
    // tasks run, and at the end: saved twice a task, the syncs held the
    // scheduler to a few hundred tasks a second. Losing the last moments
    // to a crash costs nothing: a resumed run redoes every task not known
    // done, and tasks are idempotent.
    let mut saved_at: Option<Instant> = None;
    let mut save = |state: &State, force: bool| {
        if let Some(d) = state_dir
            && (force || saved_at.is_none_or(|t| t.elapsed() >= SAVE_EVERY))
        {
            let _ = state.save(d);
            saved_at = Some(Instant::now());
        }
    };
    let ops_of = |i: usize| -> Vec<Op> {
        let f = &dag.tasks[i].fragment;
        let ns = plan::host_ns(f, netns_hosts);
        match dir {
            Direction::Up => plan::up(f, ns, paths),
            Direction::Down => plan::down(f, ns, paths),
        }
    };
    // A fixed pool: a thread spawned per task cost more than many tasks
    // (each new thread faults in a fresh allocator heap; 14% of all CPU
    // with 10 agents bringing up 1,000 VMs).
    let pool = workers.max(1).min(n.max(1));
    let (jobs, job_rx) = mpsc::channel::<(usize, Vec<Op>)>();
    let job_rx = std::sync::Mutex::new(job_rx);
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<(usize, Result<Option<String>, String>, u64)>();
        for _ in 0..pool {
            let tx = tx.clone();
            let job_rx = &job_rx;
            scope.spawn(move || {
                loop {
                    // The lock is held only while waiting for the next job.
                    let job = job_rx.lock().map(|r| r.recv());
                    let Ok(Ok((i, ops))) = job else { break };
                    gate(&dag.tasks[i].fragment.id);
                    let t0 = Instant::now();
                    let mut notes = Vec::new();
                    let mut res = Ok(None);
                    for op in &ops {
                        match exec.run(op, ctx) {
                            Ok(Some(n)) => notes.push(n),
                            Ok(None) => {}
                            Err(e) => {
                                res = Err(format!("{op}: {e}"));
                                break;
                            }
                        }
                    }
                    if res.is_ok() && !notes.is_empty() {
                        res = Ok(Some(notes.join("; ")));
                    }
                    if tx.send((i, res, t0.elapsed().as_millis() as u64)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        loop {
            let stop = dir == Direction::Up && first_err.is_some();
            while running < pool && !stop {
                let Some(i) = ready.pop_front() else { break };
                let ops = ops_of(i);
                state.tasks[i].status = Status::Running;
                progress(Event::Start(&dag.tasks[i].fragment.id));
                running += 1;
                if jobs.send((i, ops)).is_err() {
                    break;
                }
            }
            save(state, false);
            if running == 0 {
                break;
            }
            let Ok((i, res, ms)) = rx.recv() else { break };
            running -= 1;
            finished += 1;
            progress(Event::End(&dag.tasks[i].fragment.id, &res, ms));
            let ts = &mut state.tasks[i];
            ts.ms = ms;
            match &res {
                Ok(note) => {
                    ts.status = if dir == Direction::Up {
                        Status::Done
                    } else {
                        Status::Down
                    };
                    ts.message = note.clone().unwrap_or_default();
                }
                Err(e) => {
                    ts.status = Status::Failed;
                    ts.message = e.clone();
                    if first_err.is_none() {
                        first_err = Some(format!("{}: {e}", dag.tasks[i].fragment.id));
                    }
                }
            }
            // Down releases a task's dependencies even when it failed, so
            // the rest is still removed.
            if res.is_ok() || dir == Direction::Down {
                for &j in &releases[i] {
                    remaining[j] -= 1;
                    if remaining[j] == 0 {
                        ready.push_back(j);
                    }
                }
            }
        }
        drop(jobs);
    });
    if dir == Direction::Up && finished < n {
        for t in state
            .tasks
            .iter_mut()
            .filter(|t| t.status == Status::Pending)
        {
            t.status = Status::Skipped;
        }
    }
    save(state, true);
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A dry run: records every operation instead of doing it.
#[derive(Default)]
pub struct DryRun {
    /// The operations, in the order the pool took them.
    pub ops: std::sync::Mutex<Vec<String>>,
}

impl Executor for DryRun {
    fn run(&self, op: &Op, _ctx: &Context) -> Result<Option<String>, String> {
        self.ops.lock().expect("dry-run log").push(op.to_string());
        Ok(None)
    }
}
