//! mx's shared state on etcd.
//!
//! A testbed run by a team keeps what must be shared (today the allocation
//! table, [`alloc::EtcdTable`]) in etcd, the engine MergeTB's own stack
//! uses. The rest of mx is synchronous and threaded; etcd's Rust client is
//! async, so [`Store`] owns a small tokio runtime (one worker thread, which
//! also keeps leases alive while the caller is busy) and every call blocks
//! on it. Nothing else in the workspace sees tokio.
//!
//! Stores are named by URL: `etcd://HOST:PORT[,HOST:PORT...]` (plain gRPC,
//! for a store on a private address) or `etcds://...` (TLS; see
//! [`StoreUrl`]).

pub mod access;
pub mod alloc;
pub mod layout;
pub mod testkit;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, KeyValue,
    PutOptions, Txn, TxnOp, TxnResponse, WatchOptions, WatchStream,
};

/// A new generation id: when (seconds, nanoseconds) and by which process,
/// unique across machines in practice. The allocation table and the
/// coordinator both use it; the table reads the seconds back to age
/// orphaned chunks.
pub fn new_generation() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{}-{:09}-{}",
        now.as_secs(),
        now.subsec_nanos(),
        std::process::id()
    )
}

/// How long a call may take before the store counts as unreachable.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the store could not be used: unreachable, refused the call, or
/// held something that is not ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StoreError {}

/// A store's address, parsed from `etcd://` or `etcds://` URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreUrl {
    /// `host:port` of each member.
    pub members: Vec<String>,
    /// TLS (`etcds://`): the client certificate, its key and the CA that
    /// signed the server's, read from `MX_STORE_CERT`, `MX_STORE_KEY` and
    /// `MX_STORE_CA`.
    pub tls: bool,
}

impl StoreUrl {
    /// Whether `s` names a store rather than a file.
    pub fn is_store(s: &str) -> bool {
        s.starts_with("etcd://") || s.starts_with("etcds://")
    }

    pub fn parse(s: &str) -> Result<StoreUrl, StoreError> {
        let (tls, rest) = if let Some(r) = s.strip_prefix("etcd://") {
            (false, r)
        } else if let Some(r) = s.strip_prefix("etcds://") {
            (true, r)
        } else {
            return Err(StoreError(format!(
                "`{s}` is not a store URL; write etcd://HOST:PORT (or etcds:// for TLS)"
            )));
        };
        let rest = rest.trim_end_matches('/');
        let members: Vec<String> = rest.split(',').map(str::to_string).collect();
        for m in &members {
            let ok = m
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
            if !ok {
                return Err(StoreError(format!(
                    "`{m}` in `{s}` is not HOST:PORT; write etcd://127.0.0.1:2379"
                )));
            }
        }
        Ok(StoreUrl { members, tls })
    }

    fn endpoints(&self) -> Vec<String> {
        let scheme = if self.tls { "https" } else { "http" };
        self.members
            .iter()
            .map(|m| format!("{scheme}://{m}"))
            .collect()
    }
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "etcds" } else { "etcd" };
        write!(f, "{scheme}://{}", self.members.join(","))
    }
}

/// A key, its value and its revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    /// The lease it is bound to (0: none).
    pub lease: i64,
}

impl Entry {
    fn of(kv: &KeyValue) -> Result<Entry, StoreError> {
        Ok(Entry {
            key: kv
                .key_str()
                .map_err(|e| StoreError(format!("a key is not UTF-8: {e}")))?
                .to_string(),
            value: kv.value().to_vec(),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
            lease: kv.lease(),
        })
    }
}

/// A connection to an etcd cluster, with blocking calls.
pub struct Store {
    rt: tokio::runtime::Runtime,
    client: Client,
    url: StoreUrl,
}

impl Store {
    /// Connects and checks the store answers; an `etcds://` store with the
    /// client certificate named by `MX_STORE_CERT`, `MX_STORE_KEY` and
    /// `MX_STORE_CA`.
    pub fn connect(url: &StoreUrl) -> Result<Store, StoreError> {
        let tls = if url.tls {
            Some(access::TlsFiles::from_env()?)
        } else {
            None
        };
        Store::connect_with(url, tls.as_ref())
    }

    /// Connects with these TLS files (an `etcds://` store needs them).
    pub fn connect_with(
        url: &StoreUrl,
        tls: Option<&access::TlsFiles>,
    ) -> Result<Store, StoreError> {
        // One worker: leases are kept alive there while the caller runs
        // tasks for minutes without calling the store.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("mx-store")
            .enable_all()
            .build()
            .map_err(|e| StoreError(format!("cannot start the store client: {e}")))?;
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(CALL_TIMEOUT);
        match (url.tls, tls) {
            (true, Some(files)) => options = options.with_tls(files.options()?),
            (true, None) => {
                return Err(StoreError(format!(
                    "{url} uses TLS: give a client certificate (MX_STORE_CERT, MX_STORE_KEY, MX_STORE_CA)"
                )));
            }
            (false, _) => {}
        }
        let unreachable = |e: etcd_client::Error| {
            let text = format!("{e:?}");
            let why = if text.contains("Connection refused") {
                "connection refused".to_string()
            } else if text.contains("timed out") || text.contains("Elapsed") {
                "timed out".to_string()
            } else {
                e.to_string()
            };
            StoreError(format!(
                "cannot reach the store at {url} ({why}); is etcd running and listening there?"
            ))
        };
        let client = rt
            .block_on(async {
                let mut c = Client::connect(url.endpoints(), Some(options)).await?;
                c.status().await?;
                Ok(c)
            })
            .map_err(unreachable)?;
        Ok(Store {
            rt,
            client,
            url: url.clone(),
        })
    }

    pub fn url(&self) -> &StoreUrl {
        &self.url
    }

    fn failed(&self, what: &str) -> impl Fn(etcd_client::Error) -> StoreError + '_ {
        let what = what.to_string();
        move |e| StoreError(format!("store {}: {what}: {e}", self.url))
    }

    /// One key, if present.
    pub fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        let mut c = self.client.clone();
        let r = self
            .rt
            .block_on(c.get(key, None))
            .map_err(self.failed(&format!("reading {key}")))?;
        r.kvs().first().map(Entry::of).transpose()
    }

    /// Every key under `prefix` at one revision, which is returned too
    /// (a watch from the next revision misses nothing).
    pub fn get_prefix(&self, prefix: &str) -> Result<(i64, Vec<Entry>), StoreError> {
        let mut c = self.client.clone();
        let r = self
            .rt
            .block_on(c.get(prefix, Some(GetOptions::new().with_prefix())))
            .map_err(self.failed(&format!("reading {prefix}")))?;
        let rev = r.header().map_or(0, |h| h.revision());
        let entries = r.kvs().iter().map(Entry::of).collect::<Result<_, _>>()?;
        Ok((rev, entries))
    }

    pub fn put(&self, key: &str, value: impl Into<Vec<u8>>) -> Result<(), StoreError> {
        let mut c = self.client.clone();
        self.rt
            .block_on(c.put(key, value, None))
            .map_err(self.failed(&format!("writing {key}")))?;
        Ok(())
    }

    /// Deletes every key under `prefix`; how many there were.
    pub fn delete_prefix(&self, prefix: &str) -> Result<i64, StoreError> {
        let mut c = self.client.clone();
        let r = self
            .rt
            .block_on(c.delete(prefix, Some(DeleteOptions::new().with_prefix())))
            .map_err(self.failed(&format!("deleting {prefix}")))?;
        Ok(r.deleted())
    }

    /// Runs a transaction; whether its comparisons held.
    pub fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
        let mut c = self.client.clone();
        self.rt
            .block_on(c.txn(txn))
            .map_err(self.failed("transaction"))
    }

    /// Creates `key` bound to `lease` unless it exists: `Ok(None)` when
    /// created, else what is there (whoever holds it).
    pub fn create(
        &self,
        key: &str,
        value: &[u8],
        lease: &Lease,
    ) -> Result<Option<Entry>, StoreError> {
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key,
                value,
                Some(PutOptions::new().with_lease(lease.id)),
            )]);
        if self.txn(txn)?.succeeded() {
            return Ok(None);
        }
        // Gone again meanwhile (its lease expired): reported as held by
        // nobody in particular; the caller tries again.
        Ok(Some(self.get(key)?.unwrap_or(Entry {
            key: key.to_string(),
            value: Vec::new(),
            create_revision: 0,
            mod_revision: 0,
            lease: 0,
        })))
    }

    /// Writes `key` only while `lease` still holds `owner` (the holder's
    /// identity key): a holder whose lease expired, or who was replaced,
    /// writes nothing. Whether it was written.
    pub fn put_as(
        &self,
        owner: &str,
        lease: &Lease,
        key: &str,
        value: &[u8],
    ) -> Result<bool, StoreError> {
        let txn = Txn::new()
            .when([Compare::lease(owner, CompareOp::Equal, lease.id)])
            .and_then([TxnOp::put(key, value, None)]);
        Ok(self.txn(txn)?.succeeded())
    }

    /// Writes several keys in one transaction, only while `lease` holds
    /// `owner` (at most 127: etcd's limit is 128 operations). A key given
    /// twice keeps its last value.
    pub fn put_all_as(
        &self,
        owner: &str,
        lease: &Lease,
        writes: &[(String, Vec<u8>)],
    ) -> Result<bool, StoreError> {
        let mut last: std::collections::BTreeMap<&str, &[u8]> = Default::default();
        for (k, v) in writes {
            last.insert(k, v);
        }
        if last.len() > 127 {
            return Err(StoreError(format!(
                "{} writes in one transaction; etcd takes 128 operations",
                last.len()
            )));
        }
        let ops: Vec<TxnOp> = last
            .into_iter()
            .map(|(k, v)| TxnOp::put(k, v, None))
            .collect();
        let txn = Txn::new()
            .when([Compare::lease(owner, CompareOp::Equal, lease.id)])
            .and_then(ops);
        Ok(self.txn(txn)?.succeeded())
    }

    /// Deletes every key under `prefix` only while `lease` holds `owner`.
    pub fn delete_prefix_as(
        &self,
        owner: &str,
        lease: &Lease,
        prefix: &str,
    ) -> Result<bool, StoreError> {
        let txn = Txn::new()
            .when([Compare::lease(owner, CompareOp::Equal, lease.id)])
            .and_then([TxnOp::delete(
                prefix,
                Some(DeleteOptions::new().with_prefix()),
            )]);
        Ok(self.txn(txn)?.succeeded())
    }

    /// A lease of `ttl` seconds, renewed in the background every third of
    /// it until dropped or revoked.
    pub fn lease(&self, ttl: i64) -> Result<Lease, StoreError> {
        let mut c = self.client.clone();
        let grant = self
            .rt
            .block_on(c.lease_grant(ttl, None))
            .map_err(self.failed("granting a lease"))?;
        let id = grant.id();
        let (mut keeper, mut stream) = self
            .rt
            .block_on(c.lease_keep_alive(id))
            .map_err(self.failed("keeping a lease alive"))?;
        let alive = Arc::new(AtomicBool::new(true));
        let flag = alive.clone();
        let ttl_d = Duration::from_secs(ttl.max(1) as u64);
        let every = ttl_d / 3;
        let mut client = self.client.clone();
        let task = self.rt.spawn(async move {
            let mut last = tokio::time::Instant::now();
            loop {
                let renewed = async {
                    keeper.keep_alive().await?;
                    stream.message().await
                };
                match tokio::time::timeout(every, renewed).await {
                    Ok(Ok(Some(r))) if r.ttl() > 0 => last = tokio::time::Instant::now(),
                    // Expired: the store says so.
                    Ok(Ok(Some(_))) => break,
                    // The stream broke or the store did not answer (it may
                    // be restarting): open a new stream and go on trying
                    // while the lease may still be alive.
                    _ => {
                        if let Ok(Ok((k, s))) =
                            tokio::time::timeout(every, client.lease_keep_alive(id)).await
                        {
                            keeper = k;
                            stream = s;
                            continue;
                        }
                    }
                }
                if last.elapsed() >= ttl_d {
                    break;
                }
                tokio::time::sleep(every.min(ttl_d.saturating_sub(last.elapsed()))).await;
            }
            // Its holder must stop writing and register again.
            flag.store(false, Ordering::SeqCst);
        });
        Ok(Lease {
            id,
            ttl,
            alive,
            task: Some(task),
        })
    }

    /// Revokes a lease now: what it holds goes at once, so a successor
    /// need not wait for it to expire.
    pub fn revoke(&self, mut lease: Lease) {
        if let Some(t) = lease.task.take() {
            t.abort();
        }
        self.revoke_id(lease.id);
    }

    /// Revokes a lease by id: a dead holder's, known dead.
    pub fn revoke_id(&self, id: i64) {
        let mut c = self.client.clone();
        let _ = self.rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(2), c.lease_revoke(id)).await
        });
    }

    /// Watches every key under `prefix` from revision `from` on
    /// (inclusive): a reader that read the prefix at revision R watches
    /// from R + 1 and misses nothing.
    pub fn watch(&self, prefix: &str, from: i64) -> Result<Watch<'_>, StoreError> {
        let mut c = self.client.clone();
        let stream = self
            .rt
            .block_on(
                c.watch(
                    prefix,
                    Some(
                        WatchOptions::new()
                            .with_prefix()
                            .with_start_revision(from)
                            .with_progress_notify(),
                    ),
                ),
            )
            .map_err(self.failed(&format!("watching {prefix}")))?;
        Ok(Watch {
            store: self,
            stream,
        })
    }

    /// The store's current revision.
    pub fn revision(&self) -> Result<i64, StoreError> {
        let mut c = self.client.clone();
        let r = self
            .rt
            .block_on(c.get("/", None))
            .map_err(self.failed("reading the revision"))?;
        Ok(r.header().map_or(0, |h| h.revision()))
    }

    /// Compacts the store's history up to `revision`: a watch from before
    /// it is refused and must read again (tests exercise that path).
    pub fn compact(&self, revision: i64) -> Result<(), StoreError> {
        let mut c = self.client.clone();
        self.rt
            .block_on(c.compact(revision, None))
            .map_err(self.failed("compacting"))?;
        Ok(())
    }
}

/// A lease held by this process and renewed in the background.
pub struct Lease {
    pub id: i64,
    pub ttl: i64,
    alive: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Lease {
    /// False once a renewal failed: the lease may have expired, and what
    /// it held may belong to someone else.
    pub fn alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// One change seen by a [`Watch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Put { key: String, value: Vec<u8> },
    Delete { key: String },
}

/// What a [`Watch`] saw next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Changes, up to and including `revision`.
    Changes { revision: i64, changes: Vec<Change> },
    /// Nothing changed within the wait (or only a progress note came).
    Idle,
    /// The history the watch started from was compacted away: read the
    /// prefix again and watch from after that read.
    Compacted { revision: i64 },
}

/// A watch on a prefix.
pub struct Watch<'s> {
    store: &'s Store,
    stream: WatchStream,
}

impl Watch<'_> {
    /// Waits up to `wait` for the next changes. An error means the watch
    /// is lost (the store went away): read again and watch anew.
    pub fn next(&mut self, wait: Duration) -> Result<Step, StoreError> {
        let store = self.store;
        let deadline = tokio::time::Instant::now() + wait;
        // The first message only says the watch was created; progress
        // notes carry no events: wait on for changes.
        let r = loop {
            let stream = &mut self.stream;
            let msg = store
                .rt
                .block_on(async { tokio::time::timeout_at(deadline, stream.message()).await });
            let msg = match msg {
                Err(_) => return Ok(Step::Idle),
                Ok(m) => m.map_err(store.failed("watching"))?,
            };
            let Some(r) = msg else {
                return Err(StoreError(format!("store {}: the watch ended", store.url)));
            };
            if r.events().is_empty() && r.compact_revision() == 0 && !r.canceled() {
                continue;
            }
            break r;
        };
        if r.compact_revision() > 0 {
            return Ok(Step::Compacted {
                revision: r.compact_revision(),
            });
        }
        if r.canceled() {
            return Err(StoreError(format!(
                "store {}: the watch was cancelled: {}",
                store.url,
                r.cancel_reason()
            )));
        }
        let revision = r.header().map_or(0, |h| h.revision());
        let mut changes = Vec::new();
        for e in r.events() {
            let Some(kv) = e.kv() else { continue };
            let key = kv
                .key_str()
                .map_err(|e| StoreError(format!("a key is not UTF-8: {e}")))?
                .to_string();
            changes.push(match e.event_type() {
                EventType::Put => Change::Put {
                    key,
                    value: kv.value().to_vec(),
                },
                EventType::Delete => Change::Delete { key },
            });
        }
        if changes.is_empty() {
            return Ok(Step::Idle);
        }
        Ok(Step::Changes { revision, changes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_members_and_say_what_is_wrong() {
        let u = StoreUrl::parse("etcd://127.0.0.1:2379,10.0.0.2:2379/").unwrap();
        assert_eq!(u.members, ["127.0.0.1:2379", "10.0.0.2:2379"]);
        assert!(!u.tls);
        assert_eq!(u.to_string(), "etcd://127.0.0.1:2379,10.0.0.2:2379");
        assert!(StoreUrl::parse("etcds://h:1").unwrap().tls);
        for bad in [
            "etcd://",
            "etcd://host",
            "etcd://:1",
            "etcd://h:0",
            "http://h:1",
        ] {
            let e = StoreUrl::parse(bad).unwrap_err();
            assert!(e.0.contains("etcd://"), "{bad}: {e}");
        }
        assert!(StoreUrl::is_store("etcd://x:1") && !StoreUrl::is_store("/tmp/alloc.db"));
    }
}
