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
    #[error("tensor error: {}", candle_message(.0))]
    Candle(#[from] candle_core::Error),
}

/// What kind of fault an error is: it decides the exit status of a command (2 for input, 3
/// otherwise) and whether a fleet retries the unit that hit it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The user's input is at fault (a missing or malformed file, a bad parameter): running
    /// again cannot help.
    Input,
    /// Something outside the input failed and may not fail again (a read interrupted, a
    /// device out of memory or lost): worth another attempt, on another worker if need be.
    Transient,
    /// A deterministic failure inside the engine (a tensor operation refused its operands):
    /// every attempt fails the same way, so it is not retried.
    Internal,
}

/// A candle error's message without the backtrace candle attaches when `RUST_BACKTRACE` is
/// set: users see what failed; `-vv` logs the whole error.
pub fn candle_message(e: &candle_core::Error) -> String {
    match e {
        candle_core::Error::WithBacktrace { inner, .. } => candle_message(inner),
        candle_core::Error::Context { inner, context } => {
            format!("{context}: {}", candle_message(inner))
        }
        candle_core::Error::WithPath { inner, path } => {
            format!("{}: {}", path.display(), candle_message(inner))
        }
        other => other.to_string(),
    }
}

impl EngineError {
    /// A `BadFile` error.
    pub fn bad_file(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        EngineError::BadFile {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// The kind of fault: malformed or missing input is [`Fault::Input`]; an I/O error that
    /// is not about the file itself (interrupted, timed out, out of space, a device error) and
    /// a failure of a GPU are [`Fault::Transient`]; any other tensor error is
    /// [`Fault::Internal`].
    pub fn fault(&self) -> Fault {
        use std::io::ErrorKind as K;
        match self {
            EngineError::Io { source, .. } => match source.kind() {
                K::NotFound
                | K::PermissionDenied
                | K::InvalidInput
                | K::InvalidData
                | K::IsADirectory
                | K::NotADirectory
                | K::UnexpectedEof => Fault::Input,
                _ => Fault::Transient,
            },
            EngineError::BadFile { .. } | EngineError::Missing { .. } | EngineError::Invalid(_) => {
                Fault::Input
            }
            EngineError::Candle(e) => {
                let m = candle_message(e).to_ascii_lowercase();
                if m.contains("cuda") || m.contains("out of memory") || m.contains("driver") {
                    Fault::Transient
                } else {
                    Fault::Internal
                }
            }
        }
    }

    /// True when the fault lies in the user's input (exit status 2).
    pub fn is_input_error(&self) -> bool {
        self.fault() == Fault::Input
    }

    /// True when another attempt may succeed (see [`Fault::Transient`]).
    pub fn is_retryable(&self) -> bool {
        self.fault() == Fault::Transient
    }
}

/// Result alias for the engine.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
