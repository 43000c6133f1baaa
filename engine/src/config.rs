//! Model configuration: HF `config.json` (transformers 4.x and 5.x layouts) and GGUF metadata
//! turned into one validated runtime description of a Llama-family decoder.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{EngineError, Result};

/// Which Llama-family architecture a checkpoint declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// Llama 2 / 3 (`LlamaForCausalLM`).
    Llama,
    /// Mistral (`MistralForCausalLM`), optionally with a sliding window.
    Mistral,
    /// Qwen2 (`Qwen2ForCausalLM`), with q/k/v biases.
    Qwen2,
}

/// How rotary frequencies are derived from the base frequencies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE.
    None,
    /// Position interpolation: every frequency divided by `factor`.
    Linear {
        /// Scale factor.
        factor: f32,
    },
    /// Llama 3's frequency-dependent scaling.
    Llama3 {
        /// Scale factor for low frequencies.
        factor: f32,
        /// Wavelength bound (as a fraction of the original context) above which frequencies are scaled.
        low_freq_factor: f32,
        /// Wavelength bound below which frequencies are kept.
        high_freq_factor: f32,
        /// Context length the model was pre-trained with.
        original_max_position_embeddings: usize,
    },
}

/// Runtime description of a Llama-family decoder.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Architecture family.
    pub arch: Arch,
    /// Vocabulary size (rows of the embedding).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (GQA when fewer than query heads).
    pub num_kv_heads: usize,
    /// Dimension of one head.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base frequency.
    pub rope_theta: f32,
    /// RoPE frequency scaling.
    pub rope_scaling: RopeScaling,
    /// Longest supported context.
    pub max_position_embeddings: usize,
    /// Output projection shares the embedding matrix.
    pub tie_word_embeddings: bool,
    /// q/k/v projections carry biases (Qwen2, or Llama with `attention_bias`).
    pub attention_bias: bool,
    /// Sliding attention window, when the model uses one.
    pub sliding_window: Option<usize>,
    /// Beginning-of-sequence token.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence tokens (any of them stops generation).
    pub eos_token_ids: Vec<u32>,
}

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
    max_position_embeddings: Option<usize>,
    tie_word_embeddings: Option<bool>,
    attention_bias: Option<bool>,
    mlp_bias: Option<bool>,
    sliding_window: Option<Value>,
    use_sliding_window: Option<bool>,
    hidden_act: Option<String>,
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
            other => {
                return Err(format!(
                "field `model_type` = {other:?}: unsupported architecture (llama, mistral, qwen2)"
            ))
            }
        };
        if let Some(act) = &raw.hidden_act {
            if act != "silu" {
                return Err(format!(
                    "field `hidden_act` = {act:?}: only silu is supported"
                ));
            }
        }
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
        let head_dim = raw
            .head_dim
            .unwrap_or(raw.hidden_size / raw.num_attention_heads);
        if head_dim == 0 || !head_dim.is_multiple_of(2) {
            return Err(format!(
                "field `head_dim` = {head_dim}: must be a positive even number"
            ));
        }
        // transformers 5.x keeps theta and scaling in `rope_parameters`; 4.x uses `rope_theta`
        // plus an optional `rope_scaling` object.
        let rope_obj = raw
            .rope_parameters
            .clone()
            .or_else(|| raw.rope_scaling.clone());
        let rope_theta = raw
            .rope_theta
            .or_else(|| {
                raw.rope_parameters
                    .as_ref()
                    .and_then(|p| num(p, "rope_theta"))
            })
            .unwrap_or(10000.0) as f32;
        let rope_scaling = match rope_obj.as_ref().filter(|v| !v.is_null()) {
            None => RopeScaling::None,
            Some(obj) => {
                let ty = obj
                    .get("rope_type")
                    .or_else(|| obj.get("type"))
                    .and_then(Value::as_str)
                    .unwrap_or("default");
                match ty {
                    "default" => RopeScaling::None,
                    "linear" => RopeScaling::Linear {
                        factor: num(obj, "factor").ok_or("field `rope_scaling.factor` missing")?
                            as f32,
                    },
                    "llama3" => RopeScaling::Llama3 {
                        factor: num(obj, "factor").ok_or("field `rope_scaling.factor` missing")?
                            as f32,
                        low_freq_factor: num(obj, "low_freq_factor").unwrap_or(1.0) as f32,
                        high_freq_factor: num(obj, "high_freq_factor").unwrap_or(4.0) as f32,
                        original_max_position_embeddings: num(obj, "original_max_position_embeddings")
                            .ok_or("field `rope_scaling.original_max_position_embeddings` missing")?
                            as usize,
                    },
                    other => {
                        return Err(format!(
                            "field `rope_scaling.rope_type` = {other:?}: unsupported (default, linear, llama3)"
                        ))
                    }
                }
            }
        };
        let sliding_window = match (&raw.sliding_window, arch) {
            (Some(Value::Number(n)), Arch::Mistral) => n.as_u64().map(|x| x as usize),
            (Some(Value::Number(n)), Arch::Qwen2) if raw.use_sliding_window == Some(true) => {
                n.as_u64().map(|x| x as usize)
            }
            _ => None,
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
            max_position_embeddings: raw.max_position_embeddings.unwrap_or(4096),
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(false),
            attention_bias: raw.attention_bias.unwrap_or(arch == Arch::Qwen2),
            sliding_window,
            bos_token_id: token_ids(&raw.bos_token_id).first().copied(),
            eos_token_ids: token_ids(&raw.eos_token_id),
        };
        config.check_sizes()?;
        Ok(config)
    }

    /// Refuses sizes no supported model has (they would only make the loader allocate what a
    /// corrupt or hostile file announces); the error names the field and value.
    pub fn check_sizes(&self) -> std::result::Result<(), String> {
        let limits = [
            ("num_hidden_layers", self.num_layers, 1 << 10),
            ("hidden_size", self.hidden_size, 1 << 17),
            ("intermediate_size", self.intermediate_size, 1 << 19),
            ("vocab_size", self.vocab_size, 1 << 22),
            ("num_attention_heads", self.num_heads, 1 << 12),
            ("head_dim", self.head_dim, 1 << 12),
            (
                "max_position_embeddings",
                self.max_position_embeddings,
                1 << 24,
            ),
        ];
        for (field, value, max) in limits {
            if value == 0 || value > max {
                return Err(format!(
                    "field `{field}` = {value}: must be between 1 and {max}"
                ));
            }
        }
        Ok(())
    }

    /// Inverse frequencies of the rotary embedding, computed in f32 as transformers does.
    pub fn inv_freq(&self) -> Vec<f32> {
        let dim = self.head_dim;
        let base: Vec<f32> = (0..dim)
            .step_by(2)
            .map(|i| 1.0 / self.rope_theta.powf(i as f32 / dim as f32))
            .collect();
        match self.rope_scaling {
            RopeScaling::None => base,
            RopeScaling::Linear { factor } => base.into_iter().map(|f| f / factor).collect(),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                let old = original_max_position_embeddings as f32;
                let low_freq_wavelen = old / low_freq_factor;
                let high_freq_wavelen = old / high_freq_factor;
                base.into_iter()
                    .map(|f| {
                        let wavelen = 2.0 * std::f32::consts::PI / f;
                        let scaled = if wavelen > low_freq_wavelen {
                            f / factor
                        } else {
                            f
                        };
                        let medium = wavelen >= high_freq_wavelen && wavelen <= low_freq_wavelen;
                        if medium {
                            let smooth = (old / wavelen - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * scaled / factor + smooth * scaled
                        } else {
                            scaled
                        }
                    })
                    .collect()
            }
        }
    }

    /// The shape every tensor of an HF checkpoint must have, by name.
    pub fn expected_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let h = self.hidden_size;
        let q = self.num_heads * self.head_dim;
        let kv = self.num_kv_heads * self.head_dim;
        let i = self.intermediate_size;
        let mut v = vec![
            (
                "model.embed_tokens.weight".to_string(),
                vec![self.vocab_size, h],
            ),
            ("model.norm.weight".to_string(), vec![h]),
        ];
        if !self.tie_word_embeddings {
            v.push(("lm_head.weight".to_string(), vec![self.vocab_size, h]));
        }
        for l in 0..self.num_layers {
            let p = format!("model.layers.{l}");
            v.push((format!("{p}.input_layernorm.weight"), vec![h]));
            v.push((format!("{p}.post_attention_layernorm.weight"), vec![h]));
            v.push((format!("{p}.self_attn.q_proj.weight"), vec![q, h]));
            v.push((format!("{p}.self_attn.k_proj.weight"), vec![kv, h]));
            v.push((format!("{p}.self_attn.v_proj.weight"), vec![kv, h]));
            v.push((format!("{p}.self_attn.o_proj.weight"), vec![h, q]));
            if self.attention_bias {
                v.push((format!("{p}.self_attn.q_proj.bias"), vec![q]));
                v.push((format!("{p}.self_attn.k_proj.bias"), vec![kv]));
                v.push((format!("{p}.self_attn.v_proj.bias"), vec![kv]));
            }
            v.push((format!("{p}.mlp.gate_proj.weight"), vec![i, h]));
            v.push((format!("{p}.mlp.up_proj.weight"), vec![i, h]));
            v.push((format!("{p}.mlp.down_proj.weight"), vec![h, i]));
        }
        v
    }

    /// The config as an HF `config.json` (4.x layout) for `LlamaForCausalLM`.
    pub fn to_hf_json(&self) -> Value {
        let rope_scaling = match self.rope_scaling {
            RopeScaling::None => Value::Null,
            RopeScaling::Linear { factor } => {
                serde_json::json!({"rope_type": "linear", "factor": factor})
            }
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => serde_json::json!({
                "rope_type": "llama3", "factor": factor, "low_freq_factor": low_freq_factor,
                "high_freq_factor": high_freq_factor,
                "original_max_position_embeddings": original_max_position_embeddings
            }),
        };
        let (arch, model_type) = match self.arch {
            Arch::Llama => ("LlamaForCausalLM", "llama"),
            Arch::Mistral => ("MistralForCausalLM", "mistral"),
            Arch::Qwen2 => ("Qwen2ForCausalLM", "qwen2"),
        };
        serde_json::json!({
            "architectures": [arch],
            "model_type": model_type,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_scaling": rope_scaling,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": self.attention_bias,
            "mlp_bias": false,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_ids.first(),
            "torch_dtype": "float32",
        })
    }
}

#[cfg(test)]
mod tests {
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
    }
}
