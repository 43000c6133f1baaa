//! Calibrated variants (GPTQ, AWQ, SparseGPT, Wanda, ...): the variant's calibration
//! settings become token sequences (seeded, in a fixed order), and the variant is derived
//! from them once per cache key — the method, the selection, the reference's file digests
//! and every calibration token — and kept under the cache directory, where later units,
//! sweeps and other workers sharing the directory find it.

use std::fs::File;
use std::path::Path;

use compsafe_core::calibration::CalibrationSpec;
use compsafe_core::{suite, Variant};
use compsafe_engine::calib::{data, store, CalibTokens};
use compsafe_engine::variant::{assemble_with, compress_with, DerivedVariant};
use compsafe_engine::EngineError;

use crate::evaluator::Evaluator;

/// The calibration settings a variant runs on (the default ones for a shorthand given
/// outside a spec).
pub fn settings(variant: &Variant) -> CalibrationSpec {
    variant.calibration.clone().unwrap_or_default()
}

/// The calibration sequences of `spec` for the evaluator's model; errors name the variant
/// and the calibration field.
pub fn tokens(
    eval: &Evaluator,
    spec: &CalibrationSpec,
    variant: &str,
) -> Result<CalibTokens, EngineError> {
    let named = |e: EngineError| match e {
        EngineError::Invalid(m) => EngineError::Invalid(format!("variant `{variant}`: {m}")),
        e => e,
    };
    let field = "calibration";
    let prompts =
        data::source_prompts(spec, &suite::bundled_root(), Path::new("."), field).map_err(named)?;
    data::calibration_tokens(spec, &prompts, &eval.codec, field).map_err(named)
}

/// Sequences per calibration forward pass: as many as `batch_tokens` holds.
pub fn batch(spec: &CalibrationSpec, batch_tokens: usize) -> usize {
    (batch_tokens / spec.seq_len.max(1)).max(1)
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> EngineError + '_ {
    move |source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The calibrated variant, from the cache under `cache_dir` when it is there, else derived
/// and stored. Concurrent workers sharing `cache_dir` derive it once: the others wait on a
/// lock file, which the system releases if its holder dies.
pub fn derive(
    eval: &Evaluator,
    variant: &Variant,
    cache_dir: &Path,
    batch_tokens: usize,
) -> Result<DerivedVariant, EngineError> {
    let spec = settings(variant);
    let toks = tokens(eval, &spec, &variant.name)?;
    let files: Vec<(String, String)> =
        compsafe_engine::integrity::digest_model(&eval.checkpoint.path)?
            .into_iter()
            .map(|d| (d.name, d.sha256))
            .collect();
    let method = format!(
        "{}|protect={:?}|protect_layers={:?}",
        variant.method, variant.protect, variant.protect_layers
    );
    let key = data::cache_key(&method, variant.select.as_deref(), &files, &toks);
    let root = cache_dir.join("calibrated");
    std::fs::create_dir_all(&root).map_err(io(&root))?;
    let dir = root.join(&key);
    let lock_path = root.join(format!("{key}.lock"));
    let lock = File::create(&lock_path).map_err(io(&lock_path))?;
    lock.lock().map_err(io(&lock_path))?;
    let device = eval.reference.device();
    let batch = batch(&spec, batch_tokens);
    match store::load(&dir, device) {
        Ok(Some(c)) => {
            tracing::info!(variant = %variant.name, dir = %dir.display(), "calibrated variant found in the cache");
            return assemble_with(&eval.checkpoint, variant, c, Some((&toks, batch)));
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(dir = %dir.display(), "cached calibrated variant unreadable ({e}); deriving it again")
        }
    }
    tracing::info!(
        variant = %variant.name,
        calibration = %spec,
        "calibrating"
    );
    let c = compress_with(&eval.checkpoint, variant, Some((&toks, batch)))?;
    if store::storable(&c) {
        // Written beside the final directory, then renamed into place.
        let partial = root.join(format!("{key}.partial"));
        if partial.exists() {
            std::fs::remove_dir_all(&partial).map_err(io(&partial))?;
        }
        store::save(&partial, &c)?;
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
        }
        std::fs::rename(&partial, &dir).map_err(io(&dir))?;
    }
    drop(lock);
    assemble_with(&eval.checkpoint, variant, c, Some((&toks, batch)))
}
