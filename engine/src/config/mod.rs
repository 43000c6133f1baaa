//! Model configuration: HF `config.json` (transformers 4.x and 5.x layouts) and GGUF metadata
//! turned into one validated runtime description of a decoder: Llama 2/3, Mistral, Qwen2,
//! Qwen3, Qwen3-MoE, Gemma 2, Gemma 3 (text), Phi-3/3.5/4 and Mixtral.

use serde_json::Value;

pub mod gguf;
mod hf;
mod rope;

pub use gguf::{config_from_gguf, gguf_to_hf_name, GgufArch};
pub use rope::{parse_scaling, Rope, RopeFrequencies, RopeScaling};

/// Which architecture a checkpoint declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// Llama 2 / 3 (`LlamaForCausalLM`).
    Llama,
    /// Mistral (`MistralForCausalLM`), optionally with a sliding window.
    Mistral,
    /// Qwen2 (`Qwen2ForCausalLM`), with q/k/v biases.
    Qwen2,
    /// Qwen3 (`Qwen3ForCausalLM`): per-head RMSNorm on queries and keys.
    Qwen3,
    /// Qwen3-MoE (`Qwen3MoeForCausalLM`): Qwen3 attention, mixture-of-experts MLPs.
    Qwen3Moe,
    /// Gemma 2 (`Gemma2ForCausalLM`).
    Gemma2,
    /// Gemma 3 text (`Gemma3ForCausalLM`, `model_type` `gemma3_text`).
    Gemma3,
    /// Phi-3 / Phi-3.5 / Phi-4 (`Phi3ForCausalLM`): fused qkv and gate/up projections.
    Phi3,
    /// Mixtral (`MixtralForCausalLM`): mixture-of-experts MLPs.
    Mixtral,
}

/// The attention a layer uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerKind {
    /// Every earlier position.
    Full,
    /// The last `sliding_window` positions, with the local RoPE where the model has one.
    Sliding,
}

/// The MLP activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// SiLU (SwiGLU MLPs).
    Silu,
    /// GELU with the tanh approximation (`gelu_pytorch_tanh`, `gelu_new`): GeGLU MLPs.
    GeluTanh,
    /// Exact GELU (`gelu`).
    Gelu,
}

/// How a mixture-of-experts checkpoint names its tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoeNaming {
    /// `block_sparse_moe.gate` and `block_sparse_moe.experts.E.{w1,w3,w2}` (Mixtral).
    Mixtral,
    /// `mlp.gate` and `mlp.experts.E.{gate,up,down}_proj` (Qwen MoE).
    Qwen,
}

/// A mixture-of-experts MLP: a router picks `top_k` of `num_experts` gated MLPs per token and
/// mixes their outputs with the router's softmax probabilities of the chosen experts.
#[derive(Debug, Clone, PartialEq)]
pub struct MoeParams {
    /// Experts per MoE layer.
    pub num_experts: usize,
    /// Experts each token uses.
    pub top_k: usize,
    /// Renormalise the chosen experts' probabilities to sum to one.
    pub norm_topk_prob: bool,
    /// Width of one expert's MLP.
    pub expert_intermediate_size: usize,
    /// Tensor names.
    pub naming: MoeNaming,
    /// Layers whose MLP is dense instead (Qwen3-MoE `mlp_only_layers`, `decoder_sparse_step`).
    pub dense_layers: Vec<usize>,
}

/// What distinguishes an architecture beyond the Llama layout. The default is Llama's.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchParams {
    /// Attention kind per layer; empty means every layer uses the sliding window when the
    /// config has one, else full attention.
    pub layer_types: Vec<LayerKind>,
    /// RoPE of sliding-window layers when it differs from the global one (Gemma 3).
    pub local_rope: Option<Rope>,
    /// Fraction of each head's dimensions that rotate (Phi-4-mini: 0.75).
    pub partial_rotary_factor: f64,
    /// RMSNorm over each head's queries and keys before RoPE (Qwen3, Gemma 3).
    pub qk_norm: bool,
    /// RMSNorm scales by `1 + w` (Gemma).
    pub norm_plus_one: bool,
    /// Embeddings multiplied by `sqrt(hidden_size)` (Gemma).
    pub embed_scale: bool,
    /// Norms after attention and after the MLP as well as before each (Gemma 2/3:
    /// `post_attention_layernorm`, `pre_feedforward_layernorm`, `post_feedforward_layernorm`).
    pub sandwich_norms: bool,
    /// MLP activation.
    pub activation: Activation,
    /// `tanh` soft-capping of attention scores.
    pub attn_logit_softcapping: Option<f64>,
    /// `tanh` soft-capping of the output logits.
    pub final_logit_softcapping: Option<f64>,
    /// Attention scores scaled by `query_pre_attn_scalar^-0.5` instead of `head_dim^-0.5`.
    pub query_pre_attn_scalar: Option<f64>,
    /// One `qkv_proj` instead of q/k/v projections (Phi-3).
    pub fused_qkv: bool,
    /// One `gate_up_proj` (gate rows first) instead of gate and up projections (Phi-3).
    pub fused_gate_up: bool,
    /// `o_proj` carries a bias (Llama-style models with `attention_bias`).
    pub o_proj_bias: bool,
    /// Mixture-of-experts MLPs.
    pub moe: Option<MoeParams>,
}

impl Default for ArchParams {
    fn default() -> Self {
        ArchParams {
            layer_types: Vec::new(),
            local_rope: None,
            partial_rotary_factor: 1.0,
            qk_norm: false,
            norm_plus_one: false,
            embed_scale: false,
            sandwich_norms: false,
            activation: Activation::Silu,
            attn_logit_softcapping: None,
            final_logit_softcapping: None,
            query_pre_attn_scalar: None,
            fused_qkv: false,
            fused_gate_up: false,
            o_proj_bias: false,
            moe: None,
        }
    }
}

/// Runtime description of a decoder.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Architecture family.
    pub arch: Arch,
    /// Vocabulary size (rows of the embedding).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the (dense) MLP.
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
    /// RoPE base frequency (of full-attention layers).
    pub rope_theta: f32,
    /// RoPE frequency scaling (of full-attention layers).
    pub rope_scaling: RopeScaling,
    /// Longest supported context.
    pub max_position_embeddings: usize,
    /// Output projection shares the embedding matrix.
    pub tie_word_embeddings: bool,
    /// q/k/v projections carry biases (Qwen2, or Llama with `attention_bias`).
    pub attention_bias: bool,
    /// Sliding attention window of sliding layers, when the model has one.
    pub sliding_window: Option<usize>,
    /// Beginning-of-sequence token.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence tokens (any of them stops generation).
    pub eos_token_ids: Vec<u32>,
    /// What else distinguishes the architecture.
    pub arch_params: ArchParams,
}

impl ModelConfig {
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
        if let Some(m) = &self.arch_params.moe {
            for (field, value, max) in [
                ("num_experts", m.num_experts, 1 << 10),
                ("num_experts_per_tok", m.top_k, m.num_experts),
                ("moe_intermediate_size", m.expert_intermediate_size, 1 << 19),
            ] {
                if value == 0 || value > max {
                    return Err(format!(
                        "field `{field}` = {value}: must be between 1 and {max}"
                    ));
                }
            }
        }
        let rot = self.rotary_dim();
        if rot == 0 || !rot.is_multiple_of(2) || rot > self.head_dim {
            return Err(format!(
                "field `partial_rotary_factor` = {}: gives {rot} rotary dimensions of {}",
                self.arch_params.partial_rotary_factor, self.head_dim
            ));
        }
        Ok(())
    }

    /// The attention kind of layer `l`.
    pub fn layer_kind(&self, l: usize) -> LayerKind {
        match self.arch_params.layer_types.get(l) {
            Some(&k) if self.sliding_window.is_some() => k,
            Some(_) => LayerKind::Full,
            None if self.arch_params.layer_types.is_empty() && self.sliding_window.is_some() => {
                LayerKind::Sliding
            }
            None => LayerKind::Full,
        }
    }

    /// The window of layer `l`'s attention, if it has one.
    pub fn window(&self, l: usize) -> Option<usize> {
        match self.layer_kind(l) {
            LayerKind::Sliding => self.sliding_window,
            LayerKind::Full => None,
        }
    }

    /// Whether layer `l` has a mixture-of-experts MLP.
    pub fn is_moe_layer(&self, l: usize) -> bool {
        self.arch_params
            .moe
            .as_ref()
            .is_some_and(|m| !m.dense_layers.contains(&l))
    }

    /// Rotated dimensions of each head.
    pub fn rotary_dim(&self) -> usize {
        (self.head_dim as f64 * self.arch_params.partial_rotary_factor) as usize
    }

    /// The RoPE of layers of `kind`.
    pub fn rope(&self, kind: LayerKind) -> Rope {
        match (kind, &self.arch_params.local_rope) {
            (LayerKind::Sliding, Some(local)) => local.clone(),
            _ => Rope {
                theta: self.rope_theta,
                scaling: self.rope_scaling.clone(),
            },
        }
    }

    /// Inverse frequencies of the (full-attention) rotary embedding, computed in f32 as
    /// transformers does.
    pub fn inv_freq(&self) -> Vec<f32> {
        self.rope(LayerKind::Full)
            .frequencies(self.rotary_dim())
            .map(|f| f.inv_freq)
            .unwrap_or_default()
    }

    /// The shape every tensor of an HF checkpoint must have, by name.
    pub fn expected_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let h = self.hidden_size;
        let q = self.num_heads * self.head_dim;
        let kv = self.num_kv_heads * self.head_dim;
        let i = self.intermediate_size;
        let p = &self.arch_params;
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
            let pre = format!("model.layers.{l}");
            let mut add =
                |name: String, shape: Vec<usize>| v.push((format!("{pre}.{name}"), shape));
            add("input_layernorm.weight".into(), vec![h]);
            add("post_attention_layernorm.weight".into(), vec![h]);
            if p.sandwich_norms {
                add("pre_feedforward_layernorm.weight".into(), vec![h]);
                add("post_feedforward_layernorm.weight".into(), vec![h]);
            }
            if p.fused_qkv {
                add("self_attn.qkv_proj.weight".into(), vec![q + 2 * kv, h]);
            } else {
                add("self_attn.q_proj.weight".into(), vec![q, h]);
                add("self_attn.k_proj.weight".into(), vec![kv, h]);
                add("self_attn.v_proj.weight".into(), vec![kv, h]);
            }
            add("self_attn.o_proj.weight".into(), vec![h, q]);
            if self.attention_bias {
                add("self_attn.q_proj.bias".into(), vec![q]);
                add("self_attn.k_proj.bias".into(), vec![kv]);
                add("self_attn.v_proj.bias".into(), vec![kv]);
            }
            if p.o_proj_bias {
                add("self_attn.o_proj.bias".into(), vec![h]);
            }
            if p.qk_norm {
                add("self_attn.q_norm.weight".into(), vec![self.head_dim]);
                add("self_attn.k_norm.weight".into(), vec![self.head_dim]);
            }
            match p.moe.as_ref().filter(|_| self.is_moe_layer(l)) {
                Some(m) => {
                    let e = m.expert_intermediate_size;
                    add(moe_router_name(m.naming), vec![m.num_experts, h]);
                    for x in 0..m.num_experts {
                        let [g, u, d] = expert_names(m.naming, x);
                        add(g, vec![e, h]);
                        add(u, vec![e, h]);
                        add(d, vec![h, e]);
                    }
                }
                None if p.fused_gate_up => {
                    add("mlp.gate_up_proj.weight".into(), vec![2 * i, h]);
                    add("mlp.down_proj.weight".into(), vec![h, i]);
                }
                None => {
                    add("mlp.gate_proj.weight".into(), vec![i, h]);
                    add("mlp.up_proj.weight".into(), vec![i, h]);
                    add("mlp.down_proj.weight".into(), vec![h, i]);
                }
            }
        }
        v
    }

    /// The config as an HF `config.json` (4.x layout) for `LlamaForCausalLM` (students and
    /// fixtures are Llama models).
    pub fn to_hf_json(&self) -> Value {
        let rope_scaling = match &self.rope_scaling {
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
            _ => Value::Null,
        };
        let (arch, model_type) = match self.arch {
            Arch::Mistral => ("MistralForCausalLM", "mistral"),
            Arch::Qwen2 => ("Qwen2ForCausalLM", "qwen2"),
            _ => ("LlamaForCausalLM", "llama"),
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

/// The router of a mixture-of-experts layer, relative to `model.layers.N.`.
pub fn moe_router_name(naming: MoeNaming) -> String {
    match naming {
        MoeNaming::Mixtral => "block_sparse_moe.gate.weight".into(),
        MoeNaming::Qwen => "mlp.gate.weight".into(),
    }
}

/// Gate, up and down projections of expert `e`, relative to `model.layers.N.`.
pub fn expert_names(naming: MoeNaming, e: usize) -> [String; 3] {
    match naming {
        MoeNaming::Mixtral => [
            format!("block_sparse_moe.experts.{e}.w1.weight"),
            format!("block_sparse_moe.experts.{e}.w3.weight"),
            format!("block_sparse_moe.experts.{e}.w2.weight"),
        ],
        MoeNaming::Qwen => [
            format!("mlp.experts.{e}.gate_proj.weight"),
            format!("mlp.experts.{e}.up_proj.weight"),
            format!("mlp.experts.{e}.down_proj.weight"),
        ],
    }
}
