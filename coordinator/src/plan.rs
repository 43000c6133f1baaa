//! Planning a sweep into work units and assembling the report from their results.

use std::path::Path;

use compsafe_core::aggregate::{assemble, Inputs};
use compsafe_core::report::{Record, SweepInfo};
use compsafe_core::spec::{validate_text, Validated};
use compsafe_core::{Method, Report};
use compsafe_proto::{confine, UnitResult};

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

/// Splits a sweep into units of (variant, suite, prompt range), the reference's first.
/// Reference units always cover a whole suite (variants are compared with the reference's
/// suite-wide outputs); variant units cover at most `prompts_per_unit` prompts (0: a whole
/// suite, which also keeps generation batches as in a local run).
pub fn plan(sweep_id: &str, v: &Validated, prompts_per_unit: usize) -> Vec<UnitRow> {
    let model = v.spec.model.path.display().to_string();
    let mut units = Vec::new();
    for vi in 0..v.spec.variants.len() {
        for (si, suite) in v.suites.iter().enumerate() {
            let n = suite.prompts.len();
            let step = if vi == 0 || prompts_per_unit == 0 {
                n.max(1)
            } else {
                prompts_per_unit
            };
            let mut start = 0;
            while start < n {
                let end = (start + step).min(n);
                units.push(UnitRow {
                    sweep_id: sweep_id.to_string(),
                    ordinal: units.len() as u32,
                    variant: vi as u32,
                    suite: si as u32,
                    start: start as u32,
                    end: end as u32,
                    model: model.clone(),
                    state: UnitState::Queued,
                    attempts: 0,
                    lease_id: 0,
                    deadline_ms: 0,
                    worker: String::new(),
                    error: String::new(),
                });
                start = end;
            }
        }
    }
    units
}

/// Assembles the report of a finished sweep from its stored unit results, exactly as a
/// local run assembles its in-memory records.
pub fn assemble_sweep(
    row: &SweepRow,
    results: &[(u32, String)],
    model_root: Option<&Path>,
) -> Result<(Report, Vec<Record>), String> {
    let v = check_spec(&row.spec_text, Path::new(&row.spec_path), model_root)?;
    let mut model = None;
    let mut variants = vec![None; v.spec.variants.len()];
    let mut records = Vec::new();
    for (ordinal, text) in results {
        let r: UnitResult =
            serde_json::from_str(text).map_err(|e| format!("result of unit {ordinal}: {e}"))?;
        if model.is_none() {
            model = r.model.clone();
        }
        if let Some(slot) = v
            .spec
            .variants
            .iter()
            .position(|e| e.variant.name == r.variant.name)
        {
            if variants[slot].is_none() {
                variants[slot] = Some(r.variant.clone());
            }
        }
        records.extend(r.records);
    }
    let model = model.ok_or("no unit reported the model's integrity")?;
    let variants = variants
        .into_iter()
        .zip(&v.spec.variants)
        .map(|(info, e)| info.ok_or_else(|| format!("no result for variant {}", e.variant.name)))
        .collect::<Result<Vec<_>, _>>()?;
    let sweep = SweepInfo {
        id: row.id.clone(),
        name: v.spec.sweep.name.clone(),
        spec_sha256: v.spec.sha256.clone(),
        seed: v.spec.sweep.seed,
        started_at: row.started_at.clone(),
        finished_at: row.finished_at.clone().unwrap_or_default(),
    };
    let report = assemble(
        Inputs {
            spec: &v.spec,
            suites: &v.suites,
            sweep,
            model,
            variants,
        },
        &records,
    )
    .map_err(|e| e.to_string())?;
    Ok((report, records))
}

/// Current unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// RFC 3339 UTC time of unix milliseconds `ms`, to the second.
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A sweep id: the spec's hash prefix and the submission time.
pub fn sweep_id(spec_sha: &str, now_ms: u64, salt: u64) -> String {
    format!(
        "{}-{:x}",
        &spec_sha[..12.min(spec_sha.len())],
        (now_ms << 8 | (salt & 0xff)) & 0xffff_ffff_ffff
    )
}
