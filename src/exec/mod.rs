//! Running compiled merges: the host side of the kernel plan, and the selection
//! library (top-k cut points, quantiles, ranks) it calls between stages. Plans are
//! made by [`crate::pipeline`].

pub mod run;
pub mod select;
pub mod topk;
