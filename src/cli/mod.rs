//! Subcommand implementations behind the thin `main.rs`.

pub mod candidate;
pub mod check;
pub mod compile;
pub mod develop;
pub mod docs;
pub mod eval;
pub mod generate;
pub mod merge;
pub mod methods;
pub mod run;
pub mod signals;
pub mod synth;
pub mod zoo;

/// Whether to colour diagnostics: only on a terminal, and never with NO_COLOR.
pub fn use_color() -> bool {
    use std::io::IsTerminal;
    std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal()
}

/// Reads a program file (a regular file, at most the language's source limit), with a
/// message that says what went wrong.
pub fn read_program(path: &str) -> Result<String, String> {
    use crate::files;
    files::read_text(
        std::path::Path::new(path),
        "a program file",
        files::limit::PROGRAM,
    )
}
