//! The `.mx` compiler.
//!
//! Phases, each in its own module:
//! 1. [`lexer`] splits the source into logical lines with indentation levels
//!    (like Python's tokenizer, and like just and starlark, indentation is
//!    handled here rather than in the grammar);
//! 2. [`parser`] parses each logical line with the pest grammar from
//!    `mx-grammar` and builds the block structure into an AST;
//! 3. [`eval`] runs the AST in a deterministic sandbox (step and memory
//!    budgets, no I/O) against the built-in topology API, recording nodes,
//!    links and constraints;
//! 4. [`check`] validates the recorded topology (contradictions, addresses,
//!    connectivity) and lowers it to XIR.
//!
//! ```
//! let out = mx_compiler::compile("hello.mx", "x = topo.device('x')\ny = topo.device('y')\ntopo.connect([x, y])\n", &Default::default());
//! let xir = out.xir.expect("compiles");
//! assert_eq!(xir.nodes.len(), 2);
//! ```

mod ahead;
mod ast;
mod builtins;
mod check;
mod eval;
mod facility;
mod fast;
mod format;
mod lexer;
mod methods;
mod ops;
mod parser;
mod props;
mod syntax;
mod topo;
mod value;

use mx_diag::code;
use std::collections::BTreeMap;
use std::time::Instant;

pub use mx_diag::Diagnostic;

/// Compile options. The defaults suit every real model; the limits exist so
/// runaway models fail fast instead of hanging CI.
#[derive(Clone, Debug)]
pub struct Options {
    /// `--set K=V` overrides for `param('K', default)`, in command-line order.
    pub params: BTreeMap<String, String>,
    /// Evaluation steps before E0212.
    pub step_limit: u64,
    /// Approximate bytes of model values before E0213.
    pub memory_limit: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            params: BTreeMap::new(),
            step_limit: 100_000_000,
            memory_limit: 1 << 30,
        }
    }
}

/// What a compilation produced.
#[derive(Debug)]
pub struct Output {
    /// The experiment XIR, present when the model is an experiment and there were no errors.
    pub xir: Option<mx_xir::Experiment>,
    /// The facility XIR, present when the model is a facility (`facility('name')`) and there were no errors.
    pub facility: Option<mx_xir::Facility>,
    /// Errors and warnings, in source order.
    pub diagnostics: Vec<Diagnostic>,
    /// Lines the model printed with `print()`, for the caller to show on stderr.
    pub printed: Vec<String>,
    /// Wall time per phase, for `mxc --timings` and the benchmark.
    pub timings: Timings,
}

/// Wall time spent in each phase.
#[derive(Clone, Copy, Debug, Default)]
pub struct Timings {
    /// Lexing and parsing, on the parser's thread, alongside evaluation.
    pub parse: std::time::Duration,
    /// Running the model, from the first line parsed to the last run.
    pub eval: std::time::Duration,
    /// Whole-model checks and lowering to XIR.
    pub check: std::time::Duration,
}

/// Stack for the compiler thread. Parsing and evaluation recurse (bounded by
/// E0106 and E0219); a fixed, generous stack makes those bounds, not the
/// caller's thread, decide when a model is too deep. Only touched pages are
/// committed.
const COMPILE_STACK: usize = 256 << 20;

/// Compiles the bytes of a model file: [`decode`]s them, then [`compile`]s
/// the text. Returns the text (with any undecodable bytes replaced, for
/// rendering diagnostics) and the output.
pub fn compile_source(path: &str, bytes: Vec<u8>, opts: &Options) -> (String, Output) {
    match decode(bytes) {
        Ok(text) => {
            let out = compile(path, &text, opts);
            (text, out)
        }
        Err((text, d)) => (
            text,
            Output {
                xir: None,
                facility: None,
                diagnostics: vec![d],
                printed: Vec::new(),
                timings: Timings::default(),
            },
        ),
    }
}

/// A model's bytes as text. Bytes that are not UTF-8 are a mistake in the
/// model (E0108 at the first offending byte), not a failure of mx: the error
/// comes with the text lossily decoded, where the label points at the
/// replacement character.
pub fn decode(bytes: Vec<u8>) -> Result<String, (String, Diagnostic)> {
    match String::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let bad = e
                .utf8_error()
                .error_len()
                .unwrap_or(e.as_bytes().len() - at);
            let shown: Vec<String> = e.as_bytes()[at..at + bad.min(4)]
                .iter()
                .map(|b| format!("0x{b:02x}"))
                .collect();
            let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
            let line = text[..at].matches('\n').count() + 1;
            let d = Diagnostic::error(
                code::E0108,
                format!(
                    "the model is not valid UTF-8: byte {at} (line {line}) is {}",
                    shown.join(" ")
                ),
            )
            .primary(at..at + '\u{fffd}'.len_utf8(), "not UTF-8")
            .help("save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`); models may use any Unicode text in strings and comments");
            Err((text, d))
        }
    }
}

/// Compiles `text`, read from `path`, to XIR. Runs on its own thread with a
/// large stack, so it is safe to call from any thread.
pub fn compile(path: &str, text: &str, opts: &Options) -> Output {
    compile_under(MAX_SOURCE, path, text, opts)
}

/// [`compile`] of a source of at most `max` bytes (E0109 otherwise).
fn compile_under(max: usize, path: &str, text: &str, opts: &Options) -> Output {
    if text.len() > max {
        return too_large(text.len());
    }
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("mx-compile".to_owned())
            .stack_size(COMPILE_STACK)
            .spawn_scoped(scope, || compile_here(path, text, opts));
        match worker {
            Ok(handle) => handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            // No thread to be had: compile here, on the caller's stack.
            Err(_) => compile_here(path, text, opts),
        }
    })
}

fn compile_here(path: &str, text: &str, opts: &Options) -> Output {
    let mut parsed = Vec::new();
    let mut diagnostics = Vec::new();
    let mut timings = Timings::default();
    let t = Instant::now();
    // The top level is parsed on another thread as it runs. A line that
    // does not parse is skipped and the model still runs, so one run
    // reports every independent mistake; broken structure (strings,
    // brackets, indentation, depth) stops it.
    let ((run, broken), parse) = ahead::with_source(text, COMPILE_STACK, &mut parsed, |top| {
        let run = eval::run(path, text, top, opts, &mut diagnostics);
        (run, top.broken())
    });
    timings.parse = parse;
    timings.eval = t.elapsed();
    parsed.append(&mut diagnostics);
    let mut diagnostics = parsed;
    if broken {
        sort(&mut diagnostics);
        return Output {
            xir: None,
            facility: None,
            diagnostics,
            printed: Vec::new(),
            timings,
        };
    }
    let t = Instant::now();
    let xir = run
        .topology
        .and_then(|topo| check::lower(path, topo, &run.parameters, &mut diagnostics));
    let facility = run
        .facility
        .and_then(|fac| facility::lower(path, &fac, &mut diagnostics));
    timings.check = t.elapsed();
    sort(&mut diagnostics);
    let failed = diagnostics.iter().any(Diagnostic::is_error);
    Output {
        xir: if failed { None } else { xir },
        facility: if failed { None } else { facility },
        diagnostics,
        printed: run.printed,
        timings,
    }
}

/// The largest source mx compiles: offsets are `u32`, in spans and in the
/// lexer's lines.
pub const MAX_SOURCE: usize = u32::MAX as usize;

/// What compiling a source of `len` bytes, more than [`MAX_SOURCE`], gives
/// (E0109): for a caller that knows the size before it reads the source.
pub fn too_large(len: usize) -> Output {
    Output {
        xir: None,
        facility: None,
        diagnostics: vec![
            Diagnostic::error(
                code::E0109,
                format!(
                    "the model is {} MiB; mx compiles models under 4 GiB",
                    len >> 20
                ),
            )
            .help("build large topologies with loops and comprehensions, not a line per element"),
        ],
        printed: Vec::new(),
        timings: Timings::default(),
    }
}

/// Source order, errors before warnings at the same place; stable otherwise.
fn sort(diags: &mut [Diagnostic]) {
    diags.sort_by_key(|d| d.location().map_or(usize::MAX, |l| l.start));
}

#[cfg(test)]
mod tests {
    //! The top level is parsed as it runs (`parser::TopLevel`): what that
    //! must not change.

    use super::*;

    fn codes(out: &Output) -> Vec<String> {
        out.diagnostics.iter().map(|d| d.code.to_string()).collect()
    }

    /// A source longer than its offsets can address is refused whole,
    /// before it is lexed, with a code `mxc explain` knows.
    #[test]
    fn a_source_over_the_limit_is_refused_before_it_is_lexed() {
        let text = "from mergexp import *\nnet = Network('t')\n";
        let out = compile_under(text.len() - 1, "big.mx", text, &Options::default());
        assert_eq!(codes(&out), ["E0109"]);
        assert!(out.xir.is_none() && out.facility.is_none());
        assert!(out.diagnostics[0].message.contains("under 4 GiB"));
        assert!(mx_diag::codes::lookup("E0109").is_some());
        let at_limit = compile_under(text.len(), "big.mx", text, &Options::default());
        assert!(!codes(&at_limit).contains(&"E0109".to_string()));
        assert_eq!(MAX_SOURCE, u32::MAX as usize);
    }

    /// Statements before a break in the structure run before it is found;
    /// nothing of that run may show: no output, no error of theirs.
    #[test]
    fn a_break_in_structure_late_in_the_file_reports_as_if_nothing_ran() {
        let text = "print('ran')\nx = undefined_name\nnet = Network('n')\n\
                    a = net.node('a')\n  b = 2\n";
        let out = compile("m.mx", text, &Options::default());
        assert!(out.printed.is_empty(), "{:?}", out.printed);
        assert!(out.xir.is_none());
        // Found only when the evaluator reaches it, after `undefined_name`.
        assert_eq!(codes(&out), ["E0105"]);
    }

    /// A break the evaluator stops short of (the step budget ran out first)
    /// is still found, by parsing the rest.
    #[test]
    fn lines_after_a_spent_budget_are_still_parsed() {
        let text = "while True:\n    pass\nx = = 1\n";
        let opts = Options {
            step_limit: 1000,
            ..Options::default()
        };
        let out = compile("m.mx", text, &opts);
        assert_eq!(codes(&out), ["E0212", "E0101"]);
    }

    /// Keywords from a `**` dict reach the callee whether or not the model
    /// spells them as names, and before or after the call.
    #[test]
    fn keywords_from_a_dict_need_not_be_names() {
        let text = "a = sorted([1, 3, 2], **{'reverse': True})\n\
                    def f(**kw):\n    return kw\n\
                    b = f(**{'x': 1, 'later': 2})\n\
                    assert a == [3, 2, 1] and b == {'x': 1, 'later': 2}\n\
                    later = 1\n\
                    c = f(**{'reverse': 3})\n\
                    def g(y):\n    return y\n\
                    d = g(**{'z': 1})\n";
        let out = compile("m.mx", text, &Options::default());
        // Only `g`'s unknown keyword is an error.
        assert_eq!(codes(&out), ["E0215"]);
        assert!(
            out.diagnostics[0].message.contains("no parameter `z`"),
            "{}",
            out.diagnostics[0].message
        );
    }

    /// A name first spelt after the statement that needs it: `import`
    /// binds its module although the name is not yet interned.
    #[test]
    fn names_interned_later_still_bind() {
        let text = "import mergexp\nnet = mergexp.Network('n')\na = net.node('a')\n\
                    b = net.node('b')\nnet.connect([a, b])\nexperiment(net)\n";
        let out = compile("m.mx", text, &Options::default());
        assert!(out.diagnostics.is_empty(), "{:?}", codes(&out));
        assert_eq!(out.xir.expect("xir").nodes.len(), 2);
    }

    /// A unit called with one positional argument (`gb(4)`), and `ip4`
    /// with one, are worked out without the general call path; what they
    /// give, and every error, is what the general path gives (reached here
    /// through `*[x]`).
    #[test]
    fn units_give_what_the_general_call_gives() {
        let run = |call: &str| {
            let text = format!("from mergexp import *\nv = {call}\nprint(repr(v))\n");
            let out = compile("m.mx", &text, &Options::default());
            let diags: Vec<(String, String)> = out
                .diagnostics
                .iter()
                .map(|d| (d.code.to_string(), d.message.clone()))
                .collect();
            (out.printed, diags)
        };
        for unit in ["gb", "pb", "mbps", "ms", "ghz"] {
            for arg in [
                "4", "2.5", "True", "0", "-3", "'4'", "None", "10**10", "1e300",
            ] {
                let fast = run(&format!("{unit}({arg})"));
                let general = run(&format!("{unit}(*[{arg}])"));
                assert_eq!(fast, general, "{unit}({arg})");
            }
        }
        for arg in [
            "'10.0.0.1/24'",
            "'10.0.0.256/24'",
            "'10.0.0.1'",
            "''",
            "4",
            "None",
        ] {
            let fast = run(&format!("ip4({arg})"));
            let general = run(&format!("ip4(*[{arg}])"));
            assert_eq!(fast, general, "ip4({arg})");
        }
        assert_eq!(run("ip4('10.0.0.1/24')").0, ["['10.0.0.1/24']"]);
        assert_eq!(run("gb(4)").0, ["gb(4)"], "{:?}", run("gb(4)"));
        assert_eq!(run("pb(10**10)").1[0].1, "integer overflow");
        assert!(run("gb('4')").1[0].1.contains("needs a number"));
    }

    /// A socket's addresses come from a string, a list (what `ip4` gives)
    /// or a tuple; anything else, an item that is not a string and an
    /// address that does not parse are each reported where they were set.
    #[test]
    fn addresses_are_set_from_strings_lists_and_tuples() {
        let model = |lines: &str| {
            format!(
                "from mergexp import *\nnet = Network('n')\na = net.node('a')\n\
                 b = net.node('b')\nl = net.connect([a, b])\n{lines}experiment(net)\n"
            )
        };
        let ok = compile(
            "m.mx",
            &model(
                "l[a].socket.addrs = '10.0.0.1/24'\n\
                 l[b].socket.addrs = ('10.0.0.2/24', '10.0.0.12/24')\n\
                 l[a].socket.addrs = ip4('10.0.0.3/24', '10.0.0.13/24')\n",
            ),
            &Options::default(),
        );
        assert!(ok.diagnostics.is_empty(), "{:?}", codes(&ok));
        let xir = ok.xir.expect("xir");
        let cidrs = |e: usize| -> Vec<String> {
            xir.links[0].endpoints[e]
                .addrs
                .iter()
                .map(|a| a.cidr.clone())
                .collect()
        };
        assert_eq!(cidrs(0), ["10.0.0.3/24", "10.0.0.13/24"]);
        assert_eq!(cidrs(1), ["10.0.0.2/24", "10.0.0.12/24"]);
        for (line, message) in [
            ("l[a].socket.addrs = 7\n", "not a int"),
            (
                "l[a].socket.addrs = ['10.0.0.1/24', 3]\n",
                "addresses are strings, not a int",
            ),
            (
                "l[a].socket.addrs = ('10.0.0.1/24', '10.0.0.300/24')\n",
                "`10.0.0.300/24`",
            ),
        ] {
            let out = compile("m.mx", &model(line), &Options::default());
            assert_eq!(out.diagnostics.len(), 1, "{line}: {:?}", codes(&out));
            let d = &out.diagnostics[0];
            assert!(d.message.contains(message), "{line}: {}", d.message);
            let at = model(line).find("l[a].socket.addrs").expect("the line");
            assert!(d.location().is_some_and(|l| l.start > at), "{line}");
        }
    }

    /// Integer arithmetic taken by the fast way (`ops::int_op`) gives what
    /// Python gives, checked against 128-bit arithmetic; what overflows or
    /// divides by zero still fails as before.
    #[test]
    fn integer_arithmetic_is_pythons() {
        let xs: [i64; 9] = [-7, -2, -1, 0, 1, 3, 7, i64::MAX, i64::MIN + 1];
        let ys: [i64; 7] = [-3, -1, 1, 2, 3, 128, i64::MAX];
        // `-9223372036854775808` is a literal out of range, negated.
        let lit = |v: i64| match v {
            i64::MIN => format!("({} - 1)", i64::MIN + 1),
            v => v.to_string(),
        };
        let topology = "from mergexp import *\nnet = Network('n')\na = net.node('a')\n";
        let mut text = topology.to_string();
        for x in xs {
            for y in ys {
                let (a, b) = (i128::from(x), i128::from(y));
                let q = a.div_euclid(b) - i128::from(b < 0 && a.rem_euclid(b) != 0);
                let r = a - q * b;
                for (op, v) in [
                    ("+", a + b),
                    ("-", a - b),
                    ("*", a * b),
                    ("//", q),
                    ("%", r),
                ] {
                    if let Ok(v) = i64::try_from(v) {
                        text += &format!("assert ({x}) {op} ({y}) == {}\n", lit(v));
                    }
                }
                text += &format!(
                    "assert ({x}) & ({y}) == {} and ({x}) | ({y}) == {} and ({x}) ^ ({y}) == {}\n",
                    lit(x & y),
                    lit(x | y),
                    lit(x ^ y)
                );
            }
        }
        let out = compile("m.mx", &text, &Options::default());
        assert!(out.diagnostics.is_empty(), "{:?}", out.diagnostics);
        for bad in [
            format!("x = {} + 1", i64::MAX),
            format!("x = ({}) - 2", i64::MIN + 1),
            format!("x = {} * 2", i64::MAX),
            "x = 1 // 0".to_string(),
            "x = 1 % 0".to_string(),
        ] {
            let out = compile("m.mx", &format!("{topology}{bad}\n"), &Options::default());
            assert_eq!(codes(&out), ["E0216"], "{bad}");
        }
    }

    /// Evaluations of one comparison share their constraint when it comes
    /// out the same, but stay values of their own: `==` and `is` tell them
    /// apart as before, and a value that differs (even only `-0.0` from
    /// `0.0`) is not shared.
    #[test]
    fn shared_constraints_stay_distinct_values() {
        let text = "from mergexp import *\nnet = Network('n')\n\
                    cs = [proc.cores >= 2 for i in range(3)]\n\
                    assert cs[0] == cs[0] and cs[0] is cs[0]\n\
                    assert not cs[0] == cs[1] and cs[0] is not cs[1] and cs[1] != cs[2]\n\
                    zs = [loss == z for z in [0.0, -0.0, 0.0]]\n\
                    ns = [net.node(f'n{i}', cs[i % 3]) for i in range(4)]\n\
                    ls = [net.connect([ns[i], ns[i + 1]], zs[i]) for i in range(3)]\n\
                    experiment(net)\n";
        let out = compile("m.mx", text, &Options::default());
        assert!(out.diagnostics.is_empty(), "{:?}", codes(&out));
        let xir = out.xir.expect("xir");
        assert!((0..4).all(|i| xir.nodes[i].constraints.len() == 1));
        let json = |i: usize| serde_json::to_string(&xir.links[i].constraints).unwrap();
        assert_eq!(json(0), json(2));
        assert!(json(0).contains("0.0") && !json(0).contains("-0.0"));
        assert!(json(1).contains("-0.0"), "{}", json(1));
    }
}
