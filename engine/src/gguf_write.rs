//! Writing a Llama-family Hugging Face checkpoint as a GGUF file, the way llama.cpp's
//! `convert_hf_to_gguf.py` + `llama-quantize` lay it out: tensor names `token_embd`,
//! `blk.N.attn_q`, ...; q/k rows permuted from the rotate-half layout to the interleaved
//! pairs llama.cpp's rope expects; architecture and tokenizer metadata (`gpt2` BPE vocabulary,
//! token types, merges, special ids, chat template). 2-D weights are stored in the requested
//! block type (with llama.cpp's fallback for rows the block does not divide, see
//! [`crate::compress::gguf::storage_for`]), 1-D tensors in f32.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use compsafe_core::GgufType;

use crate::compress::gguf::{ggml_dtype, storage_for};
use crate::config::Arch;
use crate::error::{EngineError, Result};
use crate::loader::Checkpoint;

/// What was written.
#[derive(Debug, Clone)]
pub struct Written {
    /// Tensors written: GGUF name and ggml type name.
    pub tensors: Vec<(String, String)>,
    /// File size in bytes.
    pub bytes: u64,
}

/// The GGUF name of an HF tensor name (llama.cpp's tensor map for the Llama family).
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
/// rotate-half layout become interleaved pairs `(0, d/2), (1, d/2 + 1), ...`.
pub fn permute_rows(w: &Tensor, heads: usize) -> Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    if heads == 0 || rows % (2 * heads) != 0 {
        return Err(EngineError::Invalid(format!(
            "cannot permute {rows} rows for {heads} rotary heads"
        )));
    }
    let half = rows / heads / 2;
    Ok(w.reshape((heads, 2, half, cols))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((rows, cols))?)
}

fn meta_u32(v: usize) -> gguf_file::Value {
    gguf_file::Value::U32(v as u32)
}

/// The GGUF token types of an HF model directory's `n` tokens (its tokenizer must be BPE).
fn token_types(dir: &Path, n: usize) -> Result<Vec<i32>> {
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
    // gguf TokenType: NORMAL = 1, CONTROL = 3.
    Ok((0..n as u64)
        .map(|i| if special.contains(&i) { 3 } else { 1 })
        .collect())
}

/// Writes the HF checkpoint in `dir` to `out` as GGUF, 2-D weights in `ty` (`None`: f32).
pub fn write_gguf(dir: &Path, ty: Option<GgufType>, out: &Path) -> Result<Written> {
    let ckpt = Checkpoint::load(dir, &Device::Cpu)?;
    let c = &ckpt.config;
    if c.rope_scaling != crate::config::RopeScaling::None {
        return Err(EngineError::Invalid(format!(
            "{}: rope scaling {:?} needs a rope_freqs tensor, which is not written",
            dir.display(),
            c.rope_scaling
        )));
    }
    if c.arch != Arch::Llama || c.attention_bias {
        return Err(EngineError::Invalid(format!(
            "{}: only Llama-architecture checkpoints without attention biases are written to \
             GGUF",
            dir.display()
        )));
    }
    let (template, lists) = crate::manifest::template_and_tokenizer(dir)?;
    let (tokens, merges) =
        lists.ok_or_else(|| EngineError::bad_file(dir.join("tokenizer.json"), "no vocabulary"))?;
    let types = token_types(dir, tokens.len())?;
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for (name, w) in &ckpt.weights {
        let Some(gname) = hf_to_gguf_name(name) else {
            continue;
        };
        let w = w.to_dtype(DType::F32)?;
        let w = if name.ends_with("self_attn.q_proj.weight") {
            permute_rows(&w, c.num_heads)?
        } else if name.ends_with("self_attn.k_proj.weight") {
            permute_rows(&w, c.num_kv_heads)?
        } else {
            w
        };
        let dtype = match (ty, w.rank()) {
            (Some(t), 2) => {
                let cols = w.dims()[1];
                storage_for(t, cols).map_or(GgmlDType::F16, ggml_dtype)
            }
            _ => GgmlDType::F32,
        };
        let q = QTensor::quantize(&w, dtype)?;
        names.insert(gname.clone(), format!("{dtype:?}"));
        tensors.push((gname, q));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let s = |x: &str| gguf_file::Value::String(x.to_string());
    let strings = |v: &[String]| gguf_file::Value::Array(v.iter().map(|x| s(x)).collect());
    let mut meta: Vec<(String, gguf_file::Value)> = vec![
        ("general.architecture".into(), s("llama")),
        (
            "general.quantization_version".into(),
            gguf_file::Value::U32(2),
        ),
        (
            "llama.context_length".into(),
            meta_u32(c.max_position_embeddings),
        ),
        ("llama.embedding_length".into(), meta_u32(c.hidden_size)),
        ("llama.block_count".into(), meta_u32(c.num_layers)),
        (
            "llama.feed_forward_length".into(),
            meta_u32(c.intermediate_size),
        ),
        ("llama.rope.dimension_count".into(), meta_u32(c.head_dim)),
        ("llama.attention.head_count".into(), meta_u32(c.num_heads)),
        (
            "llama.attention.head_count_kv".into(),
            meta_u32(c.num_kv_heads),
        ),
        (
            "llama.attention.layer_norm_rms_epsilon".into(),
            gguf_file::Value::F32(c.rms_norm_eps as f32),
        ),
        (
            "llama.rope.freq_base".into(),
            gguf_file::Value::F32(c.rope_theta),
        ),
        ("llama.vocab_size".into(), meta_u32(c.vocab_size)),
        ("tokenizer.ggml.model".into(), s("gpt2")),
        ("tokenizer.ggml.tokens".into(), strings(&tokens)),
        (
            "tokenizer.ggml.token_type".into(),
            gguf_file::Value::Array(types.into_iter().map(gguf_file::Value::I32).collect()),
        ),
        ("tokenizer.ggml.merges".into(), strings(&merges)),
    ];
    if let Some(b) = c.bos_token_id {
        meta.push((
            "tokenizer.ggml.bos_token_id".into(),
            gguf_file::Value::U32(b),
        ));
    }
    if let Some(e) = c.eos_token_ids.first() {
        meta.push((
            "tokenizer.ggml.eos_token_id".into(),
            gguf_file::Value::U32(*e),
        ));
    }
    if let Some(t) = template {
        meta.push(("tokenizer.chat_template".into(), s(&t)));
    }
    let meta_refs: Vec<(&str, &gguf_file::Value)> =
        meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let io = |source| EngineError::Io {
        path: out.to_path_buf(),
        source,
    };
    let tmp = out.with_extension("gguf.partial");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io)?);
    gguf_file::write(&mut f, &meta_refs, &tensor_refs)?;
    f.into_inner().map_err(|e| io(e.into_error()))?;
    std::fs::rename(&tmp, out).map_err(io)?;
    let bytes = std::fs::metadata(out).map_err(io)?.len();
    Ok(Written {
        tensors: names.into_iter().collect(),
        bytes,
    })
}
