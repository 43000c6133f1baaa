//! compsafe against llama.cpp itself (fixtures from tools/reference/make_llama_cpp_vectors.py:
//! ggml's quantizer and llama-quantize / llama-imatrix built from llama-cpp-python's sources):
//! quantized blocks and whole files byte for byte, with and without an importance matrix, and
//! llama.cpp's greedy tokens and last-position logits on files compsafe writes identically.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use compsafe_core::{GgufFtype, Method};
use compsafe_engine::ggml::file::to_bytes;
use compsafe_engine::ggml::imatrix::Imatrix;
use compsafe_engine::ggml::{dequantize, quantize, GgmlType};
use compsafe_engine::gguf_quantize::{quantize_model, QuantizeRequest};
use compsafe_engine::gguf_write::{convert_hf, GgufModel};
use compsafe_engine::{generate, GenerateOptions, Model};
use compsafe_tests::root;
use serde_json::Value;
use sha2::{Digest, Sha256};

fn fixtures() -> PathBuf {
    root().join("engine/tests/fixtures/llama_cpp")
}

fn manifest() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("manifest.json")).unwrap())
        .unwrap()
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn bytes_of(m: &GgufModel) -> Vec<u8> {
    to_bytes(&m.kv, &m.tensors, 32)
}

fn ggml_type(name: &str) -> GgmlType {
    (0..40)
        .filter_map(GgmlType::from_id)
        .find(|t| t.name() == name)
        .unwrap()
}

#[test]
fn blocks_equal_ggml_for_every_type_written_with_and_without_an_importance_matrix() {
    let m = manifest();
    let b = &m["blocks"];
    let dir = fixtures().join("blocks");
    let src =
        f32s(&std::fs::read(root().join("engine/tests/fixtures/gguf/source.f32.bin")).unwrap());
    let im = f32s(&std::fs::read(dir.join("imatrix.f32.bin")).unwrap());
    let mut checked = Vec::new();
    let mut not_written = Vec::new();
    for (name, e) in b["types"].as_object().unwrap() {
        let ty = ggml_type(name);
        for (kind, imatrix) in [("plain", None), ("imatrix", Some(im.as_slice()))] {
            let Some(f) = e.get(kind) else { continue };
            let want = std::fs::read(dir.join(f["file"].as_str().unwrap())).unwrap();
            if !ty.can_quantize() {
                not_written.push(format!("{name}/{kind}"));
                continue;
            }
            let got = quantize(ty, &src, 512, imatrix).unwrap();
            assert_eq!(got.len(), want.len(), "{name} {kind}");
            let first = got.iter().zip(&want).position(|(a, b)| a != b);
            assert!(
                first.is_none(),
                "{name} {kind}: first differing byte {first:?} (block {})",
                first.unwrap_or(0) / ty.type_size()
            );
            checked.push(format!("{name}/{kind}"));
        }
        // Every i-quant and ternary type is decoded as ggml decodes it, bit for bit.
        if let Some(d) = e.get("dequant").and_then(Value::as_str) {
            let blocks = std::fs::read(dir.join(e["imatrix"]["file"].as_str().unwrap())).unwrap();
            let want = f32s(&std::fs::read(dir.join(d)).unwrap());
            let got = dequantize(ty, &blocks, want.len()).unwrap();
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(g.to_bits(), w.to_bits(), "{name} dequant [{i}]: {g} vs {w}");
            }
        }
    }
    eprintln!("byte-identical: {checked:?}\nnot yet written by compsafe: {not_written:?}");
    assert!(checked.len() >= 28, "{checked:?}");
}

/// The files of the manifest compsafe writes, by key, as bytes.
fn compsafe_files(m: &Value) -> (BTreeMap<String, Vec<u8>>, Vec<String>) {
    let src = convert_hf(&root().join("models/tiny-safety")).unwrap();
    let mut out = BTreeMap::new();
    out.insert("f32".to_string(), bytes_of(&src));
    let mut skipped = Vec::new();
    let imatrices: BTreeMap<&str, (Imatrix, String)> = ["gguf", "dat"]
        .into_iter()
        .map(|k| {
            let name = m["imatrix"][k].as_str().unwrap();
            (
                k,
                (
                    Imatrix::read(&fixtures().join(name)).unwrap(),
                    name.to_string(),
                ),
            )
        })
        .collect();
    for key in m["files"].as_object().unwrap().keys() {
        if key == "f32" {
            continue;
        }
        let (ft, im) = match key.split_once("+imatrix.") {
            Some((f, k)) => (f, Some(imatrices[k].clone())),
            None => (key.as_str(), None),
        };
        let Method::GgufFile { ftype, .. } = Method::parse(&format!("gguf:{ft}"), "t").unwrap()
        else {
            panic!("{key}")
        };
        let mut req = QuantizeRequest::recipe(ftype);
        req.imatrix = im;
        match quantize_model(&src, &req) {
            Ok(q) => {
                out.insert(key.clone(), bytes_of(&q));
            }
            Err(e) if e.to_string().contains("not implemented") => skipped.push(key.clone()),
            Err(e) => panic!("{key}: {e}"),
        }
    }
    (out, skipped)
}

#[test]
fn files_equal_llama_quantize_for_every_file_type_written() {
    let m = manifest();
    let (files, skipped) = compsafe_files(&m);
    for (key, bytes) in &files {
        let want = &m["files"][key];
        assert_eq!(
            bytes.len() as u64,
            want["bytes"].as_u64().unwrap(),
            "{key}: size"
        );
        assert_eq!(
            hex(bytes),
            want["sha256"].as_str().unwrap(),
            "{key}: sha256"
        );
    }
    eprintln!(
        "byte-identical files: {:?}\nnot yet written: {skipped:?}",
        files.keys().collect::<Vec<_>>()
    );
    // The file types built on the i-quants below IQ4 are the ones not written yet.
    for s in &skipped {
        assert!(
            s.starts_with("iq3") || s.starts_with("iq2") || s.starts_with("iq1"),
            "{s}"
        );
    }
    let _ = GgufFtype::Q4KM;
}

/// One model's greedy run against llama.cpp's: tokens equal per prompt, and the largest
/// difference of the last-position logits.
struct Compared {
    equal: Vec<bool>,
    /// Against llama.cpp's plain kernels.
    max_logit_diff: f32,
    /// Against llama.cpp's defaults (repacked weights for some types on this CPU).
    max_repacked: f32,
    first_diff: Vec<Option<usize>>,
}

fn compare_greedy(key: &str, bytes: &[u8], g: &Value) -> Compared {
    let ck = compsafe_engine::loader::read_gguf(Path::new(key), bytes, &Device::Cpu).unwrap();
    let model = Model::new(&ck).unwrap();
    let prompts: Vec<Vec<u32>> = serde_json::from_value(g["prompt_ids"].clone()).unwrap();
    let entry = &g["models"][key];
    let want_tokens: Vec<Vec<u32>> = serde_json::from_value(entry["tokens"].clone()).unwrap();
    let read = |k: &str| {
        f32s(&std::fs::read(fixtures().join("greedy").join(entry[k].as_str().unwrap())).unwrap())
    };
    let (repacked, plain) = (read("logits"), read("logits_norepack"));
    let vocab = ck.config.vocab_size;
    let (mut max_logit_diff, mut max_repacked) = (0.0f32, 0.0f32);
    for (i, p) in prompts.iter().enumerate() {
        let ids = Tensor::new(p.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let logits = model.forward_logits(&ids).unwrap();
        let last: Vec<f32> = logits
            .squeeze(0)
            .unwrap()
            .get(p.len() - 1)
            .unwrap()
            .to_vec1()
            .unwrap();
        let row = i * vocab..(i + 1) * vocab;
        let mut per = 0.0f32;
        for ((a, b), c) in last.iter().zip(&plain[row.clone()]).zip(&repacked[row]) {
            max_logit_diff = max_logit_diff.max((a - b).abs());
            max_repacked = max_repacked.max((a - c).abs());
            per = per.max((a - b).abs());
        }
        eprintln!("{key} prompt {i}: {per:.2e}");
    }
    let opts = GenerateOptions {
        max_new_tokens: g["max_new_tokens"].as_u64().unwrap() as usize,
        max_batch: 1,
        eos: vec![ck.config.eos_token_ids[0]],
        ..GenerateOptions::default()
    };
    let gens = generate(&model, &prompts, &opts, None).unwrap();
    let mut equal = Vec::new();
    let mut first_diff = Vec::new();
    for (gen, want) in gens.iter().zip(&want_tokens) {
        equal.push(&gen.tokens == want);
        first_diff.push(gen.tokens.iter().zip(want).position(|(a, b)| a != b));
    }
    Compared {
        equal,
        max_logit_diff,
        max_repacked,
        first_diff,
    }
}

#[test]
fn greedy_tokens_and_logits_match_llama_cpp() {
    let m = manifest();
    let (files, _) = compsafe_files(&m);
    let g = &m["greedy"];
    let mut report = Vec::new();
    for key in g["models"].as_object().unwrap().keys() {
        let Some(bytes) = files.get(key) else {
            report.push(format!("{key}: not written yet"));
            continue;
        };
        let c = compare_greedy(key, bytes, g);
        // Measured bounds (docs/gguf.md). Logits agree to float rounding (< 1e-5) on every
        // prompt except: Q8_0 everywhere (candle quantizes Q8_0 activations with ggml's
        // reference rule, `1/d` and half away from zero; llama.cpp's x86 code with `127/amax`
        // and half to even), and one prompt each of IQ4_NL, Q6_K and TQ2_0, where an
        // activation lands within float rounding of a Q8 rounding boundary and the two
        // implementations round it to neighbouring levels.
        let bound = match key.as_str() {
            "iq4_nl" | "q6_k" => 0.03,
            "tq2_0" => 0.04,
            "q8_0" => 0.1,
            _ => 1e-5,
        };
        assert!(
            c.max_logit_diff <= bound,
            "{key}: logits differ by {} (bound {bound})",
            c.max_logit_diff
        );
        for (i, eq) in c.equal.iter().enumerate() {
            if key == "q8_0" && i == 2 {
                // The one greedy divergence: after 16 equal tokens, at a step whose logits
                // differ by the Q8_0 activation rounding above.
                assert!(
                    c.first_diff[i].unwrap_or(usize::MAX) >= 16,
                    "{key} prompt {i}: {:?}",
                    c.first_diff[i]
                );
                continue;
            }
            assert!(
                eq,
                "{key} prompt {i}: first differing token {:?}",
                c.first_diff[i]
            );
        }
        report.push(format!(
            "{key}: tokens equal {:?} first diff {:?}, max |logit diff| {:.2e} (repacked defaults {:.2e})",
            c.equal, c.first_diff, c.max_logit_diff, c.max_repacked
        ));
    }
    eprintln!("{}", report.join("\n"));
}

#[test]
fn files_compsafe_writes_load_in_llama_cpp_with_the_same_greedy_tokens() {
    // Recorded by the dev script: llama.cpp loading compsafe's own output.
    let m = manifest();
    for (ty, e) in m["interop"].as_object().unwrap() {
        let tokens: Vec<Vec<u32>> = serde_json::from_value(e["tokens"].clone()).unwrap();
        assert_eq!(tokens.len(), 4, "{ty}");
        if let Some(same) = e.get("same_bytes_as_llama_quantize") {
            assert_eq!(same, true, "{ty}");
            assert_eq!(e["same_greedy_as_llama_quantize_file"], true, "{ty}");
        }
    }
}

#[test]
fn the_importance_matrix_computed_from_a_suite_is_llama_imatrix_s() {
    let m = manifest();
    let calib =
        std::fs::read_to_string(fixtures().join(m["imatrix"]["calibration"].as_str().unwrap()))
            .unwrap();
    assert_eq!(
        compsafe_engine::ggml::imatrix_compute::suite_text("fixture-benign").unwrap(),
        calib
    );
    let reference =
        Imatrix::read(&fixtures().join(m["imatrix"]["gguf"].as_str().unwrap())).unwrap();
    let n_ctx = m["imatrix"]["chunk"].as_u64().unwrap() as usize;
    let ck = compsafe_engine::Checkpoint::load(&root().join("models/tiny-safety"), &Device::Cpu)
        .unwrap();
    let ours = compsafe_engine::ggml::imatrix_compute::of_checkpoint(&ck, "fixture-benign", n_ctx)
        .unwrap();
    assert_eq!(ours.chunk_count, reference.chunk_count);
    assert_eq!(ours.chunk_size, reference.chunk_size);
    assert_eq!(
        ours.entries.keys().collect::<Vec<_>>(),
        reference.entries.keys().collect::<Vec<_>>()
    );
    let mut worst = 0.0f64;
    for (name, e) in &reference.entries {
        let o = &ours.entries[name];
        assert_eq!(o.counts, e.counts, "{name}");
        for (a, b) in o.sums.iter().zip(&e.sums) {
            worst = worst.max(((a - b).abs() / b.abs().max(1e-6)) as f64);
        }
    }
    eprintln!("worst relative difference of the sums: {worst:.2e}");
    assert!(worst < 1e-3, "{worst}");
    // The legacy file holds the same statistics as sum / count * ncall.
    let legacy = Imatrix::read(&fixtures().join(m["imatrix"]["dat"].as_str().unwrap())).unwrap();
    for name in reference.entries.keys() {
        let (a, b) = (
            legacy.importance(name).unwrap(),
            reference.importance(name).unwrap(),
        );
        for (x, y) in a.iter().zip(&b) {
            assert!(
                (x - y).abs() <= 1e-6 * y.abs().max(1e-6),
                "{name}: {x} vs {y}"
            );
        }
    }
}
