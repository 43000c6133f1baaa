//! AWQ (Lin et al., 2024): activation-aware per-channel scales found by a grid search, folded
//! into the preceding norm or linear layer, then integer quantization of the scaled weights,
//! following llm-compressor's `AWQModifier` followed by `QuantizationModifier`
//! (`modifiers/transform/awq/base.py`, version 0.14), with its Llama mappings:
//!
//! | smoothed | balanced | loss on the output of |
//! |---|---|---|
//! | `input_layernorm` | q, k, v | the attention block |
//! | `v_proj` (only without grouped-query attention) | o | o_proj |
//! | `post_attention_layernorm` | gate, up | the MLP |
//! | `up_proj` | down | down_proj |
//!
//! For each mapping: `x̄` is the mean `|x|` per input channel over the calibration tokens and
//! `w̄` the mean over the balanced layers' rows of `|w|` divided by its group's maximum. The
//! grid has `(ratio 0, activation only)` then ratios `i / (n - 2)`, `i < n - 1`, with
//! `s = clamp(x̄^r / (w̄^(1-r) + 1e-4), 1e-4)` normalised by `sqrt(max s · min s)`. Each
//! candidate quantizes `W · s` (compressed-tensors grids of the scaled weight), divides by
//! `s` again, reruns the parent on the cached inputs and keeps the first smallest mean
//! squared error against the unquantized output. The winner multiplies the balanced layers'
//! input columns and divides the smoothed norm weight (or the smoothed linear's output rows).
//! Precision follows the library: `x̄^r` in f32, `w̄` and the scales in f64, weights in f32.
//!
//! Stored: every linear quantized (dense f32 on its grid), and the scaled norm weights.
//! Calibration is not propagated: as in llm-compressor, the next layer sees the
//! unquantized model's hidden states.

use std::sync::Mutex;

use candle_core::{DType, Tensor};

use super::ctgrid::grids;
use super::gptq::grid_bits;
use super::{relative_error, Compressed, LinearWeight, TensorStat, WeightMap};
use crate::calib::{InputGroup, LayerCompressor, LayerContext, Wants};
use crate::error::{EngineError, Result};
use crate::model::LinearSite;

/// AWQ settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AwqParams {
    /// Bits per weight.
    pub bits: u8,
    /// Group size; `None` = per output channel.
    pub group: Option<usize>,
    /// Symmetric grid (AWQ's usual grid is asymmetric).
    pub symmetric: bool,
    /// Grid points (llm-compressor's `n_grid`, default 20).
    pub grid: usize,
}

/// The scales AWQ chose for one mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct AwqChoice {
    /// The smoothed module (`model.layers.0.input_layernorm`).
    pub smooth: String,
    /// The winning exponent.
    pub ratio: f64,
    /// Whether the winner used weight magnitudes too (duo scaling).
    pub duo: bool,
    /// The scales, one per input channel of the balanced layers.
    pub scales: Vec<f64>,
}

/// AWQ as a calibrated compressor; the chosen scales of every mapping are kept in
/// [`Awq::choices`].
#[derive(Debug)]
pub struct Awq {
    /// Settings.
    pub params: AwqParams,
    /// Every mapping's choice, in the order they were made.
    pub choices: Mutex<Vec<AwqChoice>>,
}

impl Awq {
    /// AWQ with these settings.
    pub fn new(params: AwqParams) -> Awq {
        Awq {
            params,
            choices: Mutex::new(Vec::new()),
        }
    }
}

/// Fake-quantizes `w` (`rows x cols`) on compressed-tensors grids of its own groups.
fn fake_quant(w: &[f32], cols: usize, p: &AwqParams) -> Vec<f32> {
    let g = p.group.unwrap_or(cols);
    let gr = grids(w, cols, g, p.bits, p.symmetric);
    w.iter()
        .enumerate()
        .map(|(i, &v)| gr[i / g].fake(v))
        .collect()
}

fn t2(v: Vec<f32>, rows: usize, cols: usize, like: &Tensor) -> Result<Tensor> {
    Ok(Tensor::from_vec(v, (rows, cols), like.device())?)
}

/// `x Wᵀ` for `x` `[b, s, in]` and `w` `[out, in]`.
fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let (b, s, k) = x.dims3()?;
    Ok(x.reshape((b * s, k))?
        .matmul(&w.t()?)?
        .reshape((b, s, ()))?)
}

/// The parent of a mapping: what its loss is measured on.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Parent {
    Attention,
    OProj,
    Mlp,
    DownProj,
}

struct Mapping {
    smooth: String,
    smooth_site: Option<LinearSite>,
    balance: Vec<LinearSite>,
    parent: Parent,
    input: InputGroup,
}

impl LayerCompressor for Awq {
    fn wants(&self) -> Wants {
        Wants {
            abs_sum: true,
            inputs: true,
            ..Wants::default()
        }
    }

    fn propagates(&self) -> bool {
        false
    }

    fn compress_layer(
        &self,
        ctx: &LayerContext<'_>,
        weights: &WeightMap,
        selected: &dyn Fn(&str) -> bool,
    ) -> Result<Compressed> {
        let l = ctx.layer;
        let p = self.params;
        let arch = &ctx.model.config.arch_params;
        if arch.norm_plus_one || arch.sandwich_norms {
            return Err(EngineError::Invalid(format!(
                "awq folds its scales into `input_layernorm` and `post_attention_layernorm`; \
                 {:?} norms are not of that form",
                ctx.model.config.arch
            )));
        }
        // Current weights of the layer's linears, f32 row-major with their shapes.
        let mut cur: std::collections::BTreeMap<LinearSite, (Vec<f32>, usize, usize)> =
            Default::default();
        for site in LinearSite::ALL {
            let name = site.weight_name(l);
            let t = weights
                .get(&name)
                .ok_or_else(|| EngineError::Invalid(format!("awq: `{name}` is missing")))?;
            let (r, c) = t.dims2()?;
            let g = p.group.unwrap_or(c);
            if !c.is_multiple_of(g) {
                return Err(EngineError::Invalid(format!(
                    "awq: tensor `{name}`: group size {g} does not divide the input dimension {c}"
                )));
            }
            cur.insert(site, (super::f32_values(&name, t)?, r, c));
        }
        let norm_name = |n: &str| format!("model.layers.{l}.{n}.weight");
        let mut norms: std::collections::BTreeMap<String, Vec<f32>> = Default::default();
        for n in ["input_layernorm", "post_attention_layernorm"] {
            let name = norm_name(n);
            let t = weights
                .get(&name)
                .ok_or_else(|| EngineError::Invalid(format!("awq: `{name}` is missing")))?;
            norms.insert(name.clone(), super::f32_values(&name, t)?);
        }
        let v_rows = cur[&LinearSite::V].1;
        let o_cols = cur[&LinearSite::O].2;
        let mut mappings = vec![Mapping {
            smooth: format!("model.layers.{l}.input_layernorm"),
            smooth_site: None,
            balance: vec![LinearSite::Q, LinearSite::K, LinearSite::V],
            parent: Parent::Attention,
            input: InputGroup::Attn,
        }];
        if v_rows == o_cols {
            mappings.push(Mapping {
                smooth: format!("model.layers.{l}.self_attn.v_proj"),
                smooth_site: Some(LinearSite::V),
                balance: vec![LinearSite::O],
                parent: Parent::OProj,
                input: InputGroup::AttnOut,
            });
        }
        mappings.push(Mapping {
            smooth: format!("model.layers.{l}.post_attention_layernorm"),
            smooth_site: None,
            balance: vec![LinearSite::Gate, LinearSite::Up],
            parent: Parent::Mlp,
            input: InputGroup::Mlp,
        });
        mappings.push(Mapping {
            smooth: format!("model.layers.{l}.mlp.up_proj"),
            smooth_site: Some(LinearSite::Up),
            balance: vec![LinearSite::Down],
            parent: Parent::DownProj,
            input: InputGroup::MlpOut,
        });

        let like = weights
            .values()
            .next()
            .ok_or_else(|| EngineError::Invalid("awq: an empty layer".into()))?
            .clone();
        for m in &mappings {
            let st = ctx.stats.get(&m.input).ok_or_else(|| {
                EngineError::Invalid(format!("awq: no calibration inputs for {}", m.smooth))
            })?;
            let x_mean = st.abs_mean().ok_or_else(|| {
                EngineError::Invalid(format!("awq: no activation means for {}", m.smooth))
            })?;
            // w̄: per input channel, the mean over all balanced rows of |w| / (group max + 1e-6).
            let cols = cur[&m.balance[0]].2;
            let mut wsum = vec![0f64; cols];
            let mut wrows = 0usize;
            for s in &m.balance {
                let (w, r, c) = &cur[s];
                let g = p.group.unwrap_or(*c);
                let mut normed = vec![0f32; w.len()];
                for (chunk, out) in w.chunks_exact(g).zip(normed.chunks_exact_mut(g)) {
                    let amax = chunk.iter().fold(0f32, |a, v| a.max(v.abs()));
                    for (o, v) in out.iter_mut().zip(chunk) {
                        *o = v.abs() / (amax + 1e-6);
                    }
                }
                for row in normed.chunks_exact(*c) {
                    for (acc, v) in wsum.iter_mut().zip(row) {
                        *acc += f64::from(*v);
                    }
                }
                wrows += r;
            }
            let w_mean: Vec<f64> = wsum.iter().map(|v| v / wrows as f64).collect();

            let run =
                |trial: &std::collections::BTreeMap<LinearSite, Tensor>| -> Result<Vec<Tensor>> {
                    self.parent_outputs(ctx, m, trial, &cur, &like)
                };
            let originals: std::collections::BTreeMap<LinearSite, Tensor> = m
                .balance
                .iter()
                .map(|s| {
                    let (w, r, c) = &cur[s];
                    Ok((*s, t2(w.clone(), *r, *c, &like)?))
                })
                .collect::<Result<_>>()?;
            let reference = run(&originals)?;

            let mut grid_pts: Vec<(f64, bool)> = vec![(0.0, false)];
            for i in 0..p.grid - 1 {
                grid_pts.push((i as f64 / (p.grid - 2) as f64, true));
            }
            let mut best: Option<(f64, f64, bool, Vec<f64>)> = None;
            for (ratio, duo) in grid_pts {
                let mut scales: Vec<f64> = (0..cols)
                    .map(|j| {
                        if duo {
                            let xr = f64::from(x_mean[j].powf(ratio as f32));
                            (xr / (w_mean[j].powf(1.0 - ratio) + 1e-4)).max(1e-4)
                        } else {
                            f64::from(x_mean[j].powf(ratio as f32).max(1e-4))
                        }
                    })
                    .collect();
                let (mx, mn) = scales
                    .iter()
                    .fold((f64::MIN, f64::MAX), |(a, b), &v| (a.max(v), b.min(v)));
                let norm = (mx * mn).sqrt();
                for s in scales.iter_mut() {
                    *s /= norm;
                    if !s.is_finite() {
                        *s = 1.0;
                    }
                }
                let mut trial = std::collections::BTreeMap::new();
                for site in &m.balance {
                    let (w, r, c) = &cur[site];
                    let ws: Vec<f32> = w
                        .iter()
                        .enumerate()
                        .map(|(i, &v)| (f64::from(v) * scales[i % c]) as f32)
                        .collect();
                    let q = fake_quant(&ws, *c, &p);
                    let back: Vec<f32> = q
                        .iter()
                        .enumerate()
                        .map(|(i, &v)| (f64::from(v) / scales[i % c]) as f32)
                        .collect();
                    trial.insert(*site, t2(back, *r, *c, &like)?);
                }
                let outs = run(&trial)?;
                let (mut se, mut n) = (0f64, 0usize);
                for (a, b) in reference.iter().zip(&outs) {
                    let d = (a - b)?.sqr()?.to_dtype(DType::F64)?.sum_all()?;
                    se += d.to_scalar::<f64>()?;
                    n += a.elem_count();
                }
                let loss = se / n.max(1) as f64;
                if best.as_ref().is_none_or(|b| loss < b.0) {
                    best = Some((loss, ratio, duo, scales));
                }
            }
            let (_, ratio, duo, scales) = best.ok_or_else(|| {
                EngineError::Invalid(format!("awq: no finite loss for {}", m.smooth))
            })?;
            // Apply: balanced columns times s, the smoothed layer divided by s.
            for site in &m.balance {
                let entry = cur.get_mut(site).expect("balanced layer present");
                let c = entry.2;
                for (i, v) in entry.0.iter_mut().enumerate() {
                    *v = (f64::from(*v) * scales[i % c]) as f32;
                }
            }
            match m.smooth_site {
                None => {
                    let norm = norms
                        .get_mut(&format!("{}.weight", m.smooth))
                        .expect("norm present");
                    for (v, s) in norm.iter_mut().zip(&scales) {
                        *v = (f64::from(*v) / s) as f32;
                    }
                }
                Some(site) => {
                    let entry = cur.get_mut(&site).expect("smoothed layer present");
                    let (r, c) = (entry.1, entry.2);
                    let first = r - scales.len();
                    for row in first..r {
                        let s = scales[row - first];
                        for v in &mut entry.0[row * c..(row + 1) * c] {
                            *v = (f64::from(*v) / s) as f32;
                        }
                    }
                }
            }
            self.choices
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(AwqChoice {
                    smooth: m.smooth.clone(),
                    ratio,
                    duo,
                    scales,
                });
        }

        let mut out = Compressed::default();
        for site in LinearSite::ALL {
            let name = site.weight_name(l);
            let (w, r, c) = &cur[&site];
            let reference = super::f32_values(&name, &weights[&name])?;
            let (stored, bits) = if selected(&name) {
                let g = p.group.unwrap_or(*c);
                (fake_quant(w, *c, &p), grid_bits(p.bits, g, p.symmetric))
            } else {
                (w.clone(), 32.0)
            };
            out.stats.push(TensorStat {
                name: name.clone(),
                rel_error: relative_error(&reference, &stored),
                bits_per_weight: bits,
                numel: r * c,
                bytes: (bits * (r * c) as f64 / 8.0).ceil() as u64,
                note: None,
            });
            out.weights
                .insert(name, LinearWeight::Dense(t2(stored, *r, *c, &like)?));
        }
        for (name, v) in norms {
            let n = v.len();
            out.weights.insert(
                name,
                LinearWeight::Dense(Tensor::from_vec(v, n, like.device())?),
            );
        }
        Ok(out)
    }
}

impl Awq {
    /// The parent's outputs on every calibration batch with the balanced layers' weights
    /// replaced by `trial`.
    fn parent_outputs(
        &self,
        ctx: &LayerContext<'_>,
        m: &Mapping,
        trial: &std::collections::BTreeMap<LinearSite, Tensor>,
        cur: &std::collections::BTreeMap<LinearSite, (Vec<f32>, usize, usize)>,
        like: &Tensor,
    ) -> Result<Vec<Tensor>> {
        let weight = |site: LinearSite| -> Result<Tensor> {
            if let Some(t) = trial.get(&site) {
                return Ok(t.clone());
            }
            let (w, r, c) = &cur[&site];
            t2(w.clone(), *r, *c, like)
        };
        match m.parent {
            Parent::OProj | Parent::DownProj => {
                let site = m.balance[0];
                let w = weight(site)?;
                let st = &ctx.stats[&m.input];
                st.inputs.iter().map(|x| linear(x, &w)).collect()
            }
            Parent::Attention | Parent::Mlp => {
                let mut ws = std::collections::BTreeMap::new();
                let sites: &[LinearSite] = if m.parent == Parent::Attention {
                    &[LinearSite::Q, LinearSite::K, LinearSite::V, LinearSite::O]
                } else {
                    &[LinearSite::Gate, LinearSite::Up, LinearSite::Down]
                };
                for s in sites {
                    ws.insert(*s, weight(*s)?);
                }
                let mut outs = Vec::new();
                for x in ctx.inputs {
                    let mut captured: Option<Tensor> = None;
                    let last = sites[sites.len() - 1];
                    let mut tap = |_l: usize, site: LinearSite, input: &Tensor| {
                        if let Some(w) = ws.get(&site) {
                            let y = linear(input, w)?;
                            if site == last {
                                captured = Some(y.clone());
                            }
                            return Ok(Some(y));
                        }
                        if m.parent == Parent::Attention {
                            // The MLP does not matter here: skip its products.
                            let (b, s, _) = input.dims3()?;
                            let (_, rows, _) = cur[&site];
                            return Ok(Some(Tensor::zeros(
                                (b, s, rows),
                                input.dtype(),
                                input.device(),
                            )?));
                        }
                        Ok(None)
                    };
                    ctx.model.layer_forward(ctx.layer, x, &mut tap)?;
                    outs.push(captured.ok_or_else(|| {
                        EngineError::Invalid("awq: the parent's output was not seen".into())
                    })?);
                }
                Ok(outs)
            }
        }
    }
}
