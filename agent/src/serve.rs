//! The agent's loop: register, follow the host's desired state, and
//! converge what runs here to it with today's runtime and executor.
//!
//! Converging, for each experiment:
//! - wanted up at the committed generation and not here: fetch the bundle
//!   from the store, build missing images, and bring it up; status goes
//!   back per task as it starts and ends;
//! - here at that generation but not finished (the agent was killed part
//!   way): resume it (tasks are idempotent);
//! - here at another generation: take it down, then up;
//! - wanted down, or no longer wanted at all: take it down and clear its
//!   status.
//!
//! A want whose generation is not committed changes nothing. A generation
//! that failed here is not retried until the want changes or the agent
//! restarts. VM tasks wait (in the runtime's progress callback, before
//! they start) until the other hosts report their global pieces done.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mx_runtime::{Event, Runtime};
use mx_store::{Store, layout};
use mx_xir::Name;

use crate::desired::{Desired, Follower, Want};
use crate::wire::{self, TaskStatus};
use crate::{AgentError, Registration};

/// How long VMs wait for other hosts' global pieces before starting
/// anyway (their guests' first pings may then fail).
const REMOTE_WAIT: Duration = Duration::from_secs(120);

/// Statuses go to the store in batches: at most this many per transaction,
/// gathered for at most [`BATCH_WAIT`]. The scheduler never waits for the
/// store (one round trip per task made the store the bottleneck).
const BATCH: usize = 100;
const BATCH_WAIT: Duration = Duration::from_millis(20);

/// Where the scheduler hands statuses to the batching writer.
type Outbox = mpsc::Sender<(String, Vec<u8>)>;

/// The file in an experiment's state directory naming the generation the
/// agent brought up.
const GENERATION_FILE: &str = "generation";

/// Runs the agent for `host` until `stop` is set (then it gives the host up
/// at once) or its lease is lost. `log` gets one line per thing done.
pub fn serve(
    store: &Store,
    host: &str,
    rt: &Runtime,
    stop: &AtomicBool,
    log: &mut dyn FnMut(&str),
) -> Result<(), AgentError> {
    let mut reg = register(store, host, stop, log)?;
    let mut follower = Follower::start(store, host)?;
    let mut failed = BTreeMap::new();
    let mut store_down = false;
    loop {
        if stop.load(Ordering::SeqCst) {
            log(&format!("agent for `{host}` stopping"));
            reg.release(store);
            return Ok(());
        }
        if !reg.holds() {
            // The store was away longer than the lease: whatever this
            // agent held may have been taken; register again (refused if
            // another agent took the host meanwhile).
            log(&format!(
                "the lease on `{host}` lapsed (the store was unreachable for {} s or more); registering again",
                reg.lease.ttl
            ));
            reg = register(store, host, stop, log)?;
        }
        Agent {
            store,
            reg: &reg,
            rt,
            failed: &mut failed,
            remotes_waited: Default::default(),
        }
        .converge(follower.desired(), log);
        match follower.wait(Duration::from_millis(500)) {
            Ok(_) => {
                if store_down {
                    log("the store is back");
                    store_down = false;
                }
            }
            Err(e) if !store_down => {
                log(&format!("cannot follow the store ({e}); retrying"));
                store_down = true;
            }
            Err(_) => {}
        }
    }
}

/// Registers, retrying while the store is unreachable; a live agent
/// holding the host is an error.
fn register(
    store: &Store,
    host: &str,
    stop: &AtomicBool,
    log: &mut dyn FnMut(&str),
) -> Result<Registration, AgentError> {
    let mut said = false;
    loop {
        match Registration::register_waiting(store, host) {
            Ok(reg) => {
                log(&format!(
                    "agent for `{host}` registered (lease {:x}, {} s)",
                    reg.lease.id, reg.lease.ttl
                ));
                return Ok(reg);
            }
            Err(AgentError::Store(e)) if !stop.load(Ordering::SeqCst) => {
                if !said {
                    log(&format!("cannot register ({e}); retrying"));
                    said = true;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => return Err(e),
        }
    }
}

struct Agent<'a> {
    store: &'a Store,
    reg: &'a Registration,
    rt: &'a Runtime,
    /// Generations that failed here, by experiment: not retried.
    failed: &'a mut BTreeMap<String, String>,
    /// The generation whose remote tasks were waited for (all seen done,
    /// or given up on after [`REMOTE_WAIT`]): later VMs of it do not wait
    /// again.
    remotes_waited: std::sync::Mutex<Option<String>>,
}

impl Agent<'_> {
    fn host(&self) -> &str {
        &self.reg.host
    }

    fn converge(&mut self, desired: &Desired, log: &mut dyn FnMut(&str)) {
        let committed = desired.committed();
        // Down first: what is no longer wanted, or wanted down.
        for name in self.rt.list() {
            let take_down = match desired.wants.get(name.as_str()) {
                None => true,
                Some(w) => committed.contains_key(name.as_str()) && !w.up,
            };
            if take_down {
                self.down(&name, log);
            }
        }
        for (exp, want) in committed {
            if !want.up || self.failed.get(exp) == Some(&want.generation) {
                continue;
            }
            let Ok(name) = Name::new(exp) else { continue };
            let dir = self.rt.state_dir(&name);
            if dir.exists() {
                let here = generation_of(&dir);
                if here.as_deref() == Some(want.generation.as_str()) {
                    let finished = self.rt.status(&name).is_ok_and(|s| s.phase == "up");
                    if !finished {
                        self.resume(&name, want, log);
                    }
                    continue;
                }
                self.down(&name, log);
            }
            self.up(&name, want, log);
        }
    }

    /// Writes a task's status, only while this agent holds the host.
    fn report(&self, name: &str, task: &str, status: TaskStatus) {
        let key = layout::status(self.host(), name, task);
        let value = serde_json::to_vec(&status).unwrap_or_default();
        let _ = self.reg.put(self.store, &key, &value);
    }

    fn up(&mut self, name: &Name, want: &Want, log: &mut dyn FnMut(&str)) {
        let started = Instant::now();
        let bundle = match self.fetch(name, want) {
            Ok(b) => b,
            Err(e) => {
                log(&format!("`{name}` generation {}: {e}", want.generation));
                self.fail(name, want, "bundle", &e);
                return;
            }
        };
        if let Err(e) = self.rt.ensure_images(std::slice::from_ref(&bundle)) {
            log(&format!("`{name}`: images: {e}"));
            self.fail(name, want, "images", &e);
            return;
        }
        log(&format!(
            "`{name}` generation {}: bringing up {} tasks",
            want.generation,
            bundle.fragments.len()
        ));
        let dir = self.rt.state_dir(name);
        let result = self.reporting(|out| {
            let mut progress = |e: Event| self.progress(name, want, &dir, e, out);
            let gate = |id: &str| self.gate(name, want, id);
            self.rt
                .up_gated(std::slice::from_ref(&bundle), &mut progress, &gate)
        });
        match result {
            Ok(_) => log(&format!(
                "`{name}` is up here ({:.1} s)",
                started.elapsed().as_secs_f64()
            )),
            Err(e) => {
                let text = first_message(e.diagnostics());
                log(&format!("`{name}` did not come up here: {text}"));
                if matches!(e, mx_runtime::UpError::Refused(_)) {
                    self.fail(name, want, "plan", &text);
                }
                self.failed
                    .insert(name.to_string(), want.generation.clone());
            }
        }
    }

    fn resume(&mut self, name: &Name, want: &Want, log: &mut dyn FnMut(&str)) {
        log(&format!(
            "`{name}` generation {} was not finished here: resuming",
            want.generation
        ));
        let dir = self.rt.state_dir(name);
        let result = self.reporting(|out| {
            let mut progress = |e: Event| self.progress(name, want, &dir, e, out);
            let gate = |id: &str| self.gate(name, want, id);
            self.rt.resume_gated(name, &mut progress, &gate)
        });
        match result {
            Ok(_) => log(&format!("`{name}` is up here")),
            Err(d) => {
                log(&format!(
                    "`{name}` did not come up here: {}",
                    first_message(&d)
                ));
                self.failed
                    .insert(name.to_string(), want.generation.clone());
            }
        }
    }

    fn down(&mut self, name: &Name, log: &mut dyn FnMut(&str)) {
        let started = Instant::now();
        match self.rt.down(name, false, &mut |_| {}) {
            Ok(_) => {
                let _ = self.store.delete_prefix_as(
                    &layout::agent(self.host()),
                    &self.reg.lease,
                    &layout::status_prefix(self.host(), name.as_str()),
                );
                self.failed.remove(name.as_str());
                log(&format!(
                    "`{name}` is down here ({:.1} s)",
                    started.elapsed().as_secs_f64()
                ));
            }
            Err(d) => log(&format!(
                "`{name}` could not be taken down here: {}",
                first_message(&d)
            )),
        }
    }

    /// The host's bundle of `want`'s generation, checked to be this host's.
    fn fetch(&self, name: &Name, want: &Want) -> Result<mx_materializer::Bundle, String> {
        let prefix = layout::bundle_prefix(self.host(), name.as_str(), &want.generation);
        let (_, chunks) = self.store.get_prefix(&prefix).map_err(|e| e.to_string())?;
        if chunks.len() != want.chunks {
            return Err(format!(
                "the bundle has {} of its {} chunks in the store",
                chunks.len(),
                want.chunks
            ));
        }
        let bytes: Vec<u8> = chunks.into_iter().flat_map(|c| c.value).collect();
        wire::decode(&bytes, name.as_str(), self.host())
    }

    fn fail(&mut self, name: &Name, want: &Want, task: &str, message: &str) {
        self.report(
            name.as_str(),
            task,
            TaskStatus {
                generation: want.generation.clone(),
                status: "failed".into(),
                ms: 0,
                message: message.to_string(),
            },
        );
        self.failed
            .insert(name.to_string(), want.generation.clone());
    }

    /// Runs `f` with an outbox whose statuses a writer thread sends to the
    /// store in batches; returns once all are written (or refused).
    fn reporting<R>(&self, f: impl FnOnce(&Outbox) -> R) -> R {
        std::thread::scope(|s| {
            let (tx, rx) = mpsc::channel::<(String, Vec<u8>)>();
            let writer = s.spawn(move || {
                let owner = layout::agent(self.host());
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    let until = Instant::now() + BATCH_WAIT;
                    while batch.len() < BATCH {
                        let left = until.saturating_duration_since(Instant::now());
                        match rx.recv_timeout(left) {
                            Ok(w) => batch.push(w),
                            Err(_) => break,
                        }
                    }
                    let _ = self.store.put_all_as(&owner, &self.reg.lease, &batch);
                }
            });
            let r = f(&tx);
            drop(tx);
            let _ = writer.join();
            r
        })
    }

    /// The runtime's progress: status to the store (through the batching
    /// writer); before a VM starts, the wait for other hosts' global
    /// pieces.
    fn progress(&self, name: &Name, want: &Want, dir: &Path, e: Event, out: &Outbox) {
        // The state directory exists from the first event on.
        if !dir.join(GENERATION_FILE).exists() {
            let _ = std::fs::write(dir.join(GENERATION_FILE), &want.generation);
        }
        let status = |s: &str, ms: u64, message: String| TaskStatus {
            generation: want.generation.clone(),
            status: s.into(),
            ms,
            message,
        };
        match e {
            Event::Start(id) => {
                post(
                    out,
                    self.host(),
                    name,
                    id,
                    status("running", 0, String::new()),
                );
            }
            Event::End(id, res, ms) => {
                let s = match res {
                    Ok(note) => status("done", ms, note.clone().unwrap_or_default()),
                    Err(err) => status("failed", ms, err.clone()),
                };
                post(out, self.host(), name, id, s);
            }
        }
    }

    /// Where a task waits, on its worker, before it runs: VMs wait for
    /// the other hosts' global pieces.
    fn gate(&self, name: &Name, want: &Want, id: &str) {
        if id.starts_with("vm/") {
            self.wait_for_remotes(name, want);
        }
    }

    /// Blocks until every remote task `want` lists is done at this
    /// generation, or [`REMOTE_WAIT`] passed (once per generation, not once
    /// per VM). One VM's worker looks at a time; the others wait on the
    /// lock and then find it waited for.
    fn wait_for_remotes(&self, name: &Name, want: &Want) {
        let Ok(mut done) = self.remotes_waited.lock() else {
            return;
        };
        if done.as_deref() == Some(want.generation.as_str()) {
            return;
        }
        let start = Instant::now();
        let mut pending = want.before_vms.clone();
        while !pending.is_empty() && start.elapsed() < REMOTE_WAIT {
            pending.retain(|r| {
                let key = layout::status(&r.host, name.as_str(), &r.task);
                let done = self
                    .store
                    .get(&key)
                    .ok()
                    .flatten()
                    .and_then(|e| serde_json::from_slice::<TaskStatus>(&e.value).ok())
                    .is_some_and(|s| s.generation == want.generation && s.status == "done");
                !done
            });
            if !pending.is_empty() {
                std::thread::sleep(Duration::from_millis(25));
            }
        }
        *done = Some(want.generation.clone());
    }
}

fn post(out: &Outbox, host: &str, name: &Name, task: &str, status: TaskStatus) {
    let value = serde_json::to_vec(&status).unwrap_or_default();
    let _ = out.send((layout::status(host, name.as_str(), task), value));
}

fn generation_of(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join(GENERATION_FILE))
        .ok()
        .map(|s| s.trim().to_string())
}

fn first_message(d: &[mx_diag::Diagnostic]) -> String {
    d.first().map_or_else(String::new, |d| d.message.clone())
}
