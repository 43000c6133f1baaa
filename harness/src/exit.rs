//! How outcomes and errors map to exit statuses.

use std::process::ExitCode;

use compsafe_core::FieldError;
use compsafe_engine::EngineError;

/// The exit statuses of `compsafe`, as the README documents them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Everything passed (0).
    Ok,
    /// Ran fine, but a check or gate failed (1).
    CheckFailed,
    /// Usage, spec or input error (2): the message names the file, field and value.
    Input,
    /// Infrastructure: the coordinator unreachable, workers lost, a write failed (3).
    Infra,
}

impl ExitStatus {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Ok => 0,
            ExitStatus::CheckFailed => 1,
            ExitStatus::Input => 2,
            ExitStatus::Infra => 3,
        }
    }
}

impl From<ExitStatus> for ExitCode {
    fn from(s: ExitStatus) -> ExitCode {
        ExitCode::from(s.code())
    }
}

/// A command that ran to the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything passed (exit 0).
    Ok,
    /// Ran fine, but a check or gate failed (exit 1).
    CheckFailed,
}

impl Outcome {
    /// [`Outcome::CheckFailed`] when `failed`, else [`Outcome::Ok`].
    pub fn failed_if(failed: bool) -> Outcome {
        if failed {
            Outcome::CheckFailed
        } else {
            Outcome::Ok
        }
    }

    /// The exit status.
    pub fn status(self) -> ExitStatus {
        match self {
            Outcome::Ok => ExitStatus::Ok,
            Outcome::CheckFailed => ExitStatus::CheckFailed,
        }
    }
}

/// A command that could not run: its message and exit status ([`ExitStatus::Input`] or
/// [`ExitStatus::Infra`]).
#[derive(Debug)]
pub struct Failure {
    /// Exit status.
    pub status: ExitStatus,
    /// What went wrong, naming the file, field and value.
    pub message: String,
}

impl Failure {
    /// An input error (exit 2).
    pub fn input(message: impl Into<String>) -> Failure {
        Failure {
            status: ExitStatus::Input,
            message: message.into(),
        }
    }

    /// An infrastructure failure (exit 3).
    pub fn infra(message: impl Into<String>) -> Failure {
        Failure {
            status: ExitStatus::Infra,
            message: message.into(),
        }
    }
}

impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Failure {
        if e.is_input_error() {
            Failure::input(e.to_string())
        } else {
            Failure::infra(e.to_string())
        }
    }
}

impl From<FieldError> for Failure {
    fn from(e: FieldError) -> Failure {
        Failure::input(e.to_string())
    }
}

impl From<compsafe_core::spec::ValidationErrors> for Failure {
    fn from(e: compsafe_core::spec::ValidationErrors) -> Failure {
        Failure::input(e.to_string())
    }
}
