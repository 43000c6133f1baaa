//! compsafe-eval: running one unit of work on the engine.
//!
//! A unit is a variant on a slice of one suite's prompts (generated, judged, scored and
//! compared with the reference), or a slice of an analysis. Workers on a fleet and `compsafe
//! run --direct` call the same [`Runner::run`]; the model is loaded once per runner and the
//! variant derived once per (sweep, variant). Distilled students and calibrated variants are
//! derived and cached here.

pub mod analysis;
pub mod calibrated;
pub mod distill;
pub mod evaluator;
pub mod info;
pub mod judge;
pub mod search;
pub mod unit;

pub use compsafe_engine::Fault;
pub use evaluator::{judges_for, Evaluator, ReferenceOutputs};
pub use unit::{Runner, UnitError};
