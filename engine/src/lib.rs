//! compsafe-engine: everything that touches a tensor.
//!
//! Model loading (safetensors, GGUF, tokenizer, chat template), compression methods, batched
//! generation, log-likelihood scoring and logit metrics.

pub mod compress;
pub mod error;

pub use error::{EngineError, Result};
