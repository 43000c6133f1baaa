//! Compressed variants as data: a method, its parameters and the tensors it touches.
//!
//! The shorthand strings (`int4:g32`, `gguf:q4k`, `prune:2of4`, `heads:3.1,3.2`, ...) are the
//! ones users type on the command line and in sweep specs; [`Method::parse`] turns them into
//! validated values once, at the edge.

mod display;
mod distill;
mod parse;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use crate::calibrated::{
    AwqSpec, Bnb4Code, Bnb4Spec, Fp8Spec, GptqSpec, KvQuant, SmoothQuantSpec, SparseGptSpec,
    SparsitySpec,
};
use crate::error::FieldError;
pub use crate::gguf::{GgufFtype, GgufType, ImatrixSource};
pub use distill::{DistillSpec, StudentInit};

/// Floating-point storage type of a dtype-cast variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FloatType {
    /// 32-bit IEEE float (the uncompressed reference).
    F32,
    /// 16-bit IEEE half precision.
    F16,
    /// bfloat16.
    Bf16,
}

impl FloatType {
    /// Bits per stored weight.
    pub fn bits(self) -> f64 {
        match self {
            FloatType::F32 => 32.0,
            FloatType::F16 | FloatType::Bf16 => 16.0,
        }
    }
}

/// Which weights a magnitude pruner ranks together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PruneScope {
    /// One threshold over every selected tensor (torch's `global_unstructured`).
    Global,
    /// One threshold per tensor.
    Layer,
}

/// An attention head, by zero-based layer and head index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HeadRef {
    /// Decoder layer index.
    pub layer: usize,
    /// Query head index within the layer.
    pub head: usize,
}

impl HeadRef {
    /// `LAYER.HEAD`, e.g. `3.1`.
    pub fn parse(item: &str) -> Result<HeadRef, &'static str> {
        let (l, h) = item
            .split_once('.')
            .ok_or("each head is LAYER.HEAD, e.g. 3.1")?;
        let layer = l.trim().parse().map_err(|_| "layer is not a number")?;
        let head = h.trim().parse().map_err(|_| "head is not a number")?;
        Ok(HeadRef { layer, head })
    }
}

/// A compression method with its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Method {
    /// Cast the weights to another float type.
    Cast {
        /// Target type.
        dtype: FloatType,
    },
    /// Round-to-nearest integer quantization.
    Rtn {
        /// Bits per weight, 2 to 8.
        bits: u8,
        /// Group size along the input dimension; `None` = one scale per output channel.
        group: Option<usize>,
        /// Asymmetric (scale and zero point) rather than symmetric.
        asym: bool,
    },
    /// One GGUF block type on the selected tensors (`gguf:q4k`), executed through quantized
    /// matmul.
    Gguf {
        /// Block type.
        ty: GgufType,
    },
    /// A llama.cpp file type (`gguf:q4_k_m`): `llama-quantize`'s per-tensor recipe over the
    /// whole model (token embedding and output projection included), byte for byte.
    GgufFile {
        /// The file type.
        ftype: GgufFtype,
        /// Every quantizable tensor in the default type (`llama-quantize --pure`).
        #[serde(default)]
        pure: bool,
        /// The importance matrix, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        imatrix: Option<ImatrixSource>,
    },
    /// Unstructured magnitude pruning.
    Prune {
        /// Fraction of weights set to zero, in [0, 1).
        sparsity: f64,
        /// Ranking scope.
        scope: PruneScope,
    },
    /// Semi-structured N:M pruning: in every group of `m` consecutive input weights keep `n`.
    NofM {
        /// Weights kept per group.
        n: usize,
        /// Group length.
        m: usize,
    },
    /// Ablate attention heads (zero their contribution to the output projection).
    Heads {
        /// The heads to ablate.
        heads: Vec<HeadRef>,
    },
    /// Another checkpoint (a distilled student, a downloaded GGUF) compared with the reference.
    Checkpoint {
        /// Path to an HF directory or a GGUF file.
        path: PathBuf,
    },
    /// A student distilled from the reference by the worker, then evaluated like a checkpoint.
    Distill(Box<DistillSpec>),
    /// Zero whole layers' outputs or blocks of MLP channels: what a unit carries, by its
    /// absence (a positive control for the analyses).
    Ablate {
        /// What is zeroed.
        target: Ablation,
    },
    /// Gaussian noise on the selected weights: `sigma` times each tensor's weight standard
    /// deviation, drawn from `seed` (the noise control of the conditioned check).
    Noise {
        /// Noise scale relative to each tensor's weight standard deviation, in (0, 1].
        sigma: f64,
        /// Seed of the draw.
        seed: u64,
    },
    /// GPTQ, calibrated.
    Gptq(GptqSpec),
    /// AWQ's activation-aware scales, then integer quantization; calibrated.
    Awq(AwqSpec),
    /// SmoothQuant W8A8: smoothing scales, int8 weights per channel and int8 activations per
    /// token; calibrated.
    #[serde(rename = "smoothquant")]
    SmoothQuant(SmoothQuantSpec),
    /// FP8 E4M3 weights per channel and activations (dynamic per token, or calibrated static
    /// per-tensor scales).
    Fp8(Fp8Spec),
    /// bitsandbytes NF4 or FP4 blocks.
    #[serde(rename = "bnb4")]
    Bnb4(Bnb4Spec),
    /// SparseGPT, calibrated.
    #[serde(rename = "sparsegpt")]
    SparseGpt(SparseGptSpec),
    /// Wanda, calibrated.
    Wanda {
        /// What to prune.
        sparsity: SparsitySpec,
    },
    /// A pruner followed by a quantizer (`sparsegpt:2of4+gptq:w4g128`): the quantizer keeps
    /// the pruned zeros.
    Chain {
        /// The pruner, then the quantizer.
        steps: Vec<Method>,
    },
    /// Keys and values quantized as they enter the KV cache, on top of another method (the
    /// reference for a bare `kv:fp8`).
    Kv {
        /// The cache's number format.
        kv: KvQuant,
        /// The method applied to the weights.
        base: Box<Method>,
    },
}

/// What an `ablate:` variant zeroes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ablation {
    /// Whole decoder layers: their attention and MLP output projections, so the residual
    /// stream passes through (`ablate:layer:0,3`).
    Layers(Vec<usize>),
    /// Blocks of MLP channels `(layer, start, end)`: their columns of `down_proj`, so their
    /// activations no longer reach the residual stream (`ablate:mlp:1:192-256,2:0-64`).
    Channels(Vec<(usize, usize, usize)>),
}

impl Method {
    /// The uncompressed reference.
    pub fn reference() -> Method {
        Method::Cast {
            dtype: FloatType::F32,
        }
    }

    /// Whether the method prunes weights (a chain's first step).
    pub fn is_pruner(&self) -> bool {
        matches!(
            self,
            Method::Prune { .. }
                | Method::NofM { .. }
                | Method::SparseGpt(_)
                | Method::Wanda { .. }
        )
    }

    /// Whether the method quantizes weights (a chain's second step).
    pub fn is_weight_quantizer(&self) -> bool {
        matches!(
            self,
            Method::Rtn { .. }
                | Method::Gguf { .. }
                | Method::Gptq(_)
                | Method::Awq(_)
                | Method::SmoothQuant(_)
                | Method::Fp8(_)
                | Method::Bnb4(_)
        )
    }

    /// Whether deriving the variant needs calibration data.
    pub fn needs_calibration(&self) -> bool {
        match self {
            Method::Gptq(_)
            | Method::Awq(_)
            | Method::SmoothQuant(_)
            | Method::SparseGpt(_)
            | Method::Wanda { .. } => true,
            Method::Fp8(f) => f.static_act,
            Method::Chain { steps } => steps.iter().any(Method::needs_calibration),
            // The cache's per-layer key and value scales are calibrated.
            Method::Kv { .. } => true,
            _ => false,
        }
    }

    /// Checks the parameters of a method built from a table (the shorthand parser checks
    /// its own); the error names `field`.
    pub fn check(&self, field: &str) -> Result<(), FieldError> {
        let at = |why: &str| FieldError::new(field, self.to_string(), why);
        match self {
            Method::Gptq(g) => g.check().map_err(at),
            Method::Awq(a) => a.check().map_err(at),
            Method::SmoothQuant(q) => q.check().map_err(at),
            Method::Bnb4(b) => b.check().map_err(at),
            Method::SparseGpt(p) => p.check().map_err(at),
            Method::Wanda { sparsity } => sparsity.check().map_err(at),
            Method::Chain { steps } => {
                if !(steps.len() == 2 && steps[0].is_pruner() && steps[1].is_weight_quantizer()) {
                    return Err(at("a chain is a pruner followed by a quantizer"));
                }
                steps.iter().try_for_each(|m| m.check(field))
            }
            Method::Kv { base, .. } => base.check(field),
            _ => Ok(()),
        }
    }

    /// Short name of the method family, as reported in `variants[].method`.
    pub fn family(&self) -> &'static str {
        match self {
            Method::Cast { .. } => "cast",
            Method::Rtn { .. } => "rtn",
            Method::Gguf { .. } | Method::GgufFile { .. } => "gguf",
            Method::Prune { .. } => "prune",
            Method::NofM { .. } => "prune_nm",
            Method::Heads { .. } => "heads",
            Method::Checkpoint { .. } => "checkpoint",
            Method::Distill(_) => "distill",
            Method::Ablate { .. } => "ablate",
            Method::Noise { .. } => "noise",
            Method::Gptq(_) => "gptq",
            Method::Awq(_) => "awq",
            Method::SmoothQuant(_) => "smoothquant",
            Method::Fp8(_) => "fp8",
            Method::Bnb4(b) => match b.code {
                Bnb4Code::Nf4 => "nf4",
                Bnb4Code::Fp4 => "fp4",
            },
            Method::SparseGpt(_) => "sparsegpt",
            Method::Wanda { .. } => "wanda",
            Method::Chain { .. } => "chain",
            Method::Kv { base, .. } if **base == Method::reference() => "kv",
            Method::Kv { base, .. } => base.family(),
        }
    }

    /// The kind reported in `variants[].kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Method::Cast {
                dtype: FloatType::F32,
            } => "reference",
            Method::Cast { .. }
            | Method::Rtn { .. }
            | Method::Gguf { .. }
            | Method::GgufFile { .. } => "quantization",
            Method::Prune { .. } | Method::NofM { .. } | Method::Heads { .. } => "pruning",
            Method::Checkpoint { .. } => "checkpoint",
            Method::Distill(_) => "distillation",
            Method::Ablate { .. } => "ablation",
            Method::Noise { .. } => "control",
            Method::Gptq(_)
            | Method::Awq(_)
            | Method::SmoothQuant(_)
            | Method::Fp8(_)
            | Method::Bnb4(_)
            | Method::Chain { .. } => "quantization",
            Method::SparseGpt(_) | Method::Wanda { .. } => "pruning",
            Method::Kv { base, .. } if **base == Method::reference() => "quantization",
            Method::Kv { base, .. } => base.kind(),
        }
    }
}

/// A named variant: a method plus an optional tensor-selection regex.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    /// Name used in reports (defaults to the shorthand string).
    pub name: String,
    /// The compression method.
    pub method: Method,
    /// Regex over tensor names (HF names, e.g. `model.layers.3.self_attn.q_proj.weight`);
    /// `None` selects every linear weight of the decoder layers.
    pub select: Option<String>,
    /// Attention heads kept out of the compression: their rows of the q/k/v projections (the
    /// key/value head a query head reads, under grouped-query attention) and their columns of
    /// the output projection keep the reference's values in bf16.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protect: Vec<HeadRef>,
    /// Decoder layers kept out of the compression: all their compressed weights keep the
    /// reference's values in bf16.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protect_layers: Vec<usize>,
    /// The calibration data of a calibrated method (the spec's `[calibration]` with the
    /// variant's own table over it); `None` for methods that read no activations, and for a
    /// shorthand outside a spec (the default calibration then applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<crate::calibration::CalibrationSpec>,
}

impl Variant {
    /// A variant from a shorthand string, named after it.
    pub fn parse(s: &str, field: &str) -> Result<Variant, FieldError> {
        let method = Method::parse(s, field)?;
        Ok(Variant {
            name: method.to_string(),
            method,
            select: None,
            protect: Vec::new(),
            protect_layers: Vec::new(),
            calibration: None,
        })
    }
}
