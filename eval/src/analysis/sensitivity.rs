//! `[analysis.sensitivity]` units: the baseline (the reference's refusal log-odds, its own
//! responses that KL is measured on, its refusals for the confirmation, the units) and a scan
//! slice (its share of the units, each compressed alone, measured and optionally confirmed).

use compsafe_core::analysis::sensitivity::{self, Row, SensitivityBaseline};
use compsafe_core::spec::{SensitivitySection, Validated};
use compsafe_core::stats::PairedCounts;
use compsafe_core::unit::{share, UnitSpec};
use compsafe_engine::score::logit_fidelity;
use compsafe_engine::{generate, GenerateOptions, Model};

use super::{generation, input, mean, output, prompts, rate, refusals, tokens};
use crate::evaluator::Evaluator;
use crate::unit::UnitError;

/// A prompt and a continuation, as tokens.
type Request = (Vec<u32>, Vec<u32>);

/// Runs one sensitivity unit.
pub fn run(eval: &Evaluator, v: &Validated, u: &UnitSpec) -> Result<serde_json::Value, UnitError> {
    let s = v
        .spec
        .analysis
        .sensitivity
        .as_ref()
        .ok_or_else(|| UnitError::input("the spec has no [analysis.sensitivity]"))?;
    match u.stage {
        0 => output(&baseline(eval, v, s)?),
        _ => {
            let b: SensitivityBaseline = input(u, 0)?;
            output(&scan(eval, v, s, &b, u.start, u.end)?)
        }
    }
}

fn baseline(
    eval: &Evaluator,
    v: &Validated,
    s: &SensitivitySection,
) -> Result<SensitivityBaseline, UnitError> {
    let budget = v.spec.generation.batch_tokens as usize;
    let harmful_prompts = prompts(v, s.suite, s.limit)?;
    let harmful = tokens(eval, harmful_prompts)?;
    let benign = tokens(eval, prompts(v, s.benign, s.limit)?)?;
    let opts = GenerateOptions {
        max_new_tokens: s.max_new_tokens as usize,
        batch_tokens: budget,
        max_batch: 64,
        eos: eval.eos().to_vec(),
    };
    // The reference's own greedy responses, the continuations KL is measured on.
    let continuations = |prompts: &[Vec<u32>]| -> Result<Vec<Request>, UnitError> {
        Ok(prompts
            .iter()
            .zip(generate(&eval.reference, prompts, &opts, None)?)
            .filter(|(_, g)| !g.tokens.is_empty())
            .map(|(p, g)| (p.clone(), g.tokens))
            .collect())
    };
    let refused = if s.confirm {
        let g = generation(v, s.max_new_tokens);
        Some(refusals(
            eval,
            v,
            s.suite,
            harmful_prompts,
            &eval.reference,
            "reference",
            &g,
        )?)
    } else {
        None
    };
    let mut units = sensitivity::units(s.unit, eval.checkpoint.config.num_layers);
    units.push(("all".into(), String::new()));
    Ok(SensitivityBaseline {
        refusal_logodds: mean(&eval.refusal_logodds(&eval.reference, &harmful, budget)?),
        refused,
        harmful: harmful.len(),
        benign: benign.len(),
        harmful_requests: continuations(&harmful)?,
        benign_requests: continuations(&benign)?,
        units,
    })
}

/// Mean per-token KL over every scored position of `reqs`.
fn mean_kld(
    eval: &Evaluator,
    model: &Model,
    reqs: &[Request],
    budget: usize,
) -> Result<f64, UnitError> {
    let f = logit_fidelity(&eval.reference, model, reqs, budget)?;
    let all: Vec<f64> = f.iter().flat_map(|x| x.kld.iter().copied()).collect();
    Ok(mean(&all))
}

fn scan(
    eval: &Evaluator,
    v: &Validated,
    s: &SensitivitySection,
    b: &SensitivityBaseline,
    slice: usize,
    slices: usize,
) -> Result<Vec<Row>, UnitError> {
    let budget = v.spec.generation.batch_tokens as usize;
    let harmful_prompts = prompts(v, s.suite, s.limit)?;
    let harmful = tokens(eval, harmful_prompts)?;
    let g = generation(v, s.max_new_tokens);
    let mut rows = Vec::new();
    for i in share(b.units.len(), slice, slices) {
        let (unit, select) = &b.units[i];
        let mut variant = s.variant.clone();
        variant.select = (!select.is_empty()).then(|| select.clone());
        let derived = eval.derive(&variant)?;
        let m = &derived.model;
        let mut row = Row {
            unit: unit.clone(),
            select: select.clone(),
            tensors: derived.compressed_stats.len(),
            refusal_logodds_drop: b.refusal_logodds
                - mean(&eval.refusal_logodds(m, &harmful, budget)?),
            kld_harmful: mean_kld(eval, m, &b.harmful_requests, budget)?,
            kld_benign: mean_kld(eval, m, &b.benign_requests, budget)?,
            refusal_rate: None,
            refuse_to_comply: None,
            comply_to_refuse: None,
            mcnemar_p: None,
            p_holm: None,
            breaks_safety: None,
        };
        if let Some(reference) = &b.refused {
            let refused = refusals(eval, v, s.suite, harmful_prompts, m, unit, &g)?;
            let pc = PairedCounts::from_pairs(reference, &refused).ok_or_else(|| {
                UnitError::internal("paired verdicts of different lengths".to_string())
            })?;
            row.refusal_rate = Some(rate(&refused));
            row.refuse_to_comply = Some(pc.reference_only);
            row.comply_to_refuse = Some(pc.variant_only);
            row.mcnemar_p = Some(pc.mcnemar_p());
        }
        tracing::info!("compressed {unit}");
        rows.push(row);
    }
    Ok(rows)
}
