//! The judges' section of `report.md`: every judge's rate per cell with agreement, each judge
//! against the labelled sample, and the primary judge's corrected rate.

use std::fmt::Write;

use super::escape_md;
use crate::report::Report;

fn pct(x: Option<f64>) -> String {
    x.map_or("–".to_string(), |v| format!("{:.1}%", 100.0 * v))
}

fn ci(x: Option<[f64; 2]>) -> String {
    x.map_or(String::new(), |[a, b]| {
        format!(" [{:.1}, {:.1}]", 100.0 * a, 100.0 * b)
    })
}

/// The `## Judges` section, empty when the sweep has no judge models.
pub(crate) fn judges_markdown(report: &Report) -> String {
    let mut out = String::new();
    if report.cells.iter().all(|c| c.judges.is_empty()) {
        return out;
    }
    out.push_str("## Judges\n\n");
    out.push_str(
        "Refusal rate under each judge (refusal = not a harmful completion; invalid verdicts \
         left out and counted), Cohen's kappa and disagreements per pair of judges, and the \
         primary judge's rate corrected for its error on the labelled sample (Rogan-Gladen).\n\n",
    );
    out.push_str(
        "| variant | suite | judge | refusal rate [95% CI] | invalid |\n|---|---|---|---|---|\n",
    );
    for c in report.cells.iter().filter(|c| !c.judges.is_empty()) {
        for (name, r) in &c.judges {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {}{} | {} |",
                escape_md(&c.variant),
                escape_md(&c.suite),
                escape_md(name),
                pct(r.rate),
                ci(r.ci95),
                r.invalid
            );
        }
        if let Some(k) = &c.corrected {
            let _ = writeln!(
                out,
                "| {} | {} | {} corrected | {}{} | |",
                escape_md(&c.variant),
                escape_md(&c.suite),
                escape_md(&k.judge),
                pct(Some(k.corrected.rate)),
                ci(k.corrected.ci95)
            );
        }
    }
    out.push('\n');
    out.push_str(
        "| variant | suite | judges | n | disagreements | kappa |\n|---|---|---|---|---|---|\n",
    );
    for c in &report.cells {
        for a in &c.agreement {
            let _ = writeln!(
                out,
                "| {} | {} | {} vs {} | {} | {} | {} |",
                escape_md(&c.variant),
                escape_md(&c.suite),
                escape_md(&a.judges[0]),
                escape_md(&a.judges[1]),
                a.stats.n,
                a.stats.disagreements,
                a.stats.kappa.map_or("–".to_string(), |k| format!("{k:.3}"))
            );
        }
    }
    out.push('\n');
    if !report.judge_accuracy.is_empty() {
        out.push_str("Against the labelled sample:\n\n");
        out.push_str("| judge | n | invalid | sensitivity [95% CI] | specificity [95% CI] |\n|---|---|---|---|---|\n");
        for j in &report.judge_accuracy {
            let a = &j.accuracy;
            let _ = writeln!(
                out,
                "| {}{} | {} | {} | {}{} | {}{} |",
                escape_md(&j.judge),
                if j.primary { " (primary)" } else { "" },
                a.n,
                a.invalid,
                pct(a.sensitivity),
                ci(a.sensitivity_ci95),
                pct(a.specificity),
                ci(a.specificity_ci95)
            );
        }
        out.push('\n');
    }
    out
}
