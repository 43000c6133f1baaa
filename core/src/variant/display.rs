//! The canonical shorthand of a method (what [`Method::parse`] reads back).

use std::fmt;

use super::{Ablation, FloatType, Method, PruneScope};

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Method::Cast { dtype } => f.write_str(match dtype {
                FloatType::F32 => "fp32",
                FloatType::F16 => "f16",
                FloatType::Bf16 => "bf16",
            }),
            Method::Rtn { bits, group, asym } => {
                write!(f, "int{bits}")?;
                if let Some(g) = group {
                    write!(f, ":g{g}")?;
                }
                if *asym {
                    f.write_str(":asym")?;
                }
                Ok(())
            }
            Method::Gguf { ty } => write!(f, "gguf:{}", ty.short_name()),
            Method::GgufFile {
                ftype,
                pure,
                imatrix,
            } => {
                write!(f, "gguf:{}", ftype.name())?;
                if *pure {
                    f.write_str(":pure")?;
                }
                if let Some(m) = imatrix {
                    write!(f, ":imatrix={m}")?;
                }
                Ok(())
            }
            Method::Prune { sparsity, scope } => {
                write!(f, "prune:{sparsity}")?;
                if *scope == PruneScope::Layer {
                    f.write_str(":layer")?;
                }
                Ok(())
            }
            Method::NofM { n, m } => write!(f, "prune:{n}of{m}"),
            Method::Heads { heads } => {
                f.write_str("heads:")?;
                for (i, h) in heads.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{}.{}", h.layer, h.head)?;
                }
                Ok(())
            }
            Method::Checkpoint { path } => write!(f, "checkpoint:{}", path.display()),
            Method::Distill(d) => {
                write!(
                    f,
                    "distill:T{}:alpha{}:safety_weight{}:steps{}",
                    d.temperature, d.alpha, d.safety_weight, d.steps
                )?;
                if let Some(l) = d.layers {
                    write!(f, ":layers{l}")?;
                }
                Ok(())
            }
            Method::Ablate {
                target: Ablation::Layers(layers),
            } => {
                let list: Vec<String> = layers.iter().map(usize::to_string).collect();
                write!(f, "ablate:layer:{}", list.join(","))
            }
            Method::Ablate {
                target: Ablation::Channels(blocks),
            } => {
                let list: Vec<String> = blocks
                    .iter()
                    .map(|(l, a, b)| format!("{l}:{a}-{b}"))
                    .collect();
                write!(f, "ablate:mlp:{}", list.join(","))
            }
            Method::Noise { sigma, seed } => {
                write!(f, "noise:{sigma}")?;
                if *seed != 0 {
                    write!(f, ":s{seed}")?;
                }
                Ok(())
            }
            Method::Gptq(g) => write!(f, "{g}"),
            Method::Awq(a) => write!(f, "{a}"),
            Method::SmoothQuant(q) if q.alpha == 0.5 => f.write_str("smoothquant:w8a8"),
            Method::SmoothQuant(q) => write!(f, "smoothquant:w8a8:{}", q.alpha),
            Method::Fp8(p) if p.static_act => f.write_str("fp8:static"),
            Method::Fp8(_) => f.write_str("fp8"),
            Method::Bnb4(b) => write!(f, "{b}"),
            Method::SparseGpt(p) => write!(f, "{p}"),
            Method::Wanda { sparsity } => write!(f, "wanda:{sparsity}"),
            Method::Chain { steps } => {
                for (i, m) in steps.iter().enumerate() {
                    if i > 0 {
                        f.write_str("+")?;
                    }
                    write!(f, "{m}")?;
                }
                Ok(())
            }
            Method::Kv { kv, base } if **base == Method::reference() => write!(f, "{kv}"),
            Method::Kv { kv, base } => write!(f, "{base}+{kv}"),
        }
    }
}
