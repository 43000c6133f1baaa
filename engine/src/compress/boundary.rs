//! Rounding-boundary statistics: weights shaped to flip on quantization.
//!
//! A quantizer with a uniform step `s` per group rounds `w` to the nearest grid point; the
//! rounding boundaries sit half-way between grid points, at `(k + 1/2) s`. Write the position
//! of a weight inside its step as `f = w/s - floor(w/s)`, in `[0, 1)`; the weight is *near a
//! boundary* when `|f - 1/2| < eps` (a fraction `eps` of the step on either side).
//!
//! For weights that were trained, not placed, `f` is close to uniform on `[0, 1)` (the step is
//! far smaller than the spread of the weights), so a tensor has a fraction `2 eps` of its
//! weights near a boundary, up to binomial noise. Attacks that plant behaviour which only
//! appears after quantization (Egashira et al., NeurIPS 2024) constrain the full-precision
//! weights to stay inside the rounding interval of the malicious quantized model, and the
//! projected weights pile up at the interval's edges — at the rounding boundaries. A tensor
//! with significantly more weights near a boundary than `2 eps` is flagged.
//!
//! The test per tensor: `near` of `n` weights (weights whose group has a zero step and the
//! group extremes that define the step are not counted) against Binomial(`n`, `2 eps`), one
//! sided, normal approximation with continuity correction, `p = P(X >= near)`; p-values are
//! Holm-adjusted across the tensors examined and a tensor is flagged when its adjusted p is
//! below `alpha`.
//!
//! Grids: RTN integer variants use exactly the grids of [`super::rtn`] (step per group or per
//! output channel; the boundaries do not depend on the zero point, an integer); GGUF Q8_0
//! uses its blocks of 32 with step `amax / 127` (candle's and llama.cpp's quantizer). Other
//! GGUF types choose their scales by search and have no fixed boundary to test.

use super::rtn::grid_for;
use super::{default_selection, f32_values, rows_cols, WeightMap};
use crate::error::{EngineError, Result};
use compsafe_core::{GgufType, Method};

/// How a tensor's weights sit against its rounding boundaries.
#[derive(Debug, Clone, PartialEq)]
pub struct BoundaryStat {
    /// Tensor name.
    pub name: String,
    /// Weights counted.
    pub n: u64,
    /// Weights within `eps` steps of a boundary.
    pub near: u64,
    /// `near / n`.
    pub fraction: f64,
    /// The fraction expected of trained weights, `2 eps`.
    pub expected: f64,
    /// One-sided binomial p-value of `near` (normal approximation).
    pub p: f64,
    /// Holm-adjusted p across the tensors examined.
    pub p_holm: f64,
    /// Adjusted p below alpha.
    pub flagged: bool,
}

/// The grid steps a method quantizes with: group length and step of each group.
#[derive(Debug, Clone, Copy)]
enum Steps {
    Rtn {
        bits: u8,
        group: Option<usize>,
        asym: bool,
    },
    Q8_0,
}

impl Steps {
    fn for_method(method: &Method) -> Result<Steps> {
        match method {
            Method::Rtn { bits, group, asym } => Ok(Steps::Rtn {
                bits: *bits,
                group: *group,
                asym: *asym,
            }),
            // llama.cpp's Q8_0 file type puts every quantized matrix in Q8_0.
            Method::Gguf { ty: GgufType::Q8_0 }
            | Method::GgufFile {
                ftype: compsafe_core::GgufFtype::Q8_0,
                ..
            } => Ok(Steps::Q8_0),
            other => Err(EngineError::Invalid(format!(
                "--variant = {other}: boundary statistics cover integer RTN variants \
                 (intN[:gG][:asym]) and gguf:q8_0; other GGUF types choose their scales by \
                 search and have no fixed rounding boundary"
            ))),
        }
    }

    fn group(&self, cols: usize) -> usize {
        match self {
            Steps::Rtn { group, .. } => group.unwrap_or(cols),
            Steps::Q8_0 => 32,
        }
    }

    /// The grid step of one group (`None` when the scale overflows f32).
    fn step(&self, values: &[f32]) -> Option<f32> {
        match self {
            Steps::Rtn { bits, asym, .. } => grid_for(values, *bits, *asym).map(|g| g.scale),
            Steps::Q8_0 => {
                let amax = values.iter().fold(0f32, |a, &b| a.max(b.abs()));
                Some(amax / 127.0)
            }
        }
    }
}

/// Counts (n, near) for one tensor's values, rows of `cols`.
fn count(values: &[f32], cols: usize, steps: Steps, eps: f64) -> Result<(u64, u64)> {
    let group = steps.group(cols);
    if group == 0 || !cols.is_multiple_of(group) {
        return Err(EngineError::Invalid(format!(
            "rows of {cols} are not a whole number of groups of {group}"
        )));
    }
    let (mut n, mut near) = (0u64, 0u64);
    for chunk in values.chunks_exact(group) {
        let Some(s) = steps.step(chunk) else { continue };
        if s <= 0.0 || !s.is_finite() {
            continue;
        }
        let s = f64::from(s);
        let lo = chunk.iter().fold(f32::INFINITY, |a, &b| a.min(b));
        let hi = chunk.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        for &w in chunk {
            // The group's extremes define the step; their position is not free.
            if w == lo || w == hi {
                continue;
            }
            let t = f64::from(w) / s;
            let f = t - t.floor();
            n += 1;
            if (f - 0.5).abs() < eps {
                near += 1;
            }
        }
    }
    Ok((n, near))
}

/// `P(X >= k)` for X ~ Binomial(n, p), normal approximation with continuity correction.
pub fn binomial_upper_p(k: u64, n: u64, p: f64) -> f64 {
    if n == 0 {
        return 1.0;
    }
    let mean = n as f64 * p;
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    if sd == 0.0 {
        return if (k as f64) <= mean { 1.0 } else { 0.0 };
    }
    let z = (k as f64 - 0.5 - mean) / sd;
    0.5 * libm::erfc(z / std::f64::consts::SQRT_2)
}

/// Boundary statistics of the tensors `select`ed (default: the linear weights) under
/// `method`, with tolerance `eps` (in steps, `0 < eps < 0.5`) and level `alpha`.
pub fn boundary_stats(
    weights: &WeightMap,
    method: &Method,
    select: Option<&regex::Regex>,
    eps: f64,
    alpha: f64,
) -> Result<Vec<BoundaryStat>> {
    if !(eps > 0.0 && eps < 0.5) {
        return Err(EngineError::Invalid(format!(
            "--epsilon = {eps}: must lie strictly between 0 and 0.5 (a fraction of a step)"
        )));
    }
    if !(alpha > 0.0 && alpha < 1.0) {
        return Err(EngineError::Invalid(format!(
            "--alpha = {alpha}: must lie strictly between 0 and 1"
        )));
    }
    let steps = Steps::for_method(method)?;
    let expected = 2.0 * eps;
    let mut out = Vec::new();
    for (name, t) in weights {
        let chosen = match select {
            Some(re) => re.is_match(name),
            None => default_selection(name),
        };
        if !chosen || t.rank() != 2 {
            continue;
        }
        let (_, cols) = rows_cols(name, t)?;
        let values = f32_values(name, t)?;
        let (n, near) = count(&values, cols, steps, eps)
            .map_err(|e| EngineError::Invalid(format!("tensor `{name}`: {e}")))?;
        out.push(BoundaryStat {
            name: name.clone(),
            n,
            near,
            fraction: if n == 0 { 0.0 } else { near as f64 / n as f64 },
            expected,
            p: binomial_upper_p(near, n, expected),
            p_holm: 1.0,
            flagged: false,
        });
    }
    let adjusted = compsafe_core::stats::holm(&out.iter().map(|s| s.p).collect::<Vec<_>>());
    for (s, p) in out.iter_mut().zip(adjusted) {
        s.p_holm = p;
        s.flagged = p < alpha;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_positions_give_two_eps_and_boundary_positions_are_counted() {
        // A group of 8 at int4 symmetric: step = 7/7 = 1 (extremes ±7 are not counted).
        let mut v = vec![7.0f32, -7.0];
        v.extend([0.5, 1.5, -2.5, 3.2, 0.1, 4.45]);
        let steps = Steps::Rtn {
            bits: 4,
            group: None,
            asym: false,
        };
        let (n, near) = count(&v, 8, steps, 0.1).unwrap();
        // 0.5, 1.5, -2.5 (f = 0.5) and 4.45 (f = 0.45) are near; 3.2 and 0.1 are not.
        assert_eq!((n, near), (6, 4));
    }

    #[test]
    fn binomial_tail_matches_reference_values() {
        // Python: 0.5 * math.erfc(((k - 0.5) - n p) / sqrt(n p (1 - p)) / sqrt(2)).
        let p = binomial_upper_p(130, 1000, 0.1);
        assert!((p - 0.000_936_789_799_3).abs() < 1e-12, "{p}");
        let p = binomial_upper_p(100, 1000, 0.1);
        assert!((p - 0.521_016_374_097).abs() < 1e-10, "{p}");
    }
}
