//! `mergec candidate`: merges and scores one candidate of a `develop` run in this
//! process (the driver starts one per program; see `develop::isolate`).

use std::path::PathBuf;

#[derive(clap::Args, Debug, Clone)]
pub struct CandidateArgs {
    /// The run directory (its `config.toml` holds the run's settings).
    #[arg(long)]
    pub run_dir: PathBuf,
    /// The request (JSON: program, parameters, output directory, problems); the
    /// result is written beside it as `result.json`.
    #[arg(long)]
    pub request: PathBuf,
}

pub fn run(a: &CandidateArgs) -> i32 {
    crate::develop::isolate::run_candidate(&a.run_dir, &a.request)
}
