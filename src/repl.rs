//! The REPL (being written).

/// Runs the interactive REPL on a terminal; returns the exit code.
pub fn run_terminal(_seed: u64, _files: &[String]) -> i32 {
    eprintln!("the REPL is not built yet");
    1
}
