//! QEMU processes: start in a namespace, wait for the guest, stop through QMP; a minimal QMP client.

#[allow(unused_imports)]
use super::*;

pub(crate) fn read_pid(pidfile: &Path) -> R<Option<i32>> {
    match fs::read_to_string(pidfile) {
        Ok(s) => Ok(s.trim().parse().ok()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", pidfile.display())),
    }
}

/// Whether the QEMU of a pid file is running.
pub fn pid_alive(pidfile: &Path) -> bool {
    read_pid(pidfile).ok().flatten().is_some_and(qemu_alive)
}

/// Whether `pid` is a live QEMU (not a zombie, not a recycled pid).
pub(crate) fn qemu_alive(pid: i32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let after = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let comm_ok =
        fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.starts_with("qemu"));
    comm_ok && !after.starts_with('Z')
}

pub(crate) fn qemu_start(
    ns: Option<&str>,
    argv: &[String],
    dir: &Path,
    fifos: &[PathBuf],
) -> R<Option<String>> {
    if let Some(pid) = read_pid(&dir.join("qemu.pid"))?
        && qemu_alive(pid)
    {
        return Ok(None);
    }
    if argv.is_empty() {
        return Err("no image to boot (the plan checks images: plan again)".into());
    }
    private_dir(dir)?;
    for f in ["qmp.sock", "console.sock", "serial.log", "qemu.pid"] {
        let _ = fs::remove_file(dir.join(f));
    }
    for base in fifos {
        for end in ["in", "out"] {
            let p = base.with_extension(end);
            // Whatever a previous QEMU left in them is stale.
            let _ = fs::remove_file(&p);
            nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600))
                .map_err(|e| format!("mkfifo {}: {e}", p.display()))?;
        }
    }
    let mut cmd = match ns {
        Some(n) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", n]);
            c.args(argv);
            c
        }
        None => {
            let mut c = Command::new(&argv[0]);
            c.args(&argv[1..]);
            c
        }
    };
    let out = cmd
        .output()
        .map_err(|e| format!("start {}: {e}", argv[0]))?;
    if !out.status.success() {
        return Err(format!(
            "{} exited with {}: {}",
            argv[0],
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(None)
}

pub(crate) fn wait_serial(log: &Path, marker: &str, timeout_s: u64) -> R<Option<String>> {
    let start = Instant::now();
    let pidfile = log.with_file_name("qemu.pid");
    loop {
        if let Ok(text) = fs::read(log)
            && String::from_utf8_lossy(&text).contains(marker)
        {
            return Ok(None);
        }
        let alive = read_pid(&pidfile)?.is_some_and(qemu_alive);
        if !alive || start.elapsed() > Duration::from_secs(timeout_s) {
            let text = fs::read(log)
                .map(|t| String::from_utf8_lossy(&t).into_owned())
                .unwrap_or_default();
            // Shown on the operator's terminal: a guest's escape
            // sequences are not passed on.
            let tail: Vec<String> = text
                .lines()
                .rev()
                .take(8)
                .map(crate::bundle::printable)
                .collect();
            let tail: Vec<String> = tail.into_iter().rev().collect();
            return Err(format!(
                "{} before the guest said `{marker}`; the console's last lines:\n    {}",
                if alive {
                    format!("waited {timeout_s} s")
                } else {
                    "QEMU exited".to_string()
                },
                tail.join("\n    ")
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn qemu_stop(socket: &Path, pidfile: &Path) -> R<Option<String>> {
    let Some(pid) = read_pid(pidfile)? else {
        return Ok(None);
    };
    if !qemu_alive(pid) {
        return Ok(None);
    }
    if let Ok(mut q) = Qmp::connect(socket) {
        let _ = q.execute("quit");
    }
    let start = Instant::now();
    while qemu_alive(pid) && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    if qemu_alive(pid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let start = Instant::now();
        while qemu_alive(pid) && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        return Ok(Some(format!("QEMU {pid} did not quit through QMP; killed")));
    }
    Ok(None)
}

/// A minimal QMP client: the greeting, `qmp_capabilities`, then commands,
/// skipping asynchronous events.
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    /// Connects and negotiates capabilities.
    pub fn connect(path: &Path) -> R<Qmp> {
        let mut last = String::new();
        for _ in 0..100 {
            match UnixStream::connect(path) {
                Ok(s) => {
                    s.set_read_timeout(Some(Duration::from_secs(10)))
                        .map_err(io_err)?;
                    let writer = s.try_clone().map_err(io_err)?;
                    let mut q = Qmp {
                        reader: BufReader::new(s),
                        writer,
                    };
                    let greeting = q.line()?;
                    if greeting.get("QMP").is_none() {
                        return Err(format!("{}: not a QMP greeting", path.display()));
                    }
                    q.execute("qmp_capabilities")?;
                    return Ok(q);
                }
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("QMP socket {}: {last}", path.display()))
    }

    fn line(&mut self) -> R<serde_json::Value> {
        let mut buf = String::new();
        if self.reader.read_line(&mut buf).map_err(io_err)? == 0 {
            return Err("QMP connection closed".into());
        }
        serde_json::from_str(&buf).map_err(|e| format!("QMP sent bad JSON: {e}"))
    }

    /// Runs a command without arguments and returns its `return` value.
    pub fn execute(&mut self, cmd: &str) -> R<serde_json::Value> {
        writeln!(self.writer, "{}", serde_json::json!({ "execute": cmd })).map_err(io_err)?;
        loop {
            let v = match self.line() {
                // `quit` may close the socket before it answers.
                Err(_) if cmd == "quit" => return Ok(serde_json::Value::Null),
                other => other?,
            };
            if v.get("event").is_some() {
                continue;
            }
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                return Err(format!(
                    "QMP {cmd}: {}",
                    e["desc"].as_str().unwrap_or("error")
                ));
            }
        }
    }
}
