//! Distributed automation, the agent side: one agent per hypervisor or
//! switch, as MergeTB's Mars runs one per host. An agent holds a lease on
//! its host's key (so a second agent for the host is refused), follows its
//! host's desired state in the store ([`desired::Follower`]: read at a
//! revision, watch from the next, read again after compaction or a lost
//! watch), and writes status only while its lease holds.
//!
//! The key layout is [`mx_store::layout`].

pub mod desired;

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
    /// Takes `host`'s agent key under a new lease, or says who holds it.
    pub fn register(store: &Store, host: &str) -> Result<Registration, AgentError> {
        let lease = store.lease(TTL_SECS)?;
        let me = serde_json::to_vec(&Holder::me())
            .map_err(|e| StoreError(format!("cannot encode the agent record: {e}")))?;
        match store.create(&layout::agent(host), &me, &lease)? {
            None => Ok(Registration {
                host: host.to_string(),
                lease,
            }),
            Some(held) => {
                store.revoke(lease);
                Err(AgentError::Duplicate {
                    host: host.to_string(),
                    holder: serde_json::from_slice(&held.value).ok(),
                    ttl: TTL_SECS,
                })
            }
        }
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
