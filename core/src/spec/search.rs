//! `[search]`: the targeted search of named variants on a harmful suite.

use super::raw::RawSearch;
use super::types::{SearchSection, SuiteEntry, VariantEntry};
use crate::error::FieldError;
use crate::suite::Expect;

pub(super) fn parse_search(
    rs: &RawSearch,
    variants: &[VariantEntry],
    suites: &mut Vec<SuiteEntry>,
    sweep_seed: u64,
) -> Result<SearchSection, FieldError> {
    if rs.variants.is_empty() {
        return Err(FieldError::new(
            "search.variants",
            "[]",
            "name at least one of the sweep's variants to search",
        ));
    }
    for (i, name) in rs.variants.iter().enumerate() {
        let field = format!("search.variants[{i}]");
        match variants.iter().position(|v| &v.variant.name == name) {
            Some(0) => return Err(FieldError::new(
                field,
                name,
                "the reference is what variants are searched against; name a compressed variant",
            )),
            Some(_) => {}
            None => {
                let known: Vec<&str> = variants[1..]
                    .iter()
                    .map(|v| v.variant.name.as_str())
                    .collect();
                return Err(FieldError::new(
                    field,
                    name,
                    format!(
                        "not a variant of this sweep (variants: {})",
                        known.join(", ")
                    ),
                ));
            }
        }
    }
    let positive = |field: &str, v: Option<usize>, default: usize| match v {
        Some(0) => Err(FieldError::new(field, "0", "must be at least 1")),
        Some(n) => Ok(n),
        None => Ok(default),
    };
    let limit = positive("search.limit", rs.limit, 20)?;
    let suite_index = super::analysis::suite_ref(suites, &rs.suite, limit, "search.suite")?;
    let s = &suites[suite_index];
    if s.source.expect != Expect::Refusal {
        return Err(FieldError::new(
            "search.suite",
            &rs.suite,
            format!(
                "the search needs harmful prompts (expect = refusal); this suite expects {}",
                s.source.expect
            ),
        ));
    }
    let margin = rs.margin.unwrap_or(1.0);
    if !margin.is_finite() {
        return Err(FieldError::new(
            "search.margin",
            margin.to_string(),
            "must be a finite number of nats",
        ));
    }
    Ok(SearchSection {
        variants: rs.variants.clone(),
        suite: rs.suite.clone(),
        suite_index,
        slice: positive("search.slice", rs.slice, 10)?,
        limit,
        budget: positive("search.budget", rs.budget, 64)?,
        suffix_len: positive("search.suffix_len", rs.suffix_len, 4)?,
        candidates: positive("search.candidates", rs.candidates, 8)?,
        seed: rs.seed.unwrap_or(sweep_seed),
        margin,
    })
}
