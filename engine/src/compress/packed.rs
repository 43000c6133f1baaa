//! Compressors whose result is executed as a quantized checkpoint executes it: the weight
//! in its packed form ([`PackedWeight`]), dequantized by the format's formula at every
//! product, with the format's activation quantization on the layer's input.
//!
//! - `fp8`: E4M3 weights with one scale per output row (`amax / 448`, compressed-tensors'
//!   symmetric float scale), inputs quantize-dequantized to E4M3 per token (dynamic), as
//!   llm-compressor's `FP8_DYNAMIC` scheme and vLLM run it.
//! - `nf4`, `fp4`: bitsandbytes' 4-bit blocks over the row-major weight (absmax per block of
//!   64), optionally with double quantization of the absmax values (their mean subtracted,
//!   then 8-bit dynamic-map blocks of 256), as `BitsAndBytesConfig(load_in_4bit=True)`.
//!
//! The numerics are those of [`crate::quant`], bit-exact with the libraries.

use std::sync::Arc;

use candle_core::DType;
use compsafe_core::calibrated::{Bnb4Code, Bnb4Spec};

use super::{
    f32_values, relative_error, rows_cols, selected_names, Compressed, Compressor, HeadLayout,
    LinearWeight, TensorStat, WeightMap,
};
use crate::error::Result;
use crate::formats::packed::Codes;
use crate::formats::{ActQuant, PackedWeight, RoundTo};
use crate::quant::act::ActType;
use crate::quant::bnb::{self, FourBit};
use crate::quant::fp8;

/// The dtype dequantized weights are rounded to: the reference tensor's.
fn round_to(dtype: DType) -> RoundTo {
    match dtype {
        DType::F16 => RoundTo::F16,
        DType::BF16 => RoundTo::Bf16,
        _ => RoundTo::F32,
    }
}

/// Replaces every selected tensor by `pack(name, values, rows, cols)`.
fn compress_each(
    weights: &WeightMap,
    selected: &dyn Fn(&str) -> bool,
    what: &str,
    pack: impl Fn(&[f32], usize, usize, RoundTo) -> PackedWeight,
) -> Result<Compressed> {
    let mut out = Compressed::default();
    for name in selected_names(weights, selected, what)? {
        let w = &weights[name];
        let (rows, cols) = rows_cols(name, w)?;
        let values = f32_values(name, w)?;
        let p = pack(&values, rows, cols, round_to(w.dtype()));
        let back = p.dequantize_vec();
        out.stats.push(TensorStat {
            name: name.to_string(),
            rel_error: relative_error(&values, &back),
            bits_per_weight: p.bits_per_weight(),
            numel: values.len(),
            bytes: p.stored_bytes,
            note: None,
        });
        out.weights
            .insert(name.to_string(), LinearWeight::Packed(Arc::new(p)));
    }
    Ok(out)
}

/// FP8 E4M3 weights per output channel with dynamic per-token E4M3 activations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fp8Dynamic;

/// E4M3 codes and row scales of a `[rows, cols]` matrix: `scale = amax / 448` per row (a
/// zero row gets f32's epsilon), `code = e4m3(clamp(w / scale, ±448))`.
pub fn fp8_rows(values: &[f32], cols: usize) -> (Vec<u8>, Vec<f32>) {
    let mut codes = Vec::with_capacity(values.len());
    let mut scales = Vec::with_capacity(values.len() / cols.max(1));
    for row in values.chunks(cols.max(1)) {
        let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let s = ActType::Fp8E4m3.dynamic_scale(amax);
        scales.push(s);
        codes.extend(
            row.iter()
                .map(|&v| fp8::encode_e4m3((v / s).clamp(-fp8::E4M3_MAX, fp8::E4M3_MAX))),
        );
    }
    (codes, scales)
}

impl Compressor for Fp8Dynamic {
    fn compress(
        &self,
        weights: &WeightMap,
        selected: &dyn Fn(&str) -> bool,
        _layout: &HeadLayout,
    ) -> Result<Compressed> {
        compress_each(weights, selected, "fp8", |values, rows, cols, r| {
            let (codes, scales) = fp8_rows(values, cols);
            PackedWeight {
                out_features: rows,
                in_features: cols,
                codes: Codes::Fp8 { codes, scales },
                round_to: r,
                sparse24: None,
                act: Some(ActQuant::Dynamic(ActType::Fp8E4m3)),
                stored_bytes: (rows * cols + 4 * rows) as u64,
            }
        })
    }
}

/// bitsandbytes NF4 / FP4 blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bnb4 {
    /// The code, block size and double quantization.
    pub spec: Bnb4Spec,
}

/// The f32 mean of `x` in torch's CPU summation order (matched on bitsandbytes' own
/// `nested_offset` values): four accumulators of eight lanes over blocks of 32 values,
/// added in order, the lanes then summed left to right, the remaining values added last.
pub fn torch_mean(x: &[f32]) -> f32 {
    let full = x.len() / 32 * 32;
    let mut acc = [[0f32; 8]; 4];
    for block in x[..full].chunks_exact(32) {
        for (j, a) in acc.iter_mut().enumerate() {
            for (l, v) in a.iter_mut().enumerate() {
                *v += block[j * 8 + l];
            }
        }
    }
    let mut lanes = acc[0];
    for a in &acc[1..] {
        for (t, v) in lanes.iter_mut().zip(a) {
            *t += v;
        }
    }
    let mut sum = 0f32;
    for v in lanes.iter().chain(&x[full..]) {
        sum += v;
    }
    sum / x.len().max(1) as f32
}

/// The absmax values as double quantization stores them and reads them back: the mean
/// subtracted (`nested_offset`), 8-bit dynamic-map blocks of 256, dequantized and the mean
/// added again. Returns `(absmax as dequantized, stored bytes of the absmax data)`.
pub fn double_quant(absmax: &[f32]) -> (Vec<f32>, u64) {
    let offset = torch_mean(absmax);
    let centred: Vec<f32> = absmax.iter().map(|&a| a - offset).collect();
    let map = bnb::dynamic_map();
    let (codes, nested) = bnb::quantize_blockwise(&centred, &map, 256);
    let back = bnb::dequantize_blockwise(&codes, &nested, &map, 256)
        .into_iter()
        .map(|a| a + offset)
        .collect();
    (back, (codes.len() + 4 * nested.len() + 4 * 256 + 4) as u64)
}

impl Compressor for Bnb4 {
    fn compress(
        &self,
        weights: &WeightMap,
        selected: &dyn Fn(&str) -> bool,
        _layout: &HeadLayout,
    ) -> Result<Compressed> {
        let table = match self.spec.code {
            Bnb4Code::Nf4 => FourBit::Nf4,
            Bnb4Code::Fp4 => FourBit::Fp4,
        };
        let block = self.spec.block;
        let dq = self.spec.double_quant;
        compress_each(weights, selected, table.name(), |values, rows, cols, r| {
            let (packed, absmax) = bnb::quantize_4bit(values, block, table);
            let (absmax, absmax_bytes) = if dq {
                double_quant(&absmax)
            } else {
                let n = 4 * absmax.len() as u64;
                (absmax, n)
            };
            let stored_bytes = packed.len() as u64 + absmax_bytes + 4 * 16;
            PackedWeight {
                out_features: rows,
                in_features: cols,
                codes: Codes::Bnb4 {
                    packed,
                    absmax,
                    blocksize: block,
                    table: *table.table(),
                },
                round_to: r,
                sparse24: None,
                act: None,
                stored_bytes,
            }
        })
    }
}
