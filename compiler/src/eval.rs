//! The sandboxed evaluator: a tree-walking interpreter for the Python subset.
//!
//! Determinism and safety come from what is absent (no I/O, clock or
//! randomness; dicts keep insertion order) and from three budgets checked as
//! the model runs: steps (statements, loop iterations, calls), bytes of values
//! built, and call depth. Each ends evaluation with a diagnostic that points at
//! the loop or function responsible instead of hanging or crashing.
//!
//! The first runtime error stops evaluation, as in Python: later statements
//! may depend on what failed, so reporting them would be noise.

use mx_diag::code;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::Arc;

use indexmap::IndexMap;
use mx_diag::Diagnostic;
use mx_xir::Span;

use crate::Options;
use crate::ahead::Source;
use crate::ast::*;
use crate::props;
use crate::topo::{Model, Topology};
use crate::value::*;

/// Calls nest at most this deep (E0219). Python's default is 1000; models
/// never need more than a few levels.
const MAX_CALL_DEPTH: u32 = 400;

/// What one value in a list costs, for the memory budget. Fixed, not
/// `size_of::<Value>()`: budgets, and which models fit in them, must not
/// move when the layout does (a value was 32 bytes when they were set).
pub const VALUE_BYTES: u64 = 32;

// Every value moved between frames of the tree walk is this small (a
// range is boxed to keep it so).
const _: () = assert!(std::mem::size_of::<Value>() <= 24);

/// Slots of [`Eval::share_constraint`]'s table.
pub(crate) const CONS_SHARED: usize = 64;

/// Control flow out of a statement or expression.
pub enum Flow {
    Err(Box<Diagnostic>),
    Return(Value),
    Break,
    Continue,
}

impl From<Diagnostic> for Flow {
    fn from(d: Diagnostic) -> Self {
        Flow::Err(Box::new(d))
    }
}

pub type R<T> = Result<T, Flow>;

/// The first symbol of a name made while the model runs (see
/// `Eval::runtime_names`); the parser's names are numbered below it.
const RUNTIME_SYM: u32 = 1 << 31;

/// What evaluation produced.
#[derive(Default)]
pub struct Run {
    /// The topology to lower: the one passed to `experiment()`, or the only one.
    pub topology: Option<Topology>,
    /// The facility, when the model describes one instead of an experiment.
    pub facility: Option<crate::facility::FacModel>,
    /// Parameters read with `param()`, with the values used.
    pub parameters: BTreeMap<String, serde_json::Value>,
    /// Lines printed by the model.
    pub printed: Vec<String>,
}

/// Positional arguments, four of them inline: most calls of a generated
/// model (`net.node(name, c1, c2, c3)`, `gb(4)`, `ip4('...')`) pass no
/// more, and two vectors allocated and freed per call were a third of
/// the evaluator's allocations.
pub type PosArgs = smallvec::SmallVec<[Value; 4]>;
/// Where each positional argument was written.
pub type PosSpans = smallvec::SmallVec<[Span; 4]>;

/// Evaluated call arguments.
pub struct Args {
    pub pos: PosArgs,
    pub pos_spans: PosSpans,
    pub kw: Vec<(Sym, Value, Span)>,
    /// The whole call expression.
    pub span: Span,
}

impl Args {
    pub fn span_of(&self, i: usize) -> Span {
        self.pos_spans.get(i).copied().unwrap_or(self.span)
    }
}

pub struct Eval<'a> {
    pub src: &'a str,
    /// The model's names, growing as its top level is parsed. Only the
    /// parser interns (see [`crate::ahead`]: the evaluator's copy must number
    /// names as the parser's thread does), so the rest of the interpreter
    /// reads them through [`Eval::name`] and [`Eval::name_rc`].
    names: Interner,
    /// Keyword names a `**` dict brings that the model has not spelt as a
    /// name so far: kept apart from the parser's names, as symbols from
    /// [`RUNTIME_SYM`] up. Only calls see them; no parameter can have one.
    runtime_names: Interner,
    pub opts: &'a Options,
    globals: Vec<Option<Value>>,
    /// What each interned name means when nothing shadows it.
    builtins: Vec<Option<Value>>,
    /// Comprehension variables, innermost last.
    comp: Vec<(Sym, Value)>,
    scope: Option<Rc<Scope>>,
    /// The step and memory budgets, charged by statements and by every walk
    /// over values.
    pub meter: Meter,
    depth: u32,
    /// The innermost loop or function being run, blamed when a budget runs out.
    frame: Option<(Span, &'static str)>,
    /// The experiment and facility being recorded: owned by [`run`], which
    /// hands them on; the interpreter only calls their operations.
    pub model: &'a mut Model,
    pub fac: &'a mut crate::facility::FacModel,
    pub params: BTreeMap<String, serde_json::Value>,
    pub params_read: BTreeSet<String>,
    pub printed: Vec<String>,
    pub warnings: Vec<Diagnostic>,
    /// Errors recorded while evaluation went on ([`Eval::poison`]).
    pub errors: Vec<Diagnostic>,
    recorded: std::collections::HashSet<(&'static str, Option<(usize, usize)>)>,
    /// The top-level statement being run touched a [`Value::Poison`]: an
    /// error it raises follows from one already recorded.
    tainted: bool,
    /// Names of the file stem, for the implicit `topo`.
    pub stem: String,
    topo_sym: Option<Sym>,
    /// Constraints made so far, to tell each apart (`Value::Constraint`).
    pub(crate) cons_made: u64,
    /// The last constraint made at each source position, by a hash of it.
    pub(crate) cons_shared: Vec<Option<Rc<Cons>>>,
}

/// Runs the model `top` parses, a top-level statement at a time: each is
/// dropped as soon as it has run (functions live on in their closures), so
/// a 700,000-line generated model is never held whole as a tree while its
/// topology is built. Nothing runs past a break in the model's structure
/// ([`Source::broken`]); then the run is empty and only the parser's
/// diagnostics count.
pub fn run(
    path: &str,
    src: &str,
    top: &mut dyn Source,
    opts: &Options,
    diags: &mut Vec<Diagnostic>,
) -> Run {
    let stem = std::path::Path::new(path)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("experiment")
        .to_string();
    let names = Interner::default();
    let mut model = Model::default();
    let mut fac = crate::facility::FacModel::default();
    let mut ev = Eval {
        src,
        names,
        runtime_names: Interner::default(),
        opts,
        globals: Vec::new(),
        builtins: Vec::new(),
        comp: Vec::new(),
        scope: None,
        meter: Meter::new(opts.step_limit, opts.memory_limit),
        depth: 0,
        frame: None,
        model: &mut model,
        fac: &mut fac,
        params: BTreeMap::new(),
        params_read: BTreeSet::new(),
        printed: Vec::new(),
        warnings: Vec::new(),
        errors: Vec::new(),
        recorded: Default::default(),
        tainted: false,
        stem,
        topo_sym: None,
        cons_made: 0,
        cons_shared: vec![None; CONS_SHARED],
    };
    // Every independent mistake in one run: a statement that fails is
    // recorded and the next one runs; what it would have bound becomes
    // `Poison`, so what depends on it stays quiet.
    while top.next(&mut ev.names) {
        if top.broken() {
            break;
        }
        let stmt = top.stmt();
        ev.know_names();
        ev.tainted = false;
        match ev.stmt(stmt) {
            Ok(()) => {}
            Err(Flow::Err(d)) if fatal(&d) => {
                ev.errors.push(*d);
                break;
            }
            Err(Flow::Err(d)) => {
                if !ev.tainted {
                    ev.poison(*d);
                }
                ev.poison_targets(stmt);
            }
            Err(Flow::Return(_)) | Err(Flow::Break) | Err(Flow::Continue) => break,
        }
    }
    top.finish(&mut ev.names);
    if top.broken() {
        return Run::default();
    }
    // Lines that did not parse were reported already; nothing is lowered.
    let ok = ev.errors.is_empty() && !top.errors() && !diags.iter().any(Diagnostic::is_error);
    diags.append(&mut ev.errors);
    diags.append(&mut ev.warnings);
    for key in opts.params.keys() {
        if !ev.params_read.contains(key) {
            diags.push(
                Diagnostic::warning(
                    code::W0205,
                    format!("`--set {key}=...` names a parameter the model never reads"),
                )
                .help(match ev.params_read.iter().next() {
                    Some(_) => format!(
                        "the model reads: {}",
                        ev.params_read
                            .iter()
                            .map(|p| format!("`{p}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    None => {
                        "the model reads no parameters; add `param('NAME', default)` to make one"
                            .into()
                    }
                }),
            );
        }
    }
    let has_facility = !ev.fac.facilities.is_empty();
    let has_topology = ev.model.topos.iter().any(|t| !t.nodes.is_empty());
    if ok && has_facility && has_topology {
        diags.push(
            Diagnostic::error(
                code::E0217,
                "the model defines both a facility and an experiment topology",
            )
            .primary(ev.fac.facilities[0].1.range(), "facility")
            .help("put the facility and the experiment in separate files"),
        );
    }
    let topology = if ok && !has_facility {
        ev.model.finish(diags, &ev.stem, &ev.meter)
    } else {
        None
    };
    let facility = (ok && has_facility && !has_topology).then(|| std::mem::take(ev.fac));
    Run {
        topology,
        facility,
        parameters: ev.params,
        printed: ev.printed,
    }
}

/// Errors after which nothing more can be checked: the step and memory
/// budgets are spent.
pub fn fatal(d: &Diagnostic) -> bool {
    d.code == code::E0212 || d.code == code::E0213
}

/// The meaning of a name no model variable shadows.
pub fn builtin_of(name: &str) -> Option<Value> {
    BUILTIN_NAMES.get(name).map(|k| k.value())
}

/// What a name means when no model variable shadows it: [`builtin_of`]'s
/// answer as plain data, which (unlike a [`Value`]) a static table can hold.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Known {
    Builtin(Builtin),
    Prop(u8),
    Group(&'static str),
    Bool(bool),
    None,
    Sym(&'static str),
}

impl Known {
    fn value(self) -> Value {
        match self {
            Known::Builtin(b) => Value::Builtin(b),
            Known::Prop(p) => Value::Prop(p),
            Known::Group(g) => Value::Group(g),
            Known::Bool(b) => Value::Bool(b),
            Known::None => Value::None,
            Known::Sym(s) => Value::Sym(s),
        }
    }
}

/// Every name [`known_in_order`] knows, so a name costs one hash look-up:
/// a generated model names 100,000 nodes, and searching the tables in
/// order took about 1,500 instructions a name.
static BUILTIN_NAMES: std::sync::LazyLock<rustc_hash::FxHashMap<&'static str, Known>> =
    std::sync::LazyLock::new(|| {
        Builtin::ALL
            .iter()
            .map(|b| b.name())
            .chain(props::PROPS.iter().map(|p| p.name))
            .chain(["proc", "True", "true", "False", "false", "None"])
            .chain(props::ALIASES.iter().map(|(a, _)| *a))
            .chain(props::symbols())
            .filter_map(|name| Some((name, known_in_order(name)?)))
            .collect()
    });

/// What `name` means, by searching each table in turn (builtins first):
/// what [`BUILTIN_NAMES`] is built from, and what tests compare it with.
fn known_in_order(name: &str) -> Option<Known> {
    if let Some(b) = Builtin::ALL.iter().find(|b| b.name() == name) {
        return Some(Known::Builtin(*b));
    }
    if let Some(p) = props::prop(name) {
        return Some(Known::Prop(p));
    }
    match name {
        "proc" => return Some(Known::Group("proc")),
        "True" | "true" => return Some(Known::Bool(true)),
        "False" | "false" => return Some(Known::Bool(false)),
        "None" => return Some(Known::None),
        _ => {}
    }
    props::symbol(name).map(Known::Sym)
}

impl<'a> Eval<'a> {
    pub fn name(&self, s: Sym) -> &str {
        self.name_ref(s)
    }

    /// A name, shared: for holding while the interpreter is borrowed mutably.
    pub fn name_rc(&self, s: Sym) -> Rc<str> {
        self.name_ref(s).clone()
    }

    fn name_ref(&self, s: Sym) -> &Rc<str> {
        match s.0.checked_sub(RUNTIME_SYM) {
            Some(i) => self.runtime_names.name(Sym(i)),
            None => self.names.name(s),
        }
    }

    /// The symbol of a keyword a `**` dict names: the parser's, or one of
    /// [`Eval::runtime_names`].
    fn keyword_sym(&mut self, name: &str) -> Sym {
        if let Some(s) = self.names.lookup(name) {
            return s;
        }
        Sym(RUNTIME_SYM + self.runtime_names.intern(name).0)
    }

    /// Makes room for the names parsed since the last statement.
    fn know_names(&mut self) {
        let n = self.names.count();
        for i in self.globals.len()..n {
            let name = self.names.name(Sym(i as u32));
            if &**name == "topo" {
                self.topo_sym = Some(Sym(i as u32));
            }
            self.globals.push(None);
            self.builtins.push(builtin_of(name));
        }
    }

    pub fn text(&self, span: Span) -> &'a str {
        self.src.get(span.range()).unwrap_or("")
    }

    // ---- budgets -------------------------------------------------------

    /// Counts one step; past the limit, blames the innermost loop or function.
    #[inline]
    pub fn step(&mut self, at: Span) -> R<()> {
        self.meter.step().map_err(|e| self.exhausted(e, at))
    }

    /// Charges `bytes` of new values; past the limit, E0213.
    #[inline]
    pub fn charge(&mut self, bytes: u64, at: Span) -> R<()> {
        self.meter.charge(bytes).map_err(|e| self.exhausted(e, at))
    }

    /// The diagnostic for a budget that ran out while running `at`.
    pub fn exhausted(&self, e: Exhausted, at: Span) -> Flow {
        match e {
            Exhausted::Steps => self.budget_error(
                code::E0212,
                format!("the model ran for more than {} steps", self.opts.step_limit),
                at,
                "raise the limit with `--step-limit N` if the model is meant to be this large",
            ),
            Exhausted::Memory => self.budget_error(
                code::E0213,
                format!(
                    "the model built more than {} MiB of values",
                    self.opts.memory_limit >> 20
                ),
                at,
                "raise the limit with `--memory-limit MB` if the model is meant to be this large",
            ),
        }
    }

    /// Refuses one value larger than the whole budget before building it.
    pub fn check_size(&mut self, bytes: u128, at: Span) -> R<()> {
        if bytes > self.opts.memory_limit as u128 {
            return Err(Diagnostic::error(
                code::E0213,
                format!("this value would take about {} MiB", bytes >> 20),
            )
            .primary(at.range(), "too large")
            .help(format!(
                "the limit is {} MiB (`--memory-limit MB`)",
                self.opts.memory_limit >> 20
            ))
            .into());
        }
        self.charge(bytes as u64, at)
    }

    fn budget_error(&self, code: mx_diag::Code, msg: String, at: Span, help: &str) -> Flow {
        let mut d = Diagnostic::error(code, msg);
        match self.frame {
            Some((span, what)) => {
                d = d
                    .primary(span.range(), format!("in this {what}"))
                    .secondary(at.range(), "running here when the limit was reached");
            }
            None => d = d.primary(at.range(), "running here when the limit was reached"),
        }
        d.help(help).into()
    }

    // ---- errors ----------------------------------------------------------

    pub fn fail(
        &self,
        code: mx_diag::Code,
        span: Span,
        msg: impl Into<String>,
        label: impl Into<String>,
    ) -> Flow {
        Diagnostic::error(code, msg)
            .primary(span.range(), label)
            .into()
    }

    pub fn type_error(&self, span: Span, msg: impl Into<String>) -> Flow {
        let msg = msg.into();
        Diagnostic::error(code::E0203, msg.clone())
            .primary(span.range(), "wrong type here")
            .into()
    }

    // ---- statements ------------------------------------------------------

    pub fn block(&mut self, body: &[Stmt]) -> R<()> {
        for s in body {
            self.stmt(s)?;
        }
        Ok(())
    }

    fn stmt(&mut self, s: &Stmt) -> R<()> {
        self.step(s.span)?;
        match &s.kind {
            StmtKind::Broken(binds) => {
                self.tainted = true;
                for b in binds {
                    self.store(*b, Value::Poison);
                }
            }
            StmtKind::Expr(e) => {
                self.expr(e)?;
            }
            StmtKind::Assign { targets, value } => {
                let v = self.expr(value)?;
                for t in targets {
                    self.assign(t, v.clone(), value.span)?;
                }
            }
            StmtKind::AugAssign { target, op, value } => {
                let cur = self.expr(target)?;
                let rhs = self.expr(value)?;
                let v = match (&cur, op) {
                    // `list += iterable` extends in place, as in Python.
                    (Value::List(l), BinOp::Add) => {
                        let items = self.iterate(&rhs, value.span)?;
                        self.charge(items.len() as u64 * VALUE_BYTES, s.span)?;
                        l.borrow_mut().extend(items);
                        cur.clone()
                    }
                    _ => self.binary(*op, cur, rhs, target.span, value.span, s.span)?,
                };
                self.assign(target, v, value.span)?;
            }
            StmtKind::If { branches, orelse } => {
                for (cond, body) in branches {
                    if self.expr(cond)?.truthy() {
                        return self.block(body);
                    }
                }
                self.block(orelse)?;
            }
            StmtKind::For { target, iter, body } => {
                let it = self.expr(iter)?;
                let saved = self.frame.replace((header(s.span, self.src), "loop"));
                let r = self.for_loop(target, &it, iter.span, body);
                self.frame = saved;
                r?;
            }
            StmtKind::While { cond, body } => {
                let saved = self.frame.replace((header(s.span, self.src), "loop"));
                let r = (|| {
                    while self.expr(cond)?.truthy() {
                        self.step(s.span)?;
                        match self.block(body) {
                            Ok(()) | Err(Flow::Continue) => {}
                            Err(Flow::Break) => break,
                            Err(e) => return Err(e),
                        }
                    }
                    Ok(())
                })();
                self.frame = saved;
                r?;
            }
            StmtKind::Def(def) => {
                let f = self.closure(def)?;
                self.store(def.name, f);
            }
            StmtKind::Return(e) => {
                let v = match e {
                    Some(e) => self.expr(e)?,
                    None => Value::None,
                };
                if self.scope.is_none() {
                    return Err(self.fail(
                        code::E0101,
                        s.span,
                        "`return` outside a function",
                        "not in a `def`",
                    ));
                }
                return Err(Flow::Return(v));
            }
            StmtKind::Pass | StmtKind::Global(_) => {}
            StmtKind::Break => return Err(Flow::Break),
            StmtKind::Continue => return Err(Flow::Continue),
            StmtKind::Import {
                module,
                alias,
                bind,
            } => {
                let root = module.split('.').next().unwrap_or(module);
                if !is_known_module(root) {
                    self.warn_import(module, s.span);
                }
                let m = if alias.is_some() {
                    module.as_str()
                } else {
                    root
                };
                self.store(*bind, Value::Module(m.into()));
            }
            StmtKind::FromImport { module, names } => {
                let known = is_known_module(module.split('.').next().unwrap_or(module));
                if !known {
                    self.warn_import(module, s.span);
                }
                for (name, alias, span) in names {
                    let v = if known {
                        match self.builtins[name.0 as usize].clone() {
                            Some(v) => v,
                            None => {
                                return Err(self.fail(
                                    code::E0201,
                                    *span,
                                    format!("`{module}` has no name `{}`", self.name(*name)),
                                    "not provided",
                                ));
                            }
                        }
                    } else {
                        Value::Module(format!("{module}.{}", self.name(*name)).into())
                    };
                    self.store(*alias, v);
                }
            }
            StmtKind::Assert { cond, msg } => {
                if !self.expr(cond)?.truthy() {
                    let text = match msg {
                        Some(m) => {
                            let v = self.expr(m)?;
                            format!("assertion failed: {}", self.str_brief(&v))
                        }
                        None => format!("assertion failed: {}", self.text(cond.span)),
                    };
                    return Err(self.fail(code::E0216, s.span, text, "this assertion is false"));
                }
            }
            StmtKind::Del(target) => self.delete(target)?,
        }
        Ok(())
    }

    fn warn_import(&mut self, module: &str, span: Span) {
        self.warnings.push(
            Diagnostic::warning(code::W0201, format!("module `{module}` is not available in .mx models"))
                .primary(span.range(), "ignored import")
                .help("mergexp's names are built in; anything used from other modules is an error (E0214)"),
        );
    }

    fn for_loop(&mut self, target: &Expr, it: &Value, iter_span: Span, body: &[Stmt]) -> R<()> {
        // Ranges iterate lazily so `for i in range(10**9)` is bounded by steps, not memory.
        if let Value::Range(r) = it {
            let (a, b, st) = **r;
            let n = range_len(a, b, st);
            for k in 0..n {
                self.step(iter_span)?;
                self.assign(target, Value::Int(a + k * st), iter_span)?;
                match self.block(body) {
                    Ok(()) | Err(Flow::Continue) => {}
                    Err(Flow::Break) => break,
                    Err(e) => return Err(e),
                }
            }
            return Ok(());
        }
        let items = self.iterate(it, iter_span)?;
        for v in items {
            self.step(iter_span)?;
            self.assign(target, v, iter_span)?;
            match self.block(body) {
                Ok(()) | Err(Flow::Continue) => {}
                Err(Flow::Break) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    // ---- names -----------------------------------------------------------

    fn closure(&mut self, def: &Arc<FuncDef>) -> R<Value> {
        let mut defaults = Vec::with_capacity(def.params.len());
        for p in &def.params {
            defaults.push(match &p.default {
                Some(e) => Some(self.expr(e)?),
                None => None,
            });
        }
        Ok(Value::Func(Rc::new(Closure {
            def: def.clone(),
            defaults,
            env: self.scope.clone(),
        })))
    }

    pub fn store(&mut self, sym: Sym, v: Value) {
        if let Some(s) = &self.scope
            && let Ok(i) = s.def.locals.binary_search(&sym)
        {
            s.vars.borrow_mut()[i] = Some(v);
            return;
        }
        self.globals[sym.0 as usize] = Some(v);
    }

    /// What `sym` names here, or `None` if nothing.
    pub fn lookup(&mut self, sym: Sym) -> Option<Value> {
        for (s, v) in self.comp.iter().rev() {
            if *s == sym {
                return Some(v.clone());
            }
        }
        let mut sc = self.scope.as_deref();
        while let Some(s) = sc {
            if let Ok(i) = s.def.locals.binary_search(&sym) {
                if let Some(v) = &s.vars.borrow()[i] {
                    return Some(v.clone());
                }
                return None;
            }
            sc = s.parent.as_deref();
        }
        if let Some(v) = &self.globals[sym.0 as usize] {
            return Some(v.clone());
        }
        if let Some(v) = &self.builtins[sym.0 as usize] {
            return Some(v.clone());
        }
        if Some(sym) == self.topo_sym {
            // The seed's snippets use `topo` without creating it.
            let t = self.model.new_topology(self.stem.clone(), None, true);
            let v = Value::Topo(t);
            self.globals[sym.0 as usize] = Some(v.clone());
            return Some(v);
        }
        None
    }

    /// Loads a name. An undefined one is recorded (E0201) and evaluates to
    /// [`Value::Poison`], so the rest of the model is still checked; so is
    /// a local read before it is assigned.
    fn load(&mut self, sym: Sym, span: Span) -> R<Value> {
        let v = match self.lookup(sym) {
            Some(v) => v,
            None if self.is_local(sym) => {
                let d = Diagnostic::error(
                    code::E0201,
                    format!(
                        "local variable `{}` is used before it is assigned",
                        self.name(sym)
                    ),
                )
                .primary(span.range(), "not assigned yet");
                self.poison(d)
            }
            // Repeated by a loop: reported already, and "did you mean"
            // (a walk over every name) is not worked out again.
            None if self.recorded.contains(&(
                code::E0201.as_str(),
                Some((span.start as usize, span.end as usize)),
            )) =>
            {
                self.tainted = true;
                Value::Poison
            }
            None => {
                let d = self.undefined(sym, span);
                self.poison(d)
            }
        };
        if matches!(v, Value::Poison) {
            self.tainted = true;
        }
        Ok(v)
    }

    /// An error raised where evaluation can go on: recorded, and the
    /// expression becomes [`Value::Poison`]. Spent budgets and control flow
    /// pass through.
    pub fn recover(&mut self, f: Flow) -> R<Value> {
        match f {
            Flow::Err(d) if !fatal(&d) => Ok(self.poison(*d)),
            f => Err(f),
        }
    }

    /// After a top-level statement failed: every name it binds stands for
    /// the failure from now on.
    fn poison_targets(&mut self, stmt: &Stmt) {
        let mut names = Vec::new();
        crate::parser::collect_locals(std::slice::from_ref(stmt), &mut names, &mut Vec::new());
        for n in names {
            self.store(n, Value::Poison);
        }
    }

    /// Whether `sym` is a local of a function being run.
    fn is_local(&self, sym: Sym) -> bool {
        let mut sc = self.scope.as_deref();
        while let Some(s) = sc {
            if s.def.locals.binary_search(&sym).is_ok() {
                return true;
            }
            sc = s.parent.as_deref();
        }
        false
    }

    /// Records an error that need not stop evaluation (once per code and
    /// place: a loop repeats it) and returns the value that stands for the
    /// failed expression.
    pub fn poison(&mut self, d: Diagnostic) -> Value {
        self.tainted = true;
        let key = (d.code, d.location().map(|l| (l.start, l.end)));
        if self.recorded.insert(key) {
            self.errors.push(d);
        }
        Value::Poison
    }

    pub fn undefined(&self, sym: Sym, span: Span) -> Diagnostic {
        let name = self.name(sym);
        let mut candidates: Vec<&str> = Vec::new();
        for (i, g) in self.globals.iter().enumerate() {
            if g.is_some() || self.builtins[i].is_some() {
                candidates.push(self.name(Sym(i as u32)));
            }
        }
        let mut sc = self.scope.as_deref();
        while let Some(s) = sc {
            candidates.extend(s.def.locals.iter().map(|l| self.name(*l)));
            sc = s.parent.as_deref();
        }
        candidates.extend(self.comp.iter().map(|(s, _)| self.name(*s)));
        candidates.extend(Builtin::ALL.iter().map(|b| b.name()));
        candidates.extend(props::PROPS.iter().map(|p| p.name));
        candidates.extend(props::symbols().map(|s| -> &str { s }));
        let d = Diagnostic::error(code::E0201, format!("`{name}` is not defined"))
            .primary(span.range(), "not defined");
        let help = match did_you_mean(name, candidates) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!(
                "define `{name}` before this line, or quote it if you meant the text: '{name}'"
            ),
        };
        d.help(help)
    }

    fn assign(&mut self, target: &Expr, v: Value, vspan: Span) -> R<()> {
        match &target.kind {
            ExprKind::Name(s) => {
                self.store(*s, v);
                Ok(())
            }
            ExprKind::Paren(inner) => self.assign(inner, v, vspan),
            ExprKind::Tuple(items) | ExprKind::List(items) => {
                let vals = self.iterate(&v, vspan)?;
                self.unpack(items, vals, target.span, vspan, &mut |ev, t, v| {
                    ev.assign(t, v, vspan)
                })
            }
            ExprKind::Index(ix) => {
                let (obj, idx) = &**ix;
                let o = self.expr(obj)?;
                let k = self.expr(idx)?;
                self.set_item(&o, k, v, obj.span, idx.span)
            }
            ExprKind::Attr(obj, name, nspan) => {
                let o = self.expr(obj)?;
                self.set_attr(&o, *name, v, *nspan, vspan)
            }
            _ => Err(self.fail(
                code::E0101,
                target.span,
                "cannot assign to this expression",
                "not a name, item or attribute",
            )),
        }
    }

    fn unpack(
        &mut self,
        items: &[Expr],
        vals: Vec<Value>,
        tspan: Span,
        vspan: Span,
        bind: &mut dyn FnMut(&mut Self, &Expr, Value) -> R<()>,
    ) -> R<()> {
        let star = items
            .iter()
            .position(|i| matches!(i.kind, ExprKind::Star(_)));
        match star {
            None => {
                if vals.len() != items.len() {
                    return Err(Diagnostic::error(
                        code::E0216,
                        format!(
                            "cannot unpack {} values into {} names",
                            vals.len(),
                            items.len()
                        ),
                    )
                    .primary(vspan.range(), format!("{} values", vals.len()))
                    .secondary(tspan.range(), format!("{} names", items.len()))
                    .into());
                }
                for (t, v) in items.iter().zip(vals) {
                    bind(self, t, v)?;
                }
            }
            Some(si) => {
                let after = items.len() - si - 1;
                if vals.len() < items.len() - 1 {
                    return Err(self.fail(
                        code::E0216,
                        vspan,
                        format!(
                            "cannot unpack {} values into at least {} names",
                            vals.len(),
                            items.len() - 1
                        ),
                        "too few values",
                    ));
                }
                let mut vals = vals;
                let tail = vals.split_off(vals.len() - after);
                let mid = vals.split_off(si);
                for (t, v) in items[..si].iter().zip(vals) {
                    bind(self, t, v)?;
                }
                if let ExprKind::Star(inner) = &items[si].kind {
                    bind(self, inner, Value::list(mid))?;
                }
                for (t, v) in items[si + 1..].iter().zip(tail) {
                    bind(self, t, v)?;
                }
            }
        }
        Ok(())
    }

    fn delete(&mut self, target: &Expr) -> R<()> {
        match &target.kind {
            ExprKind::Name(s) => {
                self.store(*s, Value::None);
                if self.scope.is_none() {
                    self.globals[s.0 as usize] = None;
                }
                Ok(())
            }
            ExprKind::Tuple(items) | ExprKind::List(items) => {
                for i in items {
                    self.delete(i)?;
                }
                Ok(())
            }
            ExprKind::Index(ix) => {
                let (obj, idx) = &**ix;
                let o = self.expr(obj)?;
                let k = self.expr(idx)?;
                match &o {
                    Value::List(l) => {
                        let n = l.borrow().len();
                        let i = self.index(&k, n, idx.span)?;
                        l.borrow_mut().remove(i);
                        Ok(())
                    }
                    Value::Dict(d) => {
                        let key = self.key(&k, idx.span)?;
                        if d.borrow_mut().shift_remove(&key).is_none() {
                            return Err(self.key_error(&k, idx.span));
                        }
                        Ok(())
                    }
                    _ => Err(self.type_error(
                        obj.span,
                        format!("cannot delete items of a {}", o.type_name()),
                    )),
                }
            }
            _ => Err(self.fail(
                code::E0101,
                target.span,
                "cannot delete this expression",
                "not a name or item",
            )),
        }
    }

    // ---- expressions -----------------------------------------------------

    pub fn expr(&mut self, e: &Expr) -> R<Value> {
        Ok(match &e.kind {
            ExprKind::None => Value::None,
            ExprKind::Bool(b) => Value::Bool(*b),
            ExprKind::Int(i) => Value::Int(*i),
            ExprKind::Float(f) => Value::Float(*f),
            // The tree is shared with the parser's thread; values are not.
            ExprKind::Str(s) => Value::str(s),
            ExprKind::FStr(_) => return self.expr_rare(e),
            ExprKind::Name(s) => self.load(*s, e.span)?,
            ExprKind::Tuple(_)
            | ExprKind::List(_)
            | ExprKind::Dict(_)
            | ExprKind::ListComp(_)
            | ExprKind::DictComp(_) => return self.expr_rare(e),
            ExprKind::Attr(obj, name, nspan) => {
                let o = self.expr(obj)?;
                self.get_attr(o, *name, *nspan, obj.span)?
            }
            ExprKind::Index(ix) => {
                let (obj, idx) = &**ix;
                let o = self.expr(obj)?;
                let k = self.expr(idx)?;
                self.get_item(&o, &k, obj.span, idx.span, e.span)?
            }
            ExprKind::Slice(_) => return self.expr_rare(e),
            ExprKind::Call(call) => return self.call_expr(&call.0, &call.1, e.span),
            ExprKind::Unary(op, x) => {
                let v = self.expr(x)?;
                self.unary(*op, v, x.span, e.span)?
            }
            ExprKind::Binary(op, l, r) => {
                let a = self.expr(l)?;
                let b = self.expr(r)?;
                if let (Value::Int(x), Value::Int(y)) = (&a, &b)
                    && let Some(v) = crate::ops::int_op(*op, *x, *y)
                {
                    v
                } else {
                    self.binary(*op, a, b, l.span, r.span, e.span)?
                }
            }
            ExprKind::Compare(chain) => return self.compare_chain(&chain.0, &chain.1, e.span),
            ExprKind::And(l, r) => {
                let a = self.expr(l)?;
                if !a.truthy() { a } else { self.expr(r)? }
            }
            ExprKind::Or(l, r) => {
                let a = self.expr(l)?;
                if a.truthy() { a } else { self.expr(r)? }
            }
            ExprKind::IfExp(ie) => {
                let (cond, then, other) = &**ie;
                if self.expr(cond)?.truthy() {
                    self.expr(then)?
                } else {
                    self.expr(other)?
                }
            }
            ExprKind::Lambda(_) | ExprKind::Star(_) => return self.expr_rare(e),
            ExprKind::Paren(inner) => self.expr(inner)?,
        })
    }

    /// Expressions that build strings, containers or functions, out of
    /// [`Eval::expr`]: their code and locals made every evaluation of a
    /// name or a call pay for a stack frame twice the size.
    #[inline(never)]
    fn expr_rare(&mut self, e: &Expr) -> R<Value> {
        Ok(match &e.kind {
            ExprKind::FStr(parts) => {
                let room = parts.iter().fold(0, |n, p| match p {
                    FPart::Lit(s) => n + s.len(),
                    FPart::Field { .. } => n + 8,
                });
                let mut out = String::with_capacity(room);
                for p in parts.iter() {
                    match p {
                        FPart::Lit(s) => out.push_str(s),
                        FPart::Field {
                            expr,
                            conv: None,
                            spec: None,
                        } => {
                            let v = self.expr(expr)?;
                            self.to_str_into(&v, &mut out, expr.span)?;
                        }
                        FPart::Field { expr, conv, spec } => {
                            let v = self.expr(expr)?;
                            let v = match conv {
                                Some('r') => Value::str(&self.repr(&v, expr.span)?),
                                Some(_) => Value::str(&self.to_str(&v, expr.span)?),
                                None => v,
                            };
                            let s =
                                self.format_value(&v, spec.as_deref().unwrap_or(""), expr.span)?;
                            out.push_str(&s);
                        }
                    }
                }
                self.charge(out.len() as u64 + 16, e.span)?;
                Value::Str(out.into())
            }
            ExprKind::Tuple(items) => Value::tuple(self.display(items)?),
            ExprKind::List(items) => Value::list(self.display(items)?),
            ExprKind::Dict(items) => {
                let mut map = IndexMap::with_capacity(items.len());
                for it in items {
                    match it {
                        DictItem::Pair(k, v) => {
                            let kv = self.expr(k)?;
                            let key = self.key(&kv, k.span)?;
                            let vv = self.expr(v)?;
                            map.insert(key, vv);
                        }
                        DictItem::Splat(x) => {
                            let d = self.expr(x)?;
                            let Value::Dict(d) = d else {
                                return Err(self.type_error(
                                    x.span,
                                    format!("`**` needs a dict, not a {}", d.type_name()),
                                ));
                            };
                            for (k, v) in d.borrow().iter() {
                                map.insert(k.clone(), v.clone());
                            }
                        }
                    }
                }
                self.charge(map.len() as u64 * 48 + 32, e.span)?;
                Value::dict(map)
            }
            ExprKind::ListComp(lc) => {
                let (elt, comps) = &**lc;
                let mut out = Vec::new();
                let base = self.comp.len();
                let r = self.comprehend(comps, 0, e.span, &mut |ev| {
                    let v = ev.expr(elt)?;
                    out.push(v);
                    ev.charge(VALUE_BYTES, e.span)
                });
                self.comp.truncate(base);
                r?;
                Value::list(out)
            }
            ExprKind::DictComp(dc) => {
                let (k, v, comps) = &**dc;
                let mut out = IndexMap::new();
                let base = self.comp.len();
                let r = self.comprehend(comps, 0, e.span, &mut |ev| {
                    let kv = ev.expr(k)?;
                    let key = ev.key(&kv, k.span)?;
                    let vv = ev.expr(v)?;
                    out.insert(key, vv);
                    ev.charge(48, e.span)
                });
                self.comp.truncate(base);
                r?;
                Value::dict(out)
            }
            ExprKind::Slice(sl) => {
                let (obj, parts) = &**sl;
                let o = self.expr(obj)?;
                let mut p = [None, None, None];
                for (i, part) in parts.iter().enumerate() {
                    if let Some(x) = part {
                        match self.expr(x)? {
                            Value::None => {}
                            Value::Int(n) => p[i] = Some(n),
                            Value::Bool(b) => p[i] = Some(b as i64),
                            other => {
                                return Err(self.type_error(
                                    x.span,
                                    format!(
                                        "slice indices must be integers, not {}",
                                        other.type_name()
                                    ),
                                ));
                            }
                        }
                    }
                }
                self.slice(&o, p, obj.span, e.span)?
            }
            ExprKind::Lambda(def) => self.closure(def)?,
            ExprKind::Star(_) => {
                return Err(self.fail(
                    code::E0101,
                    e.span,
                    "`*` is only allowed inside a list, tuple or call",
                    "unexpected `*`",
                ));
            }
            _ => unreachable!("a common expression is evaluated in `expr`"),
        })
    }

    fn display(&mut self, items: &[Expr]) -> R<Vec<Value>> {
        let mut out = Vec::with_capacity(items.len());
        for it in items {
            if let ExprKind::Star(inner) = &it.kind {
                let v = self.expr(inner)?;
                out.extend(self.iterate(&v, inner.span)?);
            } else {
                out.push(self.expr(it)?);
            }
        }
        let span = items.first().map_or(Span::default(), |f| f.span);
        self.charge(out.len() as u64 * VALUE_BYTES + 32, span)?;
        Ok(out)
    }

    fn comprehend(
        &mut self,
        comps: &[Comp],
        i: usize,
        span: Span,
        emit: &mut dyn FnMut(&mut Self) -> R<()>,
    ) -> R<()> {
        let Some(c) = comps.get(i) else {
            return emit(self);
        };
        let it = self.expr(&c.iter)?;
        let items: Box<dyn Iterator<Item = Value>> = match it {
            Value::Range(r) => {
                let (a, b, st) = *r;
                Box::new((0..range_len(a, b, st)).map(move |k| Value::Int(a + k * st)))
            }
            other => Box::new(self.iterate(&other, c.iter.span)?.into_iter()),
        };
        let mark = self.comp.len();
        let saved = self.frame.replace((span, "comprehension"));
        let r = (|| {
            for v in items {
                self.step(c.iter.span)?;
                self.comp.truncate(mark);
                self.bind_comp(&c.target, v, c.iter.span)?;
                let mut ok = true;
                for cond in &c.conds {
                    if !self.expr(cond)?.truthy() {
                        ok = false;
                        break;
                    }
                }
                if ok {
                    self.comprehend(comps, i + 1, span, emit)?;
                }
            }
            Ok(())
        })();
        self.frame = saved;
        self.comp.truncate(mark);
        r
    }

    fn bind_comp(&mut self, target: &Expr, v: Value, vspan: Span) -> R<()> {
        match &target.kind {
            ExprKind::Name(s) => {
                self.comp.push((*s, v));
                Ok(())
            }
            ExprKind::Paren(inner) => self.bind_comp(inner, v, vspan),
            ExprKind::Tuple(items) | ExprKind::List(items) => {
                let vals = self.iterate(&v, vspan)?;
                self.unpack(items, vals, target.span, vspan, &mut |ev, t, v| {
                    ev.bind_comp(t, v, vspan)
                })
            }
            _ => Err(self.fail(
                code::E0101,
                target.span,
                "a comprehension variable must be a name or tuple of names",
                "not a name",
            )),
        }
    }

    // ---- calls -----------------------------------------------------------

    fn call_expr(&mut self, f: &Expr, args: &[Arg], span: Span) -> R<Value> {
        // `obj.method(...)` without allocating a bound method.
        if let ExprKind::Attr(obj, name, nspan) = &f.kind {
            let recv = self.expr(obj)?;
            if has_methods(&recv) {
                let a = self.args(args, span)?;
                return self.call_method(recv, *name, *nspan, obj.span, a);
            }
            let fv = self.get_attr(recv, *name, *nspan, obj.span)?;
            let a = self.args(args, span)?;
            return self.call(fv, a, f.span);
        }
        let fv = self.expr(f)?;
        // A unit such as `gb(4)` or `mbps(100)`, most of the calls a model
        // makes, is worked out here when its one argument is a number,
        // without building `Args`; any other argument takes the general
        // path, with the value already computed.
        if let (Value::Builtin(b), [Arg::Pos(e)]) = (&fv, args)
            && let Some(unit) = crate::builtins::unit_of(*b)
        {
            let x = self.expr(e)?;
            if let Some(n) = crate::builtins::number(&x) {
                return self.quantity(n, unit, span);
            }
            return self.call_one(fv, x, e.span, span, f.span);
        }
        // `ip4('10.0.0.1/24')`, once for every endpoint of a model: the
        // same, for a string.
        if let (Value::Builtin(Builtin::Ip4), [Arg::Pos(e)]) = (&fv, args) {
            let x = self.expr(e)?;
            if let Value::Str(s) = &x {
                self.ip4_address(s, e.span)?;
                return Ok(Value::list(vec![x]));
            }
            return self.call_one(fv, x, e.span, span, f.span);
        }
        let a = self.args(args, span)?;
        self.call(fv, a, f.span)
    }

    /// `f(x)` the general way, `x` already evaluated.
    fn call_one(&mut self, f: Value, x: Value, xspan: Span, span: Span, fspan: Span) -> R<Value> {
        let mut a = Args {
            pos: PosArgs::new(),
            pos_spans: PosSpans::new(),
            kw: Vec::new(),
            span,
        };
        a.pos.push(x);
        a.pos_spans.push(xspan);
        self.call(f, a, fspan)
    }

    fn args(&mut self, args: &[Arg], span: Span) -> R<Args> {
        let mut a = Args {
            pos: PosArgs::new(),
            pos_spans: PosSpans::new(),
            kw: Vec::new(),
            span,
        };
        for arg in args {
            match arg {
                Arg::Pos(e) => {
                    a.pos.push(self.expr(e)?);
                    a.pos_spans.push(e.span);
                }
                Arg::Star(e) => {
                    let v = self.expr(e)?;
                    for x in self.iterate(&v, e.span)? {
                        a.pos.push(x);
                        a.pos_spans.push(e.span);
                    }
                }
                Arg::Kw(name, nspan, e) => {
                    let v = self.expr(e)?;
                    a.kw.push((*name, v, nspan.to(e.span)));
                }
                Arg::DStar(e) => {
                    let v = self.expr(e)?;
                    let Value::Dict(d) = v else {
                        return Err(self.type_error(
                            e.span,
                            format!("`**` needs a dict, not a {}", v.type_name()),
                        ));
                    };
                    for (k, v) in d.borrow().iter() {
                        let Key::Str(s) = k else {
                            return Err(
                                self.type_error(e.span, "keyword argument names must be strings")
                            );
                        };
                        let sym = self.keyword_sym(s);
                        a.kw.push((sym, v.clone(), e.span));
                    }
                }
            }
        }
        Ok(a)
    }

    pub fn call(&mut self, f: Value, a: Args, fspan: Span) -> R<Value> {
        match f {
            Value::Func(c) => self.call_closure(&c, a),
            Value::Builtin(b) => self.call_builtin(b, a),
            Value::Method(m) => {
                let (recv, name) = (m.0.clone(), m.1);
                self.call_method(recv, name, fspan, fspan, a)
            }
            Value::Module(m) => Err(self.unknown_module(&m, fspan)),
            // In a facility, `nic(connectx5, ports=2)` and `gpu('a100')` declare hardware.
            Value::Prop(p) if props::PROPS[p as usize].name == "nic" => {
                self.call_facility(Builtin::NicSpec, a)
            }
            Value::Prop(p) if props::PROPS[p as usize].name == "gpu" => {
                self.call_facility(Builtin::GpuSpec, a)
            }
            other => {
                Err(self.type_error(fspan, format!("a {} cannot be called", other.type_name())))
            }
        }
    }

    pub fn unknown_module(&self, m: &str, span: Span) -> Flow {
        Diagnostic::error(
            code::E0214,
            format!("`{m}` comes from a module .mx models cannot use"),
        )
        .primary(span.range(), "not available in the sandbox")
        .help("models are sandboxed: only the built-in mergexp names and Python builtins exist")
        .into()
    }

    fn call_closure(&mut self, c: &Rc<Closure>, a: Args) -> R<Value> {
        let def = &c.def;
        if self.depth >= MAX_CALL_DEPTH {
            return Err(Diagnostic::error(
                code::E0219,
                format!("calls nest more than {MAX_CALL_DEPTH} deep"),
            )
            .primary(
                def.span.range(),
                format!(
                    "`{}` is called recursively without end",
                    self.name(def.name)
                ),
            )
            .secondary(a.span.range(), "the call that went too deep")
            .help("check the recursion's base case")
            .into());
        }
        self.step(a.span)?;
        let mut vars: Vec<Option<Value>> = vec![None; def.locals.len()];
        let slot = |s: Sym| def.locals.binary_search(&s).ok();
        let fname = self.name(def.name);
        let npos = def.params.iter().filter(|p| !p.kw_only).count();
        let mut extra = Vec::new();
        for (i, v) in a.pos.into_iter().enumerate() {
            if i < npos {
                if let Some(k) = slot(def.params[i].name) {
                    vars[k] = Some(v);
                }
            } else if def.varargs.is_some() {
                extra.push(v);
            } else {
                return Err(Diagnostic::error(
                    code::E0215,
                    format!(
                        "`{fname}` takes {npos} positional argument{} but more were given",
                        if npos == 1 { "" } else { "s" }
                    ),
                )
                .primary(a.pos_spans[i].range(), "unexpected argument")
                .secondary(def.span.range(), "defined here")
                .into());
            }
        }
        if let Some(va) = def.varargs
            && let Some(k) = slot(va)
        {
            vars[k] = Some(Value::tuple(extra));
        }
        let mut kwextra = IndexMap::new();
        for (name, v, span) in a.kw {
            if def.params.iter().any(|p| p.name == name) {
                let k = slot(name).expect("params are locals");
                if vars[k].is_some() {
                    return Err(self.fail(
                        code::E0215,
                        span,
                        format!("`{fname}` got two values for `{}`", self.name(name)),
                        "given again here",
                    ));
                }
                vars[k] = Some(v);
            } else if def.kwargs.is_some() {
                kwextra.insert(Key::Str(self.name_rc(name)), v);
            } else {
                let cands = def.params.iter().map(|p| self.name(p.name));
                let mut d = Diagnostic::error(
                    code::E0215,
                    format!("`{fname}` has no parameter `{}`", self.name(name)),
                )
                .primary(span.range(), "unknown keyword")
                .secondary(def.span.range(), "defined here");
                if let Some(s) = did_you_mean(self.name(name), cands) {
                    d = d.help(format!("did you mean `{s}`?"));
                }
                return Err(d.into());
            }
        }
        if let Some(kw) = def.kwargs
            && let Some(k) = slot(kw)
        {
            vars[k] = Some(Value::dict(kwextra));
        }
        for (i, p) in def.params.iter().enumerate() {
            let k = slot(p.name).expect("params are locals");
            if vars[k].is_none() {
                match &c.defaults[i] {
                    Some(d) => vars[k] = Some(d.clone()),
                    None => {
                        return Err(Diagnostic::error(
                            code::E0215,
                            format!("`{fname}` is missing the argument `{}`", self.name(p.name)),
                        )
                        .primary(a.span.range(), "in this call")
                        .secondary(def.span.range(), "defined here")
                        .into());
                    }
                }
            }
        }
        let scope = Rc::new(Scope {
            def: def.clone(),
            vars: RefCell::new(vars),
            parent: c.env.clone(),
        });
        let saved_scope = self.scope.replace(scope);
        let saved_comp = std::mem::take(&mut self.comp);
        let saved_frame = self.frame.replace((header(def.span, self.src), "function"));
        self.depth += 1;
        let r = self.block(&def.body);
        self.depth -= 1;
        self.frame = saved_frame;
        self.comp = saved_comp;
        self.scope = saved_scope;
        match r {
            Ok(()) => Ok(Value::None),
            Err(Flow::Return(v)) => Ok(v),
            Err(Flow::Break) | Err(Flow::Continue) => Err(self.fail(
                code::E0101,
                def.span,
                "`break` or `continue` outside a loop",
                "in this function",
            )),
            Err(e) => Err(e),
        }
    }

    // ---- values ----------------------------------------------------------

    pub fn key(&self, v: &Value, span: Span) -> R<Key> {
        Key::of(v, &self.meter)
            .map_err(|e| self.exhausted(e, span))?
            .ok_or_else(|| {
                self.type_error(span, format!("a {} cannot be a dict key", v.type_name()))
            })
    }

    pub fn key_error(&self, k: &Value, span: Span) -> Flow {
        self.fail(
            code::E0216,
            span,
            format!("key {} is not in the dict", self.repr_brief(k)),
            "missing key",
        )
    }

    /// The items of an iterable, materialized.
    pub fn iterate(&mut self, v: &Value, span: Span) -> R<Vec<Value>> {
        Ok(match v {
            Value::List(l) => l.borrow().clone(),
            Value::Tuple(t) => t.to_vec(),
            Value::Range(r) => {
                let (a, b, s) = **r;
                let n = range_len(a, b, s);
                self.check_size(n as u128 * VALUE_BYTES as u128, span)?;
                (0..n).map(|k| Value::Int(a + k * s)).collect()
            }
            Value::Str(s) => {
                self.check_size(s.len() as u128 * 24, span)?;
                s.chars()
                    .map(|c| Value::str(c.encode_utf8(&mut [0; 4])))
                    .collect()
            }
            Value::Dict(d) => d.borrow().keys().map(Key::value).collect(),
            Value::Link(l) => self.model.link_nodes(*l),
            Value::Topo(t) => self.model.topo_nodes(*t),
            Value::Module(m) => return Err(self.unknown_module(m, span)),
            other => {
                return Err(
                    self.type_error(span, format!("a {} is not iterable", other.type_name()))
                );
            }
        })
    }

    /// A Python index into a sequence of length `n`, negative from the end.
    pub fn index(&self, k: &Value, n: usize, span: Span) -> R<usize> {
        let i = match k {
            Value::Int(i) => *i,
            Value::Bool(b) => *b as i64,
            other => {
                return Err(self.type_error(
                    span,
                    format!("indices must be integers, not {}", other.type_name()),
                ));
            }
        };
        let j = if i < 0 { i + n as i64 } else { i };
        if j < 0 || j >= n as i64 {
            return Err(self.fail(
                code::E0216,
                span,
                format!("index {i} is out of range for length {n}"),
                "out of range",
            ));
        }
        Ok(j as usize)
    }

    fn get_item(&mut self, o: &Value, k: &Value, ospan: Span, kspan: Span, span: Span) -> R<Value> {
        match o {
            Value::List(l) => {
                let l = l.borrow();
                let i = self.index(k, l.len(), kspan)?;
                Ok(l[i].clone())
            }
            Value::Tuple(t) => {
                let i = self.index(k, t.len(), kspan)?;
                Ok(t[i].clone())
            }
            Value::Str(s) => {
                let chars: Vec<char> = s.chars().collect();
                let i = self.index(k, chars.len(), kspan)?;
                Ok(Value::str(chars[i].encode_utf8(&mut [0; 4])))
            }
            Value::Range(r) => {
                let (a, b, st) = **r;
                let n = range_len(a, b, st);
                let i = self.index(k, n as usize, kspan)?;
                Ok(Value::Int(a + i as i64 * st))
            }
            Value::Dict(d) => {
                let key = self.key(k, kspan)?;
                d.borrow()
                    .get(&key)
                    .cloned()
                    .ok_or_else(|| self.key_error(k, kspan))
            }
            Value::Link(l) => self.endpoint_of(*l, k, kspan, span),
            Value::Module(m) => Err(self.unknown_module(m, ospan)),
            other => {
                Err(self.type_error(ospan, format!("a {} cannot be indexed", other.type_name())))
            }
        }
    }

    fn set_item(&mut self, o: &Value, k: Value, v: Value, ospan: Span, kspan: Span) -> R<()> {
        match o {
            Value::List(l) => {
                let n = l.borrow().len();
                let i = self.index(&k, n, kspan)?;
                l.borrow_mut()[i] = v;
                Ok(())
            }
            Value::Dict(d) => {
                let key = self.key(&k, kspan)?;
                self.charge(48, kspan)?;
                d.borrow_mut().insert(key, v);
                Ok(())
            }
            other => Err(self.type_error(
                ospan,
                format!("a {} does not support item assignment", other.type_name()),
            )),
        }
    }

    fn slice(&mut self, o: &Value, p: [Option<i64>; 3], ospan: Span, span: Span) -> R<Value> {
        let step = p[2].unwrap_or(1);
        if step == 0 {
            return Err(self.fail(code::E0216, span, "slice step cannot be zero", "zero step"));
        }
        let pick = |n: usize| -> Vec<usize> {
            let n = n as i64;
            let clamp = |x: i64, lo: i64, hi: i64| x.max(lo).min(hi);
            let norm = |x: Option<i64>, default: i64, lo: i64, hi: i64| match x {
                None => default,
                Some(x) if x < 0 => clamp(x + n, lo, hi),
                Some(x) => clamp(x, lo, hi),
            };
            let mut out = Vec::new();
            if step > 0 {
                let (a, b) = (norm(p[0], 0, 0, n), norm(p[1], n, 0, n));
                let mut i = a;
                while i < b {
                    out.push(i as usize);
                    i += step;
                }
            } else {
                let (a, b) = (norm(p[0], n - 1, -1, n - 1), norm(p[1], -1, -1, n - 1));
                let mut i = a;
                while i > b {
                    out.push(i as usize);
                    i += step;
                }
            }
            out
        };
        match o {
            Value::List(l) => {
                let l = l.borrow();
                let v: Vec<Value> = pick(l.len()).into_iter().map(|i| l[i].clone()).collect();
                self.charge(v.len() as u64 * VALUE_BYTES, span)?;
                Ok(Value::list(v))
            }
            Value::Tuple(t) => Ok(Value::tuple(
                pick(t.len()).into_iter().map(|i| t[i].clone()).collect(),
            )),
            Value::Str(s) => {
                let chars: Vec<char> = s.chars().collect();
                Ok(Value::Str(
                    pick(chars.len())
                        .into_iter()
                        .map(|i| chars[i])
                        .collect::<String>()
                        .into(),
                ))
            }
            Value::Range(..) => {
                let items = self.iterate(o, ospan)?;
                let v: Vec<Value> = pick(items.len())
                    .into_iter()
                    .map(|i| items[i].clone())
                    .collect();
                Ok(Value::list(v))
            }
            other => {
                Err(self.type_error(ospan, format!("a {} cannot be sliced", other.type_name())))
            }
        }
    }
}

/// The first line of a statement, so loop and function labels stay short.
fn header(span: Span, src: &str) -> Span {
    let text = src.get(span.range()).unwrap_or("");
    match text.find('\n') {
        Some(i) => {
            let line = text[..i].trim_end();
            Span::new(span.start as usize, span.start as usize + line.len())
        }
        None => span,
    }
}

fn is_known_module(m: &str) -> bool {
    matches!(m, "mergexp" | "mx" | "typing" | "__future__")
}

/// Values whose attributes are methods dispatched by name.
fn has_methods(v: &Value) -> bool {
    matches!(
        v,
        Value::Str(_)
            | Value::List(_)
            | Value::Dict(_)
            | Value::Tuple(_)
            | Value::Topo(_)
            | Value::Node(_)
            | Value::Link(_)
            | Value::Endpoint(..)
            | Value::Facility(_)
            | Value::Device(_)
    )
}

/// The closest candidate within a small edit distance.
pub fn did_you_mean<'n>(
    name: &str,
    candidates: impl IntoIterator<Item = &'n str>,
) -> Option<&'n str> {
    let max = match name.chars().count() {
        0..=2 => 0,
        3..=5 => 1,
        6..=8 => 2,
        _ => 3,
    };
    let lower = name.to_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        if c == name || c.starts_with('<') {
            continue;
        }
        let d = if c.to_lowercase() == lower {
            0
        } else {
            levenshtein(name, c)
        };
        if d <= max && best.is_none_or(|(bd, bc)| d < bd || (d == bd && c < bc)) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table of names answers as searching the tables in order does:
    /// for every builtin, property, alias, symbol and constant (where a
    /// name is in two tables, the first wins), their near misses, and
    /// names no table has.
    #[test]
    fn known_names_are_found_as_the_tables_are_searched() {
        let mut names: Vec<String> = Builtin::ALL
            .iter()
            .map(|b| b.name().to_owned())
            .chain(props::PROPS.iter().map(|p| p.name.to_owned()))
            .chain(
                props::ALIASES
                    .iter()
                    .flat_map(|(a, c)| [a.to_string(), c.to_string()]),
            )
            .chain(props::symbols().map(str::to_owned))
            .chain(["proc", "True", "true", "False", "false", "None", "topo"].map(String::from))
            .collect();
        for n in names.clone() {
            names.push(format!("{n}_"));
            names.push(n.to_uppercase());
            names.push(n[..n.len() - 1].to_owned());
        }
        names
            .extend(["", "n0", "n99999", "net", "node", "l", "x86_6", "connect"].map(String::from));
        assert!(BUILTIN_NAMES.len() > 100, "{}", BUILTIN_NAMES.len());
        for n in &names {
            assert_eq!(
                BUILTIN_NAMES.get(n.as_str()).copied(),
                known_in_order(n),
                "{n:?}"
            );
        }
    }
}
