//! The topology API models call (`Network`, `net.node`, `net.connect`,
//! `link[x].spec(...)`, ...), the constraint values comparisons build, and
//! the recorded model that [`check`](crate::check) lowers to XIR.
//!
//! Constraints are validated where they are written, so a wrong unit or an
//! impossible value is reported at the comparison, not at the node.

use mx_diag::code;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use indexmap::IndexMap;
use mx_diag::Diagnostic;
use mx_xir::{Op, Span, Unit};

use crate::ast::{CmpOp, Sym};
use crate::eval::{Args, Eval, Flow, R, did_you_mean};
use crate::props::{self, Kind, NicClass, PROPS, Target};
use crate::value::*;

pub struct TopoData {
    pub name: String,
    pub span: Option<Span>,
    pub constraints: Vec<Rc<Cons>>,
    pub nodes: Vec<u32>,
    pub links: Vec<u32>,
}

pub struct NodeData {
    pub name: Rc<str>,
    pub topo: u32,
    pub span: Span,
    pub constraints: Vec<Rc<Cons>>,
    /// Made on first use: most of a large model's nodes have none.
    pub properties: Option<Dict>,
    pub ingress: Vec<(&'static str, u16, Span)>,
    /// The next socket index: one per link the node joins.
    pub sockets: u32,
}

pub struct EpData {
    pub node: u32,
    pub socket: u32,
    pub addrs: Vec<(String, Span)>,
    pub constraints: Vec<Rc<Cons>>,
}

pub struct LinkData {
    pub span: Span,
    pub endpoints: Vec<EpData>,
    pub constraints: Vec<Rc<Cons>>,
    /// Made on first use, as a node's.
    pub properties: Option<Dict>,
}

/// Everything the model built, in creation order.
#[derive(Default)]
pub struct Model {
    pub topos: Vec<TopoData>,
    pub nodes: Vec<NodeData>,
    pub links: Vec<LinkData>,
    pub experiment: Option<(u32, Span)>,
}

/// The topology handed to [`check`](crate::check), detached from the evaluator.
pub struct Topology {
    pub name: String,
    pub constraints: Vec<Rc<Cons>>,
    pub nodes: Vec<NodeOut>,
    pub links: Vec<LinkOut>,
}

pub struct NodeOut {
    pub name: String,
    pub span: Span,
    pub constraints: Vec<Rc<Cons>>,
    pub properties: BTreeMap<String, serde_json::Value>,
    pub ingress: Vec<mx_xir::Ingress>,
}

pub struct LinkOut {
    pub span: Span,
    pub constraints: Vec<Rc<Cons>>,
    pub properties: BTreeMap<String, serde_json::Value>,
    pub endpoints: Vec<EpOut>,
}

pub struct EpOut {
    /// Index into [`Topology::nodes`].
    pub node: usize,
    pub socket: u32,
    pub addrs: Vec<(String, Span)>,
    pub constraints: Vec<Rc<Cons>>,
}

fn new_dict() -> Dict {
    Rc::new(Shared(RefCell::new(IndexMap::new())))
}

impl Model {
    pub fn new_topology(&mut self, name: String, span: Option<Span>, _implicit: bool) -> u32 {
        self.topos.push(TopoData {
            name,
            span,
            constraints: Vec::new(),
            nodes: Vec::new(),
            links: Vec::new(),
        });
        (self.topos.len() - 1) as u32
    }

    pub fn node_name(&self, n: u32) -> &str {
        &self.nodes[n as usize].name
    }

    pub fn topo_name(&self, t: u32) -> &str {
        &self.topos[t as usize].name
    }

    pub fn link_name(&self, l: u32) -> String {
        let link = &self.links[l as usize];
        let mut s = String::new();
        for (i, e) in link.endpoints.iter().enumerate() {
            if i > 0 {
                s.push('~');
            }
            s.push_str(&self.nodes[e.node as usize].name);
            s.push('.');
            s.push_str(&e.socket.to_string());
        }
        s
    }

    pub fn endpoint_node_name(&self, l: u32, e: u32) -> &str {
        self.node_name(self.links[l as usize].endpoints[e as usize].node)
    }

    pub fn link_nodes(&self, l: u32) -> Vec<Value> {
        self.links[l as usize]
            .endpoints
            .iter()
            .map(|e| Value::Node(e.node))
            .collect()
    }

    pub fn topo_nodes(&self, t: u32) -> Vec<Value> {
        self.topos[t as usize]
            .nodes
            .iter()
            .map(|n| Value::Node(*n))
            .collect()
    }

    /// Picks the topology to compile and detaches it.
    pub fn finish(
        &mut self,
        diags: &mut Vec<Diagnostic>,
        _stem: &str,
        meter: &Meter,
    ) -> Option<Topology> {
        let chosen = match self.experiment {
            Some((t, _)) => t,
            None => {
                let used: Vec<u32> = (0..self.topos.len() as u32)
                    .filter(|t| !self.topos[*t as usize].nodes.is_empty())
                    .collect();
                match used.len() {
                    1 => used[0],
                    0 => {
                        let mut d = Diagnostic::error(code::E0217, "the model defines no topology");
                        if let Some(span) = self.topos.iter().find_map(|t| t.span) {
                            d = d.primary(span.range(), "this topology has no nodes");
                        }
                        diags.push(d.help("create one with `net = Network('name')` or `topo = topology('name')`, then add nodes with `net.node('a')`"));
                        return None;
                    }
                    _ => {
                        let mut d = Diagnostic::error(
                            code::E0217,
                            "the model defines several topologies and does not say which to compile",
                        );
                        for (i, t) in used.iter().enumerate() {
                            if let Some(span) = self.topos[*t as usize].span {
                                let text = format!("topology `{}`", self.topos[*t as usize].name);
                                d = if i == 0 {
                                    d.primary(span.range(), text)
                                } else {
                                    d.secondary(span.range(), text)
                                };
                            }
                        }
                        diags.push(d.help("pass the one to compile to `experiment(net)`"));
                        return None;
                    }
                }
            }
        };
        let topo = &self.topos[chosen as usize];
        let mut index = BTreeMap::new();
        let mut nodes = Vec::with_capacity(topo.nodes.len());
        for (i, n) in topo.nodes.iter().enumerate() {
            index.insert(*n, i);
            let nd = &self.nodes[*n as usize];
            nodes.push(NodeOut {
                name: nd.name.to_string(),
                span: nd.span,
                constraints: nd.constraints.clone(),
                properties: self.props_json(nd.properties.as_ref(), nd.span, diags, meter),
                ingress: nd
                    .ingress
                    .iter()
                    .map(|(p, port, span)| mx_xir::Ingress {
                        protocol: p.to_string(),
                        port: *port,
                        span: *span,
                    })
                    .collect(),
            });
        }
        let mut links = Vec::with_capacity(topo.links.len());
        for l in &topo.links {
            let ld = &self.links[*l as usize];
            links.push(LinkOut {
                span: ld.span,
                constraints: ld.constraints.clone(),
                properties: self.props_json(ld.properties.as_ref(), ld.span, diags, meter),
                endpoints: ld
                    .endpoints
                    .iter()
                    .map(|e| EpOut {
                        node: index[&e.node],
                        socket: e.socket,
                        addrs: e.addrs.clone(),
                        constraints: e.constraints.clone(),
                    })
                    .collect(),
            });
        }
        Some(Topology {
            name: topo.name.clone(),
            constraints: topo.constraints.clone(),
            nodes,
            links,
        })
    }

    fn props_json(
        &self,
        d: Option<&Dict>,
        span: Span,
        diags: &mut Vec<Diagnostic>,
        meter: &Meter,
    ) -> BTreeMap<String, serde_json::Value> {
        let mut out = BTreeMap::new();
        let Some(d) = d else {
            return out;
        };
        for (k, v) in d.borrow().iter() {
            let key = match k {
                Key::Str(s) => Ok(s.to_string()),
                other => self.json(&other.value(), 0, meter).map(|j| j.to_string()),
            };
            match key.and_then(|key| Ok((key, self.json(v, 0, meter)?))) {
                Ok((key, j)) => {
                    out.insert(key, j);
                }
                Err(JsonError::Kind(what)) => diags.push(
                    Diagnostic::error(
                        code::E0203,
                        format!(
                            "property `{}` holds a {what}, which XIR cannot store",
                            self.key_text(k)
                        ),
                    )
                    .primary(span.range(), "on this element")
                    .help("properties hold numbers, strings, booleans, lists and dicts of those"),
                ),
                Err(JsonError::Budget(e)) => {
                    let (code, limit) = match e {
                        Exhausted::Steps => (
                            code::E0212,
                            format!("{} steps (`--step-limit N`)", meter.step_limit()),
                        ),
                        Exhausted::Memory => (
                            code::E0213,
                            format!("{} MiB (`--memory-limit MB`)", meter.byte_limit() >> 20),
                        ),
                    };
                    diags.push(
                        Diagnostic::error(
                            code,
                            format!(
                                "property `{}` is too large to store in XIR",
                                self.key_text(k)
                            ),
                        )
                        .primary(span.range(), "on this element")
                        .help(format!("the model's budget is {limit}")),
                    );
                    // The budget is spent: later properties would fail too.
                    break;
                }
            }
        }
        out
    }

    /// A property key for messages.
    fn key_text(&self, k: &Key) -> String {
        match k {
            Key::Str(s) if s.len() <= 64 => s.to_string(),
            Key::Int(i) => i.to_string(),
            _ => "...".to_string(),
        }
    }

    /// A value as JSON, charging `m` for every node (shared structure is
    /// written out in full, so its size is the walk's).
    fn json(&self, v: &Value, depth: usize, m: &Meter) -> Result<serde_json::Value, JsonError> {
        use serde_json::Value as J;
        if depth > 64 {
            return Err(JsonError::Kind("value nested too deeply"));
        }
        m.step().map_err(JsonError::Budget)?;
        m.charge(16).map_err(JsonError::Budget)?;
        Ok(match v {
            Value::None => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => {
                m.charge(s.len() as u64).map_err(JsonError::Budget)?;
                J::String(s.to_string())
            }
            Value::Sym(s) => J::String(s.to_string()),
            Value::Quantity(q, _) => J::from(*q),
            Value::Node(n) => J::String(self.node_name(*n).to_string()),
            Value::Link(l) => J::String(self.link_name(*l)),
            Value::List(l) => J::Array(
                l.borrow()
                    .iter()
                    .map(|x| self.json(x, depth + 1, m))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Tuple(t) => J::Array(
                t.iter()
                    .map(|x| self.json(x, depth + 1, m))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Range(a, b, s) => {
                let n = range_len(*a, *b, *s).min(1 << 16);
                m.charge(16 * n as u64).map_err(JsonError::Budget)?;
                J::Array((0..n).map(|k| J::from(a + k * s)).collect())
            }
            Value::Dict(d) => {
                let mut map = serde_json::Map::new();
                for (k, v) in d.borrow().iter() {
                    let key = match k {
                        Key::Str(s) => s.to_string(),
                        other => self.json(&other.value(), depth + 1, m)?.to_string(),
                    };
                    map.insert(key, self.json(v, depth + 1, m)?);
                }
                J::Object(map)
            }
            other => return Err(JsonError::Kind(other.type_name())),
        })
    }
}

/// Why a value could not be written as JSON.
enum JsonError {
    /// A value of this type has no JSON form.
    Kind(&'static str),
    /// The walk ran out of budget.
    Budget(Exhausted),
}

/// Parses `a.b.c.d/len` with XIR's one definition of a prefix; the error
/// says what is wrong.
pub fn parse_cidr(s: &str) -> Result<(u32, u8), String> {
    mx_xir::Ipv4Cidr::parse(s).map(|c| (u32::from(c.addr), c.len))
}

pub fn fmt_cidr(addr: u32, len: u8) -> String {
    format!(
        "{}.{}.{}.{}/{len}",
        addr >> 24,
        (addr >> 16) & 255,
        (addr >> 8) & 255,
        addr & 255
    )
}

const TOPO_ATTRS: &[&str] = &[
    "node", "device", "connect", "spec", "name", "nodes", "links",
];
const NODE_ATTRS: &[&str] = &["spec", "ingress", "name", "properties"];
const LINK_ATTRS: &[&str] = &["spec", "name", "endpoints", "nodes", "properties"];
const EP_ATTRS: &[&str] = &["spec", "socket", "node"];
const SOCKET_ATTRS: &[&str] = &["addrs", "index"];

impl Eval<'_> {
    /// `Network`, `topology`, `experiment`, `ip4` and `param`.
    pub fn call_api(&mut self, b: Builtin, a: Args) -> R<Value> {
        let name = b.name();
        match b {
            Builtin::Network | Builtin::Topology => {
                self.arity(&a, name, 1, usize::MAX)?;
                let tname = self.name_arg(&a, 0, name, "Network('my-experiment')")?;
                let t = self
                    .model
                    .new_topology(tname.to_string(), Some(a.span), false);
                let cons = self.constraints(&a, 1, Target::Network, name)?;
                self.model.topos[t as usize].constraints.extend(cons);
                Ok(Value::Topo(t))
            }
            Builtin::Experiment => {
                self.arity(&a, name, 1, 1)?;
                let Value::Topo(t) = a.pos[0] else {
                    return Err(self.type_error(
                        a.span_of(0),
                        format!(
                            "experiment() needs a topology, not a {}",
                            a.pos[0].type_name()
                        ),
                    ));
                };
                if let Some((prev, pspan)) = self.model.experiment
                    && prev != t
                {
                    return Err(Diagnostic::error(
                        code::E0216,
                        "experiment() is called for two different topologies",
                    )
                    .primary(a.span.range(), "second experiment")
                    .secondary(pspan.range(), "first experiment")
                    .help("a model compiles one experiment; remove one of the calls")
                    .into());
                }
                self.model.experiment = Some((t, a.span));
                Ok(Value::None)
            }
            Builtin::Ip4 => {
                self.arity(&a, name, 1, usize::MAX)?;
                let mut out = Vec::new();
                for i in 0..a.pos.len() {
                    let s = self.str_arg(&a, i, name)?;
                    let (addr, len) =
                        parse_cidr(&s).map_err(|why| self.bad_address(&s, &why, a.span_of(i)))?;
                    out.push(Value::Str(fmt_cidr(addr, len).into()));
                }
                Ok(Value::list(out))
            }
            Builtin::Param => self.param(a),
            _ => unreachable!("not an API builtin"),
        }
    }

    fn bad_address(&self, s: &str, why: &str, span: Span) -> Flow {
        Diagnostic::error(
            code::E0209,
            format!("`{s}` is not an IPv4 address with a prefix length"),
        )
        .primary(span.range(), why)
        .help("write addresses in CIDR form: ip4('10.0.0.1/24')")
        .into()
    }

    fn name_arg(&self, a: &Args, i: usize, what: &str, example: &str) -> R<Rc<str>> {
        let s = match &a.pos[i] {
            Value::Str(s) => s.clone(),
            other => {
                return Err(Diagnostic::error(
                    code::E0203,
                    format!("`{what}` needs a name string, not a {}", other.type_name()),
                )
                .primary(a.span_of(i).range(), "not a string")
                .help(format!("names are strings: {example}"))
                .into());
            }
        };
        // Any printable name works, as in MergeTB; names that devices and
        // paths cannot carry are mapped to safe ones when the model is
        // lowered. Empty names and control characters name nothing.
        if s.is_empty() || s.chars().any(char::is_control) {
            return Err(Diagnostic::error(
                code::E0218,
                format!("{} is not a usable name", crate::format::py_repr_str(&s)),
            )
            .primary(a.span_of(i).range(), "bad name")
            .help("names must be non-empty and printable")
            .into());
        }
        Ok(s)
    }

    fn param(&mut self, a: Args) -> R<Value> {
        self.arity(&a, "param", 1, 2)?;
        let name = self.str_arg(&a, 0, "param")?;
        let default = a.pos.get(1).cloned().unwrap_or(Value::None);
        self.params_read.insert(name.to_string());
        let v = match self.opts.params.get(&*name) {
            None => default.clone(),
            Some(text) => {
                let bad = |ty: &str| -> Flow {
                    Diagnostic::error(
                        code::E0220,
                        format!("`--set {name}={text}` is not a valid {ty}"),
                    )
                    .primary(
                        a.span.range(),
                        format!(
                            "`{name}` is a {ty} parameter (default {})",
                            self.repr_brief(&default)
                        ),
                    )
                    .help(format!(
                        "pass a {ty}, e.g. `--set {name}={}`",
                        self.str_brief(&default)
                    ))
                    .into()
                };
                match &default {
                    Value::Int(_) => Value::Int(
                        text.trim()
                            .replace('_', "")
                            .parse()
                            .map_err(|_| bad("int"))?,
                    ),
                    Value::Float(_) => Value::Float(text.trim().parse().map_err(|_| bad("float"))?),
                    Value::Bool(_) => {
                        Value::Bool(match text.trim().to_ascii_lowercase().as_str() {
                            "true" | "1" | "yes" | "on" => true,
                            "false" | "0" | "no" | "off" => false,
                            _ => return Err(bad("bool")),
                        })
                    }
                    Value::Str(_) | Value::None => Value::str(text),
                    other => {
                        return Err(self.type_error(
                            a.span_of(1),
                            format!(
                                "a parameter default must be an int, float, bool or str, not a {}",
                                other.type_name()
                            ),
                        ));
                    }
                }
            }
        };
        let json = match &v {
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Str(s) => serde_json::Value::String(s.to_string()),
            Value::None => serde_json::Value::Null,
            other => {
                return Err(self.type_error(
                    a.span_of(1),
                    format!(
                        "a parameter default must be an int, float, bool or str, not a {}",
                        other.type_name()
                    ),
                ));
            }
        };
        self.params.insert(name.to_string(), json);
        Ok(v)
    }

    /// The constraints among `a.pos[from..]` and keyword sugar (`cores=4`), checked for `target`.
    fn constraints(
        &mut self,
        a: &Args,
        from: usize,
        target: Target,
        what: &str,
    ) -> R<Vec<Rc<Cons>>> {
        // A bad constraint is recorded and left out, so the node or link
        // still exists and the model's other mistakes are still found.
        let mut out = Vec::new();
        for i in from..a.pos.len() {
            match &a.pos[i] {
                Value::List(_) | Value::Tuple(_) => {
                    // `spec([cores == 4, memory == gb(8)])`
                    let items = self.iterate(&a.pos[i].clone(), a.span_of(i))?;
                    for it in items {
                        self.take_constraint(it, a.span_of(i), target, what, &mut out)?;
                    }
                }
                v => self.take_constraint(v.clone(), a.span_of(i), target, what, &mut out)?,
            }
        }
        for (k, v, span) in &a.kw {
            if matches!(v, Value::Poison) {
                continue;
            }
            let kname = self.name(*k);
            let Some(p) = props::prop(kname) else {
                let mut d =
                    Diagnostic::error(code::E0215, format!("`{what}` has no keyword `{kname}`"))
                        .primary(span.range(), "unknown keyword");
                if let Some(s) = did_you_mean(kname, PROPS.iter().map(|p| p.name)) {
                    d = d.help(format!("did you mean the property `{s}`?"));
                }
                self.poison(d);
                continue;
            };
            match self.build_constraint(p, Op::Eq, v.clone(), *span, *span) {
                Ok(c) => self.keep_constraint(Rc::new(c), target, &mut out)?,
                Err(f) => {
                    self.recover(f)?;
                }
            }
        }
        Ok(out)
    }

    /// One argument that should be a constraint: kept if it is one that
    /// applies to `target`; otherwise its error is recorded (a `Poison`
    /// already has one).
    fn take_constraint(
        &mut self,
        v: Value,
        span: Span,
        target: Target,
        what: &str,
        out: &mut Vec<Rc<Cons>>,
    ) -> R<()> {
        match v {
            Value::Constraint(c) => self.keep_constraint(c, target, out),
            Value::Poison => Ok(()),
            other => {
                let f = self.not_constraint(&other, span, what);
                self.recover(f).map(drop)
            }
        }
    }

    /// Keeps `c` if it applies to `target`, else records why not.
    fn keep_constraint(&mut self, c: Rc<Cons>, target: Target, out: &mut Vec<Rc<Cons>>) -> R<()> {
        match self.check_target(&c, target) {
            Ok(()) => {
                out.push(c);
                Ok(())
            }
            Err(f) => self.recover(f).map(drop),
        }
    }

    fn not_constraint(&self, v: &Value, span: Span, what: &str) -> Flow {
        let mut d = Diagnostic::error(
            code::E0203,
            format!(
                "`{what}` expects constraints such as `cores == 4`, not a {}",
                v.type_name()
            ),
        )
        .primary(span.range(), "not a constraint");
        if matches!(v, Value::Bool(_)) {
            d = d.help("this comparison did not involve a property; is a property name shadowed by a variable?");
        } else if matches!(v, Value::Prop(_)) {
            d = d.help("compare the property with a value, e.g. `cores >= 4`");
        }
        d.into()
    }

    fn check_target(&self, c: &Cons, target: Target) -> R<()> {
        let def = &PROPS[c.prop as usize];
        if !def.targets.contains(&target) {
            let on: Vec<&str> = def.targets.iter().map(|t| t.noun()).collect();
            return Err(Diagnostic::error(code::E0218, format!("`{}` cannot constrain a {}", def.name, target.noun()))
                .primary(c.span.range(), format!("a {} property", on.join(" or ")))
                .help(match target {
                    Target::Node => "node properties: cores, memory, disk, image, virt, metal, arch, clock, tdf, membus, pcie, gpu, gpu_mode, host, platform",
                    Target::Link => "link properties: capacity, latency, loss, mtu, layer, emulation, nic",
                    Target::Endpoint => "endpoint properties: nic, capacity, mtu, emulation",
                    Target::Network => "topology properties: routing, addressing, emulation, experimentnetresolution",
                })
                .into());
        }
        if let Kind::Enum(allowed) = props::kind_on(def, target)
            && let mx_xir::Value::Text(t) = &c.value
            && !allowed.contains(&t.as_str())
        {
            return Err(Diagnostic::error(
                code::E0218,
                format!("`{t}` is not a {} `{}`", target.noun(), def.name),
            )
            .primary(c.value_span.range(), "not allowed here")
            .help(format!("one of: {}", allowed.join(", ")))
            .into());
        }
        Ok(())
    }

    /// `arch == sparc` where `sparc` names nothing: for properties that take
    /// symbols, say which values are allowed; otherwise keep E0201.
    pub fn unknown_symbol(&self, prop: u8, word: &str, span: Span, undefined: Diagnostic) -> Flow {
        let def = &PROPS[prop as usize];
        let allowed: Vec<&str> = match def.kind {
            Kind::Enum(_) if def.name == "emulation" => EMULATION_ANY.to_vec(),
            Kind::Enum(vals) => vals.to_vec(),
            Kind::Nic => props::NICS.iter().map(|n| n.name).collect(),
            Kind::Text => {
                return Diagnostic::error(code::E0201, format!("`{word}` is not defined"))
                    .primary(span.range(), "not defined")
                    .help(format!(
                        "`{}` takes a string: quote it, `{} == '{word}'`",
                        def.name, def.name
                    ))
                    .into();
            }
            _ => return undefined.into(),
        };
        let mut help = format!("`{}` is one of: {}", def.name, allowed.join(", "));
        if let Some(s) = did_you_mean(word, allowed.iter().copied()) {
            help = format!("did you mean `{s}`? {help}");
        }
        Diagnostic::error(
            code::E0218,
            format!("`{word}` is not a valid `{}`", def.name),
        )
        .primary(span.range(), "unknown value")
        .help(help)
        .into()
    }

    /// A comparison with a property becomes a constraint.
    pub fn make_constraint(
        &mut self,
        a: Value,
        op: CmpOp,
        b: Value,
        aspan: Span,
        bspan: Span,
        span: Span,
    ) -> R<Value> {
        let (prop, op, value, vspan) = match (&a, &b) {
            (Value::Prop(_), Value::Prop(_)) => {
                return Err(
                    Diagnostic::error(code::E0203, "two properties cannot be compared")
                        .primary(span.range(), "compare a property with a value")
                        .help("write e.g. `cores >= 4`")
                        .into(),
                );
            }
            (Value::Prop(p), _) => (*p, op, b, bspan),
            (_, Value::Prop(p)) => {
                let flipped = match op {
                    CmpOp::Lt => CmpOp::Gt,
                    CmpOp::Le => CmpOp::Ge,
                    CmpOp::Gt => CmpOp::Lt,
                    CmpOp::Ge => CmpOp::Le,
                    CmpOp::In | CmpOp::NotIn => {
                        return Err(self.type_error(
                            bspan,
                            "write `property in [values]`, with the property on the left",
                        ));
                    }
                    o => o,
                };
                (*p, flipped, a, aspan)
            }
            _ => unreachable!("one side is a property"),
        };
        let xop = match op {
            CmpOp::Eq => Op::Eq,
            CmpOp::Ne => Op::Ne,
            CmpOp::Lt => Op::Lt,
            CmpOp::Le => Op::Le,
            CmpOp::Gt => Op::Gt,
            CmpOp::Ge => Op::Ge,
            CmpOp::In => Op::In,
            other => {
                return Err(Diagnostic::error(
                    code::E0203,
                    format!("`{}` cannot make a constraint", other.symbol()),
                )
                .primary(span.range(), "not a constraint operator")
                .help("constraints use ==, !=, <, <=, >, >= and `in [...]`")
                .into());
            }
        };
        Ok(Value::Constraint(Rc::new(
            self.build_constraint(prop, xop, value, vspan, span)?,
        )))
    }

    fn build_constraint(
        &mut self,
        prop: u8,
        op: Op,
        value: Value,
        vspan: Span,
        span: Span,
    ) -> R<Cons> {
        let def = &PROPS[prop as usize];
        let kind = if def.name == "emulation" {
            Kind::Enum(EMULATION_ANY)
        } else {
            def.kind
        };
        if matches!(op, Op::Lt | Op::Le | Op::Gt | Op::Ge) && !kind.ordered() {
            return Err(Diagnostic::error(
                code::E0203,
                format!(
                    "`{}` is not ordered, so `{}` does not apply",
                    def.name,
                    op.as_str()
                ),
            )
            .primary(span.range(), "ordering comparison")
            .help(format!("use ==, != or `in [...]`, e.g. `{}`", def.example))
            .into());
        }
        let (value, unit) = if op == Op::In {
            let items = match &value {
                Value::List(l) => l.borrow().clone(),
                Value::Tuple(t) => t.to_vec(),
                other => {
                    return Err(Diagnostic::error(
                        code::E0203,
                        format!("`in` needs a list of values, not a {}", other.type_name()),
                    )
                    .primary(vspan.range(), "not a list")
                    .help(format!("e.g. `{} in [...]`", def.name))
                    .into());
                }
            };
            if items.is_empty() {
                return Err(Diagnostic::error(
                    code::E0218,
                    format!("`{} in []` can never hold", def.name),
                )
                .primary(vspan.range(), "empty set")
                .help("list at least one value")
                .into());
            }
            let mut out = Vec::new();
            let mut unit = None;
            for it in items {
                let (v, u) = self.conv_value(def, kind, op, &it, vspan)?;
                unit = unit.or(u);
                out.push(v);
            }
            (mx_xir::Value::List(out), unit)
        } else {
            self.conv_value(def, kind, op, &value, vspan)?
        };
        Ok(Cons {
            prop,
            op,
            value,
            unit,
            span,
            value_span: vspan,
        })
    }

    fn conv_value(
        &self,
        def: &props::PropDef,
        kind: Kind,
        op: Op,
        v: &Value,
        vspan: Span,
    ) -> R<(mx_xir::Value, Option<Unit>)> {
        use mx_xir::Value as X;
        let pname = def.name;
        let bad_value = |msg: String, help: String| -> Flow {
            Diagnostic::error(code::E0218, msg)
                .primary(vspan.range(), "this value")
                .help(help)
                .into()
        };
        let wrong_type = |want: &str| -> Flow {
            Diagnostic::error(
                code::E0203,
                format!("`{pname}` takes {want}, not a {}", v.type_name()),
            )
            .primary(vspan.range(), format!("a {}", v.type_name()))
            .help(format!("e.g. `{}`", def.example))
            .into()
        };
        let sym_text = |v: &Value| -> Option<String> {
            match v {
                Value::Sym(s) => Some(s.to_string()),
                Value::Str(s) => Some(props::alias(s).unwrap_or(s).to_string()),
                _ => None,
            }
        };
        Ok(match kind {
            Kind::Count => match v {
                Value::Int(i) if *i >= 0 => (X::Int(*i), None),
                Value::Int(i) => {
                    return Err(bad_value(
                        format!("`{pname}` cannot be {i}"),
                        "counts are zero or more".into(),
                    ));
                }
                Value::Quantity(..) => {
                    return Err(Diagnostic::error(
                        code::E0204,
                        format!("`{pname}` is a plain count and takes no unit"),
                    )
                    .primary(vspan.range(), "has a unit")
                    .help(format!("e.g. `{}`", def.example))
                    .into());
                }
                _ => return Err(wrong_type("a whole number")),
            },
            Kind::Int(lo, hi) => match v {
                Value::Int(i) if (lo..=hi).contains(i) => (X::Int(*i), None),
                Value::Int(i) => {
                    return Err(bad_value(
                        format!("`{pname}` cannot be {i}"),
                        format!("`{pname}` is between {lo} and {hi}"),
                    ));
                }
                _ => return Err(wrong_type("a whole number")),
            },
            Kind::Quantity(unit) => match v {
                Value::Quantity(q, u) if *u == unit => {
                    if *q < 0 {
                        return Err(bad_value(
                            format!("`{pname}` cannot be negative"),
                            format!("e.g. `{}`", def.example),
                        ));
                    }
                    (X::Int(*q), Some(unit))
                }
                Value::Quantity(_, u) => {
                    return Err(Diagnostic::error(
                        code::E0204,
                        format!("`{pname}` takes {}, not {}", unit_noun(unit), unit_noun(*u)),
                    )
                    .primary(vspan.range(), format!("{} here", unit_noun(*u)))
                    .help(format!("use {}, e.g. `{}`", unit_funcs(unit), def.example))
                    .into());
                }
                Value::Int(_) | Value::Float(_) => {
                    return Err(
                        Diagnostic::error(code::E0204, format!("`{pname}` needs a unit"))
                            .primary(vspan.range(), "bare number")
                            .help(format!(
                                "say which unit with {}, e.g. `{}`",
                                unit_funcs(unit),
                                def.example
                            ))
                            .into(),
                    );
                }
                _ => return Err(wrong_type(unit_noun(unit))),
            },
            Kind::Bool => match v {
                Value::Bool(b) => (X::Bool(*b), None),
                _ => return Err(wrong_type("true or false")),
            },
            Kind::Text => match v {
                Value::Str(s) if !s.is_empty() => (X::Text(s.to_string()), None),
                Value::Sym(s) => (X::Text(s.to_string()), None),
                Value::Str(_) => {
                    return Err(bad_value(
                        format!("`{pname}` cannot be empty"),
                        format!("e.g. `{}`", def.example),
                    ));
                }
                _ => return Err(wrong_type("a string")),
            },
            Kind::Enum(allowed) => match sym_text(v) {
                Some(t) if allowed.contains(&t.as_str()) => (X::Text(t), None),
                Some(t) => {
                    let mut help = format!("`{pname}` is one of: {}", allowed.join(", "));
                    if let Some(s) = did_you_mean(&t, allowed.iter().copied()) {
                        help = format!("did you mean `{s}`? {help}");
                    }
                    return Err(bad_value(format!("`{t}` is not a valid `{pname}`"), help));
                }
                None => return Err(wrong_type(&format!("one of {}", allowed.join(", ")))),
            },
            Kind::Nic => match sym_text(v) {
                Some(t) => match props::nic(&t) {
                    Some(n) => {
                        if matches!(op, Op::Lt | Op::Le | Op::Gt | Op::Ge)
                            && n.class != NicClass::Physical
                        {
                            return Err(Diagnostic::error(code::E0203, format!("`{t}` has no order, so `{}` does not apply", op.as_str()))
                                .primary(vspan.range(), "not an ordered NIC model")
                                .help("only physical NIC models are ordered: connectx3 < connectx4 < connectx5 < connectx6 < connectx6dx < connectx7; x520 < x710 < e810")
                                .into());
                        }
                        (X::Text(t), None)
                    }
                    None => {
                        let names = props::NICS.iter().map(|n| n.name);
                        let help = match did_you_mean(&t, names) {
                            Some(s) => format!("did you mean `{s}`?"),
                            None => format!(
                                "NIC values: {}",
                                props::NICS
                                    .iter()
                                    .map(|n| n.name)
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        };
                        return Err(bad_value(
                            format!("`{t}` is not a NIC model or attachment"),
                            help,
                        ));
                    }
                },
                None => return Err(wrong_type("a NIC model such as virtio or connectx5")),
            },
            Kind::Fraction => match v {
                Value::Int(_) | Value::Float(_) => {
                    let f = if let Value::Int(i) = v {
                        *i as f64
                    } else if let Value::Float(f) = v {
                        *f
                    } else {
                        0.0
                    };
                    if !(0.0..=1.0).contains(&f) {
                        return Err(bad_value(
                            format!(
                                "`{pname}` must be between 0 and 1, not {}",
                                crate::value::fmt_float(f)
                            ),
                            "a loss rate is a fraction: 0.01 is 1%".into(),
                        ));
                    }
                    (X::Float(f), None)
                }
                _ => return Err(wrong_type("a fraction between 0 and 1")),
            },
            Kind::Factor => {
                match v {
                    Value::Int(i) if *i >= 1 => (X::Int(*i), None),
                    Value::Float(f) if *f >= 1.0 && f.is_finite() => (X::Float(*f), None),
                    Value::Int(_) | Value::Float(_) => {
                        return Err(bad_value(format!("`{pname}` must be at least 1"), "a time dilation factor of 10 makes the guest's clock run 10 times slower".into()));
                    }
                    _ => return Err(wrong_type("a number of at least 1")),
                }
            }
            Kind::Membus => match v {
                Value::Membus(m) => (X::Membus(*m), None),
                _ => return Err(wrong_type("a memory bus such as ddr4(2400)")),
            },
            Kind::Pcie => match v {
                Value::Pcie(p) => (X::Pcie(*p), None),
                _ => return Err(wrong_type("a PCIe link such as gen3(16)")),
            },
        })
    }

    // ---- methods and attributes ------------------------------------------

    pub fn api_method(
        &mut self,
        recv: Value,
        name: Sym,
        nspan: Span,
        _ospan: Span,
        a: Args,
    ) -> R<Value> {
        let m: &str = self.name(name);
        match (&recv, m) {
            (Value::Topo(t), "node" | "device") => {
                let t = *t;
                self.arity(&a, m, 1, usize::MAX)?;
                let nname = self.name_arg(&a, 0, m, "net.node('a')")?;
                let cons = self.constraints(&a, 1, Target::Node, m)?;
                self.charge(256 + nname.len() as u64, a.span)?;
                let id = self.model.nodes.len() as u32;
                self.model.nodes.push(NodeData {
                    name: nname,
                    topo: t,
                    span: a.span,
                    constraints: cons,
                    properties: None,
                    ingress: Vec::new(),
                    sockets: 0,
                });
                self.model.topos[t as usize].nodes.push(id);
                Ok(Value::Node(id))
            }
            (Value::Topo(t), "connect") => {
                let t = *t;
                self.arity(&a, m, 1, usize::MAX)?;
                let members = self.iterate(&a.pos[0].clone(), a.span_of(0))?;
                let mut nodes: Vec<u32> = Vec::with_capacity(members.len());
                for v in &members {
                    let Value::Node(n) = v else {
                        return Err(Diagnostic::error(
                            code::E0203,
                            format!("connect() needs a list of nodes, found a {}", v.type_name()),
                        )
                        .primary(a.span_of(0).range(), "not all nodes")
                        .help("pass nodes made with net.node(...): net.connect([a, b])")
                        .into());
                    };
                    if self.model.nodes[*n as usize].topo != t {
                        return Err(Diagnostic::error(
                            code::E0216,
                            format!(
                                "node `{}` belongs to another topology",
                                self.model.node_name(*n)
                            ),
                        )
                        .primary(a.span_of(0).range(), "connected here")
                        .secondary(self.model.nodes[*n as usize].span.range(), "created here")
                        .into());
                    }
                    if let Some(dup) = nodes.iter().find(|x| **x == *n) {
                        return Err(Diagnostic::error(
                            code::E0207,
                            format!(
                                "node `{}` appears twice on one link",
                                self.model.node_name(*dup)
                            ),
                        )
                        .primary(a.span_of(0).range(), "repeated node")
                        .help("a node joins a link once; to give it two interfaces, make two links")
                        .into());
                    }
                    nodes.push(*n);
                }
                if nodes.len() < 2 {
                    return Err(Diagnostic::error(
                        code::E0207,
                        format!(
                            "a link needs at least two nodes, this one has {}",
                            nodes.len()
                        ),
                    )
                    .primary(
                        a.span_of(0).range(),
                        format!(
                            "{} node{}",
                            nodes.len(),
                            if nodes.len() == 1 { "" } else { "s" }
                        ),
                    )
                    .help("connect two nodes for a point-to-point link, or more for a LAN")
                    .into());
                }
                let cons = self.constraints(&a, 1, Target::Link, m)?;
                self.charge(128 + 96 * nodes.len() as u64, a.span)?;
                let endpoints = nodes
                    .iter()
                    .map(|n| {
                        let nd = &mut self.model.nodes[*n as usize];
                        let socket = nd.sockets;
                        nd.sockets += 1;
                        EpData {
                            node: *n,
                            socket,
                            addrs: Vec::new(),
                            constraints: Vec::new(),
                        }
                    })
                    .collect();
                let id = self.model.links.len() as u32;
                self.model.links.push(LinkData {
                    span: a.span,
                    endpoints,
                    constraints: cons,
                    properties: None,
                });
                self.model.topos[t as usize].links.push(id);
                Ok(Value::Link(id))
            }
            (Value::Topo(t), "spec") => {
                let cons = self.constraints(&a, 0, Target::Network, m)?;
                self.model.topos[*t as usize].constraints.extend(cons);
                Ok(recv)
            }
            (Value::Node(n), "spec") => {
                let cons = self.constraints(&a, 0, Target::Node, m)?;
                self.model.nodes[*n as usize].constraints.extend(cons);
                Ok(recv)
            }
            (Value::Node(n), "ingress") => {
                let n = *n;
                self.arity(&a, m, 2, 2)?;
                let proto = match &a.pos[0] {
                    Value::Sym(s) if props::PROTOCOLS.contains(s) => *s,
                    Value::Str(s) if props::PROTOCOLS.contains(&&**s) => {
                        props::symbol(s).unwrap_or("tcp")
                    }
                    other => {
                        return Err(Diagnostic::error(
                            code::E0218,
                            format!("{} is not an ingress protocol", self.repr_brief(other)),
                        )
                        .primary(a.span_of(0).range(), "protocol")
                        .help(format!("one of: {}", props::PROTOCOLS.join(", ")))
                        .into());
                    }
                };
                let port = self.int_arg(&a, 1, m)?;
                let port = u16::try_from(port).ok().filter(|p| *p > 0).ok_or_else(|| {
                    self.fail(
                        code::E0218,
                        a.span_of(1),
                        format!("{port} is not a port number"),
                        "ports are 1 to 65535",
                    )
                })?;
                self.model.nodes[n as usize]
                    .ingress
                    .push((proto, port, a.span));
                Ok(Value::None)
            }
            (Value::Link(l), "spec") => {
                let cons = self.constraints(&a, 0, Target::Link, m)?;
                self.model.links[*l as usize].constraints.extend(cons);
                Ok(recv)
            }
            (Value::Endpoint(l, e), "spec") => {
                let cons = self.constraints(&a, 0, Target::Endpoint, m)?;
                self.model.links[*l as usize].endpoints[*e as usize]
                    .constraints
                    .extend(cons);
                Ok(recv)
            }
            _ => {
                let attr = self.api_attr(recv, name, nspan)?;
                self.call(attr, a, nspan)
            }
        }
    }

    pub fn api_attr(&mut self, o: Value, name: Sym, nspan: Span) -> R<Value> {
        let n: &str = self.name(name);
        let method = |o: &Value| Ok(Value::Method(Rc::new((o.clone(), name))));
        match (&o, n) {
            (Value::Topo(_), "node" | "device" | "connect" | "spec") => method(&o),
            (Value::Topo(t), "name") => Ok(Value::str(self.model.topo_name(*t))),
            (Value::Topo(t), "nodes") => Ok(Value::list(self.model.topo_nodes(*t))),
            (Value::Topo(t), "links") => Ok(Value::list(
                self.model.topos[*t as usize]
                    .links
                    .iter()
                    .map(|l| Value::Link(*l))
                    .collect(),
            )),
            (Value::Node(_), "spec" | "ingress") => method(&o),
            (Value::Node(n), "name") => Ok(Value::Str(self.model.nodes[*n as usize].name.clone())),
            (Value::Node(n), "properties") => Ok(Value::Dict(
                self.model.nodes[*n as usize]
                    .properties
                    .get_or_insert_with(new_dict)
                    .clone(),
            )),
            (Value::Link(_), "spec") => method(&o),
            (Value::Link(l), "name") => Ok(Value::str(&self.model.link_name(*l))),
            (Value::Link(l), "nodes") => Ok(Value::list(self.model.link_nodes(*l))),
            (Value::Link(l), "endpoints") => {
                let n = self.model.links[*l as usize].endpoints.len() as u32;
                Ok(Value::list(
                    (0..n).map(|e| Value::Endpoint(*l, e)).collect(),
                ))
            }
            (Value::Link(l), "properties") => Ok(Value::Dict(
                self.model.links[*l as usize]
                    .properties
                    .get_or_insert_with(new_dict)
                    .clone(),
            )),
            (Value::Endpoint(..), "spec") => method(&o),
            (Value::Endpoint(l, e), "socket") => Ok(Value::Socket(*l, *e)),
            (Value::Endpoint(l, e), "node") => Ok(Value::Node(
                self.model.links[*l as usize].endpoints[*e as usize].node,
            )),
            (Value::Socket(l, e), "addrs") => Ok(Value::list(
                self.model.links[*l as usize].endpoints[*e as usize]
                    .addrs
                    .iter()
                    .map(|(a, _)| Value::str(a))
                    .collect(),
            )),
            (Value::Socket(l, e), "index") => Ok(Value::Int(
                self.model.links[*l as usize].endpoints[*e as usize].socket as i64,
            )),
            _ => {
                let known = match o {
                    Value::Topo(_) => TOPO_ATTRS,
                    Value::Node(_) => NODE_ATTRS,
                    Value::Link(_) => LINK_ATTRS,
                    Value::Endpoint(..) => EP_ATTRS,
                    _ => SOCKET_ATTRS,
                };
                Err(self.no_attr(&o, n, nspan, known))
            }
        }
    }

    pub fn set_attr(&mut self, o: &Value, name: Sym, v: Value, nspan: Span, vspan: Span) -> R<()> {
        let n: &str = self.name(name);
        match (o, n) {
            (Value::Socket(l, e), "addrs") => {
                let items = match &v {
                    Value::Str(_) => vec![v.clone()],
                    Value::List(_) | Value::Tuple(_) => self.iterate(&v, vspan)?,
                    other => {
                        return Err(self.type_error(
                            vspan,
                            format!(
                                "addresses are strings such as ip4('10.0.0.1/24'), not a {}",
                                other.type_name()
                            ),
                        ));
                    }
                };
                let mut addrs = Vec::with_capacity(items.len());
                for it in items {
                    let Value::Str(s) = it else {
                        return Err(self.type_error(
                            vspan,
                            format!("addresses are strings, not a {}", it.type_name()),
                        ));
                    };
                    let (addr, len) =
                        parse_cidr(&s).map_err(|why| self.bad_address(&s, &why, vspan))?;
                    addrs.push((fmt_cidr(addr, len), vspan));
                }
                self.charge(64 * addrs.len() as u64, vspan)?;
                self.model.links[*l as usize].endpoints[*e as usize].addrs = addrs;
                Ok(())
            }
            (Value::Node(x), "properties") | (Value::Link(x), "properties") => {
                let Value::Dict(d) = v else {
                    return Err(self.type_error(
                        vspan,
                        format!("properties is a dict, not a {}", v.type_name()),
                    ));
                };
                if matches!(o, Value::Node(_)) {
                    self.model.nodes[*x as usize].properties = Some(d);
                } else {
                    self.model.links[*x as usize].properties = Some(d);
                }
                Ok(())
            }
            (
                Value::Topo(_)
                | Value::Node(_)
                | Value::Link(_)
                | Value::Endpoint(..)
                | Value::Socket(..),
                _,
            ) => Err(Diagnostic::error(
                code::E0202,
                format!("cannot set `{n}` on a {}", o.type_name()),
            )
            .primary(nspan.range(), "not settable")
            .help(match o {
                Value::Socket(..) => "a socket's settable attribute is `addrs`",
                Value::Node(_) | Value::Link(_) => {
                    "constrain with `.spec(...)`; free-form data goes in `.properties['key']`"
                }
                _ => "constrain with `.spec(...)`",
            })
            .into()),
            _ => Err(self.type_error(
                nspan,
                format!("a {} has no settable attributes", o.type_name()),
            )),
        }
    }

    /// `link[node]`.
    pub fn endpoint_of(&mut self, l: u32, k: &Value, kspan: Span, _span: Span) -> R<Value> {
        let Value::Node(n) = k else {
            return Err(Diagnostic::error(
                code::E0203,
                format!("a link is indexed by a node, not a {}", k.type_name()),
            )
            .primary(kspan.range(), "not a node")
            .help("write link[a] where a = net.node('a')")
            .into());
        };
        let link = &self.model.links[l as usize];
        match link.endpoints.iter().position(|e| e.node == *n) {
            Some(e) => Ok(Value::Endpoint(l, e as u32)),
            None => {
                let names: Vec<String> = link
                    .endpoints
                    .iter()
                    .map(|e| format!("`{}`", self.model.node_name(e.node)))
                    .collect();
                Err(Diagnostic::error(
                    code::E0208,
                    format!("node `{}` is not on this link", self.model.node_name(*n)),
                )
                .primary(kspan.range(), "not an endpoint of the link")
                .secondary(link.span.range(), "link created here")
                .help(format!("the link joins {}", names.join(", ")))
                .into())
            }
        }
    }
}

/// Both meanings of `emulation` at construction; the target narrows it.
const EMULATION_ANY: &[&str] = &["wifi", "optical", "lte", "satellite", "netem", "click"];

fn unit_noun(u: Unit) -> &'static str {
    match u {
        Unit::Bytes => "a size",
        Unit::Bps => "a rate",
        Unit::Ns => "a time",
        Unit::Hz => "a frequency",
    }
}

fn unit_funcs(u: Unit) -> &'static str {
    match u {
        Unit::Bytes => "kb, mb, gb, tb or pb",
        Unit::Bps => "bps, kbps, mbps, gbps or tbps",
        Unit::Ns => "ns, us, ms or s",
        Unit::Hz => "hz, khz, mhz or ghz",
    }
}
