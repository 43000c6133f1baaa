//! The spec as written: serde types with `deny_unknown_fields` everywhere, so a typo is an
//! error. [`super::parse_spec`] turns them into the validated types of [`super::types`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::analysis::{HeadsUnit, SensitivityUnit};
use super::types::{Generation, StatsConfig};
use crate::judge::{DegeneracyCheck, MatchMode, TargetJudge};
use crate::suite::{Columns, Expect, FilterSpec, Format};
use crate::variant::StudentInit;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSpec {
    pub(super) sweep: RawSweep,
    pub(super) model: RawModel,
    pub(super) reference: Option<String>,
    #[serde(default)]
    pub(super) variants: Vec<RawVariant>,
    #[serde(default)]
    pub(super) suites: Vec<RawSuite>,
    #[serde(default)]
    pub(super) generation: Generation,
    #[serde(default)]
    pub(super) judge: RawJudge,
    #[serde(default)]
    pub(super) stats: StatsConfig,
    pub(super) search: Option<RawSearch>,
    pub(super) analysis: Option<RawAnalysis>,
    pub(super) calibration: Option<RawCalibration>,
    #[serde(default)]
    pub(super) chat: super::chat::RawChat,
}

/// `[calibration]` or a variant's `calibration` table: every field optional, so an override
/// replaces exactly the fields it writes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCalibration {
    pub(super) suite: Option<String>,
    pub(super) file: Option<PathBuf>,
    pub(super) sequences: Option<usize>,
    pub(super) seq_len: Option<usize>,
    pub(super) seed: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSearch {
    pub(super) variants: Vec<String>,
    pub(super) suite: String,
    pub(super) limit: Option<usize>,
    pub(super) budget: Option<usize>,
    pub(super) suffix_len: Option<usize>,
    pub(super) candidates: Option<usize>,
    pub(super) seed: Option<u64>,
    pub(super) margin: Option<f64>,
    pub(super) slice: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSweep {
    pub(super) name: String,
    #[serde(default)]
    pub(super) seed: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawModel {
    pub(super) path: PathBuf,
    pub(super) manifest: Option<PathBuf>,
    pub(super) chat_template: Option<PathBuf>,
    #[serde(default)]
    pub(super) sha256: BTreeMap<String, String>,
}

#[derive(Debug)]
pub(super) enum RawVariant {
    Short(String),
    Table(Box<RawVariantTable>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVariantTable {
    pub(super) name: Option<String>,
    pub(super) method: Option<String>,
    pub(super) select: Option<String>,
    #[serde(default)]
    pub(super) protect: Vec<String>,
    pub(super) protect_ranking: Option<PathBuf>,
    pub(super) path: Option<PathBuf>,
    #[serde(default)]
    pub(super) sha256: BTreeMap<String, String>,
    pub(super) distill: Option<Box<RawDistill>>,
    pub(super) calibration: Option<RawCalibration>,
}

/// `[variants.distill]`: every field but `prompts` has a default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDistill {
    pub(super) prompts: String,
    pub(super) safety: Option<String>,
    pub(super) limit: Option<usize>,
    pub(super) temperature: Option<f64>,
    pub(super) alpha: Option<f64>,
    pub(super) safety_weight: Option<f64>,
    pub(super) steps: Option<usize>,
    pub(super) batch: Option<usize>,
    pub(super) lr: Option<f64>,
    pub(super) layers: Option<usize>,
    pub(super) intermediate_size: Option<usize>,
    pub(super) init: Option<StudentInit>,
    pub(super) seed: Option<u64>,
    pub(super) max_new_tokens: Option<usize>,
}

impl<'de> Deserialize<'de> for RawVariant {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawVariant;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a variant shorthand string or a table {name, method, select, path}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawVariant, E> {
                Ok(RawVariant::Short(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawVariant, A::Error> {
                RawVariantTable::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|t| RawVariant::Table(Box::new(t)))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSuite {
    pub(super) name: String,
    pub(super) file: Option<PathBuf>,
    pub(super) format: Option<Format>,
    pub(super) expect: Option<Expect>,
    pub(super) columns: Option<Columns>,
    #[serde(default)]
    pub(super) filters: Vec<FilterSpec>,
    pub(super) limit: Option<usize>,
    pub(super) judge: Option<String>,
    pub(super) labels: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJudge {
    pub(super) refusal: Option<String>,
    pub(super) keywords: Option<Vec<String>>,
    pub(super) case_sensitive: Option<bool>,
    #[serde(default, rename = "match")]
    pub(super) match_mode: Option<MatchMode>,
    pub(super) target: Option<TargetJudge>,
    pub(super) degenerate: Option<DegeneracyCheck>,
    #[serde(default)]
    pub(super) models: Vec<RawJudgeModel>,
    pub(super) labels: Option<PathBuf>,
    pub(super) primary: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJudgeModel {
    pub(super) name: String,
    pub(super) path: PathBuf,
    pub(super) kind: String,
    pub(super) chat_template: Option<PathBuf>,
    pub(super) max_new_tokens: Option<usize>,
}

/// The suites an analysis names (not deserialized: each section's own fields).
#[derive(Debug, Clone, Default)]
pub(super) struct RawAnalysisSuites {
    pub(super) suite: Option<String>,
    pub(super) benign: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAnalysis {
    pub(super) heads: Option<RawHeads>,
    pub(super) sensitivity: Option<RawSensitivity>,
    pub(super) conditioned: Option<RawConditioned>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHeads {
    pub(super) suite: Option<String>,
    pub(super) benign: Option<String>,
    pub(super) limit: Option<usize>,
    pub(super) unit: Option<HeadsUnit>,
    pub(super) channels: Option<usize>,
    pub(super) confirm: Option<usize>,
    pub(super) random_sets: Option<usize>,
    pub(super) seed: Option<u64>,
    pub(super) max_new_tokens: Option<usize>,
    pub(super) slices: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSensitivity {
    pub(super) variant: Option<String>,
    pub(super) suite: Option<String>,
    pub(super) benign: Option<String>,
    pub(super) limit: Option<usize>,
    pub(super) unit: Option<SensitivityUnit>,
    pub(super) confirm: Option<bool>,
    pub(super) alpha: Option<f64>,
    pub(super) max_new_tokens: Option<usize>,
    pub(super) slices: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConditioned {
    pub(super) suite: Option<String>,
    pub(super) benign: Option<String>,
    pub(super) target_suite: Option<String>,
    pub(super) target: Option<String>,
    pub(super) variants: Option<Vec<String>>,
    pub(super) noise: Option<f64>,
    pub(super) seed: Option<u64>,
    pub(super) limit: Option<usize>,
    pub(super) alpha: Option<f64>,
    pub(super) max_new_tokens: Option<usize>,
}

macro_rules! analysis_suites {
    ($($t:ty),*) => {$(
        impl $t {
            pub(super) fn suites(&self) -> RawAnalysisSuites {
                RawAnalysisSuites {
                    suite: self.suite.clone(),
                    benign: self.benign.clone(),
                }
            }
        }
    )*};
}
analysis_suites!(RawHeads, RawSensitivity, RawConditioned);
