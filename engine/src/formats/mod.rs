//! Quantized checkpoint formats as people download them: one module per format, each
//! detecting its settings, validating every stored tensor against them and decoding the
//! linear layers into [`PackedWeight`]s that stay packed in memory and are dequantized by the
//! format's own formula at every product.
//!
//! | format | settings | module |
//! |---|---|---|
//! | GPTQ (AutoGPTQ, GPTQModel) | `quant_method = "gptq"` or `quantize_config.json` | [`gptq`] |
//! | AWQ, AutoAWQ GEMM layout | `quant_method = "awq"` or `quant_config.json` | [`awq`] |
//! | compressed-tensors (llm-compressor, vLLM) | `quant_method = "compressed-tensors"` | [`ct`] |
//! | bitsandbytes (transformers) | `quant_method = "bitsandbytes"` | [`bnb`] |
//!
//! The settings are read from `quantization_config` in config.json, else from
//! `quantize_config.json` or `quant_config.json` beside it ([`json::quantization_settings`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};

use crate::config::ModelConfig;
use crate::error::{EngineError, Result};

pub mod awq;
pub mod bnb;
pub mod compare;
pub mod ct;
pub mod gptq;
pub mod json;
pub mod packed;
pub mod tensors;

pub use packed::{ActQuant, KvQuant, PackedWeight, RoundTo};
use tensors::RawTensors;

/// A checkpoint format and its settings.
#[derive(Debug, Clone)]
pub enum Format {
    /// GPTQ.
    Gptq(gptq::GptqConfig),
    /// AWQ in AutoAWQ's GEMM layout.
    Awq(awq::AwqConfig),
    /// compressed-tensors.
    CompressedTensors(ct::CtConfig),
    /// bitsandbytes.
    Bnb(bnb::BnbConfig),
}

impl Format {
    /// Detects the format of a model directory from its quantization settings (`None`: an
    /// unquantized checkpoint).
    pub fn detect(dir: &Path) -> Result<Option<(Format, PathBuf)>> {
        let Some((file, at, value)) = json::quantization_settings(dir)? else {
            return Ok(None);
        };
        let f = json::Fields {
            file: &file,
            at,
            value: &value,
        };
        let method = f
            .str_opt("quant_method")?
            .ok_or_else(|| f.err("quant_method", "missing"))?;
        let format = match method.to_ascii_lowercase().as_str() {
            "gptq" => Format::Gptq(gptq::GptqConfig::parse(&f)?),
            "awq" => Format::Awq(awq::AwqConfig::parse(&f)?),
            "compressed-tensors" | "compressed_tensors" => {
                Format::CompressedTensors(ct::CtConfig::parse(&f)?)
            }
            "bitsandbytes" => Format::Bnb(bnb::BnbConfig::parse(&f)?),
            other => {
                return Err(f.err(
                    "quant_method",
                    format!(
                        "= {other:?}: supported are gptq, awq, compressed-tensors and bitsandbytes"
                    ),
                ))
            }
        };
        Ok(Some((format, file)))
    }

    /// The format's name (`gptq`, `awq`, `compressed-tensors`, `bitsandbytes`).
    pub fn kind(&self) -> &'static str {
        match self {
            Format::Gptq(_) => "gptq",
            Format::Awq(_) => "awq",
            Format::CompressedTensors(_) => "compressed-tensors",
            Format::Bnb(_) => "bitsandbytes",
        }
    }

    /// The method with its settings (`gptq:w4g128:act`, `awq:w4g128`, ...).
    pub fn method(&self) -> String {
        match self {
            Format::Gptq(c) => c.method(),
            Format::Awq(c) => c.method(),
            Format::CompressedTensors(c) => c.method(),
            Format::Bnb(c) => c.method(),
        }
    }

    fn decode_layer(&self, raw: &RawTensors, layer: &Layer) -> Result<Option<PackedWeight>> {
        match self {
            Format::Gptq(c) => gptq::decode(c, raw, layer),
            Format::Awq(c) => awq::decode(c, raw, layer),
            Format::CompressedTensors(c) => ct::decode(c, raw, layer),
            Format::Bnb(c) => bnb::decode(c, raw, layer),
        }
    }
}

/// A linear layer of the model: its module name and shape.
#[derive(Debug, Clone)]
pub struct Layer {
    /// Module name (`model.layers.0.self_attn.q_proj`).
    pub prefix: String,
    /// Output features.
    pub out_features: usize,
    /// Input features.
    pub in_features: usize,
}

/// What a quantized checkpoint holds, decoded.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// Float tensors by HF name (f32 on the device) with their stored bits per weight.
    pub dense: Vec<(String, Tensor, f64)>,
    /// Packed linear weights by HF weight name (`...q_proj.weight`).
    pub packed: BTreeMap<String, Arc<PackedWeight>>,
    /// KV-cache quantization.
    pub kv: Option<KvQuant>,
    /// What the checkpoint is.
    pub info: FormatInfo,
}

/// A quantized checkpoint's description for reports.
#[derive(Debug, Clone, PartialEq)]
pub struct FormatInfo {
    /// The format (`gptq`, ...).
    pub kind: String,
    /// The method with its settings.
    pub method: String,
    /// The file its settings were read from.
    pub settings_file: PathBuf,
    /// Linear layers stored quantized.
    pub packed_layers: usize,
    /// Stored bits per weight over the quantized layers (codes, scales, zero points, indices).
    pub packed_bits_per_weight: f64,
}

impl FormatInfo {
    /// How compsafe executes it.
    pub fn execution(&self) -> String {
        format!(
            "{} layers kept packed ({:.3} bits/weight), dequantized by the format's formula at each product",
            self.packed_layers, self.packed_bits_per_weight
        )
    }
}

/// The linear layers of a model by HF weight name.
fn linear_layers(config: &ModelConfig) -> Vec<(String, Layer)> {
    config
        .expected_shapes()
        .into_iter()
        .filter(|(name, shape)| {
            shape.len() == 2 && name != "model.embed_tokens.weight" && name.ends_with(".weight")
        })
        .map(|(name, shape)| {
            let prefix = name.trim_end_matches(".weight").to_string();
            (
                name,
                Layer {
                    prefix,
                    out_features: shape[0],
                    in_features: shape[1],
                },
            )
        })
        .collect()
}

/// Decodes every tensor of a quantized checkpoint (`files` of format `format`).
pub fn decode(
    format: &Format,
    settings_file: &Path,
    config: &ModelConfig,
    files: &[PathBuf],
    device: &Device,
) -> Result<Decoded> {
    let raw = RawTensors::read(files)?;
    let mut packed = BTreeMap::new();
    for (name, layer) in linear_layers(config) {
        if let Some(w) = format.decode_layer(&raw, &layer)? {
            packed.insert(name, Arc::new(w));
        }
    }
    let mut dense = Vec::new();
    for (name, shape) in config.expected_shapes() {
        if packed.contains_key(&name) {
            continue;
        }
        let Some(t) = raw.get(&name) else {
            return Err(EngineError::bad_file(
                &raw.first_file,
                format!("tensor `{name}` is missing from the checkpoint"),
            ));
        };
        if !matches!(
            t.dtype,
            safetensors::Dtype::F32 | safetensors::Dtype::F16 | safetensors::Dtype::BF16
        ) {
            return Err(EngineError::bad_file(
                &t.file,
                format!(
                    "tensor `{name}` has dtype {:?}, but {} stores no quantized form of it; expected F32, F16 or BF16",
                    t.dtype,
                    format.kind()
                ),
            ));
        }
        t.expect_shape(&shape, "config.json")?;
        let v = t.floats()?;
        dense.push((
            name,
            Tensor::from_vec(v, shape, &Device::Cpu)?
                .to_dtype(DType::F32)?
                .to_device(device)?,
            t.bits() as f64,
        ));
    }
    let kv = match format {
        Format::CompressedTensors(c) => ct::kv_quant(c, &raw, config.num_layers)?,
        _ => None,
    };
    let (n, bytes) = packed
        .values()
        .fold((0usize, 0u64), |(n, b), w: &Arc<PackedWeight>| {
            (n + w.numel(), b + w.stored_bytes)
        });
    if packed.is_empty() {
        return Err(EngineError::bad_file(
            settings_file,
            format!(
                "the settings say {} but no linear layer of the checkpoint is stored quantized",
                format.kind()
            ),
        ));
    }
    Ok(Decoded {
        dense,
        info: FormatInfo {
            kind: format.kind().to_string(),
            method: format.method(),
            settings_file: settings_file.to_path_buf(),
            packed_layers: packed.len(),
            packed_bits_per_weight: bytes as f64 * 8.0 / n.max(1) as f64,
        },
        packed,
        kv,
    })
}
