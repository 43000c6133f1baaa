//! ggml's tensor types as llama.cpp writes them: every block type's quantizer (byte-identical
//! to `llama-quantize`, with and without an importance matrix) and dequantizer, GGUF files
//! read and written the way llama.cpp lays them out, llama.cpp's file-type recipes
//! (`Q4_K_M`, `IQ4_XS`, ...), importance matrices, and tensors of the types candle cannot
//! execute (the i-quants and ternary types) run by decoding their blocks.
//!
//! The algorithms and block layouts are those of ggml (`ggml/src/ggml-quants.c`,
//! `ggml-common.h`) and llama.cpp (`src/llama-quant.cpp`), written here afresh; the lookup
//! tables are transcribed from `ggml-common.h` with their source named.

pub mod blocks;
pub mod file;
pub mod imatrix;
pub mod imatrix_compute;
pub mod iquants;
pub mod kblocks;
pub mod kquants;
pub mod legacy;
pub mod recipe;
pub mod ternary;
mod types;

pub use blocks::BlockTensor;
pub use types::{dequantize, quantize, GgmlType, QuantError};

/// f32 to IEEE half bits, round to nearest even (ggml's `GGML_FP32_TO_FP16`).
#[inline]
pub(crate) fn f16_bits(x: f32) -> u16 {
    half::f16::from_f32(x).to_bits()
}

/// IEEE half bits to f32.
#[inline]
pub(crate) fn f16_from_bits(b: u16) -> f32 {
    half::f16::from_bits(b).to_f32()
}

/// `x` rounded through f16 and back, as ggml reads back a scale it just stored.
#[inline]
pub(crate) fn f16_round(x: f32) -> f32 {
    f16_from_bits(f16_bits(x))
}

/// The little-endian f16 at byte `at` of `b`, as f32.
#[inline]
pub(crate) fn f16_val(b: &[u8], at: usize) -> f32 {
    f16_from_bits(u16::from_le_bytes([b[at], b[at + 1]]))
}
