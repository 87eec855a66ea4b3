//! Whole-topology checks and lowering to XIR.
//!
//! What cannot be judged at a single call is judged here: duplicate names,
//! addresses across a link, constraints that contradict each other on one
//! element, and the shape of the graph. Every check is linear (or linear
//! after sorting) in the size of the model, so 100,000-node models stay fast.

use mx_diag::code;
use rustc_hash::FxHashMap as HashMap;
use std::collections::BTreeMap;
use std::rc::Rc;

use mx_diag::Diagnostic;
use mx_xir::{Op, Span, Value as X};
use petgraph::unionfind::UnionFind;

use crate::props::{self, Kind, NicClass, PROPS};
use crate::topo::Topology;
use crate::value::Cons;

pub fn lower(
    path: &str,
    topo: Topology,
    params: &BTreeMap<String, serde_json::Value>,
    diags: &mut Vec<Diagnostic>,
) -> Option<mx_xir::Experiment> {
    // Names that devices, paths and command lines cannot carry are mapped
    // to safe ones; the original stays as the label.
    let names: Vec<mx_xir::Name> = topo
        .nodes
        .iter()
        .map(|n| mx_xir::safe_name(&n.name))
        .collect();
    duplicate_names(&topo, &names, diags);
    addresses(&topo, diags);
    contradictions(&topo, diags);
    connectivity(&topo, diags);

    let mut xir = mx_xir::Experiment::new(&topo.name, path);
    xir.parameters = params.clone();
    xir.constraints = topo.constraints.iter().map(|c| constraint(c)).collect();
    // The topology is taken apart as it is lowered: names, addresses and
    // properties move into the XIR instead of being copied, so the two are
    // not both held whole.
    let Topology { nodes, links, .. } = topo;
    xir.links = links
        .into_iter()
        .map(|l| mx_xir::Link {
            name: crate::topo::link_name(
                l.endpoints
                    .iter()
                    .map(|e| (names[e.node].as_str(), e.socket)),
            ),
            endpoints: l
                .endpoints
                .into_iter()
                .map(|e| mx_xir::Endpoint {
                    node: names[e.node].clone(),
                    socket: e.socket,
                    addrs: e
                        .addrs
                        .into_iter()
                        .map(|a| mx_xir::Address {
                            cidr: a.text,
                            span: a.span,
                        })
                        .collect(),
                    constraints: e.constraints.iter().map(|c| constraint(c)).collect(),
                })
                .collect(),
            constraints: l.constraints.iter().map(|c| constraint(c)).collect(),
            properties: l.properties,
            span: l.span,
        })
        .collect();
    xir.nodes = nodes
        .into_iter()
        .zip(names)
        .map(|(n, safe)| mx_xir::Node {
            label: (*safe != n.name).then_some(n.name),
            name: safe,
            constraints: n.constraints.iter().map(|c| constraint(c)).collect(),
            properties: n.properties,
            ingress: n.ingress,
            span: n.span,
        })
        .collect();
    Some(xir)
}

fn constraint(c: &Cons) -> mx_xir::Constraint {
    mx_xir::Constraint {
        property: std::borrow::Cow::Borrowed(PROPS[c.prop as usize].name),
        op: c.op,
        value: c.value.clone(),
        unit: c.unit,
        span: c.span,
    }
}

fn duplicate_names(topo: &Topology, names: &[mx_xir::Name], diags: &mut Vec<Diagnostic>) {
    let mut seen: HashMap<&str, usize> =
        HashMap::with_capacity_and_hasher(topo.nodes.len(), Default::default());
    for (i, (n, safe)) in topo.nodes.iter().zip(names).enumerate() {
        if let Some(&first) = seen.get(safe.as_str()) {
            let other = &topo.nodes[first];
            let d = if other.name == n.name {
                Diagnostic::error(code::E0206, format!("two nodes are named `{}`", n.name))
                    .primary(n.span.range(), "second node with this name")
                    .secondary(other.span.range(), "first defined here")
                    .help("node names must be unique; in loops, build them from the index: f'n{i}'")
            } else {
                Diagnostic::error(
                    code::E0206,
                    format!(
                        "nodes `{}` and `{}` both become `{safe}` on the testbed",
                        other.name, n.name
                    ),
                )
                .primary(n.span.range(), format!("becomes `{safe}`"))
                .secondary(other.span.range(), format!("also becomes `{safe}`"))
                .help("characters other than A-Z, a-z, 0-9, _, . and - become `-`; rename one of them")
            };
            diags.push(d);
        } else {
            seen.insert(safe, i);
        }
    }
}

fn addresses(topo: &Topology, diags: &mut Vec<Diagnostic>) {
    // (address, link index, span) of every use, for reuse across links.
    let mut uses: Vec<(u32, usize, Span)> = Vec::new();
    let mut on_link = Seen::default();
    for (li, l) in topo.links.iter().enumerate() {
        let mut subnet: Option<(u32, u8, Span, &str)> = None;
        on_link.clear();
        for e in &l.endpoints {
            for a in &e.addrs {
                let (addr, len, span, cidr) = (a.addr, a.len, &a.span, a.text.as_str());
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                let net = addr & mask;
                if let Some(first) = on_link.get(addr) {
                    diags.push(
                        Diagnostic::error(
                            code::E0210,
                            format!("address {} is assigned twice on one link", ip(addr)),
                        )
                        .primary(span.range(), "assigned again here")
                        .secondary(first.range(), "first assigned here")
                        .help("give every endpoint of a link its own address"),
                    );
                    continue;
                }
                on_link.insert(addr, *span);
                match subnet {
                    None => subnet = Some((net, len, *span, cidr)),
                    Some((n0, l0, s0, c0)) if n0 != net || l0 != len => {
                        diags.push(
                            Diagnostic::warning(code::W0207, format!("addresses on one link are in different subnets: {c0} and {cidr}"))
                                .primary(span.range(), format!("in {}", crate::topo::fmt_cidr(net, len)))
                                .secondary(s0.range(), format!("in {}", crate::topo::fmt_cidr(n0, l0)))
                                .help("endpoints of one link usually share a subnet (same prefix and prefix length); without one, add routes for the other"),
                        );
                    }
                    Some(_) => {}
                }
                if len <= 30 && (addr == net || addr == net | !mask) {
                    let what = if addr == net { "network" } else { "broadcast" };
                    diags.push(
                        Diagnostic::warning(code::W0206, format!("{} is the {what} address of {}", ip(addr), crate::topo::fmt_cidr(net, len)))
                            .primary(span.range(), format!("{what} address"))
                            .help("hosts cannot use a subnet's first or last address; pick one in between"),
                    );
                }
                uses.push((addr, li, *span));
            }
        }
    }
    // Each address's uses together, in the order they were made.
    uses.sort_by_key(|(addr, _, _)| *addr);
    let mut reused: Vec<(u32, Vec<(usize, Span)>)> = uses
        .chunk_by(|a, b| a.0 == b.0)
        .filter(|v| v.iter().any(|(_, l, _)| *l != v[0].1))
        .map(|v| (v[0].0, v.iter().map(|(_, l, s)| (*l, *s)).collect()))
        .collect();
    reused.sort_by_key(|(_, v)| v[1].1);
    for (addr, v) in reused {
        let mut d = Diagnostic::warning(
            code::W0204,
            format!(
                "address {} is assigned on {} different links",
                ip(addr),
                v.len()
            ),
        );
        if v.iter().all(|(_, s)| *s == v[0].1) {
            d = d.primary(v[0].1.range(), format!("assigns it on {} links", v.len()));
        } else {
            d = d
                .primary(v[1].1.range(), "assigned again here")
                .secondary(v[0].1.range(), "first assigned here");
            let mut shown = vec![v[0].1, v[1].1];
            for (_, s) in v.iter().skip(2) {
                if shown.len() < 5 && !shown.contains(s) {
                    shown.push(*s);
                    d = d.secondary(s.range(), "and here");
                }
            }
        }
        diags.push(d.help("an address should identify one interface; reuse only works if the links are never routed together"));
    }
}

/// The addresses of one link so far: looked through in order while few (a
/// point-to-point link), hashed once many (a LAN).
#[derive(Default)]
struct Seen {
    few: Vec<(u32, Span)>,
    many: HashMap<u32, Span>,
}

impl Seen {
    const FEW: usize = 16;

    fn clear(&mut self) {
        self.few.clear();
        if !self.many.is_empty() {
            self.many = HashMap::default();
        }
    }

    fn get(&self, addr: u32) -> Option<Span> {
        if self.many.is_empty() {
            self.few.iter().find(|(a, _)| *a == addr).map(|(_, s)| *s)
        } else {
            self.many.get(&addr).copied()
        }
    }

    fn insert(&mut self, addr: u32, span: Span) {
        if self.many.is_empty() && self.few.len() < Self::FEW {
            self.few.push((addr, span));
        } else {
            self.many.extend(self.few.drain(..));
            self.many.insert(addr, span);
        }
    }
}

fn ip(a: u32) -> String {
    format!(
        "{}.{}.{}.{}",
        a >> 24,
        (a >> 16) & 255,
        (a >> 8) & 255,
        a & 255
    )
}

// ---- contradictions --------------------------------------------------------

fn contradictions(topo: &Topology, diags: &mut Vec<Diagnostic>) {
    check_element(&topo.constraints, || "the topology".into(), diags);
    for n in &topo.nodes {
        check_element(&n.constraints, || format!("node `{}`", n.name), diags);
    }
    for l in &topo.links {
        check_element(&l.constraints, || "this link".into(), diags);
        for e in &l.endpoints {
            check_element(
                &e.constraints,
                || format!("the endpoint of `{}`", topo.nodes[e.node].name),
                diags,
            );
        }
    }
    cross_property(topo, diags);
}

/// Reports the first pair of constraints on one property that cannot both
/// hold. `what` names the element, made only for a report.
fn check_element(cons: &[Rc<Cons>], what: impl Fn() -> String, diags: &mut Vec<Diagnostic>) {
    // Most elements constrain each property once: nothing to compare.
    let shared = cons
        .iter()
        .enumerate()
        .any(|(j, c)| cons[..j].iter().any(|d| d.prop == c.prop));
    if !shared {
        return;
    }
    let what = what();
    let mut by_prop: BTreeMap<u8, Vec<&Cons>> = BTreeMap::new();
    for c in cons {
        by_prop.entry(c.prop).or_default().push(c);
    }
    for (prop, cs) in by_prop {
        if cs.len() < 2 {
            continue;
        }
        let def = &PROPS[prop as usize];
        let domain = Domain::of(def.kind, &cs);
        let mut found = false;
        'pairs: for j in 1..cs.len() {
            for i in 0..j {
                if !domain.satisfiable(&[cs[i], cs[j]]) {
                    diags.push(
                        Diagnostic::error(
                            code::E0205,
                            format!(
                                "`{}` and `{}` cannot both hold for {what}",
                                describe(cs[i]),
                                describe(cs[j])
                            ),
                        )
                        .primary(cs[j].span.range(), "contradicts the earlier constraint")
                        .secondary(cs[i].span.range(), "earlier constraint")
                        .help("remove or relax one of them"),
                    );
                    found = true;
                    break 'pairs;
                }
            }
        }
        if !found && !domain.satisfiable(&cs) {
            let mut d = Diagnostic::error(
                code::E0205,
                format!("the `{}` constraints on {what} cannot all hold", def.name),
            )
            .primary(
                cs[cs.len() - 1].span.range(),
                "no value satisfies this with the others",
            );
            for c in &cs[..cs.len() - 1] {
                d = d.secondary(c.span.range(), "together with this");
            }
            diags.push(d.help("remove or relax one of them"));
        }
    }
}

fn describe(c: &Cons) -> String {
    let name = PROPS[c.prop as usize].name;
    format!("{name} {} {}", c.op.as_str(), show(&c.value, c.unit))
}

fn show(v: &X, unit: Option<mx_xir::Unit>) -> String {
    match (v, unit) {
        (X::Int(i), Some(u)) => crate::format::fmt_quantity(*i, u),
        (X::Int(i), None) => i.to_string(),
        (X::Float(f), _) => crate::value::fmt_float(*f),
        (X::Bool(b), _) => b.to_string(),
        (X::Text(t), _) => t.clone(),
        (X::Membus(m), _) => format!("ddr{}({})", m.ddr, m.rate),
        (X::Pcie(p), _) => format!("gen{}({})", p.r#gen, p.lanes),
        (X::List(items), _) => format!(
            "[{}]",
            items
                .iter()
                .map(|i| show(i, unit))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A small model of a property's value space, enough to decide whether a
/// handful of constraints can hold together: numbers are tested at the
/// constants and next to them (the solution set of 1-D constraints is a union
/// of intervals with those endpoints); finite spaces are enumerated.
enum Domain {
    Numbers {
        integer: bool,
        min: Option<f64>,
        max: Option<f64>,
        candidates: Vec<f64>,
    },
    Finite(Vec<Val>),
    /// Values not modelled (membus, pcie ordering): assume satisfiable unless equalities clash.
    Opaque,
}

#[derive(Clone, Debug, PartialEq)]
enum Val {
    Bool(bool),
    Text(String),
    /// A NIC: a virtual model, or an attachment with a physical model.
    Nic {
        virt: Option<&'static str>,
        attach: &'static str,
        phys: Option<&'static str>,
    },
}

impl Domain {
    fn of(kind: Kind, cs: &[&Cons]) -> Domain {
        match kind {
            Kind::Count | Kind::Int(..) | Kind::Quantity(_) | Kind::Fraction | Kind::Factor => {
                let (min, max) = match kind {
                    Kind::Count | Kind::Quantity(_) => (Some(0.0), None),
                    Kind::Int(lo, hi) => (Some(lo as f64), Some(hi as f64)),
                    Kind::Fraction => (Some(0.0), Some(1.0)),
                    _ => (Some(1.0), None),
                };
                let integer = !matches!(kind, Kind::Fraction | Kind::Factor);
                let mut consts = Vec::new();
                for c in cs {
                    collect_numbers(&c.value, &mut consts);
                }
                consts.sort_by(f64::total_cmp);
                consts.dedup();
                let mut candidates = Vec::new();
                for (i, c) in consts.iter().enumerate() {
                    candidates.extend([*c - 1.0, *c, *c + 1.0]);
                    if let Some(next) = consts.get(i + 1) {
                        candidates.push((c + next) / 2.0);
                    }
                    if !integer {
                        candidates.extend([c - 1e-9, c + 1e-9]);
                    }
                }
                candidates.extend(min);
                candidates.extend(max);
                Domain::Numbers {
                    integer,
                    min,
                    max,
                    candidates,
                }
            }
            Kind::Bool => Domain::Finite(vec![Val::Bool(true), Val::Bool(false)]),
            Kind::Enum(vals) => {
                let mut all: Vec<Val> = vals.iter().map(|v| Val::Text(v.to_string())).collect();
                // emulation's set depends on the target; include both meanings.
                for c in cs {
                    collect_texts(&c.value, &mut all);
                }
                Domain::Finite(all)
            }
            Kind::Text => {
                let mut all = vec![Val::Text("\u{0}other".into())];
                for c in cs {
                    collect_texts(&c.value, &mut all);
                }
                Domain::Finite(all)
            }
            Kind::Nic => {
                let mut all = Vec::new();
                for n in props::NICS {
                    if n.class == NicClass::Virtual {
                        all.push(Val::Nic {
                            virt: Some(n.name),
                            attach: "",
                            phys: None,
                        });
                    }
                }
                for attach in ["vfio", "passthrough", "metal"] {
                    for n in props::NICS.iter().filter(|n| n.class == NicClass::Physical) {
                        all.push(Val::Nic {
                            virt: None,
                            attach,
                            phys: Some(n.name),
                        });
                    }
                }
                Domain::Finite(all)
            }
            Kind::Membus | Kind::Pcie => Domain::Opaque,
        }
    }

    fn satisfiable(&self, cs: &[&Cons]) -> bool {
        match self {
            Domain::Numbers {
                integer,
                min,
                max,
                candidates,
            } => candidates.iter().any(|&x| {
                (!integer || x.fract() == 0.0)
                    && min.is_none_or(|m| x >= m)
                    && max.is_none_or(|m| x <= m)
                    && cs.iter().all(|c| holds_num(c.op, &c.value, x))
            }),
            Domain::Finite(vals) => vals
                .iter()
                .any(|v| cs.iter().all(|c| holds_val(c.op, &c.value, v))),
            Domain::Opaque => {
                let eqs: Vec<&X> = cs
                    .iter()
                    .filter(|c| c.op == Op::Eq)
                    .map(|c| &c.value)
                    .collect();
                eqs.windows(2).all(|w| w[0] == w[1])
                    && cs
                        .iter()
                        .all(|c| c.op != Op::Ne || eqs.iter().all(|e| **e != c.value))
            }
        }
    }
}

fn collect_numbers(v: &X, out: &mut Vec<f64>) {
    match v {
        X::Int(i) => out.push(*i as f64),
        X::Float(f) => out.push(*f),
        X::List(items) => items.iter().for_each(|i| collect_numbers(i, out)),
        _ => {}
    }
}

fn collect_texts(v: &X, out: &mut Vec<Val>) {
    match v {
        X::Text(t) => {
            let v = Val::Text(t.clone());
            if !out.contains(&v) {
                out.push(v);
            }
        }
        X::List(items) => items.iter().for_each(|i| collect_texts(i, out)),
        _ => {}
    }
}

fn num(v: &X) -> Option<f64> {
    match v {
        X::Int(i) => Some(*i as f64),
        X::Float(f) => Some(*f),
        _ => None,
    }
}

fn holds_num(op: Op, v: &X, x: f64) -> bool {
    if op == Op::In {
        return matches!(v, X::List(items) if items.iter().any(|i| num(i) == Some(x)));
    }
    let Some(c) = num(v) else { return true };
    match op {
        Op::Eq => x == c,
        Op::Ne => x != c,
        Op::Lt => x < c,
        Op::Le => x <= c,
        Op::Gt => x > c,
        Op::Ge => x >= c,
        Op::In => unreachable!("handled above"),
    }
}

fn holds_val(op: Op, v: &X, val: &Val) -> bool {
    let eq = |v: &X| -> bool {
        match (v, val) {
            (X::Bool(b), Val::Bool(c)) => b == c,
            (X::Text(t), Val::Text(u)) => t == u,
            (X::Text(t), Val::Nic { virt, attach, phys }) => {
                *virt == Some(t.as_str()) || *attach == t.as_str() || *phys == Some(t.as_str())
            }
            _ => false,
        }
    };
    match op {
        Op::Eq => eq(v),
        Op::Ne => !eq(v),
        Op::In => matches!(v, X::List(items) if items.iter().any(eq)),
        _ => {
            // Ordered NIC generations.
            let (X::Text(t), Val::Nic { phys: Some(p), .. }) = (v, val) else {
                return false;
            };
            let (Some(want), Some(have)) = (props::nic(t), props::nic(p)) else {
                return false;
            };
            if want.family != have.family {
                return false;
            }
            match op {
                Op::Lt => have.rank < want.rank,
                Op::Le => have.rank <= want.rank,
                Op::Gt => have.rank > want.rank,
                _ => have.rank >= want.rank,
            }
        }
    }
}

/// Contradictions between properties: a bare-metal node cannot have a
/// virtual NIC or a time dilation factor.
fn cross_property(topo: &Topology, diags: &mut Vec<Diagnostic>) {
    let find = |cs: &[Rc<Cons>], p: Option<u8>, pred: &dyn Fn(&Cons) -> bool| -> Option<Span> {
        let p = p?;
        cs.iter().find(|c| c.prop == p && pred(c)).map(|c| c.span)
    };
    // Looked up once: there is a node and an endpoint per line of a large model.
    let (nic, virt, metal, tdf) = (
        props::prop("nic"),
        props::prop("virt"),
        props::prop("metal"),
        props::prop("tdf"),
    );
    let is_false = |c: &Cons| {
        matches!(
            (c.op, &c.value),
            (Op::Eq, X::Bool(false)) | (Op::Ne, X::Bool(true))
        )
    };
    let is_true = |c: &Cons| {
        matches!(
            (c.op, &c.value),
            (Op::Eq, X::Bool(true)) | (Op::Ne, X::Bool(false))
        )
    };
    let virtual_nic = |c: &Cons| {
        let virt = |v: &X| matches!(v, X::Text(t) if props::nic(t).is_some_and(|n| n.class == NicClass::Virtual));
        match (&c.op, &c.value) {
            (Op::Eq, v) => virt(v),
            (Op::In, X::List(items)) => items.iter().all(virt),
            _ => false,
        }
    };
    let any = |_: &Cons| true;
    // Virtual NICs each node gets, from its endpoints and its links.
    let mut nics: Vec<Vec<Span>> = vec![Vec::new(); topo.nodes.len()];
    for l in &topo.links {
        let link_nic = find(&l.constraints, nic, &virtual_nic);
        for e in &l.endpoints {
            if let Some(s) = find(&e.constraints, nic, &virtual_nic).or(link_nic) {
                nics[e.node].push(s);
            }
        }
    }
    for (i, n) in topo.nodes.iter().enumerate() {
        let cs = &n.constraints;
        let pair = |d: &mut Vec<Diagnostic>, a: Span, b: Span, msg: String, help: &str| {
            d.push(
                Diagnostic::error(code::E0205, msg)
                    .primary(b.range(), "needs a virtual machine")
                    .secondary(a.range(), "rules one out")
                    .help(help.to_string()),
            );
        };
        let bare = find(cs, virt, &is_false);
        let metal = find(cs, metal, &is_true);
        if let Some(b) = bare.or(metal) {
            let why = if bare.is_some() {
                "virt == false"
            } else {
                "metal == true"
            };
            if let Some(t) = find(cs, tdf, &any) {
                pair(
                    diags,
                    b,
                    t,
                    format!(
                        "node `{}` has {why} but a time dilation factor needs a VM",
                        n.name
                    ),
                    "drop the tdf constraint, or let the node be virtual",
                );
            } else if let Some(s) = nics[i].first() {
                pair(
                    diags,
                    b,
                    *s,
                    format!(
                        "node `{}` has {why} but a virtual NIC model needs a VM",
                        n.name
                    ),
                    "use a physical NIC model (e.g. nic >= connectx5) or let the node be virtual",
                );
            }
        }
        if let (Some(m), Some(v)) = (metal, find(cs, virt, &is_true)) {
            diags.push(
                Diagnostic::error(
                    code::E0205,
                    format!("node `{}` cannot be both bare metal and virtual", n.name),
                )
                .primary(v.range(), "asks for a VM")
                .secondary(m.range(), "asks for bare metal")
                .help("keep one of `metal == true` and `virt == true`"),
            );
        }
    }
}

// ---- connectivity ----------------------------------------------------------

fn connectivity(topo: &Topology, diags: &mut Vec<Diagnostic>) {
    let n = topo.nodes.len();
    let mut uf = UnionFind::<usize>::new(n);
    let mut degree = vec![0u32; n];
    for l in &topo.links {
        if let Some(first) = l.endpoints.first() {
            for e in &l.endpoints {
                uf.union(first.node, e.node);
                degree[e.node] += 1;
            }
        }
    }
    for (i, node) in topo.nodes.iter().enumerate() {
        if degree[i] == 0 && n > 1 {
            diags.push(
                Diagnostic::warning(code::W0203, format!("node `{}` has no links", node.name))
                    .primary(node.span.range(), "unconnected node")
                    .help("connect it with net.connect([...]) or remove it"),
            );
        }
    }
    // Islands among the linked nodes, in order of their first node.
    let mut islands: Vec<usize> = Vec::new();
    let mut seen = HashMap::default();
    for (i, d) in degree.iter().enumerate() {
        if *d == 0 {
            continue;
        }
        let root = uf.find(i);
        if seen.insert(root, i).is_none() {
            islands.push(i);
        }
    }
    if islands.len() > 1 {
        let mut d = Diagnostic::warning(
            code::W0202,
            format!("the topology falls apart into {} islands", islands.len()),
        )
        .primary(
            topo.nodes[islands[1]].span.range(),
            "this node is cut off from the first island",
        )
        .secondary(topo.nodes[islands[0]].span.range(), "first island");
        for i in islands.iter().skip(2).take(3) {
            d = d.secondary(topo.nodes[*i].span.range(), "another island");
        }
        diags.push(d.help("link the islands if they should talk; nodes in different islands cannot reach each other"));
    }
}
