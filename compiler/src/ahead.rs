//! The top level parsed on a second thread, ahead of the evaluator.
//!
//! A generated model is hundreds of thousands of top-level lines, and
//! parsing them is about as much work as running them; the machines mx
//! runs on have at least two cores. A parser thread runs [`TopLevel`] and
//! hands statements over in batches, each with the names interned since the
//! last one. The evaluator keeps its own interner and appends those names
//! in the same order, so symbols agree (the evaluator never interns a name
//! of its own). The evaluator runs a batch's statements where they lie and
//! sends the vector back whole once it has run them all; the parser thread
//! frees them where they were allocated and fills the vector with the next
//! batch: a fresh vector a batch was 60 MB of page faults on the flat
//! model, and moving each statement out and back into a vector of spent
//! ones wrote every statement once more, on the other core, for the parser
//! to fetch back before it could write the next batch over it. The
//! evaluator sees exactly what the serial [`TopLevel`] gives it: the same
//! statements and symbols, and the same diagnostics in the same order; only
//! the time differs.

use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::thread::ScopedJoinHandle;
use std::time::{Duration, Instant};

use mx_diag::Diagnostic;

use crate::ast::{Interner, Stmt, Sym};
use crate::parser::TopLevel;

/// Statements per batch: enough that handing over (a wake-up on each side)
/// costs little, few enough that the evaluator starts at once. On the
/// 700,000-line flat model, 1,024 ahead by 2 parsed in 0.74-0.77 s where
/// 256 ahead by 4 took 0.80-0.83 s, and 64 by 2 0.86-0.93 s.
const BATCH: usize = 1024;
/// Batches the parser may be ahead by.
const AHEAD: usize = 2;

/// Where the evaluator gets its top-level statements: [`TopLevel`] itself,
/// or [`Ahead`], which runs it on another thread.
pub trait Source {
    /// Moves to the next top-level statement, whose names are then in
    /// `names`; false at the end.
    fn next(&mut self, names: &mut Interner) -> bool;
    /// The statement [`Source::next`] moved to.
    fn stmt(&self) -> &Stmt;
    /// Parses the rest for its errors, when evaluation stopped early, and
    /// waits for the parser.
    fn finish(&mut self, names: &mut Interner);
    /// Whether the model's structure is broken (see [`crate::parser::structural`]).
    fn broken(&self) -> bool;
    /// Whether the parser reported any error; complete after [`Source::finish`].
    fn errors(&self) -> bool;
}

impl Source for TopLevel<'_> {
    fn next(&mut self, names: &mut Interner) -> bool {
        self.current = TopLevel::next(self, names);
        self.current.is_some()
    }
    fn stmt(&self) -> &Stmt {
        self.current.as_ref().expect("next gave a statement")
    }
    fn finish(&mut self, names: &mut Interner) {
        TopLevel::finish(self, names)
    }
    fn broken(&self) -> bool {
        TopLevel::broken(self)
    }
    fn errors(&self) -> bool {
        TopLevel::errors(self)
    }
}

/// Runs `f` over the top level of `src`, parsed ahead on a thread with
/// `stack` bytes of stack (serially if no thread can be had). The parser's
/// diagnostics are appended to `diags`; the time is the parser's.
pub fn with_source<T>(
    src: &str,
    stack: usize,
    diags: &mut Vec<Diagnostic>,
    f: impl FnOnce(&mut dyn Source) -> T,
) -> (T, Duration) {
    let (out, (time, _)) = run_ahead(src, stack, diags, f);
    (out, time)
}

/// [`with_source`], giving the parser's time and the number of statement
/// vectors it allocated (none for a model parsed on this thread).
fn run_ahead<T>(
    src: &str,
    stack: usize,
    diags: &mut Vec<Diagnostic>,
    f: impl FnOnce(&mut dyn Source) -> T,
) -> (T, (Duration, usize)) {
    std::thread::scope(|scope| {
        let (tx, rx) = sync_channel(AHEAD);
        let (spent_tx, spent_rx) = channel();
        let worker = std::thread::Builder::new()
            .name("mx-parse".to_owned())
            .stack_size(stack)
            .spawn_scoped(scope, move || parse(src, tx, &spent_rx));
        let Ok(worker) = worker else {
            let t = Instant::now();
            let mut top = TopLevel::new(src, diags);
            let parsed = t.elapsed();
            return (f(&mut top), (parsed, 0));
        };
        let mut ahead = Ahead {
            rx: Some(rx),
            spent_tx: Some(spent_tx),
            batch: Vec::new(),
            at: 0,
            broken: false,
            worker: Some(worker),
            done: None,
        };
        let out = f(&mut ahead);
        ahead.finish(&mut Interner::default());
        let done = ahead.done.take().expect("finished");
        diags.extend(done.diags);
        (out, (done.time, done.vectors))
    })
}

/// Statements and the names interned since the last batch, one after
/// another in `names`, each ending where `ends` says: one allocation a
/// batch rather than one a name (a flat model names 100,000 nodes).
struct Batch {
    names: String,
    ends: Vec<usize>,
    stmts: Vec<Stmt>,
    broken: bool,
}

/// What the parser thread ends with.
struct Parsed {
    diags: Vec<Diagnostic>,
    broken: bool,
    errors: bool,
    time: Duration,
    /// Statement vectors allocated: a few, however many batches.
    vectors: usize,
}

/// The parser thread: parses every line (also after the evaluator stopped
/// taking statements, for their errors) and frees statements that have run.
fn parse(src: &str, tx: SyncSender<Batch>, spent: &Receiver<Vec<Stmt>>) -> Parsed {
    let started = Instant::now();
    let mut waited = Duration::ZERO;
    let mut diags = Vec::new();
    let mut names = Interner::default();
    let mut top = TopLevel::new(src, &mut diags);
    let mut sent = 0;
    let mut open = true;
    let mut stmts = Vec::with_capacity(BATCH);
    let mut vectors = 1;
    // Vectors that came back emptied, for the next batches.
    let mut pool: Vec<Vec<Stmt>> = Vec::new();
    loop {
        let next = top.next(&mut names);
        let end = next.is_none();
        stmts.extend(next);
        if open && (end || stmts.len() == BATCH || top.broken()) {
            let mut fresh = String::new();
            let mut ends = Vec::with_capacity(names.count() - sent);
            for i in sent..names.count() {
                fresh.push_str(names.name(Sym(i as u32)));
                ends.push(fresh.len());
            }
            sent = names.count();
            let batch = Batch {
                names: fresh,
                ends,
                stmts: std::mem::replace(
                    &mut stmts,
                    pool.pop().unwrap_or_else(|| {
                        vectors += 1;
                        Vec::with_capacity(BATCH)
                    }),
                ),
                broken: top.broken(),
            };
            // Waits while the evaluator is behind; an error means it stopped.
            let t = Instant::now();
            open = tx.send(batch).is_ok();
            waited += t.elapsed();
        }
        if !open {
            stmts.clear();
        }
        while let Ok(mut done) = spent.try_recv() {
            done.clear();
            if pool.len() < AHEAD + 2 {
                pool.push(done);
            }
        }
        if end {
            break;
        }
    }
    // The last batch is out: the evaluator sees the end.
    drop(tx);
    top.finish(&mut names);
    let (broken, errors) = (top.broken(), top.errors());
    drop(top);
    let time = started.elapsed().saturating_sub(waited);
    // Until the evaluator lets go.
    for done in spent {
        drop(done);
    }
    Parsed {
        diags,
        broken,
        errors,
        time,
        vectors,
    }
}

/// The evaluator's end of the parser thread.
pub struct Ahead<'scope> {
    rx: Option<Receiver<Batch>>,
    spent_tx: Option<Sender<Vec<Stmt>>>,
    /// The batch being run, and the statement running (one past it).
    batch: Vec<Stmt>,
    at: usize,
    broken: bool,
    worker: Option<ScopedJoinHandle<'scope, Parsed>>,
    done: Option<Parsed>,
}

impl Source for Ahead<'_> {
    fn next(&mut self, names: &mut Interner) -> bool {
        loop {
            if self.at < self.batch.len() {
                self.at += 1;
                return true;
            }
            // Run through: back to the parser, statements and all. If the
            // parser is gone, they are freed here.
            let spent = std::mem::take(&mut self.batch);
            if spent.capacity() > 0
                && let Some(tx) = &self.spent_tx
            {
                let _ = tx.send(spent);
            }
            self.at = 0;
            let Some(batch) = self.rx.as_ref().and_then(|rx| rx.recv().ok()) else {
                return false;
            };
            let mut start = 0;
            for &end in &batch.ends {
                // New to the parser, so new here too.
                names.append(&batch.names[start..end]);
                start = end;
            }
            self.broken |= batch.broken;
            self.batch = batch.stmts;
        }
    }

    fn stmt(&self) -> &Stmt {
        &self.batch[self.at - 1]
    }

    fn finish(&mut self, _names: &mut Interner) {
        if self.done.is_some() {
            return;
        }
        // The parser stops handing over and parses the rest on its own.
        self.rx = None;
        if let Some(tx) = self.spent_tx.take() {
            let _ = tx.send(std::mem::take(&mut self.batch));
        }
        let worker = self
            .worker
            .take()
            .expect("the parser thread is joined once");
        let done = worker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        self.broken |= done.broken;
        self.done = Some(done);
    }

    fn broken(&self) -> bool {
        self.broken
    }

    fn errors(&self) -> bool {
        self.done.as_ref().is_some_and(|d| d.errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything a source gives: statements, names in order, whether the
    /// structure broke, whether there were errors.
    fn drain(source: &mut dyn Source) -> (Vec<String>, Vec<String>, bool, bool) {
        let mut names = Interner::default();
        let mut stmts = Vec::new();
        while source.next(&mut names) {
            stmts.push(format!("{:?}", source.stmt()));
        }
        source.finish(&mut names);
        let names = (0..names.count())
            .map(|i| names.name(Sym(i as u32)).to_string())
            .collect();
        (stmts, names, source.broken(), source.errors())
    }

    /// A model of many batches, with blocks, `elif`/`else` joining their
    /// `if` across lines, a function, imports and broken lines.
    fn model(broken_structure: bool) -> String {
        let mut src = String::from("from mergexp import *\nnet = Network('n')\n");
        for i in 0..6 * BATCH {
            src += &format!("n{i} = net.node('n{i}', proc.cores >= {i})\n");
            if i % 97 == 0 {
                src += &format!("if n{i}:\n    y{i} = 1\nelif z:\n    w = 2\nelse:\n    v = 3\n");
            }
            if i % 301 == 0 {
                src += "bad = = 1\n";
            }
            if broken_structure && i == 4 * BATCH {
                src += "    stray = 1\n";
            }
        }
        src + "def f(a, b=2):\n    return a + b\nimport mergexp as m\nimport os.path\n"
    }

    /// Ahead of the evaluator, the parser gives exactly what it gives
    /// serially: statements, symbols, diagnostics, structure.
    #[test]
    fn ahead_gives_what_the_serial_parser_gives() {
        for broken in [false, true] {
            let src = model(broken);
            let mut serial_diags = Vec::new();
            let mut top = TopLevel::new(&src, &mut serial_diags);
            let serial = drain(&mut top);
            drop(top);
            let mut ahead_diags = Vec::new();
            let (ahead, _) = with_source(&src, 1 << 24, &mut ahead_diags, |s| drain(s));
            assert!(serial.0.len() > 3 * BATCH, "{}", serial.0.len());
            assert_eq!(serial.2, broken);
            assert_eq!(serial, ahead);
            assert_eq!(format!("{serial_diags:?}"), format!("{ahead_diags:?}"));
        }
    }

    /// Statements travel in a few vectors that go back and forth, not in
    /// a new one a batch (60 MB of fresh pages on the flat model).
    #[test]
    fn batches_reuse_their_vectors() {
        let src = "x = 1\n".repeat(40 * BATCH);
        let mut diags = Vec::new();
        let (count, (_, vectors)) = run_ahead(&src, 1 << 24, &mut diags, |s| drain(s).0.len());
        assert_eq!(count, 40 * BATCH);
        assert!(diags.is_empty());
        // In flight at once: batches in the channel and being filled, the
        // one being run, spent ones on their way back and the evaluator's
        // spares, about eight in the worst scheduling; one a batch was 41.
        assert!((1..=12).contains(&vectors), "{vectors} vectors");
    }

    /// An evaluator that stops early still gets every line's diagnostics.
    #[test]
    fn stopping_early_still_parses_the_rest() {
        let src = model(false);
        let mut serial = Vec::new();
        let mut top = TopLevel::new(&src, &mut serial);
        top.finish(&mut Interner::default());
        drop(top);
        let mut ahead = Vec::new();
        with_source(&src, 1 << 24, &mut ahead, |s| {
            let mut names = Interner::default();
            s.next(&mut names);
            s.finish(&mut names);
        });
        assert_eq!(format!("{serial:?}"), format!("{ahead:?}"));
        // One `bad = = 1` every 301 nodes.
        assert_eq!(ahead.len(), (0..6 * BATCH).step_by(301).count());
    }

    /// Statements cross threads; what they hold must allow it.
    #[test]
    fn statements_can_be_sent() {
        fn send<T: Send>() {}
        send::<Batch>();
    }
}
