//! The analyses a sweep runs as work units (`[analysis.*]`, `[search]`): the data their units
//! exchange, how their results are combined, and the files they write. The measuring itself
//! is done by `compsafe-eval` on a worker.

pub mod conditioned;
pub mod heads;
pub mod search;
pub mod sensitivity;

use crate::spec::Validated;
use crate::unit::{Planned, UnitKind, UnitResult};

/// What a sweep's analyses produce: their files, the report divergences the search confirmed,
/// and the checks that failed (a unit that breaks safety alone, a flagged compressor).
#[derive(Debug, Default)]
pub struct AnalysisOutputs {
    /// `(file name, contents)`, e.g. `("heads.json", ...)`.
    pub files: Vec<(String, String)>,
    /// Searched divergences, added to the report's.
    pub divergences: Vec<crate::report::Divergence>,
    /// One line per failed check.
    pub flags: Vec<String>,
}

/// The analysis results of `kind` and `group`, stage by stage, in plan order; `None` when a
/// unit has no analysis result (its model failed its integrity check).
fn stages<'a>(
    units: &[(Planned, &'a UnitResult)],
    kind: UnitKind,
    group: u32,
) -> Option<Vec<Vec<&'a serde_json::Value>>> {
    let mut out: Vec<Vec<&serde_json::Value>> = Vec::new();
    for (p, r) in units
        .iter()
        .filter(|(p, _)| p.kind == kind && p.group == group)
    {
        let stage = p.stage as usize;
        if out.len() <= stage {
            out.resize_with(stage + 1, Vec::new);
        }
        out[stage].push(r.analysis.as_ref()?);
    }
    (!out.is_empty()).then_some(out)
}

fn decode<T: serde::de::DeserializeOwned>(v: &serde_json::Value, what: &str) -> Result<T, String> {
    serde_json::from_value(v.clone()).map_err(|e| format!("{what}: {e}"))
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// Combines the analysis units' results of a sweep (every unit with its result, in plan
/// order) into the files the analyses write.
pub fn outputs(v: &Validated, units: &[(Planned, &UnitResult)]) -> Result<AnalysisOutputs, String> {
    let spec = &v.spec;
    let model = spec.model.path.display().to_string();
    let name = |i: usize| spec.suites[i].source.name.as_str();
    let mut out = AnalysisOutputs::default();
    let mut file = |n: &str, text: String| out_file(&mut out.files, n, text);
    if let (Some(h), Some(st)) = (&spec.analysis.heads, stages(units, UnitKind::Heads, 0)) {
        let b: heads::HeadsBaseline = decode(st[0][0], "heads baseline")?;
        let mut items = Vec::new();
        for p in st.get(1).into_iter().flatten() {
            items.extend(decode::<Vec<heads::ScanItem>>(p, "heads scan")?);
        }
        let ranked = heads::rank(&b, &items)?;
        let confirm: Option<heads::HeadsConfirm> = match st.get(2).and_then(|s| s.first()) {
            Some(c) => Some(decode(c, "heads confirmation")?),
            None => None,
        };
        let f = heads::files(
            &model,
            h.unit,
            (name(h.suite), name(h.benign)),
            &b,
            ranked,
            confirm.as_ref(),
        );
        file("heads.json", pretty(&f.json));
        file("heads.md", f.markdown);
        file("heads.html", f.html);
    }
    if let (Some(s), Some(st)) = (
        &spec.analysis.sensitivity,
        stages(units, UnitKind::Sensitivity, 0),
    ) {
        let b: sensitivity::SensitivityBaseline = decode(st[0][0], "sensitivity baseline")?;
        let mut rows = Vec::new();
        for p in st.get(1).into_iter().flatten() {
            rows.extend(decode::<Vec<sensitivity::Row>>(p, "sensitivity scan")?);
        }
        let f = sensitivity::files(
            &model,
            &s.variant.name,
            s.unit,
            (name(s.suite), name(s.benign)),
            s.alpha,
            &b,
            rows,
        );
        file("sensitivity.json", pretty(&f.json));
        file("sensitivity.md", f.markdown);
        for u in f.flagged {
            out.flags.push(format!(
                "sensitivity: compressing {u} alone with {} lowers refusal significantly",
                s.variant.name
            ));
        }
    }
    if let (Some(c), Some(st)) = (
        &spec.analysis.conditioned,
        stages(units, UnitKind::Conditioned, 0),
    ) {
        let b: conditioned::ConditionedBaseline = decode(st[0][0], "conditioned baseline")?;
        let variants: Vec<conditioned::ConditionedVariant> = st
            .get(1)
            .into_iter()
            .flatten()
            .map(|p| decode(p, "conditioned compressor"))
            .collect::<Result<_, _>>()?;
        let seconds: f64 = units
            .iter()
            .filter(|(p, _)| p.kind == UnitKind::Conditioned)
            .filter_map(|(_, r)| r.analysis.as_ref()?.get("seconds")?.as_f64())
            .sum();
        let f = conditioned::files(
            &model,
            c,
            (name(c.suite), name(c.benign), c.target_suite.map(name)),
            &b,
            &variants,
            seconds,
        );
        file("conditioned.json", pretty(&f.json));
        file("conditioned.md", f.markdown);
        if f.flagged > 0 {
            out.flags.push(format!(
                "conditioned: {} (compressor x metric) cell(s) flagged",
                f.flagged
            ));
        }
    }
    if let Some(s) = &spec.search {
        let mut json = Vec::new();
        let mut md = String::new();
        for (g, variant) in s.variants.iter().enumerate() {
            let Some(st) = stages(units, UnitKind::Search, g as u32) else {
                continue;
            };
            let sel: search::Selection = decode(st[0][0], "search selection")?;
            let parts = st
                .get(1)
                .into_iter()
                .flatten()
                .map(|p| decode(p, "search part"))
                .collect::<Result<Vec<_>, _>>()?;
            let n = s.limit.min(v.suites[s.suite_index].prompts.len());
            let r = search::combine(
                crate::analysis::search::SearchConfig {
                    budget: s.budget,
                    suffix_len: s.suffix_len,
                    candidates: s.candidates,
                    seed: s.seed,
                    margin: s.margin,
                },
                n,
                &sel,
                parts,
            );
            let seconds = r.selection_seconds + r.greedy.seconds + r.random.seconds;
            md.push_str(&search::markdown(&model, variant, &s.suite, seconds, &r));
            out.divergences
                .extend(search::divergences(&r.greedy, variant, &s.suite));
            json.push(serde_json::json!({"variant": variant, "suite": s.suite, "search": r}));
        }
        file(
            "search.json",
            format!("{}\n", pretty(&serde_json::Value::Array(json))),
        );
        file("search.md", md);
    }
    Ok(out)
}

fn out_file(files: &mut Vec<(String, String)>, name: &str, text: String) {
    files.push((name.to_string(), text));
}
