//! cgroup files: CPU bandwidth, cpusets, and the directories of both cgroup versions.

#[allow(unused_imports)]
use super::*;

/// What a cgroup operation failed at.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// A control file refused a value.
    #[error("write {value:?} to {}: {source}", path.display())]
    Write {
        value: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A cgroup directory or file could not be made, read or removed.
    #[error(transparent)]
    Path(#[from] PathError),
}

type R<T> = Result<T, CgroupError>;

pub(crate) fn write(path: &Path, value: &str) -> R<()> {
    fs::write(path, value).map_err(|source| CgroupError::Write {
        value: value.to_string(),
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn rmdir_retry(dir: &Path) -> R<()> {
    for _ in 0..50 {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            // Busy while the last QEMU threads exit.
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    Ok(fs::remove_dir(dir).at(dir)?)
}

/// Where cgroup hierarchies are mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// 2 on a unified hierarchy, 1 on the legacy per-controller one.
pub fn cgroup_version() -> u8 {
    if Path::new(CGROUP_ROOT).join("cgroup.controllers").exists() {
        2
    } else {
        1
    }
}

/// [`cgroup_dirs`], plus the cpuset directory of a pinned VM.
pub(crate) fn joined_dirs(path: &str) -> Vec<PathBuf> {
    let mut dirs = cgroup_dirs(path);
    let cpuset = Path::new(CGROUP_ROOT).join("cpuset").join(path);
    if cgroup_version() == 1 && cpuset.is_dir() {
        dirs.push(cpuset);
    }
    dirs
}

/// Creates the cpuset cgroup `path` holding `cpus` (modulo this machine's
/// cores). On v1 every level needs cpus and mems before a task may join,
/// so each new level starts with its parent's.
pub(crate) fn cpuset_add(path: &str, cpus: &[u32]) -> R<()> {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    let mut set: Vec<u32> = cpus.iter().map(|c| c % n).collect();
    set.sort_unstable();
    set.dedup();
    let list = set.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    let base = match cgroup_version() {
        2 => {
            let root = Path::new(CGROUP_ROOT);
            let mut dir = root.to_path_buf();
            for part in path.split('/') {
                let _ = fs::write(dir.join("cgroup.subtree_control"), "+cpuset");
                dir = dir.join(part);
                fs::create_dir_all(&dir).at(&dir)?;
            }
            return write(&dir.join("cpuset.cpus"), &list);
        }
        _ => Path::new(CGROUP_ROOT).join("cpuset"),
    };
    let mut dir = base;
    for part in path.split('/') {
        let parent = dir.clone();
        dir = dir.join(part);
        fs::create_dir_all(&dir).at(&dir)?;
        for f in ["cpuset.cpus", "cpuset.mems"] {
            let mine = fs::read_to_string(dir.join(f)).unwrap_or_default();
            if mine.trim().is_empty() {
                let theirs = fs::read_to_string(parent.join(f)).at(&parent.join(f))?;
                write(&dir.join(f), theirs.trim())?;
            }
        }
    }
    write(&dir.join("cpuset.cpus"), &list)
}

/// The directories of cgroup `path`: one on v2; one per controller mx uses
/// (cpu for bandwidth, cpuacct for accounting) on v1.
pub fn cgroup_dirs(path: &str) -> Vec<PathBuf> {
    match cgroup_version() {
        2 => vec![Path::new(CGROUP_ROOT).join(path)],
        _ => ["cpu", "cpuacct"]
            .iter()
            .map(|c| Path::new(CGROUP_ROOT).join(c).join(path))
            .filter(|p| {
                p.ancestors()
                    .nth(path.split('/').count())
                    .is_some_and(Path::exists)
            })
            .collect(),
    }
}

/// Writes a CPU quota (µs per period) to a cgroup, v1 or v2.
pub(crate) fn set_quota(cgroup: &str, quota_us: u64, period_us: u64) -> R<()> {
    match cgroup_version() {
        2 => write(
            &Path::new(CGROUP_ROOT).join(cgroup).join("cpu.max"),
            &format!("{quota_us} {period_us}"),
        ),
        _ => write(
            &Path::new(CGROUP_ROOT)
                .join("cpu")
                .join(cgroup)
                .join("cpu.cfs_quota_us"),
            &quota_us.to_string(),
        ),
    }
}
