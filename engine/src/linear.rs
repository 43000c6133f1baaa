//! Linear layers as the model executes them: `y = x W^T + b` with the weight dense (any
//! float dtype), block-quantized (GGUF types through candle's quantized matmul, and the
//! types candle lacks, such as the i-quants, by decoding their blocks row by row) or packed as
//! a quantized checkpoint stores it (dequantized per product by the format's formula, its
//! inputs quantized as the format quantizes activations).

use std::sync::Arc;

use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{DType, Module, Tensor};

use crate::error::Result;
use crate::formats::{ActQuant, PackedWeight};
use crate::ggml::BlockTensor;

/// A linear layer's weight as a compressor or loader hands it to the model.
#[derive(Debug, Clone)]
pub enum LinearWeight {
    /// A dense matrix `[out, in]` (any float dtype; the model casts activations to match).
    Dense(Tensor),
    /// A GGUF block-quantized matrix executed through candle's quantized matmul.
    Quantized(Arc<QTensor>),
    /// A GGUF matrix of a type candle cannot execute (i-quants, TQ1_0, TQ2_0), multiplied by
    /// decoding its blocks (on the CPU; elsewhere decoded once into a dense weight).
    Blocks(Arc<BlockTensor>),
    /// A weight whose inputs are recorded (squared activations per column, for an importance
    /// matrix) before it is applied.
    Observed(Arc<Tap>, Box<LinearWeight>),
    /// A quantized checkpoint's packed weight (GPTQ, AWQ, compressed-tensors, bitsandbytes).
    Packed(Arc<PackedWeight>),
}

/// Where an observed linear layer accumulates, per input column, the sum of its squared
/// inputs over every row (token) it multiplies, and how many rows it saw.
#[derive(Debug, Default)]
pub struct Tap {
    acc: std::sync::Mutex<(Vec<f32>, u64)>,
}

impl Tap {
    /// The sums and the row count so far.
    pub fn take(&self) -> (Vec<f32>, u64) {
        let g = self.acc.lock().unwrap_or_else(|e| e.into_inner());
        (g.0.clone(), g.1)
    }

    fn record(&self, x: &Tensor) -> Result<()> {
        let k = *x.dims().last().unwrap_or(&0);
        let v = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let mut g = self.acc.lock().unwrap_or_else(|e| e.into_inner());
        if g.0.len() != k {
            g.0 = vec![0.0; k];
        }
        for row in v.chunks_exact(k.max(1)) {
            for (a, x) in g.0.iter_mut().zip(row) {
                *a += x * x;
            }
        }
        g.1 += (v.len() / k.max(1)) as u64;
        Ok(())
    }
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
    /// A layer whose inputs are recorded before it is applied.
    Observed {
        /// The layer.
        inner: Box<Linear>,
        /// Where its inputs are accumulated.
        tap: Arc<Tap>,
    },
    /// A block matrix candle cannot execute, decoded row by row on the CPU.
    Blocks {
        /// The blocks.
        w: Arc<BlockTensor>,
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
    /// The bias added after the product, if any.
    pub fn bias(&self) -> Option<&Tensor> {
        match self {
            Linear::Dense { b, .. }
            | Linear::Quant { b, .. }
            | Linear::Blocks { b, .. }
            | Linear::Packed { b, .. } => b.as_ref(),
            Linear::Observed { inner, .. } => inner.bias(),
        }
    }

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
            LinearWeight::Observed(tap, w) => Linear::Observed {
                inner: Box::new(Linear::from_weight(*w, b, dtype)?),
                tap,
            },
            LinearWeight::Blocks(w) if w.device().is_cpu() => Linear::Blocks { w, b },
            LinearWeight::Blocks(w) => Linear::Dense {
                w: w.to_tensor(w.device())?.to_dtype(dtype)?,
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
            Linear::Blocks { w, b } => (w.matmul_t(x)?, b),
            Linear::Observed { inner, tap } => {
                tap.record(x)?;
                return inner.forward(x, flat);
            }
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
