//! The pretty form of nodes and links, written directly.
//!
//! Nodes and links are nearly all of a large experiment's bytes (239 MB
//! for 100,000 nodes). Through serde, each of those bytes cost about ten
//! instructions: a formatter call per token, a `Write` call per piece of
//! punctuation. Here the fixed structure of a node or link is written
//! with plain appends, and anything rarer (properties, ingress, values
//! other than booleans, integers and plain text, text that needs escapes)
//! goes through serde with [`crate::Compact`] at the same depth. The bytes
//! are those of [`crate::write_json_pretty`]: tests compare the two on
//! every kind of element.

use std::io;

use serde::Serialize;
use serde_json::ser::{CompactFormatter, Formatter};

use crate::{Address, Constraint, Endpoint, Link, Node, Op, Span, Unit, Value};

/// An element of a top-level array, written as the pretty formatter would
/// write it with members at depth `level`.
pub(crate) trait Pretty {
    fn pretty(&self, buf: &mut Vec<u8>, level: usize) -> io::Result<()>;
}

/// An object being written, its members at depth `level`. Every object
/// here has a fixed first member, written with the brace, so no member
/// needs to ask whether it is the first.
struct Obj<'b> {
    buf: &'b mut Vec<u8>,
    level: usize,
}

impl<'b> Obj<'b> {
    /// `{` and the first member's key; its value goes into [`Obj::value`].
    #[inline]
    fn open(buf: &'b mut Vec<u8>, level: usize, first: &str) -> io::Result<Self> {
        buf.push(b'{');
        let mut o = Obj { buf, level };
        o.name(first)?;
        Ok(o)
    }

    #[inline]
    fn name(&mut self, name: &str) -> io::Result<()> {
        crate::newline(self.buf, self.level)?;
        self.buf.push(b'"');
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.extend_from_slice(b"\": ");
        Ok(())
    }

    /// Where the member whose key was written last takes its value.
    #[inline]
    fn value(&mut self) -> &mut Vec<u8> {
        self.buf
    }

    /// A later member's key; its value goes into the buffer returned.
    #[inline]
    fn key(&mut self, name: &str) -> io::Result<&mut Vec<u8>> {
        self.buf.push(b',');
        self.name(name)?;
        Ok(self.buf)
    }

    #[inline]
    fn close(self) -> io::Result<()> {
        crate::newline(self.buf, self.level - 1)?;
        self.buf.push(b'}');
        Ok(())
    }
}

/// A value through serde, as the pretty formatter writes it at depth
/// `level`.
fn serde_at<T: Serialize + ?Sized>(buf: &mut Vec<u8>, level: usize, value: &T) -> io::Result<()> {
    let mut ser = serde_json::Serializer::with_formatter(
        &mut *buf,
        crate::Compact {
            indent: level,
            ..Default::default()
        },
    );
    value.serialize(&mut ser).map_err(io::Error::other)
}

/// A JSON string; serde writes the few that need escapes.
#[inline]
fn string(buf: &mut Vec<u8>, s: &str) -> io::Result<()> {
    if s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        return serde_at(buf, 0, s);
    }
    buf.push(b'"');
    buf.extend_from_slice(s.as_bytes());
    buf.push(b'"');
    Ok(())
}

#[inline]
fn span(buf: &mut Vec<u8>, s: Span) -> io::Result<()> {
    buf.push(b'[');
    CompactFormatter.write_u32(buf, s.start)?;
    buf.extend_from_slice(b", ");
    CompactFormatter.write_u32(buf, s.end)?;
    buf.push(b']');
    Ok(())
}

/// An array of objects as a member's value at depth `level`: each object
/// on lines of its own, its members two steps deeper.
fn objects<T>(
    buf: &mut Vec<u8>,
    level: usize,
    items: &[T],
    mut each: impl FnMut(&mut Vec<u8>, usize, &T) -> io::Result<()>,
) -> io::Result<()> {
    if items.is_empty() {
        buf.extend_from_slice(b"[]");
        return Ok(());
    }
    buf.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        crate::newline(buf, level + 1)?;
        each(buf, level + 2, item)?;
    }
    crate::newline(buf, level)?;
    buf.push(b']');
    Ok(())
}

fn op(o: Op) -> &'static [u8] {
    match o {
        Op::Eq => b"\"==\"",
        Op::Ne => b"\"!=\"",
        Op::Lt => b"\"<\"",
        Op::Le => b"\"<=\"",
        Op::Gt => b"\">\"",
        Op::Ge => b"\">=\"",
        Op::In => b"\"in\"",
    }
}

fn unit(u: Unit) -> &'static [u8] {
    match u {
        Unit::Bytes => b"\"bytes\"",
        Unit::Bps => b"\"bps\"",
        Unit::Ns => b"\"ns\"",
        Unit::Hz => b"\"hz\"",
    }
}

fn value(buf: &mut Vec<u8>, level: usize, v: &Value) -> io::Result<()> {
    match v {
        Value::Bool(b) => buf.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Int(i) => CompactFormatter.write_i64(buf, *i)?,
        Value::Text(t) => string(buf, t)?,
        other => serde_at(buf, level, other)?,
    }
    Ok(())
}

fn constraint(buf: &mut Vec<u8>, level: usize, c: &Constraint) -> io::Result<()> {
    let mut o = Obj::open(buf, level, "property")?;
    string(o.value(), &c.property)?;
    o.key("op")?.extend_from_slice(op(c.op));
    value(o.key("value")?, level, &c.value)?;
    if let Some(u) = c.unit {
        o.key("unit")?.extend_from_slice(unit(u));
    }
    span(o.key("span")?, c.span)?;
    o.close()
}

fn address(buf: &mut Vec<u8>, level: usize, a: &Address) -> io::Result<()> {
    let mut o = Obj::open(buf, level, "cidr")?;
    string(o.value(), &a.cidr)?;
    span(o.key("span")?, a.span)?;
    o.close()
}

fn endpoint(buf: &mut Vec<u8>, level: usize, e: &Endpoint) -> io::Result<()> {
    let mut o = Obj::open(buf, level, "node")?;
    string(o.value(), e.node.as_ref())?;
    CompactFormatter.write_u32(o.key("socket")?, e.socket)?;
    if !e.addrs.is_empty() {
        objects(o.key("addrs")?, level, &e.addrs, address)?;
    }
    if !e.constraints.is_empty() {
        objects(o.key("constraints")?, level, &e.constraints, constraint)?;
    }
    o.close()
}

impl Pretty for Node {
    fn pretty(&self, buf: &mut Vec<u8>, level: usize) -> io::Result<()> {
        let mut o = Obj::open(buf, level, "name")?;
        string(o.value(), self.name.as_ref())?;
        if let Some(label) = &self.label {
            string(o.key("label")?, label)?;
        }
        if !self.constraints.is_empty() {
            objects(o.key("constraints")?, level, &self.constraints, constraint)?;
        }
        if !self.properties.is_empty() {
            serde_at(o.key("properties")?, level, &self.properties)?;
        }
        if !self.ingress.is_empty() {
            serde_at(o.key("ingress")?, level, &self.ingress)?;
        }
        span(o.key("span")?, self.span)?;
        o.close()
    }
}

impl Pretty for Link {
    fn pretty(&self, buf: &mut Vec<u8>, level: usize) -> io::Result<()> {
        let mut o = Obj::open(buf, level, "name")?;
        string(o.value(), &self.name)?;
        objects(o.key("endpoints")?, level, &self.endpoints, endpoint)?;
        if !self.constraints.is_empty() {
            objects(o.key("constraints")?, level, &self.constraints, constraint)?;
        }
        if !self.properties.is_empty() {
            serde_at(o.key("properties")?, level, &self.properties)?;
        }
        span(o.key("span")?, self.span)?;
        o.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Through serde, as `elements` wrote it before: an element at depth 2.
    fn by_serde<T: Serialize>(v: &T) -> String {
        let mut buf = Vec::new();
        serde_at(&mut buf, 2, v).unwrap();
        String::from_utf8(buf).unwrap()
    }

    fn direct<T: Pretty>(v: &T) -> String {
        let mut buf = Vec::new();
        v.pretty(&mut buf, 3).unwrap();
        String::from_utf8(buf).unwrap()
    }

    /// Every value kind, unit and operator, text that needs escapes and
    /// text that does not, nested properties, ingress, labels, endpoints
    /// with and without addresses and constraints, a link without
    /// endpoints: the same bytes both ways.
    #[test]
    fn elements_are_written_as_serde_writes_them() {
        let values = [
            json!(true),
            json!(false),
            json!(0),
            json!(-9_223_372_036_854_775_808_i64),
            json!(4_294_967_296_u64),
            json!(0.01),
            json!(2.5e-300),
            json!("virtio"),
            json!("a \"quoted\" \\ path\n\t\u{1}"),
            json!("ünïcødé ✓"),
            json!(""),
            json!({"ddr": 4, "rate": 2400}),
            json!({"gen": 3, "lanes": 16}),
            json!([1, 2, 3]),
            json!(["a", "b"]),
            json!([]),
            json!([{"ddr": 5, "rate": 4800}, {"ddr": 4, "rate": 3200}]),
        ];
        let ops = ["==", "!=", "<", "<=", ">", ">=", "in"];
        let units = [None, Some("bytes"), Some("bps"), Some("ns"), Some("hz")];
        let mut constraints = Vec::new();
        for (i, v) in values.iter().enumerate() {
            let mut c = json!({
                "property": if i % 3 == 0 { "odd \"prop\"" } else { "cores" },
                "op": ops[i % ops.len()],
                "value": v,
                "span": [i, i * 1000 + 7],
            });
            if let Some(u) = units[i % units.len()] {
                c["unit"] = u.into();
            }
            constraints.push(c);
        }
        let nodes = [
            json!({"name": "n0", "span": [0, 0]}),
            json!({"name": "n1", "label": "N \"one\"", "constraints": constraints, "span": [1, 2]}),
            json!({"name": "n2", "label": "plain",
                   "properties": {"group": [1, 2], "deep": {"x": [{"y": "z\n"}], "e": {}}, "f": 1.5},
                   "ingress": [{"protocol": "tcp", "port": 22, "span": [3, 4]},
                               {"protocol": "http", "port": 8080, "span": [5, 6]}],
                   "span": [7, 8]}),
            json!({"name": "n3", "properties": {"only": null}, "span": [4_294_967_295_u32, 0]}),
        ];
        for n in &nodes {
            let node: Node = serde_json::from_value(n.clone()).unwrap();
            assert_eq!(direct(&node), by_serde(&node), "{n}");
        }
        let links = [
            json!({"name": "l0", "endpoints": [], "span": [0, 1]}),
            json!({"name": "n0.0~n1.0", "endpoints": [
                {"node": "n0", "socket": 0, "addrs": [{"cidr": "10.0.0.0/31", "span": [1, 2]}]},
                {"node": "n1", "socket": 4_294_967_295_u32,
                 "addrs": [{"cidr": "10.0.0.1/31", "span": [3, 4]}, {"cidr": "10.0.0.3/31", "span": [5, 6]}],
                 "constraints": constraints},
                {"node": "n2", "socket": 2, "constraints": [constraints[0]]},
              ],
              "constraints": constraints, "properties": {"tags": ["a", "b"]}, "span": [9, 10]}),
            json!({"name": "lan \"x\"", "endpoints": [{"node": "n0", "socket": 1}], "span": [2, 3]}),
        ];
        for l in &links {
            let link: Link = serde_json::from_value(l.clone()).unwrap();
            assert_eq!(direct(&link), by_serde(&link), "{l}");
        }
    }

    /// Depth beyond the one-write indentation still indents by two spaces
    /// a step.
    #[test]
    fn deep_elements_are_indented_the_same() {
        let link: Link = serde_json::from_value(json!({
            "name": "l", "endpoints": [{"node": "a", "socket": 0,
                "addrs": [{"cidr": "10.0.0.1/24", "span": [0, 1]}]}],
            "properties": {"a": {"b": [{"c": [[1], {"d": 2}]}]}},
            "span": [0, 1]}))
        .unwrap();
        for level in [3, 20, 40] {
            let mut direct = Vec::new();
            link.pretty(&mut direct, level).unwrap();
            let mut serde = Vec::new();
            serde_at(&mut serde, level - 1, &link).unwrap();
            assert_eq!(
                String::from_utf8(direct).unwrap(),
                String::from_utf8(serde).unwrap()
            );
        }
    }
}
