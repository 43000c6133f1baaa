//! Engine errors: each names the file (or tensor) and what is wrong with it.

use std::path::PathBuf;

/// Everything that can go wrong while loading, compressing or running a model.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file was read but its contents are invalid.
    #[error("{path}: {reason}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the field or tensor.
        reason: String,
    },
    /// A required file is missing from a model directory.
    #[error("{path}: missing ({what})")]
    Missing {
        /// Where it was expected.
        path: PathBuf,
        /// What it is for.
        what: String,
    },
    /// A request to the engine is invalid (bad variant parameters, prompt too long, ...).
    #[error("{0}")]
    Invalid(String),
    /// A tensor operation failed.
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
}

impl EngineError {
    /// A `BadFile` error.
    pub fn bad_file(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        EngineError::BadFile {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// True when the fault lies in the user's input (exit status 2) rather than in the engine.
    pub fn is_input_error(&self) -> bool {
        !matches!(self, EngineError::Candle(_))
    }
}

/// Result alias for the engine.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
