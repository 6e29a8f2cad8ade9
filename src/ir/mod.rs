//! The compiler's intermediate forms: the graph IR lowered from checked programs,
//! and the kernel form every backend executes.

pub mod kernel;
pub mod reference;
