//! A matrix stored in ggml blocks of a type candle's quantized matmul does not execute (the
//! i-quants, TQ1_0, TQ2_0): kept as its blocks and multiplied by decoding one weight row at a
//! time into f32 (dequantize-then-matmul without materializing the matrix). As llama.cpp's
//! CPU backend does for these types, the activations are first quantized to the type's
//! `vec_dot_type` (Q8_0 for IQ4_NL, Q8_K for the others), so the products are llama.cpp's up
//! to the order of the float sums.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};

use super::{dequantize, GgmlType};
use crate::error::{EngineError, Result};

/// A `[rows, cols]` matrix held as ggml blocks.
#[derive(Debug, Clone)]
pub struct BlockTensor {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    data: Arc<[u8]>,
    device: Device,
}

impl BlockTensor {
    /// A matrix of `rows` rows of `cols` values in `ty`, whose blocks are `data`; `device` is
    /// where the model runs (off the CPU the matrix is decoded once into a dense tensor there).
    pub fn new(
        ty: GgmlType,
        rows: usize,
        cols: usize,
        data: Vec<u8>,
        device: &Device,
    ) -> Result<BlockTensor> {
        let row_bytes = ty.bytes_for(cols as u64).ok_or_else(|| {
            EngineError::Invalid(format!(
                "rows of {cols} values are not whole {} blocks",
                ty.name()
            ))
        })?;
        if data.len() as u64 != row_bytes * rows as u64 {
            return Err(EngineError::Invalid(format!(
                "{} bytes do not hold a {rows}x{cols} {} matrix",
                data.len(),
                ty.name()
            )));
        }
        Ok(BlockTensor {
            ty,
            rows,
            cols,
            data: data.into(),
            device: device.clone(),
        })
    }

    /// The storage type.
    pub fn ty(&self) -> GgmlType {
        self.ty
    }

    /// `(rows, cols)`.
    pub fn dims(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// The blocks.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Bytes of the blocks.
    pub fn storage_bytes(&self) -> usize {
        self.data.len()
    }

    /// The device the model using it runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    fn row_bytes(&self) -> usize {
        self.data.len() / self.rows.max(1)
    }

    /// Every value, row-major, in f32.
    pub fn dequantize(&self) -> Result<Vec<f32>> {
        dequantize(self.ty, &self.data, self.rows * self.cols)
            .map_err(|e| EngineError::Invalid(e.to_string()))
    }

    /// The dense `[rows, cols]` f32 tensor on `device`.
    pub fn to_tensor(&self, device: &Device) -> Result<Tensor> {
        Ok(Tensor::from_vec(
            self.dequantize()?,
            (self.rows, self.cols),
            device,
        )?)
    }

    /// The type llama.cpp's CPU backend quantizes this type's activations to.
    pub fn activation_type(&self) -> GgmlType {
        match self.ty {
            GgmlType::IQ4NL | GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => GgmlType::Q8_0,
            GgmlType::Q4_1 | GgmlType::Q5_1 => GgmlType::Q8_1,
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => GgmlType::F32,
            _ => GgmlType::Q8K,
        }
    }

    /// Activation rows of `k` values rounded through [`activation_type`](Self::activation_type)
    /// as llama.cpp's x86 CPU backend does: Q8_K with ggml's reference rule, Q8_0 with its
    /// vectorized one (`quantize_row_q8_0`: multiplier `127 / amax`, rounding half to even).
    fn quantize_activations(&self, mut xs: Vec<f32>, k: usize) -> Result<Vec<f32>> {
        let at = self.activation_type();
        if at == GgmlType::F32 || at == GgmlType::Q8_1 || !k.is_multiple_of(at.block_size()) {
            return Ok(xs);
        }
        if at == GgmlType::Q8_0 {
            for b in xs.chunks_exact_mut(32) {
                let amax = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let d = super::f16_round(amax / 127.0);
                let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
                for v in b.iter_mut() {
                    *v = (*v * id).round_ties_even() * d;
                }
            }
            return Ok(xs);
        }
        let q =
            super::quantize(at, &xs, k, None).map_err(|e| EngineError::Invalid(e.to_string()))?;
        dequantize(at, &q, xs.len()).map_err(|e| EngineError::Invalid(e.to_string()))
    }

    /// `x W^T` for `x` of shape `[..., cols]` on the CPU (any float dtype; computed in f32,
    /// returned in `x`'s dtype).
    pub fn matmul_t(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let k = *dims.last().unwrap_or(&0);
        if k != self.cols {
            return Err(EngineError::Invalid(format!(
                "input of {k} features for a {}x{} {} matrix",
                self.rows,
                self.cols,
                self.ty.name()
            )));
        }
        let m = x.elem_count() / k.max(1);
        let xs = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let xs = self.quantize_activations(xs, k)?;
        let mut y = vec![0.0f32; m * self.rows];
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(self.rows.div_ceil(16))
            .max(1);
        let per = self.rows.div_ceil(threads);
        let rb = self.row_bytes();
        let parts: Vec<Result<Vec<f32>>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let xs = &xs;
                    s.spawn(move || -> Result<Vec<f32>> {
                        let (r0, r1) = (t * per, ((t + 1) * per).min(self.rows));
                        let mut w = vec![0.0f32; self.cols];
                        let mut out = vec![0.0f32; m * r1.saturating_sub(r0)];
                        for r in r0..r1 {
                            super::types::dequantize_into(
                                self.ty,
                                &self.data[r * rb..(r + 1) * rb],
                                &mut w,
                            )
                            .map_err(|e| EngineError::Invalid(e.to_string()))?;
                            for i in 0..m {
                                out[i * (r1 - r0) + (r - r0)] = dot(&xs[i * k..(i + 1) * k], &w);
                            }
                        }
                        Ok(out)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(EngineError::Invalid("a matmul thread panicked".into()))
                    })
                })
                .collect()
        });
        for (t, part) in parts.into_iter().enumerate() {
            let part = part?;
            let (r0, r1) = (t * per, ((t + 1) * per).min(self.rows));
            let width = r1.saturating_sub(r0);
            for i in 0..m {
                y[i * self.rows + r0..i * self.rows + r1]
                    .copy_from_slice(&part[i * width..(i + 1) * width]);
            }
        }
        let mut out_dims = dims;
        if let Some(last) = out_dims.last_mut() {
            *last = self.rows;
        }
        Ok(Tensor::from_vec(y, out_dims, x.device())?.to_dtype(x.dtype())?)
    }
}

/// A dot product with eight partial sums (vectorizable).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for j in 0..8 {
            acc[j] += x[j] * y[j];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}
