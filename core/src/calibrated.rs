//! The parameters of the compressors people deploy: GPTQ, AWQ, SmoothQuant W8A8, FP8,
//! bitsandbytes NF4/FP4, SparseGPT, Wanda, and KV-cache quantization as a modifier.
//!
//! Shorthands (parsed by [`crate::Method::parse`]; `+` chains a pruner with a quantizer and
//! adds a `kv:` modifier):
//!
//! | shorthand | meaning |
//! |---|---|
//! | `gptq:w4g128[:act][:asym][:damp0.01][:block128]` | GPTQ, 2/3/4/8 bits, group or per channel (`gptq:w8`) |
//! | `awq:w4g128[:sym][:grid20]` | AWQ scale search, asymmetric by default |
//! | `smoothquant:w8a8[:0.5]` | SmoothQuant migration strength alpha (default 0.5), int8 weights and activations |
//! | `fp8`, `fp8:static` | E4M3 weights per channel, dynamic per-token or calibrated static activation scales |
//! | `nf4[:dq][:b64]`, `fp4[:dq][:b64]` | bitsandbytes 4-bit, block size 64, optional double quantization |
//! | `sparsegpt:0.5`, `sparsegpt:2of4[:damp0.01][:block128]` | SparseGPT |
//! | `wanda:0.5`, `wanda:2of4` | Wanda |
//! | `sparsegpt:2of4+gptq:w4g128` | prune, then quantize keeping the zeros |
//! | `gptq:w4g128+kv:fp8`, `kv:int8` | keys and values quantized as they enter the cache |

use std::fmt;

use serde::{Deserialize, Serialize};

/// GPTQ's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GptqSpec {
    /// Bits per weight: 2, 3, 4 or 8.
    pub bits: u8,
    /// Group size along the input dimension; `None` = one grid per output channel.
    pub group: Option<usize>,
    /// Asymmetric grid (scale and zero point).
    pub asym: bool,
    /// Act-order: columns by decreasing Hessian diagonal (static groups).
    pub act_order: bool,
    /// Dampening, as a fraction of the mean Hessian diagonal.
    pub damp: f64,
    /// Columns per block of lazy updates.
    pub block: usize,
}

impl Default for GptqSpec {
    fn default() -> Self {
        GptqSpec {
            bits: 4,
            group: Some(128),
            asym: false,
            act_order: false,
            damp: 0.01,
            block: 128,
        }
    }
}

/// AWQ's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwqSpec {
    /// Bits per weight: 2, 3, 4 or 8.
    pub bits: u8,
    /// Group size along the input dimension; `None` = per output channel.
    pub group: Option<usize>,
    /// Symmetric grid (AWQ's usual grid is asymmetric).
    pub sym: bool,
    /// Points of the scale-exponent grid search (llm-compressor's `n_grid`).
    pub grid: usize,
}

impl Default for AwqSpec {
    fn default() -> Self {
        AwqSpec {
            bits: 4,
            group: Some(128),
            sym: false,
            grid: 20,
        }
    }
}

/// SmoothQuant W8A8's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmoothQuantSpec {
    /// Migration strength in `[0, 1]`.
    pub alpha: f64,
}

impl Default for SmoothQuantSpec {
    fn default() -> Self {
        SmoothQuantSpec { alpha: 0.5 }
    }
}

/// FP8 E4M3's parameters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Fp8Spec {
    /// Calibrated per-tensor input scales instead of dynamic per-token ones.
    pub static_act: bool,
}

/// The bitsandbytes 4-bit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bnb4Code {
    /// NormalFloat 4 (QLoRA).
    Nf4,
    /// 4-bit float (E2M1).
    Fp4,
}

/// bitsandbytes 4-bit parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bnb4Spec {
    /// The code.
    pub code: Bnb4Code,
    /// Weights per absmax block.
    #[serde(default = "default_bnb_block")]
    pub block: usize,
    /// Quantize the absmax values themselves (8-bit, blocks of 256).
    #[serde(default)]
    pub double_quant: bool,
}

fn default_bnb_block() -> usize {
    64
}

/// What a pruner removes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SparsitySpec {
    /// A fraction of each matrix, in `[0, 1)`.
    Fraction(f64),
    /// Keep `n` of every `m` consecutive input weights.
    NofM {
        /// Kept per group.
        n: usize,
        /// Group length.
        m: usize,
    },
}

/// SparseGPT's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SparseGptSpec {
    /// What to prune.
    pub sparsity: SparsitySpec,
    /// Dampening, as a fraction of the mean Hessian diagonal.
    #[serde(default = "default_damp")]
    pub damp: f64,
    /// Columns per block.
    #[serde(default = "default_block")]
    pub block: usize,
}

fn default_damp() -> f64 {
    0.01
}

fn default_block() -> usize {
    128
}

/// KV-cache quantization applied to keys and values as they enter the cache, with one static
/// scale per layer for keys and one for values, calibrated (compressed-tensors'
/// `kv_cache_scheme`, vLLM's `k_scale` / `v_scale`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KvQuant {
    /// FP8 E4M3.
    Fp8,
    /// int8, symmetric.
    Int8,
}

/// A parse error's reason.
pub(crate) type Why = &'static str;

fn parse_bits_group(tok: &str) -> Result<(u8, Option<usize>), Why> {
    let rest = tok
        .strip_prefix('w')
        .ok_or("expected wBITS[gGROUP], e.g. w4g128")?;
    let (b, g) = match rest.split_once('g') {
        Some((b, g)) => (b, Some(g)),
        None => (rest, None),
    };
    let bits: u8 = b
        .parse()
        .map_err(|_| "bits must be a number, e.g. w4g128")?;
    if !matches!(bits, 2 | 3 | 4 | 8) {
        return Err("bits must be 2, 3, 4 or 8");
    }
    let group = match g {
        None => None,
        Some(g) => {
            let g: usize = g.parse().map_err(|_| "group must be gN, e.g. g128")?;
            if g == 0 {
                return Err("group size must be positive");
            }
            Some(g)
        }
    };
    Ok((bits, group))
}

fn number<T: std::str::FromStr>(s: &str, why: Why) -> Result<T, Why> {
    s.parse().map_err(|_| why)
}

impl GptqSpec {
    /// Parses the options after `gptq:`.
    pub(crate) fn parse(opts: &[&str]) -> Result<GptqSpec, Why> {
        let [first, rest @ ..] = opts else {
            return Err("expected gptq:wBITS[gGROUP], e.g. gptq:w4g128");
        };
        let (bits, group) = parse_bits_group(first)?;
        let mut s = GptqSpec {
            bits,
            group,
            ..GptqSpec::default()
        };
        for o in rest {
            match *o {
                "act" => s.act_order = true,
                "asym" => s.asym = true,
                "sym" => s.asym = false,
                o if o.starts_with("damp") => {
                    s.damp = number(&o[4..], "damp must be a number, e.g. damp0.01")?
                }
                o if o.starts_with("block") => {
                    s.block = number(&o[5..], "block must be a number, e.g. block128")?
                }
                _ => return Err("unknown gptq option (expected act, sym, asym, dampX, blockN)"),
            }
        }
        s.check()?;
        Ok(s)
    }

    /// Checks the ranges.
    pub fn check(&self) -> Result<(), Why> {
        if !matches!(self.bits, 2 | 3 | 4 | 8) {
            return Err("bits must be 2, 3, 4 or 8");
        }
        if self.group == Some(0) {
            return Err("group size must be positive");
        }
        if !(self.damp > 0.0 && self.damp < 1.0) {
            return Err("damp must be in (0, 1)");
        }
        if self.block == 0 {
            return Err("block must be at least 1");
        }
        Ok(())
    }
}

impl fmt::Display for GptqSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gptq:w{}", self.bits)?;
        if let Some(g) = self.group {
            write!(f, "g{g}")?;
        }
        if self.act_order {
            f.write_str(":act")?;
        }
        if self.asym {
            f.write_str(":asym")?;
        }
        if self.damp != 0.01 {
            write!(f, ":damp{}", self.damp)?;
        }
        if self.block != 128 {
            write!(f, ":block{}", self.block)?;
        }
        Ok(())
    }
}

impl AwqSpec {
    /// Parses the options after `awq:`.
    pub(crate) fn parse(opts: &[&str]) -> Result<AwqSpec, Why> {
        let [first, rest @ ..] = opts else {
            return Err("expected awq:wBITS[gGROUP], e.g. awq:w4g128");
        };
        let (bits, group) = parse_bits_group(first)?;
        let mut s = AwqSpec {
            bits,
            group,
            ..AwqSpec::default()
        };
        for o in rest {
            match *o {
                "sym" => s.sym = true,
                "asym" => s.sym = false,
                o if o.starts_with("grid") => {
                    s.grid = number(&o[4..], "grid must be a number, e.g. grid20")?
                }
                _ => return Err("unknown awq option (expected sym, asym, gridN)"),
            }
        }
        s.check()?;
        Ok(s)
    }

    /// Checks the ranges.
    pub fn check(&self) -> Result<(), Why> {
        if !matches!(self.bits, 2 | 3 | 4 | 8) {
            return Err("bits must be 2, 3, 4 or 8");
        }
        if self.group == Some(0) {
            return Err("group size must be positive");
        }
        if self.grid < 3 {
            return Err("grid must be at least 3");
        }
        Ok(())
    }
}

impl fmt::Display for AwqSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "awq:w{}", self.bits)?;
        if let Some(g) = self.group {
            write!(f, "g{g}")?;
        }
        if self.sym {
            f.write_str(":sym")?;
        }
        if self.grid != 20 {
            write!(f, ":grid{}", self.grid)?;
        }
        Ok(())
    }
}

impl SmoothQuantSpec {
    /// Parses the options after `smoothquant:`.
    pub(crate) fn parse(opts: &[&str]) -> Result<SmoothQuantSpec, Why> {
        let s = match opts {
            ["w8a8"] => SmoothQuantSpec::default(),
            ["w8a8", a] => SmoothQuantSpec {
                alpha: number(
                    a.strip_prefix("alpha").unwrap_or(a),
                    "alpha must be a number",
                )?,
            },
            _ => return Err("expected smoothquant:w8a8[:ALPHA]"),
        };
        s.check()?;
        Ok(s)
    }

    /// Checks the ranges.
    pub fn check(&self) -> Result<(), Why> {
        if !(0.0..=1.0).contains(&self.alpha) {
            return Err("alpha must be in [0, 1]");
        }
        Ok(())
    }
}

impl Bnb4Spec {
    /// Parses the options after `nf4` / `fp4`.
    pub(crate) fn parse(code: Bnb4Code, opts: &[&str]) -> Result<Bnb4Spec, Why> {
        let mut s = Bnb4Spec {
            code,
            block: 64,
            double_quant: false,
        };
        for o in opts {
            match *o {
                "dq" => s.double_quant = true,
                o if o.starts_with('b') => {
                    s.block = number(&o[1..], "block size must be bN, e.g. b64")?
                }
                _ => return Err("unknown 4-bit option (expected dq, bN)"),
            }
        }
        s.check()?;
        Ok(s)
    }

    /// Checks the ranges.
    pub fn check(&self) -> Result<(), Why> {
        if !matches!(self.block, 32 | 64 | 128 | 256 | 512 | 1024 | 2048 | 4096) {
            return Err("block size must be a power of two from 32 to 4096");
        }
        Ok(())
    }
}

impl fmt::Display for Bnb4Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.code {
            Bnb4Code::Nf4 => "nf4",
            Bnb4Code::Fp4 => "fp4",
        })?;
        if self.double_quant {
            f.write_str(":dq")?;
        }
        if self.block != 64 {
            write!(f, ":b{}", self.block)?;
        }
        Ok(())
    }
}

impl SparsitySpec {
    /// Parses `0.5` or `2of4`.
    pub(crate) fn parse(s: &str) -> Result<SparsitySpec, Why> {
        let sp = if let Some((n, m)) = s.split_once("of") {
            SparsitySpec::NofM {
                n: number(n, "expected NofM, e.g. 2of4")?,
                m: number(m, "expected NofM, e.g. 2of4")?,
            }
        } else {
            SparsitySpec::Fraction(number(
                s,
                "expected a sparsity fraction (0.5) or NofM (2of4)",
            )?)
        };
        sp.check()?;
        Ok(sp)
    }

    /// Checks the ranges.
    pub fn check(&self) -> Result<(), Why> {
        match *self {
            SparsitySpec::Fraction(f) if !(0.0..1.0).contains(&f) => {
                Err("sparsity must be in [0, 1)")
            }
            SparsitySpec::NofM { n, m } if n == 0 || n >= m => Err("N:M pruning needs 0 < N < M"),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for SparsitySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SparsitySpec::Fraction(x) => write!(f, "{x}"),
            SparsitySpec::NofM { n, m } => write!(f, "{n}of{m}"),
        }
    }
}

impl SparseGptSpec {
    /// Parses the options after `sparsegpt:`.
    pub(crate) fn parse(opts: &[&str]) -> Result<SparseGptSpec, Why> {
        let [first, rest @ ..] = opts else {
            return Err("expected sparsegpt:FRACTION or sparsegpt:NofM");
        };
        let mut s = SparseGptSpec {
            sparsity: SparsitySpec::parse(first)?,
            damp: 0.01,
            block: 128,
        };
        for o in rest {
            match *o {
                o if o.starts_with("damp") => {
                    s.damp = number(&o[4..], "damp must be a number, e.g. damp0.01")?
                }
                o if o.starts_with("block") => {
                    s.block = number(&o[5..], "block must be a number, e.g. block128")?
                }
                _ => return Err("unknown sparsegpt option (expected dampX, blockN)"),
            }
        }
        s.check()?;
        Ok(s)
    }

    /// Checks the ranges.
    pub fn check(&self) -> Result<(), Why> {
        self.sparsity.check()?;
        if !(self.damp > 0.0 && self.damp < 1.0) {
            return Err("damp must be in (0, 1)");
        }
        if self.block == 0 {
            return Err("block must be at least 1");
        }
        Ok(())
    }
}

impl fmt::Display for SparseGptSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sparsegpt:{}", self.sparsity)?;
        if self.damp != 0.01 {
            write!(f, ":damp{}", self.damp)?;
        }
        if self.block != 128 {
            write!(f, ":block{}", self.block)?;
        }
        Ok(())
    }
}

impl KvQuant {
    /// Parses the option after `kv:`.
    pub(crate) fn parse(opts: &[&str]) -> Result<KvQuant, Why> {
        match opts {
            ["fp8"] => Ok(KvQuant::Fp8),
            ["int8"] => Ok(KvQuant::Int8),
            _ => Err("expected kv:fp8 or kv:int8"),
        }
    }
}

impl fmt::Display for KvQuant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KvQuant::Fp8 => "kv:fp8",
            KvQuant::Int8 => "kv:int8",
        })
    }
}
