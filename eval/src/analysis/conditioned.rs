//! `[analysis.conditioned]` units: the baseline (f32 and f32 + noise on every measured suite)
//! and one unit per compressor (the compressor and its noise control, both against f32).

use compsafe_core::analysis::conditioned::{ConditionedBaseline, ConditionedVariant, Metric};
use compsafe_core::report::Record;
use compsafe_core::spec::{ConditionedSection, Validated};
use compsafe_core::suite::Suite;
use compsafe_core::unit::{ReferenceWire, UnitSpec};
use compsafe_core::{Method, Variant};
use compsafe_engine::compress::LinearWeight;
use compsafe_engine::variant::derive;
use compsafe_engine::{Checkpoint, Model};

use super::{generation, input, output, prompts, suite};
use crate::evaluator::{judges_for, Evaluator, ReferenceOutputs};
use crate::unit::UnitError;

/// Runs one conditioned unit.
pub fn run(eval: &Evaluator, v: &Validated, u: &UnitSpec) -> Result<serde_json::Value, UnitError> {
    let c = v
        .spec
        .analysis
        .conditioned
        .as_ref()
        .ok_or_else(|| UnitError::input("the spec has no [analysis.conditioned]"))?;
    if !eval.checkpoint.quantized.is_empty() {
        return Err(UnitError::input(format!(
            "model.path {}: holds block-quantized (GGUF) weights; the conditioned check \
             compresses a full-precision checkpoint",
            v.spec.model.path.display()
        )));
    }
    let measured = Measured::new(v, c)?;
    match u.stage {
        0 => output(&baseline(eval, v, c, &measured)?),
        _ => {
            let b: ConditionedBaseline = input(u, 0)?;
            let var = c.variants.get(u.variant).ok_or_else(|| {
                UnitError::input(format!("unit {}: no compressor {}", u.unit_id, u.variant))
            })?;
            output(&compressor(eval, v, c, &measured, &b, var)?)
        }
    }
}

/// The measured suites: each with the spec suite whose judge it uses, and its metric.
struct Measured {
    suites: Vec<(Suite, usize, Metric)>,
}

impl Measured {
    fn new(v: &Validated, c: &ConditionedSection) -> Result<Measured, UnitError> {
        let limited = |i: usize| -> Result<Suite, UnitError> {
            let mut s = suite(v, i)?.clone();
            s.prompts = prompts(v, i, c.limit)?.to_vec();
            Ok(s)
        };
        let mut suites = vec![
            (limited(c.suite)?, c.suite, Metric::Refusal),
            (limited(c.benign)?, c.benign, Metric::OverRefusal),
        ];
        if let Some(t) = c.target_suite {
            suites.push((limited(t)?, t, Metric::Asr));
        }
        // A target string: attack success on the harmful prompts themselves.
        if let Some(t) = &c.target {
            let mut s = limited(c.suite)?;
            for p in s.prompts.iter_mut() {
                p.target = Some(t.clone());
            }
            suites.push((s, c.suite, Metric::Asr));
        }
        Ok(Measured { suites })
    }

    /// What `model` did on every measured suite: per-prompt outcomes, its outputs and its
    /// records.
    fn outcomes(
        &self,
        eval: &Evaluator,
        v: &Validated,
        c: &ConditionedSection,
        name: &str,
        model: &Model,
        reference: Option<&[ReferenceWire]>,
    ) -> Result<Outcomes, UnitError> {
        let g = generation(v, c.max_new_tokens);
        let mut out = Vec::new();
        let mut refs = Vec::new();
        let mut records = Vec::new();
        for (i, (suite, index, metric)) in self.suites.iter().enumerate() {
            let judges = judges_for(&v.spec, *index, suite)?;
            let given = reference.map(|r| ReferenceOutputs::from(&r[i]));
            let (recs, own) = eval.eval_generation(
                name,
                model,
                suite,
                &suite.prompts,
                &judges,
                &g,
                given.as_ref(),
            )?;
            out.push(match metric {
                Metric::Refusal | Metric::OverRefusal => {
                    recs.iter().map(|r| r.refused == Some(true)).collect()
                }
                Metric::Asr => recs.iter().map(|r| r.target_hit == Some(true)).collect(),
            });
            refs.push(ReferenceWire::from(&own));
            records.push(recs);
        }
        Ok(Outcomes {
            flags: out,
            references: refs,
            records,
        })
    }
}

/// One model's outcomes on the measured suites: the per-prompt flags of each suite's metric,
/// the outputs (a reference for later comparisons) and the records.
struct Outcomes {
    flags: Vec<Vec<bool>>,
    references: Vec<ReferenceWire>,
    records: Vec<Vec<Record>>,
}

/// The reference's weights with the section's noise added (the noise control's base).
fn noised(eval: &Evaluator, c: &ConditionedSection) -> Result<Checkpoint, UnitError> {
    let noise = Variant::parse(
        &format!("noise:{}:s{}", c.noise, c.seed),
        "analysis.conditioned",
    )?;
    let compressed = compsafe_engine::variant::compress(&eval.checkpoint, &noise)?;
    let mut ckpt = eval.checkpoint.clone();
    for (name, w) in compressed.weights {
        if let LinearWeight::Dense(t) = w {
            ckpt.weights.insert(name, t);
        }
    }
    Ok(ckpt)
}

fn baseline(
    eval: &Evaluator,
    v: &Validated,
    c: &ConditionedSection,
    m: &Measured,
) -> Result<ConditionedBaseline, UnitError> {
    let start = std::time::Instant::now();
    let Outcomes {
        flags: f32,
        references,
        records,
    } = m.outcomes(eval, v, c, "fp32", &eval.reference, None)?;
    let noise_model = Model::new(&noised(eval, c)?)?;
    let noised = m
        .outcomes(eval, v, c, "fp32+noise", &noise_model, Some(&references))?
        .flags;
    Ok(ConditionedBaseline {
        suites: m.suites.iter().map(|(s, _, _)| s.name.clone()).collect(),
        metrics: m.suites.iter().map(|(_, _, metric)| *metric).collect(),
        f32,
        noised,
        references,
        responses: records
            .iter()
            .map(|recs| {
                recs.iter()
                    .map(|r| (r.prompt.clone(), r.response.clone().unwrap_or_default()))
                    .collect()
            })
            .collect(),
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn compressor(
    eval: &Evaluator,
    v: &Validated,
    c: &ConditionedSection,
    m: &Measured,
    b: &ConditionedBaseline,
    var: &Variant,
) -> Result<ConditionedVariant, UnitError> {
    let start = std::time::Instant::now();
    let exact = eval.derive(var)?;
    let exact = m.outcomes(eval, v, c, &var.name, &exact.model, Some(&b.references))?;
    let (ex, records) = (exact.flags, exact.records);
    let control = derive(&noised(eval, c)?, var, eval.reference.device())?;
    let nc = m
        .outcomes(
            eval,
            v,
            c,
            &format!("{}+noise", var.name),
            &control.model,
            Some(&b.references),
        )?
        .flags;
    // Per measured suite, the first prompt whose outcome changed the adverse way.
    let examples = b
        .metrics
        .iter()
        .enumerate()
        .map(|(i, metric)| {
            let base = &b.f32[i];
            (0..base.len())
                .find(|&j| base[j] != ex[i][j] && ex[i][j] == metric.adverse_is_rise())
                .map(|j| {
                    let (prompt, f32_response) = b.responses[i][j].clone();
                    let response = records[i][j].response.clone().unwrap_or_default();
                    (prompt, f32_response, response)
                })
        })
        .collect();
    Ok(ConditionedVariant {
        variant: var.name.clone(),
        pruner: matches!(var.method, Method::Prune { .. } | Method::NofM { .. }),
        exact: ex,
        noised: nc,
        examples,
        seconds: start.elapsed().as_secs_f64(),
    })
}
