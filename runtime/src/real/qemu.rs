//! QEMU processes: start in a namespace, wait for the guest, stop through QMP; a minimal QMP client.

#[allow(unused_imports)]
use super::*;

/// What starting, watching or stopping QEMU failed at.
#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    /// The plan has no image to boot.
    #[error("no image to boot (the plan checks images: plan again)")]
    NoImage,
    /// A console or agent FIFO could not be made.
    #[error("mkfifo {}: {source}", path.display())]
    Fifo {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    /// QEMU could not be started.
    #[error("start {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: io::Error,
    },
    /// QEMU exited at once (bad arguments, a device it cannot open).
    #[error("{program} exited with {status}: {stderr}")]
    Exited {
        program: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    /// The guest did not say it was ready: in time, or before QEMU exited.
    /// `console` is the console's last lines, made printable.
    #[error("{} before the guest said `{marker}`; the console's last lines:\n    {}", if *.exited { "QEMU exited".to_string() } else { format!("waited {} s", .timeout_s) }, .console.join("\n    "))]
    NotReady {
        marker: String,
        exited: bool,
        timeout_s: u64,
        console: Vec<String>,
    },
    /// The QMP socket would not connect.
    #[error("QMP socket {}: {last}", path.display())]
    QmpConnect { path: PathBuf, last: String },
    /// What answered is not QMP.
    #[error("{}: not a QMP greeting", .0.display())]
    NotQmp(PathBuf),
    /// The QMP connection closed.
    #[error("QMP connection closed")]
    QmpClosed,
    /// QMP sent something that is not JSON.
    #[error("QMP sent bad JSON: {0}")]
    QmpJson(#[source] serde_json::Error),
    /// A QMP command failed.
    #[error("QMP {command}: {desc}")]
    QmpCommand { command: String, desc: String },
    /// Reading or writing the QMP socket.
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Path(#[from] PathError),
    #[error(transparent)]
    Files(#[from] FilesError),
}

type R<T> = Result<T, QemuError>;

pub(crate) fn read_pid(pidfile: &Path) -> R<Option<i32>> {
    match fs::read_to_string(pidfile) {
        Ok(s) => Ok(s.trim().parse().ok()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PathError {
            path: pidfile.to_path_buf(),
            source,
        }
        .into()),
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
        return Err(QemuError::NoImage);
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
            nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)).map_err(
                |source| QemuError::Fifo {
                    path: p.clone(),
                    source,
                },
            )?;
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
    let out = cmd.output().map_err(|source| QemuError::Spawn {
        program: argv[0].clone(),
        source,
    })?;
    if !out.status.success() {
        return Err(QemuError::Exited {
            program: argv[0].clone(),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
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
            return Err(QemuError::NotReady {
                marker: marker.to_string(),
                exited: !alive,
                timeout_s,
                console: tail.into_iter().rev().collect(),
            });
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
                    s.set_read_timeout(Some(Duration::from_secs(10)))?;
                    let writer = s.try_clone()?;
                    let mut q = Qmp {
                        reader: BufReader::new(s),
                        writer,
                    };
                    let greeting = q.line()?;
                    if greeting.get("QMP").is_none() {
                        return Err(QemuError::NotQmp(path.to_path_buf()));
                    }
                    q.execute("qmp_capabilities")?;
                    return Ok(q);
                }
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(QemuError::QmpConnect {
            path: path.to_path_buf(),
            last,
        })
    }

    fn line(&mut self) -> R<serde_json::Value> {
        let mut buf = String::new();
        if self.reader.read_line(&mut buf)? == 0 {
            return Err(QemuError::QmpClosed);
        }
        serde_json::from_str(&buf).map_err(QemuError::QmpJson)
    }

    /// Runs a command without arguments and returns its `return` value.
    pub fn execute(&mut self, cmd: &str) -> R<serde_json::Value> {
        writeln!(self.writer, "{}", serde_json::json!({ "execute": cmd }))?;
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
                return Err(QemuError::QmpCommand {
                    command: cmd.to_string(),
                    desc: e["desc"].as_str().unwrap_or("error").to_string(),
                });
            }
        }
    }
}
