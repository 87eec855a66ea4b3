//! A host's desired state, followed through the store.
//!
//! The coordinator writes `want/<host>/<experiment>` (the generation and
//! whether it should be up) and the bundle's chunks, then flips
//! `commit/<experiment>` to the generation. An agent acts on an experiment
//! only when its want's generation is the committed one, so a publication
//! cut short (a coordinator that died before the commit) is never acted
//! on, and an experiment spread over many hosts switches generation for
//! all of them with one write.

use std::collections::BTreeMap;
use std::time::Duration;

use mx_store::{Change, Step, Store, StoreError, Watch, layout};

/// What the coordinator wants of one host for one experiment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Want {
    /// The generation this want belongs to; acted on once committed.
    pub generation: String,
    /// Up (run the host's bundle) or down (take it away).
    pub up: bool,
    /// Chunks of the bundle under `bundle/<host>/<experiment>/<generation>/`.
    pub chunks: usize,
    /// Tasks of other hosts this host's VMs wait for: their global pieces
    /// (VTEPs, VFs, switch VLANs), so a guest that pings at boot finds its
    /// tunnels, as on one machine.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub before_vms: Vec<Remote>,
}

/// A task on another host.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Remote {
    pub host: String,
    pub task: String,
}

/// A host's desired state: wants by experiment, and the committed
/// generation of every experiment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    pub wants: BTreeMap<String, Want>,
    pub commits: BTreeMap<String, String>,
}

impl Desired {
    /// The wants the agent acts on: those of a committed generation.
    pub fn committed(&self) -> BTreeMap<&str, &Want> {
        self.wants
            .iter()
            .filter(|(e, w)| self.commits.get(*e) == Some(&w.generation))
            .map(|(e, w)| (e.as_str(), w))
            .collect()
    }

    fn apply(&mut self, host: &str, change: &Change) {
        let want_prefix = layout::want_prefix(host);
        let (key, value) = match change {
            Change::Put { key, value } => (key, Some(value)),
            Change::Delete { key } => (key, None),
        };
        if let Some(e) = layout::leaf(key, &want_prefix) {
            match value.and_then(|v| serde_json::from_slice::<Want>(v).ok()) {
                Some(w) => {
                    self.wants.insert(e.to_string(), w);
                }
                None => {
                    self.wants.remove(e);
                }
            }
        } else if let Some(e) = layout::leaf(key, layout::COMMIT) {
            match value.and_then(|v| String::from_utf8(v.clone()).ok()) {
                Some(g) => {
                    self.commits.insert(e.to_string(), g);
                }
                None => {
                    self.commits.remove(e);
                }
            }
        }
    }
}

/// Follows `host`'s desired state: reads it at a revision, then watches
/// from the next one. A lost watch (the store restarted, the connection
/// broke) resumes from the last revision it saw; if the store compacted
/// that history away meanwhile, the state is read whole again. So no
/// change is missed, and no history the store dropped is needed.
pub struct Follower<'s> {
    store: &'s Store,
    host: String,
    desired: Desired,
    /// One per prefix: the desired state's and the commits'.
    feeds: Vec<Feed<'s>>,
    /// How many times the state was read whole (1 at start).
    pub reads: u64,
}

struct Feed<'s> {
    prefix: String,
    /// The last revision applied.
    seen: i64,
    /// `None` while lost: re-created from `seen + 1`.
    watch: Option<Watch<'s>>,
}

impl<'s> Follower<'s> {
    pub fn start(store: &'s Store, host: &str) -> Result<Follower<'s>, StoreError> {
        let mut f = Follower {
            store,
            host: host.to_string(),
            desired: Desired::default(),
            feeds: [layout::want_prefix(host), layout::COMMIT.to_string()]
                .into_iter()
                .map(|prefix| Feed {
                    prefix,
                    seen: 0,
                    watch: None,
                })
                .collect(),
            reads: 0,
        };
        f.read()?;
        Ok(f)
    }

    pub fn desired(&self) -> &Desired {
        &self.desired
    }

    /// Reads every prefix whole; each is watched from after its read.
    fn read(&mut self) -> Result<(), StoreError> {
        let mut desired = Desired::default();
        for feed in &mut self.feeds {
            feed.watch = None;
            let (rev, entries) = self.store.get_prefix(&feed.prefix)?;
            for e in entries {
                desired.apply(
                    &self.host,
                    &Change::Put {
                        key: e.key,
                        value: e.value,
                    },
                );
            }
            feed.seen = rev;
        }
        self.desired = desired;
        self.reads += 1;
        Ok(())
    }

    /// Waits up to about `wait` for the desired state to change; whether
    /// it did. Errors only when the store can be neither watched nor read;
    /// call again, and it resumes.
    pub fn wait(&mut self, wait: Duration) -> Result<bool, StoreError> {
        let before = self.desired.clone();
        let per = wait / self.feeds.len() as u32;
        let mut compacted = false;
        let mut lost = None;
        for feed in &mut self.feeds {
            if feed.watch.is_none() {
                match self.store.watch(&feed.prefix, feed.seen + 1) {
                    Ok(w) => feed.watch = Some(w),
                    Err(e) => {
                        lost = Some(e);
                        continue;
                    }
                }
            }
            let Some(w) = feed.watch.as_mut() else {
                continue;
            };
            match w.next(per) {
                Ok(Step::Changes { revision, changes }) => {
                    for c in &changes {
                        self.desired.apply(&self.host, c);
                    }
                    feed.seen = revision;
                }
                Ok(Step::Idle) => {}
                Ok(Step::Compacted { .. }) => compacted = true,
                Err(e) => {
                    feed.watch = None;
                    lost = Some(e);
                }
            }
        }
        if compacted {
            self.read()?;
        } else if let Some(e) = lost {
            // Not reachable now: do not spin; the next call resumes.
            std::thread::sleep(per.min(Duration::from_millis(500)));
            return Err(e);
        }
        Ok(self.desired != before)
    }
}
