//! Why a merge job failed, by cause: the command line renders it once, and callers
//! that retry or record (the develop loop) can tell a stop from a broken program.

use super::safetensors;
use crate::cancel::Stop;
use crate::codegen::BackendError;

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// The job does not fit its inputs: no models, overlapping paths, checkpoints that
    /// do not match, a rank the program cannot merge, a parameter it cannot take.
    #[error("{0}")]
    Job(String),
    /// An input checkpoint cannot be read.
    #[error(transparent)]
    Input(#[from] safetensors::Error),
    /// The chosen engine cannot run here.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// A tensor's merge failed: the program's runtime error, or a non-finite or
    /// overflowing result.
    #[error("{0}")]
    Tensor(String),
    /// The merge cannot be written as GGUF (found before any tensor is merged), or
    /// converting it failed.
    #[error("--out-format gguf: {0}")]
    Gguf(super::gguf::GgufError),
    /// The output directory could not be prepared, written or moved into place.
    #[error("{0}")]
    Output(String),
    /// Interrupted, or over the time limit: nothing was written.
    #[error("{0}: nothing was written to the output")]
    Stopped(Stop),
}

impl From<super::gguf::GgufError> for MergeError {
    fn from(e: super::gguf::GgufError) -> MergeError {
        match e {
            super::gguf::GgufError::Stopped(s) => MergeError::Stopped(s),
            other => MergeError::Gguf(other),
        }
    }
}

impl From<MergeError> for String {
    fn from(e: MergeError) -> String {
        e.to_string()
    }
}
