//! Gaussian noise on the selected weights: `w + e`, `e ~ N(0, (sigma * std(w))^2)` per tensor,
//! one seeded stream over the tensors in name order.
//!
//! This is the noise control of the conditioned check: ordinary compression damage does not
//! depend on where exactly each weight sits inside its rounding cell, so it survives the
//! perturbation, while a behaviour planted by placing weights in chosen cells does not.

use candle_core::Tensor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{
    dtype_bits, f32_values, relative_error, selected_names, Compressed, Compressor, HeadLayout,
    LinearWeight, TensorStat, WeightMap,
};
use crate::error::Result;

/// Noise of `sigma` times each tensor's weight standard deviation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Noise {
    sigma: f64,
    seed: u64,
}

impl Noise {
    /// Noise of scale `sigma` drawn from `seed`.
    pub fn new(sigma: f64, seed: u64) -> Noise {
        Noise { sigma, seed }
    }
}

/// Standard normal draws (Box-Muller) from the seeded generator.
fn gaussian(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        let u1: f64 = rng.random::<f64>().max(1e-300);
        let u2: f64 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        let th = 2.0 * std::f64::consts::PI * u2;
        out.push((r * th.cos()) as f32);
        out.push((r * th.sin()) as f32);
    }
    out.truncate(n);
    out
}

impl Compressor for Noise {
    fn compress(
        &self,
        weights: &WeightMap,
        selected: &dyn Fn(&str) -> bool,
        _layout: &HeadLayout,
    ) -> Result<Compressed> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(0x6e6f697365); // "noise"
        let mut out = Compressed::default();
        for name in selected_names(weights, selected, "noise")? {
            let t = &weights[name];
            let v = f32_values(name, t)?;
            let n = v.len().max(1) as f64;
            let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
            let var = v
                .iter()
                .map(|&x| (f64::from(x) - mean).powi(2))
                .sum::<f64>()
                / n;
            let scale = (self.sigma * var.sqrt()) as f32;
            let e = gaussian(&mut rng, v.len());
            let w: Vec<f32> = v.iter().zip(&e).map(|(x, z)| x + scale * z).collect();
            let numel = w.len();
            out.stats.push(TensorStat {
                name: name.to_string(),
                rel_error: relative_error(&v, &w),
                bits_per_weight: dtype_bits(candle_core::DType::F32),
                numel,
                bytes: (numel * 4) as u64,
                note: Some(format!(
                    "noise {} x weight std, seed {}",
                    self.sigma, self.seed
                )),
            });
            let t = Tensor::from_vec(w, t.shape(), t.device())?;
            out.weights.insert(name.to_string(), LinearWeight::Dense(t));
        }
        Ok(out)
    }
}
