//! Reading a suite file into rows: CSV, JSON arrays and JSONL, every row located by line or
//! index for error messages, object keys kept in file order.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::Format;
use crate::error::FieldError;
use crate::mc::Choice;
use crate::text::truncate;

/// Where a row sits in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Loc {
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
pub(super) enum Json {
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
    pub(super) fn kind(&self) -> &'static str {
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
    pub(super) fn as_text(&self) -> Option<String> {
        match self {
            Json::Str(s) | Json::Num(s) => Some(s.clone()),
            Json::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    pub(super) fn short(&self) -> String {
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
pub(super) enum Val {
    Text(String),
    Json(Json),
}

impl Val {
    pub(super) fn text(&self) -> Option<String> {
        match self {
            Val::Text(s) => Some(s.clone()),
            Val::Json(j) => j.as_text(),
        }
    }
}

pub(super) struct Row {
    pub(super) loc: Loc,
    pub(super) values: Vec<(String, Val)>,
}

impl Row {
    pub(super) fn get(&self, col: &str) -> Option<&Val> {
        self.values.iter().find(|(k, _)| k == col).map(|(_, v)| v)
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

pub(super) fn parse_rows(text: &str, format: Format, path: &Path) -> Result<Vec<Row>, FieldError> {
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

pub(super) fn parse_choices(v: &Val, field: &str, path: &Path) -> Result<Vec<Choice>, FieldError> {
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
