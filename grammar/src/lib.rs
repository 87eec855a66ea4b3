//! The pest grammar of the `.mx` language, one logical line at a time.
//!
//! The compiler's lexer splits a model into logical lines and tracks
//! indentation; this crate only knows what a single line may contain. Keeping
//! the grammar line-sized means one mistake never hides the next: every line is
//! parsed, and every bad line reported. See `GRAMMAR.md` for the walk-through.
//!
//! ```
//! use mx_grammar::{MxParser, Rule};
//! use pest::Parser;
//! assert!(MxParser::parse(Rule::line, "x = topo.device('x', cores == 4)").is_ok());
//! assert!(MxParser::parse(Rule::line, "x = topo.device('x' cores == 4)").is_err());
//! ```

#![allow(missing_docs)] // pest_derive generates the undocumented `Rule` enum.

/// The derived parser; `Rule` has one variant per grammar rule.
#[derive(pest_derive::Parser)]
#[grammar = "src/mx.pest"]
pub struct MxParser;
