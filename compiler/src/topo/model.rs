//! The recorded topology: topologies, nodes, links and endpoints in
//! creation order, and the operations the language's API performs on them.
//!
//! Nothing here knows the interpreter: an operation that can go wrong
//! returns a [`ModelError`] naming what is wrong, and the API
//! ([`super::api`]) turns it into a diagnostic with the spans it has.

use mx_diag::code;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use indexmap::IndexMap;
use mx_diag::Diagnostic;
use mx_xir::Span;

use crate::value::*;

#[derive(Default)]
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

/// An address set on a socket: the text the model wrote (what parses is
/// canonical, so it is written out as it is) and its value, parsed once
/// when it was set rather than again by each check.
pub struct Addr {
    pub text: String,
    pub span: Span,
    pub addr: u32,
    pub len: u8,
}

pub struct EpData {
    pub node: u32,
    pub socket: u32,
    pub addrs: Vec<Addr>,
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
    pub addrs: Vec<Addr>,
    pub constraints: Vec<Rc<Cons>>,
}

/// Why the model refused an operation. The API that called it has the
/// spans and turns this into a diagnostic.
#[derive(Debug, PartialEq)]
pub enum ModelError {
    /// `connect` was given a node of another topology.
    ForeignNode(u32),
    /// `connect` was given a node twice.
    RepeatedNode(u32),
    /// `connect` was given fewer than two nodes.
    TooFewNodes(usize),
    /// `experiment()` named a second topology; `first` is the first call.
    SecondExperiment { first: Span },
    /// `link[node]` for a node the link does not join.
    NotOnLink { link: u32, node: u32 },
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

    /// `experiment(t)`: a model compiles one topology.
    pub fn set_experiment(&mut self, t: u32, span: Span) -> Result<(), ModelError> {
        if let Some((prev, first)) = self.experiment
            && prev != t
        {
            return Err(ModelError::SecondExperiment { first });
        }
        self.experiment = Some((t, span));
        Ok(())
    }

    pub fn add_node(
        &mut self,
        t: u32,
        name: Rc<str>,
        span: Span,
        constraints: Vec<Rc<Cons>>,
    ) -> u32 {
        let id = self.nodes.len() as u32;
        self.nodes.push(NodeData {
            name,
            topo: t,
            span,
            constraints,
            properties: None,
            ingress: Vec::new(),
            sockets: 0,
        });
        self.topos[t as usize].nodes.push(id);
        id
    }

    /// Whether `nodes` can form a link of topology `t`: nodes of `t`, each
    /// once, at least two. Checked before the link's constraints are read,
    /// so a bad member list is the error reported.
    pub fn check_members(&self, t: u32, nodes: &[u32]) -> Result<(), ModelError> {
        for (i, n) in nodes.iter().enumerate() {
            if self.nodes[*n as usize].topo != t {
                return Err(ModelError::ForeignNode(*n));
            }
            if nodes[..i].contains(n) {
                return Err(ModelError::RepeatedNode(*n));
            }
        }
        if nodes.len() < 2 {
            return Err(ModelError::TooFewNodes(nodes.len()));
        }
        Ok(())
    }

    /// A link of `t` over members [`check_members`](Self::check_members)
    /// accepted; each node gets its next socket.
    pub fn add_link(
        &mut self,
        t: u32,
        nodes: &[u32],
        span: Span,
        constraints: Vec<Rc<Cons>>,
    ) -> u32 {
        let endpoints = nodes
            .iter()
            .map(|n| {
                let nd = &mut self.nodes[*n as usize];
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
        let id = self.links.len() as u32;
        self.links.push(LinkData {
            span,
            endpoints,
            constraints,
            properties: None,
        });
        self.topos[t as usize].links.push(id);
        id
    }

    /// `.spec(...)` on a topology, node, link or endpoint; other values
    /// have no constraints.
    pub fn constrain(&mut self, on: &Value, constraints: Vec<Rc<Cons>>) {
        let list = match *on {
            Value::Topo(t) => &mut self.topos[t as usize].constraints,
            Value::Node(n) => &mut self.nodes[n as usize].constraints,
            Value::Link(l) => &mut self.links[l as usize].constraints,
            Value::Endpoint(l, e) => &mut self.links[l as usize].endpoints[e as usize].constraints,
            _ => return,
        };
        list.extend(constraints);
    }

    pub fn add_ingress(&mut self, n: u32, protocol: &'static str, port: u16, span: Span) {
        self.nodes[n as usize].ingress.push((protocol, port, span));
    }

    pub fn set_addrs(&mut self, l: u32, e: u32, addrs: Vec<Addr>) {
        self.links[l as usize].endpoints[e as usize].addrs = addrs;
    }

    /// A node's or link's free-form properties, made on first use.
    pub fn properties(&mut self, on: &Value) -> Option<Dict> {
        let slot = match *on {
            Value::Node(n) => &mut self.nodes[n as usize].properties,
            Value::Link(l) => &mut self.links[l as usize].properties,
            _ => return None,
        };
        Some(slot.get_or_insert_with(new_dict).clone())
    }

    /// Replaces a node's or link's properties; false for other values.
    pub fn set_properties(&mut self, on: &Value, d: Dict) -> bool {
        match *on {
            Value::Node(n) => self.nodes[n as usize].properties = Some(d),
            Value::Link(l) => self.links[l as usize].properties = Some(d),
            _ => return false,
        }
        true
    }

    /// `link[node]`: the endpoint of `node` on link `l`.
    pub fn endpoint(&self, l: u32, node: u32) -> Result<u32, ModelError> {
        self.links[l as usize]
            .endpoints
            .iter()
            .position(|e| e.node == node)
            .map(|e| e as u32)
            .ok_or(ModelError::NotOnLink { link: l, node })
    }

    pub fn endpoint_data(&self, l: u32, e: u32) -> &EpData {
        &self.links[l as usize].endpoints[e as usize]
    }

    pub fn topo_links(&self, t: u32) -> Vec<Value> {
        self.topos[t as usize]
            .links
            .iter()
            .map(|l| Value::Link(*l))
            .collect()
    }

    pub fn link_endpoints(&self, l: u32) -> Vec<Value> {
        let n = self.links[l as usize].endpoints.len() as u32;
        (0..n).map(|e| Value::Endpoint(l, e)).collect()
    }

    pub fn node_name(&self, n: u32) -> &str {
        &self.nodes[n as usize].name
    }

    pub fn topo_name(&self, t: u32) -> &str {
        &self.topos[t as usize].name
    }

    pub fn link_name(&self, l: u32) -> String {
        link_name(
            self.links[l as usize]
                .endpoints
                .iter()
                .map(|e| (&self.nodes[e.node as usize].name[..], e.socket)),
        )
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
        // The model is done with: what the topology needs moves out of it.
        let topo = std::mem::take(&mut self.topos[chosen as usize]);
        // Model node id -> index among the topology's nodes.
        let mut index = vec![usize::MAX; self.nodes.len()];
        let mut nodes = Vec::with_capacity(topo.nodes.len());
        for (i, n) in topo.nodes.iter().enumerate() {
            index[*n as usize] = i;
            let nd = &self.nodes[*n as usize];
            let properties = self.props_json(nd.properties.as_ref(), nd.span, diags, meter);
            let nd = &mut self.nodes[*n as usize];
            nodes.push(NodeOut {
                name: str::to_owned(&nd.name),
                span: nd.span,
                constraints: std::mem::take(&mut nd.constraints),
                properties,
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
            let properties = self.props_json(ld.properties.as_ref(), ld.span, diags, meter);
            let ld = &mut self.links[*l as usize];
            links.push(LinkOut {
                span: ld.span,
                constraints: std::mem::take(&mut ld.constraints),
                properties,
                endpoints: ld
                    .endpoints
                    .iter_mut()
                    .map(|e| EpOut {
                        node: index[e.node as usize],
                        socket: e.socket,
                        addrs: std::mem::take(&mut e.addrs),
                        constraints: std::mem::take(&mut e.constraints),
                    })
                    .collect(),
            });
        }
        Some(Topology {
            name: topo.name,
            constraints: topo.constraints,
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
                J::String(str::to_owned(s))
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
            Value::Range(r) => {
                let (a, b, s) = **r;
                let n = range_len(a, b, s).min(1 << 16);
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

/// A link's name from its endpoints' nodes and sockets: `a.0~b.1`. The
/// model names links this way and so does lowering (with safe names).
pub fn link_name<'a>(endpoints: impl IntoIterator<Item = (&'a str, u32)>) -> String {
    let mut s = String::with_capacity(32);
    for (i, (node, socket)) in endpoints.into_iter().enumerate() {
        if i > 0 {
            s.push('~');
        }
        s.push_str(node);
        s.push('.');
        s.push_str(itoa::Buffer::new().format(socket));
    }
    s
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

#[cfg(test)]
mod tests {
    use super::*;

    fn span(n: usize) -> Span {
        Span::new(n, n + 1)
    }

    /// A topology `t` with nodes `a`, `b`, `c` and a second topology `u`
    /// with node `x`.
    fn model() -> (Model, u32, u32, [u32; 4]) {
        let mut m = Model::default();
        let t = m.new_topology("t".into(), Some(span(0)), false);
        let u = m.new_topology("u".into(), Some(span(1)), false);
        let a = m.add_node(t, "a".into(), span(2), Vec::new());
        let b = m.add_node(t, "b".into(), span(3), Vec::new());
        let c = m.add_node(t, "c".into(), span(4), Vec::new());
        let x = m.add_node(u, "x".into(), span(5), Vec::new());
        (m, t, u, [a, b, c, x])
    }

    #[test]
    fn links_take_members_of_their_topology_once_and_at_least_two() {
        let (m, t, _, [a, b, _, x]) = model();
        assert_eq!(m.check_members(t, &[a, b]), Ok(()));
        assert_eq!(m.check_members(t, &[a, x]), Err(ModelError::ForeignNode(x)));
        assert_eq!(
            m.check_members(t, &[a, b, a]),
            Err(ModelError::RepeatedNode(a))
        );
        assert_eq!(m.check_members(t, &[a]), Err(ModelError::TooFewNodes(1)));
    }

    #[test]
    fn each_link_gives_its_nodes_their_next_socket() {
        let (mut m, t, _, [a, b, c, _]) = model();
        let l0 = m.add_link(t, &[a, b], span(6), Vec::new());
        let l1 = m.add_link(t, &[b, c, a], span(7), Vec::new());
        assert_eq!(m.link_name(l0), "a.0~b.0");
        assert_eq!(m.link_name(l1), "b.1~c.0~a.1");
        assert_eq!(m.endpoint(l1, a), Ok(2));
        assert_eq!(m.endpoint_data(l1, 2).socket, 1);
        assert_eq!(
            m.endpoint(l0, c),
            Err(ModelError::NotOnLink { link: l0, node: c })
        );
        assert_eq!(m.topo_links(t).len(), 2);
        assert_eq!(m.link_nodes(l1).len(), 3);
    }

    #[test]
    fn one_experiment_per_model() {
        let (mut m, t, u, _) = model();
        assert_eq!(m.set_experiment(t, span(8)), Ok(()));
        assert_eq!(m.set_experiment(t, span(9)), Ok(()), "the same one again");
        assert_eq!(
            m.set_experiment(u, span(10)),
            Err(ModelError::SecondExperiment { first: span(9) })
        );
    }

    #[test]
    fn properties_are_made_on_first_use_and_only_for_nodes_and_links() {
        let (mut m, t, _, [a, b, ..]) = model();
        let l = m.add_link(t, &[a, b], span(6), Vec::new());
        assert!(m.nodes[a as usize].properties.is_none());
        let d = m
            .properties(&Value::Node(a))
            .expect("a node has properties");
        assert!(Rc::ptr_eq(&d, &m.properties(&Value::Node(a)).unwrap()));
        assert!(m.properties(&Value::Link(l)).is_some());
        assert!(m.properties(&Value::Topo(t)).is_none());
        assert!(!m.set_properties(&Value::Endpoint(l, 0), d));
    }

    #[test]
    fn finish_takes_the_only_used_topology_or_asks_which() {
        let (mut m, t, _, [a, b, ..]) = model();
        m.add_link(t, &[a, b], span(6), Vec::new());
        let meter = Meter::new(u64::MAX, u64::MAX);
        let mut diags = Vec::new();
        // Both topologies have nodes and none was named.
        assert!(m.finish(&mut diags, "x", &meter).is_none());
        assert_eq!(diags[0].code, code::E0217);
        m.set_experiment(t, span(8)).unwrap();
        let mut diags = Vec::new();
        let topo = m.finish(&mut diags, "x", &meter).expect("the named one");
        assert!(diags.is_empty());
        assert_eq!(
            (topo.name.as_str(), topo.nodes.len(), topo.links.len()),
            ("t", 3, 1)
        );
        assert_eq!(topo.links[0].endpoints[1].node, 1);
    }
}
