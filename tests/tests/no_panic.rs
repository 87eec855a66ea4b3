//! Robustness: whatever the input, `compile` returns diagnostics instead of
//! panicking, hanging or overflowing the stack.
//!
//! Inputs are (1) every fixture and example, mutated deterministically by a
//! small xorshift PRNG with a fixed seed, (2) random bytes and random token
//! soup, and (3) hand-written pathological inputs (deep nesting, huge lines,
//! odd line endings, runtime traps). Each case runs under `catch_unwind`;
//! the first failure is reported with its input, escaped. The whole run
//! happens on a thread with a 256 MiB stack, the budget a test thread gets,
//! so a failure here means real unbounded recursion, not a small test stack.
//!
//! Every case also renders its diagnostics and serializes its XIR, as `mxc`
//! would, and checks that labels lie inside the source.
//!
//! A stack overflow aborts the whole test binary before any report; set
//! `MX_NO_PANIC_TRACE=1` to print each case's name before it runs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use mx_compiler::{Options, compile};
use mx_diag::{FileReport, HumanStyle, SourceFile, render_human};

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");
const STEP_LIMIT: u64 = 20_000;
const MEMORY_LIMIT: u64 = 16 << 20;
const MUTATION_CASES: usize = 3000;
/// Characters the mutator inserts: the ones that matter to the lexer.
const INSERT: &[u8] = b"()[]{}:'\"\n\t #=,.*\\f0";

/// xorshift64: tiny, deterministic, good enough to shuffle test inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// One input to try.
struct Case {
    what: String,
    text: String,
    params: BTreeMap<String, String>,
}

impl Case {
    fn new(what: impl Into<String>, text: impl Into<String>) -> Self {
        Case {
            what: what.into(),
            text: text.into(),
            params: BTreeMap::new(),
        }
    }

    fn with_param(mut self, k: &str, v: &str) -> Self {
        self.params.insert(k.to_owned(), v.to_owned());
        self
    }
}

/// Compiles, renders and serializes one case; `Err` describes a failure.
fn run_case(case: &Case) -> Result<(), String> {
    let opts = Options {
        params: case.params.clone(),
        step_limit: STEP_LIMIT,
        memory_limit: MEMORY_LIMIT,
    };
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        let out = compile("fuzz.mx", &case.text, &opts);
        for d in &out.diagnostics {
            for l in &d.labels {
                let ok = l.start <= l.end
                    && l.end <= case.text.len()
                    && case.text.is_char_boundary(l.start)
                    && case.text.is_char_boundary(l.end);
                if !ok {
                    return Err(format!(
                        "{} label {}..{} out of bounds for {} bytes",
                        d.code,
                        l.start,
                        l.end,
                        case.text.len()
                    ));
                }
            }
        }
        if out.xir.is_some() && out.diagnostics.iter().any(|d| d.is_error()) {
            return Err("XIR produced despite errors".to_owned());
        }
        if let Some(xir) = &out.xir {
            let _ = mx_xir::to_json_pretty(xir);
        }
        // Rendering copies source lines; skip it for the megabyte inputs.
        if case.text.len() < 100_000 {
            let report = FileReport::new(
                SourceFile::new("fuzz.mx", case.text.as_str()),
                out.diagnostics,
            );
            let _ = render_human(
                &report,
                HumanStyle {
                    color: false,
                    width: 80,
                },
            );
        }
        Ok(())
    }));
    match result {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "non-string panic".to_owned());
            Err(format!("panicked: {msg}"))
        }
    }
}

/// Input shown in a failure message: escaped, and cut if huge.
fn escaped(text: &str) -> String {
    const MAX: usize = 4000;
    let mut cut = text.len().min(MAX);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut s = format!("{:?}", &text[..cut]);
    if cut < text.len() {
        let _ = write!(s, " ... ({} bytes in all)", text.len());
    }
    s
}

/// Runs `cases` on a 256 MiB stack; panics with the first failure.
fn run_all(cases: Vec<Case>) {
    let handle = std::thread::Builder::new()
        .name("no-panic".into())
        .stack_size(256 << 20)
        .spawn(move || {
            let mut failures = 0usize;
            let mut first = None;
            let trace = std::env::var_os("MX_NO_PANIC_TRACE").is_some();
            for case in &cases {
                if trace {
                    // Straight to the file descriptor, past the test
                    // harness's capture, so it survives an abort.
                    let _ = writeln!(std::io::stderr(), "case: {}", case.what);
                }
                if let Err(e) = run_case(case) {
                    failures += 1;
                    if first.is_none() {
                        first = Some(format!(
                            "{}: {e}\nparams: {:?}\ninput: {}",
                            case.what,
                            case.params,
                            escaped(&case.text)
                        ));
                    }
                }
            }
            (cases.len(), failures, first)
        })
        .expect("spawn test thread");
    let (total, failures, first) = handle.join().expect("the test thread itself panicked");
    assert!(
        first.is_none(),
        "{failures} of {total} cases failed; the first:\n{}",
        first.unwrap_or_default()
    );
}

/// Every fixture and example: `(relative path, text)`.
fn corpus() -> Vec<(String, String)> {
    let root = Path::new(MANIFEST_DIR);
    let mut files: Vec<PathBuf> = Vec::new();
    let mut stack = vec![root.join("fixtures"), root.join("../examples")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "mx" || e == "py") {
                files.push(path);
            }
        }
    }
    files.sort();
    let corpus: Vec<(String, String)> = files
        .into_iter()
        .filter_map(|p| {
            let text = std::fs::read_to_string(&p).ok()?;
            let name = p.strip_prefix(root).unwrap_or(&p).display().to_string();
            Some((name, text))
        })
        .collect();
    assert!(corpus.len() >= 20, "fixtures and examples not found");
    corpus
}

/// A random byte range of `len` bytes: `(start, end)`.
fn range(rng: &mut Rng, len: usize) -> (usize, usize) {
    let start = rng.below(len + 1);
    let end = start + rng.below(len - start + 1).min(64);
    (start, end)
}

/// Inserts `ins` into `b` at `at`.
fn insert(b: &mut Vec<u8>, at: usize, ins: &[u8]) {
    let tail = b.split_off(at);
    b.extend_from_slice(ins);
    b.extend_from_slice(&tail);
}

/// Applies one random mutation to `b`, returning its name.
fn mutate(rng: &mut Rng, b: &mut Vec<u8>) -> &'static str {
    let len = b.len();
    match rng.below(7) {
        0 => {
            let (s, e) = range(rng, len);
            let tail = b.split_off(e);
            b.truncate(s);
            b.extend_from_slice(&tail);
            "delete"
        }
        1 => {
            let (s, e) = range(rng, len);
            let copy = b[s..e].to_vec();
            let at = rng.below(len + 1);
            insert(b, at, &copy);
            "duplicate"
        }
        2 => {
            let at = rng.below(len + 1);
            let n = 1 + rng.below(8);
            let ins: Vec<u8> = (0..n).map(|_| *rng.pick(INSERT)).collect();
            insert(b, at, &ins);
            "insert"
        }
        3 => {
            let text = String::from_utf8_lossy(b).into_owned();
            let mut lines: Vec<&str> = text.split('\n').collect();
            let i = rng.below(lines.len());
            let j = rng.below(lines.len());
            lines.swap(i, j);
            *b = lines.join("\n").into_bytes();
            "swap-lines"
        }
        4 => {
            let at = rng.below(len + 1);
            b.truncate(at);
            "truncate"
        }
        5 => {
            if len > 0 {
                let at = rng.below(len);
                b[at] = *rng.pick(INSERT);
            }
            "replace"
        }
        _ => {
            // Re-indent a line: indentation errors are the lexer's hardest job.
            let text = String::from_utf8_lossy(b).into_owned();
            let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
            let i = rng.below(lines.len());
            let indent = *rng.pick(&["", " ", "    ", "\t", "        ", " \t"]);
            lines[i] = format!("{indent}{}", lines[i].trim_start());
            *b = lines.join("\n").into_bytes();
            "reindent"
        }
    }
}

#[test]
fn mutated_fixtures() {
    let corpus = corpus();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut cases = Vec::with_capacity(MUTATION_CASES);
    for i in 0..MUTATION_CASES {
        let (name, text) = &corpus[i % corpus.len()];
        let mut bytes = text.clone().into_bytes();
        let rounds = 1 + rng.below(3);
        let mut what = Vec::new();
        for _ in 0..rounds {
            what.push(mutate(&mut rng, &mut bytes));
        }
        let text = String::from_utf8_lossy(&bytes).into_owned();
        cases.push(Case::new(
            format!("case {i}: {name} [{}]", what.join(", ")),
            text,
        ));
    }
    run_all(cases);
}

/// Pieces of .mx, so random soup reaches the parser and evaluator rather
/// than failing in the lexer every time.
const TOKENS: &[&str] = &[
    "x",
    "y",
    "n",
    "net",
    "topo",
    "a",
    "b",
    "i",
    "=",
    "==",
    ">=",
    "<",
    "+",
    "-",
    "*",
    "**",
    "/",
    "//",
    "%",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ":",
    ",",
    ".",
    ";",
    "\n",
    "\n    ",
    "\n\t",
    " ",
    "'s'",
    "\"t\"",
    "f'{x}'",
    "'''",
    "0",
    "1",
    "-1",
    "1.5",
    "1e308",
    "9223372036854775807",
    "for",
    "in",
    "range",
    "while",
    "if",
    "elif",
    "else",
    "def",
    "return",
    "lambda",
    "not",
    "and",
    "or",
    "True",
    "false",
    "None",
    "break",
    "continue",
    "pass",
    "global",
    "del",
    "assert",
    "import",
    "from",
    "*",
    "len",
    "Network",
    "topology",
    "param",
    "ip4",
    "experiment",
    ".node",
    ".device",
    ".connect",
    ".spec",
    ".socket",
    ".addrs",
    ".properties",
    ".ingress",
    "cores",
    "memory",
    "nic",
    "virtio",
    "connect4",
    "latency",
    "capacity",
    "loss",
    "gb(1)",
    "ms(10)",
    "mbps(100)",
    "ddr4(2400)",
    "gen3(16)",
    "proc.cores",
    "memory.capacity",
    "'10.0.0.1/24'",
    "print",
    "sorted",
    "key=",
    "#",
    "\\\n",
];

#[test]
fn random_inputs() {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let mut cases = Vec::new();
    for i in 0..400 {
        let len = rng.below(512);
        let bytes: Vec<u8> = (0..len).map(|_| (rng.next() & 0xFF) as u8).collect();
        cases.push(Case::new(
            format!("random bytes {i}"),
            String::from_utf8_lossy(&bytes).into_owned(),
        ));
    }
    for i in 0..400 {
        let len = rng.below(512);
        let bytes: Vec<u8> = (0..len).map(|_| *rng.pick(INSERT)).collect();
        cases.push(Case::new(
            format!("random punctuation {i}"),
            String::from_utf8_lossy(&bytes).into_owned(),
        ));
    }
    for i in 0..1200 {
        let n = rng.below(120);
        let text: String = (0..n)
            .map(|_| *rng.pick(TOKENS))
            .collect::<Vec<_>>()
            .join(" ");
        cases.push(Case::new(format!("token soup {i}"), text));
    }
    run_all(cases);
}

/// A small valid model to embed traps in.
const PRELUDE: &str = "a = topo.device('a')\nb = topo.device('b')\nl = topo.connect([a, b])\n";

#[test]
fn pathological_inputs() {
    let mut cases = vec![
        Case::new("empty", ""),
        Case::new("blank", "   \n\n\t\n"),
        Case::new("comment only", "# nothing here"),
        Case::new("10,000 (", "(".repeat(10_000)),
        Case::new("10,000 [", "[".repeat(10_000)),
        Case::new("10,000 {", "{".repeat(10_000)),
        Case::new("10,000 )", ")".repeat(10_000)),
        Case::new(
            "balanced 10,000 ()",
            format!("x = {}1{}", "(".repeat(10_000), ")".repeat(10_000)),
        ),
        Case::new("10,000 unary -", format!("x = {}1", "-".repeat(10_000))),
        Case::new("10,000 not", format!("x = {}1", "not ".repeat(10_000))),
        Case::new("5,000 **", format!("x = {}2", "2 ** ".repeat(5_000))),
        Case::new("50,000 +", format!("x = {}1", "1 + ".repeat(50_000))),
        Case::new(
            "5,000 lambdas",
            format!("f = {}1", "lambda: ".repeat(5_000)),
        ),
        Case::new(
            "5,000 if-else",
            format!("x = {}0", "1 if 1 else ".repeat(5_000)),
        ),
        Case::new("10,000 attributes", format!("x = a{}", ".b".repeat(10_000))),
        Case::new("5,000 calls", format!("x = f{}", "()".repeat(5_000))),
        Case::new("5,000 subscripts", format!("x = a{}", "[0]".repeat(5_000))),
        Case::new("1 MB string", format!("x = '{}'\n", "a".repeat(1 << 20))),
        Case::new("1 MB list", format!("x = [{}]\n", "1, ".repeat(350_000))),
        Case::new("1 MB comment", format!("#{}\n", "c".repeat(1 << 20))),
        Case::new("1 MB identifier", format!("{} = 1\n", "x".repeat(1 << 20))),
        Case::new("1 MB of x", "x".repeat(1 << 20)),
        Case::new("unterminated '''", "x = '''never closed\n\nmore\n"),
        Case::new("unterminated \"\"\"", "\"\"\""),
        Case::new("unterminated f-string field", "x = f'{'\n"),
        Case::new("f-string braces", "x = f'{{}}{1}}{{'\n"),
        Case::new("nested f-string", "x = f'{f\"{1}\"}'\n"),
        Case::new("f-string spec", "x = f'{1:{2}}{3!r:>9}{4!x}'\n"),
        Case::new("NUL bytes", "x = 1\0\0y = 2\n\0"),
        Case::new("only NUL", "\0".repeat(1000)),
        Case::new("NUL in string", "x = 'a\0b'\n"),
        Case::new(
            "CRLF",
            format!(
                "{}\r\nfor i in range(3):\r\n    x = i\r\n",
                PRELUDE.replace('\n', "\r\n")
            ),
        ),
        Case::new(
            "lone CR",
            "a = topo.device('a')\rb = topo.device('b')\rtopo.connect([a, b])\r",
        ),
        Case::new("CR in block", "if True:\r    x = 1\r  y = 2\r"),
        Case::new("BOM", format!("\u{feff}{PRELUDE}")),
        Case::new("BOM mid-file", format!("{PRELUDE}\u{feff}x = 1\n")),
        Case::new("trailing backslash", "x = 1 + \\"),
        Case::new("backslash CR", "x = 1 + \\\r2\n"),
        Case::new("form feed", "\x0cx = 1\n\x0c  y = 2\n"),
        Case::new("unicode", "é = 'ü'\nx = '🦀' * 3\nn = topo.device('🦀')\n"),
        Case::new("huge int", "x = 99999999999999999999999999999999999999\n"),
        Case::new("huge float", "x = 1e999\ny = -1e999\nz = 1e-999\n"),
        Case::new("int overflow", "x = 9223372036854775807 + 1\n"),
        Case::new("int min // -1", "x = (-9223372036854775807 - 1) // -1\n"),
        Case::new("int min % -1", "x = (-9223372036854775807 - 1) % -1\n"),
        Case::new("abs int min", "x = abs(-9223372036854775807 - 1)\n"),
        Case::new("neg int min", "x = -(-9223372036854775807 - 1)\n"),
        Case::new(
            "pow overflow",
            "x = 2 ** 64\ny = 10 ** 100\nz = 2 ** -1\nw = 0 ** -1\n",
        ),
        Case::new(
            "shifts",
            "x = 1 << 64\ny = 1 << -1\nz = 1 >> 100\nw = -1 >> 64\n",
        ),
        Case::new("division by zero", "x = 1 / 0\n"),
        Case::new("mod by zero", "x = 1 % 0\n"),
        Case::new("float mod zero", "x = 1.0 % 0.0\n"),
        Case::new("divmod zero", "x = divmod(1, 0)\n"),
        Case::new("range step zero", "x = range(0, 10, 0)\n"),
        Case::new("slice step zero", "x = [1, 2, 3][::0]\n"),
        Case::new(
            "huge range len",
            "x = len(range(-9223372036854775807 - 1, 9223372036854775807))\n",
        ),
        Case::new(
            "huge slice",
            "x = [1, 2][-9223372036854775807 - 1:9223372036854775807:9223372036854775807]\n",
        ),
        Case::new("negative repeat", "x = 'ab' * -5\ny = [1] * -1\n"),
        Case::new("huge repeat", "x = [0] * (1 << 62)\n"),
        Case::new("huge repeat str", "x = 'ab' * 9223372036854775807\n"),
        Case::new("huge width", "x = '{:>999999999999}'.format(1)\n"),
        Case::new("huge f width", "x = f'{1:99999999999}'\n"),
        Case::new("huge precision", "x = '%.999999999f' % 1.5\n"),
        Case::new("huge zfill-like", "x = '%0999999999d' % 1\n"),
        Case::new(
            "format errors",
            "x = '{}'.format()\ny = '%d' % 'x'\nz = '%' % ()\n",
        ),
        Case::new("format index", "x = '{5}'.format(1)\ny = '{a}'.format(1)\n"),
        Case::new(
            "self-containing list",
            "x = []\nx.append(x)\ny = str(x)\nz = x == x\n",
        ),
        Case::new("self-containing dict", "d = {}\nd['d'] = d\nprint(d)\n"),
        Case::new(
            "self-containing sort",
            "x = []\nx.append(x)\nx.append(x)\ny = sorted(x)\n",
        ),
        Case::new("deep value", "x = []\nwhile True:\n    x = [x]\n"),
        Case::new(
            "deep dict value",
            "x = {}\nfor i in range(100000):\n    x = {'k': x}\n",
        ),
        Case::new(
            "deep value compare",
            "x = []\ny = []\nfor i in range(1500):\n    x = [x]\n    y = [y]\nz = x == y\ns = str(x)\n",
        ),
        Case::new("recursion", "def f(n):\n    return f(n + 1)\nf(0)\n"),
        Case::new("recursion in lambda", "f = lambda n: f(n)\nf(0)\n"),
        Case::new(
            "recursion in comprehension",
            "def f(n):\n    return [f(n + 1) for _ in range(1)]\nf(0)\n",
        ),
        Case::new("recursion in default", "def f(n=0):\n    return f()\nf()\n"),
        Case::new(
            "recursion via sorted key",
            "def k(v):\n    return sorted([1, 2], key=k)\nk(0)\n",
        ),
        Case::new(
            "recursion via map",
            "def f(v):\n    return list(map(f, [v]))\nf(0)\n",
        ),
        Case::new("infinite loop", "while True:\n    pass\n"),
        Case::new("infinite for", "x = [1]\nfor v in x:\n    x.append(v)\n"),
        Case::new(
            "dict mutated while iterating",
            "d = {1: 1}\nfor k in d:\n    d[k + 1] = 1\n",
        ),
        Case::new(
            "list doubling",
            "x = [1]\nfor i in range(100):\n    x = x + x\n",
        ),
        Case::new(
            "string doubling",
            "x = 'ab'\nfor i in range(100):\n    x = x + x\n",
        ),
        Case::new(
            "extend self",
            "x = [1]\nfor i in range(100):\n    x.extend(x)\n",
        ),
        Case::new("unhashable key", "d = {[1]: 2}\n"),
        Case::new("nan key", "d = {float('nan'): 1}\nd[float('nan')] = 2\n"),
        Case::new("mixed sort", "x = sorted([1, 'a', None, [], {}])\n"),
        Case::new("chr range", "x = chr(-1)\ny = chr(1114112)\nz = ord('')\n"),
        Case::new(
            "int parse",
            "x = int('9' * 40)\ny = int('')\nz = float('x')\n",
        ),
        Case::new(
            "round extremes",
            "x = round(1e308, -400)\ny = round(1.5, 400)\nz = round(float('inf'))\n",
        ),
        Case::new("bad unpack", "a, b = 1\nc, d = [1, 2, 3]\n*e, f = []\n"),
        Case::new(
            "bad calls",
            "x = len()\ny = range()\nz = 1()\nw = 'a'.upper(1, 2)\n",
        ),
        Case::new(
            "kwargs splat",
            "def f(**k):\n    return k\nx = f(**{1: 2})\ny = f(**[1])\n",
        ),
        Case::new(
            "star splat",
            "def f(*a):\n    return a\nx = f(*1)\ny = f(*None)\n",
        ),
        Case::new(
            "global misuse",
            "global x\nx = 1\ndef f():\n    global f\n    f = 1\nf()\n",
        ),
        Case::new("del misuse", "del x\ndel 1\n"),
        Case::new("return outside", "return 1\n"),
        Case::new("break outside", "break\ncontinue\n"),
        Case::new("assert false", "assert False, 'message'\n"),
        Case::new(
            "import star other",
            "from os import *\nimport sys as s\nx = s.argv\n",
        ),
        Case::new(
            "topology misuse",
            "net = Network('')\na = net.node('')\nb = net.node(1)\nnet.connect(a)\nnet.connect([a, a])\nnet.connect([])\nnet.connect(1)\nexperiment(1)\nexperiment()\n",
        ),
        Case::new(
            "endpoint misuse",
            format!(
                "{PRELUDE}l[1].spec()\nl[a].spec(1)\nl[a].socket.addrs = 5\nl[a].socket.other = 1\nl[a].socket.addrs = [ip4('10.0.0.1/24')] * 3\n"
            ),
        ),
        Case::new(
            "bad addresses",
            format!(
                "{PRELUDE}x = [ip4(s) for s in ['', '1.2.3.4/', '::1/128', '999999999999999999999.1.1.1/8', '1.2.3.4/-1', '1.2.3.4/99999999999999999999', '1..3.4/8', ' 1.2.3.4/8']]\n"
            ),
        ),
        Case::new(
            "odd constraints",
            "a = topo.device('a', cores == cores, nic >= nic, cores == (cores == 1), memory == None, cores >= 1.5, cores == True)\n",
        ),
        Case::new(
            "constraint soup",
            "a = topo.device('a', cores in [], cores in 4, memory in [1, 'x'], nic in [virtio, 3], tdf == 0.5, tdf == -1, loss == -0.1, loss == float('nan'), mtu == 99999999999)\n",
        ),
        Case::new(
            "unit misuse",
            "x = gb(-1)\ny = gb(1e300)\nz = gb('x')\nw = ms(float('nan'))\nv = ddr4(-1)\nu = gen3(3)\nt = gen9(1)\n",
        ),
        Case::new(
            "quantity arithmetic",
            "x = gb(1) + mbps(1)\ny = gb(1) * gb(1)\nz = gb(1) < ms(1)\nw = -gb(1)\nv = gb(9223372036854775807)\n",
        ),
        Case::new(
            "many nodes",
            "for i in range(100000):\n    topo.device(f'n{i}')\n",
        ),
        Case::new(
            "many links",
            "a = topo.device('a')\nb = topo.device('b')\nfor i in range(100000):\n    topo.connect([a, b])\n",
        ),
        Case::new(
            "huge LAN",
            "nodes = [topo.device(f'n{i}') for i in range(3000)]\ntopo.connect(nodes * 10)\n",
        ),
        Case::new(
            "param default kinds",
            "a = param('a', [1])\nb = param('b', None)\nc = param(1, 2)\nd = param('d')\n",
        ),
        Case::new(
            "param int",
            "n = param('N', 10)\nx = [topo.device(f'n{i}') for i in range(n)]\n",
        )
        .with_param("N", "99999999999999999999"),
        Case::new(
            "param negative",
            "n = param('N', 10)\nx = [topo.device(f'n{i}') for i in range(n)]\n",
        )
        .with_param("N", "-5"),
        Case::new("param float", "r = param('r', 0.5)\n").with_param("r", "1e999"),
        Case::new("param bool", "b = param('b', True)\n").with_param("b", ""),
        Case::new("param unused odd", "x = 1\n")
            .with_param("", "")
            .with_param("=", "="),
    ];
    // 500 levels of indentation, spaces and tabs, in blocks and in defs.
    let mut deep_if = String::new();
    let mut deep_def = String::new();
    let mut deep_tabs = String::new();
    for i in 0..500 {
        let _ = writeln!(deep_if, "{}if True:", " ".repeat(i));
        let _ = writeln!(deep_def, "{}def f{i}():", " ".repeat(i));
        let _ = writeln!(deep_tabs, "{}for i{i} in range(1):", "\t".repeat(i));
    }
    deep_if.push_str(&format!("{}x = 1\n", " ".repeat(500)));
    deep_def.push_str(&format!("{}return 1\n", " ".repeat(500)));
    deep_tabs.push_str(&format!("{}x = 1\n", "\t".repeat(500)));
    cases.push(Case::new("500 nested ifs", deep_if));
    cases.push(Case::new("500 nested defs", deep_def));
    cases.push(Case::new("500 nested fors (tabs)", deep_tabs));
    // Just under the limits, where the real work happens.
    cases.push(Case::new(
        "99 nested brackets",
        format!("x = {}1{}\n", "[".repeat(99), "]".repeat(99)),
    ));
    let mut deep_ok = String::new();
    for i in 0..99 {
        let _ = writeln!(deep_ok, "{}if True:", "  ".repeat(i));
    }
    deep_ok.push_str(&format!("{}x = 1\n", "  ".repeat(99)));
    cases.push(Case::new("99 nested ifs", deep_ok));
    // Each line of a valid model with its line endings switched.
    for (ending, name) in [("\r\n", "CRLF"), ("\r", "CR")] {
        cases.push(Case::new(
            format!("valid model, {name}"),
            "net = Network('n')\na = net.node('a')\nb = net.node('b')\nl = net.connect([a, b])\nl[a].socket.addrs = ip4('10.0.0.1/24')\n"
                .replace('\n', ending),
        ));
    }
    run_all(cases);
}
