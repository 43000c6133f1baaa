//! Integer weight grids as the quantizers of the checkpoint formats choose them by
//! round-to-nearest (RTN), per group of consecutive input weights of one output row. These
//! are the grids GPTQ and AWQ start from (GPTQ then moves codes to compensate error, AWQ
//! scales channels first), so re-quantizing a source with them gives the error an honest
//! calibrated file should not exceed by much.
//!
//! `round` is half to even, as `torch.round`.

/// Whose RTN convention a grid follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Convention {
    /// GPTQ's quantizer (AutoGPTQ, GPTQModel): unsigned codes `0..=2^b-1`; the range is
    /// widened to include 0; symmetric grids take `max(|min|, max)` on both sides with zero
    /// point `2^(b-1)`, asymmetric ones `z = round(-min / s)`; `s = (max - min) / (2^b - 1)`.
    Gptq {
        /// Symmetric grid.
        sym: bool,
    },
    /// AutoAWQ's `pseudo_quantize_tensor` with zero point: `s = max(max - min, 1e-5) /
    /// (2^b - 1)`, `z = clamp(-round(min / s), 0, 2^b - 1)`.
    Awq,
    /// compressed-tensors' min-max observer: signed codes `-2^(b-1)..=2^(b-1)-1`; symmetric
    /// `s = max|w| / ((2^b - 1) / 2)`, asymmetric `s = (max - min) / (2^b - 1)` with zero
    /// point `clamp(round(qmin - min / s))`; both with the range widened to include 0.
    CompressedTensors {
        /// Symmetric grid.
        sym: bool,
    },
}

/// One group's grid: value of code `q` is `(q - zero) * scale`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IntGrid {
    /// Step.
    pub scale: f32,
    /// Zero point (a code).
    pub zero: f32,
    /// Smallest code.
    pub qmin: f32,
    /// Largest code.
    pub qmax: f32,
}

impl IntGrid {
    /// The grid `convention` chooses for `values` at `bits` bits.
    pub fn fit(values: &[f32], bits: u32, convention: Convention) -> IntGrid {
        let lo = values.iter().fold(f32::INFINITY, |m, &v| m.min(v));
        let hi = values.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let levels = ((1u64 << bits) - 1) as f32;
        match convention {
            Convention::Gptq { sym } => {
                let (mut lo, mut hi) = (lo.min(0.0), hi.max(0.0));
                if sym {
                    hi = hi.max(lo.abs());
                    if lo < 0.0 {
                        lo = -hi;
                    }
                }
                if lo == 0.0 && hi == 0.0 {
                    lo = -1.0;
                    hi = 1.0;
                }
                let scale = (hi - lo) / levels;
                let zero = if sym {
                    (levels + 1.0) / 2.0
                } else {
                    (-lo / scale).round_ties_even()
                };
                IntGrid {
                    scale,
                    zero,
                    qmin: 0.0,
                    qmax: levels,
                }
            }
            Convention::Awq => {
                let scale = (hi - lo).max(1e-5) / levels;
                let zero = (-(lo / scale).round_ties_even()).clamp(0.0, levels);
                IntGrid {
                    scale,
                    zero,
                    qmin: 0.0,
                    qmax: levels,
                }
            }
            Convention::CompressedTensors { sym } => {
                let (lo, hi) = (lo.min(0.0), hi.max(0.0));
                let qmin = -((1u64 << (bits - 1)) as f32);
                let qmax = -qmin - 1.0;
                let (scale, zero) = if sym {
                    (lo.abs().max(hi) / (levels / 2.0), 0.0)
                } else {
                    let s = (hi - lo) / levels;
                    let s = if s == 0.0 { f32::EPSILON } else { s };
                    (s, (qmin - lo / s).clamp(qmin, qmax).round_ties_even())
                };
                let scale = if scale == 0.0 { f32::EPSILON } else { scale };
                IntGrid {
                    scale,
                    zero,
                    qmin,
                    qmax,
                }
            }
        }
    }

    /// The code nearest to `v`.
    pub fn code(&self, v: f32) -> f32 {
        ((v / self.scale).round_ties_even() + self.zero).clamp(self.qmin, self.qmax)
    }

    /// `v` rounded onto the grid.
    pub fn qdq(&self, v: f32) -> f32 {
        (self.code(v) - self.zero) * self.scale
    }
}

/// RTN quantize-dequantize of a row-major `[rows, cols]` matrix in groups of `group`
/// consecutive columns (`None`: the whole row).
pub fn rtn_matrix(
    w: &[f32],
    cols: usize,
    group: Option<usize>,
    bits: u32,
    convention: Convention,
) -> Vec<f32> {
    let g = group.unwrap_or(cols).clamp(1, cols.max(1));
    let mut out = Vec::with_capacity(w.len());
    for row in w.chunks(cols.max(1)) {
        for chunk in row.chunks(g) {
            let grid = IntGrid::fit(chunk, bits, convention);
            out.extend(chunk.iter().map(|&v| grid.qdq(v)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gptq_symmetric_grid_centres_its_zero_point() {
        let g = IntGrid::fit(&[-1.0, 0.5, 0.75], 4, Convention::Gptq { sym: true });
        assert_eq!(g.zero, 8.0);
        assert_eq!(g.scale, 2.0 / 15.0);
        assert_eq!(g.qdq(0.0), 0.0);
    }

    #[test]
    fn compressed_tensors_symmetric_grid_is_signed() {
        let g = IntGrid::fit(&[-1.5, 0.5], 4, Convention::CompressedTensors { sym: true });
        assert_eq!(g.scale, 1.5 / 7.5);
        assert_eq!(g.code(-1.5), -8.0);
        assert_eq!(g.code(1.5), 7.0);
    }

    #[test]
    fn awq_grid_covers_min_and_max() {
        let g = IntGrid::fit(&[-0.3, 1.2], 4, Convention::Awq);
        assert!((g.qdq(1.2) - 1.2).abs() <= g.scale / 2.0 + 1e-6);
        assert!((g.qdq(-0.3) + 0.3).abs() <= g.scale / 2.0 + 1e-6);
        // A group of one sign keeps its zero point at the end of the range and clips.
        let g = IntGrid::fit(&[0.2, 1.7], 4, Convention::Awq);
        assert_eq!(g.zero, 0.0);
        assert_eq!(g.qdq(1.7), 15.0 * g.scale);
    }
}
