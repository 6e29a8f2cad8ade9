//! Subcommand implementations behind the thin `main.rs`.

pub mod candidate;
pub mod check;
pub mod compile;
pub mod develop;
pub mod docs;
pub mod eval;
pub mod extract_lora;
pub mod generate;
pub mod grammar;
pub mod merge;
pub mod mergekit_flags;
pub mod methods;
pub mod run;
pub mod signals;
pub mod synth;
pub mod zoo;
