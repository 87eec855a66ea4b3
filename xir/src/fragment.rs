//! Materialization fragments: self-describing units of work that the runtime
//! turns into a task DAG. Each names its host, its scope (global pieces are
//! set up across hosts before any host's local plumbing) and its kind; the
//! runtime checks `version` and the bundle manifest's digests before it
//! touches anything.

use std::net::Ipv4Addr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{IfName, Ipv4Cidr, Mac, MdevType, Name, NetnsName, PciAddr, Uuid};

/// The fragment schema version this crate writes and accepts.
pub const FRAGMENT_VERSION: &str = "mx-fragment/0.2";

/// Who sets a fragment up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The automation layer, across hosts (VTEPs, VFs, switch VLANs).
    Global,
    /// One host's hypervisor manager (bridges, taps, XDP, VMs, emulation).
    Local,
}

/// One unit of work.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Fragment {
    /// [`FRAGMENT_VERSION`].
    pub version: String,
    /// Unique within the experiment, `kind/name` (`tap/tab12cd0`).
    pub id: String,
    /// The realization it belongs to.
    pub experiment: Name,
    /// The experiment's tag (held in the allocation table): its devices'
    /// names embed it and its device group is derived from it.
    pub tag: u32,
    /// The host (or switch) it is for.
    pub host: Name,
    /// Global or local.
    pub scope: Scope,
    /// What to set up.
    #[serde(flatten)]
    pub spec: Spec,
}

/// What a fragment sets up. Interface names are at most 15 bytes (the
/// kernel's limit) and unique per host across experiments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Spec {
    /// A hypervisor that is a network namespace on this machine, joined to
    /// the facility's underlay bridge by a veth pair. Shared by every
    /// experiment on the host: created if absent, removed with the last one.
    Netns {
        /// The namespace (`mxh-ns0`).
        netns: NetnsName,
        /// The namespace holding the underlay bridge.
        underlay_netns: NetnsName,
        /// The underlay address with prefix (`192.0.2.1/24`).
        underlay_addr: Ipv4Cidr,
        /// The host side of the veth pair (inside `netns`).
        device: IfName,
        /// The bridge side of the veth pair (inside `underlay_netns`).
        peer: IfName,
    },
    /// A VXLAN tunnel endpoint with a static flood list.
    Vtep {
        /// The device.
        device: IfName,
        /// VXLAN network identifier.
        vni: u32,
        /// This host's underlay address.
        local: Ipv4Addr,
        /// The other tunnel endpoints of the segment (hosts with taps on the
        /// link, leaves with its VFs and ports): the flood list.
        remotes: Vec<Ipv4Addr>,
        /// UDP port.
        port: u16,
    },
    /// An SR-IOV virtual function with VLAN switch tagging and spoofcheck.
    Vf {
        /// Host port of the physical function.
        pf_port: u32,
        /// The physical function's interface, where the facility names it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pf: Option<IfName>,
        /// VF index.
        vf: u32,
        /// VLAN tag applied by the NIC.
        vlan: u16,
        /// The VF's fixed MAC.
        mac: Mac,
        /// Spoof checking (always on for experiment VFs).
        spoofcheck: bool,
    },
    /// A leaf switch's port placed in a VLAN (and, where the link reaches
    /// other leaves or hypervisors' VTEPs, the VLAN mapped to the link's
    /// VNI on the leaf's own VTEP). Goes to the switch's bundle.
    SwitchVlan {
        /// The switch port cabled to the host.
        switch_port: u32,
        /// The host behind that port.
        peer: Name,
        /// The host's port.
        port: u32,
        /// VLAN tag.
        vlan: u16,
        /// An access port (a whole host port passed through, whose guest
        /// sends untagged frames) rather than a trunk to tagging VFs.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        untagged: bool,
        /// VNI the VLAN maps to, when the link leaves this switch.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        vni: Option<u32>,
        /// The leaf's tunnel endpoint, when mapped to a VNI.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        local: Option<Ipv4Addr>,
        /// The segment's other tunnel endpoints (the flood list).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        remotes: Vec<Ipv4Addr>,
    },
    /// A tap for one VM NIC.
    Tap {
        /// The device.
        device: IfName,
        /// The VM it belongs to.
        vm: Name,
    },
    /// A bridge joining the taps (and VTEP) of one link segment on a host:
    /// one bridge per link, so links are isolated by construction, and ports
    /// are isolated from each other unless the link joins them.
    Bridge {
        /// The device.
        device: IfName,
        /// Member devices (taps, VTEP).
        ports: Vec<IfName>,
    },
    /// Two taps joined by an XDP devmap redirect, without a bridge.
    XdpPair {
        /// One tap.
        a: IfName,
        /// The other tap.
        b: IfName,
    },
    /// The experiment's names and addresses, for the guests of one host to
    /// resolve (`/etc/hosts`); absent when the model turns resolution off.
    Names {
        /// Node names and their experiment addresses, in node order.
        entries: Vec<NameEntry>,
    },
    /// A virtual machine.
    Vm(Box<VmSpec>),
    /// Rate, delay and loss on a tap (towards the VM).
    Emulation {
        /// The device shaped.
        device: IfName,
        /// Rate limit in bits per second.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rate: Option<u64>,
        /// One-way delay in nanoseconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        latency: Option<u64>,
        /// Loss fraction.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        loss: Option<f64>,
        /// Delay variation in nanoseconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        jitter: Option<u64>,
        /// On the VM's sending side (the tap's ingress, through an IFB
        /// device) rather than towards the VM.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        sender: bool,
        /// The named profile it comes from (`wifi`), if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        profile: Option<String>,
    },
}

impl Spec {
    /// The kind as written in JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            Spec::Netns { .. } => "netns",
            Spec::Vtep { .. } => "vtep",
            Spec::Vf { .. } => "vf",
            Spec::SwitchVlan { .. } => "switch_vlan",
            Spec::Tap { .. } => "tap",
            Spec::Bridge { .. } => "bridge",
            Spec::XdpPair { .. } => "xdp_pair",
            Spec::Names { .. } => "names",
            Spec::Vm(_) => "vm",
            Spec::Emulation { .. } => "emulation",
        }
    }
}

/// Everything QEMU needs for one VM.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VmSpec {
    /// The experiment node.
    pub name: Name,
    /// Guest architecture (`x86_64`, `aarch64`).
    pub arch: String,
    /// QEMU machine type.
    pub machine: Machine,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Disk in bytes (recorded; the bundled guest runs from its initramfs).
    pub disk: u64,
    /// Image name; the runtime resolves it to a kernel and initramfs.
    pub image: Name,
    /// Network interfaces in socket order.
    pub nics: Vec<VmNic>,
    /// Fraction of a host core each vCPU may use (CPU bandwidth), if limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_share: Option<f64>,
    /// Time dilation factor, if asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tdf: Option<f64>,
    /// The PCIe link speed and width the guest's NICs sit behind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pcie: Option<crate::Pcie>,
    /// The memory bus the node asked for (recorded; not emulated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub membus: Option<crate::Membus>,
    /// The GPU the VM holds, and how it is handed over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<VmGpu>,
    /// Extra words for the guest kernel's command line.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kernel_args: Vec<String>,
    /// Host cores (by index on the host) the VM is pinned to; empty: not
    /// pinned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cpus: Vec<u32>,
    /// Neighbour addresses the guest checks it can reach once up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub neighbours: Vec<Ipv4Addr>,
    /// Static routes the guest installs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<crate::Route>,
    /// The guest forwards packets between its interfaces.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forward: bool,
    /// Names that resolve differently in this guest than in the host's
    /// names file: neighbours whose experiment address is on no link they
    /// share with this node resolve to their address on a shared one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<NameEntry>,
}

/// A node name and the address it resolves to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NameEntry {
    /// The node.
    pub name: Name,
    /// Its experiment address.
    pub addr: Ipv4Addr,
}

/// A QEMU machine type mx starts guests as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Machine {
    /// x86_64: Q35 with PCIe.
    Q35,
    /// aarch64 and riscv64: the generic virtual board.
    Virt,
}

impl Machine {
    /// The name QEMU knows it by.
    pub fn as_str(self) -> &'static str {
        match self {
            Machine::Q35 => "q35",
            Machine::Virt => "virt",
        }
    }
}

/// A GPU handed to a VM: whole, as a mediated device cut from it, or as one
/// of its SR-IOV VFs. Addresses are the host's PCI addresses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "via", rename_all = "snake_case")]
pub enum VmGpu {
    /// The whole GPU, bound to vfio-pci for the VM's lifetime.
    Passthrough {
        /// GPU model.
        model: String,
        /// Its PCI address.
        device: PciAddr,
    },
    /// A mediated device cut from a GPU.
    Mdev {
        /// GPU model.
        model: String,
        /// The GPU's PCI address.
        parent: PciAddr,
        /// Mediated-device type (`nvidia-472`).
        mdev_type: MdevType,
        /// The device's UUID, derived from the experiment and the slice.
        uuid: Uuid,
    },
    /// One of a GPU's SR-IOV VFs, bound to vfio-pci.
    Vf {
        /// GPU model.
        model: String,
        /// The GPU's (physical function's) PCI address.
        parent: PciAddr,
        /// VF number.
        vf: u32,
    },
}

/// One VM network interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VmNic {
    /// The experiment link it belongs to.
    pub link: String,
    /// Guest NIC model (`virtio`, `e1000`, ...; `vf`, `passthrough`).
    pub model: String,
    /// Deterministic MAC.
    pub mac: Mac,
    /// Addresses configured in the guest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addrs: Vec<Ipv4Cidr>,
    /// How it attaches.
    pub attach: NicAttach,
    /// Turn checksum and segmentation offloads off (needed on an XDP
    /// redirect, which hands packets on before the kernel fills checksums in).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_offload: bool,
}

/// How a VM NIC reaches the host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NicAttach {
    /// A tap on the hypervisor.
    Tap {
        /// The tap device.
        device: IfName,
    },
    /// An SR-IOV virtual function.
    Vf {
        /// Host port of the physical function.
        pf_port: u32,
        /// The physical function's interface, where the facility names it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pf: Option<IfName>,
        /// VF index.
        vf: u32,
    },
    /// A whole physical port handed to the VM.
    Passthrough {
        /// Host port.
        port: u32,
        /// Its interface, where the facility names it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        device: Option<IfName>,
    },
}

/// The index of one host's bundle: every fragment file with its digest, so
/// that a tampered or truncated bundle is refused before anything runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Manifest {
    /// [`FRAGMENT_VERSION`].
    pub version: String,
    /// The realization.
    pub experiment: Name,
    /// The host.
    pub host: Name,
    /// Fragment files in DAG-friendly order.
    pub fragments: Vec<ManifestEntry>,
}

/// One fragment file of a bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ManifestEntry {
    /// The fragment id.
    pub id: String,
    /// File name inside the bundle directory.
    pub file: String,
    /// SHA-256 of the file, hex.
    pub sha256: String,
}

/// The JSON Schema of a fragment.
pub fn fragment_schema() -> String {
    crate::to_json_pretty(&schemars::schema_for!(Fragment))
}
