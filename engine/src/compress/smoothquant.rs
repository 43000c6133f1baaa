//! SmoothQuant W8A8 (`smoothquant:w8a8[:ALPHA]`), as llm-compressor 0.14's
//! `SmoothQuantModifier` followed by `QuantizationModifier(scheme="W8A8")`:
//!
//! 1. For each norm feeding linear layers (`input_layernorm` -> q/k/v,
//!    `post_attention_layernorm` -> gate/up), the per-channel dynamic range of the norm's
//!    output over the calibration tokens, `a_j = max_j - min_j`, and of the balanced
//!    weights, `w_j = 2 · max over the balanced layers of max_r |W[r, j]|`, give the
//!    smoothing scales `s_j = a_j^α / w_j^(1-α)` (`a_j` where `w_j = 0`), at least 1e-5.
//!    The balanced weights' columns are multiplied by `s`, the norm's weight divided by it.
//! 2. Every selected linear's weight is quantized to int8 with one symmetric scale per
//!    output row (`amax / 127.5`), and its input to int8 with one dynamic scale per token
//!    as the layer runs: a packed compressed-tensors `int-quantized` weight executed by
//!    [`crate::formats`].
//!
//! The next layer is calibrated on the reference's output (smoothing does not change the
//! function), as llm-compressor's sequential pipeline does.

use std::collections::BTreeMap;
use std::sync::Arc;

use candle_core::{DType, Tensor};

use super::{relative_error, Compressed, LinearWeight, TensorStat, WeightMap};
use crate::calib::{InputGroup, LayerCompressor, LayerContext, Wants};
use crate::error::{EngineError, Result};
use crate::formats::packed::{Codes, CtCodes};
use crate::formats::{ActQuant, PackedWeight, RoundTo};
use crate::model::LinearSite;
use crate::quant::act::ActType;

/// The smallest smoothing scale (llm-compressor's `MINIMUM_SMOOTHING_SCALE`).
const MIN_SCALE: f32 = 1e-5;

/// SmoothQuant's migration strength.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SmoothQuant {
    /// `α` in `[0, 1]`.
    pub alpha: f64,
}

/// `x^e` as torch computes a tensor power: exponent 0.5 as a square root, 1 as the value.
fn pow(x: f32, e: f32) -> f32 {
    if e == 0.5 {
        x.sqrt()
    } else if e == 1.0 {
        x
    } else if e == 0.0 {
        1.0
    } else {
        x.powf(e)
    }
}

/// The smoothing scales of one mapping: `range` per channel of the norm's output and the
/// balanced weights, each `(values, rows, cols)`.
pub fn smoothing_scales(range: &[f32], balance: &[(&[f32], usize, usize)], alpha: f32) -> Vec<f32> {
    let cols = range.len();
    let mut wmax = vec![0f32; cols];
    for (w, _, c) in balance {
        for row in w.chunks_exact(*c) {
            for (m, v) in wmax.iter_mut().zip(row) {
                *m = m.max(v.abs());
            }
        }
    }
    (0..cols)
        .map(|j| {
            let w = 2.0 * wmax[j];
            let s = if w > 0.0 {
                pow(range[j], alpha) / pow(w, 1.0 - alpha)
            } else {
                range[j]
            };
            s.max(MIN_SCALE)
        })
        .collect()
}

/// int8 codes and row scales of a `[rows, cols]` matrix (symmetric, `amax / 127.5` per row,
/// a zero row at f32's epsilon; codes rounded half to even and clamped to -128..=127).
pub fn int8_rows(w: &[f32], cols: usize) -> (Vec<i8>, Vec<f32>) {
    let mut codes = Vec::with_capacity(w.len());
    let mut scales = Vec::with_capacity(w.len() / cols.max(1));
    for row in w.chunks(cols.max(1)) {
        let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let s = ActType::Int8.dynamic_scale(amax);
        scales.push(s);
        codes.extend(
            row.iter()
                .map(|&v| ActType::Int8.round((v / s).clamp(-128.0, 127.0)) as i8),
        );
    }
    (codes, scales)
}

/// `(max - min)` per channel of the `[.., cols]` inputs.
fn channel_range(inputs: &[Tensor], cols: usize) -> Result<Vec<f32>> {
    let mut lo = vec![f32::INFINITY; cols];
    let mut hi = vec![f32::NEG_INFINITY; cols];
    for x in inputs {
        let v = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        for row in v.chunks_exact(cols) {
            for j in 0..cols {
                lo[j] = lo[j].min(row[j]);
                hi[j] = hi[j].max(row[j]);
            }
        }
    }
    Ok(hi.iter().zip(&lo).map(|(h, l)| h - l).collect())
}

impl LayerCompressor for SmoothQuant {
    fn wants(&self) -> Wants {
        Wants {
            inputs: true,
            ..Wants::default()
        }
    }

    fn propagates(&self) -> bool {
        false
    }

    fn compress_layer(
        &self,
        ctx: &LayerContext<'_>,
        weights: &WeightMap,
        selected: &dyn Fn(&str) -> bool,
    ) -> Result<Compressed> {
        let l = ctx.layer;
        let arch = &ctx.model.config.arch_params;
        if arch.norm_plus_one || arch.sandwich_norms {
            return Err(EngineError::Invalid(format!(
                "smoothquant folds its scales into `input_layernorm` and \
                 `post_attention_layernorm`; {:?} norms are not of that form",
                ctx.model.config.arch
            )));
        }
        let get = |name: &str| -> Result<Vec<f32>> {
            let t = weights
                .get(name)
                .ok_or_else(|| EngineError::Invalid(format!("smoothquant: `{name}` is missing")))?;
            super::f32_values(name, t)
        };
        let mut cur: BTreeMap<LinearSite, (Vec<f32>, usize, usize)> = BTreeMap::new();
        for site in LinearSite::ALL {
            let name = site.weight_name(l);
            let (r, c) = weights
                .get(&name)
                .ok_or_else(|| EngineError::Invalid(format!("smoothquant: `{name}` is missing")))?
                .dims2()?;
            cur.insert(site, (get(&name)?, r, c));
        }
        // Per input column, the factor the effective weight was multiplied by.
        let mut col_scale: BTreeMap<LinearSite, Vec<f32>> = BTreeMap::new();
        let mut norms = Vec::new();
        for (norm, group, balance) in [
            (
                "input_layernorm",
                InputGroup::Attn,
                &[LinearSite::Q, LinearSite::K, LinearSite::V][..],
            ),
            (
                "post_attention_layernorm",
                InputGroup::Mlp,
                &[LinearSite::Gate, LinearSite::Up][..],
            ),
        ] {
            let st = ctx.stats.get(&group).ok_or_else(|| {
                EngineError::Invalid(format!("smoothquant: no calibration inputs for {norm}"))
            })?;
            let range = channel_range(&st.inputs, st.cols)?;
            let bal: Vec<(&[f32], usize, usize)> = balance
                .iter()
                .map(|s| {
                    let (w, r, c) = &cur[s];
                    (w.as_slice(), *r, *c)
                })
                .collect();
            let s = smoothing_scales(&range, &bal, self.alpha as f32);
            for site in balance {
                let (w, _, c) = cur.get_mut(site).expect("present");
                for (i, v) in w.iter_mut().enumerate() {
                    *v *= s[i % *c];
                }
                col_scale.insert(*site, s.clone());
            }
            let name = format!("model.layers.{l}.{norm}.weight");
            let mut nw = get(&name)?;
            for (v, d) in nw.iter_mut().zip(&s) {
                *v /= d;
            }
            norms.push((name, nw));
        }
        let device = weights
            .values()
            .next()
            .map(Tensor::device)
            .cloned()
            .unwrap_or(candle_core::Device::Cpu);
        let mut out = Compressed::default();
        for site in LinearSite::ALL {
            let name = site.weight_name(l);
            let (w, r, c) = &cur[&site];
            let reference = get(&name)?;
            if !selected(&name) {
                let t = Tensor::from_vec(w.clone(), (*r, *c), &device)?;
                out.weights.insert(name, LinearWeight::Dense(t));
                continue;
            }
            let (codes, scales) = int8_rows(w, *c);
            let p = PackedWeight {
                out_features: *r,
                in_features: *c,
                codes: Codes::CtInt {
                    bits: 8,
                    codes: CtCodes::Int8(codes),
                    scales,
                    zeros: None,
                    groups: 1,
                    g_idx: None,
                    group_size: *c,
                },
                round_to: RoundTo::F32,
                sparse24: None,
                act: Some(ActQuant::Dynamic(ActType::Int8)),
                stored_bytes: (r * c + 4 * r) as u64,
            };
            // The error of the weight the layer effectively applies (smoothing undone).
            let mut effective = p.dequantize_vec();
            if let Some(s) = col_scale.get(&site) {
                for (i, v) in effective.iter_mut().enumerate() {
                    *v /= s[i % c];
                }
            }
            out.stats.push(TensorStat {
                name: name.clone(),
                rel_error: relative_error(&reference, &effective),
                bits_per_weight: p.bits_per_weight(),
                numel: r * c,
                bytes: p.stored_bytes,
                note: None,
            });
            out.weights.insert(name, LinearWeight::Packed(Arc::new(p)));
        }
        for (name, v) in norms {
            let n = v.len();
            out.weights
                .insert(name, LinearWeight::Dense(Tensor::from_vec(v, n, &device)?));
        }
        Ok(out)
    }
}
