//! The facility API: operators describe their testbed in the same language.
//!
//! ```python
//! fac = facility('lab')
//! leaf = fac.switch('leaf0', role=leaf, vxlan=True)
//! hv = fac.host('hv0', roles=[hypervisor], virt_alloc=True, cores=32, memory=gb(128),
//!               nics=[nic(connectx5, ports=2, capacity=gbps(100), vfs=64)])
//! fac.cable(hv.port(0), leaf.port(1), capacity=gbps(100))
//! ```
//!
//! Declarations use keyword arguments (a host *has* 32 cores), not
//! constraints (a node *needs* `cores >= 4`). Values are checked where they
//! are written; the whole facility (names, ports, cables) in [`super::lower`].

use mx_diag::code;
use std::rc::Rc;

use indexmap::IndexMap;
use mx_diag::Diagnostic;
use mx_xir::{Membus, Pcie, Role, Span, SwitchRole, Unit};

use super::model::*;
use crate::ast::Sym;
use crate::eval::{Args, Eval, Flow, R, did_you_mean};
use crate::props;
use crate::value::*;

const HOST_KEYS: &[&str] = &[
    "roles",
    "virt_alloc",
    "cores",
    "memory",
    "disk",
    "clock",
    "arch",
    "membus",
    "pcie",
    "gpus",
    "nics",
    "reserved_cores",
    "reserved_memory",
    "underlay",
    "netns",
];

impl Eval<'_> {
    /// `facility(name)`, `nic(model, ...)`, `gpu(model, ...)`.
    pub fn call_facility(&mut self, b: Builtin, mut a: Args) -> R<Value> {
        let name = b.name();
        match b {
            Builtin::Facility => {
                self.arity(&a, name, 1, 1)?;
                let fname = self.plain_name(&a, "facility")?;
                Ok(Value::Facility(
                    self.fac.add_facility(fname.to_string(), a.span),
                ))
            }
            Builtin::NicSpec => {
                self.arity(&a, name, 1, 1)?;
                let model =
                    self.symbol_arg(&a.pos[0], a.span_of(0), "a NIC model such as connectx5")?;
                let Some(def) = props::nic(&model).filter(|n| n.class == props::NicClass::Physical)
                else {
                    let names: Vec<&str> = props::NICS
                        .iter()
                        .filter(|n| n.class == props::NicClass::Physical)
                        .map(|n| n.name)
                        .collect();
                    return Err(Diagnostic::error(
                        code::E0218,
                        format!("`{model}` is not a physical NIC model"),
                    )
                    .primary(a.span_of(0).range(), "NIC model")
                    .help(format!("one of: {}", names.join(", ")))
                    .into());
                };
                let ports = self.count_kw(&mut a, "ports", 1, 1)?;
                let vfs = self.count_kw(&mut a, "vfs", 0, 0)?;
                let capacity = self
                    .quantity_kw(&mut a, "capacity", Unit::Bps)?
                    .unwrap_or(10_000_000_000);
                // The ports' interface names on the host (`devices=['enp59s0f0',
                // 'enp59s0f1']`): what the runtime programs VFs on and hands
                // to VMs whole.
                let devices = self.devices_kw(
                    &mut a,
                    ports,
                    mx_xir::domain::is_ifname,
                    DeviceList {
                        lists: "interface names",
                        label: "this NIC",
                        example: "one name per port, such as devices=['enp59s0f0', 'enp59s0f1'] (1 to 15 printable characters, no space, / or :)",
                        items: "interfaces",
                        per: "ports",
                        one: "name one interface per port",
                    },
                )?;
                self.no_more_kwargs(&a, name)?;
                let mut m = IndexMap::new();
                m.insert(Key::Str("model".into()), Value::Sym(def.name));
                m.insert(Key::Str("ports".into()), Value::Int(ports as i64));
                m.insert(
                    Key::Str("capacity".into()),
                    Value::Quantity(capacity as i64, Unit::Bps),
                );
                m.insert(Key::Str("vfs".into()), Value::Int(vfs as i64));
                m.insert(Key::Str("devices".into()), Value::list(devices));
                Ok(Value::dict(m))
            }
            _ => {
                self.arity(&a, name, 1, 1)?;
                let model = match &a.pos[0] {
                    Value::Str(s) => s.to_string(),
                    Value::Sym(s) => s.to_string(),
                    other => {
                        return Err(self.type_error(
                            a.span_of(0),
                            format!("gpu() needs a model name, not a {}", other.type_name()),
                        ));
                    }
                };
                let count = self.count_kw(&mut a, "count", 1, 1)?;
                let virtualizable = match self.kwarg(&mut a, "virtualizable") {
                    None => None,
                    Some(Value::Bool(b)) => Some(b),
                    Some(other) => {
                        return Err(self.type_error(
                            a.span,
                            format!(
                                "virtualizable is True or False, not a {}",
                                other.type_name()
                            ),
                        ));
                    }
                };
                // The GPUs' PCI addresses, one per GPU: what the runtime
                // binds to vfio-pci or creates virtual GPUs on.
                let devices = self.devices_kw(
                    &mut a,
                    count,
                    mx_xir::domain::is_pci_addr,
                    DeviceList {
                        lists: "the GPUs' PCI addresses",
                        label: "this GPU",
                        example: "one address per GPU, as in `lspci -D`: devices=['0000:3b:00.0', '0000:d8:00.0']",
                        items: "PCI addresses",
                        per: "GPUs",
                        one: "name one address per GPU",
                    },
                )?;
                let mdev = match self.kwarg(&mut a, "mdev") {
                    None => None,
                    Some(Value::Str(s)) if mx_xir::domain::is_mdev_type(&s) => Some(s.to_string()),
                    Some(_) => {
                        return Err(Diagnostic::error(
                            code::E0218,
                            "`mdev` names a mediated-device type",
                        )
                        .primary(a.span.range(), "this GPU")
                        .help("as listed under /sys/bus/pci/devices/<address>/mdev_supported_types, e.g. mdev='nvidia-472'")
                        .into());
                    }
                };
                let vfs = self.count_kw(&mut a, "vfs", 0, 0)?;
                let slices = match self.kwarg(&mut a, "slices") {
                    None => None,
                    Some(Value::Int(i)) if (1..=1024).contains(&i) => Some(i as u32),
                    Some(_) => {
                        return Err(self.fail(
                            code::E0218,
                            a.span,
                            "`slices` is a whole number from 1 to 1024",
                            "how many virtual GPUs each GPU can be cut into",
                        ));
                    }
                };
                let contradiction = |what: &str| -> Diagnostic {
                    Diagnostic::error(code::E0218, format!("a GPU shared {what}"))
                        .primary(a.span.range(), "this GPU")
                        .help("`mdev` (mediated devices) or `vfs` (SR-IOV), not both; either makes the GPU virtualizable")
                };
                if mdev.is_some() && vfs > 0 {
                    return Err(contradiction("both as mediated devices and as VFs").into());
                }
                if virtualizable == Some(false) && (mdev.is_some() || vfs > 0 || slices.is_some()) {
                    return Err(
                        contradiction("as virtual GPUs cannot be virtualizable=False").into(),
                    );
                }
                if vfs > 0 && slices.is_some_and(|s| s > vfs) {
                    return Err(self.fail(
                        code::E0218,
                        a.span,
                        format!("{} slices out of {vfs} VFs", slices.unwrap_or(0)),
                        "each virtual GPU is one VF: slices is at most vfs",
                    ));
                }
                let virtualizable =
                    virtualizable.unwrap_or(false) || mdev.is_some() || vfs > 0 || slices.is_some();
                let slices = match (virtualizable, slices) {
                    (false, _) => 0,
                    (true, Some(s)) => s,
                    (true, None) if vfs > 0 => vfs,
                    (true, None) => 1,
                };
                self.no_more_kwargs(&a, name)?;
                let mut m = IndexMap::new();
                m.insert(Key::Str("model".into()), Value::str(&model));
                m.insert(Key::Str("count".into()), Value::Int(count as i64));
                m.insert(Key::Str("virtualizable".into()), Value::Bool(virtualizable));
                m.insert(Key::Str("devices".into()), Value::list(devices));
                m.insert(
                    Key::Str("mdev".into()),
                    mdev.map_or(Value::None, |s| Value::str(&s)),
                );
                m.insert(Key::Str("vfs".into()), Value::Int(vfs as i64));
                m.insert(Key::Str("slices".into()), Value::Int(slices as i64));
                Ok(Value::dict(m))
            }
        }
    }

    /// A `devices=[...]` keyword: one name per port or GPU, each `ok`.
    fn devices_kw(
        &mut self,
        a: &mut Args,
        want: u32,
        ok: fn(&str) -> bool,
        what: DeviceList,
    ) -> R<Vec<Value>> {
        let Some(v) = self.kwarg(a, "devices") else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for it in self.iterate(&v, a.span)? {
            match it {
                Value::Str(s) if ok(&s) => out.push(Value::Str(s)),
                _ => {
                    return Err(Diagnostic::error(
                        code::E0218,
                        format!("`devices` lists {}", what.lists),
                    )
                    .primary(a.span.range(), what.label)
                    .help(what.example)
                    .into());
                }
            }
        }
        if out.len() != want as usize {
            return Err(Diagnostic::error(
                code::E0218,
                format!(
                    "`devices` names {} {} for {want} {}",
                    out.len(),
                    what.items,
                    what.per
                ),
            )
            .primary(a.span.range(), what.label)
            .help(what.one)
            .into());
        }
        Ok(out)
    }

    fn symbol_arg(&self, v: &Value, span: Span, what: &str) -> R<String> {
        match v {
            Value::Sym(s) => Ok(s.to_string()),
            Value::Str(s) => Ok(props::alias(s).unwrap_or(s).to_string()),
            Value::Prop(p) => Ok(props::PROPS[*p as usize].name.to_string()),
            other => Err(self.type_error(
                span,
                format!("expected {what}, not a {}", other.type_name()),
            )),
        }
    }

    fn count_kw(&self, a: &mut Args, key: &str, default: u32, min: u32) -> R<u32> {
        let span = a.span;
        match self.kwarg(a, key) {
            None => Ok(default),
            Some(Value::Int(i)) if i >= min as i64 && i <= u32::MAX as i64 => Ok(i as u32),
            Some(Value::Int(i)) => Err(self.fail(
                code::E0218,
                span,
                format!("`{key}` cannot be {i}"),
                format!("`{key}` is at least {min}"),
            )),
            Some(other) => Err(self.type_error(
                span,
                format!("`{key}` is a whole number, not a {}", other.type_name()),
            )),
        }
    }

    fn quantity_kw(&self, a: &mut Args, key: &str, unit: Unit) -> R<Option<u64>> {
        let span = a.span;
        match self.kwarg(a, key) {
            None => Ok(None),
            Some(Value::Quantity(q, u)) if u == unit && q >= 0 => Ok(Some(q as u64)),
            Some(Value::Quantity(..)) | Some(Value::Int(_)) | Some(Value::Float(_)) => {
                Err(Diagnostic::error(
                    code::E0204,
                    format!("`{key}` needs a {} with its unit", unit_word(unit)),
                )
                .primary(span.range(), "in this declaration")
                .help(match unit {
                    Unit::Bytes => "e.g. memory=gb(128), disk=tb(2)",
                    Unit::Bps => "e.g. capacity=gbps(100)",
                    Unit::Hz => "e.g. clock=ghz(2.6)",
                    Unit::Ns => "e.g. ms(1)",
                })
                .into())
            }
            Some(other) => Err(self.type_error(
                span,
                format!(
                    "`{key}` is a {}, not a {}",
                    unit_word(unit),
                    other.type_name()
                ),
            )),
        }
    }

    fn no_more_kwargs(&self, a: &Args, what: &str) -> R<()> {
        if let Some((k, _, span)) = a.kw.first() {
            let name = self.name(*k);
            let known: &[&str] = match what {
                "nic" => &["ports", "capacity", "vfs", "devices"],
                "gpu" => &["count", "virtualizable", "devices", "mdev", "vfs", "slices"],
                "host" => HOST_KEYS,
                "switch" => &["role", "vxlan", "underlay", "netns"],
                "cable" => &["capacity"],
                _ => &[],
            };
            let mut d = Diagnostic::error(code::E0215, format!("`{what}` has no keyword `{name}`"))
                .primary(span.range(), "unknown keyword");
            d = match did_you_mean(name, known.iter().copied()) {
                Some(s) => d.help(format!("did you mean `{s}`?")),
                None => d.help(format!("`{what}` takes: {}", known.join(", "))),
            };
            return Err(d.into());
        }
        Ok(())
    }

    /// The first argument as a plain name (E0218 otherwise): facility and
    /// device names become namespace, bundle and state directory names on
    /// machines mx runs on as root.
    fn plain_name(&self, a: &Args, what: &str) -> R<std::rc::Rc<str>> {
        let name = self.str_arg(a, 0, what)?;
        if !mx_xir::domain::is_name(&name) {
            return Err(Diagnostic::error(
                code::E0218,
                format!(
                    "{} is not a usable {what} name",
                    crate::format::py_repr_str(&name)
                ),
            )
            .primary(a.span_of(0).range(), "bad name")
            .help(NAME_HELP)
            .into());
        }
        Ok(name)
    }

    fn new_device(&mut self, fac: u32, a: &Args, kind: DeviceKind) -> R<Value> {
        let name = self.plain_name(a, "device")?;
        self.charge(512, a.span)?;
        Ok(Value::Device(self.fac.add_device(fac, name, a.span, kind)))
    }

    pub fn facility_method(
        &mut self,
        recv: Value,
        name: Sym,
        nspan: Span,
        mut a: Args,
    ) -> R<Value> {
        let m: &str = self.name(name);
        match (&recv, m) {
            (Value::Facility(f), "host") => {
                let f = *f;
                self.arity(&a, m, 1, 1)?;
                let host = self.host_decl(&mut a)?;
                self.no_more_kwargs(&a, "host")?;
                self.new_device(f, &a, DeviceKind::Host(Box::new(host)))
            }
            (Value::Facility(f), "switch") => {
                let f = *f;
                self.arity(&a, m, 1, 1)?;
                let span = a.span;
                let role = match self.kwarg(&mut a, "role") {
                    None => SwitchRole::Leaf,
                    Some(v) => match self.symbol_arg(&v, span, "leaf or spine")?.as_str() {
                        "leaf" => SwitchRole::Leaf,
                        "spine" => SwitchRole::Spine,
                        other => {
                            return Err(self.fail(
                                code::E0218,
                                span,
                                format!("`{other}` is not a switch role"),
                                "role is leaf or spine",
                            ));
                        }
                    },
                };
                let vxlan = self.bool_kw(&mut a, "vxlan", true, span)?;
                let underlay = self.underlay_kw(&mut a)?;
                let netns = self.bool_kw(&mut a, "netns", false, span)?;
                if netns && underlay.is_none() {
                    return Err(Diagnostic::error(
                        code::E0218,
                        "a netns switch needs an underlay address",
                    )
                    .primary(span.range(), "this switch")
                    .help("its namespace joins the underlay there: add underlay='192.0.2.N'")
                    .into());
                }
                self.no_more_kwargs(&a, "switch")?;
                let sw = mx_xir::Switch {
                    name: mx_xir::safe_name(""),
                    role,
                    vxlan,
                    underlay,
                    netns,
                    span,
                };
                self.new_device(f, &a, DeviceKind::Switch(sw))
            }
            (Value::Facility(f), "cable") => {
                let f = *f;
                self.arity(&a, m, 2, 2)?;
                let capacity = self.quantity_kw(&mut a, "capacity", Unit::Bps)?;
                self.no_more_kwargs(&a, "cable")?;
                let mut ends = [(0, 0); 2];
                for (i, end) in ends.iter_mut().enumerate() {
                    let Value::Port(d, p) = a.pos[i] else {
                        return Err(Diagnostic::error(
                            code::E0203,
                            format!("cable() connects ports, not a {}", a.pos[i].type_name()),
                        )
                        .primary(a.span_of(i).range(), "not a port")
                        .help("write fac.cable(hv0.port(0), leaf0.port(1), capacity=gbps(100))")
                        .into());
                    };
                    *end = (d, p);
                }
                self.fac.cable(f, ends, capacity, a.span).map_err(
                    |FacError::ForeignPort { end }| {
                        self.fail(
                            code::E0216,
                            a.span_of(end),
                            "this port belongs to another facility",
                            "other facility",
                        )
                    },
                )?;
                Ok(Value::None)
            }
            (Value::Device(d), "port") => {
                self.arity(&a, m, 1, 1)?;
                let p = self.int_arg(&a, 0, m)?;
                let p = u32::try_from(p).map_err(|_| {
                    self.fail(
                        code::E0218,
                        a.span_of(0),
                        format!("{p} is not a port number"),
                        "ports count from 0",
                    )
                })?;
                Ok(Value::Port(*d, p))
            }
            _ => {
                let known: &[&str] = match recv {
                    Value::Facility(_) => &["host", "switch", "cable", "name"],
                    _ => &["port", "name"],
                };
                Err(self.no_attr(&recv, m, nspan, known))
            }
        }
    }

    pub fn facility_attr(&mut self, o: Value, name: Sym, nspan: Span) -> R<Value> {
        let n: &str = self.name(name);
        match (&o, n) {
            (Value::Facility(f), "name") => Ok(Value::str(self.fac.facility_name(*f))),
            (Value::Device(d), "name") => Ok(Value::Str(self.fac.device_name(*d).clone())),
            (Value::Facility(_), "host" | "switch" | "cable") | (Value::Device(_), "port") => {
                Ok(Value::Method(Rc::new((o.clone(), name))))
            }
            (Value::Port(_, p), "index") => Ok(Value::Int(*p as i64)),
            _ => Err(self.no_attr(&o, n, nspan, &["name"])),
        }
    }

    /// A `True`/`False` keyword argument, `default` when absent.
    fn bool_kw(&mut self, a: &mut Args, name: &str, default: bool, span: Span) -> R<bool> {
        match self.kwarg(a, name) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(b),
            Some(other) => Err(self.type_error(
                span,
                format!("{name} is True or False, not a {}", other.type_name()),
            )),
        }
    }

    /// `underlay='192.0.2.1'`: a device's VXLAN tunnel endpoint address.
    fn underlay_kw(&mut self, a: &mut Args) -> R<Option<std::net::Ipv4Addr>> {
        let span = a.span;
        match self.kwarg(a, "underlay") {
            None => Ok(None),
            Some(Value::Str(s)) => match mx_xir::Ipv4Cidr::parse(&format!("{s}/32")) {
                Ok(c) => Ok(Some(c.addr)),
                Err(why) => Err(self.fail(
                    code::E0209,
                    span,
                    format!("`{s}` is not an IPv4 address: {why}"),
                    "underlay address",
                )),
            },
            Some(other) => Err(self.type_error(
                span,
                format!("underlay is an address string, not a {}", other.type_name()),
            )),
        }
    }

    fn host_decl(&mut self, a: &mut Args) -> R<mx_xir::Host> {
        let span = a.span;
        let roles = match self.kwarg(a, "roles") {
            None => vec![Role::Metal],
            Some(v) => {
                let items = match &v {
                    Value::List(_) | Value::Tuple(_) => self.iterate(&v, span)?,
                    other => vec![other.clone()],
                };
                let mut roles = Vec::new();
                for it in items {
                    let r = match self
                        .symbol_arg(&it, span, "a role (metal or hypervisor)")?
                        .as_str()
                    {
                        "metal" => Role::Metal,
                        "hypervisor" => Role::Hypervisor,
                        other => {
                            return Err(self.fail(
                                code::E0218,
                                span,
                                format!("`{other}` is not a host role"),
                                "roles are metal and hypervisor",
                            ));
                        }
                    };
                    if !roles.contains(&r) {
                        roles.push(r);
                    }
                }
                if roles.is_empty() {
                    return Err(self.fail(
                        code::E0218,
                        span,
                        "a host needs at least one role",
                        "empty roles",
                    ));
                }
                roles.sort();
                roles
            }
        };
        let virt_alloc = self.bool_kw(a, "virt_alloc", roles.contains(&Role::Hypervisor), span)?;
        let netns = self.bool_kw(a, "netns", false, span)?;
        if netns && !roles.contains(&Role::Hypervisor) {
            return Err(
                Diagnostic::error(code::E0218, "a netns host must be a hypervisor")
                    .primary(span.range(), "this host")
                    .help("a namespace on this machine can only run VMs: add roles=[hypervisor]")
                    .into(),
            );
        }
        if virt_alloc && !roles.contains(&Role::Hypervisor) {
            return Err(
                Diagnostic::error(code::E0218, "virt_alloc needs the hypervisor role")
                    .primary(span.range(), "this host")
                    .help("add roles=[hypervisor] (or [metal, hypervisor] for dual personality)")
                    .into(),
            );
        }
        let cores = match self.kwarg(a, "cores") {
            Some(Value::Int(i)) if i > 0 && i <= u32::MAX as i64 => i as u32,
            Some(_) => {
                return Err(self.fail(
                    code::E0218,
                    span,
                    "`cores` is a positive whole number",
                    "in this host",
                ));
            }
            None => {
                return Err(Diagnostic::error(code::E0215, "a host needs `cores`")
                    .primary(span.range(), "this host")
                    .help("e.g. cores=32")
                    .into());
            }
        };
        let memory = self
            .quantity_kw(a, "memory", Unit::Bytes)?
            .ok_or_else(|| -> Flow {
                Diagnostic::error(code::E0215, "a host needs `memory`")
                    .primary(span.range(), "this host")
                    .help("e.g. memory=gb(128)")
                    .into()
            })?;
        let disk = self.quantity_kw(a, "disk", Unit::Bytes)?.unwrap_or(0);
        let clock = self.quantity_kw(a, "clock", Unit::Hz)?;
        let arch = match self.kwarg(a, "arch") {
            None => "x86_64".to_string(),
            Some(v) => {
                let s = self.symbol_arg(&v, span, "an architecture")?;
                if !props::ARCHES.contains(&s.as_str()) {
                    return Err(self.fail(
                        code::E0218,
                        span,
                        format!("`{s}` is not an architecture"),
                        format!("one of {}", props::ARCHES.join(", ")),
                    ));
                }
                s
            }
        };
        let membus: Option<Membus> = match self.kwarg(a, "membus") {
            None => None,
            Some(Value::Membus(m)) => Some(m),
            Some(other) => {
                return Err(self.type_error(
                    span,
                    format!("membus is e.g. ddr4(3200), not a {}", other.type_name()),
                ));
            }
        };
        let pcie: Option<Pcie> = match self.kwarg(a, "pcie") {
            None => None,
            Some(Value::Pcie(p)) => Some(p),
            Some(other) => {
                return Err(self.type_error(
                    span,
                    format!("pcie is e.g. gen4(16), not a {}", other.type_name()),
                ));
            }
        };
        let nics =
            match self.kwarg(a, "nics") {
                None => Vec::new(),
                Some(v) => {
                    let items = self.iterate(&v, span)?;
                    let mut out = Vec::new();
                    for it in items {
                        let Value::Dict(d) = &it else {
                            return Err(self.type_error(span, "nics is a list of nic(...)"));
                        };
                        let d = d.borrow();
                        let get = |k: &str| d.get(&Key::Str(k.into())).cloned();
                        match (get("model"), get("ports"), get("capacity"), get("vfs")) {
                            (
                                Some(Value::Sym(model)),
                                Some(Value::Int(ports)),
                                Some(Value::Quantity(cap, _)),
                                Some(Value::Int(vfs)),
                            ) => out.push(mx_xir::Nic {
                                model: model.to_string(),
                                ports: ports as u32,
                                capacity: cap as u64,
                                max_vfs: vfs as u32,
                                devices: match get("devices") {
                                    Some(Value::List(l)) => l
                                        .borrow()
                                        .iter()
                                        .filter_map(|v| match v {
                                            Value::Str(s) => mx_xir::IfName::new(&**s).ok(),
                                            _ => None,
                                        })
                                        .collect(),
                                    _ => Vec::new(),
                                },
                            }),
                            _ => return Err(self.type_error(
                                span,
                                "nics is a list of nic(model, ports=..., capacity=..., vfs=...)",
                            )),
                        }
                    }
                    out
                }
            };
        let gpus = match self.kwarg(a, "gpus") {
            None => Vec::new(),
            Some(v) => {
                let items = self.iterate(&v, span)?;
                let mut out = Vec::new();
                for it in items {
                    let Value::Dict(d) = &it else {
                        return Err(self.type_error(span, "gpus is a list of gpu(...)"));
                    };
                    let d = d.borrow();
                    let get = |k: &str| d.get(&Key::Str(k.into())).cloned();
                    match (get("model"), get("count"), get("virtualizable")) {
                        (
                            Some(Value::Str(model)),
                            Some(Value::Int(count)),
                            Some(Value::Bool(v)),
                        ) => out.push(mx_xir::Gpu {
                            model: model.to_string(),
                            count: count as u32,
                            virtualizable: v,
                            devices: match get("devices") {
                                Some(l) => self
                                    .iterate(&l, span)?
                                    .into_iter()
                                    .filter_map(|x| match x {
                                        Value::Str(s) => mx_xir::PciAddr::new(&*s).ok(),
                                        _ => None,
                                    })
                                    .collect(),
                                None => Vec::new(),
                            },
                            mdev: match get("mdev") {
                                Some(Value::Str(s)) => mx_xir::MdevType::new(&*s).ok(),
                                _ => None,
                            },
                            vfs: match get("vfs") {
                                Some(Value::Int(i)) => i as u32,
                                _ => 0,
                            },
                            slices: match get("slices") {
                                Some(Value::Int(i)) => i as u32,
                                _ => u32::from(v),
                            },
                        }),
                        _ => {
                            return Err(self.type_error(
                                span,
                                "gpus is a list of gpu(model, count=..., virtualizable=...)",
                            ));
                        }
                    }
                }
                out
            }
        };
        let reserved_cores = match self.kwarg(a, "reserved_cores") {
            None => 0,
            Some(Value::Int(i)) if i >= 0 && i < cores as i64 => i as u32,
            Some(_) => {
                return Err(self.fail(
                    code::E0218,
                    span,
                    format!("`reserved_cores` must be from 0 to {}", cores - 1),
                    "leave the host at least one core for VMs",
                ));
            }
        };
        let reserved_memory = self
            .quantity_kw(a, "reserved_memory", Unit::Bytes)?
            .unwrap_or(0);
        if reserved_memory >= memory {
            return Err(self.fail(
                code::E0218,
                span,
                "`reserved_memory` is all of the host's memory",
                "reserve less than `memory`",
            ));
        }
        let underlay = self.underlay_kw(a)?;
        Ok(mx_xir::Host {
            name: mx_xir::safe_name(""),
            roles,
            virt_alloc,
            cores,
            memory,
            disk,
            clock,
            arch,
            membus,
            pcie,
            gpus,
            nics,
            reserved_cores,
            reserved_memory,
            underlay,
            netns,
            span,
        })
    }
}

fn unit_word(u: Unit) -> &'static str {
    match u {
        Unit::Bytes => "size",
        Unit::Bps => "rate",
        Unit::Ns => "time",
        Unit::Hz => "frequency",
    }
}

/// The wording of a `devices=[...]` keyword's errors.
struct DeviceList {
    lists: &'static str,
    label: &'static str,
    example: &'static str,
    items: &'static str,
    per: &'static str,
    one: &'static str,
}

/// A network interface name: at most 15 of a-z, 0-9, `-`, `_` and `.`.
/// What a host, switch or facility name may be.
const NAME_HELP: &str = "names are 1 to 64 of A-Z, a-z, 0-9, _, . and -, not starting with . or -";
