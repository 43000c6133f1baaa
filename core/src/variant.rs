//! Compressed variants as data: a method, its parameters and the tensors it touches.
//!
//! The shorthand strings (`int4:g32`, `gguf:q4k`, `prune:2of4`, `heads:3.1,3.2`, ...) are the
//! ones users type on the command line and in sweep specs; [`Method::parse`] turns them into
//! validated values once, at the edge.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::calibrated::{
    AwqSpec, Bnb4Code, Bnb4Spec, Fp8Spec, GptqSpec, KvQuant, SmoothQuantSpec, SparseGptSpec,
    SparsitySpec,
};
use crate::error::FieldError;
pub use crate::gguf::{GgufFtype, GgufType, ImatrixSource};

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

/// How a distilled student starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StudentInit {
    /// Embeddings, final norm and evenly spaced decoder layers copied from the teacher.
    Teacher,
    /// Fresh N(0, 0.02) weights.
    Random,
}

/// A `distill` variant: the student's shape, the transfer data and the loss of
/// safety-aware knowledge distillation, `w * (alpha * T^2 * KL(teacher_T || student_T) +
/// (1 - alpha) * CE(hard label))` per answer token, with `w = safety_weight` on the safety
/// suite's prompts and 1 elsewhere. Hard labels are the teacher's own greedy answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistillSpec {
    /// Bundled suite whose prompts form the transfer set.
    pub prompts: String,
    /// Bundled suite of safety prompts, added to the transfer set and up-weighted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety: Option<String>,
    /// Prompts taken from each suite (its first N; all when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Softmax temperature of both distributions.
    pub temperature: f64,
    /// Weight of the distillation term; `1 - alpha` weighs the hard-label term.
    pub alpha: f64,
    /// Multiplier of both terms on safety prompts.
    pub safety_weight: f64,
    /// Optimizer steps.
    pub steps: usize,
    /// Sequences per step.
    pub batch: usize,
    /// Peak learning rate (AdamW, linear warmup over the first tenth, cosine decay to 10%).
    pub lr: f64,
    /// Decoder layers of the student (default: half the teacher's, rounded up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<usize>,
    /// MLP width of the student (default: the teacher's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intermediate_size: Option<usize>,
    /// Initialisation.
    pub init: StudentInit,
    /// Seed of initialisation and batch order.
    pub seed: u64,
    /// Longest teacher answer generated for the transfer set, in tokens.
    pub max_new_tokens: usize,
}

impl Default for DistillSpec {
    fn default() -> Self {
        DistillSpec {
            prompts: String::new(),
            safety: None,
            limit: None,
            temperature: 2.0,
            alpha: 0.5,
            safety_weight: 1.0,
            steps: 300,
            batch: 24,
            lr: 1e-3,
            layers: None,
            intermediate_size: None,
            init: StudentInit::Teacher,
            seed: 0,
            max_new_tokens: 48,
        }
    }
}

impl DistillSpec {
    /// Checks the numeric fields; the error names the field (relative to the distill table).
    pub fn check(&self) -> Result<(), (&'static str, String, &'static str)> {
        let f = |x: f64| x.to_string();
        if self.prompts.trim().is_empty() {
            return Err(("prompts", self.prompts.clone(), "name a bundled suite"));
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(("temperature", f(self.temperature), "must be positive"));
        }
        if !(0.0..=1.0).contains(&self.alpha) {
            return Err(("alpha", f(self.alpha), "must be in [0, 1]"));
        }
        if !(self.safety_weight.is_finite() && self.safety_weight >= 0.0) {
            return Err(("safety_weight", f(self.safety_weight), "must be 0 or more"));
        }
        if self.steps == 0 {
            return Err(("steps", "0".into(), "must be at least 1"));
        }
        if self.batch == 0 {
            return Err(("batch", "0".into(), "must be at least 1"));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(("lr", f(self.lr), "must be positive"));
        }
        if self.layers == Some(0) {
            return Err(("layers", "0".into(), "must be at least 1"));
        }
        if self.intermediate_size == Some(0) {
            return Err(("intermediate_size", "0".into(), "must be at least 1"));
        }
        if self.limit == Some(0) {
            return Err(("limit", "0".into(), "must be at least 1"));
        }
        if self.max_new_tokens == 0 {
            return Err(("max_new_tokens", "0".into(), "must be at least 1"));
        }
        Ok(())
    }
}

impl Method {
    /// The uncompressed reference.
    pub fn reference() -> Method {
        Method::Cast {
            dtype: FloatType::F32,
        }
    }

    /// Parses a shorthand string such as `int4:g32:asym`, `gguf:q4k`, `prune:0.5:layer`,
    /// `prune:2of4`, `heads:3.1,3.2`. `field` names where the string came from, for errors.
    pub fn parse(s: &str, field: &str) -> Result<Method, FieldError> {
        let bad = |why: &str| FieldError::new(field, s, why);
        if !s.contains('+') {
            return Method::parse_one(s, field);
        }
        let mut kv = None;
        let mut steps = Vec::new();
        for part in s.split('+') {
            match Method::parse_one(part, field)? {
                Method::Kv { kv: k, base } if *base == Method::reference() => {
                    if kv.replace(k).is_some() {
                        return Err(bad("at most one kv: modifier"));
                    }
                }
                m => steps.push(m),
            }
        }
        let method = match steps.len() {
            0 => Method::reference(),
            1 => steps.pop().unwrap_or_else(Method::reference),
            2 if steps[0].is_pruner() && steps[1].is_weight_quantizer() => Method::Chain { steps },
            _ => {
                return Err(bad(
                    "a combination is a pruner followed by a quantizer (sparsegpt:2of4+gptq:w4g128), optionally +kv:fp8 or +kv:int8",
                ))
            }
        };
        Ok(match kv {
            Some(kv) => Method::Kv {
                kv,
                base: Box::new(method),
            },
            None => method,
        })
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
            Method::Kv { base, .. } => base.needs_calibration(),
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

    /// Parses one shorthand without `+`.
    fn parse_one(s: &str, field: &str) -> Result<Method, FieldError> {
        let bad = |why: &str| FieldError::new(field, s, why);
        let lower = s.trim().to_ascii_lowercase();
        let mut parts = lower.split(':');
        let head = parts.next().unwrap_or_default();
        let rest: Vec<&str> = parts.collect();
        match head {
            "fp32" | "f32" | "fp16" | "f16" | "bf16" => {
                if !rest.is_empty() {
                    return Err(bad("a dtype cast takes no parameters"));
                }
                let dtype = match head {
                    "fp32" | "f32" => FloatType::F32,
                    "fp16" | "f16" => FloatType::F16,
                    _ => FloatType::Bf16,
                };
                Ok(Method::Cast { dtype })
            }
            h if h.starts_with("int") => {
                let bits: u8 = h[3..]
                    .parse()
                    .map_err(|_| bad("expected intN with N in 2..=8, e.g. int4"))?;
                if !(2..=8).contains(&bits) {
                    return Err(bad("integer bits must be between 2 and 8"));
                }
                let mut group = None;
                let mut asym = false;
                for p in rest {
                    if let Some(g) = p.strip_prefix('g') {
                        let g: usize = g
                            .parse()
                            .map_err(|_| bad("group must be gN with N a positive integer"))?;
                        if g == 0 {
                            return Err(bad("group size must be positive"));
                        }
                        group = Some(g);
                    } else if p == "asym" {
                        asym = true;
                    } else if p == "sym" {
                        asym = false;
                    } else {
                        return Err(bad("unknown integer option (expected gN, sym or asym)"));
                    }
                }
                Ok(Method::Rtn { bits, group, asym })
            }
            "gguf" => parse_gguf(s.trim(), &rest, &bad),
            "prune" => match rest.as_slice() {
                [nm] if nm.contains("of") => {
                    let (n, m) = nm.split_once("of").unwrap_or_default();
                    let n: usize = n.parse().map_err(|_| bad("expected prune:NofM"))?;
                    let m: usize = m.parse().map_err(|_| bad("expected prune:NofM"))?;
                    if m == 0 || n == 0 || n >= m {
                        return Err(bad("N:M pruning needs 0 < N < M"));
                    }
                    Ok(Method::NofM { n, m })
                }
                [frac, scope @ ..] => {
                    let sparsity: f64 = frac
                        .parse()
                        .map_err(|_| bad("expected a sparsity fraction, e.g. prune:0.5"))?;
                    if !(0.0..1.0).contains(&sparsity) {
                        return Err(bad("sparsity must be in [0, 1)"));
                    }
                    let scope = match scope {
                        [] | ["global"] => PruneScope::Global,
                        ["layer"] => PruneScope::Layer,
                        _ => return Err(bad("prune scope must be global or layer")),
                    };
                    Ok(Method::Prune { sparsity, scope })
                }
                _ => Err(bad("expected prune:FRACTION[:layer] or prune:NofM")),
            },
            "heads" => {
                let [list] = rest.as_slice() else {
                    return Err(bad("expected heads:L.H,L.H"));
                };
                let mut heads = Vec::new();
                for item in list.split(',') {
                    heads.push(HeadRef::parse(item).map_err(bad)?);
                }
                heads.sort();
                heads.dedup();
                Ok(Method::Heads { heads })
            }
            "ablate" => parse_ablation(&rest).map_err(bad),
            "noise" => {
                let (sigma, seed) = match rest.as_slice() {
                    [sigma] => (*sigma, None),
                    [sigma, seed] => (*sigma, Some(*seed)),
                    _ => return Err(bad("expected noise:SIGMA[:sSEED], e.g. noise:0.05:s7")),
                };
                let sigma: f64 = sigma
                    .parse()
                    .map_err(|_| bad("the noise scale is a number, e.g. noise:0.05"))?;
                if !(sigma.is_finite() && sigma > 0.0 && sigma <= 1.0) {
                    return Err(bad("the noise scale must be in (0, 1] (times each tensor's weight standard deviation)"));
                }
                let seed = match seed {
                    None => 0,
                    Some(t) => t
                        .strip_prefix('s')
                        .and_then(|x| x.parse().ok())
                        .ok_or_else(|| bad("the seed is sN, e.g. noise:0.05:s7"))?,
                };
                Ok(Method::Noise { sigma, seed })
            }
            "gptq" => Ok(Method::Gptq(GptqSpec::parse(&rest).map_err(bad)?)),
            "awq" => Ok(Method::Awq(AwqSpec::parse(&rest).map_err(bad)?)),
            "smoothquant" => Ok(Method::SmoothQuant(
                SmoothQuantSpec::parse(&rest).map_err(bad)?,
            )),
            "fp8" => match rest.as_slice() {
                [] | ["dynamic"] => Ok(Method::Fp8(Fp8Spec { static_act: false })),
                ["static"] => Ok(Method::Fp8(Fp8Spec { static_act: true })),
                _ => Err(bad("expected fp8 or fp8:static")),
            },
            "nf4" => Ok(Method::Bnb4(
                Bnb4Spec::parse(Bnb4Code::Nf4, &rest).map_err(bad)?,
            )),
            "fp4" => Ok(Method::Bnb4(
                Bnb4Spec::parse(Bnb4Code::Fp4, &rest).map_err(bad)?,
            )),
            "sparsegpt" => Ok(Method::SparseGpt(
                SparseGptSpec::parse(&rest).map_err(bad)?,
            )),
            "wanda" => match rest.as_slice() {
                [sp] => Ok(Method::Wanda {
                    sparsity: SparsitySpec::parse(sp).map_err(bad)?,
                }),
                _ => Err(bad("expected wanda:FRACTION or wanda:NofM")),
            },
            "kv" => Ok(Method::Kv {
                kv: KvQuant::parse(&rest).map_err(bad)?,
                base: Box::new(Method::reference()),
            }),
            _ => Err(bad(
                "unknown variant (fp32 f16 bf16 intN[:gN][:asym] gguf:TYPE prune:F[:layer] prune:NofM heads:L.H,... gptq:w4g128 awq:w4g128 smoothquant:w8a8 fp8 nf4 fp4 sparsegpt:0.5 wanda:2of4 kv:fp8 ablate:layer:L,... ablate:mlp:L:A-B,... noise:SIGMA[:sSEED], combined with +)",
            )),
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

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Method::Cast { dtype } => f.write_str(match dtype {
                FloatType::F32 => "fp32",
                FloatType::F16 => "f16",
                FloatType::Bf16 => "bf16",
            }),
            Method::Rtn { bits, group, asym } => {
                write!(f, "int{bits}")?;
                if let Some(g) = group {
                    write!(f, ":g{g}")?;
                }
                if *asym {
                    f.write_str(":asym")?;
                }
                Ok(())
            }
            Method::Gguf { ty } => write!(f, "gguf:{}", ty.short_name()),
            Method::GgufFile {
                ftype,
                pure,
                imatrix,
            } => {
                write!(f, "gguf:{}", ftype.name())?;
                if *pure {
                    f.write_str(":pure")?;
                }
                if let Some(m) = imatrix {
                    write!(f, ":imatrix={m}")?;
                }
                Ok(())
            }
            Method::Prune { sparsity, scope } => {
                write!(f, "prune:{sparsity}")?;
                if *scope == PruneScope::Layer {
                    f.write_str(":layer")?;
                }
                Ok(())
            }
            Method::NofM { n, m } => write!(f, "prune:{n}of{m}"),
            Method::Heads { heads } => {
                f.write_str("heads:")?;
                for (i, h) in heads.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{}.{}", h.layer, h.head)?;
                }
                Ok(())
            }
            Method::Checkpoint { path } => write!(f, "checkpoint:{}", path.display()),
            Method::Distill(d) => {
                write!(
                    f,
                    "distill:T{}:alpha{}:safety_weight{}:steps{}",
                    d.temperature, d.alpha, d.safety_weight, d.steps
                )?;
                if let Some(l) = d.layers {
                    write!(f, ":layers{l}")?;
                }
                Ok(())
            }
            Method::Ablate {
                target: Ablation::Layers(layers),
            } => {
                let list: Vec<String> = layers.iter().map(usize::to_string).collect();
                write!(f, "ablate:layer:{}", list.join(","))
            }
            Method::Ablate {
                target: Ablation::Channels(blocks),
            } => {
                let list: Vec<String> = blocks
                    .iter()
                    .map(|(l, a, b)| format!("{l}:{a}-{b}"))
                    .collect();
                write!(f, "ablate:mlp:{}", list.join(","))
            }
            Method::Noise { sigma, seed } => {
                write!(f, "noise:{sigma}")?;
                if *seed != 0 {
                    write!(f, ":s{seed}")?;
                }
                Ok(())
            }
            Method::Gptq(g) => write!(f, "{g}"),
            Method::Awq(a) => write!(f, "{a}"),
            Method::SmoothQuant(q) if q.alpha == 0.5 => f.write_str("smoothquant:w8a8"),
            Method::SmoothQuant(q) => write!(f, "smoothquant:w8a8:{}", q.alpha),
            Method::Fp8(p) if p.static_act => f.write_str("fp8:static"),
            Method::Fp8(_) => f.write_str("fp8"),
            Method::Bnb4(b) => write!(f, "{b}"),
            Method::SparseGpt(p) => write!(f, "{p}"),
            Method::Wanda { sparsity } => write!(f, "wanda:{sparsity}"),
            Method::Chain { steps } => {
                for (i, m) in steps.iter().enumerate() {
                    if i > 0 {
                        f.write_str("+")?;
                    }
                    write!(f, "{m}")?;
                }
                Ok(())
            }
            Method::Kv { kv, base } if **base == Method::reference() => write!(f, "{kv}"),
            Method::Kv { kv, base } => write!(f, "{base}+{kv}"),
        }
    }
}

/// `ablate:layer:L,...` or `ablate:mlp:L:A-B,...` (the part after `ablate:`, split at `:`).
fn parse_ablation(rest: &[&str]) -> Result<Method, &'static str> {
    let number = |x: &str| x.trim().parse::<usize>().ok();
    let target = match rest {
        ["layer", list] => {
            let mut layers = Vec::new();
            for item in list.split(',') {
                layers.push(
                    number(item).ok_or("expected ablate:layer:L[,L...], e.g. ablate:layer:0")?,
                );
            }
            layers.sort_unstable();
            layers.dedup();
            Ablation::Layers(layers)
        }
        ["mlp", items @ ..] if !items.is_empty() => {
            // `L:A-B,L:A-B`: the split at `:` cut each item in two.
            let joined = items.join(":");
            let mut blocks = Vec::new();
            for item in joined.split(',') {
                let block = item.split_once(':').and_then(|(l, r)| {
                    let (a, b) = r.split_once('-')?;
                    Some((number(l)?, number(a)?, number(b)?))
                });
                match block {
                    Some((l, a, b)) if a < b => blocks.push((l, a, b)),
                    _ => return Err("expected ablate:mlp:L:A-B[,L:A-B...] with A < B, e.g. ablate:mlp:1:192-256"),
                }
            }
            blocks.sort_unstable();
            blocks.dedup();
            Ablation::Channels(blocks)
        }
        _ => return Err("expected ablate:layer:L[,L...] or ablate:mlp:L:A-B[,L:A-B...]"),
    };
    Ok(Method::Ablate { target })
}

/// `gguf:NAME[:pure][:imatrix=FILE|SUITE]`: a llama.cpp file type (`q4_k_m`, `q8_0`,
/// `iq4_xs`, ...) or one block type in its compact spelling (`q4k`, `q80`, `iq4xs`).
/// `original` keeps the case of an imatrix path.
fn parse_gguf(
    original: &str,
    rest: &[&str],
    bad: &dyn Fn(&str) -> FieldError,
) -> Result<Method, FieldError> {
    const TYPES: &str =
        "a llama.cpp file type (q4_0 q4_1 q5_0 q5_1 q8_0 q2_k q2_k_s q3_k_s q3_k_m \
                         q3_k_l q4_k_s q4_k_m q5_k_s q5_k_m q6_k iq1_s iq1_m iq2_xxs iq2_xs iq2_s \
                         iq2_m iq3_xxs iq3_xs iq3_s iq3_m iq4_nl iq4_xs tq1_0 tq2_0) or one block \
                         type (q80 q40 q41 q50 q51 q2k q3k q4k q5k q6k q8k iq4nl iq4xs ...)";
    let Some((name, opts)) = rest.split_first() else {
        return Err(bad(&format!("expected gguf:TYPE, {TYPES}")));
    };
    let raw_opts: Vec<&str> = original.split(':').skip(2).collect();
    if let Some(ftype) = GgufFtype::parse(name) {
        let (mut pure, mut imatrix) = (false, None);
        for (i, o) in opts.iter().enumerate() {
            if *o == "pure" {
                pure = true;
            } else if let Some(v) = o.strip_prefix("imatrix=") {
                let v = raw_opts
                    .get(i)
                    .and_then(|r| r.split_once('=').map(|(_, v)| v.trim()))
                    .unwrap_or(v);
                if v.is_empty() {
                    return Err(bad("imatrix= needs a file or a bundled suite name"));
                }
                imatrix = Some(ImatrixSource::parse(v));
            } else if *o == "imatrix" {
                return Err(bad(
                    "name the importance matrix: imatrix=FILE (from llama-imatrix) or \
                     imatrix=SUITE (computed from a bundled suite)",
                ));
            } else {
                return Err(bad(
                    "unknown GGUF option (expected pure or imatrix=FILE|SUITE)",
                ));
            }
        }
        return Ok(Method::GgufFile {
            ftype,
            pure,
            imatrix,
        });
    }
    if !opts.is_empty() {
        return Err(bad(
            "a one-type GGUF variant takes no options (pure and imatrix= apply to llama.cpp file \
             types such as q4_k_m)",
        ));
    }
    let ty = GgufType::parse(name)
        .ok_or_else(|| bad(&format!("unknown GGUF type: expected {TYPES}")))?;
    Ok(Method::Gguf { ty })
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
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorthands_round_trip() {
        for s in [
            "fp32",
            "f16",
            "bf16",
            "int8",
            "int4:g32",
            "int4:g32:asym",
            "int3:g64",
            "int2:g16",
            "gguf:q8_0",
            "gguf:q4k",
            "gguf:q2k",
            "gguf:iq4xs",
            "gguf:q80",
            "gguf:q4_k_m",
            "gguf:iq4_xs",
            "gguf:q2_k:pure",
            "gguf:q4_k_m:imatrix=calib-suite",
            "gguf:q4_k_m:imatrix=Data/My.imatrix",
            "prune:0.5",
            "prune:0.5:layer",
            "prune:2of4",
            "heads:3.1,3.2",
            "ablate:layer:0",
            "ablate:layer:0,3",
            "ablate:mlp:1:192-256",
            "ablate:mlp:1:0-64,2:64-128",
            "noise:0.05",
            "noise:0.05:s7",
            "gptq:w4g128",
            "gptq:w4g128:act",
            "gptq:w3g64:asym",
            "gptq:w8",
            "gptq:w2g16:act:asym:damp0.1:block64",
            "awq:w4g128",
            "awq:w4g64:sym:grid10",
            "smoothquant:w8a8",
            "smoothquant:w8a8:0.8",
            "fp8",
            "fp8:static",
            "nf4",
            "fp4",
            "nf4:dq",
            "fp4:dq:b128",
            "sparsegpt:0.5",
            "sparsegpt:2of4",
            "sparsegpt:0.6:damp0.1",
            "wanda:0.5",
            "wanda:2of4",
            "sparsegpt:2of4+gptq:w4g128",
            "wanda:0.5+int4:g32",
            "kv:fp8",
            "kv:int8",
            "gptq:w4g128+kv:fp8",
            "sparsegpt:2of4+gptq:w4g128+kv:int8",
        ] {
            let m = Method::parse(s, "variant").unwrap();
            assert_eq!(m.to_string(), s, "round trip of {s}");
        }
    }

    #[test]
    fn aliases_and_errors() {
        assert_eq!(
            Method::parse("gguf:Q4K", "v").unwrap(),
            Method::Gguf { ty: GgufType::Q4K }
        );
        // llama-quantize's alias: Q4_K is the Q4_K_M mix.
        assert_eq!(
            Method::parse("gguf:Q4_K", "v").unwrap(),
            Method::GgufFile {
                ftype: GgufFtype::Q4KM,
                pure: false,
                imatrix: None
            }
        );
        for bad in [
            "int9",
            "int4:g0",
            "gguf:q9k",
            "gguf:q4k:pure",
            "gguf:q4_k_m:imatrix",
            "gguf:q4_k_m:fast",
            "prune:1.5",
            "prune:4of2",
            "heads:3",
            "ablate:layer",
            "ablate:layer:x",
            "ablate:mlp:1:64-0",
            "ablate:mlp:1",
            "noise:0",
            "noise:2",
            "noise:0.05:7",
            "zzz",
            "gptq",
            "gptq:w5g128",
            "gptq:w4g0",
            "gptq:w4g128:fast",
            "gptq:w4g128:damp2",
            "awq:w4g128:act",
            "smoothquant:w8a8:1.5",
            "smoothquant:w4a4",
            "fp8:e5m2",
            "nf4:b48",
            "sparsegpt:1.0",
            "wanda:4of2",
            "kv:int4",
            "gptq:w4g128+sparsegpt:0.5",
            "int4+int8",
            "kv:fp8+kv:int8",
        ] {
            let e = Method::parse(bad, "variants[0]").unwrap_err();
            assert!(e.to_string().contains("variants[0]"), "{e}");
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn gguf_file_types_and_imatrix_sources() {
        let m = Method::parse("gguf:Q4_K_M:imatrix=Data/My.imatrix", "v").unwrap();
        assert_eq!(
            m,
            Method::GgufFile {
                ftype: GgufFtype::Q4KM,
                pure: false,
                imatrix: Some(ImatrixSource::File("Data/My.imatrix".into()))
            }
        );
        let m = Method::parse("gguf:iq4_xs:imatrix=fixture-harmful", "v").unwrap();
        assert!(
            matches!(m, Method::GgufFile { imatrix: Some(ImatrixSource::Suite(ref s)), .. } if s == "fixture-harmful")
        );
        for f in GgufFtype::ALL {
            assert_eq!(GgufFtype::parse(f.name()), Some(f));
            let v = Method::parse(&format!("gguf:{}", f.name()), "v").unwrap();
            assert_eq!(v.to_string(), format!("gguf:{}", f.name()));
        }
        for t in GgufType::ALL {
            let v = Method::parse(&format!("gguf:{}", t.short_name()), "v").unwrap();
            assert_eq!(v, Method::Gguf { ty: t });
        }
        assert_eq!(GgufFtype::Q4KM.id(), 15);
        assert_eq!(GgufFtype::IQ4XS.default_type(), GgufType::IQ4XS);
        assert_eq!(GgufFtype::IQ2S.default_type(), GgufType::IQ2XS);
    }

    #[test]
    fn gguf_bits_per_weight() {
        assert_eq!(GgufType::Q8_0.bits_per_weight(), 8.5);
        assert_eq!(GgufType::Q4K.bits_per_weight(), 4.5);
        assert_eq!(GgufType::Q2K.bits_per_weight(), 2.625);
        assert_eq!(GgufType::Q6K.bits_per_weight(), 6.5625);
        assert_eq!(GgufType::IQ4XS.bits_per_weight(), 4.25);
        assert_eq!(GgufType::IQ2XXS.bits_per_weight(), 2.0625);
    }
}

#[cfg(test)]
mod calibrated_tests {
    use super::*;

    #[test]
    fn calibrated_parameters_and_needs() {
        let m = Method::parse("gptq:w4g128:act", "v").unwrap();
        assert_eq!(
            m,
            Method::Gptq(GptqSpec {
                act_order: true,
                ..GptqSpec::default()
            })
        );
        assert!(m.needs_calibration());
        assert!(!Method::parse("fp8", "v").unwrap().needs_calibration());
        assert!(Method::parse("fp8:static", "v")
            .unwrap()
            .needs_calibration());
        assert!(!Method::parse("nf4", "v").unwrap().needs_calibration());
        assert!(Method::parse("wanda:0.5+int4:g32", "v")
            .unwrap()
            .needs_calibration());
        assert!(!Method::parse("int4+kv:fp8", "v")
            .unwrap()
            .needs_calibration());
        assert_eq!(
            Method::parse("gptq:w4g128", "v").unwrap().kind(),
            "quantization"
        );
        assert_eq!(Method::parse("wanda:2of4", "v").unwrap().kind(), "pruning");
        let e = Method::parse("gptq:w4g128:fast", "variants[3]").unwrap_err();
        assert!(e.to_string().contains("unknown gptq option"), "{e}");
    }

    #[test]
    fn table_form_carries_every_parameter() {
        let m: Method = toml::from_str(
            "method = \"gptq\"\nbits = 3\ngroup = 64\nact_order = true\nasym = true\ndamp = 0.05\nblock = 64\n",
        )
        .unwrap();
        assert_eq!(m.to_string(), "gptq:w3g64:act:asym:damp0.05:block64");
        m.check("variants[0]").unwrap();
        let bad: Method = toml::from_str("method = \"gptq\"\nbits = 5\n").unwrap();
        let e = bad.check("variants[0]").unwrap_err();
        assert!(e.to_string().contains("variants[0]"), "{e}");
        let e = toml::from_str::<Method>("method = \"gptq\"\nbitz = 4\n").unwrap_err();
        assert!(e.to_string().contains("bitz"), "{e}");
        let m: Method = toml::from_str("method = \"smoothquant\"\nalpha = 0.75\n").unwrap();
        assert_eq!(m.to_string(), "smoothquant:w8a8:0.75");
        // Every shorthand survives a trip through its table form.
        for s in [
            "awq:w4g128",
            "nf4:dq",
            "sparsegpt:2of4",
            "sparsegpt:2of4+gptq:w4g128+kv:fp8",
        ] {
            let m = Method::parse(s, "v").unwrap();
            let t = toml::to_string(&m).unwrap();
            let back: Method = toml::from_str(&t).unwrap();
            assert_eq!(back, m, "{s} via {t}");
        }
    }
}
