//! The analysis units: each module measures one stage of one analysis on a loaded model and
//! returns its part as JSON (the types are `compsafe_core::analysis`'s).

pub mod conditioned;
pub mod heads;
pub mod search;
pub mod sensitivity;

use compsafe_core::spec::{Generation, Validated};
use compsafe_core::suite::{Prompt, Suite};
use compsafe_core::unit::UnitSpec;
use compsafe_engine::{EngineError, Model};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::evaluator::{judges_for, Evaluator};
use crate::unit::UnitError;

/// The mean, 0 for no values.
pub(crate) fn mean(xs: &[f64]) -> f64 {
    compsafe_core::stats::mean(xs).unwrap_or(0.0)
}

/// Generation settings of an analysis: its own token limit, the sweep's batch budget, and
/// generation stopping once the judge's verdict is final.
pub(crate) fn generation(v: &Validated, max_new_tokens: u32) -> Generation {
    Generation {
        max_new_tokens,
        batch_tokens: v.spec.generation.batch_tokens.max(max_new_tokens),
        stop_on_verdict: true,
    }
}

/// The first `limit` prompts of suite `index`.
pub(crate) fn prompts(v: &Validated, index: usize, limit: usize) -> Result<&[Prompt], UnitError> {
    let s = suite(v, index)?;
    Ok(&s.prompts[..limit.min(s.prompts.len())])
}

/// Suite `index` of the spec.
pub(crate) fn suite(v: &Validated, index: usize) -> Result<&Suite, UnitError> {
    v.suites
        .get(index)
        .ok_or_else(|| UnitError::input(format!("the spec has no suite {index}")))
}

/// The prompts' token ids, chat template applied.
pub(crate) fn tokens(eval: &Evaluator, prompts: &[Prompt]) -> Result<Vec<Vec<u32>>, EngineError> {
    prompts
        .iter()
        .map(|p| eval.prompt_tokens(&p.prompt))
        .collect()
}

/// Per prompt of suite `index` (its first `prompts`): whether `model`'s greedy response is
/// judged a refusal by the suite's judge.
pub(crate) fn refusals(
    eval: &Evaluator,
    v: &Validated,
    index: usize,
    prompts: &[Prompt],
    model: &Model,
    name: &str,
    generation: &Generation,
) -> Result<Vec<bool>, UnitError> {
    let suite = suite(v, index)?;
    let judges = judges_for(&v.spec, index, suite)?;
    let (recs, _) = eval.eval_generation(name, model, suite, prompts, &judges, generation, None)?;
    Ok(recs.iter().map(|r| r.refused == Some(true)).collect())
}

/// The share of `refused` that is true.
pub(crate) fn rate(refused: &[bool]) -> f64 {
    refused.iter().filter(|&&r| r).count() as f64 / refused.len().max(1) as f64
}

/// Input `i` of a unit (a result of an earlier stage), decoded.
pub(crate) fn input<T: DeserializeOwned>(u: &UnitSpec, i: usize) -> Result<T, UnitError> {
    let v = u.inputs.get(i).ok_or_else(|| {
        UnitError::input(format!(
            "unit {}: {} inputs were sent, input {i} is needed",
            u.unit_id,
            u.inputs.len()
        ))
    })?;
    serde_json::from_value(v.clone())
        .map_err(|e| UnitError::input(format!("unit {}: input {i}: {e}", u.unit_id)))
}

/// A unit's result as JSON.
pub(crate) fn output<T: Serialize>(t: &T) -> Result<serde_json::Value, UnitError> {
    serde_json::to_value(t).map_err(|e| UnitError::internal(format!("encoding a result: {e}")))
}
