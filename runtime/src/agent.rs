//! The management path into a guest: the QEMU guest agent protocol (QGA)
//! on the virtio-serial port `org.qemu.guest_agent.0`, which `mxc exec`
//! and `mxc cp` speak.
//!
//! QEMU joins the port to a FIFO pair in the VM's directory (`qga.in`,
//! `qga.out`; see [`crate::plan::qemu_argv`]). A FIFO, not a socket: the
//! guest sees its port connected all the time, so its agent blocks reading
//! rather than polling for a client. The price is that nothing tells the
//! guest a client went away, so every call is one exclusive transaction
//! (a lock file next to the FIFOs), and when the one before it did not read
//! its reply (its client died) it first syncs on a fresh id, skipping
//! whatever was left unread.
//!
//! The guest runs qemu-ga (Debian images) or mx-agent (the busybox guest's
//! shell version of the same commands, `images/guest/mx-agent`). Both get
//! the same requests: `guest-exec` of `/bin/sh -c SCRIPT`, where SCRIPT
//! holds the user's command base64-encoded, so it carries no quote and no
//! backslash (mx-agent reads requests without a JSON parser).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use nix::fcntl::{Flock, FlockArg};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use serde_json::{Value, json};

/// How long a guest has to answer one request (not the command it runs).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// The bytes of a file one `guest-exec` carries: well under qemu-ga's
/// limits (64 MiB JSON tokens, 16 MiB captured output), and small enough
/// for a guest with little memory to hold base64-encoded.
pub const CHUNK: usize = 1 << 20;

/// A command's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    /// Its exit status (128 + the signal's number when a signal ended it).
    pub status: i32,
    /// Its standard output.
    pub stdout: Vec<u8>,
    /// Its standard error.
    pub stderr: Vec<u8>,
    /// The agent cut the output short (qemu-ga keeps at most 16 MiB).
    pub truncated: bool,
}

/// A connection to one guest's agent.
pub struct Agent {
    tx: File,
    rx: File,
    lock: PathBuf,
    buf: Vec<u8>,
    name: String,
    /// The agent parses JSON fully (qemu-ga): a script with quotes or
    /// backslashes goes as it is rather than through base64. Cleared when
    /// the agent turns out to be mx-agent.
    pub full_json: bool,
}

/// The agent's FIFO pair and lock in a VM's directory.
fn paths(vm_dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    (
        vm_dir.join("qga.in"),
        vm_dir.join("qga.out"),
        vm_dir.join("qga.lock"),
    )
}

impl Agent {
    /// Opens the agent channel of the VM whose directory is `vm_dir`;
    /// `name` is how errors name the VM.
    pub fn open(vm_dir: &Path, name: &str) -> Result<Agent, String> {
        let (tx, rx, lock) = paths(vm_dir);
        if !tx.exists() {
            return Err(format!(
                "{name} has no agent channel ({} is missing): it was brought up by an older mx; take the experiment down and up again",
                tx.display()
            ));
        }
        // Non-blocking open: a FIFO nobody reads (QEMU is gone) is ENXIO,
        // not a hang.
        let tx = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&tx)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ENXIO) => format!("{name} is not running (its QEMU is gone)"),
                _ => format!("{}: {e}", tx.display()),
            })?;
        set_blocking(&tx)?;
        let rx = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&rx)
            .map_err(|e| format!("{}: {e}", rx.display()))?;
        Ok(Agent {
            tx,
            rx,
            lock,
            buf: Vec::new(),
            name: name.to_string(),
            full_json: true,
        })
    }

    /// One request and its reply, alone on the channel: a sync first, and
    /// the request once the guest has answered it, so a request never
    /// waits in the channel to run long after its caller gave up (what
    /// starts commands goes this way).
    pub fn call(&mut self, execute: &str, arguments: Value) -> Result<Value, String> {
        self.transact(execute, arguments, false)
    }

    /// Like [`Agent::call`], with the sync and the request sent together:
    /// one round trip, for requests that are harmless if late (reads).
    pub fn query(&mut self, execute: &str, arguments: Value) -> Result<Value, String> {
        self.transact(execute, arguments, true)
    }

    fn transact(
        &mut self,
        execute: &str,
        arguments: Value,
        pipelined: bool,
    ) -> Result<Value, String> {
        use std::os::unix::fs::FileExt;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(&self.lock)
            .map_err(|e| format!("{}: {e}", self.lock.display()))?;
        let held = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| format!("{}: {e}", self.lock.display()))?;
        // The lock file's one byte says whether the last transaction read
        // its reply (`c`); if it did not (its client died), the channel may
        // hold a stale reply, and a sync on a fresh id skips it.
        let mut mark = [0u8; 1];
        let clean = held.read_at(&mut mark, 0).ok() == Some(1) && mark[0] == b'c';
        let lock = self.lock.clone();
        let set = |m: &[u8]| {
            held.write_at(m, 0)
                .map_err(|e| format!("{}: {e}", lock.display()))
        };
        set(b"b")?;
        let mut req = json!({ "execute": execute });
        if !arguments.is_null() {
            req["arguments"] = arguments;
        }
        if clean {
            self.send(&[&req])?;
        } else {
            let id = sync_id();
            let sync = json!({"execute": "guest-sync", "arguments": {"id": id}});
            if pipelined {
                self.send(&[&sync, &req])?;
                self.synced(id)?;
            } else {
                self.send(&[&sync])?;
                self.synced(id)?;
                self.send(&[&req])?;
            }
        }
        let reply = self.recv(Instant::now() + REPLY_TIMEOUT)?;
        set(b"c")?;
        if let Some(r) = reply.get("return") {
            return Ok(r.clone());
        }
        let desc = reply
            .pointer("/error/desc")
            .and_then(Value::as_str)
            .unwrap_or("no reply");
        Err(format!(
            "{}'s agent refused {execute}: {}",
            self.name,
            crate::bundle::printable(desc)
        ))
    }

    /// Reads until the guest echoes sync `id`: whatever an interrupted
    /// client left on the channel is skipped.
    fn synced(&mut self, id: u64) -> Result<(), String> {
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            let v = self.recv(deadline).map_err(|e| {
                format!("{e} (the guest may still be booting: `mxc status` shows whether it is up)")
            })?;
            if v.get("return").and_then(Value::as_u64) == Some(id) {
                return Ok(());
            }
        }
    }

    fn send(&mut self, requests: &[&Value]) -> Result<(), String> {
        let mut lines = Vec::new();
        for v in requests {
            serde_json::to_writer(&mut lines, v).map_err(|e| e.to_string())?;
            lines.push(b'\n');
        }
        self.tx
            .write_all(&lines)
            .map_err(|e| format!("writing to {}'s agent: {e}", self.name))
    }

    /// The next JSON line from the guest. Lines that are not JSON (a guest
    /// agent starting up may print garbage) are skipped.
    fn recv(&mut self, deadline: Instant) -> Result<Value, String> {
        loop {
            while let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_matches(|c: char| c.is_whitespace() || c == '\u{ff}');
                if text.is_empty() {
                    continue;
                }
                if let Ok(v) = serde_json::from_str::<Value>(text) {
                    return Ok(v);
                }
            }
            if self.buf.len() > 256 << 20 {
                return Err(format!("{}'s agent sent a line over 256 MiB", self.name));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "{}'s agent did not answer within {} s",
                    self.name,
                    REPLY_TIMEOUT.as_secs()
                ));
            }
            let ms = left.as_millis().min(60_000) as i32;
            let mut fds = [PollFd::new(self.rx.as_fd(), PollFlags::POLLIN)];
            let _ = poll(
                &mut fds,
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
            );
            let mut chunk = [0u8; 65536];
            match self.rx.read(&mut chunk) {
                Ok(0) => std::thread::sleep(Duration::from_millis(5)),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("reading from {}'s agent: {e}", self.name)),
            }
        }
    }

    /// Checks the agent answers.
    pub fn ping(&mut self) -> Result<(), String> {
        self.query("guest-ping", Value::Null).map(|_| ())
    }

    /// Runs `script` with `sh` in the guest (as root, in /root, a usual
    /// PATH), `input` on its standard input, and waits for it to end (at
    /// most `timeout`, after which the guest's `timeout` ends it).
    pub fn exec(
        &mut self,
        script: &str,
        input: &[u8],
        timeout: Option<Duration>,
    ) -> Result<Output, String> {
        // One line, so that a plain command needs no escape in JSON.
        let body = format!(
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin;HOME=/root;export PATH HOME;cd /root 2>/dev/null||cd /;{script}"
        );
        let body = match timeout {
            Some(t) => format!(
                "exec timeout {} sh -c {}",
                t.as_secs().max(1),
                shell_quote(&body)
            ),
            None => body,
        };
        let mut args = json!({
            "path": "/bin/sh",
            "capture-output": true,
        });
        if !input.is_empty() {
            args["input-data"] = Value::String(B64.encode(input));
        }
        // The script as it is: one shell and the command, the quickest
        // under TCG, where every program a guest starts costs milliseconds.
        // mx-agent takes it only without quotes and backslashes (it reads
        // JSON without a parser); otherwise, or if the agent refuses,
        // the script goes base64-encoded through a file.
        let plain = !body.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20);
        let mut started = None;
        if plain || self.full_json {
            args["arg"] = json!(["-c", body]);
            match self.call("guest-exec", args.clone()) {
                Ok(v) => started = Some(v),
                Err(e) if plain => return Err(e),
                Err(_) => self.full_json = false,
            }
        }
        let started = match started {
            Some(v) => v,
            None => {
                let wrapper = format!(
                    "f=/run/.mx-exec.$$;printf %s {}|base64 -d>$f;sh $f;r=$?;rm -f $f;exit $r",
                    B64.encode(&body)
                );
                args["arg"] = json!(["-c", wrapper]);
                self.call("guest-exec", args)?
            }
        };
        self.wait(&started)
    }

    /// The environment commands run with: root's, in its home directory
    /// (qemu-ga runs there in mx's images).
    const ENV: [&str; 5] = [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME=/root",
        "USER=root",
        "LOGNAME=root",
        "SHELL=/bin/sh",
    ];

    /// Runs the command `argv` (the program, found on PATH, and its
    /// arguments, each passed as it is), as [`Agent::exec`] runs a script.
    /// qemu-ga starts the program itself, with no shell in between: under
    /// TCG that is tens of milliseconds sooner.
    pub fn run(
        &mut self,
        argv: &[String],
        input: &[u8],
        timeout: Option<Duration>,
    ) -> Result<Output, String> {
        if !self.full_json || argv.is_empty() {
            return self.exec(&argv_script(argv), input, timeout);
        }
        let mut words: Vec<String> = Vec::new();
        if let Some(t) = timeout {
            words.extend(["timeout".into(), t.as_secs().max(1).to_string()]);
        }
        words.extend(argv.iter().cloned());
        let mut args = json!({
            "path": words[0],
            "arg": words[1..],
            "env": Self::ENV,
            "capture-output": true,
        });
        if !input.is_empty() {
            args["input-data"] = Value::String(B64.encode(input));
        }
        match self.call("guest-exec", args) {
            Ok(started) => self.wait(&started),
            // qemu-ga could not start it: as a shell says so.
            Err(e) if e.contains("Failed to execute child process") => {
                let status = if e.contains("Permission denied") {
                    126
                } else {
                    127
                };
                // "... child process “X” (No such file or directory)'"
                let why = e
                    .rsplit_once(" (")
                    .and_then(|(_, w)| w.split_once(')'))
                    .map_or("not found", |(w, _)| w);
                Ok(Output {
                    status,
                    stdout: Vec::new(),
                    stderr: format!("{}: {why}\n", words[0]).into_bytes(),
                    truncated: false,
                })
            }
            // Not qemu-ga after all (mx-agent runs scripts only).
            Err(_) => {
                self.full_json = false;
                self.exec(&argv_script(argv), input, timeout)
            }
        }
    }

    /// Waits for the command `started` (guest-exec's reply) to end.
    fn wait(&mut self, started: &Value) -> Result<Output, String> {
        let pid = started
            .get("pid")
            .and_then(Value::as_i64)
            .ok_or_else(|| format!("{}'s agent gave no pid for guest-exec", self.name))?;
        // Short commands end within tens of milliseconds: look often at
        // first, then less and less.
        let mut wait = Duration::from_millis(1);
        let started = Instant::now();
        loop {
            let st = self.query("guest-exec-status", json!({ "pid": pid }))?;
            if st.get("exited").and_then(Value::as_bool) == Some(true) {
                let data = |k: &str| -> Result<Vec<u8>, String> {
                    match st.get(k).and_then(Value::as_str) {
                        None => Ok(Vec::new()),
                        Some(s) => B64
                            .decode(s)
                            .map_err(|e| format!("{}'s agent sent bad {k}: {e}", self.name)),
                    }
                };
                let status = match (
                    st.get("exitcode").and_then(Value::as_i64),
                    st.get("signal").and_then(Value::as_i64),
                ) {
                    (Some(c), _) => c as i32,
                    (None, Some(s)) => 128 + s as i32,
                    (None, None) => 255,
                };
                return Ok(Output {
                    status,
                    stdout: data("out-data")?,
                    stderr: data("err-data")?,
                    truncated: st.get("out-truncated").and_then(Value::as_bool) == Some(true)
                        || st.get("err-truncated").and_then(Value::as_bool) == Some(true),
                });
            }
            std::thread::sleep(wait);
            wait = if started.elapsed() < Duration::from_millis(100) {
                Duration::from_millis(3)
            } else {
                (wait * 3 / 2).min(Duration::from_millis(100))
            };
        }
    }

    /// Copies `data` into the guest as `path` (into it, if `path` is a
    /// directory), with `mode`; returns the path written. The file appears
    /// whole or not at all (written beside it, then renamed).
    pub fn put(
        &mut self,
        data: &[u8],
        path: &str,
        name: &str,
        mode: u32,
    ) -> Result<String, String> {
        let q = shell_quote;
        let first = self.exec(
            &format!(
                "set -e\nd={}\nif [ -d \"$d\" ]; then d=\"${{d%/}}/\"{}; fi\n: >\"$d.mx-part\"\nprintf '%s\\n' \"$d\"",
                q(path),
                q(name)
            ),
            &[],
            None,
        )?;
        check(&first, &format!("cannot write {path}"))?;
        let dest = String::from_utf8_lossy(&first.stdout)
            .trim_end()
            .to_string();
        let part = format!("{dest}.mx-part");
        for chunk in data.chunks(CHUNK) {
            let o = self.exec(&format!("cat >>{}", q(&part)), chunk, None)?;
            check(&o, &format!("cannot write {dest}"))?;
        }
        let o = self.exec(
            &format!(
                "chmod {mode:o} {p} && mv -f {p} {d}",
                p = q(&part),
                d = q(&dest)
            ),
            &[],
            None,
        )?;
        check(&o, &format!("cannot write {dest}"))?;
        Ok(dest)
    }

    /// Reads the guest's file `path` whole, and its mode.
    pub fn get(&mut self, path: &str) -> Result<(Vec<u8>, u32), String> {
        let q = shell_quote(path);
        let o = self.exec(
            &format!(
                "if [ -d {q} ]; then echo 'is a directory (copy a tar of it: mxc exec ... -- tar -C DIR -cf /tmp/x.tar .)' >&2; exit 2; fi\n[ -f {q} ] || {{ echo 'no such file' >&2; exit 2; }}\nwc -c <{q}\nstat -c %a {q} 2>/dev/null || echo 644"
            ),
            &[],
            None,
        )?;
        check(&o, path)?;
        let text = String::from_utf8_lossy(&o.stdout);
        let mut lines = text.lines();
        let size: usize = lines
            .next()
            .and_then(|l| l.trim().parse().ok())
            .ok_or_else(|| format!("cannot read the size of {path}"))?;
        let mode = lines
            .next()
            .and_then(|l| u32::from_str_radix(l.trim(), 8).ok())
            .unwrap_or(0o644);
        let mut data = Vec::with_capacity(size);
        let mut i = 0;
        while data.len() < size {
            let o = self.exec(
                &format!("dd if={q} bs={CHUNK} skip={i} count=1 2>/dev/null"),
                &[],
                None,
            )?;
            check(&o, path)?;
            if o.stdout.is_empty() {
                break;
            }
            data.extend_from_slice(&o.stdout);
            i += 1;
        }
        if data.len() != size {
            return Err(format!(
                "{path} changed while it was copied ({size} bytes, then {})",
                data.len()
            ));
        }
        Ok((data, mode))
    }
}

fn check(o: &Output, what: &str) -> Result<(), String> {
    if o.status == 0 {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&o.stderr);
    Err(format!(
        "{what}: {}",
        crate::bundle::printable(err.trim()).trim()
    ))
}

pub(crate) fn set_blocking(f: &File) -> Result<(), String> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = fcntl(f, FcntlArg::F_GETFL).map_err(|e| e.to_string())?;
    let flags = OFlag::from_bits_truncate(flags) & !OFlag::O_NONBLOCK;
    fcntl(f, FcntlArg::F_SETFL(flags)).map_err(|e| e.to_string())?;
    Ok(())
}

/// A sync id no earlier client used: the process and the clock.
fn sync_id() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    // Within JSON's exact integers (2^53), as qemu-ga echoes it.
    ((u64::from(std::process::id()) << 32) ^ t) & ((1 << 53) - 1)
}

/// `s` as one shell word.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./=:,+@%".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// A command line of words, each passed as it is.
pub fn argv_script(argv: &[String]) -> String {
    argv.iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_so_the_shell_gives_them_back() {
        for w in [
            "plain",
            "two words",
            "it's",
            "$HOME",
            "a\"b\\c",
            "",
            "*",
            "-n",
        ] {
            let out = std::process::Command::new("sh")
                .args(["-c", &format!("printf '%s' {}", shell_quote(w))])
                .output()
                .expect("sh runs");
            assert_eq!(String::from_utf8_lossy(&out.stdout), w);
        }
    }

    #[test]
    fn sync_ids_fit_a_json_number() {
        assert!(sync_id() < 1 << 53);
    }
}
