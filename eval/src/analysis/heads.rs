//! `[analysis.heads]` units: the baseline (the unablated model's refusal log-odds and benign
//! likelihood, the reference's benign responses, the units), a scan slice (its share of the
//! units, each ablated alone) and the confirmation (the top K by generation).

use std::collections::BTreeSet;

use compsafe_core::analysis::heads::{self, HeadsBaseline, HeadsConfirm, ScanItem, UnitDesc};
use compsafe_core::spec::{HeadsSection, HeadsUnit, Validated};
use compsafe_core::unit::{share, UnitSpec};
use compsafe_core::Variant;
use compsafe_engine::score::loglikelihood;
use compsafe_engine::{generate, GenerateOptions, Model};

use super::{generation, input, mean, output, prompts, rate, refusals, tokens};
use crate::evaluator::Evaluator;
use crate::unit::UnitError;

/// Runs one heads unit.
pub fn run(eval: &Evaluator, v: &Validated, u: &UnitSpec) -> Result<serde_json::Value, UnitError> {
    let h = v
        .spec
        .analysis
        .heads
        .as_ref()
        .ok_or_else(|| UnitError::input("the spec has no [analysis.heads]"))?;
    match u.stage {
        0 => output(&baseline(eval, v, h)?),
        1 => {
            let b: HeadsBaseline = input(u, 0)?;
            output(&scan(eval, v, h, &b, u.start, u.end)?)
        }
        _ => {
            let b: HeadsBaseline = input(u, 0)?;
            let mut items: Vec<ScanItem> = Vec::new();
            for i in 1..u.inputs.len() {
                items.extend(input::<Vec<ScanItem>>(u, i)?);
            }
            output(&confirm(eval, v, h, &b, &items)?)
        }
    }
}

/// Mean per-token log-likelihood of the benign responses under `m`.
fn per_token(m: &Model, reqs: &[(Vec<u32>, Vec<u32>)], budget: usize) -> Result<f64, UnitError> {
    let lls = loglikelihood(m, reqs, budget)?;
    Ok(mean(
        &lls.iter()
            .zip(reqs)
            .map(|(ll, (_, r))| ll.sum / r.len() as f64)
            .collect::<Vec<_>>(),
    ))
}

fn baseline(eval: &Evaluator, v: &Validated, h: &HeadsSection) -> Result<HeadsBaseline, UnitError> {
    let c = &eval.checkpoint.config;
    if h.unit == HeadsUnit::Mlp && !(1..=c.intermediate_size).contains(&h.channels) {
        return Err(UnitError::input(format!(
            "analysis.heads.channels = {}: must be between 1 and the MLP width {}",
            h.channels, c.intermediate_size
        )));
    }
    let budget = v.spec.generation.batch_tokens as usize;
    let harmful = tokens(eval, prompts(v, h.suite, h.limit)?)?;
    let benign = tokens(eval, prompts(v, h.benign, h.limit)?)?;
    // The reference's own greedy responses to the benign prompts.
    let opts = GenerateOptions {
        max_new_tokens: h.max_new_tokens as usize,
        batch_tokens: budget,
        max_batch: 64,
        eos: eval.eos().to_vec(),
    };
    let gens = generate(&eval.reference, &benign, &opts, None)?;
    let benign_requests: Vec<(Vec<u32>, Vec<u32>)> = benign
        .iter()
        .zip(gens)
        .filter(|(_, g)| !g.tokens.is_empty())
        .map(|(p, g)| (p.clone(), g.tokens))
        .collect();
    let cols = match h.unit {
        HeadsUnit::Mlp => c.intermediate_size.div_ceil(h.channels.max(1)),
        _ => c.num_heads,
    };
    Ok(HeadsBaseline {
        refusal_logodds: mean(&eval.refusal_logodds(&eval.reference, &harmful, budget)?),
        benign_logprob_per_token: per_token(&eval.reference, &benign_requests, budget)?,
        harmful: harmful.len(),
        benign: benign_requests.len(),
        benign_requests,
        layers: c.num_layers,
        cols,
        units: heads::units(
            h.unit,
            c.num_layers,
            c.num_heads,
            c.intermediate_size,
            h.channels,
        ),
    })
}

/// The variant that ablates `units` together.
fn ablation(units: &[&UnitDesc], kind: HeadsUnit) -> Result<Variant, UnitError> {
    let items: Vec<String> = units
        .iter()
        .map(|u| match (kind, u.channels) {
            (HeadsUnit::Head, _) => format!("{}.{}", u.layer, u.head.unwrap_or(0)),
            (HeadsUnit::Layer, _) => u.layer.to_string(),
            (HeadsUnit::Mlp, Some((a, b))) => format!("{}:{a}-{b}", u.layer),
            (HeadsUnit::Mlp, None) => format!("{}:0-0", u.layer),
        })
        .collect();
    let text = match kind {
        HeadsUnit::Head => format!("heads:{}", items.join(",")),
        HeadsUnit::Layer => format!("ablate:layer:{}", items.join(",")),
        HeadsUnit::Mlp => format!("ablate:mlp:{}", items.join(",")),
    };
    Ok(Variant::parse(&text, "analysis.heads")?)
}

fn ablated(eval: &Evaluator, units: &[&UnitDesc], kind: HeadsUnit) -> Result<Model, UnitError> {
    Ok(eval.derive(&ablation(units, kind)?)?.model)
}

fn scan(
    eval: &Evaluator,
    v: &Validated,
    h: &HeadsSection,
    b: &HeadsBaseline,
    slice: usize,
    slices: usize,
) -> Result<Vec<ScanItem>, UnitError> {
    let budget = v.spec.generation.batch_tokens as usize;
    let harmful = tokens(eval, prompts(v, h.suite, h.limit)?)?;
    let mut out = Vec::new();
    for index in share(b.units.len(), slice, slices) {
        let m = ablated(eval, &[&b.units[index]], h.unit)?;
        out.push(ScanItem {
            index,
            safety_impact: b.refusal_logodds - mean(&eval.refusal_logodds(&m, &harmful, budget)?),
            capability_impact: b.benign_logprob_per_token
                - per_token(&m, &b.benign_requests, budget)?,
        });
        tracing::info!("ablated {}", b.units[index].unit);
    }
    Ok(out)
}

fn confirm(
    eval: &Evaluator,
    v: &Validated,
    h: &HeadsSection,
    b: &HeadsBaseline,
    items: &[ScanItem],
) -> Result<HeadsConfirm, UnitError> {
    let ranked = heads::rank(b, items).map_err(UnitError::input)?;
    let by_name = |name: &str| b.units.iter().find(|u| u.unit == name);
    let descs: Vec<&UnitDesc> = ranked
        .iter()
        .map(|r| {
            by_name(&r.unit).ok_or_else(|| UnitError::input(format!("unknown unit {}", r.unit)))
        })
        .collect::<Result<_, _>>()?;
    let k = h.confirm.min(ranked.len());
    let g = generation(v, h.max_new_tokens);
    let harmful = prompts(v, h.suite, h.limit)?;
    let refusal_rate = |m: &Model, name: &str| -> Result<f64, UnitError> {
        Ok(rate(&refusals(eval, v, h.suite, harmful, m, name, &g)?))
    };
    let reference_refusal_rate = refusal_rate(&eval.reference, "reference")?;
    let mut alone = Vec::with_capacity(k);
    for d in descs.iter().take(k) {
        alone.push(refusal_rate(&ablated(eval, &[d], h.unit)?, &d.unit)?);
    }
    let top = &descs[..k];
    let top_k_together_refusal_rate = refusal_rate(&ablated(eval, top, h.unit)?, "top")?;
    let mut random_sets = Vec::new();
    let mut random_sets_refusal_rates = Vec::new();
    for set in heads::random_sets(descs.len(), k, h.random_sets, h.seed) {
        let units: Vec<&UnitDesc> = set.iter().map(|&i| descs[i]).collect();
        random_sets_refusal_rates.push(refusal_rate(&ablated(eval, &units, h.unit)?, "random")?);
        let names: BTreeSet<String> = units.iter().map(|u| u.unit.clone()).collect();
        random_sets.push(names.into_iter().collect());
    }
    Ok(HeadsConfirm {
        k,
        reference_refusal_rate,
        alone,
        top_k_together_refusal_rate,
        random_sets,
        random_sets_refusal_rates,
        seed: h.seed,
    })
}
