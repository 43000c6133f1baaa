//! Errors that point at the input at fault: file, field and value.

use std::fmt;
use std::path::PathBuf;

/// A value that failed validation, with the field it came from and why it was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FieldError {
    /// The file the value came from, when it came from one.
    pub file: Option<PathBuf>,
    /// Dotted path of the field (`variants[2].method`).
    pub field: String,
    /// The offending value as written.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

impl FieldError {
    /// A field error without a file yet (attach one with [`FieldError::in_file`]).
    pub fn new(
        field: impl Into<String>,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        FieldError {
            file: None,
            field: field.into(),
            value: value.into(),
            reason: reason.into(),
        }
    }

    /// Attaches the file the value came from.
    pub fn in_file(mut self, file: impl Into<PathBuf>) -> Self {
        self.file = Some(file.into());
        self
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}: ", file.display())?;
        }
        if self.field.starts_with("--") {
            // A command-line flag, as the user typed it.
            return write!(f, "{} = {}: {}", self.field, self.value, self.reason);
        }
        write!(
            f,
            "field `{}` = {:?}: {}",
            self.field, self.value, self.reason
        )
    }
}
