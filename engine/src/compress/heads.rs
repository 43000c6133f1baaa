//! Attention-head ablation: removes the contribution of chosen heads `(layer, head)`.
//!
//! A layer's attention output is `o_proj(concat(head_0, ..., head_{H-1}))`, and head `h`
//! reads only columns `h * head_dim .. (h + 1) * head_dim` of
//! `model.layers.{l}.self_attn.o_proj.weight` (`[hidden, H * head_dim]`). Zeroing those
//! columns removes exactly that head's contribution and leaves every other head, the residual
//! stream and the MLP of the layer untouched (ablating a head is not ablating its layer).
//!
//! Heads name their tensors, so the variant's tensor selection is not consulted. With
//! grouped-query attention the ablated head is a query head; its key/value head is shared and
//! stays.

use std::collections::BTreeMap;

use candle_core::{DType, Tensor};
use compsafe_core::HeadRef;

use super::{
    dtype_bits, f32_values, relative_error, Compressed, Compressor, HeadLayout, LinearWeight,
    TensorStat, WeightMap,
};
use crate::error::{EngineError, Result};

/// The output projection of layer `layer`.
pub fn o_proj_name(layer: usize) -> String {
    format!("model.layers.{layer}.self_attn.o_proj.weight")
}

/// Zeroes the `head_dim` columns of each head in `heads` in a row-major `[rows, cols]`
/// matrix.
///
/// # Panics
/// If a head's columns exceed `cols` or `cols` does not divide `data.len()`.
pub fn zero_head_columns(data: &mut [f32], cols: usize, head_dim: usize, heads: &[usize]) {
    assert!(cols > 0 && data.len().is_multiple_of(cols));
    for row in data.chunks_exact_mut(cols) {
        for &h in heads {
            row[h * head_dim..(h + 1) * head_dim].fill(0.0);
        }
    }
}

/// Ablation of a list of attention heads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadAblation {
    heads: Vec<HeadRef>,
}

impl HeadAblation {
    /// Ablates `heads` (duplicates are harmless).
    pub fn new(heads: Vec<HeadRef>) -> HeadAblation {
        HeadAblation { heads }
    }
}

impl Compressor for HeadAblation {
    fn compress(
        &self,
        weights: &WeightMap,
        _selected: &dyn Fn(&str) -> bool,
        layout: &HeadLayout,
    ) -> Result<Compressed> {
        if self.heads.is_empty() {
            return Err(EngineError::Invalid(
                "head ablation needs at least one LAYER.HEAD".into(),
            ));
        }
        let mut by_layer: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for h in &self.heads {
            if h.layer >= layout.num_layers {
                return Err(EngineError::Invalid(format!(
                    "head {}.{}: layer {} is out of range (the model has {} layers, 0..={})",
                    h.layer,
                    h.head,
                    h.layer,
                    layout.num_layers,
                    layout.num_layers.saturating_sub(1)
                )));
            }
            if h.head >= layout.num_heads {
                return Err(EngineError::Invalid(format!(
                    "head {}.{}: head {} is out of range (the model has {} attention heads per \
                     layer, 0..={})",
                    h.layer,
                    h.head,
                    h.head,
                    layout.num_heads,
                    layout.num_heads.saturating_sub(1)
                )));
            }
            by_layer.entry(h.layer).or_default().push(h.head);
        }
        let mut out = Compressed::default();
        for (layer, mut heads) in by_layer {
            heads.sort_unstable();
            heads.dedup();
            let name = o_proj_name(layer);
            let w = weights.get(&name).ok_or_else(|| {
                EngineError::Invalid(format!(
                    "head ablation of layer {layer}: tensor `{name}` is not in the model"
                ))
            })?;
            let cols = layout.num_heads * layout.head_dim;
            if w.rank() != 2 || w.dims()[1] != cols {
                return Err(EngineError::Invalid(format!(
                    "head ablation: tensor `{name}` has shape {:?}, expected [hidden, {cols}] \
                     for {} heads of dimension {}",
                    w.dims(),
                    layout.num_heads,
                    layout.head_dim
                )));
            }
            let reference = f32_values(&name, w)?;
            let mut data = reference.clone();
            zero_head_columns(&mut data, cols, layout.head_dim, &heads);
            let numel = data.len();
            let dtype = w.dtype();
            let list: Vec<String> = heads.iter().map(|h| format!("{layer}.{h}")).collect();
            out.stats.push(TensorStat {
                name: name.clone(),
                rel_error: relative_error(&reference, &data),
                bits_per_weight: dtype_bits(dtype),
                numel,
                bytes: (numel * dtype.size_in_bytes()) as u64,
                note: Some(format!(
                    "ablated heads {} ({} of {cols} input columns zeroed)",
                    list.join(","),
                    heads.len() * layout.head_dim
                )),
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

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn out_of_range_heads_name_the_counts() {
        let layout = HeadLayout {
            num_layers: 2,
            num_heads: 4,
            num_kv_heads: 2,
            head_dim: 2,
        };
        let mut weights = WeightMap::new();
        for l in 0..2 {
            weights.insert(
                o_proj_name(l),
                Tensor::ones((8, 8), DType::F32, &Device::Cpu).unwrap(),
            );
        }
        let run = |layer, head| {
            HeadAblation::new(vec![HeadRef { layer, head }])
                .compress(&weights, &|_| false, &layout)
                .map_err(|e| e.to_string())
        };
        let e = run(2, 0).unwrap_err();
        assert!(e.contains("layer 2") && e.contains("2 layers"), "{e}");
        let e = run(1, 4).unwrap_err();
        assert!(
            e.contains("head 4") && e.contains("4 attention heads"),
            "{e}"
        );
        let c = run(1, 3).unwrap();
        assert_eq!(c.weights.len(), 1);
        assert!(c
            .stat(&o_proj_name(1))
            .unwrap()
            .note
            .as_deref()
            .unwrap()
            .contains("1.3"));
    }
}
