//! compsafe-engine: everything that touches a tensor.
//!
//! Model loading (safetensors, GGUF, tokenizer, chat template), compression methods, batched
//! generation, log-likelihood scoring and logit metrics.

pub mod compress;
pub mod config;
pub mod device;
pub mod distill;
pub mod error;
pub mod fixture;
pub mod formats;
pub mod generate;
pub mod gguf_header;
pub mod gguf_write;
pub mod integrity;
pub mod linear;
pub mod loader;
pub mod manifest;
pub mod model;
pub mod quant;
pub mod requant;
pub mod score;
pub mod tokenizer;
pub mod variant;

pub use config::ModelConfig;
pub use error::{EngineError, Result};
pub use generate::{generate, GenerateOptions, Generation, StopReason};
pub use loader::Checkpoint;
pub use model::Model;
pub use tokenizer::{ChatMessage, TextCodec};
