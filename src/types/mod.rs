//! The type and shape checker: builtin table, symbolic shapes, diagnostics.

mod budget;
pub mod builtins;
mod calls;
mod check;
pub mod cost;
mod loops;
pub mod ops;
mod program;
mod repl_calls;
mod size;
mod suggest;
pub mod tast;
pub mod ty;
mod user_calls;

pub use check::LoadShapeFn;
pub use program::{
    CHECKED_RANKS, CheckedMerge, Const, MergeParam, MergeSig, check_program, check_repl_expr,
    const_value, instantiate_merge,
};
pub use suggest::did_you_mean;
