//! The sweep spec (TOML): parsed once into validated types, with every error naming the spec
//! file, the TOML field path (`variants[2].method`) and the value at fault.
//!
//! ```toml
//! reference = "fp32"
//! variants = ["bf16", "int8", "int4:g32", "gguf:q4k",
//!             { name = "student", path = "../models/student" }]
//!
//! [sweep]
//! name = "quickstart"
//! seed = 1234
//!
//! [model]
//! path = "../models/tiny-chat"
//!
//! [[suites]]
//! name = "xstest-safe"
//! limit = 50
//!
//! [generation]
//! max_new_tokens = 64
//!
//! [judge]
//! refusal = "harmbench"
//! ```
//!
//! Relative paths are resolved against the spec file's directory. [`parse_spec`] checks
//! everything that needs no file system; [`validate`] also checks that files exist, pinned
//! hashes match and every suite loads.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};

use regex::Regex;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};

use crate::error::FieldError;
use crate::judge::{DegeneracyCheck, KeywordJudge, MatchMode, Preset, TargetJudge};
use crate::stats::DEFAULT_RESAMPLES;
use crate::suite::{self, Columns, Expect, FilterSpec, Format, Suite, SuiteSource};
use crate::variant::{DistillSpec, Method, StudentInit, Variant};

// ---------------------------------------------------------------------------------------
// Raw (as written) forms. `deny_unknown_fields` everywhere so a typo is an error.
// ---------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    sweep: RawSweep,
    model: RawModel,
    #[serde(default)]
    reference: Option<String>,
    #[serde(default)]
    variants: Vec<RawVariant>,
    #[serde(default)]
    suites: Vec<RawSuite>,
    #[serde(default)]
    generation: Generation,
    #[serde(default)]
    judge: RawJudge,
    #[serde(default)]
    stats: StatsConfig,
    #[serde(default)]
    search: Option<RawSearch>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSearch {
    variants: Vec<String>,
    suite: String,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    budget: Option<usize>,
    #[serde(default)]
    suffix_len: Option<usize>,
    #[serde(default)]
    candidates: Option<usize>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    margin: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSweep {
    name: String,
    #[serde(default)]
    seed: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    path: PathBuf,
    #[serde(default)]
    manifest: Option<PathBuf>,
    #[serde(default)]
    chat_template: Option<PathBuf>,
    #[serde(default)]
    sha256: BTreeMap<String, String>,
}

#[derive(Debug)]
enum RawVariant {
    Short(String),
    Table(RawVariantTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVariantTable {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    select: Option<String>,
    #[serde(default)]
    protect: Vec<String>,
    #[serde(default)]
    protect_ranking: Option<PathBuf>,
    #[serde(default)]
    path: Option<PathBuf>,
    #[serde(default)]
    sha256: BTreeMap<String, String>,
    #[serde(default)]
    distill: Option<Box<RawDistill>>,
}

/// A variant table's `protect` items: `L.H` (a head), `layer:L` (a whole layer) or `top:K`
/// (the first K units of the `protect_ranking` file, the heads.json or sensitivity.json of
/// `compsafe heads` / `compsafe sensitivity --unit layer`). Sorted, without duplicates.
fn protect_items(
    t: &RawVariantTable,
    field: &str,
    dir: &Path,
) -> Result<(Vec<crate::variant::HeadRef>, Vec<usize>), FieldError> {
    use crate::variant::HeadRef;
    let mut heads = Vec::new();
    let mut layers = Vec::new();
    fn add_unit(
        unit: &str,
        item_field: &str,
        item: &str,
        heads: &mut Vec<HeadRef>,
        layers: &mut Vec<usize>,
    ) -> Result<(), FieldError> {
        if unit.contains('.') {
            heads.push(HeadRef::parse(unit).map_err(|e| FieldError::new(item_field, item, e))?);
        } else {
            layers.push(unit.trim().parse::<usize>().map_err(|_| {
                FieldError::new(item_field, item, "a layer is a number, e.g. layer:3")
            })?);
        }
        Ok(())
    }
    for (k, item) in t.protect.iter().enumerate() {
        let item_field = format!("{field}.protect[{k}]");
        if let Some(l) = item.strip_prefix("layer:") {
            if l.contains('.') {
                return Err(FieldError::new(
                    &item_field,
                    item,
                    "a layer is a number, e.g. layer:3",
                ));
            }
            add_unit(l, &item_field, item, &mut heads, &mut layers)?;
        } else if let Some(n) = item.strip_prefix("top:") {
            let n: usize = n
                .trim()
                .parse()
                .map_err(|_| FieldError::new(&item_field, item, "expected top:K, e.g. top:8"))?;
            let Some(ranking) = &t.protect_ranking else {
                return Err(FieldError::new(
                    &item_field,
                    item,
                    "top:K needs protect_ranking = \"heads.json\" (written by compsafe heads or compsafe sensitivity)",
                ));
            };
            let path = resolve(dir, ranking);
            let rfield = format!("{field}.protect_ranking");
            let text = std::fs::read_to_string(&path)
                .map_err(|e| FieldError::new(&rfield, path.display().to_string(), e.to_string()))?;
            let json: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| FieldError::new(&rfield, path.display().to_string(), e.to_string()))?;
            let units: Vec<String> = json
                .get("ranking")
                .or_else(|| json.get("units"))
                .and_then(|r| r.as_array())
                .map(|r| {
                    r.iter()
                        .filter_map(|u| u.get("unit").and_then(|u| u.as_str()))
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            if units.len() < n {
                return Err(FieldError::new(
                    &rfield,
                    path.display().to_string(),
                    format!("ranks {} units, fewer than {item}", units.len()),
                ));
            }
            for u in &units[..n] {
                if u.contains(|c: char| !(c.is_ascii_digit() || c == '.')) {
                    return Err(FieldError::new(
                        &rfield,
                        path.display().to_string(),
                        format!(
                            "unit `{u}` is not a head (L.H) or a layer (L); rank heads or layers"
                        ),
                    ));
                }
                add_unit(u, &item_field, item, &mut heads, &mut layers)?;
            }
        } else {
            heads.push(HeadRef::parse(item).map_err(|e| FieldError::new(&item_field, item, e))?);
        }
    }
    if t.protect_ranking.is_some() && !t.protect.iter().any(|p| p.starts_with("top:")) {
        return Err(FieldError::new(
            format!("{field}.protect_ranking"),
            t.protect_ranking
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            "a ranking is only read for protect = [\"top:K\"]",
        ));
    }
    heads.sort();
    heads.dedup();
    layers.sort_unstable();
    layers.dedup();
    Ok((heads, layers))
}

/// `[variants.distill]`: every field but `prompts` has a default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDistill {
    prompts: String,
    #[serde(default)]
    safety: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    alpha: Option<f64>,
    #[serde(default)]
    safety_weight: Option<f64>,
    #[serde(default)]
    steps: Option<usize>,
    #[serde(default)]
    batch: Option<usize>,
    #[serde(default)]
    lr: Option<f64>,
    #[serde(default)]
    layers: Option<usize>,
    #[serde(default)]
    intermediate_size: Option<usize>,
    #[serde(default)]
    init: Option<StudentInit>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    max_new_tokens: Option<usize>,
}

impl RawDistill {
    /// The validated spec; errors name `field.distill.KEY` and check that the suites are
    /// bundled.
    fn build(&self, field: &str, sweep_seed: u64) -> Result<DistillSpec, FieldError> {
        let d = DistillSpec::default();
        let spec = DistillSpec {
            prompts: self.prompts.clone(),
            safety: self.safety.clone(),
            limit: self.limit,
            temperature: self.temperature.unwrap_or(d.temperature),
            alpha: self.alpha.unwrap_or(d.alpha),
            safety_weight: self.safety_weight.unwrap_or(d.safety_weight),
            steps: self.steps.unwrap_or(d.steps),
            batch: self.batch.unwrap_or(d.batch),
            lr: self.lr.unwrap_or(d.lr),
            layers: self.layers,
            intermediate_size: self.intermediate_size,
            init: self.init.unwrap_or(d.init),
            seed: self.seed.unwrap_or(sweep_seed),
            max_new_tokens: self.max_new_tokens.unwrap_or(d.max_new_tokens),
        };
        spec.check().map_err(|(key, value, why)| {
            FieldError::new(format!("{field}.distill.{key}"), value, why)
        })?;
        let root = suite::bundled_root();
        for (key, name) in [
            ("prompts", Some(&spec.prompts)),
            ("safety", spec.safety.as_ref()),
        ] {
            if let Some(name) = name {
                suite::bundled_source(&root, name).map_err(|e| {
                    FieldError::new(format!("{field}.distill.{key}"), name, e.reason)
                })?;
            }
        }
        Ok(spec)
    }
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
struct RawSuite {
    name: String,
    #[serde(default)]
    file: Option<PathBuf>,
    #[serde(default)]
    format: Option<Format>,
    #[serde(default)]
    expect: Option<Expect>,
    #[serde(default)]
    columns: Option<Columns>,
    #[serde(default)]
    filters: Vec<FilterSpec>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    judge: Option<String>,
    #[serde(default)]
    labels: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJudge {
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    keywords: Option<Vec<String>>,
    #[serde(default)]
    case_sensitive: Option<bool>,
    #[serde(default, rename = "match")]
    match_mode: Option<MatchMode>,
    #[serde(default)]
    target: Option<TargetJudge>,
    #[serde(default)]
    degenerate: Option<DegeneracyCheck>,
}

// ---------------------------------------------------------------------------------------
// Validated forms.
// ---------------------------------------------------------------------------------------

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
    /// Name of the spec's harmful suite (expect = refusal) whose prompts are searched.
    pub suite: String,
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
    /// Where it was written in the spec (`suites[1]`).
    pub field: String,
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

    /// The reference variant.
    pub fn reference_variant(&self) -> &Variant {
        &self.variants[0].variant
    }
}

// ---------------------------------------------------------------------------------------
// Parsing.
// ---------------------------------------------------------------------------------------

fn truncate(s: &str, max: usize) -> String {
    let s = s.trim();
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

/// The TOML key path (`variants[2].method`) of the innermost key or value whose span holds
/// `span.start`. Table headers only span the header, so every node is visited.
fn toml_path(text: &str, span: &Range<usize>) -> Option<String> {
    fn consider(s: Range<usize>, at: usize, path: &str, best: &mut Option<(usize, String)>) {
        if s.contains(&at) && best.as_ref().is_none_or(|(len, _)| s.len() <= *len) {
            *best = Some((s.len(), path.to_string()));
        }
    }
    fn walk(v: &toml::de::DeValue<'_>, at: usize, path: &str, best: &mut Option<(usize, String)>) {
        if let Some(t) = v.as_table() {
            for (k, val) in t.iter() {
                let p = if path.is_empty() {
                    k.get_ref().to_string()
                } else {
                    format!("{path}.{}", k.get_ref())
                };
                consider(k.span(), at, &p, best);
                consider(val.span(), at, &p, best);
                walk(val.get_ref(), at, &p, best);
            }
        } else if let Some(a) = v.as_array() {
            for (i, item) in a.iter().enumerate() {
                let p = format!("{path}[{i}]");
                consider(item.span(), at, &p, best);
                walk(item.get_ref(), at, &p, best);
            }
        }
    }
    let doc = toml::de::DeTable::parse(text).ok()?;
    let root = toml::de::DeValue::Table(doc.into_inner());
    let mut best = None;
    walk(&root, span.start, "", &mut best);
    best.map(|(_, p)| p)
}

fn toml_error(e: &toml::de::Error, text: &str, file: &Path) -> FieldError {
    let (field, value) = match e.span() {
        Some(span) => {
            let value = text
                .get(span.clone())
                .map(|v| truncate(v, 80))
                .unwrap_or_default();
            let field = toml_path(text, &span).unwrap_or_else(|| {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                format!("line {line}")
            });
            (field, value)
        }
        None => ("(spec)".to_string(), String::new()),
    };
    FieldError::new(field, value, e.message().trim().to_string()).in_file(file)
}

fn resolve(dir: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

fn check_pins(pins: &BTreeMap<String, String>, field: &str) -> Result<(), FieldError> {
    for (name, hash) in pins {
        let f = format!("{field}.\"{name}\"");
        if name.is_empty() || Path::new(name).is_absolute() || name.split('/').any(|c| c == "..") {
            return Err(FieldError::new(
                f,
                name,
                "pinned file names are relative to the model and stay inside it",
            ));
        }
        if hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(FieldError::new(
                f,
                hash,
                "a SHA-256 pin is 64 hexadecimal digits",
            ));
        }
    }
    Ok(())
}

/// Parses and validates a spec from its text. `file` is the spec's path: errors name it and
/// relative paths resolve against its directory. The file system is not touched.
pub fn parse_spec(text: &str, file: &Path) -> Result<Spec, FieldError> {
    let raw: RawSpec = toml::from_str(text).map_err(|e| toml_error(&e, text, file))?;
    let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let at = |e: FieldError| e.in_file(file);

    if raw.sweep.name.trim().is_empty() {
        return Err(at(FieldError::new("sweep.name", "", "sweep name is empty")));
    }
    let sweep = SweepSection {
        name: raw.sweep.name.clone(),
        seed: raw.sweep.seed,
    };

    if raw.model.path.as_os_str().is_empty() {
        return Err(at(FieldError::new("model.path", "", "model path is empty")));
    }
    check_pins(&raw.model.sha256, "model.sha256").map_err(at)?;
    let model_path = resolve(&dir, &raw.model.path);
    let model = ModelSection {
        format: ModelFormat::of(&model_path),
        path: model_path,
        manifest: raw.model.manifest.as_deref().map(|p| resolve(&dir, p)),
        chat_template: raw.model.chat_template.as_deref().map(|p| resolve(&dir, p)),
        sha256: raw
            .model
            .sha256
            .iter()
            .map(|(k, v)| (k.clone(), v.to_ascii_lowercase()))
            .collect(),
    };

    // Variants.
    let mut variants: Vec<VariantEntry> = Vec::new();
    for (i, rv) in raw.variants.iter().enumerate() {
        let field = format!("variants[{i}]");
        let entry = match rv {
            RawVariant::Short(s) => VariantEntry {
                variant: Variant::parse(s, &field).map_err(at)?,
                sha256: BTreeMap::new(),
                field,
            },
            RawVariant::Table(t) => {
                let is_distill = t
                    .method
                    .as_deref()
                    .is_some_and(|m| m.trim().eq_ignore_ascii_case("distill"));
                let method = match (&t.method, &t.path) {
                    _ if is_distill || t.distill.is_some() => {
                        let Some(d) = t.distill.as_ref().filter(|_| is_distill) else {
                            return Err(at(FieldError::new(
                                format!("{field}.method"),
                                t.method.clone().unwrap_or_default(),
                                if is_distill {
                                    "a distill variant needs a [variants.distill] table (at least prompts = \"SUITE\")"
                                } else {
                                    "a distill table needs method = \"distill\""
                                },
                            )));
                        };
                        for (set, key) in [
                            (t.path.is_some(), "path"),
                            (t.select.is_some(), "select"),
                            (!t.protect.is_empty(), "protect"),
                            (t.protect_ranking.is_some(), "protect_ranking"),
                            (!t.sha256.is_empty(), "sha256"),
                        ] {
                            if set {
                                return Err(at(FieldError::new(
                                    format!("{field}.{key}"),
                                    t.name.clone().unwrap_or_default(),
                                    "a distill variant trains its own student; it takes no path, select, protect or sha256",
                                )));
                            }
                        }
                        Method::Distill(Box::new(d.build(&field, raw.sweep.seed).map_err(at)?))
                    }
                    (Some(m), None) if m.trim().eq_ignore_ascii_case("checkpoint") => {
                        return Err(at(FieldError::new(
                            format!("{field}.path"),
                            "",
                            "a checkpoint variant needs a path",
                        )))
                    }
                    (Some(m), None) => Method::parse(m, &format!("{field}.method")).map_err(at)?,
                    (Some(m), Some(_)) if !m.trim().eq_ignore_ascii_case("checkpoint") => {
                        return Err(at(FieldError::new(
                            format!("{field}.path"),
                            t.path
                                .as_ref()
                                .map(|p| p.display().to_string())
                                .unwrap_or_default(),
                            "path is only for checkpoint variants (method = \"checkpoint\")",
                        )))
                    }
                    (_, Some(p)) => Method::Checkpoint {
                        path: resolve(&dir, p),
                    },
                    (None, None) => {
                        return Err(at(FieldError::new(
                            field,
                            t.name.clone().unwrap_or_default(),
                            "a variant table needs a method or a checkpoint path",
                        )))
                    }
                };
                if let Some(sel) = &t.select {
                    if matches!(method, Method::Checkpoint { .. }) {
                        return Err(at(FieldError::new(
                            format!("{field}.select"),
                            sel,
                            "a checkpoint variant has no tensor selection",
                        )));
                    }
                    Regex::new(sel).map_err(|e| {
                        at(FieldError::new(
                            format!("{field}.select"),
                            sel,
                            e.to_string(),
                        ))
                    })?;
                }
                let (protect, protect_layers) = protect_items(t, &field, &dir).map_err(at)?;
                let partial = matches!(
                    method,
                    Method::Rtn { .. }
                        | Method::Prune { .. }
                        | Method::NofM { .. }
                        | Method::Cast { .. }
                );
                if !protect.is_empty() && !partial {
                    return Err(at(FieldError::new(
                        format!("{field}.protect"),
                        t.protect.join(","),
                        "heads can be protected in integer, cast and pruning variants (GGUF \
                         blocks and checkpoints cannot keep part of a matrix); GGUF variants \
                         can protect whole layers (\"layer:L\")",
                    )));
                }
                if !(protect_layers.is_empty() || partial || matches!(method, Method::Gguf { .. }))
                {
                    return Err(at(FieldError::new(
                        format!("{field}.protect"),
                        t.protect.join(","),
                        "layers can be protected in integer, GGUF, cast and pruning variants",
                    )));
                }
                if !t.sha256.is_empty() && !matches!(method, Method::Checkpoint { .. }) {
                    return Err(at(FieldError::new(
                        format!("{field}.sha256"),
                        "",
                        "only checkpoint variants have files to pin",
                    )));
                }
                check_pins(&t.sha256, &format!("{field}.sha256")).map_err(at)?;
                let name = match &t.name {
                    Some(n) if n.trim().is_empty() => {
                        return Err(at(FieldError::new(
                            format!("{field}.name"),
                            n,
                            "variant name is empty",
                        )))
                    }
                    Some(n) => n.clone(),
                    None if is_distill => {
                        return Err(at(FieldError::new(
                            format!("{field}.name"),
                            "",
                            "a distill variant needs a name",
                        )))
                    }
                    None => match &method {
                        Method::Checkpoint { path } => path
                            .file_stem()
                            .map(|s| s.to_string_lossy().into_owned())
                            .unwrap_or_else(|| method.to_string()),
                        m => match &t.select {
                            Some(sel) => format!("{m}@{sel}"),
                            None => m.to_string(),
                        },
                    },
                };
                VariantEntry {
                    variant: Variant {
                        name,
                        method,
                        select: t.select.clone(),
                        protect,
                        protect_layers,
                    },
                    sha256: t
                        .sha256
                        .iter()
                        .map(|(k, v)| (k.clone(), v.to_ascii_lowercase()))
                        .collect(),
                    field,
                }
            }
        };
        if let Some(prev) = variants
            .iter()
            .find(|v| v.variant.name == entry.variant.name)
        {
            return Err(at(FieldError::new(
                format!("{}.name", entry.field),
                &entry.variant.name,
                format!("duplicate variant name (also {})", prev.field),
            )));
        }
        variants.push(entry);
    }

    // The reference: a named variant, or a shorthand added implicitly.
    let reference = raw.reference.clone().unwrap_or_else(|| "fp32".to_string());
    match variants.iter().position(|v| v.variant.name == reference) {
        Some(i) => {
            let r = variants.remove(i);
            variants.insert(0, r);
        }
        None => {
            let v = Variant::parse(&reference, "reference").map_err(|e| {
                at(FieldError::new(
                    "reference",
                    &reference,
                    format!(
                        "not the name of a variant and not a variant shorthand ({})",
                        e.reason
                    ),
                ))
            })?;
            if variants.iter().any(|x| x.variant.name == v.name) {
                return Err(at(FieldError::new(
                    "reference",
                    &reference,
                    format!("refer to the variant by its name `{}`", v.name),
                )));
            }
            variants.insert(
                0,
                VariantEntry {
                    variant: Variant {
                        name: reference.clone(),
                        ..v
                    },
                    sha256: BTreeMap::new(),
                    field: "reference".into(),
                },
            );
        }
    }
    if variants.len() < 2 {
        return Err(at(FieldError::new(
            "variants",
            "[]",
            "a sweep compares at least one variant with the reference",
        )));
    }

    // Judge.
    let refusal = match (&raw.judge.refusal, &raw.judge.keywords) {
        (Some(r), Some(_)) => {
            return Err(at(FieldError::new(
                "judge.keywords",
                r,
                "give either a refusal preset or a custom keyword list, not both",
            )))
        }
        (Some(r), None) => {
            if raw.judge.case_sensitive.is_some() || raw.judge.match_mode.is_some() {
                return Err(at(FieldError::new(
                    "judge.case_sensitive",
                    r,
                    "case_sensitive and match apply to custom keyword lists; a preset keeps its source's rule",
                )));
            }
            Some(RefusalJudgeSpec::Preset {
                preset: Preset::parse(r, "judge.refusal").map_err(at)?,
            })
        }
        (None, Some(k)) => {
            let case_sensitive = raw.judge.case_sensitive.unwrap_or(false);
            let mode = raw.judge.match_mode.unwrap_or(MatchMode::Anywhere);
            KeywordJudge::new("custom", k, case_sensitive, mode).map_err(at)?;
            Some(RefusalJudgeSpec::Custom {
                keywords: k.clone(),
                case_sensitive,
                mode,
            })
        }
        (None, None) => None,
    };
    let degenerate = raw.judge.degenerate.unwrap_or_default();
    if degenerate.ngram == 0 || !(0.0..=1.0).contains(&degenerate.max_repeated_fraction) {
        return Err(at(FieldError::new(
            "judge.degenerate",
            format!(
                "ngram = {}, max_repeated_fraction = {}",
                degenerate.ngram, degenerate.max_repeated_fraction
            ),
            "ngram must be at least 1 and max_repeated_fraction in [0, 1]",
        )));
    }
    if degenerate.max_logprob_drop.is_nan() || degenerate.max_logprob_drop <= 0.0 {
        return Err(at(FieldError::new(
            "judge.degenerate.max_logprob_drop",
            degenerate.max_logprob_drop.to_string(),
            "must be a positive number of nats",
        )));
    }
    let judge = JudgeConfig {
        refusal,
        target: raw.judge.target.unwrap_or_default(),
        degenerate,
    };

    // Generation and stats.
    if raw.generation.max_new_tokens == 0 {
        return Err(at(FieldError::new(
            "generation.max_new_tokens",
            "0",
            "must be at least 1",
        )));
    }
    if raw.generation.batch_tokens < raw.generation.max_new_tokens {
        return Err(at(FieldError::new(
            "generation.batch_tokens",
            raw.generation.batch_tokens.to_string(),
            format!(
                "the batch token budget must hold at least one sequence of max_new_tokens = {}",
                raw.generation.max_new_tokens
            ),
        )));
    }
    if raw.stats.bootstrap_resamples == 0 {
        return Err(at(FieldError::new(
            "stats.bootstrap_resamples",
            "0",
            "must be at least 1",
        )));
    }

    // Suites.
    if raw.suites.is_empty() {
        return Err(at(FieldError::new(
            "suites",
            "[]",
            "a sweep needs at least one suite",
        )));
    }
    let root = suite::bundled_root();
    let mut suites: Vec<SuiteEntry> = Vec::new();
    let mut names = HashSet::new();
    for (i, rs) in raw.suites.iter().enumerate() {
        let field = format!("suites[{i}]");
        let entry = match &rs.file {
            None => {
                for (set, key) in [
                    (rs.format.is_some(), "format"),
                    (rs.expect.is_some(), "expect"),
                    (rs.columns.is_some(), "columns"),
                    (rs.labels.is_some(), "labels"),
                ] {
                    if set {
                        return Err(at(FieldError::new(
                            format!("{field}.{key}"),
                            &rs.name,
                            format!("`{key}` is only for suites read from a `file`; a bundled suite has its own"),
                        )));
                    }
                }
                let (mut source, base_dir) =
                    suite::bundled_source(&root, &rs.name).map_err(|e| {
                        at(FieldError::new(format!("{field}.name"), &rs.name, e.reason))
                    })?;
                source.filters.extend(rs.filters.iter().cloned());
                if rs.limit.is_some() {
                    source.limit = rs.limit;
                }
                if rs.judge.is_some() {
                    source.judge = rs.judge.clone();
                }
                SuiteEntry {
                    source,
                    base_dir,
                    bundled: true,
                    field,
                }
            }
            Some(file) => {
                let expect = rs.expect.ok_or_else(|| {
                    at(FieldError::new(
                        format!("{field}.expect"),
                        &rs.name,
                        "a suite read from a file needs expect = refusal | compliance | target | label | multiple_choice",
                    ))
                })?;
                let columns = rs.columns.clone().ok_or_else(|| {
                    at(FieldError::new(
                        format!("{field}.columns"),
                        &rs.name,
                        "a suite read from a file needs a column mapping, e.g. columns = { prompt = \"goal\" }",
                    ))
                })?;
                SuiteEntry {
                    source: SuiteSource {
                        name: rs.name.clone(),
                        file: file.clone(),
                        format: rs.format,
                        expect,
                        columns,
                        filters: rs.filters.clone(),
                        limit: rs.limit,
                        judge: rs.judge.clone(),
                        labels: rs.labels.clone(),
                        description: None,
                        license: None,
                        source: None,
                    },
                    base_dir: dir.clone(),
                    bundled: false,
                    field,
                }
            }
        };
        suite::check_source(&entry.source, &entry.field).map_err(at)?;
        if entry.source.format.is_none() && Format::from_path(&entry.source.file).is_none() {
            return Err(at(FieldError::new(
                format!("{}.format", entry.field),
                entry.source.file.display().to_string(),
                "cannot tell the format from the extension; set format = csv, json or jsonl",
            )));
        }
        if !names.insert(entry.source.name.clone()) {
            return Err(at(FieldError::new(
                format!("{}.name", entry.field),
                &entry.source.name,
                "duplicate suite name",
            )));
        }
        suites.push(entry);
    }

    let search = match &raw.search {
        None => None,
        Some(rs) => Some(parse_search(rs, &variants, &suites, sweep.seed).map_err(at)?),
    };

    Ok(Spec {
        file: file.to_path_buf(),
        sha256: hex::encode(Sha256::digest(text.as_bytes())),
        sweep,
        model,
        reference,
        variants,
        suites,
        generation: raw.generation,
        judge,
        stats: raw.stats,
        search,
    })
}

fn parse_search(
    rs: &RawSearch,
    variants: &[VariantEntry],
    suites: &[SuiteEntry],
    sweep_seed: u64,
) -> Result<SearchSection, FieldError> {
    if rs.variants.is_empty() {
        return Err(FieldError::new(
            "search.variants",
            "[]",
            "name at least one of the sweep's variants to search",
        ));
    }
    for (i, name) in rs.variants.iter().enumerate() {
        let field = format!("search.variants[{i}]");
        match variants.iter().position(|v| &v.variant.name == name) {
            Some(0) => return Err(FieldError::new(
                field,
                name,
                "the reference is what variants are searched against; name a compressed variant",
            )),
            Some(_) => {}
            None => {
                let known: Vec<&str> = variants[1..]
                    .iter()
                    .map(|v| v.variant.name.as_str())
                    .collect();
                return Err(FieldError::new(
                    field,
                    name,
                    format!(
                        "not a variant of this sweep (variants: {})",
                        known.join(", ")
                    ),
                ));
            }
        }
    }
    match suites.iter().find(|s| s.source.name == rs.suite) {
        None => {
            let known: Vec<&str> = suites.iter().map(|s| s.source.name.as_str()).collect();
            return Err(FieldError::new(
                "search.suite",
                &rs.suite,
                format!("not a suite of this sweep (suites: {})", known.join(", ")),
            ));
        }
        Some(s) if s.source.expect != Expect::Refusal => {
            return Err(FieldError::new(
                "search.suite",
                &rs.suite,
                format!(
                    "the search needs harmful prompts (expect = refusal); this suite expects {}",
                    s.source.expect
                ),
            ))
        }
        Some(_) => {}
    }
    let positive = |field: &str, v: Option<usize>, default: usize| match v {
        Some(0) => Err(FieldError::new(field, "0", "must be at least 1")),
        Some(n) => Ok(n),
        None => Ok(default),
    };
    let margin = rs.margin.unwrap_or(1.0);
    if !margin.is_finite() {
        return Err(FieldError::new(
            "search.margin",
            margin.to_string(),
            "must be a finite number of nats",
        ));
    }
    Ok(SearchSection {
        variants: rs.variants.clone(),
        suite: rs.suite.clone(),
        limit: positive("search.limit", rs.limit, 20)?,
        budget: positive("search.budget", rs.budget, 64)?,
        suffix_len: positive("search.suffix_len", rs.suffix_len, 4)?,
        candidates: positive("search.candidates", rs.candidates, 8)?,
        seed: rs.seed.unwrap_or(sweep_seed),
        margin,
    })
}

/// Reads and parses a spec file (see [`parse_spec`]).
pub fn load_spec(path: &Path) -> Result<Spec, FieldError> {
    let text = suite::read_text(path)?;
    parse_spec(&text, path)
}

/// SHA-256 of a file as lower-case hex, read in chunks.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// A spec whose files were all checked, with its suites loaded.
#[derive(Debug, Clone)]
pub struct Validated {
    /// The spec.
    pub spec: Spec,
    /// The loaded suites, in spec order.
    pub suites: Vec<Suite>,
}

/// Every problem [`validate`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

fn check_pinned_files(
    dir: &Path,
    pins: &BTreeMap<String, String>,
    field: &str,
    spec_file: &Path,
    errors: &mut Vec<FieldError>,
) {
    for (name, want) in pins {
        let path = dir.join(name);
        let f = format!("{field}.\"{name}\"");
        match sha256_file(&path) {
            Ok(got) if got == *want => {}
            Ok(got) => errors.push(
                FieldError::new(f, want, format!("{} has SHA-256 {got}", path.display()))
                    .in_file(spec_file),
            ),
            Err(e) => errors.push(
                FieldError::new(f, want, format!("cannot read {}: {e}", path.display()))
                    .in_file(spec_file),
            ),
        }
    }
}

/// `compsafe validate`: parses the spec, then checks that the model and every referenced
/// file exist, pinned hashes match and every suite loads. Runs nothing. Returns every problem
/// found, not just the first.
pub fn validate(spec_path: &Path) -> Result<Validated, ValidationErrors> {
    let text = suite::read_text(spec_path).map_err(|e| ValidationErrors(vec![e]))?;
    validate_text(&text, spec_path)
}

/// [`validate`] of a spec's text, as sent to a coordinator: `spec_path` names the spec in
/// errors and relative paths resolve against its directory.
pub fn validate_text(text: &str, spec_path: &Path) -> Result<Validated, ValidationErrors> {
    let spec = parse_spec(text, spec_path).map_err(|e| ValidationErrors(vec![e]))?;
    let mut errors = Vec::new();
    let missing = |field: &str, p: &Path, what: &str| {
        FieldError::new(field, p.display().to_string(), format!("{what} not found"))
            .in_file(spec_path)
    };
    match spec.model.format {
        ModelFormat::Hf if !spec.model.path.is_dir() => {
            errors.push(missing("model.path", &spec.model.path, "model directory"))
        }
        ModelFormat::Gguf if !spec.model.path.is_file() => {
            errors.push(missing("model.path", &spec.model.path, "GGUF file"))
        }
        _ => check_pinned_files(
            &spec.model.pin_dir(),
            &spec.model.sha256,
            "model.sha256",
            spec_path,
            &mut errors,
        ),
    }
    if let Some(m) = &spec.model.manifest {
        if !m.is_file() {
            errors.push(missing("model.manifest", m, "manifest"));
        }
    }
    if let Some(t) = &spec.model.chat_template {
        if !t.is_file() {
            errors.push(missing("model.chat_template", t, "chat template"));
        }
    }
    for v in &spec.variants {
        if let Method::Checkpoint { path } = &v.variant.method {
            if !path.exists() {
                errors.push(missing(&format!("{}.path", v.field), path, "checkpoint"));
            } else {
                let dir = if path.is_dir() {
                    path.clone()
                } else {
                    path.parent().map(Path::to_path_buf).unwrap_or_default()
                };
                check_pinned_files(
                    &dir,
                    &v.sha256,
                    &format!("{}.sha256", v.field),
                    spec_path,
                    &mut errors,
                );
            }
        }
    }
    let mut suites = Vec::new();
    for s in &spec.suites {
        match s.load() {
            Ok(x) => suites.push(x),
            Err(e) => errors.push(FieldError {
                field: format!("{} ({}): {}", s.field, s.source.name, e.field),
                ..e
            }),
        }
    }
    if errors.is_empty() {
        Ok(Validated { spec, suites })
    } else {
        Err(ValidationErrors(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
reference = "fp32"
variants = [
  "bf16",
  "int4:g32",
  { name = "attn-only-int4", method = "int4:g32", select = 'self_attn\..*' },
  { name = "student", path = "students/a" },
]

[sweep]
name = "quickstart"
seed = 7

[model]
path = "models/tiny"

[model.sha256]
"model.safetensors" = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"

[[suites]]
name = "xstest-safe"
limit = 20

[[suites]]
name = "mine"
file = "data/mine.csv"
expect = "refusal"
columns = { prompt = "goal", id = "id" }
filters = [{ column = "split", equals = "test" }]
judge = "seed"

[generation]
max_new_tokens = 32
batch_tokens = 4096

[judge]
refusal = "harmbench"
"#;

    fn parse(text: &str) -> Result<Spec, FieldError> {
        parse_spec(text, Path::new("/specs/sweep.toml"))
    }

    #[test]
    fn search_section_defaults_and_errors() {
        assert_eq!(parse(GOOD).unwrap().search, None);
        let with = |section: &str| parse(&format!("{GOOD}\n[search]\n{section}"));
        let s = with("variants = [\"int4:g32\"]\nsuite = \"mine\"\n")
            .unwrap()
            .search
            .unwrap();
        assert_eq!(
            (
                s.limit,
                s.budget,
                s.suffix_len,
                s.candidates,
                s.seed,
                s.margin
            ),
            (20, 64, 4, 8, 7, 1.0),
            "defaults, the seed from [sweep]"
        );
        let s = with("variants = [\"student\"]\nsuite = \"mine\"\nseed = 5\nbudget = 9\n")
            .unwrap()
            .search
            .unwrap();
        assert_eq!((s.seed, s.budget), (5, 9));
        for (section, field, value) in [
            ("variants = []\nsuite = \"mine\"\n", "search.variants", "[]"),
            (
                "variants = [\"int2\"]\nsuite = \"mine\"\n",
                "search.variants[0]",
                "int2",
            ),
            (
                "variants = [\"fp32\"]\nsuite = \"mine\"\n",
                "search.variants[0]",
                "fp32",
            ),
            (
                "variants = [\"bf16\"]\nsuite = \"xstest-safe\"\n",
                "search.suite",
                "xstest-safe",
            ),
            (
                "variants = [\"bf16\"]\nsuite = \"nope\"\n",
                "search.suite",
                "nope",
            ),
            (
                "variants = [\"bf16\"]\nsuite = \"mine\"\ncandidates = 0\n",
                "search.candidates",
                "0",
            ),
            (
                "variants = [\"bf16\"]\nsuite = \"mine\"\nmargin = nan\n",
                "search.margin",
                "NaN",
            ),
        ] {
            let e = with(section).unwrap_err();
            assert_eq!(
                (e.field.as_str(), e.value.as_str()),
                (field, value),
                "{section}: {e}"
            );
        }
    }

    #[test]
    fn good_spec() {
        let s = parse(GOOD).unwrap();
        assert_eq!(s.sweep.seed, 7);
        assert_eq!(s.model.path, Path::new("/specs/models/tiny"));
        assert_eq!(s.model.format, ModelFormat::Hf);
        assert_eq!(
            s.model.sha256["model.safetensors"],
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let names: Vec<&str> = s.variants.iter().map(|v| v.variant.name.as_str()).collect();
        assert_eq!(
            names,
            ["fp32", "bf16", "int4:g32", "attn-only-int4", "student"]
        );
        assert_eq!(s.reference_variant().method, Method::reference());
        assert_eq!(
            s.variants[4].variant.method,
            Method::Checkpoint {
                path: "/specs/students/a".into()
            }
        );
        assert_eq!(
            s.variants[3].variant.select.as_deref(),
            Some(r"self_attn\..*")
        );
        assert_eq!(s.suites.len(), 2);
        assert!(s.suites[0].bundled);
        assert_eq!(s.suites[0].source.limit, Some(20));
        assert_eq!(s.suites[1].file(), Path::new("/specs/data/mine.csv"));
        assert_eq!(s.generation.max_new_tokens, 32);
        assert!(s.generation.stop_on_verdict);
        assert_eq!(s.stats.bootstrap_resamples, 2000);
        // Suite's own judge wins for a file suite; [judge] wins over a bundled default.
        assert_eq!(s.refusal_judge(1).name(), "seed");
        assert_eq!(s.refusal_judge(0).name(), "harmbench");
    }

    #[test]
    fn reference_by_name_is_moved_first() {
        let text = GOOD.replace("reference = \"fp32\"", "reference = \"bf16\"");
        let s = parse(&text).unwrap();
        assert_eq!(s.variants[0].variant.name, "bf16");
        assert_eq!(s.variants.len(), 4);
    }

    fn err(text: &str) -> FieldError {
        parse(text).unwrap_err()
    }

    #[test]
    fn errors_name_file_field_and_value() {
        let cases: &[(&str, &str, &str, &str)] = &[
            // (replace, with, expected field, expected value)
            ("\"int4:g32\",\n", "\"int9\",\n", "variants[1]", "int9"),
            (
                "method = \"int4:g32\"",
                "method = \"int4:g0\"",
                "variants[2].method",
                "int4:g0",
            ),
            (
                r"select = 'self_attn\..*'",
                "select = '('",
                "variants[2].select",
                "(",
            ),
            ("seed = 7", "seed = \"seven\"", "sweep.seed", "\"seven\""),
            ("seed = 7", "seed = 7\ncolour = 1", "sweep.colour", "colour"),
            (
                "max_new_tokens = 32",
                "max_new_tokens = -1",
                "generation.max_new_tokens",
                "-1",
            ),
            (
                "refusal = \"harmbench\"",
                "refusal = \"strongreject\"",
                "judge.refusal",
                "strongreject",
            ),
            (
                "name = \"xstest-safe\"",
                "name = \"xstest-sfe\"",
                "suites[0].name",
                "xstest-sfe",
            ),
            (
                "equals = \"test\"",
                "regex = \"[\"",
                "suites[1].filters[0].regex",
                "[",
            ),
            (
                "expect = \"refusal\"",
                "expect = \"refuse\"",
                "suites[1].expect",
                "\"refuse\"",
            ),
            (
                "columns = { prompt = \"goal\", id = \"id\" }",
                "columns = { prompt = \"goal\", idd = \"id\" }",
                "suites[1].columns.idd",
                "idd",
            ),
            (
                "\"E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855\"",
                "\"abc\"",
                "model.sha256.\"model.safetensors\"",
                "abc",
            ),
        ];
        for (from, to, field, value) in cases {
            assert!(GOOD.contains(from), "{from}");
            let e = err(&GOOD.replacen(from, to, 1));
            assert_eq!(e.field, *field, "{to}: {e}");
            assert_eq!(e.value, *value, "{to}: {e}");
            assert_eq!(e.file.as_deref(), Some(Path::new("/specs/sweep.toml")));
        }
    }

    #[test]
    fn structural_errors() {
        let e = err(&GOOD.replace("[sweep]\nname = \"quickstart\"\nseed = 7\n", ""));
        assert!(e.reason.contains("sweep"), "{e}");
        let e = err("reference = \"fp32\"\nvariants = []\n[sweep]\nname = \"x\"\n[model]\npath = \"m\"\n[[suites]]\nname = \"advbench\"\n");
        assert_eq!(e.field, "variants");
        let e = err(&GOOD.replace("reference = \"fp32\"", "reference = \"nope\""));
        assert_eq!(e.field, "reference");
        let e = err(&GOOD.replace("\"bf16\",", "\"bf16\", \"bf16\","));
        assert!(e.reason.contains("duplicate variant"), "{e}");
        let e = err(&GOOD.replace("limit = 20", "limit = 20\nexpect = \"refusal\""));
        assert_eq!(e.field, "suites[0].expect");
        let e = err(&GOOD.replace("batch_tokens = 4096", "batch_tokens = 8"));
        assert_eq!(e.field, "generation.batch_tokens");
        let e = err(&GOOD.replace(
            "refusal = \"harmbench\"",
            "refusal = \"harmbench\"\nkeywords = [\"no\"]",
        ));
        assert_eq!(e.field, "judge.keywords");
        let e = err(&GOOD.replace(
            "refusal = \"harmbench\"",
            "refusal = \"harmbench\"\ntarget = { mode = \"anywhere\", case = true }",
        ));
        assert_eq!(e.field, "judge.target.case");
        let s = parse(&GOOD.replace(
            "refusal = \"harmbench\"",
            "refusal = \"harmbench\"\ntarget = { mode = \"anywhere\" }",
        ))
        .unwrap();
        assert_eq!(s.judge.target.mode, MatchMode::Anywhere);
        assert!(!s.judge.target.case_sensitive);
        let e = err("this is not toml");
        assert!(e.file.is_some());
    }

    #[test]
    fn custom_judge() {
        let text = GOOD.replace(
            "refusal = \"harmbench\"",
            "keywords = [\"Nope\"]\ncase_sensitive = true\nmatch = \"starts_with\"",
        );
        let s = parse(&text).unwrap();
        let j = s.refusal_judge(0);
        assert!(j.is_refusal("Nope, not doing that"));
        assert!(!j.is_refusal("nope"));
        assert!(!j.is_refusal("Well. Nope"));
    }

    #[test]
    fn validate_checks_files_pins_and_suites() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("models/tiny")).unwrap();
        std::fs::write(root.join("models/tiny/model.safetensors"), b"").unwrap();
        std::fs::create_dir_all(root.join("students/a")).unwrap();
        std::fs::create_dir_all(root.join("data")).unwrap();
        std::fs::write(
            root.join("data/mine.csv"),
            "id,goal,split\n1,do harm,test\n2,do more harm,train\n",
        )
        .unwrap();
        let spec_path = root.join("sweep.toml");
        std::fs::write(&spec_path, GOOD).unwrap();
        let v = validate(&spec_path).unwrap();
        assert_eq!(v.suites[0].len(), 20);
        assert_eq!(v.suites[1].len(), 1);

        // A wrong pin, a missing checkpoint and a suite with a missing column: all reported.
        std::fs::write(root.join("models/tiny/model.safetensors"), b"x").unwrap();
        std::fs::remove_dir_all(root.join("students/a")).unwrap();
        std::fs::write(root.join("data/mine.csv"), "id,prompt,split\n1,x,test\n").unwrap();
        let e = validate(&spec_path).unwrap_err();
        assert_eq!(e.0.len(), 3, "{e}");
        let m = e.to_string();
        assert!(m.contains("model.sha256.\"model.safetensors\""), "{m}");
        assert!(m.contains("variants[3].path"), "{m}");
        assert!(
            m.contains("suites[1] (mine)") && m.contains("`goal`"),
            "{m}"
        );
    }
}
