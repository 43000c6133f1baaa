//! A calibrated variant's replacements on disk: `weights.safetensors` (dense tensors in
//! f32; packed weights as their codes and scales) and `stats.json` (the per-tensor stats and
//! how each packed weight is read back), in a directory named by the variant's cache key
//! ([`super::data::cache_key`]), so a fleet sharing the directory derives each (model,
//! variant, calibration) once.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use serde_json::{json, Value};

use crate::compress::{Compressed, LinearWeight, TensorStat};
use crate::error::{EngineError, Result};
use crate::formats::packed::{Codes, CtCodes};
use crate::formats::{ActQuant, PackedWeight, RoundTo};
use crate::quant::act::ActType;

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

/// A packed weight the store can hold: FP8 rows, or int8 rows of one group (what `fp8` and
/// `smoothquant` produce), with its kind and activation quantization by name.
fn packed_kind(p: &PackedWeight) -> Option<(&'static str, Option<&'static str>)> {
    let kind = match &p.codes {
        Codes::Fp8 { .. } => "fp8",
        Codes::CtInt {
            bits: 8,
            codes: CtCodes::Int8(_),
            zeros: None,
            groups: 1,
            g_idx: None,
            ..
        } => "int8",
        _ => return None,
    };
    let act = match p.act {
        None => None,
        Some(ActQuant::Dynamic(ActType::Fp8E4m3)) => Some("fp8"),
        Some(ActQuant::Dynamic(ActType::Int8)) => Some("int8"),
        Some(_) => return None,
    };
    (p.sparse24.is_none() && p.round_to == RoundTo::F32).then_some((kind, act))
}

/// Whether the store can hold every replacement (dense tensors, and the packed weights of
/// [`packed_kind`]).
pub fn storable(c: &Compressed) -> bool {
    c.weights.values().all(|w| match w {
        LinearWeight::Dense(_) => true,
        LinearWeight::Packed(p) => packed_kind(p).is_some(),
        _ => false,
    })
}

/// Writes `c` into `dir` (created). Errors when a replacement cannot be stored.
pub fn save(dir: &Path, c: &Compressed) -> Result<()> {
    let cpu = Device::Cpu;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let mut packed = serde_json::Map::new();
    for (name, w) in &c.weights {
        match w {
            LinearWeight::Dense(t) => {
                tensors.insert(name.clone(), t.to_dtype(DType::F32)?.to_device(&cpu)?);
            }
            LinearWeight::Packed(p) => {
                let Some((kind, act)) = packed_kind(p) else {
                    return Err(EngineError::Invalid(format!(
                        "calibrated variant store: `{name}` is packed in a form it does not hold"
                    )));
                };
                let (codes, scales): (Vec<u8>, &Vec<f32>) = match &p.codes {
                    Codes::Fp8 { codes, scales } => (codes.clone(), scales),
                    Codes::CtInt {
                        codes: CtCodes::Int8(q),
                        scales,
                        ..
                    } => (q.iter().map(|&v| v as u8).collect(), scales),
                    _ => unreachable!("packed_kind admits only these"),
                };
                let n = codes.len();
                tensors.insert(format!("{name}.codes"), Tensor::from_vec(codes, n, &cpu)?);
                let k = scales.len();
                tensors.insert(
                    format!("{name}.scales"),
                    Tensor::from_vec(scales.clone(), k, &cpu)?,
                );
                packed.insert(
                    name.clone(),
                    json!({
                        "kind": kind,
                        "act": act,
                        "rows": p.out_features,
                        "cols": p.in_features,
                        "stored_bytes": p.stored_bytes,
                    }),
                );
            }
            _ => {
                return Err(EngineError::Invalid(format!(
                    "calibrated variant store: `{name}` is neither dense nor packed"
                )))
            }
        }
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let path = dir.join(WEIGHTS_FILE);
    candle_core::safetensors::save(&tensors, &path)?;
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
    let text = serde_json::to_string_pretty(&json!({ "stats": stats, "packed": packed }))
        .unwrap_or_default();
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
    let mut tensors = candle_core::safetensors::load(&weights_path, &Device::Cpu)
        .map_err(|e| bad(&weights_path, e.to_string()))?;
    let mut weights: BTreeMap<String, LinearWeight> = BTreeMap::new();
    if let Some(packed) = v["packed"].as_object() {
        for (name, info) in packed {
            let mut take = |suffix: &str| {
                tensors
                    .remove(&format!("{name}.{suffix}"))
                    .ok_or_else(|| bad(&weights_path, format!("`{name}.{suffix}` is missing")))
            };
            let codes = take("codes")?.to_vec1::<u8>()?;
            let scales = take("scales")?.to_vec1::<f32>()?;
            let (Some(rows), Some(cols), Some(stored_bytes)) = (
                info["rows"].as_u64().map(|v| v as usize),
                info["cols"].as_u64().map(|v| v as usize),
                info["stored_bytes"].as_u64(),
            ) else {
                return Err(bad(&stats_path, format!("malformed packed entry {name}")));
            };
            if codes.len() != rows * cols || !(scales.len() == rows || scales.len() == 1) {
                return Err(bad(&weights_path, format!("`{name}`: sizes do not match")));
            }
            let codes = match info["kind"].as_str() {
                Some("fp8") => Codes::Fp8 { codes, scales },
                Some("int8") => Codes::CtInt {
                    bits: 8,
                    codes: CtCodes::Int8(codes.into_iter().map(|v| v as i8).collect()),
                    scales,
                    zeros: None,
                    groups: 1,
                    g_idx: None,
                    group_size: cols,
                },
                k => return Err(bad(&stats_path, format!("`{name}`: unknown kind {k:?}"))),
            };
            let act = match info["act"].as_str() {
                None => None,
                Some("fp8") => Some(ActQuant::Dynamic(ActType::Fp8E4m3)),
                Some("int8") => Some(ActQuant::Dynamic(ActType::Int8)),
                Some(a) => return Err(bad(&stats_path, format!("`{name}`: unknown act {a:?}"))),
            };
            weights.insert(
                name.clone(),
                LinearWeight::Packed(Arc::new(PackedWeight {
                    out_features: rows,
                    in_features: cols,
                    codes,
                    round_to: RoundTo::F32,
                    sparse24: None,
                    act,
                    stored_bytes,
                })),
            );
        }
    }
    for (k, t) in tensors {
        weights.insert(k, LinearWeight::Dense(t.to_device(device)?));
    }
    if let Some(s) = stats.iter().find(|s| !weights.contains_key(&s.name)) {
        return Err(bad(
            &weights_path,
            format!("tensor `{}` of {STATS_FILE} is missing", s.name),
        ));
    }
    Ok(Some(Compressed { weights, stats }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_and_packed_replacements_round_trip() {
        let dir = std::env::temp_dir().join(format!("compsafe-store-{}", std::process::id()));
        let cpu = Device::Cpu;
        let mut c = Compressed::default();
        let dense = Tensor::from_vec(vec![1f32, -2.0, 3.5], 3, &cpu).unwrap();
        c.weights.insert("norm".into(), LinearWeight::Dense(dense));
        for (name, codes, act) in [
            (
                "a",
                Codes::Fp8 {
                    codes: vec![1, 200, 7, 8],
                    scales: vec![0.5, 0.25],
                },
                ActType::Fp8E4m3,
            ),
            (
                "b",
                Codes::CtInt {
                    bits: 8,
                    codes: CtCodes::Int8(vec![-128, 127, 0, -3]),
                    scales: vec![0.1, 0.2],
                    zeros: None,
                    groups: 1,
                    g_idx: None,
                    group_size: 2,
                },
                ActType::Int8,
            ),
        ] {
            let p = PackedWeight {
                out_features: 2,
                in_features: 2,
                codes,
                round_to: RoundTo::F32,
                sparse24: None,
                act: Some(ActQuant::Dynamic(act)),
                stored_bytes: 12,
            };
            c.stats.push(TensorStat {
                name: name.into(),
                rel_error: 0.25,
                bits_per_weight: 24.0,
                numel: 4,
                bytes: 12,
                note: Some("x".into()),
            });
            c.weights
                .insert(name.into(), LinearWeight::Packed(Arc::new(p)));
        }
        assert!(storable(&c));
        save(&dir, &c).unwrap();
        let back = load(&dir, &cpu).unwrap().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(back.stats, c.stats);
        for (name, w) in &c.weights {
            match (w, &back.weights[name]) {
                (LinearWeight::Dense(a), LinearWeight::Dense(b)) => {
                    assert_eq!(a.to_vec1::<f32>().unwrap(), b.to_vec1::<f32>().unwrap())
                }
                (LinearWeight::Packed(a), LinearWeight::Packed(b)) => {
                    assert_eq!(a.dequantize_vec(), b.dequantize_vec(), "{name}");
                    assert_eq!(a.act, b.act);
                }
                _ => panic!("{name} changed kind"),
            }
        }
    }
}
