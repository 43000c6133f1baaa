//! `compsafe requant-diff`: is a downloaded GGUF an honest quantization of its claimed
//! full-precision source?
//!
//! Every tensor of the GGUF is re-quantized from the source (HF layout, q/k rows permuted as
//! llama.cpp does, see [`crate::gguf_write`]) to the same ggml type, and the two are compared
//! block by block:
//!
//! - **identical** blocks have the same bytes;
//! - **differing** blocks have other bytes: a different quantizer (llama.cpp's scale search,
//!   an importance matrix) produces these honestly;
//! - **beyond honest** blocks reconstruct the source worse than any honest quantizer would.
//!   The rule: with `e_file` and `e_ours` the sums of squared differences between the source
//!   weights of the block and the dequantized block of the file and of compsafe's own
//!   re-quantization (ggml's reference algorithm), a block is beyond honest when
//!   `e_file > ratio^2 * e_ours + 1e-9 * sum(w^2)`, i.e. its RMS error is more than `ratio`
//!   (default 2) times the reference quantizer's. Scale searches move a block's error by a
//!   few tens of percent; changing a block's values by hand moves it by orders of magnitude.
//!
//! Also compared: the tensor sets (a tensor only in one of them is reported), the chat
//! template, the tokenizer's vocabulary and merges (see [`crate::manifest`]), and the
//! architecture metadata that changes what the model computes (layer, head and size counts,
//! RMS-norm epsilon, rope base, rope scaling).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::{DType, Device, Tensor};

use crate::error::{EngineError, Result};
use crate::gguf_write::{hf_to_gguf_name, permute_rows};
use crate::loader::Checkpoint;

/// One tensor's comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorDiff {
    /// GGUF tensor name.
    pub name: String,
    /// Its ggml type.
    pub ggml_type: String,
    /// Blocks compared.
    pub blocks: u64,
    /// Blocks whose bytes differ from compsafe's re-quantization.
    pub differing: u64,
    /// Blocks beyond what an honest quantizer produces (see the module docs).
    pub beyond_honest: u64,
    /// Largest `sqrt(e_file / e_ours)` over the differing blocks (RMS error ratio).
    pub worst_ratio: f64,
    /// Flat index of the first beyond-honest block.
    pub first_beyond: Option<u64>,
}

/// The whole comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct RequantDiff {
    /// Per tensor, in name order.
    pub tensors: Vec<TensorDiff>,
    /// GGUF tensors with no source tensor, and source tensors missing from the GGUF.
    pub unmatched: Vec<String>,
    /// The chat templates agree (`None`: neither has one).
    pub chat_template_equal: Option<bool>,
    /// The vocabularies and merges agree (`None`: one side has no tokenizer).
    pub tokenizer_equal: Option<bool>,
    /// Architecture metadata of the GGUF that disagrees with the source's config.json.
    pub config_differences: Vec<String>,
}

impl RequantDiff {
    /// Tensors with beyond-honest blocks.
    pub fn suspicious(&self) -> Vec<&TensorDiff> {
        self.tensors
            .iter()
            .filter(|t| t.beyond_honest > 0)
            .collect()
    }

    /// Nothing suspicious: no beyond-honest block, no unmatched tensor, same template and
    /// tokenizer.
    pub fn clean(&self) -> bool {
        self.suspicious().is_empty()
            && self.unmatched.is_empty()
            && self.config_differences.is_empty()
            && self.chat_template_equal != Some(false)
            && self.tokenizer_equal != Some(false)
    }
}

/// (elements, bytes) of one block of ggml type `t`.
fn block_layout(t: u32) -> Option<(u64, u64, GgmlDType)> {
    Some(match t {
        0 => (1, 4, GgmlDType::F32),
        1 => (1, 2, GgmlDType::F16),
        30 => (1, 2, GgmlDType::BF16),
        2 => (32, 18, GgmlDType::Q4_0),
        3 => (32, 20, GgmlDType::Q4_1),
        6 => (32, 22, GgmlDType::Q5_0),
        7 => (32, 24, GgmlDType::Q5_1),
        8 => (32, 34, GgmlDType::Q8_0),
        10 => (256, 84, GgmlDType::Q2K),
        11 => (256, 110, GgmlDType::Q3K),
        12 => (256, 144, GgmlDType::Q4K),
        13 => (256, 176, GgmlDType::Q5K),
        14 => (256, 210, GgmlDType::Q6K),
        15 => (256, 292, GgmlDType::Q8K),
        _ => return None,
    })
}

fn dequantized(q: &QTensor) -> Result<Vec<f32>> {
    Ok(q.dequantize(&Device::Cpu)?
        .flatten_all()?
        .to_vec1::<f32>()?)
}

/// Compares the GGUF file `quantized` with the HF checkpoint `source`; `ratio` is the RMS
/// error ratio beyond which a block is not honest (see the module docs).
pub fn requant_diff(source: &Path, quantized: &Path, ratio: f64) -> Result<RequantDiff> {
    if !(ratio.is_finite() && ratio >= 1.0) {
        return Err(EngineError::Invalid(format!(
            "--ratio = {ratio}: must be a number of at least 1"
        )));
    }
    let src = Checkpoint::load(source, &Device::Cpu)?;
    if src.config.arch != crate::config::Arch::Llama {
        return Err(EngineError::Invalid(format!(
            "{}: requant-diff compares Llama-architecture sources",
            source.display()
        )));
    }
    let map = crate::loader::map_file(quantized)?;
    let bytes: &[u8] = &map;
    let header = crate::gguf_header::scan(bytes)
        .map_err(|e| EngineError::bad_file(quantized, format!("invalid GGUF: {e}")))?;
    let mut by_gguf: BTreeMap<String, (&String, &Tensor)> = BTreeMap::new();
    for (name, t) in &src.weights {
        if let Some(g) = hf_to_gguf_name(name) {
            by_gguf.insert(g, (name, t));
        }
    }
    let mut tensors = Vec::new();
    let mut unmatched = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (gname, dims, ty, offset) in &header.tensors {
        let Some((hf_name, w)) = by_gguf.get(gname) else {
            unmatched.push(format!("{gname}: in the GGUF, not in the source"));
            continue;
        };
        seen.insert(gname.clone());
        let Some((be, bb, dtype)) = block_layout(*ty) else {
            return Err(EngineError::bad_file(
                quantized,
                format!("tensor `{gname}`: ggml type {ty} cannot be re-quantized here"),
            ));
        };
        let w = w.to_dtype(DType::F32)?;
        let heads = if hf_name.ends_with("self_attn.q_proj.weight") {
            Some(src.config.num_heads)
        } else if hf_name.ends_with("self_attn.k_proj.weight") {
            Some(src.config.num_kv_heads)
        } else {
            None
        };
        let w = match heads {
            Some(h) => permute_rows(&w, h)?,
            None => w,
        };
        let gguf_dims: Vec<usize> = dims.iter().rev().map(|&d| d as usize).collect();
        if w.dims() != gguf_dims.as_slice() {
            unmatched.push(format!(
                "{gname}: shape {:?} in the GGUF, {:?} in the source ({hf_name})",
                gguf_dims,
                w.dims()
            ));
            continue;
        }
        let size = crate::gguf_header::tensor_bytes(*ty, dims)
            .map_err(|e| EngineError::bad_file(quantized, format!("tensor `{gname}`: {e}")))?;
        let start = (header.data_start + offset) as usize;
        let file_bytes = &bytes[start..start + size as usize];
        let theirs = QTensor::new(
            QStorage::from_data(Cow::Borrowed(file_bytes), &Device::Cpu, dtype)?,
            w.shape(),
        )?;
        let ours = QTensor::quantize(&w, dtype)?;
        let ours_bytes = ours.data()?;
        let source = w.flatten_all()?.to_vec1::<f32>()?;
        let (mut deq_theirs, mut deq_ours) = (None, None);
        let blocks = size / bb;
        let mut diff = TensorDiff {
            name: gname.clone(),
            ggml_type: format!("{dtype:?}"),
            blocks,
            differing: 0,
            beyond_honest: 0,
            worst_ratio: 1.0,
            first_beyond: None,
        };
        for b in 0..blocks {
            let (lo, hi) = ((b * bb) as usize, ((b + 1) * bb) as usize);
            if file_bytes[lo..hi] == ours_bytes[lo..hi] {
                continue;
            }
            diff.differing += 1;
            if deq_theirs.is_none() {
                deq_theirs = Some(dequantized(&theirs)?);
                deq_ours = Some(dequantized(&ours)?);
            }
            let (t, o) = (deq_theirs.as_ref().unwrap(), deq_ours.as_ref().unwrap());
            let (lo, hi) = ((b * be) as usize, ((b + 1) * be) as usize);
            let (mut e_t, mut e_o, mut ss) = (0f64, 0f64, 0f64);
            for i in lo..hi {
                let s = f64::from(source[i]);
                e_t += (f64::from(t[i]) - s).powi(2);
                e_o += (f64::from(o[i]) - s).powi(2);
                ss += s * s;
            }
            let r = if e_o > 0.0 {
                (e_t / e_o).sqrt()
            } else if e_t > 0.0 {
                f64::INFINITY
            } else {
                1.0
            };
            diff.worst_ratio = diff.worst_ratio.max(r);
            if e_t > ratio * ratio * e_o + 1e-9 * ss {
                diff.beyond_honest += 1;
                diff.first_beyond.get_or_insert(b);
            }
        }
        tensors.push(diff);
    }
    for g in by_gguf.keys() {
        if !seen.contains(g) && !unmatched.iter().any(|u| u.starts_with(&format!("{g}:"))) {
            unmatched.push(format!("{g}: in the source, not in the GGUF"));
        }
    }
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    let (tpl_s, tok_s) = crate::manifest::template_and_tokenizer(source)?;
    let (tpl_q, tok_q) = crate::manifest::template_and_tokenizer(quantized)?;
    let chat_template_equal = match (&tpl_s, &tpl_q) {
        (None, None) => None,
        (a, b) => Some(a == b),
    };
    let tokenizer_equal = match (&tok_s, &tok_q) {
        (Some(a), Some(b)) => Some(a == b),
        _ => None,
    };
    let mut cur = std::io::Cursor::new(bytes);
    let content = candle_core::quantized::gguf_file::Content::read(&mut cur)
        .map_err(|e| EngineError::bad_file(quantized, format!("invalid GGUF: {e}")))?;
    let has_rope_freqs = header.tensors.iter().any(|t| t.0 == "rope_freqs.weight");
    let config_differences = config_differences(&src.config, &content, has_rope_freqs, quantized);
    Ok(RequantDiff {
        tensors,
        unmatched,
        chat_template_equal,
        tokenizer_equal,
        config_differences,
    })
}

/// The GGUF's `llama.*` metadata against the source's config.
fn config_differences(
    c: &crate::config::ModelConfig,
    content: &candle_core::quantized::gguf_file::Content,
    has_rope_freqs: bool,
    path: &Path,
) -> Vec<String> {
    let mut out = Vec::new();
    for (key, want) in [
        ("llama.block_count", c.num_layers),
        ("llama.embedding_length", c.hidden_size),
        ("llama.feed_forward_length", c.intermediate_size),
        ("llama.attention.head_count", c.num_heads),
        ("llama.attention.head_count_kv", c.num_kv_heads),
    ] {
        match meta_u(content, key, path) {
            Ok(v) if v == want => {}
            Ok(v) => out.push(format!("{key} = {v}, the source has {want}")),
            Err(_) => out.push(format!("{key} is missing (the source has {want})")),
        }
    }
    for (key, want, tol) in [
        (
            "llama.attention.layer_norm_rms_epsilon",
            c.rms_norm_eps,
            1e-4,
        ),
        ("llama.rope.freq_base", f64::from(c.rope_theta), 1e-6),
    ] {
        match meta_f(content, key) {
            Some(v) if (v - want).abs() <= tol * want.abs() => {}
            Some(v) => out.push(format!("{key} = {v}, the source has {want}")),
            None => out.push(format!("{key} is missing (the source has {want})")),
        }
    }
    let scaled_in_gguf = has_rope_freqs || content.metadata.contains_key("llama.rope.scaling.type");
    let scaled_in_source = c.rope_scaling != crate::config::RopeScaling::None;
    if scaled_in_source != scaled_in_gguf {
        out.push(format!(
            "rope scaling: the source has {:?}, the GGUF {}",
            c.rope_scaling,
            if scaled_in_gguf {
                "scales its rope"
            } else {
                "has none (no rope_freqs tensor, no llama.rope.scaling keys)"
            }
        ));
    }
    out
}

fn meta_u(
    content: &candle_core::quantized::gguf_file::Content,
    key: &str,
    path: &Path,
) -> crate::error::Result<usize> {
    let v = content
        .metadata
        .get(key)
        .ok_or_else(|| EngineError::bad_file(path, format!("metadata `{key}` missing")))?;
    v.to_u64()
        .map(|x| x as usize)
        .or_else(|_| v.to_u32().map(|x| x as usize))
        .or_else(|_| v.to_i32().map(|x| x as usize))
        .map_err(|e| EngineError::bad_file(path, format!("metadata `{key}`: {e}")))
}

fn meta_f(content: &candle_core::quantized::gguf_file::Content, key: &str) -> Option<f64> {
    let v = content.metadata.get(key)?;
    v.to_f32().map(f64::from).or_else(|_| v.to_f64()).ok()
}
