//! Logical lines → syntax tree.
//!
//! Each logical line from the [`lexer`](crate::lexer) is parsed on its own with
//! the pest grammar, then lines are assembled into blocks by indentation. A
//! line that fails to parse is reported and skipped (a broken block header
//! still swallows its indented body), so one run reports every bad line.

use mx_diag::code;
use std::rc::Rc;
use std::sync::Arc;

use mx_diag::Diagnostic;
use mx_grammar::{MxParser, Rule};
use pest::Parser;
use pest::iterators::{Pair, Pairs};
use pest::pratt_parser::{Assoc, Op, PrattParser};

use crate::ast::*;
use crate::lexer::{self, Line};
use crate::syntax::{self, Infix};

/// Expressions nest at most this deep (E0106), so evaluating or dropping
/// the tree can never exhaust the stack.
const MAX_EXPR_DEPTH: usize = 200;
/// Blocks nest at most this deep.
const MAX_BLOCK_DEPTH: usize = 100;

/// Whether `d` is a mistake in the model's structure (strings, brackets,
/// indentation, nesting depth), after which the model does not run; a line
/// that does not parse (E0101, E0102) is skipped and the model still runs.
pub fn structural(d: &Diagnostic) -> bool {
    d.is_error() && d.code != code::E0101 && d.code != code::E0102
}

/// A model's top level, parsed a statement at a time as the evaluator
/// reaches it. Each line is parsed once and a statement is dropped once it
/// has run, so a 700,000-line generated model is never held whole as a
/// tree. Lines are split and bracketed first, for the whole file.
pub struct TopLevel<'a> {
    blocks: Blocks<'a>,
    /// Statements parsed and not yet handed out: the last may still gain an
    /// `elif` or `else`.
    ready: Vec<Stmt>,
    /// Diagnostics already looked at for [`structural`] ones.
    seen: usize,
    structural: bool,
    /// The statement last handed out as a [`crate::ahead::Source`].
    pub(crate) current: Option<Stmt>,
}

impl<'a> TopLevel<'a> {
    pub fn new(src: &'a str, diags: &'a mut Vec<Diagnostic>) -> Self {
        let lines = lexer::lines(src, diags);
        let parser = LineParser {
            src,
            names: Interner::default(),
            scratch: Default::default(),
            diags,
            pratt: Rc::new(pratt()),
        };
        let mut top = TopLevel {
            blocks: Blocks {
                src,
                lines,
                item: Item::Pending,
                item_at: usize::MAX,
                pos: 0,
                parser,
            },
            ready: Vec::new(),
            seen: 0,
            structural: false,
            current: None,
        };
        top.look();
        top
    }

    /// The next top-level statement, its names interned into `names`.
    pub fn next(&mut self, names: &mut Interner) -> Option<Stmt> {
        let b = &mut self.blocks;
        std::mem::swap(&mut b.parser.names, names);
        // A statement is complete once another follows it.
        while self.ready.len() < 2 && b.pos < b.lines.len() {
            b.step(0, "", &mut self.ready);
        }
        std::mem::swap(&mut b.parser.names, names);
        self.look();
        (!self.ready.is_empty()).then(|| self.ready.remove(0))
    }

    /// Parses what is left, for its errors, when evaluation stopped early.
    pub fn finish(&mut self, names: &mut Interner) {
        while self.next(names).is_some() {}
        let b = &mut self.blocks;
        std::mem::swap(&mut b.parser.names, names);
        // Every line is parsed even if no block claimed it, so all errors
        // show. Lines are parsed in order, so those not yet parsed are the
        // ones after the last.
        let from = b.item_at.wrapping_add(1);
        for i in from..b.lines.len() {
            b.parsed(i);
        }
        std::mem::swap(&mut b.parser.names, names);
        self.look();
    }

    /// Whether the model's structure is broken (see [`structural`]): then
    /// it must not run, and only the parser's diagnostics are reported.
    pub fn broken(&self) -> bool {
        self.structural
    }

    /// Whether any error has been reported so far.
    pub fn errors(&self) -> bool {
        self.blocks.parser.diags.iter().any(Diagnostic::is_error)
    }

    fn look(&mut self) {
        let diags = &self.blocks.parser.diags;
        self.structural |= diags[self.seen..].iter().any(structural);
        self.seen = diags.len();
    }
}

/// The Pratt parser over pest's flat operator sequences, built level by
/// level from [`syntax`]'s tables (the fast path reads the same tables).
fn pratt() -> PrattParser<Rule> {
    let mut pratt = PrattParser::new();
    for level in 1..=syntax::POSTFIX_PREC {
        let infix = syntax::INFIX.iter().filter(|o| o.prec == level).map(|o| {
            let assoc = if o.right_assoc() {
                Assoc::Right
            } else {
                Assoc::Left
            };
            Op::infix(o.rule, assoc)
        });
        let prefix = syntax::PREFIX
            .iter()
            .filter(|o| o.prec == level)
            .map(|o| Op::prefix(o.rule));
        let postfix = syntax::POSTFIX
            .iter()
            .filter(|_| level == syntax::POSTFIX_PREC)
            .map(|r| Op::postfix(*r));
        if let Some(ops) = infix.chain(prefix).chain(postfix).reduce(|a, b| a | b) {
            pratt = pratt.op(ops);
        }
    }
    pratt
}

/// What one logical line turned out to be.
enum Item {
    /// A line of one statement, the fast path's: not in a vector allocated
    /// and freed for each of a generated model's million lines.
    One(Stmt),
    Simple(Vec<Stmt>),
    /// Boxed: headers are rare and large, and a generated model has a
    /// million simple lines.
    Header(Box<Header>),
    /// A line that failed to parse. `header` if it looked like a block header,
    /// so its indented body is skipped quietly; `binds`, the names it seems
    /// to assign.
    Broken {
        header: bool,
        binds: Vec<Sym>,
    },
    /// Already moved into the tree.
    Taken,
    /// No line parsed yet (the slot's start).
    Pending,
}

struct Header {
    kind: HeaderKind,
    /// Statements after the colon on the same line, if any.
    inline: Option<Vec<Stmt>>,
    span: Span,
    keyword: &'static str,
}

enum HeaderKind {
    If(Expr),
    Elif(Expr),
    Else,
    For(Expr, Expr),
    While(Expr),
    Def {
        name: Sym,
        params: Vec<Param>,
        varargs: Option<Sym>,
        kwargs: Option<Sym>,
    },
}

/// A parse failure inside a line, carrying its diagnostic.
struct Fail(Diagnostic);
type PResult<T> = Result<T, Fail>;

struct LineParser<'a> {
    src: &'a str,
    names: Interner,
    scratch: crate::fast::Scratch,
    diags: &'a mut Vec<Diagnostic>,
    pratt: Rc<PrattParser<Rule>>,
}

impl LineParser<'_> {
    fn line(&mut self, line: &Line) -> Item {
        let text = &self.src[line.start()..line.end()];
        if line.broken {
            return Item::Broken {
                header: is_header_text(text),
                binds: Vec::new(),
            };
        }
        if let Some(stmt) =
            crate::fast::line(text, line.start(), &mut self.names, &mut self.scratch)
        {
            return Item::One(stmt);
        }
        // Asked only here: a line the fast path takes is no header.
        self.line_pest(text, line.start(), is_header_text(text))
    }

    /// Parses one line with the pest grammar: everything the fast path does
    /// not take, and every line that has an error.
    fn line_pest(&mut self, text: &str, start: usize, looks_header: bool) -> Item {
        let line_start = start;
        match MxParser::parse(Rule::line, text) {
            Ok(mut pairs) => {
                let line_pair = pairs.next().expect("line rule matched");
                let first = line_pair.into_inner().next().expect("line has content");
                let built = match first.as_rule() {
                    Rule::simple_stmts => self.simple_stmts(first, line_start).map(Item::Simple),
                    _ => self
                        .header(first, line_start)
                        .map(|h| Item::Header(Box::new(h))),
                };
                match built {
                    Ok(item) => item,
                    Err(Fail(d)) => {
                        self.diags.push(d);
                        Item::Broken {
                            header: looks_header,
                            binds: self.broken_binds(text),
                        }
                    }
                }
            }
            Err(e) => {
                let d = self.syntax_error(&e, text, line_start);
                self.diags.push(d);
                Item::Broken {
                    header: looks_header,
                    binds: self.broken_binds(text),
                }
            }
        }
    }

    /// The names a line that did not parse seems to assign: the plain names
    /// left of its first `=` (or `+=` ...) outside brackets and strings, or
    /// the name after `def`/`for`.
    fn broken_binds(&mut self, text: &str) -> Vec<Sym> {
        let word = syntax::first_word(text);
        if word == "def" || word == "for" {
            let rest = text[word.len()..].trim_start();
            let end = rest.find([' ', '(', ',', ':']).unwrap_or(rest.len());
            let mut names = Vec::new();
            for w in rest[..end].split(',') {
                self.bind_word(w, &mut names);
            }
            return names;
        }
        let mut names = Vec::new();
        let after = text[word.len()..].trim_start();
        if let Some(method) = after.strip_prefix('.')
            && MUTATORS.contains(&syntax::first_word(method.trim_start()))
        {
            self.bind_word(word, &mut names);
        }
        let b = text.as_bytes();
        let (mut i, mut nest) = (0, 0usize);
        while i < b.len() {
            match b[i] {
                b'\'' | b'"' => {
                    i = lexer::skip_string(b, i).unwrap_or(b.len());
                    continue;
                }
                b'(' | b'[' | b'{' => nest += 1,
                b')' | b']' | b'}' => nest = nest.saturating_sub(1),
                b'=' if nest == 0 => {
                    if b.get(i + 1) == Some(&b'=') {
                        i += 2;
                        continue;
                    }
                    // `x += 1`: the operator's characters precede `=`.
                    let lhs = text[..i].trim_end_matches(|c| "+-*/%&|^<>!".contains(c));
                    if text[..i].ends_with(['!', '<', '>'])
                        && !text[..i].ends_with(">>")
                        && !text[..i].ends_with("<<")
                    {
                        i += 1;
                        continue;
                    }
                    for w in lhs.split(',') {
                        self.bind_word(w, &mut names);
                    }
                    return names;
                }
                _ => {}
            }
            i += 1;
        }
        names
    }

    fn bind_word(&mut self, w: &str, names: &mut Vec<Sym>) {
        let w = w
            .trim()
            .trim_matches(|c| c == '(' || c == ')' || c == '[' || c == ']' || c == '*')
            .trim();
        // `l[a].socket.addrs = ...`, `nodes.append(...)`: the value changed
        // is the root's.
        let root = syntax::first_word(w);
        if !root.is_empty() && w[root.len()..].starts_with(['.', '[']) {
            return self.bind_word(root, names);
        }
        let ident = w
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if ident && !syntax::is_keyword(w) {
            names.push(self.names.intern(w));
        }
    }

    fn span(&self, p: &Pair<Rule>, base: usize) -> Span {
        let s = p.as_span();
        Span::new(base + s.start(), base + s.end())
    }

    // ------------------------------------------------------------ statements

    fn simple_stmts(&mut self, p: Pair<Rule>, base: usize) -> PResult<Vec<Stmt>> {
        p.into_inner().map(|s| self.simple_stmt(s, base)).collect()
    }

    fn simple_stmt(&mut self, p: Pair<Rule>, base: usize) -> PResult<Stmt> {
        let span = self.span(&p, base);
        let rule = p.as_rule();
        let mut inner = p.into_inner();
        let kind = match rule {
            Rule::pass_stmt => StmtKind::Pass,
            Rule::break_stmt => StmtKind::Break,
            Rule::continue_stmt => StmtKind::Continue,
            Rule::return_stmt => {
                inner.next(); // keyword
                StmtKind::Return(inner.next().map(|e| self.exprlist(e, base)).transpose()?)
            }
            Rule::global_stmt => {
                inner.next();
                StmtKind::Global(inner.map(|i| self.names.intern(i.as_str())).collect())
            }
            Rule::assert_stmt => {
                inner.next();
                let cond = self.expr(inner.next().expect("assert cond"), base, 0)?;
                let msg = inner.next().map(|m| self.expr(m, base, 0)).transpose()?;
                StmtKind::Assert { cond, msg }
            }
            Rule::del_stmt => {
                inner.next();
                let target = self.exprlist(inner.next().expect("del target"), base)?;
                self.check_target(&target)?;
                StmtKind::Del(target)
            }
            Rule::import_stmt => {
                inner.next();
                // `import a, b` becomes several statements; keep the first here
                // and let the rest follow as separate imports.
                let mut stmts = Vec::new();
                for item in inner {
                    let mut it = item.into_inner();
                    let module = it.next().expect("module").as_str().to_string();
                    let alias = it.nth(1).map(|a| self.names.intern(a.as_str()));
                    let root = module.split('.').next().unwrap_or(&module);
                    let bind = alias.unwrap_or_else(|| self.names.intern(root));
                    stmts.push(StmtKind::Import {
                        module,
                        alias,
                        bind,
                    });
                }
                if stmts.len() == 1 {
                    stmts.pop().expect("one import")
                } else {
                    StmtKind::If {
                        branches: vec![(
                            Expr {
                                kind: ExprKind::Bool(true),
                                span,
                            },
                            stmts.into_iter().map(|kind| Stmt { kind, span }).collect(),
                        )],
                        orelse: Vec::new(),
                    }
                }
            }
            Rule::from_stmt => {
                inner.next();
                let module = inner.next().expect("module").as_str().to_string();
                inner.next(); // import
                let what = inner.next().expect("names");
                let names = if what.as_rule() == Rule::star {
                    Vec::new()
                } else {
                    what.into_inner()
                        .map(|n| {
                            let sp = self.span(&n, base);
                            let mut it = n.into_inner();
                            let name = self.names.intern(it.next().expect("name").as_str());
                            let alias = it.nth(1).map_or(name, |a| self.names.intern(a.as_str()));
                            (name, alias, sp)
                        })
                        .collect()
                };
                StmtKind::FromImport { module, names }
            }
            Rule::expr_stmt => {
                let lhs = self.exprlist(inner.next().expect("expr"), base)?;
                match inner.next() {
                    None => StmtKind::Expr(lhs),
                    Some(tail) => match tail.as_rule() {
                        Rule::assign_tail => {
                            let mut exprs: Targets = smallvec::smallvec![lhs];
                            for e in tail.into_inner() {
                                exprs.push(self.exprlist(e, base)?);
                            }
                            let value = exprs.pop().expect("value");
                            for t in &exprs {
                                self.check_target(t)?;
                            }
                            StmtKind::Assign {
                                targets: exprs,
                                value,
                            }
                        }
                        Rule::aug_tail => {
                            let mut it = tail.into_inner();
                            let op = match it.next().expect("op").as_str() {
                                "+=" => BinOp::Add,
                                "-=" => BinOp::Sub,
                                "*=" => BinOp::Mul,
                                "/=" => BinOp::Div,
                                "//=" => BinOp::FloorDiv,
                                "%=" => BinOp::Mod,
                                "**=" => BinOp::Pow,
                                "|=" => BinOp::BitOr,
                                "&=" => BinOp::BitAnd,
                                "^=" => BinOp::BitXor,
                                "<<=" => BinOp::Shl,
                                _ => BinOp::Shr,
                            };
                            let value = self.exprlist(it.next().expect("value"), base)?;
                            if !matches!(
                                lhs.kind,
                                ExprKind::Name(_) | ExprKind::Attr(..) | ExprKind::Index(..)
                            ) {
                                return Err(self.bad_target(&lhs));
                            }
                            StmtKind::AugAssign {
                                target: lhs,
                                op,
                                value,
                            }
                        }
                        _ => {
                            // Annotated assignment: the annotation is ignored.
                            let mut it = tail.into_inner();
                            it.next(); // annotation
                            match it.next() {
                                Some(v) => {
                                    self.check_target(&lhs)?;
                                    StmtKind::Assign {
                                        targets: smallvec::smallvec![lhs],
                                        value: self.exprlist(v, base)?,
                                    }
                                }
                                None => StmtKind::Pass,
                            }
                        }
                    },
                }
            }
            other => unreachable!("simple statement rule {other:?}"),
        };
        Ok(Stmt { kind, span })
    }

    fn check_target(&self, e: &Expr) -> PResult<()> {
        match &e.kind {
            ExprKind::Name(_) | ExprKind::Attr(..) | ExprKind::Index(..) => Ok(()),
            ExprKind::Tuple(items) | ExprKind::List(items) => {
                items.iter().try_for_each(|i| self.check_target(i))
            }
            ExprKind::Star(inner) | ExprKind::Paren(inner) => self.check_target(inner),
            _ => Err(self.bad_target(e)),
        }
    }

    fn bad_target(&self, e: &Expr) -> Fail {
        let text = &self.src[e.span.range()];
        let help = if text.contains("==") || matches!(e.kind, ExprKind::Compare(..)) {
            "to compare, use `==`; to assign, put a name, attribute or subscript on the left"
        } else {
            "only names, attributes (`a.b`), subscripts (`a[i]`) and tuples of them can be assigned"
        };
        Fail(
            Diagnostic::error(code::E0101, "cannot assign to this expression")
                .primary(e.span.range(), "not assignable")
                .help(help),
        )
    }

    fn header(&mut self, p: Pair<Rule>, base: usize) -> PResult<Header> {
        let span = self.span(&p, base);
        let rule = p.as_rule();
        let mut inner = p.into_inner();
        inner.next(); // keyword
        let (kind, keyword) = match rule {
            Rule::if_header => (
                HeaderKind::If(self.expr(inner.next().expect("cond"), base, 0)?),
                "if",
            ),
            Rule::elif_header => (
                HeaderKind::Elif(self.expr(inner.next().expect("cond"), base, 0)?),
                "elif",
            ),
            Rule::else_header => (HeaderKind::Else, "else"),
            Rule::while_header => (
                HeaderKind::While(self.expr(inner.next().expect("cond"), base, 0)?),
                "while",
            ),
            Rule::for_header => {
                let target = self.target_list(inner.next().expect("target"), base)?;
                inner.next(); // in
                let iter = self.exprlist(inner.next().expect("iter"), base)?;
                (HeaderKind::For(target, iter), "for")
            }
            Rule::def_header => {
                let name = self.names.intern(inner.next().expect("name").as_str());
                let mut params = (Vec::new(), None, None);
                if inner.peek().is_some_and(|p| p.as_rule() == Rule::params) {
                    params = self.params(inner.next().expect("params"), base)?;
                }
                // A return annotation, if present, is ignored.
                if inner.peek().is_some_and(|p| p.as_rule() == Rule::expr) {
                    inner.next();
                }
                let (params, varargs, kwargs) = params;
                (
                    HeaderKind::Def {
                        name,
                        params,
                        varargs,
                        kwargs,
                    },
                    "def",
                )
            }
            other => unreachable!("header rule {other:?}"),
        };
        // The colon, then optional inline statements.
        let mut inline = None;
        for rest in inner {
            if rest.as_rule() == Rule::simple_stmts {
                inline = Some(self.simple_stmts(rest, base)?);
            }
        }
        Ok(Header {
            kind,
            inline,
            span,
            keyword,
        })
    }

    #[allow(clippy::type_complexity)]
    fn params(
        &mut self,
        p: Pair<Rule>,
        base: usize,
    ) -> PResult<(Vec<Param>, Option<Sym>, Option<Sym>)> {
        let mut params: Vec<Param> = Vec::new();
        let mut varargs = None;
        let mut kwargs = None;
        let mut kw_only = false;
        let mut seen_default = false;
        for param in p.into_inner() {
            let sp = self.span(&param, base);
            match param.as_rule() {
                Rule::plain_param | Rule::plain_lparam => {
                    let mut it = param.into_inner();
                    let name = self.names.intern(it.next().expect("name").as_str());
                    if params.iter().any(|q| q.name == name) {
                        return Err(Fail(
                            Diagnostic::error(code::E0101, "duplicate parameter name")
                                .primary(sp.range(), "this parameter is already declared")
                                .help("give each parameter its own name"),
                        ));
                    }
                    let mut default = None;
                    // Children: optional annotation, optional default; the grammar
                    // does not mark which is which, so use the source text.
                    let rest: Vec<_> = it.collect();
                    let text = &self.src[sp.range()];
                    if let Some(last) = rest.last()
                        && text.contains('=')
                    {
                        default = Some(self.expr(last.clone(), base, 0)?);
                    }
                    if default.is_some() {
                        seen_default = true;
                    } else if seen_default && !kw_only {
                        return Err(Fail(
                            Diagnostic::error(
                                code::E0101,
                                "a parameter without a default follows one with a default",
                            )
                            .primary(sp.range(), "needs a default")
                            .help("move parameters with defaults to the end"),
                        ));
                    }
                    params.push(Param {
                        name,
                        default,
                        kw_only,
                    });
                }
                Rule::star_param | Rule::star_lparam => {
                    kw_only = true;
                    varargs = param
                        .into_inner()
                        .find(|i| i.as_rule() == Rule::ident)
                        .map(|i| self.names.intern(i.as_str()));
                }
                _ => {
                    kwargs = param
                        .into_inner()
                        .find(|i| i.as_rule() == Rule::ident)
                        .map(|i| self.names.intern(i.as_str()));
                }
            }
        }
        Ok((params, varargs, kwargs))
    }

    // ----------------------------------------------------------- expressions

    fn exprlist(&mut self, p: Pair<Rule>, base: usize) -> PResult<Expr> {
        let span = self.span(&p, base);
        let mut items = Vec::new();
        let mut tuple = false;
        for item in p.into_inner() {
            match item.as_rule() {
                Rule::trailing_comma => tuple = true,
                _ => items.push(self.star_or_expr(item, base, 0)?),
            }
        }
        if items.len() == 1 && !tuple && !matches!(items[0].kind, ExprKind::Star(_)) {
            Ok(items.pop().expect("one item"))
        } else {
            Ok(Expr {
                kind: ExprKind::Tuple(items.into()),
                span,
            })
        }
    }

    fn star_or_expr(&mut self, p: Pair<Rule>, base: usize, depth: usize) -> PResult<Expr> {
        if p.as_rule() == Rule::starred {
            let span = self.span(&p, base);
            let inner = self.operation(p.into_inner().next().expect("starred"), base, depth + 1)?;
            Ok(Expr {
                kind: ExprKind::Star(Box::new(inner)),
                span,
            })
        } else {
            self.expr(p, base, depth)
        }
    }

    fn too_deep(&self, span: Span) -> Fail {
        Fail(
            Diagnostic::error(code::E0106, "expression nests too deeply")
                .primary(
                    span.range(),
                    format!("more than {MAX_EXPR_DEPTH} levels of nesting"),
                )
                .help("split the expression with intermediate variables"),
        )
    }

    fn expr(&mut self, p: Pair<Rule>, base: usize, depth: usize) -> PResult<Expr> {
        let span = self.span(&p, base);
        if depth > MAX_EXPR_DEPTH {
            return Err(self.too_deep(span));
        }
        match p.as_rule() {
            Rule::expr => {
                let mut inner = p.into_inner();
                let first = inner.next().expect("expr content");
                if first.as_rule() == Rule::lambda {
                    return self.lambda(first, base, depth);
                }
                let value = self.operation(first, base, depth + 1)?;
                if inner.next().is_some() {
                    let cond = self.operation(inner.next().expect("cond"), base, depth + 1)?;
                    inner.next(); // else
                    let other = self.expr(inner.next().expect("else"), base, depth + 1)?;
                    Ok(Expr {
                        kind: ExprKind::IfExp(Box::new((cond, value, other))),
                        span,
                    })
                } else {
                    Ok(value)
                }
            }
            Rule::operation => self.operation(p, base, depth),
            _ => self.primary(p, base, depth),
        }
    }

    fn lambda(&mut self, p: Pair<Rule>, base: usize, depth: usize) -> PResult<Expr> {
        let span = self.span(&p, base);
        let mut inner = p.into_inner();
        inner.next(); // keyword
        let mut params = (Vec::new(), None, None);
        if inner.peek().is_some_and(|p| p.as_rule() == Rule::lparams) {
            params = self.params(inner.next().expect("params"), base)?;
        }
        let body = self.expr(inner.next().expect("body"), base, depth + 1)?;
        let name = self.names.intern("<lambda>");
        let (params, varargs, kwargs) = params;
        let mut locals: Vec<Sym> = params.iter().map(|p: &Param| p.name).collect();
        locals.extend(varargs);
        locals.extend(kwargs);
        locals.sort();
        locals.dedup();
        let ret = Stmt {
            span: body.span,
            kind: StmtKind::Return(Some(body)),
        };
        Ok(Expr {
            kind: ExprKind::Lambda(Arc::new(FuncDef {
                name,
                params,
                varargs,
                kwargs,
                body: vec![ret],
                span,
                locals,
            })),
            span,
        })
    }

    /// An operator expression, ordered by the Pratt parser. Depth grows with
    /// every operator so long chains are bounded too.
    fn operation(&mut self, p: Pair<Rule>, base: usize, depth: usize) -> PResult<Expr> {
        let span = self.span(&p, base);
        let n = p.clone().into_inner().count();
        if depth + n / 2 > MAX_EXPR_DEPTH * 4 {
            return Err(self.too_deep(span));
        }
        let pairs = p.into_inner();
        // The Pratt closures cannot return errors, so collect the first one.
        let err: std::cell::RefCell<Option<Fail>> = std::cell::RefCell::new(None);
        let this = std::cell::RefCell::new(self);
        let placeholder = |span| Expr {
            kind: ExprKind::None,
            span,
        };
        let pratt = this.borrow().pratt.clone();
        let result = pratt
            .map_primary(|prim| {
                let sp = Span::new(base + prim.as_span().start(), base + prim.as_span().end());
                match this.borrow_mut().primary(prim, base, depth + 1) {
                    Ok(e) => e,
                    Err(f) => {
                        err.borrow_mut().get_or_insert(f);
                        placeholder(sp)
                    }
                }
            })
            .map_prefix(|op, rhs| {
                let sp = Span::new(base + op.as_span().start(), rhs.span.end as usize);
                let op = syntax::prefix_rule(op.as_rule()).map_or(UnOp::Not, |o| o.op);
                Expr {
                    kind: ExprKind::Unary(op, Box::new(rhs)),
                    span: sp,
                }
            })
            .map_postfix(|lhs, op| {
                let sp = Span::new(lhs.span.start as usize, base + op.as_span().end());
                match this.borrow_mut().postfix(lhs, op, base, depth + 1) {
                    Ok(e) => e,
                    Err(f) => {
                        err.borrow_mut().get_or_insert(f);
                        placeholder(sp)
                    }
                }
            })
            .map_infix(|lhs, op, rhs| {
                let sp = lhs.span.to(rhs.span);
                // Operands move into the new node; chains of comparisons
                // extend the existing `Compare` (as Python chains them).
                let kind = match syntax::infix_rule(op.as_rule()).map(|o| o.op) {
                    Some(Infix::Or) => ExprKind::Or(Box::new(lhs), Box::new(rhs)),
                    Some(Infix::And) => ExprKind::And(Box::new(lhs), Box::new(rhs)),
                    Some(Infix::Cmp(o)) => compare(o, lhs, rhs),
                    Some(Infix::Bin(o)) => ExprKind::Binary(o, Box::new(lhs), Box::new(rhs)),
                    // The Pratt parser hands over only the table's rules.
                    None => unreachable!("operator rule outside syntax::INFIX"),
                };
                Expr { kind, span: sp }
            })
            .parse(pairs);
        if let Some(f) = err.into_inner() {
            return Err(f);
        }
        Ok(result)
    }

    fn postfix(&mut self, lhs: Expr, op: Pair<Rule>, base: usize, depth: usize) -> PResult<Expr> {
        let span = Span::new(lhs.span.start as usize, base + op.as_span().end());
        let kind = match op.as_rule() {
            Rule::attribute => {
                let id = op.into_inner().next().expect("attr name");
                let sp = self.span(&id, base);
                ExprKind::Attr(Box::new(lhs), self.names.intern(id.as_str()), sp)
            }
            Rule::call => {
                let mut args = Vec::new();
                if let Some(list) = op.into_inner().next() {
                    let mut kw_seen = false;
                    for a in list.into_inner() {
                        let asp = self.span(&a, base);
                        let arg = match a.as_rule() {
                            Rule::kwarg => {
                                let mut it = a.into_inner();
                                let id = it.next().expect("kw name");
                                let isp = self.span(&id, base);
                                let name = self.names.intern(id.as_str());
                                Arg::Kw(
                                    name,
                                    isp,
                                    self.expr(it.next().expect("kw value"), base, depth + 1)?,
                                )
                            }
                            Rule::star_arg => Arg::Star(self.expr(
                                a.into_inner().next().expect("star"),
                                base,
                                depth + 1,
                            )?),
                            Rule::dstar_arg => Arg::DStar(self.expr(
                                a.into_inner().next().expect("dstar"),
                                base,
                                depth + 1,
                            )?),
                            Rule::genexp => {
                                let mut it = a.clone().into_inner();
                                let first = it.next().expect("argument");
                                if it.next().is_none() {
                                    Arg::Pos(self.expr(first, base, depth + 1)?)
                                } else {
                                    Arg::Pos(self.comprehension(a, base, depth + 1)?)
                                }
                            }
                            _ => Arg::Pos(self.expr(a, base, depth + 1)?),
                        };
                        match arg {
                            Arg::Kw(..) | Arg::DStar(_) => kw_seen = true,
                            Arg::Pos(_) if kw_seen => {
                                return Err(Fail(
                                    Diagnostic::error(
                                        code::E0101,
                                        "positional argument follows keyword argument",
                                    )
                                    .primary(asp.range(), "positional argument")
                                    .help("put positional arguments before keyword arguments"),
                                ));
                            }
                            _ => {}
                        }
                        args.push(arg);
                    }
                }
                ExprKind::Call(Box::new((lhs, CallArgs::from_vec(args))))
            }
            _ => {
                let inner = op.into_inner().next().expect("subscript");
                if inner.as_rule() == Rule::slice {
                    let mut parts: [Option<Box<Expr>>; 3] = [None, None, None];
                    let mut idx = 0;
                    // Walk the slice text: parts are separated by `:` tokens,
                    // which pest does not emit, so use positions.
                    let text_start = inner.as_span().start();
                    let text = inner.as_str();
                    let mut colons = text
                        .char_indices()
                        .filter(|&(_, c)| c == ':')
                        .map(|(i, _)| text_start + i);
                    let mut next_colon = colons.next();
                    for part in inner.into_inner() {
                        let ps = part.as_span().start();
                        while let Some(c) = next_colon {
                            if c < ps {
                                idx += 1;
                                next_colon = colons.next();
                            } else {
                                break;
                            }
                        }
                        let e = self.expr(
                            part.into_inner().next().expect("slice part"),
                            base,
                            depth + 1,
                        )?;
                        if idx < 3 {
                            parts[idx] = Some(Box::new(e));
                        }
                    }
                    ExprKind::Slice(Box::new((lhs, parts)))
                } else {
                    let index = self.exprlist(inner, base)?;
                    ExprKind::Index(Box::new((lhs, index)))
                }
            }
        };
        Ok(Expr { kind, span })
    }

    fn primary(&mut self, p: Pair<Rule>, base: usize, depth: usize) -> PResult<Expr> {
        let span = self.span(&p, base);
        if depth > MAX_EXPR_DEPTH {
            return Err(self.too_deep(span));
        }
        let kind = match p.as_rule() {
            Rule::none => ExprKind::None,
            Rule::true_ => ExprKind::Bool(true),
            Rule::false_ => ExprKind::Bool(false),
            Rule::ident => ExprKind::Name(self.names.intern(p.as_str())),
            Rule::number => return self.number(p, base),
            Rule::strings => return self.strings(p, base, depth),
            Rule::paren | Rule::list_display => {
                let is_list = p.as_rule() == Rule::list_display;
                let mut it = p.into_inner();
                let Some(items) = it.next() else {
                    return Ok(Expr {
                        kind: if is_list {
                            ExprKind::List(Box::new([]))
                        } else {
                            ExprKind::Tuple(Box::new([]))
                        },
                        span,
                    });
                };
                if it.peek().is_some() {
                    // A comprehension: exactly one element before `for`.
                    let several = items.clone().into_inner().count() > 1;
                    let elt = self.exprlist(items, base)?;
                    if several {
                        return Err(Fail(
                            Diagnostic::error(
                                code::E0101,
                                "a comprehension has one element before `for`",
                            )
                            .primary(elt.span.range(), "several elements")
                            .help("put parentheses around a tuple element: [(a, b) for ...]"),
                        ));
                    }
                    let comps = self.comps(it, base, depth + 1)?;
                    return Ok(Expr {
                        kind: ExprKind::ListComp(Box::new((elt, comps.into()))),
                        span,
                    });
                }
                if is_list {
                    let mut list = Vec::new();
                    for item in items.into_inner() {
                        if item.as_rule() != Rule::trailing_comma {
                            list.push(self.star_or_expr(item, base, depth + 1)?);
                        }
                    }
                    ExprKind::List(list.into())
                } else {
                    let e = self.exprlist(items, base)?;
                    if matches!(e.kind, ExprKind::Tuple(_)) {
                        return Ok(Expr { span, ..e });
                    }
                    ExprKind::Paren(Box::new(e))
                }
            }
            Rule::dict_display => {
                let mut it = p.into_inner();
                let Some(inner) = it.next() else {
                    return Ok(Expr {
                        kind: ExprKind::Dict(Box::new([])),
                        span,
                    });
                };
                let mut items = Vec::new();
                for item in inner.into_inner() {
                    let mut parts = item.into_inner();
                    let first = parts.next().expect("dict item");
                    if first.as_rule() == Rule::dstar_arg {
                        items.push(DictItem::Splat(self.expr(
                            first.into_inner().next().expect("splat"),
                            base,
                            depth + 1,
                        )?));
                    } else {
                        let k = self.expr(first, base, depth + 1)?;
                        let v = self.expr(parts.next().expect("value"), base, depth + 1)?;
                        items.push(DictItem::Pair(k, v));
                    }
                }
                if it.peek().is_some() {
                    let comps = self.comps(it, base, depth + 1)?;
                    return match (items.len(), items.pop()) {
                        (1, Some(DictItem::Pair(k, v))) => Ok(Expr {
                            kind: ExprKind::DictComp(Box::new((k, v, comps.into()))),
                            span,
                        }),
                        _ => Err(Fail(
                            Diagnostic::error(
                                code::E0101,
                                "a dict comprehension has one `key: value` before `for`",
                            )
                            .primary(span.range(), "not a single pair")
                            .help("write {k: v for k, v in pairs}"),
                        )),
                    };
                }
                ExprKind::Dict(items.into())
            }
            Rule::operation => return self.operation(p, base, depth),
            Rule::expr => return self.expr(p, base, depth),
            other => unreachable!("primary rule {other:?}"),
        };
        Ok(Expr { kind, span })
    }

    fn comprehension(&mut self, p: Pair<Rule>, base: usize, depth: usize) -> PResult<Expr> {
        let span = self.span(&p, base);
        let mut it = p.into_inner();
        let elt = self.star_or_expr(it.next().expect("element"), base, depth + 1)?;
        let comps = self.comps(it, base, depth)?;
        Ok(Expr {
            kind: ExprKind::ListComp(Box::new((elt, comps.into()))),
            span,
        })
    }

    fn comps(&mut self, it: Pairs<Rule>, base: usize, depth: usize) -> PResult<Vec<Comp>> {
        let mut comps = Vec::new();
        for c in it {
            let mut ci = c.into_inner();
            ci.next(); // for
            let target = self.target_list(ci.next().expect("target"), base)?;
            ci.next(); // in
            let iter = self.operation(ci.next().expect("iter"), base, depth + 1)?;
            let mut conds = Vec::new();
            for cond in ci {
                let op = cond.into_inner().nth(1).expect("condition");
                conds.push(self.operation(op, base, depth + 1)?);
            }
            comps.push(Comp {
                target,
                iter,
                conds,
            });
        }
        Ok(comps)
    }

    fn target_list(&mut self, p: Pair<Rule>, base: usize) -> PResult<Expr> {
        let span = self.span(&p, base);
        let mut items = Vec::new();
        let text = p.as_str().trim_end();
        let trailing = text.ends_with(',');
        for t in p.into_inner() {
            items.push(self.target(t, base)?);
        }
        if items.len() == 1 && !trailing {
            Ok(items.pop().expect("one target"))
        } else {
            Ok(Expr {
                kind: ExprKind::Tuple(items.into()),
                span,
            })
        }
    }

    fn target(&mut self, p: Pair<Rule>, base: usize) -> PResult<Expr> {
        let span = self.span(&p, base);
        let inner = p.into_inner().next().expect("target content");
        match inner.as_rule() {
            Rule::target_list => {
                let e = self.target_list(inner, base)?;
                Ok(Expr { span, ..e })
            }
            Rule::starred_target => {
                let chain = self.chain(inner.into_inner().next().expect("chain"), base)?;
                Ok(Expr {
                    kind: ExprKind::Star(Box::new(chain)),
                    span,
                })
            }
            _ => {
                let e = self.chain(inner, base)?;
                self.check_target(&e)?;
                Ok(e)
            }
        }
    }

    fn chain(&mut self, p: Pair<Rule>, base: usize) -> PResult<Expr> {
        let mut it = p.into_inner();
        let mut e = self.primary(it.next().expect("primary"), base, 1)?;
        for post in it {
            e = self.postfix(e, post, base, 1)?;
        }
        Ok(e)
    }

    // -------------------------------------------------------------- literals

    fn number(&mut self, p: Pair<Rule>, base: usize) -> PResult<Expr> {
        let span = self.span(&p, base);
        let inner = p.into_inner().next().expect("number kind");
        let text: String = inner.as_str().chars().filter(|&c| c != '_').collect();
        let bad = |what: &str| {
            Fail(
                Diagnostic::error(code::E0107, format!("{what} literal out of range"))
                    .primary(span.range(), "this literal")
                    .help("integers are signed 64-bit (at most 9223372036854775807)"),
            )
        };
        let kind = if inner.as_rule() == Rule::float {
            match text.parse::<f64>() {
                Ok(f) if f.is_finite() => ExprKind::Float(f),
                _ => return Err(bad("float")),
            }
        } else {
            let lower = text.to_ascii_lowercase();
            let parsed = if let Some(h) = lower.strip_prefix("0x") {
                i64::from_str_radix(h, 16)
            } else if let Some(o) = lower.strip_prefix("0o") {
                i64::from_str_radix(o, 8)
            } else if let Some(b) = lower.strip_prefix("0b") {
                i64::from_str_radix(b, 2)
            } else {
                if lower.len() > 1 && lower.starts_with('0') && lower.bytes().any(|b| b != b'0') {
                    return Err(Fail(
                        Diagnostic::error(code::E0107, "leading zeros in a decimal integer")
                            .primary(span.range(), "this literal")
                            .help("write it without leading zeros, or use 0o for octal"),
                    ));
                }
                lower.parse::<i64>()
            };
            match parsed {
                Ok(i) => ExprKind::Int(i),
                Err(_) => return Err(bad("integer")),
            }
        };
        Ok(Expr { kind, span })
    }

    fn strings(&mut self, p: Pair<Rule>, base: usize, depth: usize) -> PResult<Expr> {
        let span = self.span(&p, base);
        let mut parts: Vec<FPart> = Vec::new();
        let mut any_f = false;
        for s in p.into_inner() {
            let sp = self.span(&s, base);
            let mut it = s.into_inner();
            let first = it.next().expect("string body");
            let (prefix, body) = if first.as_rule() == Rule::str_prefix {
                (
                    first.as_str().to_ascii_lowercase(),
                    it.next().expect("string body"),
                )
            } else {
                (String::new(), first)
            };
            let quote = match body.as_rule() {
                Rule::str_triple_dq | Rule::str_triple_sq => 3,
                _ => 1,
            };
            let raw_text = body.as_str();
            let content = &raw_text[quote..raw_text.len() - quote];
            let content_start = sp.start as usize + prefix.len() + quote;
            let raw = prefix.contains('r');
            if prefix.contains('f') {
                any_f = true;
                self.fstring(content, content_start, raw, depth, &mut parts)?;
            } else {
                let text = unescape(content, raw, content_start)?;
                parts.push(FPart::Lit(text.into()));
            }
        }
        if !any_f {
            let mut s = String::new();
            for p in &parts {
                if let FPart::Lit(t) = p {
                    s.push_str(t);
                }
            }
            return Ok(Expr {
                kind: ExprKind::Str(s.into()),
                span,
            });
        }
        Ok(Expr {
            kind: ExprKind::FStr(parts.into()),
            span,
        })
    }

    /// Splits an f-string body into literal text and `{expr!c:spec}` fields;
    /// each field's expression is parsed with the grammar's `fexpr` rule.
    fn fstring(
        &mut self,
        content: &str,
        start: usize,
        raw: bool,
        depth: usize,
        parts: &mut Vec<FPart>,
    ) -> PResult<()> {
        let b = content.as_bytes();
        let mut lit = String::new();
        let mut lit_start = 0;
        let mut i = 0;
        let bad = |at: usize, msg: &str, help: &str| {
            Fail(
                Diagnostic::error(code::E0107, msg.to_string())
                    .primary(start + at..start + at + 1, "here")
                    .help(help.to_string()),
            )
        };
        while i < b.len() {
            match b[i] {
                b'{' if b.get(i + 1) == Some(&b'{') => {
                    lit.push_str(&unescape(&content[lit_start..i], raw, start + lit_start)?);
                    lit.push('{');
                    i += 2;
                    lit_start = i;
                }
                b'}' if b.get(i + 1) == Some(&b'}') => {
                    lit.push_str(&unescape(&content[lit_start..i], raw, start + lit_start)?);
                    lit.push('}');
                    i += 2;
                    lit_start = i;
                }
                b'}' => {
                    return Err(bad(
                        i,
                        "single `}` in f-string",
                        "write `}}` for a literal brace",
                    ));
                }
                b'{' => {
                    lit.push_str(&unescape(&content[lit_start..i], raw, start + lit_start)?);
                    if !lit.is_empty() {
                        parts.push(FPart::Lit(std::mem::take(&mut lit).into()));
                    }
                    // Find the end of the expression: `!`, `:` or `}` at depth 0.
                    let open = i;
                    let mut j = i + 1;
                    let mut nest = 0usize;
                    let mut expr_end = None;
                    while j < b.len() {
                        match b[j] {
                            b'\'' | b'"' => {
                                // A string inside the field: skip it whole.
                                j = lexer::skip_string(b, j).unwrap_or_else(|end| end.max(j + 1));
                                continue;
                            }
                            b'(' | b'[' | b'{' => nest += 1,
                            b')' | b']' => nest = nest.saturating_sub(1),
                            b'}' if nest > 0 => nest -= 1,
                            b'}' | b':' if nest == 0 => break,
                            b'!' if nest == 0 && b.get(j + 1) != Some(&b'=') => {
                                expr_end = Some(j);
                                break;
                            }
                            _ => {}
                        }
                        j += 1;
                    }
                    let e_end = expr_end.unwrap_or(j);
                    let expr_text = &content[open + 1..e_end];
                    if expr_text.trim().is_empty() {
                        return Err(bad(
                            open,
                            "empty expression in f-string",
                            "put an expression between the braces, or write `{{` for a literal brace",
                        ));
                    }
                    let expr = self.sub_expr(expr_text, start + open + 1, depth)?;
                    let mut conv = None;
                    let mut k = e_end;
                    if expr_end.is_some() {
                        conv = content[k + 1..].chars().next();
                        if !matches!(conv, Some('r' | 's' | 'a')) {
                            return Err(bad(
                                k,
                                "bad conversion in f-string",
                                "use `!r`, `!s` or `!a`",
                            ));
                        }
                        k += 2;
                    }
                    let mut spec = None;
                    if b.get(k) == Some(&b':') {
                        let spec_start = k + 1;
                        let mut m = spec_start;
                        while m < b.len() && b[m] != b'}' {
                            m += 1;
                        }
                        spec = Some(content[spec_start..m].into());
                        k = m;
                    }
                    if b.get(k) != Some(&b'}') {
                        return Err(bad(
                            open,
                            "unclosed `{` in f-string",
                            "close the field with `}`, or write `{{` for a literal brace",
                        ));
                    }
                    parts.push(FPart::Field { expr, conv, spec });
                    i = k + 1;
                    lit_start = i;
                }
                _ => i += 1,
            }
        }
        lit.push_str(&unescape(&content[lit_start..], raw, start + lit_start)?);
        if !lit.is_empty() {
            parts.push(FPart::Lit(lit.into()));
        }
        Ok(())
    }

    fn sub_expr(&mut self, text: &str, at: usize, _depth: usize) -> PResult<Expr> {
        match MxParser::parse(Rule::fexpr, text) {
            Ok(mut pairs) => {
                let e = pairs
                    .next()
                    .expect("fexpr")
                    .into_inner()
                    .next()
                    .expect("exprlist");
                self.exprlist(e, at)
            }
            Err(e) => Err(Fail(self.syntax_error(&e, text, at))),
        }
    }

    // ---------------------------------------------------------------- errors

    /// Turns a pest error into a diagnostic that says what was found, what
    /// was expected, and (for common slips) how to fix it.
    fn syntax_error(&self, e: &pest::error::Error<Rule>, text: &str, base: usize) -> Diagnostic {
        let pos = match e.location {
            pest::error::InputLocation::Pos(p) => p,
            pest::error::InputLocation::Span((s, _)) => s,
        };
        let pos = pos.min(text.len());
        let rest = &text[pos..];
        let token = token_at(rest);
        let expected = match &e.variant {
            pest::error::ErrorVariant::ParsingError { positives, .. } => describe(positives),
            pest::error::ErrorVariant::CustomError { message } => message.clone(),
        };
        // A block header missing its colon: the line parses once `:` is added.
        if is_header_text(text) && !text.trim_end().ends_with(':') {
            let fixed = format!("{}:", strip_comment(text).trim_end());
            if MxParser::parse(Rule::line, &fixed).is_ok() {
                let kw_len = text
                    .find(|c: char| !c.is_ascii_alphabetic())
                    .unwrap_or(text.len());
                let end = base + strip_comment(text).trim_end().len();
                let keyword = &text[..kw_len];
                return Diagnostic::error(
                    code::E0102,
                    format!("expected `:` at the end of a `{keyword}` header"),
                )
                .primary(end..end, "expected `:` here")
                .secondary(base..base + kw_len, format!("this `{keyword}` header"))
                .help(format!(
                    "block headers (`for`, `while`, `if`, `elif`, `else`, `def`) end with `:`; write `{}`",
                    fixed.lines().next().unwrap_or(&fixed)
                ));
            }
        }
        let first_word = syntax::first_word(text);
        if syntax::UNSUPPORTED.contains(&first_word) {
            return Diagnostic::error(code::E0101, format!("`{first_word}` is not supported in .mx models"))
                .primary(base..base + first_word.len(), "unsupported statement")
                .help("models run in a deterministic Python subset: functions, loops, conditionals, lists and dicts; no classes, exceptions, `with` or generators");
        }
        let found = if token.is_empty() {
            "end of line".to_string()
        } else {
            format!("`{token}`")
        };
        let at = base + pos;
        let label_end = at + token.len().max(if token.is_empty() { 0 } else { 1 });
        let mut d = Diagnostic::error(code::E0101, format!("unexpected {found}"))
            .primary(at..label_end, format!("expected {expected}"));
        // Two expressions side by side usually mean a missing comma.
        let before = text[..pos].trim_end();
        let ends_value = before.chars().last().is_some_and(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '_' | ')' | ']' | '}' | '\'' | '"')
        });
        let starts_value = rest.chars().next().is_some_and(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '_' | '(' | '[' | '{' | '\'' | '"')
        });
        if ends_value && starts_value && !syntax::CONTINUES_EXPR.contains(&token) {
            d = d.help("is a `,` or an operator missing before this?");
        } else if token == "=" {
            d = d.help("to compare, use `==`");
        } else if token.is_empty() {
            d = d.help("the line ends before the statement is complete");
        }
        d
    }
}

fn strip_comment(text: &str) -> &str {
    // A `#` outside strings starts a comment.
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'#' => return &text[..i],
            b'\'' | b'"' => match lexer::skip_string(b, i) {
                Ok(end) => i = end,
                Err(_) => return text,
            },
            _ => i += 1,
        }
    }
    text
}

fn is_header_text(text: &str) -> bool {
    syntax::BLOCK_HEADERS.contains(&syntax::first_word(text))
}

/// The token at the start of `rest`, for "unexpected X" messages.
fn token_at(rest: &str) -> &str {
    let mut chars = rest.char_indices();
    let Some((_, c)) = chars.next() else {
        return "";
    };
    if c.is_ascii_alphanumeric() || c == '_' {
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(rest.len());
        return &rest[..end];
    }
    if c == '\n' || c == '#' {
        return "";
    }
    for op in [
        "**=", "//=", ">>=", "<<=", "==", "!=", "<=", ">=", "->", "**", "//", "+=", "-=",
    ] {
        if rest.starts_with(op) {
            return &rest[..op.len()];
        }
    }
    &rest[..c.len_utf8()]
}

/// Readable names for what pest expected, grouped so the list stays short.
fn describe(rules: &[Rule]) -> String {
    let mut out: Vec<&str> = Vec::new();
    for r in rules {
        let name = match r {
            Rule::EOI => "end of line",
            Rule::ident | Rule::dotted_name => "a name",
            Rule::colon => "`:`",
            Rule::kw_in => "`in`",
            Rule::kw_else => "`else`",
            Rule::kw_import => "`import`",
            Rule::comp_for => "`for`",
            Rule::call => "`(`",
            Rule::subscript => "`[`",
            Rule::attribute => "`.`",
            Rule::trailing_comma => "`,`",
            Rule::aug_op | Rule::assign_tail | Rule::aug_tail | Rule::ann_tail => "`=`",
            Rule::or
            | Rule::and
            | Rule::not_in
            | Rule::is_not
            | Rule::in_
            | Rule::is
            | Rule::eq
            | Rule::ne
            | Rule::le
            | Rule::ge
            | Rule::lt
            | Rule::gt
            | Rule::bit_or
            | Rule::bit_xor
            | Rule::bit_and
            | Rule::shl
            | Rule::shr
            | Rule::add
            | Rule::sub
            | Rule::pow
            | Rule::mul
            | Rule::floordiv
            | Rule::div
            | Rule::rem => "an operator",
            Rule::params
            | Rule::plain_param
            | Rule::star_param
            | Rule::dstar_param
            | Rule::lparams
            | Rule::plain_lparam
            | Rule::star_lparam
            | Rule::dstar_lparam => "a parameter",
            Rule::target_list | Rule::target | Rule::chain | Rule::starred_target => "a target",
            Rule::import_names | Rule::import_name | Rule::star => "names to import",
            Rule::simple_stmts => "a statement",
            _ => "an expression",
        };
        if !out.contains(&name) {
            out.push(name);
        }
    }
    match out.len() {
        0 => "something else".to_string(),
        1 => out[0].to_string(),
        n => format!("{} or {}", out[..n - 1].join(", "), out[n - 1]),
    }
}

/// Decodes backslash escapes (unless raw).
fn unescape(s: &str, raw: bool, at: usize) -> PResult<String> {
    if raw || !s.contains('\\') {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some((_, e)) = chars.next() else {
            out.push('\\');
            break;
        };
        match e {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            '0' => out.push('\0'),
            '\\' => out.push('\\'),
            '\'' => out.push('\''),
            '"' => out.push('"'),
            'a' => out.push('\x07'),
            'b' => out.push('\x08'),
            'f' => out.push('\x0C'),
            'v' => out.push('\x0B'),
            '\n' => {}
            'x' | 'u' | 'U' => {
                let n = match e {
                    'x' => 2,
                    'u' => 4,
                    _ => 8,
                };
                let hex: String = (0..n)
                    .filter_map(|_| chars.next().map(|(_, c)| c))
                    .collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(ch) if hex.len() == n => out.push(ch),
                    _ => {
                        return Err(Fail(
                            Diagnostic::error(code::E0107, format!("invalid `\\{e}` escape"))
                                .primary(at + i..at + i + 2 + hex.len(), "this escape")
                                .help(format!("`\\{e}` takes exactly {n} hex digits")),
                        ));
                    }
                }
            }
            other => {
                out.push('\\');
                out.push(other);
            }
        }
    }
    Ok(out)
}

/// Assembles parsed lines into nested blocks by indentation.
struct Blocks<'a> {
    src: &'a str,
    lines: Vec<Line>,
    /// The item of the line parsed last, line `item_at`. Lines are parsed
    /// in order, each once, as they are taken or skipped, and only the
    /// last one's item is looked at again (whether it was broken): one
    /// slot, not an item for every line (22 MB and their page faults for
    /// a 700,000-line model, before its first statement could run).
    item: Item,
    item_at: usize,
    pos: usize,
    parser: LineParser<'a>,
}

impl<'a> Blocks<'a> {
    /// Line `i`'s item, parsing the line on first use (lines are used in order).
    fn parsed(&mut self, i: usize) -> &mut Item {
        if self.item_at != i {
            debug_assert!(
                self.item_at == usize::MAX || i > self.item_at,
                "line {i} parsed after line {}",
                self.item_at
            );
            self.item = self.parser.line(&self.lines[i]);
            self.item_at = i;
        }
        &mut self.item
    }

    /// Whether there is a line before `pos` (always the last one parsed)
    /// and it was broken.
    fn prev_broken(&self) -> bool {
        self.pos > 0 && self.item_at == self.pos - 1 && matches!(self.item, Item::Broken { .. })
    }

    fn indent(&self, i: usize) -> &'a str {
        let src: &'a str = self.src;
        &src[self.lines[i].indent()]
    }

    /// Parses the statements at indentation `self.indent(first)` (or the top
    /// level when `depth == 0`) until a line dedents past it.
    fn suite(&mut self, depth: usize) -> Vec<Stmt> {
        let mut out = Vec::new();
        if self.pos >= self.lines.len() {
            return out;
        }
        let level = if depth == 0 {
            String::new()
        } else {
            self.indent(self.pos).to_string()
        };
        while self.pos < self.lines.len() && self.step(depth, &level, &mut out) {}
        out
    }

    /// Takes the next line (or the lines of a block it heads) at indentation
    /// `level` into `out`; false when the line dedents past `level`.
    fn step(&mut self, depth: usize, level: &str, out: &mut Vec<Stmt>) -> bool {
        let ind = self.indent(self.pos);
        // At the top level both are empty, and comparing them as strings
        // still calls `memcmp`, which touched the line's first bytes
        // before they were needed (700,000 times in a generated model,
        // 5% of its parse by samples).
        if ind.len() != level.len() || (!ind.is_empty() && ind != level) {
            if ind.len() > level.len() && ind.starts_with(level) {
                // Deeper than this block without a header: report and skip.
                let l = &self.lines[self.pos];
                let at = l.start();
                let prev_broken = self.prev_broken();
                let after_block = self.pos > 0 && self.indent(self.pos - 1).len() > ind.len();
                if after_block {
                    // Dedented out of a block, but not to any enclosing level.
                    self.parser.diags.push(
                        Diagnostic::error(
                            code::E0105,
                            "indentation does not match any enclosing block",
                        )
                        .primary(l.indent().start..at, "dedented to here")
                        .help("dedent to exactly the indentation of an enclosing block"),
                    );
                } else if !prev_broken {
                    self.parser.diags.push(
                        Diagnostic::error(code::E0105, "unexpected indentation")
                            .primary(l.indent().start..at, "this line is indented more than the block it is in")
                            .help("indent only after a line ending in `:`; otherwise line it up with the statements around it"),
                    );
                }
                self.skip_block();
                return true;
            }
            if !level.starts_with(ind) {
                // Neither deeper nor an enclosing level's prefix.
                let l = &self.lines[self.pos];
                self.parser.diags.push(
                    Diagnostic::error(
                        code::E0105,
                        "indentation does not match any enclosing block",
                    )
                    .primary(l.indent().start..l.start(), "this indentation")
                    .help("dedent to exactly the indentation of an enclosing block"),
                );
                self.skip_block();
                return true;
            }
            return false; // dedent to an enclosing level
        }
        let idx = self.pos;
        self.pos += 1;
        let item = std::mem::replace(self.parsed(idx), Item::Taken);
        match item {
            Item::Taken | Item::Pending => {}
            Item::One(stmt) => out.push(stmt),
            Item::Simple(stmts) => out.extend(stmts),
            Item::Broken { header, mut binds } => {
                // Still the last line parsed: the next line asks whether
                // it was broken.
                self.item = Item::Broken {
                    header,
                    binds: Vec::new(),
                };
                if header && let Some(body) = self.body_or_skip(depth, true) {
                    // The body never runs: what it assigns or changes
                    // stands for the broken header.
                    collect_locals(&body, &mut binds, &mut Vec::new());
                    let mutators: Vec<Sym> = MUTATORS
                        .iter()
                        .map(|m| self.parser.names.intern(m))
                        .collect();
                    mutated_roots(&body, &mutators, &mut binds);
                }
                let l = &self.lines[idx];
                out.push(Stmt {
                    kind: StmtKind::Broken(binds),
                    span: Span::new(l.start(), l.end()),
                });
            }
            Item::Header(h) => {
                let h = *h;
                let body = match h.inline {
                    Some(stmts) => stmts,
                    None => self.body_or_skip(depth, false).unwrap_or_default(),
                };
                self.attach(out, h.kind, h.span, h.keyword, body);
            }
        }
        true
    }

    /// Parses the indented body after a header. With `skip` (the header
    /// itself was broken), a missing body is not reported.
    fn body_or_skip(&mut self, depth: usize, skip: bool) -> Option<Vec<Stmt>> {
        let parent = if self.pos > 0 {
            self.indent(self.pos - 1).to_string()
        } else {
            String::new()
        };
        let deeper = self.pos < self.lines.len() && {
            let ind = self.indent(self.pos);
            ind.len() > parent.len() && ind.starts_with(&parent)
        };
        if !deeper {
            if !skip {
                let l = &self.lines[self.pos - 1];
                self.parser.diags.push(
                    Diagnostic::error(code::E0105, "expected an indented block")
                        .primary(l.end()..l.end(), "the block after this header is empty")
                        .help("indent the block's statements below the header, or write `pass`"),
                );
            }
            return None;
        }
        if depth + 1 > MAX_BLOCK_DEPTH {
            let l = &self.lines[self.pos];
            self.parser.diags.push(
                Diagnostic::error(code::E0106, "blocks nest too deeply")
                    .primary(
                        l.start()..l.end(),
                        format!("more than {MAX_BLOCK_DEPTH} nested blocks"),
                    )
                    .help("move inner blocks into functions"),
            );
            self.skip_block();
            return None;
        }
        Some(self.suite(depth + 1))
    }

    /// Skips every line indented deeper than the current level.
    fn skip_block(&mut self) {
        let base = self.indent(self.pos).to_string();
        self.parsed(self.pos);
        self.pos += 1;
        while self.pos < self.lines.len() {
            let ind = self.indent(self.pos);
            if ind.len() >= base.len() && ind.starts_with(&base) {
                // Parsed (for its errors) even though it is skipped.
                self.parsed(self.pos);
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    fn attach(
        &mut self,
        out: &mut Vec<Stmt>,
        kind: HeaderKind,
        span: Span,
        keyword: &str,
        body: Vec<Stmt>,
    ) {
        let kind = match kind {
            HeaderKind::If(cond) => StmtKind::If {
                branches: vec![(cond, body)],
                orelse: Vec::new(),
            },
            HeaderKind::Elif(cond) => {
                if let Some(Stmt {
                    kind: StmtKind::If { branches, orelse },
                    span: if_span,
                }) = out.last_mut()
                    && orelse.is_empty()
                {
                    branches.push((cond, body));
                    *if_span = if_span.to(span);
                    return;
                }
                self.orphan(span, keyword);
                return;
            }
            HeaderKind::Else => {
                if let Some(Stmt {
                    kind: StmtKind::If { orelse, .. },
                    span: if_span,
                }) = out.last_mut()
                    && orelse.is_empty()
                {
                    *orelse = if body.is_empty() {
                        vec![Stmt {
                            kind: StmtKind::Pass,
                            span,
                        }]
                    } else {
                        body
                    };
                    *if_span = if_span.to(span);
                    return;
                }
                self.orphan(span, keyword);
                return;
            }
            HeaderKind::For(target, iter) => StmtKind::For { target, iter, body },
            HeaderKind::While(cond) => StmtKind::While { cond, body },
            HeaderKind::Def {
                name,
                params,
                varargs,
                kwargs,
            } => {
                let mut locals = Vec::new();
                for p in &params {
                    locals.push(p.name);
                }
                locals.extend(varargs);
                locals.extend(kwargs);
                let mut globals = Vec::new();
                collect_locals(&body, &mut locals, &mut globals);
                locals.retain(|l| !globals.contains(l));
                locals.sort();
                locals.dedup();
                StmtKind::Def(Arc::new(FuncDef {
                    name,
                    params,
                    varargs,
                    kwargs,
                    body,
                    span,
                    locals,
                }))
            }
        };
        out.push(Stmt { kind, span });
    }

    fn orphan(&mut self, span: Span, keyword: &str) {
        self.parser.diags.push(
            Diagnostic::error(code::E0101, format!("`{keyword}` without a matching `if`"))
                .primary(
                    span.range(),
                    format!("this `{keyword}` follows no `if` block"),
                )
                .help(format!("line `{keyword}` up with its `if`")),
        );
    }
}

/// Names a function body assigns: Python makes those local to the call.
/// Methods that change their receiver in place: a broken line or block
/// that calls one leaves the receiver's value unknown.
const MUTATORS: &[&str] = &[
    "append",
    "extend",
    "insert",
    "pop",
    "remove",
    "clear",
    "update",
    "setdefault",
    "sort",
    "reverse",
    "add",
    "discard",
];

/// The names whose values `body` changes in place: receivers of
/// [`MUTATORS`] and roots of item and attribute assignments.
fn mutated_roots(body: &[Stmt], mutators: &[Sym], out: &mut Vec<Sym>) {
    fn root(e: &Expr) -> Option<Sym> {
        match &e.kind {
            ExprKind::Name(s) => Some(*s),
            ExprKind::Attr(o, ..) | ExprKind::Paren(o) => root(o),
            ExprKind::Index(ix) => root(&ix.0),
            ExprKind::Call(call) => root(&call.0),
            _ => None,
        }
    }
    fn expr(e: &Expr, mutators: &[Sym], out: &mut Vec<Sym>) {
        if let ExprKind::Call(call) = &e.kind
            && let ExprKind::Attr(recv, m, _) = &call.0.kind
            && mutators.contains(m)
        {
            out.extend(root(recv));
        }
    }
    for s in body {
        match &s.kind {
            StmtKind::Expr(e) => expr(e, mutators, out),
            StmtKind::Assign { targets, value } => {
                for t in targets {
                    if !matches!(t.kind, ExprKind::Name(_)) {
                        out.extend(root(t));
                    }
                }
                expr(value, mutators, out);
            }
            StmtKind::AugAssign { target, .. } => out.extend(root(target)),
            StmtKind::For { body, .. } | StmtKind::While { body, .. } => {
                mutated_roots(body, mutators, out)
            }
            StmtKind::If { branches, orelse } => {
                for (_, b) in branches {
                    mutated_roots(b, mutators, out);
                }
                mutated_roots(orelse, mutators, out);
            }
            _ => {}
        }
    }
}

pub(crate) fn collect_locals(body: &[Stmt], locals: &mut Vec<Sym>, globals: &mut Vec<Sym>) {
    fn targets(e: &Expr, out: &mut Vec<Sym>) {
        match &e.kind {
            ExprKind::Name(s) => out.push(*s),
            ExprKind::Tuple(items) | ExprKind::List(items) => {
                items.iter().for_each(|i| targets(i, out))
            }
            ExprKind::Star(i) | ExprKind::Paren(i) => targets(i, out),
            _ => {}
        }
    }
    for s in body {
        match &s.kind {
            StmtKind::Assign { targets: ts, .. } => ts.iter().for_each(|t| targets(t, locals)),
            StmtKind::AugAssign { target, .. } => targets(target, locals),
            StmtKind::For { target, body, .. } => {
                targets(target, locals);
                collect_locals(body, locals, globals);
            }
            StmtKind::While { body, .. } => collect_locals(body, locals, globals),
            StmtKind::If { branches, orelse } => {
                for (_, b) in branches {
                    collect_locals(b, locals, globals);
                }
                collect_locals(orelse, locals, globals);
            }
            StmtKind::Def(f) => locals.push(f.name),
            StmtKind::Import { .. } | StmtKind::FromImport { .. } => {}
            StmtKind::Global(names) => globals.extend(names),
            StmtKind::Broken(binds) => locals.extend(binds),
            _ => {}
        }
    }
}

#[cfg(test)]
mod fast_path_tests {
    //! The fast path must build exactly the tree pest builds, spans and all.

    use super::*;

    /// Parses `text` as one line both ways, with symbols pre-interned in
    /// text order so the two trees number them alike.
    fn both(text: &str) -> (Option<String>, Option<String>) {
        let mut names = Interner::default();
        for w in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if !w.is_empty() {
                names.intern(w);
            }
        }
        let mut fast_names = Interner::default();
        for w in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if !w.is_empty() {
                fast_names.intern(w);
            }
        }
        let fast = crate::fast::line(text, 7, &mut fast_names, &mut Default::default())
            .map(|s| format!("{:?}", [s]));
        let mut diags = Vec::new();
        // The line sits at byte 7 of its file, so spans are file offsets.
        let src = format!("#23456\n{text}");
        let mut p = LineParser {
            src: &src,
            names,
            scratch: Default::default(),
            diags: &mut diags,
            pratt: Rc::new(pratt()),
        };
        let slow = match p.line_pest(text, 7, false) {
            Item::Simple(s) => Some(format!("{s:?}")),
            _ => None,
        };
        (fast, slow)
    }

    fn check(text: &str) -> bool {
        let (fast, slow) = both(text);
        if let Some(f) = fast {
            assert_eq!(Some(f), slow, "fast path differs from pest on {text:?}");
            true
        } else {
            false
        }
    }

    #[test]
    fn handpicked_lines_agree() {
        for line in [
            "x = 1",
            "a = b = c",
            "a, b = b, a",
            "x = (1, 2), [3, 4,], ()",
            "n5 = net.node('n5', proc.cores >= 2, memory.capacity >= gb(4), disk >= gb(20))",
            "l = net.connect([n1, n2], capacity == mbps(100), latency == ms(1))",
            "l[n5].socket.addrs = ip4('10.0.1.2/31')",
            "y = -x ** 2 + 3 * (a - b) // c % d << 1 | 2 & 3 ^ 4",
            "z = not a == b and c or d in e and f not in g and h is None and i is not j",
            "w = 1 < x <= 10 != y",
            "f(a, b=1, c=[1, 2],)",
            "v = a.b.c[1][2].d(e)(f)",
            "s = 1.5 + 0 - True * False",
            "t = (x)",
            "u = ~x + +y - -z",
            "q = a[1, 2]",
            "x = a, b   # trailing comment",
            "f(x)  # call",
            "y = g(a, b )[1, 2 ] , ",
        ] {
            assert!(check(line), "fast path should take {line:?}");
        }
    }

    #[test]
    fn fast_path_declines_what_it_does_not_know() {
        for line in [
            "x += 1",
            "for i in range(3):",
            "x = f'n{i}'",
            "x = [i for i in y]",
            "x = {'a': 1}",
            "x = a[1:2]",
            "x = lambda v: v",
            "x = a if b else c",
            "x = 1e9",
            "x = 0x10",
            "x = 'a\\n'",
            "f(*args)",
            "x = 2 ** -1",
            "f(a=1, b)",
            "return x",
            "x = 1; y = 2",
        ] {
            assert!(both(line).0.is_none(), "fast path must decline {line:?}");
        }
    }

    /// A small deterministic generator (xorshift), so failures reproduce.
    struct Gen(u64, bool);

    impl Gen {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }

        fn pick<'s>(&mut self, items: &[&'s str]) -> &'s str {
            items[self.below(items.len())]
        }

        /// A random expression: every operator of `syntax`'s tables, calls,
        /// attributes, subscripts, displays, and (when `self.1`) constructs
        /// only pest parses (the fast path must decline those, or agree).
        fn expr(&mut self, depth: u32) -> String {
            if depth == 0 || self.below(5) == 0 {
                return self
                    .pick(&[
                        "a", "b", "n5", "net", "_x", "1", "0", "42", "1.5", "'s'", "\"t\"", "True",
                        "None",
                    ])
                    .to_string();
            }
            let d = depth - 1;
            let forms = if self.1 { 14 } else { 11 };
            match self.below(forms) {
                0..=3 => {
                    let op = syntax::INFIX[self.below(syntax::INFIX.len())].text;
                    format!("{} {op} {}", self.expr(d), self.expr(d))
                }
                4 => {
                    let op = syntax::PREFIX[self.below(syntax::PREFIX.len())].text;
                    let gap = if op.chars().all(char::is_alphabetic) {
                        " "
                    } else {
                        ""
                    };
                    format!("{op}{gap}{}", self.expr(d))
                }
                5 => {
                    let mut args = Vec::new();
                    for _ in 0..self.below(4) {
                        args.push(self.expr(d));
                    }
                    if self.below(2) == 0 {
                        args.push(format!(
                            "{}={}",
                            self.pick(&["k", "cores", "name"]),
                            self.expr(d)
                        ));
                    }
                    format!("{}({})", self.callee(d), args.join(", "))
                }
                6 => format!(
                    "{}.{}",
                    self.callee(d),
                    self.pick(&["socket", "addrs", "x"])
                ),
                7 => format!("{}[{}]", self.callee(d), self.expr(d)),
                8 => {
                    let items: Vec<String> = (0..self.below(4)).map(|_| self.expr(d)).collect();
                    format!("[{}]", items.join(", "))
                }
                9 => format!("({})", self.expr(d)),
                10 => format!("({}, {})", self.expr(d), self.expr(d)),
                11 => format!("{} if {} else {}", self.expr(d), self.expr(d), self.expr(d)),
                12 => format!("[i for i in {} if {}]", self.expr(d), self.expr(d)),
                _ => match self.below(4) {
                    0 => format!("lambda v: {}", self.expr(d)),
                    1 => format!("{{'k': {}}}", self.expr(d)),
                    2 => format!("{}[1:{}]", self.callee(d), self.expr(d)),
                    _ => format!("f'n{{{}}}'", self.expr(d)),
                },
            }
        }

        /// Something a postfix can follow.
        fn callee(&mut self, depth: u32) -> String {
            match self.below(3) {
                0 => format!("({})", self.expr(depth)),
                _ => self.pick(&["f", "net.node", "l[a]", "ip4"]).to_string(),
            }
        }

        fn statement(&mut self) -> String {
            let e = self.expr(4);
            match self.below(5) {
                0 => e,
                1 => format!("x = {e}"),
                2 => format!("x = y = {e}"),
                3 => format!("a, b = {e}, {}", self.expr(2)),
                _ => format!("l[n1].socket.addrs = {e}"),
            }
        }
    }

    /// Random statements drawn from the grammar's operators and forms: where
    /// the fast path takes a line it builds pest's tree exactly, and it takes
    /// a good share of them, every operator of the table included.
    #[test]
    fn random_statements_agree() {
        let mut g = Gen(0x9e37_79b9_7f4a_7c15, false);
        let (mut taken, total) = (0, 6000);
        let mut ops_taken = std::collections::BTreeSet::new();
        for i in 0..total {
            // Every third line may hold forms only pest knows.
            g.1 = i % 3 == 0;
            let line = g.statement();
            if check(&line) {
                taken += 1;
                for op in syntax::INFIX {
                    if line.contains(&format!(" {} ", op.text)) {
                        ops_taken.insert(op.text);
                    }
                }
            }
        }
        assert!(
            taken * 4 > total,
            "the fast path took only {taken} of {total} lines"
        );
        for op in syntax::INFIX {
            assert!(
                ops_taken.contains(op.text),
                "the fast path never took a line with `{}`",
                op.text
            );
        }
    }

    /// Every line of every fixture and example, and mutations of them.
    #[test]
    fn corpus_lines_agree() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files = Vec::new();
        for dir in [
            "tests/fixtures/ok",
            "tests/fixtures/err",
            "examples",
            "examples/seed",
            "examples/mergexp",
            "bench",
        ] {
            if let Ok(entries) = std::fs::read_dir(root.join(dir)) {
                for e in entries.flatten() {
                    let p = e.path();
                    if p.extension().is_some_and(|x| x == "mx" || x == "py") {
                        files.push(p);
                    }
                }
            }
        }
        files.sort();
        let (mut taken, mut total) = (0, 0);
        for f in files {
            // Fixtures that are not UTF-8 (E0108) have no lines to parse.
            let Ok(src) = std::fs::read_to_string(&f) else {
                continue;
            };
            let mut diags = Vec::new();
            for line in crate::lexer::lines(&src, &mut diags) {
                if line.broken {
                    continue;
                }
                let text = &src[line.start()..line.end()];
                total += 1;
                if check(text) {
                    taken += 1;
                }
                // Cheap mutations: drop each character in turn.
                for k in 0..text.len().min(80) {
                    if text.is_char_boundary(k) && text.is_char_boundary(k + 1) {
                        let mutated = format!("{}{}", &text[..k], &text[k + 1..]);
                        check(&mutated);
                    }
                }
            }
        }
        assert!(
            taken * 3 > total,
            "the fast path took only {taken} of {total} lines"
        );
    }
}
