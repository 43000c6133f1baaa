//! `[analysis.heads]`, `[analysis.sensitivity]` and `[analysis.conditioned]`: the analyses a
//! sweep runs as work units next to its evaluation (see `docs/analyses.md`).
//!
//! An analysis names its suites. A suite of the sweep's `[[suites]]` is used as it is there
//! (its limit, filters and judge); any other name is a bundled suite, added to the sweep for
//! the analysis alone (not evaluated as a cell) with the section's `limit`.

use serde::{Deserialize, Serialize};

use super::raw::RawAnalysisSuites;
use super::types::SuiteEntry;
use crate::error::FieldError;
use crate::suite::{self, Expect};
use crate::variant::{Method, Variant};

/// The compressors `[analysis.conditioned]` checks when it names none.
pub const DEFAULT_CONDITIONED_VARIANTS: [&str; 7] = [
    "int8",
    "int4:g32",
    "gguf:q4k",
    "gguf:q6k",
    "gguf:q2k",
    "prune:0.5",
    "prune:2of4",
];

/// What `[analysis.heads]` ablates, one at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum HeadsUnit {
    /// One attention head (its columns of the output projection).
    #[default]
    Head,
    /// One whole layer (attention and MLP outputs).
    Layer,
    /// One block of `channels` MLP channels (their columns of `down_proj`).
    Mlp,
}

impl HeadsUnit {
    /// The name in reports and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            HeadsUnit::Head => "head",
            HeadsUnit::Layer => "layer",
            HeadsUnit::Mlp => "mlp",
        }
    }
}

/// What `[analysis.sensitivity]` compresses, one at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SensitivityUnit {
    /// A decoder layer's seven linear weights.
    #[default]
    Layer,
    /// A layer's attention projections, or its MLP projections.
    Group,
    /// One weight matrix.
    Tensor,
}

impl SensitivityUnit {
    /// The name in reports and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            SensitivityUnit::Layer => "layer",
            SensitivityUnit::Group => "group",
            SensitivityUnit::Tensor => "tensor",
        }
    }
}

/// `[analysis.heads]`: which heads (or layers, or MLP channel blocks) carry the refusals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeadsSection {
    /// Index in the spec's suites of the harmful suite (expect = refusal).
    pub suite: usize,
    /// Index of the benign suite whose likelihood measures capability.
    pub benign: usize,
    /// Prompts per suite (the first N).
    pub limit: usize,
    /// Unit of ablation.
    pub unit: HeadsUnit,
    /// MLP channels per unit with `unit = "mlp"`.
    pub channels: usize,
    /// Confirm the top K by generation (0: no confirmation).
    pub confirm: usize,
    /// Random sets of K units compared with the top K.
    pub random_sets: usize,
    /// Seed of the random sets.
    pub seed: u64,
    /// Tokens generated per prompt (benign responses, confirmation).
    pub max_new_tokens: u32,
    /// Work units the scan is split into (each ablates its share of the units).
    pub slices: usize,
}

/// `[analysis.sensitivity]`: which layers would break safety if compressed alone.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SensitivitySection {
    /// The compression applied to one unit at a time.
    pub variant: Variant,
    /// Index of the harmful suite.
    pub suite: usize,
    /// Index of the benign suite whose responses measure KL divergence.
    pub benign: usize,
    /// Prompts per suite.
    pub limit: usize,
    /// Unit compressed at a time.
    pub unit: SensitivityUnit,
    /// Generate and judge the harmful suite for every unit.
    pub confirm: bool,
    /// Holm-adjusted significance level of the confirmation.
    pub alpha: f64,
    /// Tokens generated per prompt.
    pub max_new_tokens: u32,
    /// Work units the scan is split into (each compresses its share of the units).
    pub slices: usize,
}

/// `[analysis.conditioned]`: behaviour that appears only under compression.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConditionedSection {
    /// Index of the harmful suite (refusal rate).
    pub suite: usize,
    /// Index of the benign suite (over-refusal).
    pub benign: usize,
    /// Index of a suite with target strings (attack success), if any.
    pub target_suite: Option<usize>,
    /// Attack success on the harmful prompts: the response starts with this text.
    pub target: Option<String>,
    /// The compressors checked, each against f32 and its noise control.
    pub variants: Vec<Variant>,
    /// Noise control: this many times each compressed tensor's weight standard deviation.
    pub noise: f64,
    /// Seed of the noise.
    pub seed: u64,
    /// Prompts per suite.
    pub limit: usize,
    /// Family-wise significance level (Holm) of a flag.
    pub alpha: f64,
    /// Tokens generated per prompt.
    pub max_new_tokens: u32,
}

/// The `[analysis]` sections of a spec.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AnalysisSections {
    /// `[analysis.heads]`.
    pub heads: Option<HeadsSection>,
    /// `[analysis.sensitivity]`.
    pub sensitivity: Option<SensitivitySection>,
    /// `[analysis.conditioned]`.
    pub conditioned: Option<ConditionedSection>,
}

impl AnalysisSections {
    /// Whether any analysis runs.
    pub fn any(&self) -> bool {
        self.heads.is_some() || self.sensitivity.is_some() || self.conditioned.is_some()
    }
}

/// The index in `suites` of the suite an analysis names: the sweep's own entry of that name,
/// or a bundled suite added for analyses alone (not evaluated) with `limit`. `field` names
/// the analysis's key in errors.
pub(super) fn suite_ref(
    suites: &mut Vec<SuiteEntry>,
    name: &str,
    limit: usize,
    field: &str,
) -> Result<usize, FieldError> {
    if let Some(i) = suites.iter().position(|s| s.source.name == name) {
        let s = &suites[i];
        if !s.evaluate && s.source.limit != Some(limit) {
            return Err(FieldError::new(
                field,
                name,
                format!(
                    "another analysis uses this suite with limit {}; give both the same limit \
                     or list the suite in [[suites]]",
                    s.source.limit.map_or("none".into(), |l| l.to_string())
                ),
            ));
        }
        return Ok(i);
    }
    let (mut source, base_dir) = suite::bundled_source(&suite::bundled_root(), name)
        .map_err(|e| FieldError::new(field, name, e.reason))?;
    source.limit = Some(limit);
    suites.push(SuiteEntry {
        source,
        base_dir,
        bundled: true,
        field: field.to_string(),
        evaluate: false,
    });
    Ok(suites.len() - 1)
}

/// The harmful and benign suites of an analysis, checked for what they expect.
fn harmful_and_benign(
    suites: &mut Vec<SuiteEntry>,
    raw: &RawAnalysisSuites,
    default_suite: Option<&str>,
    limit: usize,
    section: &str,
) -> Result<(usize, usize), FieldError> {
    let suite_field = format!("{section}.suite");
    let name = raw
        .suite
        .as_deref()
        .or(default_suite)
        .ok_or_else(|| FieldError::new(&suite_field, "", "name the harmful suite"))?;
    let h = suite_ref(suites, name, limit, &suite_field)?;
    if suites[h].source.expect != Expect::Refusal {
        return Err(FieldError::new(
            suite_field,
            name,
            format!(
                "a suite of harmful prompts (expect = refusal) is needed, this one expects {}",
                suites[h].source.expect
            ),
        ));
    }
    let benign_field = format!("{section}.benign");
    let bname = raw.benign.as_deref().unwrap_or("fixture-benign");
    let b = suite_ref(suites, bname, limit, &benign_field)?;
    let e = suites[b].source.expect;
    if !e.generates() || e == Expect::Refusal {
        return Err(FieldError::new(
            benign_field,
            bname,
            format!(
                "a suite of benign prompts (expect = compliance) is needed, this one expects {e}"
            ),
        ));
    }
    Ok((h, b))
}

fn positive(field: &str, v: Option<usize>, default: usize) -> Result<usize, FieldError> {
    match v {
        Some(0) => Err(FieldError::new(field, "0", "must be at least 1")),
        Some(n) => Ok(n),
        None => Ok(default),
    }
}

fn alpha(field: &str, v: Option<f64>) -> Result<f64, FieldError> {
    let a = v.unwrap_or(0.05);
    if a > 0.0 && a < 1.0 {
        Ok(a)
    } else {
        Err(FieldError::new(
            field,
            a.to_string(),
            "must be between 0 and 1",
        ))
    }
}

/// The validated `[analysis]` sections; suites they name are added to `suites` when the
/// sweep does not list them.
pub(super) fn parse_analysis(
    raw: &super::raw::RawAnalysis,
    suites: &mut Vec<SuiteEntry>,
    sweep_seed: u64,
) -> Result<AnalysisSections, FieldError> {
    let mut out = AnalysisSections::default();
    if let Some(h) = &raw.heads {
        let limit = positive("analysis.heads.limit", h.limit, 100)?;
        let (suite, benign) =
            harmful_and_benign(suites, &h.suites(), None, limit, "analysis.heads")?;
        let unit = h.unit.unwrap_or_default();
        let channels = positive("analysis.heads.channels", h.channels, 64)?;
        if h.channels.is_some() && unit != HeadsUnit::Mlp {
            return Err(FieldError::new(
                "analysis.heads.channels",
                channels.to_string(),
                "channels is for unit = \"mlp\"",
            ));
        }
        out.heads = Some(HeadsSection {
            suite,
            benign,
            limit,
            unit,
            channels,
            confirm: h.confirm.unwrap_or(0),
            random_sets: h.random_sets.unwrap_or(5),
            seed: h.seed.unwrap_or(sweep_seed),
            max_new_tokens: positive("analysis.heads.max_new_tokens", h.max_new_tokens, 32)? as u32,
            slices: positive("analysis.heads.slices", h.slices, 8)?,
        });
    }
    if let Some(s) = &raw.sensitivity {
        let field = "analysis.sensitivity.variant";
        let text = s
            .variant
            .as_deref()
            .ok_or_else(|| FieldError::new(field, "", "name the compression, e.g. int3:g64"))?;
        let variant = Variant::parse(text, field)?;
        if matches!(
            variant.method,
            Method::Checkpoint { .. }
                | Method::Distill(_)
                | Method::Heads { .. }
                | Method::Ablate { .. }
                | Method::Noise { .. }
        ) {
            return Err(FieldError::new(
                field,
                text,
                "sensitivity needs a compression of the weights (integer, GGUF, cast or pruning)",
            ));
        }
        let limit = positive("analysis.sensitivity.limit", s.limit, 100)?;
        let (suite, benign) =
            harmful_and_benign(suites, &s.suites(), None, limit, "analysis.sensitivity")?;
        out.sensitivity = Some(SensitivitySection {
            variant,
            suite,
            benign,
            limit,
            unit: s.unit.unwrap_or_default(),
            confirm: s.confirm.unwrap_or(false),
            alpha: alpha("analysis.sensitivity.alpha", s.alpha)?,
            max_new_tokens: positive("analysis.sensitivity.max_new_tokens", s.max_new_tokens, 32)?
                as u32,
            slices: positive("analysis.sensitivity.slices", s.slices, 4)?,
        });
    }
    if let Some(c) = &raw.conditioned {
        out.conditioned = Some(parse_conditioned(c, suites, sweep_seed)?);
    }
    Ok(out)
}

fn parse_conditioned(
    c: &super::raw::RawConditioned,
    suites: &mut Vec<SuiteEntry>,
    sweep_seed: u64,
) -> Result<ConditionedSection, FieldError> {
    let limit = positive("analysis.conditioned.limit", c.limit, 100)?;
    let (suite, benign) = harmful_and_benign(
        suites,
        &c.suites(),
        Some("fixture-harmful"),
        limit,
        "analysis.conditioned",
    )?;
    let target_suite = match &c.target_suite {
        None => None,
        Some(name) => {
            let field = "analysis.conditioned.target_suite";
            let t = suite_ref(suites, name, limit, field)?;
            if suites[t].source.expect != Expect::Target {
                return Err(FieldError::new(
                    field,
                    name,
                    "a suite with target strings (expect = target) is needed",
                ));
            }
            Some(t)
        }
    };
    if let Some(t) = &c.target {
        if t.trim().is_empty() {
            return Err(FieldError::new(
                "analysis.conditioned.target",
                "",
                "the target string is empty",
            ));
        }
    }
    let noise = c.noise.unwrap_or(0.05);
    if !(noise.is_finite() && noise > 0.0 && noise <= 1.0) {
        return Err(FieldError::new(
            "analysis.conditioned.noise",
            noise.to_string(),
            "the noise scale must be a number in (0, 1] (times each tensor's weight standard \
             deviation)",
        ));
    }
    let names: Vec<String> = match &c.variants {
        Some(v) => v.clone(),
        None => DEFAULT_CONDITIONED_VARIANTS
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    if names.is_empty() {
        return Err(FieldError::new(
            "analysis.conditioned.variants",
            "[]",
            "name at least one quantizer or pruner",
        ));
    }
    let mut variants: Vec<Variant> = Vec::new();
    for (i, item) in names.iter().enumerate() {
        let field = format!("analysis.conditioned.variants[{i}]");
        if item.trim().is_empty() {
            return Err(FieldError::new(field, item, "an empty item"));
        }
        let v = Variant::parse(item.trim(), &field)?;
        if !matches!(
            v.method,
            Method::Rtn { .. } | Method::Gguf { .. } | Method::Prune { .. } | Method::NofM { .. }
        ) {
            return Err(FieldError::new(
                field,
                item,
                "not a quantizer or pruner (int*, gguf:*, prune:*)",
            ));
        }
        if variants.iter().any(|w| w.name == v.name) {
            return Err(FieldError::new(field, item, "listed twice"));
        }
        variants.push(v);
    }
    Ok(ConditionedSection {
        suite,
        benign,
        target_suite,
        target: c.target.clone(),
        variants,
        noise,
        seed: c.seed.unwrap_or(sweep_seed),
        limit,
        alpha: alpha("analysis.conditioned.alpha", c.alpha)?,
        max_new_tokens: positive("analysis.conditioned.max_new_tokens", c.max_new_tokens, 40)?
            as u32,
    })
}
