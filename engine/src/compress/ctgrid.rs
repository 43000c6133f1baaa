//! Integer weight grids as compressed-tensors defines them (the format llm-compressor's GPTQ
//! and AWQ write, and whose conventions their algorithms quantize with).
//!
//! For `b` bits the codes run from `qmin = -2^(b-1)` to `qmax = 2^(b-1) - 1` in both modes
//! (compressed-tensors' `calculate_range`). With the range of a group widened to include
//! zero (`lo = min(min w, 0)`, `hi = max(max w, 0)`):
//!
//! * symmetric: `s = max(|lo|, |hi|) / ((qmax - qmin) / 2)` (4 bits: `absmax / 7.5`), zero
//!   point 0, so the largest positive weight lands on `7.5` and is clamped to code 7;
//! * asymmetric: `s = (hi - lo) / (qmax - qmin)`, `z = round(clamp(qmin - lo / s, qmin,
//!   qmax))`;
//!
//! a zero scale becomes f32's machine epsilon. Fake quantization is
//! `(round(clamp(w / s + z, qmin, qmax)) - z) * s`, every operation in f32 and rounding half
//! to even, exactly as `compressed_tensors.quantization.lifecycle.forward` computes it, so
//! results are bit-identical to the library's for the same scales.

/// One group's grid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CtGrid {
    /// Step between codes.
    pub scale: f32,
    /// Zero point (an integer, held as f32 as the library adds it).
    pub zero: f32,
    /// Smallest code.
    pub qmin: f32,
    /// Largest code.
    pub qmax: f32,
}

impl CtGrid {
    /// The grid of a group whose smallest and largest weights are `min` and `max`.
    pub fn from_range(min: f32, max: f32, bits: u8, symmetric: bool) -> CtGrid {
        let qmax = ((1u32 << (bits - 1)) - 1) as f32;
        let qmin = -((1u32 << (bits - 1)) as f32);
        let lo = min.min(0.0);
        let hi = max.max(0.0);
        let range = qmax - qmin;
        let (mut scale, zero) = if symmetric {
            (lo.abs().max(hi.abs()) / (range / 2.0), 0.0)
        } else {
            let s = (hi - lo) / range;
            let z = (qmin - lo / s).clamp(qmin, qmax);
            (s, z)
        };
        if scale == 0.0 {
            scale = f32::EPSILON;
        }
        // An all-zero asymmetric group divided 0 by 0; its zero point is then 0.
        let zero = if zero.is_nan() {
            0.0
        } else {
            zero.clamp(-128.0, 127.0).round_ties_even()
        };
        CtGrid {
            scale,
            zero,
            qmin,
            qmax,
        }
    }

    /// The grid of a group of weights.
    pub fn for_values(values: &[f32], bits: u8, symmetric: bool) -> CtGrid {
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        for &v in values {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        CtGrid::from_range(lo, hi, bits, symmetric)
    }

    /// The code of `w` (an integer held as f32).
    pub fn code(&self, w: f32) -> f32 {
        (w / self.scale + self.zero)
            .clamp(self.qmin, self.qmax)
            .round_ties_even()
    }

    /// `w` quantized and dequantized.
    pub fn fake(&self, w: f32) -> f32 {
        (self.code(w) - self.zero) * self.scale
    }
}

/// The grids of a `rows x cols` row-major matrix in groups of `group` consecutive columns
/// (`group == cols` for one grid per output channel), row-major `[rows][cols / group]`.
///
/// # Panics
/// If `group` does not divide `cols` or `cols` does not divide `w.len()`.
pub fn grids(w: &[f32], cols: usize, group: usize, bits: u8, symmetric: bool) -> Vec<CtGrid> {
    assert!(group > 0 && cols.is_multiple_of(group) && w.len().is_multiple_of(cols));
    w.chunks_exact(group)
        .map(|g| CtGrid::for_values(g, bits, symmetric))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_four_bit_clamps_the_top() {
        let g = CtGrid::from_range(-1.5, 0.75, 4, true);
        assert_eq!(g.scale, 1.5 / 7.5);
        assert_eq!(g.zero, 0.0);
        assert_eq!(g.code(-1.5), -8.0);
        // 0.75 / 0.2 = 3.75 -> 4.
        assert_eq!(g.code(0.75), 4.0);
        // +1.5 would be 7.5: clamped to 7.
        assert_eq!(g.code(1.5), 7.0);
        assert_eq!(g.fake(1.5), 7.0 * g.scale);
    }

    #[test]
    fn asymmetric_zero_point_and_zero_group() {
        let g = CtGrid::from_range(0.5, 2.0, 4, false);
        // lo widened to 0: s = 2 / 15, z = round(-8 - 0) = -8.
        assert_eq!(g.scale, 2.0f32 / 15.0);
        assert_eq!(g.zero, -8.0);
        assert_eq!(g.fake(0.0), 0.0);
        let z = CtGrid::from_range(0.0, 0.0, 4, false);
        assert_eq!(z.scale, f32::EPSILON);
        assert_eq!(z.fake(0.0), 0.0);
        let z = CtGrid::from_range(0.0, 0.0, 4, true);
        assert_eq!(z.scale, f32::EPSILON);
    }
}
