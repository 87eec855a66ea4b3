//! The allocation table: what every realization holds, in SQLite.
//!
//! A realization is committed atomically: the write lock is taken first
//! (`BEGIN IMMEDIATE`), current usage is read under it, the realization is
//! computed and checked, and its rows are written before `COMMIT`. A second
//! `mxc realize` racing for the same hosts waits for the lock and then sees
//! the first one's allocations, so hosts are never over-committed; unique
//! indexes on VFs, ports, VNIs and VLAN tags are a second line of defence.
//!
//! The file identifies itself (`PRAGMA application_id`); a file that is not
//! SQLite, or is another program's database, is reported and never touched.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mx_xir::{Attachment, Facility, Mode, Realization};
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior, params};

use crate::usage::{Usage, leaf_of};

/// `mxal` in ASCII: marks the file as an mx allocation table.
const APPLICATION_ID: i32 = 0x6d78_616c;
/// Bumped when the tables change; older tables are migrated on open.
const SCHEMA_VERSION: i32 = 5;

/// GPUs held by VMs (version 3): `slice` is -1 for a whole GPU.
const GPUS_TABLE: &str = "CREATE TABLE IF NOT EXISTS gpus (realization TEXT NOT NULL, facility TEXT NOT NULL,
    host TEXT NOT NULL, gpu INTEGER NOT NULL, slice INTEGER NOT NULL, UNIQUE(facility, host, gpu, slice));";

/// Host cores held by pinned VMs (version 4).
const PINS_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS pins (realization TEXT NOT NULL, facility TEXT NOT NULL,
    host TEXT NOT NULL, core INTEGER NOT NULL, UNIQUE(facility, host, core));";

/// Experiment tags (version 5): unique across the table, since a tag names
/// an experiment's devices on every machine it runs on.
const TAGS_TABLE: &str = "CREATE TABLE IF NOT EXISTS tags (realization TEXT NOT NULL UNIQUE,
    tag INTEGER NOT NULL UNIQUE);";

/// Why the table could not be used.
#[derive(Debug)]
pub enum TableError {
    /// The file is not an mx allocation table; it was not modified.
    Foreign { path: PathBuf, why: String },
    /// A realization of that name already holds allocations.
    Exists(String),
    /// No realization of that name.
    Missing(String),
    /// SQLite failed (I/O, locking, constraint).
    Sqlite(rusqlite::Error),
    /// A shared table's store failed or could not be reached; nothing was
    /// recorded.
    Store(String),
}

impl std::fmt::Display for TableError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TableError::Foreign { path, why } => write!(
                f,
                "{} is not an mx allocation table ({why}); it was left untouched",
                path.display()
            ),
            TableError::Exists(n) => write!(
                f,
                "a realization named `{n}` already holds allocations; relinquish it first (`mxc relinquish {n}`) or choose another --name"
            ),
            TableError::Missing(n) => {
                write!(f, "no realization named `{n}` in the allocation table")
            }
            TableError::Sqlite(e) => write!(f, "allocation table: {e}"),
            TableError::Store(e) => write!(f, "allocation table: {e}"),
        }
    }
}

impl From<rusqlite::Error> for TableError {
    fn from(e: rusqlite::Error) -> Self {
        TableError::Sqlite(e)
    }
}

/// The default table path: `$MX_DB`, else `$XDG_DATA_HOME/mx/alloc.db`, else
/// `~/.local/share/mx/alloc.db`.
pub fn default_path() -> PathBuf {
    if let Some(p) = std::env::var_os("MX_DB") {
        return PathBuf::from(p);
    }
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("mx").join("alloc.db")
}

/// What a realization attempt returns: the realization, or why none fits.
pub type Attempt = Result<Realization, Vec<mx_diag::Diagnostic>>;

/// An allocation table: SQLite on one machine ([`Table`], the default), or
/// shared by a team on etcd (`mx_store::EtcdTable`). Both give the same
/// guarantees: a realization is recorded whole or not at all, VFs, ports,
/// VNIs, VLANs, GPUs, pinned cores and tags are never held twice, and
/// racing realizations from different machines never over-commit a host.
pub trait Allocations {
    /// The usage of `fac` as recorded.
    fn usage(&self, fac: &Facility) -> Result<Usage, TableError>;
    /// Realizes against the current usage and records the result, or
    /// records nothing. `f` may be called again if another realization
    /// was recorded meanwhile (a shared table retries on the new usage).
    fn commit(
        &mut self,
        name: &str,
        fac: &Facility,
        f: &mut dyn FnMut(&Usage) -> Attempt,
    ) -> Result<Attempt, TableError>;
    /// Frees everything `name` holds.
    fn relinquish(&mut self, name: &str) -> Result<(), TableError>;
    /// Every node allocation, ordered by realization, host, node.
    fn rows(&self) -> Result<Vec<Row>, TableError>;
    /// The recorded realization `name`.
    fn realization(&self, name: &str) -> Result<Realization, TableError>;
}

impl Allocations for Table {
    fn usage(&self, fac: &Facility) -> Result<Usage, TableError> {
        Table::usage(self, fac)
    }
    fn commit(
        &mut self,
        name: &str,
        fac: &Facility,
        f: &mut dyn FnMut(&Usage) -> Attempt,
    ) -> Result<Attempt, TableError> {
        Table::commit(self, name, fac, f)
    }
    fn relinquish(&mut self, name: &str) -> Result<(), TableError> {
        Table::relinquish(self, name)
    }
    fn rows(&self) -> Result<Vec<Row>, TableError> {
        Table::rows(self)
    }
    fn realization(&self, name: &str) -> Result<Realization, TableError> {
        Table::realization(self, name)
    }
}

/// The rows of `mxc alloc show` one realization holds, as [`Table::rows`]
/// stores them: a VM's cores, memory and disk, nothing for bare metal
/// (the whole host is its).
pub fn rows_of(real: &Realization) -> Vec<Row> {
    let mut rows: Vec<Row> = real
        .nodes
        .iter()
        .map(|p| {
            let (mode, cores, memory, disk) = match p.mode {
                Mode::Metal => ("metal", 0, 0, 0),
                Mode::Vm => ("vm", p.cores, p.memory, p.disk),
            };
            Row {
                realization: real.name.to_string(),
                facility: real.facility.to_string(),
                host: p.host.to_string(),
                node: p.node.to_string(),
                mode: mode.into(),
                cores,
                memory,
                disk,
            }
        })
        .collect();
    rows.sort_by(|a, b| (&a.host, &a.node).cmp(&(&b.host, &b.node)));
    rows
}

/// An open allocation table.
pub struct Table {
    conn: Connection,
}

/// One row of `mxc alloc show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub realization: String,
    pub facility: String,
    pub host: String,
    pub node: String,
    pub mode: String,
    pub cores: u32,
    pub memory: u64,
    pub disk: u64,
}

impl Table {
    /// Opens (creating if absent) the table at `path`.
    pub fn open(path: &Path) -> Result<Table, TableError> {
        let foreign = |why: String| TableError::Foreign {
            path: path.to_path_buf(),
            why,
        };
        let existed = path.exists();
        if !existed && let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| foreign(format!("cannot create its folder: {e}")))?;
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)?;
        conn.busy_timeout(Duration::from_secs(30))?;
        // Reading the header is the first thing that fails on a non-SQLite file.
        let (mut app, tables) = identity(&conn).map_err(|e| foreign(e.to_string()))?;
        if app == 0 && tables == 0 {
            // A new file, or one another `mxc` is creating right now: create
            // the tables under the exclusive lock, where a racing creator is
            // seen as finished rather than half-done.
            init(&conn)?;
            app = identity(&conn).map_err(|e| foreign(e.to_string()))?.0;
        }
        if app != APPLICATION_ID {
            return Err(foreign(format!(
                "it is an SQLite database of another program (application id {app:#x})"
            )));
        }
        let mut version: i32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if (2..SCHEMA_VERSION).contains(&version) {
            // Version 2 lacked GPUs and pinned cores, version 3 pinned
            // cores, version 4 tags: add their tables, under the lock, and
            // give existing realizations their tags.
            let tx = Transaction::new_unchecked(&conn, TransactionBehavior::Exclusive)?;
            tx.execute_batch(&format!(
                "{GPUS_TABLE} {PINS_TABLE} {TAGS_TABLE} PRAGMA user_version = {SCHEMA_VERSION};"
            ))?;
            let names: Vec<String> = tx
                .prepare("SELECT name FROM realizations ORDER BY name")?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let mut used = std::collections::BTreeSet::new();
            for n in names {
                if let Some(t) = crate::free_tag(&n, &used) {
                    used.insert(t);
                    tx.execute(
                        "INSERT OR IGNORE INTO tags (realization, tag) VALUES (?1, ?2)",
                        params![n, t],
                    )?;
                }
            }
            tx.commit()?;
            version = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        }
        if version != SCHEMA_VERSION {
            return Err(foreign(format!(
                "its schema version is {version}; this mxc reads version {SCHEMA_VERSION}"
            )));
        }
        Ok(Table { conn })
    }

    /// The usage of `facility` as recorded.
    pub fn usage(&self, fac: &Facility) -> Result<Usage, TableError> {
        read_usage(&self.conn, fac)
    }

    /// Realizes under the table's write lock and records the result, or
    /// records nothing. `f` gets the current usage and returns the realization.
    pub fn commit<E>(
        &mut self,
        name: &str,
        fac: &Facility,
        f: impl FnOnce(&Usage) -> Result<Realization, E>,
    ) -> Result<Result<Realization, E>, TableError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let exists: i64 = tx.query_row(
            "SELECT count(*) FROM realizations WHERE name = ?1",
            [name],
            |r| r.get(0),
        )?;
        if exists > 0 {
            return Err(TableError::Exists(name.to_string()));
        }
        let usage = read_usage(&tx, fac)?;
        let real = match f(&usage) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)), // rolled back on drop
        };
        if real.name != name {
            return Err(TableError::Exists(format!(
                "{} (the realization was renamed)",
                real.name
            )));
        }
        let doc = mx_xir::to_json_pretty(&real);
        tx.execute(
            "INSERT INTO realizations (name, facility, experiment, doc) VALUES (?1, ?2, ?3, ?4)",
            params![
                real.name.as_str(),
                fac.name.as_str(),
                real.experiment.path,
                doc
            ],
        )?;
        tx.execute(
            "INSERT INTO tags (realization, tag) VALUES (?1, ?2)",
            params![real.name.as_str(), real.tag],
        )?;
        for p in &real.nodes {
            let mode = match p.mode {
                Mode::Metal => "metal",
                Mode::Vm => "vm",
            };
            let (c, m, d) = if p.mode == Mode::Vm {
                (p.cores as i64, p.memory as i64, p.disk as i64)
            } else {
                (0, 0, 0)
            };
            tx.execute(
                "INSERT INTO allocations (realization, facility, host, node, mode, cores, memory, disk) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![real.name.as_str(), fac.name.as_str(), p.host.as_str(), p.node.as_str(), mode, c, m, d],
            )?;
            if let Some(g) = &p.gpu {
                tx.execute(
                    "INSERT INTO gpus (realization, facility, host, gpu, slice) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![real.name.as_str(), fac.name.as_str(), p.host.as_str(), g.index, g.slice.map_or(-1, i64::from)],
                )?;
            }
            for core in &p.cpus {
                tx.execute(
                    "INSERT INTO pins (realization, facility, host, core) VALUES (?1, ?2, ?3, ?4)",
                    params![real.name.as_str(), fac.name.as_str(), p.host.as_str(), core],
                )?;
            }
        }
        let mut vlans = std::collections::BTreeSet::new();
        for l in &real.links {
            if let Some(v) = l.vni {
                tx.execute(
                    "INSERT INTO vnis (realization, facility, vni) VALUES (?1, ?2, ?3)",
                    params![real.name.as_str(), fac.name.as_str(), v],
                )?;
            }
            for e in &l.endpoints {
                let (port, vlan) = match &e.attach {
                    Attachment::Tap { .. } => continue,
                    Attachment::Vf { port, vf, vlan, .. } => {
                        let nic = fac
                            .host(&e.host)
                            .and_then(|h| h.nic_of_port(*port))
                            .map_or(0, |(n, _)| n);
                        tx.execute("INSERT INTO vfs (realization, facility, host, nic, vf) VALUES (?1, ?2, ?3, ?4, ?5)", params![real.name.as_str(), fac.name.as_str(), e.host.as_str(), nic as i64, vf])?;
                        (*port, *vlan)
                    }
                    Attachment::Port { port, vlan, .. } => {
                        // A bare-metal node's own uplink is part of its host, not a port taken.
                        let metal = real
                            .nodes
                            .iter()
                            .any(|p| p.node == e.node && p.mode == Mode::Metal);
                        if !metal {
                            tx.execute("INSERT INTO ports (realization, facility, host, port) VALUES (?1, ?2, ?3, ?4)", params![real.name.as_str(), fac.name.as_str(), e.host.as_str(), port])?;
                        }
                        (*port, *vlan)
                    }
                };
                if let Some(leaf) = leaf_of(fac, &e.host, port)
                    && vlans.insert((leaf.clone(), vlan))
                {
                    tx.execute("INSERT INTO vlans (realization, facility, leaf, vlan) VALUES (?1, ?2, ?3, ?4)", params![real.name.as_str(), fac.name.as_str(), leaf, vlan])?;
                }
            }
        }
        for (host, (bps, _)) in crate::links::uplink_demand(fac, &real.links) {
            tx.execute(
                "INSERT INTO uplinks (realization, facility, host, bps) VALUES (?1, ?2, ?3, ?4)",
                params![real.name.as_str(), fac.name.as_str(), host, bps as i64],
            )?;
        }
        tx.commit()?;
        Ok(Ok(real))
    }

    /// Frees everything `name` holds.
    pub fn relinquish(&mut self, name: &str) -> Result<(), TableError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute("DELETE FROM realizations WHERE name = ?1", [name])?;
        if n == 0 {
            return Err(TableError::Missing(name.to_string()));
        }
        for t in [
            "allocations",
            "vfs",
            "ports",
            "vnis",
            "vlans",
            "uplinks",
            "gpus",
            "pins",
            "tags",
        ] {
            tx.execute(&format!("DELETE FROM {t} WHERE realization = ?1"), [name])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Every node allocation, ordered by realization, host, node.
    pub fn rows(&self) -> Result<Vec<Row>, TableError> {
        let mut st = self.conn.prepare("SELECT realization, facility, host, node, mode, cores, memory, disk FROM allocations ORDER BY realization, host, node")?;
        let rows = st
            .query_map([], |r| {
                Ok(Row {
                    realization: r.get(0)?,
                    facility: r.get(1)?,
                    host: r.get(2)?,
                    node: r.get(3)?,
                    mode: r.get(4)?,
                    cores: r.get::<_, i64>(5)? as u32,
                    memory: r.get::<_, i64>(6)? as u64,
                    disk: r.get::<_, i64>(7)? as u64,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The stored realization document of `name`.
    pub fn realization(&self, name: &str) -> Result<Realization, TableError> {
        let doc: String = self
            .conn
            .query_row(
                "SELECT doc FROM realizations WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .map_err(|_| TableError::Missing(name.to_string()))?;
        serde_json::from_str(&doc).map_err(|e| TableError::Foreign {
            path: PathBuf::from("<table>"),
            why: format!("stored realization `{name}` does not parse: {e}"),
        })
    }
}

fn read_usage(conn: &Connection, fac: &Facility) -> Result<Usage, TableError> {
    let mut u = Usage::default();
    each_row(
        conn,
        "SELECT host, mode, cores, memory, disk FROM allocations WHERE facility = ?1",
        &fac.name,
        |r| {
            let host: String = r.get(0)?;
            let mode: String = r.get(1)?;
            let e = u.hosts.entry(host).or_default();
            if mode == "metal" {
                e.metal = true;
            } else {
                e.cores += r.get::<_, i64>(2)? as u32;
                e.memory += r.get::<_, i64>(3)? as u64;
                e.disk += r.get::<_, i64>(4)? as u64;
            }
            Ok(())
        },
    )?;
    each_row(
        conn,
        "SELECT host, nic, vf FROM vfs WHERE facility = ?1",
        &fac.name,
        |r| {
            let host: String = r.get(0)?;
            u.hosts
                .entry(host)
                .or_default()
                .vfs
                .entry(r.get::<_, i64>(1)? as usize)
                .or_default()
                .insert(r.get::<_, i64>(2)? as u32);
            Ok(())
        },
    )?;
    each_row(
        conn,
        "SELECT host, port FROM ports WHERE facility = ?1",
        &fac.name,
        |r| {
            let host: String = r.get(0)?;
            u.hosts
                .entry(host)
                .or_default()
                .ports
                .insert(r.get::<_, i64>(1)? as u32);
            Ok(())
        },
    )?;
    each_row(
        conn,
        "SELECT host, gpu, slice FROM gpus WHERE facility = ?1",
        &fac.name,
        |r| {
            let host: String = r.get(0)?;
            let g = u
                .hosts
                .entry(host)
                .or_default()
                .gpus
                .entry(r.get::<_, i64>(1)? as u32)
                .or_default();
            match r.get::<_, i64>(2)? {
                -1 => g.whole = true,
                s => {
                    g.slices.insert(s as u32);
                }
            }
            Ok(())
        },
    )?;
    each_row(
        conn,
        "SELECT host, core FROM pins WHERE facility = ?1",
        &fac.name,
        |r| {
            let host: String = r.get(0)?;
            u.hosts
                .entry(host)
                .or_default()
                .pinned
                .insert(r.get::<_, i64>(1)? as u32);
            Ok(())
        },
    )?;
    each_row(
        conn,
        "SELECT vni FROM vnis WHERE facility = ?1",
        &fac.name,
        |r| {
            u.vnis.insert(r.get::<_, i64>(0)? as u32);
            Ok(())
        },
    )?;
    each_row(
        conn,
        "SELECT host, bps FROM uplinks WHERE facility = ?1",
        &fac.name,
        |r| {
            let host: String = r.get(0)?;
            *u.uplink.entry(host).or_default() += r.get::<_, i64>(1)? as u64;
            Ok(())
        },
    )?;
    // Tags in every facility: they name devices on the machines.
    let mut st = conn.prepare("SELECT tag FROM tags")?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        u.tags.insert(r.get::<_, i64>(0)? as u32);
    }
    each_row(
        conn,
        "SELECT leaf, vlan FROM vlans WHERE facility = ?1",
        &fac.name,
        |r| {
            let leaf: String = r.get(0)?;
            u.vlans
                .entry(leaf)
                .or_default()
                .insert(r.get::<_, i64>(1)? as u16);
            Ok(())
        },
    )?;
    Ok(u)
}

/// Runs `sql` (one `?1` parameter) and hands every row to `f`.
fn each_row(
    conn: &Connection,
    sql: &str,
    param: &str,
    mut f: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    let mut st = conn.prepare(sql)?;
    let mut rows = st.query([param])?;
    while let Some(r) = rows.next()? {
        f(r)?;
    }
    Ok(())
}

/// The file's application id and how many schema objects it holds, read in
/// one transaction so a concurrent creator is seen before or after, never
/// halfway.
fn identity(conn: &Connection) -> rusqlite::Result<(i32, i64)> {
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Deferred)?;
    let app: i32 = tx.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    let tables: i64 = tx.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
    tx.commit()?;
    Ok((app, tables))
}

/// Creates the tables unless a racing `mxc` got there first (checked again
/// under the exclusive lock); another program's database is left alone.
fn init(conn: &Connection) -> Result<(), TableError> {
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Exclusive)?;
    let app: i32 = tx.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    let tables: i64 = tx.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
    if app != 0 || tables != 0 {
        return Ok(());
    }
    tx.execute_batch(&format!(
        "PRAGMA application_id = {APPLICATION_ID};
         PRAGMA user_version = {SCHEMA_VERSION};
         CREATE TABLE IF NOT EXISTS realizations (
             name TEXT PRIMARY KEY, facility TEXT NOT NULL, experiment TEXT NOT NULL, doc TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS allocations (
             realization TEXT NOT NULL, facility TEXT NOT NULL, host TEXT NOT NULL, node TEXT NOT NULL,
             mode TEXT NOT NULL, cores INTEGER NOT NULL, memory INTEGER NOT NULL, disk INTEGER NOT NULL);
         CREATE UNIQUE INDEX IF NOT EXISTS one_metal ON allocations(facility, host) WHERE mode = 'metal';
         CREATE TABLE IF NOT EXISTS vfs (realization TEXT NOT NULL, facility TEXT NOT NULL, host TEXT NOT NULL,
             nic INTEGER NOT NULL, vf INTEGER NOT NULL, UNIQUE(facility, host, nic, vf));
         CREATE TABLE IF NOT EXISTS ports (realization TEXT NOT NULL, facility TEXT NOT NULL, host TEXT NOT NULL,
             port INTEGER NOT NULL, UNIQUE(facility, host, port));
         CREATE TABLE IF NOT EXISTS vnis (realization TEXT NOT NULL, facility TEXT NOT NULL, vni INTEGER NOT NULL,
             UNIQUE(facility, vni));
         CREATE TABLE IF NOT EXISTS vlans (realization TEXT NOT NULL, facility TEXT NOT NULL, leaf TEXT NOT NULL,
             vlan INTEGER NOT NULL, UNIQUE(facility, leaf, vlan));
         CREATE TABLE IF NOT EXISTS uplinks (realization TEXT NOT NULL, facility TEXT NOT NULL, host TEXT NOT NULL,
             bps INTEGER NOT NULL);
         {GPUS_TABLE}
         {PINS_TABLE}
         {TAGS_TABLE}"
    ))?;
    tx.commit()?;
    Ok(())
}
