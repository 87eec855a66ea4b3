//! mx's shared state on etcd.
//!
//! A testbed run by a team keeps what must be shared (today the allocation
//! table, [`alloc::EtcdTable`]) in etcd, the engine MergeTB's own stack
//! uses. The rest of mx is synchronous and threaded; etcd's Rust client is
//! async, so [`Store`] owns a small single-threaded tokio runtime and every
//! call blocks on it. Nothing else in the workspace sees tokio.
//!
//! Stores are named by URL: `etcd://HOST:PORT[,HOST:PORT...]` (plain gRPC,
//! for a store on a private address) or `etcds://...` (TLS; see
//! [`StoreUrl`]).

pub mod alloc;
pub mod testkit;

use std::time::Duration;

use etcd_client::{Client, ConnectOptions, DeleteOptions, GetOptions, KeyValue, Txn, TxnResponse};

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
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
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
    /// Connects and checks the store answers.
    pub fn connect(url: &StoreUrl) -> Result<Store, StoreError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError(format!("cannot start the store client: {e}")))?;
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(CALL_TIMEOUT);
        if url.tls {
            options = options.with_tls(tls_options()?);
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
}

/// The client certificate, key and CA of an `etcds://` store.
fn tls_options() -> Result<etcd_client::TlsOptions, StoreError> {
    let read = |var: &str| -> Result<Vec<u8>, StoreError> {
        let path = std::env::var_os(var).ok_or_else(|| {
            StoreError(format!(
                "an etcds:// store needs {var} (MX_STORE_CERT, MX_STORE_KEY and MX_STORE_CA name the client certificate, its key and the CA)"
            ))
        })?;
        std::fs::read(&path).map_err(|e| {
            StoreError(format!(
                "cannot read {var} ({}): {e}",
                std::path::Path::new(&path).display()
            ))
        })
    };
    let cert = read("MX_STORE_CERT")?;
    let key = read("MX_STORE_KEY")?;
    let ca = read("MX_STORE_CA")?;
    Ok(etcd_client::TlsOptions::new()
        .ca_certificate(etcd_client::Certificate::from_pem(ca))
        .identity(etcd_client::Identity::from_pem(cert, key)))
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
