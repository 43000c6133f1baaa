//! The decoder with batched, left-padded attention and a KV cache, for every supported
//! architecture: Llama 2/3, Mistral, Qwen2, Qwen3 (+MoE), Gemma 2/3, Phi-3 and Mixtral. Linear
//! layers are either dense or GGUF-quantized, so every compressed variant runs through the same
//! forward pass. Attention, MLPs (dense and mixture-of-experts), rotary tables and the KV cache
//! live in submodules.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor, D};

use crate::compress::{Compressed, LinearWeight};
use crate::config::{expert_names, moe_router_name, LayerKind, ModelConfig};
use crate::error::{EngineError, Result};
use crate::formats::KvQuant;
use crate::linear::Linear;
use crate::loader::Checkpoint;

mod attention;
mod cache;
mod mlp;
mod rope;
mod tap;

use attention::{Attention, AttentionInput, Qkv};
pub use cache::KvCache;
use mlp::{GatedMlp, Mlp, Moe};
use rope::RopeTables;
use tap::LayerTap;
pub use tap::{LinearSite, LinearTap};

/// Additive mask value for keys a query may not see. Finite, so fully masked (padding) rows
/// stay finite instead of spreading NaN through the cache.
const MASKED: f32 = -1.0e9;

#[derive(Debug, Clone)]
struct Layer {
    /// Norm before attention (`input_layernorm`).
    attn_norm: Tensor,
    attn: Attention,
    /// Norm of the attention output (Gemma's `post_attention_layernorm`).
    attn_out_norm: Option<Tensor>,
    /// Norm before the MLP (`post_attention_layernorm`, Gemma's `pre_feedforward_layernorm`).
    mlp_norm: Tensor,
    mlp: Mlp,
    /// Norm of the MLP output (Gemma's `post_feedforward_layernorm`).
    mlp_out_norm: Option<Tensor>,
    kind: LayerKind,
}

/// A decoder ready to run: reference weights with a variant's replacements applied.
#[derive(Debug, Clone)]
pub struct Model {
    /// The architecture description.
    pub config: ModelConfig,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Linear,
    /// Rotary tables of full-attention layers and, when they differ, of sliding layers.
    rope_full: RopeTables,
    rope_sliding: Option<RopeTables>,
    /// Whether the mask has a second slice for sliding-window layers.
    two_masks: bool,
    interleaved: bool,
    device: Device,
    dtype: DType,
    training: bool,
    fast_paths: bool,
    /// KV-cache quantization a checkpoint's format asks for.
    kv_quant: Option<Arc<KvQuant>>,
}

impl Model {
    /// Builds the reference model of a checkpoint.
    pub fn new(ckpt: &Checkpoint) -> Result<Model> {
        Model::with_variant(ckpt, &Compressed::default())
    }

    /// Builds a model from a checkpoint with a compressor's replacements applied; it computes
    /// in f32 whatever dtype the weights are stored in.
    pub fn with_variant(ckpt: &Checkpoint, variant: &Compressed) -> Result<Model> {
        Model::with_variant_in(ckpt, variant, DType::F32)
    }

    /// Like [`with_variant`](Model::with_variant), computing in `dtype` (f32, bf16 or f16):
    /// dense weights, activations and the KV cache are held in it; quantized matmuls take
    /// f32 activations; logits are returned in f32.
    pub fn with_variant_in(ckpt: &Checkpoint, variant: &Compressed, dtype: DType) -> Result<Model> {
        if !matches!(dtype, DType::F32 | DType::BF16 | DType::F16) {
            return Err(EngineError::Invalid(format!(
                "compute dtype {dtype:?}: expected f32, bf16 or f16"
            )));
        }
        let cfg = ckpt.config.clone();
        cfg.check_sizes().map_err(EngineError::Invalid)?;
        let device = ckpt
            .weights
            .values()
            .next()
            .map(|t| t.device().clone())
            .or_else(|| ckpt.quantized.values().next().map(|q| q.device()))
            .unwrap_or(Device::Cpu);
        let source = |name: &str| -> Result<Tensor> {
            if let Some(LinearWeight::Dense(t)) = variant.weights.get(name) {
                return Ok(t.clone());
            }
            ckpt.weights.get(name).cloned().ok_or_else(|| {
                EngineError::Invalid(format!(
                    "tensor `{name}` is not available as a dense tensor"
                ))
            })
        };
        let dense = |name: &str| -> Result<Tensor> { Ok(source(name)?.to_dtype(dtype)?) };
        let weight = |name: &str| -> Result<LinearWeight> {
            if let Some(w) = variant.weights.get(name) {
                return Ok(w.clone());
            }
            if let Some(t) = ckpt.weights.get(name) {
                return Ok(LinearWeight::Dense(t.clone()));
            }
            if let Some(q) = ckpt.quantized.get(name) {
                return Ok(LinearWeight::Quantized(Arc::clone(q)));
            }
            if let Some(b) = ckpt.blocks.get(name) {
                return Ok(LinearWeight::Blocks(Arc::clone(b)));
            }
            if let Some(p) = ckpt.packed.get(name) {
                return Ok(LinearWeight::Packed(Arc::clone(p)));
            }
            Err(EngineError::Invalid(format!("tensor `{name}` is missing")))
        };
        let linear = |name: &str, bias: bool| -> Result<Linear> {
            let b = if bias {
                Some(dense(&name.replace(".weight", ".bias"))?)
            } else {
                None
            };
            Linear::from_weight(weight(name)?, b, dtype)
        };
        let p = &cfg.arch_params;
        // Gemma scales by `1 + w`; the sum is formed once, in f32 as transformers does.
        let norm_weight = |name: &str| -> Result<Tensor> {
            if p.norm_plus_one {
                Ok((source(name)?.to_dtype(DType::F32)? + 1.0)?.to_dtype(dtype)?)
            } else {
                dense(name)
            }
        };
        let gated = |pre: &str, names: [String; 3]| -> Result<GatedMlp> {
            Ok(GatedMlp::Separate {
                gate: linear(&format!("{pre}.{}", names[0]), false)?,
                up: linear(&format!("{pre}.{}", names[1]), false)?,
                down: linear(&format!("{pre}.{}", names[2]), false)?,
            })
        };
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for l in 0..cfg.num_layers {
            let pre = format!("model.layers.{l}");
            let bias = cfg.attention_bias;
            let qkv = if p.fused_qkv {
                Qkv::Fused(linear(&format!("{pre}.self_attn.qkv_proj.weight"), false)?)
            } else {
                Qkv::Separate {
                    q: linear(&format!("{pre}.self_attn.q_proj.weight"), bias)?,
                    k: linear(&format!("{pre}.self_attn.k_proj.weight"), bias)?,
                    v: linear(&format!("{pre}.self_attn.v_proj.weight"), bias)?,
                }
            };
            let qk_norm = |n: &str| -> Result<Option<Tensor>> {
                p.qk_norm
                    .then(|| norm_weight(&format!("{pre}.self_attn.{n}.weight")))
                    .transpose()
            };
            let attn = Attention {
                qkv,
                o: linear(&format!("{pre}.self_attn.o_proj.weight"), p.o_proj_bias)?,
                q_norm: qk_norm("q_norm")?,
                k_norm: qk_norm("k_norm")?,
            };
            let mlp = match p.moe.as_ref().filter(|_| cfg.is_moe_layer(l)) {
                Some(m) => Mlp::Moe(Moe {
                    router: linear(&format!("{pre}.{}", moe_router_name(m.naming)), false)?,
                    experts: (0..m.num_experts)
                        .map(|e| gated(&pre, expert_names(m.naming, e)))
                        .collect::<Result<_>>()?,
                    top_k: m.top_k,
                    norm_topk_prob: m.norm_topk_prob,
                }),
                None if p.fused_gate_up => Mlp::Dense(GatedMlp::Fused {
                    gate_up: linear(&format!("{pre}.mlp.gate_up_proj.weight"), false)?,
                    down: linear(&format!("{pre}.mlp.down_proj.weight"), false)?,
                }),
                None => Mlp::Dense(gated(
                    &pre,
                    ["gate_proj", "up_proj", "down_proj"].map(|n| format!("mlp.{n}.weight")),
                )?),
            };
            let (attn_out_norm, mlp_norm, mlp_out_norm) = if p.sandwich_norms {
                (
                    Some(norm_weight(&format!(
                        "{pre}.post_attention_layernorm.weight"
                    ))?),
                    norm_weight(&format!("{pre}.pre_feedforward_layernorm.weight"))?,
                    Some(norm_weight(&format!(
                        "{pre}.post_feedforward_layernorm.weight"
                    ))?),
                )
            } else {
                (
                    None,
                    norm_weight(&format!("{pre}.post_attention_layernorm.weight"))?,
                    None,
                )
            };
            layers.push(Layer {
                attn_norm: norm_weight(&format!("{pre}.input_layernorm.weight"))?,
                attn,
                attn_out_norm,
                mlp_norm,
                mlp,
                mlp_out_norm,
                kind: cfg.layer_kind(l),
            });
        }
        let embed = dense("model.embed_tokens.weight")?;
        let lm_head = if cfg.tie_word_embeddings {
            // A GGUF file's tied output projection is its (quantized) token embedding.
            let stored = || weight("lm_head.weight").ok();
            match variant
                .weights
                .get("lm_head.weight")
                .cloned()
                .or_else(stored)
            {
                Some(w) => Linear::from_weight(w, None, dtype)?,
                None => Linear::Dense {
                    w: embed.clone(),
                    b: None,
                },
            }
        } else {
            linear("lm_head.weight", false)?
        };
        let rot = cfg.rotary_dim();
        let tables = |kind: LayerKind| -> Result<RopeTables> {
            let freq = cfg
                .rope(kind)
                .frequencies(rot)
                .map_err(EngineError::Invalid)?;
            RopeTables::new(&freq, cfg.max_position_embeddings, &device, dtype)
        };
        let kinds: Vec<LayerKind> = layers.iter().map(|l| l.kind).collect();
        let has_sliding = kinds.contains(&LayerKind::Sliding);
        let has_full = kinds.contains(&LayerKind::Full);
        let rope_sliding = (has_sliding && p.local_rope.is_some())
            .then(|| tables(LayerKind::Sliding))
            .transpose()?;
        let fast_paths = !device.is_cpu();
        Ok(Model {
            norm: norm_weight("model.norm.weight")?,
            rope_full: tables(LayerKind::Full)?,
            rope_sliding,
            two_masks: has_sliding && has_full,
            config: cfg,
            embed,
            layers,
            lm_head,
            interleaved: ckpt.rope_interleaved,
            device,
            dtype,
            training: false,
            fast_paths,
            kv_quant: ckpt.kv_quant.clone().map(Arc::new),
        })
    }

    /// Chooses the kernels of the forward pass. With fast paths (the default off the CPU)
    /// linear layers run as one flat GEMM, grouped-query attention multiplies the shared keys
    /// and values without repeating them per query head, and generation writes the KV cache
    /// in place. Without them (the CPU default) the forward pass runs the kernels whose
    /// results the reference fixtures pin. Both compute the same function; they differ in
    /// floating-point rounding only.
    pub fn set_fast_paths(&mut self, on: bool) {
        self.fast_paths = on;
    }

    /// Whether the fast paths are on (see [`set_fast_paths`](Model::set_fast_paths)).
    pub fn fast_paths(&self) -> bool {
        self.fast_paths
    }

    /// LongRoPE (Phi-3): the sequence length past which the long factors apply. A sequence that
    /// grows past it during generation is encoded again from its first token with the long
    /// factors, as transformers' Phi-3 does (it drops its cache at that step).
    pub fn rope_switch_length(&self) -> Option<usize> {
        self.rope_full.long_after()
    }

    /// The dtype the model computes in.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// A KV cache for generating up to `steps` positions (prompt and new tokens): in place
    /// with fast paths, growing by concatenation otherwise.
    pub fn new_cache(&self, steps: usize) -> KvCache {
        if self.fast_paths {
            KvCache::with_capacity(self.config.num_layers, steps)
        } else {
            KvCache::new(self.config.num_layers)
        }
    }

    /// Switches to differentiable (slower) kernels for norm, softmax and rotary embedding so
    /// gradients flow to the weights (fixture training and distillation).
    pub fn set_training(&mut self, on: bool) {
        self.training = on;
    }

    /// Logits `[batch, seq, vocab]` of unpadded sequences starting at position 0 (training).
    pub fn forward_logits(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, s) = ids.dims2()?;
        let pos: Vec<Vec<i64>> = vec![(0..s as i64).collect(); b];
        let positions = Tensor::from_vec(
            pos.iter().flatten().map(|&p| p as u32).collect::<Vec<_>>(),
            (b, s),
            &self.device,
        )?;
        let mask = self.mask(&pos, &pos)?;
        let mut cache = KvCache::new(self.config.num_layers);
        let hidden = self.forward_hidden(ids, &positions, &mask, &mut cache)?;
        self.logits(&hidden)
    }

    pub(crate) fn norm(&self, x: &Tensor, w: &Tensor) -> Result<Tensor> {
        let eps = self.config.rms_norm_eps as f32;
        Ok(if self.training {
            candle_nn::ops::rms_norm_slow(x, w, eps)?
        } else {
            candle_nn::ops::rms_norm(x, w, eps)?
        })
    }

    pub(crate) fn softmax(&self, x: &Tensor) -> Result<Tensor> {
        Ok(if self.training {
            candle_nn::ops::softmax(x, D::Minus1)?
        } else {
            candle_nn::ops::softmax_last_dim(x)?
        })
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Runs the decoder over `ids` (`[batch, seq]`, u32) whose absolute positions are
    /// `positions` (`[batch, seq]`, u32), appending keys and values to `cache`. `mask` is the
    /// additive attention mask [`mask`](Model::mask) builds (`[batch, 1 or 2, seq, cached +
    /// seq]`; a one-slice mask applies to every layer). Returns the final hidden states
    /// (after the last norm), `[batch, seq, hidden]`.
    pub fn forward_hidden(
        &self,
        ids: &Tensor,
        positions: &Tensor,
        mask: &Tensor,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        self.forward_hidden_masked(ids, positions, Some(mask), cache)
    }

    /// [`forward_hidden`](Model::forward_hidden) with an optional mask; `None` means every
    /// query attends to every cached key (see [`mask_if_needed`](Model::mask_if_needed)).
    pub fn forward_hidden_masked(
        &self,
        ids: &Tensor,
        positions: &Tensor,
        mask: Option<&Tensor>,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        let x = self.embed(ids)?;
        let x = self.run_layers(x, positions, mask, cache, 0..self.layers.len(), None)?;
        cache.advance(ids.dim(1)?);
        self.norm(&x, &self.norm)
    }

    /// The input embeddings of `ids` (`[batch, seq]`, u32): `[batch, seq, hidden]` (scaled by
    /// `sqrt(hidden)` where the architecture does).
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, s) = ids.dims2()?;
        let cfg = &self.config;
        let x =
            self.embed
                .index_select(&ids.flatten_all()?, 0)?
                .reshape((b, s, cfg.hidden_size))?;
        Ok(if cfg.arch_params.embed_scale {
            // transformers multiplies by sqrt(hidden) rounded to the weights' dtype.
            (x * f64::from((cfg.hidden_size as f64).sqrt() as f32))?
        } else {
            x
        })
    }

    /// Runs decoder layer `layer` alone over hidden states `x` (`[batch, seq, hidden]`, the
    /// sequences unpadded and starting at position 0, causal attention), without a KV cache,
    /// handing every separate linear layer's input to `tap`. Returns the layer's output hidden
    /// states.
    pub fn layer_forward(&self, layer: usize, x: &Tensor, tap: &mut LinearTap) -> Result<Tensor> {
        let (b, s, _) = x.dims3()?;
        if layer >= self.layers.len() {
            return Err(EngineError::Invalid(format!(
                "layer_forward: no decoder layer {layer}"
            )));
        }
        let pos: Vec<Vec<i64>> = vec![(0..s as i64).collect(); b];
        let positions = Tensor::from_vec(
            pos.iter().flatten().map(|&p| p as u32).collect::<Vec<_>>(),
            (b, s),
            &self.device,
        )?;
        let mask = self.mask(&pos, &pos)?;
        let mut cache = KvCache::new(self.config.num_layers);
        self.run_layers(
            x.clone(),
            &positions,
            Some(&mask),
            &mut cache,
            layer..layer + 1,
            Some(tap),
        )
    }

    /// Replaces the weight of one separate linear layer (a calibrated compressor installs layer
    /// `l`'s compressed weights before the calibration data flows on to layer `l + 1`).
    pub fn set_linear(&mut self, layer: usize, site: LinearSite, w: LinearWeight) -> Result<()> {
        let dtype = self.dtype;
        let l = self
            .layers
            .get_mut(layer)
            .ok_or_else(|| EngineError::Invalid(format!("set_linear: no decoder layer {layer}")))?;
        let slot = match (site, &mut l.attn.qkv, &mut l.mlp) {
            (LinearSite::Q, Qkv::Separate { q, .. }, _) => q,
            (LinearSite::K, Qkv::Separate { k, .. }, _) => k,
            (LinearSite::V, Qkv::Separate { v, .. }, _) => v,
            (LinearSite::O, _, _) => &mut l.attn.o,
            (LinearSite::Gate, _, Mlp::Dense(GatedMlp::Separate { gate, .. })) => gate,
            (LinearSite::Up, _, Mlp::Dense(GatedMlp::Separate { up, .. })) => up,
            (LinearSite::Down, _, Mlp::Dense(GatedMlp::Separate { down, .. })) => down,
            _ => {
                return Err(EngineError::Invalid(format!(
                    "layer {layer} has no separate {} (fused projections and experts are not \
                     calibrated)",
                    site.module()
                )))
            }
        };
        *slot = Linear::from_weight(w, slot.bias().cloned(), dtype)?;
        Ok(())
    }

    /// Runs decoder layers `range` over `x`, handing every separate linear layer's input to
    /// `tap`.
    fn run_layers(
        &self,
        mut x: Tensor,
        positions: &Tensor,
        mask: Option<&Tensor>,
        cache: &mut KvCache,
        range: std::ops::Range<usize>,
        mut tap: Option<&mut LinearTap>,
    ) -> Result<Tensor> {
        let cfg = &self.config;
        let p = &cfg.arch_params;
        let rot_full = self.rope_full.rotation(positions)?;
        let rot_sliding = match &self.rope_sliding {
            Some(t) => Some(t.rotation(positions)?),
            None => None,
        };
        let mask_of = |kind: LayerKind| -> Result<Option<Tensor>> {
            Ok(match mask {
                Some(m) if m.dim(1)? == 2 => {
                    let slice = usize::from(kind == LayerKind::Sliding);
                    Some(m.narrow(1, slice, 1)?)
                }
                Some(m) => Some(m.clone()),
                None => None,
            })
        };
        let (mask_full, mask_sliding) = (mask_of(LayerKind::Full)?, mask_of(LayerKind::Sliding)?);
        let scale = match p.query_pre_attn_scalar {
            Some(q) => 1.0 / q.sqrt(),
            None => 1.0 / (cfg.head_dim as f64).sqrt(),
        };
        let flat = self.fast_paths;
        for (i, layer) in self
            .layers
            .iter()
            .enumerate()
            .take(range.end)
            .skip(range.start)
        {
            let _span = tracing::trace_span!("layer", i).entered();
            let mut tap = LayerTap {
                tap: tap.as_deref_mut(),
                layer: i,
                flat,
            };
            let sliding = layer.kind == LayerKind::Sliding;
            let input = AttentionInput {
                rotation: match (&rot_sliding, sliding) {
                    (Some(r), true) => r,
                    _ => &rot_full,
                },
                mask: if sliding {
                    mask_sliding.as_ref()
                } else {
                    mask_full.as_ref()
                },
                scale,
                softcap: p.attn_logit_softcapping,
            };
            let h = self.norm(&x, &layer.attn_norm)?;
            let mut h = layer.attn.forward(self, i, &h, &input, cache, &mut tap)?;
            if let Some(w) = &layer.attn_out_norm {
                h = self.norm(&h, w)?;
            }
            x = (x + h)?;
            let h = self.norm(&x, &layer.mlp_norm)?;
            let mut h = layer.mlp.forward(&h, p.activation, &mut tap)?;
            if let Some(w) = &layer.mlp_out_norm {
                h = self.norm(&h, w)?;
            }
            x = (x + h)?;
        }
        Ok(x)
    }

    /// Output logits for hidden states of any leading shape (`[..., hidden]` -> `[..., vocab]`),
    /// soft-capped where the model caps them (Gemma 2).
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let logits = self
            .lm_head
            .forward(hidden, self.fast_paths)?
            .to_dtype(DType::F32)?;
        attention::softcap(logits, self.config.arch_params.final_logit_softcapping)
    }

    /// Builds the additive mask for queries at `q_pos` over keys at `k_pos` (per batch row;
    /// a negative key position marks padding). Honours the sliding window: a model whose
    /// layers all slide gets it in its one slice; a model mixing full and sliding layers gets
    /// two slices, `[batch, 2, seq, keys]`, full attention first.
    pub fn mask(&self, q_pos: &[Vec<i64>], k_pos: &[Vec<i64>]) -> Result<Tensor> {
        self.build_mask(q_pos, k_pos, false)
            .map(|m| m.expect("a mask is always built when asked for"))
    }

    /// Like [`mask`](Model::mask), but `None` when every query sees every key (a decode step
    /// without padding inside the window): adding zeros changes nothing, so the attention
    /// skips the addition and the upload.
    pub fn mask_if_needed(&self, q_pos: &[Vec<i64>], k_pos: &[Vec<i64>]) -> Result<Option<Tensor>> {
        self.build_mask(q_pos, k_pos, true)
    }

    fn build_mask(
        &self,
        q_pos: &[Vec<i64>],
        k_pos: &[Vec<i64>],
        skip_if_open: bool,
    ) -> Result<Option<Tensor>> {
        let b = q_pos.len();
        let s = q_pos.first().map_or(0, Vec::len);
        let t = k_pos.first().map_or(0, Vec::len);
        let window = self.config.sliding_window.map(|w| w as i64);
        let windows: Vec<Option<i64>> = if self.two_masks {
            vec![None, window]
        } else if self.layers.iter().all(|l| l.kind == LayerKind::Sliding) {
            vec![window]
        } else {
            vec![None]
        };
        // f16 cannot hold MASKED; its lowest finite value masks as well after the softmax.
        let masked = if self.dtype == DType::F16 {
            -65504.0
        } else {
            MASKED
        };
        let mut data = Vec::with_capacity(b * windows.len() * s * t);
        let mut open = true;
        for (qs, ks) in q_pos.iter().zip(k_pos) {
            for w in &windows {
                for &qp in qs {
                    for &kp in ks {
                        let visible =
                            kp >= 0 && qp >= 0 && kp <= qp && w.is_none_or(|w| qp - kp < w);
                        open &= visible;
                        data.push(if visible { 0.0 } else { masked });
                    }
                }
            }
        }
        if open && skip_if_open {
            return Ok(None);
        }
        Ok(Some(
            Tensor::from_vec(data, (b, windows.len(), s, t), &self.device)?.to_dtype(self.dtype)?,
        ))
    }
}
