//! Constraint values: what a comparison such as `proc.cores >= 2` builds,
//! checked where it is written (a wrong unit or an impossible value is
//! reported at the comparison, not at the node), and how a node or link
//! call takes them from its arguments.

use mx_diag::code;
use std::rc::Rc;

use mx_diag::Diagnostic;
use mx_xir::{Op, Span, Unit};

use crate::ast::CmpOp;
use crate::eval::{Args, CONS_SHARED, Eval, Flow, R, did_you_mean};
use crate::props::{self, Kind, NicClass, PROPS, Target};
use crate::value::*;

impl Eval<'_> {
    pub(super) fn constraints(
        &mut self,
        a: &Args,
        from: usize,
        target: Target,
        what: &str,
    ) -> R<Vec<Rc<Cons>>> {
        // A bad constraint is recorded and left out, so the node or link
        // still exists and the model's other mistakes are still found.
        // Sized for one constraint an argument: the model keeps the vector.
        let mut out = Vec::with_capacity(a.pos.len().saturating_sub(from) + a.kw.len());
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
                Ok(c) => {
                    let c = self.share_constraint(c);
                    self.keep_constraint(c, target, &mut out)?
                }
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
            Value::Constraint(c, _) => self.keep_constraint(c, target, out),
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
        let c = self.build_constraint(prop, xop, value, vspan, span)?;
        let c = self.share_constraint(c);
        self.cons_made += 1;
        Ok(Value::Constraint(c, self.cons_made))
    }

    /// One constraint for every evaluation of a comparison that comes out
    /// the same: a loop that builds 100,000 nodes with `cores >= 2` keeps
    /// one, not 100,000 (56 MB of the ring benchmark, and the page faults
    /// and cache misses of building and lowering them). A small table by
    /// source position remembers the last constraint made at each.
    fn share_constraint(&mut self, c: Cons) -> Rc<Cons> {
        let at = (c.span.start as usize).wrapping_mul(31) ^ c.span.end as usize;
        let slot = &mut self.cons_shared[at % CONS_SHARED];
        if let Some(prev) = slot
            && prev.same(&c)
        {
            return prev.clone();
        }
        let c = Rc::new(c);
        *slot = Some(c.clone());
        c
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
                Value::Str(s) if !s.is_empty() => (X::Text(str::to_owned(s)), None),
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
