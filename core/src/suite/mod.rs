//! Prompt suites: CSV, JSON (array of objects) and JSONL files read through a column mapping,
//! filtered, and checked against what the suite expects of the model.
//!
//! A suite is described by a [`SuiteSource`] — the same table whether it comes from a bundled
//! descriptor (`suites/<name>.toml`) or from a sweep spec's `[[suites]]`. Loading never
//! panics on bad input: every problem comes back as a [`FieldError`] naming the file, the row
//! (line for CSV and JSONL, index for a JSON array) and the column.

mod build;
mod bundled;
mod rows;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use regex::Regex;
use serde::{Deserialize, Serialize};

pub use build::{check_source, load_suite, suite_from_text};
pub use bundled::{bundled_names, bundled_root, bundled_source};
pub use rows::read_text;

use crate::error::FieldError;
use crate::judge::Preset;
use crate::mc::Choice;

/// File format of a suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Comma-separated values with a header row.
    Csv,
    /// A JSON array of objects.
    Json,
    /// One JSON object per line.
    Jsonl,
}

impl Format {
    /// Guesses the format from a file extension.
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" => Some(Format::Csv),
            "json" => Some(Format::Json),
            "jsonl" | "ndjson" => Some(Format::Jsonl),
            _ => None,
        }
    }
}

/// What a suite expects of a well-behaved model, which decides its metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// Harmful requests: the model should refuse (refusal rate).
    Refusal,
    /// Benign requests: refusing is over-refusal.
    Compliance,
    /// A target behaviour (attack success rate), e.g. AdvBench's "Sure, here is ...".
    Target,
    /// Classification: the response should name the gold label (accuracy).
    Label,
    /// Multiple choice scored by log-likelihood (mc1 / mc2).
    MultipleChoice,
}

impl Expect {
    /// Name as written in specs and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Expect::Refusal => "refusal",
            Expect::Compliance => "compliance",
            Expect::Target => "target",
            Expect::Label => "label",
            Expect::MultipleChoice => "multiple_choice",
        }
    }

    /// Whether the suite's prompts are answered by generation (all but multiple choice).
    pub fn generates(self) -> bool {
        self != Expect::MultipleChoice
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Expect {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "refusal" => Ok(Expect::Refusal),
            "compliance" => Ok(Expect::Compliance),
            "target" => Ok(Expect::Target),
            "label" => Ok(Expect::Label),
            "multiple_choice" | "mc" => Ok(Expect::MultipleChoice),
            _ => Err(format!(
                "unknown expect `{s}` (refusal, compliance, target, label, multiple_choice)"
            )),
        }
    }
}

/// Which column holds what.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Columns {
    /// The prompt (the question, for multiple choice).
    pub prompt: String,
    /// A stable prompt id; defaults to the 1-based row number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Target string for attack-success suites.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Gold label for classification suites.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// A category, carried into records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Multiple-choice answers for mc2 (and mc1 when `mc1_choices` is absent and exactly one
    /// answer is true): a JSON object `{answer: 0|1}`, `{"choices": [...], "labels": [...]}`,
    /// or an array of `[answer, 0|1]` pairs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choices: Option<String>,
    /// Multiple-choice answers for mc1 (exactly one true), same encodings as `choices`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mc1_choices: Option<String>,
}

/// A row filter as written: one column and exactly one condition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterSpec {
    /// The column tested.
    pub column: String,
    /// Keep rows whose value equals this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
    /// Keep rows whose value differs from this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_equals: Option<String>,
    /// Keep rows whose value matches this regex (unanchored; use `^...$` to anchor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// Keep rows whose value does not match this regex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_regex: Option<String>,
}

/// A compiled row filter.
#[derive(Debug, Clone)]
pub struct Filter {
    column: String,
    cond: Cond,
}

#[derive(Debug, Clone)]
enum Cond {
    Equals(String),
    NotEquals(String),
    Regex(Regex),
    NotRegex(Regex),
}

impl Filter {
    /// Compiles a filter; `field` is where it was written (`suites[1].filters[0]`).
    pub fn compile(spec: &FilterSpec, field: &str) -> Result<Filter, FieldError> {
        let set = [
            spec.equals.is_some(),
            spec.not_equals.is_some(),
            spec.regex.is_some(),
            spec.not_regex.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if set != 1 {
            return Err(FieldError::new(
                field,
                &spec.column,
                "a filter needs exactly one of equals, not_equals, regex, not_regex",
            ));
        }
        if spec.column.is_empty() {
            return Err(FieldError::new(
                format!("{field}.column"),
                "",
                "column name is empty",
            ));
        }
        let compile = |r: &str, f: &str| {
            Regex::new(r).map_err(|e| FieldError::new(format!("{field}.{f}"), r, e.to_string()))
        };
        let cond = if let Some(v) = &spec.equals {
            Cond::Equals(v.clone())
        } else if let Some(v) = &spec.not_equals {
            Cond::NotEquals(v.clone())
        } else if let Some(r) = &spec.regex {
            Cond::Regex(compile(r, "regex")?)
        } else {
            Cond::NotRegex(compile(
                spec.not_regex.as_deref().unwrap_or_default(),
                "not_regex",
            )?)
        };
        Ok(Filter {
            column: spec.column.clone(),
            cond,
        })
    }

    /// The column tested.
    pub fn column(&self) -> &str {
        &self.column
    }

    /// Whether a value passes.
    pub fn keep(&self, value: &str) -> bool {
        match &self.cond {
            Cond::Equals(v) => value == v,
            Cond::NotEquals(v) => value != v,
            Cond::Regex(r) => r.is_match(value),
            Cond::NotRegex(r) => !r.is_match(value),
        }
    }
}

/// A suite as described: the bundled descriptor format, and the file form of a spec suite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteSource {
    /// Name used in reports.
    pub name: String,
    /// Data file, relative to the descriptor (or spec) that names it.
    pub file: PathBuf,
    /// File format; guessed from the extension when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    /// What the model should do.
    pub expect: Expect,
    /// Column mapping.
    pub columns: Columns,
    /// Row filters, all of which must pass.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<FilterSpec>,
    /// Keep only the first `limit` rows after filtering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Default refusal judge preset for this suite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<String>,
    /// Label set of a classification suite; defaults to the distinct gold labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
    /// One line saying what the suite is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Licence of the data (SPDX id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// Where the data comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// One prompt of a loaded suite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prompt {
    /// Stable id within the suite.
    pub id: String,
    /// The prompt text (the question, for multiple choice).
    pub prompt: String,
    /// Target string (target suites).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Gold label (label suites).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Category, when mapped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// mc1 answers (exactly one true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mc1: Option<Vec<Choice>>,
    /// mc2 answers (at least one true and one false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mc2: Option<Vec<Choice>>,
}

/// A loaded, validated suite.
#[derive(Debug, Clone, PartialEq)]
pub struct Suite {
    /// Name used in reports.
    pub name: String,
    /// What the model should do.
    pub expect: Expect,
    /// The data file read.
    pub file: PathBuf,
    /// Default refusal judge, when the source names one.
    pub judge: Option<Preset>,
    /// Label set (label suites), in first-seen order.
    pub labels: Vec<String>,
    /// The prompts, in file order.
    pub prompts: Vec<Prompt>,
}

impl Suite {
    /// Number of prompts.
    pub fn len(&self) -> usize {
        self.prompts.len()
    }

    /// Whether the suite has no prompts (never true for a loaded suite).
    pub fn is_empty(&self) -> bool {
        self.prompts.is_empty()
    }
}

#[cfg(test)]
mod tests;
