//! What can go wrong between a program's name and its kernels, with the diagnostics
//! kept whole until the edge of the program renders them.

use crate::diag::Diagnostic;
use crate::ir::lower::LowerError;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A program file could not be read (the message says what and where).
    #[error(transparent)]
    Read(#[from] crate::files::FileError),
    #[error("`{spec}` is neither a file nor a stdlib method ({hint})")]
    NotFound { spec: String, hint: String },
    #[error("{label} does not check")]
    DoesNotCheck {
        label: String,
        text: String,
        diagnostics: Vec<Diagnostic>,
    },
    #[error("{label} defines no merge")]
    NoMerge { label: String },
    #[error("{label} has no merge `{name}` (it has {})", have.join(", "))]
    UnknownMerge {
        label: String,
        name: String,
        have: Vec<String>,
    },
    #[error("`{name}` cannot run on a {rank}-D tensor")]
    Rank {
        label: String,
        text: String,
        name: String,
        rank: usize,
        diagnostics: Vec<Diagnostic>,
    },
    #[error("`{name}`: {error}")]
    Lower { name: String, error: LowerError },
}

impl PipelineError {
    /// The headline with every diagnostic rendered against its source, for a terminal
    /// (`color`) or a file.
    pub fn render(&self, color: bool) -> String {
        match self {
            PipelineError::DoesNotCheck { .. } | PipelineError::Rank { .. } => {
                format!("{self}:\n{}", self.render_diagnostics(color))
            }
            _ => self.to_string(),
        }
    }

    /// Only the diagnostics, rendered (empty where the failure has none).
    pub fn render_diagnostics(&self, color: bool) -> String {
        match self {
            PipelineError::DoesNotCheck {
                label,
                text,
                diagnostics,
            }
            | PipelineError::Rank {
                label,
                text,
                diagnostics,
                ..
            } => crate::diag::render_all(diagnostics, label, text, color)
                .trim_end()
                .to_string(),
            _ => String::new(),
        }
    }

    /// The checker's diagnostics, where the failure has them.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            PipelineError::DoesNotCheck { diagnostics, .. }
            | PipelineError::Rank { diagnostics, .. } => diagnostics,
            _ => &[],
        }
    }
}
