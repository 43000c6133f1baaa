//! Work units as they travel between coordinator and workers: what to run and what came back.
//! Pure data (JSON on the wire); planning a sweep into units lives here too.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::report::{ModelInfo, Record, VariantInfo};

/// The reference's outputs on a suite, which variant units of that suite are compared with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReferenceWire {
    /// Per prompt id: the prompt's tokens and the reference's response tokens.
    pub tokens: BTreeMap<String, (Vec<u32>, Vec<u32>)>,
    /// Typical (median) mean per-token log-likelihood of the reference's own responses.
    pub typical_logprob: Option<f64>,
}

/// What a worker is asked to do: one variant on a range of one suite's prompts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitSpec {
    /// The sweep this unit belongs to.
    pub sweep_id: String,
    /// The unit's id.
    pub unit_id: String,
    /// The sweep's spec text.
    pub spec_text: String,
    /// The spec file's path (relative paths in the spec resolve against its directory).
    pub spec_path: String,
    /// Index of the variant in the spec (0 is the reference).
    pub variant: usize,
    /// Index of the suite in the spec.
    pub suite: usize,
    /// First prompt of the range.
    pub start: usize,
    /// One past the last prompt of the range.
    pub end: usize,
    /// The reference's outputs on this suite (variant units of generation suites).
    pub reference: Option<ReferenceWire>,
}

/// What a worker returns for a unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitResult {
    /// One record per prompt of the range.
    pub records: Vec<Record>,
    /// The evaluated variant.
    pub variant: VariantInfo,
    /// The model and its file integrity (reference units).
    pub model: Option<ModelInfo>,
    /// The reference's outputs (reference units of generation suites).
    pub reference: Option<ReferenceWire>,
}
