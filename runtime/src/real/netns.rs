//! Network namespaces: created and mounted as `ip netns` does, entered for the length of a closure.

#[allow(unused_imports)]
use super::*;

/// Where named namespaces are mounted (as `ip netns` does).
pub const NETNS_DIR: &str = "/run/netns";

/// What a namespace operation failed at.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The namespace's file could not be opened (it does not exist).
    #[error("namespace {ns}: {source}")]
    Open {
        ns: String,
        #[source]
        source: io::Error,
    },
    /// Entering it failed.
    #[error("setns {ns}: {source}")]
    Enter {
        ns: String,
        #[source]
        source: nix::Error,
    },
    /// Making a new one failed.
    #[error("create namespace {name}: {source}")]
    Create {
        name: String,
        #[source]
        source: nix::Error,
    },
    /// A thread that entered a namespace panicked.
    #[error("a namespace worker crashed")]
    Crashed,
    /// The directory or file under `/run/netns`.
    #[error(transparent)]
    Path(#[from] PathError),
}

/// Runs `f` on a fresh thread inside namespace `ns` (or here when `None`).
pub fn in_ns<T: Send, E: From<NetnsError> + Send>(
    ns: Option<&str>,
    f: impl FnOnce() -> Result<T, E> + Send,
) -> Result<T, E> {
    let Some(ns) = ns else { return f() };
    let path = Path::new(NETNS_DIR).join(ns);
    std::thread::scope(|s| {
        s.spawn(|| {
            let target = fs::File::open(&path).map_err(|source| NetnsError::Open {
                ns: ns.to_string(),
                source,
            })?;
            setns(&target, CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Enter {
                ns: ns.to_string(),
                source,
            })?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(NetnsError::Crashed.into()))
    })
}

pub(crate) fn ns_exists(ns: &str) -> bool {
    Path::new(NETNS_DIR).join(ns).exists()
}

/// Where namespace creation and removal are serialized between processes.
/// Agents of several namespace hosts share an experiment's underlay
/// namespace: unserialized, one agent took another's half-made file for a
/// leftover, replaced it and two namespaces ended up stacked on one path.
/// Not under `/run/netns`, where `ip netns` would list it.
const NETNS_LOCK: &str = "/run/mx-netns.lock";

/// Holds the namespace lock for its lifetime (released by the kernel if the
/// process dies, so a crash never leaves it held).
fn netns_lock() -> Result<nix::fcntl::Flock<fs::File>, NetnsError> {
    let path = Path::new(NETNS_LOCK);
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .at(path)?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| {
        NetnsError::Path(PathError {
            path: path.to_path_buf(),
            source: io::Error::from(e),
        })
    })
}

/// Creates `/run/netns/<name>` holding a new network namespace, if absent.
pub fn netns_add(name: &str) -> Result<(), NetnsError> {
    fs::create_dir_all(NETNS_DIR).at(Path::new(NETNS_DIR))?;
    let _held = netns_lock()?;
    let path = Path::new(NETNS_DIR).join(name);
    if path.exists() {
        // Present and mounted: done. A leftover plain file is replaced.
        if in_ns(Some(name), || Ok::<(), NetnsError>(())).is_ok() && is_mounted(&path) {
            return Ok(());
        }
        let _ = nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH);
        let _ = fs::remove_file(&path);
    }
    fs::File::create_new(&path).at(&path)?;
    let p = path.clone();
    let res = std::thread::spawn(move || -> nix::Result<()> {
        unshare(CloneFlags::CLONE_NEWNET)?;
        nix::mount::mount(
            Some("/proc/thread-self/ns/net"),
            p.as_path(),
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
    })
    .join()
    .map_err(|_| NetnsError::Crashed)?;
    if let Err(source) = res {
        let _ = fs::remove_file(&path);
        return Err(NetnsError::Create {
            name: name.to_string(),
            source,
        });
    }
    Ok(())
}

pub(crate) fn is_mounted(path: &Path) -> bool {
    let p = path.display().to_string();
    fs::read_to_string("/proc/self/mountinfo")
        .map(|m| m.lines().any(|l| l.split(' ').nth(4) == Some(p.as_str())))
        .unwrap_or(false)
}

/// Removes a named namespace (its devices go with it), if present.
pub fn netns_del(name: &str) -> Result<(), NetnsError> {
    let path = Path::new(NETNS_DIR).join(name);
    if !path.exists() {
        return Ok(());
    }
    let _held = netns_lock()?;
    // Stacked mounts (left by releases before the lock) come off one by one.
    for _ in 0..8 {
        let _ = nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH);
        if !is_mounted(&path) {
            break;
        }
    }
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(PathError { path, source }.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Agents of several namespace hosts make an experiment's underlay
    /// namespace at once. Without the lock, one took another's half-made
    /// file for a leftover: an error, or two namespaces stacked on a path.
    #[test]
    fn racing_creators_make_one_namespace() {
        if !nix::unistd::Uid::effective().is_root() {
            return;
        }
        let name = format!("mxu-race{}", std::process::id());
        let path = Path::new(NETNS_DIR).join(&name);
        let mounts = || {
            fs::read_to_string("/proc/self/mountinfo")
                .unwrap()
                .lines()
                .filter(|l| l.split(' ').nth(4) == Some(path.to_str().unwrap()))
                .count()
        };
        for _ in 0..30 {
            let gate = std::sync::Barrier::new(6);
            let results: Vec<_> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..6)
                    .map(|_| {
                        s.spawn(|| {
                            gate.wait();
                            netns_add(&name).map_err(|e| e.to_string())
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let stacked = mounts();
            netns_del(&name).unwrap();
            assert!(results.iter().all(Result::is_ok), "{results:?}");
            assert_eq!(stacked, 1, "namespaces stacked on {}", path.display());
        }
        assert_eq!(mounts(), 0);
    }
}
