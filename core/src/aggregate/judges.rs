//! Judge models in the report: their verdicts merged into the records, every judge's rate per
//! cell, pairwise agreement, each judge against the labelled sample, the primary judge's
//! corrected rate, and each judge's verdicts on the divergences.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::cells::cell_seed;
use crate::judge::agreement::{accuracy, corrected_rate, pair_agreement};
use crate::judge::ClassifierVerdict;
use crate::report::{CorrectedRate, JudgeAccuracy, JudgePair, JudgeRate, Record, Report};
use crate::spec::{Validated, KEYWORD_JUDGE};
use crate::stats::wilson;

/// What a judge unit returns: one judge model's verdicts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JudgeOutput {
    /// The judge's name.
    pub judge: String,
    /// Verdicts on a suite's responses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verdicts: Vec<JudgedResponse>,
    /// Verdicts on the labelled sample, in its row order (labels units).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<ClassifierVerdict>,
}

/// One judged response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgedResponse {
    /// Variant name.
    pub variant: String,
    /// Suite name.
    pub suite: String,
    /// Prompt id.
    pub prompt_id: String,
    /// The verdict.
    pub verdict: ClassifierVerdict,
}

/// Refusal under a classifier verdict: not a harmful completion; `None` when invalid.
fn refused(v: &ClassifierVerdict) -> Option<bool> {
    v.harmful().map(|h| !h)
}

fn verdict_word(r: Option<bool>) -> String {
    match r {
        Some(true) => "refusal",
        Some(false) => "compliance",
        None => "invalid",
    }
    .to_string()
}

/// Writes the judge units' verdicts into the records (by variant, suite, prompt id) and
/// returns the labelled sample's verdicts per judge.
pub fn merge(
    records: &mut [Record],
    outputs: &[JudgeOutput],
) -> BTreeMap<String, Vec<ClassifierVerdict>> {
    let mut at: BTreeMap<(&str, &str, &str), usize> = BTreeMap::new();
    for (i, r) in records.iter().enumerate() {
        at.insert((&r.variant, &r.suite, &r.prompt_id), i);
    }
    let mut put = Vec::new();
    let mut labels = BTreeMap::new();
    for o in outputs {
        for v in &o.verdicts {
            if let Some(&i) = at.get(&(v.variant.as_str(), v.suite.as_str(), v.prompt_id.as_str()))
            {
                put.push((i, o.judge.clone(), v.verdict.clone()));
            }
        }
        if !o.labels.is_empty() {
            labels.insert(o.judge.clone(), o.labels.clone());
        }
    }
    for (i, judge, v) in put {
        records[i].judges.insert(judge, v);
    }
    labels
}

/// The refusal verdict of every judge on one record, the keyword judge first.
fn verdicts_of(r: &Record, models: &[String]) -> Vec<(String, Option<bool>)> {
    let mut out = vec![(KEYWORD_JUDGE.to_string(), r.refused)];
    for m in models {
        out.push((m.clone(), r.judges.get(m).and_then(refused)));
    }
    out
}

/// Adds the judge statistics to a report assembled from `records` (records already merged).
pub fn annotate(
    report: &mut Report,
    records: &[Record],
    v: &Validated,
    label_verdicts: &BTreeMap<String, Vec<ClassifierVerdict>>,
) {
    let spec = &v.spec;
    let models: Vec<String> = spec.judge.models.iter().map(|m| m.name.clone()).collect();
    if models.is_empty() {
        return;
    }
    let suite_index: BTreeMap<&str, usize> = v
        .suites
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    // Each judge's refusal verdicts on the labelled sample, for suite `si`'s keyword judge.
    let labelled = |judge: &str, si: usize| -> Vec<(Option<bool>, bool)> {
        if judge == KEYWORD_JUDGE {
            let k = spec.refusal_judge(si);
            v.labels
                .iter()
                .map(|l| (Some(k.is_refusal(&l.response)), l.refusal))
                .collect()
        } else {
            match label_verdicts.get(judge) {
                Some(vs) if vs.len() == v.labels.len() => vs
                    .iter()
                    .zip(&v.labels)
                    .map(|(x, l)| (refused(x), l.refusal))
                    .collect(),
                _ => Vec::new(),
            }
        }
    };
    if !v.labels.is_empty() {
        let default_suite = spec.evaluated_suites().next().unwrap_or(0);
        for name in std::iter::once(KEYWORD_JUDGE.to_string()).chain(models.iter().cloned()) {
            let pairs = labelled(&name, default_suite);
            if pairs.is_empty() {
                continue;
            }
            report.judge_accuracy.push(JudgeAccuracy {
                primary: name == spec.judge.primary,
                accuracy: accuracy(&pairs),
                judge: name,
            });
        }
    }
    let mut by_cell: BTreeMap<(&str, &str), Vec<&Record>> = BTreeMap::new();
    for r in records {
        by_cell.entry((&r.variant, &r.suite)).or_default().push(r);
    }
    for cell in &mut report.cells {
        let Some(recs) = by_cell.get(&(cell.variant.as_str(), cell.suite.as_str())) else {
            continue;
        };
        if !recs.iter().any(|r| !r.judges.is_empty()) {
            continue;
        }
        let per: Vec<Vec<(String, Option<bool>)>> =
            recs.iter().map(|r| verdicts_of(r, &models)).collect();
        let names: Vec<String> = per[0].iter().map(|(n, _)| n.clone()).collect();
        let column = |j: usize| -> Vec<Option<bool>> { per.iter().map(|p| p[j].1).collect() };
        for (j, name) in names.iter().enumerate() {
            let col = column(j);
            let valid: Vec<bool> = col.iter().flatten().copied().collect();
            let k = valid.iter().filter(|&&x| x).count() as u64;
            let n = valid.len() as u64;
            cell.judges.insert(
                name.clone(),
                JudgeRate {
                    rate: (n > 0).then(|| k as f64 / n as f64),
                    ci95: wilson(k, n),
                    invalid: (col.len() - valid.len()) as u64,
                },
            );
        }
        for a in 0..names.len() {
            for b in a + 1..names.len() {
                cell.agreement.push(JudgePair {
                    judges: [names[a].clone(), names[b].clone()],
                    stats: pair_agreement(&column(a), &column(b)),
                });
            }
        }
        if !v.labels.is_empty() {
            let si = suite_index.get(cell.suite.as_str()).copied().unwrap_or(0);
            let primary = &spec.judge.primary;
            let lab: Vec<(bool, bool)> = labelled(primary, si)
                .into_iter()
                .filter_map(|(j, l)| Some((j?, l)))
                .collect();
            if let Some(j) = names.iter().position(|n| n == primary) {
                let observed: Vec<bool> = column(j).into_iter().flatten().collect();
                let seed = cell_seed(spec.sweep.seed, &cell.variant, &cell.suite) ^ 0x006a_7564_6765;
                cell.corrected =
                    corrected_rate(&observed, &lab, seed, spec.stats.bootstrap_resamples).map(
                        |corrected| CorrectedRate {
                            judge: primary.clone(),
                            corrected,
                        },
                    );
            }
        }
    }
    // Each judge's verdicts on the divergences.
    let at: BTreeMap<(&str, &str, &str), &Record> = records
        .iter()
        .map(|r| {
            (
                (r.variant.as_str(), r.suite.as_str(), r.prompt_id.as_str()),
                r,
            )
        })
        .collect();
    for d in &mut report.divergences {
        let (Some(var), Some(reference)) = (
            at.get(&(d.variant.as_str(), d.suite.as_str(), d.prompt_id.as_str())),
            at.get(&(
                report.reference.as_str(),
                d.suite.as_str(),
                d.prompt_id.as_str(),
            )),
        ) else {
            continue;
        };
        if var.judges.is_empty() && reference.judges.is_empty() {
            continue;
        }
        for ((name, r), (_, x)) in verdicts_of(reference, &models)
            .into_iter()
            .zip(verdicts_of(var, &models))
        {
            d.verdicts.insert(name, [verdict_word(r), verdict_word(x)]);
        }
    }
}
