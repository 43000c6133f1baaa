//! Checkpoint loading: Hugging Face directories (single or sharded safetensors in f32, f16 or
//! bf16, or quantized in one of the formats of [`crate::formats`]) and GGUF files. Nothing is
//! ever unpickled; every tensor is checked against the config.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::QTensor;
use candle_core::{DType, Device, Tensor};
use safetensors::SafeTensors;
use serde_json::Value;

use crate::compress::WeightMap;
use crate::config::ModelConfig;
use crate::error::{EngineError, Result};
use crate::formats::{FormatInfo, KvQuant, PackedWeight};

/// A loaded checkpoint: its config and its weights, ready to build a model from.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// Where it was loaded from (a directory or a GGUF file).
    pub path: PathBuf,
    /// The runtime configuration.
    pub config: ModelConfig,
    /// Dense weights by HF name, in f32.
    pub weights: WeightMap,
    /// Block-quantized weights by HF name (GGUF checkpoints only) that candle executes.
    pub quantized: BTreeMap<String, Arc<QTensor>>,
    /// Block-quantized weights of types candle lacks (i-quants, TQ1_0, TQ2_0), by HF name.
    pub blocks: BTreeMap<String, Arc<crate::ggml::BlockTensor>>,
    /// Linear weights of a quantized checkpoint (GPTQ, AWQ, compressed-tensors,
    /// bitsandbytes) in their packed form, by HF name.
    pub packed: BTreeMap<String, Arc<PackedWeight>>,
    /// KV-cache quantization the checkpoint's format asks for.
    pub kv_quant: Option<KvQuant>,
    /// The quantized checkpoint format, if any.
    pub format: Option<FormatInfo>,
    /// Bits per weight each tensor had on disk.
    pub stored_bits: BTreeMap<String, f64>,
    /// The weight files read.
    pub files: Vec<PathBuf>,
    /// q/k rows are stored in GGUF's interleaved rotary order.
    pub rope_interleaved: bool,
    /// Chat template and tokenizer metadata carried inside a GGUF file.
    pub gguf_metadata: Option<GgufTokenizerMeta>,
}

pub use crate::gguf_load::GgufTokenizerMeta;

impl Checkpoint {
    /// Loads an HF model directory or a `.gguf` file onto `device` (weights are kept in f32).
    pub fn load(path: &Path, device: &Device) -> Result<Checkpoint> {
        if path.is_dir() {
            load_hf_dir(path, device)
        } else if path.extension().and_then(|e| e.to_str()) == Some("gguf") {
            load_gguf(path, device)
        } else if !path.exists() {
            Err(EngineError::Missing {
                path: path.to_path_buf(),
                what: "model directory or .gguf file".into(),
            })
        } else {
            Err(EngineError::bad_file(
                path,
                "not a model: expected a Hugging Face directory or a .gguf file",
            ))
        }
    }

    /// A checkpoint from weights held in memory (e.g. freshly trained ones), stored as f32.
    pub fn from_weights(path: PathBuf, config: ModelConfig, weights: WeightMap) -> Checkpoint {
        let stored_bits = weights.keys().map(|k| (k.clone(), 32.0)).collect();
        Checkpoint {
            path,
            config,
            weights,
            quantized: BTreeMap::new(),
            blocks: BTreeMap::new(),
            packed: BTreeMap::new(),
            kv_quant: None,
            format: None,
            stored_bits,
            files: Vec::new(),
            rope_interleaved: false,
            gguf_metadata: None,
        }
    }

    /// Total stored bytes of the weights as loaded.
    pub fn stored_bytes(&self) -> u64 {
        let mut total = 0.0;
        for (name, t) in &self.weights {
            total +=
                t.elem_count() as f64 * self.stored_bits.get(name).copied().unwrap_or(32.0) / 8.0;
        }
        for (name, q) in &self.quantized {
            if !self.is_tied_alias(name) {
                total += q.storage_size_in_bytes() as f64;
            }
        }
        for b in self.blocks.values() {
            total += b.storage_bytes() as f64;
        }
        for p in self.packed.values() {
            total += p.stored_bytes as f64;
        }
        total.round() as u64
    }

    /// Number of weights.
    pub fn num_params(&self) -> usize {
        self.weights.values().map(|t| t.elem_count()).sum::<usize>()
            + self
                .quantized
                .iter()
                .filter(|(n, _)| !self.is_tied_alias(n))
                .map(|(_, q)| q.shape().elem_count())
                .sum::<usize>()
            + self
                .blocks
                .values()
                .map(|b| b.dims().0 * b.dims().1)
                .sum::<usize>()
            + self.packed.values().map(|p| p.numel()).sum::<usize>()
    }

    /// True for the quantized output projection a tied GGUF model shares with its token
    /// embedding (held once on disk, counted once).
    fn is_tied_alias(&self, name: &str) -> bool {
        self.config.tie_word_embeddings && name == "lm_head.weight"
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> EngineError + '_ {
    move |source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Maps a file read-only into memory.
#[allow(unsafe_code)]
pub(crate) fn map_file(path: &Path) -> Result<memmap2::Mmap> {
    let file = File::open(path).map_err(io_err(path))?;
    // SAFETY: the mapping is read-only and dropped before this function's caller returns the
    // tensors (they are copied out). A concurrent writer truncating the file could fault; model
    // files are not written while a sweep reads them.
    unsafe { memmap2::Mmap::map(&file) }.map_err(io_err(path))
}

fn safetensor_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let text = std::fs::read_to_string(&index).map_err(io_err(&index))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| EngineError::bad_file(&index, format!("invalid JSON: {e}")))?;
        let map = v
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| EngineError::bad_file(&index, "field `weight_map` missing"))?;
        let mut files: Vec<String> = map
            .values()
            .filter_map(|f| f.as_str().map(String::from))
            .collect();
        files.sort();
        files.dedup();
        let mut out = Vec::new();
        for f in files {
            if f.contains('/') || f.contains('\\') || f.contains("..") {
                return Err(EngineError::bad_file(
                    &index,
                    format!("field `weight_map` names {f:?}, which is outside the model directory"),
                ));
            }
            let p = dir.join(&f);
            if !p.exists() {
                return Err(EngineError::Missing {
                    path: p,
                    what: format!("shard listed in {}", index.display()),
                });
            }
            out.push(p);
        }
        return Ok(out);
    }
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    Err(EngineError::Missing {
        path: single,
        what: "weights (model.safetensors or model.safetensors.index.json); pickled .bin checkpoints are never loaded".into(),
    })
}

/// Refuses a tensor holding NaN or infinity: such a checkpoint is reported, not evaluated.
fn check_finite(file: &Path, name: &str, t: &Tensor) -> Result<()> {
    let values = t.flatten_all()?.to_vec1::<f32>()?;
    match values.iter().position(|x| !x.is_finite()) {
        None => Ok(()),
        Some(i) => Err(EngineError::bad_file(
            file,
            format!(
                "tensor `{name}` has a non-finite weight ({}) at flat index {i}; a checkpoint with NaN or infinite weights is not evaluated",
                values[i]
            ),
        )),
    }
}

/// The tensors of one safetensors file (`bytes`; `file` names it in errors) that `expected`
/// names, each checked for dtype, shape and finite values, in f32 on `device`, with the bits
/// per weight they had on disk.
pub fn read_safetensors(
    file: &Path,
    bytes: &[u8],
    expected: &BTreeMap<String, Vec<usize>>,
    device: &Device,
) -> Result<Vec<(String, Tensor, f64)>> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| EngineError::bad_file(file, format!("invalid safetensors: {e}")))?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        let Some(shape) = expected.get(&name) else {
            // Buffers such as rotary inv_freq, or an lm_head that a tied model also stores.
            continue;
        };
        let (dtype, bits) = match view.dtype() {
            safetensors::Dtype::F32 => (DType::F32, 32.0),
            safetensors::Dtype::F16 => (DType::F16, 16.0),
            safetensors::Dtype::BF16 => (DType::BF16, 16.0),
            other => {
                return Err(EngineError::bad_file(
                    file,
                    format!(
                        "tensor `{name}` has dtype {other:?}, outside a known quantization \
                         format (config.json has no quantization_config); expected F32, F16 or BF16"
                    ),
                ))
            }
        };
        if view.shape() != shape.as_slice() {
            return Err(EngineError::bad_file(
                file,
                format!(
                    "tensor `{name}` has shape {:?} but config.json implies {:?}",
                    view.shape(),
                    shape
                ),
            ));
        }
        let t = Tensor::from_raw_buffer(view.data(), dtype, view.shape(), &Device::Cpu)?
            .to_dtype(DType::F32)?;
        check_finite(file, &name, &t)?;
        out.push((name, t.to_device(device)?, bits));
    }
    Ok(out)
}

fn load_hf_dir(dir: &Path, device: &Device) -> Result<Checkpoint> {
    let config_path = dir.join("config.json");
    if !config_path.exists() {
        return Err(EngineError::Missing {
            path: config_path,
            what: "model configuration".into(),
        });
    }
    let config = ModelConfig::from_hf_file(&config_path)?;
    let files = safetensor_files(dir)?;
    if let Some((format, settings)) = crate::formats::Format::detect(dir)? {
        let d = crate::formats::decode(&format, &settings, &config, &files, device)?;
        let mut weights = WeightMap::new();
        let mut stored_bits = BTreeMap::new();
        for (name, t, bits) in d.dense {
            stored_bits.insert(name.clone(), bits);
            weights.insert(name, t);
        }
        return Ok(Checkpoint {
            path: dir.to_path_buf(),
            config,
            weights,
            quantized: BTreeMap::new(),
            blocks: BTreeMap::new(),
            packed: d.packed,
            kv_quant: d.kv,
            format: Some(d.info),
            stored_bits,
            files,
            rope_interleaved: false,
            gguf_metadata: None,
        });
    }
    let expected: BTreeMap<String, Vec<usize>> = config.expected_shapes().into_iter().collect();
    let mut weights = WeightMap::new();
    let mut stored_bits = BTreeMap::new();
    for file in &files {
        let bytes = map_file(file)?;
        for (name, t, bits) in read_safetensors(file, &bytes, &expected, device)? {
            stored_bits.insert(name.clone(), bits);
            weights.insert(name, t);
        }
    }
    for name in expected.keys() {
        if !weights.contains_key(name) {
            return Err(EngineError::bad_file(
                files.first().cloned().unwrap_or_else(|| dir.to_path_buf()),
                format!("tensor `{name}` is missing from the checkpoint"),
            ));
        }
    }
    Ok(Checkpoint {
        path: dir.to_path_buf(),
        config,
        weights,
        quantized: BTreeMap::new(),
        blocks: BTreeMap::new(),
        packed: BTreeMap::new(),
        kv_quant: None,
        format: None,
        stored_bits,
        files,
        rope_interleaved: false,
        gguf_metadata: None,
    })
}

fn load_gguf(path: &Path, device: &Device) -> Result<Checkpoint> {
    let bytes = map_file(path)?;
    read_gguf(path, &bytes, device)
}

pub use crate::gguf_load::read_gguf;
