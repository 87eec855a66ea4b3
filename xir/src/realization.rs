//! Realization XIR: where every node of an experiment runs and how every link
//! is built. The materializer (next phase) turns this into fragments.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use std::net::Ipv4Addr;

use crate::{DocKind, IfName, Ipv4Cidr, MdevType, Name, PciAddr, SCHEMA_VERSION, Source, Span};

/// An experiment mapped onto a facility.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Realization {
    /// Schema version, [`SCHEMA_VERSION`] when written by this crate.
    pub xir: String,
    /// Always [`DocKind::Realization`].
    pub kind: DocKind,
    /// The realization's name (the experiment's unless `--name` says otherwise).
    pub name: Name,
    /// The experiment's tag on the machines it runs on, held in the
    /// allocation table so no two experiments share one: device names, MACs
    /// and the device group derive from it. 0 in realizations written before
    /// tags were allocated; those must be realized again.
    #[serde(default)]
    pub tag: u32,
    /// The experiment model; node and link spans index into it.
    pub experiment: Source,
    /// The facility's name.
    pub facility: Name,
    /// Which engine found it (`heuristic`, `ilp`).
    pub solver: String,
    /// The seed it was found with; the same inputs and seed give the same realization.
    pub seed: u64,
    /// One placement per experiment node, in experiment order.
    pub nodes: Vec<Placement>,
    /// One plan per experiment link, in experiment order.
    pub links: Vec<LinkPlan>,
    /// The hosts the realization uses, in facility order, with what the
    /// materializer needs of them (so a realization is self-contained).
    #[serde(default)]
    pub hosts: Vec<HostPlan>,
    /// The leaf switches its VFs and ports hang off, in facility order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub switches: Vec<SwitchPlan>,
    /// Whether node names resolve to experiment addresses in the guests
    /// (false when the model says `experimentnetresolution == false`).
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub resolve_names: bool,
}

fn yes() -> bool {
    true
}

fn is_yes(b: &bool) -> bool {
    *b
}

/// A static route in a guest: `dst` through the neighbour at `via`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Route {
    /// The destination prefix.
    pub dst: Ipv4Cidr,
    /// The next hop, a neighbour's address on a shared link.
    pub via: Ipv4Addr,
}

/// What the materializer needs to know about one host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HostPlan {
    /// The host.
    pub name: Name,
    /// Its CPU architecture.
    pub arch: String,
    /// Core clock in Hz, if the facility declares it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<u64>,
    /// Underlay address (VXLAN tunnel endpoint), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub underlay: Option<Ipv4Addr>,
    /// A network namespace on the machine running mx (one-machine testbed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub netns: bool,
    /// Interface names of the host's ports, by port number, where the
    /// facility names them (`null` where it does not).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Option<IfName>>,
}

impl HostPlan {
    /// The interface name of port `port`, if the facility declares it.
    pub fn port_device(&self, port: u32) -> Option<&IfName> {
        self.ports.get(port as usize).and_then(Option::as_ref)
    }
}

/// A leaf switch a realization reaches through VFs or whole ports, with what
/// the materializer needs to map its VLANs to VNIs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SwitchPlan {
    /// The switch.
    pub name: Name,
    /// Its VXLAN tunnel endpoint, if it maps VLANs to VNIs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub underlay: Option<Ipv4Addr>,
    /// Emulated in a namespace on this machine: its agent drives the
    /// emulation rather than a switch's VLAN-aware bridge.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub netns: bool,
}

/// The performance profile an experiment node asked for, carried to the
/// materializer: the `==` constraints that shape a VM rather than choose a host.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Profile {
    /// Disk image name (`image == 'bullseye'`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Requested core clock in Hz (`clock == ghz(2.2)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<u64>,
    /// Time dilation factor (`tdf == 10`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tdf: Option<f64>,
    /// PCIe link the VM's devices see (`pcie == gen3(16)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pcie: Option<crate::Pcie>,
    /// Memory bus asked for (`membus == ddr4(2400)`): matched against the
    /// host and recorded; not emulated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub membus: Option<crate::Membus>,
    /// GPU model asked for (`gpu == 'a100'`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<String>,
    /// How the GPU is given (`passthrough`, `virtual`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_mode: Option<String>,
    /// Extra words for the guest kernel's command line, from the node's
    /// `kernel_args` property.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kernel_args: Vec<String>,
    /// Pin the VM's vCPUs to host cores (the node's `pin` property).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pin: bool,
}

impl Profile {
    /// True when nothing was asked for.
    pub fn is_empty(&self) -> bool {
        *self == Profile::default()
    }
}

impl Realization {
    /// An empty realization.
    pub fn new(name: &Name, experiment: &str, facility: &Name, solver: &str, seed: u64) -> Self {
        Realization {
            xir: SCHEMA_VERSION.to_string(),
            kind: DocKind::Realization,
            name: name.clone(),
            tag: 0,
            experiment: Source {
                path: experiment.to_string(),
            },
            facility: facility.clone(),
            solver: solver.to_string(),
            seed,
            nodes: Vec::new(),
            links: Vec::new(),
            hosts: Vec::new(),
            switches: Vec::new(),
            resolve_names: true,
        }
    }
}

/// How a node is provided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The whole host.
    Metal,
    /// A VM slice of a hypervisor.
    Vm,
}

/// Where one node runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Placement {
    /// The experiment node.
    pub node: Name,
    /// The host it runs on.
    pub host: Name,
    /// Whole host or VM slice.
    pub mode: Mode,
    /// Cores it gets (the host's for metal, the slice's for a VM).
    pub cores: u32,
    /// Memory in bytes.
    pub memory: u64,
    /// Disk in bytes.
    pub disk: u64,
    /// CPU architecture the node runs (a VM may emulate another than the host's).
    pub arch: String,
    /// The performance profile the node asked for.
    #[serde(default, skip_serializing_if = "Profile::is_empty")]
    pub profile: Profile,
    /// The GPU (or slice of one) a VM holds; bare metal has its host's GPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GpuGrant>,
    /// Host cores a pinned VM holds (by index), one per vCPU; empty when
    /// the VM floats.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cpus: Vec<u32>,
    /// Static routes (`routing == static`), merged into the fewest prefixes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// The node forwards packets between its links (it routes).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forward: bool,
    /// The node's span in the experiment model.
    pub span: Span,
}

/// One GPU, or one virtual GPU cut from it, held by a VM.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GpuGrant {
    /// The GPU's index on its host, counting every declared GPU in order.
    pub index: u32,
    /// Its model.
    pub model: String,
    /// Its PCI address, when the facility names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<PciAddr>,
    /// The virtual GPU (mediated device or VF number) when the VM holds a
    /// slice; absent when it holds the whole GPU (passthrough).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slice: Option<u32>,
    /// How a slice is made: `mdev` or `vf`; absent for a whole GPU, or when
    /// the facility does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// The mediated-device type of an `mdev` slice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mdev: Option<MdevType>,
}

/// How a link is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LinkKind {
    /// Two VMs on one hypervisor: their taps joined by an XDP redirect pair.
    XdpPair,
    /// Several VMs on one hypervisor: a local filtering bridge.
    Bridge,
    /// A VXLAN segment with one VNI: endpoints on several hosts, or taps
    /// joined to VFs or ports (hypervisors' VTEPs meet the leaves' VTEPs,
    /// where the VFs' and ports' VLANs map to the VNI).
    Vxlan,
    /// VFs and ports behind one leaf switch only: the leaf joins their
    /// VLAN; no hypervisor plumbing.
    Switched,
}

/// How one endpoint attaches to the link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Attachment {
    /// A tap device on the hypervisor with an emulated NIC model in the VM.
    Tap {
        /// The guest NIC model (`virtio`, `e1000`, ...).
        model: String,
    },
    /// An SR-IOV virtual function handed to the VM, tagged on the switch side.
    Vf {
        /// Host port number of the physical function.
        port: u32,
        /// VF index on that NIC.
        vf: u32,
        /// VLAN tag (VLAN switch tagging), unique on the leaf switch.
        vlan: u16,
        /// The leaf switch the port is cabled to.
        switch: Name,
        /// The leaf's port at the other end of the cable.
        switch_port: u32,
    },
    /// A whole physical port: passthrough to a VM, or a bare-metal host's port.
    Port {
        /// Host port number.
        port: u32,
        /// VLAN tag on the switch access port, unique on the leaf switch.
        vlan: u16,
        /// The leaf switch the port is cabled to.
        switch: Name,
        /// The leaf's port at the other end of the cable.
        switch_port: u32,
    },
}

impl Attachment {
    /// The leaf switch a VF or port attaches through; `None` for a tap.
    pub fn switch(&self) -> Option<&Name> {
        match self {
            Attachment::Tap { .. } => None,
            Attachment::Vf { switch, .. } | Attachment::Port { switch, .. } => Some(switch),
        }
    }
}

/// One endpoint of a planned link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EndpointPlan {
    /// The node.
    pub node: Name,
    /// The node's socket index on this link.
    pub socket: u32,
    /// The host the node runs on.
    pub host: Name,
    /// How the endpoint attaches.
    pub attach: Attachment,
    /// The endpoint's addresses (`10.0.0.1/24`), as the model gives them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addrs: Vec<Ipv4Cidr>,
    /// Sender-side emulation profile of the endpoint's vNIC (`emulation ==
    /// wifi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emulation: Option<String>,
}

/// Link emulation settings taken from the link's constraints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Emulation {
    /// Rate limit in bits per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u64>,
    /// One-way delay in nanoseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<u64>,
    /// Loss fraction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
}

/// How one experiment link is built.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LinkPlan {
    /// The experiment link (`a.0~b.0`).
    pub link: String,
    /// XDP pair, bridge or VXLAN.
    pub kind: LinkKind,
    /// VXLAN network identifier, for links between hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
    /// The hosts the link spans, sorted.
    pub hosts: Vec<Name>,
    /// Endpoints in link order.
    pub endpoints: Vec<EndpointPlan>,
    /// Present when the link asks for capacity, latency or loss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emulation: Option<Emulation>,
    /// The link's span in the experiment model.
    pub span: Span,
}

/// The JSON Schema of a realization document, as kept in `xir/schema/`.
pub fn realization_schema() -> String {
    crate::to_json_pretty(&schemars::schema_for!(Realization))
}
