//! Time to derive `gptq:w4g128` on the Llama-3.2-1B shape (random weights): hidden 2048, MLP
//! 8192, 32 query / 8 key-value heads of 64, vocabulary 128,256 (tied), calibrated on random
//! token sequences, layer by layer as a sweep derives it.
//!
//! `cargo run --release -p compsafe-engine --example bench_gptq -- [--layers 16] [--seqs 128]
//!  [--len 512] [--batch 8]` prints one JSON object. scripts/bench-gptq.sh runs it next to
//! llm-compressor on the same shape, tokens and thread count.

use std::time::Instant;

use candle_core::{Device, Tensor};
use compsafe_engine::calib::{calibrate, CalibTokens};
use compsafe_engine::compress::gptq::{Gptq, GptqParams};
use compsafe_engine::compress::{default_selection, WeightMap};
use compsafe_engine::config::ModelConfig;
use compsafe_engine::Checkpoint;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (mut layers, mut seqs, mut len, mut batch) = (16usize, 128usize, 512usize, 8usize);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v: usize = it.next().ok_or("every flag takes a value")?.parse()?;
        match a.as_str() {
            "--layers" => layers = v,
            "--seqs" => seqs = v,
            "--len" => len = v,
            "--batch" => batch = v,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    let cfg = ModelConfig::from_hf_json(&format!(
        r#"{{"architectures":["LlamaForCausalLM"],"hidden_size":2048,"intermediate_size":8192,
            "num_hidden_layers":{layers},"num_attention_heads":32,"num_key_value_heads":8,
            "head_dim":64,"vocab_size":128256,"max_position_embeddings":{len},
            "rms_norm_eps":1e-5,"rope_theta":500000.0,"tie_word_embeddings":true}}"#
    ))?;
    let mut state = 1u64;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        state
    };
    let mut weights = WeightMap::new();
    for (name, shape) in cfg.expected_shapes() {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = if name.ends_with("norm.weight") {
            vec![1.0; n]
        } else {
            (0..n)
                .map(|_| ((next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.04)
                .collect()
        };
        weights.insert(name, Tensor::from_vec(v, shape.as_slice(), &Device::Cpu)?);
    }
    let ckpt = Checkpoint::from_weights("llama-3.2-1b-shape".into(), cfg, weights);
    let tokens = CalibTokens {
        seqs: (0..seqs)
            .map(|_| (0..len).map(|_| (next() >> 33) as u32 % 128_000).collect())
            .collect(),
    };
    let gptq = Gptq {
        params: GptqParams::default(),
        keep_zero: false,
    };
    let t = Instant::now();
    let c = calibrate(&ckpt, &tokens, batch, &gptq, &default_selection)?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{{\"layers\":{layers},\"seqs\":{seqs},\"len\":{len},\"batch\":{batch},\"threads\":{},\"tensors\":{},\"seconds\":{secs:.2}}}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        c.stats.len()
    );
    Ok(())
}
