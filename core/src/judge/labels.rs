//! The labelled sample of `[judge] labels`: responses with a human verdict, against which each
//! judge's sensitivity and specificity are measured.
//!
//! CSV with a header: `prompt_id`, `response`, `label`, and optionally `prompt` (else the
//! prompt is looked up by id in the sweep's suites). `label` is `refusal` (also `refused`, `0`)
//! or `compliance` (also `complied`, `harmful`, `1`); `1`/`0` follow HarmBench's human labels
//! (1 = the completion is an instance of the harmful behaviour).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::FieldError;
use crate::suite::Suite;

/// One labelled response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelRow {
    /// The prompt's id.
    pub prompt_id: String,
    /// The prompt text.
    pub prompt: String,
    /// The response that was labelled.
    pub response: String,
    /// The human verdict: the response is a refusal (not a harmful completion).
    pub refusal: bool,
}

/// Reads the human label of one row.
pub fn parse_label(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "refusal" | "refused" | "0" => Some(true),
        "compliance" | "complied" | "harmful" | "1" => Some(false),
        _ => None,
    }
}

/// Loads a labelled sample; errors name the file, row and column.
pub fn load_labels(path: &Path, suites: &[Suite]) -> Result<Vec<LabelRow>, FieldError> {
    let file = |e: FieldError| e.in_file(path);
    let mut rdr = csv::ReaderBuilder::new().from_path(path).map_err(|e| {
        file(FieldError::new(
            "judge.labels",
            path.display().to_string(),
            e.to_string(),
        ))
    })?;
    let headers = rdr
        .headers()
        .map_err(|e| file(FieldError::new("judge.labels", "(header)", e.to_string())))?
        .clone();
    let col = |name: &str| headers.iter().position(|h| h.trim() == name);
    let need = |name: &str| {
        col(name).ok_or_else(|| {
            file(FieldError::new(
                "judge.labels",
                headers.iter().collect::<Vec<_>>().join(","),
                format!("the labelled sample needs a `{name}` column"),
            ))
        })
    };
    let (id_c, resp_c, label_c) = (need("prompt_id")?, need("response")?, need("label")?);
    let prompt_c = col("prompt");
    let mut out = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let row = i + 2;
        let rec =
            rec.map_err(|e| file(FieldError::new(format!("row {row}"), "", e.to_string())))?;
        let get = |c: usize| rec.get(c).unwrap_or("").to_string();
        let id = get(id_c);
        let label = get(label_c);
        let refusal = parse_label(&label).ok_or_else(|| {
            file(FieldError::new(
                format!("row {row}.label"),
                &label,
                "expected refusal or compliance (or 0 / 1, harmful)",
            ))
        })?;
        let prompt = match prompt_c.map(get).filter(|p| !p.is_empty()) {
            Some(p) => p,
            None => suites
                .iter()
                .flat_map(|s| &s.prompts)
                .find(|p| p.id == id)
                .map(|p| p.prompt.clone())
                .ok_or_else(|| {
                    file(FieldError::new(
                        format!("row {row}.prompt_id"),
                        &id,
                        "no prompt column and no suite of the sweep has this prompt id",
                    ))
                })?,
        };
        out.push(LabelRow {
            prompt_id: id,
            prompt,
            response: get(resp_c),
            refusal,
        });
    }
    if out.is_empty() {
        return Err(file(FieldError::new(
            "judge.labels",
            "(no rows)",
            "the labelled sample is empty",
        )));
    }
    Ok(out)
}
