//! Facility XIR: what a testbed has, for the realizer to map experiments onto.
//!
//! Quantities use the same base units as experiment constraints (bytes, bps,
//! Hz), so matching a constraint against a host is a plain comparison.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use std::net::Ipv4Addr;

use crate::{DocKind, IfName, MdevType, Membus, Name, PciAddr, Pcie, SCHEMA_VERSION, Source, Span};

/// A facility: hosts, switches and the cables between them.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct Facility {
    /// Schema version, [`SCHEMA_VERSION`] when written by this crate.
    pub xir: String,
    /// Always [`DocKind::Facility`].
    pub kind: DocKind,
    /// The facility name (`facility('name')`).
    pub name: Name,
    /// Where the model came from; spans index into this file.
    pub source: Source,
    /// Hosts in creation order.
    pub hosts: Vec<Host>,
    /// Switches in creation order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub switches: Vec<Switch>,
    /// Cables in creation order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cables: Vec<Cable>,
    /// Lookups by name and port, built on first use: a realization of
    /// 100,000 VMs on 5,000 hosts asks for hosts and cables millions of
    /// times. Derived from the fields above, which must not change once a
    /// lookup has been made.
    #[serde(skip)]
    #[schemars(skip)]
    index: std::sync::OnceLock<FacilityIndex>,
}

/// See [`Facility::index`].
#[derive(Clone, Debug, Default)]
struct FacilityIndex {
    hosts: std::collections::HashMap<String, usize>,
    /// Per device, per port: the cable plugged in there (its index).
    cables: std::collections::HashMap<String, std::collections::HashMap<u32, usize>>,
}

impl PartialEq for Facility {
    fn eq(&self, o: &Facility) -> bool {
        (
            &self.xir,
            &self.kind,
            &self.name,
            &self.source,
            &self.hosts,
            &self.switches,
            &self.cables,
        ) == (
            &o.xir,
            &o.kind,
            &o.name,
            &o.source,
            &o.hosts,
            &o.switches,
            &o.cables,
        )
    }
}

impl Facility {
    fn index(&self) -> &FacilityIndex {
        self.index.get_or_init(|| {
            let mut cables: std::collections::HashMap<
                String,
                std::collections::HashMap<u32, usize>,
            > = std::collections::HashMap::new();
            for (i, c) in self.cables.iter().enumerate() {
                for e in &c.ends {
                    // The first cable on a port wins, as a scan would find it.
                    cables
                        .entry(e.device.clone())
                        .or_default()
                        .entry(e.port)
                        .or_insert(i);
                }
            }
            let mut hosts = std::collections::HashMap::new();
            for (i, h) in self.hosts.iter().enumerate() {
                hosts.entry(h.name.to_string()).or_insert(i);
            }
            FacilityIndex { hosts, cables }
        })
    }

    /// The index of the host named `name` in [`Facility::hosts`].
    pub fn host_index(&self, name: &str) -> Option<usize> {
        self.index().hosts.get(name).copied()
    }

    /// The cable on `device`'s port `port`.
    pub fn cable_at(&self, device: &str, port: u32) -> Option<&Cable> {
        let i = *self.index().cables.get(device)?.get(&port)?;
        Some(&self.cables[i])
    }

    /// The device and port at the other end of the cable on `device`'s
    /// port `port`.
    pub fn cabled_to(&self, device: &str, port: u32) -> Option<(&str, u32)> {
        let [a, b] = &self.cable_at(device, port)?.ends;
        let other = if a.device == device && a.port == port {
            b
        } else {
            a
        };
        Some((other.device.as_str(), other.port))
    }

    /// An empty facility named `name` (mapped to a [`Name`] by
    /// [`crate::safe_name`]), compiled from `path`.
    pub fn new(name: &str, path: &str) -> Self {
        Facility {
            xir: SCHEMA_VERSION.to_string(),
            kind: DocKind::Facility,
            name: crate::safe_name(name),
            source: Source {
                path: path.to_string(),
            },
            hosts: Vec::new(),
            switches: Vec::new(),
            cables: Vec::new(),
            index: std::sync::OnceLock::new(),
        }
    }

    /// The host named `name`.
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.host_index(name).map(|i| &self.hosts[i])
    }
}

/// What a host may be used as.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Allocated whole to one experiment node.
    Metal,
    /// Runs VMs for experiment nodes.
    Hypervisor,
}

/// A physical machine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Host {
    /// Unique name.
    pub name: Name,
    /// Bare metal, hypervisor, or both ("dual personality").
    pub roles: Vec<Role>,
    /// Marked for virtual allocation: the realizer may slice it into VMs.
    pub virt_alloc: bool,
    /// CPU cores.
    pub cores: u32,
    /// Memory in bytes.
    pub memory: u64,
    /// Disk in bytes.
    pub disk: u64,
    /// Core clock in Hz, if declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<u64>,
    /// CPU architecture (`x86_64`, `aarch64`, `riscv64`).
    pub arch: String,
    /// Memory bus, if declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub membus: Option<Membus>,
    /// PCIe generation and lanes available to devices, if declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pcie: Option<Pcie>,
    /// GPUs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<Gpu>,
    /// Network interface cards; ports are numbered across them in order.
    pub nics: Vec<Nic>,
    /// Cores kept for the host itself (hypervisor overhead).
    #[serde(default)]
    pub reserved_cores: u32,
    /// Memory kept for the host itself, in bytes.
    #[serde(default)]
    pub reserved_memory: u64,
    /// Underlay address (the VXLAN tunnel endpoint), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub underlay: Option<Ipv4Addr>,
    /// The host is a network namespace on the machine running mx (the
    /// one-machine testbed): the runtime creates it and its underlay.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub netns: bool,
    /// Where the host was declared.
    pub span: Span,
}

impl Host {
    /// Whether the host can be used in `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Total network ports over all NICs.
    pub fn ports(&self) -> u32 {
        self.nics.iter().map(|n| n.ports).sum()
    }

    /// The NIC that port `port` belongs to, and the port's index on it.
    pub fn nic_of_port(&self, port: u32) -> Option<(usize, u32)> {
        let mut base = 0;
        for (i, n) in self.nics.iter().enumerate() {
            if port < base + n.ports {
                return Some((i, port - base));
            }
            base += n.ports;
        }
        None
    }
}

/// GPUs of one model on a host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Gpu {
    /// Model name, e.g. `a100`.
    pub model: String,
    /// How many.
    pub count: u32,
    /// Whether it can be shared as virtual GPUs (mediated devices or VFs).
    pub virtualizable: bool,
    /// The GPUs' PCI addresses on the host (`0000:3b:00.0`), one per GPU, if
    /// declared: what the runtime binds to vfio-pci or carves slices from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<PciAddr>,
    /// Mediated-device type virtual GPUs are created as (`nvidia-472`), if
    /// the GPU is shared that way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mdev: Option<MdevType>,
    /// SR-IOV virtual functions per GPU, if the GPU is shared that way.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub vfs: u32,
    /// Virtual GPUs each GPU can be cut into (0 when not virtualizable).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub slices: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A network interface card.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Nic {
    /// Model, e.g. `connectx5`, `e810`.
    pub model: String,
    /// Physical ports.
    pub ports: u32,
    /// Capacity per port in bits per second.
    pub capacity: u64,
    /// SR-IOV virtual functions the card can create (0: no SR-IOV).
    #[serde(default)]
    pub max_vfs: u32,
    /// The ports' interface names on the host, one per port, if declared.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<IfName>,
}

/// A switch's place in the fabric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SwitchRole {
    /// Connects hosts.
    Leaf,
    /// Connects leaves.
    Spine,
}

/// A switch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Switch {
    /// Unique name (shared namespace with hosts).
    pub name: Name,
    /// Leaf or spine.
    pub role: SwitchRole,
    /// Whether it can map VLANs to VXLAN VNIs; VLAN-only otherwise.
    pub vxlan: bool,
    /// Its VXLAN tunnel endpoint on the underlay, where it maps VLANs to
    /// VNIs: hypervisors' VTEPs reach the VFs and ports behind it there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub underlay: Option<Ipv4Addr>,
    /// A switch emulated in a network namespace on this machine (the
    /// namespace testbed), as hosts' `netns`: a bridge per VLAN stands in
    /// for the VLAN-aware bridge a kernel without VLAN filtering lacks.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub netns: bool,
    /// Where the switch was declared.
    pub span: Span,
}

/// One end of a cable: a device (host or switch) and a port on it.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub struct PortRef {
    /// Host or switch name.
    pub device: String,
    /// Port number on that device (hosts: counted across NICs in order).
    pub port: u32,
}

/// A cable between two ports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Cable {
    /// The two ends.
    pub ends: [PortRef; 2],
    /// Capacity in bits per second.
    pub capacity: u64,
    /// Where the cable was declared.
    pub span: Span,
}

/// The JSON Schema of a facility document, as kept in `xir/schema/`.
pub fn facility_schema() -> String {
    crate::to_json_pretty(&schemars::schema_for!(Facility))
}
