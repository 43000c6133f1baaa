//! The MLP of a layer: a gated MLP (separate or fused gate/up projections), or a
//! mixture of experts whose experts are gated MLPs.

use candle_core::{DType, Tensor, D};

use super::tap::{LayerTap, LinearSite};
use crate::config::Activation;
use crate::error::{EngineError, Result};
use crate::linear::Linear;

/// A gated MLP `down(act(gate(x)) * up(x))`.
#[derive(Debug, Clone)]
pub(crate) enum GatedMlp {
    /// Separate gate and up projections.
    Separate {
        gate: Linear,
        up: Linear,
        down: Linear,
    },
    /// One projection whose first half of output rows is the gate, the second half the up
    /// projection (Phi-3's `gate_up_proj`).
    Fused { gate_up: Linear, down: Linear },
}

/// Top-k routing over experts, each a gated MLP (Mixtral, Qwen3-MoE).
#[derive(Debug, Clone)]
pub(crate) struct Moe {
    pub router: Linear,
    pub experts: Vec<GatedMlp>,
    pub top_k: usize,
    pub norm_topk_prob: bool,
}

/// The MLP of a layer.
#[derive(Debug, Clone)]
pub(crate) enum Mlp {
    Dense(GatedMlp),
    Moe(Moe),
}

fn activate(x: &Tensor, act: Activation) -> Result<Tensor> {
    Ok(match act {
        Activation::Silu => candle_nn::ops::silu(x)?,
        Activation::GeluTanh => x.gelu()?,
        Activation::Gelu => x.gelu_erf()?,
    })
}

impl GatedMlp {
    /// The MLP of `h` (`[..., hidden]`).
    pub fn forward(&self, h: &Tensor, act: Activation, flat: bool) -> Result<Tensor> {
        match self {
            GatedMlp::Separate { gate, up, down } => {
                let a = (activate(&gate.forward(h, flat)?, act)? * up.forward(h, flat)?)?;
                down.forward(&a, flat)
            }
            GatedMlp::Fused { gate_up, down } => {
                let y = gate_up.forward(h, flat)?;
                let i = y.dim(D::Minus1)? / 2;
                let a =
                    (activate(&y.narrow(D::Minus1, 0, i)?, act)? * y.narrow(D::Minus1, i, i)?)?;
                down.forward(&a, flat)
            }
        }
    }
}

impl Moe {
    /// The mixture of `h` (`[b, s, hidden]`): the router's softmax (in f32) over experts, the
    /// `top_k` most probable experts per token (their probabilities renormalised when
    /// `norm_topk_prob`), and each token's output the weighted sum of its experts' outputs,
    /// accumulated in ascending expert order as transformers does.
    pub fn forward(&self, h: &Tensor, act: Activation, flat: bool) -> Result<Tensor> {
        let (b, s, hidden) = h.dims3()?;
        let x = h.reshape((b * s, hidden))?;
        let logits = self.router.forward(&x, flat)?;
        let probs = candle_nn::ops::softmax_last_dim(&logits.to_dtype(DType::F32)?)?;
        let probs: Vec<Vec<f32>> = probs.to_vec2()?;
        let n = self.experts.len();
        // Per expert: the tokens routed to it and their weights.
        let mut routed: Vec<(Vec<u32>, Vec<f32>)> = vec![(Vec::new(), Vec::new()); n];
        for (t, p) in probs.iter().enumerate() {
            if p.len() != n {
                return Err(EngineError::Invalid(format!(
                    "router gives {} scores for {n} experts",
                    p.len()
                )));
            }
            let mut order: Vec<usize> = (0..n).collect();
            // Descending probability; ties go to the lower index, as torch.topk does on CPU.
            order.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
            let chosen = &order[..self.top_k.min(n)];
            let mut weights: Vec<f32> = chosen.iter().map(|&e| p[e]).collect();
            if self.norm_topk_prob {
                let sum: f32 = weights.iter().sum();
                for w in &mut weights {
                    *w /= sum;
                }
            }
            for (&e, w) in chosen.iter().zip(weights) {
                routed[e].0.push(t as u32);
                routed[e].1.push(w);
            }
        }
        let device = h.device();
        let mut out = Tensor::zeros((b * s, hidden), h.dtype(), device)?;
        for (e, (tokens, weights)) in routed.into_iter().enumerate() {
            if tokens.is_empty() {
                continue;
            }
            let m = tokens.len();
            let idx = Tensor::from_vec(tokens, m, device)?;
            let rows = x.index_select(&idx, 0)?;
            let y = self.experts[e].forward(&rows, act, flat)?;
            let w = Tensor::from_vec(weights, (m, 1), device)?.to_dtype(y.dtype())?;
            let y = y.broadcast_mul(&w)?;
            out = out.index_add(&idx, &y, 0)?;
        }
        Ok(out.reshape((b, s, hidden))?)
    }
}

impl Mlp {
    /// The MLP of `h` (`[b, s, hidden]`); separate projections of a dense MLP go through `tap`.
    pub fn forward(
        &self,
        h: &Tensor,
        act: Activation,
        tap: &mut LayerTap<'_, '_>,
    ) -> Result<Tensor> {
        match self {
            Mlp::Dense(GatedMlp::Separate { gate, up, down }) => {
                let a = (activate(&tap.linear(LinearSite::Gate, gate, h)?, act)?
                    * tap.linear(LinearSite::Up, up, h)?)?;
                tap.linear(LinearSite::Down, down, &a)
            }
            Mlp::Dense(m) => m.forward(h, act, tap.flat),
            Mlp::Moe(m) => m.forward(h, act, tap.flat),
        }
    }
}
