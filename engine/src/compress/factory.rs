//! Which compressor implements a method: the plain ones behind [`Compressor`], the calibrated
//! ones behind [`LayerCompressor`].

use compsafe_core::Method;

use super::*;
use crate::error::{EngineError, Result};

/// The compressor of a method. A `Checkpoint` variant is not derived from the reference (it is
/// loaded from its own files), so asking for its compressor is an error; `fp32` is the identity.
pub fn compressor_for(method: &Method) -> Result<Box<dyn Compressor>> {
    Ok(match method {
        Method::Cast { dtype } => Box::new(Cast::new(*dtype)),
        Method::Rtn { bits, group, asym } => Box::new(Rtn::new(*bits, *group, *asym)?),
        Method::Gguf { ty } => Box::new(Gguf::new(*ty)),
        Method::GgufFile {
            ftype,
            pure,
            imatrix,
        } => {
            let im = match imatrix {
                None => None,
                Some(compsafe_core::ImatrixSource::File(p)) => Some(std::sync::Arc::new(
                    crate::ggml::imatrix::Imatrix::read(p)
                        .map_err(|e| EngineError::bad_file(p, format!("importance matrix: {e}")))?,
                )),
                Some(compsafe_core::ImatrixSource::Suite(s)) => {
                    return Err(EngineError::Invalid(format!(
                        "imatrix={s}: an importance matrix computed from a suite needs the \
                         reference model; derive the variant with variant::compress"
                    )))
                }
            };
            Box::new(GgufRecipe::new(*ftype, *pure, im))
        }
        Method::Prune { sparsity, scope } => Box::new(MagnitudePrune::new(*sparsity, *scope)?),
        Method::NofM { n, m } => Box::new(NofMPrune::new(*n, *m)?),
        Method::Heads { heads } => Box::new(HeadAblation::new(heads.clone())),
        Method::Ablate { target } => Box::new(Ablate::new(target.clone())),
        Method::Noise { sigma, seed } => Box::new(Noise::new(*sigma, *seed)),
        Method::Fp8(f) if !f.static_act => Box::new(packed::Fp8Dynamic),
        Method::Bnb4(spec) => Box::new(packed::Bnb4 { spec: *spec }),
        Method::Checkpoint { path } => {
            return Err(EngineError::Invalid(format!(
                "checkpoint variant `{}` is loaded from its own files, not derived from the \
                 reference by a compressor",
                path.display()
            )))
        }
        Method::Distill(_) => {
            return Err(EngineError::Invalid(
                "a distill variant is a trained student, not derived from the reference by a \
                 compressor"
                    .into(),
            ))
        }
        m if m.needs_calibration() => {
            return Err(EngineError::Invalid(format!(
                "`{m}` needs calibration data: derive it with a calibration set"
            )))
        }
        m => {
            return Err(EngineError::Invalid(format!(
                "`{m}` is not available in this build yet (its numerics come with the \
                 quantized formats)"
            )))
        }
    })
}

/// The calibrated compressor of a method that needs calibration data.
pub fn calibrated_compressor_for(method: &Method) -> Result<Box<dyn LayerCompressor>> {
    Ok(match method {
        Method::Gptq(g) => Box::new(gptq_of(g, false)),
        Method::SparseGpt(p) => Box::new(SparseGpt {
            sparsity: sparsity(p.sparsity),
            damp: p.damp,
            block: p.block,
        }),
        Method::Awq(a) => Box::new(awq::Awq::new(awq::AwqParams {
            bits: a.bits,
            group: a.group,
            symmetric: a.sym,
            grid: a.grid,
        })),
        Method::SmoothQuant(q) => Box::new(smoothquant::SmoothQuant { alpha: q.alpha }),
        Method::Wanda { sparsity: sp } => Box::new(Wanda {
            sparsity: sparsity(*sp),
        }),
        Method::Chain { steps } if steps.len() == 2 => {
            let first = calibrated_compressor_for(&steps[0])?;
            let second: Box<dyn LayerCompressor> = match &steps[1] {
                Method::Gptq(g) => Box::new(gptq_of(g, true)),
                other => {
                    return Err(EngineError::Invalid(format!(
                        "`{method}`: a calibrated pruner combines with gptq; `{other}` is not \
                         supported after it yet"
                    )))
                }
            };
            Box::new(Chain {
                steps: vec![first, second],
            })
        }
        m => {
            return Err(EngineError::Invalid(format!(
                "`{m}` has no calibrated compressor in this build yet"
            )))
        }
    })
}

fn gptq_of(g: &compsafe_core::calibrated::GptqSpec, keep_zero: bool) -> Gptq {
    Gptq {
        params: gptq::GptqParams {
            bits: g.bits,
            group: g.group,
            symmetric: !g.asym,
            act_order: g.act_order,
            damp: g.damp,
            block: g.block,
        },
        keep_zero,
    }
}

fn sparsity(s: compsafe_core::calibrated::SparsitySpec) -> sparsegpt::Sparsity {
    match s {
        compsafe_core::calibrated::SparsitySpec::Fraction(f) => sparsegpt::Sparsity::Fraction(f),
        compsafe_core::calibrated::SparsitySpec::NofM { n, m } => {
            sparsegpt::Sparsity::NofM { n, m }
        }
    }
}
