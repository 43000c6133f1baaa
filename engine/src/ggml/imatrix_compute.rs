//! Computing an importance matrix as `llama-imatrix` does: the calibration text is tokenized
//! (with the tokenizer's special tokens), cut into chunks of `n_ctx` tokens (the remainder
//! dropped, at least two chunks required), the first token of each chunk replaced by BOS when
//! the tokenizer adds one; every chunk is run through the model and each decoder matrix
//! (`blk.*`; not the output projection, as without `--process-output`) accumulates, per input
//! column, the squared activations of every token, with the token count.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::{Device, Tensor};

use super::imatrix::{Imatrix, ImatrixEntry};
use crate::compress::{default_selection, Compressed, LinearWeight};
use crate::error::{EngineError, Result};
use crate::gguf_write::hf_to_gguf_name;
use crate::linear::Tap;
use crate::loader::Checkpoint;
use crate::model::Model;
use crate::tokenizer::TextCodec;

/// The importance matrix of `ckpt` over `tokens` in chunks of `n_ctx` (BOS put first in each
/// chunk when `bos` is given). `dataset` is recorded as the data set's name.
pub fn compute(
    ckpt: &Checkpoint,
    tokens: &[u32],
    n_ctx: usize,
    bos: Option<u32>,
    dataset: &str,
) -> Result<Imatrix> {
    if n_ctx < 16 {
        return Err(EngineError::Invalid(format!(
            "a calibration chunk of {n_ctx} tokens is too short (llama-imatrix ignores batches below 16 tokens)"
        )));
    }
    if tokens.len() < 2 * n_ctx {
        return Err(EngineError::Invalid(format!(
            "the calibration text tokenizes to {} tokens; at least {} are needed for chunks of {n_ctx} (as llama-imatrix asks)",
            tokens.len(),
            2 * n_ctx
        )));
    }
    let mut taps: BTreeMap<String, Arc<Tap>> = BTreeMap::new();
    let mut probe = Compressed::default();
    for name in ckpt
        .weights
        .keys()
        .chain(ckpt.quantized.keys())
        .chain(ckpt.blocks.keys())
    {
        if !default_selection(name) {
            continue;
        }
        let Some(g) = hf_to_gguf_name(name) else {
            continue;
        };
        let inner = if let Some(t) = ckpt.weights.get(name) {
            LinearWeight::Dense(t.clone())
        } else if let Some(q) = ckpt.quantized.get(name) {
            LinearWeight::Quantized(Arc::clone(q))
        } else if let Some(b) = ckpt.blocks.get(name) {
            LinearWeight::Blocks(Arc::clone(b))
        } else {
            continue;
        };
        let tap = Arc::new(Tap::default());
        taps.insert(g, Arc::clone(&tap));
        probe
            .weights
            .insert(name.clone(), LinearWeight::Observed(tap, Box::new(inner)));
    }
    let model = Model::with_variant(ckpt, &probe)?;
    let n_chunk = tokens.len() / n_ctx;
    for c in 0..n_chunk {
        let mut chunk: Vec<u32> = tokens[c * n_ctx..(c + 1) * n_ctx].to_vec();
        if let Some(b) = bos {
            chunk[0] = b;
        }
        let ids = Tensor::new(chunk.as_slice(), model.device())?.unsqueeze(0)?;
        model.forward_logits(&ids)?;
    }
    let mut im = Imatrix {
        datasets: vec![dataset.to_string()],
        chunk_count: n_chunk as u32,
        chunk_size: n_ctx as u32,
        ..Imatrix::default()
    };
    for (name, tap) in taps {
        let (sums, count) = tap.take();
        if count > 0 {
            im.entries.insert(
                name,
                ImatrixEntry {
                    sums,
                    counts: vec![count as f32],
                },
            );
        }
    }
    Ok(im)
}

/// The prompts of bundled suite `suite`, one per line, as a calibration text.
pub fn suite_text(suite: &str) -> Result<String> {
    let root = compsafe_core::suite::bundled_root();
    let (src, base) = compsafe_core::suite::bundled_source(&root, suite)
        .map_err(|e| EngineError::Invalid(format!("calibration suite: {e}")))?;
    let s = compsafe_core::suite::load_suite(&src, &base)
        .map_err(|e| EngineError::Invalid(format!("calibration suite `{suite}`: {e}")))?;
    Ok(s.prompts
        .iter()
        .map(|p| p.prompt.as_str())
        .collect::<Vec<_>>()
        .join("\n"))
}

/// The text codec of a model path (HF directory or GGUF file).
fn codec_of(path: &Path, ckpt: &Checkpoint) -> Result<TextCodec> {
    match &ckpt.gguf_metadata {
        Some(meta) => TextCodec::from_gguf(path, meta),
        None => TextCodec::from_hf_dir(path, None),
    }
}

/// The importance matrix of the model at `path` (HF directory or GGUF) over bundled suite
/// `suite`'s prompts, in chunks of `n_ctx` tokens.
pub fn from_suite(path: &Path, suite: &str, n_ctx: usize) -> Result<Imatrix> {
    let ckpt = Checkpoint::load(path, &Device::Cpu)?;
    of_checkpoint(&ckpt, suite, n_ctx)
}

/// [`from_suite`] for a checkpoint already loaded (its tokenizer is read from its path).
pub fn of_checkpoint(ckpt: &Checkpoint, suite: &str, n_ctx: usize) -> Result<Imatrix> {
    let codec = codec_of(&ckpt.path, ckpt)?;
    let text = suite_text(suite)?;
    let tokens = codec.encode(&text, true)?;
    let bos = ckpt
        .config
        .bos_token_id
        .filter(|b| tokens.first() == Some(b));
    compute(ckpt, &tokens, n_ctx, bos, suite)
}
