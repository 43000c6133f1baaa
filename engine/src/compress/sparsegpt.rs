//! SparseGPT (Frantar and Alistarh, 2023): one-shot pruning that compensates every removed
//! weight with the inverse Hessian of the layer's calibration inputs, following
//! llm-compressor's `SparseGPTModifier` (`modifiers/pruning/sparsegpt/sgpt_sparsify.py`,
//! version 0.14).
//!
//! The Hessian, dead-input handling, dampening and inverse factor are GPTQ's
//! ([`super::gptq::hinv_factor`]). Columns run in blocks of 128. Unstructured: at the start
//! of each block the weights with the smallest `w² / Hinv_jj²` over the whole block are
//! pruned (every weight at or below the value at rank `floor(numel * sparsity)` of the
//! sorted scores, so one more than the target, as there). N:M: every `m` columns, the `m - n`
//! smallest scores of each row among those columns (with the weights updated so far) are
//! pruned. Each column's removed weights `w / Hinv_jj` are then propagated like GPTQ's
//! rounding errors. Stored dense with zeros.

use super::gptq::{hinv_factor, par_rows, propagate_block};
use super::{Compressed, WeightMap};
use crate::calib::{InputGroup, LayerCompressor, LayerContext, LayerMatrix, Wants};
use crate::error::{EngineError, Result};

/// What to prune.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sparsity {
    /// A fraction of the weights of each matrix, in `[0, 1)`.
    Fraction(f64),
    /// Keep `n` of every `m` consecutive input weights.
    NofM {
        /// Kept per group.
        n: usize,
        /// Group length.
        m: usize,
    },
}

impl Sparsity {
    /// Checks the parameters.
    pub fn check(self) -> Result<()> {
        match self {
            Sparsity::Fraction(f) if !(0.0..1.0).contains(&f) => Err(EngineError::Invalid(
                format!("sparsity must be in [0, 1), got {f}"),
            )),
            Sparsity::NofM { n, m } if n == 0 || n >= m => Err(EngineError::Invalid(format!(
                "N:M pruning needs 0 < N < M, got {n}:{m}"
            ))),
            _ => Ok(()),
        }
    }

    /// A note on the sparsity reached.
    pub(crate) fn note(self, w: &[f32]) -> String {
        let zeros = w.iter().filter(|v| **v == 0.0).count();
        format!("{:.1}% zeros", 100.0 * zeros as f64 / w.len().max(1) as f64)
    }
}

/// Prunes the `rows x cols` matrix `w` with the mean Hessian `h` (`cols x cols`).
pub fn sparsegpt_prune(
    w: &[f32],
    rows: usize,
    cols: usize,
    h: &[f32],
    sparsity: Sparsity,
    damp: f64,
    block: usize,
) -> Result<Vec<f32>> {
    sparsity.check()?;
    if let Sparsity::NofM { m, .. } = sparsity {
        if !cols.is_multiple_of(m) {
            return Err(EngineError::Invalid(format!(
                "N:M group length {m} does not divide the input dimension {cols}"
            )));
        }
    }
    let perm: Vec<usize> = (0..cols).collect();
    let (hinv, dead, _fallback) = hinv_factor(h, cols, &perm, damp)?;
    let mut wp = w.to_vec();
    for (j, _) in dead.iter().enumerate().filter(|(_, d)| **d) {
        for r in 0..rows {
            wp[r * cols + j] = 0.0;
        }
    }
    let block = block.max(1);
    let mut i1 = 0;
    while i1 < cols {
        let i2 = (i1 + block).min(cols);
        let count = i2 - i1;
        let diag: Vec<f32> = (i1..i2).map(|i| hinv[i * cols + i]).collect();
        let hinv1: Vec<f32> = (i1..i2)
            .flat_map(|i| hinv[i * cols + i1..i * cols + i2].iter().copied())
            .collect();
        // Row r of `work`: the block's weights, then the errors, then the mask (1.0 = pruned).
        let mut work = vec![0f32; rows * 3 * count];
        for r in 0..rows {
            work[r * 3 * count..r * 3 * count + count]
                .copy_from_slice(&wp[r * cols + i1..r * cols + i2]);
        }
        if let Sparsity::Fraction(f) = sparsity {
            let mut scores: Vec<f32> = (0..rows * count)
                .map(|k| {
                    let (r, i) = (k / count, k % count);
                    let x = work[r * 3 * count + i];
                    (x * x) / (diag[i] * diag[i])
                })
                .collect();
            let mut sorted = scores.clone();
            sorted.sort_by(f32::total_cmp);
            let thresh = sorted[((rows * count) as f64 * f) as usize];
            for (k, s) in scores.iter_mut().enumerate() {
                let (r, i) = (k / count, k % count);
                work[r * 3 * count + 2 * count + i] = if *s <= thresh { 1.0 } else { 0.0 };
            }
        }
        par_rows(&mut work, 3 * count, |_, row| {
            let (wq, rest) = row.split_at_mut(count);
            let (err, mask) = rest.split_at_mut(count);
            for i in 0..count {
                if let Sparsity::NofM { n, m } = sparsity {
                    if i % m == 0 {
                        let end = (i + m).min(count);
                        let mut idx: Vec<usize> = (i..end).collect();
                        let score = |j: usize| (wq[j] * wq[j]) / (diag[j] * diag[j]);
                        idx.sort_by(|&a, &b| score(a).total_cmp(&score(b)));
                        for &j in idx.iter().take(m - n) {
                            mask[j] = 1.0;
                        }
                    }
                }
                let x = wq[i];
                let q = if mask[i] == 1.0 { 0.0 } else { x };
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
                .copy_from_slice(&work[r * 3 * count..r * 3 * count + count]);
        }
        let err: Vec<f32> = work
            .chunks_exact(3 * count)
            .flat_map(|row| row[count..2 * count].iter().copied())
            .collect();
        propagate_block(&mut wp, rows, cols, &hinv, err, i1, i2)?;
        i1 = i2;
    }
    Ok(wp)
}

/// SparseGPT as a calibrated compressor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SparseGpt {
    /// What to prune.
    pub sparsity: Sparsity,
    /// Dampening, as a fraction of the mean Hessian diagonal.
    pub damp: f64,
    /// Columns per block.
    pub block: usize,
}

impl LayerCompressor for SparseGpt {
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
            let h = ctx
                .stats
                .get(&InputGroup::of(site))
                .and_then(|s| s.hessian_mean())
                .ok_or_else(|| {
                    EngineError::Invalid(format!("sparsegpt: no Hessian for `{name}`"))
                })?;
            let pruned = sparsegpt_prune(&w, rows, cols, &h, self.sparsity, self.damp, self.block)
                .map_err(|e| EngineError::Invalid(format!("sparsegpt: tensor `{name}`: {e}")))?;
            let note = self.sparsity.note(&pruned);
            super::push_dense(
                &mut out,
                name,
                &w,
                pruned,
                (rows, cols),
                t.device(),
                32.0,
                note,
            )?;
        }
        Ok(out)
    }
}
