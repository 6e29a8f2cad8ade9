//! mergekit YAML configurations (being written).

use crate::cli::merge::MergeArgs;
use crate::runtime::MergeJob;

/// A merge job from a mergekit-style YAML file and the command line's --out and flags.
pub fn job_from_config(a: &MergeArgs) -> Result<MergeJob, String> {
    Err(format!(
        "`{}`: mergekit configs are not supported yet",
        a.program
    ))
}
