//! Writing a Hugging Face checkpoint as a GGUF file the way llama.cpp's
//! `convert_hf_to_gguf.py` lays it out (then quantized as `llama-quantize` does, see
//! [`crate::gguf_quantize`]): tensor names `token_embd`, `blk.N.attn_q`, ...; for the `llama`
//! architecture the q/k rows permuted from the rotate-half layout to the interleaved pairs its
//! rope expects (`qwen2` keeps them, its rope rotates halves); hyper-parameters, tokenizer
//! (`gpt2` BPE vocabulary, token types, merges, pre-tokenizer, special ids, `add_bos_token`)
//! and chat template as metadata. 1-D tensors stay f32.

use std::borrow::Cow;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use compsafe_core::GgufType;

use crate::config::Arch;
use crate::error::{EngineError, Result};
use crate::ggml::file::{OutTensor, Value};
use crate::ggml::recipe::llama_order;
use crate::ggml::GgmlType;
use crate::loader::Checkpoint;

/// What was written.
#[derive(Debug, Clone)]
pub struct Written {
    /// Tensors written: GGUF name and ggml type name, in file order.
    pub tensors: Vec<(String, String)>,
    /// File size in bytes.
    pub bytes: u64,
}

/// A GGUF model held in memory: metadata in file order and tensors in llama.cpp's order.
#[derive(Debug, Clone)]
pub struct GgufModel {
    /// Metadata.
    pub kv: Vec<(String, Value)>,
    /// Tensors (f32 for a conversion).
    pub tensors: Vec<OutTensor<'static>>,
}

/// The GGUF name of an HF tensor name (llama.cpp's tensor map for Llama and Qwen2).
pub fn hf_to_gguf_name(name: &str) -> Option<String> {
    match name {
        "model.embed_tokens.weight" => return Some("token_embd.weight".into()),
        "model.norm.weight" => return Some("output_norm.weight".into()),
        "lm_head.weight" => return Some("output.weight".into()),
        _ => {}
    }
    let rest = name.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let part = match rest {
        "input_layernorm.weight" => "attn_norm.weight",
        "self_attn.q_proj.weight" => "attn_q.weight",
        "self_attn.k_proj.weight" => "attn_k.weight",
        "self_attn.v_proj.weight" => "attn_v.weight",
        "self_attn.q_proj.bias" => "attn_q.bias",
        "self_attn.k_proj.bias" => "attn_k.bias",
        "self_attn.v_proj.bias" => "attn_v.bias",
        "self_attn.o_proj.weight" => "attn_output.weight",
        "post_attention_layernorm.weight" => "ffn_norm.weight",
        "mlp.gate_proj.weight" => "ffn_gate.weight",
        "mlp.up_proj.weight" => "ffn_up.weight",
        "mlp.down_proj.weight" => "ffn_down.weight",
        _ => return None,
    };
    Some(format!("blk.{layer}.{part}"))
}

/// llama.cpp's `permute(w, n_head)`: within each head, rows `[0..d/2)` and `[d/2..d)` of the
/// rotate-half layout become interleaved pairs `(0, d/2), (1, d/2 + 1), ...`. Works on a
/// bias (1-D) too.
pub fn permute_rows(w: &Tensor, heads: usize) -> Result<Tensor> {
    let rows = w.dims()[0];
    let cols = w.elem_count() / rows.max(1);
    if heads == 0 || !rows.is_multiple_of(2 * heads) {
        return Err(EngineError::Invalid(format!(
            "cannot permute {rows} rows for {heads} rotary heads"
        )));
    }
    let half = rows / heads / 2;
    Ok(w.reshape((heads, 2, half, cols))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape(w.dims())?)
}

/// The GGUF token types of an HF model directory's `n` tokens (its tokenizer must be BPE),
/// and the pre-tokenizer name llama.cpp knows it by (`gpt-2` for plain byte-level BPE).
fn token_types(dir: &Path, n: usize) -> Result<(Vec<i32>, Option<&'static str>)> {
    let path = dir.join("tokenizer.json");
    let text = std::fs::read_to_string(&path).map_err(|source| EngineError::Io {
        path: path.clone(),
        source,
    })?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| EngineError::bad_file(&path, format!("invalid JSON: {e}")))?;
    if v["model"]["type"] != "BPE" {
        return Err(EngineError::bad_file(
            &path,
            format!(
                "field `model.type` = {}: only BPE tokenizers are written to GGUF",
                v["model"]["type"]
            ),
        ));
    }
    let special: std::collections::BTreeSet<u64> = v["added_tokens"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["special"] == true)
        .filter_map(|t| t["id"].as_u64())
        .collect();
    let pre = &v["pre_tokenizer"];
    let gpt2 = pre["type"] == "ByteLevel"
        && pre["use_regex"] != false
        && pre["add_prefix_space"] != true
        && v["normalizer"].is_null();
    // gguf TokenType: NORMAL = 1, CONTROL = 3.
    Ok((
        (0..n as u64)
            .map(|i| if special.contains(&i) { 3 } else { 1 })
            .collect(),
        gpt2.then_some("gpt-2"),
    ))
}

/// `add_bos_token` of an HF tokenizer: from tokenizer_config.json, else whether the
/// post-processor prepends the BOS token.
fn adds_bos(dir: &Path, bos: Option<u32>) -> bool {
    let read = |f: &str| -> Option<serde_json::Value> {
        serde_json::from_str(&std::fs::read_to_string(dir.join(f)).ok()?).ok()
    };
    if let Some(b) = read("tokenizer_config.json").and_then(|c| c["add_bos_token"].as_bool()) {
        return b;
    }
    let Some(bos) = bos else { return false };
    read("tokenizer.json").is_some_and(|t| {
        t["post_processor"]["single"]
            .as_array()
            .and_then(|s| s.first())
            .and_then(|first| first["SpecialToken"]["id"].as_str().map(String::from))
            .and_then(|tok| {
                t["added_tokens"]
                    .as_array()?
                    .iter()
                    .find(|a| a["content"] == tok.as_str())?["id"]
                    .as_u64()
            })
            == Some(u64::from(bos))
    })
}

fn f32_bytes(t: &Tensor) -> Result<Vec<u8>> {
    let v = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let mut out = Vec::with_capacity(v.len() * 4);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    Ok(out)
}

/// Converts the HF checkpoint in `dir` to an f32 GGUF model in memory (the file
/// `convert_hf_to_gguf.py --outtype f32` would write, up to metadata it adds for itself).
pub fn convert_hf(dir: &Path) -> Result<GgufModel> {
    let ckpt = Checkpoint::load(dir, &Device::Cpu)?;
    let c = &ckpt.config;
    if c.rope_scaling != crate::config::RopeScaling::None {
        return Err(EngineError::Invalid(format!(
            "{}: rope scaling {:?} needs a rope_freqs tensor, which is not written",
            dir.display(),
            c.rope_scaling
        )));
    }
    let (arch, permute) = match c.arch {
        Arch::Llama | Arch::Mistral if c.sliding_window.is_none() => ("llama", true),
        Arch::Qwen2 => ("qwen2", false),
        _ => {
            return Err(EngineError::Invalid(format!(
                "{}: {:?} with a sliding window is not written to GGUF",
                dir.display(),
                c.arch
            )))
        }
    };
    let (template, lists) = crate::manifest::template_and_tokenizer(dir)?;
    let (tokens, merges) =
        lists.ok_or_else(|| EngineError::bad_file(dir.join("tokenizer.json"), "no vocabulary"))?;
    let (types, pre) = token_types(dir, tokens.len())?;
    let mut tensors = Vec::new();
    for (name, w) in &ckpt.weights {
        let Some(gname) = hf_to_gguf_name(name) else {
            continue;
        };
        let w = if permute && name.contains("self_attn.q_proj.") {
            permute_rows(w, c.num_heads)?
        } else if permute && name.contains("self_attn.k_proj.") {
            permute_rows(w, c.num_kv_heads)?
        } else {
            w.clone()
        };
        let ne: Vec<u64> = w.dims().iter().rev().map(|&d| d as u64).collect();
        tensors.push(OutTensor {
            name: gname,
            ne,
            ty: GgmlType::F32,
            data: Cow::Owned(f32_bytes(&w)?),
        });
    }
    tensors.sort_by(|a, b| llama_order(&a.name, &b.name));
    let u32v = |v: usize| Value::U32(v as u32);
    let mut kv: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        ("general.file_type".into(), Value::U32(0)),
        ("general.quantization_version".into(), Value::U32(2)),
        (
            format!("{arch}.context_length"),
            u32v(c.max_position_embeddings),
        ),
        (format!("{arch}.embedding_length"), u32v(c.hidden_size)),
        (format!("{arch}.block_count"), u32v(c.num_layers)),
        (
            format!("{arch}.feed_forward_length"),
            u32v(c.intermediate_size),
        ),
        (format!("{arch}.rope.dimension_count"), u32v(c.head_dim)),
        (format!("{arch}.attention.head_count"), u32v(c.num_heads)),
        (
            format!("{arch}.attention.head_count_kv"),
            u32v(c.num_kv_heads),
        ),
        (
            format!("{arch}.attention.layer_norm_rms_epsilon"),
            Value::F32(c.rms_norm_eps as f32),
        ),
        (format!("{arch}.rope.freq_base"), Value::F32(c.rope_theta)),
        (format!("{arch}.vocab_size"), u32v(c.vocab_size)),
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
    ];
    if let Some(p) = pre {
        kv.push(("tokenizer.ggml.pre".into(), Value::String(p.into())));
    }
    kv.push(("tokenizer.ggml.tokens".into(), Value::strings(tokens)));
    kv.push((
        "tokenizer.ggml.token_type".into(),
        Value::Array(5, types.into_iter().map(Value::I32).collect()),
    ));
    kv.push(("tokenizer.ggml.merges".into(), Value::strings(merges)));
    if let Some(b) = c.bos_token_id {
        kv.push(("tokenizer.ggml.bos_token_id".into(), Value::U32(b)));
    }
    if let Some(e) = c.eos_token_ids.first() {
        kv.push(("tokenizer.ggml.eos_token_id".into(), Value::U32(*e)));
    }
    kv.push((
        "tokenizer.ggml.add_bos_token".into(),
        Value::Bool(adds_bos(dir, c.bos_token_id)),
    ));
    if let Some(t) = template {
        kv.push(("tokenizer.chat_template".into(), Value::String(t)));
    }
    Ok(GgufModel { kv, tensors })
}

/// Writes a model to `out`.
pub fn write_model(model: &GgufModel, out: &Path) -> Result<Written> {
    let align = model
        .kv
        .iter()
        .find(|(k, _)| k == "general.alignment")
        .and_then(|(_, v)| v.as_i64())
        .map_or(32, |a| a as u64);
    let bytes =
        crate::ggml::file::write(out, &model.kv, &model.tensors, align).map_err(|source| {
            EngineError::Io {
                path: out.to_path_buf(),
                source,
            }
        })?;
    Ok(Written {
        tensors: model
            .tensors
            .iter()
            .map(|t| (t.name.clone(), t.ty.name().to_string()))
            .collect(),
        bytes,
    })
}

/// Writes the HF checkpoint in `dir` to `out` as GGUF: f32 (`ty` = `None`), or every
/// quantizable tensor (token embedding and output included) in `ty` with llama.cpp's
/// fallback for rows the block does not divide.
pub fn write_gguf(dir: &Path, ty: Option<GgufType>, out: &Path) -> Result<Written> {
    let model = convert_hf(dir)?;
    let model = match ty {
        None => model,
        Some(t) => crate::gguf_quantize::quantize_model(
            &model,
            &crate::gguf_quantize::QuantizeRequest::one_type(t),
        )?,
    };
    write_model(&model, out)
}

/// Writes the HF checkpoint in `dir` to `out` as llama.cpp's file type `ftype` would be.
pub fn write_gguf_ftype(
    dir: &Path,
    req: &crate::gguf_quantize::QuantizeRequest,
    out: &Path,
) -> Result<Written> {
    let model = convert_hf(dir)?;
    let q = crate::gguf_quantize::quantize_model(&model, req)?;
    write_model(&q, out)
}
