//! How outcomes and errors map to exit statuses.

use compsafe_core::FieldError;
use compsafe_engine::EngineError;

/// A command that ran to the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything passed (exit 0).
    Ok,
    /// Ran fine, but a check or gate failed (exit 1).
    CheckFailed,
}

/// A command that could not run: its message and exit status (2 input, 3 infrastructure).
#[derive(Debug)]
pub struct Failure {
    /// Exit status.
    pub code: u8,
    /// What went wrong, naming the file, field and value.
    pub message: String,
}

impl Failure {
    /// An input error (exit 2).
    pub fn input(message: impl Into<String>) -> Failure {
        Failure {
            code: 2,
            message: message.into(),
        }
    }
}

impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Failure {
        Failure {
            code: if e.is_input_error() { 2 } else { 3 },
            message: e.to_string(),
        }
    }
}

impl From<FieldError> for Failure {
    fn from(e: FieldError) -> Failure {
        Failure::input(e.to_string())
    }
}
