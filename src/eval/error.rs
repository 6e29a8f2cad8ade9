//! Why an evaluation failed, by cause.

use crate::files::FileError;
use crate::model::ModelError;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A setting's value is not one of its forms (`--chat`, `--split`, `--evaluator`).
    #[error("{0}")]
    Setting(String),
    /// The data set, or a stored result, could not be read.
    #[error(transparent)]
    File(#[from] FileError),
    /// The data set (or a stored result) does not parse; the message names the line.
    #[error("{0}")]
    Data(String),
    /// The job cannot run as asked: an empty split, too few problems for the shots, a
    /// batch size of zero, a model without the chat template `--chat on` needs.
    #[error("{0}")]
    Job(String),
    /// The model failed, or answered something other than one completion per prompt.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The external evaluator could not run, failed, ran over its time limit or printed
    /// no score; the message quotes its command and its last lines.
    #[error("{0}")]
    Evaluator(String),
}

impl From<EvalError> for String {
    fn from(e: EvalError) -> String {
        e.to_string()
    }
}
