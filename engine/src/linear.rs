//! Linear layers as the model executes them: `y = x W^T + b` with the weight dense (any
//! float dtype), block-quantized (GGUF types through candle's quantized matmul) or packed as
//! a quantized checkpoint stores it (dequantized per product by the format's formula, its
//! inputs quantized as the format quantizes activations).

use std::sync::Arc;

use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{DType, Module, Tensor};

use crate::error::Result;
use crate::formats::{ActQuant, PackedWeight};

/// A linear layer's weight as a compressor or loader hands it to the model.
#[derive(Debug, Clone)]
pub enum LinearWeight {
    /// A dense matrix `[out, in]` (any float dtype; the model casts activations to match).
    Dense(Tensor),
    /// A GGUF block-quantized matrix executed through candle's quantized matmul.
    Quantized(Arc<QTensor>),
    /// A quantized checkpoint's packed weight (GPTQ, AWQ, compressed-tensors, bitsandbytes).
    Packed(Arc<PackedWeight>),
}

/// A linear layer: `y = x W^T + b`, dense or block-quantized.
#[derive(Debug, Clone)]
pub enum Linear {
    /// A dense weight `[out, in]` in the compute dtype.
    Dense {
        /// The weight.
        w: Tensor,
        /// The bias `[out]`, if any.
        b: Option<Tensor>,
    },
    /// A block-quantized weight run through candle's quantized matmul (f32 activations).
    Quant {
        /// The quantized matmul.
        m: QMatMul,
        /// The bias `[out]`, if any.
        b: Option<Tensor>,
    },
    /// A packed weight, dequantized at every product (f32 arithmetic).
    Packed {
        /// The packed weight.
        w: Arc<PackedWeight>,
        /// The bias `[out]`, if any.
        b: Option<Tensor>,
    },
}

impl Linear {
    /// The executable layer of a weight: dense weights are cast to the compute `dtype`.
    pub fn from_weight(w: LinearWeight, b: Option<Tensor>, dtype: DType) -> Result<Linear> {
        Ok(match w {
            LinearWeight::Dense(w) => Linear::Dense {
                w: w.to_dtype(dtype)?,
                b,
            },
            LinearWeight::Quantized(q) => Linear::Quant {
                m: QMatMul::from_arc(q)?,
                b,
            },
            LinearWeight::Packed(w) => Linear::Packed { w, b },
        })
    }

    /// `x W^T + b` for `x` of shape `[..., in]`. `flat` multiplies a `[batch, seq, in]`
    /// input as one `[batch * seq, in]` matrix (one GEMM that reads the weight once) instead
    /// of a batched product over a broadcast weight.
    pub fn forward(&self, x: &Tensor, flat: bool) -> Result<Tensor> {
        // GPU matmuls and every quantized matmul take only row-major inputs without gaps
        // between rows, and a slice such as the last position of every sequence is not one:
        // copy it first. The CPU's dense kernels take any strides, so they compute as before.
        let packed;
        let x =
            if x.is_contiguous() || (x.device().is_cpu() && matches!(self, Linear::Dense { .. })) {
                x
            } else {
                packed = x.contiguous()?;
                &packed
            };
        let (y, b) = match self {
            Linear::Dense { w, b } => {
                let y = match *x.dims() {
                    [bsz, s, k] if flat => x
                        .contiguous()?
                        .reshape((bsz * s, k))?
                        .matmul(&w.t()?)?
                        .reshape((bsz, s, ()))?,
                    [bsz, _, _] => x.matmul(&w.broadcast_left(bsz)?.t()?)?,
                    _ => x.matmul(&w.t()?)?,
                };
                (y, b)
            }
            // Quantized matmul takes f32 activations on every backend.
            Linear::Quant { m, b } if x.dtype() != DType::F32 => {
                (m.forward(&x.to_dtype(DType::F32)?)?.to_dtype(x.dtype())?, b)
            }
            Linear::Quant { m, b } => (m.forward(x)?, b),
            Linear::Packed { w, b } => (packed_forward(w, x)?, b),
        };
        Ok(match b {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }
}

/// `x W^T` for a packed weight: the weight dequantized by its format's formula, the input
/// quantize-dequantized as the format quantizes activations, the product in f32.
fn packed_forward(w: &PackedWeight, x: &Tensor) -> Result<Tensor> {
    let dtype = x.dtype();
    let dims = x.dims().to_vec();
    let cols = w.in_features;
    let rows = x.elem_count() / cols.max(1);
    let x32 = x.to_dtype(DType::F32)?.reshape((rows, cols))?;
    let mut out_dims = dims.clone();
    if let Some(last) = out_dims.last_mut() {
        *last = w.out_features;
    }
    if let Some(ActQuant::LlmInt8 { threshold }) = w.act {
        let v = x32.flatten_all()?.to_vec1::<f32>()?;
        if let Some(y) = w.llm_int8_product(&v, threshold) {
            return Ok(Tensor::from_vec(y, (rows, w.out_features), x.device())?
                .reshape(out_dims)?
                .to_dtype(dtype)?);
        }
    }
    let x32 = match &w.act {
        Some(a) => {
            let mut v = x32.flatten_all()?.to_vec1::<f32>()?;
            a.apply(&mut v, cols);
            Tensor::from_vec(v, (rows, cols), x.device())?
        }
        None => x32,
    };
    let weight = w.dequantize(x.device())?;
    Ok(x32
        .matmul(&weight.t()?)?
        .reshape(out_dims)?
        .to_dtype(dtype)?)
}
