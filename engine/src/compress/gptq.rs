//! GPTQ (Frantar et al., 2022): integer quantization that corrects each column's rounding
//! error with the inverse Hessian of the layer's calibration inputs, following
//! llm-compressor's `GPTQModifier` (`modifiers/gptq/gptq_quantize.py`, version 0.14):
//!
//! * the grids (scales, zero points) come from the weight *before* GPTQ runs, with
//!   compressed-tensors' min-max conventions ([`super::ctgrid`]), one per group of `g`
//!   input columns or per output channel;
//! * `H = 2 XᵀX / n` of the layer's input (n = calibration sequences); dead inputs
//!   (`H_jj = 0`) get `H_jj = 1` and zero weights; `damp · mean(diag H)` is added to the
//!   diagonal (`damp` 0.01); `Hinv` is the upper Cholesky factor of `H⁻¹` (a Hessian that is
//!   not positive definite falls back to the identity, i.e. round-to-nearest, as there);
//! * with act-order (`weight`/`static` ordering, llm-compressor's default) columns are
//!   processed by decreasing `H_jj` while each keeps the grid of its original group, so the
//!   stored format is unchanged;
//! * columns are quantized in blocks of 128: within a block each column's error
//!   `(w - q) / Hinv_jj` is subtracted from the block's later columns along row `j` of
//!   `Hinv`, then from all later columns at once (`W[:, i2:] -= Err Hinv[i1:i2, i2:]`).
//!
//! The result is stored as a dense f32 tensor on the grid (every value `(q - z) s`), like
//! [`super::rtn`]. The factorisation runs in f64 where torch uses f32, and sums are ordered
//! differently, so the weights agree with llm-compressor's up to float summation: an
//! occasional weight near a rounding boundary may round the other way.

use candle_core::{Device, Tensor};

use super::ctgrid::{grids, CtGrid};
use super::linalg::inverse_cholesky_upper;
use super::{relative_error, Compressed, LinearWeight, TensorStat, WeightMap};
use crate::calib::{InputGroup, LayerCompressor, LayerContext, LayerMatrix, Wants};
use crate::error::{EngineError, Result};

/// GPTQ settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GptqParams {
    /// Bits per weight (2, 3, 4 or 8).
    pub bits: u8,
    /// Group size along the input dimension; `None` = one grid per output channel.
    pub group: Option<usize>,
    /// Symmetric grid (no zero point).
    pub symmetric: bool,
    /// Quantize columns by decreasing Hessian diagonal (act-order, static groups).
    pub act_order: bool,
    /// Dampening, as a fraction of the mean Hessian diagonal.
    pub damp: f64,
    /// Columns per block of lazy updates.
    pub block: usize,
}

impl Default for GptqParams {
    fn default() -> Self {
        GptqParams {
            bits: 4,
            group: Some(128),
            symmetric: true,
            act_order: false,
            damp: 0.01,
            block: 128,
        }
    }
}

/// One quantized matrix.
#[derive(Debug, Clone)]
pub struct GptqOutput {
    /// The quantized weights, row-major `rows x cols`, on the grids.
    pub weights: Vec<f32>,
    /// The grids, row-major `[rows][cols / group]`.
    pub grids: Vec<CtGrid>,
    /// The Hessian was not positive definite: rounded to nearest instead.
    pub rtn_fallback: bool,
}

/// Quantizes the `rows x cols` matrix `w` with the mean Hessian `h` (`cols x cols`). With
/// `keep_zero`, weights that are zero in `w` stay zero (a pruned matrix keeps its mask).
pub fn gptq_quantize(
    w: &[f32],
    rows: usize,
    cols: usize,
    h: &[f32],
    p: &GptqParams,
    keep_zero: bool,
) -> Result<GptqOutput> {
    let group = p.group.unwrap_or(cols);
    if group == 0 || !cols.is_multiple_of(group) {
        return Err(EngineError::Invalid(format!(
            "group size {group} does not divide the input dimension {cols}"
        )));
    }
    assert_eq!(w.len(), rows * cols);
    assert_eq!(h.len(), cols * cols);
    let grid = grids(w, cols, group, p.bits, p.symmetric);
    let groups_per_row = cols / group;

    // Column order: by decreasing diagonal (stable for ties) with act-order.
    let mut perm: Vec<usize> = (0..cols).collect();
    if p.act_order {
        perm.sort_by(|&a, &b| h[b * cols + b].total_cmp(&h[a * cols + a]));
    }
    let gidx: Vec<usize> = perm.iter().map(|&c| c / group).collect();
    let mut wp = vec![0f32; rows * cols];
    let mut mask = if keep_zero {
        vec![false; rows * cols]
    } else {
        Vec::new()
    };
    for r in 0..rows {
        for (j, &c) in perm.iter().enumerate() {
            wp[r * cols + j] = w[r * cols + c];
            if keep_zero {
                mask[r * cols + j] = w[r * cols + c] == 0.0;
            }
        }
    }
    let (hinv, dead, rtn_fallback) = hinv_factor(h, cols, &perm, p.damp)?;
    for (j, _) in dead.iter().enumerate().filter(|(_, d)| **d) {
        for r in 0..rows {
            wp[r * cols + j] = 0.0;
        }
    }

    let block = p.block.max(1);
    let mut i1 = 0;
    while i1 < cols {
        let i2 = (i1 + block).min(cols);
        let count = i2 - i1;
        // Row r of `work`: the block's weights (becoming the quantized ones), then the errors.
        let mut work = vec![0f32; rows * 2 * count];
        for r in 0..rows {
            work[r * 2 * count..r * 2 * count + count]
                .copy_from_slice(&wp[r * cols + i1..r * cols + i2]);
        }
        let hinv1: Vec<f32> = (i1..i2)
            .flat_map(|i| hinv[i * cols + i1..i * cols + i2].iter().copied())
            .collect();
        par_rows(&mut work, 2 * count, |r, row| {
            let (wq, err) = row.split_at_mut(count);
            let grids = &grid[r * groups_per_row..(r + 1) * groups_per_row];
            for i in 0..count {
                let x = wq[i];
                let q = if keep_zero && mask[r * cols + i1 + i] {
                    0.0
                } else {
                    grids[gidx[i1 + i]].fake(x)
                };
                let d = hinv1[i * count + i];
                let e = (x - q) / d;
                wq[i] = q;
                err[i] = e;
                for (k, hk) in hinv1[i * count + i + 1..(i + 1) * count].iter().enumerate() {
                    wq[i + 1 + k] -= e * hk;
                }
            }
        });
        for r in 0..rows {
            wp[r * cols + i1..r * cols + i2]
                .copy_from_slice(&work[r * 2 * count..r * 2 * count + count]);
        }
        let err: Vec<f32> = work
            .chunks_exact(2 * count)
            .flat_map(|row| row[count..].iter().copied())
            .collect();
        propagate_block(&mut wp, rows, cols, &hinv, err, i1, i2)?;
        i1 = i2;
    }
    let mut out = vec![0f32; rows * cols];
    for r in 0..rows {
        for (j, &c) in perm.iter().enumerate() {
            out[r * cols + c] = wp[r * cols + j];
        }
    }
    Ok(GptqOutput {
        weights: out,
        grids: grid,
        rtn_fallback,
    })
}

/// GPTQ's and SparseGPT's inverse-Hessian factor for the columns in `perm` order: the
/// Hessian permuted, dead columns (`H_jj = 0`, returned) given `H_jj = 1`, `damp` times the
/// mean diagonal added to the diagonal, then the upper Cholesky factor of the inverse, in
/// f32; the identity (and `true`) when the Hessian is not positive definite.
pub(crate) fn hinv_factor(
    h: &[f32],
    cols: usize,
    perm: &[usize],
    damp: f64,
) -> Result<(Vec<f32>, Vec<bool>, bool)> {
    let mut hp = vec![0f64; cols * cols];
    for (i, &pi) in perm.iter().enumerate() {
        for (j, &pj) in perm.iter().enumerate() {
            hp[i * cols + j] = f64::from(h[pi * cols + pj]);
        }
    }
    let mut dead = vec![false; cols];
    for (j, d) in dead.iter_mut().enumerate() {
        if hp[j * cols + j] == 0.0 {
            hp[j * cols + j] = 1.0;
            *d = true;
        }
    }
    let mean_diag = (0..cols).map(|j| hp[j * cols + j]).sum::<f64>() / cols as f64;
    for j in 0..cols {
        hp[j * cols + j] += damp * mean_diag;
    }
    Ok(match inverse_cholesky_upper(&hp, cols)? {
        Some(u) => (u.into_iter().map(|v| v as f32).collect(), dead, false),
        None => {
            let mut eye = vec![0f32; cols * cols];
            for j in 0..cols {
                eye[j * cols + j] = 1.0;
            }
            (eye, dead, true)
        }
    })
}

/// `W[:, i2:] -= Err Hinv[i1:i2, i2:]` for the `rows x cols` row-major `w`, with the block's
/// errors `err` (`rows x (i2 - i1)`).
pub(crate) fn propagate_block(
    w: &mut [f32],
    rows: usize,
    cols: usize,
    hinv: &[f32],
    err: Vec<f32>,
    i1: usize,
    i2: usize,
) -> Result<()> {
    if i2 >= cols {
        return Ok(());
    }
    let (count, rest) = (i2 - i1, cols - i2);
    let hb: Vec<f32> = (i1..i2)
        .flat_map(|i| hinv[i * cols + i2..(i + 1) * cols].iter().copied())
        .collect();
    let e = Tensor::from_vec(err, (rows, count), &Device::Cpu)?;
    let hb = Tensor::from_vec(hb, (count, rest), &Device::Cpu)?;
    let upd = e.matmul(&hb)?.flatten_all()?.to_vec1::<f32>()?;
    for r in 0..rows {
        for (x, u) in w[r * cols + i2..(r + 1) * cols]
            .iter_mut()
            .zip(&upd[r * rest..(r + 1) * rest])
        {
            *x -= u;
        }
    }
    Ok(())
}

/// Runs `f(row_index, row)` over the rows (`row_len` values each) of `data` on up to
/// `available_parallelism` threads.
pub(crate) fn par_rows(data: &mut [f32], row_len: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let rows = data.len() / row_len.max(1);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(rows.max(1));
    if threads <= 1 || data.len() < 1 << 14 {
        for (r, row) in data.chunks_exact_mut(row_len).enumerate() {
            f(r, row);
        }
        return;
    }
    let per = rows.div_ceil(threads);
    std::thread::scope(|s| {
        for (t, chunk) in data.chunks_mut(per * row_len).enumerate() {
            let f = &f;
            s.spawn(move || {
                for (i, row) in chunk.chunks_exact_mut(row_len).enumerate() {
                    f(t * per + i, row);
                }
            });
        }
    });
}

/// Bits per weight of an integer grid format: the codes plus an f16 scale per group (and a
/// `bits`-bit zero point per group when asymmetric).
pub(crate) fn grid_bits(bits: u8, group: usize, symmetric: bool) -> f64 {
    let b = f64::from(bits);
    b + 16.0 / group as f64 + if symmetric { 0.0 } else { b / group as f64 }
}

/// GPTQ as a calibrated compressor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gptq {
    /// Settings.
    pub params: GptqParams,
    /// Keep zero weights at zero (after a pruner in a chain).
    pub keep_zero: bool,
}

impl LayerCompressor for Gptq {
    fn wants(&self) -> Wants {
        Wants {
            hessian: true,
            ..Wants::default()
        }
    }

    fn propagates(&self) -> bool {
        true
    }

    fn compress_layer(
        &self,
        ctx: &LayerContext<'_>,
        weights: &WeightMap,
        selected: &dyn Fn(&str) -> bool,
    ) -> Result<Compressed> {
        let mut out = Compressed::default();
        for LayerMatrix {
            site,
            name,
            tensor: t,
            rows,
            cols,
            values: w,
        } in ctx.matrices(weights, selected)?
        {
            let stats = ctx.stats.get(&InputGroup::of(site)).ok_or_else(|| {
                EngineError::Invalid(format!("gptq: no calibration statistics for `{name}`"))
            })?;
            let h = stats
                .hessian_mean()
                .ok_or_else(|| EngineError::Invalid(format!("gptq: no Hessian for `{name}`")))?;
            if stats.cols != cols {
                return Err(EngineError::Invalid(format!(
                    "gptq: `{name}` has {cols} input columns, its calibration input {}",
                    stats.cols
                )));
            }
            let q = gptq_quantize(&w, rows, cols, &h, &self.params, self.keep_zero)
                .map_err(|e| EngineError::Invalid(format!("gptq: tensor `{name}`: {e}")))?;
            let group = self.params.group.unwrap_or(cols);
            out.stats.push(TensorStat {
                name: name.clone(),
                rel_error: relative_error(&w, &q.weights),
                bits_per_weight: grid_bits(self.params.bits, group, self.params.symmetric),
                numel: rows * cols,
                bytes: (grid_bits(self.params.bits, group, self.params.symmetric)
                    * (rows * cols) as f64
                    / 8.0)
                    .ceil() as u64,
                note: q
                    .rtn_fallback
                    .then(|| "Hessian not positive definite: rounded to nearest".to_string()),
            });
            let tensor = Tensor::from_vec(q.weights, (rows, cols), t.device())?;
            out.weights.insert(name, LinearWeight::Dense(tensor));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_hessian_is_round_to_nearest() {
        // With H = I the error of a column is never propagated: GPTQ = RTN on the grid.
        let (rows, cols) = (3, 8);
        let w: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) / 7.0)
            .collect();
        let mut h = vec![0f32; cols * cols];
        for j in 0..cols {
            h[j * cols + j] = 1.0;
        }
        let p = GptqParams {
            group: Some(4),
            ..GptqParams::default()
        };
        let q = gptq_quantize(&w, rows, cols, &h, &p, false).unwrap();
        for r in 0..rows {
            for c in 0..cols {
                let g = q.grids[r * 2 + c / 4];
                assert_eq!(
                    q.weights[r * cols + c],
                    g.fake(w[r * cols + c]),
                    "({r},{c})"
                );
            }
        }
        assert!(!q.rtn_fallback);
    }

    #[test]
    fn correlated_inputs_lower_the_output_error() {
        // Inputs with strongly correlated columns: GPTQ's output error on them must be below
        // round-to-nearest's.
        let (rows, cols, n) = (16, 32, 256);
        let mut s = 7u64;
        let mut rnd = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) as f32 - 0.5
        };
        let w: Vec<f32> = (0..rows * cols).map(|_| rnd()).collect();
        let mut x = vec![0f32; n * cols];
        for t in 0..n {
            let base = rnd();
            for c in 0..cols {
                x[t * cols + c] = base + 0.3 * rnd();
            }
        }
        let mut h = vec![0f32; cols * cols];
        for t in 0..n {
            for i in 0..cols {
                for j in 0..cols {
                    h[i * cols + j] += 2.0 * x[t * cols + i] * x[t * cols + j] / n as f32;
                }
            }
        }
        let p = GptqParams {
            bits: 3,
            group: None,
            ..GptqParams::default()
        };
        let out_err = |wq: &[f32]| -> f64 {
            let mut e = 0f64;
            for t in 0..n {
                for r in 0..rows {
                    let mut d = 0f64;
                    for c in 0..cols {
                        d += f64::from((w[r * cols + c] - wq[r * cols + c]) * x[t * cols + c]);
                    }
                    e += d * d;
                }
            }
            e
        };
        let q = gptq_quantize(&w, rows, cols, &h, &p, false).unwrap();
        let rtn: Vec<f32> = w
            .chunks(cols)
            .flat_map(|row| {
                let g = CtGrid::for_values(row, 3, true);
                row.iter().map(move |&v| g.fake(v)).collect::<Vec<_>>()
            })
            .collect();
        let (eg, er) = (out_err(&q.weights), out_err(&rtn));
        assert!(eg < 0.7 * er, "gptq {eg} rtn {er}");
        // Every value is on its row's grid.
        for (r, row) in q.weights.chunks(cols).enumerate() {
            for &v in row {
                assert_eq!(q.grids[r].fake(v), v);
            }
        }
        // Act-order as well.
        let pa = GptqParams {
            act_order: true,
            ..p
        };
        let qa = gptq_quantize(&w, rows, cols, &h, &pa, false).unwrap();
        assert!(out_err(&qa.weights) < er);
    }

    #[test]
    fn group_must_divide_columns() {
        let e =
            gptq_quantize(&[0.0; 12], 2, 6, &[0.0; 36], &GptqParams::default(), false).unwrap_err();
        assert!(e.to_string().contains("128"), "{e}");
    }
}
