//! Calibration: the reference model run over calibration token sequences, and the statistics
//! of every linear layer's input that calibrated compressors read.
//!
//! [`capture`] hooks the forward pass ([`Model::layer_forward`](crate::model::Model::layer_forward))
//! and accumulates, per decoder layer and per distinct linear input, what a method asks for:
//! the GPTQ/SparseGPT Hessian `H = 2 XᵀX / n` (f32, as llm-compressor accumulates it), the
//! per-channel mean `|x|` (AWQ), maximum `|x|` (SmoothQuant, static FP8 scales) and sum of
//! squares (Wanda's input-column norms). [`sequential`] drives a [`LayerCompressor`] layer
//! by layer ("true sequential"): layer `l` is calibrated on hidden states computed with
//! layers `< l` already compressed when the method propagates its own error (GPTQ,
//! SparseGPT, Wanda), or with the reference weights when it does not (AWQ, SmoothQuant), as
//! llm-compressor's sequential pipeline does.

pub mod capture;
pub mod data;
pub mod kv;
pub mod sequential;
pub mod store;

pub use capture::{InputGroup, InputStats, LayerStats, Wants};
pub use sequential::{calibrate, CalibTokens, Chain, LayerCompressor, LayerContext, LayerMatrix};
