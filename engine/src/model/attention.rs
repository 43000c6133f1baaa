//! Self-attention: projections (separate or fused), optional per-head query/key norms, RoPE,
//! the KV cache, scaled dot-product scores with optional soft-capping, and the output
//! projection.

use candle_core::{Tensor, D};

use super::rope::{rotate, Rotation};
use super::tap::{LayerTap, LinearSite};
use super::Model;
use crate::error::Result;
use crate::linear::Linear;

/// The query/key/value projections of a layer.
#[derive(Debug, Clone)]
pub(crate) enum Qkv {
    /// Three projections.
    Separate { q: Linear, k: Linear, v: Linear },
    /// One projection whose output rows are the queries, then the keys, then the values
    /// (Phi-3's `qkv_proj`).
    Fused(Linear),
}

/// The attention block of one layer.
#[derive(Debug, Clone)]
pub(crate) struct Attention {
    pub qkv: Qkv,
    pub o: Linear,
    /// Per-head RMSNorm weights of queries and keys (Qwen3, Gemma 3).
    pub q_norm: Option<Tensor>,
    pub k_norm: Option<Tensor>,
}

/// What the attention of one layer needs from the pass.
pub(crate) struct AttentionInput<'a> {
    pub rotation: &'a Rotation,
    pub mask: Option<&'a Tensor>,
    pub scale: f64,
    pub softcap: Option<f64>,
}

impl Attention {
    /// Attention of `h` (`[b, s, hidden]`, normed) for layer `layer`, appending its keys and
    /// values to `cache`. Returns the output projection's result `[b, s, hidden]`.
    pub fn forward(
        &self,
        model: &Model,
        layer: usize,
        h: &Tensor,
        input: &AttentionInput<'_>,
        cache: &mut super::KvCache,
        tap: &mut LayerTap<'_, '_>,
    ) -> Result<Tensor> {
        let cfg = &model.config;
        let (b, s, _) = h.dims3()?;
        let flat = model.fast_paths;
        let (heads, kv, d) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
        let (q, k, v) = match &self.qkv {
            Qkv::Separate { q, k, v } => (
                tap.linear(LinearSite::Q, q, h)?,
                tap.linear(LinearSite::K, k, h)?,
                tap.linear(LinearSite::V, v, h)?,
            ),
            Qkv::Fused(qkv) => {
                let y = qkv.forward(h, flat)?;
                (
                    y.narrow(D::Minus1, 0, heads * d)?,
                    y.narrow(D::Minus1, heads * d, kv * d)?,
                    y.narrow(D::Minus1, (heads + kv) * d, kv * d)?,
                )
            }
        };
        let split = |t: Tensor, n: usize, norm: Option<&Tensor>| -> Result<Tensor> {
            let t = t.reshape((b, s, n, d))?;
            let t = match norm {
                Some(w) => model.norm(&t.contiguous()?, w)?,
                None => t,
            };
            Ok(t.transpose(1, 2)?.contiguous()?)
        };
        let q = split(q, heads, self.q_norm.as_ref())?;
        let k = split(k, kv, self.k_norm.as_ref())?;
        let v = split(v, kv, None)?;
        let q = rotate(&q, input.rotation, model.interleaved, model.training)?;
        let k = rotate(&k, input.rotation, model.interleaved, model.training)?;
        // A format that quantizes the KV cache stores keys and values quantized.
        let (k, v) = match &model.kv_quant {
            Some(kv) => (kv.apply(layer, false, &k)?, kv.apply(layer, true, &v)?),
            None => (k, v),
        };
        let (k, v) = cache.append(layer, k, v)?;
        let n_rep = heads / kv;
        let out = if model.fast_paths {
            grouped_attention(&q, &k, &v, input, n_rep, |a| model.softmax(a))?
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
            let att = softcap((q.matmul(&k.t()?)? * input.scale)?, input.softcap)?;
            let att = match input.mask {
                Some(m) => att.broadcast_add(m)?,
                None => att,
            };
            model.softmax(&att)?.matmul(&v)?
        };
        let out = out.transpose(1, 2)?.reshape((b, s, heads * d))?;
        tap.linear(LinearSite::O, &self.o, &out)
    }
}

/// `tanh` soft-capping `cap * tanh(x / cap)`.
pub(crate) fn softcap(x: Tensor, cap: Option<f64>) -> Result<Tensor> {
    Ok(match cap {
        Some(c) => ((x / c)?.tanh()? * c)?,
        None => x,
    })
}

/// Attention of `q` (`[b, heads, s, d]`) over the cached `k`, `v` (`[b, kv_heads, t, d]`,
/// possibly views into larger buffers) when `n_rep` query heads share each key/value head:
/// the query heads of a group are stacked as rows of one product, so keys and values are read
/// once per group and never copied. Returns `[b, heads, s, d]`.
fn grouped_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    input: &AttentionInput<'_>,
    n_rep: usize,
    softmax: impl Fn(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let (b, heads, s, d) = q.dims4()?;
    let (_, kvh, t, _) = k.dims4()?;
    // Query head h uses key/value head h / n_rep, so the rows of a group are contiguous.
    let q = q.reshape((b, kvh, n_rep * s, d))?;
    let att = softcap((q.matmul(&k.t()?)? * input.scale)?, input.softcap)?;
    let att = match input.mask {
        Some(m) => att
            .reshape((b, kvh, n_rep, s, t))?
            .broadcast_add(&m.unsqueeze(2)?)?
            .reshape((b, kvh, n_rep * s, t))?,
        None => att,
    };
    let att = softmax(&att)?;
    Ok(att.matmul(v)?.reshape((b, heads, s, d))?)
}
