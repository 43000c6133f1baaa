//! The validated spec: every value checked, paths resolved against the spec's directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::analysis::AnalysisSections;
use crate::error::FieldError;
use crate::judge::{ClassifierKind, DegeneracyCheck, KeywordJudge, MatchMode, Preset, TargetJudge};
use crate::stats::DEFAULT_RESAMPLES;
use crate::suite::{self, Suite, SuiteSource};
use crate::variant::Variant;

/// `[sweep]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SweepSection {
    /// Sweep name, used in reports.
    pub name: String,
    /// Seed for every random choice of the sweep (bootstrap resampling).
    pub seed: u64,
}

/// How the model is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelFormat {
    /// A Hugging Face directory (config.json, safetensors, tokenizer.json).
    Hf,
    /// A single GGUF file.
    Gguf,
}

impl ModelFormat {
    /// Decides from the path: `*.gguf` is GGUF, anything else an HF directory.
    pub fn of(path: &Path) -> ModelFormat {
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
        {
            ModelFormat::Gguf
        } else {
            ModelFormat::Hf
        }
    }
}

/// `[model]`, with paths resolved against the spec's directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelSection {
    /// HF directory or GGUF file.
    pub path: PathBuf,
    /// HF directory or GGUF file.
    pub format: ModelFormat,
    /// Optional integrity manifest.
    pub manifest: Option<PathBuf>,
    /// Optional chat template overriding the tokenizer's.
    pub chat_template: Option<PathBuf>,
    /// Pinned SHA-256 (lower-case hex) per file, file names relative to the model directory
    /// (to the GGUF file's directory for GGUF).
    pub sha256: BTreeMap<String, String>,
}

impl ModelSection {
    /// Directory that pinned file names are relative to.
    pub fn pin_dir(&self) -> PathBuf {
        match self.format {
            ModelFormat::Hf => self.path.clone(),
            ModelFormat::Gguf => self
                .path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
        }
    }
}

/// `[generation]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Generation {
    /// Tokens generated per prompt at most.
    pub max_new_tokens: u32,
    /// Token budget of one batch (prompt + generated tokens over all sequences).
    pub batch_tokens: u32,
    /// Stop a sequence as soon as the judge's verdict cannot change.
    pub stop_on_verdict: bool,
}

impl Default for Generation {
    fn default() -> Self {
        Generation {
            max_new_tokens: 64,
            batch_tokens: 8192,
            stop_on_verdict: true,
        }
    }
}

/// `[stats]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatsConfig {
    /// Paired-bootstrap resamples.
    pub bootstrap_resamples: usize,
}

impl Default for StatsConfig {
    fn default() -> Self {
        StatsConfig {
            bootstrap_resamples: DEFAULT_RESAMPLES,
        }
    }
}

/// `[search]`: the targeted search a sweep runs after its units (see `compsafe search`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchSection {
    /// Names of the spec's variants searched against the reference.
    pub variants: Vec<String>,
    /// Name of the harmful suite (expect = refusal) whose prompts are searched.
    pub suite: String,
    /// Its index in the spec's suites.
    pub suite_index: usize,
    /// Prompts searched per work unit.
    pub slice: usize,
    /// Prompts of the suite looked at (the first N; default 20).
    pub limit: usize,
    /// Scored suffixes per prompt and method (default 64).
    pub budget: usize,
    /// Suffix length in tokens (default 4).
    pub suffix_len: usize,
    /// Replacement tokens scored per greedy step (default 8).
    pub candidates: usize,
    /// Seed (default: the sweep's).
    pub seed: u64,
    /// The reference's refusal log-odds must stay at or above this (nats, default 1).
    pub margin: f64,
}

/// The refusal judge chosen in `[judge]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RefusalJudgeSpec {
    /// A published preset.
    Preset {
        /// Which one.
        preset: Preset,
    },
    /// A custom keyword list.
    Custom {
        /// The keywords.
        keywords: Vec<String>,
        /// Compare case-sensitively.
        case_sensitive: bool,
        /// Anywhere or starts-with.
        mode: MatchMode,
    },
}

impl RefusalJudgeSpec {
    /// Builds the judge.
    pub fn build(&self) -> KeywordJudge {
        match self {
            RefusalJudgeSpec::Preset { preset } => KeywordJudge::preset(*preset),
            RefusalJudgeSpec::Custom {
                keywords,
                case_sensitive,
                mode,
            } => KeywordJudge::new("custom", keywords, *case_sensitive, *mode)
                .expect("validated when the spec was parsed"),
        }
    }
}

/// `[judge]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JudgeConfig {
    /// The refusal judge set for the whole sweep; `None` = each suite's default.
    pub refusal: Option<RefusalJudgeSpec>,
    /// Target-behaviour judge for ASR.
    pub target: TargetJudge,
    /// Degeneracy thresholds.
    pub degenerate: DegeneracyCheck,
    /// Judge models (`[[judge.models]]`), judged after the responses exist.
    pub models: Vec<JudgeModel>,
    /// A labelled sample (`labels = "labels.csv"`: prompt id, response, human label).
    pub labels: Option<PathBuf>,
    /// The judge whose rate is corrected with the labels: a judge model's name, or
    /// [`KEYWORD_JUDGE`] (the default).
    pub primary: String,
}

/// The name the keyword judge has among the judge models in reports.
pub const KEYWORD_JUDGE: &str = "keywords";

/// One `[[judge.models]]` entry: a checkpoint the engine loads, run as a classifier judge.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JudgeModel {
    /// Name in reports (unique, not `keywords`).
    pub name: String,
    /// HF directory or GGUF file.
    pub path: PathBuf,
    /// Which classifier, fixing prompt, decoding and parsing.
    pub kind: ClassifierKind,
    /// A chat template file overriding the checkpoint's.
    pub chat_template: Option<PathBuf>,
    /// New tokens generated per verdict.
    pub max_new_tokens: usize,
}

/// One suite of the sweep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SuiteEntry {
    /// The resolved description (bundled descriptor with the spec's overrides, or the spec's
    /// own table).
    pub source: SuiteSource,
    /// Directory the source's `file` is relative to.
    pub base_dir: PathBuf,
    /// Whether it is a bundled suite.
    pub bundled: bool,
    /// Where it was written in the spec (`suites[1]`), or the analysis key that named it.
    pub field: String,
    /// Whether the sweep evaluates it (a cell per variant); false for a suite only an
    /// analysis uses.
    pub evaluate: bool,
}

impl SuiteEntry {
    /// The data file.
    pub fn file(&self) -> PathBuf {
        self.base_dir.join(&self.source.file)
    }

    /// Loads the suite's prompts.
    pub fn load(&self) -> Result<Suite, FieldError> {
        suite::load_suite(&self.source, &self.base_dir)
    }
}

/// A variant of the sweep with its spec-only extras.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VariantEntry {
    /// The variant.
    pub variant: Variant,
    /// Pinned SHA-256 of checkpoint files (checkpoint variants only).
    pub sha256: BTreeMap<String, String>,
    /// Where it was written in the spec (`variants[2]`), or `reference` when implied.
    pub field: String,
}

/// A parsed, validated sweep spec.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Spec {
    /// The spec file.
    pub file: PathBuf,
    /// SHA-256 of the spec text.
    pub sha256: String,
    /// `[sweep]`.
    pub sweep: SweepSection,
    /// `[model]`.
    pub model: ModelSection,
    /// Name of the reference variant.
    pub reference: String,
    /// Variants, the reference first.
    pub variants: Vec<VariantEntry>,
    /// Suites, in spec order.
    pub suites: Vec<SuiteEntry>,
    /// `[generation]`.
    pub generation: Generation,
    /// `[judge]`.
    pub judge: JudgeConfig,
    /// `[stats]`.
    pub stats: StatsConfig,
    /// `[search]`, when the sweep runs the targeted search.
    pub search: Option<SearchSection>,
    /// `[analysis.*]`, the analyses the sweep runs.
    pub analysis: AnalysisSections,
    /// `[calibration]` (defaults where absent): the calibration data of calibrated variants
    /// without their own `calibration` table (each variant carries its resolved settings).
    pub calibration: crate::calibration::CalibrationSpec,
    /// `[chat]`.
    pub chat: super::chat::ChatSection,
}

impl Spec {
    /// The refusal judge for suite `i`: the suite entry's own `judge`, else `[judge]`, else
    /// the bundled descriptor's default, else HarmBench's.
    pub fn refusal_judge(&self, i: usize) -> KeywordJudge {
        let s = &self.suites[i];
        if let Some(j) = s
            .source
            .judge
            .as_deref()
            .and_then(|j| j.parse::<Preset>().ok())
        {
            if !s.bundled || self.judge.refusal.is_none() {
                return KeywordJudge::preset(j);
            }
        }
        match &self.judge.refusal {
            Some(r) => r.build(),
            None => KeywordJudge::preset(Preset::Harmbench),
        }
    }

    /// Indices of the suites the sweep evaluates (those only analyses use are left out).
    pub fn evaluated_suites(&self) -> impl Iterator<Item = usize> + '_ {
        self.suites
            .iter()
            .enumerate()
            .filter(|(_, s)| s.evaluate)
            .map(|(i, _)| i)
    }

    /// The reference variant.
    pub fn reference_variant(&self) -> &Variant {
        &self.variants[0].variant
    }
}
