//! GGUF quantization as variants name it: the ggml block types (`gguf:q4k`: one type on the
//! selected tensors) and llama.cpp's file types (`gguf:q4_k_m`: `llama-quantize`'s per-tensor
//! recipe over the whole model, optionally with an importance matrix).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A ggml block-quantized weight type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GgufType {
    /// 8-bit, blocks of 32, one f16 scale.
    Q8_0,
    /// 4-bit symmetric, blocks of 32.
    Q4_0,
    /// 4-bit with minimum, blocks of 32.
    Q4_1,
    /// 5-bit symmetric, blocks of 32.
    Q5_0,
    /// 5-bit with minimum, blocks of 32.
    Q5_1,
    /// 2-bit k-quant, super-blocks of 256.
    Q2K,
    /// 3-bit k-quant.
    Q3K,
    /// 4-bit k-quant.
    Q4K,
    /// 5-bit k-quant.
    Q5K,
    /// 6-bit k-quant.
    Q6K,
    /// 8-bit k-quant (dequantized on GPUs).
    Q8K,
    /// 4-bit non-linear levels, blocks of 32.
    IQ4NL,
    /// 4-bit non-linear levels, super-blocks of 256 with 6-bit scales (4.25 bits).
    IQ4XS,
    /// 3-bit lattice (3.44 bits).
    IQ3S,
    /// 3-bit lattice (3.06 bits).
    IQ3XXS,
    /// 2-bit lattice (2.56 bits).
    IQ2S,
    /// 2-bit lattice (2.31 bits).
    IQ2XS,
    /// 2-bit lattice (2.06 bits).
    IQ2XXS,
    /// 1-bit ternary lattice (1.56 bits).
    IQ1S,
    /// 1-bit ternary lattice (1.75 bits).
    IQ1M,
    /// Ternary, base-3 packed (1.69 bits).
    TQ1_0,
    /// Ternary, 2 bits.
    TQ2_0,
}

impl GgufType {
    /// Every type, in the order they are documented.
    pub const ALL: [GgufType; 22] = [
        GgufType::Q8_0,
        GgufType::Q4_0,
        GgufType::Q4_1,
        GgufType::Q5_0,
        GgufType::Q5_1,
        GgufType::Q2K,
        GgufType::Q3K,
        GgufType::Q4K,
        GgufType::Q5K,
        GgufType::Q6K,
        GgufType::Q8K,
        GgufType::IQ4NL,
        GgufType::IQ4XS,
        GgufType::IQ3S,
        GgufType::IQ3XXS,
        GgufType::IQ2S,
        GgufType::IQ2XS,
        GgufType::IQ2XXS,
        GgufType::IQ1S,
        GgufType::IQ1M,
        GgufType::TQ1_0,
        GgufType::TQ2_0,
    ];

    /// ggml's name in lower case (`q4_k`, `q8_0`, `iq4_xs`).
    pub fn ggml_name(self) -> &'static str {
        match self {
            GgufType::Q8_0 => "q8_0",
            GgufType::Q4_0 => "q4_0",
            GgufType::Q4_1 => "q4_1",
            GgufType::Q5_0 => "q5_0",
            GgufType::Q5_1 => "q5_1",
            GgufType::Q2K => "q2_k",
            GgufType::Q3K => "q3_k",
            GgufType::Q4K => "q4_k",
            GgufType::Q5K => "q5_k",
            GgufType::Q6K => "q6_k",
            GgufType::Q8K => "q8_k",
            GgufType::IQ4NL => "iq4_nl",
            GgufType::IQ4XS => "iq4_xs",
            GgufType::IQ3S => "iq3_s",
            GgufType::IQ3XXS => "iq3_xxs",
            GgufType::IQ2S => "iq2_s",
            GgufType::IQ2XS => "iq2_xs",
            GgufType::IQ2XXS => "iq2_xxs",
            GgufType::IQ1S => "iq1_s",
            GgufType::IQ1M => "iq1_m",
            GgufType::TQ1_0 => "tq1_0",
            GgufType::TQ2_0 => "tq2_0",
        }
    }

    /// The name a one-type variant is written with: ggml's name without underscores (`q4k`,
    /// `q80`, `iq4xs`), which keeps it apart from llama.cpp's file types (`q8_0`, `q4_k_m`).
    pub fn short_name(self) -> String {
        self.ggml_name().replace('_', "")
    }

    /// Elements per block.
    pub fn block_size(self) -> usize {
        match self {
            GgufType::Q8_0
            | GgufType::Q4_0
            | GgufType::Q4_1
            | GgufType::Q5_0
            | GgufType::Q5_1
            | GgufType::IQ4NL => 32,
            _ => 256,
        }
    }

    /// Bytes per block (ggml's layout).
    pub fn type_size(self) -> usize {
        match self {
            GgufType::Q8_0 => 34,
            GgufType::Q4_0 => 18,
            GgufType::Q4_1 => 20,
            GgufType::Q5_0 => 22,
            GgufType::Q5_1 => 24,
            GgufType::Q2K => 84,
            GgufType::Q3K => 110,
            GgufType::Q4K => 144,
            GgufType::Q5K => 176,
            GgufType::Q6K => 210,
            GgufType::Q8K => 292,
            GgufType::IQ4NL => 18,
            GgufType::IQ4XS => 136,
            GgufType::IQ3S => 110,
            GgufType::IQ3XXS => 98,
            GgufType::IQ2S => 82,
            GgufType::IQ2XS => 74,
            GgufType::IQ2XXS => 66,
            GgufType::IQ1S => 50,
            GgufType::IQ1M => 56,
            GgufType::TQ1_0 => 54,
            GgufType::TQ2_0 => 66,
        }
    }

    /// Bits per weight of the storage format.
    pub fn bits_per_weight(self) -> f64 {
        self.type_size() as f64 * 8.0 / self.block_size() as f64
    }

    /// A one-type name: the compact spelling (`q4k`, `q80`, `iq4xs`) or ggml's own name.
    pub fn parse(s: &str) -> Option<GgufType> {
        let norm: String = s
            .to_ascii_lowercase()
            .chars()
            .filter(|c| *c != '_')
            .collect();
        GgufType::ALL.into_iter().find(|t| t.short_name() == norm)
    }
}

/// A llama.cpp file type (`llama_ftype`): what `llama-quantize` is asked for. Each names a
/// default block type and a per-tensor recipe (`output.weight`, `attn_v`, `ffn_down` at
/// higher precision by position).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum GgufFtype {
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2K,
    Q2KS,
    Q3KS,
    Q3KM,
    Q3KL,
    Q4KS,
    Q4KM,
    Q5KS,
    Q5KM,
    Q6K,
    IQ2XXS,
    IQ2XS,
    IQ2S,
    IQ2M,
    IQ1S,
    IQ1M,
    IQ3XXS,
    IQ3XS,
    IQ3S,
    IQ3M,
    IQ4NL,
    IQ4XS,
    TQ1_0,
    TQ2_0,
}

impl GgufFtype {
    /// Every file type.
    pub const ALL: [GgufFtype; 29] = [
        GgufFtype::Q4_0,
        GgufFtype::Q4_1,
        GgufFtype::Q5_0,
        GgufFtype::Q5_1,
        GgufFtype::Q8_0,
        GgufFtype::Q2K,
        GgufFtype::Q2KS,
        GgufFtype::Q3KS,
        GgufFtype::Q3KM,
        GgufFtype::Q3KL,
        GgufFtype::Q4KS,
        GgufFtype::Q4KM,
        GgufFtype::Q5KS,
        GgufFtype::Q5KM,
        GgufFtype::Q6K,
        GgufFtype::IQ2XXS,
        GgufFtype::IQ2XS,
        GgufFtype::IQ2S,
        GgufFtype::IQ2M,
        GgufFtype::IQ1S,
        GgufFtype::IQ1M,
        GgufFtype::IQ3XXS,
        GgufFtype::IQ3XS,
        GgufFtype::IQ3S,
        GgufFtype::IQ3M,
        GgufFtype::IQ4NL,
        GgufFtype::IQ4XS,
        GgufFtype::TQ1_0,
        GgufFtype::TQ2_0,
    ];

    /// `llama-quantize`'s name in lower case (`q4_k_m`).
    pub fn name(self) -> &'static str {
        use GgufFtype::*;
        match self {
            Q4_0 => "q4_0",
            Q4_1 => "q4_1",
            Q5_0 => "q5_0",
            Q5_1 => "q5_1",
            Q8_0 => "q8_0",
            Q2K => "q2_k",
            Q2KS => "q2_k_s",
            Q3KS => "q3_k_s",
            Q3KM => "q3_k_m",
            Q3KL => "q3_k_l",
            Q4KS => "q4_k_s",
            Q4KM => "q4_k_m",
            Q5KS => "q5_k_s",
            Q5KM => "q5_k_m",
            Q6K => "q6_k",
            IQ2XXS => "iq2_xxs",
            IQ2XS => "iq2_xs",
            IQ2S => "iq2_s",
            IQ2M => "iq2_m",
            IQ1S => "iq1_s",
            IQ1M => "iq1_m",
            IQ3XXS => "iq3_xxs",
            IQ3XS => "iq3_xs",
            IQ3S => "iq3_s",
            IQ3M => "iq3_m",
            IQ4NL => "iq4_nl",
            IQ4XS => "iq4_xs",
            TQ1_0 => "tq1_0",
            TQ2_0 => "tq2_0",
        }
    }

    /// The `general.file_type` number llama.cpp records (`enum llama_ftype`).
    pub fn id(self) -> u32 {
        use GgufFtype::*;
        match self {
            Q4_0 => 2,
            Q4_1 => 3,
            Q8_0 => 7,
            Q5_0 => 8,
            Q5_1 => 9,
            Q2K => 10,
            Q3KS => 11,
            Q3KM => 12,
            Q3KL => 13,
            Q4KS => 14,
            Q4KM => 15,
            Q5KS => 16,
            Q5KM => 17,
            Q6K => 18,
            IQ2XXS => 19,
            IQ2XS => 20,
            Q2KS => 21,
            IQ3XS => 22,
            IQ3XXS => 23,
            IQ1S => 24,
            IQ4NL => 25,
            IQ3S => 26,
            IQ3M => 27,
            IQ2S => 28,
            IQ2M => 29,
            IQ4XS => 30,
            IQ1M => 31,
            TQ1_0 => 36,
            TQ2_0 => 37,
        }
    }

    /// The block type most tensors get (`llama_ftype_get_default_type`).
    pub fn default_type(self) -> GgufType {
        use GgufFtype as F;
        use GgufType as T;
        match self {
            F::Q4_0 => T::Q4_0,
            F::Q4_1 => T::Q4_1,
            F::Q5_0 => T::Q5_0,
            F::Q5_1 => T::Q5_1,
            F::Q8_0 => T::Q8_0,
            F::Q2K | F::Q2KS => T::Q2K,
            F::IQ3XS => T::IQ3S,
            F::Q3KS | F::Q3KM | F::Q3KL => T::Q3K,
            F::Q4KS | F::Q4KM => T::Q4K,
            F::Q5KS | F::Q5KM => T::Q5K,
            F::Q6K => T::Q6K,
            F::TQ1_0 => T::TQ1_0,
            F::TQ2_0 => T::TQ2_0,
            F::IQ2XXS => T::IQ2XXS,
            F::IQ2XS | F::IQ2S => T::IQ2XS,
            F::IQ2M => T::IQ2S,
            F::IQ3XXS => T::IQ3XXS,
            F::IQ1S => T::IQ1S,
            F::IQ1M => T::IQ1M,
            F::IQ4NL => T::IQ4NL,
            F::IQ4XS => T::IQ4XS,
            F::IQ3S | F::IQ3M => T::IQ3S,
        }
    }

    /// A file type by `llama-quantize`'s name, case-insensitive, with its aliases (`q3_k`,
    /// `q4_k`, `q5_k` are the `_m` mixes).
    pub fn parse(s: &str) -> Option<GgufFtype> {
        let s = s.to_ascii_lowercase();
        let s = match s.as_str() {
            "q3_k" => "q3_k_m",
            "q4_k" => "q4_k_m",
            "q5_k" => "q5_k_m",
            other => other,
        };
        GgufFtype::ALL.into_iter().find(|f| f.name() == s)
    }
}

/// Where a GGUF variant's importance matrix comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImatrixSource {
    /// A file `llama-imatrix` wrote (legacy `.dat`/`.imatrix`, or GGUF).
    File(PathBuf),
    /// Computed on the reference from a bundled prompt suite, as `llama-imatrix` computes it.
    Suite(String),
}

impl ImatrixSource {
    /// `imatrix=VALUE`: a value with a path separator or a dot names a file, else a suite.
    pub fn parse(v: &str) -> ImatrixSource {
        if v.contains(['/', '\\', '.']) {
            ImatrixSource::File(PathBuf::from(v))
        } else {
            ImatrixSource::Suite(v.to_string())
        }
    }
}

impl std::fmt::Display for ImatrixSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImatrixSource::File(p) => write!(f, "{}", p.display()),
            ImatrixSource::Suite(s) => f.write_str(s),
        }
    }
}
