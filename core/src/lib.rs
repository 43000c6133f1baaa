//! compsafe-core: the pure domain of compsafe.
//!
//! Spec parsing and validation, compressed-variant descriptions, prompt suites, judges,
//! metrics, statistics, the report schema and shard planning. Nothing here touches a tensor,
//! a socket or an async runtime.
//!
//! - [`judge`]: refusal presets with their sources' exact semantics, target, label and
//!   degeneracy judges, refusal log-odds.
//! - [`stats`]: Wilson intervals, exact McNemar, seeded paired bootstrap, Holm.
//! - [`mc`]: lm-evaluation-harness's TruthfulQA mc1 / mc2.
//! - [`suite`]: CSV / JSON / JSONL suite loaders and the bundled suites.
//! - [`spec`]: the sweep spec and `validate`.
//! - [`report`]: report.json schema, per-prompt records, cells, divergences.

pub mod aggregate;
pub mod analysis;
pub mod calibrated;
pub mod calibration;
pub mod error;
pub mod gate;
pub mod gguf;
pub mod judge;
pub mod mc;
pub mod paths;
pub mod render;
pub mod report;
pub mod spec;
pub mod stats;
pub mod suite;
pub mod text;
pub mod unit;
pub mod variant;

pub use error::FieldError;
pub use judge::{KeywordJudge, MatchMode, Preset, Verdict};
pub use report::{Cell, Record, Report};
pub use spec::{Spec, Validated};
pub use suite::{Expect, Prompt, Suite, SuiteSource};
pub use variant::{
    Ablation, DistillSpec, FloatType, GgufFtype, GgufType, HeadRef, ImatrixSource, Method,
    PruneScope, StudentInit, Variant,
};
