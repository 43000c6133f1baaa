//! What the scheduler hands out and answers: failure kinds, settings, errors, progress and
//! leases.

use compsafe_core::unit::UnitSpec;
use compsafe_proto::WireError;

use crate::store::{StoreError, SweepState};

/// What kind of failure a unit met, as its worker classified it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The input is at fault: the sweep fails at once (an input error).
    Input,
    /// Worth another attempt, while the unit has attempts left.
    Transient,
    /// A deterministic failure that is not the input's fault: the sweep fails at once.
    Internal,
}

/// Tunables of the scheduler.
#[derive(Debug, Clone, Copy)]
pub struct SchedConfig {
    /// How long a lease lasts without renewal.
    pub lease_ttl_ms: u64,
    /// Leases a unit may have before it fails for good.
    pub max_attempts: u32,
}

impl Default for SchedConfig {
    fn default() -> Self {
        SchedConfig {
            lease_ttl_ms: 30_000,
            max_attempts: 3,
        }
    }
}

/// Why a scheduler call was refused.
#[derive(Debug, thiserror::Error)]
pub enum SchedError {
    /// No such sweep or unit.
    #[error("not found: {0}")]
    NotFound(String),
    /// The lease is expired, superseded or its sweep was cancelled.
    #[error("lease refused: {0}")]
    Fenced(String),
    /// The request is malformed.
    #[error("invalid: {0}")]
    Invalid(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The answer could not be made durable; try again.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl From<SchedError> for WireError {
    fn from(e: SchedError) -> WireError {
        match e {
            SchedError::NotFound(m) => WireError::NotFound(m),
            SchedError::Fenced(m) => WireError::Fenced(m),
            SchedError::Invalid(m) => WireError::Invalid(m),
            SchedError::Store(e @ StoreError::Sqlite(_)) => WireError::Unavailable(e.to_string()),
            SchedError::Store(e @ StoreError::Corrupt(_)) => WireError::Internal(e.to_string()),
            SchedError::Unavailable(m) => WireError::Unavailable(m),
        }
    }
}

impl From<SchedError> for tonic::Status {
    fn from(e: SchedError) -> Self {
        WireError::from(e).into()
    }
}

/// Unit counts of a sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Sweep id.
    pub id: String,
    /// Sweep name.
    pub name: String,
    /// Sweep state.
    pub state: SweepState,
    /// Units waiting for a worker.
    pub queued: u32,
    /// Units held by workers.
    pub leased: u32,
    /// Units with a result.
    pub done: u32,
    /// Units that failed for good.
    pub failed: u32,
    /// All units.
    pub total: u32,
    /// Why the sweep failed.
    pub error: Option<String>,
}

/// A lease handed to a worker.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    /// `<sweep>:<ordinal>`.
    pub unit_id: String,
    /// Fencing token of this lease.
    pub lease_id: u64,
    /// Unix milliseconds.
    pub deadline_ms: u64,
    /// What to run.
    pub spec: UnitSpec,
}
