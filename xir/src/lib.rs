//! XIR, the experiment intermediate representation.
//!
//! Every mx phase reads and writes XIR, so it is the project's public contract:
//! the compiler lowers an `.mx` model to an [`Experiment`], the realizer (a later
//! phase) matches it against a facility and the materializer turns a realization
//! into fragments. Everything here is plain data with serde derives; there is no
//! logic beyond (de)serialization, and output is deterministic because every
//! collection is either a `Vec` in creation order or a `BTreeMap`.
//!
//! Constraints keep the [`Span`] of the expression that produced them, so a later
//! phase can point back into the model when a constraint cannot be met.
//!
//! ```
//! let xir = mx_xir::Experiment::new("hello", "hello.mx");
//! let json = mx_xir::to_json_pretty(&xir);
//! assert!(json.contains("\"kind\": \"experiment\""));
//! ```
#![deny(missing_docs)]

use std::collections::BTreeMap;

pub mod domain;
mod facility;
mod fragment;
mod pretty;
mod realization;
mod write;

pub use domain::{
    IfName, Invalid, Ipv4Cidr, Mac, MdevType, Name, NetnsName, PciAddr, Uuid, safe_name,
};
pub use facility::*;
pub use fragment::*;
pub use realization::*;
pub use write::{write_experiment_threaded, write_json_pretty_threaded};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The XIR schema version written into every document. Bump on any change
/// that a reader of an older version could misread.
pub const SCHEMA_VERSION: &str = "0.1";

/// A byte range `[start, end)` into the model's source file. Serialized as a
/// two-element array to keep large documents small.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(from = "[u32; 2]", into = "[u32; 2]")]
pub struct Span {
    /// First byte of the range.
    pub start: u32,
    /// One past the last byte of the range.
    pub end: u32,
}

impl Span {
    /// A span covering `start..end`.
    pub fn new(start: usize, end: usize) -> Self {
        Span {
            start: u32::try_from(start).unwrap_or(u32::MAX),
            end: u32::try_from(end).unwrap_or(u32::MAX),
        }
    }

    /// The range as `usize` offsets, for slicing the source.
    pub fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }

    /// The smallest span that covers both.
    pub fn to(self, other: Span) -> Span {
        Span {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

impl From<[u32; 2]> for Span {
    fn from([start, end]: [u32; 2]) -> Self {
        Span { start, end }
    }
}

impl From<Span> for [u32; 2] {
    fn from(s: Span) -> Self {
        [s.start, s.end]
    }
}

impl JsonSchema for Span {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Span".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Byte range [start, end) into the source file.",
            "type": "array",
            "items": { "type": "integer", "minimum": 0 },
            "minItems": 2,
            "maxItems": 2
        })
    }
}

/// The file a document was compiled from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Source {
    /// The path as given on the command line.
    pub path: String,
}

/// Which kind of XIR document this is. Facilities and realizations live
/// beside experiments under the same versioning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DocKind {
    /// An experiment topology compiled from a model.
    Experiment,
    /// A facility's resources, compiled from a facility model.
    Facility,
    /// An experiment mapped onto a facility.
    Realization,
}

/// A compiled experiment: nodes, links and their constraints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Experiment {
    /// Schema version, [`SCHEMA_VERSION`] when written by this crate.
    pub xir: String,
    /// Always [`DocKind::Experiment`].
    pub kind: DocKind,
    /// The topology name (`Network('name')`, `topology('name')` or the file
    /// stem), mapped to a [`Name`] by [`safe_name`].
    pub name: Name,
    /// The name as the model wrote it, when that is not a [`Name`]
    /// (`Network('example network')`): for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Where the model came from; spans index into this file.
    pub source: Source,
    /// Parameters the model read with `param()`, with the values used.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, PropValue>,
    /// Experiment-wide constraints (`routing == static`, `addressing == ipv4`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<Constraint>,
    /// Nodes in creation order.
    pub nodes: Vec<Node>,
    /// Links in creation order.
    pub links: Vec<Link>,
}

impl Experiment {
    /// An empty experiment named `name` (mapped by [`safe_name`], the
    /// original kept as its label), compiled from `path`.
    pub fn new(name: &str, path: &str) -> Self {
        Experiment {
            xir: SCHEMA_VERSION.to_string(),
            kind: DocKind::Experiment,
            name: safe_name(name),
            label: (safe_name(name) != name).then(|| name.to_string()),
            source: Source {
                path: path.to_string(),
            },
            parameters: BTreeMap::new(),
            constraints: Vec::new(),
            nodes: Vec::new(),
            links: Vec::new(),
        }
    }
}

/// An experiment node: a name plus the constraints a resource must satisfy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Node {
    /// Unique node name, mapped to a [`Name`] by [`safe_name`].
    pub name: Name,
    /// The name as the model wrote it, when that is not a [`Name`]: for
    /// display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Constraints in source order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<Constraint>,
    /// Free-form properties (`node.properties['group'] = [...]`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, PropValue>,
    /// External ingresses (`node.ingress(http, 8080)`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<Ingress>,
    /// Where the node was created.
    pub span: Span,
}

/// An external ingress into a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Ingress {
    /// `http`, `https`, `tcp` or `udp`.
    pub protocol: String,
    /// The port on the node.
    pub port: u16,
    /// Where the ingress was declared.
    pub span: Span,
}

/// A link: point-to-point with two endpoints, a LAN with more.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Link {
    /// Unique link id, `a.0~b.0` style (node name and socket index per endpoint).
    pub name: String,
    /// Endpoints in the order the nodes were given.
    pub endpoints: Vec<Endpoint>,
    /// Link-wide constraints (`capacity`, `latency`, `loss`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<Constraint>,
    /// Free-form properties (`link.properties['tags'] = ...`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, PropValue>,
    /// Where the link was created.
    pub span: Span,
}

/// One node's attachment to a link (a socket on the node).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Endpoint {
    /// The node's name.
    pub node: Name,
    /// The socket index on that node (0 for its first link, 1 for the next, ...).
    pub socket: u32,
    /// Interface addresses in CIDR form (`10.0.0.1/24`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addrs: Vec<Address>,
    /// Endpoint constraints (`nic == virtio`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<Constraint>,
}

/// An interface address with the span that assigned it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Address {
    /// CIDR form, canonical (`10.0.0.1/24`).
    pub cidr: String,
    /// Where it was assigned.
    pub span: Span,
}

/// A constraint `property op value`, e.g. `memory == gb(8)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Constraint {
    /// Canonical property name (`cores`, `memory`, `nic`, ...).
    // Borrowed from the compiler's property table when lowered (a
    // 100,000-node model has 700,000 constraints), owned when read. (Not in
    // the doc comment: that text is the schema's description.)
    pub property: std::borrow::Cow<'static, str>,
    /// The comparison.
    pub op: Op,
    /// The value, in the property's base unit.
    pub value: Value,
    /// The base unit of `value`, for quantities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<Unit>,
    /// The constraint expression in the source.
    pub span: Span,
}

/// A comparison operator.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum Op {
    /// `==`
    #[serde(rename = "==")]
    Eq,
    /// `!=`
    #[serde(rename = "!=")]
    Ne,
    /// `<`
    #[serde(rename = "<")]
    Lt,
    /// `<=`
    #[serde(rename = "<=")]
    Le,
    /// `>`
    #[serde(rename = ">")]
    Gt,
    /// `>=`
    #[serde(rename = ">=")]
    Ge,
    /// `in [...]`: one of a set of values.
    #[serde(rename = "in")]
    In,
}

impl Op {
    /// The operator as written in a model.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::In => "in",
        }
    }

    /// The operator with its operands swapped (`4 <= cores` is `cores >= 4`).
    pub fn flipped(self) -> Op {
        match self {
            Op::Lt => Op::Gt,
            Op::Le => Op::Ge,
            Op::Gt => Op::Lt,
            Op::Ge => Op::Le,
            other => other,
        }
    }
}

/// The base unit a quantity is stored in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// Bytes (memory, disk). `gb(1)` is 2^30 bytes.
    Bytes,
    /// Bits per second (link capacity). `mbps(1)` is 10^6.
    Bps,
    /// Nanoseconds (latency). `ms(1)` is 10^6.
    Ns,
    /// Hertz (clock). `ghz(1)` is 10^9.
    Hz,
}

impl Unit {
    /// The unit's symbol as shown to users.
    pub fn symbol(self) -> &'static str {
        match self {
            Unit::Bytes => "bytes",
            Unit::Bps => "bps",
            Unit::Ns => "ns",
            Unit::Hz => "Hz",
        }
    }
}

/// A constraint value. Symbols (`virtio`, `connectx4`, `static`) and free
/// strings (`image == 'bullseye'`) are both text; the property says which.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Value {
    /// `true` / `false`.
    Bool(bool),
    /// Integers and integral quantities.
    Int(i64),
    /// Fractions and non-integral numbers (`loss == 0.01`, `tdf == 2.5`).
    Float(f64),
    /// Symbols and strings.
    Text(String),
    /// A memory bus (`ddr4(2400)`).
    Membus(Membus),
    /// A PCIe link (`gen3(16)`).
    Pcie(Pcie),
    /// The members of an `in [...]` set.
    List(Vec<Value>),
}

/// A memory bus: DDR generation and transfer rate.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub struct Membus {
    /// DDR generation (3, 4, 5).
    pub ddr: u8,
    /// Transfer rate in MT/s.
    pub rate: u32,
}

/// A PCIe link: generation and lane count.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub struct Pcie {
    /// PCIe generation (1..6).
    pub r#gen: u8,
    /// Lanes (1, 2, 4, 8, 16).
    pub lanes: u8,
}

/// A free-form property value, kept as JSON.
pub type PropValue = serde_json::Value;

/// Pretty JSON with a trailing newline, the form `mxc compile` writes.
/// Arrays of scalars (spans, value sets) stay on one line, so a span costs one
/// line instead of four and large documents stay readable and diffable. It
/// streams: no intermediate JSON tree, so 100,000-node documents stay cheap.
pub fn to_json_pretty<T: Serialize>(doc: &T) -> String {
    let mut buf = Vec::with_capacity(1 << 16);
    write_json_pretty(doc, &mut buf).expect("writing to memory cannot fail");
    String::from_utf8(buf).expect("serde_json writes UTF-8")
}

/// [`to_json_pretty`], streamed to a writer.
pub fn write_json_pretty<T: Serialize, W: std::io::Write>(
    doc: &T,
    w: &mut W,
) -> std::io::Result<()> {
    let mut ser = serde_json::Serializer::with_formatter(&mut *w, Compact::default());
    doc.serialize(&mut ser).map_err(std::io::Error::other)?;
    w.write_all(b"\n")
}

/// A line break and `level` steps of indentation, in one write while
/// shallow: a 100,000-node document has millions of lines. Shared by
/// [`Compact`] and the direct writer of nodes and links (`pretty.rs`).
#[inline]
fn newline<W: ?Sized + std::io::Write>(w: &mut W, level: usize) -> std::io::Result<()> {
    const LINE: &[u8; 65] = b"\n                                                                ";
    let shallow = 2 * level + 1;
    if shallow <= LINE.len() {
        return w.write_all(&LINE[..shallow]);
    }
    w.write_all(b"\n")?;
    for _ in 0..level {
        w.write_all(b"  ")?;
    }
    Ok(())
}

/// A pretty formatter that keeps arrays of scalars inline. A separator is
/// held back until the next value shows whether it is a scalar or a container.
#[derive(Default)]
struct Compact {
    indent: usize,
    /// Per open array: whether it has gone multi-line.
    arrays: Vec<bool>,
    /// A separator owed before the next array element: Some(first).
    pending: Option<bool>,
}

impl Compact {
    fn newline<W: ?Sized + std::io::Write>(&self, w: &mut W) -> std::io::Result<()> {
        newline(w, self.indent)
    }

    /// Pays the owed separator before a scalar (inline) or container (block).
    fn settle<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        container: bool,
    ) -> std::io::Result<()> {
        let Some(first) = self.pending.take() else {
            return Ok(());
        };
        let block = self
            .arrays
            .last_mut()
            .expect("pending only inside an array");
        if container {
            *block = true;
        }
        if !first {
            w.write_all(b",")?;
        }
        if *block {
            self.newline(w)
        } else if first {
            Ok(())
        } else {
            w.write_all(b" ")
        }
    }
}

macro_rules! settle_scalar {
    ($($name:ident($($arg:ident: $ty:ty),*)),* $(,)?) => {
        $(fn $name<W: ?Sized + std::io::Write>(&mut self, w: &mut W $(, $arg: $ty)*) -> std::io::Result<()> {
            self.settle(w, false)?;
            serde_json::ser::CompactFormatter.$name(w $(, $arg)*)
        })*
    };
}

impl serde_json::ser::Formatter for Compact {
    settle_scalar! {
        write_null(), write_bool(v: bool), write_i8(v: i8), write_i16(v: i16), write_i32(v: i32),
        write_i64(v: i64), write_i128(v: i128), write_u8(v: u8), write_u16(v: u16), write_u32(v: u32),
        write_u64(v: u64), write_u128(v: u128), write_f32(v: f32), write_f64(v: f64),
        write_number_str(v: &str), begin_string(),
    }

    fn begin_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.settle(w, true)?;
        self.indent += 1;
        self.arrays.push(false);
        w.write_all(b"[")
    }

    fn end_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.pending = None;
        self.indent -= 1;
        if self.arrays.pop().unwrap_or(false) {
            self.newline(w)?;
        }
        w.write_all(b"]")
    }

    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        _w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.pending = Some(first);
        Ok(())
    }

    fn end_array_value<W: ?Sized + std::io::Write>(&mut self, _w: &mut W) -> std::io::Result<()> {
        Ok(())
    }

    fn begin_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.settle(w, true)?;
        self.indent += 1;
        self.arrays.push(false);
        w.write_all(b"{")
    }

    fn end_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.indent -= 1;
        let had_members = self.arrays.pop().unwrap_or(true);
        if had_members {
            self.newline(w)?;
        }
        w.write_all(b"}")
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if let Some(top) = self.arrays.last_mut() {
            *top = true;
        }
        if !first {
            w.write_all(b",")?;
        }
        self.newline(w)
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }
}

/// The JSON Schema of an experiment document, as kept in `xir/schema/`.
pub fn experiment_schema() -> String {
    let schema = schemars::schema_for!(Experiment);
    to_json_pretty(&schema)
}
