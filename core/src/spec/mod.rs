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
//!
//! [chat]
//! date = "2024-07-26"
//! ```
//!
//! Relative paths are resolved against the spec file's directory. [`parse_spec`] checks
//! everything that needs no file system; [`validate`] also checks that files exist, pinned
//! hashes match and every suite loads.

mod analysis;
mod builder;
mod calibration;
mod chat;
mod judge;
mod raw;
mod search;
mod suites;
mod types;
mod validate;
mod variants;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use analysis::{
    AnalysisSections, ConditionedSection, HeadsSection, HeadsUnit, SensitivitySection,
    SensitivityUnit, DEFAULT_CONDITIONED_VARIANTS,
};
pub use builder::SpecBuilder;
pub use chat::{parse_date, ChatSection};
pub use types::{
    Generation, JudgeConfig, JudgeModel, ModelFormat, ModelSection, RefusalJudgeSpec,
    SearchSection, Spec, StatsConfig, SuiteEntry, SweepSection, VariantEntry, KEYWORD_JUDGE,
};
pub use validate::{load_spec, sha256_file, validate, validate_text, Validated, ValidationErrors};

use crate::error::FieldError;
use raw::RawSpec;

pub(super) fn resolve(dir: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

pub(super) fn check_pins(pins: &BTreeMap<String, String>, field: &str) -> Result<(), FieldError> {
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
    let raw: RawSpec =
        toml::from_str(text).map_err(|e| crate::text::toml_error(&e, text, file, "(spec)"))?;
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

    let calibration = calibration::section(raw.calibration.as_ref(), &dir).map_err(at)?;
    let (reference, variants) = variants::parse_variants(&raw, &calibration, &dir, file)?;
    let judge = judge::parse_judge(&raw.judge, &dir, file)?;

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

    let chat = chat::parse_chat(&raw.chat).map_err(at)?;

    let mut suites = suites::parse_suites(&raw.suites, &dir, file)?;
    let analysis = match &raw.analysis {
        None => AnalysisSections::default(),
        Some(a) => analysis::parse_analysis(a, &mut suites, sweep.seed).map_err(at)?,
    };
    let search = match &raw.search {
        None => None,
        Some(rs) => Some(search::parse_search(rs, &variants, &mut suites, sweep.seed).map_err(at)?),
    };
    // What the sweep does: compare variants on suites, or run analyses, or both.
    let evaluates = suites.iter().any(|s| s.evaluate);
    if !evaluates && !analysis.any() && search.is_none() {
        return Err(at(FieldError::new(
            "suites",
            "[]",
            "a sweep needs at least one suite (or an [analysis.*] or [search] section)",
        )));
    }
    if evaluates && variants.len() < 2 {
        return Err(at(FieldError::new(
            "variants",
            "[]",
            "a sweep compares at least one variant with the reference",
        )));
    }

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
        analysis,
        calibration,
        chat,
    })
}

#[cfg(test)]
mod tests;
