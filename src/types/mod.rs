//! The type and shape checker: builtin table, symbolic shapes, diagnostics.

mod budget;
mod builtin_rules;
pub mod builtins;
mod calls;
mod check;
pub mod cost;
mod literals;
mod loops;
pub mod ops;
mod program;
mod repl_calls;
mod size;
mod suggest;
pub mod tast;
pub mod ty;
mod user_calls;
mod visit;
pub use visit::models_read;

pub use check::LoadShapeFn;
pub use program::{
    CHECKED_RANKS, CheckedMerge, Const, MergeParam, MergeSig, check_program, check_repl_expr,
    const_value, instantiate_merge,
};
pub use suggest::did_you_mean;

/// How the checker says a call lacks a required argument (`` `f` is missing its
/// argument `x` ``).
pub(crate) const MISSING_ARGUMENT: &str = "is missing its argument";
/// How the checker says a list literal is empty.
pub(crate) const EMPTY_LIST: &str = "empty list";

/// Whether a checker error is one that more text before its call's or list's closing
/// bracket would mend: a missing argument, an empty list. (Guided decoding refuses the
/// bracket then, rather than redoing the group.)
pub fn wants_more(d: &crate::diag::Diagnostic) -> bool {
    d.message == EMPTY_LIST || d.message.contains(MISSING_ARGUMENT)
}

/// Parses and checks a program, returning its AST and merge signatures.
pub fn check_source(
    src: &str,
) -> Result<(crate::syntax::ast::Program, Vec<MergeSig>), Vec<crate::diag::Diagnostic>> {
    // A fresh stack segment bounds the front end's recursion whatever the caller's stack.
    stacker::maybe_grow(1024 * 1024, 32 * 1024 * 1024, || {
        let program = crate::syntax::parse_program(src)?;
        let sigs = check_program(&program)?;
        Ok((program, sigs))
    })
}
