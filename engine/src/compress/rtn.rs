//! Round-to-nearest (RTN) integer quantization: 2 to 8 bits, symmetric or asymmetric, one
//! scale per output channel or per group of `g` consecutive input weights.
//!
//! The result is stored as a dense f32 tensor holding the dequantized values ("fake
//! quantization"): every stored value is exactly `(q - z) * s` for an integer code `q` of
//! the group's grid, so the model computes with precisely the numbers a packed integer
//! kernel would, without needing one.
//!
//! # Conventions
//!
//! * **Symmetric** (the default, `int4`): restricted range, `qmax = 2^(b-1) - 1`,
//!   `s = max|w| / qmax`, `q = clamp(round(w / s), -qmax, qmax)`, `w' = q s`. The code
//!   `-2^(b-1)` is left unused so that the grid is symmetric about zero and the largest
//!   weight of either sign maps exactly onto the end of the grid; this is the absmax
//!   convention of LLM.int8(), SmoothQuant and ZeroQuant and of most RTN baselines. (At 2
//!   bits it makes the grid ternary, `{-s, 0, s}`.)
//! * **Asymmetric** (`int4:asym`): `qmax = 2^b - 1`, `lo = min(min w, 0)`,
//!   `hi = max(max w, 0)`, `s = (hi - lo) / qmax`, integer zero point `z = round(-lo / s)`,
//!   `q = clamp(round(w / s) + z, 0, qmax)`, `w' = (q - z) s`. Including zero in the range
//!   (as GPTQ's quantizer does for its RTN baseline) changes nothing for the usual group that
//!   has weights of both signs, and guarantees that zero is on the grid (pruned or padded
//!   weights stay exactly zero) and that `z` fits in `b` bits.
//! * `round` is round-half-to-even, as `torch.round`.
//! * **The scale is rounded down to 16 significant bits.** With at most 8-bit codes this
//!   makes every grid point `(q - z) s` exactly representable in f32, so the stored values
//!   are exactly on the integer grid and quantizing them again reproduces them bit for bit
//!   (the grid's extremes are exact, hence so is the recomputed scale). Rounding *down*
//!   keeps the largest weight on the top code. The cost is a relative change of the scale
//!   below 2^-15, smaller than an f16 scale's own rounding.
//! * A group whose range is zero (all zeros), or so small that its scale would be subnormal,
//!   is stored as zeros with scale 0.
//!
//! Every weight ends within half a step of the original, `|w - w'| <= s/2`, except that the
//! top end of an asymmetric group may exceed that by at most `qmax * 2^-15 * s` (the
//! rounding of the scale; the zero point's rounding already uses the half step there).
//!
//! # Bits per weight
//!
//! Scales and zero points are counted as f16, as a packed format would store them:
//! `b + 16/g` symmetric and `b + 32/g` asymmetric, where `g` is the group size or, per
//! output channel, the row length (`in_features`).

use super::{
    f32_values, for_each_chunk, relative_error, rows_cols, selected_names, Compressed, Compressor,
    HeadLayout, LinearWeight, TensorStat, WeightMap,
};
use crate::error::{EngineError, Result};

/// The integer grid of one group: `w' = (q - zero) * scale` for `q` in `qmin..=qmax`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grid {
    /// Step between grid points (0 for a group stored as zeros).
    pub scale: f32,
    /// Integer zero point (0 when symmetric).
    pub zero: i32,
    /// Smallest code.
    pub qmin: i32,
    /// Largest code.
    pub qmax: i32,
}

impl Grid {
    /// The value of code `q`.
    pub fn value(&self, q: i32) -> f32 {
        (q - self.zero) as f32 * self.scale
    }

    /// The code nearest to `w` (ties to even), clamped to the grid.
    pub fn code(&self, w: f32) -> i32 {
        if self.scale == 0.0 {
            return self.zero;
        }
        let r = (f64::from(w) / f64::from(self.scale)).round_ties_even();
        // |r| is bounded by about qmax + 1 for the group's own weights; clamp in f64 first so
        // that a foreign value cannot overflow the cast.
        let q = r.clamp(-1e9, 1e9) as i32 + self.zero;
        q.clamp(self.qmin, self.qmax)
    }

    /// `w` rounded onto the grid.
    pub fn quantize(&self, w: f32) -> f32 {
        self.value(self.code(w))
    }
}

/// `(qmin, qmax)` of the codes at `bits` bits.
pub fn code_range(bits: u8, asym: bool) -> (i32, i32) {
    if asym {
        (0, (1 << bits) - 1)
    } else {
        let m = (1 << (bits - 1)) - 1;
        (-m, m)
    }
}

/// Rounds a positive finite `x` down to 16 significant bits, as an f32; 0 when the result
/// would not be a normal f32, `None` when it overflows f32.
fn scale_down16(x: f64) -> Option<f32> {
    if x.is_nan() || x <= 0.0 {
        return Some(0.0);
    }
    // f64 has 53 significant bits: clear the lowest 37 to keep 16 (truncation = round down
    // for a positive number).
    let y = f64::from_bits(x.to_bits() & !((1u64 << 37) - 1));
    if y < f64::from(f32::MIN_POSITIVE) {
        return Some(0.0);
    }
    if y > f64::from(f32::MAX) {
        return None;
    }
    Some(y as f32)
}

/// The grid of a group of weights (see the module docs); `None` if the weights are so large
/// that the scale overflows f32.
///
/// # Panics
/// If `bits` is not in `2..=8`.
pub fn grid_for(values: &[f32], bits: u8, asym: bool) -> Option<Grid> {
    assert!(
        (2..=8).contains(&bits),
        "RTN bits must be 2..=8, got {bits}"
    );
    let (qmin, qmax) = code_range(bits, asym);
    if asym {
        let lo = values.iter().fold(0f32, |a, &b| a.min(b));
        let hi = values.iter().fold(0f32, |a, &b| a.max(b));
        let scale = scale_down16((f64::from(hi) - f64::from(lo)) / f64::from(qmax))?;
        let zero = if scale == 0.0 {
            0
        } else {
            // -lo / s lies in [0, qmax (1 + 2^-15)], so z is in 0..=qmax.
            ((-f64::from(lo) / f64::from(scale)).round_ties_even() as i32).clamp(qmin, qmax)
        };
        Some(Grid {
            scale,
            zero,
            qmin,
            qmax,
        })
    } else {
        let amax = values.iter().fold(0f32, |a, &b| a.max(b.abs()));
        let scale = scale_down16(f64::from(amax) / f64::from(qmax))?;
        Some(Grid {
            scale,
            zero: 0,
            qmin,
            qmax,
        })
    }
}

/// Fake-quantizes `data` in place: rows of `cols` values, each row cut into groups of
/// `group` consecutive values with one grid each. Returns the grids in order (row-major,
/// `cols / group` per row), or `None` if a scale overflows f32.
///
/// # Panics
/// If `cols` or `group` is 0, `group` does not divide `cols`, `cols` does not divide
/// `data.len()`, or `bits` is not in `2..=8`.
pub fn fake_quantize(
    data: &mut [f32],
    cols: usize,
    group: usize,
    bits: u8,
    asym: bool,
) -> Option<Vec<Grid>> {
    assert!(cols > 0 && group > 0 && cols.is_multiple_of(group) && data.len().is_multiple_of(cols));
    let mut grids = Vec::with_capacity(data.len() / group);
    for chunk in data.chunks_exact_mut(group) {
        let grid = grid_for(chunk, bits, asym)?;
        for w in chunk.iter_mut() {
            *w = grid.quantize(*w);
        }
        grids.push(grid);
    }
    Some(grids)
}

/// Round-to-nearest integer quantization of the selected tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rtn {
    bits: u8,
    group: Option<usize>,
    asym: bool,
}

impl Rtn {
    /// `bits` in 2..=8; `group` the group size along the input dimension (`None`: one grid
    /// per output channel); `asym` for a zero point.
    pub fn new(bits: u8, group: Option<usize>, asym: bool) -> Result<Rtn> {
        if !(2..=8).contains(&bits) {
            return Err(EngineError::Invalid(format!(
                "round-to-nearest bits must be between 2 and 8, got {bits}"
            )));
        }
        if group == Some(0) {
            return Err(EngineError::Invalid(
                "round-to-nearest group size must be positive, got 0".into(),
            ));
        }
        Ok(Rtn { bits, group, asym })
    }

    /// The variant's shorthand, for messages.
    fn label(&self) -> String {
        let mut s = format!("int{}", self.bits);
        if let Some(g) = self.group {
            s += &format!(":g{g}");
        }
        if self.asym {
            s += ":asym";
        }
        s
    }

    /// Bits per weight for rows of `cols` inputs (the group overhead counted as f16).
    pub fn bits_per_weight(&self, cols: usize) -> f64 {
        let g = self.group.unwrap_or(cols) as f64;
        let overhead = if self.asym { 32.0 } else { 16.0 };
        f64::from(self.bits) + overhead / g
    }
}

impl Compressor for Rtn {
    fn compress(
        &self,
        weights: &WeightMap,
        selected: &dyn Fn(&str) -> bool,
        _layout: &HeadLayout,
    ) -> Result<Compressed> {
        let label = self.label();
        let mut out = Compressed::default();
        for name in selected_names(weights, selected, &label)? {
            let w = &weights[name];
            let (_, cols) = rows_cols(name, w)?;
            let group = self.group.unwrap_or(cols);
            if cols == 0 || !cols.is_multiple_of(group) {
                return Err(EngineError::Invalid(format!(
                    "{label}: tensor `{name}` has rows of {cols} inputs (shape {:?}), not \
                     divisible by the group size {group}",
                    w.dims()
                )));
            }
            let reference = f32_values(name, w)?;
            let mut data = reference.clone();
            let (bits, asym) = (self.bits, self.asym);
            let ok = for_each_chunk(&mut data, cols, |rows| {
                fake_quantize(rows, cols, group, bits, asym).is_some()
            });
            if !ok {
                return Err(EngineError::Invalid(format!(
                    "{label}: tensor `{name}` has weights too large for an f32 scale"
                )));
            }
            let numel = data.len();
            let groups = numel / group;
            let overhead = if self.asym { 32 } else { 16 };
            let total_bits = numel as u64 * u64::from(self.bits) + groups as u64 * overhead;
            out.stats.push(TensorStat {
                name: name.to_string(),
                rel_error: relative_error(&reference, &data),
                bits_per_weight: self.bits_per_weight(cols),
                numel,
                bytes: total_bits.div_ceil(8),
                note: None,
            });
            let t = candle_core::Tensor::from_vec(data, w.shape(), w.device())?;
            out.weights.insert(name.to_string(), LinearWeight::Dense(t));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_int4_by_hand() {
        // amax 7 -> s = 1, codes -7..=7; 2.5 ties to 2, -3.5 ties to -4.
        let mut v = vec![7.0f32, 2.5, -3.5, 0.4, -7.0, 0.6, 1.5, -0.5];
        let grids = fake_quantize(&mut v, 8, 8, 4, false).unwrap();
        assert_eq!(
            grids,
            vec![Grid {
                scale: 1.0,
                zero: 0,
                qmin: -7,
                qmax: 7
            }]
        );
        assert_eq!(v, vec![7.0, 2.0, -4.0, 0.0, -7.0, 1.0, 2.0, -0.0]);
    }

    #[test]
    fn asymmetric_int2_by_hand() {
        // lo -1, hi 2: s = 1, z = 1, grid {-1, 0, 1, 2}.
        let mut v = vec![-1.0f32, 2.0, 0.4, 1.6];
        let g = fake_quantize(&mut v, 4, 4, 2, true).unwrap();
        assert_eq!(
            (g[0].scale, g[0].zero, g[0].qmin, g[0].qmax),
            (1.0, 1, 0, 3)
        );
        assert_eq!(v, vec![-1.0, 2.0, 0.0, 2.0]);
        // An all-positive group still has zero on its grid: lo = 0 -> z = 0.
        let mut v = vec![1.0f32, 3.0];
        let g = fake_quantize(&mut v, 2, 2, 2, true).unwrap();
        assert_eq!((g[0].scale, g[0].zero), (1.0, 0));
        assert_eq!(v, vec![1.0, 3.0]);
    }

    #[test]
    fn zero_groups_stay_zero() {
        let mut v = vec![0.0f32; 8];
        for asym in [false, true] {
            let g = fake_quantize(&mut v, 8, 4, 3, asym).unwrap();
            assert!(g.iter().all(|g| g.scale == 0.0));
            assert!(v.iter().all(|&x| x == 0.0));
        }
    }

    #[test]
    fn scale_keeps_16_bits_rounded_down() {
        let x = 1.0 / 3.0;
        let s32 = scale_down16(x).unwrap();
        let s = f64::from(s32);
        assert!(s <= x && x - s < x * 2f64.powi(-15));
        // 16 significant bits: the low 8 of the f32's 23 mantissa bits are clear.
        assert_eq!(s32.to_bits() & 0xff, 0, "16 significant bits");
        assert_eq!(
            scale_down16(1.0 + 2f64.powi(-15)),
            Some(1.0 + 2f32.powi(-15))
        );
        assert_eq!(scale_down16(1.0 + 2f64.powi(-16)), Some(1.0));
        assert_eq!(scale_down16(0.0), Some(0.0));
        assert_eq!(scale_down16(1e-40), Some(0.0));
        assert_eq!(scale_down16(1e300), None);
    }

    #[test]
    fn group_must_divide_the_rows() {
        use candle_core::{Device, Tensor};
        let mut weights = WeightMap::new();
        weights.insert(
            "model.layers.1.mlp.down_proj.weight".into(),
            (Tensor::ones((4, 96), candle_core::DType::F32, &Device::Cpu).unwrap() * 7.0).unwrap(),
        );
        let layout = HeadLayout {
            num_layers: 2,
            num_heads: 1,
            num_kv_heads: 1,
            head_dim: 96,
        };
        let e = Rtn::new(4, Some(64), true)
            .unwrap()
            .compress(&weights, &|_| true, &layout)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("int4:g64:asym") && e.contains("down_proj") && e.contains("96"),
            "{e}"
        );
        let c = Rtn::new(4, Some(32), false)
            .unwrap()
            .compress(&weights, &|_| true, &layout)
            .unwrap();
        let s = &c.stats[0];
        // Rows of 7s: scale 1, code 7, no error; 4 * 96 * 4 bits + 12 f16 scales.
        assert_eq!(s.rel_error, 0.0);
        assert_eq!(s.bytes, (4 * 96 * 4 + 12 * 16) / 8);
        let e = Rtn::new(4, None, false)
            .unwrap()
            .compress(&weights, &|n| n.contains("q_proj"), &layout)
            .unwrap_err();
        assert!(e.to_string().contains("matches none"), "{e}");
    }

    #[test]
    fn bits_per_weight_counts_f16_scales() {
        assert_eq!(
            Rtn::new(4, Some(32), false).unwrap().bits_per_weight(4096),
            4.5
        );
        assert_eq!(
            Rtn::new(4, Some(32), true).unwrap().bits_per_weight(4096),
            5.0
        );
        assert_eq!(Rtn::new(8, None, false).unwrap().bits_per_weight(64), 8.25);
        assert_eq!(Rtn::new(3, None, true).unwrap().bits_per_weight(64), 3.5);
        assert!(Rtn::new(1, None, false).is_err());
        assert!(Rtn::new(9, None, false).is_err());
        assert!(Rtn::new(4, Some(0), false).is_err());
    }
}
