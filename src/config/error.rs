//! A problem in a mergekit config, at its place in the file where it has one.

use crate::files::FileError;

/// A position in the config with what is wrong there.
#[derive(Clone, Debug, PartialEq)]
pub struct Located {
    /// The config's path.
    pub label: String,
    /// 1-based; 0 when the problem has no line (the file as a whole).
    pub line: u64,
    pub column: u64,
    pub message: String,
    /// The line itself with a caret under the column, when there is one.
    pub excerpt: Option<String>,
}

impl std::fmt::Display for Located {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            return write!(f, "{}: {}", self.label, self.message);
        }
        write!(
            f,
            "{}, line {}, column {}: {}",
            self.label, self.line, self.column, self.message
        )?;
        match &self.excerpt {
            Some(x) => write!(f, "\n{x}"),
            None => Ok(()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// At a place in the config.
    #[error("{0}")]
    At(Located),
    /// The config, or a file it names, could not be read.
    #[error(transparent)]
    File(#[from] FileError),
    /// Not tied to a place: options that contradict the config, a program that does
    /// not check (with its own diagnostics).
    #[error("{0}")]
    Other(String),
}

impl ConfigError {
    /// Where in the config, if the problem has a place.
    pub fn location(&self) -> Option<&Located> {
        match self {
            ConfigError::At(l) => Some(l),
            _ => None,
        }
    }
}

impl From<String> for ConfigError {
    fn from(message: String) -> ConfigError {
        ConfigError::Other(message)
    }
}

impl From<ConfigError> for String {
    fn from(e: ConfigError) -> String {
        e.to_string()
    }
}
