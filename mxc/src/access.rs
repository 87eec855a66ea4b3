//! `mxc exec`, `cp`, `console`, `ssh` and the internal `proxy`: into the
//! guests of an experiment that is up, over their management path (the
//! guest agent's and sshd's virtio-serial ports, the serial console), never
//! the experiment network.

use mx_diag::code;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use mx_diag::Diagnostic;
use mx_runtime::{Guest, Runtime, agent};
use mx_xir::Name;

use crate::Status;

#[derive(Args)]
pub struct ExecArgs {
    /// The experiment.
    #[arg(value_parser = crate::parse_name)]
    name: Name,
    /// The node.
    node: String,
    /// End the command after this many seconds (exit status 124 or 143).
    #[arg(long, value_name = "SECS")]
    timeout: Option<u64>,
    /// The command and its arguments, each passed as it is (no shell: for
    /// pipes and redirections, run `sh -c '...'`).
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<String>,
}

#[derive(Args)]
pub struct CpArgs {
    /// The experiment.
    #[arg(value_parser = crate::parse_name)]
    name: Name,
    /// Where from: `NODE:PATH` in a guest, or a local file.
    from: String,
    /// Where to: `NODE:PATH` in a guest, or a local file or directory.
    to: String,
}

#[derive(Args)]
pub struct ConsoleArgs {
    /// The experiment.
    #[arg(value_parser = crate::parse_name)]
    name: Name,
    /// The node.
    node: String,
}

#[derive(Args)]
pub struct SshArgs {
    /// The experiment.
    #[arg(value_parser = crate::parse_name)]
    name: Name,
    /// The node.
    node: String,
    /// Print the ssh command line (for scp, rsync -e, or a config) instead
    /// of running it.
    #[arg(long)]
    print: bool,
    /// Arguments for ssh after the destination: a command to run.
    #[arg(last = true, value_name = "ARGS")]
    args: Vec<String>,
}

#[derive(Args)]
pub struct ProxyArgs {
    #[arg(value_parser = crate::parse_name)]
    name: Name,
    node: String,
}

fn fail(d: Diagnostic) -> Status {
    crate::run::show(&[d]);
    Status::Failure
}

fn guest(rt: &Runtime, name: &Name, node: &str) -> Result<Guest, Status> {
    rt.guest(name, node).map_err(fail)
}

/// The largest standard input `mxc exec` passes on (it travels in one
/// request).
const STDIN_MAX: u64 = 64 << 20;

pub fn exec(args: &ExecArgs) -> Status {
    let rt = Runtime::from_env();
    let g = match guest(&rt, &args.name, &args.node) {
        Ok(g) => g,
        Err(_) => return Status::Code(255),
    };
    let mut input = Vec::new();
    // Standard input goes to the command when it is a file or a pipe; a
    // terminal is not read (the command is not interactive: `mxc ssh` or
    // `mxc console` are).
    let stdin = std::io::stdin();
    if !stdin.is_terminal()
        && let Err(e) = stdin.lock().take(STDIN_MAX + 1).read_to_end(&mut input)
    {
        eprintln!("error: reading standard input: {e}");
        return Status::Error;
    }
    if input.len() as u64 > STDIN_MAX {
        eprintln!(
            "error: standard input is over {} MiB; copy it with `mxc cp` first",
            STDIN_MAX >> 20
        );
        return Status::Error;
    }
    let mut a = match g.agent() {
        Ok(a) => a,
        Err(d) => {
            fail(d);
            return Status::Code(255);
        }
    };
    match a.run(&args.command, &input, args.timeout.map(Duration::from_secs)) {
        Ok(out) => {
            let _ = std::io::stdout().write_all(&out.stdout);
            let _ = std::io::stdout().flush();
            let _ = std::io::stderr().write_all(&out.stderr);
            if out.truncated {
                eprintln!(
                    "mxc: the guest agent cut the command's output short (it keeps 16 MiB); write it to a file and `mxc cp` it"
                );
            }
            Status::Code(out.status.clamp(0, 255) as u8)
        }
        Err(e) => {
            fail(Diagnostic::error(code::E0406, e));
            Status::Code(255)
        }
    }
}

/// `NODE:PATH` or a local path. A local path with a colon is written
/// `./a:b`.
fn split_remote(s: &str) -> Option<(&str, &str)> {
    let (node, path) = s.split_once(':')?;
    (!node.is_empty() && !node.contains('/')).then_some((node, path))
}

pub fn cp(args: &CpArgs) -> Status {
    let rt = Runtime::from_env();
    match (split_remote(&args.from), split_remote(&args.to)) {
        (Some(_), Some(_)) => {
            eprintln!(
                "error: copy between two guests through this machine: `mxc cp` one to a local file, then to the other"
            );
            Status::Error
        }
        (None, None) => {
            eprintln!("error: neither side is in a guest; write one as NODE:PATH");
            Status::Error
        }
        (None, Some((node, path))) => {
            let g = match guest(&rt, &args.name, node) {
                Ok(g) => g,
                Err(s) => return s,
            };
            let local = Path::new(&args.from);
            let data = match std::fs::read(local) {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("error: {}: {e}", local.display());
                    return Status::Error;
                }
            };
            let mode = {
                use std::os::unix::fs::PermissionsExt;
                std::fs::metadata(local).map_or(0o644, |m| m.permissions().mode() & 0o7777)
            };
            let base = local
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "file".into());
            let path = if path.is_empty() { "." } else { path };
            let mut a = match g.agent() {
                Ok(a) => a,
                Err(d) => return fail(d),
            };
            match a.put(&data, path, &base, mode) {
                Ok(_) => Status::Success,
                Err(e) => fail(Diagnostic::error(code::E0406, format!("{node}: {e}"))),
            }
        }
        (Some((node, path)), None) => {
            let g = match guest(&rt, &args.name, node) {
                Ok(g) => g,
                Err(s) => return s,
            };
            let mut a = match g.agent() {
                Ok(a) => a,
                Err(d) => return fail(d),
            };
            let (data, mode) = match a.get(path) {
                Ok(x) => x,
                Err(e) => return fail(Diagnostic::error(code::E0406, format!("{node}:{e}"))),
            };
            let mut dest = PathBuf::from(&args.to);
            if dest.is_dir() {
                let base = Path::new(path)
                    .file_name()
                    .map(|n| n.to_os_string())
                    .unwrap_or_else(|| "file".into());
                dest = dest.join(base);
            }
            if let Err(e) = write_whole(&dest, &data, mode) {
                eprintln!("error: {}: {e}", dest.display());
                return Status::Error;
            }
            Status::Success
        }
    }
}

/// Whole or not at all (see [`mx_pipeline::output`]).
fn write_whole(dest: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    mx_pipeline::output::replace_file(dest, Some(mode & 0o777), |f| f.write_all(data))
}

pub fn console(args: &ConsoleArgs) -> Status {
    let rt = Runtime::from_env();
    let g = match guest(&rt, &args.name, &args.node) {
        Ok(g) => g,
        Err(s) => return s,
    };
    let tty = std::io::stdin().is_terminal();
    let res = mx_runtime::console::attach(&g.dir, tty, &mut || {
        if tty {
            eprintln!(
                "mxc: connected to {}'s console; Ctrl-] detaches (the VM keeps running). Press Enter for a prompt.",
                args.node
            );
        }
    });
    match res {
        Ok(()) => {
            if tty {
                eprintln!("\r\nmxc: detached from {}'s console", args.node);
            }
            Status::Success
        }
        Err(e) => fail(
            Diagnostic::error(code::E0406, format!("{}: {e}", args.node))
                .help("one `mxc console` at a time; `mxc exec` and `mxc ssh` work alongside"),
        ),
    }
}

pub fn ssh(args: &SshArgs) -> Status {
    let rt = Runtime::from_env();
    let g = match guest(&rt, &args.name, &args.node) {
        Ok(g) => g,
        Err(s) => return s,
    };
    if !g.image.as_ref().is_some_and(|i| i.ssh) {
        return fail(
            Diagnostic::error(
                code::E0406,
                format!(
                    "{}'s image ({}) runs no sshd",
                    args.node,
                    g.image.as_ref().map_or("unknown", |i| i.name.as_str())
                ),
            )
            .help(format!(
                "`mxc exec {} {} -- CMD` and `mxc console {} {}` work on every image; images with sshd: bookworm, bullseye",
                args.name, args.node, args.name, args.node
            )),
        );
    }
    let state = rt.state_dir(&args.name);
    if mx_runtime::ssh::public_key(&state).is_none() {
        return fail(
            Diagnostic::error(code::E0406, format!("experiment `{}` has no ssh key", args.name))
                .help("ssh-keygen was missing when it came up: install openssh-client, then take it down and up again"),
        );
    }
    let mxc = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("mxc"));
    let mut cmd = mx_runtime::ssh::command(
        &mxc,
        args.name.as_str(),
        &state,
        g.name.as_str(),
        &args.args,
    );
    if args.print {
        let words: Vec<String> = std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|w| agent::shell_quote(&w.to_string_lossy()))
            .collect();
        println!("{}", words.join(" "));
        return Status::Success;
    }
    use std::os::unix::process::CommandExt;
    let e = cmd.exec();
    eprintln!("error: ssh: {e} (apt-get install openssh-client)");
    Status::Error
}

/// ssh's ProxyCommand: stdin to the guest's sshd port, the port to stdout.
pub fn proxy(args: &ProxyArgs) -> Status {
    let rt = Runtime::from_env();
    let g = match guest(&rt, &args.name, &args.node) {
        Ok(g) => g,
        Err(s) => return s,
    };
    match mx_runtime::ssh::proxy(&g.dir) {
        Ok(()) => Status::Success,
        Err(e) => {
            eprintln!("mxc proxy: {e}");
            Status::Error
        }
    }
}
