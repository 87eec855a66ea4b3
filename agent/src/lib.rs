//! Distributed automation, the agent side: one agent per hypervisor or
//! switch, as MergeTB's Mars runs one per host. An agent holds a lease on
//! its host's key (so a second agent for the host is refused), follows its
//! host's desired state in the store ([`desired::Follower`]: read at a
//! revision, watch from the next, read again after compaction or a lost
//! watch), and writes status only while its lease holds.
//!
//! The key layout is [`mx_store::layout`].

pub mod coordinator;
pub mod desired;
pub mod serve;
pub mod wire;

use std::time::{SystemTime, UNIX_EPOCH};

use mx_store::{Lease, Store, StoreError, layout};

/// Who holds a host's agent key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Holder {
    pub pid: u32,
    /// The machine's hostname.
    pub machine: String,
    /// Seconds since the Unix epoch when it registered.
    pub since: u64,
}

impl Holder {
    /// Whether the holder's process runs: known only on its own machine
    /// (`None` elsewhere). A zombie is not running.
    pub fn alive_here(&self) -> Option<bool> {
        let me = Holder::me();
        if self.machine != me.machine {
            return None;
        }
        if self.pid == me.pid {
            return Some(true);
        }
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok();
        // The state follows the command's closing parenthesis.
        let state = stat
            .as_deref()
            .and_then(|s| s.rsplit_once(')'))
            .and_then(|(_, rest)| rest.trim_start().chars().next());
        Some(matches!(state, Some(c) if c != 'Z' && c != 'X'))
    }

    fn me() -> Holder {
        Holder {
            pid: std::process::id(),
            machine: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            since: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }
}

/// Why an agent cannot run.
#[derive(Debug)]
pub enum AgentError {
    /// Another agent holds the host.
    Duplicate {
        host: String,
        /// Who, when the key says (`None`: its value is not ours).
        holder: Option<Holder>,
        /// Seconds until its lease expires if it is dead.
        ttl: i64,
    },
    Store(StoreError),
}

impl std::fmt::Display for AgentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AgentError::Duplicate { host, holder, ttl } => {
                write!(f, "host `{host}` already has an agent")?;
                if let Some(h) = holder {
                    write!(f, " (pid {} on {}, since {})", h.pid, h.machine, h.since)?;
                }
                write!(
                    f,
                    "; stop it first, or if it died, its lease expires within {ttl} s"
                )
            }
            AgentError::Store(e) => write!(f, "{e}"),
        }
    }
}

impl From<StoreError> for AgentError {
    fn from(e: StoreError) -> Self {
        AgentError::Store(e)
    }
}

/// A host's agent, registered: its key exists while its lease does.
pub struct Registration {
    pub host: String,
    pub lease: Lease,
}

/// The lease's TTL: a dead agent's host is free again within this, and a
/// live one renews every third of it.
pub const TTL_SECS: i64 = 5;

impl Registration {
    /// Like [`register`](Self::register), but a holder that may be dead
    /// (on another machine, where its process cannot be checked) is given
    /// until its lease would have expired.
    pub fn register_waiting(store: &Store, host: &str) -> Result<Registration, AgentError> {
        let deadline =
            std::time::Instant::now() + std::time::Duration::from_secs(TTL_SECS as u64 + 2);
        loop {
            match Registration::register(store, host) {
                Err(AgentError::Duplicate { holder, .. })
                    if std::time::Instant::now() < deadline
                        && holder.as_ref().is_none_or(|h| h.alive_here().is_none()) =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(250));
                }
                other => return other,
            }
        }
    }

    /// Takes `host`'s agent key under a new lease, or says who holds it.
    /// A holder on this machine whose process is gone (an agent killed and
    /// started again) is known dead: its lease is revoked and the host
    /// taken at once, instead of waiting for the lease to expire.
    pub fn register(store: &Store, host: &str) -> Result<Registration, AgentError> {
        let lease = store.lease(TTL_SECS)?;
        let me = Holder::me();
        let record = serde_json::to_vec(&me)
            .map_err(|e| StoreError(format!("cannot encode the agent record: {e}")))?;
        let key = layout::agent(host);
        for _ in 0..2 {
            let Some(held) = store.create(&key, &record, &lease)? else {
                return Ok(Registration {
                    host: host.to_string(),
                    lease,
                });
            };
            let holder: Option<Holder> = serde_json::from_slice(&held.value).ok();
            let dead = holder
                .as_ref()
                .is_some_and(|h| h.alive_here() == Some(false));
            if !dead || held.lease == 0 {
                store.revoke(lease);
                return Err(AgentError::Duplicate {
                    host: host.to_string(),
                    holder,
                    ttl: TTL_SECS,
                });
            }
            store.revoke_id(held.lease);
        }
        store.revoke(lease);
        Err(AgentError::Duplicate {
            host: host.to_string(),
            holder: None,
            ttl: TTL_SECS,
        })
    }

    /// Whether the lease still holds: once false, write nothing more and
    /// register again.
    pub fn holds(&self) -> bool {
        self.lease.alive()
    }

    /// Writes `key` only while this registration holds the host.
    pub fn put(&self, store: &Store, key: &str, value: &[u8]) -> Result<bool, StoreError> {
        store.put_as(&layout::agent(&self.host), &self.lease, key, value)
    }

    /// Gives the host up at once (a graceful stop).
    pub fn release(self, store: &Store) {
        store.revoke(self.lease);
    }
}
