//! The methods of the built-in value types (`str`, `list`, `dict`,
//! `tuple`), one table per type. Each method is declared once, in its
//! table row: its name, how many positional arguments it takes (checked
//! before it runs, so bodies never count), a line of documentation, and
//! the function that runs it. Attribute lookup (`s.upper`), calls
//! (`s.upper()`) and "did you mean" hints all read the same rows.
//!
//! To add a method: write its function below and add a row.

use mx_diag::code;
use std::rc::Rc;

use indexmap::IndexMap;

use crate::eval::VALUE_BYTES;
use crate::eval::{Args, Eval, Flow, R};
use crate::format::title;
use crate::value::*;

/// One method of a built-in type, on receivers of type `T`.
pub struct Method<T: ?Sized + 'static> {
    pub name: &'static str,
    /// Positional arguments: at least `min`, at most `max`.
    pub min: usize,
    pub max: usize,
    /// What it does, in a line.
    pub doc: &'static str,
    /// Runs it: the evaluator, the receiver, the method's name (shared
    /// functions such as `strip`/`lstrip` tell themselves apart by it) and
    /// the arguments.
    pub run: fn(&mut Eval, &T, &str, &mut Args) -> R<Value>,
}

/// The names in a table, for "did you mean" and "a str has: ...".
pub fn names<T: ?Sized>(table: &[Method<T>]) -> Vec<&'static str> {
    table.iter().map(|m| m.name).collect()
}

/// Calls method `name` of `recv` through `table`: E0202 for an unknown
/// name, E0215 for the wrong number of arguments, then the method.
pub fn call<T: ?Sized>(
    ev: &mut Eval,
    table: &[Method<T>],
    recv: &T,
    shown: &Value,
    name: &str,
    nspan: mx_xir::Span,
    a: &mut Args,
) -> R<Value> {
    let Some(m) = table.iter().find(|m| m.name == name) else {
        return Err(ev.no_attr(shown, name, nspan, &names(table)));
    };
    if let Err(Flow::Err(d)) = ev.arity(a, m.name, m.min, m.max) {
        // The row's line of documentation says what the method wants.
        return Err(Flow::Err(Box::new(
            d.help(format!("`{}`: {}", m.name, m.doc)),
        )));
    }
    (m.run)(ev, recv, m.name, a)
}

/// A tuple has the list's `index` and `count`.
pub const TUPLE: &[Method<List>] = &[
    Method {
        name: "index",
        min: 1,
        max: 1,
        doc: "The index of the first value equal to the argument; an error if absent.",
        run: list_index,
    },
    Method {
        name: "count",
        min: 1,
        max: 1,
        doc: "How many values equal the argument.",
        run: list_index,
    },
];

/// An optional string argument (`None` or absent: no string).
fn opt_str(ev: &Eval, a: &Args, i: usize, m: &str) -> R<Option<Rc<str>>> {
    match a.pos.get(i) {
        None | Some(Value::None) => Ok(None),
        Some(_) => ev.str_arg(a, i, m).map(Some),
    }
}

pub const STR: &[Method<Rc<str>>] = &[
    Method {
        name: "join",
        min: 1,
        max: 1,
        doc: "The strings of an iterable joined with this string between them.",
        run: str_join,
    },
    Method {
        name: "split",
        min: 0,
        max: 2,
        doc: "The string split at a separator (default: runs of whitespace), at most `maxsplit` times.",
        run: str_split,
    },
    Method {
        name: "rsplit",
        min: 0,
        max: 2,
        doc: "Like `split`, counting `maxsplit` from the right.",
        run: str_split,
    },
    Method {
        name: "replace",
        min: 2,
        max: 3,
        doc: "The string with occurrences of the first argument replaced by the second (at most `count`).",
        run: str_replace,
    },
    Method {
        name: "upper",
        min: 0,
        max: 0,
        doc: "The string in upper case.",
        run: str_upper,
    },
    Method {
        name: "lower",
        min: 0,
        max: 0,
        doc: "The string in lower case.",
        run: str_lower,
    },
    Method {
        name: "startswith",
        min: 1,
        max: 1,
        doc: "Whether the string starts with the argument (or one of a tuple of them).",
        run: str_startswith,
    },
    Method {
        name: "endswith",
        min: 1,
        max: 1,
        doc: "Whether the string ends with the argument (or one of a tuple of them).",
        run: str_startswith,
    },
    Method {
        name: "strip",
        min: 0,
        max: 1,
        doc: "The string without leading and trailing whitespace (or the given characters).",
        run: str_strip,
    },
    Method {
        name: "lstrip",
        min: 0,
        max: 1,
        doc: "The string without leading whitespace (or the given characters).",
        run: str_strip,
    },
    Method {
        name: "rstrip",
        min: 0,
        max: 1,
        doc: "The string without trailing whitespace (or the given characters).",
        run: str_strip,
    },
    Method {
        name: "format",
        min: 0,
        max: usize::MAX,
        doc: "Formats the string with `{}` fields filled from the arguments, as Python's `str.format`.",
        run: str_format,
    },
    Method {
        name: "find",
        min: 1,
        max: 1,
        doc: "The index of the first occurrence of the argument, or -1.",
        run: str_find,
    },
    Method {
        name: "count",
        min: 1,
        max: 1,
        doc: "How many times the argument occurs.",
        run: str_find,
    },
    Method {
        name: "index",
        min: 1,
        max: 1,
        doc: "The index of the first occurrence of the argument; an error if absent.",
        run: str_find,
    },
    Method {
        name: "isdigit",
        min: 0,
        max: 0,
        doc: "Whether the string is non-empty and all ASCII digits.",
        run: str_isdigit,
    },
    Method {
        name: "isalpha",
        min: 0,
        max: 0,
        doc: "Whether the string is non-empty and all letters.",
        run: str_isalpha,
    },
    Method {
        name: "zfill",
        min: 1,
        max: 1,
        doc: "The string padded on the left with zeros to the given width (after any sign).",
        run: str_zfill,
    },
    Method {
        name: "title",
        min: 0,
        max: 0,
        doc: "The string with each word capitalised.",
        run: str_title,
    },
    Method {
        name: "capitalize",
        min: 0,
        max: 0,
        doc: "The string with its first character upper case and the rest lower case.",
        run: str_capitalize,
    },
    Method {
        name: "splitlines",
        min: 0,
        max: 0,
        doc: "The lines of the string.",
        run: str_splitlines,
    },
];

pub const LIST: &[Method<List>] = &[
    Method {
        name: "append",
        min: 1,
        max: 1,
        doc: "Adds a value at the end.",
        run: list_append,
    },
    Method {
        name: "extend",
        min: 1,
        max: 1,
        doc: "Adds every value of an iterable at the end.",
        run: list_extend,
    },
    Method {
        name: "index",
        min: 1,
        max: 1,
        doc: "The index of the first value equal to the argument; an error if absent.",
        run: list_index,
    },
    Method {
        name: "pop",
        min: 0,
        max: 1,
        doc: "Removes and returns the value at an index (default: the last).",
        run: list_pop,
    },
    Method {
        name: "insert",
        min: 2,
        max: 2,
        doc: "Inserts a value before the given index.",
        run: list_insert,
    },
    Method {
        name: "remove",
        min: 1,
        max: 1,
        doc: "Removes the first value equal to the argument; an error if absent.",
        run: list_index,
    },
    Method {
        name: "count",
        min: 1,
        max: 1,
        doc: "How many values equal the argument.",
        run: list_index,
    },
    Method {
        name: "sort",
        min: 0,
        max: 0,
        doc: "Sorts the list in place (`key=`, `reverse=`), stably.",
        run: list_sort,
    },
    Method {
        name: "reverse",
        min: 0,
        max: 0,
        doc: "Reverses the list in place.",
        run: list_reverse,
    },
    Method {
        name: "copy",
        min: 0,
        max: 0,
        doc: "A shallow copy.",
        run: list_copy,
    },
    Method {
        name: "clear",
        min: 0,
        max: 0,
        doc: "Removes every value.",
        run: list_clear,
    },
];

pub const DICT: &[Method<Dict>] = &[
    Method {
        name: "items",
        min: 0,
        max: 0,
        doc: "The (key, value) pairs, in insertion order.",
        run: dict_items,
    },
    Method {
        name: "keys",
        min: 0,
        max: 0,
        doc: "The keys, in insertion order.",
        run: dict_keys,
    },
    Method {
        name: "values",
        min: 0,
        max: 0,
        doc: "The values, in insertion order.",
        run: dict_values,
    },
    Method {
        name: "get",
        min: 1,
        max: 2,
        doc: "The value of a key, or the default (None) when absent.",
        run: dict_get,
    },
    Method {
        name: "pop",
        min: 1,
        max: 2,
        doc: "Removes a key and returns its value, or the default; an error if absent without one.",
        run: dict_pop,
    },
    Method {
        name: "update",
        min: 0,
        max: 1,
        doc: "Adds the pairs of a dict or of an iterable of pairs, and keyword arguments.",
        run: dict_update,
    },
    Method {
        name: "setdefault",
        min: 1,
        max: 2,
        doc: "The value of a key, inserting the default (None) first when absent.",
        run: dict_setdefault,
    },
    Method {
        name: "copy",
        min: 0,
        max: 0,
        doc: "A shallow copy.",
        run: dict_copy,
    },
    Method {
        name: "clear",
        min: 0,
        max: 0,
        doc: "Removes every key.",
        run: dict_clear,
    },
];

fn str_format(ev: &mut Eval, s: &Rc<str>, _m: &str, a: &mut Args) -> R<Value> {
    Ok(Value::Str(ev.str_format(s, a)?.into()))
}

fn str_join(ev: &mut Eval, s: &Rc<str>, _m: &str, a: &mut Args) -> R<Value> {
    let span = a.span;
    Ok({
        let items = ev.iterate(&a.pos[0].clone(), a.span_of(0))?;
        let mut parts = Vec::with_capacity(items.len());
        for v in &items {
            match v {
                Value::Str(x) => parts.push(x.clone()),
                other => {
                    return Err(ev.type_error(
                        a.span_of(0),
                        format!("join() needs strings, found {}", other.type_name()),
                    ));
                }
            }
        }
        let out = parts.join(s);
        ev.charge(out.len() as u64 + 16, span)?;
        Value::Str(out.into())
    })
}

fn str_split(ev: &mut Eval, s: &Rc<str>, m: &str, a: &mut Args) -> R<Value> {
    let span = a.span;
    Ok({
        let maxsplit = ev.kwarg(a, "maxsplit");
        let sep_kw = ev.kwarg(a, "sep");
        let sep = match sep_kw {
            Some(Value::Str(x)) => Some(x),
            _ => opt_str(ev, a, 0, m)?,
        };
        let max = match (a.pos.get(1), maxsplit) {
            (Some(Value::Int(n)), _) => *n,
            (None, Some(Value::Int(n))) => n,
            _ => -1,
        };
        if sep.as_deref() == Some("") {
            return Err(ev.fail(code::E0216, a.span_of(0), "empty separator", "empty"));
        }
        let parts: Vec<String> = match (&sep, max < 0, m == "rsplit") {
            (Some(p), true, _) => s.split(&**p).map(str::to_string).collect(),
            (Some(p), false, false) => s
                .splitn(max as usize + 1, &**p)
                .map(str::to_string)
                .collect(),
            (Some(p), false, true) => {
                let mut v: Vec<String> = s
                    .rsplitn(max as usize + 1, &**p)
                    .map(str::to_string)
                    .collect();
                v.reverse();
                v
            }
            (None, true, _) => s.split_whitespace().map(str::to_string).collect(),
            (None, false, _) => {
                let mut v = Vec::new();
                let mut rest = s.trim_start();
                while !rest.is_empty() && (v.len() as i64) < max {
                    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                    v.push(rest[..end].to_string());
                    rest = rest[end..].trim_start();
                }
                if !rest.is_empty() {
                    v.push(rest.trim_end().to_string());
                }
                v
            }
        };
        ev.charge(parts.len() as u64 * 40 + s.len() as u64, span)?;
        Value::list(parts.into_iter().map(|p| Value::Str(p.into())).collect())
    })
}

fn str_replace(ev: &mut Eval, s: &Rc<str>, m: &str, a: &mut Args) -> R<Value> {
    let span = a.span;
    Ok({
        let from = ev.str_arg(a, 0, m)?;
        let to = ev.str_arg(a, 1, m)?;
        let est = if from.is_empty() {
            s.len() as u128 * to.len() as u128
        } else {
            (s.len() / from.len()) as u128 * to.len() as u128
        };
        ev.check_size(est + s.len() as u128, span)?;
        let out = match a.pos.get(2) {
            Some(_) => s.replacen(&*from, &to, ev.int_arg(a, 2, m)?.max(0) as usize),
            None => s.replace(&*from, &to),
        };
        Value::Str(out.into())
    })
}

fn str_upper(_ev: &mut Eval, s: &Rc<str>, _m: &str, _a: &mut Args) -> R<Value> {
    Ok(Value::Str(s.to_uppercase().into()))
}

fn str_lower(_ev: &mut Eval, s: &Rc<str>, _m: &str, _a: &mut Args) -> R<Value> {
    Ok(Value::Str(s.to_lowercase().into()))
}

fn str_title(_ev: &mut Eval, s: &Rc<str>, _m: &str, _a: &mut Args) -> R<Value> {
    Ok(Value::Str(title(s).into()))
}

fn str_capitalize(_ev: &mut Eval, s: &Rc<str>, _m: &str, _a: &mut Args) -> R<Value> {
    Ok({
        let mut c = s.chars();
        Value::Str(match c.next() {
            Some(f) => f
                .to_uppercase()
                .chain(c.flat_map(char::to_lowercase))
                .collect::<String>()
                .into(),
            None => "".into(),
        })
    })
}

fn str_startswith(ev: &mut Eval, s: &Rc<str>, m: &str, a: &mut Args) -> R<Value> {
    Ok({
        let pats = match &a.pos[0] {
            Value::Tuple(t) => t.to_vec(),
            v => vec![v.clone()],
        };
        let mut hit = false;
        for p in pats {
            let Value::Str(p) = p else {
                return Err(
                    ev.type_error(a.span_of(0), format!("{m}() needs a str or tuple of str"))
                );
            };
            hit |= if m == "startswith" {
                s.starts_with(&*p)
            } else {
                s.ends_with(&*p)
            };
        }
        Value::Bool(hit)
    })
}

fn str_strip(ev: &mut Eval, s: &Rc<str>, m: &str, a: &mut Args) -> R<Value> {
    Ok({
        let chars: Option<Vec<char>> = opt_str(ev, a, 0, m)?.map(|c| c.chars().collect());
        let pred = |c: char| match &chars {
            Some(cs) => cs.contains(&c),
            None => c.is_whitespace(),
        };
        Value::str(match m {
            "strip" => s.trim_matches(pred),
            "lstrip" => s.trim_start_matches(pred),
            _ => s.trim_end_matches(pred),
        })
    })
}

fn str_find(ev: &mut Eval, s: &Rc<str>, m: &str, a: &mut Args) -> R<Value> {
    Ok({
        let sub = ev.str_arg(a, 0, m)?;
        if m == "count" {
            Value::Int(if sub.is_empty() {
                s.chars().count() as i64 + 1
            } else {
                s.matches(&*sub).count() as i64
            })
        } else {
            match s.find(&*sub) {
                Some(i) => Value::Int(s[..i].chars().count() as i64),
                None if m == "find" => Value::Int(-1),
                None => {
                    return Err(ev.fail(
                        code::E0216,
                        a.span_of(0),
                        "substring not found",
                        "not in the string",
                    ));
                }
            }
        }
    })
}

fn str_isdigit(_ev: &mut Eval, s: &Rc<str>, _m: &str, _a: &mut Args) -> R<Value> {
    Ok(Value::Bool(
        !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()),
    ))
}

fn str_isalpha(_ev: &mut Eval, s: &Rc<str>, _m: &str, _a: &mut Args) -> R<Value> {
    Ok(Value::Bool(
        !s.is_empty() && s.chars().all(char::is_alphabetic),
    ))
}

fn str_zfill(ev: &mut Eval, s: &Rc<str>, m: &str, a: &mut Args) -> R<Value> {
    Ok({
        let w = ev.int_arg(a, 0, m)?.clamp(0, 1 << 20) as usize;
        let n = s.chars().count();
        let (sign, body) = match s.strip_prefix(['-', '+']) {
            Some(b) => (&s[..1], b),
            None => ("", &**s),
        };
        Value::Str(format!("{sign}{}{body}", "0".repeat(w.saturating_sub(n))).into())
    })
}

fn str_splitlines(_ev: &mut Eval, s: &Rc<str>, _m: &str, _a: &mut Args) -> R<Value> {
    Ok(Value::list(s.lines().map(Value::str).collect()))
}

fn list_append(ev: &mut Eval, l: &List, _m: &str, a: &mut Args) -> R<Value> {
    let span = a.span;
    Ok({
        ev.charge(VALUE_BYTES, span)?;
        l.borrow_mut().push(a.pos[0].clone());
        Value::None
    })
}

fn list_extend(ev: &mut Eval, l: &List, _m: &str, a: &mut Args) -> R<Value> {
    let span = a.span;
    Ok({
        let items = ev.iterate(&a.pos[0].clone(), a.span_of(0))?;
        ev.charge(items.len() as u64 * VALUE_BYTES, span)?;
        l.borrow_mut().extend(items);
        Value::None
    })
}

fn list_insert(ev: &mut Eval, l: &List, m: &str, a: &mut Args) -> R<Value> {
    let span = a.span;
    Ok({
        let i = ev.int_arg(a, 0, m)?;
        let n = l.borrow().len() as i64;
        let at = if i < 0 { (i + n).max(0) } else { i.min(n) } as usize;
        ev.charge(VALUE_BYTES, span)?;
        l.borrow_mut().insert(at, a.pos[1].clone());
        Value::None
    })
}

fn list_pop(ev: &mut Eval, l: &List, _m: &str, a: &mut Args) -> R<Value> {
    let span = a.span;
    Ok({
        let n = l.borrow().len();
        if n == 0 {
            return Err(ev.fail(code::E0216, span, "pop from an empty list", "empty"));
        }
        let i = match a.pos.first() {
            Some(k) => ev.index(k, n, a.span_of(0))?,
            None => n - 1,
        };
        l.borrow_mut().remove(i)
    })
}

fn list_index(ev: &mut Eval, l: &List, m: &str, a: &mut Args) -> R<Value> {
    Ok({
        let items = l.borrow().clone();
        let mut pos = None;
        let mut count = 0;
        for (i, x) in items.iter().enumerate() {
            if ev.eq(x, &a.pos[0], a.span_of(0))? {
                count += 1;
                pos.get_or_insert(i);
                if m != "count" {
                    break;
                }
            }
        }
        match m {
            "count" => Value::Int(count),
            _ => {
                let Some(i) = pos else {
                    return Err(ev.fail(
                        code::E0216,
                        a.span_of(0),
                        format!("{} is not in the list", ev.repr_brief(&a.pos[0])),
                        "not found",
                    ));
                };
                if m == "index" {
                    Value::Int(i as i64)
                } else {
                    l.borrow_mut().remove(i);
                    Value::None
                }
            }
        }
    })
}

fn list_sort(ev: &mut Eval, l: &List, m: &str, a: &mut Args) -> R<Value> {
    let span = a.span;
    Ok({
        let key = ev.kwarg(a, "key");
        let rev = ev.kwarg(a, "reverse").is_some_and(|v| v.truthy());
        ev.no_kwargs(a, m)?;
        let items = l.borrow().clone();
        let sorted = ev.sort_values(items, key, rev, span)?;
        *l.borrow_mut() = sorted;
        Value::None
    })
}

fn list_reverse(_ev: &mut Eval, l: &List, _m: &str, _a: &mut Args) -> R<Value> {
    Ok({
        l.borrow_mut().reverse();
        Value::None
    })
}

fn list_copy(_ev: &mut Eval, l: &List, _m: &str, _a: &mut Args) -> R<Value> {
    Ok(Value::list(l.borrow().clone()))
}

fn list_clear(_ev: &mut Eval, l: &List, _m: &str, _a: &mut Args) -> R<Value> {
    Ok({
        l.borrow_mut().clear();
        Value::None
    })
}

fn dict_items(_ev: &mut Eval, d: &Dict, _m: &str, _a: &mut Args) -> R<Value> {
    Ok(Value::list(
        d.borrow()
            .iter()
            .map(|(k, v)| Value::tuple(vec![k.value(), v.clone()]))
            .collect(),
    ))
}

fn dict_keys(_ev: &mut Eval, d: &Dict, _m: &str, _a: &mut Args) -> R<Value> {
    Ok(Value::list(d.borrow().keys().map(Key::value).collect()))
}

fn dict_values(_ev: &mut Eval, d: &Dict, _m: &str, _a: &mut Args) -> R<Value> {
    Ok(Value::list(d.borrow().values().cloned().collect()))
}

fn dict_get(ev: &mut Eval, d: &Dict, _m: &str, a: &mut Args) -> R<Value> {
    Ok({
        let k = ev.key(&a.pos[0], a.span_of(0))?;
        d.borrow()
            .get(&k)
            .cloned()
            .unwrap_or_else(|| a.pos.get(1).cloned().unwrap_or(Value::None))
    })
}

fn dict_pop(ev: &mut Eval, d: &Dict, _m: &str, a: &mut Args) -> R<Value> {
    Ok({
        let k = ev.key(&a.pos[0], a.span_of(0))?;
        let got = d.borrow_mut().shift_remove(&k);
        match (got, a.pos.get(1)) {
            (Some(v), _) => v,
            (None, Some(default)) => default.clone(),
            (None, None) => return Err(ev.key_error(&a.pos[0], a.span_of(0))),
        }
    })
}

fn dict_setdefault(ev: &mut Eval, d: &Dict, _m: &str, a: &mut Args) -> R<Value> {
    Ok({
        let k = ev.key(&a.pos[0], a.span_of(0))?;
        let default = a.pos.get(1).cloned().unwrap_or(Value::None);
        d.borrow_mut().entry(k).or_insert(default).clone()
    })
}

fn dict_update(ev: &mut Eval, d: &Dict, _m: &str, a: &mut Args) -> R<Value> {
    let span = a.span;
    Ok({
        if let Some(v) = a.pos.first().cloned() {
            let other = match v {
                Value::Dict(o) => o.borrow().clone(),
                other => {
                    let mut map = IndexMap::new();
                    for item in ev.iterate(&other, a.span_of(0))? {
                        let pair = ev.iterate(&item, a.span_of(0))?;
                        if pair.len() != 2 {
                            return Err(ev.type_error(
                                a.span_of(0),
                                "update() needs pairs of key and value",
                            ));
                        }
                        map.insert(ev.key(&pair[0], a.span_of(0))?, pair[1].clone());
                    }
                    map
                }
            };
            ev.charge(other.len() as u64 * 48, span)?;
            d.borrow_mut().extend(other);
        }
        for (k, v, _) in a.kw.drain(..) {
            d.borrow_mut().insert(Key::Str(ev.name_rc(k)), v);
        }
        Value::None
    })
}

fn dict_copy(_ev: &mut Eval, d: &Dict, _m: &str, _a: &mut Args) -> R<Value> {
    Ok(Value::dict(d.borrow().clone()))
}

fn dict_clear(_ev: &mut Eval, d: &Dict, _m: &str, _a: &mut Args) -> R<Value> {
    Ok({
        d.borrow_mut().clear();
        Value::None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<T: ?Sized>(table: &[Method<T>]) {
        let mut seen = std::collections::BTreeSet::new();
        for m in table {
            assert!(seen.insert(m.name), "`{}` declared twice", m.name);
            assert!(m.min <= m.max, "`{}`", m.name);
            assert!(
                m.doc.ends_with('.') && m.doc.len() > 10,
                "`{}` needs a line of documentation",
                m.name
            );
        }
    }

    #[test]
    fn every_method_is_declared_once_and_documented() {
        check(STR);
        check(LIST);
        check(DICT);
        check(TUPLE);
    }
}
