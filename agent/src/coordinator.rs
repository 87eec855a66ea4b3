//! The coordinator's side: what `mxc up/down/status --store` write and
//! read. It writes only desired state; agents do the work and report.
//!
//! Publishing a generation: each host's bundle is written in chunks, then
//! each host's want, then `commit/<experiment>` is flipped to the new
//! generation, one write. Agents act only on committed wants, so however
//! many hosts (and however many of etcd's 128-operation transactions that
//! takes), an experiment changes generation at once, and a coordinator
//! that dies part way leaves the previous generation in effect.

use std::collections::{BTreeMap, BTreeSet};

use mx_materializer::Bundle;
use mx_store::{Store, StoreError, layout, new_generation};
use mx_xir::{Name, Scope};

use crate::Holder;
use crate::desired::{Remote, Want};
use crate::wire::{self, TaskStatus};

/// Hosts that have (or had) a want for `experiment`.
pub fn hosts_of(store: &Store, experiment: &str) -> Result<BTreeSet<String>, StoreError> {
    let (_, entries) = store.get_prefix(layout::WANT)?;
    Ok(entries
        .iter()
        .filter_map(|e| {
            let rest = e.key.strip_prefix(layout::WANT)?;
            let (host, exp) = rest.split_once('/')?;
            (exp == experiment).then(|| host.to_string())
        })
        .collect())
}

/// Publishes `bundles` (one experiment's) as a new generation and commits
/// it; hosts the previous generation used and this one does not are told
/// to take it down. Returns the generation.
pub fn publish(store: &Store, bundles: &[Bundle]) -> Result<String, StoreError> {
    let Some(name) = bundles.first().map(|b| b.experiment.to_string()) else {
        return Err(StoreError("no bundles to publish".into()));
    };
    let generation = new_generation();
    let globals: Vec<Remote> = bundles
        .iter()
        .flat_map(|b| &b.fragments)
        .filter(|f| f.scope == Scope::Global)
        .map(|f| Remote {
            host: f.host.to_string(),
            task: f.id.clone(),
        })
        .collect();
    let previous = hosts_of(store, &name)?;
    for b in bundles {
        let host = b.host.as_str();
        let bytes = wire::encode(b);
        let prefix = layout::bundle_prefix(host, &name, &generation);
        let mut chunks = 0;
        for (i, c) in bytes.chunks(wire::CHUNK).enumerate() {
            store.put(&format!("{prefix}{i:06}"), c)?;
            chunks += 1;
        }
        let want = Want {
            generation: generation.clone(),
            up: true,
            chunks,
            before_vms: globals.iter().filter(|r| r.host != host).cloned().collect(),
        };
        store.put(&layout::want(host, &name), to_json(&want))?;
    }
    let now: BTreeSet<&str> = bundles.iter().map(|b| b.host.as_str()).collect();
    for host in previous.iter().filter(|h| !now.contains(h.as_str())) {
        store.put(&layout::want(host, &name), to_json(&down(&generation)))?;
    }
    store.put(&layout::commit(&name), generation.as_bytes())?;
    // Bundles of earlier generations are no longer read.
    for host in now.iter().map(|h| h.to_string()).chain(previous) {
        let (_, old) = store.get_prefix(&format!("{}{host}/{name}/", layout::BUNDLE))?;
        let stale: BTreeSet<String> = old
            .iter()
            .filter_map(|e| e.key.rsplit_once('/').map(|(p, _)| format!("{p}/")))
            .filter(|p| !p.ends_with(&format!("/{generation}/")))
            .collect();
        for p in stale {
            store.delete_prefix(&p)?;
        }
    }
    Ok(generation)
}

fn down(generation: &str) -> Want {
    Want {
        generation: generation.to_string(),
        up: false,
        chunks: 0,
        before_vms: Vec::new(),
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

/// Tells every host of `name` to take it down (a new generation, then the
/// commit). Hosts whose agent is away do it when it returns. The hosts
/// told.
pub fn withdraw(store: &Store, name: &Name) -> Result<BTreeSet<String>, StoreError> {
    let hosts = hosts_of(store, name.as_str())?;
    if hosts.is_empty() {
        return Ok(hosts);
    }
    let generation = new_generation();
    for host in &hosts {
        store.put(
            &layout::want(host, name.as_str()),
            to_json(&down(&generation)),
        )?;
    }
    store.put(&layout::commit(name.as_str()), generation.as_bytes())?;
    Ok(hosts)
}

/// Removes what the store holds of `name` once every host took it down:
/// wants, bundles, the commit.
pub fn forget(store: &Store, name: &Name) -> Result<(), StoreError> {
    for host in hosts_of(store, name.as_str())? {
        store.delete_prefix(&layout::want(&host, name.as_str()))?;
        store.delete_prefix(&format!("{}{host}/{name}/", layout::BUNDLE))?;
    }
    store.delete_prefix(&layout::commit(name.as_str()))?;
    Ok(())
}

/// Every host's task statuses for `name`, by host and task.
pub type Statuses = BTreeMap<String, BTreeMap<String, TaskStatus>>;

pub fn statuses(store: &Store, name: &str) -> Result<Statuses, StoreError> {
    statuses_at(store, name).map(|(_, s)| s)
}

/// [`statuses`] and the store's revision they were read at: a watch on
/// [`layout::STATUS`] from the next revision misses nothing.
pub fn statuses_at(store: &Store, name: &str) -> Result<(i64, Statuses), StoreError> {
    let mut out = Statuses::new();
    let (revision, entries) = store.get_prefix(layout::STATUS)?;
    for e in entries {
        apply_status(&mut out, name, &e.key, Some(&e.value));
    }
    Ok((revision, out))
}

/// Applies one status key's new value (`None`: deleted) to `statuses` of
/// experiment `name`; keys of other experiments are ignored. The host and
/// task whose status is new or changed (`None` for the rest, deletions
/// included).
pub fn apply_status<'k>(
    statuses: &mut Statuses,
    name: &str,
    key: &'k str,
    value: Option<&[u8]>,
) -> Option<(&'k str, &'k str)> {
    let rest = key.strip_prefix(layout::STATUS)?;
    let mut parts = rest.splitn(3, '/');
    let (Some(host), Some(exp), Some(task)) = (parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    if exp != name {
        return None;
    }
    let Some(v) = value else {
        statuses.get_mut(host).and_then(|m| m.remove(task));
        return None;
    };
    let s = serde_json::from_slice::<TaskStatus>(v).ok()?;
    let tasks = statuses.entry(host.to_string()).or_default();
    if tasks.get(task) == Some(&s) {
        return None;
    }
    tasks.insert(task.to_string(), s);
    Some((host, task))
}

/// The agents registered now, by host.
pub fn agents(store: &Store) -> Result<BTreeMap<String, Option<Holder>>, StoreError> {
    let (_, entries) = store.get_prefix(layout::AGENTS)?;
    Ok(entries
        .into_iter()
        .filter_map(|e| {
            let host = layout::leaf(&e.key, layout::AGENTS)?.to_string();
            Some((host, serde_json::from_slice(&e.value).ok()))
        })
        .collect())
}

/// The generation `name` is committed at, if any.
pub fn committed(store: &Store, name: &str) -> Result<Option<String>, StoreError> {
    Ok(store
        .get(&layout::commit(name))?
        .and_then(|e| String::from_utf8(e.value).ok()))
}
