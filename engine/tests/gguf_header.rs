//! The bounds-checked GGUF header walk: real files pass (from the gguf Python package and the
//! fixtures), hostile counts and lengths are refused before anything is allocated for them.

use std::path::Path;

use candle_core::Device;
use compsafe_engine::gguf_header::{scan, tensor_bytes};
use compsafe_engine::loader::read_gguf;
use compsafe_tests::root;

fn read(p: &str) -> Vec<u8> {
    std::fs::read(root().join(p)).unwrap()
}

#[test]
fn real_files_pass_and_load() {
    for f in [
        "engine/tests/fixtures/gguf/llama-plain.f32.gguf",
        "engine/tests/fixtures/gguf/llama-plain.q8_0.gguf",
        "fuzz/seeds/gguf/f32.gguf",
        "fuzz/seeds/gguf/q8_0.gguf",
    ] {
        let bytes = read(f);
        let h = scan(&bytes).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert_eq!(h.version, 3, "{f}");
        assert!(!h.tensors.is_empty(), "{f}");
        assert!(h.data_start as usize <= bytes.len(), "{f}");
    }
    let tiny = read("fuzz/seeds/gguf/q8_0.gguf");
    let ck = read_gguf(Path::new("q8_0.gguf"), &tiny, &Device::Cpu).unwrap();
    assert_eq!(ck.config.hidden_size, 8);
    assert_eq!(ck.quantized.len(), 1, "the Q8_0 tensor stays quantized");
}

#[test]
fn truncated_data_is_refused_naming_the_tensor() {
    let bytes = read("fuzz/seeds/gguf/f32.gguf");
    let e = scan(&bytes[..bytes.len() - 64]).unwrap_err();
    assert!(e.contains("runs past the end"), "{e}");
    let e = read_gguf(Path::new("cut.gguf"), &bytes[..100], &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("cut.gguf") && e.contains("invalid GGUF"), "{e}");
}

fn header(version: u32, tensors: u64, kv: u64) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(version.to_le_bytes());
    b.extend(tensors.to_le_bytes());
    b.extend(kv.to_le_bytes());
    b
}

#[test]
fn hostile_counts_and_lengths_are_refused() {
    let e = scan(&header(3, 1 << 40, 0)).unwrap_err();
    assert!(e.contains("cannot fit"), "{e}");
    let e = scan(&header(9, 0, 0)).unwrap_err();
    assert!(e.contains("version 9"), "{e}");
    let e = scan(b"GGXX\x03\0\0\0").unwrap_err();
    assert!(e.contains("bad magic"), "{e}");
    // A key claiming an enormous length.
    let mut b = header(3, 0, 1);
    b.extend(u64::MAX.to_le_bytes());
    b.extend([0u8; 16]);
    let e = scan(&b).unwrap_err();
    assert!(e.contains("metadata key") && e.contains("remain"), "{e}");
    // An array of strings claiming more elements than bytes.
    let mut b = header(3, 0, 1);
    b.extend(1u64.to_le_bytes());
    b.push(b'k');
    b.extend(9u32.to_le_bytes());
    b.extend(8u32.to_le_bytes());
    b.extend((1u64 << 50).to_le_bytes());
    b.extend([0u8; 64]);
    let e = scan(&b).unwrap_err();
    assert!(e.contains("cannot fit"), "{e}");
    // A tensor whose dimensions overflow.
    let mut b = header(3, 1, 0);
    b.extend(1u64.to_le_bytes());
    b.push(b't');
    b.extend(2u32.to_le_bytes());
    b.extend(u64::MAX.to_le_bytes());
    b.extend(4u64.to_le_bytes());
    b.extend(0u32.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    b.extend([0u8; 64]);
    let e = scan(&b).unwrap_err();
    assert!(e.contains("tensor `t`") && e.contains("overflow"), "{e}");
}

#[test]
fn block_sizes_match_ggml() {
    assert_eq!(tensor_bytes(0, &[4, 2]).unwrap(), 32);
    assert_eq!(tensor_bytes(8, &[64]).unwrap(), 68);
    assert_eq!(tensor_bytes(12, &[256, 2]).unwrap(), 288);
    assert_eq!(tensor_bytes(14, &[256]).unwrap(), 210);
    assert!(tensor_bytes(8, &[33]).is_err());
    assert!(tensor_bytes(99, &[1]).is_err());
}

#[test]
fn a_block_count_beyond_the_tensors_is_refused_before_allocating() {
    // Found by fuzzing: a valid small file whose `llama.block_count` says 13 million layers.
    let bytes = read("fuzz/seeds/gguf/oom-block-count.gguf");
    let e = read_gguf(Path::new("fuzzed.gguf"), &bytes, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("fuzzed.gguf") && e.contains("block_count"),
        "{e}"
    );
}

#[test]
fn configs_with_impossible_sizes_are_refused() {
    let text = std::fs::read_to_string(root().join("fuzz/seeds/tiny-config.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["num_hidden_layers"] = 50_000_000.into();
    let e = compsafe_engine::config::ModelConfig::from_hf_json(&v.to_string()).unwrap_err();
    assert!(
        e.contains("num_hidden_layers") && e.contains("50000000"),
        "{e}"
    );
}

#[test]
fn a_zero_alignment_of_any_integer_type_is_refused() {
    // Found by fuzzing: `general.alignment` = 0 stored as an 8-bit integer made the GGUF
    // decoder divide by zero.
    let bytes = read("fuzz/seeds/gguf/crash-zero-alignment.gguf");
    let e = read_gguf(Path::new("fuzzed.gguf"), &bytes, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("general.alignment"), "{e}");
    for t in 0u32..=5 {
        let mut b = header(3, 0, 1);
        b.extend(17u64.to_le_bytes());
        b.extend(b"general.alignment");
        b.extend(t.to_le_bytes());
        b.extend([0u8; 8]);
        let e = scan(&b).unwrap_err();
        assert!(e.contains("not a power of two"), "type {t}: {e}");
    }
}
