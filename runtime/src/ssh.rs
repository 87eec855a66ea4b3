//! `mxc ssh`: OpenSSH into a guest over the management path.
//!
//! Each experiment has its own key pair in its state directory, made when
//! it comes up; the public half reaches the guests in their configuration
//! (fw_cfg), and sshd in the guest accepts it for root. The connection runs
//! over the virtio-serial port `org.mx.ssh.0`, where the guest runs
//! `sshd -i` again and again: ssh's ProxyCommand is `mxc proxy`, which
//! joins its stdin and stdout to the port's FIFO pair. No network
//! interface is involved, so experiment traffic never crosses it; ssh's
//! connection sharing (ControlMaster) gives many sessions over the one
//! port.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The experiment's key pair, in its state directory.
pub fn key_path(state: &Path) -> PathBuf {
    state.join("ssh").join("id_ed25519")
}

/// The experiment's public key, if it has one.
pub fn public_key(state: &Path) -> Option<String> {
    let text = std::fs::read_to_string(key_path(state).with_extension("pub")).ok()?;
    let line = text.lines().next()?.trim().to_string();
    valid_public_key(&line).then_some(line)
}

/// One line of `type base64 [comment]`, nothing a guest's config line
/// could be confused by.
fn valid_public_key(line: &str) -> bool {
    let mut words = line.split(' ');
    let kind = words.next().unwrap_or("");
    let key = words.next().unwrap_or("");
    kind.starts_with("ssh-")
        && !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
        && line.bytes().all(|b| (b' '..=b'~').contains(&b))
}

/// Makes the experiment's key pair (ed25519, no passphrase, readable by
/// root alone) unless it exists; returns the public key.
pub fn make_key(state: &Path) -> Result<String, String> {
    if let Some(k) = public_key(state) {
        return Ok(k);
    }
    let key = key_path(state);
    let dir = key.parent().unwrap_or(state);
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let comment = format!(
        "mx-{}",
        state
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", &comment, "-f"])
        .arg(&key)
        .output()
        .map_err(|e| format!("ssh-keygen: {e} (apt-get install openssh-client)"))?;
    if !out.status.success() {
        return Err(format!(
            "ssh-keygen: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    public_key(state).ok_or_else(|| format!("ssh-keygen wrote no usable {}.pub", key.display()))
}

/// The `ssh` command line that reaches `vm` of the experiment whose state is
/// in `state`, through `mxc` (this binary) as the proxy; `extra` are the
/// user's own arguments (a command to run, options).
pub fn command(mxc: &Path, experiment: &str, state: &Path, vm: &str, extra: &[String]) -> Command {
    let dir = state.join("ssh");
    let mut c = Command::new("ssh");
    let opt = |k: &str, v: String| ["-o".to_string(), format!("{k}={v}")];
    c.args(["-i"]).arg(key_path(state));
    c.args(opt("IdentitiesOnly", "yes".into()));
    c.args(opt(
        "ProxyCommand",
        format!("{} proxy {experiment} {vm}", mxc.display()),
    ));
    // Host keys are made by each guest at its first boot: trust the first
    // one seen, kept per experiment.
    c.args(opt("StrictHostKeyChecking", "accept-new".into()));
    c.args(opt(
        "UserKnownHostsFile",
        dir.join("known_hosts").display().to_string(),
    ));
    c.args(opt("ControlMaster", "auto".into()));
    c.args(opt("ControlPath", dir.join("%n.ctl").display().to_string()));
    c.args(opt("ControlPersist", "60".into()));
    c.args(opt("LogLevel", "ERROR".into()));
    c.arg(format!("root@{vm}"));
    c.args(extra);
    c
}

/// ssh's ProxyCommand: joins stdin and stdout to the guest's sshd port
/// (the FIFO pair `ssh.in`, `ssh.out` in the VM's directory) until ssh
/// closes stdin. One connection at a time holds the port (ssh's
/// ControlMaster shares it between sessions); the guest starts `sshd -i`
/// when the first line (the wake-up this sends) arrives, so nothing it says
/// can be lost before a client listens.
pub fn proxy(vm_dir: &Path) -> Result<(), String> {
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::os::unix::fs::OpenOptionsExt;

    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

    let open = |name: &str, write: bool| {
        let p = vm_dir.join(name);
        std::fs::OpenOptions::new()
            .read(!write)
            .write(write)
            .custom_flags(libc::O_NONBLOCK)
            .open(&p)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ENXIO) => "the VM is not running".to_string(),
                _ => format!("{}: {e}", p.display()),
            })
    };
    let mut tx = open("ssh.in", true)?;
    let mut rx = open("ssh.out", false)?;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(vm_dir.join("ssh.lock"))
        .map_err(|e| e.to_string())?;
    let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e.to_string())?;
    let mut buf = [0u8; 65536];
    // What an interrupted connection left is no use to this one.
    while matches!(rx.read(&mut buf), Ok(n) if n > 0) {}
    crate::agent::set_blocking(&tx)?;
    tx.write_all(b"\n").map_err(|e| e.to_string())?;
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    loop {
        let mut fds = [
            PollFd::new(stdin.as_fd(), PollFlags::POLLIN),
            PollFd::new(rx.as_fd(), PollFlags::POLLIN),
        ];
        poll(&mut fds, PollTimeout::NONE).map_err(|e| e.to_string())?;
        let ready = |f: &PollFd| {
            f.revents()
                .is_some_and(|r| r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP))
        };
        let (user, guest) = (ready(&fds[0]), ready(&fds[1]));
        if guest {
            match rx.read(&mut buf) {
                Ok(0) => return Err("the VM stopped".into()),
                Ok(n) => {
                    stdout.write_all(&buf[..n]).map_err(|e| e.to_string())?;
                    stdout.flush().map_err(|e| e.to_string())?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        if user {
            let n = nix::unistd::read(&stdin, &mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                return Ok(());
            }
            tx.write_all(&buf[..n]).map_err(|e| e.to_string())?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_public_keys_reach_a_guest() {
        assert!(valid_public_key(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBx mx-a"
        ));
        assert!(!valid_public_key(
            "ssh-ed25519 AAAA\nroute 0.0.0.0/0 1.2.3.4"
        ));
        assert!(!valid_public_key("ecdsa AAAA"));
        assert!(!valid_public_key("ssh-ed25519 AAA\"A"));
    }
}
