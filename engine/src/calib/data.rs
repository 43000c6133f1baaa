//! Calibration token sequences from a [`CalibrationSpec`], and the cache key of a variant
//! derived from them.
//!
//! The prompts of the source (a bundled suite, the default benign mix, or a file with one
//! prompt per line) are each rendered as a single-turn chat prompt with the model's template
//! (raw text with the tokenizer's special tokens when it has none), shuffled with the seed
//! (ChaCha8, Fisher-Yates), concatenated in that order and cut into `sequences` windows of
//! `seq_len` tokens. Too few tokens is an error that names the field.

use std::path::Path;

use compsafe_core::calibration::{CalibSource, CalibrationSpec, DEFAULT_MIX};
use compsafe_core::suite::{bundled_source, load_suite};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

use super::CalibTokens;
use crate::error::{EngineError, Result};
use crate::tokenizer::TextCodec;

/// Format tag of the cache key (bump when derivation changes its output).
const FORMAT: &str = "compsafe.calibrated/v1";

/// The prompts of a calibration source, in source order. `field` names the calibration
/// section for errors; a file path is resolved against `base_dir`.
pub fn source_prompts(
    spec: &CalibrationSpec,
    suites_root: &Path,
    base_dir: &Path,
    field: &str,
) -> Result<Vec<String>> {
    let suite = |name: &str| -> Result<Vec<String>> {
        let (src, dir) = bundled_source(suites_root, name)
            .map_err(|e| EngineError::Invalid(format!("{field}.suite = {name:?}: {}", e.reason)))?;
        let s = load_suite(&src, &dir)
            .map_err(|e| EngineError::Invalid(format!("{field}.suite = {name:?}: {e}")))?;
        Ok(s.prompts.into_iter().map(|p| p.prompt).collect())
    };
    match spec.source() {
        CalibSource::DefaultMix => {
            let mut all = Vec::new();
            for name in DEFAULT_MIX {
                all.extend(suite(name)?);
            }
            Ok(all)
        }
        CalibSource::Suite(name) => suite(&name),
        CalibSource::File(p) => {
            let path = if p.is_absolute() { p } else { base_dir.join(p) };
            let text = std::fs::read_to_string(&path).map_err(|e| {
                EngineError::Invalid(format!("{field}.file = {:?}: {e}", path.display()))
            })?;
            Ok(text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect())
        }
    }
}

/// The calibration sequences of `spec` over `prompts` (see the module docs).
pub fn calibration_tokens(
    spec: &CalibrationSpec,
    prompts: &[String],
    codec: &TextCodec,
    field: &str,
) -> Result<CalibTokens> {
    let what = || match spec.source() {
        CalibSource::DefaultMix => format!("{field} (the default mix)"),
        CalibSource::Suite(s) => format!("{field}.suite = {s:?}"),
        CalibSource::File(f) => format!("{field}.file = {:?}", f.display()),
    };
    if prompts.is_empty() {
        return Err(EngineError::Invalid(format!("{}: no prompts", what())));
    }
    let mut order: Vec<usize> = (0..prompts.len()).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    for i in (1..order.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    let need = spec.sequences * spec.seq_len;
    let mut stream = Vec::with_capacity(need);
    for &i in &order {
        if stream.len() >= need {
            break;
        }
        stream.extend(codec.encode_prompt(&prompts[i])?);
    }
    if stream.len() < need {
        return Err(EngineError::Invalid(format!(
            "{}: its {} prompts give {} tokens; {} sequences of {} tokens need {need} \
             (lower {field}.sequences or {field}.seq_len, or use a larger source)",
            what(),
            prompts.len(),
            stream.len(),
            spec.sequences,
            spec.seq_len
        )));
    }
    Ok(CalibTokens {
        seqs: stream[..need]
            .chunks_exact(spec.seq_len)
            .map(<[u32]>::to_vec)
            .collect(),
    })
}

/// The cache key of a calibrated variant: SHA-256 over the derivation format, the method
/// (its canonical string), the tensor selection, the reference's file digests (names and
/// SHA-256) and every calibration token.
pub fn cache_key(
    method: &str,
    select: Option<&str>,
    model_files: &[(String, String)],
    tokens: &CalibTokens,
) -> String {
    let mut h = Sha256::new();
    for part in [FORMAT, method, select.unwrap_or("")] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    for (name, sha) in model_files {
        h.update(name.as_bytes());
        h.update([0]);
        h.update(sha.as_bytes());
        h.update([0]);
    }
    for s in &tokens.seqs {
        h.update((s.len() as u64).to_le_bytes());
        for t in s {
            h.update(t.to_le_bytes());
        }
    }
    hex::encode(h.finalize())
}
