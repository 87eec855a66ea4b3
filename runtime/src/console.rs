//! `mxc console`: a terminal on a guest's serial console.
//!
//! QEMU serves the console on a unix socket in the VM's directory and logs
//! everything the guest writes to `serial.log` whether or not anyone is
//! attached (see [`crate::plan::qemu_argv`]), so attaching and detaching
//! never disturbs the guest or the readiness check that reads the log.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// Ctrl-] detaches, as in telnet and virsh.
pub const DETACH: u8 = 0x1d;

/// Attaches this process's stdin and stdout to the console of the VM in
/// `vm_dir` until Ctrl-] (`interactive`: the terminal goes to raw mode
/// meanwhile), the end of stdin, or the VM going. `attached` runs once the
/// console is held.
pub fn attach(vm_dir: &Path, interactive: bool, attached: &mut dyn FnMut()) -> Result<(), String> {
    // QEMU serves one client at a time; a second would wait unseen.
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(vm_dir.join("console.lock"))
        .map_err(|e| format!("{}: {e}", vm_dir.display()))?;
    let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|_| "the console is in use by another `mxc console`".to_string())?;
    let sock = vm_dir.join("console.sock");
    let stream = UnixStream::connect(&sock).map_err(|e| format!("{}: {e}", sock.display()))?;
    attached();
    let raw = if interactive { RawMode::enter() } else { None };
    let res = relay(&stream, interactive);
    drop(raw);
    res
}

/// Copies stdin to the console and the console to stdout.
fn relay(stream: &UnixStream, interactive: bool) -> Result<(), String> {
    let e = |e: std::io::Error| e.to_string();
    let mut to_guest = stream.try_clone().map_err(e)?;
    let mut from_guest = stream.try_clone().map_err(e)?;
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    let mut buf = [0u8; 4096];
    loop {
        let mut fds = [
            PollFd::new(from_guest.as_fd(), PollFlags::POLLIN),
            PollFd::new(stdin.as_fd(), PollFlags::POLLIN),
        ];
        poll(&mut fds, PollTimeout::NONE).map_err(|e| e.to_string())?;
        let ready = |f: &PollFd| {
            f.revents()
                .is_some_and(|r| r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP))
        };
        let (guest, user) = (ready(&fds[0]), ready(&fds[1]));
        if guest {
            let n = from_guest.read(&mut buf).map_err(e)?;
            if n == 0 {
                return Err("the VM stopped".into());
            }
            stdout.write_all(&buf[..n]).map_err(e)?;
            stdout.flush().map_err(e)?;
        }
        if user {
            let n = nix::unistd::read(&stdin, &mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                // A piped stdin ended: let the guest's answer arrive, then go.
                from_guest
                    .set_read_timeout(Some(Duration::from_millis(500)))
                    .map_err(e)?;
                while let Ok(n) = from_guest.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    stdout.write_all(&buf[..n]).map_err(e)?;
                }
                return Ok(());
            }
            let data = &buf[..n];
            if interactive && let Some(i) = data.iter().position(|&b| b == DETACH) {
                to_guest.write_all(&data[..i]).map_err(e)?;
                return Ok(());
            }
            to_guest.write_all(data).map_err(e)?;
        }
    }
}

/// The terminal in raw mode while attached, restored when dropped.
struct RawMode {
    saved: nix::sys::termios::Termios,
}

impl RawMode {
    fn enter() -> Option<RawMode> {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(
            std::io::stdin(),
            nix::sys::termios::SetArg::TCSANOW,
            &self.saved,
        );
    }
}
