//! Coordinator: plans sweeps into work units, leases them to workers with deadlines and
//! fencing, keeps every transition in a durable store and assembles the report.

pub mod actor;
pub mod plan;
pub mod sched;
pub mod service;
pub mod store;
pub mod telemetry;

pub use sched::{SchedConfig, SchedError, Scheduler};
pub use service::{run, serve, Config, Coordinator};
pub use store::{SqliteStore, Store};
