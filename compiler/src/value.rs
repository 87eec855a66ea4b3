//! Runtime values of the sandboxed evaluator.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use indexmap::IndexMap;
use mx_xir::{Membus, Op, Pcie, Span, Unit};

use crate::ast::{FuncDef, Sym};

pub type List = Rc<Shared<Vec<Value>>>;
pub type Dict = Rc<Shared<IndexMap<Key, Value>>>;

/// A mutable container. Dropping one takes its values apart with a work list
/// instead of recursion, so a model that nests a list 10 million deep
/// (`x = [x]` in a loop) cannot overflow the stack when it is freed.
#[derive(Debug, Default)]
pub struct Shared<T: Drain>(pub RefCell<T>);

/// An immutable sequence (a tuple), dropped the same way.
#[derive(Debug, Default)]
pub struct Frozen(pub Vec<Value>);

pub trait Drain {
    /// Moves every value out, into `out`.
    fn drain_into(&mut self, out: &mut Vec<Value>);
    /// Whether a value in it is a container: only then is a work list
    /// needed (most lists a model drops, such as `[a, b]`, hold none).
    fn nests(&self) -> bool;
}

fn is_container(v: &Value) -> bool {
    matches!(v, Value::List(_) | Value::Dict(_) | Value::Tuple(_))
}

impl Drain for Vec<Value> {
    fn drain_into(&mut self, out: &mut Vec<Value>) {
        out.append(self);
    }
    fn nests(&self) -> bool {
        self.iter().any(is_container)
    }
}

impl Drain for IndexMap<Key, Value> {
    fn drain_into(&mut self, out: &mut Vec<Value>) {
        out.extend(std::mem::take(self).into_values());
    }
    fn nests(&self) -> bool {
        self.values().any(is_container)
    }
}

impl<T: Drain> std::ops::Deref for Shared<T> {
    type Target = RefCell<T>;
    fn deref(&self) -> &RefCell<T> {
        &self.0
    }
}

impl std::ops::Deref for Frozen {
    type Target = [Value];
    fn deref(&self) -> &[Value] {
        &self.0
    }
}

/// Takes apart the containers this value owns alone, pushing their contents
/// on the work list; shared ones just lose a reference.
fn release(v: Value, work: &mut Vec<Value>) {
    match v {
        Value::List(rc) => {
            if let Ok(mut cell) = Rc::try_unwrap(rc) {
                cell.0.get_mut().drain_into(work);
            }
        }
        Value::Dict(rc) => {
            if let Ok(mut cell) = Rc::try_unwrap(rc) {
                cell.0.get_mut().drain_into(work);
            }
        }
        Value::Tuple(rc) => {
            if let Ok(mut t) = Rc::try_unwrap(rc) {
                work.append(&mut t.0);
            }
        }
        _ => {}
    }
}

fn drop_iteratively(mut work: Vec<Value>) {
    while let Some(v) = work.pop() {
        release(v, &mut work);
    }
}

impl<T: Drain> Drop for Shared<T> {
    fn drop(&mut self) {
        if !self.0.get_mut().nests() {
            return;
        }
        let mut work = Vec::new();
        self.0.get_mut().drain_into(&mut work);
        drop_iteratively(work);
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if !self.0.iter().any(is_container) {
            return;
        }
        drop_iteratively(std::mem::take(&mut self.0));
    }
}

/// The step and memory budgets of one evaluation. Every walk over values
/// (equality, ordering, hashing, membership, text and JSON) charges it node
/// by node: a list built as `l = [l, l]` sixty times is small in memory but
/// has 2^60 nodes to visit, so only a per-node charge bounds the walk.
#[derive(Debug)]
pub struct Meter {
    steps: Cell<u64>,
    step_limit: u64,
    bytes: Cell<u64>,
    byte_limit: u64,
}

/// Which budget ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exhausted {
    Steps,
    Memory,
}

impl Meter {
    pub fn new(step_limit: u64, byte_limit: u64) -> Meter {
        Meter {
            steps: Cell::new(0),
            step_limit,
            bytes: Cell::new(0),
            byte_limit,
        }
    }

    /// Counts one step (a statement, an iteration, a call, a node walked).
    #[inline]
    pub fn step(&self) -> Result<(), Exhausted> {
        let s = self.steps.get() + 1;
        self.steps.set(s);
        if s > self.step_limit {
            return Err(Exhausted::Steps);
        }
        Ok(())
    }

    /// Charges `n` bytes of values or text built.
    #[inline]
    pub fn charge(&self, n: u64) -> Result<(), Exhausted> {
        let b = self.bytes.get().saturating_add(n);
        self.bytes.set(b);
        if b > self.byte_limit {
            return Err(Exhausted::Memory);
        }
        Ok(())
    }

    pub fn byte_limit(&self) -> u64 {
        self.byte_limit
    }

    pub fn step_limit(&self) -> u64 {
        self.step_limit
    }
}

#[derive(Clone, Debug)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    List(List),
    Tuple(Rc<Frozen>),
    Dict(Dict),
    /// `range(start, stop, step)`, boxed: the three numbers would make
    /// every value 32 bytes instead of 24.
    Range(Rc<(i64, i64, i64)>),
    Func(Rc<Closure>),
    Builtin(Builtin),
    /// A method bound to its receiver: `net.node`.
    Method(Rc<(Value, Sym)>),
    /// A number with a unit: `gb(8)` is `Quantity(8 << 30, Bytes)`.
    Quantity(i64, Unit),
    Membus(Membus),
    Pcie(Pcie),
    /// A property name such as `cores`; comparing it makes a constraint.
    Prop(u8),
    /// mergexp's property groups: `proc` (for `proc.cores`).
    Group(&'static str),
    /// A symbol such as `virtio`, `static`, `aarch64`.
    Sym(&'static str),
    /// A constraint, and which evaluation made it: `==` and `is` compare
    /// that, while evaluations of one comparison with equal results share
    /// the constraint itself (see `Eval::share_constraint`).
    Constraint(Rc<Cons>, u64),
    Topo(u32),
    Node(u32),
    Link(u32),
    /// `link[node]`: (link, endpoint index).
    Endpoint(u32, u32),
    /// `link[node].socket`
    Socket(u32, u32),
    /// A module imported but not available in the sandbox.
    Module(Rc<str>),
    /// A facility under construction (`facility('lab')`).
    Facility(u32),
    /// A host or switch of a facility.
    Device(u32),
    /// `device.port(n)`: (device, port).
    Port(u32, u32),
    /// What an undefined name or a bad constraint evaluates to once its
    /// error is recorded, so evaluation goes on. Errors in a statement that
    /// touched one are consequences and are not reported; a model with one
    /// never lowers to XIR.
    Poison,
}

/// A constraint built by comparing a property: `cores >= 4`.
#[derive(Debug)]
pub struct Cons {
    pub prop: u8,
    pub op: Op,
    pub value: mx_xir::Value,
    pub unit: Option<Unit>,
    pub span: Span,
    /// The value operand, for labels on bad values.
    pub value_span: Span,
}

impl Cons {
    /// The same constraint in every respect that can show: value (floats
    /// bit for bit, so `0.0` and `-0.0` stay apart), unit and both spans.
    pub fn same(&self, other: &Cons) -> bool {
        fn value(a: &mx_xir::Value, b: &mx_xir::Value) -> bool {
            use mx_xir::Value as V;
            match (a, b) {
                (V::Float(x), V::Float(y)) => x.to_bits() == y.to_bits(),
                (V::List(x), V::List(y)) => {
                    x.len() == y.len() && x.iter().zip(y).all(|(a, b)| value(a, b))
                }
                _ => a == b,
            }
        }
        self.prop == other.prop
            && self.op == other.op
            && self.unit == other.unit
            && self.span == other.span
            && self.value_span == other.value_span
            && value(&self.value, &other.value)
    }
}

#[derive(Debug)]
pub struct Closure {
    pub def: Arc<FuncDef>,
    pub defaults: Vec<Option<Value>>,
    /// Enclosing function scopes, innermost first, for nested functions.
    pub env: Option<Rc<Scope>>,
}

/// A function call's local variables, parallel to `def.locals` (sorted).
#[derive(Debug)]
pub struct Scope {
    pub def: Arc<FuncDef>,
    pub vars: RefCell<Vec<Option<Value>>>,
    pub parent: Option<Rc<Scope>>,
}

macro_rules! builtins {
    ($($v:ident = $n:literal),* $(,)?) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Builtin { $($v),* }
        impl Builtin {
            pub const ALL: &'static [Builtin] = &[$(Builtin::$v),*];
            pub fn name(self) -> &'static str {
                match self { $(Builtin::$v => $n),* }
            }
        }
    };
}

builtins! {
    Range = "range", Len = "len", Enumerate = "enumerate", Zip = "zip", Str = "str",
    Int = "int", Float = "float", Bool = "bool", Chr = "chr", Ord = "ord", Min = "min",
    Max = "max", Sum = "sum", Sorted = "sorted", Reversed = "reversed", List = "list",
    Dict = "dict", Tuple = "tuple", Print = "print", Abs = "abs", Round = "round",
    Any = "any", All = "all", Map = "map", Filter = "filter", Repr = "repr", Hex = "hex",
    Divmod = "divmod", Isinstance = "isinstance", Set = "set",
    // mergexp and mx
    Network = "Network", Topology = "topology", Experiment = "experiment", Ip4 = "ip4",
    Param = "param", Facility = "facility",
    // Reached by calling the properties `nic` and `gpu` (see `Eval::call`).
    NicSpec = "<nic>", GpuSpec = "<gpu>",
    // units
    Bps = "bps", Kbps = "kbps", Mbps = "mbps", Gbps = "gbps", Tbps = "tbps",
    Kb = "kb", Mb = "mb", Gb = "gb", Tb = "tb", Pb = "pb",
    Ns = "ns", Us = "us", Ms = "ms", S = "s",
    Hz = "hz", Khz = "khz", Mhz = "mhz", Ghz = "ghz",
    Ddr3 = "ddr3", Ddr4 = "ddr4", Ddr5 = "ddr5",
    Gen1 = "gen1", Gen2 = "gen2", Gen3 = "gen3", Gen4 = "gen4", Gen5 = "gen5", Gen6 = "gen6",
}

/// A hashable dict key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    None,
    Int(i64),
    Float(u64),
    Str(Rc<str>),
    Tuple(Rc<[Key]>),
    /// Topology objects by identity: (tag, id, sub).
    Obj(u8, u32, u32),
    Sym(&'static str),
}

impl Key {
    /// The key of `v`; `None` when `v` is not hashable (lists, dicts) or
    /// nests tuples deeper than 100. Charges `m` per node.
    pub fn of(v: &Value, m: &Meter) -> Result<Option<Key>, Exhausted> {
        Key::of_at(v, 0, m)
    }

    /// Tuples nested deeper than this are not hashable (they would make
    /// hashing and dropping keys recursive without bound).
    fn of_at(v: &Value, depth: usize, m: &Meter) -> Result<Option<Key>, Exhausted> {
        if depth > 100 {
            return Ok(None);
        }
        m.step()?;
        Ok(Some(match v {
            Value::None => Key::None,
            Value::Bool(b) => Key::Int(*b as i64),
            Value::Int(i) => Key::Int(*i),
            Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Key::Int(*f as i64),
            Value::Float(f) => Key::Float(f.to_bits()),
            Value::Str(s) => Key::Str(s.clone()),
            Value::Tuple(t) => {
                m.charge(16 * t.len() as u64 + 16)?;
                let mut keys = Vec::with_capacity(t.len());
                for x in t.iter() {
                    match Key::of_at(x, depth + 1, m)? {
                        Some(k) => keys.push(k),
                        None => return Ok(None),
                    }
                }
                Key::Tuple(keys.into())
            }
            Value::Node(n) => Key::Obj(0, *n, 0),
            Value::Link(l) => Key::Obj(1, *l, 0),
            Value::Topo(t) => Key::Obj(2, *t, 0),
            Value::Endpoint(l, e) => Key::Obj(3, *l, *e),
            Value::Sym(s) => Key::Sym(s),
            Value::Prop(p) => Key::Obj(4, *p as u32, 0),
            _ => return Ok(None),
        }))
    }

    pub fn value(&self) -> Value {
        match self {
            Key::None => Value::None,
            Key::Int(i) => Value::Int(*i),
            Key::Float(f) => Value::Float(f64::from_bits(*f)),
            Key::Str(s) => Value::Str(s.clone()),
            Key::Tuple(t) => Value::tuple(t.iter().map(Key::value).collect::<Vec<_>>()),
            Key::Obj(0, n, _) => Value::Node(*n),
            Key::Obj(1, l, _) => Value::Link(*l),
            Key::Obj(2, t, _) => Value::Topo(*t),
            Key::Obj(3, l, e) => Value::Endpoint(*l, *e),
            Key::Obj(_, p, _) => Value::Prop(*p as u8),
            Key::Sym(s) => Value::Sym(s),
        }
    }
}

impl Value {
    pub fn str(s: &str) -> Value {
        Value::Str(s.into())
    }

    pub fn list(v: Vec<Value>) -> Value {
        Value::List(Rc::new(Shared(RefCell::new(v))))
    }

    pub fn tuple(v: Vec<Value>) -> Value {
        Value::Tuple(Rc::new(Frozen(v)))
    }

    pub fn dict(m: IndexMap<Key, Value>) -> Value {
        Value::Dict(Rc::new(Shared(RefCell::new(m))))
    }

    /// The Python type name, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Dict(_) => "dict",
            Value::Range(..) => "range",
            Value::Func(_) | Value::Builtin(_) => "function",
            Value::Method(_) => "method",
            Value::Quantity(..) => "quantity",
            Value::Membus(_) => "memory bus",
            Value::Pcie(_) => "PCIe link",
            Value::Prop(_) => "property",
            Value::Group(_) => "property group",
            Value::Sym(_) => "symbol",
            Value::Constraint(..) => "constraint",
            Value::Topo(_) => "topology",
            Value::Node(_) => "node",
            Value::Link(_) => "link",
            Value::Endpoint(..) => "endpoint",
            Value::Socket(..) => "socket",
            Value::Module(_) => "module",
            Value::Facility(_) => "facility",
            Value::Device(_) => "device",
            Value::Port(..) => "port",
            Value::Poison => "error value",
        }
    }

    pub fn truthy(&self) -> bool {
        match self {
            Value::None => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::List(l) => !l.borrow().is_empty(),
            Value::Tuple(t) => !t.is_empty(),
            Value::Dict(d) => !d.borrow().is_empty(),
            Value::Range(r) => range_len(r.0, r.1, r.2) > 0,
            Value::Quantity(q, _) => *q != 0,
            Value::Poison => false,
            _ => true,
        }
    }
}

pub fn range_len(start: i64, stop: i64, step: i64) -> i64 {
    if step > 0 && start < stop {
        ((stop as i128 - start as i128 - 1) / step as i128 + 1) as i64
    } else if step < 0 && start > stop {
        ((start as i128 - stop as i128 - 1) / (-(step as i128)) + 1) as i64
    } else {
        0
    }
}

/// Python's `repr` for floats: shortest round-trip, always with a dot or exponent.
pub fn fmt_float(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if f == f.trunc() && f.abs() < 1e16 {
        return format!("{f:.1}");
    }
    let s = format!("{f}");
    if f.abs() >= 1e16 || (f != 0.0 && f.abs() < 1e-4) {
        let e = format!("{f:e}");
        // Rust writes 1e-5; Python writes 1e-05.
        if let Some((m, exp)) = e.split_once('e') {
            let (sign, digits) = exp.strip_prefix('-').map_or(("+", exp), |d| ("-", d));
            return format!("{m}e{sign}{digits:0>2}");
        }
    }
    s
}
