//! Rule-level tests of the grammar: what each rule accepts and rejects, and
//! the token trees the compiler relies on.

use mx_grammar::{MxParser, Rule};
use pest::{Parser, consumes_to, fails_with, parses_to};

fn accepts(rule: Rule, text: &str) -> bool {
    MxParser::parse(rule, text).is_ok_and(|mut p| p.next().is_some_and(|p| p.as_str() == text))
}

#[test]
fn identifiers_exclude_keywords_and_string_prefixes() {
    parses_to! { parser: MxParser, input: "net", rule: Rule::ident, tokens: [ident(0, 3)] };
    parses_to! { parser: MxParser, input: "iffy", rule: Rule::ident, tokens: [ident(0, 4)] };
    fails_with! { parser: MxParser, input: "if", rule: Rule::ident,
    positives: vec![Rule::ident], negatives: vec![], pos: 0 };
    for kw in [
        "and", "as", "assert", "def", "del", "elif", "else", "for", "from", "in", "is", "lambda",
        "not", "or", "None", "True", "False",
    ] {
        assert!(!accepts(Rule::ident, kw), "{kw} must not be an identifier");
    }
    // `f'...'` is a string, not the name `f` followed by a string.
    assert!(
        MxParser::parse(Rule::ident, "f'x'").is_err(),
        "a prefix directly before a quote is not a name"
    );
    assert!(accepts(Rule::expr, "f'n{i}'"));
}

#[test]
fn numbers() {
    for ok in [
        "0", "42", "1_000", "0x1F", "0o17", "0b101", "1.5", ".5", "1e9", "2.5E-3",
    ] {
        assert!(accepts(Rule::number, ok), "{ok}");
    }
    assert!(!accepts(Rule::number, "1x"));
}

#[test]
fn strings() {
    for ok in [
        "'a'",
        "\"a\"",
        "'''a\nb'''",
        "\"\"\"doc\"\"\"",
        "r'\\d'",
        "f'{x}'",
        "'it\\'s'",
    ] {
        assert!(accepts(Rule::strings, ok), "{ok}");
    }
    assert!(
        accepts(Rule::strings, "'a' 'b'"),
        "adjacent strings concatenate"
    );
}

#[test]
fn operations_are_flat() {
    let pairs = MxParser::parse(Rule::operation, "a + b").expect("parses");
    let rules: Vec<Rule> = pairs.flatten().map(|p| p.as_rule()).collect();
    assert_eq!(
        rules,
        [Rule::operation, Rule::ident, Rule::add, Rule::ident]
    );
    assert!(accepts(Rule::operation, "a not in b"));
    assert!(accepts(Rule::operation, "a is not None"));
    assert!(accepts(
        Rule::operation,
        "-x ** 2 // 3 % 4 << 1 | 2 & 3 ^ 4"
    ));
}

#[test]
fn calls_arguments_and_generators() {
    assert!(accepts(
        Rule::expr,
        "net.node('a', cores == 4, memory == gb(8))"
    ));
    assert!(accepts(Rule::expr, "f(*args, key=1, **kw)"));
    assert!(accepts(Rule::expr, "sum(x for x in range(3))"));
    assert!(accepts(Rule::expr, "sorted(xs, key=lambda v: -v)"));
    assert!(accepts(Rule::expr, "xs[1:-1:2]"));
}

#[test]
fn displays_and_comprehensions() {
    for ok in [
        "[]",
        "[1, 2,]",
        "[x for x in y if x]",
        "[(a, b) for a in x for b in y]",
        "()",
        "(1,)",
        "(x for x in y)",
        "{}",
        "{'a': 1, **d}",
        "{k: v for k, v in d.items()}",
    ] {
        assert!(accepts(Rule::expr, ok), "{ok}");
    }
}

#[test]
fn lines() {
    for ok in [
        "x = y = 1",
        "a, *b = c",
        "x += 1",
        "x: int = 1",
        "for i, n in enumerate(nodes):",
        "if x: y = 1",
        "def f(a, b=1, *c, d, **e) -> None:",
        "from mergexp import *",
        "import a.b as c, d",
        "return",
        "pass; x = 1",
        "link[a].socket.addrs = ip4('10.0.0.1/24')",
    ] {
        assert!(accepts(Rule::line, ok), "{ok}");
    }
    for bad in ["for i in range(3)", "x = = 1", "def f(:", "class A:"] {
        assert!(!accepts(Rule::line, bad), "{bad} must not parse");
    }
}

#[test]
fn comments_and_continuations_are_whitespace() {
    assert!(accepts(Rule::line, "x = 1  # one"));
    assert!(accepts(Rule::line, "x = (1 +\n     2)"));
    assert!(accepts(Rule::line, "x = 1 + \\\n    2"));
}
