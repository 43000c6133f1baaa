//! compsafe-engine: everything that touches a tensor.
//!
//! Model loading (safetensors, GGUF, tokenizer, chat template), compression methods, batched
//! generation, log-likelihood scoring and logit metrics.

pub mod calib;
pub mod chat;
pub mod compress;
pub mod config;
pub mod device;
pub mod distill;
pub mod error;
pub mod fixture;
pub mod formats;
pub mod generate;
pub mod ggml;
pub mod gguf_header;
pub mod gguf_load;
pub mod gguf_quantize;
pub mod gguf_write;
pub mod integrity;
pub mod linear;
pub mod loader;
pub mod manifest;
pub mod model;
pub mod quant;
pub mod requant;
pub mod sampling;
pub mod score;
pub mod tokenizer;
pub mod variant;

pub use chat::{ChatDate, ChatOptions, ChatTemplate};
pub use config::ModelConfig;
pub use error::{EngineError, Fault, Result};
pub use generate::{
    generate, generate_sampled, GenerateOptions, Generation, SampleRequest, StopReason,
};
pub use loader::Checkpoint;
pub use model::Model;
pub use sampling::{sample_seed, Sampling};
pub use tokenizer::{ChatMessage, TextCodec};
