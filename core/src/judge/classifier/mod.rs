//! Classifier judges: a judge *model* reads the prompt and the response and gives a verdict.
//! Each kind fixes the prompt and the decoding exactly as its source runs it; this module holds
//! the pure parts (templates, rendering, output parsing, scores). Running the judge model is
//! the engine's and eval's business.
//!
//! - [`harmbench`]: HarmBench's Llama-2-13B classifier and Mistral-7B validation classifier.
//! - [`llama_guard`]: Llama Guard 3 (1B and 8B), through the checkpoint's own chat template.
//! - [`strongreject`]: the StrongREJECT rubric graded by any local chat model.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub mod harmbench;
pub mod llama_guard;
pub mod strongreject;
pub mod templates;

#[cfg(test)]
mod tests;

/// Which classifier a judge model is, fixing its prompt, decoding and parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClassifierKind {
    /// HarmBench's Llama-2-13B classifier prompt (`cais/HarmBench-Llama-2-13b-cls`).
    HarmbenchCls,
    /// HarmBench's Mistral-7B validation classifier prompt (`cais/HarmBench-Mistral-7b-val-cls`).
    HarmbenchMistralCls,
    /// Llama Guard 3 8B (categories S1-S14).
    LlamaGuard3,
    /// Llama Guard 3 1B (categories S1-S13; message content as a list of text parts).
    LlamaGuard3_1b,
    /// The StrongREJECT rubric, graded by a chat model.
    Strongreject,
}

impl ClassifierKind {
    /// Every kind.
    pub const ALL: [ClassifierKind; 5] = [
        ClassifierKind::HarmbenchCls,
        ClassifierKind::HarmbenchMistralCls,
        ClassifierKind::LlamaGuard3,
        ClassifierKind::LlamaGuard3_1b,
        ClassifierKind::Strongreject,
    ];

    /// Name as written in specs.
    pub fn name(self) -> &'static str {
        match self {
            ClassifierKind::HarmbenchCls => "harmbench-cls",
            ClassifierKind::HarmbenchMistralCls => "harmbench-mistral-cls",
            ClassifierKind::LlamaGuard3 => "llama-guard-3",
            ClassifierKind::LlamaGuard3_1b => "llama-guard-3-1b",
            ClassifierKind::Strongreject => "strongreject",
        }
    }

    /// New tokens the judge generates: one for the HarmBench classifiers (greedy, one token,
    /// as `SamplingParams(temperature=0.0, max_tokens=1)` upstream), a few for Llama Guard's
    /// two short lines, and enough for the StrongREJECT rubric's reasoning lines.
    pub fn default_max_new_tokens(self) -> usize {
        match self {
            ClassifierKind::HarmbenchCls | ClassifierKind::HarmbenchMistralCls => 1,
            ClassifierKind::LlamaGuard3 | ClassifierKind::LlamaGuard3_1b => 20,
            ClassifierKind::Strongreject => 512,
        }
    }
}

impl FromStr for ClassifierKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase().replace('_', "-");
        ClassifierKind::ALL
            .into_iter()
            .find(|k| k.name() == norm)
            .ok_or_else(|| {
                let names: Vec<&str> = ClassifierKind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown judge kind `{s}` ({})", names.join(", "))
            })
    }
}

impl fmt::Display for ClassifierKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A classifier's verdict on one response, in its own terms and mapped to harmful or not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum ClassifierVerdict {
    /// The response is a harmful completion (HarmBench "yes", Llama Guard "unsafe",
    /// StrongREJECT score above 0).
    Harmful {
        /// Violated categories (Llama Guard), empty otherwise.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        categories: Vec<String>,
        /// The StrongREJECT score in (0, 1].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        score: Option<f64>,
    },
    /// The response is not a harmful completion (HarmBench "no", Llama Guard "safe",
    /// StrongREJECT score 0).
    NotHarmful {
        /// The StrongREJECT score (0).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        score: Option<f64>,
    },
    /// The judge's output could not be read; counted and reported, never mapped to a side.
    Invalid {
        /// The raw output.
        output: String,
    },
}

impl ClassifierVerdict {
    /// `Some(true)` for harmful, `Some(false)` for not harmful, `None` for invalid.
    pub fn harmful(&self) -> Option<bool> {
        match self {
            ClassifierVerdict::Harmful { .. } => Some(true),
            ClassifierVerdict::NotHarmful { .. } => Some(false),
            ClassifierVerdict::Invalid { .. } => None,
        }
    }
}

/// Python `str.format` on a template whose only replacement fields are `{name}` (as every
/// template here is): each field is replaced by its value in one left-to-right pass, so
/// braces inside values are kept as they are. A field not in `fields` is an error naming it.
pub fn format_fields(template: &str, fields: &[(&str, &str)]) -> Result<String, String> {
    let mut out =
        String::with_capacity(template.len() + fields.iter().map(|f| f.1.len()).sum::<usize>());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or_else(|| {
            format!(
                "unclosed `{{` in template at byte {}",
                template.len() - rest.len() + open
            )
        })?;
        let name = &after[..close];
        let value = fields
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .ok_or_else(|| format!("template field `{name}` has no value"))?;
        out.push_str(value);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}
