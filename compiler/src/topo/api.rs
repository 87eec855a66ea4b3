//! The topology API models call (`Network`, `net.node`, `net.connect`,
//! `link[x].spec(...)`, `ip4`, `param`, ...): arguments are decoded and
//! checked here, the [`Model`] does the recording, and its refusals become
//! diagnostics here, where the spans are.

use mx_diag::code;
use std::rc::Rc;

use mx_diag::Diagnostic;
use mx_xir::Span;

use super::model::*;
use crate::ast::Sym;
use crate::eval::{Args, Eval, Flow, R};
use crate::props::{self, Target};
use crate::value::*;

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
                self.model.constrain(&Value::Topo(t), cons);
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
                self.model
                    .set_experiment(t, a.span)
                    .map_err(|e| self.model_error(e, a.span))?;
                Ok(Value::None)
            }
            Builtin::Ip4 => {
                self.arity(&a, name, 1, usize::MAX)?;
                let mut out = Vec::with_capacity(a.pos.len());
                for i in 0..a.pos.len() {
                    let s = self.str_arg(&a, i, name)?;
                    self.ip4_address(&s, a.span_of(i))?;
                    out.push(Value::Str(s));
                }
                Ok(Value::list(out))
            }
            Builtin::Param => self.param(a),
            _ => unreachable!("not an API builtin"),
        }
    }

    /// Checks an address given to `ip4` (at `span`). What parses is already
    /// canonical (no leading zeros, signs or spaces): the text itself is
    /// the address.
    #[inline]
    pub(crate) fn ip4_address(&self, s: &str, span: Span) -> R<()> {
        parse_cidr(s).map_err(|why| self.bad_address(s, &why, span))?;
        Ok(())
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
            Value::Str(s) => serde_json::Value::String(str::to_owned(s)),
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
    pub fn api_method(
        &mut self,
        recv: Value,
        name: Sym,
        nspan: Span,
        _ospan: Span,
        a: Args,
    ) -> R<Value> {
        let m = self.name_rc(name);
        let m: &str = &m;
        match (&recv, m) {
            (Value::Topo(t), "node" | "device") => {
                let t = *t;
                self.arity(&a, m, 1, usize::MAX)?;
                let nname = self.name_arg(&a, 0, m, "net.node('a')")?;
                let cons = self.constraints(&a, 1, Target::Node, m)?;
                self.charge(256 + nname.len() as u64, a.span)?;
                Ok(Value::Node(self.model.add_node(t, nname, a.span, cons)))
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
                    nodes.push(*n);
                }
                self.model
                    .check_members(t, &nodes)
                    .map_err(|e| self.model_error(e, a.span_of(0)))?;
                let cons = self.constraints(&a, 1, Target::Link, m)?;
                self.charge(128 + 96 * nodes.len() as u64, a.span)?;
                Ok(Value::Link(self.model.add_link(t, &nodes, a.span, cons)))
            }
            (Value::Topo(_), "spec") => self.spec(recv, a, Target::Network, m),
            (Value::Node(_), "spec") => self.spec(recv, a, Target::Node, m),
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
                self.model.add_ingress(n, proto, port, a.span);
                Ok(Value::None)
            }
            (Value::Link(_), "spec") => self.spec(recv, a, Target::Link, m),
            (Value::Endpoint(..), "spec") => self.spec(recv, a, Target::Endpoint, m),
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
            (Value::Topo(t), "links") => Ok(Value::list(self.model.topo_links(*t))),
            (Value::Node(_), "spec" | "ingress") => method(&o),
            (Value::Node(n), "name") => Ok(Value::Str(self.model.nodes[*n as usize].name.clone())),
            (Value::Node(_) | Value::Link(_), "properties") => {
                Ok(self.model.properties(&o).map_or(Value::None, Value::Dict))
            }
            (Value::Link(_), "spec") => method(&o),
            (Value::Link(l), "name") => Ok(Value::str(&self.model.link_name(*l))),
            (Value::Link(l), "nodes") => Ok(Value::list(self.model.link_nodes(*l))),
            (Value::Link(l), "endpoints") => Ok(Value::list(self.model.link_endpoints(*l))),
            (Value::Endpoint(..), "spec") => method(&o),
            (Value::Endpoint(l, e), "socket") => Ok(Value::Socket(*l, *e)),
            (Value::Endpoint(l, e), "node") => {
                Ok(Value::Node(self.model.endpoint_data(*l, *e).node))
            }
            (Value::Socket(l, e), "addrs") => Ok(Value::list(
                self.model
                    .endpoint_data(*l, *e)
                    .addrs
                    .iter()
                    .map(|a| Value::str(&a.text))
                    .collect(),
            )),
            (Value::Socket(l, e), "index") => {
                Ok(Value::Int(self.model.endpoint_data(*l, *e).socket as i64))
            }
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

    /// The addresses `items` set on a socket, each checked and parsed once.
    fn addrs(&self, items: &[Value], vspan: Span) -> R<Vec<crate::topo::Addr>> {
        let mut addrs = Vec::with_capacity(items.len());
        for it in items {
            let Value::Str(s) = it else {
                return Err(self.type_error(
                    vspan,
                    format!("addresses are strings, not a {}", it.type_name()),
                ));
            };
            let (addr, len) = parse_cidr(s).map_err(|why| self.bad_address(s, &why, vspan))?;
            // What parses is already in canonical form
            // (`mx_xir::domain` tests `what_parses_is_canonical`),
            // so the text is kept rather than written again.
            // (`str::to_owned`: `to_string` on an `Rc<str>` goes
            // through the formatter.)
            addrs.push(crate::topo::Addr {
                text: str::to_owned(s),
                span: vspan,
                addr,
                len,
            });
        }
        Ok(addrs)
    }

    pub fn set_attr(&mut self, o: &Value, name: Sym, v: Value, nspan: Span, vspan: Span) -> R<()> {
        let n: &str = self.name(name);
        match (o, n) {
            (Value::Socket(l, e), "addrs") => {
                // Read where they are: a list of one (what `ip4` gives) is
                // not copied for every endpoint of a model.
                let addrs = match &v {
                    Value::Str(_) => self.addrs(std::slice::from_ref(&v), vspan)?,
                    Value::List(items) => self.addrs(&items.borrow(), vspan)?,
                    Value::Tuple(items) => self.addrs(items, vspan)?,
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
                self.charge(64 * addrs.len() as u64, vspan)?;
                self.model.set_addrs(*l, *e, addrs);
                Ok(())
            }
            (Value::Node(_) | Value::Link(_), "properties") => {
                let Value::Dict(d) = v else {
                    return Err(self.type_error(
                        vspan,
                        format!("properties is a dict, not a {}", v.type_name()),
                    ));
                };
                self.model.set_properties(o, d);
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
        let e = self
            .model
            .endpoint(l, *n)
            .map_err(|e| self.model_error(e, kspan))?;
        Ok(Value::Endpoint(l, e))
    }

    fn spec(&mut self, on: Value, a: Args, target: Target, m: &str) -> R<Value> {
        let cons = self.constraints(&a, 0, target, m)?;
        self.model.constrain(&on, cons);
        Ok(on)
    }

    /// A refusal of the model as a diagnostic at `span`, the argument or
    /// call the refused operation came from.
    fn model_error(&self, e: ModelError, span: Span) -> Flow {
        let name = |n: u32| self.model.node_name(n);
        match e {
            ModelError::ForeignNode(n) => Diagnostic::error(
                code::E0216,
                format!("node `{}` belongs to another topology", name(n)),
            )
            .primary(span.range(), "connected here")
            .secondary(self.model.nodes[n as usize].span.range(), "created here"),
            ModelError::RepeatedNode(n) => Diagnostic::error(
                code::E0207,
                format!("node `{}` appears twice on one link", name(n)),
            )
            .primary(span.range(), "repeated node")
            .help("a node joins a link once; to give it two interfaces, make two links"),
            ModelError::TooFewNodes(n) => Diagnostic::error(
                code::E0207,
                format!("a link needs at least two nodes, this one has {n}"),
            )
            .primary(
                span.range(),
                format!("{n} node{}", if n == 1 { "" } else { "s" }),
            )
            .help("connect two nodes for a point-to-point link, or more for a LAN"),
            ModelError::SecondExperiment { first } => Diagnostic::error(
                code::E0216,
                "experiment() is called for two different topologies",
            )
            .primary(span.range(), "second experiment")
            .secondary(first.range(), "first experiment")
            .help("a model compiles one experiment; remove one of the calls"),
            ModelError::NotOnLink { link, node } => {
                let link = &self.model.links[link as usize];
                let names: Vec<String> = link
                    .endpoints
                    .iter()
                    .map(|e| format!("`{}`", name(e.node)))
                    .collect();
                Diagnostic::error(
                    code::E0208,
                    format!("node `{}` is not on this link", name(node)),
                )
                .primary(span.range(), "not an endpoint of the link")
                .secondary(link.span.range(), "link created here")
                .help(format!("the link joins {}", names.join(", ")))
            }
        }
        .into()
    }
}
