//! Rotary position embeddings: how a config's RoPE parameters become inverse frequencies and the
//! scale of cos/sin, computed in f32 as transformers' `modeling_rope_utils` computes them.

use serde_json::Value;

/// How rotary frequencies are derived from the base frequencies.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE.
    None,
    /// Position interpolation: every frequency divided by `factor`.
    Linear {
        /// Scale factor.
        factor: f32,
    },
    /// Llama 3's frequency-dependent scaling.
    Llama3 {
        /// Scale factor for low frequencies.
        factor: f32,
        /// Wavelength bound (as a fraction of the original context) above which frequencies are scaled.
        low_freq_factor: f32,
        /// Wavelength bound below which frequencies are kept.
        high_freq_factor: f32,
        /// Context length the model was pre-trained with.
        original_max_position_embeddings: usize,
    },
    /// YaRN: interpolated low frequencies, extrapolated high ones, blended over a ramp, and
    /// cos/sin scaled by `attention_factor`.
    Yarn {
        /// Context extension factor.
        factor: f64,
        /// Context length the model was pre-trained with.
        original_max_position_embeddings: usize,
        /// Rotations above which dimensions are extrapolated.
        beta_fast: f64,
        /// Rotations below which dimensions are interpolated.
        beta_slow: f64,
        /// Scale of cos and sin.
        attention_factor: f64,
        /// Round the ramp's bounds to whole dimensions.
        truncate: bool,
    },
    /// Dynamic NTK: the base grows with the sequence length once it exceeds
    /// `max_position_embeddings`; within the context it is plain RoPE.
    Dynamic {
        /// Scale factor.
        factor: f64,
    },
    /// LongRoPE (Phi-3 "su"): per-frequency rescaling by `short_factor`, or by `long_factor`
    /// once a forward pass reaches past `original_max_position_embeddings`; cos and sin scaled
    /// by `attention_factor`.
    LongRope {
        /// Factors for sequences within the original context.
        short_factor: Vec<f32>,
        /// Factors for longer sequences.
        long_factor: Vec<f32>,
        /// Context length the model was pre-trained with.
        original_max_position_embeddings: usize,
        /// Scale of cos and sin.
        attention_factor: f64,
    },
}

/// One RoPE: base frequency and scaling.
#[derive(Debug, Clone, PartialEq)]
pub struct Rope {
    /// Base frequency (`rope_theta`).
    pub theta: f32,
    /// Scaling of the frequencies.
    pub scaling: RopeScaling,
}

/// What the model's rotary tables are built from.
#[derive(Debug, Clone, PartialEq)]
pub struct RopeFrequencies {
    /// Inverse frequencies (one per rotated pair).
    pub inv_freq: Vec<f32>,
    /// LongRoPE: the frequencies used once a forward pass reaches past the given length.
    pub long: Option<(Vec<f32>, usize)>,
    /// Factor cos and sin are multiplied by.
    pub attention_scaling: f32,
}

fn num(obj: &Value, key: &str) -> Option<f64> {
    obj.get(key).and_then(Value::as_f64)
}

fn factors(obj: &Value, key: &str, ctx: &str) -> Result<Vec<f32>, String> {
    obj.get(key)
        .and_then(Value::as_array)
        .ok_or(format!("field `{ctx}.{key}` missing"))?
        .iter()
        .map(|x| {
            x.as_f64()
                .map(|x| x as f32)
                .ok_or(format!("field `{ctx}.{key}` holds a non-number: {x}"))
        })
        .collect()
}

/// Reads one RoPE parameter object (`rope_scaling`, `rope_parameters` or one of its per-layer
/// entries). `ctx` names the field in errors; `max_pos` and `original_max` are the config's
/// `max_position_embeddings` and top-level `original_max_position_embeddings` (Phi-3 keeps it
/// there, and transformers gives it priority).
pub fn parse_scaling(
    obj: Option<&Value>,
    ctx: &str,
    max_pos: usize,
    original_max: Option<usize>,
) -> Result<RopeScaling, String> {
    let Some(obj) = obj.filter(|v| !v.is_null()) else {
        return Ok(RopeScaling::None);
    };
    let ty = obj
        .get("rope_type")
        .or_else(|| obj.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let factor = |name: &str| num(obj, name);
    let orig = || {
        original_max
            .or_else(|| factor("original_max_position_embeddings").map(|x| x as usize))
            .unwrap_or(max_pos)
    };
    Ok(match ty {
        "default" => RopeScaling::None,
        "linear" => RopeScaling::Linear {
            factor: factor("factor").ok_or(format!("field `{ctx}.factor` missing"))? as f32,
        },
        "llama3" => RopeScaling::Llama3 {
            factor: factor("factor").ok_or(format!("field `{ctx}.factor` missing"))? as f32,
            low_freq_factor: factor("low_freq_factor").unwrap_or(1.0) as f32,
            high_freq_factor: factor("high_freq_factor").unwrap_or(4.0) as f32,
            original_max_position_embeddings: factor("original_max_position_embeddings")
                .ok_or(format!(
                    "field `{ctx}.original_max_position_embeddings` missing"
                ))? as usize,
        },
        "yarn" => {
            let original = orig();
            let f = factor("factor").unwrap_or(max_pos as f64 / original as f64);
            let mscale = |scale: f64, m: f64| {
                if scale <= 1.0 {
                    1.0
                } else {
                    0.1 * m * scale.ln() + 1.0
                }
            };
            let attention_factor = match (
                factor("attention_factor"),
                factor("mscale").filter(|&m| m != 0.0),
                factor("mscale_all_dim").filter(|&m| m != 0.0),
            ) {
                (Some(a), _, _) => a,
                (None, Some(m), Some(all)) => mscale(f, m) / mscale(f, all),
                _ => mscale(f, 1.0),
            };
            RopeScaling::Yarn {
                factor: f,
                original_max_position_embeddings: original,
                beta_fast: factor("beta_fast").filter(|&b| b != 0.0).unwrap_or(32.0),
                beta_slow: factor("beta_slow").filter(|&b| b != 0.0).unwrap_or(1.0),
                attention_factor,
                truncate: obj.get("truncate").and_then(Value::as_bool).unwrap_or(true),
            }
        }
        "dynamic" => RopeScaling::Dynamic {
            factor: factor("factor").ok_or(format!("field `{ctx}.factor` missing"))?,
        },
        "longrope" | "su" => {
            let original = orig();
            let f = factor("factor").unwrap_or(max_pos as f64 / original as f64);
            let attention_factor = factor("attention_factor").unwrap_or(if f <= 1.0 {
                1.0
            } else {
                (1.0 + f.ln() / (original as f64).ln()).sqrt()
            });
            RopeScaling::LongRope {
                short_factor: factors(obj, "short_factor", ctx)?,
                long_factor: factors(obj, "long_factor", ctx)?,
                original_max_position_embeddings: original,
                attention_factor,
            }
        }
        other => {
            return Err(format!(
                "field `{ctx}.rope_type` = {other:?}: unsupported (default, linear, llama3, yarn, dynamic, longrope)"
            ))
        }
    })
}

/// Plain inverse frequencies `1 / theta^(2i / dim)` for a rotated width `dim`, in f32.
fn base_frequencies(theta: f32, dim: usize) -> Vec<f32> {
    (0..dim)
        .step_by(2)
        .map(|i| 1.0 / theta.powf(i as f32 / dim as f32))
        .collect()
}

impl Rope {
    /// The frequencies for a rotated width of `dim` dimensions (`head_dim` times the partial
    /// rotary factor).
    pub fn frequencies(&self, dim: usize) -> Result<RopeFrequencies, String> {
        let base = base_frequencies(self.theta, dim);
        let plain = |inv_freq| RopeFrequencies {
            inv_freq,
            long: None,
            attention_scaling: 1.0,
        };
        Ok(match &self.scaling {
            // Dynamic NTK only changes the base past max_position_embeddings, which the engine
            // never runs.
            RopeScaling::None | RopeScaling::Dynamic { .. } => plain(base),
            RopeScaling::Linear { factor } => plain(base.into_iter().map(|f| f / factor).collect()),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                let old = *original_max_position_embeddings as f32;
                let low_freq_wavelen = old / low_freq_factor;
                let high_freq_wavelen = old / high_freq_factor;
                plain(
                    base.into_iter()
                        .map(|f| {
                            let wavelen = 2.0 * std::f32::consts::PI / f;
                            let scaled = if wavelen > low_freq_wavelen {
                                f / factor
                            } else {
                                f
                            };
                            let medium =
                                wavelen >= high_freq_wavelen && wavelen <= low_freq_wavelen;
                            if medium {
                                let smooth = (old / wavelen - low_freq_factor)
                                    / (high_freq_factor - low_freq_factor);
                                (1.0 - smooth) * scaled / factor + smooth * scaled
                            } else {
                                scaled
                            }
                        })
                        .collect(),
                )
            }
            RopeScaling::Yarn {
                factor,
                original_max_position_embeddings,
                beta_fast,
                beta_slow,
                attention_factor,
                truncate,
            } => {
                let d = dim as f64;
                let theta = f64::from(self.theta);
                let orig = *original_max_position_embeddings as f64;
                let correction = |rot: f64| {
                    d * (orig / (rot * 2.0 * std::f64::consts::PI)).ln() / (2.0 * theta.ln())
                };
                let (mut low, mut high) = (correction(*beta_fast), correction(*beta_slow));
                if *truncate {
                    low = low.floor();
                    high = high.ceil();
                }
                let low = low.max(0.0);
                let mut high = high.min(d - 1.0);
                if low == high {
                    high += 0.001;
                }
                let (lo, span) = (low as f32, (high - low) as f32);
                let f = *factor as f32;
                let inv_freq = (0..dim)
                    .step_by(2)
                    .enumerate()
                    .map(|(j, i)| {
                        let pos_freq = self.theta.powf(i as f32 / dim as f32);
                        let extrapolation = 1.0 / pos_freq;
                        let interpolation = 1.0 / (f * pos_freq);
                        let ramp = ((j as f32 - lo) / span).clamp(0.0, 1.0);
                        let extrapolation_factor = 1.0 - ramp;
                        interpolation * (1.0 - extrapolation_factor)
                            + extrapolation * extrapolation_factor
                    })
                    .collect();
                RopeFrequencies {
                    inv_freq,
                    long: None,
                    attention_scaling: *attention_factor as f32,
                }
            }
            RopeScaling::LongRope {
                short_factor,
                long_factor,
                original_max_position_embeddings,
                attention_factor,
            } => {
                let n = dim / 2;
                for (name, f) in [("short_factor", short_factor), ("long_factor", long_factor)] {
                    if f.len() != n {
                        return Err(format!(
                            "field `rope_scaling.{name}` has {} entries; the rotary dimension {dim} needs {n}",
                            f.len()
                        ));
                    }
                }
                let scaled = |ext: &[f32]| -> Vec<f32> {
                    (0..dim)
                        .step_by(2)
                        .zip(ext)
                        .map(|(i, e)| 1.0 / (e * self.theta.powf(i as f32 / dim as f32)))
                        .collect()
                };
                RopeFrequencies {
                    inv_freq: scaled(short_factor),
                    long: Some((scaled(long_factor), *original_max_position_embeddings)),
                    attention_scaling: *attention_factor as f32,
                }
            }
        })
    }
}
