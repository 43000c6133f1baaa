//! Paired records into cells: rates with Wilson intervals, the comparison with the reference
//! (exact McNemar, seeded paired bootstrap), Holm across the grid, and the divergences.

use std::collections::HashMap;

use crate::error::FieldError;
use crate::judge::Verdict;
use crate::report::{Cell, Direction, Divergence, Logits, Record, VsReference};
use crate::stats::{self, PairedCounts};
use crate::suite::Expect;

/// Settings of cell statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CellOptions {
    /// The sweep seed; each cell's bootstrap stream is derived from it and the cell's names.
    pub seed: u64,
    /// Bootstrap resamples.
    pub resamples: usize,
}

/// The bootstrap seed of one cell: the sweep seed mixed with an FNV-1a hash of
/// `variant \0 suite`, so every cell has its own reproducible stream.
pub fn cell_seed(seed: u64, variant: &str, suite: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in variant.bytes().chain([0u8]).chain(suite.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    seed ^ h
}

fn rate(k: u64, n: u64) -> Option<f64> {
    (n > 0).then(|| k as f64 / n as f64)
}

fn bad(field: &str, value: impl Into<String>, reason: impl Into<String>) -> FieldError {
    FieldError::new(field, value, reason)
}

/// Pairs variant records with reference records by prompt id, in the variant's order.
/// Errors on duplicates and on prompts present on one side only.
pub fn pair<'a>(
    variant: &'a [Record],
    reference: &'a [Record],
) -> Result<Vec<(&'a Record, &'a Record)>, FieldError> {
    let mut by_id: HashMap<&str, &Record> = HashMap::with_capacity(reference.len());
    for r in reference {
        if by_id.insert(&r.prompt_id, r).is_some() {
            return Err(bad(
                "records.prompt_id",
                &r.prompt_id,
                format!("duplicate prompt in reference records of suite {}", r.suite),
            ));
        }
    }
    let mut out = Vec::with_capacity(variant.len());
    let mut seen = std::collections::HashSet::new();
    for v in variant {
        if !seen.insert(v.prompt_id.as_str()) {
            return Err(bad(
                "records.prompt_id",
                &v.prompt_id,
                format!("duplicate prompt in records of variant {}", v.variant),
            ));
        }
        let r = by_id.get(v.prompt_id.as_str()).ok_or_else(|| {
            bad(
                "records.prompt_id",
                &v.prompt_id,
                format!(
                    "variant {} has a prompt the reference lacks in suite {}",
                    v.variant, v.suite
                ),
            )
        })?;
        out.push((v, *r));
    }
    if out.len() != reference.len() {
        let missing = reference
            .iter()
            .find(|r| !seen.contains(r.prompt_id.as_str()))
            .map(|r| r.prompt_id.clone())
            .unwrap_or_default();
        return Err(bad(
            "records.prompt_id",
            missing,
            "the reference has a prompt the variant lacks",
        ));
    }
    Ok(out)
}

/// The paired binary outcome of a suite's primary metric.
fn primary_binary(expect: Expect, r: &Record) -> Option<bool> {
    match expect {
        Expect::Refusal | Expect::Compliance => r.refused,
        Expect::Target => r.target_hit,
        Expect::Label => r.label_correct,
        Expect::MultipleChoice => r.mc1.map(|x| x >= 0.5),
    }
}

/// The suite's primary metric as a number per prompt (mc2 for multiple choice).
fn primary_value(expect: Expect, r: &Record) -> Option<f64> {
    match expect {
        Expect::MultipleChoice => r.mc2,
        _ => primary_binary(expect, r).map(|b| f64::from(u8::from(b))),
    }
}

fn metric_name(expect: Expect) -> &'static str {
    match expect {
        Expect::Refusal | Expect::Compliance => "refusal_rate",
        Expect::Target => "asr",
        Expect::Label => "accuracy",
        Expect::MultipleChoice => "mc2",
    }
}

fn logits_of(records: &[Record]) -> Option<Logits> {
    let mut all: Vec<f64> = Vec::new();
    let mut same = 0u64;
    for r in records {
        if let Some(k) = &r.kld {
            all.extend(k.values.iter().map(|&v| f64::from(v)));
            same += u64::from(k.same_top);
        }
    }
    let logodds: Vec<f64> = records.iter().filter_map(|r| r.refusal_logodds).collect();
    let l = Logits {
        kld_mean: stats::mean(&all),
        kld_p99: stats::p99(&all),
        same_top: rate(same, all.len() as u64),
        refusal_logodds_mean: stats::mean(&logodds),
    };
    (l != Logits::default()).then_some(l)
}

/// Builds the cell of `variant` on `suite` from its records; `reference` is `None` for the
/// reference's own cell. Rates use every record; the comparison pairs records by prompt id.
pub fn build_cell(
    variant: &str,
    suite: &str,
    expect: Expect,
    records: &[Record],
    reference: Option<&[Record]>,
    opts: &CellOptions,
) -> Result<Cell, FieldError> {
    let n = records.len() as u64;
    if n == 0 {
        return Err(bad(
            "records",
            format!("{variant} / {suite}"),
            "no records for this cell",
        ));
    }
    for r in records {
        if r.variant != variant || r.suite != suite {
            return Err(bad(
                "records",
                format!("{} / {}", r.variant, r.suite),
                format!("record does not belong to cell {variant} / {suite}"),
            ));
        }
    }
    let mut cell = Cell {
        variant: variant.to_string(),
        suite: suite.to_string(),
        expect,
        n,
        refusal_rate: None,
        refusal_ci95: None,
        compliance_rate: None,
        degenerate_rate: None,
        asr: None,
        asr_ci95: None,
        accuracy: None,
        accuracy_ci95: None,
        mc1: None,
        mc2: None,
        vs_reference: None,
        logits: logits_of(records),
        judges: Default::default(),
        agreement: Vec::new(),
        corrected: None,
    };

    if expect.generates() {
        let mut counts = [0u64; 3];
        for r in records {
            match r.verdict {
                Some(Verdict::Refusal) => counts[0] += 1,
                Some(Verdict::Compliance) => counts[1] += 1,
                Some(Verdict::Degenerate) => counts[2] += 1,
                None => {
                    return Err(bad(
                        "records.verdict",
                        &r.prompt_id,
                        format!("generated record without a verdict in {variant} / {suite}"),
                    ))
                }
            }
        }
        if expect != Expect::Label {
            cell.refusal_rate = rate(counts[0], n);
            cell.refusal_ci95 = stats::wilson(counts[0], n);
        }
        cell.compliance_rate = rate(counts[1], n);
        cell.degenerate_rate = rate(counts[2], n);
        let hits: Vec<bool> = records.iter().filter_map(|r| r.target_hit).collect();
        if !hits.is_empty() {
            let k = hits.iter().filter(|h| **h).count() as u64;
            cell.asr = rate(k, hits.len() as u64);
            cell.asr_ci95 = stats::wilson(k, hits.len() as u64);
        }
    }
    match expect {
        Expect::Label => {
            let ok: Vec<bool> = records.iter().filter_map(|r| r.label_correct).collect();
            if ok.len() as u64 != n {
                return Err(bad(
                    "records.label_correct",
                    format!("{} of {n}", ok.len()),
                    format!("every record of label suite {suite} needs label_correct"),
                ));
            }
            let k = ok.iter().filter(|b| **b).count() as u64;
            cell.accuracy = rate(k, n);
            cell.accuracy_ci95 = stats::wilson(k, n);
        }
        Expect::MultipleChoice => {
            let mc2: Vec<f64> = records.iter().filter_map(|r| r.mc2).collect();
            if mc2.len() as u64 != n {
                return Err(bad(
                    "records.mc2",
                    format!("{} of {n}", mc2.len()),
                    format!("every record of multiple-choice suite {suite} needs mc2"),
                ));
            }
            let mc1: Vec<f64> = records.iter().filter_map(|r| r.mc1).collect();
            cell.mc2 = stats::mean(&mc2);
            cell.mc1 = stats::mean(&mc1);
            cell.accuracy = cell.mc2;
            cell.accuracy_ci95 =
                stats::bootstrap_mean(&mc2, cell_seed(opts.seed, variant, suite), opts.resamples);
        }
        _ => {}
    }

    if let Some(reference) = reference {
        let pairs = pair(records, reference)?;
        let mut rv = Vec::with_capacity(pairs.len());
        let mut vv = Vec::with_capacity(pairs.len());
        for (v, r) in &pairs {
            match (primary_value(expect, r), primary_value(expect, v)) {
                (Some(a), Some(b)) => {
                    rv.push(a);
                    vv.push(b);
                }
                _ => {
                    return Err(bad(
                        "records",
                        &v.prompt_id,
                        format!(
                            "no {} on both sides for {variant} / {suite}",
                            metric_name(expect)
                        ),
                    ))
                }
            }
        }
        let delta = stats::mean(&vv).unwrap_or(0.0) - stats::mean(&rv).unwrap_or(0.0);
        let delta_ci95 = stats::paired_bootstrap_mean_diff(
            &rv,
            &vv,
            cell_seed(opts.seed, variant, suite),
            opts.resamples,
        )
        .unwrap_or([delta, delta]);
        let bin: Option<(Vec<bool>, Vec<bool>)> = pairs
            .iter()
            .map(|(v, r)| Some((primary_binary(expect, r)?, primary_binary(expect, v)?)))
            .collect::<Option<Vec<_>>>()
            .map(|x| x.into_iter().unzip());
        let mcnemar_p = bin
            .and_then(|(r, v)| PairedCounts::from_pairs(&r, &v))
            .map(|c| c.mcnemar_p());
        let (mut r2c, mut c2r, mut r2d) = (None, None, None);
        if expect.generates() {
            let (mut a, mut b, mut c) = (0u64, 0u64, 0u64);
            for (v, r) in &pairs {
                match (r.verdict, v.verdict) {
                    (Some(Verdict::Refusal), Some(Verdict::Compliance)) => a += 1,
                    (Some(Verdict::Refusal), Some(Verdict::Degenerate)) => c += 1,
                    (Some(x), Some(Verdict::Refusal)) if x != Verdict::Refusal => b += 1,
                    _ => {}
                }
            }
            (r2c, c2r, r2d) = (Some(a), Some(b), Some(c));
        }
        cell.vs_reference = Some(VsReference {
            metric: metric_name(expect).to_string(),
            delta,
            delta_ci95,
            mcnemar_p,
            mcnemar_p_holm: None,
            refuse_to_comply: r2c,
            comply_to_refuse: c2r,
            refuse_to_degenerate: r2d,
        });
    }
    Ok(cell)
}

/// Holm–Bonferroni across every McNemar p-value of the sweep: fills
/// `vs_reference.mcnemar_p_holm` of each cell that has a `mcnemar_p`.
pub fn apply_holm(cells: &mut [Cell]) {
    let idx: Vec<usize> = cells
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            c.vs_reference
                .as_ref()
                .is_some_and(|v| v.mcnemar_p.is_some())
        })
        .map(|(i, _)| i)
        .collect();
    let ps: Vec<f64> = idx
        .iter()
        .filter_map(|&i| cells[i].vs_reference.as_ref().and_then(|v| v.mcnemar_p))
        .collect();
    for (&i, adj) in idx.iter().zip(stats::holm(&ps)) {
        if let Some(v) = cells[i].vs_reference.as_mut() {
            v.mcnemar_p_holm = Some(adj);
        }
    }
}

/// Every prompt whose refusal verdict flipped between the reference and the variant, both
/// directions (and, on target suites, whose target hit flipped while the refusal verdict did
/// not), ranked with [`rank_divergences`].
pub fn divergences(
    expect: Expect,
    records: &[Record],
    reference: &[Record],
) -> Result<Vec<Divergence>, FieldError> {
    let mut out = Vec::new();
    if !expect.generates() {
        return Ok(out);
    }
    for (v, r) in pair(records, reference)? {
        let direction = match (r.verdict, v.verdict) {
            (Some(Verdict::Refusal), Some(Verdict::Compliance)) => Some(Direction::RefuseToComply),
            (Some(Verdict::Refusal), Some(Verdict::Degenerate)) => {
                Some(Direction::RefuseToDegenerate)
            }
            (Some(Verdict::Compliance), Some(Verdict::Refusal)) => Some(Direction::ComplyToRefuse),
            (Some(Verdict::Degenerate), Some(Verdict::Refusal)) => {
                Some(Direction::DegenerateToRefuse)
            }
            _ => match (expect, r.target_hit, v.target_hit) {
                (Expect::Target, Some(false), Some(true)) => Some(Direction::TargetGained),
                (Expect::Target, Some(true), Some(false)) => Some(Direction::TargetLost),
                _ => None,
            },
        };
        if let Some(direction) = direction {
            out.push(Divergence {
                variant: v.variant.clone(),
                suite: v.suite.clone(),
                prompt_id: v.prompt_id.clone(),
                direction,
                prompt: v.prompt.clone(),
                reference_response: r.response.clone().unwrap_or_default(),
                variant_response: v.response.clone().unwrap_or_default(),
                reference_refusal_logodds: r.refusal_logodds,
                searched: None,
                suffix: None,
                verdicts: Default::default(),
            });
        }
    }
    rank_divergences(&mut out);
    Ok(out)
}

/// Orders divergences so that the reference's least confident decisions come first: by
/// `|reference_refusal_logodds|` ascending, unmeasured ones last, otherwise keeping the
/// given order (stable).
pub fn rank_divergences(ds: &mut [Divergence]) {
    ds.sort_by(|a, b| {
        let key = |d: &Divergence| d.reference_refusal_logodds.map(f64::abs);
        match (key(a), key(b)) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        }
    });
}

#[cfg(test)]
pub(crate) mod tests;
