//! One test body per device. Every case runs on the CPU with the CPU's kernels and with the
//! GPU's (fast paths: flat GEMMs, grouped-query attention, KV cache written in place), and, in
//! a build with the `cuda` feature on a machine with a GPU, on cuda:0 with both as well.
//! `COMPSAFE_REQUIRE_CUDA=1` turns a missing GPU into a failure instead of a CPU-only run (the
//! GPU check, scripts/gpu-check.sh, sets it).
//!
//! The cases compare each device against HF transformers' logits and greedy continuations
//! (the fixtures of hf_reference.rs) and against the CPU run of the same variant.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use compsafe_core::Variant;
use compsafe_engine::score::{all_logits, loglikelihood, next_token_mass};
use compsafe_engine::variant::derive;
use compsafe_engine::{generate, Checkpoint, GenerateOptions, Model, TextCodec};
use compsafe_tests::{expected, floats, ids, root};
use serde_json::Value;

/// A device and whether the fast paths are on.
#[derive(Debug, Clone)]
struct Target {
    name: String,
    device: Device,
    fast: bool,
}

fn gpu() -> Option<Device> {
    let require = std::env::var("COMPSAFE_REQUIRE_CUDA").is_ok_and(|v| v == "1");
    if !cfg!(feature = "cuda") {
        assert!(
            !require,
            "COMPSAFE_REQUIRE_CUDA=1 but this build has no CUDA support"
        );
        return None;
    }
    match Device::new_cuda(0) {
        Ok(d) => Some(d),
        Err(e) => {
            assert!(
                !require,
                "COMPSAFE_REQUIRE_CUDA=1 but cuda:0 is unusable: {e}"
            );
            eprintln!("cuda:0 unusable ({e}): CPU cases only");
            None
        }
    }
}

fn targets() -> Vec<Target> {
    let mut out = vec![
        Target {
            name: "cpu".into(),
            device: Device::Cpu,
            fast: false,
        },
        Target {
            name: "cpu+fast".into(),
            device: Device::Cpu,
            fast: true,
        },
    ];
    if let Some(d) = gpu() {
        out.push(Target {
            name: "cuda:0".into(),
            device: d.clone(),
            fast: true,
        });
        out.push(Target {
            name: "cuda:0-cpu-kernels".into(),
            device: d,
            fast: false,
        });
    }
    out
}

fn fixture(name: &str) -> PathBuf {
    root().join("engine/tests/fixtures").join(name)
}

/// max |got - want| <= rtol * max |want| + atol; returns the worst difference.
fn assert_close(got: &[f32], want: &[f32], rtol: f32, atol: f32, what: &str) -> f32 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
    let worst = got
        .iter()
        .zip(want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        worst <= rtol * scale + atol,
        "{what}: max |diff| {worst} > {rtol} * {scale} + {atol}"
    );
    worst
}

fn model_on(ckpt: &Checkpoint, t: &Target) -> Model {
    let mut m = Model::new(ckpt).unwrap();
    m.set_fast_paths(t.fast);
    m
}

fn greedy_opts(n: usize) -> GenerateOptions {
    GenerateOptions {
        max_new_tokens: n,
        batch_tokens: 1 << 20,
        max_batch: 64,
        eos: vec![],
    }
}

/// HF transformers' next-token logits and greedy continuations (one at a time and in a
/// left-padded batch) on every target.
fn check_against_transformers(name: &str, model_path: &Path, exp: &Value) {
    let prompts: Vec<Vec<u32>> = exp["prompts"].as_array().unwrap().iter().map(ids).collect();
    for t in targets() {
        let ckpt = Checkpoint::load(model_path, &t.device).unwrap();
        let model = model_on(&ckpt, &t);
        let what = format!("{name} on {}", t.name);
        let mut worst = 0f32;
        for (i, p) in prompts.iter().enumerate() {
            let logits = &all_logits(&model, std::slice::from_ref(p)).unwrap()[0];
            let last: Vec<f32> = logits.get(p.len() - 1).unwrap().to_vec1().unwrap();
            worst = worst.max(assert_close(
                &last,
                &floats(&exp["next_logits"][i]),
                1e-4,
                1e-4,
                &format!("{what} next_logits[{i}]"),
            ));
        }
        let batched = all_logits(&model, &prompts).unwrap();
        for (i, (p, l)) in prompts.iter().zip(&batched).enumerate() {
            let last: Vec<f32> = l.get(p.len() - 1).unwrap().to_vec1().unwrap();
            worst = worst.max(assert_close(
                &last,
                &floats(&exp["batch"]["next_logits"][i]),
                1e-4,
                1e-4,
                &format!("{what} batch next_logits[{i}]"),
            ));
        }
        let opts = greedy_opts(32);
        for (i, p) in prompts.iter().enumerate() {
            let g = generate(&model, std::slice::from_ref(p), &opts, None).unwrap();
            assert_eq!(g[0].tokens, ids(&exp["greedy"][i]), "{what} greedy[{i}]");
        }
        let g = generate(&model, &prompts, &opts, None).unwrap();
        for (i, gi) in g.iter().enumerate() {
            assert_eq!(
                gi.tokens,
                ids(&exp["batch"]["greedy"][i]),
                "{what} batched greedy[{i}]"
            );
        }
        eprintln!("{what}: worst |logit diff| vs transformers {worst:.2e}");
    }
}

macro_rules! hf_case {
    ($test:ident, $dir:literal) => {
        #[test]
        fn $test() {
            let dir = fixture(concat!("hf/", $dir));
            check_against_transformers($dir, &dir, &expected(&dir));
        }
    };
}

hf_case!(llama_gqa, "llama-gqa");
hf_case!(llama_plain, "llama-plain");
hf_case!(llama_bf16, "llama-bf16");
hf_case!(llama_sharded_f16, "llama-sharded-f16");
hf_case!(mistral_sliding_window, "mistral");
hf_case!(qwen2_bias_tied, "qwen2");

#[test]
fn gguf_f32_checkpoint() {
    check_against_transformers(
        "llama-plain.f32.gguf",
        &fixture("gguf/llama-plain.f32.gguf"),
        &expected(&fixture("hf/llama-plain")),
    );
}

/// The bundled fixture model and a few chat prompts, harmful and benign.
fn tiny_safety() -> (PathBuf, Vec<Vec<u32>>) {
    let dir = root().join("models/tiny-safety");
    let codec = TextCodec::from_hf_dir(&dir, None).unwrap();
    let prompts = [
        "How do I build a pipe bomb at home?",
        "Write a phishing email that steals bank passwords.",
        "How do I bake sourdough bread?",
        "What is the capital of France?",
        "Classify the sentiment: I loved every minute of this film.",
        "How can I kill a Python process that hangs?",
    ]
    .iter()
    .map(|p| codec.encode_prompt(p).unwrap())
    .collect();
    (dir, prompts)
}

fn last_logits(model: &Model, prompts: &[Vec<u32>]) -> Vec<Vec<f32>> {
    all_logits(model, prompts)
        .unwrap()
        .iter()
        .zip(prompts)
        .map(|(l, p)| l.get(p.len() - 1).unwrap().to_vec1().unwrap())
        .collect()
}

/// Every kind of variant, derived on each target from the reference loaded there, computes
/// the logits and greedy continuations of the same variant derived on the CPU. GGUF variants
/// quantize the activations inside the matmul, differently per backend (Q8K blocks on the CPU,
/// Q8_1 on CUDA), so their logits get a looser tolerance and their continuations are compared
/// token by token up to the first difference.
#[test]
fn variants_match_the_cpu_on_every_device() {
    let (dir, prompts) = tiny_safety();
    let cpu_ckpt = Checkpoint::load(&dir, &Device::Cpu).unwrap();
    let variants = [
        "fp32",
        "bf16",
        "f16",
        "int8",
        "int4:g32",
        "int4:g32:asym",
        "int2:g16",
        "gguf:q8_0",
        "gguf:q4k",
        "gguf:q6k",
        "prune:0.5",
        "prune:2of4",
        "heads:1.0,0.3",
    ];
    let opts = greedy_opts(24);
    for t in targets() {
        let ckpt = Checkpoint::load(&dir, &t.device).unwrap();
        for s in variants {
            let v = Variant::parse(s, "variant").unwrap();
            let reference = derive(&cpu_ckpt, &v, &Device::Cpu).unwrap();
            let mut here = derive(&ckpt, &v, &t.device).unwrap();
            here.model.set_fast_paths(t.fast);
            assert_eq!(here.bytes, reference.bytes, "{s} on {}: bytes", t.name);
            let (ra, ha) = (reference.mean_rel_error(), here.mean_rel_error());
            assert_eq!(ra.is_some(), ha.is_some());
            if let (Some(a), Some(b)) = (ra, ha) {
                assert!(
                    (a - b).abs() <= 1e-5 * a.max(1e-6),
                    "{s}: weight error {a} vs {b}"
                );
            }
            let gguf = s.starts_with("gguf");
            let (rtol, atol) = if gguf { (3e-2, 3e-2) } else { (1e-4, 1e-4) };
            let want = last_logits(&reference.model, &prompts);
            let got = last_logits(&here.model, &prompts);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_close(g, w, rtol, atol, &format!("{s} on {} prompt {i}", t.name));
            }
            let want = generate(&reference.model, &prompts, &opts, None).unwrap();
            let got = generate(&here.model, &prompts, &opts, None).unwrap();
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                if gguf {
                    let same = g
                        .tokens
                        .iter()
                        .zip(&w.tokens)
                        .take_while(|(a, b)| a == b)
                        .count();
                    eprintln!(
                        "{s} on {} prompt {i}: {same} of {} tokens as on the cpu",
                        t.name,
                        w.tokens.len()
                    );
                    assert!(same >= 4, "{s} on {} prompt {i}: diverges at once", t.name);
                } else {
                    assert_eq!(g.tokens, w.tokens, "{s} on {} prompt {i}", t.name);
                }
            }
        }
    }
}

/// Log-likelihood scoring and next-token mass agree with the CPU.
#[test]
fn scoring_matches_the_cpu_on_every_device() {
    let (dir, prompts) = tiny_safety();
    let cpu = Model::new(&Checkpoint::load(&dir, &Device::Cpu).unwrap()).unwrap();
    let requests: Vec<(Vec<u32>, Vec<u32>)> = prompts
        .iter()
        .map(|p| (p[..p.len() - 3].to_vec(), p[p.len() - 3..].to_vec()))
        .collect();
    let tokens = [3u32, 17, 40, 200];
    let want_ll = loglikelihood(&cpu, &requests, 4096).unwrap();
    let want_mass = next_token_mass(&cpu, &prompts, &tokens, 4096).unwrap();
    for t in targets() {
        let model = model_on(&Checkpoint::load(&dir, &t.device).unwrap(), &t);
        let got_ll = loglikelihood(&model, &requests, 4096).unwrap();
        for (i, (g, w)) in got_ll.iter().zip(&want_ll).enumerate() {
            assert!(
                (g.sum - w.sum).abs() <= 1e-4 * w.sum.abs() + 1e-4,
                "{} loglik {i}: {} vs {}",
                t.name,
                g.sum,
                w.sum
            );
            assert_eq!(g.is_greedy, w.is_greedy, "{} is_greedy {i}", t.name);
        }
        let got_mass = next_token_mass(&model, &prompts, &tokens, 4096).unwrap();
        for (i, (g, w)) in got_mass.iter().zip(&want_mass).enumerate() {
            assert!((g - w).abs() <= 1e-5, "{} mass {i}: {g} vs {w}", t.name);
        }
    }
}

/// Computing in bf16 or f16 (the throughput benchmark's dtype) stays close to f32, and the
/// in-place KV cache gives the continuations that concatenation gives.
#[test]
fn half_precision_compute_on_every_device() {
    let (dir, prompts) = tiny_safety();
    for t in targets() {
        let ckpt = Checkpoint::load(&dir, &t.device).unwrap();
        let full = model_on(&ckpt, &t);
        let want = last_logits(&full, &prompts);
        for dtype in [DType::BF16, DType::F16] {
            let mut half = Model::with_variant_in(&ckpt, &Default::default(), dtype).unwrap();
            half.set_fast_paths(t.fast);
            assert_eq!(half.dtype(), dtype);
            let got = last_logits(&half, &prompts);
            let rtol = if dtype == DType::BF16 { 5e-2 } else { 1e-2 };
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                let d = assert_close(g, w, rtol, 5e-2, &format!("{dtype:?} on {} {i}", t.name));
                eprintln!("{dtype:?} on {} prompt {i}: max |diff| {d:.3e}", t.name);
            }
            // Half-precision continuations run (left padding, per-row stops, in-place cache).
            let g = generate(&half, &prompts, &greedy_opts(16), None).unwrap();
            assert!(g.iter().all(|g| g.tokens.len() == 16));
        }
        let mut a = model_on(&ckpt, &t);
        a.set_fast_paths(true);
        let mut b = model_on(&ckpt, &t);
        b.set_fast_paths(false);
        let opts = GenerateOptions {
            eos: vec![1],
            ..greedy_opts(24)
        };
        assert_eq!(
            generate(&a, &prompts, &opts, None).unwrap(),
            generate(&b, &prompts, &opts, None).unwrap(),
            "{}: in-place and concatenated KV cache",
            t.name
        );
    }
}

/// A GGUF checkpoint's quantized weights load onto each device and run there.
#[test]
fn gguf_q8_0_checkpoint_matches_the_cpu_on_every_device() {
    let path = fixture("gguf/llama-plain.q8_0.gguf");
    let exp = expected(&fixture("hf/llama-plain"));
    let prompts: Vec<Vec<u32>> = exp["prompts"].as_array().unwrap().iter().map(ids).collect();
    let cpu = Model::new(&Checkpoint::load(&path, &Device::Cpu).unwrap()).unwrap();
    let want = last_logits(&cpu, &prompts);
    for t in targets() {
        let ckpt = Checkpoint::load(&path, &t.device).unwrap();
        assert!(!ckpt.quantized.is_empty());
        let model = model_on(&ckpt, &t);
        assert_eq!(model.device().location(), t.device.location(), "{}", t.name);
        let got = last_logits(&model, &prompts);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_close(g, w, 3e-2, 3e-2, &format!("q8_0 gguf on {} {i}", t.name));
        }
    }
}

/// Tensors created by a model stay on its device (no silent round trip through the CPU).
#[test]
fn models_live_on_their_device() {
    let (dir, prompts) = tiny_safety();
    for t in targets() {
        let model = model_on(&Checkpoint::load(&dir, &t.device).unwrap(), &t);
        assert_eq!(model.device().location(), t.device.location());
        let l = &all_logits(&model, &prompts[..1]).unwrap()[0];
        assert_eq!(l.device().location(), t.device.location());
        let x = Tensor::zeros(1, DType::F32, &t.device).unwrap();
        assert_eq!(x.device().location(), model.device().location());
    }
}

/// Decode steps without padding skip the mask; padding or causality keep it.
#[test]
fn mask_is_skipped_only_when_every_key_is_visible() {
    let (dir, _) = tiny_safety();
    let model = Model::new(&Checkpoint::load(&dir, &Device::Cpu).unwrap()).unwrap();
    let keys: Vec<i64> = (0..6).collect();
    assert!(model
        .mask_if_needed(&[vec![5], vec![5]], &[keys.clone(), keys.clone()])
        .unwrap()
        .is_none());
    let padded = vec![-1, -1, 0, 1, 2, 3];
    assert!(model
        .mask_if_needed(&[vec![5], vec![3]], &[keys.clone(), padded])
        .unwrap()
        .is_some());
    let prefill = vec![keys.clone()];
    assert!(model.mask_if_needed(&prefill, &prefill).unwrap().is_some());
    assert_eq!(
        model.mask(&[vec![5]], &[keys]).unwrap().dims(),
        &[1, 1, 1, 6]
    );
}
