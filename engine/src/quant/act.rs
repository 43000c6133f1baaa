//! Activation (and KV-cache) quantize-dequantize, as compressed-tensors simulates it and
//! vLLM executes it: the values are divided by a scale, clamped to the format's range,
//! rounded to it (integers: half to even; FP8 E4M3: nearest, ties to even) and multiplied
//! back.
//!
//! - **Dynamic per token**: one scale per row (token), `scale = amax / (range / 2)` with
//!   `amax = max |x|` of the row and `range = qmax - qmin` (255 for int8, so `amax / 127.5`;
//!   896 for FP8, so `amax / 448`); a zero scale becomes f32's epsilon.
//! - **Static per tensor**: one stored scale (`input_scale`, `k_scale`, `v_scale`) for
//!   every value, with an optional integer zero point.

use super::fp8::{round_e4m3, E4M3_MAX};

/// The number type activations are rounded to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActType {
    /// Signed 8-bit integers, `-128..=127`.
    Int8,
    /// FP8 E4M3, `-448..=448`.
    Fp8E4m3,
}

impl ActType {
    /// `(qmin, qmax)` of the type.
    pub fn range(self) -> (f32, f32) {
        match self {
            ActType::Int8 => (-128.0, 127.0),
            ActType::Fp8E4m3 => (-E4M3_MAX, E4M3_MAX),
        }
    }

    /// Rounds a value already clamped to the range onto the type's grid.
    pub fn round(self, v: f32) -> f32 {
        match self {
            ActType::Int8 => v.round_ties_even(),
            ActType::Fp8E4m3 => round_e4m3(v),
        }
    }

    /// The dynamic scale of values whose largest magnitude is `amax`.
    pub fn dynamic_scale(self, amax: f32) -> f32 {
        let (lo, hi) = self.range();
        let s = amax / ((hi - lo) / 2.0);
        if s == 0.0 {
            f32::EPSILON
        } else {
            s
        }
    }
}

/// Quantize-dequantize of one value with `scale` and zero point `zero`.
pub fn qdq(v: f32, scale: f32, zero: f32, ty: ActType) -> f32 {
    let (lo, hi) = ty.range();
    let q = ty.round((v / scale + zero).clamp(lo, hi));
    (q - zero) * scale
}

/// Quantize-dequantize in place with one static scale (and zero point) for every value.
pub fn qdq_static(x: &mut [f32], scale: f32, zero: f32, ty: ActType) {
    for v in x {
        *v = qdq(*v, scale, zero, ty);
    }
}

/// Quantize-dequantize in place with one dynamic symmetric scale per row of `cols` values.
pub fn qdq_per_token(x: &mut [f32], cols: usize, ty: ActType) {
    for row in x.chunks_mut(cols.max(1)) {
        let amax = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let scale = ty.dynamic_scale(amax);
        for v in row.iter_mut() {
            *v = qdq(*v, scale, 0.0, ty);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int8_per_token_uses_half_the_range() {
        let mut x = vec![1.0f32, -0.5, 0.25, 0.0];
        qdq_per_token(&mut x, 4, ActType::Int8);
        // scale = 1 / 127.5: 1.0 -> 127.5 clamps to 127.
        let s = 1.0f32 / 127.5;
        assert_eq!(x[0], 127.0 * s);
        assert_eq!(x[1], (-0.5f32 / s).round_ties_even() * s);
        assert_eq!(x[3], 0.0);
    }

    #[test]
    fn fp8_per_token_keeps_the_row_maximum() {
        let mut x = vec![3.0f32, -1.0, 0.1];
        qdq_per_token(&mut x, 3, ActType::Fp8E4m3);
        assert!((x[0] - 3.0).abs() < 1e-6);
        assert!((x[2] - 0.1).abs() < 0.01);
        let mut zeros = vec![0.0f32; 4];
        qdq_per_token(&mut zeros, 4, ActType::Fp8E4m3);
        assert!(zeros.iter().all(|&v| v == 0.0));
    }
}
