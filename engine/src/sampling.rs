//! Choosing the next token: greedy, or sampled with transformers' logits processors.
//!
//! The processors and their order are transformers' (`GenerationMixin._get_logits_processor`):
//! the repetition penalty first (it applies in greedy decoding too), then temperature, top-k,
//! top-p and min-p, then a draw from the softmax of what is left. Each sequence draws from its
//! own random stream, seeded from the sweep's seed, the prompt's id and the sample's index
//! ([`sample_seed`]), so a sample does not depend on the batch it runs in, on the batch size,
//! on the worker or on the variant: the reference and a variant draw the same random numbers
//! for the same (prompt, sample), which pairs their samples as closely as the models allow.

use rand::RngCore;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sha2::{Digest, Sha256};

use crate::error::{EngineError, Result};

/// Decoding settings, with transformers' definitions. `temperature = 0` is greedy decoding.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// Logits are divided by it; 0 means greedy (argmax) decoding.
    pub temperature: f32,
    /// Keep the `top_k` highest logits (ties with the k-th kept); 0 turns it off.
    pub top_k: usize,
    /// Keep the smallest set of most probable tokens whose probability reaches `top_p`; 1 turns
    /// it off.
    pub top_p: f32,
    /// Drop tokens less probable than `min_p` times the most probable one; 0 turns it off.
    pub min_p: f32,
    /// Divide positive (multiply negative) logits of tokens already in the sequence, prompt
    /// included, by it; 1 turns it off.
    pub repetition_penalty: f32,
}

impl Default for Sampling {
    /// Greedy decoding.
    fn default() -> Self {
        Sampling::greedy()
    }
}

impl Sampling {
    /// Greedy decoding.
    pub fn greedy() -> Sampling {
        Sampling {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
        }
    }

    /// Plain sampling from the softmax at `temperature`.
    pub fn with_temperature(temperature: f32) -> Sampling {
        Sampling {
            temperature,
            ..Sampling::greedy()
        }
    }

    /// Whether the next token is the argmax (no random draw).
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// Refuses settings outside their domain; the error names the field and value.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, value: f32, domain: &str| {
            Err(EngineError::Invalid(format!(
                "sampling: `{field}` = {value}: must be {domain}"
            )))
        };
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return bad("temperature", self.temperature, "a finite number >= 0");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", self.top_p, "in (0, 1]");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("min_p", self.min_p, "in [0, 1]");
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return bad(
                "repetition_penalty",
                self.repetition_penalty,
                "a finite number > 0",
            );
        }
        Ok(())
    }

    /// Applies the repetition penalty and the warpers to `scores` in place (filtered tokens
    /// become -inf), given the tokens of the sequence so far (`seen`, prompt included).
    pub fn process(&self, scores: &mut [f32], seen: &[u32]) {
        if self.repetition_penalty != 1.0 {
            let mut done = vec![false; scores.len()];
            for &t in seen {
                let Some(s) = scores.get_mut(t as usize) else {
                    continue;
                };
                if std::mem::replace(&mut done[t as usize], true) {
                    continue;
                }
                *s = if *s < 0.0 {
                    *s * self.repetition_penalty
                } else {
                    *s / self.repetition_penalty
                };
            }
        }
        if self.is_greedy() {
            return;
        }
        if self.temperature != 1.0 {
            for s in scores.iter_mut() {
                *s /= self.temperature;
            }
        }
        if self.top_k > 0 && self.top_k < scores.len() {
            let mut sorted: Vec<f32> = scores.to_vec();
            sorted.sort_by(|a, b| b.total_cmp(a));
            let kth = sorted[self.top_k - 1];
            for s in scores.iter_mut() {
                if *s < kth {
                    *s = f32::NEG_INFINITY;
                }
            }
        }
        if self.top_p < 1.0 {
            // Ascending order; drop the prefix whose cumulative probability stays within
            // 1 - top_p, always keeping the most probable token.
            let mut order: Vec<usize> = (0..scores.len()).collect();
            order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
            let sorted: Vec<f32> = order.iter().map(|&i| scores[i]).collect();
            let probs = softmax(&sorted);
            let mut cum = 0.0f32;
            let last = order.len().saturating_sub(1);
            for (j, (&i, p)) in order.iter().zip(probs).enumerate() {
                cum += p;
                if cum <= 1.0 - self.top_p && j < last {
                    scores[i] = f32::NEG_INFINITY;
                }
            }
        }
        if self.min_p > 0.0 {
            let probs = softmax(scores);
            let (best, top) =
                probs.iter().enumerate().fold(
                    (0, f32::MIN),
                    |acc, (i, &p)| if p > acc.1 { (i, p) } else { acc },
                );
            let threshold = self.min_p * top;
            for (i, (s, p)) in scores.iter_mut().zip(probs).enumerate() {
                if p < threshold && i != best {
                    *s = f32::NEG_INFINITY;
                }
            }
        }
    }

    /// The next token for processed `scores`: the argmax when greedy, else a draw from their
    /// softmax with the uniform number `u` in [0, 1).
    pub fn pick(&self, scores: &[f32], u: f64) -> u32 {
        if self.is_greedy() {
            return argmax(scores);
        }
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let weights: Vec<f64> = scores.iter().map(|&s| f64::from(s - max).exp()).collect();
        let total: f64 = weights.iter().sum();
        let target = u * total;
        let mut cum = 0.0;
        let mut last = 0;
        for (i, w) in weights.iter().enumerate() {
            if *w > 0.0 {
                last = i;
                cum += w;
                if target < cum {
                    return i as u32;
                }
            }
        }
        last as u32
    }
}

/// The index of the largest value (the first of equal ones), as `argmax` picks it.
pub fn argmax(scores: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &s) in scores.iter().enumerate() {
        if s > scores[best] {
            best = i;
        }
    }
    best as u32
}

/// Softmax in f32 (the largest value subtracted first).
fn softmax(scores: &[f32]) -> Vec<f32> {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = scores.iter().map(|&s| (s - max).exp()).collect();
    let sum: f32 = e.iter().sum();
    e.into_iter().map(|x| x / sum).collect()
}

/// The seed of one sample's random stream: SHA-256 of the sweep's seed, the prompt's id and
/// the sample's index. The variant is not part of it, so every variant draws the same random
/// numbers for the same (prompt, sample).
pub fn sample_seed(sweep_seed: u64, prompt_id: &str, sample_index: u32) -> u64 {
    let mut h = Sha256::new();
    h.update(b"compsafe.sample.v1\0");
    h.update(sweep_seed.to_le_bytes());
    h.update((prompt_id.len() as u64).to_le_bytes());
    h.update(prompt_id.as_bytes());
    h.update(sample_index.to_le_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_le_bytes(b)
}

/// One sequence's random stream: uniform numbers in [0, 1) with 53 random bits.
#[derive(Debug, Clone)]
pub struct SampleStream(ChaCha20Rng);

impl SampleStream {
    /// The stream of `seed`.
    pub fn new(seed: u64) -> SampleStream {
        SampleStream(ChaCha20Rng::seed_from_u64(seed))
    }

    /// The next uniform number in [0, 1).
    pub fn next_uniform(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processors_follow_transformers_definitions() {
        let s = Sampling {
            temperature: 1.0,
            top_k: 2,
            ..Sampling::greedy()
        };
        let mut x = vec![1.0, 3.0, 2.0, 3.0];
        s.process(&mut x, &[]);
        // Ties with the k-th value stay.
        assert_eq!(x, vec![f32::NEG_INFINITY, 3.0, f32::NEG_INFINITY, 3.0]);

        let s = Sampling {
            temperature: 1.0,
            top_p: 0.5,
            ..Sampling::greedy()
        };
        let mut x = vec![0.0f32, 1.0, 2.0];
        // probs 0.090, 0.245, 0.665: only the top token reaches 0.5.
        s.process(&mut x, &[]);
        assert_eq!(x, vec![f32::NEG_INFINITY, f32::NEG_INFINITY, 2.0]);

        let s = Sampling {
            temperature: 1.0,
            min_p: 0.3,
            ..Sampling::greedy()
        };
        let mut x = vec![0.0f32, 1.0, 2.0];
        // 0.245 / 0.665 = 0.37 stays, 0.09 / 0.665 = 0.14 goes.
        s.process(&mut x, &[]);
        assert_eq!(x, vec![f32::NEG_INFINITY, 1.0, 2.0]);

        let s = Sampling {
            repetition_penalty: 2.0,
            ..Sampling::greedy()
        };
        let mut x = vec![4.0f32, -4.0, 1.0];
        s.process(&mut x, &[0, 1, 0]);
        assert_eq!(x, vec![2.0, -8.0, 1.0]);
        assert_eq!(s.pick(&x, 0.9), 0);
    }

    #[test]
    fn draws_follow_the_cumulative_distribution() {
        let s = Sampling::with_temperature(1.0);
        let x = [0.0f32, (3.0f32).ln()]; // probabilities 1/4, 3/4
        assert_eq!(s.pick(&x, 0.0), 0);
        assert_eq!(s.pick(&x, 0.2499), 0);
        assert_eq!(s.pick(&x, 0.2501), 1);
        assert_eq!(s.pick(&[f32::NEG_INFINITY, 0.0], 0.0), 1);
        let mut a = SampleStream::new(7);
        let mut b = SampleStream::new(7);
        for _ in 0..10 {
            let u = a.next_uniform();
            assert!((0.0..1.0).contains(&u));
            assert_eq!(u, b.next_uniform());
        }
        assert_ne!(sample_seed(1, "p1", 0), sample_seed(1, "p1", 1));
        assert_ne!(sample_seed(1, "p1", 0), sample_seed(1, "p2", 0));
        assert_ne!(sample_seed(1, "p1", 0), sample_seed(2, "p1", 0));
        assert!(Sampling::with_temperature(-1.0).validate().is_err());
    }
}
