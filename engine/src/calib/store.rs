//! A calibrated variant's replacements on disk: `weights.safetensors` (f32) and
//! `stats.json` (the per-tensor stats), in a directory named by the variant's cache key
//! ([`super::data::cache_key`]), so a fleet sharing the directory derives each (model,
//! variant, calibration) once.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::Device;
use serde_json::{json, Value};

use crate::compress::{Compressed, LinearWeight, TensorStat, WeightMap};
use crate::error::{EngineError, Result};

/// The weights file of a stored variant.
pub const WEIGHTS_FILE: &str = "weights.safetensors";
/// The stats file of a stored variant (written last: its presence marks a complete entry).
pub const STATS_FILE: &str = "stats.json";

fn io(path: &Path) -> impl Fn(std::io::Error) -> EngineError + '_ {
    move |source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Whether every replacement is a dense tensor (what the store holds).
pub fn storable(c: &Compressed) -> bool {
    c.weights
        .values()
        .all(|w| matches!(w, LinearWeight::Dense(_)))
}

/// Writes `c` into `dir` (created). Errors when a replacement is not dense.
pub fn save(dir: &Path, c: &Compressed) -> Result<()> {
    let mut dense = WeightMap::new();
    for (name, w) in &c.weights {
        let LinearWeight::Dense(t) = w else {
            return Err(EngineError::Invalid(format!(
                "calibrated variant store: `{name}` is not a dense tensor"
            )));
        };
        dense.insert(name.clone(), t.clone());
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let path = dir.join(WEIGHTS_FILE);
    std::fs::write(&path, crate::fixture::save::safetensors_bytes(&dense)?).map_err(io(&path))?;
    let stats: Vec<Value> = c
        .stats
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "rel_error": s.rel_error,
                "bits_per_weight": s.bits_per_weight,
                "numel": s.numel,
                "bytes": s.bytes,
                "note": s.note,
            })
        })
        .collect();
    let path = dir.join(STATS_FILE);
    let text = serde_json::to_string_pretty(&json!({ "stats": stats })).unwrap_or_default();
    std::fs::write(&path, text + "\n").map_err(io(&path))?;
    Ok(())
}

/// The variant stored in `dir`, or `None` when there is no complete entry.
pub fn load(dir: &Path, device: &Device) -> Result<Option<Compressed>> {
    let stats_path = dir.join(STATS_FILE);
    let weights_path = dir.join(WEIGHTS_FILE);
    if !(stats_path.is_file() && weights_path.is_file()) {
        return Ok(None);
    }
    let bad = |p: &Path, why: String| EngineError::bad_file(p, why);
    let text = std::fs::read_to_string(&stats_path).map_err(io(&stats_path))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| bad(&stats_path, e.to_string()))?;
    let mut stats = Vec::new();
    for s in v["stats"].as_array().into_iter().flatten() {
        let num = |k: &str| s[k].as_f64();
        let (Some(name), Some(rel_error), Some(bits), Some(numel), Some(bytes)) = (
            s["name"].as_str(),
            num("rel_error"),
            num("bits_per_weight"),
            s["numel"].as_u64(),
            s["bytes"].as_u64(),
        ) else {
            return Err(bad(&stats_path, format!("malformed stat {s}")));
        };
        stats.push(TensorStat {
            name: name.to_string(),
            rel_error,
            bits_per_weight: bits,
            numel: numel as usize,
            bytes,
            note: s["note"].as_str().map(str::to_string),
        });
    }
    let tensors = candle_core::safetensors::load(&weights_path, device)
        .map_err(|e| bad(&weights_path, e.to_string()))?;
    let weights: BTreeMap<String, LinearWeight> = tensors
        .into_iter()
        .map(|(k, t)| (k, LinearWeight::Dense(t)))
        .collect();
    if let Some(s) = stats.iter().find(|s| !weights.contains_key(&s.name)) {
        return Err(bad(
            &weights_path,
            format!("tensor `{}` of {STATS_FILE} is missing", s.name),
        ));
    }
    Ok(Some(Compressed { weights, stats }))
}
