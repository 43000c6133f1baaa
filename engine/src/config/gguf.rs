//! GGUF metadata and tensor names as llama.cpp's `convert_hf_to_gguf.py` writes them, for the
//! `llama`, `qwen2`, `qwen3`, `gemma2`, `gemma3` and `phi3` architectures.
//!
//! What the converter changes and this module undoes or accounts for:
//! - `llama`: q and k rows permuted for llama.cpp's interleaved rotation (the loader marks the
//!   checkpoint [`rope_interleaved`](crate::loader::Checkpoint::rope_interleaved)); the other
//!   architectures rotate halves, as transformers does, and are stored unpermuted.
//! - Gemma: every `*norm.weight` is stored as `1 + w`, so a GGUF Gemma scales by the stored
//!   weight (`norm_plus_one` off); `query_pre_attn_scalar` is not stored and llama.cpp uses
//!   `head_dim` (for every size but the 27B model), as this module does.
//! - Phi-3 LongRoPE: the factors are tensors (`rope_factors_long`, `rope_factors_short`), the
//!   attention factor and the original context are metadata.

use std::path::Path;

use super::{Activation, Arch, ArchParams, LayerKind, ModelConfig, Rope, RopeScaling};
use crate::error::{EngineError, Result};
use crate::ggml::file::{GgufFile, Value};

/// A non-negative integer of the metadata.
fn meta_u(f: &GgufFile, key: &str, path: &Path) -> Result<usize> {
    let v = f
        .get(key)
        .ok_or_else(|| EngineError::bad_file(path, format!("metadata `{key}` missing")))?;
    v.as_i64()
        .filter(|x| *x >= 0)
        .map(|x| x as usize)
        .ok_or_else(|| {
            EngineError::bad_file(
                path,
                format!("metadata `{key}` = {v:?}: expected a non-negative integer"),
            )
        })
}

/// A number of the metadata.
fn meta_f(f: &GgufFile, key: &str) -> Option<f64> {
    f.get(key).and_then(Value::as_f64)
}

/// A GGUF `general.architecture` the engine reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgufArch {
    /// `llama` (Llama, Mistral).
    Llama,
    /// `qwen2`.
    Qwen2,
    /// `qwen3`.
    Qwen3,
    /// `gemma2`.
    Gemma2,
    /// `gemma3`.
    Gemma3,
    /// `phi3`.
    Phi3,
}

impl GgufArch {
    /// The architecture named by `general.architecture`.
    pub fn from_name(name: &str) -> Option<GgufArch> {
        Some(match name {
            "llama" => GgufArch::Llama,
            "qwen2" => GgufArch::Qwen2,
            "qwen3" => GgufArch::Qwen3,
            "gemma2" => GgufArch::Gemma2,
            "gemma3" => GgufArch::Gemma3,
            "phi3" => GgufArch::Phi3,
            _ => return None,
        })
    }

    /// The metadata prefix.
    pub fn name(self) -> &'static str {
        match self {
            GgufArch::Llama => "llama",
            GgufArch::Qwen2 => "qwen2",
            GgufArch::Qwen3 => "qwen3",
            GgufArch::Gemma2 => "gemma2",
            GgufArch::Gemma3 => "gemma3",
            GgufArch::Phi3 => "phi3",
        }
    }

    /// Whether q/k rows are stored in llama.cpp's interleaved rotary order.
    pub fn rope_interleaved(self) -> bool {
        self == GgufArch::Llama
    }

    fn gemma(self) -> bool {
        matches!(self, GgufArch::Gemma2 | GgufArch::Gemma3)
    }
}

/// The Hugging Face name of a GGUF tensor of architecture `arch`, `None` for tensors the model
/// does not use (and for the Phi-3 rope factor tensors, which the loader reads into the config).
pub fn gguf_to_hf_name(arch: GgufArch, name: &str) -> Option<String> {
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
    let hf = match (tail, arch.gemma(), arch == GgufArch::Phi3) {
        ("attn_norm.weight", _, _) => "input_layernorm.weight",
        ("ffn_norm.weight", false, _) => "post_attention_layernorm.weight",
        ("ffn_norm.weight", true, _) => "pre_feedforward_layernorm.weight",
        ("post_attention_norm.weight", true, _) => "post_attention_layernorm.weight",
        ("post_ffw_norm.weight", true, _) => "post_feedforward_layernorm.weight",
        ("attn_q.weight", _, _) => "self_attn.q_proj.weight",
        ("attn_k.weight", _, _) => "self_attn.k_proj.weight",
        ("attn_v.weight", _, _) => "self_attn.v_proj.weight",
        ("attn_q.bias", _, _) => "self_attn.q_proj.bias",
        ("attn_k.bias", _, _) => "self_attn.k_proj.bias",
        ("attn_v.bias", _, _) => "self_attn.v_proj.bias",
        ("attn_qkv.weight", _, true) => "self_attn.qkv_proj.weight",
        ("attn_q_norm.weight", _, _) => "self_attn.q_norm.weight",
        ("attn_k_norm.weight", _, _) => "self_attn.k_norm.weight",
        ("attn_output.weight", _, _) => "self_attn.o_proj.weight",
        ("ffn_gate.weight", _, false) => "mlp.gate_proj.weight",
        ("ffn_up.weight", _, false) => "mlp.up_proj.weight",
        ("ffn_up.weight", _, true) => "mlp.gate_up_proj.weight",
        ("ffn_down.weight", _, _) => "mlp.down_proj.weight",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}"))
}

/// The model configuration a GGUF file's metadata and tensor list describe. `rope_factors` are
/// the Phi-3 `(short, long)` LongRoPE factor tensors when the file has them.
pub fn config_from_gguf(
    content: &GgufFile,
    arch: GgufArch,
    rope_factors: Option<(Vec<f32>, Vec<f32>)>,
    bos: Option<u32>,
    eos: Option<u32>,
    path: &Path,
) -> Result<ModelConfig> {
    let a = arch.name();
    let key = |k: &str| format!("{a}.{k}");
    let hidden = meta_u(content, &key("embedding_length"), path)?;
    let heads = meta_u(content, &key("attention.head_count"), path)?;
    let kv_heads = meta_u(content, &key("attention.head_count_kv"), path).unwrap_or(heads);
    let layers = meta_u(content, &key("block_count"), path)?;
    let ffn = meta_u(content, &key("feed_forward_length"), path)?;
    let ctx = meta_u(content, &key("context_length"), path).unwrap_or(4096);
    if heads == 0 || kv_heads == 0 || heads % kv_heads != 0 {
        return Err(EngineError::bad_file(
            path,
            format!("metadata head counts {heads}/{kv_heads} are inconsistent"),
        ));
    }
    let head_dim = match meta_u(content, &key("attention.key_length"), path) {
        Ok(d) => d,
        // Phi-3's rope.dimension_count is the rotated part of a head only.
        Err(_) if arch == GgufArch::Phi3 => hidden / heads,
        Err(_) => meta_u(content, &key("rope.dimension_count"), path).unwrap_or(hidden / heads),
    };
    let rotary = meta_u(content, &key("rope.dimension_count"), path).unwrap_or(head_dim);
    let eps = meta_f(content, &key("attention.layer_norm_rms_epsilon")).unwrap_or(1e-5);
    let default_theta = if arch == GgufArch::Gemma3 { 1e6 } else { 1e4 };
    let theta = meta_f(content, &key("rope.freq_base")).unwrap_or(default_theta);
    let embd = content
        .tensor("token_embd.weight")
        .ok_or_else(|| EngineError::bad_file(path, "tensor `token_embd.weight` missing"))?;
    // ggml order: ne[0] is the row length (hidden), ne[1] the vocabulary.
    let vocab = embd.ne.get(1).copied().unwrap_or(0) as usize;
    let has = |t: &str| content.tensor(t).is_some();
    let window = meta_u(content, &key("attention.sliding_window"), path)
        .ok()
        .filter(|&w| w > 0);
    let scaling_type = content
        .get(&key("rope.scaling.type"))
        .and_then(Value::as_str)
        .map(String::from);
    let scaling_factor = meta_f(content, &key("rope.scaling.factor"));
    let orig_ctx = meta_u(content, &key("rope.scaling.original_context_length"), path).ok();
    let rope_scaling = match (scaling_type.as_deref(), rope_factors) {
        (_, Some((short_factor, long_factor))) => RopeScaling::LongRope {
            short_factor,
            long_factor,
            original_max_position_embeddings: orig_ctx.unwrap_or(ctx),
            attention_factor: meta_f(content, &key("rope.scaling.attn_factor")).unwrap_or(1.0),
        },
        (None | Some("none"), None) => RopeScaling::None,
        (Some("linear"), None) => RopeScaling::Linear {
            factor: scaling_factor.unwrap_or(1.0) as f32,
        },
        (Some("yarn"), None) => {
            let factor = scaling_factor.unwrap_or(1.0);
            let mscale = if factor <= 1.0 {
                1.0
            } else {
                0.1 * factor.ln() + 1.0
            };
            RopeScaling::Yarn {
                factor,
                original_max_position_embeddings: orig_ctx.unwrap_or(ctx),
                beta_fast: meta_f(content, &key("rope.scaling.yarn_beta_fast")).unwrap_or(32.0),
                beta_slow: meta_f(content, &key("rope.scaling.yarn_beta_slow")).unwrap_or(1.0),
                attention_factor: meta_f(content, &key("rope.scaling.attn_factor"))
                    .unwrap_or(mscale),
                truncate: true,
            }
        }
        (Some(other), None) => {
            return Err(EngineError::bad_file(
                path,
                format!(
                "metadata `{a}.rope.scaling.type` = {other:?}: supported are none, linear and yarn"
            ),
            ))
        }
    };
    let gemma = arch.gemma();
    let layer_types = match arch {
        GgufArch::Gemma2 => (0..layers)
            .map(|l| {
                if l % 2 == 0 {
                    LayerKind::Sliding
                } else {
                    LayerKind::Full
                }
            })
            .collect(),
        GgufArch::Gemma3 => (0..layers)
            .map(|l| {
                if l % 6 < 5 {
                    LayerKind::Sliding
                } else {
                    LayerKind::Full
                }
            })
            .collect(),
        _ => Vec::new(),
    };
    let config = ModelConfig {
        arch: match arch {
            GgufArch::Llama => Arch::Llama,
            GgufArch::Qwen2 => Arch::Qwen2,
            GgufArch::Qwen3 => Arch::Qwen3,
            GgufArch::Gemma2 => Arch::Gemma2,
            GgufArch::Gemma3 => Arch::Gemma3,
            GgufArch::Phi3 => Arch::Phi3,
        },
        vocab_size: vocab,
        hidden_size: hidden,
        intermediate_size: ffn,
        num_layers: layers,
        num_heads: heads,
        num_kv_heads: kv_heads,
        head_dim,
        rms_norm_eps: eps,
        rope_theta: theta as f32,
        rope_scaling,
        max_position_embeddings: ctx,
        tie_word_embeddings: !has("output.weight"),
        attention_bias: has("blk.0.attn_q.bias"),
        sliding_window: window,
        bos_token_id: bos,
        eos_token_ids: eos.into_iter().collect(),
        arch_params: ArchParams {
            layer_types,
            local_rope: (arch == GgufArch::Gemma3).then(|| Rope {
                theta: meta_f(content, &key("rope.freq_base_swa")).unwrap_or(1e4) as f32,
                scaling: RopeScaling::None,
            }),
            partial_rotary_factor: rotary as f64 / head_dim.max(1) as f64,
            qk_norm: has("blk.0.attn_q_norm.weight"),
            norm_plus_one: false,
            embed_scale: gemma,
            sandwich_norms: gemma,
            activation: if gemma {
                Activation::GeluTanh
            } else {
                Activation::Silu
            },
            attn_logit_softcapping: meta_f(content, &key("attn_logit_softcapping"))
                .filter(|&c| c > 0.0 && arch == GgufArch::Gemma2),
            final_logit_softcapping: meta_f(content, &key("final_logit_softcapping"))
                .filter(|&c| c > 0.0 && gemma),
            query_pre_attn_scalar: gemma.then_some(head_dim as f64),
            fused_qkv: has("blk.0.attn_qkv.weight"),
            fused_gate_up: arch == GgufArch::Phi3,
            o_proj_bias: false,
            moe: None,
        },
    };
    // Every layer has its own tensors: a block count beyond the tensors present is corrupt.
    if config.num_layers > content.tensors.len() {
        return Err(EngineError::bad_file(
            path,
            format!(
                "metadata `{a}.block_count` = {layers} but the file holds {} tensors",
                content.tensors.len()
            ),
        ));
    }
    config
        .check_sizes()
        .map_err(|e| EngineError::bad_file(path, format!("metadata: {e}")))?;
    for kind in [LayerKind::Full, LayerKind::Sliding] {
        config
            .rope(kind)
            .frequencies(config.rotary_dim())
            .map_err(|e| EngineError::bad_file(path, format!("rope factors: {e}")))?;
    }
    Ok(config)
}
