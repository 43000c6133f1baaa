//! The engine against HF transformers: logits, greedy continuations (single and left-padded
//! batch), tokenizer ids and chat template rendering, on tiny random checkpoints written by
//! tools/reference/make_hf_fixtures.py.

use std::path::{Path, PathBuf};

use candle_core::Device;
use compsafe_engine::score::all_logits;
use compsafe_engine::tokenizer::ChatMessage;
use compsafe_engine::{generate, Checkpoint, GenerateOptions, Model, TextCodec};
use compsafe_tests::{expected, floats, ids};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Elementwise |a - b| <= 1e-4 * |b| + floor: relative, with a floor for values near zero of
/// 1e-5 or, for rows of large logits, a millionth of the row's largest magnitude (the level of
/// f32 rounding in sums of that size).
fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let floor = (1e-6 * scale).max(1e-5);
    let mut worst = 0.0f32;
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        let tol = 1e-4 * b.abs() + floor;
        let d = (a - b).abs();
        worst = worst.max(d / (b.abs() + 1e-5));
        assert!(
            d <= tol,
            "{what}[{i}]: got {a}, want {b} (|diff| {d} > {tol})"
        );
    }
    eprintln!("{what}: worst relative difference {worst:.2e}");
}

fn check_model(name: &str, model_dir: &Path, exp: &Value) {
    let ckpt = Checkpoint::load(model_dir, &Device::Cpu).unwrap();
    check_checkpoint(name, &ckpt, exp, true);
}

/// Logits (one prompt at a time, every position of prompt 0, and a left-padded batch) within
/// 1e-4 relative of `exp`, and, with `greedy`, the 32-token greedy continuations identical.
fn check_checkpoint(name: &str, ckpt: &Checkpoint, exp: &Value, greedy: bool) {
    let model = Model::new(ckpt).unwrap();
    let prompts: Vec<Vec<u32>> = exp["prompts"].as_array().unwrap().iter().map(ids).collect();

    // Next-token logits of each prompt, run one at a time.
    for (i, p) in prompts.iter().enumerate() {
        let logits = &all_logits(&model, std::slice::from_ref(p)).unwrap()[0];
        let last: Vec<f32> = logits.get(p.len() - 1).unwrap().to_vec1().unwrap();
        assert_close(
            &last,
            &floats(&exp["next_logits"][i]),
            &format!("{name} next_logits[{i}]"),
        );
        if i == 0 {
            let rows: Vec<Vec<f32>> = logits.to_vec2().unwrap();
            for (j, row) in rows.iter().enumerate() {
                assert_close(
                    row,
                    &floats(&exp["all_logits_prompt0"][j]),
                    &format!("{name} prompt0 pos {j}"),
                );
            }
        }
    }
    // The same prompts in one left-padded batch.
    let batched = all_logits(&model, &prompts).unwrap();
    for (i, (p, l)) in prompts.iter().zip(&batched).enumerate() {
        let last: Vec<f32> = l.get(p.len() - 1).unwrap().to_vec1().unwrap();
        assert_close(
            &last,
            &floats(&exp["batch"]["next_logits"][i]),
            &format!("{name} batch next_logits[{i}]"),
        );
    }

    if !greedy {
        return;
    }
    // Greedy continuations: one at a time, and all together.
    let opts = GenerateOptions {
        max_new_tokens: 32,
        batch_tokens: 1 << 20,
        max_batch: 64,
        eos: vec![],
    };
    for (i, p) in prompts.iter().enumerate() {
        let g = generate(&model, std::slice::from_ref(p), &opts, None).unwrap();
        assert_eq!(
            g[0].tokens,
            ids(&exp["greedy"][i]),
            "{name} greedy[{i}] one at a time"
        );
    }
    // transformers' LongRoPE switches factors by the longest sequence of a batch, so its
    // batched run differs from its one-at-a-time runs (recorded in `checks`); the engine
    // decides per sequence and must give the one-at-a-time tokens in a batch too.
    let batch_key = if exp["checks"]["batch_greedy_equals_single"] == true {
        &exp["batch"]["greedy"]
    } else {
        &exp["greedy"]
    };
    let g = generate(&model, &prompts, &opts, None).unwrap();
    for (i, gi) in g.iter().enumerate() {
        assert_eq!(gi.tokens, ids(&batch_key[i]), "{name} greedy[{i}] batched");
    }

    // The fast paths (flat GEMMs, grouped attention, the in-place cache) compute the same.
    let mut fast = model.clone();
    fast.set_fast_paths(true);
    let batched = all_logits(&fast, &prompts).unwrap();
    for (i, (p, l)) in prompts.iter().zip(&batched).enumerate() {
        let last: Vec<f32> = l.get(p.len() - 1).unwrap().to_vec1().unwrap();
        assert_close(
            &last,
            &floats(&exp["batch"]["next_logits"][i]),
            &format!("{name} fast-path batch next_logits[{i}]"),
        );
    }
    let g = generate(&fast, &prompts, &opts, None).unwrap();
    for (i, gi) in g.iter().enumerate() {
        assert_eq!(
            gi.tokens,
            ids(&batch_key[i]),
            "{name} fast-path greedy[{i}] batched"
        );
    }
}

fn check_text(name: &str, dir: &Path, exp: &Value) {
    let codec = TextCodec::from_hf_dir(dir, None).unwrap();
    let add_special = exp["tokenizer"]["add_special_tokens"].as_bool().unwrap();
    for (t, want) in exp["tokenizer"]["texts"]
        .as_array()
        .unwrap()
        .iter()
        .zip(exp["tokenizer"]["ids"].as_array().unwrap())
    {
        assert_eq!(
            codec.encode(t.as_str().unwrap(), add_special).unwrap(),
            ids(want),
            "{name} tokenizer on {t}"
        );
    }
    let messages: Vec<ChatMessage> = exp["chat"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| ChatMessage {
            role: m["role"].as_str().unwrap().into(),
            content: m["content"].as_str().unwrap().into(),
        })
        .collect();
    let rendered = codec.render_chat(&messages, true).unwrap();
    assert_eq!(
        rendered,
        exp["chat"]["rendered"].as_str().unwrap(),
        "{name} chat template"
    );
    assert_eq!(
        codec.encode(&rendered, false).unwrap(),
        ids(&exp["chat"]["ids"]),
        "{name} chat ids"
    );
    // A whole conversation encoded in one call, as apply_chat_template(tokenize=True) does.
    assert_eq!(
        codec.encode_chat(&messages).unwrap(),
        ids(&exp["chat"]["ids"]),
        "{name} conversation ids"
    );
}

macro_rules! hf_case {
    ($test:ident, $dir:literal) => {
        #[test]
        fn $test() {
            let dir = fixture(concat!("hf/", $dir));
            let exp = expected(&dir);
            check_model($dir, &dir, &exp);
            check_text($dir, &dir, &exp);
        }
    };
}

hf_case!(llama_gqa_llama3_rope_v4_layout, "llama-gqa");
hf_case!(llama_gqa_v5_layout, "llama-gqa-v5layout");
hf_case!(llama_plain, "llama-plain");
hf_case!(llama_sharded_f16, "llama-sharded-f16");
hf_case!(llama_bf16, "llama-bf16");
hf_case!(mistral, "mistral");
hf_case!(qwen2_bias_tied, "qwen2");
hf_case!(qwen3_qk_norm_yarn_tied, "qwen3");
hf_case!(qwen3_moe_top2_dense_layer_dynamic_ntk, "qwen3-moe");
hf_case!(gemma2_softcap_sliding, "gemma2");
hf_case!(gemma3_local_global_rope, "gemma3");
hf_case!(phi3_fused_longrope_partial_rotary, "phi3");
hf_case!(mixtral_top2, "mixtral");

#[test]
fn gguf_f32_checkpoint_matches_transformers() {
    // The GGUF holds llama-plain's weights with q/k permuted the llama.cpp way.
    let exp = expected(&fixture("hf/llama-plain"));
    check_model(
        "llama-plain.f32.gguf",
        &fixture("gguf/llama-plain.f32.gguf"),
        &exp,
    );
}

fn gguf_arch(name: &str) -> PathBuf {
    fixture("gguf-arch").join(name)
}

/// A GGUF written the way llama.cpp's converter writes the architecture (no q/k permutation,
/// Gemma norms stored as 1 + w, Phi-3's LongRoPE factors as tensors, ...) computes what
/// transformers computes on the checkpoint it came from (or, where the converter changes the
/// model, on what the file holds: Gemma 2 loses its untied output matrix).
fn check_gguf_f32(model: &str) {
    let own = gguf_arch(&format!("{model}.f32.expected.json"));
    let exp: Value = if own.exists() {
        serde_json::from_str(&std::fs::read_to_string(own).unwrap()).unwrap()
    } else {
        expected(&fixture(&format!("hf/{model}")))
    };
    let path = gguf_arch(&format!("{model}.f32.gguf"));
    check_model(&format!("{model}.f32.gguf"), &path, &exp);
}

/// A Q8_0 GGUF: its weights dequantized compute what transformers computes on the same
/// dequantized weights (greedy compared where the reference's top-2 margin allows an
/// independent implementation to decide: at least 1e-3); run through the quantized matmul
/// (activations quantized too) its next-token logits stay within 6% of the logit scale.
fn check_gguf_q8_0(model: &str) {
    let exp: Value = serde_json::from_str(
        &std::fs::read_to_string(gguf_arch(&format!("{model}.q8_0.expected.json"))).unwrap(),
    )
    .unwrap();
    let path = gguf_arch(&format!("{model}.q8_0.gguf"));
    let ckpt = Checkpoint::load(&path, &Device::Cpu).unwrap();
    assert!(
        !ckpt.quantized.is_empty(),
        "{model}: Q8_0 weights stay quantized"
    );
    let mut dense = ckpt.clone();
    for (name, q) in std::mem::take(&mut dense.quantized) {
        dense
            .weights
            .insert(name, q.dequantize(&Device::Cpu).unwrap());
    }
    let margin = exp["checks"]["min_top1_top2_logit_margin_over_greedy_steps"]
        .as_f64()
        .unwrap();
    check_checkpoint(
        &format!("{model}.q8_0.gguf dequantized"),
        &dense,
        &exp,
        margin >= 1e-3,
    );
    let model_q = Model::new(&ckpt).unwrap();
    let prompts: Vec<Vec<u32>> = exp["prompts"].as_array().unwrap().iter().map(ids).collect();
    let (mut worst, mut scale) = (0.0f32, 0.0f32);
    for (i, p) in prompts.iter().enumerate() {
        let logits = &all_logits(&model_q, std::slice::from_ref(p)).unwrap()[0];
        let last: Vec<f32> = logits.get(p.len() - 1).unwrap().to_vec1().unwrap();
        let want = floats(&exp["next_logits"][i]);
        for (a, b) in last.iter().zip(&want) {
            worst = worst.max((a - b).abs());
            scale = scale.max(b.abs());
        }
        let top = |v: &[f32]| compsafe_engine::sampling::argmax(v);
        let mut sorted = want.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        eprintln!(
            "{model} q8 prompt {i}: top1 {} vs {} (reference margin {:.3})",
            top(&last),
            top(&want),
            sorted[0] - sorted[1]
        );
    }
    eprintln!(
        "{model}.q8_0.gguf quantized matmul: max |logit - dequantized reference| {worst:.2e} of max |logit| {scale:.2}"
    );
    // The CPU's quantized matmul rounds activations to Q8_0 as well (as llama.cpp does), so
    // it is held to the logit scale only: measured 2.1% (gemma2) to 3.5% (gemma3).
    assert!(
        worst <= 0.06 * scale,
        "{model}: quantized execution drifts by {worst} of {scale}"
    );
}

macro_rules! gguf_case {
    ($test:ident, $model:literal) => {
        #[test]
        fn $test() {
            check_gguf_f32($model);
            check_gguf_q8_0($model);
        }
    };
}

gguf_case!(gguf_qwen2_unpermuted, "qwen2");
gguf_case!(gguf_qwen3, "qwen3");
gguf_case!(gguf_gemma2, "gemma2");
gguf_case!(gguf_gemma3, "gemma3");
gguf_case!(gguf_phi3_longrope_tensors, "phi3");

#[test]
fn gguf_tokenizer_and_template_come_from_metadata() {
    let path = fixture("gguf/llama-plain.f32.gguf");
    let ckpt = Checkpoint::load(&path, &Device::Cpu).unwrap();
    let codec = TextCodec::from_gguf(&path, ckpt.gguf_metadata.as_ref().unwrap()).unwrap();
    let hf = TextCodec::from_hf_dir(&fixture("hf/llama-plain"), None).unwrap();
    let text = "The quick brown fox jumps over the lazy dog.";
    assert_eq!(
        codec.encode(text, false).unwrap(),
        hf.encode(text, false).unwrap()
    );
    assert_eq!(
        codec.render_chat(&[ChatMessage::user("hi")], true).unwrap(),
        hf.render_chat(&[ChatMessage::user("hi")], true).unwrap()
    );
}

#[test]
fn training_mode_computes_the_same_logits() {
    let ckpt = Checkpoint::load(&fixture("hf/llama-gqa"), &Device::Cpu).unwrap();
    let mut model = Model::new(&ckpt).unwrap();
    let exp = expected(&fixture("hf/llama-gqa"));
    let p = ids(&exp["prompts"][0]);
    let ids_t = candle_core::Tensor::new(p.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let fast: Vec<Vec<f32>> = model
        .forward_logits(&ids_t)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec2()
        .unwrap();
    model.set_training(true);
    let slow: Vec<Vec<f32>> = model
        .forward_logits(&ids_t)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec2()
        .unwrap();
    for (j, (a, b)) in fast.iter().zip(&slow).enumerate() {
        assert_close(b, a, &format!("training-mode logits pos {j}"));
    }
}
