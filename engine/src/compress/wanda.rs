//! Wanda (Sun et al., 2023): pruning by weight magnitude times input-activation norm,
//! following llm-compressor's `WandaPruningModifier` (`modifiers/pruning/wanda`, version
//! 0.14): the score of `W_ij` is `|W_ij| * sqrt(S_j)` with `S_j` the mean over calibration
//! sequences of `Σ_tokens x_j²`; unstructured pruning removes the `floor(cols * sparsity)`
//! lowest scores of each output row (stable order for ties), N:M pruning the `m - n` lowest
//! of every `m` consecutive inputs of a row. Kept weights are unchanged; stored dense with
//! zeros.

use super::sparsegpt::Sparsity;
use super::{Compressed, WeightMap};
use crate::calib::{InputGroup, LayerCompressor, LayerContext, LayerMatrix, Wants};
use crate::error::{EngineError, Result};

/// Prunes the `rows x cols` matrix `w` given the per-input scalars `s` (`Σ x² / sequences`).
pub fn wanda_prune(
    w: &[f32],
    rows: usize,
    cols: usize,
    s: &[f32],
    sp: Sparsity,
) -> Result<Vec<f32>> {
    sp.check()?;
    if s.len() != cols {
        return Err(EngineError::Invalid(format!(
            "wanda: {} input statistics for {cols} columns",
            s.len()
        )));
    }
    let sq: Vec<f32> = s.iter().map(|v| v.sqrt()).collect();
    let mut out = w.to_vec();
    for r in 0..rows {
        let row = &mut out[r * cols..(r + 1) * cols];
        let metric: Vec<f32> = row.iter().zip(&sq).map(|(x, q)| x.abs() * q).collect();
        match sp {
            Sparsity::Fraction(f) => {
                let mut idx: Vec<usize> = (0..cols).collect();
                idx.sort_by(|&a, &b| metric[a].total_cmp(&metric[b]));
                for &j in idx.iter().take((cols as f64 * f) as usize) {
                    row[j] = 0.0;
                }
            }
            Sparsity::NofM { n, m } => {
                if !cols.is_multiple_of(m) {
                    return Err(EngineError::Invalid(format!(
                        "N:M group length {m} does not divide the input dimension {cols}"
                    )));
                }
                for g in (0..cols).step_by(m) {
                    let mut idx: Vec<usize> = (g..g + m).collect();
                    idx.sort_by(|&a, &b| metric[a].total_cmp(&metric[b]));
                    for &j in idx.iter().take(m - n) {
                        row[j] = 0.0;
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Wanda as a calibrated compressor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Wanda {
    /// What to prune.
    pub sparsity: Sparsity,
}

impl LayerCompressor for Wanda {
    fn wants(&self) -> Wants {
        Wants {
            sq_sum: true,
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
            let st = ctx
                .stats
                .get(&InputGroup::of(site))
                .filter(|s| s.sq_sum.is_some())
                .ok_or_else(|| {
                    EngineError::Invalid(format!("wanda: no input norms for `{name}`"))
                })?;
            let n = st.sequences.max(1) as f64;
            let s: Vec<f32> = st.sq_sum.iter().flatten().map(|v| (v / n) as f32).collect();
            let pruned = wanda_prune(&w, rows, cols, &s, self.sparsity)
                .map_err(|e| EngineError::Invalid(format!("wanda: tensor `{name}`: {e}")))?;
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
