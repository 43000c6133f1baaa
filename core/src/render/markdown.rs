//! `report.md`.

use std::fmt::Write;

use super::{
    escape_md, expect_text, findings, suite_table, suites, training_table, truncate, variants,
    variants_table, Table, MARKDOWN_DIVERGENCES_PER_CELL, MARKDOWN_TEXT_CHARS,
};
use crate::gate;
use crate::report::{Direction, Report};

fn table(out: &mut String, t: &Table) {
    let row = |cells: &[String]| {
        let escaped: Vec<String> = cells.iter().map(|c| escape_md(c)).collect();
        format!("| {} |\n", escaped.join(" | "))
    };
    out.push_str(&row(&t.headers));
    out.push_str(&format!("|{}\n", "---|".repeat(t.headers.len())));
    for r in &t.rows {
        out.push_str(&row(r));
    }
    out.push('\n');
}

/// The words for a divergence direction.
pub(crate) fn direction_text(d: Direction) -> &'static str {
    match d {
        Direction::RefuseToComply => "refuse → comply",
        Direction::RefuseToDegenerate => "refuse → degenerate",
        Direction::ComplyToRefuse => "comply → refuse",
        Direction::DegenerateToRefuse => "degenerate → refuse",
        Direction::TargetGained => "target gained",
        Direction::TargetLost => "target lost",
    }
}

/// Renders `report.md`: header, findings, variants, one table per suite and the first
/// [`MARKDOWN_DIVERGENCES_PER_CELL`] divergences of each (variant, suite) with both
/// responses cut to [`MARKDOWN_TEXT_CHARS`] characters.
pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let e = |s: &str| escape_md(s);
    let sw = &report.sweep;
    let _ = writeln!(out, "# compsafe report: {}\n", e(&sw.name));
    let _ = writeln!(
        out,
        "- Sweep: {}, id {}, seed {}",
        e(&sw.name),
        e(&sw.id),
        sw.seed
    );
    let _ = writeln!(out, "- Spec sha256: {}", e(&sw.spec_sha256));
    let _ = writeln!(
        out,
        "- Run: started {}, finished {}",
        e(&sw.started_at),
        e(&sw.finished_at)
    );
    let integrity = format!("{:?}", report.model.integrity).to_lowercase();
    let _ = writeln!(
        out,
        "- Model: {}, integrity **{}** ({} file{})",
        e(&report.model.path),
        integrity,
        report.model.files.len(),
        if report.model.files.len() == 1 {
            ""
        } else {
            "s"
        }
    );
    for f in &report.model.integrity_failures {
        let _ = writeln!(out, "  - {}", e(f));
    }
    let _ = writeln!(out, "- Reference: {}", e(&report.reference));
    let _ = writeln!(out, "- compsafe {}\n", e(&report.compsafe_version));

    // Findings.
    out.push_str("## Findings\n\n");
    let found = findings(report);
    let safety: Vec<_> = found
        .iter()
        .filter(|f| f.harm.kind.is_safety_loss())
        .collect();
    let over: Vec<_> = found
        .iter()
        .filter(|f| !f.harm.kind.is_safety_loss())
        .collect();
    let rule = format!(
        "McNemar p (Holm-adjusted across the sweep) below {} and the delta's 95% interval \
         excluding 0",
        gate::DEFAULT_ALPHA
    );
    if report.cells.is_empty() {
        out.push_str("The report has no cells.\n\n");
    } else if safety.is_empty() {
        let _ = writeln!(
            out,
            "No variant lost refusals or gained attack success significantly ({}).\n",
            e(&rule)
        );
    } else {
        let _ = writeln!(
            out,
            "Significant safety losses against {} ({}). Unsafe compliance and collapse are \
             counted separately:\n",
            e(&report.reference),
            e(&rule)
        );
        for f in &safety {
            let _ = writeln!(out, "- {}", e(&f.describe(report)));
        }
        out.push('\n');
    }
    if !over.is_empty() {
        out.push_str("Significant over-refusal increases:\n\n");
        for f in &over {
            let _ = writeln!(out, "- {}", e(&f.describe(report)));
        }
        out.push('\n');
    }

    // Variants.
    out.push_str("## Variants\n\n");
    if report.variants.is_empty() {
        out.push_str("No variants listed.\n\n");
    } else {
        table(&mut out, &variants_table(report));
    }
    if let Some(t) = training_table(report) {
        out.push_str("### Distilled students\n\n");
        table(&mut out, &t);
        for v in &report.variants {
            if let Some(tr) = &v.training {
                let curve: Vec<String> = tr
                    .curve
                    .iter()
                    .map(|p| format!("{}: {:.3}", p.step, p.loss))
                    .collect();
                let _ = writeln!(
                    out,
                    "Loss curve of {} (step: mean loss): {}\n",
                    e(&v.name),
                    curve.join(", ")
                );
            }
        }
    }
    let failed: Vec<_> = report.variants.iter().filter(|v| v.failed()).collect();
    if !failed.is_empty() {
        out.push_str("Variants that failed and were not evaluated:\n\n");
        for v in failed {
            let _ = writeln!(
                out,
                "- **{}**: {}",
                e(&v.name),
                e(v.error.as_deref().unwrap_or_default())
            );
            for f in &v.integrity_failures {
                let _ = writeln!(out, "  - {}", e(f));
            }
        }
        out.push('\n');
    }

    // Suites.
    out.push_str("## Suites\n\n");
    let all_suites = suites(report);
    if all_suites.is_empty() {
        out.push_str("No suites.\n\n");
    }
    for (suite, expect) in &all_suites {
        let _ = writeln!(
            out,
            "### {} ({}: {})\n",
            e(suite),
            expect,
            expect_text(*expect)
        );
        table(&mut out, &suite_table(report, suite));
    }

    out.push_str(&super::judges::judges_markdown(report));

    // Divergences.
    out.push_str("## Divergences\n\n");
    if report.divergences.is_empty() {
        out.push_str("No prompt flipped against the reference.\n");
        return out;
    }
    let _ = writeln!(
        out,
        "Prompts whose behaviour flipped against the reference, the reference's least \
         confident refusals first; the first {MARKDOWN_DIVERGENCES_PER_CELL} per variant and \
         suite, texts cut to {MARKDOWN_TEXT_CHARS} characters. report.json has them all.\n"
    );
    for v in variants(report) {
        for (suite, _) in &all_suites {
            let ds: Vec<_> = report
                .divergences
                .iter()
                .filter(|d| d.variant == v && d.suite == *suite && d.searched != Some(true))
                .collect();
            if ds.is_empty() {
                continue;
            }
            let shown = ds.len().min(MARKDOWN_DIVERGENCES_PER_CELL);
            let _ = writeln!(
                out,
                "### {} / {}: {} prompt{} (showing {shown})\n",
                e(v),
                e(suite),
                ds.len(),
                if ds.len() == 1 { "" } else { "s" }
            );
            let t = Table {
                headers: ["prompt id", "direction", "prompt", "reference", "variant"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                rows: ds
                    .iter()
                    .take(shown)
                    .map(|d| {
                        vec![
                            d.prompt_id.clone(),
                            direction_text(d.direction).to_string(),
                            truncate(&d.prompt, MARKDOWN_TEXT_CHARS),
                            truncate(&d.reference_response, MARKDOWN_TEXT_CHARS),
                            truncate(&d.variant_response, MARKDOWN_TEXT_CHARS),
                        ]
                    })
                    .collect(),
            };
            table(&mut out, &t);
        }
    }
    let searched: Vec<_> = report
        .divergences
        .iter()
        .filter(|d| d.searched == Some(true))
        .collect();
    if !searched.is_empty() {
        let _ = writeln!(
            out,
            "### Searched prompts: {} (suite prompts with a suffix found by the targeted \
             search, reference refusing and variant complying)\n",
            searched.len()
        );
        let t = Table {
            headers: [
                "variant",
                "prompt id",
                "prompt",
                "suffix",
                "reference",
                "variant",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            rows: searched
                .iter()
                .map(|d| {
                    vec![
                        d.variant.clone(),
                        d.prompt_id.clone(),
                        truncate(&d.prompt, MARKDOWN_TEXT_CHARS),
                        d.suffix.clone().unwrap_or_default(),
                        truncate(&d.reference_response, MARKDOWN_TEXT_CHARS),
                        truncate(&d.variant_response, MARKDOWN_TEXT_CHARS),
                    ]
                })
                .collect(),
        };
        table(&mut out, &t);
    }
    // Divergences of variants/suites without a cell (should not happen) are still counted.
    let listed: usize = report
        .divergences
        .iter()
        .filter(|d| all_suites.iter().any(|(s, _)| *s == d.suite))
        .filter(|d| variants(report).contains(&d.variant.as_str()))
        .count();
    if listed < report.divergences.len() {
        let _ = writeln!(
            out,
            "{} divergence(s) belong to no cell of this report and are only in report.json.\n",
            report.divergences.len() - listed
        );
    }
    out
}
