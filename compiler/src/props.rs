//! The property vocabulary: what experimenters can constrain, on what, with
//! which values. The realizer matches XIR constraints against facility
//! resources by these same names, so this table is part of the contract.

use mx_xir::Unit;

/// What a property can be attached to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Node,
    Link,
    Endpoint,
    Network,
}

impl Target {
    pub fn noun(self) -> &'static str {
        match self {
            Target::Node => "node",
            Target::Link => "link",
            Target::Endpoint => "endpoint",
            Target::Network => "topology",
        }
    }
}

/// The kind of value a property takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A non-negative integer (cores).
    Count,
    /// An integer within bounds (mtu, layer).
    Int(i64, i64),
    /// A measured quantity that needs a unit.
    Quantity(Unit),
    Bool,
    /// A free string (image, host, gpu model).
    Text,
    /// One of a fixed set of symbols, unordered.
    Enum(&'static [&'static str]),
    /// NIC models and attachment kinds; physical models are ordered by generation.
    Nic,
    /// A fraction in [0, 1] (loss).
    Fraction,
    /// A positive factor >= 1 (time dilation).
    Factor,
    Membus,
    Pcie,
}

impl Kind {
    /// Whether `<`, `<=`, `>`, `>=` make sense.
    pub fn ordered(self) -> bool {
        matches!(
            self,
            Kind::Count
                | Kind::Int(..)
                | Kind::Quantity(_)
                | Kind::Fraction
                | Kind::Factor
                | Kind::Membus
                | Kind::Pcie
                | Kind::Nic
        )
    }
}

#[derive(Debug)]
pub struct PropDef {
    pub name: &'static str,
    pub kind: Kind,
    pub targets: &'static [Target],
    /// Shown in help texts: an example constraint.
    pub example: &'static str,
}

use Target::*;

pub const ARCHES: &[&str] = &["x86_64", "aarch64", "riscv64"];
pub const GPU_MODES: &[&str] = &["passthrough", "virtual"];
pub const ROUTING: &[&str] = &["static", "manual"];
pub const ADDRESSING: &[&str] = &["ipv4", "manual"];
/// Sender-side link emulation profiles (on a link or a vNIC).
pub const LINK_EMULATION: &[&str] = &["wifi", "optical", "lte", "satellite"];
/// Network-wide emulator backends (mergexp's `emulation == netem`).
pub const NET_EMULATION: &[&str] = &["netem", "click"];
pub const PROTOCOLS: &[&str] = &["http", "https", "tcp", "udp"];
/// Facility words: host roles and switch roles (`metal` is also a property).
pub const FACILITY_WORDS: &[&str] = &["hypervisor", "leaf", "spine"];

pub static PROPS: &[PropDef] = &[
    PropDef {
        name: "cores",
        kind: Kind::Count,
        targets: &[Node],
        example: "cores == 4",
    },
    PropDef {
        name: "memory",
        kind: Kind::Quantity(Unit::Bytes),
        targets: &[Node],
        example: "memory == gb(8)",
    },
    PropDef {
        name: "disk",
        kind: Kind::Quantity(Unit::Bytes),
        targets: &[Node],
        example: "disk >= gb(100)",
    },
    PropDef {
        name: "image",
        kind: Kind::Text,
        targets: &[Node],
        example: "image == 'bullseye'",
    },
    PropDef {
        name: "virt",
        kind: Kind::Bool,
        targets: &[Node],
        example: "virt == true",
    },
    PropDef {
        name: "metal",
        kind: Kind::Bool,
        targets: &[Node],
        example: "metal == true",
    },
    PropDef {
        name: "arch",
        kind: Kind::Enum(ARCHES),
        targets: &[Node],
        example: "arch == aarch64",
    },
    PropDef {
        name: "clock",
        kind: Kind::Quantity(Unit::Hz),
        targets: &[Node],
        example: "clock == ghz(2.2)",
    },
    PropDef {
        name: "tdf",
        kind: Kind::Factor,
        targets: &[Node],
        example: "tdf == 10",
    },
    PropDef {
        name: "membus",
        kind: Kind::Membus,
        targets: &[Node],
        example: "membus == ddr4(2400)",
    },
    PropDef {
        name: "pcie",
        kind: Kind::Pcie,
        targets: &[Node],
        example: "pcie == gen3(16)",
    },
    PropDef {
        name: "gpu",
        kind: Kind::Text,
        targets: &[Node],
        example: "gpu == 'a100'",
    },
    PropDef {
        name: "gpu_mode",
        kind: Kind::Enum(GPU_MODES),
        targets: &[Node],
        example: "gpu_mode == passthrough",
    },
    PropDef {
        name: "host",
        kind: Kind::Text,
        targets: &[Node],
        example: "host == 'hv3'",
    },
    PropDef {
        name: "platform",
        kind: Kind::Text,
        targets: &[Node],
        example: "platform == 'qemu'",
    },
    PropDef {
        name: "nic",
        kind: Kind::Nic,
        targets: &[Endpoint, Link],
        example: "nic == virtio",
    },
    PropDef {
        name: "capacity",
        kind: Kind::Quantity(Unit::Bps),
        targets: &[Link, Endpoint],
        example: "capacity == mbps(100)",
    },
    PropDef {
        name: "latency",
        kind: Kind::Quantity(Unit::Ns),
        targets: &[Link],
        example: "latency == ms(10)",
    },
    PropDef {
        name: "loss",
        kind: Kind::Fraction,
        targets: &[Link],
        example: "loss == 0.01",
    },
    PropDef {
        name: "mtu",
        kind: Kind::Int(68, 65535),
        targets: &[Link, Endpoint],
        example: "mtu == 9000",
    },
    PropDef {
        name: "layer",
        kind: Kind::Int(1, 3),
        targets: &[Link],
        example: "layer == 2",
    },
    PropDef {
        name: "emulation",
        kind: Kind::Enum(LINK_EMULATION),
        targets: &[Link, Endpoint, Network],
        example: "emulation == wifi",
    },
    PropDef {
        name: "routing",
        kind: Kind::Enum(ROUTING),
        targets: &[Network],
        example: "routing == static",
    },
    PropDef {
        name: "addressing",
        kind: Kind::Enum(ADDRESSING),
        targets: &[Network],
        example: "addressing == ipv4",
    },
    PropDef {
        name: "experimentnetresolution",
        kind: Kind::Bool,
        targets: &[Network],
        example: "experimentnetresolution == false",
    },
];

/// Index of a property by canonical name.
pub fn prop(name: &str) -> Option<u8> {
    PROPS.iter().position(|p| p.name == name).map(|i| i as u8)
}

/// The kind of a property on a given target (`emulation` differs between
/// a topology, where it names the emulator, and a link).
pub fn kind_on(p: &PropDef, target: Target) -> Kind {
    if p.name == "emulation" && target == Network {
        Kind::Enum(NET_EMULATION)
    } else {
        p.kind
    }
}

/// A NIC value: virtual models, attachment kinds and physical models.
#[derive(Debug)]
pub struct NicDef {
    pub name: &'static str,
    pub class: NicClass,
    /// Generation rank within the family, for physical models.
    pub rank: u8,
    pub family: &'static str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NicClass {
    /// An emulated device model (needs a hypervisor).
    Virtual,
    /// How a physical NIC is handed to a VM.
    Attachment,
    /// A physical NIC model.
    Physical,
}

pub static NICS: &[NicDef] = &[
    NicDef {
        name: "virtio",
        class: NicClass::Virtual,
        rank: 0,
        family: "virtual",
    },
    NicDef {
        name: "e1000",
        class: NicClass::Virtual,
        rank: 0,
        family: "virtual",
    },
    NicDef {
        name: "e1000e",
        class: NicClass::Virtual,
        rank: 0,
        family: "virtual",
    },
    NicDef {
        name: "rtl8139",
        class: NicClass::Virtual,
        rank: 0,
        family: "virtual",
    },
    NicDef {
        name: "vmxnet3",
        class: NicClass::Virtual,
        rank: 0,
        family: "virtual",
    },
    NicDef {
        name: "vfio",
        class: NicClass::Attachment,
        rank: 0,
        family: "attachment",
    },
    NicDef {
        name: "passthrough",
        class: NicClass::Attachment,
        rank: 0,
        family: "attachment",
    },
    NicDef {
        name: "connectx3",
        class: NicClass::Physical,
        rank: 3,
        family: "connectx",
    },
    NicDef {
        name: "connectx4",
        class: NicClass::Physical,
        rank: 4,
        family: "connectx",
    },
    NicDef {
        name: "connectx5",
        class: NicClass::Physical,
        rank: 5,
        family: "connectx",
    },
    NicDef {
        name: "connectx6",
        class: NicClass::Physical,
        rank: 6,
        family: "connectx",
    },
    NicDef {
        name: "connectx6dx",
        class: NicClass::Physical,
        rank: 7,
        family: "connectx",
    },
    NicDef {
        name: "connectx7",
        class: NicClass::Physical,
        rank: 8,
        family: "connectx",
    },
    NicDef {
        name: "x520",
        class: NicClass::Physical,
        rank: 1,
        family: "intel",
    },
    NicDef {
        name: "x710",
        class: NicClass::Physical,
        rank: 2,
        family: "intel",
    },
    NicDef {
        name: "e810",
        class: NicClass::Physical,
        rank: 3,
        family: "intel",
    },
];

pub fn nic(name: &str) -> Option<&'static NicDef> {
    NICS.iter().find(|n| n.name == name)
}

/// Spellings accepted for compatibility, mapped to canonical symbols. The
/// seed writes `connect4`; mergexp writes `ConnectX4`-style model names.
pub const ALIASES: &[(&str, &str)] = &[
    ("connect3", "connectx3"),
    ("connect4", "connectx4"),
    ("connect5", "connectx5"),
    ("connect6", "connectx6"),
    ("connect6dx", "connectx6dx"),
    ("connect7", "connectx7"),
    ("arm64", "aarch64"),
    ("amd64", "x86_64"),
    ("x86", "x86_64"),
];

/// The canonical symbol `name` is an alias of, from [`ALIASES`].
pub fn alias(name: &str) -> Option<&'static str> {
    ALIASES.iter().find(|(a, _)| *a == name).map(|(_, c)| *c)
}

/// Every symbol that is a builtin name.
pub fn symbols() -> impl Iterator<Item = &'static str> {
    NICS.iter()
        .map(|n| n.name)
        .chain(ARCHES.iter().copied())
        .chain(GPU_MODES.iter().copied())
        .chain(ROUTING.iter().copied())
        .chain(ADDRESSING.iter().copied())
        .chain(LINK_EMULATION.iter().copied())
        .chain(NET_EMULATION.iter().copied())
        .chain(PROTOCOLS.iter().copied())
        .chain(FACILITY_WORDS.iter().copied())
}

/// Interns a symbol name to its `'static` canonical form.
pub fn symbol(name: &str) -> Option<&'static str> {
    if let Some(a) = alias(name) {
        return Some(a);
    }
    symbols().find(|s| *s == name)
}
