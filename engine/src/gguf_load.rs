//! Loading GGUF checkpoints of the supported architectures (`llama`, `qwen2`) in every type
//! llama.cpp writes: f32/f16/bf16 tensors dense, the block types candle executes as its
//! quantized tensors, the others (i-quants, TQ1_0, TQ2_0) as [`BlockTensor`]s; plus the
//! tokenizer metadata ([`GgufTokenizerMeta`]) the text codec is built from.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::ggml_file::qtensor_from_ggml;
use candle_core::{Device, Tensor};

use crate::compress::WeightMap;
use crate::config::{Arch, ModelConfig, RopeScaling};
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
    }
}

fn gguf_to_hf_name(name: &str) -> Option<String> {
    let direct = match name {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(d) = direct {
        return Some(d.to_string());
    }
    let rest = name.strip_prefix("blk.")?;
    let (layer, tail) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let hf = match tail {
        "attn_norm.weight" => "input_layernorm.weight",
        "ffn_norm.weight" => "post_attention_layernorm.weight",
        "attn_q.weight" => "self_attn.q_proj.weight",
        "attn_k.weight" => "self_attn.k_proj.weight",
        "attn_v.weight" => "self_attn.v_proj.weight",
        "attn_q.bias" => "self_attn.q_proj.bias",
        "attn_k.bias" => "self_attn.k_proj.bias",
        "attn_v.bias" => "self_attn.v_proj.bias",
        "attn_output.weight" => "self_attn.o_proj.weight",
        "ffn_gate.weight" => "mlp.gate_proj.weight",
        "ffn_up.weight" => "mlp.up_proj.weight",
        "ffn_down.weight" => "mlp.down_proj.weight",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}"))
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
    let arch = match arch_key.as_str() {
        "llama" => Arch::Llama,
        "qwen2" => Arch::Qwen2,
        other => {
            return Err(bad(format!(
                "metadata `general.architecture` = {other:?}: supported are llama and qwen2"
            )))
        }
    };
    let a = arch_key.as_str();
    let meta_u = |k: &str| -> Result<usize> {
        let key = format!("{a}.{k}");
        let v = f
            .get(&key)
            .ok_or_else(|| bad(format!("metadata `{key}` missing")))?;
        v.as_i64()
            .filter(|x| *x >= 0)
            .map(|x| x as usize)
            .ok_or_else(|| {
                bad(format!(
                    "metadata `{key}` = {v:?}: expected a non-negative integer"
                ))
            })
    };
    let meta_f = |k: &str| f.get(&format!("{a}.{k}")).and_then(Value::as_f64);
    let hidden = meta_u("embedding_length")?;
    let heads = meta_u("attention.head_count")?;
    let kv_heads = meta_u("attention.head_count_kv").unwrap_or(heads);
    let layers = meta_u("block_count")?;
    let ffn = meta_u("feed_forward_length")?;
    let ctx = meta_u("context_length").unwrap_or(4096);
    let head_dim = meta_u("rope.dimension_count").unwrap_or(hidden / heads.max(1));
    let eps = meta_f("attention.layer_norm_rms_epsilon").unwrap_or(1e-5);
    let theta = meta_f("rope.freq_base").unwrap_or(10000.0);
    let embd = f
        .tensor("token_embd.weight")
        .ok_or_else(|| bad("tensor `token_embd.weight` missing".into()))?;
    let vocab = embd.ne.get(1).copied().unwrap_or(0) as usize;
    let tie = f.tensor("output.weight").is_none();
    let bias = f.tensor("blk.0.attn_q.bias").is_some();
    let tok = tokenizer_meta(&f);
    if heads == 0 || kv_heads == 0 || heads % kv_heads != 0 {
        return Err(bad(format!(
            "metadata head counts {heads}/{kv_heads} are inconsistent"
        )));
    }
    let config = ModelConfig {
        arch,
        vocab_size: vocab,
        hidden_size: hidden,
        intermediate_size: ffn,
        num_layers: layers,
        num_heads: heads,
        num_kv_heads: kv_heads,
        head_dim,
        rms_norm_eps: eps,
        rope_theta: theta as f32,
        rope_scaling: RopeScaling::None,
        max_position_embeddings: ctx,
        tie_word_embeddings: tie,
        attention_bias: bias,
        sliding_window: None,
        bos_token_id: tok.bos,
        eos_token_ids: tok.eos.into_iter().collect(),
    };
    // Every layer has its own tensors: a block count beyond the tensors present is corrupt.
    if config.num_layers > f.tensors.len() {
        return Err(bad(format!(
            "metadata `{a}.block_count` = {layers} but the file holds {} tensors",
            f.tensors.len()
        )));
    }
    config
        .check_sizes()
        .map_err(|e| bad(format!("metadata: {e}")))?;
    let expected: BTreeMap<String, Vec<usize>> = config.expected_shapes().into_iter().collect();
    let mut weights = WeightMap::new();
    let mut quantized = BTreeMap::new();
    let mut blocks = BTreeMap::new();
    let mut stored_bits = BTreeMap::new();
    for info in &f.tensors {
        let Some(name) = gguf_to_hf_name(&info.name) else {
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
        stored_bits,
        files: vec![path.to_path_buf()],
        // llama's rope rotates adjacent pairs (its converter permutes q/k rows); qwen2's
        // rotates halves like the Hugging Face layout.
        rope_interleaved: arch == Arch::Llama,
        gguf_metadata: Some(tok),
    })
}
