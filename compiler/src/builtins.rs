//! The builtin functions (`len`, `range`, `sorted`, `gb`, ...), their
//! argument helpers, and method dispatch and attribute lookup on values
//! (the methods themselves are declared in `methods.rs`).

use mx_diag::code;
use std::cell::RefCell;
use std::cmp::Ordering;
use std::rc::Rc;

use indexmap::IndexMap;
use mx_diag::Diagnostic;
use mx_xir::{Membus, Pcie, Span, Unit};

use crate::ast::*;
use crate::eval::{Args, Eval, Flow, PosSpans, R, did_you_mean};
use crate::format::*;
use crate::methods;
use crate::ops::*;
use crate::value::*;

impl Eval<'_> {
    // ---- builtin functions -----------------------------------------------

    pub(crate) fn no_kwargs(&self, a: &Args, what: &str) -> R<()> {
        if let Some((k, _, span)) = a.kw.first() {
            return Err(self.fail(
                code::E0215,
                *span,
                format!("`{what}` takes no keyword argument `{}`", self.name(*k)),
                "unexpected keyword",
            ));
        }
        Ok(())
    }

    pub fn arity(&self, a: &Args, what: &str, min: usize, max: usize) -> R<()> {
        let n = a.pos.len();
        if n < min || n > max {
            let want = if min == max {
                format!("{min}")
            } else if max == usize::MAX {
                format!("at least {min}")
            } else {
                format!("{min} to {max}")
            };
            return Err(Diagnostic::error(
                code::E0215,
                format!(
                    "`{what}` takes {want} argument{} but {n} {} given",
                    if want == "1" { "" } else { "s" },
                    if n == 1 { "was" } else { "were" }
                ),
            )
            .primary(a.span.range(), "in this call")
            .into());
        }
        Ok(())
    }

    pub fn kwarg(&self, a: &mut Args, name: &str) -> Option<Value> {
        let i = a.kw.iter().position(|(k, _, _)| self.name(*k) == name)?;
        Some(a.kw.remove(i).1)
    }

    pub fn int_arg(&self, a: &Args, i: usize, what: &str) -> R<i64> {
        match &a.pos[i] {
            Value::Int(x) => Ok(*x),
            Value::Bool(b) => Ok(*b as i64),
            other => Err(self.type_error(
                a.span_of(i),
                format!("`{what}` needs an int here, not {}", other.type_name()),
            )),
        }
    }

    pub(crate) fn num_arg(&self, a: &Args, i: usize, what: &str) -> R<f64> {
        match &a.pos[i] {
            v if let Some(x) = number(v) => Ok(x),
            other => Err(self.type_error(
                a.span_of(i),
                format!("`{what}` needs a number, not {}", other.type_name()),
            )),
        }
    }

    pub fn str_arg(&self, a: &Args, i: usize, what: &str) -> R<Rc<str>> {
        match &a.pos[i] {
            Value::Str(s) => Ok(s.clone()),
            other => Err(self.type_error(
                a.span_of(i),
                format!("`{what}` needs a str here, not {}", other.type_name()),
            )),
        }
    }

    pub fn call_builtin(&mut self, b: Builtin, mut a: Args) -> R<Value> {
        use Builtin as B;
        let name = b.name();
        let span = a.span;
        match b {
            B::Facility | B::NicSpec | B::GpuSpec => return self.call_facility(b, a),
            B::Network | B::Topology | B::Experiment | B::Ip4 | B::Param => {
                return self.call_api(b, a);
            }
            _ => {}
        }
        if let Some(unit) = unit_of(b) {
            self.no_kwargs(&a, name)?;
            self.arity(&a, name, 1, 1)?;
            let x = self.num_arg(&a, 0, name)?;
            return self.quantity(x, unit, span);
        }
        match b {
            B::Ddr3 | B::Ddr4 | B::Ddr5 => {
                self.arity(&a, name, 1, 1)?;
                let rate = self.int_arg(&a, 0, name)?;
                let rate = u32::try_from(rate).ok().filter(|r| *r > 0).ok_or_else(|| {
                    self.fail(
                        code::E0218,
                        a.span_of(0),
                        format!("`{rate}` is not a memory transfer rate"),
                        "expected MT/s, e.g. 2400",
                    )
                })?;
                let ddr = match b {
                    B::Ddr3 => 3,
                    B::Ddr4 => 4,
                    _ => 5,
                };
                return Ok(Value::Membus(Membus { ddr, rate }));
            }
            B::Gen1 | B::Gen2 | B::Gen3 | B::Gen4 | B::Gen5 | B::Gen6 => {
                self.arity(&a, name, 1, 1)?;
                let lanes = self.int_arg(&a, 0, name)?;
                if ![1, 2, 4, 8, 12, 16, 32].contains(&lanes) {
                    return Err(Diagnostic::error(
                        code::E0218,
                        format!("a PCIe link cannot have {lanes} lanes"),
                    )
                    .primary(a.span_of(0).range(), "lane count")
                    .help("PCIe lane counts are 1, 2, 4, 8, 12, 16 or 32")
                    .into());
                }
                let r#gen = name[3..].parse().unwrap_or(1);
                return Ok(Value::Pcie(Pcie {
                    r#gen,
                    lanes: lanes as u8,
                }));
            }
            _ => {}
        }
        // Everything else is declared in `TABLE`: the arity is checked
        // here, before the function runs.
        // (`every_builtin_is_declared_once` keeps this from happening; a
        // model still gets an error, not a crash.)
        let Some(decl) = TABLE.iter().find(|d| d.builtin == b) else {
            return Err(self.fail(
                code::E0215,
                span,
                format!("`{name}` cannot be called (a bug in mx: it has no declaration)"),
                "here",
            ));
        };
        if let Err(Flow::Err(d)) = self.arity(&a, name, decl.min, decl.max) {
            // The declaration's line of documentation says what it wants.
            return Err(Flow::Err(Box::new(
                d.help(format!("`{name}`: {}", decl.doc)),
            )));
        }
        (decl.run)(self, b, &mut a)
    }

    pub(crate) fn keys_of(
        &mut self,
        items: &[Value],
        key: Option<Value>,
        span: Span,
    ) -> R<Vec<Value>> {
        match key {
            None | Some(Value::None) => Ok(items.to_vec()),
            Some(f) => items
                .iter()
                .map(|v| {
                    let args = Args {
                        pos: smallvec::smallvec![v.clone()],
                        pos_spans: PosSpans::new(),
                        kw: Vec::new(),
                        span,
                    };
                    self.call(f.clone(), args, span)
                })
                .collect(),
        }
    }

    pub(crate) fn sort_values(
        &mut self,
        items: Vec<Value>,
        key: Option<Value>,
        rev: bool,
        span: Span,
    ) -> R<Vec<Value>> {
        let keys = self.keys_of(&items, key, span)?;
        let mut idx: Vec<usize> = (0..items.len()).collect();
        let mut err = None;
        let mut out = None;
        idx.sort_by(|&i, &j| {
            if out.is_some() {
                return Ordering::Equal;
            }
            let o = match cmp_at(&keys[i], &keys[j], 0, &self.meter) {
                Ok(Some(o)) => o,
                Ok(None) => {
                    err.get_or_insert((keys[i].type_name(), keys[j].type_name()));
                    Ordering::Equal
                }
                Err(e) => {
                    out = Some(e);
                    Ordering::Equal
                }
            };
            if rev { o.reverse() } else { o }
        });
        if let Some(e) = out {
            return Err(self.exhausted(e, span));
        }
        if let Some((x, y)) = err {
            return Err(self.type_error(span, format!("cannot sort: {x} and {y} do not compare")));
        }
        Ok(idx.into_iter().map(|i| items[i].clone()).collect())
    }

    // ---- methods ---------------------------------------------------------

    pub fn call_method(
        &mut self,
        recv: Value,
        name: Sym,
        nspan: Span,
        ospan: Span,
        mut a: Args,
    ) -> R<Value> {
        let m = self.name_rc(name);
        let m: &str = &m;
        match &recv {
            Value::Str(s) => methods::call(self, methods::STR, s, &recv, m, nspan, &mut a),
            Value::List(l) => methods::call(self, methods::LIST, l, &recv, m, nspan, &mut a),
            Value::Dict(d) => methods::call(self, methods::DICT, d, &recv, m, nspan, &mut a),
            Value::Tuple(t) => {
                let l = Rc::new(Shared(RefCell::new(t.to_vec())));
                methods::call(self, methods::TUPLE, &l, &recv, m, nspan, &mut a)
            }
            Value::Topo(_) | Value::Node(_) | Value::Link(_) | Value::Endpoint(..) => {
                self.api_method(recv, name, nspan, ospan, a)
            }
            Value::Facility(_) | Value::Device(_) => self.facility_method(recv, name, nspan, a),
            _ => {
                let f = self.get_attr(recv, name, nspan, ospan)?;
                self.call(f, a, nspan)
            }
        }
    }

    pub fn no_attr(&self, recv: &Value, name: &str, span: Span, known: &[&str]) -> Flow {
        let mut d = Diagnostic::error(
            code::E0202,
            format!("a {} has no attribute `{name}`", recv.type_name()),
        )
        .primary(span.range(), "unknown attribute");
        if let Some(s) = did_you_mean(name, known.iter().copied()) {
            d = d.help(format!("did you mean `{s}`?"));
        } else if !known.is_empty() {
            d = d.help(format!("a {} has: {}", recv.type_name(), known.join(", ")));
        }
        d.into()
    }

    /// Attribute access on non-topology values.
    pub fn get_attr(&mut self, o: Value, name: Sym, nspan: Span, ospan: Span) -> R<Value> {
        let n: &str = self.name(name);
        match &o {
            Value::Group("proc") => match n {
                "cores" | "clock" | "arch" => {
                    Ok(Value::Prop(crate::props::prop(n).expect("known property")))
                }
                _ => Err(self.no_attr(&o, n, nspan, &["cores", "clock", "arch"])),
            },
            Value::Prop(p) => {
                let pname = crate::props::PROPS[*p as usize].name;
                match (pname, n) {
                    ("memory" | "disk", "capacity" | "size") => Ok(o.clone()),
                    _ => Err(Diagnostic::error(
                        code::E0202,
                        format!("property `{pname}` has no attribute `{n}`"),
                    )
                    .primary(nspan.range(), "unknown attribute")
                    .help(if matches!(pname, "memory" | "disk") {
                        format!("write `{pname}.capacity` or just `{pname}`")
                    } else {
                        format!(
                            "use `{pname}` itself, e.g. `{}`",
                            crate::props::PROPS[*p as usize].example
                        )
                    })
                    .into()),
                }
            }
            Value::Module(m) => {
                if is_api_module(m)
                    && let Some(v) = crate::eval::builtin_of(n)
                {
                    return Ok(v);
                }
                Err(self.unknown_module(&format!("{m}.{n}"), ospan.to(nspan)))
            }
            Value::Str(_) | Value::List(_) | Value::Dict(_) | Value::Tuple(_) => {
                let known = match o {
                    Value::Str(_) => methods::names(methods::STR),
                    Value::List(_) => methods::names(methods::LIST),
                    Value::Dict(_) => methods::names(methods::DICT),
                    _ => methods::names(methods::TUPLE),
                };
                if known.contains(&n) {
                    Ok(Value::Method(Rc::new((o.clone(), name))))
                } else {
                    Err(self.no_attr(&o, n, nspan, &known))
                }
            }
            Value::Topo(_)
            | Value::Node(_)
            | Value::Link(_)
            | Value::Endpoint(..)
            | Value::Socket(..) => self.api_attr(o, name, nspan),
            Value::Facility(_) | Value::Device(_) | Value::Port(..) => {
                self.facility_attr(o, name, nspan)
            }
            _ => Err(self.no_attr(&o, n, nspan, &[])),
        }
    }
}

pub(crate) fn is_api_module(m: &str) -> bool {
    matches!(m, "mergexp" | "mx")
}

/// Multiplier and base unit of a unit function.
/// A number as a builtin takes one (`True` is 1).
#[inline]
pub(crate) fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Int(x) => Some(*x as f64),
        Value::Bool(b) => Some(*b as i64 as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    }
}

impl Eval<'_> {
    /// `x` of a unit from [`unit_of`] (`gb(4)`), E0216 past 64 bits; the
    /// call is at `span`.
    #[inline]
    pub(crate) fn quantity(&self, x: f64, (mult, u): (i64, Unit), span: Span) -> R<Value> {
        let q = scale(x * mult as f64).ok_or_else(|| self.overflow(span))?;
        Ok(Value::Quantity(q, u))
    }
}

pub(crate) fn unit_of(b: Builtin) -> Option<(i64, Unit)> {
    use Builtin as B;
    Some(match b {
        B::Kb => (1 << 10, Unit::Bytes),
        B::Mb => (1 << 20, Unit::Bytes),
        B::Gb => (1 << 30, Unit::Bytes),
        B::Tb => (1 << 40, Unit::Bytes),
        B::Pb => (1 << 50, Unit::Bytes),
        B::Bps => (1, Unit::Bps),
        B::Kbps => (1_000, Unit::Bps),
        B::Mbps => (1_000_000, Unit::Bps),
        B::Gbps => (1_000_000_000, Unit::Bps),
        B::Tbps => (1_000_000_000_000, Unit::Bps),
        B::Ns => (1, Unit::Ns),
        B::Us => (1_000, Unit::Ns),
        B::Ms => (1_000_000, Unit::Ns),
        B::S => (1_000_000_000, Unit::Ns),
        B::Hz => (1, Unit::Hz),
        B::Khz => (1_000, Unit::Hz),
        B::Mhz => (1_000_000, Unit::Hz),
        B::Ghz => (1_000_000_000, Unit::Hz),
        _ => return None,
    })
}

use Builtin as B;

/// A builtin function: declared once, with how many positional arguments
/// it takes (checked before it runs), a line of documentation, and the
/// function that runs it. Units, memory buses, PCIe links and the topology
/// and facility API are dispatched before the table (`call_builtin`).
pub(crate) struct Decl {
    pub builtin: Builtin,
    pub min: usize,
    pub max: usize,
    pub doc: &'static str,
    pub run: fn(&mut Eval, Builtin, &mut Args) -> R<Value>,
}

pub(crate) const TABLE: &[Decl] = &[
    Decl {
        builtin: B::Print,
        min: 0,
        max: usize::MAX,
        doc: "Prints its arguments (`sep=`, `end=`) to mxc's standard error.",
        run: b_print,
    },
    Decl {
        builtin: B::Range,
        min: 1,
        max: 3,
        doc: "The integers from `start` (0) up to `stop`, by `step` (1).",
        run: b_range,
    },
    Decl {
        builtin: B::Len,
        min: 1,
        max: 1,
        doc: "How many items a string, list, tuple, dict, range, link or topology has.",
        run: b_len,
    },
    Decl {
        builtin: B::Enumerate,
        min: 1,
        max: 2,
        doc: "(index, item) pairs of an iterable, counting from `start` (0).",
        run: b_enumerate,
    },
    Decl {
        builtin: B::Zip,
        min: 0,
        max: usize::MAX,
        doc: "Tuples of the items at the same place in each iterable, as long as the shortest.",
        run: b_zip,
    },
    Decl {
        builtin: B::Str,
        min: 0,
        max: 1,
        doc: "A value as text.",
        run: b_str,
    },
    Decl {
        builtin: B::Repr,
        min: 1,
        max: 1,
        doc: "A value as Python would write it.",
        run: b_repr,
    },
    Decl {
        builtin: B::Int,
        min: 0,
        max: 2,
        doc: "An integer from a number, a quantity or text (in `base`, default 10).",
        run: b_int,
    },
    Decl {
        builtin: B::Float,
        min: 0,
        max: 1,
        doc: "A float from a number or text.",
        run: b_float,
    },
    Decl {
        builtin: B::Bool,
        min: 0,
        max: 1,
        doc: "Whether a value is true.",
        run: b_bool,
    },
    Decl {
        builtin: B::Chr,
        min: 1,
        max: 1,
        doc: "The character with a Unicode code point.",
        run: b_chr,
    },
    Decl {
        builtin: B::Ord,
        min: 1,
        max: 1,
        doc: "The Unicode code point of a one-character string.",
        run: b_ord,
    },
    Decl {
        builtin: B::Min,
        min: 1,
        max: usize::MAX,
        doc: "The smallest argument, or item of one iterable (`key=`, `default=`).",
        run: b_min,
    },
    Decl {
        builtin: B::Max,
        min: 1,
        max: usize::MAX,
        doc: "The largest argument, or item of one iterable (`key=`, `default=`).",
        run: b_min,
    },
    Decl {
        builtin: B::Sum,
        min: 1,
        max: 2,
        doc: "The sum of an iterable's numbers, plus `start`.",
        run: b_sum,
    },
    Decl {
        builtin: B::Sorted,
        min: 1,
        max: 1,
        doc: "A sorted list of an iterable's items (`key=`, `reverse=`), stably.",
        run: b_sorted,
    },
    Decl {
        builtin: B::Reversed,
        min: 1,
        max: 1,
        doc: "A list of an iterable's items in reverse order.",
        run: b_reversed,
    },
    Decl {
        builtin: B::List,
        min: 0,
        max: 1,
        doc: "A list of an iterable's items.",
        run: b_list,
    },
    Decl {
        builtin: B::Tuple,
        min: 0,
        max: 1,
        doc: "A tuple of an iterable's items.",
        run: b_list,
    },
    Decl {
        builtin: B::Set,
        min: 0,
        max: 1,
        doc: "A list of an iterable's distinct items, in first-seen order (models have no sets).",
        run: b_list,
    },
    Decl {
        builtin: B::Dict,
        min: 0,
        max: 1,
        doc: "A dict from pairs or another dict, and keyword arguments.",
        run: b_dict,
    },
    Decl {
        builtin: B::Abs,
        min: 1,
        max: 1,
        doc: "The absolute value of a number or quantity.",
        run: b_abs,
    },
    Decl {
        builtin: B::Round,
        min: 1,
        max: 2,
        doc: "A number rounded to `ndigits` (0) places, halves to even.",
        run: b_round,
    },
    Decl {
        builtin: B::Any,
        min: 1,
        max: 1,
        doc: "Whether any item of an iterable is true.",
        run: b_any,
    },
    Decl {
        builtin: B::All,
        min: 1,
        max: 1,
        doc: "Whether every item of an iterable is true.",
        run: b_any,
    },
    Decl {
        builtin: B::Map,
        min: 2,
        max: usize::MAX,
        doc: "A list of a function applied to the items of iterables.",
        run: b_map,
    },
    Decl {
        builtin: B::Filter,
        min: 2,
        max: 2,
        doc: "A list of the items for which a function (or the item itself) is true.",
        run: b_filter,
    },
    Decl {
        builtin: B::Hex,
        min: 1,
        max: 1,
        doc: "An integer in hexadecimal (`0x...`).",
        run: b_hex,
    },
    Decl {
        builtin: B::Divmod,
        min: 2,
        max: 2,
        doc: "Floor quotient and remainder, as a tuple.",
        run: b_divmod,
    },
    Decl {
        builtin: B::Isinstance,
        min: 2,
        max: 2,
        doc: "Whether a value is of a type (`int`, `str`, `list`, ... or a tuple of them).",
        run: b_isinstance,
    },
];

fn b_print(ev: &mut Eval, b: Builtin, a: &mut Args) -> R<Value> {
    let name = b.name();
    let span = a.span;
    Ok({
        let sep = match ev.kwarg(a, "sep") {
            Some(v) => ev.to_str(&v, span)?,
            None => " ".into(),
        };
        let end = match ev.kwarg(a, "end") {
            Some(v) => ev.to_str(&v, span)?,
            None => "\n".into(),
        };
        ev.no_kwargs(a, name)?;
        let parts = a
            .pos
            .iter()
            .map(|v| ev.to_str(v, span))
            .collect::<R<Vec<String>>>()?;
        let mut line = parts.join(&sep);
        line.push_str(&end);
        ev.charge(line.len() as u64, span)?;
        let line = line.strip_suffix('\n').unwrap_or(&line).to_string();
        ev.printed.push(line);
        Value::None
    })
}

fn b_range(ev: &mut Eval, b: Builtin, a: &mut Args) -> R<Value> {
    let name = b.name();
    Ok({
        ev.no_kwargs(a, name)?;
        let ints = (0..a.pos.len())
            .map(|i| ev.int_arg(a, i, name))
            .collect::<R<Vec<_>>>()?;
        let (start, stop, step) = match ints[..] {
            [stop] => (0, stop, 1),
            [start, stop] => (start, stop, 1),
            [start, stop, step] => (start, stop, step),
            _ => unreachable!("arity checked"),
        };
        if step == 0 {
            return Err(ev.fail(
                code::E0216,
                a.span_of(2),
                "range() step must not be zero",
                "zero step",
            ));
        }
        Value::Range(Rc::new((start, stop, step)))
    })
}

fn b_len(ev: &mut Eval, _b: Builtin, a: &mut Args) -> R<Value> {
    let span = a.span;
    Ok({
        Value::Int(match &a.pos[0] {
            Value::List(l) => l.borrow().len() as i64,
            Value::Tuple(t) => t.len() as i64,
            Value::Str(s) => s.chars().count() as i64,
            Value::Dict(d) => d.borrow().len() as i64,
            Value::Range(r) => range_len(r.0, r.1, r.2),
            v @ (Value::Link(_) | Value::Topo(_)) => {
                let v = v.clone();
                ev.iterate(&v, span)?.len() as i64
            }
            other => {
                return Err(ev.type_error(
                    a.span_of(0),
                    format!("a {} has no len()", other.type_name()),
                ));
            }
        })
    })
}

fn b_enumerate(ev: &mut Eval, b: Builtin, a: &mut Args) -> R<Value> {
    let name = b.name();
    let span = a.span;
    Ok({
        let start = match ev.kwarg(a, "start") {
            Some(Value::Int(s)) => s,
            Some(_) => return Err(ev.type_error(span, "enumerate start must be an int")),
            None => 0,
        };
        ev.no_kwargs(a, name)?;
        let start = if a.pos.len() == 2 {
            ev.int_arg(a, 1, name)?
        } else {
            start
        };
        let items = ev.iterate(&a.pos[0], a.span_of(0))?;
        ev.charge(items.len() as u64 * 48, span)?;
        Value::list(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| Value::tuple(vec![Value::Int(start + i as i64), v]))
                .collect(),
        )
    })
}

fn b_zip(ev: &mut Eval, b: Builtin, a: &mut Args) -> R<Value> {
    let name = b.name();
    let span = a.span;
    Ok({
        ev.no_kwargs(a, name)?;
        let lists = (0..a.pos.len())
            .map(|i| ev.iterate(&a.pos[i].clone(), a.span_of(i)))
            .collect::<R<Vec<_>>>()?;
        let n = lists.iter().map(Vec::len).min().unwrap_or(0);
        ev.charge(n as u64 * 48, span)?;
        Value::list(
            (0..n)
                .map(|i| Value::tuple(lists.iter().map(|l| l[i].clone()).collect()))
                .collect(),
        )
    })
}

fn b_str(ev: &mut Eval, _b: Builtin, a: &mut Args) -> R<Value> {
    let span = a.span;
    Ok({
        match a.pos.first() {
            Some(v) => Value::str(&ev.to_str(v, span)?),
            None => Value::str(""),
        }
    })
}

fn b_repr(ev: &mut Eval, _b: Builtin, a: &mut Args) -> R<Value> {
    let span = a.span;
    Ok(Value::str(&ev.repr(&a.pos[0], span)?))
}

fn b_int(ev: &mut Eval, _b: Builtin, a: &mut Args) -> R<Value> {
    let span = a.span;
    Ok({
        let base = ev.kwarg(a, "base");
        let base = match (a.pos.get(1), base) {
            (Some(Value::Int(b)), _) => *b as u32,
            (None, Some(Value::Int(b))) => b as u32,
            _ => 10,
        };
        match a.pos.first() {
            None => Value::Int(0),
            Some(Value::Int(i)) => Value::Int(*i),
            Some(Value::Bool(b)) => Value::Int(*b as i64),
            Some(Value::Float(f)) => {
                if !f.is_finite() || f.abs() >= 9.2e18 {
                    return Err(ev.overflow(span));
                }
                Value::Int(f.trunc() as i64)
            }
            Some(Value::Quantity(q, _)) => Value::Int(*q),
            Some(Value::Str(s)) => {
                let t = s.trim().replace('_', "");
                let (neg, digits) = match t.strip_prefix('-') {
                    Some(d) => (true, d),
                    None => (false, t.strip_prefix('+').unwrap_or(&t)),
                };
                let digits = if base == 16 {
                    digits.trim_start_matches("0x")
                } else {
                    digits
                };
                match i64::from_str_radix(digits, base.clamp(2, 36)) {
                    Ok(v) if !digits.is_empty() => Value::Int(if neg { -v } else { v }),
                    _ => {
                        return Err(ev.fail(
                            code::E0216,
                            a.span_of(0),
                            format!("invalid literal for int(): {}", py_repr_str(s)),
                            "not an integer",
                        ));
                    }
                }
            }
            Some(other) => {
                return Err(ev.type_error(
                    a.span_of(0),
                    format!("int() cannot convert a {}", other.type_name()),
                ));
            }
        }
    })
}

fn b_float(ev: &mut Eval, b: Builtin, a: &mut Args) -> R<Value> {
    let name = b.name();
    Ok({
        match a.pos.first() {
            None => Value::Float(0.0),
            Some(Value::Int(_) | Value::Bool(_) | Value::Float(_)) => {
                Value::Float(ev.num_arg(a, 0, name)?)
            }
            Some(Value::Str(s)) => match s.trim().parse::<f64>() {
                Ok(f) => Value::Float(f),
                Err(_) => {
                    return Err(ev.fail(
                        code::E0216,
                        a.span_of(0),
                        format!("could not convert {} to float", py_repr_str(s)),
                        "not a number",
                    ));
                }
            },
            Some(other) => {
                return Err(ev.type_error(
                    a.span_of(0),
                    format!("float() cannot convert a {}", other.type_name()),
                ));
            }
        }
    })
}

fn b_bool(_ev: &mut Eval, _b: Builtin, a: &mut Args) -> R<Value> {
    Ok(Value::Bool(a.pos.first().is_some_and(Value::truthy)))
}

fn b_chr(ev: &mut Eval, b: Builtin, a: &mut Args) -> R<Value> {
    let name = b.name();
    Ok({
        let i = ev.int_arg(a, 0, name)?;
        let c = u32::try_from(i)
            .ok()
            .and_then(char::from_u32)
            .ok_or_else(|| {
                ev.fail(
                    code::E0216,
                    a.span_of(0),
                    format!("chr() arg {i} is not a character"),
                    "out of range",
                )
            })?;
        Value::str(c.encode_utf8(&mut [0; 4]))
    })
}

fn b_ord(ev: &mut Eval, b: Builtin, a: &mut Args) -> R<Value> {
    let name = b.name();
    Ok({
        let s = ev.str_arg(a, 0, name)?;
        let mut it = s.chars();
        match (it.next(), it.next()) {
            (Some(c), None) => Value::Int(c as i64),
            _ => {
                return Err(ev.type_error(a.span_of(0), "ord() needs a string of one character"));
            }
        }
    })
}

fn b_min(ev: &mut Eval, b: Builtin, a: &mut Args) -> R<Value> {
    let name = b.name();
    let span = a.span;
    Ok({
        let key = ev.kwarg(a, "key");
        let default = ev.kwarg(a, "default");
        ev.no_kwargs(a, name)?;
        let items = if a.pos.len() == 1 {
            ev.iterate(&a.pos[0].clone(), a.span_of(0))?
        } else {
            a.pos.to_vec()
        };
        if items.is_empty() {
            return default.ok_or_else(|| {
                ev.fail(
                    code::E0216,
                    span,
                    format!("{name}() of an empty sequence"),
                    "empty",
                )
            });
        }
        let keys = ev.keys_of(&items, key, span)?;
        let mut best = 0;
        for i in 1..items.len() {
            let ord = ev.order(&keys[i], &keys[best], span)?.ok_or_else(|| {
                ev.type_error(
                    span,
                    format!(
                        "{name}() cannot compare {} with {}",
                        keys[i].type_name(),
                        keys[best].type_name()
                    ),
                )
            })?;
            if (b == B::Min && ord == Ordering::Less) || (b == B::Max && ord == Ordering::Greater) {
                best = i;
            }
        }
        items[best].clone()
    })
}

fn b_sum(ev: &mut Eval, b: Builtin, a: &mut Args) -> R<Value> {
    let name = b.name();
    let span = a.span;
    Ok({
        ev.no_kwargs(a, name)?;
        let items = ev.iterate(&a.pos[0].clone(), a.span_of(0))?;
        let mut acc = a.pos.get(1).cloned().unwrap_or(Value::Int(0));
        for v in items {
            acc = ev.binary(BinOp::Add, acc, v, span, span, span)?;
        }
        acc
    })
}

fn b_sorted(ev: &mut Eval, b: Builtin, a: &mut Args) -> R<Value> {
    let name = b.name();
    let span = a.span;
    Ok({
        let key = ev.kwarg(a, "key");
        let rev = ev.kwarg(a, "reverse").is_some_and(|v| v.truthy());
        ev.no_kwargs(a, name)?;
        let items = ev.iterate(&a.pos[0].clone(), a.span_of(0))?;
        Value::list(ev.sort_values(items, key, rev, span)?)
    })
}

fn b_reversed(ev: &mut Eval, _b: Builtin, a: &mut Args) -> R<Value> {
    Ok({
        let mut items = ev.iterate(&a.pos[0].clone(), a.span_of(0))?;
        items.reverse();
        Value::list(items)
    })
}

fn b_list(ev: &mut Eval, b: Builtin, a: &mut Args) -> R<Value> {
    let name = b.name();
    let span = a.span;
    Ok({
        ev.no_kwargs(a, name)?;
        let mut items = match a.pos.first() {
            Some(v) => ev.iterate(&v.clone(), a.span_of(0))?,
            None => Vec::new(),
        };
        if b == B::Set {
            // No set type: a deduplicated list, in first-seen order so output stays deterministic.
            let mut seen: Vec<Value> = Vec::new();
            for v in std::mem::take(&mut items) {
                if !ev.any_eq(&seen, &v, span)? {
                    seen.push(v.clone());
                    items.push(v);
                }
            }
        }
        if b == B::Tuple {
            Value::tuple(items)
        } else {
            Value::list(items)
        }
    })
}

fn b_dict(ev: &mut Eval, _b: Builtin, a: &mut Args) -> R<Value> {
    let span = a.span;
    Ok({
        let mut map = IndexMap::new();
        if let Some(v) = a.pos.first().cloned() {
            match v {
                Value::Dict(d) => map = d.borrow().clone(),
                other => {
                    for item in ev.iterate(&other, a.span_of(0))? {
                        let pair = ev.iterate(&item, a.span_of(0))?;
                        if pair.len() != 2 {
                            return Err(
                                ev.type_error(a.span_of(0), "dict() needs pairs of key and value")
                            );
                        }
                        let k = ev.key(&pair[0], a.span_of(0))?;
                        map.insert(k, pair[1].clone());
                    }
                }
            }
        }
        for (k, v, _) in a.kw.drain(..) {
            map.insert(Key::Str(ev.name_rc(k)), v);
        }
        ev.charge(map.len() as u64 * 48, span)?;
        Value::dict(map)
    })
}

fn b_abs(ev: &mut Eval, _b: Builtin, a: &mut Args) -> R<Value> {
    let span = a.span;
    Ok({
        match &a.pos[0] {
            Value::Int(i) => Value::Int(i.checked_abs().ok_or_else(|| ev.overflow(span))?),
            Value::Float(f) => Value::Float(f.abs()),
            Value::Quantity(q, u) => Value::Quantity(q.abs(), *u),
            other => {
                return Err(
                    ev.type_error(a.span_of(0), format!("abs() of a {}", other.type_name()))
                );
            }
        }
    })
}

fn b_round(ev: &mut Eval, b: Builtin, a: &mut Args) -> R<Value> {
    let name = b.name();
    let span = a.span;
    Ok({
        let x = ev.num_arg(a, 0, name)?;
        match a.pos.get(1) {
            None | Some(Value::None) => {
                // Python rounds half to even.
                let r = x.round_ties_even();
                if !r.is_finite() || r.abs() >= 9.2e18 {
                    return Err(ev.overflow(span));
                }
                Value::Int(r as i64)
            }
            Some(_) => {
                let n = ev.int_arg(a, 1, name)?.clamp(-300, 300) as i32;
                let m = 10f64.powi(n);
                Value::Float((x * m).round_ties_even() / m)
            }
        }
    })
}

fn b_any(ev: &mut Eval, b: Builtin, a: &mut Args) -> R<Value> {
    Ok({
        let items = ev.iterate(&a.pos[0].clone(), a.span_of(0))?;
        Value::Bool(if b == B::Any {
            items.iter().any(Value::truthy)
        } else {
            items.iter().all(Value::truthy)
        })
    })
}

fn b_map(ev: &mut Eval, _b: Builtin, a: &mut Args) -> R<Value> {
    let span = a.span;
    Ok({
        let f = a.pos[0].clone();
        let lists = (1..a.pos.len())
            .map(|i| ev.iterate(&a.pos[i].clone(), a.span_of(i)))
            .collect::<R<Vec<_>>>()?;
        let n = lists.iter().map(Vec::len).min().unwrap_or(0);
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let args = Args {
                pos: lists.iter().map(|l| l[i].clone()).collect(),
                pos_spans: PosSpans::new(),
                kw: Vec::new(),
                span,
            };
            out.push(ev.call(f.clone(), args, a.span_of(0))?);
        }
        Value::list(out)
    })
}

fn b_filter(ev: &mut Eval, _b: Builtin, a: &mut Args) -> R<Value> {
    let span = a.span;
    Ok({
        let f = a.pos[0].clone();
        let items = ev.iterate(&a.pos[1].clone(), a.span_of(1))?;
        let mut out = Vec::new();
        for v in items {
            let keep = match &f {
                Value::None => v.truthy(),
                _ => {
                    let args = Args {
                        pos: smallvec::smallvec![v.clone()],
                        pos_spans: PosSpans::new(),
                        kw: Vec::new(),
                        span,
                    };
                    ev.call(f.clone(), args, a.span_of(0))?.truthy()
                }
            };
            if keep {
                out.push(v);
            }
        }
        Value::list(out)
    })
}

fn b_hex(ev: &mut Eval, b: Builtin, a: &mut Args) -> R<Value> {
    let name = b.name();
    Ok({
        let i = ev.int_arg(a, 0, name)?;
        Value::str(&if i < 0 {
            format!("-0x{:x}", i.unsigned_abs())
        } else {
            format!("0x{i:x}")
        })
    })
}

fn b_divmod(ev: &mut Eval, _b: Builtin, a: &mut Args) -> R<Value> {
    let span = a.span;
    Ok({
        let q = ev.binary(
            BinOp::FloorDiv,
            a.pos[0].clone(),
            a.pos[1].clone(),
            a.span_of(0),
            a.span_of(1),
            span,
        )?;
        let r = ev.binary(
            BinOp::Mod,
            a.pos[0].clone(),
            a.pos[1].clone(),
            a.span_of(0),
            a.span_of(1),
            span,
        )?;
        Value::tuple(vec![q, r])
    })
}

fn b_isinstance(_ev: &mut Eval, _b: Builtin, a: &mut Args) -> R<Value> {
    Ok({
        let types = match &a.pos[1] {
            Value::Tuple(t) => t.to_vec(),
            other => vec![other.clone()],
        };
        let v = &a.pos[0];
        Value::Bool(types.iter().any(|t| match t {
            Value::Builtin(B::Int) => matches!(v, Value::Int(_) | Value::Bool(_)),
            Value::Builtin(B::Float) => matches!(v, Value::Float(_)),
            Value::Builtin(B::Str) => matches!(v, Value::Str(_)),
            Value::Builtin(B::List) => matches!(v, Value::List(_)),
            Value::Builtin(B::Tuple) => matches!(v, Value::Tuple(_)),
            Value::Builtin(B::Dict) => matches!(v, Value::Dict(_)),
            Value::Builtin(B::Bool) => matches!(v, Value::Bool(_)),
            _ => false,
        }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every builtin is dispatched before the table or declared in it, once,
    /// with a line of documentation.
    #[test]
    fn every_builtin_is_declared_once() {
        for &b in Builtin::ALL {
            let early = unit_of(b).is_some()
                || matches!(
                    b,
                    B::Facility
                        | B::NicSpec
                        | B::GpuSpec
                        | B::Network
                        | B::Topology
                        | B::Experiment
                        | B::Ip4
                        | B::Param
                        | B::Ddr3
                        | B::Ddr4
                        | B::Ddr5
                        | B::Gen1
                        | B::Gen2
                        | B::Gen3
                        | B::Gen4
                        | B::Gen5
                        | B::Gen6
                );
            let rows = TABLE.iter().filter(|d| d.builtin == b).count();
            assert_eq!(rows, usize::from(!early), "`{}`", b.name());
        }
        for d in TABLE {
            assert!(
                d.min <= d.max && d.doc.ends_with('.'),
                "`{}`",
                d.builtin.name()
            );
        }
    }
}
