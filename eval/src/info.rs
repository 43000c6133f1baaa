//! What a unit reports besides its records: the variant's size, error and integrity, and the
//! model's file integrity — computed as a local run computes them.

use std::path::Path;

use compsafe_core::report::{
    FileInfo, Integrity, ModelInfo, TensorError, Training, VariantInfo, WeightError,
};
use compsafe_core::spec::{Spec, VariantEntry};
use compsafe_core::Method;
use compsafe_engine::integrity;
use compsafe_engine::variant::DerivedVariant;
use compsafe_engine::EngineError;

/// Worst tensors listed per variant in the report.
pub const WORST_TENSORS: usize = 8;

/// The model's files and their integrity against its manifest.
pub fn model_info(spec: &Spec) -> Result<ModelInfo, EngineError> {
    let (digests, integrity) = integrity::verify(&spec.model.path, spec.model.manifest.as_deref())?;
    Ok(ModelInfo {
        path: spec.model.path.display().to_string(),
        files: digests
            .iter()
            .map(|d| FileInfo {
                name: d.name.clone(),
                sha256: d.sha256.clone(),
                bytes: d.bytes,
            })
            .collect(),
        integrity: match &integrity {
            integrity::Integrity::Ok => Integrity::Ok,
            integrity::Integrity::Failed(_) => Integrity::Failed,
            integrity::Integrity::Unpinned => Integrity::Unpinned,
        },
        integrity_failures: match integrity {
            integrity::Integrity::Failed(m) => m,
            _ => Vec::new(),
        },
    })
}

/// The integrity of the files a variant runs on: the model's for a variant derived from it,
/// the checkpoint's own pins for a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariantIntegrity {
    /// Integrity of the variant's files (checkpoints) or of the model it derives from.
    pub integrity: Integrity,
    /// What failed, each naming the file or tensor at fault: the model's failures (every
    /// variant is compared with the reference, which runs on the model's files) and then the
    /// checkpoint's own. Non-empty means the variant must not be evaluated.
    pub failures: Vec<String>,
}

fn checkpoint_integrity(
    entry: &VariantEntry,
    path: &Path,
) -> Result<(Integrity, Vec<String>), EngineError> {
    if !entry.sha256.is_empty() {
        let (d, _) = integrity::verify(path, None)?;
        let mut failures = Vec::new();
        for (name, want) in &entry.sha256 {
            match d.iter().find(|x| &x.name == name) {
                None => failures.push(format!(
                    "INTEGRITY FAILURE: {name} in {}: pinned by {}.sha256 but absent",
                    path.display(),
                    entry.field
                )),
                Some(x) if &x.sha256 != want => failures.push(format!(
                    "INTEGRITY FAILURE: {name} in {}: sha256 {} does not match {}.sha256 {want}",
                    path.display(),
                    x.sha256,
                    entry.field
                )),
                Some(_) => {}
            }
        }
        let integrity = if failures.is_empty() {
            Integrity::Ok
        } else {
            Integrity::Failed
        };
        return Ok((integrity, failures));
    }
    if path.is_dir() && path.join("MANIFEST").exists() {
        return Ok(match integrity::verify(path, None)?.1 {
            integrity::Integrity::Ok => (Integrity::Ok, Vec::new()),
            integrity::Integrity::Failed(m) => (Integrity::Failed, m),
            integrity::Integrity::Unpinned => (
                Integrity::Failed,
                vec![format!(
                    "INTEGRITY FAILURE: {}: MANIFEST present but not read",
                    path.display()
                )],
            ),
        });
    }
    Ok((Integrity::Unpinned, Vec::new()))
}

/// Checks the files `entry` runs on against their pins, before anything is evaluated.
pub fn variant_integrity(
    entry: &VariantEntry,
    model: &ModelInfo,
) -> Result<VariantIntegrity, EngineError> {
    let mut failures = model.integrity_failures.clone();
    if model.integrity == Integrity::Failed && failures.is_empty() {
        failures.push(format!(
            "INTEGRITY FAILURE: {} does not match its manifest",
            model.path
        ));
    }
    let integrity = match &entry.variant.method {
        Method::Checkpoint { path } => {
            let (i, own) = checkpoint_integrity(entry, path)?;
            failures.extend(own);
            i
        }
        _ => model.integrity,
    };
    Ok(VariantIntegrity {
        integrity,
        failures,
    })
}

/// A variant that failed its integrity check, as the report lists it: not evaluated, so
/// without size or weight error, with the failures named.
pub fn failed_variant_info(entry: &VariantEntry, check: &VariantIntegrity) -> VariantInfo {
    let variant = &entry.variant;
    VariantInfo {
        name: variant.name.clone(),
        kind: variant.method.kind().to_string(),
        method: variant.method.to_string(),
        bits_per_weight: None,
        bytes: None,
        integrity: Integrity::Failed,
        weight_error: None,
        training: None,
        error: Some(format!(
            "integrity: not evaluated, {} integrity failure{} in the files it runs on",
            check.failures.len(),
            if check.failures.len() == 1 { "" } else { "s" }
        )),
        integrity_failures: check.failures.clone(),
        calibration: None,
    }
}

/// A derived variant as the report lists it; `integrity` is what [`variant_integrity`] found
/// (a distilled student reports its teacher's: the student itself is checked against its own
/// manifest when it is taken from the cache or written); `training` is a student's record.
pub fn variant_info(
    entry: &VariantEntry,
    derived: &DerivedVariant,
    integrity: Integrity,
    training: Option<Training>,
) -> VariantInfo {
    let variant = &entry.variant;
    let weight_error = derived.mean_rel_error().map(|mean_rel| WeightError {
        mean_rel,
        worst: derived
            .worst_first()
            .into_iter()
            .take(WORST_TENSORS)
            .map(|s| TensorError {
                tensor: s.name.clone(),
                rel_error: s.rel_error,
            })
            .collect(),
    });
    VariantInfo {
        name: variant.name.clone(),
        kind: variant.method.kind().to_string(),
        method: variant.method.to_string(),
        bits_per_weight: Some(derived.bits_per_weight),
        bytes: Some(derived.bytes),
        integrity,
        weight_error,
        training,
        error: None,
        integrity_failures: Vec::new(),
        calibration: variant
            .method
            .needs_calibration()
            .then(|| crate::calibrated::settings(variant).to_string()),
    }
}
