//! Compression methods: one module per method behind the [`Compressor`] trait.
//!
//! A variant is data (`compsafe_core::Method` plus a tensor-selection regex). Variants are
//! derived in memory from the loaded f32 reference weights: a compressor reads the reference
//! [`WeightMap`] and returns replacements for the tensors it changed, together with the
//! per-tensor error ||W - W'|| / (||W|| + 1e-8) the seed's "find vulnerable layers" ranks by.
//!
//! | method | module | stored as |
//! |---|---|---|
//! | `f16`, `bf16` | [`cast`] | dense tensor in that dtype |
//! | `int8`, `int4:g32`, `int3:g64:asym`, ... | [`rtn`] | dense f32 on the integer grid |
//! | `gguf:q4k`, `gguf:iq4xs`, ... (one type) | [`gguf`] | GGUF blocks (llama.cpp's quantizers) |
//! | `gguf:q4_k_m`, `gguf:q8_0`, ... (llama.cpp file types) | [`gguf`] | the same, per `llama-quantize`'s recipe |
//! | `prune:0.5`, `prune:0.5:layer`, `prune:2of4` | [`prune`] | dense, with zeros |
//! | `heads:3.1,3.2` | [`heads`] | dense, the heads' `o_proj` columns zeroed |
//! | `ablate:layer:0`, `ablate:mlp:1:192-256` | [`ablate`] | dense, output columns zeroed |
//! | `noise:0.05` | [`noise`] | dense f32, `w + e` (the noise control) |
//! | `gptq:w4g128[:act]` (calibrated) | [`gptq`] | dense f32 on the compressed-tensors grid |
//! | `sparsegpt:0.5`, `sparsegpt:2of4` (calibrated) | [`sparsegpt`] | dense, with zeros |
//! | `wanda:0.5`, `wanda:2of4` (calibrated) | [`wanda`] | dense, with zeros |
//! | `awq:w4g128` (calibrated) | [`awq`] | dense f32 on the grid; scaled norm weights |
//! | `sparsegpt:2of4+gptq:w4g128` (calibrated) | [`Chain`] | dense f32 on the grid, with zeros |
//! | `smoothquant:w8a8[:ALPHA]` (calibrated) | [`smoothquant`] | int8 codes and row scales; inputs int8 per token; smoothed norms |
//! | `fp8` | [`packed`] | E4M3 codes and row scales; inputs E4M3 per token |
//! | `nf4`, `fp4` (`:dq`) | [`packed`] | bitsandbytes 4-bit blocks |
//!
//! Calibrated methods run layer by layer over calibration data ([`crate::calib`]) behind
//! [`LayerCompressor`]; [`calibrated_compressor_for`] builds them.
//!
//! Which tensors a variant touches is decided by the caller (the variant's regex, else
//! [`default_selection`]); head and layer ablation ignore the selection, since they name
//! their tensors.

use std::collections::BTreeMap;

use candle_core::{DType, Tensor};
use compsafe_core::FloatType;

use crate::error::{EngineError, Result};

pub mod ablate;
pub mod awq;
pub mod boundary;
pub mod cast;
pub mod ctgrid;
pub mod gguf;
pub mod gptq;
pub mod heads;
pub mod linalg;
pub mod noise;
pub mod packed;
pub mod protect;
pub mod prune;
pub mod rtn;
pub mod smoothquant;
pub mod sparsegpt;
pub mod wanda;

mod factory;
pub use factory::{calibrated_compressor_for, compressor_for};

pub use crate::calib::{Chain, LayerCompressor};
pub use ablate::Ablate;
pub use cast::Cast;
pub use gguf::{Gguf, GgufRecipe};
pub use gptq::Gptq;
pub use heads::HeadAblation;
pub use noise::Noise;
pub use prune::{MagnitudePrune, NofMPrune};
pub use rtn::Rtn;
pub use sparsegpt::SparseGpt;
pub use wanda::Wanda;

/// Reference weights by HF tensor name (`model.layers.0.self_attn.q_proj.weight`), in f32.
pub type WeightMap = BTreeMap<String, Tensor>;

pub use crate::linear::LinearWeight;

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
    /// A remark on the stored tensor, else `None`: the storage actually used when it differs
    /// from the one asked for (a k-quant falling back to a 32-block type for rows not
    /// divisible by 256), the sparsity a pruner reached, the heads an ablation removed.
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

impl Compressed {
    /// The stat of one replaced tensor.
    pub fn stat(&self, name: &str) -> Option<&TensorStat> {
        self.stats.iter().find(|s| s.name == name)
    }

    /// Total elements of the replaced tensors.
    pub fn numel(&self) -> usize {
        self.stats.iter().map(|s| s.numel).sum()
    }

    /// Total stored bytes of the replaced tensors.
    pub fn bytes(&self) -> u64 {
        self.stats.iter().map(|s| s.bytes).sum()
    }

    /// Bits per weight over the replaced tensors (element-weighted), `None` when nothing was
    /// replaced.
    pub fn bits_per_weight(&self) -> Option<f64> {
        let n = self.numel();
        (n > 0).then(|| {
            self.stats
                .iter()
                .map(|s| s.bits_per_weight * s.numel as f64)
                .sum::<f64>()
                / n as f64
        })
    }

    /// Mean of the per-tensor relative errors, `None` when nothing was replaced.
    pub fn mean_rel_error(&self) -> Option<f64> {
        (!self.stats.is_empty())
            .then(|| self.stats.iter().map(|s| s.rel_error).sum::<f64>() / self.stats.len() as f64)
    }

    /// The stats sorted worst first (largest relative error; ties by name).
    pub fn worst_first(&self) -> Vec<&TensorStat> {
        let mut v: Vec<&TensorStat> = self.stats.iter().collect();
        v.sort_by(|a, b| {
            b.rel_error
                .total_cmp(&a.rel_error)
                .then_with(|| a.name.cmp(&b.name))
        });
        v
    }
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

/// The tensors a variant compresses when it gives no selection regex: the linear weights of
/// every decoder layer: `model.layers.N.self_attn.{q,k,v,o}_proj.weight` (or the fused
/// `qkv_proj`), `model.layers.N.mlp.{gate,up,down}_proj.weight` (or the fused `gate_up_proj`),
/// and every expert of a mixture of experts (`mlp.experts.E.{gate,up,down}_proj.weight`,
/// `block_sparse_moe.experts.E.w{1,2,3}.weight`). Embeddings, norms, biases, routers
/// (`mlp.gate`, `block_sparse_moe.gate`: select them with a regex) and `lm_head` stay as in the
/// reference (as llama.cpp and most RTN/pruning baselines leave them).
pub fn default_selection(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("model.layers.") else {
        return false;
    };
    let Some((layer, rest)) = rest.split_once('.') else {
        return false;
    };
    let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !number(layer) {
        return false;
    }
    if matches!(
        rest,
        "self_attn.q_proj.weight"
            | "self_attn.k_proj.weight"
            | "self_attn.v_proj.weight"
            | "self_attn.qkv_proj.weight"
            | "self_attn.o_proj.weight"
            | "mlp.gate_proj.weight"
            | "mlp.up_proj.weight"
            | "mlp.gate_up_proj.weight"
            | "mlp.down_proj.weight"
    ) {
        return true;
    }
    let expert = |prefix: &str, parts: &[&str]| {
        rest.strip_prefix(prefix)
            .and_then(|r| r.split_once('.'))
            .is_some_and(|(e, tail)| number(e) && parts.contains(&tail))
    };
    expert(
        "mlp.experts.",
        &["gate_proj.weight", "up_proj.weight", "down_proj.weight"],
    ) || expert(
        "block_sparse_moe.experts.",
        &["w1.weight", "w2.weight", "w3.weight"],
    )
}

/// ||W - W'||_F / (||W||_F + 1e-8), accumulated in f64.
///
/// # Panics
/// If the slices differ in length.
pub fn relative_error(reference: &[f32], compressed: &[f32]) -> f64 {
    assert_eq!(
        reference.len(),
        compressed.len(),
        "relative_error: length mismatch"
    );
    let (mut diff, mut norm) = (0f64, 0f64);
    for (&a, &b) in reference.iter().zip(compressed) {
        let (a, b) = (f64::from(a), f64::from(b));
        diff += (a - b) * (a - b);
        norm += a * a;
    }
    diff.sqrt() / (norm.sqrt() + 1e-8)
}

/// [`relative_error`] of two tensors of the same shape (any float dtype).
pub fn tensor_relative_error(reference: &Tensor, compressed: &Tensor) -> Result<f64> {
    if reference.dims() != compressed.dims() {
        return Err(EngineError::Invalid(format!(
            "relative error of tensors with different shapes {:?} and {:?}",
            reference.dims(),
            compressed.dims()
        )));
    }
    let a = reference
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let b = compressed
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    Ok(relative_error(&a, &b))
}

/// The names of the selected tensors, in name order; an error when none is selected (a
/// variant identical to the reference is almost certainly a mistyped regex).
pub(crate) fn selected_names<'a>(
    weights: &'a WeightMap,
    selected: &dyn Fn(&str) -> bool,
    method: &str,
) -> Result<Vec<&'a str>> {
    let names: Vec<&str> = weights
        .keys()
        .map(String::as_str)
        .filter(|n| selected(n))
        .collect();
    if names.is_empty() {
        return Err(EngineError::Invalid(format!(
            "{method}: the tensor selection matches none of the model's {} tensors",
            weights.len()
        )));
    }
    Ok(names)
}

/// Stores a compressed dense weight (`values`, `[rows, cols]`) and its statistics against
/// the `original` values.
#[allow(clippy::too_many_arguments)]
pub(crate) fn push_dense(
    out: &mut Compressed,
    name: String,
    original: &[f32],
    values: Vec<f32>,
    (rows, cols): (usize, usize),
    device: &candle_core::Device,
    bits_per_weight: f64,
    note: String,
) -> Result<()> {
    out.stats.push(TensorStat {
        name: name.clone(),
        rel_error: relative_error(original, &values),
        bits_per_weight,
        numel: rows * cols,
        bytes: (bits_per_weight * (rows * cols) as f64 / 8.0).ceil() as u64,
        note: Some(note),
    });
    let tensor = Tensor::from_vec(values, (rows, cols), device)?;
    out.weights.insert(name, LinearWeight::Dense(tensor));
    Ok(())
}

/// A tensor's values as f32 (row-major), rejecting NaN and infinities by tensor and index.
pub(crate) fn f32_values(name: &str, t: &Tensor) -> Result<Vec<f32>> {
    let v = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(EngineError::Invalid(format!(
            "tensor `{name}` has a non-finite weight {} at flat index {i}; it cannot be compressed",
            v[i]
        )));
    }
    Ok(v)
}

/// `(rows, cols)` of a tensor seen as a matrix whose rows run along the last dimension (the
/// input dimension of an HF `[out, in]` linear weight).
pub(crate) fn rows_cols(name: &str, t: &Tensor) -> Result<(usize, usize)> {
    match t.dims() {
        [] => Err(EngineError::Invalid(format!(
            "tensor `{name}` is a scalar; only vectors and matrices can be compressed"
        ))),
        dims => {
            let cols = dims[dims.len() - 1];
            Ok((t.elem_count() / cols.max(1), cols))
        }
    }
}

/// Runs `f` over `data` cut into contiguous chunks whose lengths are multiples of `unit`, on
/// up to `available_parallelism` threads for large tensors; true when every call returned
/// true.
pub(crate) fn for_each_chunk(
    data: &mut [f32],
    unit: usize,
    f: impl Fn(&mut [f32]) -> bool + Sync,
) -> bool {
    const MIN_PARALLEL: usize = 1 << 16;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let units = data.len() / unit.max(1);
    if threads <= 1 || data.len() < MIN_PARALLEL || units < 2 {
        return f(data);
    }
    let per = units.div_ceil(threads) * unit;
    std::thread::scope(|s| {
        let handles: Vec<_> = data
            .chunks_mut(per)
            .map(|c| {
                let f = &f;
                s.spawn(move || f(c))
            })
            .collect();
        handles
            .into_iter()
            .all(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
    })
}

/// `f` applied to every item on up to `available_parallelism` threads, results in item order.
pub(crate) fn par_map<I: Sync, T: Send>(items: &[I], f: impl Fn(&I) -> T + Sync) -> Vec<T> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len());
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let slots: Mutex<Vec<Option<T>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                let r = f(item);
                slots.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
            });
        }
    });
    slots
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|r| r.expect("every item was processed"))
        .collect()
}

/// Bits per stored element of a float dtype.
pub(crate) fn dtype_bits(dtype: DType) -> f64 {
    (dtype.size_in_bytes() * 8) as f64
}

/// The dtype a [`FloatType`] is stored in.
pub(crate) fn float_dtype(t: FloatType) -> DType {
    match t {
        FloatType::F32 => DType::F32,
        FloatType::F16 => DType::F16,
        FloatType::Bf16 => DType::BF16,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use compsafe_core::Method;

    #[test]
    fn default_selection_is_the_decoder_linears() {
        for yes in [
            "model.layers.0.self_attn.q_proj.weight",
            "model.layers.12.self_attn.k_proj.weight",
            "model.layers.3.self_attn.v_proj.weight",
            "model.layers.3.self_attn.o_proj.weight",
            "model.layers.3.mlp.gate_proj.weight",
            "model.layers.3.mlp.up_proj.weight",
            "model.layers.31.mlp.down_proj.weight",
            "model.layers.0.self_attn.qkv_proj.weight",
            "model.layers.0.mlp.gate_up_proj.weight",
            "model.layers.2.mlp.experts.7.down_proj.weight",
            "model.layers.2.block_sparse_moe.experts.0.w3.weight",
        ] {
            assert!(default_selection(yes), "{yes}");
        }
        for no in [
            "model.embed_tokens.weight",
            "lm_head.weight",
            "model.norm.weight",
            "model.layers.0.input_layernorm.weight",
            "model.layers.0.post_attention_layernorm.weight",
            "model.layers.0.self_attn.q_proj.bias",
            "model.layers.x.self_attn.q_proj.weight",
            "model.layers..self_attn.q_proj.weight",
            "model.layers.0.self_attn.q_proj.weight.extra",
            "prefix.model.layers.0.self_attn.q_proj.weight",
            "model.layers.0.mlp.gate.weight",
            "model.layers.0.block_sparse_moe.gate.weight",
            "model.layers.0.self_attn.q_norm.weight",
            "model.layers.0.mlp.experts.x.up_proj.weight",
            "model.layers.0.block_sparse_moe.experts.1.w4.weight",
        ] {
            assert!(!default_selection(no), "{no}");
        }
    }

    #[test]
    fn relative_error_matches_the_definition() {
        assert_eq!(relative_error(&[3.0, 4.0], &[3.0, 4.0]), 0.0);
        let e = relative_error(&[3.0, 4.0], &[0.0, 0.0]);
        assert!((e - 5.0 / (5.0 + 1e-8)).abs() < 1e-15, "{e}");
        let e = relative_error(&[1.0, 0.0], &[1.0, 1.0]);
        assert!((e - 1.0 / (1.0 + 1e-8)).abs() < 1e-15, "{e}");
        // An all-zero reference does not divide by zero.
        assert!((relative_error(&[0.0], &[1e-9]) - 0.1).abs() < 1e-6);
    }

    #[test]
    fn checkpoint_has_no_compressor() {
        let m = Method::Checkpoint {
            path: "student/".into(),
        };
        let e = compressor_for(&m).err().unwrap();
        assert!(e.to_string().contains("student/"), "{e}");
        for s in [
            "fp32",
            "f16",
            "int4:g32:asym",
            "gguf:q4k",
            "prune:0.5:layer",
            "prune:2of4",
        ] {
            compressor_for(&Method::parse(s, "v").unwrap()).unwrap();
        }
    }

    #[test]
    fn summary_helpers() {
        let stat = |name: &str, rel: f64, bits: f64, numel: usize| TensorStat {
            name: name.into(),
            rel_error: rel,
            bits_per_weight: bits,
            numel,
            bytes: (bits * numel as f64 / 8.0) as u64,
            note: None,
        };
        let c = Compressed {
            weights: BTreeMap::new(),
            stats: vec![stat("a", 0.1, 4.0, 100), stat("b", 0.3, 8.0, 300)],
        };
        assert_eq!(c.numel(), 400);
        assert_eq!(c.bytes(), 50 + 300);
        assert_eq!(c.bits_per_weight(), Some(7.0));
        assert!((c.mean_rel_error().unwrap() - 0.2).abs() < 1e-12);
        assert_eq!(c.worst_first()[0].name, "b");
        assert_eq!(c.stat("a").unwrap().numel, 100);
        assert_eq!(Compressed::default().bits_per_weight(), None);
    }
}
