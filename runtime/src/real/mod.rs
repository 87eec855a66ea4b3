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
use nix::errno::Errno;
use nix::sched::{CloneFlags, setns, unshare};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, LinkVxlan};

use crate::exec::{Context, Executor};
use crate::plan::Op;

mod cgroup;
mod error;
mod files;
mod link;
mod netns;
mod qemu;
mod tc;
mod tdf;
mod vfio;
mod xdp;

#[allow(unused_imports)]
pub use self::{
    cgroup::*, error::*, files::*, link::*, netns::*, qemu::*, tc::*, tdf::*, vfio::*, xdp::*,
};

/// Polls `ready` every 50 ms until it holds (done) or `timeout_s` passes
/// (the error `late` says): for what another host's agent makes.
fn wait_until(
    timeout_s: u64,
    mut ready: impl FnMut() -> Result<bool, HostError>,
    late: impl FnOnce() -> String,
) -> Result<Option<String>, HostError> {
    let until = Instant::now() + Duration::from_secs(timeout_s);
    loop {
        if ready()? {
            return Ok(None);
        }
        if Instant::now() >= until {
            return Err(late().into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

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

fn nl_errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

impl Executor for Real {
    /// The one place a host error becomes the task's failure text.
    fn run(&self, op: &Op, ctx: &Context) -> R<Option<String>> {
        self.dispatch(op, ctx).map_err(|e| e.to_string())
    }
}

impl Real {
    /// Does one operation, with the failing subsystem's typed error.
    fn dispatch(&self, op: &Op, ctx: &Context) -> Result<Option<String>, HostError> {
        let nsr = |n: &Option<String>| n.clone();
        match op {
            Op::NetnsAdd { name } => {
                let _g = self.netns.lock().map_err(|_| "namespace lock poisoned")?;
                netns_add(name)?;
                Ok(None)
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
                    let attached: Vec<String> = self.netlink(Some(name), |h| async move {
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
                netns_del(name)?;
                Ok(None)
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
                group,
            } => {
                let ns = ns.as_deref();
                let mut b = LinkVeth::new(name, peer).mtu(*mtu);
                if *group != 0 {
                    b = b.link_group(*group);
                }
                let mut msg = b.build();
                let _keep;
                if let Some(p) = peer_ns {
                    use rtnetlink::packet_route::link::{
                        InfoData, InfoVeth, LinkAttribute, LinkInfo,
                    };
                    use std::os::fd::AsRawFd;
                    let at = Path::new(NETNS_DIR).join(p);
                    let f = fs::File::open(&at).at(&at)?;
                    let mut pb = LinkUnspec::new_with_name(peer)
                        .setns_by_fd(f.as_raw_fd())
                        .mtu(*mtu);
                    if *group != 0 {
                        pb = pb.link_group(*group);
                    }
                    let peer_msg = pb.build();
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
                self.add_link(ns, name, *group, msg)?;
                Ok(None)
            }
            Op::NetnsWait { name, timeout_s } => wait_until(
                *timeout_s,
                || Ok(ns_exists(name) && in_ns(Some(name), || Ok::<(), NetnsError>(())).is_ok()),
                || {
                    format!(
                        "namespace {name} did not appear within {timeout_s} s (is its host's agent running?)"
                    )
                },
            ),
            Op::WaitLink {
                ns,
                name,
                timeout_s,
            } => wait_until(
                *timeout_s,
                || Ok(self.index(ns.as_deref(), name)?.is_some()),
                || {
                    format!(
                        "device {name} did not appear within {timeout_s} s (is the switch's agent running?)"
                    )
                },
            ),
            Op::BridgeVlan {
                add,
                dev,
                vid,
                untagged,
            } => {
                let idx = self.need_index(None, dev)?;
                let msg = crate::switch::bridge_vlan_message(idx, *vid, *untagged);
                let add = *add;
                let r = self.netlink(None, |h| async move {
                    if add {
                        h.link().set(msg).execute().await
                    } else {
                        h.link().del_with_message(msg).execute().await
                    }
                });
                match r {
                    // Already a member (add) or already gone (del).
                    Err(e) if !add && (e.is(Errno::ENOENT) || e.is(Errno::EINVAL)) => Ok(None),
                    other => other.map(|()| None).map_err(Into::into),
                }
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
                self.netlink(ns, |h| async move { fdb_append_default(&h, idx, ip).await })?;
                Ok(None)
            }
            Op::Tap { ns, name, group } => {
                let ns = ns.as_deref();
                // Made (ioctl) under its own name and then grouped
                // (netlink): a crash between the two leaves a tap of our
                // name in no group, which is removed and made again (see
                // `claim`). Made under a staging name and renamed, as
                // before, each tap cost a second RCU grace period under the
                // kernel's RTNL lock, which all plumbing waits for.
                match self.claim(ns, name, *group)? {
                    link::Claim::Ours(_) => return Ok(None),
                    link::Claim::Orphan(old) => {
                        self.netlink(ns, |h| async move { h.link().del(old).execute().await })?
                    }
                    link::Claim::Free => {}
                }
                let idx = in_ns(ns, || {
                    crate::tap::create(name)
                        .and_then(|()| {
                            nix::net::if_::if_nametoindex(name.as_str()).map_err(io::Error::from)
                        })
                        .map_err(|e| format!("create tap {name}: {e}"))
                })?;
                let msg = LinkUnspec::new_with_index(idx).link_group(*group).build();
                self.netlink(ns, |h| async move { h.link().set(msg).execute().await })?;
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
                .map(|()| None)
                .host(),
            Op::SetUp { ns, name } => self
                .set(ns.as_deref(), name, |l| l.up())
                .map(|()| None)
                .host(),
            Op::AddrAdd { ns, name, cidr } => {
                let ns = ns.as_deref();
                let (ip, len) = parse_cidr(cidr)?;
                let idx = self.need_index(ns, name)?;
                match self.netlink(ns, |h| async move {
                    h.address()
                        .add(idx, std::net::IpAddr::V4(ip), len)
                        .execute()
                        .await
                }) {
                    Err(e) if e.is(Errno::EEXIST) => Ok(None),
                    other => Ok(other.map(|()| None)?),
                }
            }
            Op::LinkDel { ns, name, group } => {
                if let Some(n) = ns
                    && !ns_exists(n)
                {
                    return Ok(None);
                }
                let ns = nsr(ns);
                // A tap cut short by a crash (see `claim`) goes too.
                let found = match group {
                    Some(g) => self.claim(ns.as_deref(), name, *g).map(|c| match c {
                        link::Claim::Ours(idx) | link::Claim::Orphan(idx) => Some(idx),
                        link::Claim::Free => None,
                    }),
                    None => {
                        self.netlink(ns.as_deref(), |h| async move { link_index(&h, name).await })
                    }
                };
                let idx = match found {
                    Ok(Some(i)) => i,
                    Ok(None) => return Ok(None),
                    // Someone else's device of that name: ours is gone.
                    Err(e @ LinkError::Foreign { .. }) => return Ok(Some(e.to_string())),
                    // The namespace went meanwhile, and the device with it.
                    Err(_) if ns.as_deref().is_some_and(|n| !ns_exists(n)) => return Ok(None),
                    Err(e) => return Err(e.into()),
                };
                match self.netlink(ns.as_deref(), |h| async move {
                    h.link().del(idx).execute().await
                }) {
                    Err(e) if e.is(Errno::ENODEV) => Ok(None),
                    other => Ok(other.map(|()| None)?),
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
                match self.netlink(ns.as_deref(), |h| async move {
                    h.link().del_with_message(msg).execute().await
                }) {
                    Err(e) if e.is(Errno::ENODEV) => Ok(None),
                    other => Ok(other.map(|()| None)?),
                }
            }
            Op::XdpPair { ns, a, b, pin } => {
                xdp_pair(ns.as_deref(), a, b, pin).map(|()| None).host()
            }
            Op::XdpUnpin { pin } => match fs::remove_dir_all(pin) {
                Ok(()) => Ok(None),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(PathError {
                    path: pin.clone(),
                    source,
                }
                .into()),
            },
            Op::Shape {
                ns,
                dev,
                rate,
                latency,
                loss,
                jitter,
            } => shape(ns.as_deref(), dev, *rate, *latency, *loss, *jitter).host(),
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
            Op::CpusetAdd { path, cpus } => cpuset_add(path, cpus).map(|()| None).host(),
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
                qemu_start(ns.as_deref(), &argv, dir, fifos).host()
            }
            Op::WriteFile { path, content } => write_file(path, content).host(),
            Op::WriteSeed { path, files } => write_seed(path, files).host(),
            Op::DiskOverlay { base, path, size } => disk_overlay(base, path, *size).host(),
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
            } => tdf_calibrate(socket, cgroup, *tdf, *shift, *period_us).host(),
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
            } => wait_serial(log, marker, *timeout_s).host(),
            Op::QemuStop { socket, pidfile } => qemu_stop(socket, pidfile).host(),
            Op::RemoveDir { path } => match fs::remove_dir_all(path) {
                Ok(()) => Ok(None),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(PathError {
                    path: path.clone(),
                    source,
                }
                .into()),
            },
            Op::SriovVfs { pf, count } => sriov_vfs(pf, *count).host(),
            Op::VfioBind { sysfs, key } => vfio_bind(sysfs, &vfio_dir(ctx).join(key)).host(),
            Op::VfioRelease { key } => vfio_release(&vfio_dir(ctx).join(key)).host(),
            Op::MdevCreate {
                parent,
                mdev_type,
                uuid,
            } => mdev_create(parent, mdev_type, uuid).host(),
            Op::MdevRemove { uuid } => mdev_remove(uuid).host(),
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
                    )
                    .into());
                }
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A crash between making a tap and grouping it leaves a tap of the
    /// experiment's name in no group: the next run removes it and makes it
    /// again, in the group, and `down` removes it. A device of another kind
    /// under a tap's name (in no group too) is someone else's: refused and
    /// left alone.
    #[test]
    fn a_tap_cut_short_is_made_again_and_a_stranger_is_not() {
        if !nix::unistd::Uid::effective().is_root() {
            return;
        }
        let ns = format!("mxh-taps{}", std::process::id());
        netns_add(&ns).unwrap();
        let real = Real::default();
        let ctx = Context {
            experiment: "taps".into(),
            root: std::env::temp_dir(),
        };
        let group = 0x6d12_3456;
        let tap = |name: &str| Op::Tap {
            ns: Some(ns.clone()),
            name: name.into(),
            group,
        };
        let found = |name: &'static str| {
            real.netlink(Some(&ns), |h| async move { link_found(&h, name).await })
                .unwrap()
                .map(|f| (f.index, f.group, f.tun))
        };
        // What a crash between making a tap and grouping it leaves.
        let cut_short = |name: &str| {
            in_ns::<(), String>(Some(&ns), || {
                crate::tap::create(name).map_err(|e| e.to_string())
            })
            .unwrap()
        };
        cut_short("t123456a");
        let (cut, g, _) = found("t123456a").unwrap();
        assert_eq!(g, 0);
        real.run(&tap("t123456a"), &ctx).unwrap();
        let (made, g, tun) = found("t123456a").unwrap();
        assert!(made != cut && g == group && tun, "made again, in the group");
        real.run(&tap("t123456a"), &ctx).unwrap();
        assert_eq!(found("t123456a").unwrap().0, made, "ours: left as it is");
        let ip = Command::new("ip")
            .args(["-n", &ns, "link", "add", "t123456b", "type", "veth"])
            .args(["peer", "name", "squat"])
            .status()
            .unwrap();
        assert!(ip.success());
        let err = real.run(&tap("t123456b"), &ctx).unwrap_err();
        // Taking the experiment down: a tap cut short goes, the stranger
        // stays (with a note).
        let del = |name: &str| Op::LinkDel {
            ns: Some(ns.clone()),
            name: name.into(),
            group: Some(group),
        };
        cut_short("t123456c");
        assert_eq!(real.run(&del("t123456c"), &ctx), Ok(None));
        let note = real.run(&del("t123456b"), &ctx);
        let (orphan, squat) = (found("t123456c"), found("t123456b"));
        netns_del(&ns).unwrap();
        assert!(err.contains("not this experiment's"), "{err}");
        assert!(orphan.is_none(), "the tap cut short is gone");
        let (_, g, tun) = squat.unwrap();
        assert!(g == 0 && !tun, "the veth is left alone");
        assert!(matches!(note, Ok(Some(n)) if n.contains("not this experiment's")));
    }
}
