//! Deriving a runnable variant from the loaded reference: apply the method to the selected
//! tensors (or load another checkpoint) and account for its size and weight error.

use candle_core::Device;
use compsafe_core::{Method, Variant};
use regex::Regex;

use crate::calib::{calibrate, CalibTokens};
use crate::compress::{
    calibrated_compressor_for, compressor_for, default_selection, Compressed, HeadLayout,
    TensorStat,
};
use crate::error::{EngineError, Result};
use crate::loader::Checkpoint;
use crate::model::Model;

/// A variant ready to evaluate, with its size and error accounting.
#[derive(Debug, Clone)]
pub struct DerivedVariant {
    /// The variant description it came from.
    pub variant: Variant,
    /// The model to run.
    pub model: Model,
    /// Per-tensor stats of what was replaced (empty for the reference and for checkpoints).
    pub compressed_stats: Vec<TensorStat>,
    /// Bits per weight over every weight of the model (stored size / parameter count).
    pub bits_per_weight: f64,
    /// Stored bytes of every weight of the model.
    pub bytes: u64,
    /// The quantized checkpoint format a checkpoint variant (or the reference) is stored in:
    /// what it is and how it is executed.
    pub format: Option<crate::formats::FormatInfo>,
}

impl DerivedVariant {
    /// The report's `kind`: the checkpoint format when the variant is a quantized
    /// checkpoint, else the method's kind.
    pub fn report_kind(&self) -> String {
        match (&self.variant.method, &self.format) {
            (Method::Checkpoint { .. }, Some(f)) => f.kind.clone(),
            _ => self.variant.method.kind().to_string(),
        }
    }

    /// The report's `method`: for a quantized checkpoint its format's method and execution
    /// (`gptq:w4g128:act, 14 layers kept packed (4.27 bits/weight), ...`), else the method.
    pub fn report_method(&self) -> String {
        match (&self.variant.method, &self.format) {
            (Method::Checkpoint { path }, Some(f)) => {
                format!("{} ({}; {})", f.method, path.display(), f.execution())
            }
            _ => self.variant.method.to_string(),
        }
    }

    /// Mean relative error over the replaced tensors, when any were replaced.
    pub fn mean_rel_error(&self) -> Option<f64> {
        (!self.compressed_stats.is_empty()).then(|| {
            self.compressed_stats
                .iter()
                .map(|s| s.rel_error)
                .sum::<f64>()
                / self.compressed_stats.len() as f64
        })
    }

    /// Replaced tensors, worst relative error first.
    pub fn worst_first(&self) -> Vec<&TensorStat> {
        let mut v: Vec<&TensorStat> = self.compressed_stats.iter().collect();
        v.sort_by(|a, b| {
            b.rel_error
                .total_cmp(&a.rel_error)
                .then_with(|| a.name.cmp(&b.name))
        });
        v
    }
}

/// The head layout of a checkpoint.
pub fn head_layout(ckpt: &Checkpoint) -> HeadLayout {
    let c = &ckpt.config;
    HeadLayout {
        num_layers: c.num_layers,
        num_heads: c.num_heads,
        num_kv_heads: c.num_kv_heads,
        head_dim: c.head_dim,
    }
}

/// Compresses the reference's selected tensors with the variant's method.
pub fn compress(reference: &Checkpoint, variant: &Variant) -> Result<Compressed> {
    compress_with(reference, variant, None)
}

/// [`compress`] for any method: calibrated methods (GPTQ, SparseGPT, Wanda, ...) run over
/// `calib`'s token sequences, `batch` at a time, and fail without them.
pub fn compress_with(
    reference: &Checkpoint,
    variant: &Variant,
    calib: Option<(&CalibTokens, usize)>,
) -> Result<Compressed> {
    // A KV-cache modifier changes no weight: the weights are its base method's.
    if let Method::Kv { base, .. } = &variant.method {
        let base = Variant {
            method: (**base).clone(),
            ..variant.clone()
        };
        return compress_with(reference, &base, calib);
    }
    let regex = match &variant.select {
        Some(r) => Some(Regex::new(r).map_err(|e| {
            EngineError::Invalid(format!(
                "variant `{}`: field `select` = {r:?}: {e}",
                variant.name
            ))
        })?),
        None => None,
    };
    // A llama.cpp file type covers the whole model (token embedding and output included).
    let whole_model = matches!(variant.method, Method::GgufFile { .. });
    let selected = |name: &str| match &regex {
        Some(re) => re.is_match(name),
        None => whole_model || default_selection(name),
    };
    if let Some(re) = &regex {
        if !reference.weights.keys().any(|n| re.is_match(n)) {
            return Err(EngineError::Invalid(format!(
                "variant `{}`: field `select` = {:?} matches no tensor of the model",
                variant.name,
                re.as_str()
            )));
        }
    }
    if matches!(
        variant.method,
        Method::Cast {
            dtype: compsafe_core::FloatType::F32
        }
    ) {
        return Ok(Compressed::default());
    }
    if let Method::GgufFile {
        ftype,
        pure,
        imatrix,
    } = &variant.method
    {
        if !(reference.quantized.is_empty() && reference.blocks.is_empty()) {
            return Err(EngineError::Invalid(format!(
                "variant `{}`: the reference is already block-quantized; llama.cpp's file types \
                 are derived from an f32/f16/bf16 reference (as llama-quantize refuses to \
                 requantize)",
                variant.name
            )));
        }
        if let Some(compsafe_core::ImatrixSource::Suite(suite)) = imatrix {
            let im = crate::ggml::imatrix_compute::of_checkpoint(reference, suite, 512).map_err(
                |e| {
                    EngineError::Invalid(format!(
                        "variant `{}`: imatrix={suite}: {e}",
                        variant.name
                    ))
                },
            )?;
            let recipe =
                crate::compress::GgufRecipe::new(*ftype, *pure, Some(std::sync::Arc::new(im)));
            return crate::compress::Compressor::compress(
                &recipe,
                &reference.weights,
                &selected,
                &head_layout(reference),
            );
        }
    }
    let layout = head_layout(reference);
    let mut compressed = if variant.method.needs_calibration() {
        let Some((tokens, batch)) = calib else {
            return Err(EngineError::Invalid(format!(
                "variant `{}`: `{}` needs calibration data",
                variant.name, variant.method
            )));
        };
        let compressor = calibrated_compressor_for(&variant.method)?;
        calibrate(reference, tokens, batch, compressor.as_ref(), &selected)
            .map_err(|e| EngineError::Invalid(format!("variant `{}`: {e}", variant.name)))?
    } else {
        match &variant.method {
            // An ablation names its tensors; those a GGUF file holds block-quantized are
            // dequantized for it (an ablated matrix is stored dense).
            Method::Ablate { target } => {
                let ablate = crate::compress::Ablate::new(target.clone());
                let mut weights = reference.weights.clone();
                for name in ablate.tensors(&layout)?.into_keys() {
                    if let (false, Some(q)) =
                        (weights.contains_key(&name), reference.quantized.get(&name))
                    {
                        weights.insert(name, q.dequantize(&q.device())?);
                    }
                }
                crate::compress::Compressor::compress(&ablate, &weights, &selected, &layout)?
            }
            m => compressor_for(m)?.compress(&reference.weights, &selected, &layout)?,
        }
    };
    if !variant.protect.is_empty() {
        crate::compress::protect::restore_heads(
            &mut compressed,
            &reference.weights,
            &variant.protect,
            &head_layout(reference),
        )
        .map_err(|e| EngineError::Invalid(format!("variant `{}`: protect: {e}", variant.name)))?;
    }
    if !variant.protect_layers.is_empty() {
        crate::compress::protect::restore_layers(
            &mut compressed,
            &reference.weights,
            &variant.protect_layers,
            &head_layout(reference),
        )
        .map_err(|e| EngineError::Invalid(format!("variant `{}`: protect: {e}", variant.name)))?;
    }
    Ok(compressed)
}

/// Builds a variant of `reference` (compressing it in memory, or loading another checkpoint).
pub fn derive(
    reference: &Checkpoint,
    variant: &Variant,
    device: &Device,
) -> Result<DerivedVariant> {
    derive_with(reference, variant, device, None)
}

/// [`derive`] with calibration sequences for calibrated methods (see [`compress_with`]).
pub fn derive_with(
    reference: &Checkpoint,
    variant: &Variant,
    device: &Device,
    calib: Option<(&CalibTokens, usize)>,
) -> Result<DerivedVariant> {
    if let Method::Checkpoint { path } = &variant.method {
        let other = Checkpoint::load(path, device)?;
        if other.config.vocab_size != reference.config.vocab_size {
            return Err(EngineError::Invalid(format!(
                "variant `{}`: checkpoint {} has a vocabulary of {} tokens, the reference {}; they cannot be compared token by token",
                variant.name,
                path.display(),
                other.config.vocab_size,
                reference.config.vocab_size
            )));
        }
        let model = Model::new(&other)?;
        let bytes = other.stored_bytes();
        return Ok(DerivedVariant {
            variant: variant.clone(),
            model,
            compressed_stats: Vec::new(),
            bits_per_weight: bytes as f64 * 8.0 / other.num_params().max(1) as f64,
            bytes,
            format: other.format.clone(),
        });
    }
    let compressed = compress_with(reference, variant, calib)?;
    assemble_with(reference, variant, compressed, calib)
}

/// The variant of `reference` with `compressed`'s replacements (as [`compress_with`]
/// derived them, or as a cache stored them), with its size accounting.
pub fn assemble(
    reference: &Checkpoint,
    variant: &Variant,
    compressed: Compressed,
) -> Result<DerivedVariant> {
    assemble_with(reference, variant, compressed, None)
}

/// [`assemble`] with the calibration sequences a `kv:` modifier calibrates its per-layer
/// key and value scales on (with the variant's compressed weights in place).
pub fn assemble_with(
    reference: &Checkpoint,
    variant: &Variant,
    compressed: Compressed,
    calib: Option<(&CalibTokens, usize)>,
) -> Result<DerivedVariant> {
    let model = match (&variant.method, calib) {
        (Method::Kv { kv, .. }, Some((tokens, batch))) => {
            let plain = Model::with_variant(reference, &compressed)?;
            let q = crate::calib::kv::scales(&plain, tokens, batch, *kv)
                .map_err(|e| EngineError::Invalid(format!("variant `{}`: {e}", variant.name)))?;
            let mut with_kv = reference.clone();
            with_kv.kv_quant = Some(q);
            Model::with_variant(&with_kv, &compressed)?
        }
        (Method::Kv { .. }, None) => {
            return Err(EngineError::Invalid(format!(
                "variant `{}`: `{}` calibrates its KV-cache scales and needs calibration data",
                variant.name, variant.method
            )))
        }
        _ => Model::with_variant(reference, &compressed)?,
    };
    // Size: replaced tensors at their compressed size, the rest as stored in the reference.
    let mut bytes = compressed.bytes() as f64;
    for (name, t) in &reference.weights {
        if compressed.stat(name).is_none() {
            bytes += t.elem_count() as f64
                * reference.stored_bits.get(name).copied().unwrap_or(32.0)
                / 8.0;
        }
    }
    for (name, q) in &reference.quantized {
        if compressed.stat(name).is_none() {
            bytes += q.storage_size_in_bytes() as f64;
        }
    }
    for (name, p) in &reference.packed {
        if compressed.stat(name).is_none() {
            bytes += p.stored_bytes as f64;
        }
    }
    let params = reference.num_params().max(1) as f64;
    Ok(DerivedVariant {
        variant: variant.clone(),
        model,
        bits_per_weight: bytes * 8.0 / params,
        bytes: bytes.round() as u64,
        compressed_stats: compressed.stats,
        format: reference.format.clone(),
    })
}
