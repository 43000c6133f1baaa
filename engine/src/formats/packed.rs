//! A linear weight kept in its checkpoint's packed form (codes, scales, zero points, group
//! index) and dequantized by the format's own formula each time it is multiplied, with the
//! format's activation quantization, and the KV-cache quantization a format may ask for.

use candle_core::{Device, Tensor};

use crate::error::Result;
use crate::quant::act::{self, ActType};
use crate::quant::{bnb, fp8, pack};

/// The dtype a format rounds its dequantized weights to (the scales' dtype, in which the
/// library multiplies), or none (f32 arithmetic, exact here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoundTo {
    /// Keep the f32 product.
    F32,
    /// Round to f16 (GPTQ and AWQ with f16 scales).
    F16,
    /// Round to bf16.
    Bf16,
}

impl RoundTo {
    /// `v` rounded (nearest, ties to even).
    pub fn apply(self, v: f32) -> f32 {
        match self {
            RoundTo::F32 => v,
            RoundTo::F16 => half::f16::from_f32(v).to_f32(),
            RoundTo::Bf16 => half::bf16::from_f32(v).to_f32(),
        }
    }

    /// For a scale tensor stored in `dtype`.
    pub fn of(dtype: safetensors::Dtype) -> RoundTo {
        match dtype {
            safetensors::Dtype::F16 => RoundTo::F16,
            safetensors::Dtype::BF16 => RoundTo::Bf16,
            _ => RoundTo::F32,
        }
    }
}

/// The stored codes of a packed weight and how to turn them into values.
#[derive(Debug, Clone)]
pub enum Codes {
    /// GPTQ: `qweight` `[in * bits / 32, out]` (bit streams down each column), `qzeros`
    /// `[groups, out * bits / 32]` (bit streams along each row), `scales` `[groups, out]`,
    /// `g_idx` `[in]`; `w[o][i] = s[g][o] * (q[i][o] - (z[g][o] + zero_offset))` with
    /// `g = g_idx[i]`.
    Gptq {
        /// Bits per code.
        bits: u32,
        /// `qweight` words, row-major.
        qweight: Vec<u32>,
        /// `qzeros` words, row-major.
        qzeros: Vec<u32>,
        /// `scales`, row-major `[groups, out]`.
        scales: Vec<f32>,
        /// Group of each input column.
        g_idx: Vec<u32>,
        /// 1 for the v1 checkpoint format (zero points stored minus one), 0 for v2.
        zero_offset: u32,
    },
    /// AutoAWQ GEMM: `qweight` `[in, out / 8]` and `qzeros` `[groups, out / 8]` in AWQ
    /// nibble order, `scales` `[groups, out]`; `w[o][i] = s[g][o] * (q[i][o] - z[g][o])`,
    /// `g = i / group_size`.
    Awq {
        /// `qweight` words, row-major.
        qweight: Vec<u32>,
        /// `qzeros` words, row-major.
        qzeros: Vec<u32>,
        /// `scales`, row-major `[groups, out]`.
        scales: Vec<f32>,
        /// Input columns per group.
        group_size: usize,
    },
    /// compressed-tensors integer weights: codes `q` signed (`weight_packed` bit streams
    /// along each row, offset by `2^(bits-1)`, or an int8 `weight`), `scales` `[out,
    /// groups]`, optional zero points `[out, groups]`, optional `g_idx`;
    /// `w[o][i] = (q - z[o][g]) * s[o][g]`.
    CtInt {
        /// Bits per code.
        bits: u32,
        /// Signed codes, row-major `[out, in]`.
        codes: CtCodes,
        /// Scales, row-major `[out, groups]`.
        scales: Vec<f32>,
        /// Zero points, row-major `[out, groups]`.
        zeros: Option<Vec<f32>>,
        /// Groups per row.
        groups: usize,
        /// Group of each input column (`None`: `i / group_size`).
        g_idx: Option<Vec<u32>>,
        /// Input columns per group.
        group_size: usize,
    },
    /// FP8 E4M3 weights `[out, in]` with one scale per tensor or per output row.
    Fp8 {
        /// E4M3 bytes, row-major.
        codes: Vec<u8>,
        /// One scale, or one per row.
        scales: Vec<f32>,
    },
    /// bitsandbytes 4-bit: codes two per byte (high nibble first) over the row-major weight,
    /// absmax per block (double quantization already undone).
    Bnb4 {
        /// Packed codes.
        packed: Vec<u8>,
        /// Absmax of each block.
        absmax: Vec<f32>,
        /// Elements per block.
        blocksize: usize,
        /// The code table.
        table: [f32; 16],
    },
    /// LLM.int8: int8 `weight` `[out, in]` with row scales `SCB`; `w = q * SCB * (1/127)`
    /// (bitsandbytes' `int8_vectorwise_dequant`: the product, then the f32 constant).
    Int8Rows {
        /// Codes, row-major.
        codes: Vec<i8>,
        /// Absmax of each row.
        scb: Vec<f32>,
    },
}

/// compressed-tensors integer codes as stored.
#[derive(Debug, Clone)]
pub enum CtCodes {
    /// `weight_packed`: per row, `words_per_row` words of a bit stream of unsigned codes.
    Packed {
        /// Words, row-major.
        words: Vec<u32>,
        /// Words per row.
        words_per_row: usize,
    },
    /// An int8 `weight` (format `int-quantized` / `naive-quantized`).
    Int8(Vec<i8>),
}

/// bitsandbytes' `1/127` as an f32 constant (`7.874015718698502e-3`).
const INV_127: f32 = 7.874_016e-3;
/// bitsandbytes' `1/127^2` as an f32 constant (`6.200124e-05`).
const INV_127_SQ: f32 = 6.200_124e-5;

/// How the inputs of a layer are quantized before the product.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ActQuant {
    /// One scale per token, computed from the token's values.
    Dynamic(ActType),
    /// LLM.int8 (bitsandbytes' `MatMul8bitLt`): inputs rounded to f16; columns holding a
    /// value of magnitude `threshold` or more multiply the dequantized weight in f32; the
    /// rest are quantized per row to int8 (absmax / 127) and multiplied in integers.
    LlmInt8 {
        /// `llm_int8_threshold`.
        threshold: f32,
    },
    /// One stored scale (and zero point) for every value.
    Static {
        /// The number type.
        ty: ActType,
        /// `input_scale`.
        scale: f32,
        /// `input_zero_point` (0 when symmetric).
        zero: f32,
    },
}

impl ActQuant {
    /// Quantize-dequantize `x` (`[..., cols]`, f32) as the format does.
    pub fn apply(&self, x: &mut [f32], cols: usize) {
        match *self {
            ActQuant::Dynamic(ty) => act::qdq_per_token(x, cols, ty),
            ActQuant::Static { ty, scale, zero } => act::qdq_static(x, scale, zero, ty),
            // Applied inside the product (see `PackedWeight::llm_int8_product`).
            ActQuant::LlmInt8 { .. } => {}
        }
    }
}

/// A linear weight in a checkpoint format's packed form.
#[derive(Debug, Clone)]
pub struct PackedWeight {
    /// Output features (rows of the dequantized weight).
    pub out_features: usize,
    /// Input features.
    pub in_features: usize,
    /// The codes.
    pub codes: Codes,
    /// The dtype the library's dequantization rounds to.
    pub round_to: RoundTo,
    /// 2:4 sparsity mask applied after dequantization (`None`: dense).
    pub sparse24: Option<Vec<bool>>,
    /// Activation quantization of the layer's input.
    pub act: Option<ActQuant>,
    /// Bytes of every stored tensor of this layer (codes, scales, zero points, indices).
    pub stored_bytes: u64,
}

impl PackedWeight {
    /// Weights stored.
    pub fn numel(&self) -> usize {
        self.out_features * self.in_features
    }

    /// Stored bits per weight, counting every tensor of the layer.
    pub fn bits_per_weight(&self) -> f64 {
        self.stored_bytes as f64 * 8.0 / self.numel().max(1) as f64
    }

    /// The dequantized weight, row-major `[out, in]`, exactly as the format's library
    /// computes it.
    pub fn dequantize_vec(&self) -> Vec<f32> {
        let (n_out, n_in) = (self.out_features, self.in_features);
        let r = self.round_to;
        let mut w = vec![0f32; n_out * n_in];
        match &self.codes {
            Codes::Gptq {
                bits,
                qweight,
                qzeros,
                scales,
                g_idx,
                zero_offset,
            } => {
                let zwords = (n_out * *bits as usize).div_ceil(32);
                for i in 0..n_in {
                    let g = g_idx[i] as usize;
                    for o in 0..n_out {
                        let q = pack::unpack_bit(|k| qweight[k * n_out + o], i, *bits);
                        let z =
                            pack::unpack_bit(|k| qzeros[g * zwords + k], o, *bits) + zero_offset;
                        let s = scales[g * n_out + o];
                        w[o * n_in + i] = r.apply(s * (q as f32 - z as f32));
                    }
                }
            }
            Codes::Awq {
                qweight,
                qzeros,
                scales,
                group_size,
            } => {
                let words = n_out / 8;
                for i in 0..n_in {
                    let g = i / group_size;
                    for c in 0..words {
                        let q = pack::unpack_awq(qweight[i * words + c]);
                        let z = pack::unpack_awq(qzeros[g * words + c]);
                        for k in 0..8 {
                            let o = c * 8 + k;
                            let s = scales[g * n_out + o];
                            w[o * n_in + i] = r.apply((q[k] as f32 - z[k] as f32) * s);
                        }
                    }
                }
            }
            Codes::CtInt {
                bits,
                codes,
                scales,
                zeros,
                groups,
                g_idx,
                group_size,
            } => {
                let offset = 1i64 << (bits - 1);
                for o in 0..n_out {
                    for i in 0..n_in {
                        let q = match codes {
                            CtCodes::Packed {
                                words,
                                words_per_row,
                            } => {
                                let row = &words[o * words_per_row..(o + 1) * words_per_row];
                                i64::from(pack::unpack_bit(|k| row[k], i, *bits)) - offset
                            }
                            CtCodes::Int8(v) => i64::from(v[o * n_in + i]),
                        };
                        let g = match g_idx {
                            Some(g) => g[i] as usize,
                            None => i / group_size,
                        };
                        let s = scales[o * groups + g];
                        let z = zeros.as_ref().map_or(0.0, |z| z[o * groups + g]);
                        w[o * n_in + i] = r.apply((q as f32 - z) * s);
                    }
                }
            }
            Codes::Fp8 { codes, scales } => {
                for o in 0..n_out {
                    let s = if scales.len() == 1 {
                        scales[0]
                    } else {
                        scales[o]
                    };
                    for i in 0..n_in {
                        w[o * n_in + i] = r.apply(fp8::decode_e4m3(codes[o * n_in + i]) * s);
                    }
                }
            }
            Codes::Bnb4 {
                packed,
                absmax,
                blocksize,
                table,
            } => {
                w = bnb::dequantize_4bit(packed, absmax, *blocksize, table, n_out * n_in)
                    .into_iter()
                    .map(|v| r.apply(v))
                    .collect();
            }
            Codes::Int8Rows { codes, scb } => {
                for o in 0..n_out {
                    for i in 0..n_in {
                        w[o * n_in + i] =
                            r.apply(f32::from(codes[o * n_in + i]) * scb[o] * INV_127);
                    }
                }
            }
        }
        if let Some(mask) = &self.sparse24 {
            for (v, &keep) in w.iter_mut().zip(mask) {
                if !keep {
                    *v = 0.0;
                }
            }
        }
        w
    }

    /// LLM.int8's product of `x` (`[rows, in]`, row-major) with an [`Codes::Int8Rows`]
    /// weight, as bitsandbytes computes it: `[rows, out]`, or `None` for other codes.
    pub fn llm_int8_product(&self, x: &[f32], threshold: f32) -> Option<Vec<f32>> {
        let Codes::Int8Rows { codes, scb } = &self.codes else {
            return None;
        };
        let (n_out, n_in) = (self.out_features, self.in_features);
        let rows = x.len() / n_in.max(1);
        let x16: Vec<f32> = x.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
        let mut outlier = vec![false; n_in];
        if threshold > 0.0 {
            for (k, v) in x16.iter().enumerate() {
                if v.abs() >= threshold {
                    outlier[k % n_in] = true;
                }
            }
        }
        let mut out = vec![0f32; rows * n_out];
        let mut ca = vec![0i32; n_in];
        for r in 0..rows {
            let row = &x16[r * n_in..(r + 1) * n_in];
            // Row absmax over the values below the threshold (outliers are zeroed first).
            let stat = row
                .iter()
                .filter(|v| !(threshold > 0.0 && v.abs() >= threshold))
                .fold(0f32, |m, v| m.max(v.abs()));
            let inv = 127.0f32 / stat;
            for (k, &v) in row.iter().enumerate() {
                let small = !(threshold > 0.0 && v.abs() >= threshold);
                // Outlier columns are zeroed in every row when there is more than one row.
                let zeroed = !small || (rows > 1 && outlier[k]);
                ca[k] = if zeroed || stat == 0.0 {
                    0
                } else {
                    (v * inv).round_ties_even() as i32
                };
            }
            for o in 0..n_out {
                let wrow = &codes[o * n_in..(o + 1) * n_in];
                let acc: i64 = ca
                    .iter()
                    .zip(wrow)
                    .map(|(&a, &b)| i64::from(a) * i64::from(b))
                    .sum();
                let mut y = acc as f32 * (stat * scb[o]) * INV_127_SQ;
                let mut extra = 0f32;
                for k in (0..n_in).filter(|&k| outlier[k]) {
                    let w = f32::from(wrow[k]) * scb[o] * INV_127;
                    extra += x[r * n_in + k] * w;
                }
                y += extra;
                out[r * n_out + o] = y;
            }
        }
        Some(out)
    }

    /// The dequantized weight `[out, in]` in f32 on `device`.
    pub fn dequantize(&self, device: &Device) -> Result<Tensor> {
        Ok(Tensor::from_vec(
            self.dequantize_vec(),
            (self.out_features, self.in_features),
            device,
        )?)
    }
}

/// KV-cache quantization: keys and values are quantize-dequantized with one static scale
/// per layer as they enter the cache (after the rotary embedding), as compressed-tensors'
/// `kv_cache_scheme` and vLLM's FP8 cache do.
#[derive(Debug, Clone, PartialEq)]
pub struct KvQuant {
    /// The number type.
    pub ty: ActType,
    /// `k_scale` of each layer.
    pub k_scales: Vec<f32>,
    /// `v_scale` of each layer.
    pub v_scales: Vec<f32>,
}

impl KvQuant {
    /// Keys (`value = false`) or values (`true`) of layer `layer`, quantize-dequantized.
    pub fn apply(&self, layer: usize, value: bool, t: &Tensor) -> Result<Tensor> {
        let scale = if value {
            self.v_scales[layer]
        } else {
            self.k_scales[layer]
        };
        let dtype = t.dtype();
        let mut x = t
            .to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        act::qdq_static(&mut x, scale, 0.0, self.ty);
        Ok(Tensor::from_vec(x, t.shape(), t.device())?.to_dtype(dtype)?)
    }
}
