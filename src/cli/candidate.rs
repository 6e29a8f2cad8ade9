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
    /// Run the candidate in a child process under the run's limits and write its
    /// result whatever its end (how cluster executors run a candidate on a worker).
    #[arg(long)]
    pub supervise: bool,
}

pub fn run(a: &CandidateArgs) -> i32 {
    if a.supervise {
        // Ray stops a job with SIGTERM: the candidate is killed and no result written.
        super::signals::install(None, "the candidate was stopped".into());
        return crate::develop::isolate::supervise(&a.run_dir, &a.request);
    }
    crate::develop::isolate::run_candidate(&a.run_dir, &a.request)
}
