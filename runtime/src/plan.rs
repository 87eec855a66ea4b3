//! What each fragment does to the machine, as data: a list of operations
//! to bring it up and a list to take it down. The real executor carries
//! them out; a dry run prints them. Keeping the plan as data is what makes
//! `--dry-run` exact and the plan testable by snapshot.

use std::fmt;
use std::path::{Path, PathBuf};

use mx_materializer::VXLAN_PORT;
use mx_xir::{Fragment, NicAttach, Spec, VmGpu, VmSpec};
use serde::Serialize;

/// Where the runtime keeps things for one experiment.
#[derive(Clone, Debug)]
pub struct Paths {
    /// The experiment's state directory (`/var/lib/mx/run/<name>`).
    pub state: PathBuf,
    /// Where XDP programs and maps are pinned (`/sys/fs/bpf/mx/<name>`).
    pub bpf: PathBuf,
    /// The experiment's cgroup, relative to the CPU controller's root (`mx/<name>`).
    pub cgroup: String,
    /// Where images live (`<dir>/<image>/vmlinuz`, `initramfs.cpio.gz`).
    pub images: PathBuf,
    /// The accelerator QEMU uses (`kvm` or `tcg`), probed once per run.
    pub accel: String,
    /// The images the VMs boot, by key ([`crate::images::key`]): what is
    /// installed (checked before anything runs: a missing image is an
    /// error, never replaced by another).
    pub images_info: std::collections::BTreeMap<String, crate::images::ImageInfo>,
    /// The device group every interface of the experiment joins, so that
    /// teardown removes them in one batch (see [`Op::LinkGroupDel`]).
    pub group: u32,
    /// Hosts whose guests resolve the experiment's names (a `names`
    /// fragment), and the file they read them from.
    pub names: std::collections::BTreeMap<String, PathBuf>,
    /// The public key sshd in the guests accepts (the experiment's own,
    /// made by the runtime), if there is one.
    pub ssh_key: Option<String>,
    /// Benchmarks only (`MX_BENCH_NOOP_VMS=1`): VM tasks do nothing, so
    /// the network plumbing and its automation are measured without QEMU.
    pub noop_vms: bool,
}

/// The device group of an experiment: its tag (held in the allocation
/// table, so unique), with a high byte that keeps it clear of the default
/// group 0 and of small hand-made groups. A device is the experiment's only
/// if it is in this group: nothing else is adopted or deleted.
pub fn device_group(tag: u32) -> u32 {
    0x6d00_0000 | (tag & 0x00ff_ffff)
}

impl Paths {
    /// A VM's directory: its QMP socket, serial log and pid file.
    pub fn vm_dir(&self, vm: &str) -> PathBuf {
        self.state.join("vm").join(vm)
    }

    /// The image a VM boots, and its directory (the caller checked it is
    /// known: [`crate::Runtime::plan`] refuses VMs whose image is not).
    pub fn image(&self, vm: &VmSpec) -> Option<(&crate::images::ImageInfo, PathBuf)> {
        let key = image_key(&vm.image, &vm.arch);
        let info = self.images_info.get(&key)?;
        Some((info, self.images.join(&key)))
    }
}

/// Where an image for an architecture lives under the image directory:
/// `<image>` for x86_64, `<image>-<arch>` for the others (aliases resolved).
pub fn image_key(image: &str, arch: &str) -> String {
    crate::images::key(image, arch)
}

/// What the guest reads at boot (QEMU fw_cfg `opt/mx/config`), one item a
/// line: its name, each interface (by MAC) with its address, routes,
/// whether it forwards, the neighbours it checks it can reach, names it
/// resolves its own way, and the public key sshd accepts. Everything was decided by the realizer and the
/// materializer; the guest only carries it out.
pub fn guest_config(vm: &VmSpec, ssh_key: Option<&str>) -> String {
    use std::fmt::Write as _;
    let mut s = format!("name {}\n", vm.name);
    for n in &vm.nics {
        if n.addrs.is_empty() {
            let _ = writeln!(s, "if {} -", n.mac);
        }
        for a in &n.addrs {
            let _ = writeln!(s, "if {} {a}", n.mac);
        }
    }
    for r in &vm.routes {
        let _ = writeln!(s, "route {} {}", r.dst, r.via);
    }
    if vm.forward {
        s.push_str("forward 1\n");
    }
    for ip in &vm.neighbours {
        let _ = writeln!(s, "ping {ip}");
    }
    for h in &vm.hosts {
        let _ = writeln!(s, "host {} {}", h.addr, h.name);
    }
    if let Some(k) = ssh_key {
        let _ = writeln!(s, "key {k}");
    }
    s
}

/// The `/etc/hosts` lines of the experiment's names.
pub fn hosts_file(entries: &[mx_xir::NameEntry]) -> String {
    entries
        .iter()
        .map(|e| format!("{}\t{}\n", e.addr, e.name))
        .collect()
}

/// The script every guest runs at boot to apply its configuration
/// (`images/guest/mx-setup`), handed over through fw_cfg.
pub const GUEST_SETUP: &str = include_str!("../../images/guest/mx-setup");
/// The busybox guest's agent, which a cloud image gets through fw_cfg.
pub const GUEST_AGENT: &str = include_str!("../../images/guest/mx-agent");
/// sshd on the management port, which a cloud image gets the same way.
pub const GUEST_SSHD: &str = include_str!("../../images/guest/mx-sshd");

/// The cloud-init NoCloud seed of a VM booting a cloud image: `meta-data`
/// (an instance id unique to the experiment, so cloud-init treats every
/// `up` as a new instance, and the node's name), `user-data` (cloud-init
/// starts mx's agent and sshd and runs mx-setup, which configures the
/// experiment's network, names and root's key from fw_cfg as on every mx
/// image), and `network-config` (disabled: cloud-init's default, DHCP on
/// the first NIC, would wait on an experiment link and fight mx-setup).
pub fn cloud_seed(vm: &VmSpec, group: u32) -> Vec<(String, String)> {
    let meta = format!(
        "instance-id: mx-{group:08x}-{name}\nlocal-hostname: {name}\n",
        name = vm.name
    );
    vec![
        ("meta-data".into(), meta),
        ("network-config".into(), "config: disabled\n".into()),
        ("user-data".into(), CLOUD_USER_DATA.into()),
    ]
}

/// What cloud-init does in a VM booting a cloud image (see [`cloud_seed`]).
/// `bootcmd` runs early in cloud-init's first stage with networking, on
/// every boot; mx-setup's MX- lines go to the first serial port, where
/// `up` waits for MX-READY.
pub const CLOUD_USER_DATA: &str = r#"#cloud-config
# Written by mx. The experiment's addresses, routes, names and root's ssh
# key come from mx-setup (QEMU fw_cfg opt/mx/*), as on every mx image;
# cloud-init starts mx's agent (mxc exec, cp) and sshd (mxc ssh) on their
# virtio-serial ports, and leaves root's key, the hosts file and the
# network alone.
disable_root: false
ssh_pwauth: false
ssh_deletekeys: false
manage_etc_hosts: false
bootcmd:
  - |
    modprobe -qa qemu_fw_cfg virtio_console 2>/dev/null
    fw=/sys/firmware/qemu_fw_cfg/by_name/opt/mx
    mkdir -p -m 0700 /run/mx-cloud
    for f in agent sshd setup; do
      cat "$fw/$f/raw" >"/run/mx-cloud/$f"
    done
    for f in agent sshd; do
      if command -v systemd-run >/dev/null; then
        # No default dependencies, no waiting: cloud-init runs before
        # sysinit.target, which a default unit would wait for.
        systemd-run --quiet --no-block --unit="mx-$f" -p DefaultDependencies=no \
          -p Restart=always -p WorkingDirectory=/root /bin/sh "/run/mx-cloud/$f"
      else
        (cd /root && setsid /bin/sh "/run/mx-cloud/$f" </dev/null >/dev/null 2>&1 &)
      fi
    done
    (setsid /bin/sh /run/mx-cloud/setup </dev/null >/dev/ttyS0 2>&1 &)
"#;

/// The longest path a unix socket may have (`sun_path`, less the NUL).
pub const SOCKET_PATH_MAX: usize = 107;

/// The sockets of a VM's QEMU: QMP, the serial console, the guest agent and
/// sshd's serial port.
pub fn vm_sockets(dir: &Path) -> [PathBuf; 4] {
    [
        dir.join("qmp.sock"),
        dir.join("console.sock"),
        dir.join("qga.sock"),
        dir.join("ssh.sock"),
    ]
}

/// The serial console of a guest architecture's QEMU machine.
pub fn console(arch: &str) -> &'static str {
    if arch == "aarch64" {
        "ttyAMA0"
    } else {
        "ttyS0"
    }
}

/// The bridge in the underlay namespace that joins the hosts' veths.
pub const UNDERLAY_BRIDGE: &str = "mxul-br";
/// MTU of the underlay, so that VXLAN segments can carry 1500-byte frames.
pub const UNDERLAY_MTU: u32 = 1600;

/// One thing done to the machine. `ns` is the network namespace it runs in
/// (`None`: the namespace of the runtime).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Create a named network namespace (`/run/netns/<name>`) if absent.
    NetnsAdd { name: String },
    /// Delete a namespace, unless another experiment's state still uses it.
    NetnsRelease { name: String, shared_by: String },
    /// Create a bridge if absent.
    Bridge {
        ns: Option<String>,
        name: String,
        group: u32,
    },
    /// Create a veth pair if absent, the peer moved into `peer_ns`; both
    /// ends in device group `group` (0: none).
    Veth {
        ns: Option<String>,
        name: String,
        peer: String,
        peer_ns: Option<String>,
        mtu: u32,
        group: u32,
    },
    /// Wait until a namespace exists (made by another host's agent).
    NetnsWait { name: String, timeout_s: u64 },
    /// Wait until a device exists in a namespace (made by another host's
    /// agent: an emulated switch plugs its end of a cable in).
    WaitLink {
        ns: Option<String>,
        name: String,
        timeout_s: u64,
    },
    /// Add (or, with `add` false, remove) VLAN `vid` on a port of the
    /// switch's VLAN-aware bridge: a trunk member, or with `untagged` the
    /// port's untagged PVID. One RTM_SETLINK (RTM_DELLINK) of family
    /// AF_BRIDGE carrying IFLA_AF_SPEC { IFLA_BRIDGE_VLAN_INFO }, as
    /// `bridge vlan add|del dev DEV vid VID [pvid untagged]` sends.
    BridgeVlan {
        add: bool,
        dev: String,
        vid: u16,
        untagged: bool,
    },
    /// Create a VXLAN device if absent (no learning; the flood list is static).
    Vxlan {
        ns: Option<String>,
        name: String,
        vni: u32,
        local: String,
        port: u16,
        dev: Option<String>,
        group: u32,
    },
    /// Append a flood entry (all-zero MAC) towards a remote VTEP.
    FloodAdd {
        ns: Option<String>,
        dev: String,
        remote: String,
    },
    /// Create a persistent tap if absent.
    Tap {
        ns: Option<String>,
        name: String,
        group: u32,
    },
    /// Make `name` a port of bridge `master`.
    SetMaster {
        ns: Option<String>,
        name: String,
        master: String,
    },
    /// Set a device's MTU.
    SetMtu {
        ns: Option<String>,
        name: String,
        mtu: u32,
    },
    /// Bring a device up.
    SetUp { ns: Option<String>, name: String },
    /// Add an address to a device if absent.
    AddrAdd {
        ns: Option<String>,
        name: String,
        cidr: String,
    },
    /// Delete a device if present; with `group`, only if it is in that
    /// group (the experiment's).
    LinkDel {
        ns: Option<String>,
        name: String,
        group: Option<u32>,
    },
    /// Delete every device of a group at once. The kernel unregisters them
    /// as one batch, waiting for one RCU grace period instead of one per
    /// device: 1,000 taps go in milliseconds rather than seconds.
    LinkGroupDel { ns: Option<String>, group: u32 },
    /// Load the XDP redirect program on both taps, fill its devmap, pin
    /// program links and map under `pin`.
    XdpPair {
        ns: Option<String>,
        a: String,
        b: String,
        pin: PathBuf,
    },
    /// Remove the pins (detaching the program) if present.
    XdpUnpin { pin: PathBuf },
    /// Rate, delay and loss on a device.
    Shape {
        ns: Option<String>,
        dev: String,
        rate: Option<u64>,
        latency: Option<u64>,
        loss: Option<f64>,
        jitter: Option<u64>,
    },
    /// Create an IFB device (in the experiment's group) and redirect a
    /// device's ingress to it, so that what a VM sends can be shaped as the
    /// IFB's egress.
    IngressToIfb {
        ns: Option<String>,
        dev: String,
        ifb: String,
        group: u32,
    },
    /// Pin a VM to host cores: a cpuset cgroup (`cpus` taken modulo the
    /// machine's cores).
    CpusetAdd { path: String, cpus: Vec<u32> },
    /// Create a cgroup for a VM, with a CPU quota if asked for.
    CgroupAdd {
        path: String,
        quota_us: Option<u64>,
        period_us: u64,
    },
    /// Start QEMU paused, daemonized, with a QMP socket and a pid file,
    /// after making the FIFO pairs (`<path>.in`, `<path>.out`) its pipe
    /// chardevs use.
    QemuStart {
        ns: Option<String>,
        argv: Vec<String>,
        dir: PathBuf,
        fifos: Vec<PathBuf>,
    },
    /// Move the QEMU process into its cgroup.
    CgroupJoin { path: String, pidfile: PathBuf },
    /// Resume the guest through QMP.
    QmpCont { socket: PathBuf },
    /// Wait until the serial log shows `marker`.
    WaitSerial {
        log: PathBuf,
        marker: String,
        timeout_s: u64,
    },
    /// Stop QEMU: QMP `quit`, then signals if it lingers.
    QemuStop { socket: PathBuf, pidfile: PathBuf },
    /// Hold a time-dilated VM's guest clock at 1/tdf of real time: measure
    /// the guest's instruction count through QMP (with icount, guest time is
    /// instructions × 2^shift ns) and adjust the cgroup CPU quota until the
    /// rate matches.
    TdfCalibrate {
        socket: PathBuf,
        cgroup: String,
        tdf: f64,
        shift: u32,
        period_us: u64,
    },
    /// Stop the process a pid file names, if it runs.
    KillPidfile { pidfile: PathBuf },
    /// Remove a cgroup if present.
    CgroupDel { path: String },
    /// Remove a directory tree if present.
    RemoveDir { path: PathBuf },
    /// Write a file (creating its directory), replacing what was there.
    WriteFile { path: PathBuf, content: String },
    /// Write a cloud-init NoCloud seed: a small FAT filesystem labelled
    /// `CIDATA` holding `files` (name, content).
    WriteSeed {
        path: PathBuf,
        files: Vec<(String, String)>,
    },
    /// Make a copy-on-write qcow2 overlay on a base image, of `size` bytes
    /// at least (the base's size where that is larger): the base is never
    /// written.
    DiskOverlay {
        base: PathBuf,
        path: PathBuf,
        size: u64,
    },
    /// Make sure a physical function (an interface, or a GPU by PCI
    /// address) has at least `count` VFs (sysfs `sriov_numvfs`): a PF serving
    /// none gets all it offers; one serving fewer is refused, since changing
    /// the count would tear down VFs in use.
    SriovVfs { pf: String, count: u32 },
    /// Bind a PCI function to vfio-pci (driver_override, unbind, probe),
    /// recording its address and former driver under `key`.
    VfioBind { sysfs: PathBuf, key: String },
    /// Give a function bound by [`Op::VfioBind`] back to its driver.
    VfioRelease { key: String },
    /// Create a mediated device (a virtual GPU) of `mdev_type` on the PCI
    /// function `parent`, under a fixed UUID.
    MdevCreate {
        parent: String,
        mdev_type: String,
        uuid: String,
    },
    /// Remove a mediated device, if present.
    MdevRemove { uuid: String },
    /// Program a VF: VLAN tag, spoofcheck, MAC (needs SR-IOV).
    VfSet {
        pf: String,
        vf: u32,
        vlan: u16,
        mac: String,
        spoofcheck: bool,
    },
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = |n: &Option<String>| {
            n.as_ref()
                .map(|n| format!(" [netns {n}]"))
                .unwrap_or_default()
        };
        match self {
            Op::NetnsAdd { name } => write!(f, "netns add {name}"),
            Op::NetnsRelease { name, .. } => write!(f, "netns del {name} (when unused)"),
            Op::Bridge {
                ns: n,
                name,
                group: 0,
            } => write!(f, "link add {name} type bridge{}", ns(n)),
            Op::Bridge { ns: n, name, group } => {
                write!(f, "link add {name} group {group:#x} type bridge{}", ns(n))
            }
            Op::Veth {
                ns: n,
                name,
                peer,
                peer_ns,
                mtu,
                group,
            } => write!(
                f,
                "link add {name}{} mtu {mtu} type veth peer {peer}{}{}",
                if *group != 0 {
                    format!(" group {group:#x}")
                } else {
                    String::new()
                },
                peer_ns
                    .as_ref()
                    .map(|p| format!(" netns {p}"))
                    .unwrap_or_default(),
                ns(n)
            ),
            Op::Vxlan {
                ns: n,
                name,
                vni,
                local,
                port,
                dev,
                group,
            } => write!(
                f,
                "link add {name} group {group:#x} type vxlan id {vni} local {local} dstport {port}{} nolearning{}",
                dev.as_ref()
                    .map(|d| format!(" dev {d}"))
                    .unwrap_or_default(),
                ns(n)
            ),
            Op::FloodAdd { ns: n, dev, remote } => {
                write!(
                    f,
                    "fdb append 00:00:00:00:00:00 dev {dev} dst {remote}{}",
                    ns(n)
                )
            }
            Op::Tap { ns: n, name, group } => write!(
                f,
                "tuntap add {name} mode tap; link set {name} group {group:#x}{}",
                ns(n)
            ),
            Op::SetMaster {
                ns: n,
                name,
                master,
            } => write!(f, "link set {name} master {master}{}", ns(n)),
            Op::SetMtu { ns: n, name, mtu } => write!(f, "link set {name} mtu {mtu}{}", ns(n)),
            Op::SetUp { ns: n, name } => write!(f, "link set {name} up{}", ns(n)),
            Op::AddrAdd { ns: n, name, cidr } => write!(f, "addr add {cidr} dev {name}{}", ns(n)),
            Op::LinkDel { ns: n, name, .. } => write!(f, "link del {name}{}", ns(n)),
            Op::LinkGroupDel { ns: n, group } => write!(f, "link del group {group:#x}{}", ns(n)),
            Op::XdpPair { ns: n, a, b, pin } => {
                write!(
                    f,
                    "xdp redirect {a} <-> {b} (generic mode), pinned at {}{}",
                    pin.display(),
                    ns(n)
                )
            }
            Op::XdpUnpin { pin } => write!(f, "xdp unpin {}", pin.display()),
            Op::IngressToIfb {
                ns: n,
                dev,
                ifb,
                group,
            } => write!(
                f,
                "link add {ifb} group {group:#x} type ifb; qdisc add dev {dev} ingress; filter add dev {dev} ingress u32 match all action mirred egress redirect dev {ifb}{}",
                ns(n)
            ),
            Op::Shape {
                ns: n,
                dev,
                rate,
                latency,
                loss,
                jitter,
            } => {
                write!(f, "qdisc replace dev {dev} root")?;
                if let Some(r) = rate {
                    write!(f, " rate {r}bit")?;
                }
                if let Some(l) = latency {
                    write!(f, " delay {l}ns")?;
                }
                if let Some(j) = jitter {
                    write!(f, " jitter {j}ns")?;
                }
                if let Some(l) = loss {
                    write!(f, " loss {}%", l * 100.0)?;
                }
                write!(f, "{}", ns(n))
            }
            Op::CgroupAdd {
                path,
                quota_us,
                period_us,
            } => match quota_us {
                Some(q) => write!(f, "cgroup add {path} cpu quota {q}us per {period_us}us"),
                None => write!(f, "cgroup add {path}"),
            },
            Op::QemuStart {
                ns: n, argv, fifos, ..
            } => {
                for p in fifos {
                    write!(f, "mkfifo {}.in {}.out; ", p.display(), p.display())?;
                }
                write!(f, "exec {}{}", argv.join(" "), ns(n))
            }
            Op::CgroupJoin { path, pidfile } => {
                write!(f, "cgroup join {path} pid from {}", pidfile.display())
            }
            Op::QmpCont { socket } => write!(f, "qmp cont {}", socket.display()),
            Op::WaitSerial {
                log,
                marker,
                timeout_s,
            } => {
                write!(
                    f,
                    "wait for `{marker}` in {} (up to {timeout_s} s)",
                    log.display()
                )
            }
            Op::QemuStop { socket, .. } => {
                write!(f, "qmp quit {} (then SIGKILL)", socket.display())
            }
            Op::TdfCalibrate { cgroup, tdf, .. } => write!(
                f,
                "calibrate cgroup {cgroup} cpu quota until guest time runs at 1/{tdf} of real time (qmp query-replay icount)"
            ),
            Op::CpusetAdd { path, cpus } => write!(
                f,
                "cgroup add {path} cpuset cpus {}",
                cpus.iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            Op::KillPidfile { pidfile } => write!(f, "kill the process in {}", pidfile.display()),
            Op::CgroupDel { path } => write!(f, "cgroup del {path}"),
            Op::RemoveDir { path } => write!(f, "rm -r {}", path.display()),
            // The set-up script is named rather than counted, so editing
            // it does not change every plan.
            Op::WriteFile { path, content } if content == GUEST_SETUP => {
                write!(f, "write {} (images/guest/mx-setup)", path.display())
            }
            Op::WriteFile { path, content } if content == GUEST_AGENT => {
                write!(f, "write {} (images/guest/mx-agent)", path.display())
            }
            Op::WriteFile { path, content } if content == GUEST_SSHD => {
                write!(f, "write {} (images/guest/mx-sshd)", path.display())
            }
            Op::WriteFile { path, content } => write!(
                f,
                "write {} ({} lines)",
                path.display(),
                content.lines().count()
            ),
            Op::WriteSeed { path, files } => write!(
                f,
                "write {} (cloud-init NoCloud seed: {})",
                path.display(),
                files
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Op::DiskOverlay { base, path, size } => write!(
                f,
                "qemu-img create -f qcow2 -b {} -F qcow2 {} {size}",
                base.display(),
                path.display()
            ),
            Op::SriovVfs { pf, count } => write!(
                f,
                "sysfs: {}/sriov_numvfs at least {count}",
                pf_sysfs(pf).display()
            ),
            Op::MdevCreate {
                parent,
                mdev_type,
                uuid,
            } => write!(
                f,
                "sysfs: echo {uuid} > /sys/bus/pci/devices/{parent}/mdev_supported_types/{mdev_type}/create"
            ),
            Op::MdevRemove { uuid } => {
                write!(f, "sysfs: echo 1 > /sys/bus/mdev/devices/{uuid}/remove")
            }
            Op::VfioBind { sysfs, key } => write!(
                f,
                "sysfs: bind {} to vfio-pci (driver_override, unbind, drivers_probe) as {key}",
                sysfs.display()
            ),
            Op::VfioRelease { key } => {
                write!(f, "sysfs: give {key} back to the driver it had")
            }
            Op::VfSet {
                pf,
                vf,
                vlan,
                mac,
                spoofcheck,
            } => write!(
                f,
                "link set {pf} vf {vf} vlan {vlan} mac {mac} spoofchk {}",
                if *spoofcheck { "on" } else { "off" }
            ),
            Op::NetnsWait { name, timeout_s } => {
                write!(f, "wait for netns {name} (up to {timeout_s} s)")
            }
            Op::WaitLink {
                ns: n,
                name,
                timeout_s,
            } => write!(f, "wait for device {name} (up to {timeout_s} s){}", ns(n)),
            Op::BridgeVlan {
                add,
                dev,
                vid,
                untagged,
            } => {
                let (verb, msg) = if *add {
                    ("add", "RTM_SETLINK")
                } else {
                    ("del", "RTM_DELLINK")
                };
                let flags = if *untagged { "PVID|UNTAGGED" } else { "0" };
                write!(
                    f,
                    "bridge vlan {verb} dev {dev} vid {vid}{} = {msg} family AF_BRIDGE ifindex({dev}) IFLA_AF_SPEC {{ IFLA_BRIDGE_VLAN_INFO {{ flags {flags}, vid {vid} }} }}",
                    if *untagged { " pvid untagged" } else { "" }
                )
            }
        }
    }
}

/// A VXLAN device `name` (VNI, local address, UDP port) with its flood
/// list, in the experiment's group; in a namespace its underlay device is
/// `mxul`. `mtu`: set after creation (1500 for a segment that carries
/// full-size frames over the namespace underlay).
fn vxlan_ops(
    ns: &Option<String>,
    name: &str,
    (vni, local, port): (u32, std::net::Ipv4Addr, u16),
    remotes: &[std::net::Ipv4Addr],
    group: u32,
    mtu: Option<u32>,
) -> Vec<Op> {
    let mut ops = vec![Op::Vxlan {
        ns: ns.clone(),
        name: name.to_string(),
        vni,
        local: local.to_string(),
        port,
        dev: ns.as_ref().map(|_| "mxul".to_string()),
        group,
    }];
    ops.extend(remotes.iter().map(|r| Op::FloodAdd {
        ns: ns.clone(),
        dev: name.to_string(),
        remote: r.to_string(),
    }));
    if let Some(mtu) = mtu {
        ops.push(Op::SetMtu {
            ns: ns.clone(),
            name: name.to_string(),
            mtu,
        });
    }
    ops
}

/// How long an agent waits for what another host's agent makes (an
/// emulated switch's cable, a host's namespace).
pub const CROSS_HOST_WAIT_S: u64 = 120;
/// The VLAN-aware bridge of a Linux switch (Cumulus's and DENT's name).
pub const SWITCH_BRIDGE: &str = "bridge";

/// A Linux switch's front-panel port `n` (`swpN`, as Cumulus and DENT
/// name them).
pub fn switch_port_device(n: u32) -> String {
    format!("swp{n}")
}

/// The tap an emulated VF gives its VM (VF indices are unique per host).
pub fn emulated_vf_tap(pf_port: u32, vf: u32) -> String {
    format!("f{pf_port:x}v{vf:x}")
}

/// An emulated VF's tap, the cable end it is joined to, and the pin of
/// their XDP pair (by host: namespace hosts share the BPF filesystem).
fn emulated_vf(
    host: &str,
    pf_port: u32,
    vf: u32,
    vlan: u16,
    paths: &Paths,
) -> (String, String, PathBuf) {
    let (tap, wire) = (emulated_vf_tap(pf_port, vf), cable_host_end(pf_port, vlan));
    let pin = paths.bpf.join(format!("{host}-{tap}-{wire}"));
    (tap, wire, pin)
}

/// The host's end of an emulated cable carrying one VLAN of host port
/// `port` (VLANs are unique per leaf, and a port has one leaf).
pub fn cable_host_end(port: u32, vlan: u16) -> String {
    format!("w{port:x}v{vlan:x}")
}

/// The switch's end of that cable, on switch port `switch_port`.
pub fn cable_switch_end(switch_port: u32, vlan: u16) -> String {
    format!("e{switch_port:x}v{vlan:x}")
}

/// An emulated switch's port in a VLAN. Without VLAN filtering (this
/// kernel has none, nor 802.1Q), a VLAN is a bridge of its own in the
/// switch's namespace, and a tagged port is a cable per VLAN: a veth pair
/// whose far end is plugged into the host, as `swpN.V` subinterfaces on a
/// traditional-mode switch. The VLAN's VNI mapping is a VXLAN device on
/// that bridge. Same fragment, same agent, same teardown as the real one.
#[allow(clippy::too_many_arguments)]
fn emulated_switch_vlan(
    ns: &str,
    switch_port: u32,
    peer: &str,
    port: u32,
    vlan: u16,
    mapped: Option<(u32, std::net::Ipv4Addr)>,
    remotes: &[std::net::Ipv4Addr],
    paths: &Paths,
) -> Vec<Op> {
    let sw = Some(ns.to_string());
    let br = format!("sv{vlan:x}");
    let (end, wire) = (
        cable_switch_end(switch_port, vlan),
        cable_host_end(port, vlan),
    );
    // Any host name makes a namespace name (`mxh-` and a Name).
    let host_ns = mx_materializer::host_netns(peer)
        .map(|n| n.to_string())
        .unwrap_or_default();
    let mut ops = vec![
        Op::Bridge {
            ns: sw.clone(),
            name: br.clone(),
            group: paths.group,
        },
        Op::SetUp {
            ns: sw.clone(),
            name: br.clone(),
        },
        Op::NetnsWait {
            name: host_ns.clone(),
            timeout_s: CROSS_HOST_WAIT_S,
        },
        Op::Veth {
            ns: sw.clone(),
            name: end.clone(),
            peer: wire.clone(),
            peer_ns: Some(host_ns.clone()),
            mtu: 1500,
            group: paths.group,
        },
        Op::SetMaster {
            ns: sw.clone(),
            name: end.clone(),
            master: br.clone(),
        },
        Op::SetUp {
            ns: sw.clone(),
            name: end,
        },
        Op::SetUp {
            ns: Some(host_ns),
            name: wire,
        },
    ];
    if let Some((vni, local)) = mapped {
        let dev = format!("sx{vni:x}");
        ops.extend(vxlan_ops(
            &sw,
            &dev,
            (vni, local, VXLAN_PORT),
            remotes,
            paths.group,
            Some(1500),
        ));
        ops.push(Op::SetMaster {
            ns: sw.clone(),
            name: dev.clone(),
            master: br,
        });
        ops.push(Op::SetUp { ns: sw, name: dev });
    }
    ops
}

/// The QEMU device for a virtual NIC model.
pub fn nic_device(model: &str) -> Option<&'static str> {
    Some(match model {
        "virtio" => "virtio-net-pci",
        "e1000" => "e1000",
        "e1000e" => "e1000e",
        "rtl8139" => "rtl8139",
        "vmxnet3" => "vmxnet3",
        _ => return None,
    })
}

/// The namespace a fragment's host lives in, if it is a one-machine host.
pub fn host_ns(f: &Fragment, netns_hosts: &[String]) -> Option<String> {
    if !netns_hosts.iter().any(|h| *h == f.host) {
        return None;
    }
    mx_materializer::host_netns(&f.host)
        .ok()
        .map(|n| n.to_string())
}

/// Operations that bring a fragment up.
pub fn up(f: &Fragment, ns: Option<String>, paths: &Paths) -> Vec<Op> {
    match &f.spec {
        Spec::Netns {
            netns,
            underlay_netns,
            underlay_addr,
            device,
            peer,
        } => {
            let ul = Some(underlay_netns.to_string());
            let hn = Some(netns.to_string());
            let (peer, device) = (peer.to_string(), device.to_string());
            vec![
                Op::NetnsAdd {
                    name: underlay_netns.to_string(),
                },
                Op::Bridge {
                    ns: ul.clone(),
                    name: UNDERLAY_BRIDGE.into(),
                    group: 0,
                },
                Op::SetUp {
                    ns: ul.clone(),
                    name: UNDERLAY_BRIDGE.into(),
                },
                Op::NetnsAdd {
                    name: netns.to_string(),
                },
                Op::SetUp {
                    ns: hn.clone(),
                    name: "lo".into(),
                },
                Op::Veth {
                    ns: ul.clone(),
                    name: peer.clone(),
                    peer: device.clone(),
                    peer_ns: hn.clone(),
                    mtu: UNDERLAY_MTU,
                    group: 0,
                },
                Op::SetMaster {
                    ns: ul.clone(),
                    name: peer.clone(),
                    master: UNDERLAY_BRIDGE.into(),
                },
                Op::SetUp {
                    ns: ul,
                    name: peer.clone(),
                },
                Op::AddrAdd {
                    ns: hn.clone(),
                    name: device.clone(),
                    cidr: underlay_addr.to_string(),
                },
                Op::SetUp {
                    ns: hn,
                    name: device,
                },
            ]
        }
        Spec::Vtep {
            device,
            vni,
            local,
            remotes,
            port,
        } => {
            let device = device.to_string();
            let mut ops = vxlan_ops(
                &ns,
                &device,
                (*vni, *local, *port),
                remotes,
                paths.group,
                Some(1500),
            );
            ops.push(Op::SetUp { ns, name: device });
            ops
        }
        Spec::Tap { device, .. } => vec![
            Op::Tap {
                ns: ns.clone(),
                name: device.to_string(),
                group: paths.group,
            },
            Op::SetUp {
                ns,
                name: device.to_string(),
            },
        ],
        Spec::Bridge { device, ports } => {
            let mut ops = vec![Op::Bridge {
                ns: ns.clone(),
                name: device.to_string(),
                group: paths.group,
            }];
            for p in ports {
                ops.push(Op::SetMaster {
                    ns: ns.clone(),
                    name: p.to_string(),
                    master: device.to_string(),
                });
            }
            ops.push(Op::SetUp {
                ns,
                name: device.to_string(),
            });
            ops
        }
        Spec::XdpPair { a, b } => vec![Op::XdpPair {
            ns,
            a: a.to_string(),
            b: b.to_string(),
            pin: paths.bpf.join(format!("{a}-{b}")),
        }],
        Spec::Emulation {
            device,
            rate,
            latency,
            loss,
            jitter,
            sender,
            ..
        } => {
            let mut ops = Vec::new();
            let mut dev = device.to_string();
            if *sender {
                // The tap's name with an `i` for its first letter.
                let ifb = format!("i{}", &device[1..]);
                ops.push(Op::IngressToIfb {
                    ns: ns.clone(),
                    dev: device.to_string(),
                    ifb: ifb.clone(),
                    group: paths.group,
                });
                dev = ifb;
            }
            ops.push(Op::Shape {
                ns,
                dev,
                rate: *rate,
                latency: *latency,
                loss: *loss,
                jitter: *jitter,
            });
            ops
        }
        Spec::Vm(_) if paths.noop_vms => vec![],
        Spec::Vm(vm) => {
            let dir = paths.vm_dir(&vm.name);
            let cg = format!("{}/{}", paths.cgroup, vm.name);
            const PERIOD: u64 = 100_000;
            // Whole ports handed to the VM are bound to vfio-pci first.
            let mut ops: Vec<Op> = vm
                .nics
                .iter()
                .filter_map(|n| match &n.attach {
                    NicAttach::Passthrough { port, device } => Some(Op::VfioBind {
                        sysfs: port_sysfs(device.as_deref(), *port),
                        key: port_key(device.as_deref(), *port),
                    }),
                    _ => None,
                })
                .collect();
            // A GPU: bound whole (or one of its VFs) to vfio-pci, or a
            // mediated device created on it.
            match &vm.gpu {
                Some(g @ VmGpu::Passthrough { device, .. }) => ops.push(Op::VfioBind {
                    sysfs: pf_sysfs(device),
                    key: gpu_key(g).unwrap_or_default(),
                }),
                Some(g @ VmGpu::Vf { parent, vf, .. }) => ops.extend([
                    Op::SriovVfs {
                        pf: parent.to_string(),
                        count: vf + 1,
                    },
                    Op::VfioBind {
                        sysfs: pf_sysfs(parent).join(format!("virtfn{vf}")),
                        key: gpu_key(g).unwrap_or_default(),
                    },
                ]),
                Some(VmGpu::Mdev {
                    parent,
                    mdev_type,
                    uuid,
                    ..
                }) => ops.push(Op::MdevCreate {
                    parent: parent.to_string(),
                    mdev_type: mdev_type.to_string(),
                    uuid: uuid.to_string(),
                }),
                None => {}
            }
            if !vm.cpus.is_empty() {
                ops.push(Op::CpusetAdd {
                    path: cg.clone(),
                    cpus: vm.cpus.clone(),
                });
            }
            // What the guest reads at boot (its configuration, and the
            // script that applies it: the runtime's own, so an image never
            // has to be rebuilt when the protocol changes), and its disk.
            ops.push(Op::WriteFile {
                path: dir.join("config"),
                content: guest_config(vm, paths.ssh_key.as_deref()),
            });
            ops.push(Op::WriteFile {
                path: dir.join("setup"),
                content: GUEST_SETUP.to_string(),
            });
            if let Some((info, idir)) = paths.image(vm)
                && let Some(disk) = &info.disk
            {
                ops.push(Op::DiskOverlay {
                    base: idir.join(disk),
                    path: dir.join("disk.qcow2"),
                    size: vm.disk,
                });
            }
            let cloud = paths
                .image(vm)
                .is_some_and(|(i, _)| i.kind == crate::images::ImageKind::Cloud);
            if cloud {
                // A cloud image has none of mx's scripts: they come with the
                // set-up through fw_cfg, and cloud-init starts them.
                for (file, text) in [("agent", GUEST_AGENT), ("sshd", GUEST_SSHD)] {
                    ops.push(Op::WriteFile {
                        path: dir.join(file),
                        content: text.to_string(),
                    });
                }
                ops.push(Op::WriteSeed {
                    path: dir.join("seed.img"),
                    files: cloud_seed(vm, paths.group),
                });
            }
            ops.extend([
                Op::CgroupAdd {
                    path: cg.clone(),
                    // A dilated VM boots at full speed; calibration sets
                    // its quota once it is up.
                    quota_us: match vm.tdf {
                        Some(_) => None,
                        None => vm
                            .cpu_share
                            .map(|s| (s * PERIOD as f64 * vm.vcpus as f64).round() as u64),
                    },
                    period_us: PERIOD,
                },
                Op::QemuStart {
                    argv: qemu_argv(vm, &f.host, &dir, paths, ns.is_some()),
                    ns,
                    dir: dir.clone(),
                    fifos: vec![dir.join("qga"), dir.join("ssh")],
                },
                Op::CgroupJoin {
                    path: cg,
                    pidfile: dir.join("qemu.pid"),
                },
                Op::QmpCont {
                    socket: dir.join("qmp.sock"),
                },
                Op::WaitSerial {
                    log: dir.join("serial.log"),
                    marker: format!("MX-READY {}", vm.name),
                    timeout_s: paths
                        .image(vm)
                        .map_or(crate::images::DEFAULT_READY_TIMEOUT_S, |(i, _)| {
                            i.ready_timeout()
                        }),
                },
            ]);
            if let Some(tdf) = vm.tdf {
                ops.push(Op::TdfCalibrate {
                    socket: dir.join("qmp.sock"),
                    cgroup: format!("{}/{}", paths.cgroup, vm.name),
                    tdf,
                    shift: TDF_SHIFT,
                    period_us: PERIOD,
                });
            }
            ops
        }
        // The namespace testbed has no SR-IOV: a VF is emulated by a tap
        // for the VM, redirected by XDP into the host's end of the cable
        // the emulated switch plugs in for this port and VLAN.
        Spec::Vf {
            pf_port, vf, vlan, ..
        } if ns.is_some() => {
            let (tap, wire, pin) = emulated_vf(&f.host, *pf_port, *vf, *vlan, paths);
            vec![
                Op::Tap {
                    ns: ns.clone(),
                    name: tap.clone(),
                    group: paths.group,
                },
                Op::SetUp {
                    ns: ns.clone(),
                    name: tap.clone(),
                },
                Op::WaitLink {
                    ns: ns.clone(),
                    name: wire.clone(),
                    timeout_s: CROSS_HOST_WAIT_S,
                },
                Op::XdpPair {
                    ns,
                    pin,
                    a: tap,
                    b: wire,
                },
            ]
        }
        Spec::Vf {
            pf_port,
            pf,
            vf,
            vlan,
            mac,
            spoofcheck,
        } => {
            let dev = match pf {
                None => format!("<port {pf_port}>"),
                Some(pf) => pf.to_string(),
            };
            vec![
                Op::SriovVfs {
                    pf: dev.clone(),
                    count: vf + 1,
                },
                // VLAN switch tagging: the NIC adds and strips the tag, and
                // spoofcheck keeps the guest to its own MAC.
                Op::VfSet {
                    pf: dev.clone(),
                    vf: *vf,
                    vlan: *vlan,
                    mac: mac.to_string(),
                    spoofcheck: *spoofcheck,
                },
                Op::VfioBind {
                    sysfs: PathBuf::from(format!("/sys/class/net/{dev}/device/virtfn{vf}")),
                    key: vf_key(pf.as_deref(), *pf_port, *vf),
                },
            ]
        }
        Spec::Names { entries } => vec![Op::WriteFile {
            path: paths.state.join(format!("names-{}", f.host)),
            content: hosts_file(entries),
        }],
        Spec::SwitchVlan {
            switch_port,
            peer,
            port,
            vlan,
            untagged,
            vni,
            local,
            remotes,
        } => {
            let mapped = vni.zip(*local);
            match ns {
                Some(ns) => emulated_switch_vlan(
                    &ns,
                    *switch_port,
                    peer,
                    *port,
                    *vlan,
                    mapped,
                    remotes,
                    paths,
                ),
                None => {
                    // A Linux switch (Cumulus, SONiC's kernel path, DENT):
                    // the port joins the VLAN on its VLAN-aware bridge; a
                    // segment that leaves the switch gets a VXLAN device
                    // per VNI with the VLAN as its untagged PVID.
                    let mut ops = vec![Op::BridgeVlan {
                        add: true,
                        dev: switch_port_device(*switch_port),
                        vid: *vlan,
                        untagged: *untagged,
                    }];
                    if let Some((v, l)) = mapped {
                        // The switch's own MTU stays (its underlay is its own).
                        let dev = format!("vx{v}");
                        ops.extend(vxlan_ops(
                            &None,
                            &dev,
                            (v, l, VXLAN_PORT),
                            remotes,
                            paths.group,
                            None,
                        ));
                        ops.push(Op::SetMaster {
                            ns: None,
                            name: dev.clone(),
                            master: SWITCH_BRIDGE.into(),
                        });
                        ops.push(Op::BridgeVlan {
                            add: true,
                            dev: dev.clone(),
                            vid: *vlan,
                            untagged: true,
                        });
                        ops.push(Op::SetUp {
                            ns: None,
                            name: dev,
                        });
                    }
                    ops
                }
            }
        }
    }
}

/// Operations that take a fragment down; each is safe when the thing is
/// already gone, so teardown can be repeated.
pub fn down(f: &Fragment, ns: Option<String>, paths: &Paths) -> Vec<Op> {
    match &f.spec {
        Spec::Netns {
            netns,
            underlay_netns,
            peer,
            ..
        } => vec![
            Op::NetnsRelease {
                name: netns.to_string(),
                shared_by: f.host.to_string(),
            },
            Op::LinkDel {
                ns: Some(underlay_netns.to_string()),
                name: peer.to_string(),
                group: None,
            },
            Op::NetnsRelease {
                name: underlay_netns.to_string(),
                shared_by: String::new(),
            },
        ],
        // The first device to go down takes the experiment's others on the
        // host with it, in one batch; the rest find theirs gone.
        Spec::Vtep { device, .. } | Spec::Tap { device, .. } | Spec::Bridge { device, .. } => vec![
            Op::LinkGroupDel {
                ns: ns.clone(),
                group: paths.group,
            },
            Op::LinkDel {
                ns,
                name: device.to_string(),
                group: Some(paths.group),
            },
        ],
        Spec::XdpPair { a, b } => vec![Op::XdpUnpin {
            pin: paths.bpf.join(format!("{a}-{b}")),
        }],
        Spec::Vf {
            pf_port, vf, vlan, ..
        } if ns.is_some() => {
            let (tap, wire, pin) = emulated_vf(&f.host, *pf_port, *vf, *vlan, paths);
            vec![
                Op::XdpUnpin { pin },
                Op::LinkDel {
                    ns: ns.clone(),
                    name: tap,
                    group: Some(paths.group),
                },
                Op::LinkDel {
                    ns,
                    name: wire,
                    group: Some(paths.group),
                },
            ]
        }
        Spec::Vf {
            pf_port, pf, vf, ..
        } => vec![Op::VfioRelease {
            key: vf_key(pf.as_deref(), *pf_port, *vf),
        }],
        // The emulated switch: the experiment's VLAN bridges, VTEPs and
        // cables go as one group (a cable's host end with it).
        Spec::SwitchVlan {
            switch_port, vlan, ..
        } if ns.is_some() => vec![
            Op::LinkGroupDel {
                ns: ns.clone(),
                group: paths.group,
            },
            Op::LinkDel {
                ns,
                name: cable_switch_end(*switch_port, *vlan),
                group: Some(paths.group),
            },
        ],
        Spec::SwitchVlan {
            switch_port,
            vlan,
            untagged,
            vni,
            local,
            ..
        } => {
            let mut ops = vec![Op::BridgeVlan {
                add: false,
                dev: switch_port_device(*switch_port),
                vid: *vlan,
                untagged: *untagged,
            }];
            if let (Some(v), Some(_)) = (vni, local) {
                ops.push(Op::LinkDel {
                    ns: None,
                    name: format!("vx{v}"),
                    group: Some(paths.group),
                });
            }
            ops
        }
        Spec::Emulation { .. } | Spec::Names { .. } => vec![],
        Spec::Vm(_) if paths.noop_vms => vec![],
        Spec::Vm(vm) => {
            let dir = paths.vm_dir(&vm.name);
            let mut ops = vec![
                // A dilated VM's controller first: it holds QEMU's one QMP
                // connection, which `quit` needs.
                Op::KillPidfile {
                    pidfile: dir.join("tdf.pid"),
                },
                Op::QemuStop {
                    socket: dir.join("qmp.sock"),
                    pidfile: dir.join("qemu.pid"),
                },
                Op::CgroupDel {
                    path: format!("{}/{}", paths.cgroup, vm.name),
                },
                Op::RemoveDir { path: dir },
            ];
            ops.extend(vm.nics.iter().filter_map(|n| match &n.attach {
                NicAttach::Passthrough { port, device } => Some(Op::VfioRelease {
                    key: port_key(device.as_deref(), *port),
                }),
                _ => None,
            }));
            match &vm.gpu {
                Some(VmGpu::Mdev { uuid, .. }) => ops.push(Op::MdevRemove {
                    uuid: uuid.to_string(),
                }),
                Some(g) => ops.push(Op::VfioRelease {
                    key: gpu_key(g).unwrap_or_default(),
                }),
                None => {}
            }
            ops
        }
    }
}

/// Guest nanoseconds per instruction of a time-dilated VM, as a power of
/// two: 2^6 = 64 ns, so a guest at full TCG speed here (~30 M instructions/s
/// with icount) runs about twice as fast as real time, and the CPU quota
/// slows it to 1/tdf.
pub const TDF_SHIFT: u32 = 6;

/// The name a VF's binding is recorded under.
pub fn vf_key(pf: Option<&str>, port: u32, vf: u32) -> String {
    format!("{}-vf{vf}", port_key(pf, port))
}

/// The sysfs directory of a physical function: a network interface's
/// device, or a PCI function by address (GPUs).
pub fn pf_sysfs(pf: &str) -> PathBuf {
    if pf.contains(':') {
        PathBuf::from(format!("/sys/bus/pci/devices/{pf}"))
    } else {
        PathBuf::from(format!("/sys/class/net/{pf}/device"))
    }
}

/// The name a GPU's vfio-pci binding is recorded under.
pub fn gpu_key(gpu: &VmGpu) -> Option<String> {
    match gpu {
        VmGpu::Passthrough { device, .. } => Some(format!("gpu-{device}")),
        VmGpu::Vf { parent, vf, .. } => Some(format!("gpu-{parent}-vf{vf}")),
        VmGpu::Mdev { .. } => None,
    }
}

/// The name a whole port's binding is recorded under.
pub fn port_key(device: Option<&str>, port: u32) -> String {
    match device {
        None => format!("port{port}"),
        Some(d) => d.to_string(),
    }
}

/// The sysfs directory of a port's PCI function (`<port N>` where the
/// facility does not name the interface; the runtime refuses to run those).
pub fn port_sysfs(device: Option<&str>, port: u32) -> PathBuf {
    match device {
        None => PathBuf::from(format!("/sys/class/net/<port {port}>/device")),
        Some(d) => PathBuf::from(format!("/sys/class/net/{d}/device")),
    }
}

/// QEMU's name for the link speed of a PCIe generation (GT/s).
pub fn pcie_speed(generation: u8) -> &'static str {
    match generation {
        1 => "2_5",
        2 => "5",
        3 => "8",
        4 => "16",
        5 => "32",
        _ => "64",
    }
}

/// The QEMU system emulator for an architecture.
pub fn qemu_binary(arch: &str) -> String {
    format!("qemu-system-{arch}")
}

/// QEMU's command line for a VM: started paused (`-S`) so it can be put in
/// its cgroup before the guest runs, daemonized so it outlives `mxc up`.
pub fn qemu_argv(
    vm: &VmSpec,
    host: &str,
    dir: &Path,
    paths: &Paths,
    netns_host: bool,
) -> Vec<String> {
    // The plan refused VMs whose image is not installed: without one there
    // is nothing to boot, and an empty command fails where it runs.
    let Some((info, image)) = paths.image(vm) else {
        return Vec::new();
    };
    let mut append = vec![
        format!("console={}", console(&vm.arch)),
        "quiet".into(),
        "panic=-1".into(),
    ];
    if vm.arch == "x86_64" {
        // Early boot checks that the IO-APIC delivers timer ticks within a
        // few of its own loops; a TCG vCPU on a loaded host can miss that
        // window, and the kernel then panics ("IO-APIC + timer doesn't
        // work!"). QEMU's timer is known to work, as cloud kernels assume.
        append.push("no_timer_check".into());
    }
    append.extend(info.append.iter().cloned());
    if vm.tdf.is_some() {
        // Guest time is counted in instructions: an idle guest must keep
        // executing them, or idle time would be skipped.
        append.push("idle=poll".into());
    }
    append.extend(vm.kernel_args.iter().cloned());
    // Under TCG, aarch64's `max` emulates pointer authentication with the
    // architected cipher, which makes guests ~4x slower to boot; the
    // implementation-defined algorithm is much cheaper to emulate.
    let cpu = match (paths.accel.as_str(), vm.arch.as_str()) {
        ("kvm", _) => "host",
        (_, "aarch64") => "max,pauth-impdef=on",
        _ => "max",
    };
    let d = |f: &str| dir.join(f).display().to_string();
    let mut argv: Vec<String> = [
        qemu_binary(&vm.arch).as_str(),
        "-name",
        &vm.name,
        "-machine",
        &format!("{},accel={}", vm.machine.as_str(), paths.accel),
        "-cpu",
        cpu,
        "-smp",
        &vm.vcpus.to_string(),
        "-m",
        &vm.memory_mib.to_string(),
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
        // The serial console: a socket `mxc console` attaches to, logged
        // whole to serial.log whether or not anyone is attached.
        "-chardev",
        &format!(
            "socket,id=con,path={},server=on,wait=off,logfile={}",
            d("console.sock"),
            d("serial.log")
        ),
        "-serial",
        "chardev:con",
        "-qmp",
        &format!("unix:{},server=on,wait=off", d("qmp.sock")),
        "-pidfile",
        &d("qemu.pid"),
        "-daemonize",
        "-S",
        // The management path: virtio-serial ports, never a network
        // interface, so experiment traffic and management never share a
        // link. Pipes (FIFO pairs), not sockets: the guest sees its ports
        // always connected, so its agent blocks reading instead of polling
        // for a client.
        "-device",
        "virtio-serial-pci,id=mgmt",
        "-chardev",
        &format!("pipe,id=qga,path={}", d("qga")),
        "-device",
        "virtserialport,bus=mgmt.0,chardev=qga,name=org.qemu.guest_agent.0",
        // What the guest configures itself from (see [`guest_config`]),
        // and the script that does it.
        "-fw_cfg",
        &format!("name=opt/mx/config,file={}", d("config")),
        "-fw_cfg",
        &format!("name=opt/mx/setup,file={}", d("setup")),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if info.ssh {
        argv.extend([
            "-chardev".into(),
            format!("pipe,id=ssh,path={}", d("ssh")),
            "-device".into(),
            "virtserialport,bus=mgmt.0,chardev=ssh,name=org.mx.ssh.0".into(),
        ]);
    }
    if let Some(names) = paths.names.get(host) {
        argv.extend([
            "-fw_cfg".into(),
            format!("name=opt/mx/hosts,file={}", names.display()),
        ]);
    }
    if let Some(k) = &info.kernel {
        argv.extend(["-kernel".into(), image.join(k).display().to_string()]);
    }
    if let Some(i) = &info.initrd {
        argv.extend(["-initrd".into(), image.join(i).display().to_string()]);
    }
    if info.kernel.is_some() {
        argv.extend(["-append".into(), append.join(" ")]);
    }
    if info.disk.is_some() {
        argv.extend([
            "-drive".into(),
            format!(
                "if=none,id=disk,file={},format=qcow2,discard=unmap",
                d("disk.qcow2")
            ),
            "-device".into(),
            match info.disk_bus {
                // The firmware boots a cloud image from its disk.
                crate::images::DiskBus::Virtio if info.kind == crate::images::ImageKind::Cloud => {
                    "virtio-blk-pci,drive=disk,bootindex=0".into()
                }
                crate::images::DiskBus::Virtio => "virtio-blk-pci,drive=disk".into(),
                crate::images::DiskBus::Nvme => "nvme,drive=disk,serial=mx-root".into(),
            },
        ]);
    }
    if info.kind == crate::images::ImageKind::Cloud {
        // cloud-init's NoCloud seed, labelled `cidata`, and mx's scripts.
        argv.extend([
            "-drive".into(),
            format!(
                "if=none,id=seed,format=raw,readonly=on,file={}",
                d("seed.img")
            ),
            "-device".into(),
            "virtio-blk-pci,drive=seed".into(),
            "-fw_cfg".into(),
            format!("name=opt/mx/agent,file={}", d("agent")),
            "-fw_cfg".into(),
            format!("name=opt/mx/sshd,file={}", d("sshd")),
        ]);
    }
    if vm.tdf.is_some() {
        argv.push("-icount".into());
        argv.push(format!("shift={TDF_SHIFT},sleep=off,align=off"));
    }
    for (i, n) in vm.nics.iter().enumerate() {
        match &n.attach {
            NicAttach::Tap { device } => {
                argv.push("-netdev".into());
                argv.push(format!(
                    "tap,id=n{i},ifname={device},script=no,downscript=no"
                ));
                let model = nic_device(&n.model).unwrap_or("virtio-net-pci");
                let mut dev = format!("{model},netdev=n{i},mac={}", n.mac);
                if let Some(p) = vm.pcie.filter(|_| vm.machine == mx_xir::Machine::Q35) {
                    // Each NIC behind its own root port, whose link runs at
                    // the generation and width the node asked for.
                    argv.push("-device".into());
                    argv.push(format!(
                        "pcie-root-port,id=rp{i},bus=pcie.0,chassis={},x-speed={},x-width={}",
                        i + 1,
                        pcie_speed(p.r#gen),
                        p.lanes
                    ));
                    dev.push_str(&format!(",bus=rp{i}"));
                }
                if n.no_offload && model == "virtio-net-pci" {
                    // An XDP redirect hands frames on as they are; a guest
                    // that left the checksum to offload would send frames the
                    // peer drops. Make the guest checksum and segment itself.
                    dev.push_str(
                        ",csum=off,gso=off,guest_csum=off,guest_tso4=off,guest_tso6=off,guest_ecn=off,guest_ufo=off,host_tso4=off,host_tso6=off,host_ecn=off,host_ufo=off",
                    );
                }
                argv.push("-device".into());
                argv.push(dev);
            }
            // The PCI address is the machine's business: the runtime records
            // it when it binds the function to vfio-pci, and fills it in.
            // An emulated VF (namespace hosts): a virtio NIC on the VF's
            // tap, which XDP joins to the cable; the offloads off as for
            // any XDP-redirected tap.
            NicAttach::Vf { pf_port, vf, .. } if netns_host => {
                argv.push("-netdev".into());
                argv.push(format!(
                    "tap,id=n{i},ifname={},script=no,downscript=no",
                    emulated_vf_tap(*pf_port, *vf)
                ));
                argv.push("-device".into());
                argv.push(format!(
                    "virtio-net-pci,netdev=n{i},mac={},csum=off,gso=off,guest_csum=off,guest_tso4=off,guest_tso6=off,guest_ecn=off,guest_ufo=off,host_tso4=off,host_tso6=off,host_ecn=off,host_ufo=off",
                    n.mac
                ));
            }
            NicAttach::Vf { pf_port, pf, vf } => {
                argv.push("-device".into());
                argv.push(format!(
                    "vfio-pci,host=@pci({}),id=nic{i}",
                    vf_key(pf.as_deref(), *pf_port, *vf)
                ));
            }
            NicAttach::Passthrough { port, device } => {
                argv.push("-device".into());
                argv.push(format!(
                    "vfio-pci,host=@pci({}),id=nic{i}",
                    port_key(device.as_deref(), *port)
                ));
            }
        }
    }
    if let Some(g) = &vm.gpu {
        // The GPU sits behind a root port of its own, as on real PCIe; the
        // link runs at what the node asked for, if it did.
        argv.push("-device".into());
        let mut port = format!(
            "pcie-root-port,id=rpgpu,bus=pcie.0,chassis={}",
            vm.nics.len() + 1
        );
        if let Some(p) = vm.pcie {
            port.push_str(&format!(
                ",x-speed={},x-width={}",
                pcie_speed(p.r#gen),
                p.lanes
            ));
        }
        argv.push(port);
        argv.push("-device".into());
        argv.push(match g {
            VmGpu::Mdev { uuid, .. } => {
                format!("vfio-pci,sysfsdev=/sys/bus/mdev/devices/{uuid},bus=rpgpu,id=gpu0")
            }
            g => format!(
                "vfio-pci,host=@pci({}),bus=rpgpu,id=gpu0",
                gpu_key(g).unwrap_or_default()
            ),
        });
    }
    argv
}
