//! Network namespaces: created and mounted as `ip netns` does, entered for the length of a closure.

#[allow(unused_imports)]
use super::*;

/// Where named namespaces are mounted (as `ip netns` does).
pub const NETNS_DIR: &str = "/run/netns";

/// Runs `f` on a fresh thread inside namespace `ns` (or here when `None`).
pub fn in_ns<T: Send>(ns: Option<&str>, f: impl FnOnce() -> R<T> + Send) -> R<T> {
    let Some(ns) = ns else { return f() };
    let path = Path::new(NETNS_DIR).join(ns);
    std::thread::scope(|s| {
        s.spawn(|| {
            let target = fs::File::open(&path).map_err(|e| format!("namespace {ns}: {e}"))?;
            setns(&target, CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns {ns}: {e}"))?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err("a namespace worker crashed".into()))
    })
}

pub(crate) fn ns_exists(ns: &str) -> bool {
    Path::new(NETNS_DIR).join(ns).exists()
}

/// Creates `/run/netns/<name>` holding a new network namespace, if absent.
pub fn netns_add(name: &str) -> R<()> {
    fs::create_dir_all(NETNS_DIR).map_err(io_err)?;
    let path = Path::new(NETNS_DIR).join(name);
    if path.exists() {
        // Present and mounted: done. A leftover plain file is replaced.
        if in_ns(Some(name), || Ok(())).is_ok() && is_mounted(&path) {
            return Ok(());
        }
        let _ = nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH);
        let _ = fs::remove_file(&path);
    }
    fs::File::create_new(&path).map_err(|e| format!("{}: {e}", path.display()))?;
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
    .map_err(|_| "namespace thread crashed".to_string())?;
    if let Err(e) = res {
        let _ = fs::remove_file(&path);
        return Err(format!("create namespace {name}: {e}"));
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
pub fn netns_del(name: &str) -> R<()> {
    let path = Path::new(NETNS_DIR).join(name);
    if !path.exists() {
        return Ok(());
    }
    let _ = nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH);
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}
