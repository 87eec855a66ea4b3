//! Operators, builtin functions, str/list/dict methods and string formatting,
//! with Python's semantics where models can observe them (floor division,
//! modulo signs, float repr, dict order) and 64-bit integers that report
//! overflow instead of wrapping.

use mx_diag::code;
use std::cell::RefCell;
use std::cmp::Ordering;
use std::rc::Rc;

use indexmap::IndexMap;
use mx_diag::Diagnostic;
use mx_xir::{Membus, Pcie, Span, Unit};

use crate::ast::*;
use crate::eval::VALUE_BYTES;
use crate::eval::{Args, Eval, Flow, R, did_you_mean};
use crate::methods;
use crate::value::*;

impl Eval<'_> {
    // ---- operators -------------------------------------------------------

    fn overflow(&self, span: Span) -> Flow {
        Diagnostic::error(code::E0216, "integer overflow")
            .primary(span.range(), "result does not fit in 64 bits")
            .help(".mx integers are 64-bit; use smaller values or floats")
            .into()
    }

    fn div_zero(&self, span: Span) -> Flow {
        self.fail(code::E0216, span, "division by zero", "divisor is zero")
    }

    pub fn unary(&mut self, op: UnOp, v: Value, vspan: Span, span: Span) -> R<Value> {
        Ok(match (op, &v) {
            (UnOp::Not, _) => Value::Bool(!v.truthy()),
            (UnOp::Neg, Value::Int(i)) => {
                Value::Int(i.checked_neg().ok_or_else(|| self.overflow(span))?)
            }
            (UnOp::Neg, Value::Bool(b)) => Value::Int(-(*b as i64)),
            (UnOp::Neg, Value::Float(f)) => Value::Float(-f),
            (UnOp::Neg, Value::Quantity(q, u)) => {
                Value::Quantity(q.checked_neg().ok_or_else(|| self.overflow(span))?, *u)
            }
            (UnOp::Pos, Value::Int(_) | Value::Float(_) | Value::Quantity(..)) => v,
            (UnOp::Pos, Value::Bool(b)) => Value::Int(*b as i64),
            (UnOp::Inv, Value::Int(i)) => Value::Int(!i),
            (UnOp::Inv, Value::Bool(b)) => Value::Int(!(*b as i64)),
            _ => {
                let sym = match op {
                    UnOp::Neg => "-",
                    UnOp::Pos => "+",
                    UnOp::Inv => "~",
                    UnOp::Not => "not",
                };
                return Err(self.type_error(
                    vspan,
                    format!("bad operand type for unary {sym}: {}", v.type_name()),
                ));
            }
        })
    }

    pub fn binary(
        &mut self,
        op: BinOp,
        a: Value,
        b: Value,
        ls: Span,
        rs: Span,
        span: Span,
    ) -> R<Value> {
        use BinOp::*;
        use Value as V;
        let a = if let V::Bool(x) = a {
            V::Int(x as i64)
        } else {
            a
        };
        let b = if let V::Bool(x) = b {
            V::Int(x as i64)
        } else {
            b
        };
        Ok(match (&a, &b) {
            (V::Int(x), V::Int(y)) => {
                let (x, y) = (*x, *y);
                match op {
                    Add => V::Int(x.checked_add(y).ok_or_else(|| self.overflow(span))?),
                    Sub => V::Int(x.checked_sub(y).ok_or_else(|| self.overflow(span))?),
                    Mul => V::Int(x.checked_mul(y).ok_or_else(|| self.overflow(span))?),
                    Div => {
                        if y == 0 {
                            return Err(self.div_zero(rs));
                        }
                        V::Float(x as f64 / y as f64)
                    }
                    FloorDiv => {
                        if y == 0 {
                            return Err(self.div_zero(rs));
                        }
                        V::Int(floor_div(x, y).ok_or_else(|| self.overflow(span))?)
                    }
                    Mod => {
                        if y == 0 {
                            return Err(self.div_zero(rs));
                        }
                        V::Int(py_mod(x, y))
                    }
                    Pow => {
                        if y < 0 {
                            V::Float((x as f64).powf(y as f64))
                        } else {
                            let e = u32::try_from(y).map_err(|_| self.overflow(span))?;
                            V::Int(x.checked_pow(e).ok_or_else(|| self.overflow(span))?)
                        }
                    }
                    BitOr => V::Int(x | y),
                    BitXor => V::Int(x ^ y),
                    BitAnd => V::Int(x & y),
                    Shl => {
                        if y < 0 {
                            return Err(self.fail(
                                code::E0216,
                                rs,
                                "negative shift count",
                                "negative",
                            ));
                        }
                        if y >= 64 || (x << y) >> y != x {
                            return Err(self.overflow(span));
                        }
                        V::Int(x << y)
                    }
                    Shr => {
                        if y < 0 {
                            return Err(self.fail(
                                code::E0216,
                                rs,
                                "negative shift count",
                                "negative",
                            ));
                        }
                        V::Int(x >> y.min(63))
                    }
                }
            }
            (V::Int(_) | V::Float(_), V::Int(_) | V::Float(_)) => {
                let x = as_f64(&a);
                let y = as_f64(&b);
                match op {
                    Add => V::Float(x + y),
                    Sub => V::Float(x - y),
                    Mul => V::Float(x * y),
                    Div | FloorDiv | Mod if y == 0.0 => return Err(self.div_zero(rs)),
                    Div => V::Float(x / y),
                    FloorDiv => V::Float((x / y).floor()),
                    Mod => {
                        let r = x % y;
                        V::Float(if r != 0.0 && (r < 0.0) != (y < 0.0) {
                            r + y
                        } else {
                            r
                        })
                    }
                    Pow => V::Float(x.powf(y)),
                    _ => return Err(self.operand_error(op, &a, &b, ls, rs)),
                }
            }
            (V::Str(x), V::Str(y)) if op == Add => {
                self.charge((x.len() + y.len()) as u64 + 16, span)?;
                let mut s = String::with_capacity(x.len() + y.len());
                s.push_str(x);
                s.push_str(y);
                V::Str(s.into())
            }
            (V::Str(s), V::Int(n)) | (V::Int(n), V::Str(s)) if op == Mul => {
                let n = (*n).max(0) as u128;
                self.check_size(s.len() as u128 * n, span)?;
                V::Str(s.repeat(n as usize).into())
            }
            (V::Str(f), _) if op == Mod => V::Str(self.percent(f, &b, ls, rs)?.into()),
            (V::List(x), V::List(y)) if op == Add => {
                // Charged before building, so a doubling list stops at the limit.
                self.check_size(
                    (x.borrow().len() + y.borrow().len()) as u128 * VALUE_BYTES as u128,
                    span,
                )?;
                let mut v = x.borrow().clone();
                v.extend(y.borrow().iter().cloned());
                V::list(v)
            }
            (V::Tuple(x), V::Tuple(y)) if op == Add => {
                self.check_size((x.len() + y.len()) as u128 * VALUE_BYTES as u128, span)?;
                let v: Vec<Value> = x.iter().chain(y.iter()).cloned().collect();
                Value::tuple(v)
            }
            (V::List(_) | V::Tuple(_), V::Int(n)) | (V::Int(n), V::List(_) | V::Tuple(_))
                if op == Mul =>
            {
                let seq = if matches!(a, V::Int(_)) { &b } else { &a };
                let items = self.iterate(seq, span)?;
                let n = (*n).max(0) as u128;
                self.check_size(items.len() as u128 * n * VALUE_BYTES as u128, span)?;
                let mut v = Vec::with_capacity(items.len() * n as usize);
                for _ in 0..n {
                    v.extend(items.iter().cloned());
                }
                if matches!(seq, V::List(_)) {
                    V::list(v)
                } else {
                    Value::tuple(v)
                }
            }
            (V::Dict(x), V::Dict(y)) if op == BitOr => {
                let mut m = x.borrow().clone();
                for (k, v) in y.borrow().iter() {
                    m.insert(k.clone(), v.clone());
                }
                Value::dict(m)
            }
            (V::Quantity(x, u), V::Quantity(y, w)) if u == w => match op {
                Add => V::Quantity(x.checked_add(*y).ok_or_else(|| self.overflow(span))?, *u),
                Sub => V::Quantity(x.checked_sub(*y).ok_or_else(|| self.overflow(span))?, *u),
                Div if *y == 0 => return Err(self.div_zero(rs)),
                Div => V::Float(*x as f64 / *y as f64),
                FloorDiv if *y == 0 => return Err(self.div_zero(rs)),
                FloorDiv => V::Int(floor_div(*x, *y).ok_or_else(|| self.overflow(span))?),
                _ => return Err(self.operand_error(op, &a, &b, ls, rs)),
            },
            (V::Quantity(x, u), V::Int(_) | V::Float(_))
            | (V::Int(_) | V::Float(_), V::Quantity(x, u))
                if op == Mul =>
            {
                let k = if matches!(a, V::Quantity(..)) {
                    as_f64(&b)
                } else {
                    as_f64(&a)
                };
                V::Quantity(scale(*x as f64 * k).ok_or_else(|| self.overflow(span))?, *u)
            }
            (V::Quantity(x, u), V::Int(_) | V::Float(_)) if matches!(op, Div | FloorDiv) => {
                let k = as_f64(&b);
                if k == 0.0 {
                    return Err(self.div_zero(rs));
                }
                let q = *x as f64 / k;
                V::Quantity(
                    scale(if op == FloorDiv { q.floor() } else { q })
                        .ok_or_else(|| self.overflow(span))?,
                    *u,
                )
            }
            _ => return Err(self.operand_error(op, &a, &b, ls, rs)),
        })
    }

    fn operand_error(&self, op: BinOp, a: &Value, b: &Value, ls: Span, rs: Span) -> Flow {
        let mut d = Diagnostic::error(
            code::E0203,
            format!(
                "`{}` does not apply to {} and {}",
                op.symbol(),
                a.type_name(),
                b.type_name()
            ),
        )
        .primary(ls.range(), a.type_name())
        .secondary(rs.range(), b.type_name());
        if matches!(
            (a, b),
            (Value::Str(_), Value::Int(_) | Value::Float(_))
                | (Value::Int(_) | Value::Float(_), Value::Str(_))
        ) && op == BinOp::Add
        {
            d = d.help("convert with str(...) or int(...), or use an f-string: f'n{i}'");
        } else if matches!(a, Value::Quantity(..)) || matches!(b, Value::Quantity(..)) {
            d = d.help("quantities add to quantities of the same unit and scale by plain numbers");
        }
        d.into()
    }

    pub fn compare_chain(&mut self, first: &Expr, rest: &[(CmpOp, Expr)], span: Span) -> R<Value> {
        let mut a = self.expr(first)?;
        let mut aspan = first.span;
        for (op, rhs) in rest {
            // `arch == sparc`: an unknown bare word compared with a property
            // is a bad value for it, not just an unknown name.
            let b = match (&rhs.kind, &a) {
                (ExprKind::Name(s), Value::Prop(p)) if self.lookup(*s).is_none() => {
                    let d = self.undefined(*s, rhs.span);
                    let d = self.unknown_symbol(*p, self.name(*s), rhs.span, d);
                    return self.recover(d);
                }
                _ => self.expr(rhs)?,
            };
            if matches!(a, Value::Poison) || matches!(b, Value::Poison) {
                return Ok(Value::Poison);
            }
            if matches!(a, Value::Prop(_)) || matches!(b, Value::Prop(_)) {
                if rest.len() > 1 {
                    return Err(Diagnostic::error(
                        code::E0203,
                        "a property cannot be compared in a chain",
                    )
                    .primary(span.range(), "chained comparison")
                    .help("write two constraints: `cores >= 2, cores <= 8`")
                    .into());
                }
                // A bad unit, value or property is recorded and evaluation
                // goes on; the constraint is left out.
                return match self.make_constraint(a, *op, b, aspan, rhs.span, span) {
                    Err(f) => self.recover(f),
                    ok => ok,
                };
            }
            if !self.compare(*op, &a, &b, aspan, rhs.span)? {
                return Ok(Value::Bool(false));
            }
            a = b;
            aspan = rhs.span;
        }
        Ok(Value::Bool(true))
    }

    /// `a == b`, charging the budgets as it walks; E0216 past
    /// [`MAX_COMPARE_DEPTH`] levels.
    pub fn eq(&self, a: &Value, b: &Value, span: Span) -> R<bool> {
        match eq_at(a, b, 0, &self.meter) {
            Ok(Some(eq)) => Ok(eq),
            Ok(None) => Err(Diagnostic::error(
                code::E0216,
                "these values nest too deeply to compare",
            )
            .primary(
                span.range(),
                format!("more than {MAX_COMPARE_DEPTH} levels of containers"),
            )
            .help("compare smaller parts of the structures")
            .into()),
            Err(e) => Err(self.exhausted(e, span)),
        }
    }

    /// Python's ordering of `a` and `b`, charging the budgets as it walks;
    /// `None` when they do not compare.
    pub fn order(&self, a: &Value, b: &Value, span: Span) -> R<Option<Ordering>> {
        cmp_at(a, b, 0, &self.meter).map_err(|e| self.exhausted(e, span))
    }

    pub fn compare(&mut self, op: CmpOp, a: &Value, b: &Value, ls: Span, rs: Span) -> R<bool> {
        Ok(match op {
            CmpOp::Eq => self.eq(a, b, ls.to(rs))?,
            CmpOp::Ne => !self.eq(a, b, ls.to(rs))?,
            CmpOp::Is => is_same(a, b),
            CmpOp::IsNot => !is_same(a, b),
            CmpOp::In => self.contains(b, a, rs)?,
            CmpOp::NotIn => !self.contains(b, a, rs)?,
            _ => {
                let Some(ord) = self.order(a, b, ls.to(rs))? else {
                    return Err(Diagnostic::error(
                        code::E0203,
                        format!(
                            "`{}` cannot compare {} with {}",
                            op.symbol(),
                            a.type_name(),
                            b.type_name()
                        ),
                    )
                    .primary(ls.range(), a.type_name())
                    .secondary(rs.range(), b.type_name())
                    .into());
                };
                match op {
                    CmpOp::Lt => ord == Ordering::Less,
                    CmpOp::Le => ord != Ordering::Greater,
                    CmpOp::Gt => ord == Ordering::Greater,
                    _ => ord != Ordering::Less,
                }
            }
        })
    }

    /// Whether `items` holds a value equal to `item`.
    fn any_eq(&self, items: &[Value], item: &Value, span: Span) -> R<bool> {
        for x in items {
            if self.eq(x, item, span)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn contains(&mut self, container: &Value, item: &Value, span: Span) -> R<bool> {
        Ok(match container {
            Value::List(l) => self.any_eq(&l.borrow(), item, span)?,
            Value::Tuple(t) => self.any_eq(t, item, span)?,
            Value::Str(s) => match item {
                Value::Str(sub) => s.contains(&**sub),
                other => {
                    return Err(self.type_error(
                        span,
                        format!(
                            "`in <str>` needs a str on the left, not {}",
                            other.type_name()
                        ),
                    ));
                }
            },
            Value::Dict(d) => {
                match Key::of(item, &self.meter).map_err(|e| self.exhausted(e, span))? {
                    Some(k) => d.borrow().contains_key(&k),
                    None => false,
                }
            }
            Value::Range(a, b, s) => match item {
                Value::Int(i) => {
                    let n = range_len(*a, *b, *s);
                    n > 0 && (i - a) % s == 0 && {
                        let k = (i - a) / s;
                        k >= 0 && k < n
                    }
                }
                _ => false,
            },
            Value::Link(_) | Value::Topo(_) => {
                let items = self.iterate(container, span)?;
                self.any_eq(&items, item, span)?
            }
            other => {
                return Err(
                    self.type_error(span, format!("a {} has no members", other.type_name()))
                );
            }
        })
    }

    // ---- conversion to text ----------------------------------------------

    /// `str(v)`, charging the budgets for every node walked and byte written.
    pub fn to_str(&self, v: &Value, span: Span) -> R<String> {
        match v {
            Value::Str(s) => Ok(s.to_string()),
            Value::Node(n) => Ok(self.model.node_name(*n).to_string()),
            _ => self.repr(v, span),
        }
    }

    /// `repr(v)`, charging the budgets for every node walked and byte written.
    pub fn repr(&self, v: &Value, span: Span) -> R<String> {
        let mut out = String::new();
        self.repr_into(v, &mut out, 0, &self.meter)
            .map_err(|e| self.exhausted(e, span))?;
        Ok(out)
    }

    /// A repr for messages: cut short (with `...`) past about 200 bytes, so
    /// a diagnostic about a huge value costs little.
    pub fn repr_brief(&self, v: &Value) -> String {
        let mut out = String::new();
        if self
            .repr_into(v, &mut out, 0, &Meter::new(10_000, 200))
            .is_err()
        {
            out.push_str("...");
        }
        out
    }

    /// `str(v)` for messages, cut short like [`Eval::repr_brief`].
    pub fn str_brief(&self, v: &Value) -> String {
        match v {
            Value::Str(s) if s.len() <= 200 => s.to_string(),
            Value::Node(n) => self.model.node_name(*n).to_string(),
            _ => self.repr_brief(v),
        }
    }

    fn repr_into(
        &self,
        v: &Value,
        out: &mut String,
        depth: usize,
        m: &Meter,
    ) -> Result<(), Exhausted> {
        if depth > 50 {
            out.push_str("...");
            return m.charge(3);
        }
        m.step()?;
        let before = out.len();
        let seq =
            |out: &mut String, items: &[Value], open: &str, close: &str| -> Result<(), Exhausted> {
                out.push_str(open);
                for (i, x) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                        m.charge(2)?;
                    }
                    self.repr_into(x, out, depth + 1, m)?;
                }
                if open == "(" && items.len() == 1 {
                    out.push(',');
                }
                out.push_str(close);
                m.charge(3)
            };
        match v {
            Value::None => out.push_str("None"),
            Value::Bool(b) => out.push_str(if *b { "True" } else { "False" }),
            Value::Int(i) => out.push_str(&i.to_string()),
            Value::Float(f) => out.push_str(&fmt_float(*f)),
            Value::Str(s) => out.push_str(&py_repr_str(s)),
            Value::List(l) => return seq(out, &l.borrow(), "[", "]"),
            Value::Tuple(t) => return seq(out, t, "(", ")"),
            Value::Dict(d) => {
                out.push('{');
                for (i, (k, v)) in d.borrow().iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    self.repr_into(&k.value(), out, depth + 1, m)?;
                    out.push_str(": ");
                    m.charge(4)?;
                    self.repr_into(v, out, depth + 1, m)?;
                }
                out.push('}');
                return m.charge(2);
            }
            Value::Range(a, b, s) => {
                if *s == 1 {
                    out.push_str(&format!("range({a}, {b})"));
                } else {
                    out.push_str(&format!("range({a}, {b}, {s})"));
                }
            }
            Value::Func(c) => out.push_str(&format!("<function {}>", self.name(c.def.name))),
            Value::Builtin(b) => out.push_str(&format!("<built-in function {}>", b.name())),
            Value::Method(m) => out.push_str(&format!("<method {}>", self.name(m.1))),
            Value::Quantity(q, u) => out.push_str(&fmt_quantity(*q, *u)),
            Value::Membus(m) => out.push_str(&format!("ddr{}({})", m.ddr, m.rate)),
            Value::Pcie(p) => out.push_str(&format!("gen{}({})", p.r#gen, p.lanes)),
            Value::Prop(p) => out.push_str(crate::props::PROPS[*p as usize].name),
            Value::Group(g) => out.push_str(g),
            Value::Sym(s) => out.push_str(s),
            Value::Constraint(c) => out.push_str(self.text(c.span)),
            Value::Topo(t) => out.push_str(&format!(
                "<topology {}>",
                py_repr_str(self.model.topo_name(*t))
            )),
            Value::Node(n) => {
                out.push_str(&format!("<node {}>", py_repr_str(self.model.node_name(*n))))
            }
            Value::Link(l) => out.push_str(&format!("<link {}>", self.model.link_name(*l))),
            Value::Endpoint(l, e) => out.push_str(&format!(
                "<endpoint {} on {}>",
                self.model.endpoint_node_name(*l, *e),
                self.model.link_name(*l)
            )),
            Value::Socket(l, e) => out.push_str(&format!(
                "<socket {} on {}>",
                self.model.endpoint_node_name(*l, *e),
                self.model.link_name(*l)
            )),
            Value::Module(m) => out.push_str(&format!("<module {m}>")),
            Value::Facility(f) => out.push_str(&format!(
                "<facility {}>",
                py_repr_str(&self.fac.facilities[*f as usize].0)
            )),
            Value::Device(d) => out.push_str(&format!(
                "<device {}>",
                py_repr_str(&self.fac.devices[*d as usize].name)
            )),
            Value::Port(d, p) => out.push_str(&format!(
                "<port {} of {}>",
                p,
                py_repr_str(&self.fac.devices[*d as usize].name)
            )),
            Value::Poison => out.push_str("<error>"),
        }
        m.charge((out.len() - before) as u64)
    }

    /// `format(v, spec)`: the format-spec mini-language for str, int and float.
    pub fn format_value(&self, v: &Value, spec: &str, span: Span) -> R<String> {
        if spec.is_empty() {
            return self.to_str(v, span);
        }
        let bad = || -> Flow {
            Diagnostic::error(code::E0216, format!("invalid format spec `{spec}` for a {}", v.type_name()))
                .primary(span.range(), "formatted here")
                .help("supported: [[fill]align][sign][0][width][,][.precision][type] with types s d x X o b f e g %")
                .into()
        };
        let s = parse_spec(spec).ok_or_else(bad)?;
        let v = if let Value::Bool(b) = v {
            if s.ty.is_some() {
                Value::Int(*b as i64)
            } else {
                v.clone()
            }
        } else {
            v.clone()
        };
        let (body, numeric) = match (&v, s.ty) {
            (Value::Str(x), None | Some('s')) => {
                let t: String = match s.precision {
                    Some(p) => x.chars().take(p).collect(),
                    None => x.to_string(),
                };
                (t, false)
            }
            (Value::Int(i), None | Some('d')) => {
                (group(&i.unsigned_abs().to_string(), s.grouping), true)
            }
            (Value::Int(i), Some('x')) => (format!("{:x}", i.unsigned_abs()), true),
            (Value::Int(i), Some('X')) => (format!("{:X}", i.unsigned_abs()), true),
            (Value::Int(i), Some('o')) => (format!("{:o}", i.unsigned_abs()), true),
            (Value::Int(i), Some('b')) => (format!("{:b}", i.unsigned_abs()), true),
            (Value::Int(i), Some('c')) => (
                char::from_u32(*i as u32).ok_or_else(bad)?.to_string(),
                false,
            ),
            (Value::Int(_) | Value::Float(_), Some('f' | 'F' | 'e' | 'E' | 'g' | 'G' | '%'))
            | (Value::Float(_), None) => {
                let f = as_f64(&v).abs();
                let p = s.precision.unwrap_or(6);
                let t = match s.ty {
                    Some('f' | 'F') => group_float(&format!("{f:.p$}"), s.grouping),
                    Some('e') => py_exp(&format!("{f:.p$e}")),
                    Some('E') => py_exp(&format!("{f:.p$e}")).to_uppercase(),
                    Some('%') => format!("{:.p$}%", f * 100.0),
                    Some('g' | 'G') => {
                        let p = p.max(1);
                        let exp = if f == 0.0 {
                            0
                        } else {
                            f.log10().floor() as i32
                        };
                        if exp < -4 || exp >= p as i32 {
                            py_exp(&format!("{f:.*e}", p - 1))
                        } else {
                            let t = format!("{f:.*}", (p as i32 - 1 - exp).max(0) as usize);
                            if t.contains('.') {
                                t.trim_end_matches('0').trim_end_matches('.').to_string()
                            } else {
                                t
                            }
                        }
                    }
                    _ => match s.precision {
                        Some(p) => format!("{f:.p$}"),
                        None => fmt_float(f),
                    },
                };
                (t, true)
            }
            (Value::Str(_), Some(_)) | (Value::Int(_), Some(_)) | (Value::Float(_), Some(_)) => {
                return Err(bad());
            }
            (_, None) => (self.to_str(&v, span)?, false),
            _ => return Err(bad()),
        };
        let negative = match &v {
            Value::Int(i) => *i < 0,
            Value::Float(f) => f.is_sign_negative() && *f != 0.0,
            _ => false,
        };
        let sign = if !numeric {
            ""
        } else if negative {
            "-"
        } else {
            match s.sign {
                Some('+') => "+",
                Some(' ') => " ",
                _ => "",
            }
        };
        let prefix = if s.alt && numeric {
            match s.ty {
                Some('x') => "0x",
                Some('X') => "0X",
                Some('o') => "0o",
                Some('b') => "0b",
                _ => "",
            }
        } else {
            ""
        };
        let len = sign.len() + prefix.len() + body.chars().count();
        let width = s.width.unwrap_or(0);
        if len >= width {
            return Ok(format!("{sign}{prefix}{body}"));
        }
        let pad = width - len;
        let fill = s.fill.unwrap_or(if s.zero && numeric { '0' } else { ' ' });
        let align = s.align.unwrap_or(if s.zero && numeric {
            '='
        } else if numeric {
            '>'
        } else {
            '<'
        });
        let f = |n: usize| std::iter::repeat_n(fill, n).collect::<String>();
        Ok(match align {
            '<' => format!("{sign}{prefix}{body}{}", f(pad)),
            '^' => format!("{}{sign}{prefix}{body}{}", f(pad / 2), f(pad - pad / 2)),
            '=' => format!("{sign}{prefix}{}{body}", f(pad)),
            _ => format!("{}{sign}{prefix}{body}", f(pad)),
        })
    }

    /// `fmt % args`, printf-style.
    fn percent(&mut self, fmt: &str, args: &Value, ls: Span, rs: Span) -> R<String> {
        let items: Vec<Value> = match args {
            Value::Tuple(t) => t.to_vec(),
            other => vec![other.clone()],
        };
        let dict = match args {
            Value::Dict(d) => Some(d.clone()),
            _ => None,
        };
        let mut next = 0;
        let mut out = String::new();
        let mut chars = fmt.chars().peekable();
        let bad = |msg: &str| -> Flow {
            Diagnostic::error(code::E0216, format!("bad `%` format: {msg}"))
                .primary(ls.range(), "this format")
                .secondary(rs.range(), "these arguments")
                .into()
        };
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let mut spec = String::new();
            let mut key = None;
            if chars.peek() == Some(&'(') {
                chars.next();
                let mut k = String::new();
                for c in chars.by_ref() {
                    if c == ')' {
                        break;
                    }
                    k.push(c);
                }
                key = Some(k);
            }
            let mut conv = None;
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() || c == '%' {
                    conv = Some(c);
                    break;
                }
                spec.push(c);
            }
            let Some(conv) = conv else {
                return Err(bad("incomplete format"));
            };
            if conv == '%' {
                out.push('%');
                continue;
            }
            let v = match &key {
                Some(k) => {
                    let d = dict.as_ref().ok_or_else(|| bad("`%(name)` needs a dict"))?;
                    let got = d.borrow().get(&Key::Str(k.as_str().into())).cloned();
                    got.ok_or_else(|| bad(&format!("key '{k}' is missing")))?
                }
                None => {
                    let v = items
                        .get(next)
                        .cloned()
                        .ok_or_else(|| bad("not enough arguments"))?;
                    next += 1;
                    v
                }
            };
            // Translate printf flags to the format mini-language.
            let (mut flags, mut rest) = (String::new(), spec.as_str());
            while let Some(c) = rest.chars().next().filter(|c| "-+ #0".contains(*c)) {
                flags.push(c);
                rest = &rest[1..];
            }
            let mut mini = String::new();
            if flags.contains('-') {
                mini.push('<');
            }
            if flags.contains('+') {
                mini.push('+');
            } else if flags.contains(' ') {
                mini.push(' ');
            }
            if flags.contains('#') {
                mini.push('#');
            }
            if flags.contains('0') && !flags.contains('-') {
                mini.push('0');
            }
            mini.push_str(rest);
            let (v, ty) = match conv {
                's' => (Value::str(&self.to_str(&v, rs)?), ""),
                'r' => (Value::str(&self.repr(&v, rs)?), ""),
                'd' | 'i' | 'u' => match v {
                    Value::Float(f) => (Value::Int(f.trunc() as i64), "d"),
                    Value::Bool(b) => (Value::Int(b as i64), "d"),
                    other => (other, "d"),
                },
                'f' | 'F' | 'e' | 'E' | 'g' | 'G' | 'x' | 'X' | 'o' | 'c' => (v, ""),
                other => return Err(bad(&format!("unknown conversion `%{other}`"))),
            };
            if !matches!(v, Value::Str(_))
                && !matches!(v, Value::Int(_) | Value::Float(_) | Value::Bool(_))
                && conv != 's'
            {
                return Err(bad(&format!(
                    "`%{conv}` needs a number, not {}",
                    v.type_name()
                )));
            }
            let ty = if ty.is_empty() && !matches!(conv, 's' | 'r') {
                conv.to_string()
            } else {
                ty.to_string()
            };
            let mut full = mini;
            if !ty.is_empty() {
                full.push_str(&ty);
            }
            if matches!(v, Value::Str(_))
                && !full.is_empty()
                && full.ends_with(|c: char| c.is_ascii_alphabetic())
            {
                full.pop();
            }
            out.push_str(&self.format_value(&v, &full, rs)?);
        }
        if key_free(fmt) && dict.is_none() && next < items.len() && matches!(args, Value::Tuple(_))
        {
            return Err(bad("not all arguments converted"));
        }
        self.charge(out.len() as u64 + 16, ls)?;
        Ok(out)
    }

    /// `str.format(*args, **kwargs)`.
    pub(crate) fn str_format(&mut self, fmt: &str, a: &Args) -> R<String> {
        let mut out = String::new();
        let mut auto = 0;
        let mut chars = fmt.chars().peekable();
        let bad = |msg: String| -> Flow {
            Diagnostic::error(code::E0216, format!("bad format string: {msg}"))
                .primary(a.span.range(), "in this call")
                .into()
        };
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    out.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    out.push('}');
                }
                '}' => return Err(bad("single `}`".into())),
                '{' => {
                    let mut field = String::new();
                    let mut closed = false;
                    for c in chars.by_ref() {
                        if c == '}' {
                            closed = true;
                            break;
                        }
                        field.push(c);
                    }
                    if !closed {
                        return Err(bad("unclosed `{`".into()));
                    }
                    let (field, spec) = match field.split_once(':') {
                        Some((f, s)) => (f.to_string(), s.to_string()),
                        None => (field, String::new()),
                    };
                    let (field, conv) = match field.split_once('!') {
                        Some((f, c)) => (f.to_string(), c.chars().next()),
                        None => (field, None),
                    };
                    let (base, index) = match field.split_once('[') {
                        Some((b, rest)) => {
                            (b.to_string(), Some(rest.trim_end_matches(']').to_string()))
                        }
                        None => (field, None),
                    };
                    if base.contains('.') {
                        return Err(bad(format!(
                            "attribute access `{base}` in a format field is not supported"
                        )));
                    }
                    let mut v = if base.is_empty() {
                        let v = a
                            .pos
                            .get(auto)
                            .cloned()
                            .ok_or_else(|| bad(format!("no argument {auto}")))?;
                        auto += 1;
                        v
                    } else if let Ok(i) = base.parse::<usize>() {
                        a.pos
                            .get(i)
                            .cloned()
                            .ok_or_else(|| bad(format!("no argument {i}")))?
                    } else {
                        a.kw.iter()
                            .find(|(k, _, _)| self.name(*k) == base.as_str())
                            .map(|(_, v, _)| v.clone())
                            .ok_or_else(|| bad(format!("no argument named `{base}`")))?
                    };
                    if let Some(ix) = index {
                        v = match (&v, ix.parse::<i64>()) {
                            (Value::Dict(_), Err(_)) => {
                                self.get_item_simple(&v, &Value::str(&ix), a.span)?
                            }
                            (_, Ok(i)) => self.get_item_simple(&v, &Value::Int(i), a.span)?,
                            _ => return Err(bad(format!("bad index `{ix}`"))),
                        };
                    }
                    let v = match conv {
                        Some('r') => Value::str(&self.repr(&v, a.span)?),
                        Some(_) => Value::str(&self.to_str(&v, a.span)?),
                        None => v,
                    };
                    out.push_str(&self.format_value(&v, &spec, a.span)?);
                }
                c => out.push(c),
            }
        }
        self.charge(out.len() as u64 + 16, a.span)?;
        Ok(out)
    }

    fn get_item_simple(&mut self, v: &Value, k: &Value, span: Span) -> R<Value> {
        match v {
            Value::List(l) => {
                let l = l.borrow();
                let i = self.index(k, l.len(), span)?;
                Ok(l[i].clone())
            }
            Value::Tuple(t) => {
                let i = self.index(k, t.len(), span)?;
                Ok(t[i].clone())
            }
            Value::Dict(d) => {
                let key = self.key(k, span)?;
                d.borrow()
                    .get(&key)
                    .cloned()
                    .ok_or_else(|| self.key_error(k, span))
            }
            other => {
                Err(self.type_error(span, format!("a {} cannot be indexed", other.type_name())))
            }
        }
    }

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

    fn num_arg(&self, a: &Args, i: usize, what: &str) -> R<f64> {
        match &a.pos[i] {
            Value::Int(x) => Ok(*x as f64),
            Value::Bool(b) => Ok(*b as i64 as f64),
            Value::Float(f) => Ok(*f),
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
            let (mult, u) = unit;
            let q = scale(x * mult as f64).ok_or_else(|| self.overflow(span))?;
            return Ok(Value::Quantity(q, u));
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
        let v = match b {
            B::Print => {
                let sep = match self.kwarg(&mut a, "sep") {
                    Some(v) => self.to_str(&v, span)?,
                    None => " ".into(),
                };
                let end = match self.kwarg(&mut a, "end") {
                    Some(v) => self.to_str(&v, span)?,
                    None => "\n".into(),
                };
                self.no_kwargs(&a, name)?;
                let parts = a
                    .pos
                    .iter()
                    .map(|v| self.to_str(v, span))
                    .collect::<R<Vec<String>>>()?;
                let mut line = parts.join(&sep);
                line.push_str(&end);
                self.charge(line.len() as u64, span)?;
                let line = line.strip_suffix('\n').unwrap_or(&line).to_string();
                self.printed.push(line);
                Value::None
            }
            B::Range => {
                self.no_kwargs(&a, name)?;
                self.arity(&a, name, 1, 3)?;
                let ints = (0..a.pos.len())
                    .map(|i| self.int_arg(&a, i, name))
                    .collect::<R<Vec<_>>>()?;
                let (start, stop, step) = match ints[..] {
                    [stop] => (0, stop, 1),
                    [start, stop] => (start, stop, 1),
                    [start, stop, step] => (start, stop, step),
                    _ => unreachable!("arity checked"),
                };
                if step == 0 {
                    return Err(self.fail(
                        code::E0216,
                        a.span_of(2),
                        "range() step must not be zero",
                        "zero step",
                    ));
                }
                Value::Range(start, stop, step)
            }
            B::Len => {
                self.arity(&a, name, 1, 1)?;
                Value::Int(match &a.pos[0] {
                    Value::List(l) => l.borrow().len() as i64,
                    Value::Tuple(t) => t.len() as i64,
                    Value::Str(s) => s.chars().count() as i64,
                    Value::Dict(d) => d.borrow().len() as i64,
                    Value::Range(x, y, s) => range_len(*x, *y, *s),
                    v @ (Value::Link(_) | Value::Topo(_)) => {
                        let v = v.clone();
                        self.iterate(&v, span)?.len() as i64
                    }
                    other => {
                        return Err(self.type_error(
                            a.span_of(0),
                            format!("a {} has no len()", other.type_name()),
                        ));
                    }
                })
            }
            B::Enumerate => {
                let start = match self.kwarg(&mut a, "start") {
                    Some(Value::Int(s)) => s,
                    Some(_) => return Err(self.type_error(span, "enumerate start must be an int")),
                    None => 0,
                };
                self.no_kwargs(&a, name)?;
                self.arity(&a, name, 1, 2)?;
                let start = if a.pos.len() == 2 {
                    self.int_arg(&a, 1, name)?
                } else {
                    start
                };
                let items = self.iterate(&a.pos[0], a.span_of(0))?;
                self.charge(items.len() as u64 * 48, span)?;
                Value::list(
                    items
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| Value::tuple(vec![Value::Int(start + i as i64), v]))
                        .collect(),
                )
            }
            B::Zip => {
                self.no_kwargs(&a, name)?;
                let lists = (0..a.pos.len())
                    .map(|i| self.iterate(&a.pos[i].clone(), a.span_of(i)))
                    .collect::<R<Vec<_>>>()?;
                let n = lists.iter().map(Vec::len).min().unwrap_or(0);
                self.charge(n as u64 * 48, span)?;
                Value::list(
                    (0..n)
                        .map(|i| Value::tuple(lists.iter().map(|l| l[i].clone()).collect()))
                        .collect(),
                )
            }
            B::Str => {
                self.arity(&a, name, 0, 1)?;
                match a.pos.first() {
                    Some(v) => Value::str(&self.to_str(v, span)?),
                    None => Value::str(""),
                }
            }
            B::Repr => {
                self.arity(&a, name, 1, 1)?;
                Value::str(&self.repr(&a.pos[0], span)?)
            }
            B::Int => {
                let base = self.kwarg(&mut a, "base");
                self.arity(&a, name, 0, 2)?;
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
                            return Err(self.overflow(span));
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
                                return Err(self.fail(
                                    code::E0216,
                                    a.span_of(0),
                                    format!("invalid literal for int(): {}", py_repr_str(s)),
                                    "not an integer",
                                ));
                            }
                        }
                    }
                    Some(other) => {
                        return Err(self.type_error(
                            a.span_of(0),
                            format!("int() cannot convert a {}", other.type_name()),
                        ));
                    }
                }
            }
            B::Float => {
                self.arity(&a, name, 0, 1)?;
                match a.pos.first() {
                    None => Value::Float(0.0),
                    Some(Value::Int(_) | Value::Bool(_) | Value::Float(_)) => {
                        Value::Float(self.num_arg(&a, 0, name)?)
                    }
                    Some(Value::Str(s)) => match s.trim().parse::<f64>() {
                        Ok(f) => Value::Float(f),
                        Err(_) => {
                            return Err(self.fail(
                                code::E0216,
                                a.span_of(0),
                                format!("could not convert {} to float", py_repr_str(s)),
                                "not a number",
                            ));
                        }
                    },
                    Some(other) => {
                        return Err(self.type_error(
                            a.span_of(0),
                            format!("float() cannot convert a {}", other.type_name()),
                        ));
                    }
                }
            }
            B::Bool => {
                self.arity(&a, name, 0, 1)?;
                Value::Bool(a.pos.first().is_some_and(Value::truthy))
            }
            B::Chr => {
                self.arity(&a, name, 1, 1)?;
                let i = self.int_arg(&a, 0, name)?;
                let c = u32::try_from(i)
                    .ok()
                    .and_then(char::from_u32)
                    .ok_or_else(|| {
                        self.fail(
                            code::E0216,
                            a.span_of(0),
                            format!("chr() arg {i} is not a character"),
                            "out of range",
                        )
                    })?;
                Value::str(c.encode_utf8(&mut [0; 4]))
            }
            B::Ord => {
                self.arity(&a, name, 1, 1)?;
                let s = self.str_arg(&a, 0, name)?;
                let mut it = s.chars();
                match (it.next(), it.next()) {
                    (Some(c), None) => Value::Int(c as i64),
                    _ => {
                        return Err(
                            self.type_error(a.span_of(0), "ord() needs a string of one character")
                        );
                    }
                }
            }
            B::Min | B::Max => {
                let key = self.kwarg(&mut a, "key");
                let default = self.kwarg(&mut a, "default");
                self.no_kwargs(&a, name)?;
                self.arity(&a, name, 1, usize::MAX)?;
                let items = if a.pos.len() == 1 {
                    self.iterate(&a.pos[0].clone(), a.span_of(0))?
                } else {
                    a.pos.clone()
                };
                if items.is_empty() {
                    return default.ok_or_else(|| {
                        self.fail(
                            code::E0216,
                            span,
                            format!("{name}() of an empty sequence"),
                            "empty",
                        )
                    });
                }
                let keys = self.keys_of(&items, key, span)?;
                let mut best = 0;
                for i in 1..items.len() {
                    let ord = self.order(&keys[i], &keys[best], span)?.ok_or_else(|| {
                        self.type_error(
                            span,
                            format!(
                                "{name}() cannot compare {} with {}",
                                keys[i].type_name(),
                                keys[best].type_name()
                            ),
                        )
                    })?;
                    if (b == B::Min && ord == Ordering::Less)
                        || (b == B::Max && ord == Ordering::Greater)
                    {
                        best = i;
                    }
                }
                items[best].clone()
            }
            B::Sum => {
                self.no_kwargs(&a, name)?;
                self.arity(&a, name, 1, 2)?;
                let items = self.iterate(&a.pos[0].clone(), a.span_of(0))?;
                let mut acc = a.pos.get(1).cloned().unwrap_or(Value::Int(0));
                for v in items {
                    acc = self.binary(BinOp::Add, acc, v, span, span, span)?;
                }
                acc
            }
            B::Sorted => {
                let key = self.kwarg(&mut a, "key");
                let rev = self.kwarg(&mut a, "reverse").is_some_and(|v| v.truthy());
                self.no_kwargs(&a, name)?;
                self.arity(&a, name, 1, 1)?;
                let items = self.iterate(&a.pos[0].clone(), a.span_of(0))?;
                Value::list(self.sort_values(items, key, rev, span)?)
            }
            B::Reversed => {
                self.arity(&a, name, 1, 1)?;
                let mut items = self.iterate(&a.pos[0].clone(), a.span_of(0))?;
                items.reverse();
                Value::list(items)
            }
            B::List | B::Tuple | B::Set => {
                self.no_kwargs(&a, name)?;
                self.arity(&a, name, 0, 1)?;
                let mut items = match a.pos.first() {
                    Some(v) => self.iterate(&v.clone(), a.span_of(0))?,
                    None => Vec::new(),
                };
                if b == B::Set {
                    // No set type: a deduplicated list, in first-seen order so output stays deterministic.
                    let mut seen: Vec<Value> = Vec::new();
                    for v in std::mem::take(&mut items) {
                        if !self.any_eq(&seen, &v, span)? {
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
            }
            B::Dict => {
                self.arity(&a, name, 0, 1)?;
                let mut map = IndexMap::new();
                if let Some(v) = a.pos.first().cloned() {
                    match v {
                        Value::Dict(d) => map = d.borrow().clone(),
                        other => {
                            for item in self.iterate(&other, a.span_of(0))? {
                                let pair = self.iterate(&item, a.span_of(0))?;
                                if pair.len() != 2 {
                                    return Err(self.type_error(
                                        a.span_of(0),
                                        "dict() needs pairs of key and value",
                                    ));
                                }
                                let k = self.key(&pair[0], a.span_of(0))?;
                                map.insert(k, pair[1].clone());
                            }
                        }
                    }
                }
                for (k, v, _) in a.kw.drain(..) {
                    map.insert(Key::Str(self.prog.names.name(k).clone()), v);
                }
                self.charge(map.len() as u64 * 48, span)?;
                Value::dict(map)
            }
            B::Abs => {
                self.arity(&a, name, 1, 1)?;
                match &a.pos[0] {
                    Value::Int(i) => {
                        Value::Int(i.checked_abs().ok_or_else(|| self.overflow(span))?)
                    }
                    Value::Float(f) => Value::Float(f.abs()),
                    Value::Quantity(q, u) => Value::Quantity(q.abs(), *u),
                    other => {
                        return Err(self.type_error(
                            a.span_of(0),
                            format!("abs() of a {}", other.type_name()),
                        ));
                    }
                }
            }
            B::Round => {
                self.arity(&a, name, 1, 2)?;
                let x = self.num_arg(&a, 0, name)?;
                match a.pos.get(1) {
                    None | Some(Value::None) => {
                        // Python rounds half to even.
                        let r = x.round_ties_even();
                        if !r.is_finite() || r.abs() >= 9.2e18 {
                            return Err(self.overflow(span));
                        }
                        Value::Int(r as i64)
                    }
                    Some(_) => {
                        let n = self.int_arg(&a, 1, name)?.clamp(-300, 300) as i32;
                        let m = 10f64.powi(n);
                        Value::Float((x * m).round_ties_even() / m)
                    }
                }
            }
            B::Any | B::All => {
                self.arity(&a, name, 1, 1)?;
                let items = self.iterate(&a.pos[0].clone(), a.span_of(0))?;
                Value::Bool(if b == B::Any {
                    items.iter().any(Value::truthy)
                } else {
                    items.iter().all(Value::truthy)
                })
            }
            B::Map => {
                self.arity(&a, name, 2, usize::MAX)?;
                let f = a.pos[0].clone();
                let lists = (1..a.pos.len())
                    .map(|i| self.iterate(&a.pos[i].clone(), a.span_of(i)))
                    .collect::<R<Vec<_>>>()?;
                let n = lists.iter().map(Vec::len).min().unwrap_or(0);
                let mut out = Vec::with_capacity(n);
                for i in 0..n {
                    let args = Args {
                        pos: lists.iter().map(|l| l[i].clone()).collect(),
                        pos_spans: Vec::new(),
                        kw: Vec::new(),
                        span,
                    };
                    out.push(self.call(f.clone(), args, a.span_of(0))?);
                }
                Value::list(out)
            }
            B::Filter => {
                self.arity(&a, name, 2, 2)?;
                let f = a.pos[0].clone();
                let items = self.iterate(&a.pos[1].clone(), a.span_of(1))?;
                let mut out = Vec::new();
                for v in items {
                    let keep = match &f {
                        Value::None => v.truthy(),
                        _ => {
                            let args = Args {
                                pos: vec![v.clone()],
                                pos_spans: Vec::new(),
                                kw: Vec::new(),
                                span,
                            };
                            self.call(f.clone(), args, a.span_of(0))?.truthy()
                        }
                    };
                    if keep {
                        out.push(v);
                    }
                }
                Value::list(out)
            }
            B::Hex => {
                self.arity(&a, name, 1, 1)?;
                let i = self.int_arg(&a, 0, name)?;
                Value::str(&if i < 0 {
                    format!("-0x{:x}", i.unsigned_abs())
                } else {
                    format!("0x{i:x}")
                })
            }
            B::Divmod => {
                self.arity(&a, name, 2, 2)?;
                let q = self.binary(
                    BinOp::FloorDiv,
                    a.pos[0].clone(),
                    a.pos[1].clone(),
                    a.span_of(0),
                    a.span_of(1),
                    span,
                )?;
                let r = self.binary(
                    BinOp::Mod,
                    a.pos[0].clone(),
                    a.pos[1].clone(),
                    a.span_of(0),
                    a.span_of(1),
                    span,
                )?;
                Value::tuple(vec![q, r])
            }
            B::Isinstance => {
                self.arity(&a, name, 2, 2)?;
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
            }
            _ => unreachable!("handled above"),
        };
        Ok(v)
    }

    fn keys_of(&mut self, items: &[Value], key: Option<Value>, span: Span) -> R<Vec<Value>> {
        match key {
            None | Some(Value::None) => Ok(items.to_vec()),
            Some(f) => items
                .iter()
                .map(|v| {
                    let args = Args {
                        pos: vec![v.clone()],
                        pos_spans: Vec::new(),
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
        let m: &str = self.name(name);
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

fn is_api_module(m: &str) -> bool {
    matches!(m, "mergexp" | "mx")
}

fn as_f64(v: &Value) -> f64 {
    match v {
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
        Value::Bool(b) => *b as i64 as f64,
        _ => f64::NAN,
    }
}

/// A float rounded to a whole number of base units, if it fits.
fn scale(x: f64) -> Option<i64> {
    let r = x.round();
    (r.is_finite() && r.abs() < 9.2e18).then_some(r as i64)
}

fn floor_div(x: i64, y: i64) -> Option<i64> {
    let q = x.checked_div(y)?;
    Some(if x % y != 0 && ((x < 0) != (y < 0)) {
        q - 1
    } else {
        q
    })
}

fn py_mod(x: i64, y: i64) -> i64 {
    let r = x.wrapping_rem(y);
    if r != 0 && ((r < 0) != (y < 0)) {
        r + y
    } else {
        r
    }
}

/// Multiplier and base unit of a unit function.
fn unit_of(b: Builtin) -> Option<(i64, Unit)> {
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

/// A quantity in the largest unit that divides it, as the model would write it.
pub fn fmt_quantity(q: i64, u: Unit) -> String {
    let units: &[(&str, i64)] = match u {
        Unit::Bytes => &[
            ("pb", 1 << 50),
            ("tb", 1 << 40),
            ("gb", 1 << 30),
            ("mb", 1 << 20),
            ("kb", 1 << 10),
        ],
        Unit::Bps => &[
            ("tbps", 1_000_000_000_000),
            ("gbps", 1_000_000_000),
            ("mbps", 1_000_000),
            ("kbps", 1_000),
            ("bps", 1),
        ],
        Unit::Ns => &[
            ("s", 1_000_000_000),
            ("ms", 1_000_000),
            ("us", 1_000),
            ("ns", 1),
        ],
        Unit::Hz => &[
            ("ghz", 1_000_000_000),
            ("mhz", 1_000_000),
            ("khz", 1_000),
            ("hz", 1),
        ],
    };
    for (name, m) in units {
        if q != 0 && q % m == 0 {
            return format!("{name}({})", q / m);
        }
    }
    match u {
        Unit::Bytes => format!("{q} bytes"),
        _ => format!("{}(0)", units[units.len() - 1].0),
    }
}

/// Containers nested deeper than this are not compared: recursion would
/// otherwise be bounded only by the memory budget.
pub const MAX_COMPARE_DEPTH: usize = 1000;

/// Python's `==`; `None` when the values nest deeper than
/// [`MAX_COMPARE_DEPTH`]. Every pair of nodes compared costs a step.
pub fn eq_at(a: &Value, b: &Value, depth: usize, m: &Meter) -> Result<Option<bool>, Exhausted> {
    use Value as V;
    if depth > MAX_COMPARE_DEPTH {
        return Ok(None);
    }
    m.step()?;
    let seq_eq = |x: &[Value], y: &[Value]| -> Result<Option<bool>, Exhausted> {
        if x.len() != y.len() {
            return Ok(Some(false));
        }
        for (p, q) in x.iter().zip(y) {
            match eq_at(p, q, depth + 1, m)? {
                Some(true) => {}
                other => return Ok(other),
            }
        }
        Ok(Some(true))
    };
    Ok(Some(match (a, b) {
        (V::None, V::None) => true,
        (V::Int(_) | V::Bool(_) | V::Float(_), V::Int(_) | V::Bool(_) | V::Float(_)) => {
            match (a, b) {
                (V::Float(_), _) | (_, V::Float(_)) => as_f64(a) == as_f64(b),
                _ => as_f64_int(a) == as_f64_int(b),
            }
        }
        (V::Str(x), V::Str(y)) => x == y,
        (V::List(x), V::List(y)) => {
            if Rc::ptr_eq(x, y) {
                true
            } else {
                return seq_eq(&x.borrow(), &y.borrow());
            }
        }
        (V::Tuple(x), V::Tuple(y)) => {
            if Rc::ptr_eq(x, y) {
                true
            } else {
                return seq_eq(x, y);
            }
        }
        (V::Dict(x), V::Dict(y)) => {
            if Rc::ptr_eq(x, y) {
                true
            } else {
                let (x, y) = (x.borrow(), y.borrow());
                if x.len() != y.len() {
                    return Ok(Some(false));
                }
                for (k, v) in x.iter() {
                    m.step()?;
                    match y.get(k) {
                        Some(w) => match eq_at(v, w, depth + 1, m)? {
                            Some(true) => {}
                            other => return Ok(other),
                        },
                        None => return Ok(Some(false)),
                    }
                }
                true
            }
        }
        (V::Range(a1, b1, c1), V::Range(a2, b2, c2)) => (a1, b1, c1) == (a2, b2, c2),
        (V::Quantity(x, u), V::Quantity(y, w)) => x == y && u == w,
        (V::Membus(x), V::Membus(y)) => x == y,
        (V::Pcie(x), V::Pcie(y)) => x == y,
        (V::Prop(x), V::Prop(y)) => x == y,
        (V::Sym(x), V::Sym(y)) => x == y,
        (V::Group(x), V::Group(y)) => x == y,
        (V::Topo(x), V::Topo(y)) | (V::Node(x), V::Node(y)) | (V::Link(x), V::Link(y)) => x == y,
        (V::Endpoint(l, e), V::Endpoint(m, f)) | (V::Socket(l, e), V::Socket(m, f)) => {
            (l, e) == (m, f)
        }
        (V::Builtin(x), V::Builtin(y)) => x == y,
        (V::Func(x), V::Func(y)) => Rc::ptr_eq(x, y),
        (V::Constraint(x), V::Constraint(y)) => Rc::ptr_eq(x, y),
        (V::Str(s), V::Sym(y)) | (V::Sym(y), V::Str(s)) => &**s == *y,
        _ => false,
    }))
}

/// Python's `is`: identity for containers, functions and constraints,
/// equality of the same type for everything else (which never nests).
fn is_same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::List(x), Value::List(y)) => Rc::ptr_eq(x, y),
        (Value::Dict(x), Value::Dict(y)) => Rc::ptr_eq(x, y),
        (Value::Tuple(x), Value::Tuple(y)) => Rc::ptr_eq(x, y),
        (Value::List(_) | Value::Dict(_) | Value::Tuple(_), _)
        | (_, Value::List(_) | Value::Dict(_) | Value::Tuple(_)) => false,
        (Value::Float(_), _) | (_, Value::Float(_)) => false,
        _ => {
            std::mem::discriminant(a) == std::mem::discriminant(b)
                && eq_at(a, b, 0, &Meter::new(u64::MAX, u64::MAX)) == Ok(Some(true))
        }
    }
}

fn as_f64_int(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        Value::Bool(b) => *b as i64,
        _ => 0,
    }
}

/// Python's ordering; `None` when the values do not compare or nest deeper
/// than [`MAX_COMPARE_DEPTH`]. Every pair of nodes compared costs a step.
pub fn cmp_at(
    a: &Value,
    b: &Value,
    depth: usize,
    m: &Meter,
) -> Result<Option<Ordering>, Exhausted> {
    use Value as V;
    if depth > MAX_COMPARE_DEPTH {
        return Ok(None);
    }
    m.step()?;
    let seq_cmp = |a: &[Value], b: &[Value]| -> Result<Option<Ordering>, Exhausted> {
        for (x, y) in a.iter().zip(b) {
            match eq_at(x, y, depth + 1, m)? {
                Some(true) => {}
                Some(false) => return cmp_at(x, y, depth + 1, m),
                None => return Ok(None),
            }
        }
        Ok(Some(a.len().cmp(&b.len())))
    };
    Ok(match (a, b) {
        (V::Int(_) | V::Bool(_), V::Int(_) | V::Bool(_)) => Some(as_f64_int(a).cmp(&as_f64_int(b))),
        (V::Int(_) | V::Bool(_) | V::Float(_), V::Int(_) | V::Bool(_) | V::Float(_)) => {
            as_f64(a).partial_cmp(&as_f64(b))
        }
        (V::Str(x), V::Str(y)) => Some(x.cmp(y)),
        (V::List(x), V::List(y)) => return seq_cmp(&x.borrow(), &y.borrow()),
        (V::Tuple(x), V::Tuple(y)) => return seq_cmp(x, y),
        (V::Quantity(x, u), V::Quantity(y, w)) if u == w => Some(x.cmp(y)),
        (V::Membus(x), V::Membus(y)) => Some(x.cmp(y)),
        (V::Pcie(x), V::Pcie(y)) => Some(x.cmp(y)),
        _ => None,
    })
}

/// Python's repr of a str: single quotes unless the text has one and no double.
pub fn py_repr_str(s: &str) -> String {
    let q = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(q);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == q => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(q);
    out
}

pub(crate) fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_alpha = false;
    for c in s.chars() {
        if c.is_alphabetic() {
            if prev_alpha {
                out.extend(c.to_lowercase());
            } else {
                out.extend(c.to_uppercase());
            }
            prev_alpha = true;
        } else {
            out.push(c);
            prev_alpha = false;
        }
    }
    out
}

struct Spec {
    fill: Option<char>,
    align: Option<char>,
    sign: Option<char>,
    alt: bool,
    zero: bool,
    width: Option<usize>,
    grouping: Option<char>,
    precision: Option<usize>,
    ty: Option<char>,
}

fn parse_spec(spec: &str) -> Option<Spec> {
    let c: Vec<char> = spec.chars().collect();
    let mut i = 0;
    let mut s = Spec {
        fill: None,
        align: None,
        sign: None,
        alt: false,
        zero: false,
        width: None,
        grouping: None,
        precision: None,
        ty: None,
    };
    let is_align = |ch: char| "<>^=".contains(ch);
    if c.len() >= 2 && is_align(c[1]) {
        s.fill = Some(c[0]);
        s.align = Some(c[1]);
        i = 2;
    } else if !c.is_empty() && is_align(c[0]) {
        s.align = Some(c[0]);
        i = 1;
    }
    if i < c.len() && "+- ".contains(c[i]) {
        s.sign = Some(c[i]);
        i += 1;
    }
    if i < c.len() && c[i] == '#' {
        s.alt = true;
        i += 1;
    }
    if i < c.len() && c[i] == '0' {
        s.zero = true;
        i += 1;
    }
    let num = |i: &mut usize| -> Option<usize> {
        let st = *i;
        while *i < c.len() && c[*i].is_ascii_digit() {
            *i += 1;
        }
        if *i > st {
            c[st..*i]
                .iter()
                .collect::<String>()
                .parse()
                .ok()
                .map(|n: usize| n.min(10_000))
        } else {
            None
        }
    };
    s.width = num(&mut i);
    if i < c.len() && (c[i] == ',' || c[i] == '_') {
        s.grouping = Some(c[i]);
        i += 1;
    }
    if i < c.len() && c[i] == '.' {
        i += 1;
        s.precision = Some(num(&mut i)?);
    }
    if i < c.len() {
        s.ty = Some(c[i]);
        i += 1;
    }
    (i == c.len()).then_some(s)
}

fn group(digits: &str, sep: Option<char>) -> String {
    let Some(sep) = sep else {
        return digits.to_string();
    };
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(sep);
        }
        out.push(ch);
    }
    out
}

fn group_float(s: &str, sep: Option<char>) -> String {
    match s.split_once('.') {
        Some((i, f)) => format!("{}.{f}", group(i, sep)),
        None => group(s, sep),
    }
}

/// Rust writes `1.5e3`; Python writes `1.5e+03`.
fn py_exp(s: &str) -> String {
    match s.split_once('e') {
        Some((m, e)) => {
            let (sign, d) = match e.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', e),
            };
            format!("{m}e{sign}{d:0>2}")
        }
        None => s.to_string(),
    }
}

fn key_free(fmt: &str) -> bool {
    !fmt.contains("%(")
}
