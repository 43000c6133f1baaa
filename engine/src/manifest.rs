//! Model manifests with tensor hashes (`compsafe manifest create`, `compsafe verify`).
//!
//! A manifest (`compsafe.manifest/v1`, JSON) pins
//! - every file: sha256 and size;
//! - every tensor of every weight file (safetensors or GGUF): its file, dtype, shape and the
//!   sha256 of its stored bytes (for GGUF, the block-quantized bytes as stored);
//! - the chat template: sha256 of its text (from `chat_template.jinja`, `tokenizer_config.json`
//!   or GGUF metadata `tokenizer.chat_template`);
//! - the tokenizer: sha256 of its vocabulary (token strings by id, as JSON) and of its BPE
//!   merges, computed the same way from `tokenizer.json` and from GGUF `tokenizer.ggml.*`
//!   metadata, so that a GGUF conversion can be compared with its source.
//!
//! Checking a model against a manifest: every pinned tensor must be present with the same
//! dtype, shape and hash, and no tensor may be added; a weight file whose bytes differ but
//! whose tensors all match (a re-saved or re-sharded checkpoint) passes; any other pinned file
//! must match byte for byte; the chat template and tokenizer must match. Every failure names
//! the file or tensor at fault.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{EngineError, Result};
use crate::integrity::{self, FileDigest, Integrity};

/// Format tag of the JSON manifest.
pub const FORMAT: &str = "compsafe.manifest/v1";

/// A pinned file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Lower-case hex sha256 of the file.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// A pinned tensor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorEntry {
    /// The file holding it (relative to the model directory).
    pub file: String,
    /// Stored dtype (`F32`, `BF16`, ... for safetensors; `Q4_K`, `F16`, ... for GGUF).
    pub dtype: String,
    /// Shape as stored.
    pub shape: Vec<u64>,
    /// sha256 of the stored bytes.
    pub sha256: String,
}

/// Hashes of the tokenizer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizerEntry {
    /// sha256 of the JSON array of token strings by id.
    pub vocab_sha256: String,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// sha256 of the JSON array of merges (`"a b"`), when the tokenizer has merges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merges_sha256: Option<String>,
}

/// A model manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// Every file, by path relative to the model directory (the file name for a single file).
    pub files: BTreeMap<String, FileEntry>,
    /// Every tensor of every weight file, by tensor name.
    #[serde(default)]
    pub tensors: BTreeMap<String, TensorEntry>,
    /// sha256 of the chat template's text, when the model has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template_sha256: Option<String>,
    /// The tokenizer's hashes, when the model has a tokenizer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<TokenizerEntry>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn is_weight_file(name: &str) -> bool {
    name.ends_with(".safetensors") || name.ends_with(".gguf")
}

/// Name of a ggml tensor type id as GGUF tools print it.
fn ggml_type_name(t: u32) -> String {
    match t {
        0 => "F32".into(),
        1 => "F16".into(),
        2 => "Q4_0".into(),
        3 => "Q4_1".into(),
        6 => "Q5_0".into(),
        7 => "Q5_1".into(),
        8 => "Q8_0".into(),
        9 => "Q8_1".into(),
        10 => "Q2_K".into(),
        11 => "Q3_K".into(),
        12 => "Q4_K".into(),
        13 => "Q5_K".into(),
        14 => "Q6_K".into(),
        15 => "Q8_K".into(),
        30 => "BF16".into(),
        other => format!("ggml_type_{other}"),
    }
}

/// The tensors of one weight file: name -> entry.
fn file_tensors(rel: &str, path: &Path) -> Result<Vec<(String, TensorEntry)>> {
    let map = crate::loader::map_file(path)?;
    let bytes: &[u8] = &map;
    let mut out = Vec::new();
    if rel.ends_with(".gguf") {
        let h = crate::gguf_header::scan(bytes)
            .map_err(|e| EngineError::bad_file(path, format!("invalid GGUF: {e}")))?;
        for (name, dims, ty, offset) in &h.tensors {
            let size = crate::gguf_header::tensor_bytes(*ty, dims)
                .map_err(|e| EngineError::bad_file(path, format!("tensor `{name}`: {e}")))?;
            let start = (h.data_start + offset) as usize;
            let data = &bytes[start..start + size as usize];
            out.push((
                name.clone(),
                TensorEntry {
                    file: rel.to_string(),
                    dtype: ggml_type_name(*ty),
                    shape: dims.clone(),
                    sha256: sha256_hex(data),
                },
            ));
        }
    } else {
        let st = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| EngineError::bad_file(path, format!("invalid safetensors: {e}")))?;
        for (name, view) in st.tensors() {
            out.push((
                name,
                TensorEntry {
                    file: rel.to_string(),
                    dtype: format!("{:?}", view.dtype()),
                    shape: view.shape().iter().map(|&d| d as u64).collect(),
                    sha256: sha256_hex(view.data()),
                },
            ));
        }
    }
    Ok(out)
}

/// Token strings by id and merges of an HF `tokenizer.json`.
fn hf_tokenizer_lists(path: &Path) -> Result<(Vec<String>, Vec<String>)> {
    let text = std::fs::read_to_string(path).map_err(|source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| EngineError::bad_file(path, format!("invalid JSON: {e}")))?;
    let mut by_id: BTreeMap<u64, String> = BTreeMap::new();
    if let Some(vocab) = v["model"]["vocab"].as_object() {
        for (tok, id) in vocab {
            if let Some(id) = id.as_u64() {
                by_id.insert(id, tok.clone());
            }
        }
    } else if let Some(list) = v["model"]["vocab"].as_array() {
        // Unigram: [[piece, score], ...] in id order.
        for (i, e) in list.iter().enumerate() {
            if let Some(p) = e.get(0).and_then(|p| p.as_str()) {
                by_id.insert(i as u64, p.to_string());
            }
        }
    }
    for t in v["added_tokens"].as_array().into_iter().flatten() {
        if let (Some(id), Some(c)) = (t["id"].as_u64(), t["content"].as_str()) {
            by_id.insert(id, c.to_string());
        }
    }
    let tokens = by_id.into_values().collect();
    let merges = v["model"]["merges"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| match m {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Array(p) => Some(
                p.iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            _ => None,
        })
        .collect();
    Ok((tokens, merges))
}

fn tokenizer_entry(tokens: &[String], merges: &[String]) -> TokenizerEntry {
    let json = |v: &[String]| serde_json::to_vec(v).unwrap_or_default();
    TokenizerEntry {
        vocab_sha256: sha256_hex(&json(tokens)),
        vocab_size: tokens.len(),
        merges_sha256: (!merges.is_empty()).then(|| sha256_hex(&json(merges))),
    }
}

/// A tokenizer's token strings by id and its merges (`"a b"`).
pub type TokenLists = (Vec<String>, Vec<String>);

/// The chat template text and tokenizer lists of a model (directory or GGUF file).
pub fn template_and_tokenizer(path: &Path) -> Result<(Option<String>, Option<TokenLists>)> {
    if path.is_file() {
        let map = crate::loader::map_file(path)?;
        crate::gguf_header::scan(&map)
            .map_err(|e| EngineError::bad_file(path, format!("invalid GGUF: {e}")))?;
        let f = crate::ggml::file::GgufFile::read(&map)
            .map_err(|e| EngineError::bad_file(path, format!("invalid GGUF: {e}")))?;
        let meta = crate::gguf_load::tokenizer_meta(&f);
        let tok = (!meta.tokens.is_empty()).then(|| (meta.tokens.clone(), meta.merges.clone()));
        return Ok((meta.chat_template, tok));
    }
    let jinja = path.join("chat_template.jinja");
    let template = if jinja.is_file() {
        Some(
            std::fs::read_to_string(&jinja).map_err(|source| EngineError::Io {
                path: jinja.clone(),
                source,
            })?,
        )
    } else {
        let cfg = path.join("tokenizer_config.json");
        if cfg.is_file() {
            let text = std::fs::read_to_string(&cfg).map_err(|source| EngineError::Io {
                path: cfg.clone(),
                source,
            })?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| EngineError::bad_file(&cfg, format!("invalid JSON: {e}")))?;
            match &v["chat_template"] {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Array(list) => list
                    .iter()
                    .find(|e| e["name"] == "default")
                    .or_else(|| list.first())
                    .and_then(|e| e["template"].as_str())
                    .map(String::from),
                _ => None,
            }
        } else {
            None
        }
    };
    let tok_path = path.join("tokenizer.json");
    let tok = if tok_path.is_file() {
        Some(hf_tokenizer_lists(&tok_path)?)
    } else {
        None
    };
    Ok((template, tok))
}

/// The manifest of the model at `path` (a directory or a GGUF file), as it is now.
pub fn create(path: &Path) -> Result<Manifest> {
    let mut files = BTreeMap::new();
    let mut tensors = BTreeMap::new();
    for (rel, p) in integrity::model_files(path)? {
        let (sha256, bytes) = integrity::sha256_file(&p)?;
        if is_weight_file(&rel) {
            for (name, t) in file_tensors(&rel, &p)? {
                if let Some(prev) = tensors.insert(name.clone(), t) {
                    return Err(EngineError::bad_file(
                        &p,
                        format!("tensor `{name}` is also stored in {}", prev.file),
                    ));
                }
            }
        }
        files.insert(rel, FileEntry { sha256, bytes });
    }
    let (template, tok) = template_and_tokenizer(path)?;
    Ok(Manifest {
        format: FORMAT.to_string(),
        files,
        tensors,
        chat_template_sha256: template.map(|t| sha256_hex(t.as_bytes())),
        tokenizer: tok.map(|(t, m)| tokenizer_entry(&t, &m)),
    })
}

/// Reads a manifest: JSON (`compsafe.manifest/v1`) or `sha256sum` lines (files only).
pub fn load(path: &Path) -> Result<Manifest> {
    let text = std::fs::read_to_string(path).map_err(|source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if text.trim_start().starts_with('{') {
        let de = &mut serde_json::Deserializer::from_str(&text);
        let m: Manifest = serde_path_to_error::deserialize(de).map_err(|e| {
            EngineError::bad_file(path, format!("field `{}`: {}", e.path(), e.inner()))
        })?;
        if m.format != FORMAT {
            return Err(EngineError::bad_file(
                path,
                format!("field `format` = {:?}: expected {FORMAT:?}", m.format),
            ));
        }
        for (name, f) in &m.files {
            check_hex(path, &format!("files.{name}.sha256"), &f.sha256)?;
        }
        for (name, t) in &m.tensors {
            check_hex(path, &format!("tensors.{name}.sha256"), &t.sha256)?;
        }
        return Ok(m);
    }
    let files = integrity::parse_manifest(path)?
        .into_iter()
        .map(|(name, sha256)| (name, FileEntry { sha256, bytes: 0 }))
        .collect();
    Ok(Manifest {
        format: FORMAT.to_string(),
        files,
        tensors: BTreeMap::new(),
        chat_template_sha256: None,
        tokenizer: None,
    })
}

fn check_hex(path: &Path, field: &str, v: &str) -> Result<()> {
    if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(EngineError::bad_file(
            path,
            format!("field `{field}` = {v:?}: not a sha256 hex digest"),
        ))
    }
}

/// Writes `m` as pretty JSON.
pub fn render(m: &Manifest) -> String {
    let mut s = serde_json::to_string_pretty(m).unwrap_or_default();
    s.push('\n');
    s
}

/// Checks `found` (the model as it is) against `pinned`; every failure names what differs.
pub fn check(found: &Manifest, pinned: &Manifest) -> Integrity {
    let mut failures = Vec::new();
    let fail = |failures: &mut Vec<String>, m: String| {
        failures.push(format!("INTEGRITY FAILURE: {m}"));
    };
    let tensors_pinned = !pinned.tensors.is_empty();
    for (name, want) in &pinned.tensors {
        match found.tensors.get(name) {
            None => fail(
                &mut failures,
                format!("tensor `{name}` (pinned in {}) is missing", want.file),
            ),
            Some(t) if t.dtype != want.dtype || t.shape != want.shape => fail(
                &mut failures,
                format!(
                    "tensor `{name}` in {}: expected {} {:?}, found {} {:?}",
                    t.file, want.dtype, want.shape, t.dtype, t.shape
                ),
            ),
            Some(t) if t.sha256 != want.sha256 => fail(
                &mut failures,
                format!(
                    "tensor `{name}` in {}: expected sha256 {}, found {}",
                    t.file, want.sha256, t.sha256
                ),
            ),
            Some(_) => {}
        }
    }
    if tensors_pinned {
        for (name, t) in &found.tensors {
            if !pinned.tensors.contains_key(name) {
                fail(
                    &mut failures,
                    format!("tensor `{name}` in {} is not in the manifest", t.file),
                );
            }
        }
    }
    for (name, want) in &pinned.files {
        // A weight file is judged by its tensors when they are pinned: re-saving or
        // re-sharding the same tensors changes the bytes, not the model.
        if tensors_pinned && is_weight_file(name) {
            continue;
        }
        match found.files.get(name) {
            None => fail(&mut failures, format!("{name}: pinned file is missing")),
            Some(f) if f.sha256 != want.sha256 => fail(
                &mut failures,
                format!(
                    "{name}: expected sha256 {}, found {}",
                    want.sha256, f.sha256
                ),
            ),
            Some(_) => {}
        }
    }
    if pinned.chat_template_sha256.is_some()
        && found.chat_template_sha256 != pinned.chat_template_sha256
    {
        fail(
            &mut failures,
            format!(
                "chat template: expected sha256 {}, found {}",
                pinned.chat_template_sha256.as_deref().unwrap_or("-"),
                found.chat_template_sha256.as_deref().unwrap_or("none")
            ),
        );
    }
    if let Some(want) = &pinned.tokenizer {
        match &found.tokenizer {
            None => fail(&mut failures, "tokenizer: pinned but missing".into()),
            Some(t) if t.vocab_sha256 != want.vocab_sha256 => fail(
                &mut failures,
                format!(
                    "tokenizer vocabulary: expected sha256 {} ({} tokens), found {} ({} tokens)",
                    want.vocab_sha256, want.vocab_size, t.vocab_sha256, t.vocab_size
                ),
            ),
            Some(t) if t.merges_sha256 != want.merges_sha256 => fail(
                &mut failures,
                "tokenizer merges differ from the manifest's".into(),
            ),
            Some(_) => {}
        }
    }
    if failures.is_empty() {
        Integrity::Ok
    } else {
        Integrity::Failed(failures)
    }
}

/// The manifest a model is checked against by default: `MANIFEST.json` in its directory,
/// else `MANIFEST`, else `FILE.manifest.json` beside a GGUF file.
pub fn default_path(model: &Path) -> Option<PathBuf> {
    if model.is_dir() {
        ["MANIFEST.json", "MANIFEST"]
            .iter()
            .map(|n| model.join(n))
            .find(|p| p.is_file())
    } else {
        let mut s = model.as_os_str().to_owned();
        s.push(".manifest.json");
        let p = PathBuf::from(s);
        p.is_file().then_some(p)
    }
}

/// Checks the model at `path` against `manifest` (or its default manifest): its file digests
/// and the outcome; `Unpinned` without a manifest. Tensors, template and tokenizer are hashed
/// only when the manifest pins them.
pub fn verify(path: &Path, manifest: Option<&Path>) -> Result<(Vec<FileDigest>, Integrity)> {
    let manifest = manifest
        .map(Path::to_path_buf)
        .or_else(|| default_path(path));
    let Some(mpath) = manifest else {
        return Ok((integrity::digest_model(path)?, Integrity::Unpinned));
    };
    let pinned = load(&mpath)?;
    let found = if pinned.tensors.is_empty()
        && pinned.chat_template_sha256.is_none()
        && pinned.tokenizer.is_none()
    {
        let digests = integrity::digest_model(path)?;
        Manifest {
            format: FORMAT.to_string(),
            files: digests
                .iter()
                .map(|d| {
                    (
                        d.name.clone(),
                        FileEntry {
                            sha256: d.sha256.clone(),
                            bytes: d.bytes,
                        },
                    )
                })
                .collect(),
            tensors: BTreeMap::new(),
            chat_template_sha256: None,
            tokenizer: None,
        }
    } else {
        create(path)?
    };
    let digests = found
        .files
        .iter()
        .map(|(name, f)| FileDigest {
            name: name.clone(),
            sha256: f.sha256.clone(),
            bytes: f.bytes,
        })
        .collect();
    Ok((digests, check(&found, &pinned)))
}
