//! A quantized checkpoint against its unquantized source: per-layer error (`compsafe layers`)
//! and the honest-quantizer check (`compsafe requant-diff` on a GPTQ, AWQ or
//! compressed-tensors directory).
//!
//! For each packed layer, `e_file = ||W_file - W|| / ||W||` with `W` the source weight and
//! `W_file` the file's dequantized weight. AWQ folds a per-input-channel scale into the
//! weight (`W_file ~ W diag(s)`, the inverse folded into the preceding norm or layer), so for
//! AWQ files `W_file` is first divided column by column by its least-squares scale against
//! the source. The baseline `e_rtn` re-quantizes the source by round-to-nearest at the
//! file's bits and groups with the format's own grid ([`crate::quant::int`]; FP8 layers with
//! their absmax scale, bitsandbytes with its own quantizer). Calibrated methods (GPTQ, AWQ)
//! trade weight error for output error, so an honest file's `e_file / e_rtn` stays within a
//! small factor; a layer whose ratio exceeds `margin` holds values no calibrated quantizer
//! of that grid produces.

use crate::error::{EngineError, Result};
use crate::loader::Checkpoint;
use crate::quant::bnb;
use crate::quant::fp8;
use crate::quant::int::{rtn_matrix, Convention};

use super::packed::{Codes, PackedWeight};

/// The default margin on `e_file / e_rtn`, from the honest files of
/// `engine/tests/quant_compare.rs` (see docs/formats.md for the measured ratios).
pub const HONEST_MARGIN: f64 = 2.0;

/// One layer's comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerError {
    /// HF weight name.
    pub name: String,
    /// Relative error of the file's weight against the source.
    pub rel_error: f64,
    /// Relative error of round-to-nearest at the file's grid against the source.
    pub rtn_rel_error: f64,
    /// `rel_error / rtn_rel_error`.
    pub ratio: f64,
    /// Stored bits per weight of the layer (every tensor of it).
    pub bits_per_weight: f64,
    /// Weights.
    pub numel: usize,
    /// Stored bytes.
    pub bytes: u64,
    /// The ratio exceeds the margin.
    pub beyond_honest: bool,
}

fn rel(a: &[f32], src: &[f32]) -> f64 {
    let (mut num, mut den) = (0f64, 0f64);
    for (x, s) in a.iter().zip(src) {
        num += (f64::from(*x) - f64::from(*s)).powi(2);
        den += f64::from(*s).powi(2);
    }
    num.sqrt() / (den.sqrt() + 1e-8)
}

/// The source weight re-quantized by round-to-nearest on the layer's grid.
fn rtn_baseline(w: &PackedWeight, src: &[f32], sym: bool) -> Vec<f32> {
    let cols = w.in_features;
    match &w.codes {
        Codes::Gptq { bits, scales, .. } => {
            let groups = scales.len() / w.out_features.max(1);
            let g = cols.div_ceil(groups.max(1));
            rtn_matrix(src, cols, Some(g), *bits, Convention::Gptq { sym })
        }
        Codes::Awq { group_size, .. } => {
            rtn_matrix(src, cols, Some(*group_size), 4, Convention::Awq)
        }
        Codes::CtInt {
            bits,
            groups,
            group_size,
            zeros,
            ..
        } => {
            let conv = Convention::CompressedTensors {
                sym: zeros.is_none(),
            };
            let per_tensor = *groups == 1
                && {
                    // A tensor-strategy layer has one scale repeated on every row.
                    matches!(&w.codes, Codes::CtInt { scales, .. } if scales.windows(2).all(|p| p[0] == p[1]))
                };
            if per_tensor && w.out_features > 1 {
                rtn_matrix(src, src.len(), None, *bits, conv)
            } else {
                rtn_matrix(src, cols, Some(*group_size), *bits, conv)
            }
        }
        Codes::Fp8 { scales, .. } => {
            let per_tensor = scales.len() == 1;
            let amax_all = src.iter().fold(0f32, |m, v| m.max(v.abs()));
            src.chunks(cols)
                .flat_map(|row| {
                    let amax = if per_tensor {
                        amax_all
                    } else {
                        row.iter().fold(0f32, |m, v| m.max(v.abs()))
                    };
                    let s = if amax == 0.0 {
                        1.0
                    } else {
                        amax / fp8::E4M3_MAX
                    };
                    row.iter()
                        .map(move |&v| fp8::round_e4m3(v / s) * s)
                        .collect::<Vec<_>>()
                })
                .collect()
        }
        Codes::Bnb4 {
            blocksize, table, ..
        } => {
            let ty = if table == &bnb::NF4 {
                bnb::FourBit::Nf4
            } else {
                bnb::FourBit::Fp4
            };
            let (packed, absmax) = bnb::quantize_4bit(src, *blocksize, ty);
            bnb::dequantize_4bit(&packed, &absmax, *blocksize, table, src.len())
        }
        Codes::Int8Rows { .. } => src
            .chunks(cols)
            .flat_map(|row| {
                let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
                let s = if amax == 0.0 { 1.0 } else { amax / 127.0 };
                row.iter()
                    .map(move |&v| (v / s).round_ties_even().clamp(-127.0, 127.0) * s)
                    .collect::<Vec<_>>()
            })
            .collect(),
    }
}

/// Divides each column of `w` (`[rows, cols]`) by its least-squares scale against `src`.
fn unscale_columns(w: &mut [f32], src: &[f32], cols: usize) {
    for j in 0..cols {
        let (mut ws, mut ww) = (0f64, 0f64);
        for (a, b) in w
            .iter()
            .skip(j)
            .step_by(cols)
            .zip(src.iter().skip(j).step_by(cols))
        {
            ws += f64::from(*a) * f64::from(*b);
            ww += f64::from(*b) * f64::from(*b);
        }
        if ws != 0.0 && ww != 0.0 {
            let s = (ws / ww) as f32;
            for a in w.iter_mut().skip(j).step_by(cols) {
                *a /= s;
            }
        }
    }
}

/// Per-layer errors of the packed layers of `quantized` against `source`, worst ratio first;
/// `margin` is the ratio beyond which a layer is flagged.
pub fn layer_errors(
    source: &Checkpoint,
    quantized: &Checkpoint,
    margin: f64,
) -> Result<Vec<LayerError>> {
    let Some(info) = &quantized.format else {
        return Err(EngineError::Invalid(format!(
            "{}: not a quantized checkpoint (no quantization_config)",
            quantized.path.display()
        )));
    };
    let awq = info.kind == "awq";
    let sym = !info.method.contains(":asym");
    let mut out = Vec::new();
    for (name, w) in &quantized.packed {
        let src_t = source.weights.get(name).ok_or_else(|| {
            EngineError::Invalid(format!(
                "{}: tensor `{name}` of the quantized checkpoint is not in the source",
                source.path.display()
            ))
        })?;
        if src_t.dims() != [w.out_features, w.in_features] {
            return Err(EngineError::Invalid(format!(
                "tensor `{name}`: shape {:?} in the source, [{}, {}] in the quantized checkpoint",
                src_t.dims(),
                w.out_features,
                w.in_features
            )));
        }
        let src = src_t
            .to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let mut deq = w.dequantize_vec();
        if awq {
            unscale_columns(&mut deq, &src, w.in_features);
        }
        let e_file = rel(&deq, &src);
        let e_rtn = rel(&rtn_baseline(w, &src, sym), &src);
        let ratio = if e_rtn > 0.0 {
            e_file / e_rtn
        } else if e_file > 0.0 {
            f64::INFINITY
        } else {
            1.0
        };
        out.push(LayerError {
            name: name.clone(),
            rel_error: e_file,
            rtn_rel_error: e_rtn,
            ratio,
            bits_per_weight: w.bits_per_weight(),
            numel: w.numel(),
            bytes: w.stored_bytes,
            beyond_honest: ratio > margin,
        });
    }
    out.sort_by(|a, b| {
        b.ratio
            .total_cmp(&a.ratio)
            .then_with(|| a.name.cmp(&b.name))
    });
    Ok(out)
}
