//! Operators with Python's semantics where models can observe them (floor
//! division, modulo signs, chained comparisons, membership) and 64-bit
//! integers that report overflow instead of wrapping. Comparing a property
//! makes a constraint (see `topo/constraint.rs`).

use mx_diag::code;
use std::cmp::Ordering;
use std::rc::Rc;

use mx_diag::Diagnostic;
use mx_xir::Span;

use crate::ast::*;
use crate::eval::VALUE_BYTES;
use crate::eval::{Eval, Flow, R};
use crate::value::*;

/// Containers nested deeper than this are not compared: recursion would
/// otherwise be bounded only by the memory budget.
pub const MAX_COMPARE_DEPTH: usize = 1000;

impl Eval<'_> {
    // ---- operators -------------------------------------------------------

    pub(crate) fn overflow(&self, span: Span) -> Flow {
        Diagnostic::error(code::E0216, "integer overflow")
            .primary(span.range(), "result does not fit in 64 bits")
            .help(".mx integers are 64-bit; use smaller values or floats")
            .into()
    }

    pub(crate) fn div_zero(&self, span: Span) -> Flow {
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

    pub(crate) fn operand_error(
        &self,
        op: BinOp,
        a: &Value,
        b: &Value,
        ls: Span,
        rs: Span,
    ) -> Flow {
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
    pub(crate) fn any_eq(&self, items: &[Value], item: &Value, span: Span) -> R<bool> {
        for x in items {
            if self.eq(x, item, span)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub(crate) fn contains(&mut self, container: &Value, item: &Value, span: Span) -> R<bool> {
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
            Value::Range(r) => match item {
                Value::Int(i) => {
                    let (a, b, s) = **r;
                    let n = range_len(a, b, s);
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
}

pub(crate) fn as_f64(v: &Value) -> f64 {
    match v {
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
        Value::Bool(b) => *b as i64 as f64,
        _ => f64::NAN,
    }
}

/// A float rounded to a whole number of base units, if it fits.
pub(crate) fn scale(x: f64) -> Option<i64> {
    let r = x.round();
    (r.is_finite() && r.abs() < 9.2e18).then_some(r as i64)
}

/// `x op y` for the integer operators, as [`Eval::binary`] computes them,
/// when nothing can go wrong: `None` on overflow, a zero divisor or
/// another operator, which then takes the general way (and its errors).
/// Most of what a loop computes (`(i + k) % N`, `j // 128`) is this.
#[inline]
pub(crate) fn int_op(op: BinOp, x: i64, y: i64) -> Option<Value> {
    use BinOp::*;
    Some(Value::Int(match op {
        Add => x.checked_add(y)?,
        Sub => x.checked_sub(y)?,
        Mul => x.checked_mul(y)?,
        FloorDiv if y != 0 => floor_div(x, y)?,
        Mod if y != 0 => py_mod(x, y),
        BitOr => x | y,
        BitXor => x ^ y,
        BitAnd => x & y,
        _ => return None,
    }))
}

pub(crate) fn floor_div(x: i64, y: i64) -> Option<i64> {
    let q = x.checked_div(y)?;
    Some(if x % y != 0 && ((x < 0) != (y < 0)) {
        q - 1
    } else {
        q
    })
}

pub(crate) fn py_mod(x: i64, y: i64) -> i64 {
    let r = x.wrapping_rem(y);
    if r != 0 && ((r < 0) != (y < 0)) {
        r + y
    } else {
        r
    }
}

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
        (V::Range(x), V::Range(y)) => x == y,
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
        (V::Constraint(_, x), V::Constraint(_, y)) => x == y,
        (V::Str(s), V::Sym(y)) | (V::Sym(y), V::Str(s)) => &**s == *y,
        _ => false,
    }))
}

/// Python's `is`: identity for containers, functions and constraints,
/// equality of the same type for everything else (which never nests).
pub(crate) fn is_same(a: &Value, b: &Value) -> bool {
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

pub(crate) fn as_f64_int(v: &Value) -> i64 {
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
