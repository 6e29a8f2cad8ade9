//! The compiler's intermediate forms: the graph IR lowered from checked programs,
//! and the kernel form every backend executes.

pub mod graph;
pub mod kernel;
pub mod lower;
mod lower_lists;
mod lower_ops;
pub mod plan;
pub mod reference;
