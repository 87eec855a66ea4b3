//! The runtime: bundles of fragments in, a running experiment out.
//!
//! 1. [`bundle`]: load bundles and check them (digests, versions, names,
//!    references) before anything is touched;
//! 2. [`dag`]: fragments to a task DAG (global network, local network, VMs,
//!    emulation), dependencies taken from the fragments;
//! 3. [`plan`]: each task as a list of operations, to bring it up and to take
//!    it down; a dry run prints these;
//! 4. [`exec`]: a bounded worker pool runs the DAG, forwards for `up`, in
//!    reverse for `down`, with the state of every task on disk;
//! 5. [`real`]: the operations on the machine (netlink, taps, XDP, QEMU and
//!    QMP, cgroups, tc).

pub mod agent;
pub mod bundle;
pub mod console;
pub mod dag;
pub mod exec;
pub mod images;
pub mod plan;
pub mod real;
pub mod ssh;
pub mod switch;
mod tap;

use mx_diag::code;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use mx_diag::Diagnostic;
use mx_materializer::Bundle;
use mx_xir::{Name, Spec};

pub use exec::{Event, State, Status};

/// The guest image build script, carried in the binary so `mxc up` can
/// build the default image on a machine that has only `mxc`.
pub const GUEST_SCRIPT: &str = include_str!("../../images/build-guest.sh");
/// The Debian image build script (`bookworm`, `bullseye`), carried the
/// same way.
pub const DEBIAN_SCRIPT: &str = include_str!("../../images/build-debian.sh");
/// The scripts every guest runs (`images/guest/`): configuration from
/// fw_cfg, and the busybox guest's agent.
pub const GUEST_FILES: &[(&str, &str)] = &[
    ("mx-setup", plan::GUEST_SETUP),
    ("mx-agent", include_str!("../../images/guest/mx-agent")),
    ("mx-sshd", include_str!("../../images/guest/mx-sshd")),
];

/// A running VM, as `mxc exec`, `cp`, `console` and `ssh` reach it.
#[derive(Clone, Debug)]
pub struct Guest {
    /// The node.
    pub name: Name,
    /// The host it runs on.
    pub host: String,
    /// Its directory: sockets, FIFOs, console log, disk.
    pub dir: PathBuf,
    /// The image it booted, as installed now.
    pub image: Option<images::ImageInfo>,
}

impl Guest {
    /// Its agent channel.
    pub fn agent(&self) -> Result<agent::Agent, Diagnostic> {
        let mut a = agent::Agent::open(&self.dir, self.name.as_str()).map_err(|e| {
            Diagnostic::error(code::E0406, e).help("`mxc status` shows whether the node is up")
        })?;
        a.full_json = self
            .image
            .as_ref()
            .is_none_or(|i| i.agent != images::AgentKind::MxAgent);
        Ok(a)
    }
}

/// An experiment's bundles as its state keeps them: one file (a file per
/// fragment took longer to write than the plumbing took to make, on ext4
/// where many inodes were just freed).
const BUNDLES_FILE: &str = "bundles.json";

/// Where the runtime keeps its state, images and pins.
#[derive(Clone, Debug)]
pub struct Runtime {
    /// Experiments' state directories live under this.
    pub root: PathBuf,
    /// Images (`<images>/<name>/vmlinuz`, `initramfs.cpio.gz`).
    pub images: PathBuf,
    /// XDP pins (`<bpf>/<experiment>/...`), on a BPF filesystem.
    pub bpf: PathBuf,
    /// Cgroup prefix under each controller.
    pub cgroup: String,
    /// Tasks run at once.
    pub workers: usize,
}

/// Why [`Runtime::up`] did not bring an experiment up, and what that
/// leaves behind: the caller decides from this, not from codes, whether
/// to give the experiment's allocation back.
#[derive(Debug)]
pub enum UpError {
    /// Refused before anything on the machine was touched (bundles that do
    /// not validate, a missing image, a fragment this machine cannot run):
    /// the allocation can be given back.
    Refused(Vec<Diagnostic>),
    /// The experiment is already up here (its state exists, or its tag is
    /// held): nothing was touched, and the allocation is in use.
    AlreadyUp(Vec<Diagnostic>),
    /// Failed part way: the state says what was done, `down` removes it,
    /// and the allocation stays until then.
    Failed(Vec<Diagnostic>),
}

impl UpError {
    /// What went wrong.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            UpError::Refused(d) | UpError::AlreadyUp(d) | UpError::Failed(d) => d,
        }
    }
}

impl Runtime {
    /// Paths from `MX_STATE_DIR` and `MX_IMAGE_DIR`, else `/var/lib/mx/...`.
    pub fn from_env() -> Runtime {
        let var = |k: &str, d: &str| {
            std::env::var_os(k)
                .map(PathBuf::from)
                .unwrap_or_else(|| d.into())
        };
        Runtime {
            root: var("MX_STATE_DIR", "/var/lib/mx/run"),
            images: var("MX_IMAGE_DIR", "/var/lib/mx/images"),
            bpf: PathBuf::from("/sys/fs/bpf/mx"),
            cgroup: "mx".into(),
            // Most tasks wait (on the kernel, on a guest booting); a VM task
            // holds its worker until the guest is ready, so the pool must not
            // be what staggers VM boots.
            workers: 64,
        }
    }

    /// An experiment's state directory. Taking a [`Name`] (never a path)
    /// keeps it inside the state root.
    pub fn state_dir(&self, name: &Name) -> PathBuf {
        self.root.join(name.as_str())
    }

    fn paths(&self, name: &Name, tag: u32, accel: &str) -> plan::Paths {
        plan::Paths {
            state: self.state_dir(name),
            bpf: self.bpf.join(name.as_str()),
            cgroup: format!("{}/{name}", self.cgroup),
            images: self.images.clone(),
            accel: accel.to_string(),
            images_info: Default::default(),
            group: plan::device_group(tag),
            names: Default::default(),
            ssh_key: None,
            noop_vms: std::env::var_os("MX_BENCH_NOOP_VMS").is_some_and(|v| v == "1"),
        }
    }

    /// Experiments with a state directory here.
    pub fn list(&self) -> Vec<Name> {
        let mut v: Vec<Name> = std::fs::read_dir(&self.root)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.path().join("state.json").exists())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter_map(|n| Name::new(n).ok())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Where experiments' tags are claimed on this machine.
    fn tags_dir(&self) -> PathBuf {
        self.root.join(".tags")
    }

    /// Claims `tag` for `name` on this machine: a file created only if
    /// absent, so two experiments (realized against different allocation
    /// tables, or from forged bundles) never run with one tag, and with it
    /// one set of device names and one device group. A claim whose holder
    /// has no state any more is stale and taken over.
    pub fn claim_tag(&self, tag: u32, name: &Name) -> Result<(), Diagnostic> {
        let dir = self.tags_dir();
        std::fs::create_dir_all(&dir).map_err(|e| {
            Diagnostic::error(code::E0404, format!("cannot create {}: {e}", dir.display()))
        })?;
        let file = dir.join(mx_materializer::tag_hex(tag));
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&file)
            {
                Ok(mut f) => {
                    use std::io::Write;
                    return f.write_all(name.as_bytes()).map_err(|e| {
                        Diagnostic::error(
                            code::E0404,
                            format!("cannot write {}: {e}", file.display()),
                        )
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = std::fs::read_to_string(&file).unwrap_or_default();
                    match Name::new(holder.trim()) {
                        Ok(h) if h == *name => return Ok(()),
                        Ok(h) if self.state_dir(&h).join("state.json").exists() => {
                            return Err(Diagnostic::error(
                                code::E0403,
                                format!(
                                    "experiment `{name}` has tag {tag:#08x}, which experiment `{h}` running on this machine holds"
                                ),
                            )
                            .help("realize it again against the allocation table `{h}` was realized with, so that it gets a free tag"));
                        }
                        _ => {
                            let _ = std::fs::remove_file(&file);
                        }
                    }
                }
                Err(e) => {
                    return Err(Diagnostic::error(
                        code::E0404,
                        format!("cannot create {}: {e}", file.display()),
                    ));
                }
            }
        }
        Err(Diagnostic::error(
            code::E0404,
            format!("cannot claim tag {tag:#08x} in {}", dir.display()),
        ))
    }

    /// Gives a tag back once its experiment is down.
    fn release_tag(&self, tag: u32, name: &Name) {
        let file = self.tags_dir().join(mx_materializer::tag_hex(tag));
        if std::fs::read_to_string(&file).is_ok_and(|h| h.trim() == name.as_str()) {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// What a planned or finished run looks like.
pub struct Plan {
    /// The DAG.
    pub dag: dag::Dag,
    /// For each task, the operations to bring it up.
    pub ops: Vec<Vec<plan::Op>>,
    /// Warnings (images not installed, ...).
    pub notes: Vec<String>,
}

/// A fresh record of every task of `dag`, all in `status`.
fn task_states(dag: &dag::Dag, status: Status) -> Vec<exec::TaskState> {
    dag.tasks
        .iter()
        .map(|t| exec::TaskState {
            id: t.fragment.id.clone(),
            host: t.fragment.host.to_string(),
            status,
            message: String::new(),
            ms: 0,
        })
        .collect()
}

fn netns_hosts(bundles: &[Bundle]) -> Vec<String> {
    let mut v: Vec<String> = bundles
        .iter()
        .flat_map(|b| &b.fragments)
        .filter(|f| matches!(f.spec, Spec::Netns { .. }))
        .map(|f| f.host.to_string())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The experiment and its tag (the bundles are validated to agree).
fn experiment_of(bundles: &[Bundle]) -> Option<(Name, u32)> {
    bundles
        .iter()
        .flat_map(|b| &b.fragments)
        .map(|f| (f.experiment.clone(), f.tag))
        .next()
}

/// The accelerator for QEMU: `MX_ACCEL` if set, else KVM when `/dev/kvm`
/// opens and the CPU has hardware virtualization, else TCG. (A `/dev/kvm`
/// alone is not enough: nested setups expose one that cannot boot guests.)
pub fn probe_accel() -> (String, String) {
    if let Ok(a) = std::env::var("MX_ACCEL")
        && (a == "kvm" || a == "tcg")
    {
        return (a, "set by MX_ACCEL".into());
    }
    let dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm");
    let flags = std::fs::read_to_string("/proc/cpuinfo")
        .map(|c| {
            c.lines()
                .filter(|l| l.starts_with("flags"))
                .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
        })
        .unwrap_or(false);
    match (dev.is_ok(), flags) {
        (true, true) => (
            "kvm".into(),
            "/dev/kvm usable and the CPU has vmx/svm".into(),
        ),
        (true, false) => (
            "tcg".into(),
            "/dev/kvm exists but the CPU shows no vmx/svm (nested); using TCG".into(),
        ),
        _ => ("tcg".into(), "no usable /dev/kvm; using TCG".into()),
    }
}

/// Another experiment (than `me`) whose state uses host `host` (any
/// one-machine host when `host` is empty), if any.
pub fn others_using(root: &Path, me: &str, host: &str) -> Option<Name> {
    let rt = Runtime {
        root: root.to_path_buf(),
        ..Runtime::from_env()
    };
    rt.list().into_iter().filter(|n| *n != me).find(|n| {
        exec::State::load(&rt.state_dir(n)).is_ok_and(|s| {
            if host.is_empty() {
                !s.netns_hosts.is_empty()
            } else {
                s.netns_hosts.iter().any(|h| h == host)
            }
        })
    })
}

/// The message for a VF fragment on a machine without SR-IOV.
pub fn unsupported_vf() -> String {
    "E0405: this machine has no SR-IOV NIC (no /sys/class/net/*/device/sriov_totalvfs), so no VF can be created".into()
}

fn has_sriov() -> bool {
    std::fs::read_dir("/sys/class/net")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .any(|e| e.path().join("device/sriov_totalvfs").exists())
        })
        .unwrap_or(false)
}

fn has_vfio() -> bool {
    Path::new("/dev/vfio/vfio").exists()
        && std::fs::read_dir("/sys/kernel/iommu_groups").is_ok_and(|mut d| d.next().is_some())
}

/// Why a VM's GPU cannot be attached on this machine, checked before
/// anything is touched: the device is missing, or VFIO or the mediated-device
/// type is. Each as (message, help).
fn gpu_check(vm: &str, host: &str, g: &mx_xir::VmGpu) -> Vec<(String, String)> {
    use mx_xir::VmGpu;
    let mut out = Vec::new();
    let (model, dev) = match g {
        VmGpu::Passthrough { model, device } => (model, device),
        VmGpu::Mdev { model, parent, .. } | VmGpu::Vf { model, parent, .. } => (model, parent),
    };
    let sysfs = Path::new("/sys/bus/pci/devices").join(dev);
    if !sysfs.exists() {
        out.push((
            format!("VM `{vm}` holds the {model} GPU at {dev} on host {host}, and this machine has no PCI device there"),
            "check the facility's gpu(..., devices=[...]) against `lspci -D` on the host".into(),
        ));
        return out;
    }
    if !has_vfio() {
        out.push((
            format!("VM `{vm}` needs VFIO for its {model} GPU; this kernel has none (no /dev/vfio/vfio or no IOMMU groups)"),
            "boot the host with the IOMMU on (intel_iommu=on or amd_iommu=on) and vfio-pci available".into(),
        ));
    }
    match g {
        VmGpu::Mdev { mdev_type, .. }
            if !sysfs.join("mdev_supported_types").join(mdev_type).exists() =>
        {
            out.push((
                format!("VM `{vm}` needs a {mdev_type} mediated device of the GPU at {dev}, which offers none"),
                format!("load the vendor's mediated-device driver; `ls {}/mdev_supported_types` lists what the GPU offers", sysfs.display()),
            ));
        }
        VmGpu::Vf { vf, .. } => match std::fs::read_to_string(sysfs.join("sriov_totalvfs")) {
            Ok(t) if t.trim().parse::<u32>().is_ok_and(|n| n > *vf) => {}
            _ => out.push((
                format!("VM `{vm}` needs VF {vf} of the GPU at {dev}, which does not offer it"),
                "check the facility's gpu(..., vfs=N) against the GPU's sriov_totalvfs".into(),
            )),
        },
        _ => {}
    }
    out
}

/// Architectures whose default guest image `mxc image --build` makes.
pub const BUILDABLE: &[&str] = &["x86_64", "aarch64"];

fn which(bin: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
        .unwrap_or(false)
}

impl Runtime {
    /// Checks bundles and plans them: the DAG and every operation, without
    /// touching the machine. `check_machine` adds what this machine lacks
    /// (QEMU, images, SR-IOV, root) as errors.
    pub fn plan(
        &self,
        bundles: &[Bundle],
        check_machine: bool,
    ) -> Result<(Plan, plan::Paths), Vec<Diagnostic>> {
        bundle::validate(bundles)?;
        let (name, tag) = experiment_of(bundles).ok_or_else(|| {
            vec![
                Diagnostic::error(code::E0402, "the bundles hold no fragment")
                    .help("materialize a realization with at least one node"),
            ]
        })?;
        let dag = dag::build(bundles);
        let mut errs = Vec::new();
        let mut notes = Vec::new();
        let mut accel = "tcg".to_string();
        if check_machine {
            let (a, why) = probe_accel();
            accel = a;
            notes.push(format!("accelerator: {accel} ({why})"));
            let unsupported = |m: String, help: &str| Diagnostic::error(code::E0405, m).help(help);
            if !nix::unistd::Uid::effective().is_root() {
                errs.push(unsupported(
                    "bringing an experiment up needs root (namespaces, taps, XDP, cgroups)".into(),
                    "run mxc up as root, or use --dry-run to see the plan",
                ));
            }
            let emulated = netns_hosts(bundles);
            for t in &dag.tasks {
                // Namespace hosts and switches emulate VFs and switch VLANs.
                if emulated.contains(&t.fragment.host.to_string())
                    && matches!(t.fragment.spec, Spec::Vf { .. } | Spec::SwitchVlan { .. })
                {
                    continue;
                }
                match &t.fragment.spec {
                    Spec::Vf { pf: None, pf_port, .. } => errs.push(unsupported(
                        format!("fragment `{}` needs a VF on host {}'s port {pf_port}, whose interface the facility does not name", t.fragment.id, t.fragment.host),
                        "name the ports' interfaces in the facility: nic(..., devices=['enp59s0f0', 'enp59s0f1'])",
                    )),
                    Spec::Vf { .. } if !has_sriov() => errs.push(unsupported(
                        format!("fragment `{}` needs an SR-IOV NIC; this machine has none", t.fragment.id),
                        "realize onto a facility whose hosts have SR-IOV NICs, or use `nic == virtio`",
                    )),
                    Spec::SwitchVlan { .. } if !switch::has_vlan_bridge() => errs.push(unsupported(
                        format!(
                            "fragment `{}` configures switch {}'s ports on its VLAN-aware bridge `{}`, which this machine lacks (no {}/bridge/vlan_filtering set to 1)",
                            t.fragment.id,
                            t.fragment.host,
                            plan::SWITCH_BRIDGE,
                            plan::SWITCH_BRIDGE
                        ),
                        "run the switch's bundle on the switch (`mxc agent --host SWITCH` there), or mark an emulated switch `netns=True` in the facility",
                    )),
                    Spec::Vm(vm) => {
                        if let Some(g) = &vm.gpu {
                            errs.extend(gpu_check(&vm.name, &t.fragment.host, g).into_iter().map(|(m, h)| unsupported(m, &h)));
                        }
                        if let Some(tdf) = vm.tdf {
                            // Dilation counts guest time in instructions
                            // (TCG's icount): one vCPU (icount with several
                            // hangs at secondary-CPU bring-up), no KVM, and
                            // a factor the quota can reach.
                            if vm.vcpus != 1 {
                                errs.push(unsupported(format!("VM `{}` asks for time dilation with {} vCPUs; dilated VMs have one", vm.name, vm.vcpus), "ask for `cores == 1` together with `tdf`"));
                            }
                            if accel == "kvm" {
                                errs.push(unsupported(format!("VM `{}` asks for time dilation, which needs TCG's instruction counting; this host runs KVM", vm.name), "set MX_ACCEL=tcg for this experiment"));
                            }
                            if !(1.0..=50.0).contains(&tdf) {
                                errs.push(unsupported(format!("VM `{}` asks for tdf == {tdf}; this runtime dilates by 1 to 50", vm.name), "pick a factor from 1 to 50"));
                            }
                        }
                        let bin = plan::qemu_binary(&vm.arch);
                        if !which(&bin) {
                            errs.push(unsupported(format!("VM `{}` needs {bin}, which is not installed", vm.name), "apt-get install qemu-system-x86 (qemu-system-arm for aarch64, qemu-system-misc for riscv64)"));
                        }
                        for n in &vm.nics {
                            if let mx_xir::NicAttach::Passthrough { device: None, port } = &n.attach {
                                errs.push(unsupported(format!("VM `{}` takes host {}'s port {port} whole, but the facility does not name its interface", vm.name, t.fragment.host), "name the ports' interfaces in the facility: nic(..., devices=[...])"));
                            }
                            let emulated_vf = matches!(n.attach, mx_xir::NicAttach::Vf { .. })
                                && emulated.contains(&t.fragment.host.to_string());
                            if !matches!(n.attach, mx_xir::NicAttach::Tap { .. }) && !emulated_vf && !has_vfio() {
                                errs.push(unsupported(format!("VM `{}` needs VFIO for its {} NIC; this kernel has none (no /dev/vfio/vfio or no IOMMU groups)", vm.name, n.model), "use a virtual NIC model, or a host with VFIO and an IOMMU"));
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        let mut paths = self.paths(&name, tag, &accel);
        // Every VM's image is installed (a dry run says so too): a model
        // that asks for an OS gets that OS or an error, never another.
        for t in &dag.tasks {
            match &t.fragment.spec {
                Spec::Vm(vm) => {
                    let key = images::key(&vm.image, &vm.arch);
                    let dir = self.images.join(&key);
                    let known = paths.images_info.contains_key(&key);
                    match (!known).then(|| images::read(&dir, &key)) {
                        None => {}
                        Some(Some(info)) => {
                            paths.images_info.insert(key.clone(), info);
                        }
                        Some(None)
                            if images::canonical(&vm.image) == mx_materializer::DEFAULT_IMAGE
                                && BUILDABLE.contains(&vm.arch.as_str()) =>
                        {
                            // `mxc up` builds it before it plans.
                            if check_machine {
                                errs.push(
                                    Diagnostic::error(
                                        code::E0405,
                                        format!(
                                            "the default {} image is not built ({})",
                                            vm.arch,
                                            dir.display()
                                        ),
                                    )
                                    .help(format!(
                                        "run `mxc image --build {} --arch {}` (`mxc up` builds it)",
                                        mx_materializer::DEFAULT_IMAGE,
                                        vm.arch
                                    )),
                                );
                            } else {
                                notes.push(format!(
                                    "image `{key}` is not built yet: `mxc up` builds it"
                                ));
                            }
                            paths
                                .images_info
                                .insert(key.clone(), images::busybox_info(&vm.arch, &dir));
                        }
                        Some(None) => {
                            let (m, h) = images::missing(&self.images, &vm.image, &vm.arch);
                            errs.push(
                                Diagnostic::error(code::E0405, format!("VM `{}`: {m}", vm.name))
                                    .help(h),
                            );
                            paths
                                .images_info
                                .insert(key.clone(), images::busybox_info(&vm.arch, &dir));
                        }
                    }
                    // A cloud image boots its own kernel through its own boot
                    // loader: what mx would put on the command line cannot
                    // reach it.
                    if paths
                        .images_info
                        .get(&key)
                        .is_some_and(|i| i.kind == images::ImageKind::Cloud)
                    {
                        let what = match (vm.tdf.is_some(), vm.kernel_args.first()) {
                            (true, _) => Some("time dilation (`tdf`) needs `idle=poll` on the kernel command line".to_string()),
                            (false, Some(a)) => Some(format!("the kernel argument `{a}` has no command line to go on")),
                            (false, None) => None,
                        };
                        if let Some(what) = what {
                            errs.push(
                                Diagnostic::error(code::E0405, format!("VM `{}` boots the cloud image `{}`, which boots its own kernel: {what}", vm.name, vm.image))
                                    .help("use an image mx boots the kernel of (`mxc image list`: bookworm, the busybox guest), or drop the constraint"),
                            );
                        }
                    }
                    // Unix socket paths are short: the state directory must
                    // leave room for the VM's.
                    let vm_dir = paths.vm_dir(&vm.name);
                    if let Some(long) = plan::vm_sockets(&vm_dir)
                        .iter()
                        .find(|p| p.as_os_str().len() > plan::SOCKET_PATH_MAX)
                    {
                        errs.push(Diagnostic::error(code::E0405, format!("VM `{}`'s socket {} is longer than the {} bytes a unix socket path may have", vm.name, long.display(), plan::SOCKET_PATH_MAX))
                            .help("set MX_STATE_DIR to a shorter directory, or give the experiment a shorter name"));
                    }
                }
                Spec::Names { .. } => {
                    let host = t.fragment.host.to_string();
                    let file = paths.state.join(format!("names-{host}"));
                    paths.names.insert(host, file);
                }
                _ => {}
            }
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        let hosts = netns_hosts(bundles);
        let ops = dag
            .tasks
            .iter()
            .map(|t| plan::up(&t.fragment, plan::host_ns(&t.fragment, &hosts), &paths))
            .collect();
        Ok((Plan { dag, ops, notes }, paths))
    }

    /// Brings an experiment up. Refuses (E0403) when its state exists. On a
    /// failure the run stops, the state says what was done, and `down`
    /// removes it.
    pub fn up(&self, bundles: &[Bundle], progress: &mut dyn FnMut(Event)) -> Result<Plan, UpError> {
        self.up_gated(bundles, progress, &exec::open_gate)
    }

    /// [`Runtime::up`], each task passing `gate` on its worker before it
    /// runs (an agent's VMs wait there for other hosts).
    pub fn up_gated(
        &self,
        bundles: &[Bundle],
        progress: &mut dyn FnMut(Event),
        gate: &exec::Gate<'_>,
    ) -> Result<Plan, UpError> {
        let (plan, paths) = self.plan(bundles, true).map_err(UpError::Refused)?;
        let Some((name, tag)) = experiment_of(bundles) else {
            return Err(UpError::Refused(vec![Diagnostic::error(
                code::E0402,
                "the bundles hold no fragment",
            )]));
        };
        let dir = self.state_dir(&name);
        std::fs::create_dir_all(&self.root).map_err(|e| {
            UpError::Refused(vec![Diagnostic::error(
                code::E0404,
                format!("cannot create {}: {e}", self.root.display()),
            )])
        })?;
        self.claim_tag(tag, &name).map_err(|d| {
            if d.code == code::E0403 {
                UpError::AlreadyUp(vec![d])
            } else {
                UpError::Refused(vec![d])
            }
        })?;
        if let Err(e) = std::fs::create_dir(&dir) {
            return Err(if e.kind() == std::io::ErrorKind::AlreadyExists {
                UpError::AlreadyUp(vec![
                    Diagnostic::error(
                        code::E0403,
                        format!(
                            "experiment `{name}` is already up on this machine (state in {})",
                            dir.display()
                        ),
                    )
                    .help(format!(
                        "`mxc status {name}` shows it; `mxc down {name}` removes it"
                    )),
                ])
            } else {
                UpError::Refused(vec![Diagnostic::error(
                    code::E0404,
                    format!("cannot create {}: {e}", dir.display()),
                )])
            });
        }
        // From here on the machine is touched: a failure leaves state that
        // says what was done, and `down` removes it.
        let fail = |e: std::io::Error| {
            UpError::Failed(vec![Diagnostic::error(
                code::E0404,
                format!("cannot write state in {}: {e}", dir.display()),
            )])
        };
        let copy = serde_json::to_vec(bundles).map_err(|e| fail(std::io::Error::other(e)))?;
        std::fs::write(dir.join(BUNDLES_FILE), copy).map_err(fail)?;
        let mut paths = paths;
        let mut plan = plan;
        if paths.images_info.values().any(|i| i.ssh) {
            // The experiment's own key: its guests' sshd take it at boot.
            match ssh::make_key(&dir) {
                Ok(k) => paths.ssh_key = Some(k),
                Err(e) => plan.notes.push(format!(
                    "no ssh key ({e}): `mxc ssh` will not work, `mxc exec` and `mxc cp` will"
                )),
            }
        }
        let hosts = netns_hosts(bundles);
        let state = exec::State {
            experiment: name.clone(),
            tag,
            netns_hosts: hosts.clone(),
            accel: paths.accel.clone(),
            phase: "starting".into(),
            tasks: task_states(&plan.dag, Status::Pending),
        };
        state.save(&dir).map_err(fail)?;
        self.drive(plan, &paths, &hosts, state, progress, gate)
            .map_err(UpError::Failed)
    }

    /// Runs an experiment's DAG again from its state directory: after a
    /// crash of `mxc up`, or a failed task whose cause is fixed. Tasks are
    /// idempotent, so what is done is verified and the rest created.
    pub fn resume(
        &self,
        name: &Name,
        progress: &mut dyn FnMut(Event),
    ) -> Result<Plan, Vec<Diagnostic>> {
        self.resume_gated(name, progress, &exec::open_gate)
    }

    /// [`Runtime::resume`] with a gate, as [`Runtime::up_gated`].
    pub fn resume_gated(
        &self,
        name: &Name,
        progress: &mut dyn FnMut(Event),
        gate: &exec::Gate<'_>,
    ) -> Result<Plan, Vec<Diagnostic>> {
        let bundles = self.bundles(name)?;
        let (plan, mut paths) = self.plan(&bundles, true)?;
        let dir = self.state_dir(name);
        paths.ssh_key = ssh::public_key(&dir);
        let old = exec::State::load(&dir).map_err(|e| vec![Diagnostic::error(code::E0402, e)])?;
        if let Some((_, tag)) = experiment_of(&bundles) {
            self.claim_tag(tag, name).map_err(|d| vec![d])?;
        }
        let hosts = netns_hosts(&bundles);
        let state = exec::State {
            phase: "starting".into(),
            tasks: task_states(&plan.dag, Status::Pending),
            ..old
        };
        self.drive(plan, &paths, &hosts, state, progress, gate)
    }

    fn drive(
        &self,
        plan: Plan,
        paths: &plan::Paths,
        hosts: &[String],
        mut state: exec::State,
        progress: &mut dyn FnMut(Event),
        gate: &exec::Gate<'_>,
    ) -> Result<Plan, Vec<Diagnostic>> {
        let name = state.experiment.clone();
        let dir = self.state_dir(&name);
        let ctx = exec::Context {
            experiment: name.to_string(),
            root: self.root.clone(),
        };
        let real = real::Real::default();
        let res = exec::run(
            &plan.dag,
            exec::Direction::Up,
            &real,
            &ctx,
            paths,
            hosts,
            &mut state,
            Some(&dir),
            self.workers,
            progress,
            gate,
        );
        state.phase = if res.is_ok() {
            "up".into()
        } else {
            "failed".into()
        };
        let _ = state.save(&dir);
        match res {
            Ok(()) => Ok(plan),
            Err(e) => Err(vec![Diagnostic::error(code::E0404, format!("experiment `{name}` did not come up: {e}")).help(format!("`mxc status {name}` shows each task; `mxc down {name}` removes what was created, or `mxc up --resume` retries once the cause is fixed"))]),
        }
    }

    /// The bundles an experiment was brought up with, checked again as
    /// they are read: what `down` and `--resume` act on is as untrusted as
    /// what `up` was given.
    pub fn bundles(&self, name: &Name) -> Result<Vec<Bundle>, Vec<Diagnostic>> {
        let dir = self.state_dir(name);
        if !dir.exists() {
            return Err(vec![
                Diagnostic::error(
                    code::E0402,
                    format!(
                        "experiment `{name}` is not up on this machine (no {})",
                        dir.display()
                    ),
                )
                .help("`mxc status` lists the experiments that are up"),
            ]);
        }
        let file = dir.join(BUNDLES_FILE);
        let bundles = match std::fs::read(&file) {
            Ok(bytes) => bundle::from_json(&bytes, &file),
            // State an earlier mx wrote: a bundle directory per host.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bundle::load_dir(&dir.join("bundles"))
            }
            Err(e) => Err(Diagnostic::error(
                code::E0402,
                format!("cannot read {}: {e}", file.display()),
            )),
        }
        .map_err(|d| vec![d])?;
        bundle::validate(&bundles)?;
        match experiment_of(&bundles) {
            Some((n, _)) if n == *name => Ok(bundles),
            _ => Err(vec![Diagnostic::error(
                code::E0402,
                format!(
                    "the bundles in {} are not experiment `{name}`'s",
                    dir.display()
                ),
            )]),
        }
    }

    /// Takes an experiment down, dependents first, carrying on past errors;
    /// safe to repeat. Removes the state when everything is gone.
    pub fn down(
        &self,
        name: &Name,
        dry_run: bool,
        progress: &mut dyn FnMut(Event),
    ) -> Result<Vec<String>, Vec<Diagnostic>> {
        let dir = self.state_dir(name);
        let bundles = self.bundles(name)?;
        let mut state =
            exec::State::load(&dir).map_err(|e| vec![Diagnostic::error(code::E0402, e)])?;
        let dag = dag::build(&bundles);
        let hosts = netns_hosts(&bundles);
        let tag = experiment_of(&bundles).map_or(0, |(_, t)| t);
        let paths = self.paths(name, tag, &state.accel);
        let ctx = exec::Context {
            experiment: name.to_string(),
            root: self.root.clone(),
        };
        // Tasks in the state may be fewer than in the DAG if the file is old.
        if state.tasks.len() != dag.tasks.len() {
            state.tasks = task_states(&dag, Status::Running);
        }
        if dry_run {
            let dry = exec::DryRun::default();
            let _ = exec::run(
                &dag,
                exec::Direction::Down,
                &dry,
                &ctx,
                &paths,
                &hosts,
                &mut state.clone(),
                None,
                1,
                progress,
                &exec::open_gate,
            );
            return Ok(dry.ops.into_inner().unwrap_or_default());
        }
        let real = real::Real::default();
        let res = exec::run(
            &dag,
            exec::Direction::Down,
            &real,
            &ctx,
            &paths,
            &hosts,
            &mut state,
            Some(&dir),
            self.workers,
            progress,
            &exec::open_gate,
        );
        drop(real);
        match res {
            Ok(()) => {
                let _ = std::fs::remove_dir_all(&paths.bpf);
                let _ = std::fs::remove_dir(&self.bpf); // only when no other experiment has pins
                std::fs::remove_dir_all(&dir).map_err(|e| {
                    vec![Diagnostic::error(
                        code::E0404,
                        format!("cannot remove {}: {e}", dir.display()),
                    )]
                })?;
                self.release_tag(tag, name);
                let _ = std::fs::remove_dir(self.tags_dir()); // only when empty
                Ok(Vec::new())
            }
            Err(e) => {
                state.phase = "down-failed".into();
                let _ = state.save(&dir);
                Err(vec![
                    Diagnostic::error(code::E0404, format!("taking `{name}` down failed: {e}"))
                        .help(format!(
                            "fix the cause and run `mxc down {name}` again; it is safe to repeat"
                        )),
                ])
            }
        }
    }

    /// An experiment's state.
    pub fn status(&self, name: &Name) -> Result<exec::State, Diagnostic> {
        let dir = self.state_dir(name);
        if !dir.exists() {
            return Err(Diagnostic::error(
                code::E0402,
                format!("experiment `{name}` is not up on this machine"),
            )
            .help("`mxc status` lists the experiments that are up"));
        }
        exec::State::load(&dir).map_err(|e| Diagnostic::error(code::E0402, e))
    }

    /// A running VM of an experiment, to reach its guest: the experiment is
    /// up here, `node` is one of its VMs, and its QEMU runs.
    pub fn guest(&self, name: &Name, node: &str) -> Result<Guest, Diagnostic> {
        let bundles = self.bundles(name).map_err(|d| {
            d.into_iter()
                .next()
                .unwrap_or_else(|| Diagnostic::error(code::E0402, "no bundles"))
        })?;
        let vms: Vec<(&mx_xir::VmSpec, &Name)> = bundles
            .iter()
            .flat_map(|b| &b.fragments)
            .filter_map(|f| match &f.spec {
                Spec::Vm(vm) => Some((vm.as_ref(), &f.host)),
                _ => None,
            })
            .collect();
        let Some((vm, host)) = vms.iter().find(|(vm, _)| vm.name.as_str() == node) else {
            let mut names: Vec<&str> = vms.iter().map(|(vm, _)| vm.name.as_str()).collect();
            names.sort_unstable();
            let shown = names
                .iter()
                .take(12)
                .copied()
                .collect::<Vec<_>>()
                .join(", ");
            let more = if names.len() > 12 {
                format!(" and {} more", names.len() - 12)
            } else {
                String::new()
            };
            return Err(Diagnostic::error(
                code::E0406,
                format!(
                    "experiment `{name}` has no node `{}`",
                    bundle::printable(node)
                ),
            )
            .help(format!("its nodes: {shown}{more}")));
        };
        let dir = self.state_dir(name).join("vm").join(vm.name.as_str());
        if !real::pid_alive(&dir.join("qemu.pid")) {
            return Err(Diagnostic::error(
                code::E0406,
                format!("node `{node}` of `{name}` is not running"),
            )
            .help(format!(
                "`mxc status {name}` shows its tasks; `mxc up --resume {name}` starts what failed"
            )));
        }
        let key = images::key(&vm.image, &vm.arch);
        Ok(Guest {
            name: vm.name.clone(),
            host: host.to_string(),
            image: images::read(&self.images.join(&key), &key),
            dir,
        })
    }

    /// Whether a VM's QEMU is running.
    pub fn vm_alive(&self, name: &Name, vm: &Name) -> bool {
        let pidfile = self
            .state_dir(name)
            .join("vm")
            .join(vm.as_str())
            .join("qemu.pid");
        real::pid_alive(&pidfile)
    }

    /// What a VM's guest reported on its console: `MX-` lines, with control
    /// characters (a guest's escape sequences) shown as `?`, so a guest
    /// cannot drive the operator's terminal.
    pub fn guest_report(&self, name: &Name, vm: &Name) -> Vec<String> {
        let log = self
            .state_dir(name)
            .join("vm")
            .join(vm.as_str())
            .join("serial.log");
        std::fs::read(log)
            .map(|t| {
                String::from_utf8_lossy(&t)
                    .lines()
                    .filter_map(|l| l.find("MX-").map(|i| &l[i..]))
                    .map(|l| bundle::printable(l.trim_end()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Builds the default guest image for `arch` if it is not there.
    pub fn ensure_default_image(&self, arch: &str) -> Result<PathBuf, String> {
        images::build(
            &self.images,
            mx_materializer::DEFAULT_IMAGE,
            arch,
            false,
            &mut |_| {},
        )
    }

    /// Builds the default images of every architecture the bundles' VMs use.
    pub fn ensure_images(&self, bundles: &[Bundle]) -> Result<(), String> {
        let arches: BTreeSet<&str> = bundles
            .iter()
            .flat_map(|b| &b.fragments)
            .filter_map(|f| match &f.spec {
                Spec::Vm(vm) => Some(vm.arch.as_str()),
                _ => None,
            })
            .chain(["x86_64"])
            .collect();
        for a in arches {
            // Only x86_64 and aarch64 images can be built (see
            // [`BUILDABLE`]); another architecture's image is installed by
            // hand, and its absence is refused by the plan.
            if BUILDABLE.contains(&a) {
                self.ensure_default_image(a)?;
            }
        }
        Ok(())
    }
}
