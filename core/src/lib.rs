//! compsafe-core: the pure domain of compsafe.
//!
//! Spec parsing and validation, compressed-variant descriptions, prompt suites, judges,
//! metrics, statistics, the report schema and shard planning. Nothing here touches a tensor,
//! a socket or an async runtime.

pub mod error;
pub mod judge;
pub mod mc;
pub mod spec;
pub mod stats;
pub mod suite;
pub mod variant;

pub use error::FieldError;
pub use judge::{KeywordJudge, MatchMode, Preset, Verdict};
pub use variant::{FloatType, GgufType, HeadRef, Method, PruneScope, Variant};
