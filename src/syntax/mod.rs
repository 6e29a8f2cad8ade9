//! Parsing: source text to a spanned AST. Pest types never leave this module.

pub mod ast;
mod detail;
mod errors;
mod invisible;
pub mod limits;
pub(crate) mod parse;
pub mod print;

pub use parse::{parse_expr, parse_let, parse_program};
pub mod forms;

/// Whether pest's grammar alone (`program`, without the size limits and the other rules
/// `parse_program` adds) accepts `src`: the reference the derived grammars are tested against.
pub fn grammar_accepts(src: &str) -> bool {
    use pest::Parser;
    // Only whether it parses: no error detail needed.
    detail::with_detail(false, || {
        parse::MergeParser::parse(parse::Rule::program, src)
    })
    .is_ok()
}
