//! GGUF block quantization with candle's quantizer (`QTensor::quantize`), for every type
//! candle implements: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 (blocks of 32) and Q2K, Q3K, Q4K, Q5K,
//! Q6K, Q8K (super-blocks of 256).
//!
//! The result is stored as [`LinearWeight::Quantized`] and executed through candle's
//! quantized matmul (`QMatMul`); it is never dequantized for inference. The relative error is
//! computed from the dequantized tensor, and `bytes` is the size of the block storage.
//!
//! # Rows that do not fit the block size
//!
//! Blocks run along a row (the last dimension, `in_features`), so the row length must be a
//! multiple of the block size. When it is not (a 64-wide model under a 256-element k-quant),
//! the tensor falls back to another type exactly as llama.cpp's `llama-quantize` does in
//! `tensor_type_fallback` (src/llama-quant.cpp):
//!
//! | asked | fallback |
//! |---|---|
//! | Q2K, Q3K | Q4_0 |
//! | Q4K | Q5_0 |
//! | Q5K | Q5_1 |
//! | Q6K | Q8_0 |
//! | Q8K | Q8_0 (llama.cpp defines no fallback for Q8_K, which it never writes to a file; Q8_0 is the 8-bit 32-block type) |
//!
//! and when even the fallback (or an asked 32-block type) does not divide the row, the tensor
//! is kept in f16 (llama.cpp: "must use F16 due to unusual shape"), stored dense. Each
//! fallback is recorded in [`TensorStat::note`], and the stat's bits and bytes are those of
//! the storage actually used.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use compsafe_core::GgufType;

use super::{
    f32_values, par_map, relative_error, rows_cols, selected_names, Compressed, Compressor,
    HeadLayout, LinearWeight, TensorStat, WeightMap,
};
use crate::error::{EngineError, Result};

/// candle's dtype for a GGUF type.
pub fn ggml_dtype(ty: GgufType) -> GgmlDType {
    match ty {
        GgufType::Q8_0 => GgmlDType::Q8_0,
        GgufType::Q4_0 => GgmlDType::Q4_0,
        GgufType::Q4_1 => GgmlDType::Q4_1,
        GgufType::Q5_0 => GgmlDType::Q5_0,
        GgufType::Q5_1 => GgmlDType::Q5_1,
        GgufType::Q2K => GgmlDType::Q2K,
        GgufType::Q3K => GgmlDType::Q3K,
        GgufType::Q4K => GgmlDType::Q4K,
        GgufType::Q5K => GgmlDType::Q5K,
        GgufType::Q6K => GgmlDType::Q6K,
        GgufType::Q8K => GgmlDType::Q8K,
    }
}

/// The 32-block type llama.cpp falls back to for a 256-block k-quant; `None` for the
/// 32-block types themselves.
pub fn fallback(ty: GgufType) -> Option<GgufType> {
    match ty {
        GgufType::Q2K | GgufType::Q3K => Some(GgufType::Q4_0),
        GgufType::Q4K => Some(GgufType::Q5_0),
        GgufType::Q5K => Some(GgufType::Q5_1),
        GgufType::Q6K | GgufType::Q8K => Some(GgufType::Q8_0),
        GgufType::Q8_0 | GgufType::Q4_0 | GgufType::Q4_1 | GgufType::Q5_0 | GgufType::Q5_1 => None,
    }
}

/// The storage a row of `cols` values gets when `ty` is asked for: `Some(type)` (`ty` itself
/// or its fallback), or `None` for f16.
pub fn storage_for(ty: GgufType, cols: usize) -> Option<GgufType> {
    let fits = |t: GgufType| cols > 0 && cols.is_multiple_of(t.block_size());
    if fits(ty) {
        Some(ty)
    } else {
        fallback(ty).filter(|&f| fits(f))
    }
}

/// GGUF quantization of the selected tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gguf {
    ty: GgufType,
}

impl Gguf {
    /// Quantization to `ty`.
    pub fn new(ty: GgufType) -> Gguf {
        Gguf { ty }
    }

    /// Quantizes one tensor (or keeps it in f16 when no block type fits its rows).
    fn quantize_one(
        &self,
        label: &str,
        name: &str,
        w: &Tensor,
    ) -> Result<(TensorStat, LinearWeight)> {
        if w.rank() != 2 {
            return Err(EngineError::Invalid(format!(
                "{label}: tensor `{name}` has shape {:?}; GGUF quantization applies to 2-D \
                 linear weights [out, in]",
                w.dims()
            )));
        }
        let (_, cols) = rows_cols(name, w)?;
        let reference = f32_values(name, w)?;
        let numel = reference.len();
        let (weight, rel_error, bytes, note) = match storage_for(self.ty, cols) {
            Some(ty) => {
                let src = w.to_dtype(DType::F32)?;
                let q = QTensor::quantize(&src, ggml_dtype(ty))?;
                let deq = q
                    .dequantize(&Device::Cpu)?
                    .flatten_all()?
                    .to_vec1::<f32>()?;
                let note = (ty != self.ty).then(|| {
                    format!(
                        "rows of {cols} not divisible by {} ({}): stored as {} as llama.cpp \
                         does",
                        self.ty.block_size(),
                        self.ty.short_name(),
                        ty.short_name()
                    )
                });
                let bytes = q.storage_size_in_bytes() as u64;
                (
                    LinearWeight::Quantized(Arc::new(q)),
                    relative_error(&reference, &deq),
                    bytes,
                    note,
                )
            }
            None => {
                let half = w.to_dtype(DType::F16)?;
                let back = f32_values(name, &half)?;
                let note = format!(
                    "rows of {cols} not divisible by 32: kept in f16 (as llama.cpp does for \
                     unusual shapes)"
                );
                (
                    LinearWeight::Dense(half),
                    relative_error(&reference, &back),
                    numel as u64 * 2,
                    Some(note),
                )
            }
        };
        let stat = TensorStat {
            name: name.to_string(),
            rel_error,
            bits_per_weight: bytes as f64 * 8.0 / numel as f64,
            numel,
            bytes,
            note,
        };
        Ok((stat, weight))
    }
}

impl Compressor for Gguf {
    fn compress(
        &self,
        weights: &WeightMap,
        selected: &dyn Fn(&str) -> bool,
        _layout: &HeadLayout,
    ) -> Result<Compressed> {
        let label = format!("gguf:{}", self.ty.short_name());
        let names = selected_names(weights, selected, &label)?;
        // Tensors are independent: quantize them on all cores (candle's quantizer is serial).
        let results = par_map(&names, |name| {
            self.quantize_one(&label, name, &weights[*name])
        });
        let mut out = Compressed::default();
        for r in results {
            let (stat, weight) = r?;
            out.weights.insert(stat.name.clone(), weight);
            out.stats.push(stat);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> HeadLayout {
        HeadLayout {
            num_layers: 1,
            num_heads: 1,
            num_kv_heads: 1,
            head_dim: 4,
        }
    }

    fn seeded(rows: usize, cols: usize) -> Tensor {
        // A small deterministic LCG, values in [-1, 1).
        let mut x = 0x2545_f491_u64;
        let v: Vec<f32> = (0..rows * cols)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect();
        Tensor::from_vec(v, (rows, cols), &Device::Cpu).unwrap()
    }

    #[test]
    fn fallback_follows_llama_cpp() {
        assert_eq!(storage_for(GgufType::Q4K, 4096), Some(GgufType::Q4K));
        assert_eq!(storage_for(GgufType::Q2K, 64), Some(GgufType::Q4_0));
        assert_eq!(storage_for(GgufType::Q3K, 64), Some(GgufType::Q4_0));
        assert_eq!(storage_for(GgufType::Q4K, 64), Some(GgufType::Q5_0));
        assert_eq!(storage_for(GgufType::Q5K, 64), Some(GgufType::Q5_1));
        assert_eq!(storage_for(GgufType::Q6K, 64), Some(GgufType::Q8_0));
        assert_eq!(storage_for(GgufType::Q8K, 96), Some(GgufType::Q8_0));
        assert_eq!(storage_for(GgufType::Q6K, 48), None);
        assert_eq!(storage_for(GgufType::Q8_0, 48), None);
        assert_eq!(storage_for(GgufType::Q8_0, 32), Some(GgufType::Q8_0));
    }

    #[test]
    fn every_type_quantizes_and_reports_its_storage() {
        let mut weights = WeightMap::new();
        weights.insert("wide".into(), seeded(4, 512));
        weights.insert("narrow".into(), seeded(4, 64));
        weights.insert("odd".into(), seeded(4, 48));
        for ty in GgufType::ALL {
            let c = Gguf::new(ty)
                .compress(&weights, &|_| true, &layout())
                .unwrap();
            let wide = c.stat("wide").unwrap();
            let LinearWeight::Quantized(q) = &c.weights["wide"] else {
                panic!("{ty:?} must be block-quantized")
            };
            assert_eq!(q.dtype(), ggml_dtype(ty));
            assert_eq!(q.shape().dims(), &[4, 512]);
            assert_eq!(wide.bits_per_weight, ty.bits_per_weight(), "{ty:?}");
            assert_eq!(wide.bytes, (2048 / ty.block_size() * ty.type_size()) as u64);
            assert!(wide.note.is_none());
            // The error shrinks with the bits; 2-bit stays below 0.6, 8-bit below 0.01.
            assert!(
                wide.rel_error > 0.0 && wide.rel_error < 0.6,
                "{ty:?} {}",
                wide.rel_error
            );
            if ty.bits_per_weight() >= 8.0 {
                assert!(wide.rel_error < 0.01, "{ty:?} {}", wide.rel_error);
            }

            let narrow = c.stat("narrow").unwrap();
            let expect = storage_for(ty, 64).unwrap();
            let LinearWeight::Quantized(q) = &c.weights["narrow"] else {
                panic!("{ty:?} narrow must be block-quantized")
            };
            assert_eq!(q.dtype(), ggml_dtype(expect));
            assert_eq!(narrow.bits_per_weight, expect.bits_per_weight());
            assert_eq!(narrow.note.is_some(), expect != ty, "{ty:?}");
            if expect != ty {
                let note = narrow.note.as_deref().unwrap();
                assert!(note.contains(expect.short_name()), "{note}");
            }

            let odd = c.stat("odd").unwrap();
            let LinearWeight::Dense(t) = &c.weights["odd"] else {
                panic!("{ty:?} odd must stay dense f16")
            };
            assert_eq!(t.dtype(), DType::F16);
            assert_eq!(odd.bits_per_weight, 16.0);
            assert!(odd.note.as_deref().unwrap().contains("f16"));
        }
    }

    #[test]
    fn quantized_matmul_agrees_with_the_dequantized_weight() {
        let w = seeded(8, 256);
        let mut weights = WeightMap::new();
        weights.insert("w".into(), w);
        let c = Gguf::new(GgufType::Q4K)
            .compress(&weights, &|_| true, &layout())
            .unwrap();
        let LinearWeight::Quantized(q) = &c.weights["w"] else {
            panic!()
        };
        let x = seeded(3, 256);
        let mm = candle_core::quantized::QMatMul::from_arc(Arc::clone(q)).unwrap();
        let y = candle_core::Module::forward(&mm, &x).unwrap();
        let deq = q.dequantize(&Device::Cpu).unwrap();
        let y_ref = x.matmul(&deq.t().unwrap()).unwrap();
        let diff = (y - &y_ref)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let scale = y_ref
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        // The activations are quantized to Q8K inside the matmul, hence the tolerance.
        assert!(diff < 0.02 * scale, "{diff} vs {scale}");
    }

    #[test]
    fn rejects_non_matrices() {
        let mut weights = WeightMap::new();
        weights.insert(
            "norm".into(),
            Tensor::ones(64, DType::F32, &Device::Cpu).unwrap(),
        );
        let e = Gguf::new(GgufType::Q8_0)
            .compress(&weights, &|_| true, &layout())
            .unwrap_err();
        assert!(e.to_string().contains("`norm`"), "{e}");
    }
}
