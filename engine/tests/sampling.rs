//! Sampled decoding: transformers' logits processors, temperature 0 as greedy decoding,
//! samples independent of batch size and composition, and sampled frequencies that follow the
//! model's distribution (a chi-square test over many seeded draws, so it is deterministic).

use std::path::Path;

use candle_core::Device;
use compsafe_engine::score::all_logits;
use compsafe_engine::{
    generate, generate_sampled, sample_seed, Checkpoint, GenerateOptions, Model, SampleRequest,
    Sampling, TextCodec,
};
use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn setting(v: &Value) -> Sampling {
    let f = |k: &str, d: f32| v.get(k).and_then(Value::as_f64).map_or(d, |x| x as f32);
    Sampling {
        temperature: f("temperature", 1.0),
        top_k: v.get("top_k").and_then(Value::as_u64).unwrap_or(0) as usize,
        top_p: f("top_p", 1.0),
        min_p: f("min_p", 0.0),
        repetition_penalty: f("repetition_penalty", 1.0),
    }
}

/// The scores compsafe samples from equal those transformers' processor list produces
/// (tools/reference/make_sampling_fixtures.py): the same tokens filtered, the rest within
/// f32 rounding.
#[test]
fn processors_match_transformers() {
    let text =
        std::fs::read_to_string(root().join("tests/fixtures/sampling/processors.json")).unwrap();
    let fixture: Value = serde_json::from_str(&text).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 32);
    for (i, c) in cases.iter().enumerate() {
        let s = setting(&c["setting"]);
        let mut scores: Vec<f32> = c["logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        let seen: Vec<u32> = c["seen"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        s.process(&mut scores, &seen);
        for (j, (got, want)) in scores
            .iter()
            .zip(c["processed"].as_array().unwrap())
            .enumerate()
        {
            match want.as_f64() {
                None => assert_eq!(*got, f32::NEG_INFINITY, "case {i} token {j} ({s:?})"),
                Some(w) => assert!(
                    (f64::from(*got) - w).abs() <= 1e-6 * w.abs().max(1.0),
                    "case {i} token {j}: {got} vs {w} ({s:?})"
                ),
            }
        }
    }
}

fn model() -> (Model, Vec<Vec<u32>>) {
    let dir = root().join("tests/fixtures/hf/llama-gqa");
    let model = Model::new(&Checkpoint::load(&dir, &Device::Cpu).unwrap()).unwrap();
    let codec = TextCodec::from_hf_dir(&dir, None).unwrap();
    let text =
        std::fs::read_to_string(root().join("../tools/reference/bench_prompts.txt")).unwrap();
    let prompts = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(32)
        .map(|l| codec.encode_prompt(l).unwrap())
        .collect();
    (model, prompts)
}

fn opts(max_batch: usize) -> GenerateOptions {
    GenerateOptions {
        max_new_tokens: 16,
        batch_tokens: 1 << 20,
        max_batch,
        eos: vec![],
    }
}

#[test]
fn temperature_zero_is_greedy() {
    let (model, prompts) = model();
    let greedy = generate(&model, &prompts, &opts(32), None).unwrap();
    let requests: Vec<SampleRequest> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| SampleRequest {
            prompt: p.clone(),
            seed: sample_seed(3, &format!("p{i}"), 0),
        })
        .collect();
    // Warpers do not apply without a draw: top-k/top-p/min-p leave the argmax in place.
    let zero = Sampling {
        temperature: 0.0,
        top_k: 5,
        top_p: 0.5,
        min_p: 0.2,
        repetition_penalty: 1.0,
    };
    for s in [Sampling::greedy(), zero] {
        let sampled = generate_sampled(&model, &requests, &opts(32), &s, None).unwrap();
        assert_eq!(sampled, greedy, "{s:?}");
    }
}

/// Three samples of each of 32 prompts: the same tokens whether the 96 sequences run 32 at a
/// time, one at a time or in reverse order, and the samples of a prompt differ.
#[test]
fn samples_do_not_depend_on_the_batch() {
    let (model, prompts) = model();
    let sampling = Sampling {
        temperature: 1.0,
        top_k: 50,
        top_p: 0.95,
        min_p: 0.0,
        repetition_penalty: 1.1,
    };
    let mut requests = Vec::new();
    for (i, p) in prompts.iter().enumerate() {
        for k in 0..3 {
            requests.push(SampleRequest {
                prompt: p.clone(),
                seed: sample_seed(20261126, &format!("prompt-{i}"), k),
            });
        }
    }
    let batched = generate_sampled(&model, &requests, &opts(32), &sampling, None).unwrap();
    let single = generate_sampled(&model, &requests, &opts(1), &sampling, None).unwrap();
    assert_eq!(batched, single);
    let reversed: Vec<SampleRequest> = requests.iter().rev().cloned().collect();
    let mut back = generate_sampled(&model, &reversed, &opts(32), &sampling, None).unwrap();
    back.reverse();
    assert_eq!(batched, back);
    let distinct = batched
        .chunks(3)
        .filter(|s| s[0].tokens != s[1].tokens || s[1].tokens != s[2].tokens)
        .count();
    assert!(
        distinct >= 30,
        "samples of a prompt differ ({distinct} of 32)"
    );
}

/// Upper 0.1% point of the chi-square distribution (Wilson-Hilferty).
fn chi2_critical(df: f64) -> f64 {
    let z = 3.090_232; // standard normal, upper 0.1%
    let a = 2.0 / (9.0 * df);
    df * (1.0 - a + z * a.sqrt()).powi(3)
}

/// Pearson's statistic of `counts` against `probs`, bins with an expected count under 5
/// pooled into one; returns (statistic, degrees of freedom).
fn chi2(counts: &[u64], probs: &[f64], n: u64) -> (f64, f64) {
    let (mut stat, mut bins) = (0.0, 0usize);
    let (mut pooled_obs, mut pooled_exp) = (0.0, 0.0);
    for (&c, &p) in counts.iter().zip(probs) {
        let e = p * n as f64;
        if e >= 5.0 {
            stat += (c as f64 - e).powi(2) / e;
            bins += 1;
        } else {
            pooled_obs += c as f64;
            pooled_exp += e;
        }
    }
    if pooled_exp > 0.0 {
        stat += (pooled_obs - pooled_exp).powi(2) / pooled_exp.max(1e-12);
        bins += 1;
    }
    (stat, (bins - 1) as f64)
}

/// 20,000 first tokens drawn for one prompt, each from its own seed, against the model's own
/// softmax (plain, and after temperature 0.8 with top-k 40): Pearson's chi-square stays below
/// its 0.1% critical value, and tokens the processors filter never appear.
#[test]
fn sampled_frequencies_follow_the_softmax() {
    let (model, prompts) = model();
    let prompt = prompts[0].clone();
    let logits = &all_logits(&model, std::slice::from_ref(&prompt)).unwrap()[0];
    let last: Vec<f32> = logits.get(prompt.len() - 1).unwrap().to_vec1().unwrap();
    let n = 20_000u64;
    for sampling in [
        Sampling::with_temperature(1.0),
        Sampling {
            temperature: 0.8,
            top_k: 40,
            ..Sampling::with_temperature(1.0)
        },
    ] {
        let mut scores = last.clone();
        sampling.process(&mut scores, &prompt);
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let w: Vec<f64> = scores.iter().map(|&s| f64::from(s - max).exp()).collect();
        let total: f64 = w.iter().sum();
        let probs: Vec<f64> = w.iter().map(|x| x / total).collect();
        let requests: Vec<SampleRequest> = (0..n)
            .map(|i| SampleRequest {
                prompt: prompt.clone(),
                seed: sample_seed(99, "chi-square", i as u32),
            })
            .collect();
        let opts = GenerateOptions {
            max_new_tokens: 1,
            batch_tokens: 1 << 20,
            max_batch: 256,
            eos: vec![],
        };
        let out = generate_sampled(&model, &requests, &opts, &sampling, None).unwrap();
        let mut counts = vec![0u64; probs.len()];
        for g in &out {
            counts[g.tokens[0] as usize] += 1;
        }
        for (t, (&c, &p)) in counts.iter().zip(&probs).enumerate() {
            assert!(
                p > 0.0 || c == 0,
                "token {t} is filtered but was drawn {c} times"
            );
        }
        let (stat, df) = chi2(&counts, &probs, n);
        let critical = chi2_critical(df);
        eprintln!("{sampling:?}: chi-square {stat:.1} on {df} degrees of freedom (0.1% critical value {critical:.1})");
        assert!(df >= 10.0, "enough bins ({df})");
        assert!(
            stat < critical,
            "chi-square {stat} >= {critical} on {df} df"
        );
    }
}
