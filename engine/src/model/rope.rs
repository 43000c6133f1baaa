//! Rotary tables (cos and sin per position) and their application to queries and keys.

use candle_core::{DType, Device, Tensor, D};

use crate::config::RopeFrequencies;
use crate::error::{EngineError, Result};

/// cos/sin tables `[positions, pairs]` of one RoPE. With LongRoPE the tables hold the short
/// factors' rows followed by the long factors' rows, and `long_after` is the length past which
/// a sequence uses the second half.
#[derive(Debug, Clone)]
pub(crate) struct RopeTables {
    cos: Tensor,
    sin: Tensor,
    positions: usize,
    long_after: Option<usize>,
}

/// cos and sin of one forward pass, `[batch, seq, pairs]`.
#[derive(Debug, Clone)]
pub(crate) struct Rotation {
    pub cos: Tensor,
    pub sin: Tensor,
}

fn tables(
    inv: &[f32],
    scale: f32,
    n: usize,
    device: &Device,
    dtype: DType,
) -> Result<(Tensor, Tensor)> {
    let mut cos = Vec::with_capacity(n * inv.len());
    let mut sin = Vec::with_capacity(n * inv.len());
    for p in 0..n {
        for f in inv {
            // f32 product and f32 cos/sin, as transformers computes them.
            let a = p as f32 * f;
            if scale == 1.0 {
                cos.push(a.cos());
                sin.push(a.sin());
            } else {
                cos.push(a.cos() * scale);
                sin.push(a.sin() * scale);
            }
        }
    }
    Ok((
        Tensor::from_vec(cos, (n, inv.len()), device)?.to_dtype(dtype)?,
        Tensor::from_vec(sin, (n, inv.len()), device)?.to_dtype(dtype)?,
    ))
}

impl RopeTables {
    /// Tables for `positions` positions.
    pub fn new(
        freq: &RopeFrequencies,
        positions: usize,
        device: &Device,
        dtype: DType,
    ) -> Result<RopeTables> {
        let (cos, sin) = tables(
            &freq.inv_freq,
            freq.attention_scaling,
            positions,
            device,
            dtype,
        )?;
        let (cos, sin, long_after) = match &freq.long {
            Some((inv, after)) => {
                let (c, s) = tables(inv, freq.attention_scaling, positions, device, dtype)?;
                (
                    Tensor::cat(&[&cos, &c], 0)?,
                    Tensor::cat(&[&sin, &s], 0)?,
                    Some(*after),
                )
            }
            None => (cos, sin, None),
        };
        Ok(RopeTables {
            cos,
            sin,
            positions,
            long_after,
        })
    }

    /// LongRoPE: the sequence length past which the long factors apply.
    pub fn long_after(&self) -> Option<usize> {
        self.long_after
    }

    /// cos and sin at `positions` (`[batch, seq]`, u32). With LongRoPE a sequence whose
    /// furthest position in this pass reaches past the original context uses the long factors
    /// for the whole pass, as transformers decides per forward pass; the engine decides per
    /// sequence, so a prompt's result does not depend on the other prompts of its batch
    /// (transformers decides by the longest sequence of the batch).
    pub fn rotation(&self, positions: &Tensor) -> Result<Rotation> {
        let (b, s) = positions.dims2()?;
        let flat = match self.long_after {
            None => positions.flatten_all()?,
            Some(after) => {
                let rows: Vec<Vec<u32>> = positions.to_vec2()?;
                let mut idx = Vec::with_capacity(b * s);
                for row in rows {
                    let furthest = row.iter().copied().max().unwrap_or(0) as usize;
                    let offset = if furthest + 1 > after {
                        self.positions
                    } else {
                        0
                    };
                    idx.extend(row.iter().map(|&p| (p as usize + offset) as u32));
                }
                Tensor::from_vec(idx, b * s, positions.device())?
            }
        };
        let pairs = self.cos.dim(1)?;
        Ok(Rotation {
            cos: self.cos.index_select(&flat, 0)?.reshape((b, s, pairs))?,
            sin: self.sin.index_select(&flat, 0)?.reshape((b, s, pairs))?,
        })
    }
}

/// Rotates `x` (`[batch, heads, seq, head_dim]`, contiguous): its first `2 * pairs` dimensions
/// by halves (as transformers does) or by adjacent pairs (`interleaved`, GGUF's `llama`
/// layout); the remaining dimensions pass unchanged (partial rotary). `training` uses
/// differentiable operations.
pub(crate) fn rotate(
    x: &Tensor,
    rot: &Rotation,
    interleaved: bool,
    training: bool,
) -> Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    let r = rot.cos.dim(D::Minus1)? * 2;
    if r < d {
        let head = x.narrow(D::Minus1, 0, r)?.contiguous()?;
        let tail = x.narrow(D::Minus1, r, d - r)?;
        let head = rotate(&head, rot, interleaved, training)?;
        return Ok(Tensor::cat(&[&head, &tail], D::Minus1)?.contiguous()?);
    }
    let (cos, sin) = (&rot.cos, &rot.sin);
    Ok(match (training, interleaved) {
        (false, false) => candle_nn::rotary_emb::rope(x, cos, sin)?,
        (false, true) => candle_nn::rotary_emb::rope_i(x, cos, sin)?,
        (true, true) => {
            return Err(EngineError::Invalid(
                "training a model with interleaved rotary weights (GGUF) is not supported".into(),
            ))
        }
        (true, false) => {
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
