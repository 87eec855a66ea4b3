//! Where allocations are kept: an SQLite file on this machine (the
//! default), or an etcd store a team shares (`--db etcd://HOST:PORT`, or
//! `MX_DB=etcd://...`). Both behind [`Allocations`], with the same
//! guarantees.

use std::path::{Path, PathBuf};

use mx_realizer::table::{Allocations, Table, TableError};
use mx_store::StoreUrl;

/// An allocation table's location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TableAt {
    File(PathBuf),
    /// A store URL, checked when the table is opened.
    Store(String),
}

impl TableAt {
    /// `--db` as given, else `$MX_DB`, else the default file.
    pub fn new(db: Option<&Path>) -> TableAt {
        let path = db.map_or_else(mx_realizer::table::default_path, Path::to_path_buf);
        match path.to_str() {
            Some(s) if StoreUrl::is_store(s) => TableAt::Store(s.to_string()),
            _ => TableAt::File(path),
        }
    }

    /// Whether there is a table to read: a file that exists (a dry run
    /// never creates one), or a store (reading one creates nothing).
    pub fn exists(&self) -> bool {
        match self {
            TableAt::File(p) => p.exists(),
            TableAt::Store(_) => true,
        }
    }

    pub fn open(&self) -> Result<Box<dyn Allocations>, TableError> {
        Ok(match self {
            TableAt::File(p) => Box::new(Table::open(p)?),
            TableAt::Store(url) => Box::new(mx_store::alloc::EtcdTable::open(
                &StoreUrl::parse(url).map_err(|e| TableError::Store(e.0))?,
            )?),
        })
    }
}

impl std::fmt::Display for TableAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TableAt::File(p) => write!(f, "{}", p.display()),
            TableAt::Store(u) => f.write_str(u),
        }
    }
}
