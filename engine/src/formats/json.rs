//! Reading the quantization settings of a checkpoint's JSON, naming the file and field of
//! every value that is missing or wrong.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{EngineError, Result};

/// A JSON object with the file it came from and its path inside the file (for errors).
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    /// The file.
    pub file: &'a Path,
    /// Dotted path of this object (`quantization_config`).
    pub at: String,
    /// The object.
    pub value: &'a Value,
}

impl<'a> Fields<'a> {
    /// The error for field `key` of this object.
    pub fn err(&self, key: &str, what: impl std::fmt::Display) -> EngineError {
        EngineError::bad_file(self.file, format!("field `{}.{key}`: {what}", self.at))
    }

    /// A field's raw value, if present and not null.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.value.get(key).filter(|v| !v.is_null())
    }

    /// An optional unsigned integer.
    pub fn u64_opt(&self, key: &str) -> Result<Option<u64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.err(key, format!("= {v}: expected a non-negative integer"))),
        }
    }

    /// An optional signed integer.
    pub fn i64_opt(&self, key: &str) -> Result<Option<i64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| self.err(key, format!("= {v}: expected an integer"))),
        }
    }

    /// An optional boolean.
    pub fn bool_opt(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.err(key, format!("= {v}: expected true or false"))),
        }
    }

    /// An optional string.
    pub fn str_opt(&self, key: &str) -> Result<Option<&'a str>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.err(key, format!("= {v}: expected a string"))),
        }
    }

    /// A required value.
    pub fn need(&self, key: &str) -> Result<&'a Value> {
        self.get(key).ok_or_else(|| self.err(key, "missing"))
    }

    /// A nested object (`None` when absent or null).
    pub fn object(&self, key: &str) -> Result<Option<Fields<'a>>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) if v.is_object() => Ok(Some(Fields {
                file: self.file,
                at: format!("{}.{key}", self.at),
                value: v,
            })),
            Some(v) => Err(self.err(key, format!("= {v}: expected an object"))),
        }
    }
}

/// Reads and parses a JSON file.
pub fn read(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text)
        .map_err(|e| EngineError::bad_file(path, format!("invalid JSON: {e}")))
}

/// The quantization settings of a model directory: `quantization_config` of config.json,
/// else `quantize_config.json` (AutoGPTQ, GPTQModel), else `quant_config.json` (AutoAWQ).
/// Returns the file, the dotted path of the object and the object.
pub fn quantization_settings(dir: &Path) -> Result<Option<(PathBuf, String, Value)>> {
    let config = dir.join("config.json");
    if config.is_file() {
        let v = read(&config)?;
        if let Some(q) = v.get("quantization_config").filter(|q| !q.is_null()) {
            if !q.is_object() {
                return Err(EngineError::bad_file(
                    &config,
                    format!("field `quantization_config` = {q}: expected an object"),
                ));
            }
            return Ok(Some((config, "quantization_config".into(), q.clone())));
        }
    }
    for (name, method) in [
        ("quantize_config.json", "gptq"),
        ("quant_config.json", "awq"),
    ] {
        let p = dir.join(name);
        if p.is_file() {
            let mut v = read(&p)?;
            if !v.is_object() {
                return Err(EngineError::bad_file(&p, "expected a JSON object"));
            }
            if v.get("quant_method").is_none_or(Value::is_null) {
                v["quant_method"] = Value::String(method.into());
            }
            return Ok(Some((p, "(top level)".into(), v)));
        }
    }
    Ok(None)
}
