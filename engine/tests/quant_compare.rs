//! Quantized checkpoints against their unquantized sources: per-layer error and the
//! honest-quantizer check. Honest files (made by GPTQModel, llm-compressor, bitsandbytes)
//! stay within the margin; a file whose codes were changed by hand is flagged, naming the
//! layer.

use std::path::{Path, PathBuf};

use candle_core::Device;
use compsafe_engine::formats::compare::{layer_errors, HONEST_MARGIN};
use compsafe_engine::Checkpoint;

fn quant(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/quant")
        .join(name)
}

const HONEST: &[(&str, &str)] = &[
    ("gptq-w4g128-llama", "llama"),
    ("gptq-w4g64-act-llama", "llama"),
    ("gptq-w8g128-llama", "llama"),
    ("gptq-w3g128-llama", "llama"),
    ("gptq-w2g64-llama", "llama"),
    ("gptq-w4g64-asym-llama", "llama"),
    ("gptq-w4g128-qwen2", "qwen2"),
    ("awq-w4g64-llama", "llama"),
    ("awq-w4g128-qwen2", "qwen2"),
    ("ct-w4a16-llama", "llama"),
    ("ct-w4a16-asym-llama", "llama"),
    ("ct-w8a16-llama", "llama"),
    ("ct-fp8-dynamic-llama", "llama"),
    ("ct-int8-w8a8-llama", "llama"),
    ("bnb-nf4-llama", "llama"),
    ("bnb-int8-llama", "llama"),
];

#[test]
fn honest_files_stay_within_the_margin() {
    let mut lines = Vec::new();
    for (name, src) in HONEST {
        let source = Checkpoint::load(&quant("src").join(src), &Device::Cpu).unwrap();
        let q = Checkpoint::load(&quant(name), &Device::Cpu).unwrap();
        let errs = layer_errors(&source, &q, HONEST_MARGIN).unwrap();
        let worst = &errs[0];
        let best = errs.iter().map(|e| e.ratio).fold(f64::INFINITY, f64::min);
        lines.push(format!(
            "{name:24} ratio {best:.3}..{:.3} (worst {}), rel error {:.4} vs RTN {:.4}",
            worst.ratio, worst.name, worst.rel_error, worst.rtn_rel_error
        ));
        assert!(
            errs.iter().all(|e| !e.beyond_honest),
            "{name}: {} flagged with ratio {:.3}",
            worst.name,
            worst.ratio
        );
    }
    eprintln!("{}", lines.join("\n"));
}

#[test]
fn a_layer_changed_by_hand_is_flagged() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("gptq");
    std::fs::create_dir_all(&dir).unwrap();
    for f in std::fs::read_dir(quant("gptq-w4g128-llama")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, dir.join(f.file_name().unwrap())).unwrap();
    }
    // Rewrite a quarter of one layer's packed codes: each affected word gets every nibble
    // moved by 8 (a sign flip of those weights on the symmetric grid).
    let path = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let name = "model.layers.1.mlp.up_proj.qweight";
    let off = &header[name]["data_offsets"];
    let (a, b) = (
        8 + n + off[0].as_u64().unwrap() as usize,
        8 + n + off[1].as_u64().unwrap() as usize,
    );
    for w in bytes[a..b].chunks_exact_mut(4).step_by(4) {
        let v = u32::from_le_bytes([w[0], w[1], w[2], w[3]]) ^ 0x8888_8888;
        w.copy_from_slice(&v.to_le_bytes());
    }
    std::fs::write(&path, bytes).unwrap();
    let source = Checkpoint::load(&quant("src/llama"), &Device::Cpu).unwrap();
    let q = Checkpoint::load(&dir, &Device::Cpu).unwrap();
    let errs = layer_errors(&source, &q, HONEST_MARGIN).unwrap();
    let flagged: Vec<&str> = errs
        .iter()
        .filter(|e| e.beyond_honest)
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(flagged, vec!["model.layers.1.mlp.up_proj.weight"]);
    eprintln!("tampered layer ratio {:.2}", errs[0].ratio);
}
