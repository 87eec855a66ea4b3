//! The syntax tree the parser builds and the evaluator runs.
//!
//! Every node carries its [`Span`] so evaluation errors and constraints can
//! point back into the model. Names are interned ([`Sym`]) so variable lookup
//! is an integer hash, which matters for models that build 100,000 nodes.

use std::rc::Rc;
use std::sync::Arc;

pub use mx_xir::Span;

/// An interned identifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sym(pub u32);

/// Interns identifiers. A generated model interns every name of every
/// line (millions at 100,000 nodes) and has 100,000 distinct ones, so the
/// table is keyed by a word it holds itself: a name of up to seven bytes
/// (`n12345`, `net`, `cores`: nearly every name a model spells) is its own
/// key, compared and rehashed without reading the name, which at that size
/// is a cache miss each time; a longer name is keyed by its hash and
/// compared with the name only when the hashes agree. The most recent
/// short names are also found in a small direct-mapped cache, before the
/// table.
///
/// The evaluator's copy, fed by the parser thread, is told its names in
/// order ([`Interner::append`]) and looks one up by its text only for a
/// `**` dict's keywords: the table is filled when a look-up needs it, not
/// as 100,000 names arrive (4% of evaluating a generated model).
#[derive(Debug)]
pub struct Interner {
    /// (key, symbol); see [`key`].
    table: hashbrown::HashTable<(u64, Sym)>,
    names: Vec<Rc<str>>,
    /// How many of `names` are in `table`.
    indexed: usize,
    /// (bytes and length as one word, symbol + 1); 0 is empty.
    recent: Box<[(u64, u32); RECENT]>,
}

const RECENT: usize = 256;

impl Default for Interner {
    fn default() -> Self {
        Interner {
            table: Default::default(),
            names: Vec::new(),
            indexed: 0,
            recent: Box::new([(0, 0); RECENT]),
        }
    }
}

/// A name's key in [`Interner::table`]: its [`short_word`] when it has one
/// (a top byte of 1 to 8), otherwise its hash with the top byte cleared, so
/// the two kinds never meet.
#[inline]
fn key(name: &str, short: Option<(u64, usize)>) -> u64 {
    match short {
        Some((w, _)) => w,
        None => {
            use std::hash::BuildHasher;
            rustc_hash::FxBuildHasher.hash_one(name) & (u64::MAX >> 8)
        }
    }
}

/// Where a key goes in the table: a short word's low bytes are a name's
/// first letters, alike across `n1`...`n99999`, so its bits are mixed.
#[inline]
fn spread(key: u64) -> u64 {
    let h = (key ^ (key >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h ^ (h >> 32)
}

/// A name of at most seven bytes as one word, its length plus one in the
/// top byte (so no word is 0, the empty slot), and its slot in
/// [`Interner::recent`].
#[inline]
fn short_word(name: &str) -> Option<(u64, usize)> {
    let b = name.as_bytes();
    if b.len() > 7 {
        return None;
    }
    let mut w = (b.len() as u64 + 1) << 56;
    for (i, &c) in b.iter().enumerate() {
        w |= u64::from(c) << (8 * i);
    }
    let slot = (w.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as usize % RECENT;
    Some((w, slot))
}

/// Equal names; most are a few bytes, for which a call to `memcmp` costs
/// more than the comparison.
#[inline]
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len()
        && if a.len() <= 16 {
            a.iter().zip(b).all(|(x, y)| x == y)
        } else {
            a == b
        }
}

impl Interner {
    pub fn intern(&mut self, name: &str) -> Sym {
        let short = short_word(name);
        if let Some((w, slot)) = short
            && self.recent[slot].0 == w
        {
            return Sym(self.recent[slot].1 - 1);
        }
        self.index();
        let Interner { table, names, .. } = self;
        let k = key(name, short);
        let s = match table.find(spread(k), |e| found(e, k, names, name)) {
            Some(&(_, s)) => s,
            None => {
                let s = Sym(u32::try_from(names.len()).unwrap_or(u32::MAX - 1));
                names.push(name.into());
                table.insert_unique(spread(k), (k, s), |e| spread(e.0));
                self.indexed = names.len();
                s
            }
        };
        if let Some((w, slot)) = short {
            self.recent[slot] = (w, s.0 + 1);
        }
        s
    }

    pub fn name(&self, s: Sym) -> &Rc<str> {
        &self.names[s.0 as usize]
    }

    pub fn count(&self) -> usize {
        self.names.len()
    }

    /// Adds `name`, which the caller knows is not interned yet, as the next
    /// symbol, without looking for it (see [`Interner`]).
    pub fn append(&mut self, name: &str) -> Sym {
        debug_assert!(self.lookup(name).is_none(), "{name} is interned already");
        let s = Sym(u32::try_from(self.names.len()).unwrap_or(u32::MAX - 1));
        self.names.push(name.into());
        s
    }

    /// Puts the names appended since the last look-up into the table.
    #[inline]
    fn index(&mut self) {
        if self.indexed != self.names.len() {
            self.index_appended();
        }
    }

    #[cold]
    fn index_appended(&mut self) {
        let Interner {
            table,
            names,
            indexed,
            ..
        } = self;
        table.reserve(names.len() - *indexed, |e| spread(e.0));
        for (i, name) in names.iter().enumerate().skip(*indexed) {
            let k = key(name, short_word(name));
            table.insert_unique(spread(k), (k, Sym(i as u32)), |e| spread(e.0));
        }
        *indexed = names.len();
    }

    pub fn lookup(&mut self, name: &str) -> Option<Sym> {
        let short = short_word(name);
        if let Some((w, slot)) = short
            && self.recent[slot].0 == w
        {
            return Some(Sym(self.recent[slot].1 - 1));
        }
        self.index();
        let k = key(name, short);
        self.table
            .find(spread(k), |e| found(e, k, &self.names, name))
            .map(|&(_, s)| s)
    }
}

/// Whether table entry `e` is `name`, whose key is `k`: a short name's key
/// is the name; a long one's only says where to compare.
#[inline]
fn found(e: &(u64, Sym), k: u64, names: &[Rc<str>], name: &str) -> bool {
    e.0 == k && (k >> 56 != 0 || same(&names[e.1.0 as usize], name))
}

#[derive(Debug, Clone)]
pub struct Stmt {
    pub kind: StmtKind,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub enum StmtKind {
    Expr(Expr),
    /// `a = b = value`: every target gets the value.
    Assign {
        /// Almost always one (`a = b = 1` is rare): held inline, as a
        /// vector would cost an allocation for every assignment.
        targets: Targets,
        value: Expr,
    },
    AugAssign {
        target: Expr,
        op: BinOp,
        value: Expr,
    },
    If {
        branches: Vec<(Expr, Vec<Stmt>)>,
        orelse: Vec<Stmt>,
    },
    For {
        target: Expr,
        iter: Expr,
        body: Vec<Stmt>,
    },
    While {
        cond: Expr,
        body: Vec<Stmt>,
    },
    Def(Arc<FuncDef>),
    Return(Option<Expr>),
    Pass,
    Break,
    Continue,
    /// `import a.b as c`: binds `c` (or `a`) to module `a.b`.
    Import {
        module: String,
        alias: Option<Sym>,
        /// What it binds: the alias, or the module's first name.
        bind: Sym,
    },
    /// `from a import *` (names empty) or `from a import b as c`.
    FromImport {
        module: String,
        names: Vec<(Sym, Sym, Span)>,
    },
    Global(Vec<Sym>),
    Assert {
        cond: Expr,
        msg: Option<Expr>,
    },
    Del(Expr),
    /// A line that did not parse (its error is already reported). Running
    /// it makes the names it appears to bind [`Poison`](crate::value::Value::Poison),
    /// so the rest of the model is still checked without follow-on errors.
    Broken(Vec<Sym>),
}

/// A function definition (`def` or `lambda`).
#[derive(Debug)]
pub struct FuncDef {
    pub name: Sym,
    pub params: Vec<Param>,
    /// `*args`
    pub varargs: Option<Sym>,
    /// `**kwargs`
    pub kwargs: Option<Sym>,
    pub body: Vec<Stmt>,
    /// The header (`def f(x):`), where call-depth errors point.
    pub span: Span,
    /// Names assigned in the body (locals), unless declared `global`.
    pub locals: Vec<Sym>,
}

#[derive(Debug)]
pub struct Param {
    pub name: Sym,
    pub default: Option<Expr>,
    /// Parameters after a bare `*` can only be passed by keyword.
    pub kw_only: bool,
}

/// An expression with its span: 32 bytes. Every variant's own data is at
/// most 23 bytes, anything larger behind one pointer, because expressions
/// are moved and copied whole as they are built and run: at 48 bytes they
/// were a tenth of parsing a generated model (`expr_is_32_bytes`).
#[derive(Debug, Clone)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub enum ExprKind {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Arc<str>),
    /// An f-string: literal text and `{expr!conv:spec}` fields.
    FStr(Arc<[FPart]>),
    Name(Sym),
    Tuple(Box<[Expr]>),
    List(Box<[Expr]>),
    Dict(Box<[DictItem]>),
    /// `[elt for ... if ...]`; generator expressions are evaluated eagerly.
    ListComp(Box<(Expr, Arc<[Comp]>)>),
    /// `{k: v for ...}`: the key, the value and the loops.
    DictComp(Box<(Expr, Expr, Arc<[Comp]>)>),
    Attr(Box<Expr>, Sym, Span),
    /// The object and the index, in one allocation.
    Index(Box<(Expr, Expr)>),
    /// `obj[start:stop:step]`.
    Slice(Box<(Expr, [Option<Box<Expr>>; 3])>),
    /// The callee and the arguments, in one allocation when there is one
    /// argument (`gb(4)`, `ip4('...')`: most calls of a generated model).
    Call(Box<(Expr, CallArgs)>),
    Unary(UnOp, Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// `a < b <= c`: chained comparisons, as in Python.
    /// The first operand and the comparisons after it, in one allocation
    /// when there is one comparison (`cores >= 2`: most of a model's).
    Compare(Box<(Expr, Comparisons)>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    /// `then if cond else other`, held as (cond, then, other).
    IfExp(Box<(Expr, Expr, Expr)>),
    Lambda(Arc<FuncDef>),
    /// `*x` inside a list or tuple display.
    Star(Box<Expr>),
    /// `(x)`: kept so `(a < b) < c` does not chain.
    Paren(Box<Expr>),
}

/// The comparisons after a chain's first operand (`< b <= c`), the first
/// held inline.
pub type Comparisons = smallvec::SmallVec<[(CmpOp, Expr); 1]>;

/// A call's arguments, one held inline.
pub type CallArgs = smallvec::SmallVec<[Arg; 1]>;

/// An assignment's targets, one held inline.
pub type Targets = smallvec::SmallVec<[Expr; 1]>;

#[derive(Debug, Clone)]
pub enum FPart {
    Lit(Arc<str>),
    Field {
        expr: Expr,
        conv: Option<char>,
        spec: Option<Arc<str>>,
    },
}

#[derive(Debug, Clone)]
pub enum DictItem {
    Pair(Expr, Expr),
    Splat(Expr),
}

#[derive(Debug)]
pub struct Comp {
    pub target: Expr,
    pub iter: Expr,
    pub conds: Vec<Expr>,
}

#[derive(Debug, Clone)]
pub enum Arg {
    Pos(Expr),
    Star(Expr),
    Kw(Sym, Span, Expr),
    DStar(Expr),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnOp {
    Neg,
    Pos,
    Inv,
    Not,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    FloorDiv,
    Mod,
    Pow,
    BitOr,
    BitXor,
    BitAnd,
    Shl,
    Shr,
}

impl BinOp {
    /// How the operator is written, from [`crate::syntax::INFIX`].
    pub fn symbol(self) -> &'static str {
        crate::syntax::INFIX
            .iter()
            .find(|o| o.op == crate::syntax::Infix::Bin(self))
            .map_or("?", |o| o.text)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    NotIn,
    Is,
    IsNot,
}

impl CmpOp {
    /// How the operator is written, from [`crate::syntax::INFIX`].
    pub fn symbol(self) -> &'static str {
        crate::syntax::INFIX
            .iter()
            .find(|o| o.op == crate::syntax::Infix::Cmp(self))
            .map_or("?", |o| o.text)
    }
}

/// `lhs op rhs`, extending `lhs` when it is already a comparison: Python
/// chains `a < b <= c`. Both parsers build comparisons with this.
pub fn compare(op: CmpOp, lhs: Expr, rhs: Expr) -> ExprKind {
    match lhs.kind {
        ExprKind::Compare(mut chain) => {
            chain.1.push((op, rhs));
            ExprKind::Compare(chain)
        }
        kind => ExprKind::Compare(Box::new((
            Expr {
                kind,
                span: lhs.span,
            },
            smallvec::smallvec![(op, rhs)],
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// See [`Expr`]: a variant that grows past 23 bytes makes every
    /// expression larger.
    #[test]
    fn expr_is_32_bytes() {
        assert_eq!(std::mem::size_of::<Expr>(), 32);
        assert!(std::mem::size_of::<Stmt>() <= 96);
    }

    /// Symbols come out the same whether a name is found in the cache of
    /// short names, in the table, or new; names that share a cache slot
    /// or differ only in length or padding stay apart.
    #[test]
    fn interning_is_stable_across_the_short_name_cache() {
        let mut names: Vec<String> = vec![String::new(), "\0".into(), "a\0".into()];
        for n in 0..3000 {
            names.push(format!("n{n}"));
            names.push(format!("x{}", "y".repeat(n % 10)));
        }
        let mut i = Interner::default();
        let first: Vec<Sym> = names.iter().map(|n| i.intern(n)).collect();
        for _ in 0..2 {
            for (n, &s) in names.iter().zip(&first) {
                assert_eq!(i.intern(n), s, "{n:?}");
                assert_eq!(i.lookup(n), Some(s), "{n:?}");
                assert_eq!(&**i.name(s), n.as_str());
            }
        }
        let distinct: std::collections::BTreeSet<&String> = names.iter().collect();
        assert_eq!(i.count(), distinct.len());
        assert_eq!(i.lookup("never"), None);
    }

    /// A short name is its own key and a long one is keyed by its hash:
    /// the two kinds never share a key, so a short name is never taken for
    /// a long one without comparing them; and the table keeps finding
    /// every name as it grows to a generated model's 100,000 and more.
    #[test]
    fn short_and_long_names_are_keyed_apart_and_found_at_scale() {
        for name in ["", "a", "n99999", "abcdefg"] {
            let k = key(name, short_word(name));
            assert!((1..=8).contains(&(k >> 56)), "{name:?}: {k:#x}");
        }
        for name in ["abcdefgh", "capacity", "a_much_longer_name_than_that"] {
            assert_eq!(key(name, short_word(name)) >> 56, 0, "{name:?}");
        }
        let mut i = Interner::default();
        let names: Vec<String> = (0..120_000)
            .flat_map(|n| [format!("n{n}"), format!("node_number_{n}")])
            .collect();
        let syms: Vec<Sym> = names.iter().map(|n| i.intern(n)).collect();
        assert_eq!(i.count(), names.len());
        for (n, s) in names.iter().zip(&syms) {
            assert_eq!(i.lookup(n), Some(*s), "{n}");
            assert_eq!(&**i.name(*s), n.as_str());
        }
        assert_eq!(i.lookup("n120000"), None);
        assert_eq!(i.lookup("node_number_120000"), None);
    }

    /// Names appended without a look-up (the evaluator's copy) are found
    /// once a look-up or an intern needs them, interleaved as batches and
    /// `**` keywords interleave, and keep the symbols they were given.
    #[test]
    fn appended_names_are_found_later() {
        let mut i = Interner::default();
        let mut all = Vec::new();
        for batch in 0..50 {
            for n in 0..100 {
                let name = format!("{}{}", ["n", "a_long_node_name_"][n % 2], batch * 100 + n);
                all.push((i.append(&name), name));
            }
            if batch % 7 == 0 {
                let (s, name) = &all[all.len() / 2];
                assert_eq!(i.lookup(name), Some(*s));
                assert_eq!(i.intern(name), *s);
            }
        }
        assert_eq!(i.count(), 5000);
        for (s, name) in &all {
            assert_eq!(i.lookup(name), Some(*s), "{name}");
            assert_eq!(&**i.name(*s), name.as_str());
        }
        let fresh = i.intern("fresh");
        assert_eq!(fresh, Sym(5000));
        assert_eq!(i.append("after"), Sym(5001));
        assert_eq!(i.lookup("after"), Some(Sym(5001)));
    }
}
