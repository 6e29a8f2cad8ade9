//! mergec: a typed language, checker, interpreter and (later) compiler for
//! merging LLM checkpoints. See README.md and docs/language.md.

// Diagnostics are rich (spans, hints, notes, related places) and only travel on
// the error path; boxing them everywhere would add noise, not speed.
#![allow(clippy::result_large_err)]

pub mod cancel;
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
pub mod repl;
pub mod runtime;
pub mod show;
pub mod stdlib;
pub mod syntax;
pub mod types;
pub mod zoo;

use diag::Diagnostic;
use syntax::ast::Program;
use types::MergeSig;

/// Parses and checks a program, returning its AST and merge signatures.
pub fn check_source(src: &str) -> Result<(Program, Vec<MergeSig>), Vec<Diagnostic>> {
    // A fresh stack segment bounds the front end's recursion whatever the caller's stack.
    stacker::maybe_grow(1024 * 1024, 32 * 1024 * 1024, || {
        let program = syntax::parse_program(src)?;
        let sigs = types::check_program(&program)?;
        Ok((program, sigs))
    })
}
