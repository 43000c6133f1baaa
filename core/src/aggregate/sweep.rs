//! A whole sweep's outputs from its units' results: the report (cells from the evaluate
//! units' records), the records, the analyses' files, and the checks that failed. The
//! coordinator and `compsafe run --direct` both call [`sweep_outputs`], so a sweep gives the
//! same outputs however it ran.

use crate::analysis;
use crate::report::{Record, Report, SweepInfo, VariantInfo};
use crate::spec::Validated;
use crate::unit::{Planned, UnitKind, UnitResult};

use super::judges::{self, JudgeOutput};
use super::{assemble, Inputs};

/// Everything a sweep writes.
#[derive(Debug)]
pub struct SweepOutputs {
    /// report.json.
    pub report: Report,
    /// records.jsonl, in canonical order.
    pub records: Vec<Record>,
    /// The analyses' files, `(name, contents)`.
    pub files: Vec<(String, String)>,
    /// One line per analysis check that failed.
    pub flags: Vec<String>,
}

/// Assembles a finished sweep from every unit with its result, in plan order.
pub fn sweep_outputs(
    v: &Validated,
    sweep: SweepInfo,
    units: &[(Planned, &UnitResult)],
) -> Result<SweepOutputs, String> {
    let spec = &v.spec;
    let model = units
        .iter()
        .find_map(|(_, r)| r.model.clone())
        .ok_or("no unit reported the model's integrity")?;
    let evaluates = units.iter().any(|(p, _)| p.kind == UnitKind::Evaluate);
    let mut variants = Vec::with_capacity(spec.variants.len());
    for e in &spec.variants {
        let name = &e.variant.name;
        let found = units
            .iter()
            .filter(|(p, _)| !evaluates || p.kind == UnitKind::Evaluate)
            .map(|(_, r)| &r.variant)
            .find(|info| &info.name == name);
        variants.push(match found {
            Some(info) => info.clone(),
            None if !evaluates => VariantInfo {
                name: name.clone(),
                kind: e.variant.method.kind().to_string(),
                method: e.variant.method.to_string(),
                bits_per_weight: None,
                bytes: None,
                integrity: model.integrity,
                weight_error: None,
                training: None,
                error: None,
                integrity_failures: Vec::new(),
                calibration: None,
            },
            None => return Err(format!("no result for variant {name}")),
        });
    }
    let mut records = Vec::new();
    let mut judged = Vec::new();
    for (p, r) in units {
        if p.kind == UnitKind::Evaluate {
            records.extend(r.records.iter().cloned());
        }
        if p.kind == UnitKind::Judge {
            if let Some(a) = &r.analysis {
                judged.push(
                    serde_json::from_value::<JudgeOutput>(a.clone())
                        .map_err(|e| format!("judge unit result: {e}"))?,
                );
            }
        }
    }
    let label_verdicts = judges::merge(&mut records, &judged);
    let mut report = assemble(
        Inputs {
            spec,
            suites: &v.suites,
            sweep,
            model,
            variants,
        },
        &records,
    )
    .map_err(|e| e.to_string())?;
    super::canonical_order(
        &Inputs {
            spec,
            suites: &v.suites,
            sweep: report.sweep.clone(),
            model: report.model.clone(),
            variants: report.variants.clone(),
        },
        &mut records,
    )
    .map_err(|e| e.to_string())?;
    judges::annotate(&mut report, &records, v, &label_verdicts);
    let analyses = analysis::outputs(v, units)?;
    report.divergences.extend(analyses.divergences);
    Ok(SweepOutputs {
        report,
        records,
        files: analyses.files,
        flags: analyses.flags,
    })
}
