//! Float casts: `f16` and `bf16` (and `fp32`, the identity that names the reference).
//!
//! The cast tensor is stored as [`LinearWeight::Dense`] in the target dtype, 16 bits per
//! weight. The relative error is computed after casting back to f32, i.e. it is exactly the
//! rounding error of the storage type (round to nearest even, as `torch.Tensor.half()`).

use compsafe_core::FloatType;

use super::{
    dtype_bits, f32_values, float_dtype, relative_error, selected_names, Compressed, Compressor,
    HeadLayout, LinearWeight, TensorStat, WeightMap,
};
use crate::error::Result;

/// Casts the selected tensors to another float type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cast {
    dtype: FloatType,
}

impl Cast {
    /// A cast to `dtype`; `FloatType::F32` replaces nothing (it is the reference).
    pub fn new(dtype: FloatType) -> Cast {
        Cast { dtype }
    }
}

impl Compressor for Cast {
    fn compress(
        &self,
        weights: &WeightMap,
        selected: &dyn Fn(&str) -> bool,
        _layout: &HeadLayout,
    ) -> Result<Compressed> {
        let mut out = Compressed::default();
        if self.dtype == FloatType::F32 {
            return Ok(out);
        }
        let dtype = float_dtype(self.dtype);
        for name in selected_names(weights, selected, "cast")? {
            let w = &weights[name];
            let reference = f32_values(name, w)?;
            let cast = w.to_dtype(dtype)?;
            let back = f32_values(name, &cast)?;
            let bits = dtype_bits(dtype);
            out.stats.push(TensorStat {
                name: name.to_string(),
                rel_error: relative_error(&reference, &back),
                bits_per_weight: bits,
                numel: reference.len(),
                bytes: (reference.len() * dtype.size_in_bytes()) as u64,
                note: None,
            });
            debug_assert_eq!(bits, self.dtype.bits());
            out.weights
                .insert(name.to_string(), LinearWeight::Dense(cast));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor};

    use super::*;

    fn layout() -> HeadLayout {
        HeadLayout {
            num_layers: 1,
            num_heads: 1,
            num_kv_heads: 1,
            head_dim: 4,
        }
    }

    #[test]
    fn f16_and_bf16_store_the_rounded_tensor() {
        // 1 + 2^-11 is a tie in f16 (rounds to 1) and exact in f32; 1 + 2^-8 is a tie in bf16.
        let vals = vec![1.0f32, 1.0 + 2f32.powi(-11), 3.0, 1.0 + 2f32.powi(-8)];
        let mut weights = WeightMap::new();
        weights.insert(
            "w".into(),
            Tensor::from_vec(vals.clone(), (2, 2), &Device::Cpu).unwrap(),
        );
        weights.insert(
            "other".into(),
            Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap(),
        );
        for (ty, dtype, expect) in [
            (
                FloatType::F16,
                DType::F16,
                vec![1.0f32, 1.0, 3.0, 1.0 + 2f32.powi(-8)],
            ),
            (FloatType::Bf16, DType::BF16, vec![1.0f32, 1.0, 3.0, 1.0]),
        ] {
            let c = Cast::new(ty)
                .compress(&weights, &|n| n == "w", &layout())
                .unwrap();
            assert_eq!(c.weights.len(), 1);
            let LinearWeight::Dense(t) = &c.weights["w"] else {
                panic!("cast must be dense")
            };
            assert_eq!(t.dtype(), dtype);
            let got = t.to_dtype(DType::F32).unwrap().flatten_all().unwrap();
            assert_eq!(got.to_vec1::<f32>().unwrap(), expect);
            let s = c.stat("w").unwrap();
            assert_eq!(s.bits_per_weight, 16.0);
            assert_eq!(s.bytes, 8);
            assert_eq!(s.numel, 4);
            assert!((s.rel_error - relative_error(&vals, &expect)).abs() < 1e-15);
            assert!(s.rel_error > 0.0);
        }
    }

    #[test]
    fn fp32_is_the_identity_and_empty_selection_is_an_error() {
        let mut weights = WeightMap::new();
        weights.insert(
            "w".into(),
            Tensor::ones((2, 2), DType::F32, &Device::Cpu).unwrap(),
        );
        let c = Cast::new(FloatType::F32)
            .compress(&weights, &|_| true, &layout())
            .unwrap();
        assert!(c.weights.is_empty() && c.stats.is_empty());
        let e = Cast::new(FloatType::F16)
            .compress(&weights, &|_| false, &layout())
            .unwrap_err();
        assert!(e.to_string().contains("matches none"), "{e}");
    }
}
