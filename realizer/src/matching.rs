//! What a node needs, and whether a host can give it.
//!
//! Constraints are compared against the host's declared values in base
//! units. For bare metal the node gets the whole host, so `cores == 4` needs a
//! 4-core host; for a VM the node gets a slice, so `cores == 4` needs 4 free
//! cores on a hypervisor.

use mx_xir::{Constraint, Experiment, Facility, Host, Mode, Node, Op, Role, Value};

/// Slice sizes when a VM node does not constrain them.
pub const DEFAULT_CORES: u32 = 1;
pub const DEFAULT_MEMORY: u64 = 1 << 30;
pub const DEFAULT_DISK: u64 = 10 << 30;

/// How one endpoint of a node attaches, from its `nic` constraints.
#[derive(Clone, Debug, PartialEq)]
pub enum NicNeed {
    /// No `nic` constraint: a virtio tap on a VM, the host's port on bare metal.
    Any,
    /// An emulated NIC on a tap; needs a hypervisor.
    Virtual(String),
    /// An SR-IOV VF of a NIC whose model satisfies the constraints.
    Vf(Vec<Constraint>),
    /// A whole port of a NIC whose model satisfies the constraints.
    Port(Vec<Constraint>),
}

/// Everything placement needs to know about one node.
#[derive(Clone, Debug)]
pub struct Need<'a> {
    pub index: usize,
    pub node: &'a Node,
    /// Forced by `virt`, `metal`, `tdf` or a virtual NIC; `None` means either.
    pub mode: Option<Mode>,
    /// VM slice size.
    pub cores: u32,
    pub memory: u64,
    pub disk: u64,
    /// One per link the node is on, in link order: (link index, endpoint index, need).
    pub nics: Vec<(usize, usize, NicNeed)>,
    /// The GPU a VM must hold, if the node asks for one.
    pub gpu: Option<crate::gpus::GpuNeed>,
    /// A VM pinned to host cores of its own (the node's `pin` property).
    pub pin: bool,
}

impl Need<'_> {
    /// Whether some endpoint takes a VF or a whole port of its host.
    pub fn holds_endpoints(&self) -> bool {
        self.nics
            .iter()
            .any(|(_, _, x)| matches!(x, NicNeed::Vf(_) | NicNeed::Port(_)))
    }

    /// Whether the node, as a VM, holds devices of its host (VFs, whole
    /// ports, a GPU, pinned cores): reserved where it was placed, so later
    /// passes do not move it.
    pub fn holds_host_devices(&self) -> bool {
        self.gpu.is_some()
            || self.pin
            || self
                .nics
                .iter()
                .any(|(_, _, x)| matches!(x, NicNeed::Vf(_) | NicNeed::Port(_)))
    }
}

/// Why a host cannot take a node: the constraint (if one) and a sentence.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub constraint: Option<Constraint>,
    pub reason: String,
}

/// Node name to its index in the experiment.
pub fn node_index(exp: &Experiment) -> std::collections::HashMap<&str, usize> {
    exp.nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect()
}

pub fn needs(exp: &Experiment) -> Vec<Need<'_>> {
    let mut out: Vec<Need> =
        exp.nodes
            .iter()
            .enumerate()
            .map(|(index, node)| {
                let cs = &node.constraints;
                let mut mode = None;
                for c in cs {
                    match (&*c.property, c.op, &c.value) {
                        ("virt", Op::Eq, Value::Bool(true))
                        | ("virt", Op::Ne, Value::Bool(false)) => mode = Some(Mode::Vm),
                        ("virt", Op::Eq, Value::Bool(false))
                        | ("virt", Op::Ne, Value::Bool(true)) => mode = Some(Mode::Metal),
                        ("metal", Op::Eq, Value::Bool(true)) => mode = Some(Mode::Metal),
                        ("metal", Op::Eq, Value::Bool(false)) => mode = Some(Mode::Vm),
                        ("tdf", ..) => mode = Some(Mode::Vm),
                        _ => {}
                    }
                }
                let asks = |p: &str| cs.iter().any(|c| c.property == p);
                let gpu = (asks("gpu") || asks("gpu_mode")).then(|| crate::gpus::GpuNeed {
                    model: cs.iter().filter(|c| c.property == "gpu").cloned().collect(),
                    virtual_: cs.iter().any(|c| {
                        c.property == "gpu_mode"
                            && c.op == Op::Eq
                            && matches!(&c.value, Value::Text(t) if t == "virtual")
                    }),
                });
                Need {
                    index,
                    node,
                    mode,
                    gpu,
                    pin: node.properties.get("pin").and_then(|v| v.as_bool()) == Some(true),
                    cores: smallest(cs, "cores", DEFAULT_CORES as u64) as u32,
                    memory: smallest(cs, "memory", DEFAULT_MEMORY),
                    disk: smallest(cs, "disk", DEFAULT_DISK),
                    nics: Vec::new(),
                }
            })
            .collect();
    let index = node_index(exp);
    for (li, link) in exp.links.iter().enumerate() {
        let link_nic: Vec<Constraint> = link
            .constraints
            .iter()
            .filter(|c| c.property == "nic")
            .cloned()
            .collect();
        for (ei, ep) in link.endpoints.iter().enumerate() {
            let mut cs: Vec<Constraint> = ep
                .constraints
                .iter()
                .filter(|c| c.property == "nic")
                .cloned()
                .collect();
            if cs.is_empty() {
                cs = link_nic.clone();
            }
            let need = nic_need(&cs);
            let n = &mut out[index[ep.node.as_str()]];
            if matches!(need, NicNeed::Virtual(_)) {
                n.mode = Some(Mode::Vm);
            }
            n.nics.push((li, ei, need));
        }
    }
    out
}

fn text(v: &Value) -> Option<&str> {
    match v {
        Value::Text(t) => Some(t),
        _ => None,
    }
}

fn nic_need(cs: &[Constraint]) -> NicNeed {
    const VIRTUAL: &[&str] = &["virtio", "e1000", "e1000e", "rtl8139", "vmxnet3"];
    for c in cs {
        if c.op == Op::Eq {
            match text(&c.value) {
                Some(m) if VIRTUAL.contains(&m) => return NicNeed::Virtual(m.to_string()),
                Some("vfio") => return NicNeed::Vf(model_constraints(cs)),
                Some("passthrough") => return NicNeed::Port(model_constraints(cs)),
                _ => {}
            }
        }
        if c.op == Op::In
            && let Value::List(items) = &c.value
            && let Some(m) = items.iter().filter_map(text).find(|m| VIRTUAL.contains(m))
        {
            return NicNeed::Virtual(m.to_string());
        }
    }
    let models = model_constraints(cs);
    if models.is_empty() {
        NicNeed::Any
    } else {
        NicNeed::Vf(models)
    }
}

/// The constraints about the physical model (not the attachment kind).
fn model_constraints(cs: &[Constraint]) -> Vec<Constraint> {
    cs.iter()
        .filter(|c| !matches!(text(&c.value), Some("vfio" | "passthrough")))
        .cloned()
        .collect()
}

/// The smallest value at least `default`... or, when constrained, the smallest
/// value satisfying every constraint on `prop` (testing the constants and
/// their neighbours, as the compiler's contradiction check does).
fn smallest(cs: &[Constraint], prop: &str, default: u64) -> u64 {
    let mine: Vec<&Constraint> = cs.iter().filter(|c| c.property == prop).collect();
    if mine.is_empty() {
        return default;
    }
    let mut cands = vec![1u64, default];
    for c in &mine {
        let mut nums = Vec::new();
        match &c.value {
            Value::Int(i) => nums.push(*i),
            Value::List(items) => nums.extend(items.iter().filter_map(|v| {
                if let Value::Int(i) = v {
                    Some(*i)
                } else {
                    None
                }
            })),
            _ => {}
        }
        for n in nums {
            cands.extend([
                n.max(0) as u64,
                (n + 1).max(0) as u64,
                (n - 1).max(0) as u64,
            ]);
        }
    }
    // The default when it is allowed (`memory <= gb(4)` gets the default
    // 1 GiB, not 1 byte); otherwise the smallest allowed value.
    if mine.iter().all(|c| holds_int(c, default as i64)) {
        return default;
    }
    cands.sort_unstable();
    cands
        .into_iter()
        .filter(|&v| v >= 1)
        .find(|&v| mine.iter().all(|c| holds_int(c, v as i64)))
        .unwrap_or(default)
}

pub fn holds_int(c: &Constraint, have: i64) -> bool {
    let want = |v: &Value| match v {
        Value::Int(i) => Some(*i),
        Value::Float(f) => Some(*f as i64),
        _ => None,
    };
    match (&c.op, &c.value) {
        (Op::In, Value::List(items)) => items.iter().any(|v| want(v) == Some(have)),
        (op, v) => match want(v) {
            Some(w) => cmp(*op, have.cmp(&w)),
            None => false,
        },
    }
}

fn cmp(op: Op, ord: std::cmp::Ordering) -> bool {
    use std::cmp::Ordering::*;
    match op {
        Op::Eq => ord == Equal,
        Op::Ne => ord != Equal,
        Op::Lt => ord == Less,
        Op::Le => ord != Greater,
        Op::Gt => ord == Greater,
        Op::Ge => ord != Less,
        Op::In => false,
    }
}

pub(crate) fn holds_text(c: &Constraint, have: &str) -> bool {
    match (&c.op, &c.value) {
        (Op::Eq, Value::Text(t)) => t == have,
        (Op::Ne, Value::Text(t)) => t != have,
        (Op::In, Value::List(items)) => items.iter().any(|v| text(v) == Some(have)),
        _ => false,
    }
}

fn holds_ord<T: Ord + PartialEq>(
    c: &Constraint,
    have: &T,
    want: impl Fn(&Value) -> Option<T>,
) -> bool {
    match (&c.op, &c.value) {
        (Op::In, Value::List(items)) => items.iter().any(|v| want(v).as_ref() == Some(have)),
        (op, v) => want(v).is_some_and(|w| cmp(*op, have.cmp(&w))),
    }
}

/// NIC generations, for ordered model constraints (`nic >= connectx5`).
fn nic_rank(model: &str) -> Option<(&'static str, u8)> {
    Some(match model {
        "connectx3" => ("connectx", 3),
        "connectx4" => ("connectx", 4),
        "connectx5" => ("connectx", 5),
        "connectx6" => ("connectx", 6),
        "connectx6dx" => ("connectx", 7),
        "connectx7" => ("connectx", 8),
        "x520" => ("intel", 1),
        "x710" => ("intel", 2),
        "e810" => ("intel", 3),
        _ => return None,
    })
}

/// Whether a physical NIC model satisfies model constraints.
pub fn nic_model_ok(cs: &[Constraint], model: &str) -> bool {
    cs.iter().all(|c| match c.op {
        Op::Eq | Op::Ne | Op::In => holds_text(c, model),
        op => match (text(&c.value).and_then(nic_rank), nic_rank(model)) {
            (Some((fw, rw)), Some((fh, rh))) => fw == fh && cmp(op, rh.cmp(&rw)),
            _ => false,
        },
    })
}

/// Checks the node's own constraints against a host, for `mode`.
/// Capacity is not considered here (see placement); only what the host is.
pub fn host_verdict(need: &Need, host: &Host, mode: Mode) -> Result<(), Verdict> {
    let fail = |c: &Constraint, reason: String| {
        Err(Verdict {
            constraint: Some(c.clone()),
            reason,
        })
    };
    match mode {
        Mode::Metal if !host.has_role(Role::Metal) => {
            return Err(Verdict {
                constraint: None,
                reason: format!("`{}` is not a bare-metal host", host.name),
            });
        }
        Mode::Vm if !(host.has_role(Role::Hypervisor) && host.virt_alloc) => {
            return Err(Verdict {
                constraint: None,
                reason: format!(
                    "`{}` is not a hypervisor open for virtual allocation",
                    host.name
                ),
            });
        }
        _ => {}
    }
    for c in &need.node.constraints {
        let ok = match &*c.property {
            "cores" => match mode {
                Mode::Metal => holds_int(c, host.cores as i64),
                Mode::Vm => (host.cores - host.reserved_cores) as u64 >= need.cores as u64,
            },
            "memory" => match mode {
                Mode::Metal => holds_int(c, host.memory as i64),
                Mode::Vm => host.memory - host.reserved_memory >= need.memory,
            },
            "disk" => match mode {
                Mode::Metal => holds_int(c, host.disk as i64),
                Mode::Vm => host.disk >= need.disk,
            },
            "clock" => match (mode, host.clock) {
                (_, None) => false,
                // A VM's vCPU runs at a share of a host core: it can be slower, not faster.
                (Mode::Vm, Some(hz)) => vm_clock_ok(c, hz),
                (Mode::Metal, Some(hz)) => holds_int(c, hz as i64),
            },
            // A VM may run another architecture under emulation; metal cannot.
            "arch" => mode == Mode::Vm || holds_text(c, &host.arch),
            "membus" => host.membus.is_some_and(|m| {
                holds_ord(c, &(m.ddr, m.rate), |v| {
                    if let Value::Membus(w) = v {
                        Some((w.ddr, w.rate))
                    } else {
                        None
                    }
                })
            }),
            // A VM's PCIe link is QEMU's root port: any generation and
            // width up to the host's can be set (`==` asks for exactly that
            // link in the guest, not on the host).
            "pcie" if mode == Mode::Vm && c.op == Op::Eq => host.pcie.is_some_and(
                |p| matches!(c.value, Value::Pcie(w) if w.r#gen <= p.r#gen && w.lanes <= p.lanes),
            ),
            "pcie" => host.pcie.is_some_and(|p| {
                holds_ord(c, &(p.r#gen, p.lanes), |v| {
                    if let Value::Pcie(w) = v {
                        Some((w.r#gen, w.lanes))
                    } else {
                        None
                    }
                })
            }),
            "gpu" => host.gpus.iter().any(|g| holds_text(c, &g.model)),
            // The model and the mode together: a virtual GPU needs a
            // virtualizable GPU of the model asked for.
            "gpu_mode" => {
                let virt = text(&c.value) == Some("virtual");
                host.gpus.iter().any(|g| {
                    (!virt || g.virtualizable)
                        && need
                            .gpu
                            .as_ref()
                            .is_none_or(|n| n.model.iter().all(|m| holds_text(m, &g.model)))
                })
            }
            "host" => holds_text(c, &host.name),
            // Settled by the mode; image and platform are for the materializer.
            _ => true,
        };
        if !ok {
            return fail(c, describe_host(c, host, mode));
        }
    }
    // Endpoints: NIC needs the host must be able to meet at all.
    for (_, _, nic) in &need.nics {
        match (nic, mode) {
            (NicNeed::Virtual(model), Mode::Metal) => {
                return Err(Verdict {
                    constraint: None,
                    reason: format!("a `{model}` NIC needs a VM, and the node is bare metal"),
                });
            }
            (NicNeed::Vf(cs), _)
                if !host
                    .nics
                    .iter()
                    .any(|n| n.max_vfs > 0 && nic_model_ok(cs, &n.model))
                    && mode == Mode::Vm =>
            {
                return Err(Verdict {
                    constraint: cs.first().cloned(),
                    reason: format!("`{}` has no SR-IOV NIC of a matching model", host.name),
                });
            }
            (NicNeed::Vf(cs) | NicNeed::Port(cs), Mode::Metal)
                if !host.nics.iter().any(|n| nic_model_ok(cs, &n.model)) =>
            {
                return Err(Verdict {
                    constraint: cs.first().cloned(),
                    reason: format!("`{}` has no NIC of a matching model", host.name),
                });
            }
            (NicNeed::Port(cs), Mode::Vm)
                if !host.nics.iter().any(|n| nic_model_ok(cs, &n.model)) =>
            {
                return Err(Verdict {
                    constraint: cs.first().cloned(),
                    reason: format!(
                        "`{}` has no NIC of a matching model to pass through",
                        host.name
                    ),
                });
            }
            _ => {}
        }
    }
    Ok(())
}

fn describe_host(c: &Constraint, host: &Host, mode: Mode) -> String {
    let gib = |b: u64| format!("{} GiB", b >> 30);
    match (&*c.property, mode) {
        ("cores", Mode::Metal) => format!("has {} cores", host.cores),
        ("cores", Mode::Vm) => format!("has {} cores for VMs", host.cores - host.reserved_cores),
        ("memory", Mode::Metal) => format!("has {}", gib(host.memory)),
        ("memory", Mode::Vm) => format!("has {} for VMs", gib(host.memory - host.reserved_memory)),
        ("disk", _) => format!("has {} of disk", gib(host.disk)),
        ("clock", _) => match host.clock {
            Some(hz) => format!("runs at {:.1} GHz", hz as f64 / 1e9),
            None => "declares no clock".into(),
        },
        ("arch", _) => format!("is {}", host.arch),
        ("membus", _) => host.membus.map_or("declares no memory bus".into(), |m| {
            format!("has ddr{}({})", m.ddr, m.rate)
        }),
        ("pcie", _) => host.pcie.map_or("declares no PCIe".into(), |p| {
            format!("has gen{}({})", p.r#gen, p.lanes)
        }),
        ("gpu" | "gpu_mode", _) => {
            if host.gpus.is_empty() {
                "has no GPU".into()
            } else {
                "has no matching GPU".into()
            }
        }
        ("host", _) => "is another host".into(),
        _ => "does not match".into(),
    }
}

/// Hosts in facility order with their index.
pub fn hosts(fac: &Facility) -> impl Iterator<Item = (usize, &Host)> {
    fac.hosts.iter().enumerate()
}

/// A VM's vCPUs can run at any rate up to the host core's (CPU bandwidth
/// control gives each a share): is some rate in (0, hz] allowed by `c`?
fn vm_clock_ok(c: &Constraint, hz: u64) -> bool {
    let hz = hz as i64;
    let want = |v: &Value| {
        if let Value::Int(i) = v {
            Some(*i)
        } else {
            None
        }
    };
    match (&c.op, &c.value) {
        (Op::In, Value::List(items)) => items.iter().filter_map(want).any(|w| w > 0 && w <= hz),
        (Op::Eq | Op::Ge, v) => want(v).is_some_and(|w| w <= hz),
        (Op::Gt, v) => want(v).is_some_and(|w| w < hz),
        (Op::Lt, v) => want(v).is_some_and(|w| w > 1),
        _ => true,
    }
}

/// The clock rate a VM asks for, if it constrains one: the smallest allowed
/// value for `==`/`>=`/`in`, used to size its CPU share.
pub fn vm_clock(need: &Need) -> Option<u64> {
    let cs: Vec<&Constraint> = need
        .node
        .constraints
        .iter()
        .filter(|c| c.property == "clock")
        .collect();
    if cs.is_empty() {
        return None;
    }
    Some(smallest(&need.node.constraints, "clock", 1))
}
