//! Compressed variants of every architecture: `int4:g32`, `gguf:q4k` and `heads:` apply to the
//! tiny Qwen3, Qwen3-MoE, Gemma 2, Gemma 3, Phi-3 and Mixtral checkpoints and generate; fused
//! projections and every expert are compressed, routers only when a regex selects them, and a
//! protected head keeps the right rows of a fused qkv_proj.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use compsafe_core::{HeadRef, Variant};
use compsafe_engine::score::all_logits;
use compsafe_engine::variant::derive;
use compsafe_engine::{generate, Checkpoint, GenerateOptions, Model};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hf")
        .join(name)
}

const ARCHS: [&str; 6] = ["qwen3", "qwen3-moe", "gemma2", "gemma3", "phi3", "mixtral"];
const PROMPTS: [&[u32]; 2] = [&[0, 40, 41, 42, 43, 44, 45], &[0, 50, 51]];

fn run(model: &Model) -> Vec<Vec<u32>> {
    let opts = GenerateOptions {
        max_new_tokens: 6,
        eos: vec![],
        ..GenerateOptions::default()
    };
    let prompts: Vec<Vec<u32>> = PROMPTS.iter().map(|p| p.to_vec()).collect();
    for l in all_logits(model, &prompts).unwrap() {
        let v: Vec<f32> = l.flatten_all().unwrap().to_vec1().unwrap();
        assert!(v.iter().all(|x| x.is_finite()));
    }
    generate(model, &prompts, &opts, None)
        .unwrap()
        .into_iter()
        .map(|g| g.tokens)
        .collect()
}

#[test]
fn int4_q4k_and_head_ablation_run_on_every_architecture() {
    for arch in ARCHS {
        let ckpt = Checkpoint::load(&fixture(arch), &Device::Cpu).unwrap();
        let reference = run(&Model::new(&ckpt).unwrap());
        let linear = ckpt
            .weights
            .keys()
            .filter(|n| compsafe_engine::compress::default_selection(n))
            .count();
        for spec in ["int4:g32", "gguf:q4k", "heads:1.0,0.3"] {
            let v = derive(&ckpt, &Variant::parse(spec, "v").unwrap(), &Device::Cpu)
                .unwrap_or_else(|e| panic!("{arch} {spec}: {e}"));
            let names: Vec<&str> = v.compressed_stats.iter().map(|s| s.name.as_str()).collect();
            if spec == "heads:1.0,0.3" {
                assert_eq!(
                    names,
                    [
                        "model.layers.0.self_attn.o_proj.weight",
                        "model.layers.1.self_attn.o_proj.weight"
                    ],
                    "{arch}"
                );
            } else {
                assert_eq!(names.len(), linear, "{arch} {spec}: every decoder linear");
                assert!(!names.iter().any(|n| n.ends_with("mlp.gate.weight")
                    || n.ends_with("block_sparse_moe.gate.weight")));
            }
            let out = run(&v.model);
            assert_ne!(out, reference, "{arch} {spec} changes what the model says");
        }
    }
}

#[test]
fn fused_projections_and_experts_are_compressed_routers_only_by_regex() {
    let phi = Checkpoint::load(&fixture("phi3"), &Device::Cpu).unwrap();
    let v = derive(
        &phi,
        &Variant::parse("int4:g32", "v").unwrap(),
        &Device::Cpu,
    )
    .unwrap();
    for l in 0..2 {
        for t in ["self_attn.qkv_proj", "mlp.gate_up_proj"] {
            let n = format!("model.layers.{l}.{t}.weight");
            assert!(v.compressed_stats.iter().any(|s| s.name == n), "{n}");
        }
    }
    let mix = Checkpoint::load(&fixture("mixtral"), &Device::Cpu).unwrap();
    // A llama.cpp file-type recipe names Llama-layout tensors only: it refuses experts.
    let e = derive(
        &mix,
        &Variant::parse("gguf:q8_0", "v").unwrap(),
        &Device::Cpu,
    )
    .unwrap_err();
    assert!(e.to_string().contains("experts"), "{e}");
    let v = derive(
        &mix,
        &Variant::parse("gguf:q80", "v").unwrap(),
        &Device::Cpu,
    )
    .unwrap();
    let experts = v
        .compressed_stats
        .iter()
        .filter(|s| s.name.contains(".experts."))
        .count();
    assert_eq!(experts, 2 * 4 * 3, "2 layers x 4 experts x w1/w2/w3");
    let mut router = Variant::parse("int8", "v").unwrap();
    router.select = Some(r"block_sparse_moe\.gate\.weight$".into());
    let v = derive(&mix, &router, &Device::Cpu).unwrap();
    let names: Vec<&str> = v.compressed_stats.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "model.layers.0.block_sparse_moe.gate.weight",
            "model.layers.1.block_sparse_moe.gate.weight"
        ]
    );
    run(&v.model);
}

/// Protecting head 3 of layer 1 keeps, in bf16, its query rows, its key/value head's key and
/// value rows inside the fused qkv_proj, and its o_proj columns; nothing else.
#[test]
fn a_protected_head_keeps_its_rows_of_a_fused_qkv_proj() {
    let phi = Checkpoint::load(&fixture("phi3"), &Device::Cpu).unwrap();
    let c = &phi.config;
    let (h, kv, d) = (c.num_heads, c.num_kv_heads, c.head_dim);
    let mut v = Variant::parse("int2:g16", "v").unwrap();
    v.protect = vec![HeadRef { layer: 1, head: 3 }];
    let derived = derive(&phi, &v, &Device::Cpu).unwrap();
    let name = "model.layers.1.self_attn.qkv_proj.weight";
    let reference: Vec<Vec<f32>> = phi.weights[name].to_vec2().unwrap();
    let stat = derived
        .compressed_stats
        .iter()
        .find(|s| s.name == name)
        .unwrap();
    assert!(stat.note.as_deref().unwrap().contains("protected"));
    let compressed = compsafe_engine::variant::compress(&phi, &v).unwrap();
    let w = match &compressed.weights[name] {
        compsafe_engine::compress::LinearWeight::Dense(t) => {
            t.to_dtype(DType::F32).unwrap().to_vec2::<f32>().unwrap()
        }
        other => panic!("{other:?}"),
    };
    let group = h / kv;
    let kv_head = 3 / group;
    let protected: Vec<usize> = (3 * d..4 * d)
        .chain(h * d + kv_head * d..h * d + (kv_head + 1) * d)
        .chain((h + kv) * d + kv_head * d..(h + kv) * d + (kv_head + 1) * d)
        .collect();
    for (r, (got, want)) in w.iter().zip(&reference).enumerate() {
        let kept = got
            .iter()
            .zip(want)
            .all(|(a, b)| *a == half::bf16::from_f32(*b).to_f32());
        assert_eq!(kept, protected.contains(&r), "row {r}");
    }
}
