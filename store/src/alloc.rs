//! The allocation table on etcd, for a team sharing a facility.
//!
//! It gives the guarantees of the SQLite table ([`mx_realizer::table`])
//! without a lock: optimistic concurrency on one key.
//!
//! ```text
//! /mx/alloc/head                     bumped by every commit and relinquish
//! /mx/alloc/index/<name>             {facility, tag, generation, chunks}: committed
//! /mx/alloc/doc/<name>/<generation>/<i>     the realization's JSON, in chunks
//! ```
//!
//! A commit reads everything under `/mx/alloc/` at one revision, computes
//! the usage from the committed realizations, realizes against it, writes
//! the document's chunks under a fresh generation (invisible: no index
//! points at them), and then runs one transaction: *if `head` has not
//! changed since the read and `index/<name>` does not exist, create the
//! index and bump `head`*. A realization racing from another machine
//! either committed before (then `head` changed, and this one realizes
//! again on the new usage) or will read this one's. So no two realizations
//! are ever computed on the same usage and both recorded: hosts are never
//! over-committed, and VFs, ports, VNIs, VLANs, GPUs, pinned cores and tags
//! are never held twice. The transaction has two comparisons and two
//! writes whatever the experiment's size, so etcd's per-transaction
//! operation limit (128 by default) and request size (1.5 MiB; documents
//! go in 512 KiB chunks) never split a realization.
//!
//! A crash between writing the chunks and the transaction leaves chunks no
//! index points at: they are never read, and are removed when the name is
//! next committed or relinquished, or by any commit once they are an hour
//! old.

use std::collections::BTreeMap;

use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use mx_realizer::Usage;
use mx_realizer::table::{Allocations, Attempt, Row, TableError, rows_of};
use mx_xir::{Facility, Realization};

use crate::{Entry, Store, StoreError, StoreUrl, new_generation};

const ROOT: &str = "/mx/alloc/";
const HEAD: &str = "/mx/alloc/head";
const CHUNK: usize = 512 << 10;
/// Commits retried on a changed `head` before giving up: each retry means
/// another realization was recorded meanwhile.
const ATTEMPTS: usize = 50;
/// Chunks without an index older than this are a crashed writer's.
const ORPHAN_AGE_SECS: u64 = 3600;

/// What `index/<name>` holds.
#[derive(serde::Serialize, serde::Deserialize)]
struct Index {
    facility: String,
    tag: u32,
    generation: String,
    chunks: usize,
}

/// The allocation table in an etcd store.
pub struct EtcdTable {
    store: Store,
}

fn store_err(e: StoreError) -> TableError {
    TableError::Store(e.0)
}

fn index_key(name: &str) -> String {
    format!("{ROOT}index/{name}")
}

fn doc_prefix(name: &str) -> String {
    format!("{ROOT}doc/{name}/")
}

fn generation_secs(generation: &str) -> Option<u64> {
    generation.split('-').next()?.parse().ok()
}

/// Everything under `/mx/alloc/` at one revision.
struct Snapshot {
    /// `head`'s modification revision; 0 before the first commit.
    head: i64,
    /// Committed realizations by name, with their index's revision.
    committed: BTreeMap<String, (Index, i64)>,
    /// Chunks by (name, generation), in order.
    chunks: BTreeMap<(String, String), Vec<Entry>>,
}

impl Snapshot {
    fn read(store: &Store) -> Result<Snapshot, TableError> {
        let (_, entries) = store.get_prefix(ROOT).map_err(store_err)?;
        let mut snap = Snapshot {
            head: 0,
            committed: BTreeMap::new(),
            chunks: BTreeMap::new(),
        };
        for e in entries {
            let rest = &e.key[ROOT.len()..];
            if e.key == HEAD {
                snap.head = e.mod_revision;
            } else if let Some(name) = rest.strip_prefix("index/") {
                let index: Index = serde_json::from_slice(&e.value).map_err(|err| {
                    TableError::Store(format!("{} is not an mx allocation index: {err}", e.key))
                })?;
                snap.committed
                    .insert(name.to_string(), (index, e.mod_revision));
            } else if let Some(path) = rest.strip_prefix("doc/") {
                let mut parts = path.splitn(3, '/');
                if let (Some(name), Some(generation), Some(_)) =
                    (parts.next(), parts.next(), parts.next())
                {
                    snap.chunks
                        .entry((name.to_string(), generation.to_string()))
                        .or_default()
                        .push(e);
                }
            }
        }
        Ok(snap)
    }

    fn realization(&self, name: &str) -> Result<Realization, TableError> {
        let (index, _) = self
            .committed
            .get(name)
            .ok_or_else(|| TableError::Missing(name.to_string()))?;
        let chunks = self
            .chunks
            .get(&(name.to_string(), index.generation.clone()))
            .filter(|c| c.len() == index.chunks)
            .ok_or_else(|| {
                TableError::Store(format!(
                    "realization `{name}` is committed but its document is incomplete in the store"
                ))
            })?;
        let mut doc = Vec::new();
        for c in chunks {
            doc.extend_from_slice(&c.value);
        }
        serde_json::from_slice(&doc).map_err(|e| {
            TableError::Store(format!("stored realization `{name}` does not parse: {e}"))
        })
    }

    fn usage(&self, fac: &Facility) -> Result<Usage, TableError> {
        let mut u = Usage::default();
        for (name, (index, _)) in &self.committed {
            if index.facility == fac.name.as_str() {
                u.add(fac, &self.realization(name)?);
            } else {
                // Tags name devices on every machine: held across facilities.
                u.tags.insert(index.tag);
            }
        }
        Ok(u)
    }

    /// Chunk prefixes no index points at, written over an hour ago.
    fn stale(&self, now: u64) -> Vec<String> {
        self.chunks
            .keys()
            .filter(|(name, generation)| {
                self.committed
                    .get(name)
                    .is_none_or(|(i, _)| i.generation != *generation)
                    && generation_secs(generation).is_some_and(|t| t + ORPHAN_AGE_SECS < now)
            })
            .map(|(name, generation)| format!("{}{generation}/", doc_prefix(name)))
            .collect()
    }
}

impl EtcdTable {
    pub fn open(url: &StoreUrl) -> Result<EtcdTable, TableError> {
        Ok(EtcdTable {
            store: Store::connect(url).map_err(store_err)?,
        })
    }

    /// Writes `real`'s document under a new generation; no index points at
    /// it yet.
    fn publish(&self, real: &Realization) -> Result<(String, usize), TableError> {
        let generation = new_generation();
        let doc = serde_json::to_vec(real)
            .map_err(|e| TableError::Store(format!("cannot encode the realization: {e}")))?;
        let prefix = format!("{}{generation}/", doc_prefix(real.name.as_str()));
        let mut n = 0;
        for (i, chunk) in doc.chunks(CHUNK).enumerate() {
            self.store
                .put(&format!("{prefix}{i:06}"), chunk)
                .map_err(store_err)?;
            n += 1;
        }
        Ok((generation, n))
    }

    /// Removes a generation's chunks: best effort, as orphans are
    /// collected later anyway.
    fn unpublish(&self, name: &str, generation: &str) {
        let _ = self
            .store
            .delete_prefix(&format!("{}{generation}/", doc_prefix(name)));
    }

    /// Publishes a document and stops before the commit, as a writer that
    /// crashes there would. Only for tests of that crash.
    #[doc(hidden)]
    pub fn publish_only(&self, real: &Realization) -> Result<String, TableError> {
        self.publish(real).map(|(generation, _)| generation)
    }
}

impl Allocations for EtcdTable {
    fn usage(&self, fac: &Facility) -> Result<Usage, TableError> {
        Snapshot::read(&self.store)?.usage(fac)
    }

    fn commit(
        &mut self,
        name: &str,
        fac: &Facility,
        f: &mut dyn FnMut(&Usage) -> Attempt,
    ) -> Result<Attempt, TableError> {
        for _ in 0..ATTEMPTS {
            let snap = Snapshot::read(&self.store)?;
            if snap.committed.contains_key(name) {
                return Err(TableError::Exists(name.to_string()));
            }
            let real = match f(&snap.usage(fac)?) {
                Ok(r) => r,
                Err(e) => return Ok(Err(e)),
            };
            if real.name.as_str() != name {
                return Err(TableError::Exists(format!(
                    "{} (the realization was renamed)",
                    real.name
                )));
            }
            let (generation, chunks) = self.publish(&real)?;
            let index = serde_json::to_vec(&Index {
                facility: fac.name.to_string(),
                tag: real.tag,
                generation: generation.clone(),
                chunks,
            })
            .map_err(|e| TableError::Store(e.to_string()))?;
            let txn = Txn::new()
                .when([
                    Compare::mod_revision(HEAD, CompareOp::Equal, snap.head),
                    Compare::create_revision(index_key(name), CompareOp::Equal, 0),
                ])
                .and_then([
                    TxnOp::put(index_key(name), index, None),
                    TxnOp::put(HEAD, generation.as_bytes(), None),
                ]);
            let committed = self.store.txn(txn).map_err(store_err)?.succeeded();
            if !committed {
                // Another realization was recorded meanwhile: realize again
                // on the usage that includes it.
                self.unpublish(name, &generation);
                continue;
            }
            // Earlier generations of this name, and old orphans of any.
            let now = generation_secs(&generation).unwrap_or(0);
            for (n, g) in snap.chunks.keys() {
                if n == name && *g != generation {
                    self.unpublish(n, g);
                }
            }
            for prefix in snap.stale(now) {
                let _ = self.store.delete_prefix(&prefix);
            }
            return Ok(Ok(real));
        }
        Err(TableError::Store(format!(
            "{ATTEMPTS} other realizations were recorded while `{name}` was being realized; try again"
        )))
    }

    fn relinquish(&mut self, name: &str) -> Result<(), TableError> {
        let Some(entry) = self.store.get(&index_key(name)).map_err(store_err)? else {
            return Err(TableError::Missing(name.to_string()));
        };
        let txn = Txn::new()
            .when([Compare::mod_revision(
                index_key(name),
                CompareOp::Equal,
                entry.mod_revision,
            )])
            .and_then([
                TxnOp::delete(index_key(name), None),
                // A commit that read usage before this is refused and
                // realizes again (and so cannot race the chunks' removal).
                TxnOp::put(HEAD, new_generation().as_bytes(), None),
            ]);
        if !self.store.txn(txn).map_err(store_err)?.succeeded() {
            // Relinquished (or recommitted) by someone else meanwhile.
            return Err(TableError::Missing(name.to_string()));
        }
        self.store
            .delete_prefix(&doc_prefix(name))
            .map_err(store_err)?;
        Ok(())
    }

    fn rows(&self) -> Result<Vec<Row>, TableError> {
        let snap = Snapshot::read(&self.store)?;
        let mut rows = Vec::new();
        for name in snap.committed.keys() {
            rows.extend(rows_of(&snap.realization(name)?));
        }
        Ok(rows)
    }

    fn realization(&self, name: &str) -> Result<Realization, TableError> {
        Snapshot::read(&self.store)?.realization(name)
    }
}
