//! Parsing: source text to a spanned AST. Pest types never leave this module.

pub mod ast;
mod errors;
mod invisible;
pub mod limits;
pub(crate) mod parse;
pub mod print;

pub use parse::{parse_expr, parse_let, parse_program};
