//! Why a model could not be loaded, trained or asked for text.

use crate::files::FileError;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// One of the model's files could not be read.
    #[error(transparent)]
    File(#[from] FileError),
    /// The files do not describe a model this crate runs: config.json, the checkpoint
    /// index, GGUF metadata, the tokenizer or its chat template.
    #[error("{0}")]
    Format(String),
    /// The request does not fit the model: an empty or too long prompt, a LoRA rank of
    /// zero, a sequence too short to train on.
    #[error("{0}")]
    Request(String),
    /// The tensor library failed (a shape mismatch, memory), in `context`.
    #[error("{context}: {source}")]
    Tensor {
        context: &'static str,
        source: candle_core::Error,
    },
}

impl ModelError {
    /// A tensor-library failure in `context` ("generate", "train", ...).
    pub fn tensor(context: &'static str) -> impl Fn(candle_core::Error) -> ModelError {
        move |source| ModelError::Tensor { context, source }
    }
}

/// Messages from code that builds on this module (file names, JSON): format problems.
impl From<String> for ModelError {
    fn from(message: String) -> ModelError {
        ModelError::Format(message)
    }
}

impl From<&str> for ModelError {
    fn from(message: &str) -> ModelError {
        ModelError::Format(message.to_string())
    }
}

impl From<ModelError> for String {
    fn from(e: ModelError) -> String {
        e.to_string()
    }
}
