//! The Llama-family decoder (Llama 2/3, Mistral, Qwen2) with batched, left-padded attention
//! and a KV cache. Linear layers are either dense or GGUF-quantized, so every compressed
//! variant runs through the same forward pass.

use std::sync::Arc;

use candle_core::quantized::QMatMul;
use candle_core::{DType, Device, Module, Tensor, D};

use crate::compress::{Compressed, LinearWeight};
use crate::config::ModelConfig;
use crate::error::{EngineError, Result};
use crate::loader::Checkpoint;

/// Additive mask value for keys a query may not see. Finite, so fully masked (padding) rows
/// stay finite instead of spreading NaN through the cache.
const MASKED: f32 = -1.0e9;

/// A linear layer: `y = x W^T + b`, dense or block-quantized.
#[derive(Debug, Clone)]
enum Linear {
    Dense { w: Tensor, b: Option<Tensor> },
    Quant { m: QMatMul, b: Option<Tensor> },
}

impl Linear {
    fn from_weight(w: LinearWeight, b: Option<Tensor>, dtype: DType) -> Result<Linear> {
        Ok(match w {
            LinearWeight::Dense(w) => Linear::Dense {
                w: w.to_dtype(dtype)?,
                b,
            },
            LinearWeight::Quantized(q) => Linear::Quant {
                m: QMatMul::from_arc(q)?,
                b,
            },
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (y, b) = match self {
            Linear::Dense { w, b } => {
                let y = match *x.dims() {
                    [bsz, _, _] => x.matmul(&w.broadcast_left(bsz)?.t()?)?,
                    _ => x.matmul(&w.t()?)?,
                };
                (y, b)
            }
            Linear::Quant { m, b } => (m.forward(x)?, b),
        };
        Ok(match b {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }
}

#[derive(Debug, Clone)]
struct Layer {
    attn_norm: Tensor,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    mlp_norm: Tensor,
    gate: Linear,
    up: Linear,
    down: Linear,
}

/// Per-layer key/value cache of a batch: `[batch, kv_heads, time, head_dim]` per layer.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    k: Vec<Option<Tensor>>,
    v: Vec<Option<Tensor>>,
}

impl KvCache {
    /// An empty cache for `layers` layers.
    pub fn new(layers: usize) -> KvCache {
        KvCache {
            k: vec![None; layers],
            v: vec![None; layers],
        }
    }

    /// Keeps only the given batch rows (sequences that are still generating).
    pub fn select_rows(&mut self, rows: &Tensor) -> Result<()> {
        for t in self.k.iter_mut().chain(self.v.iter_mut()).flatten() {
            *t = t.index_select(rows, 0)?;
        }
        Ok(())
    }
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
    cos: Tensor,
    sin: Tensor,
    interleaved: bool,
    device: Device,
    dtype: DType,
    training: bool,
}

impl Model {
    /// Builds the reference model of a checkpoint.
    pub fn new(ckpt: &Checkpoint) -> Result<Model> {
        Model::with_variant(ckpt, &Compressed::default())
    }

    /// Builds a model from a checkpoint with a compressor's replacements applied.
    pub fn with_variant(ckpt: &Checkpoint, variant: &Compressed) -> Result<Model> {
        let cfg = ckpt.config.clone();
        let device = ckpt
            .weights
            .values()
            .next()
            .map(|t| t.device().clone())
            .unwrap_or(Device::Cpu);
        let dtype = DType::F32;
        let dense = |name: &str| -> Result<Tensor> {
            if let Some(LinearWeight::Dense(t)) = variant.weights.get(name) {
                return Ok(t.to_dtype(dtype)?);
            }
            ckpt.weights.get(name).cloned().ok_or_else(|| {
                EngineError::Invalid(format!(
                    "tensor `{name}` is not available as a dense tensor"
                ))
            })
        };
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
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for l in 0..cfg.num_layers {
            let p = format!("model.layers.{l}");
            layers.push(Layer {
                attn_norm: dense(&format!("{p}.input_layernorm.weight"))?,
                q: linear(&format!("{p}.self_attn.q_proj.weight"), cfg.attention_bias)?,
                k: linear(&format!("{p}.self_attn.k_proj.weight"), cfg.attention_bias)?,
                v: linear(&format!("{p}.self_attn.v_proj.weight"), cfg.attention_bias)?,
                o: linear(&format!("{p}.self_attn.o_proj.weight"), false)?,
                mlp_norm: dense(&format!("{p}.post_attention_layernorm.weight"))?,
                gate: linear(&format!("{p}.mlp.gate_proj.weight"), false)?,
                up: linear(&format!("{p}.mlp.up_proj.weight"), false)?,
                down: linear(&format!("{p}.mlp.down_proj.weight"), false)?,
            });
        }
        let embed = dense("model.embed_tokens.weight")?;
        let lm_head = if cfg.tie_word_embeddings {
            match variant.weights.get("lm_head.weight") {
                Some(w) => Linear::from_weight(w.clone(), None, dtype)?,
                None => Linear::Dense {
                    w: embed.clone(),
                    b: None,
                },
            }
        } else {
            linear("lm_head.weight", false)?
        };
        let (cos, sin) = rope_tables(&cfg, &device)?;
        Ok(Model {
            norm: dense("model.norm.weight")?,
            config: cfg,
            embed,
            layers,
            lm_head,
            cos,
            sin,
            interleaved: ckpt.rope_interleaved,
            device,
            dtype,
            training: false,
        })
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

    fn norm(&self, x: &Tensor, w: &Tensor) -> Result<Tensor> {
        let eps = self.config.rms_norm_eps as f32;
        Ok(if self.training {
            candle_nn::ops::rms_norm_slow(x, w, eps)?
        } else {
            candle_nn::ops::rms_norm(x, w, eps)?
        })
    }

    fn rotate(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        Ok(match (self.training, self.interleaved) {
            (false, false) => candle_nn::rotary_emb::rope(x, cos, sin)?,
            (false, true) => candle_nn::rotary_emb::rope_i(x, cos, sin)?,
            (true, _) => {
                if self.interleaved {
                    return Err(EngineError::Invalid(
                        "training a model with interleaved rotary weights (GGUF) is not supported"
                            .into(),
                    ));
                }
                // x * cos + rotate_half(x) * sin with per-row positions: cos/sin [b, s, d/2].
                let cos = Tensor::cat(&[cos, cos], D::Minus1)?.unsqueeze(1)?;
                let sin = Tensor::cat(&[sin, sin], D::Minus1)?.unsqueeze(1)?;
                let half = x.dim(D::Minus1)? / 2;
                let x1 = x.narrow(D::Minus1, 0, half)?;
                let x2 = x.narrow(D::Minus1, half, half)?;
                let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
                (x.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?)?
            }
        })
    }

    fn softmax(&self, x: &Tensor) -> Result<Tensor> {
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
    /// additive attention mask `[batch, 1, seq, cached + seq]`. Returns the final hidden states
    /// (after the last norm), `[batch, seq, hidden]`.
    pub fn forward_hidden(
        &self,
        ids: &Tensor,
        positions: &Tensor,
        mask: &Tensor,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        let (b, s) = ids.dims2()?;
        let cfg = &self.config;
        let mut x =
            self.embed
                .index_select(&ids.flatten_all()?, 0)?
                .reshape((b, s, cfg.hidden_size))?;
        let flat_pos = positions.flatten_all()?;
        let half = cfg.head_dim / 2;
        let cos = self.cos.index_select(&flat_pos, 0)?.reshape((b, s, half))?;
        let sin = self.sin.index_select(&flat_pos, 0)?.reshape((b, s, half))?;
        let scale = 1.0 / (cfg.head_dim as f64).sqrt();
        let n_rep = cfg.num_heads / cfg.num_kv_heads;
        for (i, layer) in self.layers.iter().enumerate() {
            let _span = tracing::trace_span!("layer", i).entered();
            let h = self.norm(&x, &layer.attn_norm)?;
            let q = layer
                .q
                .forward(&h)?
                .reshape((b, s, cfg.num_heads, cfg.head_dim))?
                .transpose(1, 2)?
                .contiguous()?;
            let k = layer
                .k
                .forward(&h)?
                .reshape((b, s, cfg.num_kv_heads, cfg.head_dim))?
                .transpose(1, 2)?
                .contiguous()?;
            let v = layer
                .v
                .forward(&h)?
                .reshape((b, s, cfg.num_kv_heads, cfg.head_dim))?
                .transpose(1, 2)?
                .contiguous()?;
            let q = self.rotate(&q, &cos, &sin)?;
            let k = self.rotate(&k, &cos, &sin)?;
            let (k, v) = match (&cache.k[i], &cache.v[i]) {
                (Some(pk), Some(pv)) => (Tensor::cat(&[pk, &k], 2)?, Tensor::cat(&[pv, &v], 2)?),
                _ => (k, v),
            };
            cache.k[i] = Some(k.clone());
            cache.v[i] = Some(v.clone());
            let (k, v) = if n_rep > 1 {
                let (_, kvh, t, d) = k.dims4()?;
                (
                    k.unsqueeze(2)?.expand((b, kvh, n_rep, t, d))?.reshape((
                        b,
                        kvh * n_rep,
                        t,
                        d,
                    ))?,
                    v.unsqueeze(2)?.expand((b, kvh, n_rep, t, d))?.reshape((
                        b,
                        kvh * n_rep,
                        t,
                        d,
                    ))?,
                )
            } else {
                (k, v)
            };
            let att = (q.matmul(&k.t()?)? * scale)?.broadcast_add(mask)?;
            let att = self.softmax(&att)?;
            let out =
                att.matmul(&v)?
                    .transpose(1, 2)?
                    .reshape((b, s, cfg.num_heads * cfg.head_dim))?;
            x = (x + layer.o.forward(&out)?)?;
            let h = self.norm(&x, &layer.mlp_norm)?;
            let act = (candle_nn::ops::silu(&layer.gate.forward(&h)?)? * layer.up.forward(&h)?)?;
            x = (x + layer.down.forward(&act)?)?;
        }
        self.norm(&x, &self.norm)
    }

    /// Output logits for hidden states of any leading shape (`[..., hidden]` -> `[..., vocab]`).
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(self.lm_head.forward(hidden)?.to_dtype(DType::F32)?)
    }

    /// Builds the additive mask for queries at `q_pos` over keys at `k_pos` (per batch row;
    /// a negative key position marks padding). Honours the sliding window when there is one.
    pub fn mask(&self, q_pos: &[Vec<i64>], k_pos: &[Vec<i64>]) -> Result<Tensor> {
        let b = q_pos.len();
        let s = q_pos.first().map_or(0, Vec::len);
        let t = k_pos.first().map_or(0, Vec::len);
        let window = self.config.sliding_window.map(|w| w as i64);
        let mut data = Vec::with_capacity(b * s * t);
        for (qs, ks) in q_pos.iter().zip(k_pos) {
            for &qp in qs {
                for &kp in ks {
                    let visible =
                        kp >= 0 && qp >= 0 && kp <= qp && window.is_none_or(|w| qp - kp < w);
                    data.push(if visible { 0.0 } else { MASKED });
                }
            }
        }
        Ok(Tensor::from_vec(data, (b, 1, s, t), &self.device)?.to_dtype(self.dtype)?)
    }
}

fn rope_tables(cfg: &ModelConfig, device: &Device) -> Result<(Tensor, Tensor)> {
    let inv = cfg.inv_freq();
    let n = cfg.max_position_embeddings;
    let mut cos = Vec::with_capacity(n * inv.len());
    let mut sin = Vec::with_capacity(n * inv.len());
    for p in 0..n {
        for f in &inv {
            // f32 product and f32 cos/sin, as transformers computes them.
            let a = p as f32 * f;
            cos.push(a.cos());
            sin.push(a.sin());
        }
    }
    Ok((
        Tensor::from_vec(cos, (n, inv.len()), device)?,
        Tensor::from_vec(sin, (n, inv.len()), device)?,
    ))
}
