//! Checking a parsed spec against the file system: the model and every referenced file exist,
//! pinned hashes match and every suite loads.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::{parse_spec, ModelFormat, Spec};
use crate::error::FieldError;
use crate::suite::{self, Suite};
use crate::variant::Method;

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
    /// The labelled sample of `[judge] labels` (empty without one).
    pub labels: Vec<crate::judge::labels::LabelRow>,
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
    for (field, c) in std::iter::once(("calibration".to_string(), Some(&spec.calibration))).chain(
        spec.variants.iter().map(|v| {
            (
                format!("{}.calibration", v.field),
                v.variant.calibration.as_ref(),
            )
        }),
    ) {
        if let Some(f) = c.and_then(|c| c.file.as_ref()) {
            if !f.is_file() && !errors.iter().any(|e| e.value == f.display().to_string()) {
                errors.push(missing(&format!("{field}.file"), f, "calibration file"));
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
    for (i, m) in spec.judge.models.iter().enumerate() {
        if !m.path.exists() {
            errors.push(missing(
                &format!("judge.models[{i}].path"),
                &m.path,
                "judge model",
            ));
        }
    }
    let mut labels = Vec::new();
    if let Some(p) = &spec.judge.labels {
        match crate::judge::labels::load_labels(p, &suites) {
            Ok(l) => labels = l,
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(Validated {
            spec,
            suites,
            labels,
        })
    } else {
        Err(ValidationErrors(errors))
    }
}
