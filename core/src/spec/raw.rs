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
    #[serde(default)]
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
    #[serde(default)]
    pub(super) search: Option<RawSearch>,
    #[serde(default)]
    pub(super) analysis: Option<RawAnalysis>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSearch {
    pub(super) variants: Vec<String>,
    pub(super) suite: String,
    #[serde(default)]
    pub(super) limit: Option<usize>,
    #[serde(default)]
    pub(super) budget: Option<usize>,
    #[serde(default)]
    pub(super) suffix_len: Option<usize>,
    #[serde(default)]
    pub(super) candidates: Option<usize>,
    #[serde(default)]
    pub(super) seed: Option<u64>,
    #[serde(default)]
    pub(super) margin: Option<f64>,
    #[serde(default)]
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
    #[serde(default)]
    pub(super) manifest: Option<PathBuf>,
    #[serde(default)]
    pub(super) chat_template: Option<PathBuf>,
    #[serde(default)]
    pub(super) sha256: BTreeMap<String, String>,
}

#[derive(Debug)]
pub(super) enum RawVariant {
    Short(String),
    Table(RawVariantTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVariantTable {
    #[serde(default)]
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) method: Option<String>,
    #[serde(default)]
    pub(super) select: Option<String>,
    #[serde(default)]
    pub(super) protect: Vec<String>,
    #[serde(default)]
    pub(super) protect_ranking: Option<PathBuf>,
    #[serde(default)]
    pub(super) path: Option<PathBuf>,
    #[serde(default)]
    pub(super) sha256: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) distill: Option<Box<RawDistill>>,
}

/// `[variants.distill]`: every field but `prompts` has a default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDistill {
    pub(super) prompts: String,
    #[serde(default)]
    pub(super) safety: Option<String>,
    #[serde(default)]
    pub(super) limit: Option<usize>,
    #[serde(default)]
    pub(super) temperature: Option<f64>,
    #[serde(default)]
    pub(super) alpha: Option<f64>,
    #[serde(default)]
    pub(super) safety_weight: Option<f64>,
    #[serde(default)]
    pub(super) steps: Option<usize>,
    #[serde(default)]
    pub(super) batch: Option<usize>,
    #[serde(default)]
    pub(super) lr: Option<f64>,
    #[serde(default)]
    pub(super) layers: Option<usize>,
    #[serde(default)]
    pub(super) intermediate_size: Option<usize>,
    #[serde(default)]
    pub(super) init: Option<StudentInit>,
    #[serde(default)]
    pub(super) seed: Option<u64>,
    #[serde(default)]
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
                    .map(RawVariant::Table)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSuite {
    pub(super) name: String,
    #[serde(default)]
    pub(super) file: Option<PathBuf>,
    #[serde(default)]
    pub(super) format: Option<Format>,
    #[serde(default)]
    pub(super) expect: Option<Expect>,
    #[serde(default)]
    pub(super) columns: Option<Columns>,
    #[serde(default)]
    pub(super) filters: Vec<FilterSpec>,
    #[serde(default)]
    pub(super) limit: Option<usize>,
    #[serde(default)]
    pub(super) judge: Option<String>,
    #[serde(default)]
    pub(super) labels: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJudge {
    #[serde(default)]
    pub(super) refusal: Option<String>,
    #[serde(default)]
    pub(super) keywords: Option<Vec<String>>,
    #[serde(default)]
    pub(super) case_sensitive: Option<bool>,
    #[serde(default, rename = "match")]
    pub(super) match_mode: Option<MatchMode>,
    #[serde(default)]
    pub(super) target: Option<TargetJudge>,
    #[serde(default)]
    pub(super) degenerate: Option<DegeneracyCheck>,
    #[serde(default)]
    pub(super) models: Vec<RawJudgeModel>,
    #[serde(default)]
    pub(super) labels: Option<PathBuf>,
    #[serde(default)]
    pub(super) primary: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJudgeModel {
    pub(super) name: String,
    pub(super) path: PathBuf,
    pub(super) kind: String,
    #[serde(default)]
    pub(super) chat_template: Option<PathBuf>,
    #[serde(default)]
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
    #[serde(default)]
    pub(super) heads: Option<RawHeads>,
    #[serde(default)]
    pub(super) sensitivity: Option<RawSensitivity>,
    #[serde(default)]
    pub(super) conditioned: Option<RawConditioned>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHeads {
    #[serde(default)]
    pub(super) suite: Option<String>,
    #[serde(default)]
    pub(super) benign: Option<String>,
    #[serde(default)]
    pub(super) limit: Option<usize>,
    #[serde(default)]
    pub(super) unit: Option<HeadsUnit>,
    #[serde(default)]
    pub(super) channels: Option<usize>,
    #[serde(default)]
    pub(super) confirm: Option<usize>,
    #[serde(default)]
    pub(super) random_sets: Option<usize>,
    #[serde(default)]
    pub(super) seed: Option<u64>,
    #[serde(default)]
    pub(super) max_new_tokens: Option<usize>,
    #[serde(default)]
    pub(super) slices: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSensitivity {
    #[serde(default)]
    pub(super) variant: Option<String>,
    #[serde(default)]
    pub(super) suite: Option<String>,
    #[serde(default)]
    pub(super) benign: Option<String>,
    #[serde(default)]
    pub(super) limit: Option<usize>,
    #[serde(default)]
    pub(super) unit: Option<SensitivityUnit>,
    #[serde(default)]
    pub(super) confirm: Option<bool>,
    #[serde(default)]
    pub(super) alpha: Option<f64>,
    #[serde(default)]
    pub(super) max_new_tokens: Option<usize>,
    #[serde(default)]
    pub(super) slices: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConditioned {
    #[serde(default)]
    pub(super) suite: Option<String>,
    #[serde(default)]
    pub(super) benign: Option<String>,
    #[serde(default)]
    pub(super) target_suite: Option<String>,
    #[serde(default)]
    pub(super) target: Option<String>,
    #[serde(default)]
    pub(super) variants: Option<Vec<String>>,
    #[serde(default)]
    pub(super) noise: Option<f64>,
    #[serde(default)]
    pub(super) seed: Option<u64>,
    #[serde(default)]
    pub(super) limit: Option<usize>,
    #[serde(default)]
    pub(super) alpha: Option<f64>,
    #[serde(default)]
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
