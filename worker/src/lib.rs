//! compsafe-worker: runs work units on the engine and reports their records.

pub mod distill;
pub mod exec;
pub mod info;
pub mod pull;
pub mod search;
pub mod unit;

pub use exec::{Evaluator, ReferenceOutputs};
pub use pull::{pull_loop, PullConfig};
pub use unit::{Runner, UnitError};
