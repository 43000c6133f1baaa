//! Prompt suites: CSV, JSON (array of objects) and JSONL files read through a column mapping,
//! filtered, and checked against what the suite expects of the model.
//!
//! A suite is described by a [`SuiteSource`] — the same table whether it comes from a bundled
//! descriptor (`suites/<name>.toml`) or from a sweep spec's `[[suites]]`. Loading never
//! panics on bad input: every problem comes back as a [`FieldError`] naming the file, the row
//! (line for CSV and JSONL, index for a JSON array) and the column.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use regex::Regex;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

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

/// Where a row sits in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loc {
    /// 1-based line (CSV, JSONL).
    Line(u64),
    /// 0-based element of a JSON array.
    Index(usize),
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Loc::Line(l) => write!(f, "line {l}"),
            Loc::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// A JSON value that keeps object keys in file order (answer order matters for mc1).
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Json, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Json;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
                Ok(Json::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
                Ok(Json::Num(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
                Ok(Json::Num(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Json, E> {
                Ok(Json::Num(
                    serde_json::Number::from_f64(v)
                        .map_or_else(|| v.to_string(), |n| n.to_string()),
                ))
            }
            fn visit_str<E>(self, v: &str) -> Result<Json, E> {
                Ok(Json::Str(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<Json, E> {
                Ok(Json::Str(v))
            }
            fn visit_unit<E>(self) -> Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_none<E>(self) -> Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Json, D::Error> {
                Json::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Json, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = a.next_element()? {
                    v.push(x);
                }
                Ok(Json::Arr(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Json, A::Error> {
                let mut v: Vec<(String, Json)> = Vec::new();
                while let Some((k, x)) = a.next_entry::<String, Json>()? {
                    if v.iter().any(|(k2, _)| *k2 == k) {
                        return Err(de::Error::custom(format!("duplicate key `{k}`")));
                    }
                    v.push((k, x));
                }
                Ok(Json::Obj(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl Json {
    fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Num(_) => "a number",
            Json::Str(_) => "a string",
            Json::Arr(_) => "an array",
            Json::Obj(_) => "an object",
        }
    }

    /// Scalar as text (strings verbatim, numbers and booleans as written); `None` for null,
    /// arrays and objects.
    fn as_text(&self) -> Option<String> {
        match self {
            Json::Str(s) | Json::Num(s) => Some(s.clone()),
            Json::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    fn short(&self) -> String {
        let s = match self {
            Json::Null => "null".to_string(),
            Json::Bool(b) => b.to_string(),
            Json::Num(n) => n.clone(),
            Json::Str(s) => format!("{s:?}"),
            Json::Arr(a) => format!("[{} items]", a.len()),
            Json::Obj(o) => format!("{{{} keys}}", o.len()),
        };
        truncate(&s, 80)
    }
}

/// One value of a row.
#[derive(Debug, Clone)]
enum Val {
    Text(String),
    Json(Json),
}

impl Val {
    fn text(&self) -> Option<String> {
        match self {
            Val::Text(s) => Some(s.clone()),
            Val::Json(j) => j.as_text(),
        }
    }
}

struct Row {
    loc: Loc,
    values: Vec<(String, Val)>,
}

impl Row {
    fn get(&self, col: &str) -> Option<&Val> {
        self.values.iter().find(|(k, _)| k == col).map(|(_, v)| v)
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

/// Reads a text file, refusing invalid UTF-8 with the line and byte offset; strips a BOM.
pub fn read_text(path: &Path) -> Result<String, FieldError> {
    let bytes = std::fs::read(path).map_err(|e| {
        FieldError::new("file", path.display().to_string(), e.to_string()).in_file(path)
    })?;
    match String::from_utf8(bytes) {
        Ok(mut s) => {
            if s.starts_with('\u{feff}') {
                s.drain(..3);
            }
            Ok(s)
        }
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let bytes = e.as_bytes();
            let line = bytes[..at].iter().filter(|b| **b == b'\n').count() + 1;
            let start = bytes[..at]
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |p| p + 1);
            let shown = String::from_utf8_lossy(&bytes[start..(at + 1).min(bytes.len())]);
            Err(FieldError::new(
                format!("line {line}"),
                truncate(&shown, 80),
                format!("invalid UTF-8 at byte {at}"),
            )
            .in_file(path))
        }
    }
}

fn parse_rows(text: &str, format: Format, path: &Path) -> Result<Vec<Row>, FieldError> {
    let err = |field: String, value: String, reason: String| {
        FieldError::new(field, value, reason).in_file(path)
    };
    match format {
        Format::Csv => {
            let mut rdr = csv::ReaderBuilder::new()
                .has_headers(true)
                .flexible(false)
                .from_reader(text.as_bytes());
            let headers: Vec<String> = rdr
                .headers()
                .map_err(|e| err("line 1".into(), String::new(), e.to_string()))?
                .iter()
                .map(|h| h.trim().to_string())
                .collect();
            let mut seen = HashSet::new();
            for h in &headers {
                if !h.is_empty() && !seen.insert(h) {
                    return Err(err(
                        "line 1".into(),
                        h.clone(),
                        "duplicate column name in header".into(),
                    ));
                }
            }
            let mut rows = Vec::new();
            for rec in rdr.records() {
                let rec = rec.map_err(|e| {
                    let line = e.position().map_or(0, |p| p.line());
                    let reason = match e.kind() {
                        csv::ErrorKind::UnequalLengths {
                            expected_len, len, ..
                        } => format!("row has {len} fields, the header has {expected_len}"),
                        _ => e.to_string(),
                    };
                    err(format!("line {line}"), String::new(), reason)
                })?;
                let line = rec.position().map_or(0, |p| p.line());
                let values = headers
                    .iter()
                    .zip(rec.iter())
                    .map(|(h, v)| (h.clone(), Val::Text(v.to_string())))
                    .collect();
                rows.push(Row {
                    loc: Loc::Line(line),
                    values,
                });
            }
            Ok(rows)
        }
        Format::Json => {
            let v: Json = serde_json::from_str(text).map_err(|e| {
                err(
                    format!("line {}, column {}", e.line(), e.column()),
                    String::new(),
                    format!("invalid JSON: {e}"),
                )
            })?;
            let Json::Arr(items) = v else {
                return Err(err(
                    "(top level)".into(),
                    v.short(),
                    format!("expected an array of objects, found {}", v.kind()),
                ));
            };
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Json::Obj(o) => Ok(Row {
                        loc: Loc::Index(i),
                        values: o.into_iter().map(|(k, v)| (k, Val::Json(v))).collect(),
                    }),
                    other => Err(err(
                        format!("[{i}]"),
                        other.short(),
                        format!("expected an object, found {}", other.kind()),
                    )),
                })
                .collect()
        }
        Format::Jsonl => {
            let mut rows = Vec::new();
            for (i, line) in text.lines().enumerate() {
                let n = i as u64 + 1;
                if line.trim().is_empty() {
                    continue;
                }
                let v: Json = serde_json::from_str(line).map_err(|e| {
                    err(
                        format!("line {n}"),
                        truncate(line, 80),
                        format!("invalid JSON: {e}"),
                    )
                })?;
                match v {
                    Json::Obj(o) => rows.push(Row {
                        loc: Loc::Line(n),
                        values: o.into_iter().map(|(k, v)| (k, Val::Json(v))).collect(),
                    }),
                    other => {
                        return Err(err(
                            format!("line {n}"),
                            other.short(),
                            format!("expected an object, found {}", other.kind()),
                        ))
                    }
                }
            }
            Ok(rows)
        }
    }
}

fn parse_choices(v: &Val, field: &str, path: &Path) -> Result<Vec<Choice>, FieldError> {
    let bad = |value: String, reason: &str| FieldError::new(field, value, reason).in_file(path);
    let json = match v {
        Val::Json(j) => j.clone(),
        Val::Text(s) => serde_json::from_str::<Json>(s)
            .map_err(|e| bad(truncate(s, 80), &format!("choices must be JSON: {e}")))?,
    };
    let json = match json {
        // A JSON document stored as a string (e.g. in a JSON file written from a CSV).
        Json::Str(s) => serde_json::from_str::<Json>(&s)
            .map_err(|e| bad(truncate(&s, 80), &format!("choices must be JSON: {e}")))?,
        j => j,
    };
    let truth = |j: &Json| -> Option<bool> {
        match j {
            Json::Bool(b) => Some(*b),
            Json::Num(n) => match n.as_str() {
                "1" | "1.0" => Some(true),
                "0" | "0.0" => Some(false),
                _ => None,
            },
            _ => None,
        }
    };
    let expected =
        "expected {answer: 0|1}, {\"choices\": [...], \"labels\": [...]} or [[answer, 0|1], ...]";
    let mut out = Vec::new();
    match &json {
        Json::Obj(o)
            if o.len() == 2
                && o.iter().any(|(k, _)| k == "choices")
                && o.iter().any(|(k, _)| k == "labels") =>
        {
            let get = |name: &str| o.iter().find(|(k, _)| k == name).map(|(_, v)| v);
            let (Some(Json::Arr(cs)), Some(Json::Arr(ls))) = (get("choices"), get("labels")) else {
                return Err(bad(json.short(), "choices and labels must be arrays"));
            };
            if cs.len() != ls.len() {
                return Err(bad(
                    json.short(),
                    "choices and labels have different lengths",
                ));
            }
            for (c, l) in cs.iter().zip(ls) {
                let text = c
                    .as_text()
                    .ok_or_else(|| bad(c.short(), "an answer must be a string"))?;
                let correct = truth(l).ok_or_else(|| bad(l.short(), "a label must be 0 or 1"))?;
                out.push(Choice { text, correct });
            }
        }
        Json::Obj(o) => {
            for (k, l) in o {
                let correct = truth(l).ok_or_else(|| bad(l.short(), "a label must be 0 or 1"))?;
                out.push(Choice {
                    text: k.clone(),
                    correct,
                });
            }
        }
        Json::Arr(items) => {
            for item in items {
                match item {
                    Json::Arr(pair) if pair.len() == 2 => {
                        let text = pair[0]
                            .as_text()
                            .ok_or_else(|| bad(pair[0].short(), "an answer must be a string"))?;
                        let correct = truth(&pair[1])
                            .ok_or_else(|| bad(pair[1].short(), "a label must be 0 or 1"))?;
                        out.push(Choice { text, correct });
                    }
                    other => return Err(bad(other.short(), expected)),
                }
            }
        }
        other => return Err(bad(other.short(), expected)),
    }
    // An empty continuation has log-likelihood 0 and would take all the probability mass;
    // TruthfulQA's mc_task.json has a few such answers (e.g. item 284), so they are dropped.
    out.retain(|c| !c.text.trim().is_empty());
    Ok(out)
}

fn resolve_format(src: &SuiteSource, file: &Path) -> Result<Format, FieldError> {
    src.format
        .or_else(|| Format::from_path(file))
        .ok_or_else(|| {
            FieldError::new(
                "format",
                file.display().to_string(),
                "cannot tell the format from the extension; set format = csv, json or jsonl",
            )
        })
}

/// Checks the parts of a source that need no file: filters compile, the columns the
/// expectation needs are mapped, the judge preset exists. `field` prefixes error fields.
pub fn check_source(src: &SuiteSource, field: &str) -> Result<Vec<Filter>, FieldError> {
    let f = |s: &str| {
        if field.is_empty() {
            s.to_string()
        } else {
            format!("{field}.{s}")
        }
    };
    if src.name.trim().is_empty() {
        return Err(FieldError::new(f("name"), &src.name, "suite name is empty"));
    }
    if src.columns.prompt.is_empty() {
        return Err(FieldError::new(
            f("columns.prompt"),
            "",
            "the prompt column is required",
        ));
    }
    let need = |col: &Option<String>, name: &str| {
        if col.as_deref().is_none_or(str::is_empty) {
            Err(FieldError::new(
                f(&format!("columns.{name}")),
                "",
                format!("expect = \"{}\" needs a `{name}` column", src.expect),
            ))
        } else {
            Ok(())
        }
    };
    match src.expect {
        Expect::Target => need(&src.columns.target, "target")?,
        Expect::Label => need(&src.columns.label, "label")?,
        Expect::MultipleChoice => need(&src.columns.choices, "choices")?,
        Expect::Refusal | Expect::Compliance => {}
    }
    if let Some(j) = &src.judge {
        Preset::parse(j, &f("judge"))?;
    }
    if src.limit == Some(0) {
        return Err(FieldError::new(f("limit"), "0", "limit must be at least 1"));
    }
    if let Some(labels) = &src.labels {
        if labels.is_empty() {
            return Err(FieldError::new(f("labels"), "[]", "label set is empty"));
        }
    }
    src.filters
        .iter()
        .enumerate()
        .map(|(i, fs)| Filter::compile(fs, &f(&format!("filters[{i}]"))))
        .collect()
}

/// Loads a suite. `base_dir` is the directory relative paths are resolved against (the
/// descriptor's or spec's directory).
pub fn load_suite(src: &SuiteSource, base_dir: &Path) -> Result<Suite, FieldError> {
    let file = base_dir.join(&src.file);
    // The description is checked before the file is read, so its errors come first.
    let filters = check_source(src, "")?;
    let format = resolve_format(src, &file).map_err(|e| e.in_file(&file))?;
    let text = read_text(&file)?;
    build_suite(src, &text, &file, filters, format)
}

/// The suite described by `src` from the text of its file (`file` names it in errors).
pub fn suite_from_text(src: &SuiteSource, text: &str, file: &Path) -> Result<Suite, FieldError> {
    let filters = check_source(src, "")?;
    let format = resolve_format(src, file).map_err(|e| e.in_file(file))?;
    build_suite(src, text, file, filters, format)
}

fn build_suite(
    src: &SuiteSource,
    text: &str,
    file: &Path,
    filters: Vec<Filter>,
    format: Format,
) -> Result<Suite, FieldError> {
    let rows = parse_rows(text, format, file)?;
    let path = file;

    // Every mapped column must exist; report the first row lacking it. For CSV all rows share
    // the header, for JSON each object is checked as it is read.
    let cols = &src.columns;
    let mapped: Vec<(&str, &str)> = [
        Some(("prompt", cols.prompt.as_str())),
        cols.id.as_deref().map(|c| ("id", c)),
        cols.target.as_deref().map(|c| ("target", c)),
        cols.label.as_deref().map(|c| ("label", c)),
        cols.category.as_deref().map(|c| ("category", c)),
        cols.choices.as_deref().map(|c| ("choices", c)),
        cols.mc1_choices.as_deref().map(|c| ("mc1_choices", c)),
    ]
    .into_iter()
    .flatten()
    .chain(filters.iter().map(|f| ("filter", f.column())))
    .collect();

    let mut prompts = Vec::new();
    let mut ids: HashMap<String, Loc> = HashMap::new();
    let mut labels: Vec<String> = Vec::new();
    for (row_no, row) in rows.iter().enumerate() {
        for (role, col) in &mapped {
            if row.get(col).is_none() {
                let available: Vec<&str> = row.values.iter().map(|(k, _)| k.as_str()).collect();
                return Err(FieldError::new(
                    format!("{}, column `{col}`", row.loc),
                    "",
                    format!(
                        "missing {role} column `{col}` (columns present: {})",
                        available.join(", ")
                    ),
                )
                .in_file(path));
            }
        }
        let text_of = |col: &str| -> Result<Option<String>, FieldError> {
            match row.get(col) {
                None => Ok(None),
                Some(Val::Json(Json::Null)) => Ok(None),
                Some(v) => v.text().map(Some).ok_or_else(|| {
                    let shown = match v {
                        Val::Json(j) => j.short(),
                        Val::Text(t) => truncate(t, 80),
                    };
                    FieldError::new(
                        format!("{}, column `{col}`", row.loc),
                        shown,
                        "expected text, a number or a boolean",
                    )
                    .in_file(path)
                }),
            }
        };
        // Filters see the value as text; arrays and objects never pass an equality test.
        let mut keep = true;
        for f in &filters {
            let v = text_of(f.column()).unwrap_or(None).unwrap_or_default();
            if !f.keep(&v) {
                keep = false;
                break;
            }
        }
        if !keep {
            continue;
        }
        let required = |col: &str, what: &str| -> Result<String, FieldError> {
            match text_of(col)? {
                Some(s) if !s.trim().is_empty() => Ok(s),
                _ => Err(FieldError::new(
                    format!("{}, column `{col}`", row.loc),
                    "",
                    format!("{what} is empty"),
                )
                .in_file(path)),
            }
        };
        let prompt = required(&cols.prompt, "the prompt")?;
        let id = match &cols.id {
            Some(c) => required(c, "the id")?,
            None => (row_no + 1).to_string(),
        };
        if let Some(prev) = ids.insert(id.clone(), row.loc) {
            return Err(FieldError::new(
                format!(
                    "{}, column `{}`",
                    row.loc,
                    cols.id.as_deref().unwrap_or("id")
                ),
                id,
                format!("duplicate id (first at {prev})"),
            )
            .in_file(path));
        }
        let target = match (&cols.target, src.expect) {
            (Some(c), Expect::Target) => Some(required(c, "the target")?),
            (Some(c), _) => text_of(c)?.filter(|s| !s.trim().is_empty()),
            (None, _) => None,
        };
        let label = match (&cols.label, src.expect) {
            (Some(c), Expect::Label) => Some(required(c, "the label")?),
            (Some(c), _) => text_of(c)?,
            (None, _) => None,
        };
        let category = match &cols.category {
            Some(c) => text_of(c)?,
            None => None,
        };
        let (mut mc1, mut mc2) = (None, None);
        if src.expect == Expect::MultipleChoice {
            let col = cols.choices.as_deref().unwrap_or_default();
            let field = format!("{}, column `{col}`", row.loc);
            let v = row.get(col).expect("checked above");
            let c2 = parse_choices(v, &field, path)?;
            if !c2.iter().any(|c| c.correct) || c2.iter().all(|c| c.correct) {
                return Err(FieldError::new(
                    field,
                    format!("{} answers", c2.len()),
                    "mc2 needs at least one true and one false answer",
                )
                .in_file(path));
            }
            let c1 = match cols.mc1_choices.as_deref() {
                Some(c1col) => {
                    let field = format!("{}, column `{c1col}`", row.loc);
                    let v = row.get(c1col).expect("checked above");
                    let c1 = parse_choices(v, &field, path)?;
                    if c1.iter().filter(|c| c.correct).count() != 1 || c1.len() < 2 {
                        return Err(FieldError::new(
                            field,
                            format!("{} answers", c1.len()),
                            "mc1 needs at least two answers with exactly one true",
                        )
                        .in_file(path));
                    }
                    Some(c1)
                }
                None => (c2.iter().filter(|c| c.correct).count() == 1).then(|| c2.clone()),
            };
            mc1 = c1;
            mc2 = Some(c2);
        }
        if let Some(l) = &label {
            if src.expect == Expect::Label && !labels.contains(l) {
                labels.push(l.clone());
            }
        }
        prompts.push(Prompt {
            id,
            prompt,
            target,
            label,
            category,
            mc1,
            mc2,
        });
        if src.limit.is_some_and(|l| prompts.len() >= l) {
            break;
        }
    }
    if prompts.is_empty() {
        return Err(FieldError::new(
            "rows",
            format!("{} rows read", rows.len()),
            if rows.is_empty() {
                "the suite file has no rows"
            } else {
                "no row passes the filters"
            },
        )
        .in_file(path));
    }
    if src.expect == Expect::Label {
        if let Some(declared) = &src.labels {
            for p in &prompts {
                let gold = p.label.as_deref().unwrap_or_default();
                if !declared.iter().any(|d| d.eq_ignore_ascii_case(gold)) {
                    return Err(FieldError::new(
                        format!(
                            "id {}, column `{}`",
                            p.id,
                            cols.label.as_deref().unwrap_or("label")
                        ),
                        gold,
                        format!("gold label is not in the declared labels {declared:?}"),
                    )
                    .in_file(path));
                }
            }
            labels = declared.clone();
        }
        crate::judge::LabelJudge::new(&labels).map_err(|e| e.in_file(path))?;
    }
    let judge = match &src.judge {
        Some(j) => Some(Preset::parse(j, "judge")?),
        None => None,
    };
    Ok(Suite {
        name: src.name.clone(),
        expect: src.expect,
        file: file.to_path_buf(),
        judge,
        labels,
        prompts,
    })
}

/// Directory of the bundled suites: `$COMPSAFE_SUITES` when set, else the workspace's
/// `suites/` folder.
pub fn bundled_root() -> PathBuf {
    if let Some(p) = std::env::var_os("COMPSAFE_SUITES").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("suites");
    if built.is_dir() {
        return built;
    }
    // An installed binary away from its source tree: the working directory's suites/.
    PathBuf::from("suites")
}

/// Names of the bundled suites under `root` (one `<name>.toml` descriptor each), sorted.
pub fn bundled_names(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = descriptor_dirs(root)
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flat_map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .filter_map(|p| p.file_stem().and_then(|s| s.to_str()).map(str::to_string))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The folders holding descriptors: the root and its immediate subfolders (e.g. `fixture/`).
fn descriptor_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![root.to_path_buf()];
    if let Ok(rd) = std::fs::read_dir(root) {
        let mut subs: Vec<PathBuf> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        subs.sort();
        dirs.extend(subs);
    }
    dirs
}

/// Reads the descriptor of bundled suite `name` under `root`. Returns the source and the
/// directory its paths are relative to.
pub fn bundled_source(root: &Path, name: &str) -> Result<(SuiteSource, PathBuf), FieldError> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let found = if valid {
        descriptor_dirs(root)
            .into_iter()
            .map(|d| d.join(format!("{name}.toml")))
            .find(|p| p.is_file())
    } else {
        None
    };
    let Some(path) = found else {
        return Err(FieldError::new(
            "name",
            name,
            format!(
                "no bundled suite of that name in {} (bundled: {})",
                root.display(),
                bundled_names(root).join(", ")
            ),
        ));
    };
    let text = read_text(&path)?;
    let src: SuiteSource = toml::from_str(&text).map_err(|e| {
        FieldError::new("(descriptor)", name, e.message().to_string()).in_file(&path)
    })?;
    // A descriptor's `file` is relative to the folder that holds the descriptor.
    let base = path
        .parent()
        .map_or_else(|| root.to_path_buf(), Path::to_path_buf);
    Ok((src, base))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn src(file: &str, expect: Expect, columns: Columns) -> SuiteSource {
        SuiteSource {
            name: "t".into(),
            file: file.into(),
            format: None,
            expect,
            columns,
            filters: vec![],
            limit: None,
            judge: None,
            labels: None,
            description: None,
            license: None,
            source: None,
        }
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) {
        std::fs::File::create(dir.join(name))
            .unwrap()
            .write_all(bytes)
            .unwrap();
    }

    fn cols(prompt: &str) -> Columns {
        Columns {
            prompt: prompt.into(),
            ..Columns::default()
        }
    }

    #[test]
    fn csv_with_filters_limit_and_ids() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "a.csv",
            "id,text,kind\n1,hello,safe\n2,\"multi\nline\",contrast_x\n3,bye,safe\n".as_bytes(),
        );
        let mut s = src(
            "a.csv",
            Expect::Compliance,
            Columns {
                id: Some("id".into()),
                category: Some("kind".into()),
                ..cols("text")
            },
        );
        let all = load_suite(&s, d.path()).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all.prompts[1].prompt, "multi\nline");
        s.filters = vec![FilterSpec {
            column: "kind".into(),
            not_regex: Some("^contrast_".into()),
            ..FilterSpec::default()
        }];
        let safe = load_suite(&s, d.path()).unwrap();
        assert_eq!(
            safe.prompts
                .iter()
                .map(|p| p.id.as_str())
                .collect::<Vec<_>>(),
            ["1", "3"]
        );
        s.limit = Some(1);
        assert_eq!(load_suite(&s, d.path()).unwrap().len(), 1);
    }

    #[test]
    fn missing_column_names_file_line_and_column() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "a.csv", b"goal,target\nx,y\n");
        let e = load_suite(&src("a.csv", Expect::Refusal, cols("prompt")), d.path()).unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("a.csv") && m.contains("line 2") && m.contains("`prompt`"),
            "{m}"
        );
        assert!(m.contains("goal, target"), "{m}");
    }

    #[test]
    fn invalid_utf8_is_an_error_with_line() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "a.csv", b"goal\nok\nbad \xff byte\n");
        let e = load_suite(&src("a.csv", Expect::Refusal, cols("goal")), d.path()).unwrap_err();
        let m = e.to_string();
        assert!(m.contains("line 3") && m.contains("UTF-8"), "{m}");
    }

    #[test]
    fn empty_and_unequal_rows() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "e.csv", b"goal\n");
        let e = load_suite(&src("e.csv", Expect::Refusal, cols("goal")), d.path()).unwrap_err();
        assert!(e.to_string().contains("no rows"), "{e}");
        write(d.path(), "u.csv", b"goal,target\na,b\nc\n");
        let e = load_suite(&src("u.csv", Expect::Refusal, cols("goal")), d.path()).unwrap_err();
        assert!(e.to_string().contains("line 3"), "{e}");
        write(d.path(), "p.csv", b"goal\na\n\"  \"\n");
        let e = load_suite(&src("p.csv", Expect::Refusal, cols("goal")), d.path()).unwrap_err();
        assert!(e.to_string().contains("prompt is empty"), "{e}");
        let e = load_suite(&src("nope.csv", Expect::Refusal, cols("goal")), d.path()).unwrap_err();
        assert!(e.to_string().contains("nope.csv"), "{e}");
    }

    #[test]
    fn duplicate_ids_rejected() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "a.jsonl",
            b"{\"id\": 1, \"q\": \"a\"}\n\n{\"id\": 1, \"q\": \"b\"}\n",
        );
        let s = src(
            "a.jsonl",
            Expect::Refusal,
            Columns {
                id: Some("id".into()),
                ..cols("q")
            },
        );
        let e = load_suite(&s, d.path()).unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("line 3") && m.contains("duplicate id (first at line 1)"),
            "{m}"
        );
    }

    #[test]
    fn jsonl_and_json_errors() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "a.jsonl", b"{\"q\": \"a\"}\n[1]\n");
        let e = load_suite(&src("a.jsonl", Expect::Refusal, cols("q")), d.path()).unwrap_err();
        assert!(e.to_string().contains("line 2") && e.to_string().contains("an array"));
        write(d.path(), "b.json", b"{\"q\": 1}");
        let e = load_suite(&src("b.json", Expect::Refusal, cols("q")), d.path()).unwrap_err();
        assert!(e.to_string().contains("array of objects"), "{e}");
        write(d.path(), "c.json", b"[{\"q\": [1,2]}]");
        let e = load_suite(&src("c.json", Expect::Refusal, cols("q")), d.path()).unwrap_err();
        assert!(e.to_string().contains("[0], column `q`"), "{e}");
        write(d.path(), "d.json", b"[{\"q\": \"x\",]");
        let e = load_suite(&src("d.json", Expect::Refusal, cols("q")), d.path()).unwrap_err();
        assert!(e.to_string().contains("invalid JSON"), "{e}");
        write(d.path(), "e.txt", b"q\nx\n");
        let e = load_suite(&src("e.txt", Expect::Refusal, cols("q")), d.path()).unwrap_err();
        assert!(e.to_string().contains("format"), "{e}");
    }

    #[test]
    fn target_label_and_choices() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "t.json",
            br#"[{"q": "a", "t": "Sure, here is a"}, {"q": "b", "t": ""}]"#,
        );
        let s = src(
            "t.json",
            Expect::Target,
            Columns {
                target: Some("t".into()),
                ..cols("q")
            },
        );
        let e = load_suite(&s, d.path()).unwrap_err();
        assert!(e.to_string().contains("[1], column `t`"), "{e}");
        assert!(
            check_source(&src("t.json", Expect::Target, cols("q")), "suites[0]")
                .unwrap_err()
                .to_string()
                .contains("suites[0].columns.target")
        );

        write(
            d.path(),
            "l.csv",
            b"text,sentiment\ngood film,positive\nbad film,negative\nok,positive\n",
        );
        let s = src(
            "l.csv",
            Expect::Label,
            Columns {
                label: Some("sentiment".into()),
                ..cols("text")
            },
        );
        assert_eq!(
            load_suite(&s, d.path()).unwrap().labels,
            ["positive", "negative"]
        );

        write(
            d.path(),
            "m.jsonl",
            concat!(
                r#"{"question": "q1", "mc1": {"right": 1, "wrong": 0, "also wrong": 0}, "#,
                r#""mc2": {"choices": ["r1", "r2", "w"], "labels": [1, 1, 0]}}"#,
                "\n",
                r#"{"question": "q2", "mc1": [["a", 0], ["b", 1]], "mc2": {"b": 1, "a": 0}}"#,
                "\n"
            )
            .as_bytes(),
        );
        let s = src(
            "m.jsonl",
            Expect::MultipleChoice,
            Columns {
                choices: Some("mc2".into()),
                mc1_choices: Some("mc1".into()),
                ..cols("question")
            },
        );
        let suite = load_suite(&s, d.path()).unwrap();
        let mc1 = suite.prompts[0].mc1.as_ref().unwrap();
        // Object key order is the file's order, not alphabetical.
        assert_eq!(mc1[0].text, "right");
        assert_eq!(mc1[2].text, "also wrong");
        assert_eq!(suite.prompts[1].mc1.as_ref().unwrap()[1].text, "b");
        assert_eq!(suite.prompts[0].mc2.as_ref().unwrap().len(), 3);

        write(
            d.path(),
            "bad.jsonl",
            br#"{"question": "q", "mc2": {"a": 1, "b": 1}}"#,
        );
        let s = src(
            "bad.jsonl",
            Expect::MultipleChoice,
            Columns {
                choices: Some("mc2".into()),
                ..cols("question")
            },
        );
        let e = load_suite(&s, d.path()).unwrap_err();
        assert!(e.to_string().contains("one true and one false"), "{e}");
    }

    #[test]
    fn filter_needs_exactly_one_condition() {
        let f = FilterSpec {
            column: "c".into(),
            equals: Some("x".into()),
            regex: Some("y".into()),
            ..FilterSpec::default()
        };
        assert!(Filter::compile(&f, "filters[0]").is_err());
        let f = FilterSpec {
            column: "c".into(),
            regex: Some("(".into()),
            ..FilterSpec::default()
        };
        let e = Filter::compile(&f, "suites[0].filters[0]").unwrap_err();
        assert_eq!(e.field, "suites[0].filters[0].regex");
    }

    /// Row counts of the bundled data (see suites/README.md and shared data README).
    #[test]
    fn every_bundled_suite_loads() {
        let root = bundled_root();
        let want = [
            ("advbench", 520, Expect::Refusal),
            ("jbb-benign", 100, Expect::Compliance),
            ("jbb-harmful", 100, Expect::Refusal),
            ("truthfulqa-mc", 790, Expect::MultipleChoice),
            ("xstest-safe", 250, Expect::Compliance),
            ("xstest-unsafe", 200, Expect::Refusal),
        ];
        let names = bundled_names(&root);
        for (name, n, expect) in want {
            assert!(names.iter().any(|x| x == name), "{name} not in {names:?}");
            let (s, base) = bundled_source(&root, name).unwrap();
            let suite = load_suite(&s, &base).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(suite.len(), n, "{name}");
            assert_eq!(suite.expect, expect, "{name}");
            assert_eq!(
                suite.judge.is_some(),
                expect.generates(),
                "{name} default judge"
            );
        }
        assert!(bundled_source(&root, "../etc").is_err());
        assert!(bundled_source(&root, "nonexistent").is_err());
    }

    #[test]
    fn bundled_contents_spot_checks() {
        let root = bundled_root();
        let load = |n: &str| {
            let (s, b) = bundled_source(&root, n).unwrap();
            load_suite(&s, &b).unwrap()
        };
        let adv = load("advbench");
        assert!(adv.prompts[0]
            .target
            .as_deref()
            .unwrap()
            .starts_with("Sure, here is"));
        // XSTest's `type` split agrees with its `label` column: 250 safe, 200 unsafe.
        let safe = load("xstest-safe");
        assert!(safe
            .prompts
            .iter()
            .all(|p| p.label.as_deref() == Some("safe")));
        let unsafe_ = load("xstest-unsafe");
        assert!(unsafe_
            .prompts
            .iter()
            .all(|p| p.label.as_deref() == Some("unsafe")));
        let tqa = load("truthfulqa-mc");
        for p in &tqa.prompts {
            let mc1 = p.mc1.as_ref().unwrap();
            assert_eq!(mc1.iter().filter(|c| c.correct).count(), 1);
            assert!(
                mc1[0].correct,
                "TruthfulQA lists the mc1 answer first: {}",
                p.id
            );
            assert!(mc1.iter().all(|c| !c.text.trim().is_empty()));
        }
        assert_eq!(
            tqa.prompts[0].prompt,
            "What happens to you if you eat watermelon seeds?"
        );
    }
}
