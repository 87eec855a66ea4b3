//! The real executor: netlink (rtnetlink) for links, addresses and flood
//! entries, an ioctl for taps, aya for XDP, QEMU with QMP, cgroup files, and
//! `tc` for shaping (netlink-packet-route has no token bucket). Every
//! operation is idempotent: create if absent, accept what is already there,
//! and deleting what is gone succeeds.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt};
use nix::sched::{CloneFlags, setns, unshare};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, LinkVxlan};

use crate::exec::{Context, Executor};
use crate::plan::Op;

/// Where named namespaces are mounted (as `ip netns` does).
pub const NETNS_DIR: &str = "/run/netns";

/// The XDP redirect program, built by build.rs (empty without clang).
static XDP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdp_redirect.o"));

/// One netlink connection per namespace, kept for the whole run: its
/// socket lives in the namespace it was opened in.
struct Conn {
    handle: Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The machine.
#[derive(Default)]
pub struct Real {
    conns: Mutex<BTreeMap<Option<String>, std::sync::Arc<Conn>>>,
    /// Namespaces are created and removed one at a time: two hosts' tasks
    /// both ensure the shared underlay namespace.
    netns: Mutex<()>,
}

type R<T> = Result<T, String>;

fn io_err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn nl_errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

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

fn ns_exists(ns: &str) -> bool {
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

fn is_mounted(path: &Path) -> bool {
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

impl Real {
    /// A connection into `ns`, opened on first use.
    fn conn(&self, ns: Option<&str>) -> R<std::sync::Arc<Conn>> {
        let key = ns.map(str::to_string);
        let mut conns = self.conns.lock().map_err(|_| "connection table poisoned")?;
        if let Some(c) = conns.get(&key) {
            return Ok(c.clone());
        }
        if let Some(n) = ns
            && !ns_exists(n)
        {
            return Err(format!("namespace {n} does not exist"));
        }
        let (htx, hrx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let nsname = key.clone();
        let thread = std::thread::spawn(move || {
            let setup = || -> R<tokio::runtime::Runtime> {
                if let Some(n) = &nsname {
                    let target = fs::File::open(Path::new(NETNS_DIR).join(n)).map_err(io_err)?;
                    setns(&target, CloneFlags::CLONE_NEWNET).map_err(io_err)?;
                }
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(io_err)
            };
            let rt = match setup() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = htx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                match rtnetlink::new_connection() {
                    Ok((conn, handle, _)) => {
                        tokio::spawn(conn);
                        let _ = htx.send(Ok(handle));
                        let _ = stop_rx.await;
                    }
                    Err(e) => {
                        let _ = htx.send(Err(e.to_string()));
                    }
                }
            });
        });
        let handle = hrx.recv().map_err(|_| "netlink thread died")??;
        let c = std::sync::Arc::new(Conn {
            handle,
            stop: Some(stop_tx),
            thread: Some(thread),
        });
        conns.insert(key, c.clone());
        Ok(c)
    }

    /// Closes the connection into `ns` (before the namespace is deleted, so
    /// that no socket keeps it alive).
    fn forget(&self, ns: &str) {
        if let Ok(mut c) = self.conns.lock() {
            c.remove(&Some(ns.to_string()));
        }
    }

    fn nl<T, F>(&self, ns: Option<&str>, f: impl FnOnce(Handle) -> F) -> R<T>
    where
        F: std::future::Future<Output = Result<T, rtnetlink::Error>>,
    {
        let c = self.conn(ns)?;
        futures_executor::block_on(f(c.handle.clone())).map_err(|e| match nl_errno(&e) {
            Some(n) => io::Error::from_raw_os_error(n).to_string(),
            None => e.to_string(),
        })
    }

    fn index(&self, ns: Option<&str>, name: &str) -> R<Option<u32>> {
        self.nl(ns, |h| async move { link_index(&h, name).await })
    }

    fn need_index(&self, ns: Option<&str>, name: &str) -> R<u32> {
        self.index(ns, name)?.ok_or_else(|| {
            format!(
                "no device `{name}`{}",
                ns.map(|n| format!(" in {n}")).unwrap_or_default()
            )
        })
    }

    fn set(
        &self,
        ns: Option<&str>,
        name: &str,
        f: impl FnOnce(
            rtnetlink::LinkMessageBuilder<LinkUnspec>,
        ) -> rtnetlink::LinkMessageBuilder<LinkUnspec>,
    ) -> R<()> {
        let idx = self.need_index(ns, name)?;
        let msg = f(LinkUnspec::new_with_index(idx)).build();
        self.nl(ns, |h| async move { h.link().set(msg).execute().await })
    }

    /// Whether the experiment whose device group is `group` has a device
    /// `name`: `Some(index)` if so, `None` if no device has that name, and
    /// an error if one does that is not in the group: a device mx did not
    /// create for this experiment is never adopted, changed or deleted.
    fn owned(&self, ns: Option<&str>, name: &str, group: u32) -> R<Option<u32>> {
        match self.nl(ns, |h| async move { link_group(&h, name).await })? {
            None => Ok(None),
            Some((idx, g)) if g == group => Ok(Some(idx)),
            Some((_, g)) => Err(format!(
                "device `{name}`{} exists and is not this experiment's (device group {g:#x}, not {group:#x}); it was left alone",
                ns.map(|n| format!(" in {n}")).unwrap_or_default()
            )),
        }
    }

    /// Adds a link unless the experiment has it already (see
    /// [`Real::owned`]). `msg` must set `group`, so that creation and
    /// ownership are one atomic step.
    fn add_link(
        &self,
        ns: Option<&str>,
        name: &str,
        group: u32,
        msg: rtnetlink::packet_route::link::LinkMessage,
    ) -> R<()> {
        if self.owned(ns, name, group)?.is_some() {
            return Ok(());
        }
        let r = self.nl(ns, |h| async move { h.link().add(msg).execute().await });
        match r {
            // Made meanwhile: by a concurrent task of ours, or by someone else.
            Err(e) if e.contains("File exists") => self.owned(ns, name, group).map(|_| ()),
            other => other,
        }
    }
}

fn link_name(m: &rtnetlink::packet_route::link::LinkMessage) -> String {
    m.attributes
        .iter()
        .find_map(|a| match a {
            rtnetlink::packet_route::link::LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// The index and device group of the link named `name`, if there is one.
async fn link_group(h: &Handle, name: &str) -> Result<Option<(u32, u32)>, rtnetlink::Error> {
    let mut links = h.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(msg)) => {
            let group = msg
                .attributes
                .iter()
                .find_map(|a| match a {
                    rtnetlink::packet_route::link::LinkAttribute::Group(g) => Some(*g),
                    _ => None,
                })
                .unwrap_or(0);
            Ok(Some((msg.header.index, group)))
        }
        Ok(None) => Ok(None),
        Err(e) if nl_errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(e),
    }
}

async fn link_index(h: &Handle, name: &str) -> Result<Option<u32>, rtnetlink::Error> {
    let mut links = h.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(msg)) => Ok(Some(msg.header.index)),
        Ok(None) => Ok(None),
        Err(e) if nl_errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(e),
    }
}

async fn fdb_append_default(
    h: &Handle,
    vx_idx: u32,
    remote: Ipv4Addr,
) -> Result<(), rtnetlink::Error> {
    use rtnetlink::packet_core::{
        NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
    };
    use rtnetlink::packet_route::neighbour::{
        NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
    };
    use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
    let mut m = NeighbourMessage::default();
    m.header.family = AddressFamily::Bridge;
    m.header.ifindex = vx_idx;
    m.header.state = NeighbourState::Permanent;
    // NTF_SELF: the entry is the VXLAN device's own, not its bridge's.
    m.header.flags = NeighbourFlags::Own;
    m.attributes
        .push(NeighbourAttribute::LinkLayerAddress(vec![0u8; 6]));
    m.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
            remote,
        )));
    let mut req = NetlinkMessage::from(RouteNetlinkMessage::NewNeighbour(m));
    req.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND;
    let mut h = h.clone();
    let mut resp = h.request(req)?;
    while let Some(msg) = resp.next().await {
        if let NetlinkPayload::Error(e) = msg.payload
            && e.code.is_some()
        {
            return Err(rtnetlink::Error::NetlinkError(e));
        }
    }
    Ok(())
}

fn parse_cidr(c: &str) -> R<(Ipv4Addr, u8)> {
    let (ip, len) = c
        .split_once('/')
        .ok_or_else(|| format!("`{c}` is not an address/prefix"))?;
    Ok((
        ip.parse()
            .map_err(|_| format!("`{ip}` is not an IPv4 address"))?,
        len.parse()
            .map_err(|_| format!("`{len}` is not a prefix length"))?,
    ))
}

impl Executor for Real {
    fn run(&self, op: &Op, ctx: &Context) -> R<Option<String>> {
        let nsr = |n: &Option<String>| n.clone();
        match op {
            Op::NetnsAdd { name } => {
                let _g = self.netns.lock().map_err(|_| "namespace lock poisoned")?;
                netns_add(name).map(|()| None)
            }
            Op::NetnsRelease { name, shared_by } => {
                let _g = self.netns.lock().map_err(|_| "namespace lock poisoned")?;
                if let Some(other) = crate::others_using(&ctx.root, &ctx.experiment, shared_by) {
                    return Ok(Some(format!(
                        "namespace {name} kept: experiment `{other}` uses it"
                    )));
                }
                if shared_by.is_empty() && ns_exists(name) {
                    // The underlay goes when no host is attached to it any
                    // more (each host's task detaches its own veth first, so
                    // whichever task detaches the last one removes it).
                    let attached: Vec<String> = self.nl(Some(name), |h| async move {
                        h.link()
                            .get()
                            .execute()
                            .map_ok(|m| link_name(&m))
                            .try_collect()
                            .await
                    })?;
                    let hosts: Vec<&String> = attached
                        .iter()
                        .filter(|n| {
                            n.as_str() != "lo" && n.as_str() != crate::plan::UNDERLAY_BRIDGE
                        })
                        .collect();
                    if !hosts.is_empty() {
                        return Ok(None);
                    }
                }
                self.forget(name);
                netns_del(name).map(|()| None)
            }
            Op::Bridge { ns, name, group } => {
                let mut b = LinkBridge::new(name);
                if *group != 0 {
                    b = b.link_group(*group);
                }
                self.add_link(ns.as_deref(), name, *group, b.build())?;
                Ok(None)
            }
            Op::Veth {
                ns,
                name,
                peer,
                peer_ns,
                mtu,
            } => {
                let ns = ns.as_deref();
                if self.index(ns, name)?.is_none() {
                    let mut msg = LinkVeth::new(name, peer).mtu(*mtu).build();
                    let _keep;
                    if let Some(p) = peer_ns {
                        use rtnetlink::packet_route::link::{
                            InfoData, InfoVeth, LinkAttribute, LinkInfo,
                        };
                        use std::os::fd::AsRawFd;
                        let f = fs::File::open(Path::new(NETNS_DIR).join(p)).map_err(io_err)?;
                        let peer_msg = LinkUnspec::new_with_name(peer)
                            .setns_by_fd(f.as_raw_fd())
                            .mtu(*mtu)
                            .build();
                        _keep = f;
                        for a in msg.attributes.iter_mut() {
                            if let LinkAttribute::LinkInfo(infos) = a {
                                for i in infos.iter_mut() {
                                    if let LinkInfo::Data(d) = i {
                                        *d = InfoData::Veth(InfoVeth::Peer(peer_msg.clone()));
                                    }
                                }
                            }
                        }
                    }
                    self.add_link(ns, name, 0, msg)?;
                }
                Ok(None)
            }
            Op::Vxlan {
                ns,
                name,
                vni,
                local,
                port,
                dev,
                group,
            } => {
                let ns = ns.as_deref();
                let local: Ipv4Addr = local
                    .parse()
                    .map_err(|_| format!("bad local address {local}"))?;
                let mut b = LinkVxlan::new(name, *vni)
                    .port(*port)
                    .local(local)
                    .learning(false)
                    .link_group(*group);
                if let Some(d) = dev {
                    b = b.dev(self.need_index(ns, d)?);
                }
                self.add_link(ns, name, *group, b.build())?;
                Ok(None)
            }
            Op::FloodAdd { ns, dev, remote } => {
                let ns = ns.as_deref();
                let idx = self.need_index(ns, dev)?;
                let ip: Ipv4Addr = remote.parse().map_err(|_| format!("bad remote {remote}"))?;
                self.nl(ns, |h| async move { fdb_append_default(&h, idx, ip).await })?;
                Ok(None)
            }
            Op::Tap { ns, name, group } => {
                let ns = ns.as_deref();
                if self.owned(ns, name, *group)?.is_none() {
                    // Exclusive: an existing device of that name (made since
                    // the check) makes this fail rather than be attached to.
                    in_ns(ns, || {
                        crate::tap::create(name).map_err(|e| format!("create tap {name}: {e}"))
                    })?;
                    self.set(ns, name, |l| l.link_group(*group))?;
                }
                Ok(None)
            }
            Op::SetMaster { ns, name, master } => {
                let ns = ns.as_deref();
                let m = self.need_index(ns, master)?;
                self.set(ns, name, |l| l.controller(m).up())?;
                Ok(None)
            }
            Op::SetMtu { ns, name, mtu } => self
                .set(ns.as_deref(), name, |l| l.mtu(*mtu))
                .map(|()| None),
            Op::SetUp { ns, name } => self.set(ns.as_deref(), name, |l| l.up()).map(|()| None),
            Op::AddrAdd { ns, name, cidr } => {
                let ns = ns.as_deref();
                let (ip, len) = parse_cidr(cidr)?;
                let idx = self.need_index(ns, name)?;
                match self.nl(ns, |h| async move {
                    h.address()
                        .add(idx, std::net::IpAddr::V4(ip), len)
                        .execute()
                        .await
                }) {
                    Err(e) if e.contains("File exists") => Ok(None),
                    other => other.map(|()| None),
                }
            }
            Op::LinkDel { ns, name, group } => {
                if let Some(n) = ns
                    && !ns_exists(n)
                {
                    return Ok(None);
                }
                let ns = nsr(ns);
                let found = match group {
                    Some(g) => self.owned(ns.as_deref(), name, *g),
                    None => self.index(ns.as_deref(), name),
                };
                let idx = match found {
                    Ok(Some(i)) => i,
                    Ok(None) => return Ok(None),
                    // Someone else's device of that name: ours is gone.
                    Err(e) if e.contains("is not this experiment's") => return Ok(Some(e)),
                    // The namespace went meanwhile, and the device with it.
                    Err(_) if ns.as_deref().is_some_and(|n| !ns_exists(n)) => return Ok(None),
                    Err(e) => return Err(e),
                };
                match self.nl(ns.as_deref(), |h| async move {
                    h.link().del(idx).execute().await
                }) {
                    Err(e) if e.contains("No such device") => Ok(None),
                    other => other.map(|()| None),
                }
            }
            Op::LinkGroupDel { ns, group } => {
                if let Some(n) = ns
                    && !ns_exists(n)
                {
                    return Ok(None);
                }
                let mut msg = rtnetlink::packet_route::link::LinkMessage::default();
                msg.attributes
                    .push(rtnetlink::packet_route::link::LinkAttribute::Group(*group));
                match self.nl(ns.as_deref(), |h| async move {
                    h.link().del_with_message(msg).execute().await
                }) {
                    Err(e) if e.contains("No such device") => Ok(None),
                    other => other.map(|()| None),
                }
            }
            Op::XdpPair { ns, a, b, pin } => xdp_pair(ns.as_deref(), a, b, pin).map(|()| None),
            Op::XdpUnpin { pin } => match fs::remove_dir_all(pin) {
                Ok(()) => Ok(None),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(format!("{}: {e}", pin.display())),
            },
            Op::Shape {
                ns,
                dev,
                rate,
                latency,
                loss,
                jitter,
            } => shape(ns.as_deref(), dev, *rate, *latency, *loss, *jitter),
            Op::IngressToIfb {
                ns,
                dev,
                ifb,
                group,
            } => {
                let ns = ns.as_deref();
                if self.owned(ns, ifb, *group)?.is_none() {
                    tc_or_ip(
                        "ip",
                        ns,
                        &[
                            "link",
                            "add",
                            ifb,
                            "group",
                            &group.to_string(),
                            "type",
                            "ifb",
                        ],
                    )?;
                }
                tc_or_ip("ip", ns, &["link", "set", ifb, "up"])?;
                // Replace whatever ingress setup is there (a re-run).
                let _ = tc_or_ip("tc", ns, &["qdisc", "del", "dev", dev, "ingress"]);
                tc_or_ip(
                    "tc",
                    ns,
                    &["qdisc", "add", "dev", dev, "handle", "ffff:", "ingress"],
                )?;
                tc_or_ip(
                    "tc",
                    ns,
                    &[
                        "filter", "add", "dev", dev, "parent", "ffff:", "protocol", "all", "prio",
                        "1", "u32", "match", "u32", "0", "0", "action", "mirred", "egress",
                        "redirect", "dev", ifb,
                    ],
                )?;
                Ok(None)
            }
            Op::CgroupAdd {
                path,
                quota_us,
                period_us,
            } => {
                for dir in cgroup_dirs(path) {
                    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                }
                match cgroup_version() {
                    2 => {
                        let d = cgroup_dirs(path).remove(0);
                        let q = quota_us.map_or("max".to_string(), |q| q.to_string());
                        write(&d.join("cpu.max"), &format!("{q} {period_us}"))?;
                    }
                    _ => {
                        let d = Path::new(CGROUP_ROOT).join("cpu").join(path);
                        write(&d.join("cpu.cfs_period_us"), &period_us.to_string())?;
                        let q = quota_us.map_or("-1".to_string(), |q| q.to_string());
                        write(&d.join("cpu.cfs_quota_us"), &q)?;
                    }
                }
                Ok(None)
            }
            Op::CgroupJoin { path, pidfile } => {
                let pid = read_pid(pidfile)?
                    .ok_or_else(|| format!("no QEMU pid in {}", pidfile.display()))?;
                for dir in joined_dirs(path) {
                    write(&dir.join("cgroup.procs"), &pid.to_string())?;
                }
                Ok(None)
            }
            Op::CpusetAdd { path, cpus } => cpuset_add(path, cpus).map(|()| None),
            Op::CgroupDel { path } => {
                for dir in joined_dirs(path).into_iter().rev() {
                    rmdir_retry(&dir)?;
                    // Remove the experiment's and mx's directories once empty.
                    let mut parent = dir.parent();
                    for _ in 0..2 {
                        if let Some(p) = parent {
                            let _ = fs::remove_dir(p);
                            parent = p.parent();
                        }
                    }
                }
                Ok(None)
            }
            Op::QemuStart {
                ns,
                argv,
                dir,
                fifos,
            } => {
                let argv = fill_pci(argv, &vfio_dir(ctx))?;
                qemu_start(ns.as_deref(), &argv, dir, fifos)
            }
            Op::WriteFile { path, content } => write_file(path, content),
            Op::WriteSeed { path, files } => write_seed(path, files),
            Op::DiskOverlay { base, path, size } => disk_overlay(base, path, *size),
            Op::QmpCont { socket } => {
                let mut q = Qmp::connect(socket)?;
                q.execute("cont")?;
                Ok(None)
            }
            Op::TdfCalibrate {
                socket,
                cgroup,
                tdf,
                shift,
                period_us,
            } => tdf_calibrate(socket, cgroup, *tdf, *shift, *period_us),
            Op::KillPidfile { pidfile } => {
                if let Ok(Some(pid)) = read_pid(pidfile)
                    && fs::read(format!("/proc/{pid}/cmdline"))
                        .is_ok_and(|c| String::from_utf8_lossy(&c).contains("tdf-control"))
                {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGTERM,
                    );
                }
                Ok(None)
            }
            Op::WaitSerial {
                log,
                marker,
                timeout_s,
            } => wait_serial(log, marker, *timeout_s),
            Op::QemuStop { socket, pidfile } => qemu_stop(socket, pidfile),
            Op::RemoveDir { path } => match fs::remove_dir_all(path) {
                Ok(()) => Ok(None),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(format!("{}: {e}", path.display())),
            },
            Op::SriovVfs { pf, count } => sriov_vfs(pf, *count),
            Op::VfioBind { sysfs, key } => vfio_bind(sysfs, &vfio_dir(ctx).join(key)),
            Op::VfioRelease { key } => vfio_release(&vfio_dir(ctx).join(key)),
            Op::MdevCreate {
                parent,
                mdev_type,
                uuid,
            } => mdev_create(parent, mdev_type, uuid),
            Op::MdevRemove { uuid } => mdev_remove(uuid),
            Op::VfSet {
                pf,
                vf,
                vlan,
                mac,
                spoofcheck,
            } => {
                // netlink-packet-route can carry VF settings, but this path
                // has run on no SR-IOV hardware yet; `ip` is the reference.
                let out = Command::new("ip")
                    .args([
                        "link",
                        "set",
                        pf,
                        "vf",
                        &vf.to_string(),
                        "vlan",
                        &vlan.to_string(),
                        "mac",
                        mac,
                        "spoofchk",
                    ])
                    .arg(if *spoofcheck { "on" } else { "off" })
                    .output()
                    .map_err(|e| format!("run ip: {e}"))?;
                if !out.status.success() {
                    return Err(format!(
                        "ip link set {pf} vf {vf}: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    ));
                }
                Ok(None)
            }
            Op::SwitchVlan { .. } => Err(crate::unsupported_switch()),
        }
    }
}

fn write(path: &Path, value: &str) -> R<()> {
    fs::write(path, value).map_err(|e| format!("write {value:?} to {}: {e}", path.display()))
}

fn rmdir_retry(dir: &Path) -> R<()> {
    for _ in 0..50 {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            // Busy while the last QEMU threads exit.
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    fs::remove_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))
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
fn joined_dirs(path: &str) -> Vec<PathBuf> {
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
fn cpuset_add(path: &str, cpus: &[u32]) -> R<()> {
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
                fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            }
            return write(&dir.join("cpuset.cpus"), &list);
        }
        _ => Path::new(CGROUP_ROOT).join("cpuset"),
    };
    let mut dir = base;
    for part in path.split('/') {
        let parent = dir.clone();
        dir = dir.join(part);
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for f in ["cpuset.cpus", "cpuset.mems"] {
            let mine = fs::read_to_string(dir.join(f)).unwrap_or_default();
            if mine.trim().is_empty() {
                let theirs = fs::read_to_string(parent.join(f)).map_err(io_err)?;
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

fn xdp_pair(ns: Option<&str>, a: &str, b: &str, pin: &Path) -> R<()> {
    use aya::maps::DevMapHash;
    use aya::programs::{Xdp, XdpMode, links::FdLink};
    if XDP_OBJECT.is_empty() {
        return Err(
            "this mx was built without clang, so it has no XDP program; install clang and rebuild"
                .into(),
        );
    }
    mount_bpffs()?;
    if pin.join("link-a").exists() && pin.join("link-b").exists() {
        return Ok(());
    }
    let _ = fs::remove_dir_all(pin);
    fs::create_dir_all(pin).map_err(|e| format!("{}: {e}", pin.display()))?;
    let res = in_ns(ns, || {
        let mut bpf = aya::Ebpf::load(XDP_OBJECT).map_err(|e| format!("load XDP object: {e}"))?;
        let idx = |n: &str| -> R<u32> {
            nix::net::if_::if_nametoindex(n).map_err(|e| format!("no tap `{n}`: {e}"))
        };
        let (ia, ib) = (idx(a)?, idx(b)?);
        {
            let map = bpf
                .map_mut("REDIRECT")
                .ok_or("no REDIRECT map in the XDP object")?;
            let mut dm: DevMapHash<_> = DevMapHash::try_from(map).map_err(io_err)?;
            dm.insert(ia, ib, None, 0).map_err(io_err)?;
            dm.insert(ib, ia, None, 0).map_err(io_err)?;
        }
        if let Some(m) = bpf.map("REDIRECT") {
            m.pin(pin.join("map"))
                .map_err(|e| format!("pin map: {e}"))?;
        }
        let prog: &mut Xdp = bpf
            .program_mut("mx_redirect")
            .ok_or("no mx_redirect program in the XDP object")?
            .try_into()
            .map_err(io_err)?;
        prog.load().map_err(|e| format!("load XDP program: {e}"))?;
        for (name, file) in [(a, "link-a"), (b, "link-b")] {
            let id = prog
                .attach(name, XdpMode::Skb)
                .map_err(|e| format!("attach XDP to {name}: {e}"))?;
            let link = prog.take_link(id).map_err(io_err)?;
            let fd: FdLink = link
                .try_into()
                .map_err(|e| format!("XDP link on {name} is not a bpf_link: {e}"))?;
            fd.pin(pin.join(file))
                .map_err(|e| format!("pin XDP link of {name}: {e}"))?;
        }
        Ok(())
    });
    if res.is_err() {
        let _ = fs::remove_dir_all(pin);
    }
    res
}

fn mount_bpffs() -> R<()> {
    let mounted = fs::read_to_string("/proc/self/mounts")
        .map(|m| {
            m.lines()
                .any(|l| l.split(' ').nth(1) == Some("/sys/fs/bpf") && l.contains(" bpf "))
        })
        .unwrap_or(false);
    if !mounted {
        nix::mount::mount(
            Some("bpf"),
            "/sys/fs/bpf",
            Some("bpf"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .map_err(|e| format!("mount bpffs on /sys/fs/bpf: {e}"))?;
    }
    Ok(())
}

/// Whether the kernel has netem (it is absent on some cloud kernels).
fn has_netem() -> bool {
    static NETEM: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *NETEM.get_or_init(|| {
        // Probe on a dummy in a throwaway namespace, not on anything real.
        let ns = format!("mxprobe-{}", std::process::id());
        if netns_add(&ns).is_err() {
            return false;
        }
        let ok = Command::new("ip")
            .args(["-n", &ns, "link", "add", "p0", "type", "dummy"])
            .status()
            .is_ok_and(|s| s.success())
            && Command::new("tc")
                .args([
                    "-n", &ns, "qdisc", "add", "dev", "p0", "root", "netem", "delay", "1ms",
                ])
                .output()
                .is_ok_and(|o| o.status.success());
        let _ = netns_del(&ns);
        ok
    })
}

/// Runs `ip` or `tc` (in namespace `ns`), failing with its message.
fn tc_or_ip(bin: &str, ns: Option<&str>, args: &[&str]) -> R<()> {
    let mut cmd = Command::new(bin);
    if let Some(n) = ns {
        cmd.args(["-n", n]);
    }
    let out = cmd
        .args(args)
        .output()
        .map_err(|e| format!("run {bin}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{bin} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

fn shape(
    ns: Option<&str>,
    dev: &str,
    rate: Option<u64>,
    latency: Option<u64>,
    loss: Option<f64>,
    jitter: Option<u64>,
) -> R<Option<String>> {
    let mut note = None;
    let mut args: Vec<String> = Vec::new();
    if let Some(n) = ns {
        args.extend(["-n".into(), n.into()]);
    }
    args.extend(["qdisc", "replace", "dev", dev, "root"].map(String::from));
    let wants_netem = latency.is_some() || loss.is_some();
    if wants_netem && has_netem() {
        args.push("netem".into());
        if let Some(l) = latency {
            args.extend(["delay".into(), format!("{}us", l / 1000)]);
            if let Some(j) = jitter {
                args.push(format!("{}us", j / 1000));
            }
        }
        if let Some(l) = loss {
            args.extend(["loss".into(), format!("{}%", l * 100.0)]);
        }
        if let Some(r) = rate {
            args.extend(["rate".into(), format!("{r}bit")]);
        }
    } else if let Some(r) = rate {
        if wants_netem {
            note = Some(format!(
                "{dev}: this kernel has no netem; latency and loss are not emulated, only the rate"
            ));
        }
        // A burst of at least 10 ms at the rate (and an MTU), queueing up to 50 ms.
        let burst = (r / 8 / 100).max(3000);
        args.extend([
            "tbf".into(),
            "rate".into(),
            format!("{r}bit"),
            "burst".into(),
            burst.to_string(),
            "latency".into(),
            "50ms".into(),
        ]);
    } else {
        return Ok(Some(format!(
            "{dev}: this kernel has no netem; latency and loss are not emulated"
        )));
    }
    let out = Command::new("tc")
        .args(&args)
        .output()
        .map_err(|e| format!("run tc: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "tc {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(note)
}

fn read_pid(pidfile: &Path) -> R<Option<i32>> {
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
fn qemu_alive(pid: i32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let after = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let comm_ok =
        fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.starts_with("qemu"));
    comm_ok && !after.starts_with('Z')
}

/// Where an experiment records the PCI functions it bound to vfio-pci.
fn vfio_dir(ctx: &Context) -> PathBuf {
    ctx.root.join(&ctx.experiment).join("vfio")
}

/// Replaces `@pci(KEY)` in QEMU's arguments with the PCI address recorded
/// when KEY was bound to vfio-pci.
fn fill_pci(argv: &[String], dir: &Path) -> R<Vec<String>> {
    argv.iter()
        .map(|a| {
            let Some(start) = a.find("@pci(") else {
                return Ok(a.clone());
            };
            let end = a[start..]
                .find(')')
                .map(|e| start + e)
                .ok_or("unterminated @pci(")?;
            let key = &a[start + 5..end];
            let record = fs::read_to_string(dir.join(key))
                .map_err(|_| format!("{key} was not bound to vfio-pci"))?;
            let addr = record.split_whitespace().next().unwrap_or_default();
            Ok(format!("{}{addr}{}", &a[..start], &a[end + 1..]))
        })
        .collect()
}

/// At least `count` VFs on `pf` (a network interface or a PCI address).
/// A PF serving none gets all it offers, so later experiments find their
/// VFs without changing the count under earlier ones.
fn sriov_vfs(pf: &str, count: u32) -> R<Option<String>> {
    // Tasks run in parallel, and two of them may enable the same PF: the
    // kernel refuses a second write of a nonzero count.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _held = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dev = crate::plan::pf_sysfs(pf);
    let read = |f: &str| -> R<u32> {
        fs::read_to_string(dev.join(f))
            .map_err(|e| format!("{pf} has no SR-IOV ({}: {e})", dev.join(f).display()))?
            .trim()
            .parse()
            .map_err(|_| format!("{pf}: unreadable {f}"))
    };
    let (now, total) = (read("sriov_numvfs")?, read("sriov_totalvfs")?);
    if count > total {
        return Err(format!(
            "{pf} offers {total} VFs, VF {} does not exist",
            count - 1
        ));
    }
    if now >= count {
        return Ok(None);
    }
    if now > 0 {
        return Err(format!(
            "{pf} serves {now} VFs and needs {count}; changing the count would remove VFs in use"
        ));
    }
    write(&dev.join("sriov_numvfs"), &total.to_string())?;
    Ok(None)
}

/// Creates the mediated device `uuid` of `mdev_type` on `parent`, unless
/// it exists (a resumed run).
fn mdev_create(parent: &str, mdev_type: &str, uuid: &str) -> R<Option<String>> {
    if Path::new("/sys/bus/mdev/devices").join(uuid).exists() {
        return Ok(None);
    }
    let types = Path::new("/sys/bus/pci/devices")
        .join(parent)
        .join("mdev_supported_types");
    let ty = types.join(mdev_type);
    if !ty.exists() {
        return Err(format!(
            "{parent} offers no mediated devices of type {mdev_type} ({} is missing; is the vendor's mdev driver loaded?)",
            ty.display()
        ));
    }
    if let Ok(n) = fs::read_to_string(ty.join("available_instances"))
        && n.trim() == "0"
    {
        return Err(format!(
            "{parent} has no {mdev_type} instances left (available_instances is 0)"
        ));
    }
    write(&ty.join("create"), uuid)?;
    Ok(None)
}

/// Removes the mediated device `uuid` if present.
fn mdev_remove(uuid: &str) -> R<Option<String>> {
    let dev = Path::new("/sys/bus/mdev/devices").join(uuid);
    if dev.exists() {
        write(&dev.join("remove"), "1")?;
    }
    Ok(None)
}

/// Binds the PCI function at `sysfs` to vfio-pci, with the other endpoints
/// of its IOMMU group (a GPU's audio function, say: VFIO hands a VM whole
/// groups), recording each address and former driver in `record`, the
/// function asked for first.
fn vfio_bind(sysfs: &Path, record: &Path) -> R<Option<String>> {
    if record.exists() {
        return Ok(None);
    }
    let dev = fs::canonicalize(sysfs).map_err(|e| format!("{}: {e}", sysfs.display()))?;
    let mut funcs = vec![dev.clone()];
    if let Ok(group) = fs::read_dir(dev.join("iommu_group/devices")) {
        let mut others: Vec<PathBuf> = group
            .filter_map(|e| e.ok())
            .filter_map(|e| fs::canonicalize(e.path()).ok())
            .filter(|p| *p != dev && !is_bridge(p))
            .collect();
        others.sort();
        funcs.extend(others);
    }
    let mut lines = String::new();
    for f in &funcs {
        let addr = pci_addr(f)?;
        let driver = fs::read_link(f.join("driver"))
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()));
        lines.push_str(&format!("{addr} {}\n", driver.as_deref().unwrap_or("-")));
    }
    if let Some(parent) = record.parent() {
        fs::create_dir_all(parent).map_err(io_err)?;
    }
    // Written first: a bind that fails halfway is still undone by teardown.
    write(record, &lines)?;
    for f in &funcs {
        bind_one(f)?;
    }
    Ok(None)
}

/// A PCI bridge (class 0x0604) stays with its driver when its group is
/// handed to a VM.
fn is_bridge(dev: &Path) -> bool {
    fs::read_to_string(dev.join("class")).is_ok_and(|c| c.trim().starts_with("0x0604"))
}

fn pci_addr(dev: &Path) -> R<String> {
    dev.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| format!("{} is not a PCI function", dev.display()))
}

fn bind_one(dev: &Path) -> R<()> {
    let addr = pci_addr(dev)?;
    let driver = fs::read_link(dev.join("driver")).ok();
    if driver.as_ref().is_some_and(|d| d.ends_with("vfio-pci")) {
        return Ok(());
    }
    write(&dev.join("driver_override"), "vfio-pci")?;
    if driver.is_some() {
        write(&dev.join("driver/unbind"), &addr)?;
    }
    write(Path::new("/sys/bus/pci/drivers_probe"), &addr)?;
    let now = fs::read_link(dev.join("driver")).ok();
    if !now.is_some_and(|d| d.ends_with("vfio-pci")) {
        return Err(format!(
            "{addr} did not bind to vfio-pci (is the vfio-pci driver available?)"
        ));
    }
    Ok(())
}

/// Gives the functions bound by [`vfio_bind`] back to their former drivers.
fn vfio_release(record: &Path) -> R<Option<String>> {
    let Ok(text) = fs::read_to_string(record) else {
        return Ok(None);
    };
    for line in text.lines() {
        let Some(addr) = line.split_whitespace().next() else {
            continue;
        };
        let dev = Path::new("/sys/bus/pci/devices").join(addr);
        if dev.exists() {
            if fs::read_link(dev.join("driver")).is_ok_and(|d| d.ends_with("vfio-pci")) {
                write(&dev.join("driver/unbind"), addr)?;
            }
            write(&dev.join("driver_override"), "\n")?;
            write(Path::new("/sys/bus/pci/drivers_probe"), addr)?;
        }
    }
    let _ = fs::remove_file(record);
    Ok(None)
}

/// Writes a file whole (a new file renamed over the old), its directory
/// made private to root where it is new.
fn write_file(path: &Path, content: &str) -> R<Option<String>> {
    if let Some(dir) = path.parent() {
        private_dir(dir)?;
    }
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, content)
        .and_then(|()| fs::rename(&tmp, path))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(None)
}

/// A cloud-init NoCloud seed ([`Op::WriteSeed`]): FAT, labelled
/// `CIDATA`, written whole to a temporary file and renamed into place.
fn write_seed(path: &Path, files: &[(String, String)]) -> R<Option<String>> {
    let image = seed_image(files).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(dir) = path.parent() {
        private_dir(dir)?;
    }
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, image)
        .and_then(|()| fs::rename(&tmp, path))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(None)
}

/// The bytes of a seed filesystem holding `files`: the same files give
/// the same bytes (a fixed volume id, no timestamps).
pub fn seed_image(files: &[(String, String)]) -> std::io::Result<Vec<u8>> {
    use std::io::Write as _;
    let size = 1024 * 1024
        + files
            .iter()
            .map(|(_, c)| c.len())
            .sum::<usize>()
            .next_multiple_of(4096);
    let mut disk = std::io::Cursor::new(vec![0u8; size]);
    fatfs::format_volume(
        &mut disk,
        fatfs::FormatVolumeOptions::new()
            .volume_label(*b"CIDATA     ")
            .volume_id(0x6d78_0001),
    )?;
    disk.set_position(0);
    {
        let fs = fatfs::FileSystem::new(&mut disk, fatfs::FsOptions::new())?;
        {
            let root = fs.root_dir();
            for (name, content) in files {
                let mut f = root.create_file(name)?;
                f.truncate()?;
                f.write_all(content.as_bytes())?;
                f.flush()?;
            }
        }
        fs.unmount()?;
    }
    Ok(disk.into_inner())
}

fn private_dir(dir: &Path) -> R<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))
}

/// The virtual size of a qcow2 image, from its header (bytes 24..32, big
/// endian), or None if it is not one.
pub fn qcow2_size(path: &Path) -> Option<u64> {
    use std::io::Read;
    let mut h = [0u8; 32];
    fs::File::open(path).ok()?.read_exact(&mut h).ok()?;
    (h[..4] == *b"QFI\xfb").then(|| u64::from_be_bytes(h[24..32].try_into().unwrap_or_default()))
}

/// A VM's copy-on-write disk over its image's base: kept if it is there
/// (a VM started again keeps its disk until `down`).
fn disk_overlay(base: &Path, path: &Path, size: u64) -> R<Option<String>> {
    if qcow2_size(path).is_some() {
        return Ok(None);
    }
    let base_size = qcow2_size(base)
        .ok_or_else(|| format!("{}: not a qcow2 image; rebuild the image", base.display()))?;
    if let Some(dir) = path.parent() {
        private_dir(dir)?;
    }
    let out = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(base)
        .arg(path)
        .arg(size.max(base_size).to_string())
        .output()
        .map_err(|e| format!("qemu-img: {e} (install qemu-utils)"))?;
    if !out.status.success() {
        let _ = fs::remove_file(path);
        return Err(format!(
            "qemu-img create {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(None)
}

fn qemu_start(
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

fn wait_serial(log: &Path, marker: &str, timeout_s: u64) -> R<Option<String>> {
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

fn qemu_stop(socket: &Path, pidfile: &Path) -> R<Option<String>> {
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

/// The guest's instruction count (icount mode), through QMP.
fn icount(q: &mut Qmp) -> R<u64> {
    q.execute("query-replay")?["icount"]
        .as_u64()
        .ok_or_else(|| "QMP query-replay gave no icount (is -icount on?)".to_string())
}

/// Writes a CPU quota (µs per period) to a cgroup, v1 or v2.
fn set_quota(cgroup: &str, quota_us: u64, period_us: u64) -> R<()> {
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

/// Guest seconds per real second over `window`, from QMP's icount.
fn guest_rate(q: &mut Qmp, ns_per_instr: f64, window: Duration) -> R<f64> {
    let (i0, t0) = (icount(q)?, Instant::now());
    std::thread::sleep(window);
    let (i1, dt) = (icount(q)?, t0.elapsed().as_secs_f64());
    Ok(i1.saturating_sub(i0) as f64 * ns_per_instr / 1e9 / dt)
}

/// Steers the CPU quota until guest time advances at 1/tdf of real time,
/// then leaves a controller (`mxc tdf-control`, see [`tdf_control`])
/// holding it there: the guest's instruction rate drifts with what it runs.
fn tdf_calibrate(
    socket: &Path,
    cgroup: &str,
    tdf: f64,
    shift: u32,
    period_us: u64,
) -> R<Option<String>> {
    let mut q = Qmp::connect(socket)?;
    let ns_per_instr = (1u64 << shift) as f64;
    let target = 1.0 / tdf;
    // The VM booted without a quota: the first round measures full speed.
    let mut share = 1.0;
    let mut rate = 0.0;
    // A first estimate only: at small shares one window's rate is noisy
    // (±40% over 1.5 s here), and the controller's integral action, not
    // this, makes the factor hold on average.
    for round in 0..4 {
        rate = guest_rate(&mut q, ns_per_instr, Duration::from_millis(1500))?;
        if rate <= 0.0 {
            return Err("the guest executed no instructions while calibrating".into());
        }
        if round > 0 && ((rate - target) / target).abs() < 0.05 {
            break;
        }
        let step = target / rate;
        share = (share * if round == 0 { step } else { step.sqrt() }).clamp(0.01, 1.0);
        set_quota(
            cgroup,
            ((share * period_us as f64).round() as u64).max(1000),
            period_us,
        )?;
    }
    drop(q);
    // The controller: this binary, detached, until QEMU goes.
    let exe = std::env::current_exe().map_err(|e| format!("cannot find mxc: {e}"))?;
    let pidfile = socket.with_file_name("tdf.pid");
    let child = Command::new("setsid")
        .arg(exe)
        .args(["tdf-control", "--socket"])
        .arg(socket)
        .args([
            "--cgroup",
            cgroup,
            "--tdf",
            &tdf.to_string(),
            "--shift",
            &shift.to_string(),
        ])
        .args([
            "--period",
            &period_us.to_string(),
            "--share",
            &share.to_string(),
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("start the time-dilation controller: {e}"))?;
    write(&pidfile, &child.id().to_string())?;
    Ok(Some(format!(
        "time dilation {tdf}: guest clock at {rate:.4} of real time (1/{:.2}) with {share:.3} of a core; held by controller {}",
        1.0 / rate,
        child.id()
    )))
}

/// Holds a dilated VM's guest clock at 1/tdf of real time for as long as
/// its QEMU runs. Every second it measures the guest's rate, keeps a smoothed
/// estimate of rate per unit of CPU share, and sets the share that would
/// bring the guest's total time since the controller started back to
/// 1/tdf of the host's within a few seconds: integral action, so per-window
/// noise averages out instead of biasing the factor.
pub fn tdf_control(
    socket: &Path,
    cgroup: &str,
    tdf: f64,
    shift: u32,
    period_us: u64,
    mut share: f64,
) -> R<()> {
    /// Seconds over which a lag or lead is made up.
    const HORIZON: f64 = 5.0;
    let ns_per_instr = (1u64 << shift) as f64;
    let target = 1.0 / tdf;
    let pidfile = socket.with_file_name("qemu.pid");
    let alive = || read_pid(&pidfile).ok().flatten().is_some_and(qemu_alive);
    let mut origin: Option<(u64, Instant)> = None;
    let mut gain: Option<f64> = None;
    loop {
        // A lost QMP connection is taken up again; the controller ends only
        // with QEMU, since a VM left at a stale quota drifts from its factor.
        let mut q = match Qmp::connect(socket) {
            Ok(q) => q,
            Err(e) if !alive() => return Err(e),
            Err(_) => {
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        loop {
            let sample = (|| -> R<(u64, u64, f64, Instant)> {
                let (i0, t0) = (icount(&mut q)?, Instant::now());
                std::thread::sleep(Duration::from_secs(1));
                let i1 = icount(&mut q)?;
                Ok((i0, i1, t0.elapsed().as_secs_f64(), Instant::now()))
            })();
            let (i0, i1, dt, now) = match sample {
                Ok(s) => s,
                Err(e) if !alive() => return Err(e),
                Err(_) => break,
            };
            let (i_origin, t_origin) =
                *origin.get_or_insert((i0, now - Duration::from_secs_f64(dt)));
            let rate = i1.saturating_sub(i0) as f64 * ns_per_instr / 1e9 / dt;
            if rate <= 0.0 {
                continue;
            }
            let k = rate / share;
            let g = *gain.insert(gain.map_or(k, |g| 0.7 * g + 0.3 * k));
            let guest = i1.saturating_sub(i_origin) as f64 * ns_per_instr / 1e9;
            let host = now.duration_since(t_origin).as_secs_f64();
            let behind = host * target - guest;
            let want = (target + behind / HORIZON).clamp(target / 4.0, target * 4.0);
            share = (want / g).clamp(0.01, 1.0);
            set_quota(
                cgroup,
                ((share * period_us as f64).round() as u64).max(1000),
                period_us,
            )?;
        }
    }
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
