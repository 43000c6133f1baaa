//! Ablation of whole layers or blocks of MLP channels: a positive control of what a unit of
//! the model carries, by its absence.
//!
//! - A layer's attention and MLP outputs go (`o_proj` and `down_proj` zeroed); the residual
//!   stream passes through the layer unchanged.
//! - A block of MLP channels `[start, end)` of a layer: its columns of `down_proj` are
//!   zeroed, so those channels' activations no longer reach the residual stream.
//!
//! The ablation names its tensors, so the variant's tensor selection is not consulted.

use std::collections::BTreeMap;

use candle_core::{DType, Tensor};
use compsafe_core::Ablation;

use super::{
    dtype_bits, f32_values, relative_error, Compressed, Compressor, HeadLayout, LinearWeight,
    TensorStat, WeightMap,
};
use crate::error::{EngineError, Result};

/// The MLP output projection of layer `layer`.
pub fn down_proj_name(layer: usize) -> String {
    format!("model.layers.{layer}.mlp.down_proj.weight")
}

/// Zeroes layers or channel blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ablate {
    target: Ablation,
}

impl Ablate {
    /// An ablation of `target`.
    pub fn new(target: Ablation) -> Ablate {
        Ablate { target }
    }

    /// The tensors the ablation changes, in name order, with the column range zeroed in each
    /// (`None`: the whole tensor).
    pub fn tensors(&self, layout: &HeadLayout) -> Result<BTreeMap<String, Vec<(usize, usize)>>> {
        let check = |l: usize| {
            if l < layout.num_layers {
                Ok(())
            } else {
                Err(EngineError::Invalid(format!(
                    "ablation of layer {l}: the model has {} layers (0..={})",
                    layout.num_layers,
                    layout.num_layers.saturating_sub(1)
                )))
            }
        };
        let mut out: BTreeMap<String, Vec<(usize, usize)>> = BTreeMap::new();
        match &self.target {
            Ablation::Layers(layers) => {
                if layers.is_empty() {
                    return Err(EngineError::Invalid("ablation of no layer".into()));
                }
                for &l in layers {
                    check(l)?;
                    out.insert(super::heads::o_proj_name(l), vec![(0, usize::MAX)]);
                    out.insert(down_proj_name(l), vec![(0, usize::MAX)]);
                }
            }
            Ablation::Channels(blocks) => {
                if blocks.is_empty() {
                    return Err(EngineError::Invalid("ablation of no channel block".into()));
                }
                for &(l, a, b) in blocks {
                    check(l)?;
                    out.entry(down_proj_name(l)).or_default().push((a, b));
                }
            }
        }
        Ok(out)
    }
}

impl Compressor for Ablate {
    fn compress(
        &self,
        weights: &WeightMap,
        _selected: &dyn Fn(&str) -> bool,
        layout: &HeadLayout,
    ) -> Result<Compressed> {
        let mut out = Compressed::default();
        for (name, ranges) in self.tensors(layout)? {
            let w = weights.get(&name).ok_or_else(|| {
                EngineError::Invalid(format!("ablation: tensor `{name}` is not in the model"))
            })?;
            let (rows, cols) = match w.dims() {
                [r, c] => (*r, *c),
                d => {
                    return Err(EngineError::Invalid(format!(
                        "ablation: tensor `{name}` has shape {d:?}, expected a matrix"
                    )))
                }
            };
            let reference = f32_values(&name, w)?;
            let mut data = reference.clone();
            let mut zeroed = 0;
            for &(a, b) in &ranges {
                if b != usize::MAX && b > cols {
                    return Err(EngineError::Invalid(format!(
                        "ablation of channels {a}..{b} of `{name}`: it has {cols} channels"
                    )));
                }
                let (a, b) = (a.min(cols), b.min(cols));
                for row in data.chunks_exact_mut(cols) {
                    row[a..b].fill(0.0);
                }
                zeroed += b - a;
            }
            let numel = rows * cols;
            let dtype = w.dtype();
            let note = if ranges == [(0, usize::MAX)] {
                "ablated: zeroed".to_string()
            } else {
                let list: Vec<String> = ranges.iter().map(|(a, b)| format!("{a}..{b}")).collect();
                format!(
                    "ablated channels {} ({zeroed} of {cols} input columns zeroed)",
                    list.join(",")
                )
            };
            out.stats.push(TensorStat {
                name: name.clone(),
                rel_error: relative_error(&reference, &data),
                bits_per_weight: dtype_bits(dtype),
                numel,
                bytes: (numel * dtype.size_in_bytes()) as u64,
                note: Some(note),
            });
            let mut t = Tensor::from_vec(data, w.shape(), w.device())?;
            if dtype != DType::F32 {
                t = t.to_dtype(dtype)?;
            }
            out.weights.insert(name, LinearWeight::Dense(t));
        }
        Ok(out)
    }
}
