//! GGUF numerics against an independent implementation: the `gguf` Python package (gguf-py),
//! whose vectors `tools/reference/make_gguf_vectors.py` wrote into
//! `tests/fixtures/gguf/` (listed with their sha256 in `manifest.json`).
//!
//! * For the types gguf-py can quantize (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, and the F16/BF16
//!   casts) candle's quantizer, run on the same seeded tensor, must produce the same block
//!   bytes, and candle's dequantization the same values, bit for bit.
//! * For the k-quants (Q2K ... Q6K, Q8K), which gguf-py cannot quantize, seeded random blocks
//!   are loaded into candle and its dequantization must equal gguf-py's (Q8K: a numpy port of
//!   ggml's `dequantize_row_q8_K`), bit for bit; the same is checked for random legacy blocks.
//!
//! A mismatch is reported by type, block, element and both values.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType, QStorage, QTensor};
use candle_core::{Device, Tensor};
use compsafe_core::GgufType;
use compsafe_engine::compress::gguf::ggml_dtype;
use compsafe_engine::compress::{Compressor, Gguf, HeadLayout, LinearWeight, WeightMap};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf")
}

fn read(name: &str) -> Vec<u8> {
    let p = dir().join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    assert_eq!(bytes.len() % 4, 0);
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn manifest() -> Value {
    serde_json::from_slice(&read("manifest.json")).expect("manifest.json is JSON")
}

fn entries<'a>(m: &'a Value, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    m["files"]
        .as_array()
        .expect("manifest files")
        .iter()
        .filter(move |e| e["kind"] == kind)
}

fn shape(e: &Value) -> Vec<usize> {
    e["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect()
}

fn dtype_of(name: &str) -> GgmlDType {
    match name {
        "F16" => GgmlDType::F16,
        "BF16" => GgmlDType::BF16,
        "Q8_0" => GgmlDType::Q8_0,
        "Q4_0" => GgmlDType::Q4_0,
        "Q4_1" => GgmlDType::Q4_1,
        "Q5_0" => GgmlDType::Q5_0,
        "Q5_1" => GgmlDType::Q5_1,
        "Q2_K" => GgmlDType::Q2K,
        "Q3_K" => GgmlDType::Q3K,
        "Q4_K" => GgmlDType::Q4K,
        "Q5_K" => GgmlDType::Q5K,
        "Q6_K" => GgmlDType::Q6K,
        "Q8_K" => GgmlDType::Q8K,
        other => panic!("manifest type {other} has no candle dtype"),
    }
}

/// Describes every differing element (type, block, index in block, values), or `None`.
fn value_mismatches(what: &str, block: usize, got: &[f32], want: &[f32]) -> Option<String> {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let bad: Vec<usize> = (0..got.len())
        .filter(|&i| got[i].to_bits() != want[i].to_bits())
        .collect();
    if bad.is_empty() {
        return None;
    }
    let max_abs = bad
        .iter()
        .map(|&i| (got[i] - want[i]).abs())
        .fold(0f32, f32::max);
    let first: Vec<String> = bad
        .iter()
        .take(8)
        .map(|&i| {
            format!(
                "block {} element {}: candle {:e} vs gguf-py {:e}",
                i / block,
                i % block,
                got[i],
                want[i]
            )
        })
        .collect();
    Some(format!(
        "{what}: {} of {} values differ (max |diff| {max_abs:e}); {}",
        bad.len(),
        got.len(),
        first.join("; ")
    ))
}

fn byte_mismatches(what: &str, type_size: usize, got: &[u8], want: &[u8]) -> Option<String> {
    if got.len() != want.len() {
        return Some(format!(
            "{what}: {} bytes from candle vs {} from gguf-py",
            got.len(),
            want.len()
        ));
    }
    let bad: Vec<usize> = (0..got.len()).filter(|&i| got[i] != want[i]).collect();
    if bad.is_empty() {
        return None;
    }
    let blocks: std::collections::BTreeSet<usize> = bad.iter().map(|i| i / type_size).collect();
    let first: Vec<String> = bad
        .iter()
        .take(8)
        .map(|&i| {
            format!(
                "block {} byte {}: candle {:#04x} vs gguf-py {:#04x}",
                i / type_size,
                i % type_size,
                got[i],
                want[i]
            )
        })
        .collect();
    Some(format!(
        "{what}: {} bytes differ in {} of {} blocks; {}",
        bad.len(),
        blocks.len(),
        got.len() / type_size,
        first.join("; ")
    ))
}

#[test]
fn fixture_files_match_the_manifest() {
    let m = manifest();
    let mut checked = 0;
    for e in m["files"].as_array().unwrap() {
        let file = e["file"].as_str().unwrap();
        let digest = hex::encode(Sha256::digest(read(file)));
        assert_eq!(digest, e["sha256"].as_str().unwrap(), "{file}");
        if let Some(d) = e.get("dequant").and_then(Value::as_str) {
            let digest = hex::encode(Sha256::digest(read(d)));
            assert_eq!(digest, e["dequant_sha256"].as_str().unwrap(), "{d}");
        }
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} fixture files listed");
}

#[test]
fn candle_quantizes_like_gguf_py() {
    let m = manifest();
    let src_entry = entries(&m, "source").next().expect("a source tensor");
    let src_shape = shape(src_entry);
    let src = f32s(&read(src_entry["file"].as_str().unwrap()));
    let src = Tensor::from_vec(src, src_shape.as_slice(), &Device::Cpu).unwrap();

    let mut failures = Vec::new();
    let mut types = Vec::new();
    for e in entries(&m, "quantized_source") {
        let ty = e["type"].as_str().unwrap();
        let dtype = dtype_of(ty);
        let type_size = e["type_size"].as_u64().unwrap() as usize;
        let block = e["block_size"].as_u64().unwrap() as usize;
        assert_eq!(dtype.type_size(), type_size, "{ty} type size");
        assert_eq!(dtype.block_size(), block, "{ty} block size");
        types.push(ty.to_string());

        let q = QTensor::quantize(&src, dtype).unwrap();
        let want_bytes = read(e["file"].as_str().unwrap());
        let got_bytes = q.data().unwrap();
        if let Some(msg) = byte_mismatches(ty, type_size, &got_bytes, &want_bytes) {
            failures.push(msg);
        }
        let want = f32s(&read(e["dequant"].as_str().unwrap()));
        let got = q.dequantize(&Device::Cpu).unwrap();
        let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        if let Some(msg) = value_mismatches(ty, block, &got, &want) {
            failures.push(format!("dequantized {msg}"));
        }
    }
    for needed in ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"] {
        assert!(
            types.iter().any(|t| t == needed),
            "no {needed} vectors in the manifest"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_gguf_compressor_stores_gguf_py_blocks() {
    // End to end through the compressor: the blocks it stores are gguf-py's.
    let m = manifest();
    let src_entry = entries(&m, "source").next().unwrap();
    let src = f32s(&read(src_entry["file"].as_str().unwrap()));
    let src = Tensor::from_vec(src, shape(src_entry).as_slice(), &Device::Cpu).unwrap();
    let mut weights = WeightMap::new();
    weights.insert("model.layers.0.mlp.up_proj.weight".into(), src);
    let layout = HeadLayout {
        num_layers: 1,
        num_heads: 1,
        num_kv_heads: 1,
        head_dim: 512,
    };
    for (ty, name) in [
        (GgufType::Q8_0, "Q8_0"),
        (GgufType::Q4_0, "Q4_0"),
        (GgufType::Q4_1, "Q4_1"),
        (GgufType::Q5_0, "Q5_0"),
        (GgufType::Q5_1, "Q5_1"),
    ] {
        let e = entries(&m, "quantized_source")
            .find(|e| e["type"] == name)
            .unwrap();
        let c = Gguf::new(ty)
            .compress(&weights, &|_| true, &layout)
            .unwrap();
        let LinearWeight::Quantized(q) = &c.weights["model.layers.0.mlp.up_proj.weight"] else {
            panic!("{name}: not block-quantized")
        };
        assert_eq!(Some(q.dtype()), ggml_dtype(ty));
        let want = read(e["file"].as_str().unwrap());
        assert!(
            q.data().unwrap().as_ref() == want.as_slice(),
            "{name}: compressor blocks differ from gguf-py"
        );
        let stat = &c.stats[0];
        assert_eq!(stat.bytes, e["bytes"].as_u64().unwrap());
        // The reported error is that of gguf-py's dequantized tensor.
        let deq = f32s(&read(e["dequant"].as_str().unwrap()));
        let reference = f32s(&read(src_entry["file"].as_str().unwrap()));
        let rel = compsafe_engine::compress::relative_error(&reference, &deq);
        assert!(
            (stat.rel_error - rel).abs() <= 1e-12 * rel.max(1.0),
            "{name}"
        );
    }
}

#[test]
fn candle_dequantizes_random_blocks_like_gguf_py() {
    let m = manifest();
    let mut failures = Vec::new();
    let mut types = Vec::new();
    for e in entries(&m, "random_blocks") {
        let ty = e["type"].as_str().unwrap();
        let dtype = dtype_of(ty);
        let dims = shape(e);
        let block = e["block_size"].as_u64().unwrap() as usize;
        let bytes = read(e["file"].as_str().unwrap());
        let n: usize = dims.iter().product();
        // qtensor_from_ggml trusts the length; check it first.
        assert_eq!(
            bytes.len(),
            n / block * dtype.type_size(),
            "{ty}: block bytes"
        );
        let storage = QStorage::from_data(Cow::Borrowed(&bytes), &Device::Cpu, dtype).unwrap();
        let q = QTensor::new(storage, dims.as_slice()).unwrap();
        assert_eq!(
            q.data().unwrap().as_ref(),
            bytes.as_slice(),
            "{ty}: bytes round trip"
        );
        // The GGUF file reader's path (qtensor_from_ggml) must load the same blocks; it has no
        // Q8K case, which llama.cpp never writes to files.
        match qtensor_from_ggml(dtype, &bytes, dims.clone(), &Device::Cpu) {
            Ok(f) => assert_eq!(
                f.data().unwrap().as_ref(),
                bytes.as_slice(),
                "{ty}: file path"
            ),
            Err(e) => assert_eq!(dtype, GgmlDType::Q8K, "{ty}: {e}"),
        }
        let got = q.dequantize(&Device::Cpu).unwrap();
        let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let want = f32s(&read(e["dequant"].as_str().unwrap()));
        let label = format!("{ty} ({})", e["file"].as_str().unwrap());
        if let Some(msg) = value_mismatches(&label, block, &got, &want) {
            failures.push(msg);
        }
        types.push(ty.to_string());
    }
    for needed in ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K"] {
        assert!(
            types.iter().any(|t| t == needed),
            "no {needed} blocks in the manifest"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn k_quant_fallback_on_narrow_rows_stores_gguf_py_blocks() {
    // The source reshaped to rows of 64 (the same blocks of 32, in the same order): every
    // k-quant falls back to llama.cpp's 32-block type, whose blocks gguf-py wrote.
    let m = manifest();
    let src_entry = entries(&m, "source").next().unwrap();
    let src = f32s(&read(src_entry["file"].as_str().unwrap()));
    let n = src.len();
    let mut weights = WeightMap::new();
    weights.insert(
        "w".into(),
        Tensor::from_vec(src, (n / 64, 64), &Device::Cpu).unwrap(),
    );
    let layout = HeadLayout {
        num_layers: 1,
        num_heads: 1,
        num_kv_heads: 1,
        head_dim: 64,
    };
    for (ty, fallback) in [
        (GgufType::Q2K, "Q4_0"),
        (GgufType::Q3K, "Q4_0"),
        (GgufType::Q4K, "Q5_0"),
        (GgufType::Q5K, "Q5_1"),
        (GgufType::Q6K, "Q8_0"),
        (GgufType::Q8K, "Q8_0"),
    ] {
        let e = entries(&m, "quantized_source")
            .find(|e| e["type"] == fallback)
            .unwrap();
        let c = Gguf::new(ty)
            .compress(&weights, &|_| true, &layout)
            .unwrap();
        let LinearWeight::Quantized(q) = &c.weights["w"] else {
            panic!("{ty:?}: not block-quantized")
        };
        assert_eq!(q.dtype(), dtype_of(fallback), "{ty:?}");
        assert!(
            q.data().unwrap().as_ref() == read(e["file"].as_str().unwrap()).as_slice(),
            "{ty:?} -> {fallback}: blocks differ from gguf-py"
        );
        let note = c.stats[0].note.as_deref().unwrap();
        assert!(note.contains(&fallback.to_ascii_lowercase()), "{note}");
    }
}
