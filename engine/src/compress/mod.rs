//! Compression methods: one module per method behind the [`Compressor`] trait.
//!
//! A variant is data (`compsafe_core::Method` plus a tensor-selection regex). Variants are
//! derived in memory from the loaded f32 reference weights: a compressor reads the reference
//! [`WeightMap`] and returns replacements for the tensors it changed, together with the
//! per-tensor error ||W - W'|| / (||W|| + 1e-8) the seed's "find vulnerable layers" ranks by.

use std::collections::BTreeMap;
use std::sync::Arc;

use candle_core::quantized::QTensor;
use candle_core::Tensor;

use crate::error::Result;

/// Reference weights by HF tensor name (`model.layers.0.self_attn.q_proj.weight`), in f32.
pub type WeightMap = BTreeMap<String, Tensor>;

/// A linear layer's weight as the model executes it.
#[derive(Debug, Clone)]
pub enum LinearWeight {
    /// A dense matrix `[out, in]` (any float dtype; the model casts activations to match).
    Dense(Tensor),
    /// A GGUF block-quantized matrix executed through candle's quantized matmul.
    Quantized(Arc<QTensor>),
}

/// Shape facts a compressor may need (head ablation needs the head layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLayout {
    /// Decoder layers.
    pub num_layers: usize,
    /// Query heads per layer.
    pub num_heads: usize,
    /// Key/value heads per layer.
    pub num_kv_heads: usize,
    /// Dimension of one head.
    pub head_dim: usize,
}

/// Per-tensor outcome of a compression.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorStat {
    /// HF tensor name.
    pub name: String,
    /// ||W - W'||_F / (||W||_F + 1e-8), computed in f64.
    pub rel_error: f64,
    /// Bits per weight of the stored compressed tensor.
    pub bits_per_weight: f64,
    /// Number of elements.
    pub numel: usize,
    /// Bytes of the stored compressed tensor.
    pub bytes: u64,
    /// The storage actually used when it differs from the one asked for (e.g. a k-quant
    /// falling back to a 32-block type for rows not divisible by 256), else `None`.
    pub note: Option<String>,
}

/// What a compressor produced: replacements for the tensors it changed and their stats.
#[derive(Debug, Clone, Default)]
pub struct Compressed {
    /// Replacement weights by tensor name; tensors absent here keep the reference weight.
    pub weights: BTreeMap<String, LinearWeight>,
    /// One entry per replaced tensor.
    pub stats: Vec<TensorStat>,
}

/// A compression method.
pub trait Compressor: Send + Sync {
    /// Derives the compressed tensors from the reference weights. `selected` tells which
    /// tensors the variant's selection regex (or the default selection) admits.
    fn compress(
        &self,
        weights: &WeightMap,
        selected: &dyn Fn(&str) -> bool,
        layout: &HeadLayout,
    ) -> Result<Compressed>;
}
