//! The shorthand strings: `int4:g32:asym`, `gguf:q4_k_m:imatrix=SUITE`, `sparsegpt:2of4+gptq:w4g128`, ...

use super::{Ablation, FloatType, HeadRef, Method, PruneScope};
use crate::calibrated::{
    AwqSpec, Bnb4Code, Bnb4Spec, Fp8Spec, GptqSpec, KvQuant, SmoothQuantSpec, SparseGptSpec,
    SparsitySpec,
};
use crate::error::FieldError;
use crate::gguf::{GgufFtype, GgufType, ImatrixSource};

impl Method {
    /// Parses a shorthand string such as `int4:g32:asym`, `gguf:q4k`, `prune:0.5:layer`,
    /// `prune:2of4`, `heads:3.1,3.2`. `field` names where the string came from, for errors.
    pub fn parse(s: &str, field: &str) -> Result<Method, FieldError> {
        let bad = |why: &str| FieldError::new(field, s, why);
        if !s.contains('+') {
            return Method::parse_one(s, field);
        }
        let mut kv = None;
        let mut steps = Vec::new();
        for part in s.split('+') {
            match Method::parse_one(part, field)? {
                Method::Kv { kv: k, base } if *base == Method::reference() => {
                    if kv.replace(k).is_some() {
                        return Err(bad("at most one kv: modifier"));
                    }
                }
                m => steps.push(m),
            }
        }
        let method = match steps.len() {
            0 => Method::reference(),
            1 => steps.pop().unwrap_or_else(Method::reference),
            2 if steps[0].is_pruner() && steps[1].is_weight_quantizer() => Method::Chain { steps },
            _ => {
                return Err(bad(
                    "a combination is a pruner followed by a quantizer (sparsegpt:2of4+gptq:w4g128), optionally +kv:fp8 or +kv:int8",
                ))
            }
        };
        Ok(match kv {
            Some(kv) => Method::Kv {
                kv,
                base: Box::new(method),
            },
            None => method,
        })
    }

    /// Parses one shorthand without `+`.
    fn parse_one(s: &str, field: &str) -> Result<Method, FieldError> {
        let bad = |why: &str| FieldError::new(field, s, why);
        let lower = s.trim().to_ascii_lowercase();
        let mut parts = lower.split(':');
        let head = parts.next().unwrap_or_default();
        let rest: Vec<&str> = parts.collect();
        match head {
            "fp32" | "f32" | "fp16" | "f16" | "bf16" => {
                if !rest.is_empty() {
                    return Err(bad("a dtype cast takes no parameters"));
                }
                let dtype = match head {
                    "fp32" | "f32" => FloatType::F32,
                    "fp16" | "f16" => FloatType::F16,
                    _ => FloatType::Bf16,
                };
                Ok(Method::Cast { dtype })
            }
            h if h.starts_with("int") => {
                let bits: u8 = h[3..]
                    .parse()
                    .map_err(|_| bad("expected intN with N in 2..=8, e.g. int4"))?;
                if !(2..=8).contains(&bits) {
                    return Err(bad("integer bits must be between 2 and 8"));
                }
                let mut group = None;
                let mut asym = false;
                for p in rest {
                    if let Some(g) = p.strip_prefix('g') {
                        let g: usize = g
                            .parse()
                            .map_err(|_| bad("group must be gN with N a positive integer"))?;
                        if g == 0 {
                            return Err(bad("group size must be positive"));
                        }
                        group = Some(g);
                    } else if p == "asym" {
                        asym = true;
                    } else if p == "sym" {
                        asym = false;
                    } else {
                        return Err(bad("unknown integer option (expected gN, sym or asym)"));
                    }
                }
                Ok(Method::Rtn { bits, group, asym })
            }
            "gguf" => parse_gguf(s.trim(), &rest, &bad),
            "prune" => match rest.as_slice() {
                [nm] if nm.contains("of") => {
                    let (n, m) = nm.split_once("of").unwrap_or_default();
                    let n: usize = n.parse().map_err(|_| bad("expected prune:NofM"))?;
                    let m: usize = m.parse().map_err(|_| bad("expected prune:NofM"))?;
                    if m == 0 || n == 0 || n >= m {
                        return Err(bad("N:M pruning needs 0 < N < M"));
                    }
                    Ok(Method::NofM { n, m })
                }
                [frac, scope @ ..] => {
                    let sparsity: f64 = frac
                        .parse()
                        .map_err(|_| bad("expected a sparsity fraction, e.g. prune:0.5"))?;
                    if !(0.0..1.0).contains(&sparsity) {
                        return Err(bad("sparsity must be in [0, 1)"));
                    }
                    let scope = match scope {
                        [] | ["global"] => PruneScope::Global,
                        ["layer"] => PruneScope::Layer,
                        _ => return Err(bad("prune scope must be global or layer")),
                    };
                    Ok(Method::Prune { sparsity, scope })
                }
                _ => Err(bad("expected prune:FRACTION[:layer] or prune:NofM")),
            },
            "heads" => {
                let [list] = rest.as_slice() else {
                    return Err(bad("expected heads:L.H,L.H"));
                };
                let mut heads = Vec::new();
                for item in list.split(',') {
                    heads.push(HeadRef::parse(item).map_err(bad)?);
                }
                heads.sort();
                heads.dedup();
                Ok(Method::Heads { heads })
            }
            "ablate" => parse_ablation(&rest).map_err(bad),
            "noise" => {
                let (sigma, seed) = match rest.as_slice() {
                    [sigma] => (*sigma, None),
                    [sigma, seed] => (*sigma, Some(*seed)),
                    _ => return Err(bad("expected noise:SIGMA[:sSEED], e.g. noise:0.05:s7")),
                };
                let sigma: f64 = sigma
                    .parse()
                    .map_err(|_| bad("the noise scale is a number, e.g. noise:0.05"))?;
                if !(sigma.is_finite() && sigma > 0.0 && sigma <= 1.0) {
                    return Err(bad("the noise scale must be in (0, 1] (times each tensor's weight standard deviation)"));
                }
                let seed = match seed {
                    None => 0,
                    Some(t) => t
                        .strip_prefix('s')
                        .and_then(|x| x.parse().ok())
                        .ok_or_else(|| bad("the seed is sN, e.g. noise:0.05:s7"))?,
                };
                Ok(Method::Noise { sigma, seed })
            }
            "gptq" => Ok(Method::Gptq(GptqSpec::parse(&rest).map_err(bad)?)),
            "awq" => Ok(Method::Awq(AwqSpec::parse(&rest).map_err(bad)?)),
            "smoothquant" => Ok(Method::SmoothQuant(
                SmoothQuantSpec::parse(&rest).map_err(bad)?,
            )),
            "fp8" => match rest.as_slice() {
                [] | ["dynamic"] => Ok(Method::Fp8(Fp8Spec { static_act: false })),
                ["static"] => Ok(Method::Fp8(Fp8Spec { static_act: true })),
                _ => Err(bad("expected fp8 or fp8:static")),
            },
            "nf4" => Ok(Method::Bnb4(
                Bnb4Spec::parse(Bnb4Code::Nf4, &rest).map_err(bad)?,
            )),
            "fp4" => Ok(Method::Bnb4(
                Bnb4Spec::parse(Bnb4Code::Fp4, &rest).map_err(bad)?,
            )),
            "sparsegpt" => Ok(Method::SparseGpt(
                SparseGptSpec::parse(&rest).map_err(bad)?,
            )),
            "wanda" => match rest.as_slice() {
                [sp] => Ok(Method::Wanda {
                    sparsity: SparsitySpec::parse(sp).map_err(bad)?,
                }),
                _ => Err(bad("expected wanda:FRACTION or wanda:NofM")),
            },
            "kv" => Ok(Method::Kv {
                kv: KvQuant::parse(&rest).map_err(bad)?,
                base: Box::new(Method::reference()),
            }),
            _ => Err(bad(
                "unknown variant (fp32 f16 bf16 intN[:gN][:asym] gguf:TYPE prune:F[:layer] prune:NofM heads:L.H,... gptq:w4g128 awq:w4g128 smoothquant:w8a8 fp8 nf4 fp4 sparsegpt:0.5 wanda:2of4 kv:fp8 ablate:layer:L,... ablate:mlp:L:A-B,... noise:SIGMA[:sSEED], combined with +)",
            )),
        }
    }
}

/// `ablate:layer:L,...` or `ablate:mlp:L:A-B,...` (the part after `ablate:`, split at `:`).
fn parse_ablation(rest: &[&str]) -> Result<Method, &'static str> {
    let number = |x: &str| x.trim().parse::<usize>().ok();
    let target = match rest {
        ["layer", list] => {
            let mut layers = Vec::new();
            for item in list.split(',') {
                layers.push(
                    number(item).ok_or("expected ablate:layer:L[,L...], e.g. ablate:layer:0")?,
                );
            }
            layers.sort_unstable();
            layers.dedup();
            Ablation::Layers(layers)
        }
        ["mlp", items @ ..] if !items.is_empty() => {
            // `L:A-B,L:A-B`: the split at `:` cut each item in two.
            let joined = items.join(":");
            let mut blocks = Vec::new();
            for item in joined.split(',') {
                let block = item.split_once(':').and_then(|(l, r)| {
                    let (a, b) = r.split_once('-')?;
                    Some((number(l)?, number(a)?, number(b)?))
                });
                match block {
                    Some((l, a, b)) if a < b => blocks.push((l, a, b)),
                    _ => return Err("expected ablate:mlp:L:A-B[,L:A-B...] with A < B, e.g. ablate:mlp:1:192-256"),
                }
            }
            blocks.sort_unstable();
            blocks.dedup();
            Ablation::Channels(blocks)
        }
        _ => return Err("expected ablate:layer:L[,L...] or ablate:mlp:L:A-B[,L:A-B...]"),
    };
    Ok(Method::Ablate { target })
}

/// `gguf:NAME[:pure][:imatrix=FILE|SUITE]`: a llama.cpp file type (`q4_k_m`, `q8_0`,
/// `iq4_xs`, ...) or one block type in its compact spelling (`q4k`, `q80`, `iq4xs`).
/// `original` keeps the case of an imatrix path.
fn parse_gguf(
    original: &str,
    rest: &[&str],
    bad: &dyn Fn(&str) -> FieldError,
) -> Result<Method, FieldError> {
    const TYPES: &str =
        "a llama.cpp file type (q4_0 q4_1 q5_0 q5_1 q8_0 q2_k q2_k_s q3_k_s q3_k_m \
                         q3_k_l q4_k_s q4_k_m q5_k_s q5_k_m q6_k iq1_s iq1_m iq2_xxs iq2_xs iq2_s \
                         iq2_m iq3_xxs iq3_xs iq3_s iq3_m iq4_nl iq4_xs tq1_0 tq2_0) or one block \
                         type (q80 q40 q41 q50 q51 q2k q3k q4k q5k q6k q8k iq4nl iq4xs ...)";
    let Some((name, opts)) = rest.split_first() else {
        return Err(bad(&format!("expected gguf:TYPE, {TYPES}")));
    };
    let raw_opts: Vec<&str> = original.split(':').skip(2).collect();
    if let Some(ftype) = GgufFtype::parse(name) {
        let (mut pure, mut imatrix) = (false, None);
        for (i, o) in opts.iter().enumerate() {
            if *o == "pure" {
                pure = true;
            } else if let Some(v) = o.strip_prefix("imatrix=") {
                let v = raw_opts
                    .get(i)
                    .and_then(|r| r.split_once('=').map(|(_, v)| v.trim()))
                    .unwrap_or(v);
                if v.is_empty() {
                    return Err(bad("imatrix= needs a file or a bundled suite name"));
                }
                imatrix = Some(ImatrixSource::parse(v));
            } else if *o == "imatrix" {
                return Err(bad(
                    "name the importance matrix: imatrix=FILE (from llama-imatrix) or \
                     imatrix=SUITE (computed from a bundled suite)",
                ));
            } else {
                return Err(bad(
                    "unknown GGUF option (expected pure or imatrix=FILE|SUITE)",
                ));
            }
        }
        return Ok(Method::GgufFile {
            ftype,
            pure,
            imatrix,
        });
    }
    if !opts.is_empty() {
        return Err(bad(
            "a one-type GGUF variant takes no options (pure and imatrix= apply to llama.cpp file \
             types such as q4_k_m)",
        ));
    }
    let ty = GgufType::parse(name)
        .ok_or_else(|| bad(&format!("unknown GGUF type: expected {TYPES}")))?;
    Ok(Method::Gguf { ty })
}
