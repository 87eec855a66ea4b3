//! Splits a model into logical lines, as Python's tokenizer does.
//!
//! A logical line ends at a newline that is outside brackets and strings and
//! not escaped by a backslash. Blank and comment-only lines vanish. Each line
//! keeps its indentation text so the parser can build blocks. Unterminated
//! strings and unbalanced brackets are found here, where their opening
//! position is known, rather than as a confusing parse error lines later.

use mx_diag::Diagnostic;
use mx_diag::code;

/// Brackets deeper than this are refused (E0106), so no input can exhaust
/// the parser's stack.
pub const MAX_BRACKET_DEPTH: usize = 100;

/// One logical line: offsets as `u32`, 16 bytes where `usize`s took 40 (a
/// 700,000-line model's lines were 28 MB, written before its first line
/// was parsed). [`crate::compile`] refuses sources of 4 GiB or more (E0109),
/// whose offsets would not fit, as spans' would not.
#[derive(Debug, Clone, Copy)]
pub struct Line {
    indent: u32,
    start: u32,
    end: u32,
    /// Whether the line was cut short by an error found here; the parser
    /// skips such lines instead of reporting a second error for them.
    pub broken: bool,
}

impl Line {
    fn new(indent: usize, start: usize, end: usize, broken: bool) -> Line {
        let at = |i: usize| u32::try_from(i).expect("sources are shorter than 4 GiB (E0109)");
        Line {
            indent: at(indent),
            start: at(start),
            end: at(end),
            broken,
        }
    }

    /// Byte range of the indentation, which ends where the content starts.
    pub fn indent(&self) -> std::ops::Range<usize> {
        self.indent as usize..self.start as usize
    }

    /// Start of the content: the first non-blank character (comments are
    /// included up to the end; the grammar skips them).
    pub fn start(&self) -> usize {
        self.start as usize
    }

    /// End of the content (exclusive), before the newline.
    pub fn end(&self) -> usize {
        self.end as usize
    }
}

/// Sources from this size are split in two at a line start and the halves
/// lexed at once, the second on another thread.
const PARALLEL_FROM: usize = 1 << 20;

/// Splits `src` into logical lines, reporting lexical errors into `diags`.
///
/// A large source is lexed in two halves at once: a 700,000-line model
/// takes about 0.08 s to split, while the evaluator waits for its first
/// statement. The second half is lexed from a line start chosen without
/// knowing what came before, so its result is kept only when the first
/// half ends exactly there (no bracket or string open across it), it found
/// no error, and it does not indent with another character than the first
/// half; otherwise it is lexed again after the first. Either way the lines
/// and diagnostics are those of [`lines_serial`].
pub fn lines(src: &str, diags: &mut Vec<Diagnostic>) -> Vec<Line> {
    if src.len() >= PARALLEL_FROM
        && let Some(split) = split_point(src)
    {
        return lines_split_at(src, split, diags);
    }
    lines_serial(src, diags)
}

/// [`lines`] on one thread.
pub fn lines_serial(src: &str, diags: &mut Vec<Diagnostic>) -> Vec<Line> {
    let mut out = with_room(src.as_bytes());
    let mut style = None;
    lex(src, 0, src.len(), &mut style, diags, &mut out);
    out
}

/// A line start near the middle of `src`: after a newline, at a byte that
/// is neither blank nor a comment, so most likely a top-level statement.
fn split_point(src: &str) -> Option<usize> {
    let b = src.as_bytes();
    let mut i = (b.len() / 2).max(1);
    let limit = (i + (1 << 16)).min(b.len());
    while i < limit {
        if b[i - 1] == b'\n' && !matches!(b[i], b' ' | b'\t' | b'\x0C' | b'\n' | b'\r' | b'#') {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// [`lines`] with the second half speculatively from `split`, a line start.
fn lines_split_at(src: &str, split: usize, diags: &mut Vec<Diagnostic>) -> Vec<Line> {
    std::thread::scope(|s| {
        let second = std::thread::Builder::new()
            .name("mx-lex".into())
            .spawn_scoped(s, || {
                let mut out = with_room(&src.as_bytes()[split..]);
                let mut style = None;
                let mut d = Vec::new();
                lex(src, split, src.len(), &mut style, &mut d, &mut out);
                (out, d, style)
            });
        // Room for both halves: the second is appended without a copy.
        let mut out = with_room(src.as_bytes());
        let mut style = None;
        let end = lex(src, 0, split, &mut style, diags, &mut out);
        if let Ok(Ok((rest, d, rest_style))) = second.map(|h| h.join()) {
            let same_style = match (style, rest_style) {
                (Some((a, _)), Some((b, _))) => a == b,
                _ => true,
            };
            if end == split && d.is_empty() && same_style {
                out.extend(rest);
                return out;
            }
        }
        lex(src, end, src.len(), &mut style, diags, &mut out);
        out
    })
}

/// At most a line per newline: sized once, not doubled through a
/// 700,000-line model (capped: blank lines are free in the source).
fn with_room(b: &[u8]) -> Vec<Line> {
    Vec::with_capacity((newlines(b) + 1).min(1 << 20))
}

/// How many `\n` bytes `b` holds. Counted in byte-wide counters over runs
/// of 255 bytes, which the compiler turns into vector compares: a plain
/// `filter().count()` took 2.4 instructions a byte, 30 ms of a 42 MB
/// model before the first line was parsed.
fn newlines(b: &[u8]) -> usize {
    b.chunks(255)
        .map(|run| usize::from(run.iter().fold(0u8, |n, &c| n + u8::from(c == b'\n'))))
        .sum()
}

/// Lexes the lines of `src` that start before `to`, from `i`, a line
/// start, into `out`; the last may run past `to`. `style` is the first
/// indentation character seen, and where. Returns where the next line
/// would start.
fn lex(
    src: &str,
    mut i: usize,
    to: usize,
    style: &mut Option<(u8, usize)>,
    diags: &mut Vec<Diagnostic>,
    out: &mut Vec<Line>,
) -> usize {
    let b = src.as_bytes();
    // Open brackets of the line at hand, reused from line to line.
    let mut stack: Vec<(u8, usize)> = Vec::new();
    while i < to {
        // Indentation.
        let indent_start = i;
        while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\x0C') {
            i += 1;
        }
        let indent = indent_start..i;
        if i >= b.len() {
            break;
        }
        match b[i] {
            b'\n' | b'\r' => {
                i += if b[i] == b'\r' && b.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                continue;
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            _ => {}
        }
        let mut broken = false;
        let mut unterminated = false;
        // Tabs and spaces may not be mixed: widths would be ambiguous.
        for (k, &c) in b[indent.clone()].iter().enumerate() {
            let c = if c == b'\x0C' { b' ' } else { c };
            match *style {
                None => *style = Some((c, indent.start + k)),
                Some((s, at)) if s != c => {
                    let (line, _) = line_col(src, at);
                    diags.push(
                        Diagnostic::error(code::E0105, "indentation mixes tabs and spaces")
                            .primary(indent.clone(), "this indentation")
                            .help(format!(
                                "line {line} indents with {}; use one kind throughout \
                                 (four spaces is the convention)",
                                if s == b'\t' { "tabs" } else { "spaces" }
                            )),
                    );
                    broken = true;
                    break;
                }
                _ => {}
            }
        }
        let start = i;
        stack.clear();
        let mut deep_reported = false;
        loop {
            // Most bytes (names, numbers, operators, blanks) mean nothing
            // here: runs of them are skipped by a table look-up each.
            while i < b.len() && !SPECIAL[usize::from(b[i])] {
                i += 1;
            }
            if i >= b.len() {
                break;
            }
            let c = b[i];
            match c {
                b'\n' | b'\r' if stack.is_empty() => break,
                b'\\' if matches!(b.get(i + 1), Some(b'\n' | b'\r')) => {
                    i += 2;
                    if b[i - 1] == b'\r' && b.get(i) == Some(&b'\n') {
                        i += 1;
                    }
                }
                b'#' => {
                    while i < b.len() && b[i] != b'\n' && b[i] != b'\r' {
                        i += 1;
                    }
                }
                b'(' | b'[' | b'{' => {
                    stack.push((c, i));
                    if stack.len() > MAX_BRACKET_DEPTH && !deep_reported {
                        deep_reported = true;
                        broken = true;
                        diags.push(
                            Diagnostic::error(code::E0106, "brackets nest too deeply")
                                .primary(
                                    i..i + 1,
                                    format!("more than {MAX_BRACKET_DEPTH} open brackets here"),
                                )
                                .help("split the expression with intermediate variables"),
                        );
                    }
                    i += 1;
                }
                b')' | b']' | b'}' => {
                    let want = match c {
                        b')' => b'(',
                        b']' => b'[',
                        _ => b'{',
                    };
                    match stack.pop() {
                        Some((open, _)) if open == want => {}
                        Some((open, at)) => {
                            broken = true;
                            diags.push(
                                Diagnostic::error(
                                    code::E0104,
                                    format!("`{}` closes `{}`", c as char, open as char),
                                )
                                .primary(i..i + 1, "mismatched closing bracket")
                                .secondary(at..at + 1, "this bracket was opened here")
                                .help(format!("close it with `{}`", closer(open) as char)),
                            );
                        }
                        None => {
                            broken = true;
                            diags.push(
                                Diagnostic::error(
                                    code::E0104,
                                    format!("unmatched closing `{}`", c as char),
                                )
                                .primary(i..i + 1, "nothing to close here")
                                .help("remove it, or add the opening bracket it belongs to"),
                            );
                        }
                    }
                    i += 1;
                }
                b'\'' | b'"' => match skip_string(b, i) {
                    Ok(next) => i = next,
                    Err(next) => {
                        broken = true;
                        unterminated = true;
                        let triple = b.get(i + 1) == Some(&c) && b.get(i + 2) == Some(&c);
                        diags.push(
                            Diagnostic::error(code::E0103, "unterminated string")
                                .primary(
                                    i..(i + if triple { 3 } else { 1 }),
                                    "this string is never closed",
                                )
                                .help(if triple {
                                    format!(
                                        "close it with {}",
                                        if c == b'"' { "\"\"\"" } else { "'''" }
                                    )
                                } else {
                                    format!(
                                        "close it with {} before the end of the line",
                                        c as char
                                    )
                                }),
                        );
                        i = next;
                        if next >= b.len() {
                            break;
                        }
                    }
                },
                _ => i += 1,
            }
        }
        // An unterminated string swallows the rest of the line, closers
        // included; one error for it is enough.
        if let Some(&(open, at)) = stack.first().filter(|_| !unterminated) {
            broken = true;
            // The innermost unclosed bracket is the likely culprit.
            let (open, at) = stack.last().copied().unwrap_or((open, at));
            diags.push(
                Diagnostic::error(code::E0104, format!("`{}` is never closed", open as char))
                    .primary(at..at + 1, "this bracket is never closed")
                    .help(format!(
                        "add `{}` where the expression ends",
                        closer(open) as char
                    )),
            );
        }
        let mut end = i;
        // Trim trailing blanks (and a stray \r) so spans end at the content.
        while end > start && matches!(b[end - 1], b' ' | b'\t' | b'\r' | b'\x0C') {
            end -= 1;
        }
        out.push(Line::new(indent.start, start, end, broken));
    }
    i
}

/// The bytes the line splitter must look at: line ends, backslashes,
/// comments, brackets and quotes.
const SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    let special = b"\n\r\\#([{)]}'\"";
    let mut k = 0;
    while k < special.len() {
        t[special[k] as usize] = true;
        k += 1;
    }
    t
};

fn closer(open: u8) -> u8 {
    match open {
        b'(' => b')',
        b'[' => b']',
        _ => b'}',
    }
}

/// Skips a string starting at the quote `b[i]`: the one string scanner,
/// used by the lexer, the fast path and the parser's comment and f-string
/// scans. Returns the index after the
/// closing quote, or `Err(index to resume at)` when the string is unterminated.
pub fn skip_string(b: &[u8], i: usize) -> Result<usize, usize> {
    let q = b[i];
    let triple = b.get(i + 1) == Some(&q) && b.get(i + 2) == Some(&q);
    let mut j = if triple { i + 3 } else { i + 1 };
    while j < b.len() {
        let c = b[j];
        if c == b'\\' {
            j += 2;
            continue;
        }
        if triple {
            if c == q && b.get(j + 1) == Some(&q) && b.get(j + 2) == Some(&q) {
                return Ok(j + 3);
            }
        } else if c == q {
            return Ok(j + 1);
        } else if c == b'\n' || c == b'\r' {
            return Err(j);
        }
        j += 1;
    }
    Err(b.len())
}

/// 1-based line and column of a byte offset.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let before = &src.as_bytes()[..offset.min(src.len())];
    let line = before.iter().filter(|&&c| c == b'\n').count() + 1;
    let col = offset
        - before
            .iter()
            .rposition(|&c| c == b'\n')
            .map_or(0, |p| p + 1)
        + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Newlines are counted as a plain count does, across the 255-byte
    /// runs and at their edges.
    #[test]
    fn newlines_are_counted_exactly() {
        let mut text = Vec::new();
        for i in 0..2000usize {
            text.push(if i % 7 == 0 || i % 255 == 254 {
                b'\n'
            } else {
                b'x'
            });
            let want = text.iter().filter(|&&c| c == b'\n').count();
            assert_eq!(newlines(&text), want, "{i}");
        }
        assert_eq!(newlines(&[b'\n'; 1000]), 1000);
        assert_eq!(newlines(b""), 0);
    }

    fn split(src: &str) -> (Vec<String>, Vec<&'static str>) {
        let mut d = Vec::new();
        let ls = lines(src, &mut d);
        (
            ls.iter()
                .map(|l| src[l.start()..l.end()].to_string())
                .collect(),
            d.iter().map(|d| d.code).collect(),
        )
    }

    #[test]
    fn joins_bracketed_lines_and_drops_blank_ones() {
        let (l, d) = split("a = [1,\n  2]  # c\n\n   # only comment\nb = 'x'\\\n  + 'y'\n");
        assert_eq!(l, vec!["a = [1,\n  2]  # c", "b = 'x'\\\n  + 'y'"]);
        assert!(d.is_empty());
    }

    #[test]
    fn triple_quoted_strings_span_lines() {
        let (l, d) = split("'''doc\nstring'''\nx = 1\n");
        assert_eq!(l, vec!["'''doc\nstring'''", "x = 1"]);
        assert!(d.is_empty());
    }

    /// Lexed in two halves, a source gives exactly the lines and
    /// diagnostics it gives in one pass, wherever the second half starts:
    /// inside brackets, strings and continued lines, after a change of
    /// indentation character, before an error.
    #[test]
    fn halves_agree_with_one_pass() {
        let sources = [
            "a = [1,\n2]\nb = 2\nc = '''x\ny'''\nd = 3\n",
            "if x:\n\ty = 1\nif z:\n    w = 2\n",
            "if x:\n    y = 1\nif z:\n    w = 2\n\tv = 3\n",
            "x = 1\ny = (2\nz = 'abc\nw = 3)\n",
            "a = 1 + \\\n2\nb = 3\n\n# c\n  # d\ne = {\n'k': 1}\n",
            "x = (\n\n)\ny = \"\"\"a\n\n\"\"\"\nz = 1",
        ];
        for src in sources {
            let mut serial_diags = Vec::new();
            let serial = format!("{:?}", lines_serial(src, &mut serial_diags));
            for split in 1..src.len() {
                if src.as_bytes()[split - 1] != b'\n' {
                    continue;
                }
                let mut diags = Vec::new();
                let halves = format!("{:?}", lines_split_at(src, split, &mut diags));
                assert_eq!(serial, halves, "{src:?} split at {split}");
                assert_eq!(
                    format!("{serial_diags:?}"),
                    format!("{diags:?}"),
                    "{src:?} split at {split}"
                );
            }
        }
        // No split point in sources too small to have a middle.
        for tiny in ["", "\n", "x", "x\ny"] {
            assert!(split_point(tiny).is_none_or(|at| tiny.as_bytes()[at - 1] == b'\n'));
        }
        // A large source is split; the split is a line start.
        let big = "n = net.node('n', proc.cores >= 2)\n".repeat(PARALLEL_FROM / 30);
        let at = split_point(&big).unwrap();
        assert_eq!(big.as_bytes()[at - 1], b'\n');
        let mut d = Vec::new();
        assert_eq!(lines(&big, &mut d).len(), PARALLEL_FROM / 30);
        assert!(d.is_empty());
    }

    #[test]
    fn reports_lexical_errors() {
        assert_eq!(split("x = 'abc\ny = 2\n").1, vec!["E0103"]);
        assert_eq!(split("x = (1, 2\n").1, vec!["E0104"]);
        assert_eq!(split("x = (1, 2]\n").1, vec!["E0104"]);
        assert_eq!(split("x = 1)\n").1, vec!["E0104"]);
        assert_eq!(split("if x:\n\ty = 1\n        z = 2\n").1, vec!["E0105"]);
        assert_eq!(split(&"(".repeat(500)).1, vec!["E0106", "E0104"]);
    }
}
