//! Quantization numerics shared by the checkpoint formats ([`crate::formats`]) and the
//! compressors: number encodings, code tables, packing, weight grids and activation
//! quantization, each bit-exact with the library that defines it (named in each module).
//!
//! | module | what |
//! |---|---|
//! | [`fp8`] | FP8 E4M3 encode (nearest, ties to even, saturating) and decode |
//! | [`bnb`] | bitsandbytes' NF4/FP4 tables, 4-bit and 8-bit blockwise quantization |
//! | [`pack`] | codes packed into 32-bit words: bit streams (GPTQ, compressed-tensors), AWQ order |
//! | [`int`] | round-to-nearest integer grids of GPTQ, AWQ and compressed-tensors |
//! | [`act`] | activation and KV-cache quantize-dequantize (int8 and FP8, per token or static) |

pub mod act;
pub mod bnb;
pub mod fp8;
pub mod int;
pub mod pack;
