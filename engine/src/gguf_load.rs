//! Loading GGUF checkpoints of the supported architectures (`llama`, `qwen2`, `qwen3`,
//! `gemma2`, `gemma3`, `phi3`) in every type
//! llama.cpp writes: f32/f16/bf16 tensors dense, the block types candle executes as its
//! quantized tensors, the others (i-quants, TQ1_0, TQ2_0) as [`BlockTensor`]s; plus the
//! tokenizer metadata ([`GgufTokenizerMeta`]) the text codec is built from.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::ggml_file::qtensor_from_ggml;
use candle_core::{Device, Tensor};

use crate::compress::WeightMap;
use crate::config::{config_from_gguf, gguf_to_hf_name, GgufArch};
use crate::error::{EngineError, Result};
use crate::ggml::file::{GgufFile, Value};
use crate::ggml::{dequantize, BlockTensor};
use crate::loader::Checkpoint;

/// Tokenizer facts carried in GGUF metadata (`tokenizer.ggml.*`).
#[derive(Debug, Clone, Default)]
pub struct GgufTokenizerMeta {
    /// `tokenizer.ggml.model`: `gpt2` (byte-level BPE), `llama` (SentencePiece), ...
    pub model: String,
    /// `tokenizer.ggml.pre`: the pre-tokenizer of a `gpt2` vocabulary (`llama3`, `qwen2`, ...).
    pub pre: Option<String>,
    /// Token strings by id.
    pub tokens: Vec<String>,
    /// Token scores by id (SentencePiece).
    pub scores: Vec<f32>,
    /// Token types by id (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte).
    pub token_types: Vec<i32>,
    /// BPE merges (`a b`).
    pub merges: Vec<String>,
    /// `tokenizer.chat_template`.
    pub chat_template: Option<String>,
    /// BOS token id.
    pub bos: Option<u32>,
    /// EOS token id.
    pub eos: Option<u32>,
    /// End-of-turn token id (`tokenizer.ggml.eot_token_id`).
    pub eot: Option<u32>,
    /// Unknown token id.
    pub unk: Option<u32>,
    /// Padding token id.
    pub pad: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`, when the file says.
    pub add_bos: Option<bool>,
    /// `tokenizer.ggml.add_eos_token`, when the file says.
    pub add_eos: Option<bool>,
    /// `tokenizer.ggml.add_space_prefix`, when the file says.
    pub add_space_prefix: Option<bool>,
    /// `general.name` (llama.cpp sets token attributes by it, e.g. for Phi-3).
    pub name: Option<String>,
    /// Every `tokenizer.ggml.<what>_token_id` the file has, by `<what>` (`eom`, `fim_pre`, ...).
    pub special_ids: BTreeMap<String, u32>,
}

/// The tokenizer metadata of a GGUF header.
pub fn tokenizer_meta(f: &GgufFile) -> GgufTokenizerMeta {
    let strings = |key: &str| -> Vec<String> {
        f.get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let id = |key: &str| {
        f.get(key)
            .and_then(Value::as_i64)
            .and_then(|v| u32::try_from(v).ok())
    };
    let flag = |key: &str| f.get(key).and_then(Value::as_bool);
    let text = |key: &str| f.get(key).and_then(Value::as_str).map(String::from);
    GgufTokenizerMeta {
        model: text("tokenizer.ggml.model").unwrap_or_default(),
        pre: text("tokenizer.ggml.pre"),
        tokens: strings("tokenizer.ggml.tokens"),
        scores: f
            .get("tokenizer.ggml.scores")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_f64().map(|v| v as f32))
                    .collect()
            })
            .unwrap_or_default(),
        token_types: f
            .get("tokenizer.ggml.token_type")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_i64().map(|v| v as i32))
                    .collect()
            })
            .unwrap_or_default(),
        merges: strings("tokenizer.ggml.merges"),
        chat_template: text("tokenizer.chat_template"),
        bos: id("tokenizer.ggml.bos_token_id"),
        eos: id("tokenizer.ggml.eos_token_id"),
        eot: id("tokenizer.ggml.eot_token_id"),
        unk: id("tokenizer.ggml.unknown_token_id"),
        pad: id("tokenizer.ggml.padding_token_id"),
        add_bos: flag("tokenizer.ggml.add_bos_token"),
        add_eos: flag("tokenizer.ggml.add_eos_token"),
        add_space_prefix: flag("tokenizer.ggml.add_space_prefix"),
        name: text("general.name"),
        special_ids: f
            .kv
            .iter()
            .filter_map(|(k, v)| {
                let what = k
                    .strip_prefix("tokenizer.ggml.")?
                    .strip_suffix("_token_id")?;
                let id = v.as_i64().and_then(|v| u32::try_from(v).ok())?;
                Some((what.to_string(), id))
            })
            .collect(),
    }
}

/// Reads a GGUF checkpoint from its bytes (`path` names it in errors). The header is walked
/// with every length checked against the bytes present before it is decoded.
pub fn read_gguf(path: &Path, bytes: &[u8], device: &Device) -> Result<Checkpoint> {
    let bad = |m: String| EngineError::bad_file(path, m);
    let f = GgufFile::read(bytes).map_err(|e| bad(format!("invalid GGUF: {e}")))?;
    let arch_key = f
        .get("general.architecture")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let arch = GgufArch::from_name(&arch_key).ok_or_else(|| {
        bad(format!(
            "metadata `general.architecture` = {arch_key:?}: supported are llama, qwen2, qwen3, \
             gemma2, gemma3 and phi3"
        ))
    })?;
    let tok = tokenizer_meta(&f);
    // Phi-3's LongRoPE factors are tensors.
    let factor = |name: &str| -> Result<Option<Vec<f32>>> {
        let Some(info) = f.tensor(name) else {
            return Ok(None);
        };
        let data = f.data(bytes, info).map_err(bad)?;
        dequantize(info.ty, data, info.numel() as usize)
            .map(Some)
            .map_err(|e| bad(format!("tensor `{name}`: {e}")))
    };
    let rope_factors = match (
        factor("rope_factors_short.weight")?,
        factor("rope_factors_long.weight")?,
    ) {
        (Some(short), Some(long)) => Some((short, long)),
        _ => None,
    };
    let config = config_from_gguf(&f, arch, rope_factors, tok.bos, tok.eos, path)?;
    let tie = config.tie_word_embeddings;
    let expected: BTreeMap<String, Vec<usize>> = config.expected_shapes().into_iter().collect();
    let mut weights = WeightMap::new();
    let mut quantized = BTreeMap::new();
    let mut blocks = BTreeMap::new();
    let mut stored_bits = BTreeMap::new();
    for info in &f.tensors {
        let Some(name) = gguf_to_hf_name(arch, &info.name) else {
            continue;
        };
        let Some(shape) = expected.get(&name) else {
            continue;
        };
        let dims = info.shape();
        if &dims != shape {
            return Err(bad(format!(
                "tensor `{}` has shape {dims:?} but the metadata implies {shape:?}",
                info.name
            )));
        }
        let data = f.data(bytes, info).map_err(bad)?;
        let numel = info.numel() as usize;
        let bits = data.len() as f64 * 8.0 / numel.max(1) as f64;
        let dense =
            !info.ty.is_quantized() || shape.len() == 1 || name == "model.embed_tokens.weight";
        if dense {
            let v = dequantize(info.ty, data, numel)
                .map_err(|e| bad(format!("tensor `{}`: {e}", info.name)))?;
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                return Err(bad(format!(
                    "tensor `{}` has a non-finite weight ({}) at flat index {i}",
                    info.name, v[i]
                )));
            }
            stored_bits.insert(name.clone(), bits);
            weights.insert(name.clone(), Tensor::from_vec(v, dims.clone(), device)?);
        }
        // A tied model's output projection is its token embedding, multiplied in its stored
        // type as llama.cpp does.
        let as_linear = if name == "model.embed_tokens.weight" {
            tie.then(|| "lm_head.weight".to_string())
        } else {
            (!dense).then(|| name.clone())
        };
        let Some(lname) = as_linear else { continue };
        if !info.ty.is_quantized() {
            continue;
        }
        match info.ty.candle() {
            Some(dt) => {
                let q = qtensor_from_ggml(dt, data, dims.clone(), device)
                    .map_err(|e| bad(format!("tensor `{}`: {e}", info.name)))?;
                quantized.insert(lname, Arc::new(q));
            }
            None => {
                let b = BlockTensor::new(info.ty, dims[0], dims[1], data.to_vec(), device)
                    .map_err(|e| bad(format!("tensor `{}`: {e}", info.name)))?;
                blocks.insert(lname, Arc::new(b));
            }
        }
    }
    for name in expected.keys() {
        if !weights.contains_key(name)
            && !quantized.contains_key(name)
            && !blocks.contains_key(name)
        {
            return Err(bad(format!("tensor for `{name}` is missing")));
        }
    }
    Ok(Checkpoint {
        path: path.to_path_buf(),
        config,
        weights,
        quantized,
        blocks,
        packed: BTreeMap::new(),
        kv_quant: None,
        format: None,
        stored_bits,
        files: vec![path.to_path_buf()],
        // llama's rope rotates adjacent pairs (its converter permutes q/k rows); the others
        // rotate halves like the Hugging Face layout.
        rope_interleaved: arch.rope_interleaved(),
        gguf_metadata: Some(tok),
    })
}

/// The tokenizer metadata of the GGUF file at `path`, without loading its tensors.
pub fn read_tokenizer_meta(path: &Path) -> Result<GgufTokenizerMeta> {
    let bytes = std::fs::read(path).map_err(|source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let f = GgufFile::read(&bytes)
        .map_err(|e| EngineError::bad_file(path, format!("invalid GGUF: {e}")))?;
    Ok(tokenizer_meta(&f))
}
