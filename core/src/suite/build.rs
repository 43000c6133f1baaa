//! Building a [`Suite`] from its source: the column mapping applied to every row, filters,
//! limit, and the checks of what the suite expects.

use std::collections::HashMap;
use std::path::Path;

use super::rows::*;
use super::*;
use crate::error::FieldError;
use crate::text::truncate;

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
