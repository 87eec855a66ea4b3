//! Host errors by subsystem. Each subsystem module has its own enum
//! (`NetnsError`, `LinkError`, `CgroupError`, `TcError`, `XdpError`,
//! `FilesError`, `QemuError`, `TdfError`, `VfioError`); [`HostError`]
//! gathers them, and `Executor::run` turns it into the task's failure text
//! in one place. Callers that must tell
//! failures apart (a device already there, a namespace already gone) match
//! variants, never text.

#[allow(unused_imports)]
use super::*;

/// A file-system call on `path` that failed.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct PathError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Names the path an I/O result was about.
pub(crate) trait AtPath<T> {
    fn at(self, path: &Path) -> Result<T, PathError>;
}

impl<T> AtPath<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T, PathError> {
        self.map_err(|source| PathError {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// A helper program (`tc`, `ip`, `qemu-img`) that could not run or failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// It could not be started.
    #[error("run {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: io::Error,
    },
    /// It ran and failed; `command` is what ran, `stderr` what it said.
    #[error("{command}: {stderr}")]
    Failed { command: String, stderr: String },
}

/// Runs `cmd` (shown as `shown`), failing with its standard error.
pub(crate) fn run_command(
    cmd: &mut Command,
    program: &str,
    shown: String,
) -> Result<(), CommandError> {
    let out = cmd.output().map_err(|source| CommandError::Spawn {
        program: program.to_string(),
        source,
    })?;
    if !out.status.success() {
        return Err(CommandError::Failed {
            command: shown,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// What an operation on the host failed at.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Tc(#[from] TcError),
    #[error(transparent)]
    Xdp(#[from] XdpError),
    #[error(transparent)]
    Files(#[from] FilesError),
    #[error(transparent)]
    Qemu(#[from] QemuError),
    #[error(transparent)]
    Tdf(#[from] TdfError),
    #[error(transparent)]
    Vfio(#[from] VfioError),
    /// A file the dispatcher itself reads or removes.
    #[error(transparent)]
    Path(#[from] PathError),
    /// The dispatcher's own checks (a bad address in a plan, a lock).
    #[error("{0}")]
    Other(String),
}

impl From<String> for HostError {
    fn from(s: String) -> Self {
        HostError::Other(s)
    }
}

impl From<&str> for HostError {
    fn from(s: &str) -> Self {
        HostError::Other(s.to_string())
    }
}

/// The subsystem whose errors are still text (`vfio`) calls the typed ones
/// through these.
macro_rules! into_text {
    ($($t:ty),*) => {
        $(impl From<$t> for String {
            fn from(e: $t) -> String {
                e.to_string()
            }
        })*
    };
}

into_text!(
    NetnsError,
    CgroupError,
    TcError,
    XdpError,
    FilesError,
    PathError,
    CommandError
);

/// Gives any subsystem's result the dispatcher's error type.
pub(crate) trait Host<T> {
    fn host(self) -> Result<T, HostError>;
}

impl<T, E: Into<HostError>> Host<T> for Result<T, E> {
    fn host(self) -> Result<T, HostError> {
        self.map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Failures are told apart by variant, and their text is what a failed
    /// task has always shown.
    #[test]
    fn errors_are_typed_and_read_as_before() {
        let e = in_ns(Some("mx-no-such-namespace"), || Ok::<(), HostError>(()))
            .expect_err("no such namespace");
        assert!(
            matches!(e, HostError::Netns(NetnsError::Open { ref ns, .. }) if ns == "mx-no-such-namespace"),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .starts_with("namespace mx-no-such-namespace: "),
            "{e}"
        );
        let e = write(Path::new("/nonexistent/mx/cpu.max"), "1 2").expect_err("no such file");
        assert!(matches!(e, CgroupError::Write { .. }));
        assert!(
            e.to_string()
                .starts_with("write \"1 2\" to /nonexistent/mx/cpu.max: "),
            "{e}"
        );
        let e = tc_or_ip("false", None, &["x"]).expect_err("false fails");
        assert_eq!(e.to_string(), "false x: ");
        let e = tc_or_ip("/nonexistent/mx-tc", None, &[]).expect_err("no such program");
        assert!(
            matches!(e, TcError::Command(CommandError::Spawn { .. })),
            "{e:?}"
        );
        let e = disk_overlay(
            Path::new("/nonexistent/base.qcow2"),
            Path::new("/nonexistent/o"),
            1,
        )
        .expect_err("no base");
        assert!(matches!(e, FilesError::NotQcow2(_)), "{e:?}");
        assert_eq!(
            e.to_string(),
            "/nonexistent/base.qcow2: not a qcow2 image; rebuild the image"
        );
        // Removing what is gone succeeds.
        netns_del("mx-no-such-namespace").expect("nothing to remove");
    }
}
