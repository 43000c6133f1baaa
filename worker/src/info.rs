//! What a unit reports besides its records: the variant's size, error and integrity, and the
//! model's file integrity — computed as a local run computes them.

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

/// A derived variant as the report lists it; `model` is the reference model's integrity.
pub fn variant_info(
    entry: &VariantEntry,
    derived: &DerivedVariant,
    model: Integrity,
    training: Option<Training>,
) -> Result<VariantInfo, EngineError> {
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
    let variant_integrity = match &variant.method {
        Method::Checkpoint { path } if !entry.sha256.is_empty() => {
            let (d, _) = integrity::verify(path, None)?;
            let ok = entry
                .sha256
                .iter()
                .all(|(name, want)| d.iter().any(|x| &x.name == name && &x.sha256 == want));
            if ok {
                Integrity::Ok
            } else {
                Integrity::Failed
            }
        }
        Method::Checkpoint { path } if path.is_dir() && path.join("MANIFEST").exists() => {
            match integrity::verify(path, None)?.1 {
                integrity::Integrity::Ok => Integrity::Ok,
                _ => Integrity::Failed,
            }
        }
        Method::Checkpoint { .. } => Integrity::Unpinned,
        // A distilled student is checked against its own manifest when taken from the cache
        // or written; it reports the teacher's integrity.
        _ => model,
    };
    Ok(VariantInfo {
        name: variant.name.clone(),
        kind: variant.method.kind().to_string(),
        method: variant.method.to_string(),
        bits_per_weight: Some(derived.bits_per_weight),
        bytes: Some(derived.bytes),
        integrity: variant_integrity,
        weight_error,
        training,
    })
}
