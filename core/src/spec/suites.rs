//! `[[suites]]`: bundled suites by name (with the spec's filters, limit and judge) or suites
//! read from a file with a column mapping.

use std::collections::HashSet;
use std::path::Path;

use super::raw::RawSuite;
use super::types::SuiteEntry;
use crate::error::FieldError;
use crate::suite::{self, Format, SuiteSource};

/// The validated suites, in spec order.
pub(super) fn parse_suites(
    raw: &[RawSuite],
    dir: &Path,
    file: &Path,
) -> Result<Vec<SuiteEntry>, FieldError> {
    let at = |e: FieldError| e.in_file(file);
    let root = suite::bundled_root();
    let mut suites: Vec<SuiteEntry> = Vec::new();
    let mut names = HashSet::new();
    for (i, rs) in raw.iter().enumerate() {
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
                    evaluate: true,
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
                    base_dir: dir.to_path_buf(),
                    bundled: false,
                    evaluate: true,
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
    Ok(suites)
}
