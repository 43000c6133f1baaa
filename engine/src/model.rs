//! The Llama-family decoder (Llama 2/3, Mistral, Qwen2) with batched, left-padded attention
//! and a KV cache. Linear layers are either dense or GGUF-quantized, so every compressed
//! variant runs through the same forward pass.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor, D};

use crate::compress::{Compressed, LinearWeight};
use crate::config::ModelConfig;
use crate::error::{EngineError, Result};
use crate::formats::KvQuant;
use crate::linear::Linear;
use crate::loader::Checkpoint;

/// Additive mask value for keys a query may not see. Finite, so fully masked (padding) rows
/// stay finite instead of spreading NaN through the cache.
const MASKED: f32 = -1.0e9;

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
///
/// It grows by concatenation, or, when made [`with_capacity`](KvCache::with_capacity), is
/// written in place into buffers allocated once for the whole generation (no copy of the
/// cached keys and values per step; the layout GPUs want).
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    k: Vec<Option<Tensor>>,
    v: Vec<Option<Tensor>>,
    /// Time steps allocated per buffer; 0 grows by concatenation.
    capacity: usize,
    /// Time steps filled.
    len: usize,
}

impl KvCache {
    /// An empty cache for `layers` layers that grows by concatenation.
    pub fn new(layers: usize) -> KvCache {
        KvCache {
            k: vec![None; layers],
            v: vec![None; layers],
            capacity: 0,
            len: 0,
        }
    }

    /// An empty cache for `layers` layers holding up to `capacity` time steps in buffers
    /// allocated at the first forward pass.
    pub fn with_capacity(layers: usize, capacity: usize) -> KvCache {
        KvCache {
            capacity,
            ..KvCache::new(layers)
        }
    }

    /// Time steps cached so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keeps only the given batch rows (sequences that are still generating).
    pub fn select_rows(&mut self, rows: &Tensor) -> Result<()> {
        for t in self.k.iter_mut().chain(self.v.iter_mut()).flatten() {
            *t = t.index_select(rows, 0)?;
        }
        Ok(())
    }

    /// Appends layer `i`'s new keys and values (`[batch, kv_heads, new, head_dim]`) at the
    /// current length and returns the cached ones including them.
    fn append(&mut self, i: usize, k: Tensor, v: Tensor) -> Result<(Tensor, Tensor)> {
        let new = k.dim(2)?;
        if self.capacity == 0 {
            let (k, v) = match (&self.k[i], &self.v[i]) {
                (Some(pk), Some(pv)) => (Tensor::cat(&[pk, &k], 2)?, Tensor::cat(&[pv, &v], 2)?),
                _ => (k, v),
            };
            self.k[i] = Some(k.clone());
            self.v[i] = Some(v.clone());
            return Ok((k, v));
        }
        let end = self.len + new;
        if end > self.capacity {
            return Err(EngineError::Invalid(format!(
                "KV cache of {} steps cannot take {end}",
                self.capacity
            )));
        }
        let mut out = Vec::with_capacity(2);
        for (slot, x) in [(&mut self.k[i], k), (&mut self.v[i], v)] {
            let (b, h, _, d) = x.dims4()?;
            let buf = match slot {
                Some(buf) => buf.clone(),
                None => {
                    let buf = Tensor::zeros((b, h, self.capacity, d), x.dtype(), x.device())?;
                    *slot = Some(buf.clone());
                    buf
                }
            };
            buf.slice_set(&x.contiguous()?, 2, self.len)?;
            out.push(buf.narrow(2, 0, end)?);
        }
        let v = out.pop().expect("two tensors");
        let k = out.pop().expect("two tensors");
        Ok((k, v))
    }

    /// Records that a forward pass of `new` time steps went through every layer.
    fn advance(&mut self, new: usize) {
        self.len += new;
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
    fast_paths: bool,
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
        let device = ckpt
            .weights
            .values()
            .next()
            .map(|t| t.device().clone())
            .or_else(|| ckpt.quantized.values().next().map(|q| q.device()))
            .unwrap_or(Device::Cpu);
        let kv_quant = ckpt.kv_quant.clone().map(Arc::new);
        let dense = |name: &str| -> Result<Tensor> {
            if let Some(LinearWeight::Dense(t)) = variant.weights.get(name) {
                return Ok(t.to_dtype(dtype)?);
            }
            let t = ckpt.weights.get(name).ok_or_else(|| {
                EngineError::Invalid(format!(
                    "tensor `{name}` is not available as a dense tensor"
                ))
            })?;
            Ok(t.to_dtype(dtype)?)
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
        let (cos, sin) = (cos.to_dtype(dtype)?, sin.to_dtype(dtype)?);
        let fast_paths = !device.is_cpu();
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
            fast_paths,
            kv_quant,
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
        let flat = self.fast_paths;
        for (i, layer) in self.layers.iter().enumerate() {
            let _span = tracing::trace_span!("layer", i).entered();
            let h = self.norm(&x, &layer.attn_norm)?;
            let q = layer
                .q
                .forward(&h, flat)?
                .reshape((b, s, cfg.num_heads, cfg.head_dim))?
                .transpose(1, 2)?
                .contiguous()?;
            let k = layer
                .k
                .forward(&h, flat)?
                .reshape((b, s, cfg.num_kv_heads, cfg.head_dim))?
                .transpose(1, 2)?
                .contiguous()?;
            let v = layer
                .v
                .forward(&h, flat)?
                .reshape((b, s, cfg.num_kv_heads, cfg.head_dim))?
                .transpose(1, 2)?
                .contiguous()?;
            let q = self.rotate(&q, &cos, &sin)?;
            let k = self.rotate(&k, &cos, &sin)?;
            // A format that quantizes the KV cache stores keys and values quantized.
            let (k, v) = match &self.kv_quant {
                Some(kv) => (kv.apply(i, false, &k)?, kv.apply(i, true, &v)?),
                None => (k, v),
            };
            let (k, v) = cache.append(i, k, v)?;
            let out = if self.fast_paths {
                grouped_attention(&q, &k, &v, mask, scale, n_rep, |a| self.softmax(a))?
            } else {
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
                let att = (q.matmul(&k.t()?)? * scale)?;
                let att = match mask {
                    Some(m) => att.broadcast_add(m)?,
                    None => att,
                };
                self.softmax(&att)?.matmul(&v)?
            };
            let out = out
                .transpose(1, 2)?
                .reshape((b, s, cfg.num_heads * cfg.head_dim))?;
            x = (x + layer.o.forward(&out, flat)?)?;
            let h = self.norm(&x, &layer.mlp_norm)?;
            let act = (candle_nn::ops::silu(&layer.gate.forward(&h, flat)?)?
                * layer.up.forward(&h, flat)?)?;
            x = (x + layer.down.forward(&act, flat)?)?;
        }
        cache.advance(s);
        self.norm(&x, &self.norm)
    }

    /// Output logits for hidden states of any leading shape (`[..., hidden]` -> `[..., vocab]`).
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(self
            .lm_head
            .forward(hidden, self.fast_paths)?
            .to_dtype(DType::F32)?)
    }

    /// Builds the additive mask for queries at `q_pos` over keys at `k_pos` (per batch row;
    /// a negative key position marks padding). Honours the sliding window when there is one.
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
        // f16 cannot hold MASKED; its lowest finite value masks as well after the softmax.
        let masked = if self.dtype == DType::F16 {
            -65504.0
        } else {
            MASKED
        };
        let mut data = Vec::with_capacity(b * s * t);
        let mut open = true;
        for (qs, ks) in q_pos.iter().zip(k_pos) {
            for &qp in qs {
                for &kp in ks {
                    let visible =
                        kp >= 0 && qp >= 0 && kp <= qp && window.is_none_or(|w| qp - kp < w);
                    open &= visible;
                    data.push(if visible { 0.0 } else { masked });
                }
            }
        }
        if open && skip_if_open {
            return Ok(None);
        }
        Ok(Some(
            Tensor::from_vec(data, (b, 1, s, t), &self.device)?.to_dtype(self.dtype)?,
        ))
    }
}

/// Attention of `q` (`[b, heads, s, d]`) over the cached `k`, `v` (`[b, kv_heads, t, d]`,
/// possibly views into larger buffers) when `n_rep` query heads share each key/value head:
/// the query heads of a group are stacked as rows of one product, so keys and values are read
/// once per group and never copied. Returns `[b, heads, s, d]`.
fn grouped_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    scale: f64,
    n_rep: usize,
    softmax: impl Fn(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let (b, heads, s, d) = q.dims4()?;
    let (_, kvh, t, _) = k.dims4()?;
    // Query head h uses key/value head h / n_rep, so the rows of a group are contiguous.
    let q = q.reshape((b, kvh, n_rep * s, d))?;
    let att = (q.matmul(&k.t()?)? * scale)?;
    let att = match mask {
        Some(m) => att
            .reshape((b, kvh, n_rep, s, t))?
            .broadcast_add(&m.unsqueeze(2)?)?
            .reshape((b, kvh, n_rep * s, t))?,
        None => att,
    };
    let att = softmax(&att)?;
    Ok(att.matmul(v)?.reshape((b, heads, s, d))?)
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
