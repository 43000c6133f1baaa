//! compsafe-worker: runs work units on the engine and reports their records.

pub mod exec;

pub use exec::{Evaluator, ReferenceOutputs};
