//! Decode throughput of the engine's own model and generation code on a Llama-3-8B-shaped
//! model with random weights made on the device (nothing downloaded, nothing read), against
//! the memory-bandwidth roofline of the device.
//!
//! ```text
//! throughput [--device cuda:0|cpu] [--shape llama3-8b|tiny] [--tiny] [--dtype bf16|f16|f32]
//!            [--batches 1,16,64] [--prompt 128] [--new 128] [--fast on|off] [--op-costs]
//! ```
//!
//! `--op-costs` measures instead what one operation of a batch-1 decode step costs the host to
//! issue and the device to run, for each kind of operation the step is made of (one JSON object
//! per operation).
//!
//! `--fast` overrides the device's default choice of kernels (see `Model::set_fast_paths`).
//!
//! For each batch size: a warm-up, then greedy generation of `--new` tokens after a prompt of
//! `--prompt` random tokens per row (no EOS, so every row makes every token), and the same with
//! one new token (the prefill). It prints one JSON object per line on stdout:
//!
//! * `tokens_per_s`: batch x new tokens / wall time of the whole `generate` call (prefill
//!   included), the figure transformers' `generate` is compared on;
//! * `decode_tokens_per_s`, `step_ms`: the decode steps alone (the run minus the prefill run);
//! * `roofline_fraction`: (bytes of weights + KV cache read per decode step, summed over the
//!   steps) / measured copy bandwidth, divided by the decode time. The copy bandwidth is that
//!   of a 1 GiB device-to-device copy, counted as bytes read plus bytes written.
//!
//! The shapes are those of tools/gpu/shapes.json, which tools/gpu/hf_throughput.py reads too.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use compsafe_engine::compress::{Compressed, WeightMap};
use compsafe_engine::device::{device_info, parse_device};
use compsafe_engine::{generate, Checkpoint, GenerateOptions, Model, ModelConfig};
use serde_json::{json, Value};

const SHAPES: &str = include_str!("../../tools/gpu/shapes.json");

type Error = Box<dyn std::error::Error>;

#[derive(Debug)]
struct Args {
    device: String,
    shape: String,
    dtype: DType,
    batches: Vec<usize>,
    prompt: usize,
    new: usize,
    fast: Option<bool>,
    op_costs: bool,
}

fn parse_args() -> Result<Args, Error> {
    let mut a = Args {
        device: if cfg!(feature = "cuda") {
            "cuda:0"
        } else {
            "cpu"
        }
        .into(),
        shape: "llama3-8b".into(),
        dtype: DType::BF16,
        batches: vec![1, 16, 64],
        prompt: 128,
        new: 128,
        fast: None,
        op_costs: false,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--device" => a.device = value()?.clone(),
            "--shape" => a.shape = value()?.clone(),
            "--tiny" => a.shape = "tiny".into(),
            "--dtype" => {
                a.dtype = match value()?.as_str() {
                    "bf16" => DType::BF16,
                    "f16" => DType::F16,
                    "f32" => DType::F32,
                    other => {
                        return Err(format!("--dtype {other}: expected bf16, f16 or f32").into())
                    }
                }
            }
            "--batches" => {
                a.batches = value()?
                    .split(',')
                    .map(|s| s.trim().parse::<usize>())
                    .collect::<Result<_, _>>()?
            }
            "--prompt" => a.prompt = value()?.parse()?,
            "--new" => a.new = value()?.parse()?,
            "--fast" => {
                a.fast = Some(match value()?.as_str() {
                    "on" => true,
                    "off" => false,
                    other => return Err(format!("--fast {other}: expected on or off").into()),
                })
            }
            "--op-costs" => a.op_costs = true,
            "-h" | "--help" => {
                println!(
                    "usage: throughput [--device cuda:0|cpu] [--shape llama3-8b|tiny] [--tiny] \
                     [--dtype bf16|f16|f32] [--batches 1,16,64] [--prompt 128] [--new 128] \
                     [--fast on|off] [--op-costs]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    if a.new < 2 || a.prompt == 0 || a.batches.contains(&0) {
        return Err("--new must be at least 2, --prompt and every batch at least 1".into());
    }
    Ok(a)
}

fn config(shape: &str) -> Result<(ModelConfig, Value), Error> {
    let shapes: Value = serde_json::from_str(SHAPES)?;
    let raw = shapes
        .get(shape)
        .ok_or_else(|| format!("--shape {shape}: not in tools/gpu/shapes.json"))?;
    Ok((ModelConfig::from_hf_json(&raw.to_string())?, raw.clone()))
}

/// Random weights (normal, std 0.02 as transformers initialises Llama; norms at 1) made on
/// the device in `dtype`.
fn random_weights(cfg: &ModelConfig, device: &Device, dtype: DType) -> Result<WeightMap, Error> {
    let mut weights = WeightMap::new();
    for (name, shape) in cfg.expected_shapes() {
        let t = if shape.len() == 1 {
            Tensor::ones(shape.as_slice(), dtype, device)?
        } else {
            Tensor::randn(0f32, 0.02, shape.as_slice(), device)?.to_dtype(dtype)?
        };
        weights.insert(name, t);
    }
    device.synchronize()?;
    Ok(weights)
}

/// Device-to-device copy bandwidth in bytes per second (read + written), best of a few copies
/// of a 1 GiB buffer into another allocated beforehand (on the CPU, 64 MiB through the tensor
/// library). On CUDA it is the driver's own copy, so neither an allocation nor a copy kernel of
/// the tensor library is timed.
fn copy_bandwidth(device: &Device) -> Result<f64, Error> {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(d) = device {
        let stream = d.cuda_stream();
        let n = 1usize << 30;
        let src = stream.alloc_zeros::<u8>(n)?;
        let mut dst = stream.alloc_zeros::<u8>(n)?;
        let mut best = f64::INFINITY;
        for i in 0..8 {
            stream.synchronize()?;
            let t = Instant::now();
            stream.memcpy_dtod(&src, &mut dst)?;
            stream.synchronize()?;
            if i > 0 {
                best = best.min(t.elapsed().as_secs_f64());
            }
        }
        return Ok(2.0 * n as f64 / best);
    }
    let n = 16 << 20;
    let src = Tensor::zeros(n, DType::F32, device)?;
    let bytes = (n * 4) as f64;
    let mut best = f64::INFINITY;
    for i in 0..6 {
        device.synchronize()?;
        let t = Instant::now();
        let dst = src.copy()?;
        device.synchronize()?;
        let s = t.elapsed().as_secs_f64();
        drop(dst);
        if i > 0 {
            best = best.min(s);
        }
    }
    Ok(2.0 * bytes / best)
}

/// One decode step at batch 1 after a `prompt`-token prefill, timed twice: until the host has
/// issued every kernel (the forward pass returns before the device has finished) and until the
/// next token is on the host. Medians of 16 steps, in seconds. When the two are close, the step
/// is bound by the host issuing kernels, not by the device reading memory.
fn host_issue(model: &Model, vocab: usize, prompt: usize) -> Result<(f64, f64), Error> {
    let device = model.device();
    let steps = 16;
    let mut cache = model.new_cache(prompt + steps + 1);
    let ids = prompts(1, prompt, vocab, 11).remove(0);
    let pos: Vec<i64> = (0..prompt as i64).collect();
    let mask = model.mask(std::slice::from_ref(&pos), std::slice::from_ref(&pos))?;
    let positions: Vec<u32> = (0..prompt as u32).collect();
    let h = model.forward_hidden(
        &Tensor::new(ids.as_slice(), device)?.unsqueeze(0)?,
        &Tensor::new(positions.as_slice(), device)?.unsqueeze(0)?,
        &mask,
        &mut cache,
    )?;
    let last = model.logits(&h.narrow(1, prompt - 1, 1)?)?;
    let mut next = last
        .argmax(candle_core::D::Minus1)?
        .flatten_all()?
        .to_vec1::<u32>()?[0];
    let (mut issued, mut done) = (Vec::new(), Vec::new());
    for i in 0..steps {
        device.synchronize()?;
        let t = Instant::now();
        let h = model.forward_hidden_masked(
            &Tensor::new(&[[next]], device)?,
            &Tensor::new(&[[(prompt + i) as u32]], device)?,
            None,
            &mut cache,
        )?;
        let tok = model.logits(&h)?.argmax(candle_core::D::Minus1)?;
        issued.push(t.elapsed().as_secs_f64());
        next = tok.flatten_all()?.to_vec1::<u32>()?[0];
        done.push(t.elapsed().as_secs_f64());
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Ok((median(&mut issued), median(&mut done)))
}

/// `--op-costs`: each kind of operation of a batch-1 decode step on the shape's sizes, issued
/// 200 times in a row: the host's time per issue (the loop without waiting for the device) and
/// the wall time per operation once the device has finished too, in microseconds.
fn op_costs(device: &Device, cfg: &ModelConfig, dtype: DType) -> Result<(), Error> {
    use candle_core::D;
    let (h, hd) = (cfg.hidden_size, cfg.head_dim);
    let (nh, nkv, ff) = (cfg.num_heads, cfg.num_kv_heads, cfg.intermediate_size);
    let rand = |shape: &[usize]| -> Result<Tensor, Error> {
        Ok(Tensor::randn(0f32, 0.02, shape, device)?.to_dtype(dtype)?)
    };
    let x = rand(&[1, 1, h])?;
    let x2 = rand(&[1, h])?;
    let w_attn = rand(&[h, h])?;
    let w_up = rand(&[ff, h])?;
    let norm_w = rand(&[h])?;
    let q = rand(&[1, nh, 1, hd])?;
    let cos = rand(&[1, 1, hd / 2])?;
    let sin = rand(&[1, 1, hd / 2])?;
    let t = 256;
    let kc = rand(&[1, nkv, t, hd])?;
    let qg = rand(&[1, nkv, nh / nkv, hd])?;
    let att = rand(&[1, nkv, nh / nkv, t])?;
    let cache = Tensor::zeros((1, nkv, 4096, hd), dtype, device)?;
    let knew = rand(&[1, nkv, 1, hd])?;
    let logits = rand(&[1, cfg.vocab_size])?;
    let embed = rand(&[cfg.vocab_size.min(32_000), h])?;
    let ids = Tensor::new(&[7u32], device)?;
    type Op<'a> = Box<dyn Fn() -> candle_core::Result<Tensor> + 'a>;
    let ops: Vec<(&str, Op)> = vec![
        (
            "matmul 1xHxH (q, o projections)",
            Box::new(|| x2.matmul(&w_attn.t()?)),
        ),
        (
            "matmul 1xHxFF (gate, up)",
            Box::new(|| x2.matmul(&w_up.t()?)),
        ),
        (
            "matmul q.kT (attention scores)",
            Box::new(|| qg.matmul(&kc.t()?)),
        ),
        ("add", Box::new(|| &x + &x)),
        ("mul", Box::new(|| &x * &x)),
        ("affine (scale)", Box::new(|| &x * 0.5)),
        ("silu", Box::new(|| candle_nn::ops::silu(&x))),
        (
            "rms_norm",
            Box::new(|| candle_nn::ops::rms_norm(&x, &norm_w, 1e-5)),
        ),
        (
            "rope",
            Box::new(|| candle_nn::rotary_emb::rope(&q, &cos, &sin)),
        ),
        (
            "softmax",
            Box::new(|| candle_nn::ops::softmax_last_dim(&att)),
        ),
        (
            "slice_set (KV cache write)",
            Box::new(|| cache.slice_set(&knew, 2, 100).map(|()| knew.clone())),
        ),
        (
            "index_select (embedding row)",
            Box::new(|| embed.index_select(&ids, 0)),
        ),
        (
            "to_dtype f32 (logits)",
            Box::new(|| logits.to_dtype(DType::F32)),
        ),
        ("argmax (logits)", Box::new(|| logits.argmax(D::Minus1))),
        (
            "upload 1 u32 (position)",
            Box::new(|| Tensor::new(&[[5u32]], device)),
        ),
    ];
    let n = 200;
    for (name, op) in &ops {
        for _ in 0..10 {
            op()?;
        }
        device.synchronize()?;
        let t = Instant::now();
        for _ in 0..n {
            op()?;
        }
        let issue = t.elapsed().as_secs_f64();
        device.synchronize()?;
        let wall = t.elapsed().as_secs_f64();
        let row = json!({
            "op": name,
            "host_issue_us": issue / n as f64 * 1e6,
            "wall_us": wall / n as f64 * 1e6,
            "dtype": format!("{dtype:?}").to_lowercase(),
            "device": format!("{:?}", device.location()),
        });
        eprintln!(
            "{:<36} host {:>8.2} us   wall {:>8.2} us",
            name,
            issue / n as f64 * 1e6,
            wall / n as f64 * 1e6
        );
        println!("{row}");
    }
    Ok(())
}

/// Reproducible token ids in `1..vocab`.
fn prompts(batch: usize, len: usize, vocab: usize, seed: u64) -> Vec<Vec<u32>> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..batch)
        .map(|_| {
            (0..len)
                .map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    1 + ((x >> 33) as usize % (vocab - 1)) as u32
                })
                .collect()
        })
        .collect()
}

fn timed_generate(model: &Model, prompts: &[Vec<u32>], new: usize) -> Result<(f64, usize), Error> {
    let opts = GenerateOptions {
        max_new_tokens: new,
        batch_tokens: usize::MAX,
        max_batch: prompts.len(),
        eos: vec![],
    };
    model.device().synchronize()?;
    let t = Instant::now();
    let out = generate(model, prompts, &opts, None)?;
    model.device().synchronize()?;
    let secs = t.elapsed().as_secs_f64();
    Ok((secs, out.iter().map(|g| g.tokens.len()).sum()))
}

fn main() -> Result<(), Error> {
    let args = parse_args()?;
    let device = parse_device(&args.device)?;
    let info = device_info(&device)?;
    let (cfg, _) = config(&args.shape)?;
    eprintln!("device {}", info.summary());

    if args.op_costs {
        return op_costs(&device, &cfg, args.dtype);
    }
    let bandwidth = copy_bandwidth(&device)?;
    eprintln!("copy bandwidth {:.1} GB/s (read + write)", bandwidth / 1e9);

    let t = Instant::now();
    let weights = random_weights(&cfg, &device, args.dtype)?;
    let ckpt = Checkpoint::from_weights("random".into(), cfg.clone(), weights);
    let mut model = Model::with_variant_in(&ckpt, &Compressed::default(), args.dtype)?;
    if let Some(on) = args.fast {
        model.set_fast_paths(on);
    }
    let elt = args.dtype.size_in_bytes() as f64;
    let params = ckpt.num_params();
    let embed = (cfg.vocab_size * cfg.hidden_size) as f64;
    eprintln!(
        "{} model: {:.2} B parameters in {:?} ({:.2} GB), made in {:.1} s; fast paths {}",
        args.shape,
        params as f64 / 1e9,
        args.dtype,
        params as f64 * elt / 1e9,
        t.elapsed().as_secs_f64(),
        model.fast_paths()
    );

    // Warm-up: kernel loading (PTX JIT on a first run), allocator, cuBLAS handles.
    timed_generate(&model, &prompts(1, 8, cfg.vocab_size, 7), 3)?;

    let (issue_s, step_s) = host_issue(&model, cfg.vocab_size, args.prompt)?;
    eprintln!(
        "batch 1 decode step: host issues its kernels in {:.3} ms, token on the host after {:.3} ms",
        issue_s * 1e3,
        step_s * 1e3
    );

    let mut header = false;
    for &batch in &args.batches {
        let p = prompts(batch, args.prompt, cfg.vocab_size, batch as u64);
        timed_generate(&model, &p, 2)?;
        let (prefill_s, _) = timed_generate(&model, &p, 1)?;
        let (total_s, generated) = timed_generate(&model, &p, args.new)?;
        if generated != batch * args.new {
            return Err(format!(
                "generated {generated} tokens, expected {}",
                batch * args.new
            )
            .into());
        }
        let decode_s = (total_s - prefill_s).max(1e-9);
        let steps = (args.new - 1) as f64;
        // Bytes read per decode step: every weight but the embedding once, the embedding rows
        // of the batch, and the cached keys and values of every layer.
        let weight_bytes = (params as f64 - embed) * elt + (batch * cfg.hidden_size) as f64 * elt;
        let kv_per_pos =
            2.0 * (cfg.num_layers * batch * cfg.num_kv_heads * cfg.head_dim) as f64 * elt;
        let kv_bytes: f64 = (1..args.new)
            .map(|i| kv_per_pos * (args.prompt + i) as f64)
            .sum();
        let roofline_s = (steps * weight_bytes + kv_bytes) / bandwidth;
        let row = json!({
            "engine": "compsafe",
            "device": info.id,
            "gpu": info.name,
            "shape": args.shape,
            "dtype": format!("{:?}", args.dtype).to_lowercase(),
            "fast_paths": model.fast_paths(),
            "batch": batch,
            "prompt_tokens": args.prompt,
            "new_tokens": args.new,
            "total_s": total_s,
            "prefill_s": prefill_s,
            "tokens_per_s": (batch * args.new) as f64 / total_s,
            "decode_tokens_per_s": batch as f64 * steps / decode_s,
            "step_ms": decode_s / steps * 1e3,
            "roofline_step_ms": roofline_s / steps * 1e3,
            "roofline_fraction": roofline_s / decode_s,
            "copy_gb_per_s": bandwidth / 1e9,
            "host_issue_ms_b1": issue_s * 1e3,
            "host_step_ms_b1": step_s * 1e3,
        });
        if !header {
            eprintln!(
                "{:>6} {:>12} {:>14} {:>9} {:>13} {:>9}",
                "batch", "tokens/s", "decode tok/s", "step ms", "roofline ms", "roofline"
            );
            header = true;
        }
        eprintln!(
            "{:>6} {:>12.1} {:>14.1} {:>9.3} {:>13.3} {:>8.1}%",
            batch,
            row["tokens_per_s"].as_f64().unwrap_or(0.0),
            row["decode_tokens_per_s"].as_f64().unwrap_or(0.0),
            row["step_ms"].as_f64().unwrap_or(0.0),
            row["roofline_step_ms"].as_f64().unwrap_or(0.0),
            100.0 * row["roofline_fraction"].as_f64().unwrap_or(0.0)
        );
        println!("{row}");
    }
    Ok(())
}
