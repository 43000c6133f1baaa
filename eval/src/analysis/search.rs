//! `[search]` units: per searched variant, the selection (which of the first `limit` prompts
//! both models refuse as written) and one method (greedy or random) on a slice of the prompts.

use compsafe_core::analysis::search::{SearchConfig, Selection, Strategy};
use compsafe_core::spec::{SearchSection, Validated};
use compsafe_core::unit::UnitSpec;

use super::{input, output, prompts, suite};
use crate::evaluator::{judges_for, Evaluator};
use crate::search::Searcher;
use crate::unit::UnitError;

/// The settings of a `[search]` section.
pub fn config(s: &SearchSection) -> SearchConfig {
    SearchConfig {
        budget: s.budget,
        suffix_len: s.suffix_len,
        candidates: s.candidates,
        seed: s.seed,
        margin: s.margin,
    }
}

/// Runs one search unit.
pub fn run(eval: &Evaluator, v: &Validated, u: &UnitSpec) -> Result<serde_json::Value, UnitError> {
    let s = v
        .spec
        .search
        .as_ref()
        .ok_or_else(|| UnitError::input("the spec has no [search]"))?;
    let name = s.variants.get(u.group).ok_or_else(|| {
        UnitError::input(format!(
            "unit {}: no searched variant {}",
            u.unit_id, u.group
        ))
    })?;
    let entry = v
        .spec
        .variants
        .iter()
        .find(|e| &e.variant.name == name)
        .ok_or_else(|| UnitError::input(format!("search.variants: {name:?} is not a variant")))?;
    let suite = suite(v, s.suite_index)?;
    let judges = judges_for(&v.spec, s.suite_index, suite)?;
    let derived = eval.derive(&entry.variant)?;
    let searcher = Searcher::new(
        eval,
        &derived.model,
        name,
        suite,
        &judges,
        &v.spec.generation,
        config(s),
    )?;
    let all = prompts(v, s.suite_index, s.limit)?;
    match u.stage {
        0 => {
            let start = std::time::Instant::now();
            let (eligible, already_flipped) = searcher.select(all)?;
            let eligible = eligible
                .iter()
                .filter_map(|e| all.iter().position(|p| p.id == e.id))
                .collect();
            output(&Selection {
                eligible,
                already_flipped,
                token_pool: searcher.pool_size(),
                seconds: start.elapsed().as_secs_f64(),
            })
        }
        _ => {
            let sel: Selection = input(u, 0)?;
            let strategy = if u.variant == 0 {
                Strategy::Greedy
            } else {
                Strategy::Random
            };
            // The eligible prompts in this slice, and the position of the first among all
            // eligible prompts (each prompt's random stream derives from it).
            let first = sel.eligible.iter().take_while(|&&i| i < u.start).count();
            let mine: Vec<_> = sel
                .eligible
                .iter()
                .filter(|&&i| (u.start..u.end).contains(&i))
                .filter_map(|&i| all.get(i).cloned())
                .collect();
            output(&searcher.run(&mine, strategy, first)?)
        }
    }
}
