//! Generation throughput: prompts per second of batched greedy generation on a model
//! directory, with and without early stopping at EOS.
//!
//! `cargo run --release -p compsafe-engine --example bench_generate -- MODEL_DIR PROMPTS.txt
//!  [--new 100] [--batch 32] [--limit N]` prints one JSON object.
//! scripts/bench-generate.sh runs it next to transformers on the same prompts.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::Device;
use compsafe_engine::{generate, Checkpoint, GenerateOptions, Model, TextCodec};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut positional = Vec::new();
    let (mut new_tokens, mut batch, mut limit) = (100usize, 32usize, usize::MAX);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--new" => new_tokens = it.next().ok_or("--new needs a value")?.parse()?,
            "--batch" => batch = it.next().ok_or("--batch needs a value")?.parse()?,
            "--limit" => limit = it.next().ok_or("--limit needs a value")?.parse()?,
            _ => positional.push(PathBuf::from(a)),
        }
    }
    let [dir, prompts_file] = positional.as_slice() else {
        return Err(
            "usage: bench_generate MODEL_DIR PROMPTS.txt [--new N] [--batch B] [--limit N]".into(),
        );
    };
    let ckpt = Checkpoint::load(dir, &Device::Cpu)?;
    let model = Model::new(&ckpt)?;
    let codec = TextCodec::from_hf_dir(dir, None)?;
    let prompts: Vec<Vec<u32>> = std::fs::read_to_string(prompts_file)?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(limit)
        .map(|l| codec.encode_prompt(l))
        .collect::<Result<_, _>>()?;
    let run = |eos: Vec<u32>| -> Result<(f64, usize), Box<dyn std::error::Error>> {
        let opts = GenerateOptions {
            max_new_tokens: new_tokens,
            batch_tokens: usize::MAX,
            max_batch: batch,
            eos,
        };
        let t = Instant::now();
        let out = generate(&model, &prompts, &opts, None)?;
        let secs = t.elapsed().as_secs_f64();
        Ok((
            prompts.len() as f64 / secs,
            out.iter().map(|g| g.tokens.len()).sum(),
        ))
    };
    // Warm-up (allocator, thread pool), then the measured runs.
    let opts = GenerateOptions {
        max_new_tokens: 4,
        batch_tokens: usize::MAX,
        max_batch: batch,
        eos: vec![],
    };
    generate(&model, &prompts[..prompts.len().min(batch)], &opts, None)?;
    let (full, full_tokens) = run(vec![])?;
    let (early, early_tokens) = run(codec.eos_ids.clone())?;
    println!(
        "{}",
        serde_json::json!({
            "engine": "compsafe",
            "n_prompts": prompts.len(),
            "new_tokens": new_tokens,
            "batch": batch,
            "threads": candle_core::utils::get_num_threads(),
            "batched_prompts_per_s": full,
            "batched_tokens_generated": full_tokens,
            "early_stop_prompts_per_s": early,
            "early_stop_tokens_generated": early_tokens,
        })
    );
    Ok(())
}
