//! The distributed path: `mxc agent`, and `up`, `down` and `status` with
//! `--store`. Argument handling and rendering only; the work is in
//! `mx_pipeline::distributed` and `mx_agent`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use clap::Args;
use mx_pipeline::distributed::{self, RemoteEvent};
use mx_xir::Name;

use crate::Status;

#[derive(Args)]
pub struct AgentArgs {
    /// The store: etcd://HOST:PORT[,HOST:PORT...] (etcds:// for TLS).
    #[arg(long, value_name = "URL")]
    store: String,
    /// The facility host (or switch) this agent runs.
    #[arg(long, value_parser = crate::parse_name)]
    host: Name,
    /// Where this agent keeps its experiments' state (default:
    /// /var/lib/mx/agents/HOST).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

/// Blocks SIGINT and SIGTERM in every thread and turns them into `stop`,
/// so the agent gives its host up (revokes its lease) before it exits.
fn stop_on_signals() -> Arc<AtomicBool> {
    use nix::sys::signal::{SigSet, Signal};
    let stop = Arc::new(AtomicBool::new(false));
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    if set.thread_block().is_ok() {
        let flag = stop.clone();
        std::thread::spawn(move || {
            if set.wait().is_ok() {
                flag.store(true, Ordering::SeqCst);
            }
        });
    }
    stop
}

/// The store, or the error shown and the exit status.
fn connect(url: &str) -> Result<mx_store::Store, Status> {
    distributed::connect(url).map_err(|e| {
        eprintln!("error: {e}");
        Status::Error
    })
}

pub fn agent(args: &AgentArgs) -> Status {
    // Before any thread starts, so all of them inherit the mask.
    let stop = stop_on_signals();
    let store = match connect(&args.store) {
        Ok(s) => s,
        Err(status) => return status,
    };
    let mut rt = mx_runtime::Runtime::from_env();
    rt.root = args.state_dir.clone().unwrap_or_else(|| {
        PathBuf::from("/var/lib/mx/agents")
            .join(args.host.as_str())
            .join("run")
    });
    // Its own pins: namespace hosts share a machine's BPF filesystem, and
    // one host taking an experiment down removes the experiment's pins.
    rt.bpf = rt.bpf.join(format!("host-{}", args.host));
    let started = Instant::now();
    let mut log = |line: &str| eprintln!("[{:8.3}] {line}", started.elapsed().as_secs_f64());
    match mx_agent::serve::serve(&store, args.host.as_str(), &rt, &stop, &mut log) {
        Ok(()) => Status::Success,
        Err(e @ mx_agent::AgentError::Duplicate { .. }) => {
            eprintln!("error: {e}");
            Status::Failure
        }
        Err(e) => {
            eprintln!("error: {e}");
            Status::Error
        }
    }
}

/// `mxc up --store`: publish, then follow the agents until every task is
/// done.
pub fn up(
    request: &mx_pipeline::RealizeRequest,
    store: &str,
    show: &dyn Fn(&mx_pipeline::Realized),
    show_stop: &dyn Fn(mx_pipeline::UpStop) -> Status,
) -> Status {
    let store = match connect(store) {
        Ok(s) => s,
        Err(status) => return status,
    };
    let started = Instant::now();
    let mut total = 0usize;
    let mut done = std::collections::BTreeSet::new();
    let result = distributed::up(request, &store, &mut |e| match e {
        RemoteEvent::Published {
            realized,
            generation,
            tasks,
            hosts,
            absent,
        } => {
            show(realized);
            total = tasks;
            eprintln!(
                "published `{}` generation {generation}: {tasks} tasks on {} ({:.1} s after the start)",
                realized.realization.name,
                hosts.join(", "),
                started.elapsed().as_secs_f64()
            );
            for h in absent {
                eprintln!("note: `{h}` has no agent now; its part starts when one registers");
            }
        }
        RemoteEvent::Task { host, task, status } => {
            if status.status == "done" {
                done.insert((host.to_string(), task.to_string()));
            }
            if status.status != "running" {
                let note = if status.message.is_empty() {
                    String::new()
                } else {
                    format!(": {}", status.message.lines().next().unwrap_or(""))
                };
                eprintln!(
                    "[{:>3}/{total}] {:<5} {host}: {task} ({} ms){note}",
                    done.len(),
                    if status.status == "done" {
                        "ok"
                    } else {
                        "FAIL"
                    },
                    status.ms
                );
            }
        }
    });
    match result {
        Ok(up) => {
            eprintln!(
                "`{}` is up on {} hosts: {} tasks in {:.1} s; `mxc status {} --store URL` shows it",
                up.realized.realization.name,
                up.hosts.len(),
                up.tasks,
                started.elapsed().as_secs_f64(),
                up.realized.realization.name
            );
            Status::Success
        }
        Err(Ok(stop)) => show_stop(stop),
        Err(Err(f)) => {
            for (host, task, message) in &f.failed {
                eprintln!("error: {host}: {task} failed: {message}");
            }
            for (host, missing) in &f.late {
                eprintln!("error: {host}: {missing} tasks not done");
            }
            eprintln!(
                "help: `mxc status {} --store URL` shows every task; `mxc down {} --store URL` removes what was done",
                request.experiment.name, request.experiment.name
            );
            Status::Failure
        }
    }
}

pub fn down(name: &Name, db: &mx_pipeline::TableAt, store: &str) -> Status {
    let store = match connect(store) {
        Ok(s) => s,
        Err(status) => return status,
    };
    let started = Instant::now();
    match distributed::down(name, db, &store, &mut |_| {}) {
        Ok(d) => {
            for h in &d.dirty {
                eprintln!(
                    "warning: `{h}`: its agent is away or did not finish; it takes `{name}` down when it returns"
                );
            }
            match d.released {
                Some(Ok(())) => {
                    eprintln!(
                        "`{name}` is down on {} hosts ({:.1} s)",
                        d.clean.len(),
                        started.elapsed().as_secs_f64()
                    );
                    Status::Success
                }
                Some(Err(e)) => {
                    eprintln!("error: `{name}` is down, but its allocation remains: {e}");
                    Status::Error
                }
                None => {
                    eprintln!(
                        "`{name}` is down on {} of {} hosts; its allocation is kept until the rest are clean (run `mxc down {name} --store URL` again then)",
                        d.clean.len(),
                        d.clean.len() + d.dirty.len()
                    );
                    Status::Failure
                }
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            Status::Failure
        }
    }
}

pub fn status(name: Option<&Name>, store: &str, json: bool) -> Status {
    let store = match connect(store) {
        Ok(s) => s,
        Err(status) => return status,
    };
    let agents = mx_agent::coordinator::agents(&store).unwrap_or_default();
    let Some(name) = name else {
        let mut out = String::from("agents:\n");
        for (host, holder) in &agents {
            match holder {
                Some(h) => out.push_str(&format!("  {host:<16} pid {} on {}\n", h.pid, h.machine)),
                None => out.push_str(&format!("  {host}\n")),
            }
        }
        return crate::write_stdout(&out);
    };
    let statuses = match mx_agent::coordinator::statuses(&store, name.as_str()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Status::Error;
        }
    };
    let generation = mx_agent::coordinator::committed(&store, name.as_str())
        .ok()
        .flatten();
    if json {
        let doc = serde_json::json!({
            "experiment": name.as_str(),
            "generation": generation,
            "hosts": statuses.iter().map(|(h, ts)| (h.clone(), serde_json::json!({
                "agent": agents.contains_key(h),
                "tasks": ts,
            }))).collect::<serde_json::Map<_, _>>(),
        });
        return crate::write_stdout(&format!(
            "{}\n",
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        ));
    }
    let Some(generation) = generation else {
        eprintln!("error: experiment `{name}` is not in the store");
        return Status::Failure;
    };
    let mut out = format!("experiment `{name}` generation {generation}\n");
    for (host, tasks) in &statuses {
        let agent = if agents.contains_key(host) {
            "agent up"
        } else {
            "NO AGENT"
        };
        out.push_str(&format!("\n{host} ({agent})\n"));
        for (task, s) in tasks {
            let stale = if s.generation == generation {
                ""
            } else {
                " (older generation)"
            };
            out.push_str(&format!(
                "  {:<8} {task:<32} {:>6} ms{stale}\n",
                s.status, s.ms
            ));
        }
    }
    crate::write_stdout(&out)
}

#[derive(Args)]
pub struct StoreArgs {
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(clap::Subcommand)]
enum StoreCommand {
    /// Make a CA and certificates in DIR: the server's (valid for each
    /// --server address or name), root's, the coordinator's and one per
    /// --host for its agent. Existing ones are kept.
    Certs {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        #[arg(long = "server", value_name = "ADDR", required = true)]
        servers: Vec<String>,
        #[arg(long = "host", value_name = "NAME", value_parser = crate::parse_name)]
        hosts: Vec<Name>,
    },
    /// Create the users and roles (the coordinator: /mx/; each agent: its
    /// host's desired state to read, its host's status to write) and turn
    /// authentication on, connected as root with DIR/root.pem.
    Roles {
        /// The store, served with TLS: etcds://HOST:PORT.
        #[arg(long, value_name = "URL")]
        store: String,
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        #[arg(long = "host", value_name = "NAME", value_parser = crate::parse_name)]
        hosts: Vec<Name>,
    },
}

pub fn store_admin(args: &StoreArgs) -> Status {
    match &args.command {
        StoreCommand::Certs {
            dir,
            servers,
            hosts,
        } => {
            let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
            match mx_store::access::make_certificates(dir, servers, &hosts) {
                Ok(made) => {
                    for id in &made {
                        eprintln!("made {}", dir.join(format!("{id}.pem")).display());
                    }
                    let d = dir.display();
                    eprintln!(
                        "start etcd with: --client-cert-auth --trusted-ca-file {d}/ca.pem --cert-file {d}/server.pem --key-file {d}/server.key (and https:// client URLs)\nthen: mxc store roles --store etcds://HOST:PORT --dir {d} --host ...\nan agent uses MX_STORE_CERT={d}/agent-HOST.pem MX_STORE_KEY={d}/agent-HOST.key MX_STORE_CA={d}/ca.pem; the coordinator {d}/{}.pem",
                        mx_store::access::COORDINATOR
                    );
                    Status::Success
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Status::Error
                }
            }
        }
        StoreCommand::Roles { store, dir, hosts } => {
            let url = match mx_store::StoreUrl::parse(store) {
                Ok(u) if u.tls => u,
                Ok(_) => {
                    eprintln!(
                        "error: roles need a TLS store (etcds://): etcd takes users from client certificates"
                    );
                    return Status::Failure;
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    return Status::Failure;
                }
            };
            let root = mx_store::access::TlsFiles::in_dir(dir, mx_store::access::ROOT);
            let store = match mx_store::Store::connect_with(&url, Some(&root)) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Status::Error;
                }
            };
            let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
            match mx_store::access::grant(&store, &hosts) {
                Ok(()) => {
                    eprintln!(
                        "authentication is on: the coordinator and {} agents have their roles",
                        hosts.len()
                    );
                    Status::Success
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Status::Error
                }
            }
        }
    }
}
