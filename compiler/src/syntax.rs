//! The language's words and operators, defined once.
//!
//! Two parsers read `.mx` lines: the hand-written fast path ([`crate::fast`])
//! for the plain lines generated models are made of, and the pest grammar
//! (`mx-grammar`) for everything else and for every diagnostic. Both take
//! their keywords and their operator precedence from the tables here: the
//! fast path looks operators up by text, the Pratt parser over pest's output
//! is built from the same table ([`crate::parser`]), and tests check the
//! tables against the grammar file (`grammar_agrees_with_the_tables`) and the
//! two parsers against each other on random expressions.
//!
//! To add an operator: a row in [`INFIX`] or [`PREFIX`], its rule in
//! `mx.pest`'s `infix`/`prefix`, and its meaning in the evaluator.

use crate::ast::{BinOp, CmpOp, UnOp};
use mx_grammar::Rule;

/// What an infix operator builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Infix {
    Or,
    And,
    /// A comparison; chains (`a < b <= c`) extend one `Compare`.
    Cmp(CmpOp),
    Bin(BinOp),
}

/// An infix operator: its source text (words separated by one space), its
/// binding power (higher binds tighter), what it builds and its grammar rule.
#[derive(Clone, Copy, Debug)]
pub struct InfixOp {
    pub text: &'static str,
    pub prec: u8,
    pub op: Infix,
    pub rule: Rule,
}

impl InfixOp {
    /// Only `**` groups to the right (`2 ** 3 ** 2` is `2 ** 9`).
    pub fn right_assoc(&self) -> bool {
        self.op == Infix::Bin(BinOp::Pow)
    }
}

/// A prefix operator, like [`InfixOp`].
#[derive(Clone, Copy, Debug)]
pub struct PrefixOp {
    pub text: &'static str,
    pub prec: u8,
    pub op: UnOp,
    pub rule: Rule,
}

/// Declares [`INFIX`] and [`infix`] from one list, so the lookup the fast
/// path runs for every operand is a compiled `match`, not a table scan.
macro_rules! infix_operators {
    ($($text:literal $prec:literal $op:expr => $rule:ident,)*) => {
        /// Python's binary operators, loosest first.
        pub const INFIX: &[InfixOp] = &[$(InfixOp { text: $text, prec: $prec, op: $op, rule: Rule::$rule }),*];

        /// The infix operator spelt `text` (`"not in"` with one space).
        pub fn infix(text: &str) -> Option<InfixOp> {
            match text {
                $($text => Some(InfixOp { text: $text, prec: $prec, op: $op, rule: Rule::$rule }),)*
                _ => None,
            }
        }
    };
}

infix_operators! {
    "or" 1 Infix::Or => or,
    "and" 2 Infix::And => and,
    // `not` (prefix) sits at 3.
    "==" 4 Infix::Cmp(CmpOp::Eq) => eq,
    "!=" 4 Infix::Cmp(CmpOp::Ne) => ne,
    "<" 4 Infix::Cmp(CmpOp::Lt) => lt,
    "<=" 4 Infix::Cmp(CmpOp::Le) => le,
    ">" 4 Infix::Cmp(CmpOp::Gt) => gt,
    ">=" 4 Infix::Cmp(CmpOp::Ge) => ge,
    "in" 4 Infix::Cmp(CmpOp::In) => in_,
    "not in" 4 Infix::Cmp(CmpOp::NotIn) => not_in,
    "is" 4 Infix::Cmp(CmpOp::Is) => is,
    "is not" 4 Infix::Cmp(CmpOp::IsNot) => is_not,
    "|" 5 Infix::Bin(BinOp::BitOr) => bit_or,
    "^" 6 Infix::Bin(BinOp::BitXor) => bit_xor,
    "&" 7 Infix::Bin(BinOp::BitAnd) => bit_and,
    "<<" 8 Infix::Bin(BinOp::Shl) => shl,
    ">>" 8 Infix::Bin(BinOp::Shr) => shr,
    "+" 9 Infix::Bin(BinOp::Add) => add,
    "-" 9 Infix::Bin(BinOp::Sub) => sub,
    "*" 10 Infix::Bin(BinOp::Mul) => mul,
    "/" 10 Infix::Bin(BinOp::Div) => div,
    "//" 10 Infix::Bin(BinOp::FloorDiv) => floordiv,
    "%" 10 Infix::Bin(BinOp::Mod) => rem,
    // Unary minus, plus and inversion sit at 11: `-x ** 2` is `-(x ** 2)`.
    "**" 12 Infix::Bin(BinOp::Pow) => pow,
}

/// The two-word operator `first second` (`not in`, `is not`), without
/// allocating: the fast path asks after every name that follows an operand.
pub fn infix_words(first: &str, second: &str) -> Option<InfixOp> {
    let mut buf = [0u8; 16];
    let n = first.len() + 1 + second.len();
    if n > buf.len() {
        return None;
    }
    buf[..first.len()].copy_from_slice(first.as_bytes());
    buf[first.len()] = b' ';
    buf[first.len() + 1..n].copy_from_slice(second.as_bytes());
    infix(std::str::from_utf8(&buf[..n]).ok()?)
}

/// Prefix operators.
pub const PREFIX: &[PrefixOp] = &[
    PrefixOp {
        text: "not",
        prec: 3,
        op: UnOp::Not,
        rule: Rule::not,
    },
    PrefixOp {
        text: "-",
        prec: 11,
        op: UnOp::Neg,
        rule: Rule::neg,
    },
    PrefixOp {
        text: "+",
        prec: 11,
        op: UnOp::Pos,
        rule: Rule::pos,
    },
    PrefixOp {
        text: "~",
        prec: 11,
        op: UnOp::Inv,
        rule: Rule::inv,
    },
];

/// Calls, subscripts and attributes bind tighter than any operator.
pub const POSTFIX_PREC: u8 = 13;

/// Postfix rules of the grammar, all at [`POSTFIX_PREC`].
pub const POSTFIX: &[Rule] = &[Rule::call, Rule::subscript, Rule::attribute];

/// The infix operator a grammar rule stands for.
pub fn infix_rule(rule: Rule) -> Option<&'static InfixOp> {
    INFIX.iter().find(|o| o.rule == rule)
}

/// The prefix operator a grammar rule stands for.
pub fn prefix_rule(rule: Rule) -> Option<&'static PrefixOp> {
    PREFIX.iter().find(|o| o.rule == rule)
}

/// A word of two to eight bytes as one integer, its bytes in order.
const fn packed(b: &[u8]) -> u64 {
    let mut v = 0u64;
    let mut i = 0;
    while i < b.len() {
        v |= (b[i] as u64) << (8 * i);
        i += 1;
    }
    v
}

/// Slots of [`KEYWORD_TABLE`]: 128 for 35 keywords, so a multiplier that
/// spreads them is found in a few hundred tries.
const KEYWORD_BITS: u32 = 7;

const fn keyword_slot(word: u64, magic: u64) -> usize {
    (word.wrapping_mul(magic) >> (64 - KEYWORD_BITS)) as usize
}

/// Every keyword at its own slot, as (packed bytes, length), under a
/// multiplier found when the compiler is built: a perfect hash, so the
/// check the fast path makes for every name is one multiplication and one
/// comparison (a `match` on the text compared it with `memcmp` against
/// each keyword of its length: 3% of parsing a generated model).
const KEYWORD_TABLE: (u64, [(u64, u8); 1 << KEYWORD_BITS]) = {
    let mut magic: u64 = 0x9E37_79B9_7F4A_7C15;
    loop {
        let mut table = [(0u64, 0u8); 1 << KEYWORD_BITS];
        let mut ok = true;
        let mut k = 0;
        while ok && k < KEYWORDS.len() {
            let b = KEYWORDS[k].as_bytes();
            assert!(b.len() >= 2 && b.len() <= 8, "keywords are 2 to 8 bytes");
            let w = packed(b);
            let slot = keyword_slot(w, magic);
            ok = table[slot].1 == 0;
            table[slot] = (w, b.len() as u8);
            k += 1;
        }
        if ok {
            break (magic, table);
        }
        magic = magic
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407)
            | 1;
    }
};

/// Whether `w` is reserved.
#[inline]
pub fn is_keyword(w: &str) -> bool {
    let b = w.as_bytes();
    if b.len() < 2 || b.len() > 8 {
        return false;
    }
    let mut buf = [0u8; 8];
    buf[..b.len()].copy_from_slice(b);
    let word = u64::from_le_bytes(buf);
    let (magic, table) = &KEYWORD_TABLE;
    table[keyword_slot(word, *magic)] == (word, b.len() as u8)
}

/// Words that cannot name anything: Python's keywords, since models are
/// Python (MergeTB's are run by CPython), including those mx does not
/// support. [`is_keyword`] checks against this list.
pub const KEYWORDS: &[&str] = &[
    "and", "as", "assert", "async", "await", "break", "class", "continue", "def", "del", "elif",
    "else", "except", "finally", "for", "from", "global", "if", "import", "in", "is", "lambda",
    "nonlocal", "not", "or", "pass", "raise", "return", "try", "while", "with", "yield", "None",
    "True", "False",
];

/// Python statements mx does not run; a line starting with one gets "not
/// supported" instead of a bare syntax error.
pub const UNSUPPORTED: &[&str] = &[
    "class", "try", "except", "finally", "with", "raise", "yield", "async", "await", "nonlocal",
];

/// Words that start a block header (a line ending in `:` with a body
/// below), supported or not: a broken header's body is skipped quietly.
pub const BLOCK_HEADERS: &[&str] = &[
    "if", "elif", "else", "for", "while", "def", "class", "try", "except", "finally", "with",
];

/// Keywords that may follow a complete value on a line (`a and b`,
/// `x if c else y`, `[i for i in v]`): after a value they do not suggest a
/// missing comma.
pub const CONTINUES_EXPR: &[&str] = &[
    "and", "or", "not", "in", "is", "if", "else", "for", "lambda",
];

/// The first word of `text` (letters, digits, `_`).
pub fn first_word(text: &str) -> &str {
    text.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .next()
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use mx_grammar::MxParser;
    use pest::Parser;

    fn grammar() -> String {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../grammar/src/mx.pest");
        std::fs::read_to_string(path).expect("the grammar file")
    }

    /// The rule names a `name = _{ ... ~ (a | b | c) }` alternation lists.
    fn alternatives(grammar: &str, rule: &str) -> Vec<String> {
        let start = grammar
            .find(&format!("\n{rule} "))
            .unwrap_or_else(|| panic!("rule {rule} in mx.pest"));
        let body = &grammar[start..];
        let body = &body[..body.find('}').expect("rule end")];
        let alts = &body[body.rfind('~').expect("a lookahead then the alternatives") + 1..];
        alts.split('|')
            .map(|a| {
                a.trim()
                    .trim_matches(|c| c == '(' || c == ')')
                    .trim()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn grammar_agrees_with_the_tables() {
        let g = grammar();
        let mut pest_infix = alternatives(&g, "infix");
        let mut ours: Vec<String> = INFIX.iter().map(|o| format!("{:?}", o.rule)).collect();
        pest_infix.sort();
        ours.sort();
        assert_eq!(pest_infix, ours, "mx.pest's infix rule and syntax::INFIX");
        let mut pest_prefix = alternatives(&g, "prefix");
        let mut ours: Vec<String> = PREFIX.iter().map(|o| format!("{:?}", o.rule)).collect();
        pest_prefix.sort();
        ours.sort();
        assert_eq!(
            pest_prefix, ours,
            "mx.pest's prefix rule and syntax::PREFIX"
        );
        let mut pest_postfix = alternatives(&g, "postfix");
        let mut ours: Vec<String> = POSTFIX.iter().map(|r| format!("{r:?}")).collect();
        pest_postfix.sort();
        ours.sort();
        assert_eq!(
            pest_postfix, ours,
            "mx.pest's postfix rule and syntax::POSTFIX"
        );
    }

    /// Each operator's text parses, in the grammar, to its own rule.
    #[test]
    fn every_operator_is_spelt_as_the_grammar_spells_it() {
        for o in INFIX {
            let text = format!("a {} b", o.text);
            let pairs =
                MxParser::parse(Rule::fexpr, &text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let found = pairs.flatten().any(|p| {
                p.as_rule() == o.rule && p.as_str().split_whitespace().eq(o.text.split(' '))
            });
            assert!(found, "`{text}` does not parse to {:?}", o.rule);
        }
        for o in PREFIX {
            let text = format!("{} a", o.text);
            let pairs =
                MxParser::parse(Rule::fexpr, &text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert!(
                pairs.flatten().any(|p| p.as_rule() == o.rule),
                "`{text}` does not parse to {:?}",
                o.rule
            );
        }
    }

    /// [`is_keyword`]'s hash answers as the list does: for every keyword,
    /// every word of up to three bytes from letters, NUL and the keywords'
    /// first bytes, and each keyword cut, padded with NUL or extended.
    #[test]
    fn the_keyword_hash_is_the_list() {
        let mut words: Vec<String> = Vec::new();
        for k in KEYWORDS {
            for cut in 0..=k.len() {
                words.push(k[..cut].to_string());
            }
            words.push(format!("{k}\0"));
            words.push(format!("{k}s"));
            words.push(format!("\0{k}"));
            words.push(k.to_lowercase());
        }
        let bytes: Vec<char> = "\0aeinosdfrtwyNTFz_".chars().collect();
        for a in &bytes {
            words.push(a.to_string());
            for b in &bytes {
                words.push(format!("{a}{b}"));
                for c in &bytes {
                    words.push(format!("{a}{b}{c}"));
                }
            }
        }
        for w in &words {
            assert_eq!(is_keyword(w), KEYWORDS.contains(&w.as_str()), "{w:?}");
        }
        assert_eq!(KEYWORDS.iter().filter(|k| is_keyword(k)).count(), 35);
    }

    /// The grammar reserves exactly [`KEYWORDS`]: checked word by word on
    /// every keyword, near misses, and every name in the corpus.
    #[test]
    fn the_grammar_reserves_exactly_the_keywords() {
        let mut words: Vec<String> = Vec::new();
        for k in KEYWORDS {
            words.push(k.to_string());
            words.push(format!("{k}_"));
            words.push(format!("{k}1"));
            words.push(k.to_uppercase());
            words.push(k[..k.len() - 1].to_string());
        }
        for w in [
            "match",
            "case",
            "type",
            "print",
            "self",
            "exec",
            "nonlocals",
            "none",
            "true",
        ] {
            words.push(w.to_string());
        }
        for w in words.iter().filter(|w| !w.is_empty()) {
            let reserved = MxParser::parse(Rule::ident, w).map_or(true, |p| p.as_str() != w);
            assert_eq!(
                reserved,
                is_keyword(w),
                "`{w}`: grammar and syntax::KEYWORDS disagree"
            );
        }
        for w in UNSUPPORTED.iter().chain(CONTINUES_EXPR) {
            assert!(is_keyword(w), "`{w}` must be a keyword");
        }
    }
}
