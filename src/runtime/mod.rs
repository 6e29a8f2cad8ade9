//! The merge runtime: reading checkpoints, planning, streaming tensors through
//! a checked program, and writing Hugging Face output atomically.
//!
//! `safetensors` reads a bare `.safetensors` file or a Hugging Face model
//! directory (single file or sharded with an index), memory-mapped, and turns
//! any stored tensor of F32, F16 or BF16 into f32. The REPL's `load` uses it.

mod arch;
pub mod child;
pub mod compiled;
mod content;
mod digest_cache;
mod error;
pub mod gguf;
pub mod hub;
pub mod lora;
pub mod merge;
mod model_card;
mod out_target;
mod output;
pub mod plan;
pub mod safetensors;
mod shard;
mod sink;
pub mod stack;
pub mod stale;
pub mod synth;

pub use error::MergeError;
pub use gguf::{GgufSummary, GgufType, OutputFormat};
pub use merge::{CANCELLED, FixedParams, MergeJob, MergeSummary, ParamSource, run};
pub use output::remove_temporaries;
pub use sink::WriteMode;
