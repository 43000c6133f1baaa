//! Checkpoint loading: Hugging Face directories (single or sharded safetensors in f32, f16 or
//! bf16, or quantized in one of the formats of [`crate::formats`]) and GGUF files. Nothing is
//! ever unpickled; every tensor is checked against the config.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use safetensors::SafeTensors;
use serde_json::Value;

use crate::compress::WeightMap;
use crate::config::{Arch, ModelConfig, RopeScaling};
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
    /// Block-quantized weights by HF name (GGUF checkpoints only).
    pub quantized: BTreeMap<String, Arc<QTensor>>,
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

/// Tokenizer facts carried in GGUF metadata.
#[derive(Debug, Clone, Default)]
pub struct GgufTokenizerMeta {
    /// `tokenizer.ggml.model` (e.g. `gpt2`, `llama`).
    pub model: String,
    /// Token strings by id.
    pub tokens: Vec<String>,
    /// BPE merges (`a b`).
    pub merges: Vec<String>,
    /// `tokenizer.chat_template`.
    pub chat_template: Option<String>,
    /// BOS token id.
    pub bos: Option<u32>,
    /// EOS token id.
    pub eos: Option<u32>,
}

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
        for q in self.quantized.values() {
            total += q.storage_size_in_bytes() as f64;
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
                .values()
                .map(|q| q.shape().elem_count())
                .sum::<usize>()
            + self.packed.values().map(|p| p.numel()).sum::<usize>()
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
        packed: BTreeMap::new(),
        kv_quant: None,
        format: None,
        stored_bits,
        files,
        rope_interleaved: false,
        gguf_metadata: None,
    })
}

pub(crate) fn meta_u(content: &gguf_file::Content, key: &str, path: &Path) -> Result<usize> {
    let v = content
        .metadata
        .get(key)
        .ok_or_else(|| EngineError::bad_file(path, format!("metadata `{key}` missing")))?;
    v.to_u64()
        .map(|x| x as usize)
        .or_else(|_| v.to_u32().map(|x| x as usize))
        .or_else(|_| v.to_i32().map(|x| x as usize))
        .map_err(|e| EngineError::bad_file(path, format!("metadata `{key}`: {e}")))
}

pub(crate) fn meta_f(content: &gguf_file::Content, key: &str) -> Option<f64> {
    let v = content.metadata.get(key)?;
    v.to_f32().map(f64::from).or_else(|_| v.to_f64()).ok()
}

fn gguf_to_hf_name(name: &str) -> Option<String> {
    let direct = match name {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(d) = direct {
        return Some(d.to_string());
    }
    let rest = name.strip_prefix("blk.")?;
    let (layer, tail) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let hf = match tail {
        "attn_norm.weight" => "input_layernorm.weight",
        "ffn_norm.weight" => "post_attention_layernorm.weight",
        "attn_q.weight" => "self_attn.q_proj.weight",
        "attn_k.weight" => "self_attn.k_proj.weight",
        "attn_v.weight" => "self_attn.v_proj.weight",
        "attn_q.bias" => "self_attn.q_proj.bias",
        "attn_k.bias" => "self_attn.k_proj.bias",
        "attn_v.bias" => "self_attn.v_proj.bias",
        "attn_output.weight" => "self_attn.o_proj.weight",
        "ffn_gate.weight" => "mlp.gate_proj.weight",
        "ffn_up.weight" => "mlp.up_proj.weight",
        "ffn_down.weight" => "mlp.down_proj.weight",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}"))
}

fn load_gguf(path: &Path, device: &Device) -> Result<Checkpoint> {
    let bytes = map_file(path)?;
    read_gguf(path, &bytes, device)
}

/// Reads a GGUF checkpoint from its bytes (`path` names it in errors). The header is walked
/// with every length checked against the bytes present before it is decoded.
pub fn read_gguf(path: &Path, bytes: &[u8], device: &Device) -> Result<Checkpoint> {
    crate::gguf_header::scan(bytes)
        .map_err(|e| EngineError::bad_file(path, format!("invalid GGUF: {e}")))?;
    let mut file = std::io::Cursor::new(bytes);
    let content = gguf_file::Content::read(&mut file)
        .map_err(|e| EngineError::bad_file(path, format!("invalid GGUF: {e}")))?;
    let arch_key = content
        .metadata
        .get("general.architecture")
        .and_then(|v| v.to_string().ok().cloned())
        .unwrap_or_default();
    let arch = match arch_key.as_str() {
        "llama" => Arch::Llama,
        "qwen2" => Arch::Qwen2,
        other => {
            return Err(EngineError::bad_file(
                path,
                format!(
                    "metadata `general.architecture` = {other:?}: supported are llama and qwen2"
                ),
            ))
        }
    };
    let a = arch_key.as_str();
    let hidden = meta_u(&content, &format!("{a}.embedding_length"), path)?;
    let heads = meta_u(&content, &format!("{a}.attention.head_count"), path)?;
    let kv_heads = meta_u(&content, &format!("{a}.attention.head_count_kv"), path).unwrap_or(heads);
    let layers = meta_u(&content, &format!("{a}.block_count"), path)?;
    let ffn = meta_u(&content, &format!("{a}.feed_forward_length"), path)?;
    let ctx = meta_u(&content, &format!("{a}.context_length"), path).unwrap_or(4096);
    let head_dim = meta_u(&content, &format!("{a}.rope.dimension_count"), path)
        .unwrap_or(hidden / heads.max(1));
    let eps = meta_f(&content, &format!("{a}.attention.layer_norm_rms_epsilon")).unwrap_or(1e-5);
    let theta = meta_f(&content, &format!("{a}.rope.freq_base")).unwrap_or(10000.0);
    let embd_info = content
        .tensor_infos
        .get("token_embd.weight")
        .ok_or_else(|| EngineError::bad_file(path, "tensor `token_embd.weight` missing"))?;
    let vocab = embd_info.shape.dims().first().copied().unwrap_or(0);
    let vocab = if vocab == hidden {
        embd_info.shape.dims().get(1).copied().unwrap_or(0)
    } else {
        vocab
    };
    let tie = !content.tensor_infos.contains_key("output.weight");
    let bias = content.tensor_infos.contains_key("blk.0.attn_q.bias");
    let tok = gguf_tokenizer_meta(&content);
    if heads == 0 || kv_heads == 0 || heads % kv_heads != 0 {
        return Err(EngineError::bad_file(
            path,
            format!("metadata head counts {heads}/{kv_heads} are inconsistent"),
        ));
    }
    let config = ModelConfig {
        arch,
        vocab_size: vocab,
        hidden_size: hidden,
        intermediate_size: ffn,
        num_layers: layers,
        num_heads: heads,
        num_kv_heads: kv_heads,
        head_dim,
        rms_norm_eps: eps,
        rope_theta: theta as f32,
        rope_scaling: RopeScaling::None,
        max_position_embeddings: ctx,
        tie_word_embeddings: tie,
        attention_bias: bias,
        sliding_window: None,
        bos_token_id: tok.bos,
        eos_token_ids: tok.eos.into_iter().collect(),
    };
    // Every layer has its own tensors: a block count beyond the tensors present is corrupt.
    if config.num_layers > content.tensor_infos.len() {
        return Err(EngineError::bad_file(
            path,
            format!(
                "metadata `{a}.block_count` = {layers} but the file holds {} tensors",
                content.tensor_infos.len()
            ),
        ));
    }
    config
        .check_sizes()
        .map_err(|e| EngineError::bad_file(path, format!("metadata: {e}")))?;
    let expected: BTreeMap<String, Vec<usize>> = config.expected_shapes().into_iter().collect();
    let mut weights = WeightMap::new();
    let mut quantized = BTreeMap::new();
    let mut stored_bits = BTreeMap::new();
    for (gname, info) in &content.tensor_infos {
        let Some(name) = gguf_to_hf_name(gname) else {
            continue;
        };
        let Some(shape) = expected.get(&name) else {
            continue;
        };
        if info.shape.dims() != shape.as_slice() {
            return Err(EngineError::bad_file(
                path,
                format!(
                    "tensor `{gname}` has shape {:?} but the metadata implies {:?}",
                    info.shape.dims(),
                    shape
                ),
            ));
        }
        let q = content
            .tensor(&mut file, gname, device)
            .map_err(|e| EngineError::bad_file(path, format!("tensor `{gname}`: {e}")))?;
        let dense = matches!(q.dtype(), GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16)
            || shape.len() == 1
            || name == "model.embed_tokens.weight";
        let bits = q.storage_size_in_bytes() as f64 * 8.0 / q.shape().elem_count().max(1) as f64;
        if dense {
            stored_bits.insert(name.clone(), bits);
            weights.insert(name, q.dequantize(device)?);
        } else {
            quantized.insert(name, Arc::new(q));
        }
    }
    for name in expected.keys() {
        if !weights.contains_key(name) && !quantized.contains_key(name) {
            return Err(EngineError::bad_file(
                path,
                format!("tensor for `{name}` is missing"),
            ));
        }
    }
    Ok(Checkpoint {
        path: path.to_path_buf(),
        config,
        weights,
        quantized,
        packed: BTreeMap::new(),
        kv_quant: None,
        format: None,
        stored_bits,
        files: vec![path.to_path_buf()],
        rope_interleaved: true,
        gguf_metadata: Some(tok),
    })
}

pub(crate) fn gguf_tokenizer_meta(content: &gguf_file::Content) -> GgufTokenizerMeta {
    let strings = |key: &str| -> Vec<String> {
        content
            .metadata
            .get(key)
            .and_then(|v| v.to_vec().ok())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.to_string().ok().cloned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let id = |key: &str| content.metadata.get(key).and_then(|v| v.to_u32().ok());
    GgufTokenizerMeta {
        model: content
            .metadata
            .get("tokenizer.ggml.model")
            .and_then(|v| v.to_string().ok().cloned())
            .unwrap_or_default(),
        tokens: strings("tokenizer.ggml.tokens"),
        merges: strings("tokenizer.ggml.merges"),
        chat_template: content
            .metadata
            .get("tokenizer.chat_template")
            .and_then(|v| v.to_string().ok().cloned()),
        bos: id("tokenizer.ggml.bos_token_id"),
        eos: id("tokenizer.ggml.eos_token_id"),
    }
}
