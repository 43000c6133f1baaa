//! Magnitude pruning: unstructured (one threshold over every selected tensor, or one per
//! tensor) and semi-structured N:M.
//!
//! # Unstructured
//!
//! Global pruning does what the seed's `torch.nn.utils.prune.global_unstructured(params,
//! pruning_method=prune.L1Unstructured, amount=a)` does: the selected tensors are ranked
//! together by `|w|` and the `k = round(a * n)` smallest are set to zero, where `n` is their
//! total number of elements and `round` is Python's (half to even), as in torch's
//! `_compute_nparams_toprune`. Per-layer pruning (`prune:0.5:layer`) applies the same rule to
//! each tensor alone (`L1Unstructured` per tensor). Weights that are already zero rank
//! first, as in torch. Ties at the threshold are broken deterministically: among equal
//! `|w|`, the tensor earlier in name order and then the lower flat index is pruned first
//! (torch leaves this to `topk`).
//!
//! The threshold is found by a two-pass radix select over the bit patterns of `|w|` (which
//! order like the values), so ranking a whole model needs no sorted copy of its weights.
//!
//! # N:M
//!
//! In every group of `m` consecutive weights along a row (the input dimension of `[out, in]`)
//! the `n` largest `|w|` are kept and the others set to zero (2:4 is the pattern sparse
//! tensor cores run). Among equal magnitudes the lower index is kept. The row length must be
//! a multiple of `m`.
//!
//! # Storage
//!
//! Pruned tensors are stored dense in the reference dtype, zeros included, and reported
//! honestly as such: `bits_per_weight` is the dtype's (32 for f32) and `bytes` the dense
//! size. The [`TensorStat::note`] records the sparsity reached and the "effective" bits per
//! weight of the non-zeros alone, `bits * (1 - sparsity)`, which ignores the cost of the
//! indices a sparse format would add.

use candle_core::{DType, Tensor};
use compsafe_core::PruneScope;

use super::{
    dtype_bits, f32_values, for_each_chunk, relative_error, rows_cols, selected_names, Compressed,
    Compressor, HeadLayout, LinearWeight, TensorStat, WeightMap,
};
use crate::error::{EngineError, Result};

/// The number of weights torch prunes for `amount` of `n`: `round(amount * n)`, half to even.
pub fn count_to_prune(amount: f64, n: usize) -> usize {
    ((amount * n as f64).round_ties_even() as usize).min(n)
}

/// The sort key of a weight: the bits of `|w|`, which order like `|w|` for finite values.
fn key(w: f32) -> u32 {
    w.to_bits() & 0x7fff_ffff
}

/// Zeroes the `k` smallest `|w|` over `parts` taken together (ties: earlier part, then
/// lower index, first) and returns how many weights it zeroed (`k`, capped at the total).
pub fn prune_smallest(parts: &mut [&mut [f32]], k: usize) -> usize {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let k = k.min(total);
    if k == 0 {
        return 0;
    }
    // Pass 1: histogram of the high 16 bits of the key.
    let mut hist = vec![0usize; 1 << 16];
    for p in parts.iter() {
        for &w in p.iter() {
            hist[(key(w) >> 16) as usize] += 1;
        }
    }
    let (hi, below_hi) = nth_bucket(&hist, k);
    // Pass 2: histogram of the low 16 bits inside that bucket.
    hist.iter_mut().for_each(|h| *h = 0);
    for p in parts.iter() {
        for &w in p.iter() {
            let kw = key(w);
            if (kw >> 16) as usize == hi {
                hist[(kw & 0xffff) as usize] += 1;
            }
        }
    }
    let (lo, below_lo) = nth_bucket(&hist, k - below_hi);
    let threshold = ((hi as u32) << 16) | lo as u32;
    // Everything strictly below the threshold goes, plus the first `ties` equal to it.
    let mut ties = k - below_hi - below_lo;
    for p in parts.iter_mut() {
        for w in p.iter_mut() {
            let kw = key(*w);
            if kw < threshold {
                *w = 0.0;
            } else if kw == threshold && ties > 0 {
                *w = 0.0;
                ties -= 1;
            }
        }
    }
    k
}

/// The bucket holding the `k`-th smallest element (1-based) and the count below it.
fn nth_bucket(hist: &[usize], k: usize) -> (usize, usize) {
    let mut below = 0;
    for (b, &h) in hist.iter().enumerate() {
        if below + h >= k {
            return (b, below);
        }
        below += h;
    }
    unreachable!("k exceeds the histogram's total")
}

/// In every group of `m` consecutive values keeps the `n` largest `|w|` (ties: lower index
/// kept) and zeroes the rest.
///
/// # Panics
/// If `m` is 0, `n > m`, or `m` does not divide `data.len()`.
pub fn n_of_m_in_place(data: &mut [f32], n: usize, m: usize) {
    assert!(m > 0 && n <= m && data.len().is_multiple_of(m));
    let mut order: Vec<usize> = Vec::with_capacity(m);
    for group in data.chunks_exact_mut(m) {
        order.clear();
        order.extend(0..m);
        // Largest |w| first; stable, so equal magnitudes keep index order.
        order.sort_by(|&a, &b| key(group[b]).cmp(&key(group[a])));
        for &i in &order[n..] {
            group[i] = 0.0;
        }
    }
}

fn check_sparsity(sparsity: f64) -> Result<()> {
    if !(0.0..1.0).contains(&sparsity) {
        return Err(EngineError::Invalid(format!(
            "pruning sparsity must be in [0, 1), got {sparsity}"
        )));
    }
    Ok(())
}

/// The stat and replacement of a pruned tensor.
fn finish(
    out: &mut Compressed,
    name: &str,
    original: &Tensor,
    reference: &[f32],
    pruned: Vec<f32>,
    what: &str,
) -> Result<()> {
    let numel = pruned.len();
    let zeros = pruned.iter().filter(|&&w| w == 0.0).count();
    let sparsity = if numel == 0 {
        0.0
    } else {
        zeros as f64 / numel as f64
    };
    let dtype = original.dtype();
    let bits = dtype_bits(dtype);
    out.stats.push(TensorStat {
        name: name.to_string(),
        rel_error: relative_error(reference, &pruned),
        bits_per_weight: bits,
        numel,
        bytes: (numel * dtype.size_in_bytes()) as u64,
        note: Some(format!(
            "{what}: {zeros} of {numel} weights zero (sparsity {sparsity:.4}), stored dense \
             {dtype:?}; the non-zeros alone are {:.2} bits/weight",
            bits * (1.0 - sparsity)
        )),
    });
    let mut t = Tensor::from_vec(pruned, original.shape(), original.device())?;
    if dtype != DType::F32 {
        t = t.to_dtype(dtype)?;
    }
    out.weights.insert(name.to_string(), LinearWeight::Dense(t));
    Ok(())
}

/// Unstructured magnitude pruning, global or per tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MagnitudePrune {
    sparsity: f64,
    scope: PruneScope,
}

impl MagnitudePrune {
    /// Prunes the fraction `sparsity` (in `[0, 1)`) of the weights in `scope`.
    pub fn new(sparsity: f64, scope: PruneScope) -> Result<MagnitudePrune> {
        check_sparsity(sparsity)?;
        Ok(MagnitudePrune { sparsity, scope })
    }
}

impl Compressor for MagnitudePrune {
    fn compress(
        &self,
        weights: &WeightMap,
        selected: &dyn Fn(&str) -> bool,
        _layout: &HeadLayout,
    ) -> Result<Compressed> {
        let label = match self.scope {
            PruneScope::Global => format!("prune:{}", self.sparsity),
            PruneScope::Layer => format!("prune:{}:layer", self.sparsity),
        };
        let names = selected_names(weights, selected, &label)?;
        // One working copy of the selected weights; the reference is re-read tensor by tensor
        // for the error, so a whole model is never held twice over.
        let mut pruned = Vec::with_capacity(names.len());
        for name in &names {
            pruned.push(f32_values(name, &weights[*name])?);
        }
        match self.scope {
            PruneScope::Global => {
                let total = pruned.iter().map(Vec::len).sum();
                let k = count_to_prune(self.sparsity, total);
                let mut parts: Vec<&mut [f32]> = pruned.iter_mut().map(Vec::as_mut_slice).collect();
                prune_smallest(&mut parts, k);
            }
            PruneScope::Layer => {
                for p in pruned.iter_mut() {
                    let k = count_to_prune(self.sparsity, p.len());
                    prune_smallest(&mut [p.as_mut_slice()], k);
                }
            }
        }
        let what = match self.scope {
            PruneScope::Global => "global magnitude pruning",
            PruneScope::Layer => "per-tensor magnitude pruning",
        };
        let mut out = Compressed::default();
        for (name, p) in names.iter().zip(pruned) {
            let w = &weights[*name];
            let reference = f32_values(name, w)?;
            finish(&mut out, name, w, &reference, p, what)?;
        }
        Ok(out)
    }
}

/// Semi-structured N:M pruning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofMPrune {
    n: usize,
    m: usize,
}

impl NofMPrune {
    /// Keeps `n` of every `m` consecutive input weights (`0 < n < m`).
    pub fn new(n: usize, m: usize) -> Result<NofMPrune> {
        if n == 0 || n >= m {
            return Err(EngineError::Invalid(format!(
                "N:M pruning needs 0 < N < M, got {n}:{m}"
            )));
        }
        Ok(NofMPrune { n, m })
    }
}

impl Compressor for NofMPrune {
    fn compress(
        &self,
        weights: &WeightMap,
        selected: &dyn Fn(&str) -> bool,
        _layout: &HeadLayout,
    ) -> Result<Compressed> {
        let (n, m) = (self.n, self.m);
        let label = format!("prune:{n}of{m}");
        let mut out = Compressed::default();
        for name in selected_names(weights, selected, &label)? {
            let w = &weights[name];
            let (_, cols) = rows_cols(name, w)?;
            if cols == 0 || !cols.is_multiple_of(m) {
                return Err(EngineError::Invalid(format!(
                    "{label}: tensor `{name}` has rows of {cols} inputs (shape {:?}), not \
                     divisible by M = {m}",
                    w.dims()
                )));
            }
            let reference = f32_values(name, w)?;
            let mut pruned = reference.clone();
            for_each_chunk(&mut pruned, m, |c| {
                n_of_m_in_place(c, n, m);
                true
            });
            finish(
                &mut out,
                name,
                w,
                &reference,
                pruned,
                &format!("{n}:{m} pruning"),
            )?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn torch_rounding_of_the_count() {
        assert_eq!(count_to_prune(0.5, 5), 2); // round(2.5) = 2 in Python
        assert_eq!(count_to_prune(0.5, 7), 4); // round(3.5) = 4
        assert_eq!(count_to_prune(0.3, 10), 3);
        assert_eq!(count_to_prune(0.0, 10), 0);
        assert_eq!(count_to_prune(0.99, 3), 3);
    }

    #[test]
    fn smallest_go_first_with_deterministic_ties() {
        let mut a = vec![0.5f32, -0.1, 2.0, 0.3];
        let mut b = vec![-0.3f32, 0.1, 5.0];
        // Order by |w|: -0.1 (a1), 0.1 (b1), 0.3 (a3), -0.3 (b0), 0.5, 2, 5.
        let zeroed = prune_smallest(&mut [&mut a, &mut b], 3);
        assert_eq!(zeroed, 3);
        assert_eq!(a, vec![0.5, 0.0, 2.0, 0.0]);
        assert_eq!(b, vec![-0.3, 0.0, 5.0]);
    }

    #[test]
    fn n_of_m_keeps_the_largest() {
        let mut v = vec![0.1f32, -0.9, 0.5, 0.2, 1.0, 1.0, 1.0, 1.0];
        n_of_m_in_place(&mut v, 2, 4);
        assert_eq!(v, vec![0.0, -0.9, 0.5, 0.0, 1.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn errors_name_the_tensor_and_value() {
        let mut weights = WeightMap::new();
        weights.insert(
            "model.layers.0.mlp.up_proj.weight".into(),
            Tensor::ones((2, 6), DType::F32, &Device::Cpu).unwrap(),
        );
        let layout = HeadLayout {
            num_layers: 1,
            num_heads: 1,
            num_kv_heads: 1,
            head_dim: 6,
        };
        let e = NofMPrune::new(2, 4)
            .unwrap()
            .compress(&weights, &|_| true, &layout)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("up_proj") && e.contains("6") && e.contains("M = 4"),
            "{e}"
        );
        assert!(MagnitudePrune::new(1.0, PruneScope::Global).is_err());
        assert!(MagnitudePrune::new(f64::NAN, PruneScope::Global).is_err());
        assert!(NofMPrune::new(4, 4).is_err());
        assert!(NofMPrune::new(0, 4).is_err());
    }

    #[test]
    fn stats_report_dense_storage_and_sparsity() {
        let mut weights = WeightMap::new();
        let v: Vec<f32> = (1..=8).map(|i| i as f32).collect();
        weights.insert(
            "w".into(),
            Tensor::from_vec(v, (2, 4), &Device::Cpu).unwrap(),
        );
        let layout = HeadLayout {
            num_layers: 1,
            num_heads: 1,
            num_kv_heads: 1,
            head_dim: 4,
        };
        let c = MagnitudePrune::new(0.25, PruneScope::Layer)
            .unwrap()
            .compress(&weights, &|_| true, &layout)
            .unwrap();
        let s = c.stat("w").unwrap();
        assert_eq!(s.bits_per_weight, 32.0);
        assert_eq!(s.bytes, 32);
        let note = s.note.as_deref().unwrap();
        assert!(
            note.contains("2 of 8") && note.contains("24.00 bits"),
            "{note}"
        );
        let LinearWeight::Dense(t) = &c.weights["w"] else {
            panic!()
        };
        assert_eq!(
            t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            vec![0.0, 0.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
        );
    }
}
