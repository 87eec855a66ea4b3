//! A fast path for the most common lines.
//!
//! Generated models are hundreds of thousands of lines like
//! `n5 = net.node('n5', proc.cores >= 2)` or `l[a].socket.addrs = ip4('...')`.
//! pest spends about 12 µs on such a line, trying grammar alternatives; this
//! hand-written tokenizer and precedence parser handles the plain subset
//! (names, decimal numbers, plain strings, calls with keyword arguments,
//! attributes, subscripts, lists, tuples, operators and `=` assignments) in
//! about a microsecond and gives up (`None`) on anything else, which then goes
//! to the pest grammar. It never reports errors: a line it cannot parse is
//! parsed again by pest, which produces the diagnostic.
//!
//! Keywords and operator precedence come from [`crate::syntax`], the same
//! tables the pest side's Pratt parser is built from. Tests parse random
//! statements and every line of every fixture and example both ways and
//! require identical syntax trees, spans included.

use crate::ast::*;
use crate::syntax::{self, Infix, is_keyword};

/// Deeper nesting goes to pest, which reports E0106 past its own limit.
const MAX_DEPTH: usize = 64;

/// Longer lines go to pest (see [`line`]).
const MAX_TOKENS: usize = 512;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Tok {
    Name,
    Int(i64),
    Float(f64),
    Str,
    /// An operator or bracket, as its index in [`OPS`].
    Op(u8),
}

/// A token, classified once when it is read: the parser asks every
/// operand whether it is an operator or a reserved word. 32 bytes (it was
/// 80 with the operator entries inline): tokens are written once and read
/// several times per line.
#[derive(Clone, Copy, Debug)]
struct Token {
    tok: Tok,
    /// Byte offsets in the line; [`tokenize`] leaves lines of 4 GiB or
    /// more to pest.
    start: u32,
    end: u32,
    /// A name that is a keyword (only the operator words and constants
    /// reach the parser; other keywords send the line to pest).
    kw: bool,
    /// Its entry in [`CLASSES`], or [`NO_CLASS`]: what it is as an infix
    /// and as a prefix operator.
    class: u8,
}

impl Token {
    fn new(tok: Tok, start: usize, end: usize, kw: bool, class: u8) -> Token {
        Token {
            tok,
            // The line is shorter than 4 GiB (checked in `tokenize`).
            start: start as u32,
            end: end as u32,
            kw,
            class,
        }
    }

    fn s(&self) -> usize {
        self.start as usize
    }

    fn e(&self) -> usize {
        self.end as usize
    }

    fn range(&self) -> std::ops::Range<usize> {
        self.s()..self.e()
    }

    /// Its infix operator, if it spells one.
    fn infix(&self) -> Option<&'static syntax::InfixOp> {
        CLASSES.get(usize::from(self.class))?.0
    }

    /// Its prefix operator, if it spells one.
    fn prefix(&self) -> Option<&'static syntax::PrefixOp> {
        CLASSES.get(usize::from(self.class))?.1
    }
}

/// Every operator and bracket of the fast subset; one or two bytes each.
const OPS: &[&str] = &[
    "**", "//", "<<", ">>", "<=", ">=", "==", "!=", "+", "-", "*", "/", "%", "&", "|", "^", "~",
    "<", ">", "(", ")", "[", "]", ",", ".", "=",
];

/// For each first byte, the operators of [`OPS`] that start with it, in
/// table order (so two-byte ones first), as indices plus one; 0 ends a row.
/// Built from `OPS` at compile time: the table stays the one definition.
const BY_FIRST: [[u8; 4]; 256] = {
    let mut t = [[0u8; 4]; 256];
    let mut i = 0;
    while i < OPS.len() {
        let f = OPS[i].as_bytes()[0] as usize;
        let mut k = 0;
        while t[f][k] != 0 {
            k += 1;
        }
        t[f][k] = (i + 1) as u8;
        i += 1;
    }
    t
};

/// The operator at the start of `rest`, longest first, as its index in
/// [`OPS`]: a look-up by the first byte instead of a walk over the table
/// (which was 15% of parsing a flat 700,000-line model).
fn op_at(rest: &[u8]) -> Option<usize> {
    let (first, second) = (rest[0], rest.get(1).copied());
    for &ix in &BY_FIRST[first as usize] {
        let i = usize::from(ix).checked_sub(1)?;
        let b = OPS[i].as_bytes();
        if b.len() == 1 || Some(b[1]) == second {
            return Some(i);
        }
    }
    None
}

/// The operator words that reach the parser, after [`OPS`] in [`CLASSES`].
const OP_WORDS: &[&str] = &["and", "or", "not", "in", "is"];

/// What each operator of [`OPS`], then each of [`OP_WORDS`], is as an
/// infix and as a prefix operator, looked up in [`syntax`]'s tables when
/// mx is compiled rather than for every token (or behind a lazy lock, whose
/// check every look-up would pay).
static CLASSES: [OpClass; OPS.len() + OP_WORDS.len()] = {
    let mut t = [(None, None); OPS.len() + OP_WORDS.len()];
    let mut i = 0;
    while i < t.len() {
        let text = if i < OPS.len() {
            OPS[i]
        } else {
            OP_WORDS[i - OPS.len()]
        };
        let mut k = 0;
        while k < syntax::INFIX.len() {
            if same_text(syntax::INFIX[k].text, text) {
                t[i].0 = Some(&syntax::INFIX[k]);
            }
            k += 1;
        }
        k = 0;
        while k < syntax::PREFIX.len() {
            if same_text(syntax::PREFIX[k].text, text) {
                t[i].1 = Some(&syntax::PREFIX[k]);
            }
            k += 1;
        }
        i += 1;
    }
    t
};

/// `a == b`, at compile time.
const fn same_text(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// A token that is no operator.
const NO_CLASS: u8 = u8::MAX;

type OpClass = (
    Option<&'static syntax::InfixOp>,
    Option<&'static syntax::PrefixOp>,
);

/// `OPS[i] == text`, at compile time.
const fn op_index(text: &str) -> u8 {
    let t = text.as_bytes();
    let mut i = 0;
    while i < OPS.len() {
        let o = OPS[i].as_bytes();
        if o.len() == t.len() && o[0] == t[0] && (o.len() == 1 || o[1] == t[1]) {
            return i as u8;
        }
        i += 1;
    }
    panic!("not an operator of OPS");
}

const LPAR: u8 = op_index("(");
const RPAR: u8 = op_index(")");
const LSQB: u8 = op_index("[");
const RSQB: u8 = op_index("]");
const COMMA: u8 = op_index(",");
const DOT: u8 = op_index(".");
const EQUAL: u8 = op_index("=");

/// Bytes that continue a name: one look-up each instead of three tests
/// (names are most of a generated model's bytes).
const NAME_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric() || b == b'_';
        c += 1;
    }
    t
};

/// Buffers the fast path reuses from line to line, so a line costs no
/// allocation beyond its own tree, each vector of which is allocated once at
/// its exact size.
#[derive(Default)]
pub struct Scratch {
    toks: Vec<Token>,
    /// Elements of the lists, tuples and assignment targets being built,
    /// innermost last.
    exprs: Vec<Expr>,
    /// Arguments of the calls being built, innermost last.
    args: Vec<Arg>,
}

/// Splits `text` into tokens, or `None` on anything outside the fast subset.
fn tokenize(text: &str, out: &mut Vec<Token>) -> Option<()> {
    let b = text.as_bytes();
    out.clear();
    if u32::try_from(b.len()).is_err() {
        return None;
    }
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' | b'\x0C' => i += 1,
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                let start = i;
                while i < b.len() && NAME_BYTE[usize::from(b[i])] {
                    i += 1;
                }
                // A string prefix (`f'...'`) or a keyword other than the
                // operator words: leave it to pest.
                if i < b.len() && (b[i] == b'\'' || b[i] == b'"') {
                    return None;
                }
                let word = &text[start..i];
                if !is_keyword(word) {
                    out.push(Token::new(Tok::Name, start, i, false, NO_CLASS));
                } else if let Some(k) = OP_WORDS.iter().position(|w| *w == word) {
                    out.push(Token::new(Tok::Name, start, i, true, (OPS.len() + k) as u8));
                } else if matches!(word, "True" | "False" | "None") {
                    out.push(Token::new(Tok::Name, start, i, true, NO_CLASS));
                } else {
                    return None;
                }
            }
            b'0'..=b'9' => {
                let start = i;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                let mut float = false;
                if i < b.len() && b[i] == b'.' && i + 1 < b.len() && b[i + 1].is_ascii_digit() {
                    float = true;
                    i += 1;
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                }
                // Exponents, underscores, other bases, suffixes: pest.
                if i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.') {
                    return None;
                }
                let digits = &text[start..i];
                let tok = if float {
                    Tok::Float(digits.parse().ok().filter(|f: &f64| f.is_finite())?)
                } else {
                    if digits.len() > 1 && digits.starts_with('0') {
                        return None;
                    }
                    Tok::Int(digits.parse().ok()?)
                };
                out.push(Token::new(tok, start, i, false, NO_CLASS));
            }
            b'\'' | b'"' => {
                let start = i;
                // Unterminated strings, triple quotes and escapes: pest.
                i = crate::lexer::skip_string(b, i).ok()?;
                if b.get(start + 1) == Some(&c) && b.get(start + 2) == Some(&c) {
                    return None;
                }
                if b[start + 1..i - 1].contains(&b'\\') {
                    return None;
                }
                out.push(Token::new(Tok::Str, start, i, false, NO_CLASS));
            }
            _ => {
                let ix = op_at(&b[i..])?;
                let op = OPS[ix];
                // Augmented assignment (`+=`, `//=`, `**=`, ...): pest.
                let after = b.get(i + op.len()).copied();
                if after == Some(b'=')
                    && matches!(
                        op,
                        "+" | "-" | "*" | "/" | "//" | "%" | "**" | "&" | "|" | "^" | "<<" | ">>"
                    )
                {
                    return None;
                }
                out.push(Token::new(
                    Tok::Op(ix as u8),
                    i,
                    i + op.len(),
                    false,
                    ix as u8,
                ));
                i += op.len();
            }
        }
    }
    Some(())
}

struct P<'t, 'n> {
    text: &'t str,
    toks: &'t [Token],
    pos: usize,
    base: usize,
    names: &'n mut Interner,
    depth: usize,
    exprs: &'n mut Vec<Expr>,
    args: &'n mut Vec<Arg>,
}

type Res<T> = Option<T>;

impl P<'_, '_> {
    fn peek(&self) -> Option<Tok> {
        self.toks.get(self.pos).map(|t| t.tok)
    }

    fn peek_at(&self, k: usize) -> Option<Tok> {
        self.toks.get(self.pos + k).map(|t| t.tok)
    }

    /// Whether the cursor is at operator `op` (a tag and a byte compared,
    /// not two `Option<Tok>`s, whose float payload the derived `==` reads).
    fn is_op(&self, op: u8) -> bool {
        matches!(self.toks.get(self.pos), Some(Token { tok: Tok::Op(o), .. }) if *o == op)
    }

    fn span(&self, start: usize, end: usize) -> Span {
        Span::new(self.base + start, self.base + end)
    }

    fn last_end(&self) -> usize {
        self.toks[self.pos - 1].e()
    }

    fn expect(&mut self, op: u8) -> Res<()> {
        if self.is_op(op) {
            self.pos += 1;
            Some(())
        } else {
            None
        }
    }

    /// `exprlist`: a single expression, or a tuple when there are commas.
    fn exprlist(&mut self) -> Res<Expr> {
        let start = self.toks.get(self.pos)?.s();
        let first = self.expr()?;
        if !self.is_op(COMMA) {
            return Some(first);
        }
        let base = self.exprs.len();
        self.exprs.push(first);
        let mut trailing_comma = false;
        while self.is_op(COMMA) {
            self.pos += 1;
            if self.at_list_end() {
                trailing_comma = true;
                break;
            }
            let e = self.expr()?;
            self.exprs.push(e);
        }
        let items = self.exprs.drain(base..).collect();
        // A trailing comma ends the rule; otherwise its optional comma's skip counts.
        let end = if trailing_comma {
            self.last_end()
        } else {
            self.after_skip()
        };
        Some(Expr {
            kind: ExprKind::Tuple(items),
            span: self.span(start, end),
        })
    }

    /// Where pest's implicit whitespace skip after the last consumed token
    /// ends: the next token, or the end of the line. pest's rules that end in
    /// an optional part (`exprlist`, `expr_stmt`) include that whitespace and
    /// any comment in their span, and the trees must match exactly.
    fn after_skip(&self) -> usize {
        self.toks.get(self.pos).map_or(self.text.len(), |t| t.s())
    }

    fn at_list_end(&self) -> bool {
        matches!(self.peek(), None | Some(Tok::Op(RPAR | RSQB | EQUAL)))
    }

    /// `expr`: no conditional expressions or lambdas on the fast path.
    fn expr(&mut self) -> Res<Expr> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        let e = self.binary(0);
        self.depth -= 1;
        e
    }

    /// Precedence climbing with the levels of the compiler's Pratt table.
    fn binary(&mut self, min: u8) -> Res<Expr> {
        // Prefix chains (`- - - x`) and `**` chains recurse through here.
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        let mut lhs = self.unary(min)?;
        while let Some((op, width)) = self.infix() {
            if op.prec < min {
                break;
            }
            self.pos += width;
            // A right-associative operator's right side may hold another one.
            let rhs = if op.right_assoc() {
                self.binary(op.prec)?
            } else {
                self.binary(op.prec + 1)?
            };
            let span = lhs.span.to(rhs.span);
            let kind = match op.op {
                Infix::Or => ExprKind::Or(Box::new(lhs), Box::new(rhs)),
                Infix::And => ExprKind::And(Box::new(lhs), Box::new(rhs)),
                Infix::Bin(o) => ExprKind::Binary(o, Box::new(lhs), Box::new(rhs)),
                Infix::Cmp(o) => compare(o, lhs, rhs),
            };
            lhs = Expr { kind, span };
        }
        self.depth -= 1;
        Some(lhs)
    }

    /// The infix operator at the cursor, from [`syntax::INFIX`], and how
    /// many tokens it spans (`not in` and `is not` take two).
    fn infix(&self) -> Option<(syntax::InfixOp, usize)> {
        let t = self.toks.get(self.pos)?;
        if t.kw
            && let Some(next) = self.peek_word(1)
            && let Some(op) = syntax::infix_words(&self.text[t.range()], next)
        {
            return Some((op, 2));
        }
        t.infix().map(|op| (*op, 1))
    }

    fn peek_word(&self, k: usize) -> Option<&str> {
        match self.toks.get(self.pos + k) {
            Some(t) if t.tok == Tok::Name => Some(&self.text[t.range()]),
            _ => None,
        }
    }

    /// Prefix operators, from [`syntax::PREFIX`].
    fn unary(&mut self, min: u8) -> Res<Expr> {
        let tok = *self.toks.get(self.pos)?;
        if let Some(&syntax::PrefixOp { prec, op, .. }) = tok.prefix() {
            if prec < min {
                // A lower-precedence prefix in a tighter context (`a + not b`):
                // the grammar rejects it; let pest say so.
                return None;
            }
            self.pos += 1;
            let rhs = self.binary(prec)?;
            let span = self.span(tok.s(), rhs.span.end as usize - self.base);
            return Some(Expr {
                kind: ExprKind::Unary(op, Box::new(rhs)),
                span,
            });
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Res<Expr> {
        let mut e = self.primary()?;
        loop {
            // One look at the next token: most operands have no trailer.
            let Some(&Token {
                tok: Tok::Op(op @ (DOT | LPAR | LSQB)),
                ..
            }) = self.toks.get(self.pos)
            else {
                return Some(e);
            };
            if op == DOT {
                self.pos += 1;
                let t = *self.toks.get(self.pos)?;
                if t.tok != Tok::Name || t.kw {
                    return None;
                }
                self.pos += 1;
                let sym = self.names.intern(&self.text[t.range()]);
                let span = Span::new(e.span.start as usize, self.base + t.e());
                e = Expr {
                    kind: ExprKind::Attr(Box::new(e), sym, self.span(t.s(), t.e())),
                    span,
                };
            } else if op == LPAR {
                self.pos += 1;
                let args = self.args()?;
                self.expect(RPAR)?;
                let span = Span::new(e.span.start as usize, self.base + self.last_end());
                e = Expr {
                    kind: ExprKind::Call(Box::new((e, args))),
                    span,
                };
            } else {
                self.pos += 1;
                if self.is_op(RSQB) {
                    return None;
                }
                let index = self.exprlist()?;
                self.expect(RSQB)?;
                let span = Span::new(e.span.start as usize, self.base + self.last_end());
                e = Expr {
                    kind: ExprKind::Index(Box::new((e, index))),
                    span,
                };
            }
        }
    }

    fn args(&mut self) -> Res<CallArgs> {
        let base = self.args.len();
        let mut kw_seen = false;
        while !self.is_op(RPAR) {
            if self.peek() == Some(Tok::Name) && matches!(self.peek_at(1), Some(Tok::Op(EQUAL))) {
                let t = self.toks[self.pos];
                if t.kw {
                    return None;
                }
                self.pos += 2;
                let sym = self.names.intern(&self.text[t.range()]);
                let value = self.expr()?;
                let span = self.span(t.s(), t.e());
                self.args.push(Arg::Kw(sym, span, value));
                kw_seen = true;
            } else {
                if kw_seen {
                    return None; // positional after keyword: pest reports it
                }
                let e = self.expr()?;
                self.args.push(Arg::Pos(e));
            }
            if !self.is_op(COMMA) {
                break;
            }
            self.pos += 1;
        }
        Some(take(self.args, base))
    }

    fn primary(&mut self) -> Res<Expr> {
        let t = *self.toks.get(self.pos)?;
        let span = self.span(t.s(), t.e());
        let kind = match t.tok {
            Tok::Name => {
                let w = &self.text[t.range()];
                match w {
                    _ if !t.kw => ExprKind::Name(self.names.intern(w)),
                    "True" => ExprKind::Bool(true),
                    "False" => ExprKind::Bool(false),
                    "None" => ExprKind::None,
                    _ => return None,
                }
            }
            Tok::Int(i) => ExprKind::Int(i),
            Tok::Float(f) => ExprKind::Float(f),
            Tok::Str => {
                // Adjacent literals concatenate; leave that to pest.
                if matches!(self.peek_at(1), Some(Tok::Str)) {
                    return None;
                }
                // pest's `strings = { string+ }` span takes the whitespace after it.
                let end = self
                    .toks
                    .get(self.pos + 1)
                    .map_or(self.text.len(), |n| n.s());
                self.pos += 1;
                return Some(Expr {
                    kind: ExprKind::Str(self.text[t.s() + 1..t.e() - 1].into()),
                    span: self.span(t.s(), end),
                });
            }
            Tok::Op(LPAR) => return self.paren(),
            Tok::Op(LSQB) => return self.list(),
            Tok::Op(_) => return None,
        };
        self.pos += 1;
        Some(Expr { kind, span })
    }

    fn paren(&mut self) -> Res<Expr> {
        let open = self.toks[self.pos].s();
        self.pos += 1;
        if self.is_op(RPAR) {
            self.pos += 1;
            return Some(Expr {
                kind: ExprKind::Tuple(Box::new([])),
                span: self.span(open, self.last_end()),
            });
        }
        let inner = self.exprlist()?;
        self.expect(RPAR)?;
        let span = self.span(open, self.last_end());
        Some(match inner.kind {
            ExprKind::Tuple(items) => Expr {
                kind: ExprKind::Tuple(items),
                span,
            },
            kind => Expr {
                kind: ExprKind::Paren(Box::new(Expr {
                    kind,
                    span: inner.span,
                })),
                span,
            },
        })
    }

    fn list(&mut self) -> Res<Expr> {
        let open = self.toks[self.pos].s();
        self.pos += 1;
        let base = self.exprs.len();
        while !self.is_op(RSQB) {
            let e = self.expr()?;
            self.exprs.push(e);
            if !self.is_op(COMMA) {
                break;
            }
            self.pos += 1;
        }
        self.expect(RSQB)?;
        let items = self.exprs.drain(base..).collect();
        Some(Expr {
            kind: ExprKind::List(items),
            span: self.span(open, self.last_end()),
        })
    }
}

/// The items of `stack` from `base`, moved out: one held inline, more in a
/// vector of their exact size (a 700,000-line model holds every call's
/// arguments until it runs). Cheaper than collecting into the `SmallVec`,
/// which checks its capacity item by item.
fn take<T>(stack: &mut Vec<T>, base: usize) -> smallvec::SmallVec<[T; 1]> {
    if stack.len() == base + 1
        && let Some(one) = stack.pop()
    {
        return smallvec::smallvec![one];
    }
    smallvec::SmallVec::from_vec(stack.drain(base..).collect())
}

fn valid_target(e: &Expr) -> bool {
    match &e.kind {
        ExprKind::Name(_) | ExprKind::Attr(..) | ExprKind::Index(..) => true,
        ExprKind::Tuple(items) | ExprKind::List(items) => items.iter().all(valid_target),
        ExprKind::Paren(inner) => valid_target(inner),
        _ => false,
    }
}

/// Parses one logical line (`text`, starting at byte `base` of the file) if
/// it is in the fast subset: an expression statement or an assignment.
pub fn line(text: &str, base: usize, names: &mut Interner, scratch: &mut Scratch) -> Option<Stmt> {
    let Scratch { toks, exprs, args } = scratch;
    tokenize(text, toks)?;
    // Very long lines go to pest, which bounds operator chains (E0106): a
    // 50,000-term sum would otherwise make a tree too deep to evaluate.
    if toks.is_empty() || toks.len() > MAX_TOKENS {
        return None;
    }
    // A line given up half-way leaves its pieces behind.
    exprs.clear();
    args.clear();
    let mut p = P {
        text,
        toks,
        pos: 0,
        base,
        names,
        depth: 0,
        exprs,
        args,
    };
    let start = p.toks[0].s();
    let first = p.exprlist()?;
    p.exprs.push(first);
    while p.is_op(EQUAL) {
        p.pos += 1;
        let e = p.exprlist()?;
        p.exprs.push(e);
    }
    if p.pos != p.toks.len() {
        return None;
    }
    let span = p.span(start, p.after_skip());
    let value = p.exprs.pop().expect("at least one expression");
    let kind = if p.exprs.is_empty() {
        StmtKind::Expr(value)
    } else {
        if !p.exprs.iter().all(valid_target) {
            return None;
        }
        StmtKind::Assign {
            targets: take(p.exprs, 0),
            value,
        }
    };
    Some(Stmt { kind, span })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`op_at`] compares at most two bytes, longest operator first.
    #[test]
    fn operators_are_one_or_two_bytes_longest_first() {
        assert!(OPS.iter().all(|o| (1..=2).contains(&o.len())));
        let first_single = OPS.iter().position(|o| o.len() == 1).unwrap();
        assert!(OPS[first_single..].iter().all(|o| o.len() == 1));
        let at = |rest: &[u8]| op_at(rest).map(|i| OPS[i]);
        for op in OPS {
            assert_eq!(at(op.as_bytes()), Some(*op));
        }
        assert_eq!(at(b"**2"), Some("**"));
        assert_eq!(at(b"*2"), Some("*"));
        assert_eq!(at(b"!x"), None);
        // The look-up agrees with a walk over the table for every byte pair
        // and every lone byte.
        let walk = |rest: &[u8]| {
            OPS.iter().copied().find(|op| {
                let b = op.as_bytes();
                b[0] == rest[0] && (b.len() == 1 || rest.get(1) == Some(&b[1]))
            })
        };
        for first in 0..=255u8 {
            assert_eq!(at(&[first]), walk(&[first]), "{first}");
            for second in 0..=255u8 {
                let rest = [first, second];
                assert_eq!(at(&rest), walk(&rest), "{first} {second}");
            }
        }
    }

    /// The table built when mx is compiled is the one a search of
    /// [`syntax`]'s tables gives: `-` is infix and prefix, `not` prefix
    /// only, `(` neither.
    #[test]
    fn operator_classes_are_the_syntax_tables() {
        for (i, text) in OPS.iter().chain(OP_WORDS).enumerate() {
            let infix = syntax::INFIX.iter().find(|o| o.text == *text);
            let prefix = syntax::PREFIX.iter().find(|o| o.text == *text);
            let (ci, cp) = CLASSES[i];
            let i_key = |o: &syntax::InfixOp| (o.text, o.prec, o.op, o.rule);
            let p_key = |o: &syntax::PrefixOp| (o.text, o.prec, o.op, o.rule);
            assert!(ci.map(i_key) == infix.map(i_key), "{text}");
            assert!(cp.map(p_key) == prefix.map(p_key), "{text}");
        }
        let class = |t: &str| CLASSES[OPS.iter().chain(OP_WORDS).position(|o| *o == t).unwrap()];
        assert!(matches!(class("-"), (Some(_), Some(_))));
        assert!(matches!(class("not"), (None, Some(_))));
        assert!(matches!(class("("), (None, None)));
    }

    /// [`take`] moves the items above `base` out in order: one is held
    /// inline, more in a vector of their exact size; what lies below
    /// `base` (an enclosing call's arguments) stays.
    #[test]
    fn take_moves_items_out_one_inline_more_exactly_sized() {
        let mut stack = vec![1, 2];
        let one = take(&mut stack, 1);
        assert_eq!((&one[..], one.spilled()), (&[2][..], false));
        assert_eq!(stack, [1]);

        let mut stack = vec![1, 2, 3, 4];
        let more = take(&mut stack, 1);
        assert_eq!(&more[..], &[2, 3, 4]);
        assert!(more.spilled() && more.capacity() == 3);
        assert_eq!(stack, [1]);

        let mut stack = vec![1];
        let none = take(&mut stack, 1);
        assert!(none.is_empty() && !none.spilled());
        assert_eq!(stack, [1]);
    }

    /// The common line's tree: one target, a call of one argument and a
    /// single comparison are held inline, not in vectors of their own.
    #[test]
    fn a_generated_line_keeps_its_single_parts_inline() {
        let mut names = Interner::default();
        let text = "n5 = net.node(proc.cores >= 2, memory == gb(4))";
        let stmt = line(text, 0, &mut names, &mut Scratch::default()).unwrap();
        let StmtKind::Assign { targets, value } = &stmt.kind else {
            panic!("{stmt:?}");
        };
        assert!(targets.len() == 1 && !targets.spilled());
        let ExprKind::Call(call) = &value.kind else {
            panic!("{value:?}");
        };
        assert_eq!(call.1.len(), 2);
        let Arg::Pos(Expr {
            kind: ExprKind::Compare(chain),
            ..
        }) = &call.1[1]
        else {
            panic!("{:?}", call.1[1]);
        };
        assert!(chain.1.len() == 1 && !chain.1.spilled());
        let ExprKind::Call(gb) = &chain.1[0].1.kind else {
            panic!("{chain:?}");
        };
        assert!(gb.1.len() == 1 && !gb.1.spilled());
    }
}
