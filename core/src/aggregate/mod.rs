//! Turning a sweep's per-prompt records into its report: one cell per (variant, suite), the
//! reference's cell included, Holm correction across the whole grid, and the divergences.
//! Pure and order-independent, so a local run and a distributed run give the same report.

pub(crate) mod cells;
pub mod judges;
mod sweep;

use std::collections::BTreeMap;

use crate::error::FieldError;
use crate::report::{ChatInfo, ModelInfo, Record, Report, SweepInfo, VariantInfo, SCHEMA};
use crate::spec::Spec;
use crate::suite::Suite;

pub use cells::{
    apply_holm, build_cell, cell_seed, divergences, pair, rank_divergences, CellOptions,
};
pub use sweep::{sweep_outputs, SweepOutputs};

/// Everything a report is assembled from.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    /// The spec.
    pub spec: &'a Spec,
    /// The suites as loaded, in spec order.
    pub suites: &'a [Suite],
    /// Identity and timing of the sweep.
    pub sweep: SweepInfo,
    /// The model and its file integrity.
    pub model: ModelInfo,
    /// One entry per variant, the reference first.
    pub variants: Vec<VariantInfo>,
}

/// Sorts records into the canonical order: variant in spec order, suite in spec order, prompt in
/// suite order. Records of unknown variants, suites or prompts are an error.
pub fn canonical_order(inputs: &Inputs<'_>, records: &mut [Record]) -> Result<(), FieldError> {
    let v_rank: BTreeMap<&str, usize> = inputs
        .variants
        .iter()
        .enumerate()
        .map(|(i, v)| (v.name.as_str(), i))
        .collect();
    let s_rank: BTreeMap<&str, usize> = inputs
        .suites
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let p_rank: BTreeMap<(&str, &str), usize> = inputs
        .suites
        .iter()
        .flat_map(|s| {
            s.prompts
                .iter()
                .enumerate()
                .map(move |(i, p)| ((s.name.as_str(), p.id.as_str()), i))
        })
        .collect();
    let mut keys = Vec::with_capacity(records.len());
    for r in records.iter() {
        let v = v_rank.get(r.variant.as_str()).ok_or_else(|| {
            FieldError::new("records.variant", &r.variant, "not a variant of this sweep")
        })?;
        let s = s_rank.get(r.suite.as_str()).ok_or_else(|| {
            FieldError::new("records.suite", &r.suite, "not a suite of this sweep")
        })?;
        let p = p_rank
            .get(&(r.suite.as_str(), r.prompt_id.as_str()))
            .ok_or_else(|| {
                FieldError::new(
                    "records.prompt_id",
                    &r.prompt_id,
                    format!("not a prompt of suite {}", r.suite),
                )
            })?;
        keys.push((*v, *s, *p));
    }
    let mut idx: Vec<usize> = (0..records.len()).collect();
    idx.sort_by_key(|&i| keys[i]);
    let sorted: Vec<Record> = idx.iter().map(|&i| records[i].clone()).collect();
    records.clone_from_slice(&sorted);
    Ok(())
}

/// Assembles the report from all records of the sweep (any order).
pub fn assemble(inputs: Inputs<'_>, records: &[Record]) -> Result<Report, FieldError> {
    let mut records = records.to_vec();
    canonical_order(&inputs, &mut records)?;
    let reference = inputs.spec.reference.clone();
    let mut by_cell: BTreeMap<(&str, &str), Vec<Record>> = BTreeMap::new();
    for r in &records {
        by_cell
            .entry((r.variant.as_str(), r.suite.as_str()))
            .or_default()
            .push(r.clone());
    }
    let opts_for = |_: &str, _: &str| CellOptions {
        seed: inputs.spec.sweep.seed,
        resamples: inputs.spec.stats.bootstrap_resamples,
    };
    let mut cells = Vec::new();
    let mut divs = Vec::new();
    for suite in inputs.suites {
        let empty = Vec::new();
        let ref_recs = by_cell
            .get(&(reference.as_str(), suite.name.as_str()))
            .unwrap_or(&empty);
        for v in &inputs.variants {
            let recs = match by_cell.get(&(v.name.as_str(), suite.name.as_str())) {
                Some(r) => r,
                None => continue,
            };
            let is_ref = v.name == reference;
            let cell = build_cell(
                &v.name,
                &suite.name,
                suite.expect,
                recs,
                if is_ref {
                    None
                } else {
                    Some(ref_recs.as_slice())
                },
                &opts_for(&v.name, &suite.name),
            )?;
            cells.push(cell);
            if !is_ref {
                divs.extend(divergences(suite.expect, recs, ref_recs)?);
            }
        }
    }
    apply_holm(&mut cells);
    rank_divergences(&mut divs);
    let chat = inputs
        .spec
        .chat
        .date_for(&inputs.sweep.started_at)
        .map(|date| ChatInfo { date });
    Ok(Report {
        schema: SCHEMA.to_string(),
        compsafe_version: env!("CARGO_PKG_VERSION").to_string(),
        chat,
        sweep: inputs.sweep,
        model: inputs.model,
        reference,
        variants: inputs.variants,
        cells,
        divergences: divs,
        judge_accuracy: Vec::new(),
    })
}
