//! `up`, `down` and `status` over a store: the coordinator writes desired
//! state and watches the agents' status (`mx_agent::coordinator`); the
//! agents on the hosts do the work.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use mx_agent::coordinator::{self, Statuses};
use mx_agent::wire::TaskStatus;
use mx_store::{Store, StoreUrl};
use mx_xir::Name;

use crate::{RealizeRequest, Realized, TableAt, ToolError, UpStop, realize, release};

/// How long `up` waits for the agents before it says who is late.
pub const UP_WAIT: Duration = Duration::from_secs(600);
/// How long `down` waits for live agents to finish.
pub const DOWN_WAIT: Duration = Duration::from_secs(300);

pub fn connect(url: &str) -> Result<Store, ToolError> {
    let url = StoreUrl::parse(url).map_err(|e| ToolError(e.0))?;
    Store::connect(&url).map_err(|e| ToolError(e.0))
}

/// What `up --store` reports while it waits.
pub enum RemoteEvent<'a> {
    /// Realized, allocated and published: `tasks` tasks over `hosts`.
    Published {
        realized: &'a Realized,
        generation: &'a str,
        tasks: usize,
        hosts: &'a [String],
        /// Hosts of the experiment without an agent now.
        absent: &'a [String],
    },
    /// A task's status changed.
    Task {
        host: &'a str,
        task: &'a str,
        status: &'a TaskStatus,
    },
}

/// What `up --store` brought up.
pub struct RemoteUp {
    pub realized: Realized,
    pub generation: String,
    pub tasks: usize,
    pub hosts: Vec<String>,
}

/// Why the hosts did not all come up: the allocation stays with the
/// experiment (`down --store` removes what was done and gives it back).
pub struct RemoteFailure {
    /// `(host, task, message)` of failed tasks.
    pub failed: Vec<(String, String, String)>,
    /// Hosts still not finished when the wait ended, with what they lack.
    pub late: Vec<(String, usize)>,
}

/// Realizes, allocates, materializes and publishes the experiment, then
/// waits for every host's agent to report every task done.
pub fn up(
    req: &RealizeRequest,
    store: &Store,
    report: &mut dyn FnMut(RemoteEvent),
) -> Result<RemoteUp, Result<UpStop, RemoteFailure>> {
    let realized = realize(req).map_err(|e| Ok(UpStop::Realize(e)))?;
    let name = realized.realization.name.clone();
    let give_back = |diagnostics| {
        Ok(UpStop::Released {
            diagnostics,
            released: realized.allocated.then(|| release(&req.db, &name)),
        })
    };
    let bundles = match mx_materializer::materialize(&realized.realization) {
        Ok(b) => b,
        Err(d) => return Err(give_back(vec![d])),
    };
    // Checked here as the agents will check them, before anything is
    // published.
    if let Err(d) = mx_runtime::bundle::validate(&bundles) {
        return Err(give_back(d));
    }
    let generation = coordinator::publish(store, &bundles).map_err(|e| {
        Ok(UpStop::Store {
            error: ToolError(e.0),
            released: realized.allocated.then(|| release(&req.db, &name)),
        })
    })?;
    let hosts: Vec<String> = bundles.iter().map(|b| b.host.to_string()).collect();
    let tasks: BTreeMap<String, BTreeSet<String>> = bundles
        .iter()
        .map(|b| {
            (
                b.host.to_string(),
                b.fragments.iter().map(|f| f.id.clone()).collect(),
            )
        })
        .collect();
    let total = tasks.values().map(BTreeSet::len).sum();
    let agents = coordinator::agents(store).unwrap_or_default();
    let absent: Vec<String> = hosts
        .iter()
        .filter(|h| !agents.contains_key(*h))
        .cloned()
        .collect();
    report(RemoteEvent::Published {
        realized: &realized,
        generation: &generation,
        tasks: total,
        hosts: &hosts,
        absent: &absent,
    });
    let outcome = wait_up(store, name.as_str(), &generation, &tasks, report);
    match outcome {
        Ok(()) => Ok(RemoteUp {
            realized,
            generation,
            tasks: total,
            hosts,
        }),
        Err(f) => Err(Err(f)),
    }
}

fn wait_up(
    store: &Store,
    name: &str,
    generation: &str,
    tasks: &BTreeMap<String, BTreeSet<String>>,
    report: &mut dyn FnMut(RemoteEvent),
) -> Result<(), RemoteFailure> {
    let start = Instant::now();
    let mut seen: Statuses = Statuses::new();
    // Every status read once, then a watch from the revision after: each
    // change arrives as it is written, and nothing is read twice (reading
    // the experiment's every status four times a second took CPU from the
    // agents and a quarter of a second at the end). A lost or compacted
    // watch reads again.
    let mut watch: Option<mx_store::Watch<'_>> = None;
    loop {
        let mut report_now = |seen: &Statuses, host: &str, task: &str| {
            if let Some(s) = seen.get(host).and_then(|m| m.get(task))
                && s.generation == generation
            {
                report(RemoteEvent::Task {
                    host,
                    task,
                    status: s,
                });
            }
        };
        match watch.as_mut() {
            None => match coordinator::statuses_at(store, name) {
                Ok((revision, now)) => {
                    for (host, ts) in &now {
                        for (task, s) in ts {
                            if seen.get(host).and_then(|m| m.get(task)) != Some(s) {
                                report_now(&now, host, task);
                            }
                        }
                    }
                    seen = now;
                    watch = store.watch(mx_store::layout::STATUS, revision + 1).ok();
                }
                Err(_) => std::thread::sleep(Duration::from_millis(250)),
            },
            Some(w) => match w.next(Duration::from_millis(500)) {
                Ok(mx_store::Step::Changes { changes, .. }) => {
                    for c in &changes {
                        let (key, value) = match c {
                            mx_store::Change::Put { key, value } => (key, Some(value.as_slice())),
                            mx_store::Change::Delete { key } => (key, None),
                        };
                        if let Some((host, task)) =
                            coordinator::apply_status(&mut seen, name, key, value)
                        {
                            report_now(&seen, host, task);
                        }
                    }
                }
                Ok(mx_store::Step::Idle) => {}
                Ok(mx_store::Step::Compacted { .. }) | Err(_) => watch = None,
            },
        }
        let current = |host: &str, task: &str| {
            seen.get(host)
                .and_then(|m| m.get(task))
                .filter(|s| s.generation == generation)
        };
        let failed: Vec<(String, String, String)> = seen
            .iter()
            .flat_map(|(h, ts)| ts.iter().map(move |(t, s)| (h, t, s)))
            .filter(|(_, _, s)| s.generation == generation && s.status == "failed")
            .map(|(h, t, s)| (h.clone(), t.clone(), s.message.clone()))
            .collect();
        let late: Vec<(String, usize)> = tasks
            .iter()
            .map(|(h, ts)| {
                let missing = ts
                    .iter()
                    .filter(|t| current(h, t).is_none_or(|s| s.status != "done"))
                    .count();
                (h.clone(), missing)
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        if late.is_empty() {
            return Ok(());
        }
        if !failed.is_empty() {
            // Let the hosts still running finish their tasks in flight;
            // their agents stopped at the first failure as the runtime does.
            return Err(RemoteFailure { failed, late });
        }
        if start.elapsed() > UP_WAIT {
            return Err(RemoteFailure {
                failed: Vec::new(),
                late,
            });
        }
    }
}

/// What `down --store` did.
pub struct RemoteDown {
    /// Hosts that took the experiment down.
    pub clean: Vec<String>,
    /// Hosts whose agent is away (or did not finish in time): they take it
    /// down when their agent returns, and the allocation is kept until
    /// then (run `down` again to give it back).
    pub dirty: Vec<String>,
    /// Whether the allocation was given back.
    pub released: Option<Result<(), ToolError>>,
}

/// Tells every host to take `name` down and waits for the live agents.
pub fn down(
    name: &Name,
    db: &TableAt,
    store: &Store,
    report: &mut dyn FnMut(&str),
) -> Result<RemoteDown, ToolError> {
    let tool = |e: mx_store::StoreError| ToolError(e.0);
    let hosts = coordinator::withdraw(store, name).map_err(tool)?;
    if hosts.is_empty() {
        return Err(ToolError(format!(
            "experiment `{name}` is not in the store (`mxc status --store URL` lists what is)"
        )));
    }
    let start = Instant::now();
    let (clean, dirty) = loop {
        let agents = coordinator::agents(store).map_err(tool)?;
        let statuses = coordinator::statuses(store, name.as_str()).map_err(tool)?;
        let (clean, busy): (Vec<String>, Vec<String>) = hosts
            .iter()
            .cloned()
            .partition(|h| statuses.get(h).is_none_or(BTreeMap::is_empty));
        let (waiting, away): (Vec<String>, Vec<String>) =
            busy.into_iter().partition(|h| agents.contains_key(h));
        if waiting.is_empty() || start.elapsed() > DOWN_WAIT {
            let mut dirty = away;
            dirty.extend(waiting);
            break (clean, dirty);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    for h in &dirty {
        report(h);
    }
    let released = dirty.is_empty().then(|| {
        let r = crate::release_if_held(db, name);
        if r.is_ok() {
            let _ = coordinator::forget(store, name);
        }
        r
    });
    Ok(RemoteDown {
        clean,
        dirty,
        released,
    })
}
