//! `distill` variants: the worker builds the transfer set (the teacher's greedy answers to the
//! named suites' prompts), trains the student once per cache key and keeps it under the cache
//! directory, where later units, sweeps and other workers sharing the directory find it.

use std::fs::File;
use std::path::{Path, PathBuf};

use compsafe_core::report::{CurvePoint, Training};
use compsafe_core::suite;
use compsafe_core::{DistillSpec, Method, Variant};
use compsafe_engine::distill::{self, TransferSeq};
use compsafe_engine::variant::DerivedVariant;
use compsafe_engine::{generate, EngineError, GenerateOptions};

use crate::evaluator::Evaluator;

/// The default cache directory: `$COMPSAFE_CACHE_DIR`, else `$XDG_CACHE_HOME/compsafe`, else
/// `~/.cache/compsafe`, else `compsafe-cache` under the system's temporary directory.
pub fn default_cache_dir() -> PathBuf {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(p) = var("COMPSAFE_CACHE_DIR") {
        return p;
    }
    if let Some(p) = var("XDG_CACHE_HOME") {
        return p.join("compsafe");
    }
    if let Some(p) = var("HOME") {
        return p.join(".cache").join("compsafe");
    }
    std::env::temp_dir().join("compsafe-cache")
}

/// Derives any variant: a `distill` variant's student is found in or added to the cache
/// under `cache_dir` and loaded like a checkpoint (with its training record), a calibrated
/// variant likewise ([`crate::calibrated::derive`]); the others are derived from the
/// reference.
pub fn derive(
    eval: &Evaluator,
    variant: &Variant,
    cache_dir: &Path,
    batch_tokens: usize,
) -> Result<(DerivedVariant, Option<Training>), EngineError> {
    if variant.method.needs_calibration() {
        let derived = crate::calibrated::derive(eval, variant, cache_dir, batch_tokens)?;
        return Ok((derived, None));
    }
    let Method::Distill(d) = &variant.method else {
        return Ok((eval.derive(variant)?, None));
    };
    let (path, record) = student(eval, d, cache_dir, batch_tokens)?;
    let as_checkpoint = Variant {
        method: Method::Checkpoint { path },
        ..variant.clone()
    };
    Ok((eval.derive(&as_checkpoint)?, Some(training_info(&record))))
}

/// The transfer prompts: those of `spec.prompts` then of `spec.safety` (flagged), each
/// suite's first `limit`, chat template applied; answers still empty.
pub fn transfer_prompts(
    eval: &Evaluator,
    spec: &DistillSpec,
) -> Result<Vec<TransferSeq>, EngineError> {
    let root = suite::bundled_root();
    let mut prompts: Vec<TransferSeq> = Vec::new();
    for (name, safety) in [(Some(&spec.prompts), false), (spec.safety.as_ref(), true)] {
        let Some(name) = name else { continue };
        let (source, base) = suite::bundled_source(&root, name)
            .map_err(|e| EngineError::Invalid(format!("distill: suite `{name}`: {e}")))?;
        let s = suite::load_suite(&source, &base)
            .map_err(|e| EngineError::Invalid(format!("distill: suite `{name}`: {e}")))?;
        let n = spec.limit.unwrap_or(s.prompts.len()).min(s.prompts.len());
        for p in &s.prompts[..n] {
            prompts.push(TransferSeq {
                prompt: eval.prompt_tokens(&p.prompt)?,
                answer: Vec::new(),
                safety,
            });
        }
    }
    Ok(prompts)
}

/// Fills in the teacher's greedy answers (hard labels of the hard-label term).
pub fn answer(
    eval: &Evaluator,
    seqs: &mut [TransferSeq],
    max_new_tokens: usize,
    batch_tokens: usize,
) -> Result<(), EngineError> {
    let ids: Vec<Vec<u32>> = seqs.iter().map(|s| s.prompt.clone()).collect();
    let opts = GenerateOptions {
        max_new_tokens,
        batch_tokens,
        max_batch: 64,
        eos: eval.eos().to_vec(),
    };
    for (s, g) in seqs
        .iter_mut()
        .zip(generate(&eval.reference, &ids, &opts, None)?)
    {
        s.answer = g.tokens;
    }
    Ok(())
}

/// The report's view of a training record.
pub fn training_info(r: &distill::TrainingRecord) -> Training {
    Training {
        cache_key: r.cache_key.clone(),
        layers: r.layers,
        intermediate_size: r.intermediate_size,
        params: r.params,
        transfer_prompts: r.transfer_prompts,
        safety_prompts: r.safety_prompts,
        steps: r.spec.steps,
        curve: r
            .curve
            .iter()
            .map(|&(step, loss)| CurvePoint { step, loss })
            .collect(),
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> EngineError + '_ {
    move |source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The student of `spec` distilled from the evaluator's reference: from the cache when a
/// complete one is there (its manifest verified), else trained and stored. Concurrent workers
/// sharing `cache_dir` train it once: the others wait on a lock file.
pub fn student(
    eval: &Evaluator,
    spec: &DistillSpec,
    cache_dir: &Path,
    batch_tokens: usize,
) -> Result<(PathBuf, distill::TrainingRecord), EngineError> {
    let teacher_dir = &eval.checkpoint.path;
    if !teacher_dir.is_dir() {
        return Err(EngineError::Invalid(format!(
            "distill: the reference {} is not a Hugging Face directory; a student is trained from safetensors weights",
            teacher_dir.display()
        )));
    }
    let cfg = distill::student_config(&eval.checkpoint.config, spec)?;
    let mut seqs = transfer_prompts(eval, spec)?;
    let files: Vec<(String, String)> = compsafe_engine::integrity::digest_model(teacher_dir)?
        .into_iter()
        .map(|d| (d.name, d.sha256))
        .collect();
    let key = distill::cache_key(spec, &files, &seqs);
    let students = cache_dir.join("students");
    std::fs::create_dir_all(&students).map_err(io(&students))?;
    let dir = students.join(&key);
    let lock_path = students.join(format!("{key}.lock"));
    let lock = File::create(&lock_path).map_err(io(&lock_path))?;
    lock.lock().map_err(io(&lock_path))?;
    if let Some(found) = cached(&dir)? {
        tracing::info!(student = %dir.display(), "distilled student found in the cache");
        return Ok((dir, found));
    }
    tracing::info!(
        student = %dir.display(),
        transfer = seqs.len(),
        steps = spec.steps,
        "distilling a student"
    );
    answer(eval, &mut seqs, spec.max_new_tokens, batch_tokens)?;
    let trained = distill::train(&eval.reference, &eval.checkpoint, &cfg, spec, &seqs)?;
    let record = distill::record(&key, spec, &trained, &seqs);
    // Written beside the final directory, then renamed into place.
    let partial = students.join(format!("{key}.partial"));
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(io(&partial))?;
    }
    distill::save_student(&partial, teacher_dir, &trained, &record)?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
    }
    std::fs::rename(&partial, &dir).map_err(io(&dir))?;
    drop(lock);
    Ok((dir, record))
}

/// A complete cached student: its record readable and its files matching its manifest.
fn cached(dir: &Path) -> Result<Option<distill::TrainingRecord>, EngineError> {
    if !dir.join(distill::RECORD_FILE).is_file() {
        return Ok(None);
    }
    let (_, integrity) = compsafe_engine::manifest::verify(dir, Some(&dir.join("MANIFEST.json")))?;
    if !matches!(integrity, compsafe_engine::integrity::Integrity::Ok) {
        tracing::warn!(student = %dir.display(), "cached student does not match its manifest; training again");
        return Ok(None);
    }
    Ok(Some(distill::load_record(dir)?))
}
