//! The merge runtime's I/O: reading and writing checkpoints.
//!
//! `safetensors` reads a bare `.safetensors` file or a Hugging Face model
//! directory (single file or sharded with an index), memory-mapped, and turns
//! any stored tensor of F32, F16 or BF16 into f32. The REPL's `load` uses it.

pub mod safetensors;
