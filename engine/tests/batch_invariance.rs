//! Greedy outputs do not depend on the batch a prompt is generated in (CPU, f32).

use std::path::Path;

use candle_core::Device;
use compsafe_engine::{generate, Checkpoint, GenerateOptions, Model, TextCodec};

#[test]
fn greedy_is_identical_at_batch_1_and_32() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = root.join("engine/tests/fixtures/hf/llama-gqa");
    let ckpt = Checkpoint::load(&dir, &Device::Cpu).unwrap();
    let model = Model::new(&ckpt).unwrap();
    let codec = TextCodec::from_hf_dir(&dir, None).unwrap();
    let text = std::fs::read_to_string(root.join("tools/reference/bench_prompts.txt")).unwrap();
    let prompts: Vec<Vec<u32>> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(32)
        .map(|l| codec.encode_prompt(l).unwrap())
        .collect();
    assert_eq!(prompts.len(), 32);
    let lengths: std::collections::BTreeSet<usize> = prompts.iter().map(Vec::len).collect();
    assert!(
        lengths.len() > 5,
        "prompts of varied lengths exercise the padding"
    );
    let opts = GenerateOptions {
        max_new_tokens: 24,
        batch_tokens: 1 << 20,
        max_batch: 32,
        eos: vec![],
    };
    let batched = generate(&model, &prompts, &opts, None).unwrap();
    let single_opts = GenerateOptions {
        max_batch: 1,
        ..opts
    };
    let single = generate(&model, &prompts, &single_opts, None).unwrap();
    for (i, (a, b)) in batched.iter().zip(&single).enumerate() {
        assert_eq!(a.tokens, b.tokens, "prompt {i}");
    }
}
