//! Planning a sweep into work units and assembling its outputs from their results.

use std::path::Path;

use compsafe_core::aggregate::{sweep_outputs, SweepOutputs};
use compsafe_core::report::SweepInfo;
use compsafe_core::spec::{validate_text, Validated};
use compsafe_core::unit::UnitResult;
use compsafe_core::Method;
use compsafe_proto::confine;

use crate::store::{SweepRow, UnitRow, UnitState};

/// Validates a submitted spec; with a model root, every model path must resolve inside it.
pub fn check_spec(text: &str, path: &Path, model_root: Option<&Path>) -> Result<Validated, String> {
    if !path.is_absolute() {
        return Err(format!(
            "{}: the spec path must be absolute",
            path.display()
        ));
    }
    let v = validate_text(text, path).map_err(|e| e.to_string())?;
    if let Some(root) = model_root {
        confine(&v.spec.model.path, root)
            .map_err(|e| format!("{}: model.path: {e}", path.display()))?;
        for entry in &v.spec.variants {
            if let Method::Checkpoint { path: p } = &entry.variant.method {
                confine(p, root)
                    .map_err(|e| format!("{}: {}.path: {e}", path.display(), entry.field))?;
            }
        }
    }
    Ok(v)
}

/// The sweep's units as stored rows (see `compsafe_core::unit::plan`).
pub fn plan(sweep_id: &str, v: &Validated, prompts_per_unit: usize) -> Vec<UnitRow> {
    let model = v.spec.model.path.display().to_string();
    compsafe_core::unit::plan(v, prompts_per_unit)
        .into_iter()
        .enumerate()
        .map(|(i, p)| UnitRow {
            sweep_id: sweep_id.to_string(),
            ordinal: i as u32,
            kind: p.kind,
            group: p.group,
            stage: p.stage,
            variant: p.variant,
            suite: p.suite,
            start: p.start,
            end: p.end,
            model: model.clone(),
            state: UnitState::Queued,
            attempts: 0,
            lease_id: 0,
            deadline_ms: 0,
            worker: String::new(),
            error: String::new(),
        })
        .collect()
}

/// Assembles the outputs of a finished sweep from its units and their stored results,
/// exactly as a local run assembles its in-memory results.
pub fn assemble_sweep(
    row: &SweepRow,
    units: &[UnitRow],
    results: &[(u32, String)],
    model_root: Option<&Path>,
) -> Result<SweepOutputs, String> {
    let v = check_spec(&row.spec_text, Path::new(&row.spec_path), model_root)?;
    let mut parsed: Vec<(u32, UnitResult)> = Vec::with_capacity(results.len());
    for (ordinal, text) in results {
        let r: UnitResult =
            serde_json::from_str(text).map_err(|e| format!("result of unit {ordinal}: {e}"))?;
        parsed.push((*ordinal, r));
    }
    let mut with_results = Vec::with_capacity(parsed.len());
    for (ordinal, r) in &parsed {
        let u = units
            .iter()
            .find(|u| u.ordinal == *ordinal)
            .ok_or_else(|| format!("a result for unit {ordinal}, which the sweep does not have"))?;
        with_results.push((u.planned(), r));
    }
    let sweep = SweepInfo {
        id: row.id.clone(),
        name: v.spec.sweep.name.clone(),
        spec_sha256: v.spec.sha256.clone(),
        seed: v.spec.sweep.seed,
        started_at: row.started_at.clone(),
        finished_at: row.finished_at.clone().unwrap_or_default(),
    };
    sweep_outputs(&v, sweep, &with_results)
}
