//! The property that justifies calibrated methods: calibrated on some text, GPTQ and AWQ at 4
//! bits move the model's next-token distributions on other (held-out) text less than
//! round-to-nearest at the same group size, and SparseGPT and Wanda at 50% less than
//! magnitude pruning at 50% per matrix. Measured as the mean per-token KL(reference ||
//! variant) on the fixture model and on a model of a realistic width with random weights.

use std::path::Path;

use candle_core::{DType, Device, Tensor, D};
use compsafe_core::calibration::CalibrationSpec;
use compsafe_core::Variant;
use compsafe_engine::calib::data::{calibration_tokens, source_prompts};
use compsafe_engine::calib::CalibTokens;
use compsafe_engine::config::ModelConfig;
use compsafe_engine::variant::compress_with;
use compsafe_engine::{Checkpoint, Model, TextCodec};

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Mean over tokens of KL(p_ref || p_var) of the next-token distributions.
fn mean_kl(reference: &Model, variant: &Model, seqs: &[Vec<u32>]) -> f64 {
    let (mut total, mut n) = (0f64, 0usize);
    for s in seqs {
        let ids = Tensor::from_slice(s, (1, s.len()), &Device::Cpu).unwrap();
        let lp = |m: &Model| {
            candle_nn::ops::log_softmax(&m.forward_logits(&ids).unwrap(), D::Minus1)
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap()
        };
        let (p, q) = (lp(reference), lp(variant));
        let kl = (p.exp().unwrap() * (p - q).unwrap())
            .unwrap()
            .sum(D::Minus1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        total += kl.iter().sum::<f64>();
        n += kl.len();
    }
    total / n as f64
}

fn kl_of(ckpt: &Checkpoint, variant: &str, calib: &CalibTokens, held_out: &[Vec<u32>]) -> f64 {
    let v = Variant::parse(variant, "variant").unwrap();
    let c = compress_with(ckpt, &v, Some((calib, 4))).unwrap();
    let reference = Model::new(ckpt).unwrap();
    let m = Model::with_variant(ckpt, &c).unwrap();
    mean_kl(&reference, &m, held_out)
}

/// GPTQ below RTN; SparseGPT and Wanda below global magnitude pruning (`prune:0.5`, the
/// project's magnitude baseline), SparseGPT also below per-matrix magnitude pruning. Wanda
/// against per-matrix magnitude is asserted only where it holds (`wide`): on the fixture,
/// whose activations have no outlier channels, Wanda's per-row comparison loses to
/// per-matrix magnitude (measured: mean KL 0.396 against 0.354).
fn assert_orderings(
    ckpt: &Checkpoint,
    calib: &CalibTokens,
    held_out: &[Vec<u32>],
    what: &str,
    wide: bool,
) {
    let k = |v: &str| {
        let x = kl_of(ckpt, v, calib, held_out);
        eprintln!("{what}: {v}: mean KL {x:.5}");
        x
    };
    let (gptq, rtn) = (k("gptq:w4g128"), k("int4:g128"));
    assert!(gptq < rtn, "{what}: gptq {gptq} vs int4:g128 {rtn}");
    // AWQ's grid is asymmetric: against RTN on the asymmetric grid of the same group size.
    let (awq, rtn_asym) = (k("awq:w4g128"), k("int4:g128:asym"));
    assert!(
        awq < rtn_asym,
        "{what}: awq {awq} vs int4:g128:asym {rtn_asym}"
    );
    let (global, per_matrix) = (k("prune:0.5"), k("prune:0.5:layer"));
    let (sparsegpt, wanda) = (k("sparsegpt:0.5"), k("wanda:0.5"));
    assert!(
        sparsegpt < global,
        "{what}: sparsegpt {sparsegpt} vs prune:0.5 {global}"
    );
    assert!(
        wanda < global,
        "{what}: wanda {wanda} vs prune:0.5 {global}"
    );
    assert!(
        sparsegpt < per_matrix,
        "{what}: sparsegpt {sparsegpt} vs prune:0.5:layer {per_matrix}"
    );
    if wide {
        assert!(
            wanda < per_matrix,
            "{what}: wanda {wanda} vs prune:0.5:layer {per_matrix}"
        );
    }
}

#[test]
fn calibrated_methods_beat_their_baselines_on_the_fixture() {
    let dir = root().join("models/tiny-safety");
    let ckpt = Checkpoint::load(&dir, &Device::Cpu).unwrap();
    let codec = TextCodec::from_hf_dir(&dir, None).unwrap();
    let suites = root().join("suites");
    // Calibrated on the benign fixture prompts; held out: harmful and sentiment prompts.
    let spec = CalibrationSpec {
        suite: Some("fixture-benign".into()),
        sequences: 32,
        seq_len: 64,
        ..CalibrationSpec::default()
    };
    let prompts = source_prompts(&spec, &suites, root(), "calibration").unwrap();
    let calib = calibration_tokens(&spec, &prompts, &codec, "calibration").unwrap();
    let mut held_out = Vec::new();
    for suite in ["fixture-harmful", "fixture-sentiment"] {
        let s = CalibrationSpec {
            suite: Some(suite.into()),
            ..CalibrationSpec::default()
        };
        for p in source_prompts(&s, &suites, root(), "held_out")
            .unwrap()
            .iter()
            .take(40)
        {
            held_out.push(codec.encode_prompt(p).unwrap());
        }
    }
    assert_orderings(&ckpt, &calib, &held_out, "fixture", false);
}

/// About two minutes on two cores (a 4,864-wide Hessian per method): run with `--ignored`.
#[test]
#[ignore = "slow (about two minutes): cargo test --release --test calib_kl -- --ignored"]
fn calibrated_methods_beat_their_baselines_on_a_realistic_width() {
    // Qwen2.5-0.5B's width (hidden 896, 14 heads of 64, 2 key-value heads, MLP 4864) with one
    // layer, random weights whose embedding has outlier channels; calibration and held-out
    // text are disjoint random token sequences.
    let mut cfg = ModelConfig::from_hf_json(
        r#"{"architectures":["LlamaForCausalLM"],"hidden_size":896,"intermediate_size":4864,
            "num_hidden_layers":1,"num_attention_heads":14,"num_key_value_heads":2,
            "vocab_size":1024,"max_position_embeddings":256,"rms_norm_eps":1e-5,
            "rope_theta":10000.0,"tie_word_embeddings":true}"#,
    )
    .unwrap();
    cfg.bos_token_id = Some(0);
    let mut weights = compsafe_engine::compress::WeightMap::new();
    let mut seed = 11u64;
    let mut rnd = |n: usize, std: f32| -> Vec<f32> {
        (0..n)
            .map(|_| {
                // Sum of four uniforms: roughly normal.
                let mut s = 0f32;
                for _ in 0..4 {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    s += ((seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5;
                }
                s * std * 1.7
            })
            .collect()
    };
    for (name, shape) in cfg.expected_shapes() {
        let n: usize = shape.iter().product();
        let mut v = if name.ends_with("norm.weight") {
            vec![1.0; n]
        } else {
            rnd(n, 0.05)
        };
        if name == "model.embed_tokens.weight" {
            for row in v.chunks_mut(896) {
                for c in [5, 77, 300, 812] {
                    row[c] *= 10.0;
                }
            }
        }
        weights.insert(
            name,
            Tensor::from_vec(v, shape.as_slice(), &Device::Cpu).unwrap(),
        );
    }
    let ckpt = Checkpoint::from_weights("random-896".into(), cfg, weights);
    let mut s = 5u64;
    let mut ids = |count: usize, len: usize| -> Vec<Vec<u32>> {
        (0..count)
            .map(|_| {
                (0..len)
                    .map(|_| {
                        s = s
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        3 + ((s >> 33) % 1000) as u32
                    })
                    .collect()
            })
            .collect()
    };
    // More calibration tokens than MLP channels: with 16 x 64 = 1,024 tokens (a
    // rank-deficient 4,864-wide Hessian) GPTQ overfits them and lands above RTN on held-out
    // text (measured: mean KL 0.252 against 0.229).
    let calib = CalibTokens { seqs: ids(96, 64) };
    let held_out = ids(8, 64);
    assert_orderings(&ckpt, &calib, &held_out, "width 896", true);
}
