//! Quantized checkpoints made by the real libraries (llm-compressor, GPTQModel, bitsandbytes)
//! against transformers' outputs on them: every layer's dequantized weight bit for bit (the
//! sha256 of the library's own dequantization), next-token logits within 1e-3 relative and
//! 32-token greedy continuations identical. Fixtures: tools/reference/make_quant_fixtures.py.

use std::path::{Path, PathBuf};

use candle_core::Device;
use compsafe_engine::score::all_logits;
use compsafe_engine::{generate, Checkpoint, GenerateOptions, Model};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture(name: &str) -> PathBuf {
    if name.starts_with("tiny-safety") {
        root().join("models").join(name)
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/quant")
            .join(name)
    }
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// Elementwise |a - b| <= 1e-3 * |b| + 1e-4.
fn assert_close(got: &[f32], want: &[f32], what: &str) -> f32 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = 0.0f32;
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        let tol = 1e-3 * b.abs() + 1e-4;
        let d = (a - b).abs();
        worst = worst.max(d / (b.abs() + 1e-4));
        assert!(d <= tol, "{what}[{i}]: got {a}, want {b} (|diff| {d} > {tol})");
    }
    worst
}

fn check(name: &str) {
    let dir = fixture(name);
    let exp: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap())
            .unwrap();
    let ckpt = Checkpoint::load(&dir, &Device::Cpu).unwrap();
    let info = ckpt.format.clone().expect("a quantized format is detected");
    assert_eq!(info.kind, exp["format"].as_str().unwrap(), "{name}: format");

    // Dequantized weights, bit for bit.
    let want = exp["dequant_sha256"].as_object().unwrap();
    assert_eq!(ckpt.packed.len(), want.len(), "{name}: packed layers");
    for (layer, sha) in want {
        let w = ckpt
            .packed
            .get(layer)
            .unwrap_or_else(|| panic!("{name}: `{layer}` is not packed"));
        let bytes: Vec<u8> = w
            .dequantize_vec()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            sha.as_str().unwrap(),
            "{name}: dequantized `{layer}` differs from the library's"
        );
    }

    let model = Model::new(&ckpt).unwrap();
    let prompts: Vec<Vec<u32>> = exp["prompts"].as_array().unwrap().iter().map(ids).collect();
    let mut worst = 0.0f32;
    for (i, p) in prompts.iter().enumerate() {
        let logits = &all_logits(&model, std::slice::from_ref(p)).unwrap()[0];
        let last: Vec<f32> = logits.get(p.len() - 1).unwrap().to_vec1().unwrap();
        worst = worst.max(assert_close(
            &last,
            &floats(&exp["next_logits"][i]),
            &format!("{name} next_logits[{i}]"),
        ));
    }
    let opts = GenerateOptions {
        max_new_tokens: 32,
        batch_tokens: 1 << 20,
        max_batch: 64,
        eos: vec![],
    };
    for (i, p) in prompts.iter().enumerate() {
        let g = generate(&model, std::slice::from_ref(p), &opts, None).unwrap();
        assert_eq!(g[0].tokens, ids(&exp["greedy"][i]), "{name} greedy[{i}]");
    }
    eprintln!(
        "{name}: {} ({}), {} layers bit-exact, logits worst relative difference {worst:.2e}, greedy identical",
        info.method,
        info.execution(),
        want.len()
    );
}

macro_rules! fixtures {
    ($($test:ident => $name:expr,)*) => {$(
        #[test]
        fn $test() {
            check($name);
        }
    )*};
}

fixtures! {
    gptq_w4g128_llama => "gptq-w4g128-llama",
}
