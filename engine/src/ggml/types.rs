//! The ggml tensor types: ids, names and block geometry as GGUF files record them, and one
//! entry point each to quantize rows and to dequantize blocks of any type llama.cpp writes.

use candle_core::quantized::GgmlDType;
use compsafe_core::GgufType;

use super::{iquants, kblocks, legacy, ternary};

/// A ggml tensor type (the numbering of `enum ggml_type` in ggml.h, which GGUF files store).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    Q8K,
    IQ2XXS,
    IQ2XS,
    IQ3XXS,
    IQ1S,
    IQ4NL,
    IQ3S,
    IQ2S,
    IQ4XS,
    I8,
    I16,
    I32,
    I64,
    F64,
    IQ1M,
    BF16,
    TQ1_0,
    TQ2_0,
}

/// Why a tensor could not be quantized or dequantized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantError {
    /// The row length is not a whole number of blocks.
    #[error("rows of {cols} values are not a whole number of {block}-value {ty} blocks")]
    Shape {
        /// The type.
        ty: &'static str,
        /// Row length.
        cols: usize,
        /// Block length.
        block: usize,
    },
    /// The byte count does not match the element count.
    #[error("{ty}: {bytes} bytes do not hold {n} values ({expected} expected)")]
    Size {
        /// The type.
        ty: &'static str,
        /// Bytes given.
        bytes: usize,
        /// Values asked for.
        n: usize,
        /// Bytes expected.
        expected: usize,
    },
    /// The type cannot be written (or read) here.
    #[error("{0}")]
    Unsupported(String),
    /// The importance matrix does not fit the rows.
    #[error("{0}")]
    Imatrix(String),
}

const ALL: [GgmlType; 31] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q8_1,
    GgmlType::Q2K,
    GgmlType::Q3K,
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
    GgmlType::Q8K,
    GgmlType::IQ2XXS,
    GgmlType::IQ2XS,
    GgmlType::IQ3XXS,
    GgmlType::IQ1S,
    GgmlType::IQ4NL,
    GgmlType::IQ3S,
    GgmlType::IQ2S,
    GgmlType::IQ4XS,
    GgmlType::I8,
    GgmlType::I16,
    GgmlType::I32,
    GgmlType::I64,
    GgmlType::F64,
    GgmlType::IQ1M,
    GgmlType::BF16,
    GgmlType::TQ1_0,
    GgmlType::TQ2_0,
];

impl GgmlType {
    /// The id GGUF files store.
    pub fn id(self) -> u32 {
        use GgmlType::*;
        match self {
            F32 => 0,
            F16 => 1,
            Q4_0 => 2,
            Q4_1 => 3,
            Q5_0 => 6,
            Q5_1 => 7,
            Q8_0 => 8,
            Q8_1 => 9,
            Q2K => 10,
            Q3K => 11,
            Q4K => 12,
            Q5K => 13,
            Q6K => 14,
            Q8K => 15,
            IQ2XXS => 16,
            IQ2XS => 17,
            IQ3XXS => 18,
            IQ1S => 19,
            IQ4NL => 20,
            IQ3S => 21,
            IQ2S => 22,
            IQ4XS => 23,
            I8 => 24,
            I16 => 25,
            I32 => 26,
            I64 => 27,
            F64 => 28,
            IQ1M => 29,
            BF16 => 30,
            TQ1_0 => 34,
            TQ2_0 => 35,
        }
    }

    /// The type of a GGUF type id.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        ALL.into_iter().find(|t| t.id() == id)
    }

    /// ggml's name (`q4_K`, `iq4_xs`, `f32`), as llama.cpp prints it.
    pub fn name(self) -> &'static str {
        use GgmlType::*;
        match self {
            F32 => "f32",
            F16 => "f16",
            Q4_0 => "q4_0",
            Q4_1 => "q4_1",
            Q5_0 => "q5_0",
            Q5_1 => "q5_1",
            Q8_0 => "q8_0",
            Q8_1 => "q8_1",
            Q2K => "q2_K",
            Q3K => "q3_K",
            Q4K => "q4_K",
            Q5K => "q5_K",
            Q6K => "q6_K",
            Q8K => "q8_K",
            IQ2XXS => "iq2_xxs",
            IQ2XS => "iq2_xs",
            IQ3XXS => "iq3_xxs",
            IQ1S => "iq1_s",
            IQ4NL => "iq4_nl",
            IQ3S => "iq3_s",
            IQ2S => "iq2_s",
            IQ4XS => "iq4_xs",
            I8 => "i8",
            I16 => "i16",
            I32 => "i32",
            I64 => "i64",
            F64 => "f64",
            IQ1M => "iq1_m",
            BF16 => "bf16",
            TQ1_0 => "tq1_0",
            TQ2_0 => "tq2_0",
        }
    }

    /// Values per block.
    pub fn block_size(self) -> usize {
        use GgmlType::*;
        match self {
            F32 | F16 | BF16 | I8 | I16 | I32 | I64 | F64 => 1,
            Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q8_1 | IQ4NL => 32,
            _ => 256,
        }
    }

    /// Bytes per block (ggml's `type_size`).
    pub fn type_size(self) -> usize {
        use GgmlType::*;
        match self {
            F32 | I32 => 4,
            F16 | BF16 | I16 => 2,
            I8 => 1,
            I64 | F64 => 8,
            Q4_0 => 18,
            Q4_1 => 20,
            Q5_0 => 22,
            Q5_1 => 24,
            Q8_0 => 34,
            Q8_1 => 36,
            Q2K => 84,
            Q3K => 110,
            Q4K => 144,
            Q5K => 176,
            Q6K => 210,
            Q8K => 292,
            IQ2XXS => 66,
            IQ2XS => 74,
            IQ3XXS => 98,
            IQ1S => 50,
            IQ4NL => 18,
            IQ3S => 110,
            IQ2S => 82,
            IQ4XS => 136,
            IQ1M => 56,
            TQ1_0 => 54,
            TQ2_0 => 66,
        }
    }

    /// Bytes of `n` values, when `n` is a whole number of blocks.
    pub fn bytes_for(self, n: u64) -> Option<u64> {
        let b = self.block_size() as u64;
        n.is_multiple_of(b)
            .then(|| (n / b).checked_mul(self.type_size() as u64))
            .flatten()
    }

    /// Bits per weight of the storage.
    pub fn bits_per_weight(self) -> f64 {
        self.type_size() as f64 * 8.0 / self.block_size() as f64
    }

    /// True for block-quantized types (not plain floats or integers).
    pub fn is_quantized(self) -> bool {
        self.block_size() > 1
    }

    /// candle's type, for the types candle's quantized matmul executes.
    pub fn candle(self) -> Option<GgmlDType> {
        use GgmlType::*;
        Some(match self {
            F32 => GgmlDType::F32,
            F16 => GgmlDType::F16,
            BF16 => GgmlDType::BF16,
            Q4_0 => GgmlDType::Q4_0,
            Q4_1 => GgmlDType::Q4_1,
            Q5_0 => GgmlDType::Q5_0,
            Q5_1 => GgmlDType::Q5_1,
            Q8_0 => GgmlDType::Q8_0,
            Q8_1 => GgmlDType::Q8_1,
            Q2K => GgmlDType::Q2K,
            Q3K => GgmlDType::Q3K,
            Q4K => GgmlDType::Q4K,
            Q5K => GgmlDType::Q5K,
            Q6K => GgmlDType::Q6K,
            Q8K => GgmlDType::Q8K,
            _ => return None,
        })
    }

    /// The ggml type of a variant's GGUF type.
    pub fn of(ty: GgufType) -> GgmlType {
        use GgmlType as G;
        match ty {
            GgufType::Q8_0 => G::Q8_0,
            GgufType::Q4_0 => G::Q4_0,
            GgufType::Q4_1 => G::Q4_1,
            GgufType::Q5_0 => G::Q5_0,
            GgufType::Q5_1 => G::Q5_1,
            GgufType::Q2K => G::Q2K,
            GgufType::Q3K => G::Q3K,
            GgufType::Q4K => G::Q4K,
            GgufType::Q5K => G::Q5K,
            GgufType::Q6K => G::Q6K,
            GgufType::Q8K => G::Q8K,
            GgufType::IQ4NL => G::IQ4NL,
            GgufType::IQ4XS => G::IQ4XS,
            GgufType::IQ3S => G::IQ3S,
            GgufType::IQ3XXS => G::IQ3XXS,
            GgufType::IQ2S => G::IQ2S,
            GgufType::IQ2XS => G::IQ2XS,
            GgufType::IQ2XXS => G::IQ2XXS,
            GgufType::IQ1S => G::IQ1S,
            GgufType::IQ1M => G::IQ1M,
            GgufType::TQ1_0 => G::TQ1_0,
            GgufType::TQ2_0 => G::TQ2_0,
        }
    }

    /// ggml refuses to quantize these without an importance matrix
    /// (`ggml_quantize_requires_imatrix`).
    pub fn requires_imatrix(self) -> bool {
        matches!(self, GgmlType::IQ2XXS | GgmlType::IQ2XS | GgmlType::IQ1S)
    }

    /// True when [`quantize`] writes this type.
    pub fn can_quantize(self) -> bool {
        use GgmlType::*;
        matches!(
            self,
            F32 | F16
                | BF16
                | Q4_0
                | Q4_1
                | Q5_0
                | Q5_1
                | Q8_0
                | Q2K
                | Q3K
                | Q4K
                | Q5K
                | Q6K
                | Q8K
                | TQ1_0
                | TQ2_0
        ) || iquants::can_quantize(self)
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

fn quantize_row(
    ty: GgmlType,
    x: &[f32],
    qw: Option<&[f32]>,
    out: &mut Vec<u8>,
) -> Result<(), QuantError> {
    use GgmlType::*;
    match ty {
        F32 => x
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        F16 => x
            .iter()
            .for_each(|v| out.extend_from_slice(&super::f16_bits(*v).to_le_bytes())),
        BF16 => x
            .iter()
            .for_each(|v| out.extend_from_slice(&half::bf16::from_f32(*v).to_bits().to_le_bytes())),
        Q4_0 => legacy::quantize_q4_0(x, qw, out),
        Q4_1 => legacy::quantize_q4_1(x, qw, out),
        Q5_0 => legacy::quantize_q5_0(x, qw, out),
        Q5_1 => legacy::quantize_q5_1(x, qw, out),
        Q8_0 => legacy::quantize_q8_0(x, out),
        Q2K => kblocks::quantize_q2_k(x, qw, out),
        Q3K => kblocks::quantize_q3_k(x, qw, out),
        Q4K => kblocks::quantize_q4_k(x, qw, out),
        Q5K => kblocks::quantize_q5_k(x, qw, out),
        Q6K => kblocks::quantize_q6_k(x, qw, out),
        Q8K => kblocks::quantize_q8_k(x, out),
        TQ1_0 => ternary::quantize_tq1_0(x, out),
        TQ2_0 => ternary::quantize_tq2_0(x, out),
        other => return iquants::quantize_row(other, x, qw, out),
    }
    Ok(())
}

/// Quantizes `data` (rows of `n_per_row` values) to `ty` as `llama-quantize` does, with the
/// importance matrix `imatrix` (one weight per column) when given; returns the blocks.
pub fn quantize(
    ty: GgmlType,
    data: &[f32],
    n_per_row: usize,
    imatrix: Option<&[f32]>,
) -> Result<Vec<u8>, QuantError> {
    if !ty.can_quantize() {
        return Err(QuantError::Unsupported(format!(
            "quantizing to {} is not implemented",
            ty.name()
        )));
    }
    if n_per_row == 0
        || !n_per_row.is_multiple_of(ty.block_size())
        || !data.len().is_multiple_of(n_per_row)
    {
        return Err(QuantError::Shape {
            ty: ty.name(),
            cols: n_per_row,
            block: ty.block_size(),
        });
    }
    if let Some(q) = imatrix {
        if q.len() != n_per_row {
            return Err(QuantError::Imatrix(format!(
                "the importance matrix has {} values for rows of {n_per_row}",
                q.len()
            )));
        }
    } else if ty.requires_imatrix() {
        return Err(QuantError::Imatrix(format!(
            "{} needs an importance matrix (as llama-quantize does)",
            ty.name()
        )));
    }
    let row_bytes = n_per_row / ty.block_size() * ty.type_size();
    let rows: Vec<&[f32]> = data.chunks_exact(n_per_row).collect();
    // Rows are independent: quantize contiguous runs of them on every core.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(rows.len().div_ceil(8).max(1));
    let per = rows.len().div_ceil(threads.max(1)).max(1);
    let parts: Vec<Result<Vec<u8>, QuantError>> = std::thread::scope(|s| {
        let handles: Vec<_> = rows
            .chunks(per)
            .map(|chunk| {
                s.spawn(move || {
                    let mut out = Vec::with_capacity(chunk.len() * row_bytes);
                    for r in chunk {
                        quantize_row(ty, r, imatrix, &mut out)?;
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(QuantError::Unsupported(
                        "a quantizer thread panicked".into(),
                    ))
                })
            })
            .collect()
    });
    let mut out = Vec::with_capacity(rows.len() * row_bytes);
    for p in parts {
        out.extend_from_slice(&p?);
    }
    Ok(out)
}

/// Dequantizes `n` values of type `ty` from `bytes` (whole blocks, exactly).
pub fn dequantize(ty: GgmlType, bytes: &[u8], n: usize) -> Result<Vec<f32>, QuantError> {
    let mut y = vec![0.0f32; n];
    dequantize_into(ty, bytes, &mut y)?;
    Ok(y)
}

/// Dequantizes into `y` (its length is the value count).
pub fn dequantize_into(ty: GgmlType, bytes: &[u8], y: &mut [f32]) -> Result<(), QuantError> {
    use GgmlType::*;
    let n = y.len();
    let expected = ty.bytes_for(n as u64).ok_or(QuantError::Shape {
        ty: ty.name(),
        cols: n,
        block: ty.block_size(),
    })? as usize;
    if bytes.len() != expected {
        return Err(QuantError::Size {
            ty: ty.name(),
            bytes: bytes.len(),
            n,
            expected,
        });
    }
    match ty {
        F32 => bytes
            .chunks_exact(4)
            .zip(y.iter_mut())
            .for_each(|(b, v)| *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        F16 => bytes
            .chunks_exact(2)
            .zip(y.iter_mut())
            .for_each(|(b, v)| *v = super::f16_val(b, 0)),
        BF16 => bytes.chunks_exact(2).zip(y.iter_mut()).for_each(|(b, v)| {
            *v = half::bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()
        }),
        Q4_0 => legacy::dequantize_q4_0(bytes, y),
        Q4_1 => legacy::dequantize_q4_1(bytes, y),
        Q5_0 => legacy::dequantize_q5_0(bytes, y),
        Q5_1 => legacy::dequantize_q5_1(bytes, y),
        Q8_0 => legacy::dequantize_q8_0(bytes, y),
        Q2K => kblocks::dequantize_q2_k(bytes, y),
        Q3K => kblocks::dequantize_q3_k(bytes, y),
        Q4K => kblocks::dequantize_q4_k(bytes, y),
        Q5K => kblocks::dequantize_q5_k(bytes, y),
        Q6K => kblocks::dequantize_q6_k(bytes, y),
        Q8K => kblocks::dequantize_q8_k(bytes, y),
        TQ1_0 => ternary::dequantize_tq1_0(bytes, y),
        TQ2_0 => ternary::dequantize_tq2_0(bytes, y),
        other => return iquants::dequantize(other, bytes, y),
    }
    Ok(())
}
