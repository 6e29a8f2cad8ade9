//! Why building or scoring the zoo failed.

use crate::model::ModelError;

#[derive(Debug, thiserror::Error)]
pub enum ZooError {
    /// A `--set KEY=VALUE` that does not name a field of the spec or does not fit it.
    #[error("{0}")]
    Setting(String),
    /// Training or scoring a model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Training diverged: the loss stopped being finite.
    #[error("{label}: loss is {loss} at step {step}")]
    Diverged {
        label: String,
        loss: f32,
        step: usize,
    },
    /// A file of the zoo could not be written or read.
    #[error("{0}")]
    Io(String),
}

impl From<ZooError> for String {
    fn from(e: ZooError) -> String {
        e.to_string()
    }
}
