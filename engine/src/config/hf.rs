//! `config.json` as transformers 4.x and 5.x write it, read into a [`ModelConfig`] with the
//! defaults each architecture's config class applies.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::rope::parse_scaling;
use super::{Activation, Arch, ArchParams, LayerKind, ModelConfig, MoeNaming, MoeParams, Rope};
use crate::error::{EngineError, Result};

#[derive(Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    architectures: Option<Vec<String>>,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    rope_scaling: Option<Value>,
    rope_parameters: Option<Value>,
    rope_local_base_freq: Option<f64>,
    partial_rotary_factor: Option<f64>,
    original_max_position_embeddings: Option<usize>,
    max_position_embeddings: Option<usize>,
    tie_word_embeddings: Option<bool>,
    attention_bias: Option<bool>,
    mlp_bias: Option<bool>,
    sliding_window: Option<Value>,
    use_sliding_window: Option<bool>,
    max_window_layers: Option<usize>,
    sliding_window_pattern: Option<usize>,
    layer_types: Option<Vec<String>>,
    hidden_act: Option<String>,
    hidden_activation: Option<String>,
    query_pre_attn_scalar: Option<f64>,
    attn_logit_softcapping: Option<f64>,
    final_logit_softcapping: Option<f64>,
    num_local_experts: Option<usize>,
    num_experts: Option<usize>,
    num_experts_per_tok: Option<usize>,
    norm_topk_prob: Option<bool>,
    moe_intermediate_size: Option<usize>,
    decoder_sparse_step: Option<usize>,
    mlp_only_layers: Option<Vec<usize>>,
    bos_token_id: Option<Value>,
    eos_token_id: Option<Value>,
}

fn token_ids(v: &Option<Value>) -> Vec<u32> {
    match v {
        Some(Value::Number(n)) => n.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_u64())
            .map(|x| x as u32)
            .collect(),
        _ => Vec::new(),
    }
}

fn num(obj: &Value, key: &str) -> Option<f64> {
    obj.get(key).and_then(Value::as_f64)
}

fn activation(name: &str, field: &str) -> std::result::Result<Activation, String> {
    Ok(match name {
        "silu" | "swish" => Activation::Silu,
        "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" => Activation::GeluTanh,
        "gelu" => Activation::Gelu,
        other => {
            return Err(format!(
            "field `{field}` = {other:?}: supported are silu, gelu, gelu_pytorch_tanh and gelu_new"
        ))
        }
    })
}

fn layer_kind(name: &str) -> std::result::Result<LayerKind, String> {
    match name {
        "full_attention" => Ok(LayerKind::Full),
        "sliding_attention" => Ok(LayerKind::Sliding),
        other => Err(format!(
            "field `layer_types` holds {other:?}: supported are full_attention and sliding_attention"
        )),
    }
}

impl ModelConfig {
    /// Reads and validates an HF `config.json`.
    pub fn from_hf_file(path: &Path) -> Result<ModelConfig> {
        let text = std::fs::read_to_string(path).map_err(|source| EngineError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        ModelConfig::from_hf_json(&text).map_err(|reason| EngineError::bad_file(path, reason))
    }

    /// Parses HF `config.json` text; the error names the field and value at fault.
    pub fn from_hf_json(text: &str) -> std::result::Result<ModelConfig, String> {
        let mut de = serde_json::Deserializer::from_str(text);
        let raw: RawConfig = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            if e.path().iter().next().is_some() {
                format!("invalid config: field `{}`: {}", e.path(), e.inner())
            } else {
                format!("invalid config: {}", e.inner())
            }
        })?;
        let arch_name = raw
            .model_type
            .clone()
            .or_else(|| raw.architectures.as_ref().and_then(|a| a.first().cloned()))
            .unwrap_or_default();
        let arch = match arch_name.as_str() {
            "llama" | "LlamaForCausalLM" => Arch::Llama,
            "mistral" | "MistralForCausalLM" => Arch::Mistral,
            "qwen2" | "Qwen2ForCausalLM" => Arch::Qwen2,
            "qwen3" | "Qwen3ForCausalLM" => Arch::Qwen3,
            "qwen3_moe" | "Qwen3MoeForCausalLM" => Arch::Qwen3Moe,
            "gemma2" | "Gemma2ForCausalLM" => Arch::Gemma2,
            "gemma3_text" | "Gemma3ForCausalLM" => Arch::Gemma3,
            "phi3" | "Phi3ForCausalLM" => Arch::Phi3,
            "mixtral" | "MixtralForCausalLM" => Arch::Mixtral,
            other => {
                return Err(format!(
                "field `model_type` = {other:?}: unsupported architecture (llama, mistral, qwen2, qwen3, qwen3_moe, gemma2, gemma3_text, phi3, mixtral)"
            ))
            }
        };
        let gemma = matches!(arch, Arch::Gemma2 | Arch::Gemma3);
        let act = match (gemma, &raw.hidden_activation, &raw.hidden_act) {
            (true, Some(a), _) => activation(a, "hidden_activation")?,
            (true, None, None) => Activation::GeluTanh,
            (_, _, Some(a)) => activation(a, "hidden_act")?,
            (false, Some(a), None) => activation(a, "hidden_activation")?,
            (false, None, None) => Activation::Silu,
        };
        if raw.mlp_bias == Some(true) {
            return Err("field `mlp_bias` = true: MLP biases are not supported".into());
        }
        let num_kv_heads = raw.num_key_value_heads.unwrap_or(raw.num_attention_heads);
        if raw.num_attention_heads == 0 || num_kv_heads == 0 {
            return Err("field `num_attention_heads` = 0: must be positive".into());
        }
        if !raw.num_attention_heads.is_multiple_of(num_kv_heads) {
            return Err(format!(
                "field `num_key_value_heads` = {num_kv_heads}: must divide num_attention_heads = {}",
                raw.num_attention_heads
            ));
        }
        let default_head_dim = match arch {
            Arch::Gemma2 | Arch::Gemma3 => 256,
            Arch::Qwen3 | Arch::Qwen3Moe => 128,
            _ => raw.hidden_size / raw.num_attention_heads,
        };
        let head_dim = raw.head_dim.unwrap_or(default_head_dim);
        if head_dim == 0 || !head_dim.is_multiple_of(2) {
            return Err(format!(
                "field `head_dim` = {head_dim}: must be a positive even number"
            ));
        }
        let max_pos = raw.max_position_embeddings.unwrap_or(4096);
        let original_max = if arch == Arch::Phi3 {
            raw.original_max_position_embeddings
        } else {
            None
        };
        // transformers 5.x keeps theta and scaling in `rope_parameters` (nested by layer type
        // for Gemma 3); 4.x uses `rope_theta` plus an optional `rope_scaling` object.
        let nested = raw
            .rope_parameters
            .as_ref()
            .filter(|p| p.get("full_attention").is_some() || p.get("sliding_attention").is_some());
        let global_obj = match nested {
            Some(p) => p.get("full_attention").cloned(),
            None => raw
                .rope_parameters
                .clone()
                .or_else(|| raw.rope_scaling.clone()),
        };
        let ctx = if raw.rope_parameters.is_some() {
            "rope_parameters"
        } else {
            "rope_scaling"
        };
        let default_theta = if arch == Arch::Gemma3 { 1e6 } else { 1e4 };
        let rope_theta = raw
            .rope_theta
            .or_else(|| global_obj.as_ref().and_then(|p| num(p, "rope_theta")))
            .unwrap_or(default_theta) as f32;
        let rope_scaling = parse_scaling(global_obj.as_ref(), ctx, max_pos, original_max)?;
        let partial_rotary_factor = raw
            .partial_rotary_factor
            .or_else(|| {
                global_obj
                    .as_ref()
                    .and_then(|p| num(p, "partial_rotary_factor"))
            })
            .unwrap_or(1.0);
        let local_rope = if arch == Arch::Gemma3 {
            let local = nested.and_then(|p| p.get("sliding_attention"));
            Some(Rope {
                theta: raw
                    .rope_local_base_freq
                    .or_else(|| local.and_then(|p| num(p, "rope_theta")))
                    .unwrap_or(1e4) as f32,
                scaling: parse_scaling(local, "rope_parameters.sliding_attention", max_pos, None)?,
            })
        } else {
            None
        };
        let window_value = match &raw.sliding_window {
            Some(Value::Number(n)) => n.as_u64().map(|x| x as usize),
            _ => None,
        };
        let sliding_window = match arch {
            Arch::Qwen2 | Arch::Qwen3 | Arch::Qwen3Moe => {
                window_value.filter(|_| raw.use_sliding_window == Some(true))
            }
            _ => window_value,
        };
        let layer_types: Vec<LayerKind> = match &raw.layer_types {
            Some(list) => list
                .iter()
                .map(|s| layer_kind(s))
                .collect::<std::result::Result<_, _>>()?,
            None => match arch {
                Arch::Gemma2 => (0..raw.num_hidden_layers)
                    .map(|i| {
                        if (i + 1) % 2 != 0 {
                            LayerKind::Sliding
                        } else {
                            LayerKind::Full
                        }
                    })
                    .collect(),
                Arch::Gemma3 => {
                    let pattern = raw.sliding_window_pattern.unwrap_or(6).max(1);
                    (0..raw.num_hidden_layers)
                        .map(|i| {
                            if (i + 1) % pattern != 0 {
                                LayerKind::Sliding
                            } else {
                                LayerKind::Full
                            }
                        })
                        .collect()
                }
                Arch::Qwen2 | Arch::Qwen3 | Arch::Qwen3Moe if sliding_window.is_some() => {
                    let first = raw.max_window_layers.unwrap_or(28);
                    (0..raw.num_hidden_layers)
                        .map(|i| {
                            if i >= first {
                                LayerKind::Sliding
                            } else {
                                LayerKind::Full
                            }
                        })
                        .collect()
                }
                _ => Vec::new(),
            },
        };
        if !layer_types.is_empty() && layer_types.len() != raw.num_hidden_layers {
            return Err(format!(
                "field `layer_types` has {} entries for {} layers",
                layer_types.len(),
                raw.num_hidden_layers
            ));
        }
        let moe = match arch {
            Arch::Mixtral => Some(MoeParams {
                num_experts: raw.num_local_experts.unwrap_or(8),
                top_k: raw.num_experts_per_tok.unwrap_or(2),
                norm_topk_prob: true,
                expert_intermediate_size: raw.intermediate_size,
                naming: MoeNaming::Mixtral,
                dense_layers: Vec::new(),
            }),
            Arch::Qwen3Moe => {
                let step = raw.decoder_sparse_step.unwrap_or(1).max(1);
                let only = raw.mlp_only_layers.clone().unwrap_or_default();
                let experts = raw.num_experts.or(raw.num_local_experts).unwrap_or(128);
                Some(MoeParams {
                    num_experts: experts,
                    top_k: raw.num_experts_per_tok.unwrap_or(8),
                    norm_topk_prob: raw.norm_topk_prob.unwrap_or(false),
                    expert_intermediate_size: raw.moe_intermediate_size.unwrap_or(768),
                    naming: MoeNaming::Qwen,
                    dense_layers: (0..raw.num_hidden_layers)
                        .filter(|l| only.contains(l) || (l + 1) % step != 0)
                        .collect(),
                })
            }
            _ => None,
        };
        let attention_bias = raw.attention_bias.unwrap_or(arch == Arch::Qwen2);
        let arch_params = ArchParams {
            layer_types,
            local_rope,
            partial_rotary_factor,
            qk_norm: matches!(arch, Arch::Qwen3 | Arch::Qwen3Moe | Arch::Gemma3),
            norm_plus_one: gemma,
            embed_scale: gemma,
            sandwich_norms: gemma,
            activation: act,
            attn_logit_softcapping: raw.attn_logit_softcapping.filter(|_| arch == Arch::Gemma2),
            final_logit_softcapping: raw.final_logit_softcapping.filter(|_| gemma),
            query_pre_attn_scalar: if gemma {
                Some(raw.query_pre_attn_scalar.unwrap_or(256.0))
            } else {
                None
            },
            fused_qkv: arch == Arch::Phi3,
            fused_gate_up: arch == Arch::Phi3,
            // Llama-style attention puts the bias on o_proj too; Qwen2 never does.
            o_proj_bias: attention_bias
                && matches!(
                    arch,
                    Arch::Llama | Arch::Qwen3 | Arch::Qwen3Moe | Arch::Gemma2 | Arch::Gemma3
                ),
            moe,
        };
        let config = ModelConfig {
            arch,
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_layers: raw.num_hidden_layers,
            num_heads: raw.num_attention_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps: raw.rms_norm_eps.unwrap_or(1e-6),
            rope_theta,
            rope_scaling,
            max_position_embeddings: max_pos,
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(gemma),
            attention_bias: attention_bias && arch != Arch::Phi3,
            sliding_window,
            bos_token_id: token_ids(&raw.bos_token_id).first().copied(),
            eos_token_ids: token_ids(&raw.eos_token_id),
            arch_params,
        };
        config.check_sizes()?;
        for kind in [LayerKind::Full, LayerKind::Sliding] {
            config.rope(kind).frequencies(config.rotary_dim())?;
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::super::RopeScaling;
    use super::*;

    const V4: &str = r#"{"model_type":"llama","vocab_size":10,"hidden_size":8,"intermediate_size":16,
        "num_hidden_layers":1,"num_attention_heads":2,"num_key_value_heads":1,"rope_theta":500000.0,
        "rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,
        "original_max_position_embeddings":32},"eos_token_id":[1,2]}"#;
    const V5: &str = r#"{"model_type":"llama","vocab_size":10,"hidden_size":8,"intermediate_size":16,
        "num_hidden_layers":1,"num_attention_heads":2,"num_key_value_heads":1,
        "rope_parameters":{"rope_theta":500000.0,"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,
        "high_freq_factor":4.0,"original_max_position_embeddings":32},"eos_token_id":[1,2]}"#;

    #[test]
    fn both_layouts_give_the_same_config() {
        let a = ModelConfig::from_hf_json(V4).unwrap();
        let b = ModelConfig::from_hf_json(V5).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.rope_theta, 500000.0);
        assert_eq!(a.eos_token_ids, vec![1, 2]);
        assert!(matches!(a.rope_scaling, RopeScaling::Llama3 { .. }));
    }

    #[test]
    fn bad_fields_are_named() {
        let e = ModelConfig::from_hf_json(&V4.replace("\"llama\"", "\"gpt2\"")).unwrap_err();
        assert!(e.contains("model_type") && e.contains("gpt2"), "{e}");
        let e = ModelConfig::from_hf_json(
            &V4.replace("\"num_key_value_heads\":1", "\"num_key_value_heads\":3"),
        )
        .unwrap_err();
        assert!(e.contains("num_key_value_heads") && e.contains('3'), "{e}");
        let e = ModelConfig::from_hf_json(&V4.replace("llama3", "fancy")).unwrap_err();
        assert!(e.contains("rope_type") && e.contains("fancy"), "{e}");
    }

    #[test]
    fn gemma_defaults_follow_the_config_classes() {
        let g2 = r#"{"model_type":"gemma2","vocab_size":10,"hidden_size":8,"intermediate_size":16,
            "num_hidden_layers":4,"num_attention_heads":2,"num_key_value_heads":1,"head_dim":4,
            "sliding_window":3,"attn_logit_softcapping":50.0,"final_logit_softcapping":30.0}"#;
        let c = ModelConfig::from_hf_json(g2).unwrap();
        let kinds: Vec<LayerKind> = (0..4).map(|l| c.layer_kind(l)).collect();
        use LayerKind::*;
        assert_eq!(kinds, vec![Sliding, Full, Sliding, Full]);
        assert!(c.tie_word_embeddings && c.arch_params.norm_plus_one);
        assert_eq!(c.arch_params.activation, Activation::GeluTanh);
        assert_eq!(c.arch_params.query_pre_attn_scalar, Some(256.0));
        let g3 = g2
            .replace("gemma2", "gemma3_text")
            .replace("\"num_hidden_layers\":4", "\"num_hidden_layers\":7");
        let c = ModelConfig::from_hf_json(&g3).unwrap();
        let kinds: Vec<LayerKind> = (0..7).map(|l| c.layer_kind(l)).collect();
        assert_eq!(
            kinds,
            vec![Sliding, Sliding, Sliding, Sliding, Sliding, Full, Sliding]
        );
        assert_eq!(c.rope(Full).theta, 1e6);
        assert_eq!(c.rope(Sliding).theta, 1e4);
        assert_eq!(c.arch_params.attn_logit_softcapping, None);
    }
}
