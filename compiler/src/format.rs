//! Values as text: `str()`, `repr()`, format specs (`f'{x:>8.2f}'`,
//! `format()`, `str.format`) and `%` formatting, as Python prints them
//! (float repr, dict order, quoting).

use mx_diag::code;

use mx_diag::Diagnostic;
use mx_xir::{Span, Unit};

use crate::eval::{Args, Eval, Flow, R};
use crate::ops::*;
use crate::value::*;

impl Eval<'_> {
    // ---- conversion to text ----------------------------------------------

    /// `str(v)`, charging the budgets for every node walked and byte written.
    pub fn to_str(&self, v: &Value, span: Span) -> R<String> {
        let mut out = String::new();
        self.to_str_into(v, &mut out, span)?;
        Ok(out)
    }

    /// [`Eval::to_str`] appended to `out`: an f-string's fields need no
    /// string of their own.
    pub fn to_str_into(&self, v: &Value, out: &mut String, span: Span) -> R<()> {
        match v {
            Value::Str(s) => out.push_str(s),
            Value::Node(n) => out.push_str(self.model.node_name(*n)),
            // What `repr_into` does for an integer (a step, then its bytes),
            // without the walk's set-up: f-strings of a generated model
            // format hundreds of thousands of them.
            Value::Int(i) => {
                let m = &self.meter;
                m.step().map_err(|e| self.exhausted(e, span))?;
                let mut buf = itoa::Buffer::new();
                let text = buf.format(*i);
                out.push_str(text);
                m.charge(text.len() as u64)
                    .map_err(|e| self.exhausted(e, span))?;
            }
            _ => self
                .repr_into(v, out, 0, &self.meter)
                .map_err(|e| self.exhausted(e, span))?,
        }
        Ok(())
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

    pub(crate) fn repr_into(
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
            Value::Int(i) => out.push_str(itoa::Buffer::new().format(*i)),
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
            Value::Range(r) => {
                let (a, b, s) = **r;
                if s == 1 {
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
            Value::Constraint(c, _) => out.push_str(self.text(c.span)),
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
    pub(crate) fn percent(&mut self, fmt: &str, args: &Value, ls: Span, rs: Span) -> R<String> {
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

    pub(crate) fn get_item_simple(&mut self, v: &Value, k: &Value, span: Span) -> R<Value> {
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

pub(crate) struct Spec {
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

pub(crate) fn parse_spec(spec: &str) -> Option<Spec> {
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

pub(crate) fn group(digits: &str, sep: Option<char>) -> String {
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

pub(crate) fn group_float(s: &str, sep: Option<char>) -> String {
    match s.split_once('.') {
        Some((i, f)) => format!("{}.{f}", group(i, sep)),
        None => group(s, sep),
    }
}

/// Rust writes `1.5e3`; Python writes `1.5e+03`.
pub(crate) fn py_exp(s: &str) -> String {
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

pub(crate) fn key_free(fmt: &str) -> bool {
    !fmt.contains("%(")
}
