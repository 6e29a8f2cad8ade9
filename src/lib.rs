//! mergec: a typed language, checker, interpreter and (later) compiler for
//! merging LLM checkpoints. See README.md and docs/language.md.

// Diagnostics are rich (spans, hints, notes, related places) and only travel on
// the error path; boxing them everywhere would add noise, not speed.
#![allow(clippy::result_large_err)]

pub mod cancel;
pub mod card;
pub mod cli;
pub mod codegen;
pub mod config;
pub mod develop;
pub mod diag;
pub mod eval;
pub mod exec;
pub mod files;
pub mod r#gen;
pub mod interp;
pub mod ir;
pub mod model;
pub mod passes;
pub mod pipeline;
pub mod prefix;
pub mod repl;
pub mod runtime;
pub mod semantics;
pub mod show;
pub mod stdlib;
pub mod syntax;
pub mod types;
pub mod zoo;

pub use types::check_source;

/// The layers of `src/`, bottom to top, each a list of top-level modules (a folder
/// `src/NAME/` or a file `src/NAME.rs`). A module may import only the modules listed
/// before it, its own layer's included, so no folder-level cycle can appear;
/// `tests/layers.rs` checks every `crate::` path of every source file against this
/// order.
pub const LAYERS: &[(&str, &[&str])] = &[
    ("foundations", &["cancel", "diag", "semantics"]),
    (
        "the language",
        &[
            "syntax", "types", "files", "stdlib", "card", "gen", "prefix",
        ],
    ),
    (
        "interpreter and compiler",
        &[
            "interp", "ir", "passes", "codegen", "exec", "pipeline", "show",
        ],
    ),
    ("runtime", &["runtime", "config"]),
    ("the LLM side", &["model", "eval", "zoo"]),
    ("the loop and the REPL", &["develop", "repl"]),
    ("the command line", &["cli"]),
];
