//! Human-readable renderings of a [`Report`]: `report.md` ([`markdown`]), the
//! self-contained `report.html` with inline SVG plots ([`html`]) and `junit.xml` ([`junit`]).
//!
//! All three are pure functions of the report (and, for JUnit, the gate outcome) and share
//! the table builders, number formats and findings defined here, so the Markdown and HTML
//! show the same numbers. A metric that is absent from a cell is shown as `—` and never
//! plotted; it is not 0.

mod findings;
mod html;
mod judges;
mod junit;
mod markdown;
mod svg;

pub use findings::{findings, Finding, LossMode};
pub use html::html;
pub use junit::junit;
pub use markdown::markdown;

use crate::gate::{self, Harm, HarmKind};
use crate::report::{Cell, Report, VariantInfo};
use crate::suite::Expect;

/// Divergences shown per (variant, suite) in report.md.
pub const MARKDOWN_DIVERGENCES_PER_CELL: usize = 5;
/// Divergences shown per (variant, suite) in report.html.
pub const HTML_DIVERGENCES_PER_CELL: usize = 20;
/// Characters of a prompt or response kept in report.md's divergence tables.
pub const MARKDOWN_TEXT_CHARS: usize = 200;
/// Characters of a prompt or response kept in report.html's divergence table.
pub const HTML_TEXT_CHARS: usize = 2000;

/// Shown where a metric is absent.
pub(crate) const ABSENT: &str = "—";

// ---------------------------------------------------------------------------------------
// Escaping and formatting.
// ---------------------------------------------------------------------------------------

/// Whether XML 1.0 allows `c` in character data at all (escaped or not).
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r')
        || ((c as u32) >= 0x20 && c != '\u{fffe}' && c != '\u{ffff}' && c != '\u{7f}')
}

/// Escapes text for XML / HTML character data and attribute values. Characters XML cannot
/// carry (control characters) become U+FFFD.
pub(crate) fn escape_xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if xml_char(c) => out.push(c),
            _ => out.push('\u{fffd}'),
        }
    }
    out
}

/// Escapes text for a Markdown table cell: Markdown punctuation is backslash-escaped, HTML
/// is neutralised, and line breaks become `<br>` so the row stays on one line.
pub(crate) fn escape_md(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '~' | '#' | '!' => {
                out.push('\\');
                out.push(c);
            }
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => {
                if chars.peek() != Some(&'\n') {
                    out.push_str("<br>");
                }
            }
            '\n' => out.push_str("<br>"),
            '\t' => out.push(' '),
            c if xml_char(c) => out.push(c),
            _ => out.push('\u{fffd}'),
        }
    }
    out
}

/// At most `max` characters of `s`, with `…` when cut.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

fn finite(x: Option<f64>) -> Option<f64> {
    x.filter(|v| v.is_finite())
}

/// A rate with three decimals.
pub(crate) fn fmt_rate(x: Option<f64>) -> String {
    finite(x).map_or_else(|| ABSENT.to_string(), |v| format!("{v:.3}"))
}

/// An interval `[lo, hi]` with three decimals.
pub(crate) fn fmt_ci(ci: Option<[f64; 2]>) -> String {
    match ci {
        Some([lo, hi]) if lo.is_finite() && hi.is_finite() => format!("[{lo:.3}, {hi:.3}]"),
        _ => ABSENT.to_string(),
    }
}

/// A rate followed by its interval.
pub(crate) fn fmt_rate_ci(x: Option<f64>, ci: Option<[f64; 2]>) -> Option<String> {
    let v = finite(x)?;
    Some(match ci {
        Some(_) => format!("{v:.3} {}", fmt_ci(ci)),
        None => format!("{v:.3}"),
    })
}

/// A signed difference with three decimals.
pub(crate) fn fmt_delta(x: f64) -> String {
    if x.is_finite() {
        format!("{x:+.3}")
    } else {
        ABSENT.to_string()
    }
}

/// A p-value: four decimals, or scientific notation below 0.001.
pub(crate) fn fmt_p(p: f64) -> String {
    if !p.is_finite() {
        ABSENT.to_string()
    } else if p >= 0.001 {
        format!("{p:.4}")
    } else {
        format!("{p:.1e}")
    }
}

/// A relative weight error: four decimals, or scientific notation below 0.001.
pub(crate) fn fmt_err(x: f64) -> String {
    if !x.is_finite() {
        ABSENT.to_string()
    } else if x == 0.0 || x >= 0.001 {
        format!("{x:.4}")
    } else {
        format!("{x:.2e}")
    }
}

/// A byte count in binary units.
pub(crate) fn fmt_bytes(b: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if b < 1024 {
        return format!("{b} B");
    }
    let mut v = b as f64;
    let mut unit = "B";
    for u in UNITS {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.2} {unit}")
}

// ---------------------------------------------------------------------------------------
// Report structure.
// ---------------------------------------------------------------------------------------

/// Suites in order of first appearance, with what they expect.
pub(crate) fn suites(report: &Report) -> Vec<(&str, Expect)> {
    let mut out: Vec<(&str, Expect)> = Vec::new();
    for c in &report.cells {
        if !out.iter().any(|(s, _)| *s == c.suite) {
            out.push((&c.suite, c.expect));
        }
    }
    out
}

/// Variant names: the reference first, then the report's variant list, then variants that
/// only appear in cells.
pub(crate) fn variants(report: &Report) -> Vec<&str> {
    let mut out: Vec<&str> = vec![report.reference.as_str()];
    let named = report.variants.iter().map(|v| v.name.as_str());
    let in_cells = report.cells.iter().map(|c| c.variant.as_str());
    for v in named.chain(in_cells) {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    if !report.cells.iter().any(|c| c.variant == report.reference)
        && !report.variants.iter().any(|v| v.name == report.reference)
    {
        out.remove(0);
    }
    out
}

/// The variant's entry in `variants[]`.
pub(crate) fn variant_info<'a>(report: &'a Report, name: &str) -> Option<&'a VariantInfo> {
    report.variants.iter().find(|v| v.name == name)
}

/// The cell of `variant` on `suite`.
pub(crate) fn cell<'a>(report: &'a Report, variant: &str, suite: &str) -> Option<&'a Cell> {
    report
        .cells
        .iter()
        .find(|c| c.variant == variant && c.suite == suite)
}

/// Cells of one suite, in variant order.
pub(crate) fn suite_cells<'a>(report: &'a Report, suite: &str) -> Vec<&'a Cell> {
    variants(report)
        .into_iter()
        .filter_map(|v| cell(report, v, suite))
        .collect()
}

/// Where a variant sits on the bits-per-weight axis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Bits {
    /// Reported bits per weight.
    Reported(f64),
    /// Derived from the variant's bytes and the reference's parameter count
    /// (`bytes * 8 / (reference bytes * 8 / reference bits)`): bits per reference weight.
    FromBytes(f64),
    /// Neither is known.
    Unknown,
}

impl Bits {
    /// The axis position, if any.
    pub(crate) fn value(self) -> Option<f64> {
        match self {
            Bits::Reported(x) | Bits::FromBytes(x) => Some(x),
            Bits::Unknown => None,
        }
    }
}

/// The position of `variant` on the bits-per-weight axis.
pub(crate) fn bits_of(report: &Report, variant: &str) -> Bits {
    let info = variant_info(report, variant);
    if let Some(b) = info
        .and_then(|v| v.bits_per_weight)
        .filter(|b| *b > 0.0 && b.is_finite())
    {
        return Bits::Reported(b);
    }
    let reference_params = variant_info(report, &report.reference).and_then(|r| {
        let (bits, bytes) = (r.bits_per_weight?, r.bytes?);
        (bits > 0.0 && bytes > 0).then(|| bytes as f64 * 8.0 / bits)
    });
    match (info.and_then(|v| v.bytes), reference_params) {
        (Some(bytes), Some(params)) if bytes > 0 && params.is_finite() => {
            Bits::FromBytes(bytes as f64 * 8.0 / params)
        }
        _ => Bits::Unknown,
    }
}

// ---------------------------------------------------------------------------------------
// Tables.
// ---------------------------------------------------------------------------------------

/// A table of plain-text cells; each renderer escapes for its format.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Table {
    pub(crate) headers: Vec<String>,
    pub(crate) rows: Vec<Vec<String>>,
}

/// The distilled students: one row per distill variant with its shape, data and the first
/// and last points of its loss curve.
pub(crate) fn training_table(report: &Report) -> Option<Table> {
    let headers = [
        "variant",
        "layers",
        "MLP width",
        "parameters",
        "transfer prompts",
        "of which safety",
        "steps",
        "loss (first window)",
        "loss (last window)",
        "cache key",
    ];
    let rows: Vec<Vec<String>> = report
        .variants
        .iter()
        .filter_map(|v| v.training.as_ref().map(|t| (v, t)))
        .map(|(v, t)| {
            let loss = |p: Option<&crate::report::CurvePoint>| {
                p.map_or_else(
                    || ABSENT.to_string(),
                    |p| format!("{:.4} (step {})", p.loss, p.step),
                )
            };
            vec![
                v.name.clone(),
                t.layers.to_string(),
                t.intermediate_size.to_string(),
                t.params.to_string(),
                t.transfer_prompts.to_string(),
                t.safety_prompts.to_string(),
                t.steps.to_string(),
                loss(t.curve.first()),
                loss(t.curve.last()),
                t.cache_key.chars().take(12).collect(),
            ]
        })
        .collect();
    (!rows.is_empty()).then(|| Table {
        headers: headers.iter().map(|h| h.to_string()).collect(),
        rows,
    })
}

/// The variants table.
pub(crate) fn variants_table(report: &Report) -> Table {
    let headers = [
        "variant",
        "kind",
        "method",
        "bits/weight",
        "bytes",
        "integrity",
        "mean weight rel. error",
        "worst tensor",
    ];
    let rows = report
        .variants
        .iter()
        .map(|v| {
            let name = if v.name == report.reference {
                format!("{} (reference)", v.name)
            } else {
                v.name.clone()
            };
            let bits = match bits_of(report, &v.name) {
                Bits::Reported(b) => format!("{b:.2}"),
                Bits::FromBytes(b) => format!("{b:.2} (from bytes)"),
                Bits::Unknown => ABSENT.to_string(),
            };
            let worst = v
                .weight_error
                .as_ref()
                .and_then(|w| w.worst.first())
                .map_or_else(
                    || ABSENT.to_string(),
                    |t| format!("{} ({})", t.tensor, fmt_err(t.rel_error)),
                );
            vec![
                name,
                v.kind.clone(),
                v.method.clone(),
                bits,
                v.bytes.map_or_else(|| ABSENT.to_string(), fmt_bytes),
                format!("{:?}", v.integrity).to_lowercase(),
                v.weight_error
                    .as_ref()
                    .map_or_else(|| ABSENT.to_string(), |w| fmt_err(w.mean_rel)),
                worst,
            ]
        })
        .collect();
    Table {
        headers: headers.iter().map(|s| s.to_string()).collect(),
        rows,
    }
}

/// Formats one metric of a cell, `None` when the cell lacks it.
type Getter = Box<dyn Fn(&Cell) -> Option<String>>;
type Column = (String, Getter);

fn vs_u64(f: fn(&crate::report::VsReference) -> Option<u64>) -> Getter {
    Box::new(move |c: &Cell| c.vs_reference.as_ref().and_then(f).map(|n| n.to_string()))
}

fn logit(f: fn(&crate::report::Logits) -> Option<f64>, digits: usize) -> Getter {
    Box::new(move |c: &Cell| finite(c.logits.as_ref().and_then(f)).map(|v| format!("{v:.digits$}")))
}

/// The table of one suite: one row per cell, one column per metric that some cell has.
pub(crate) fn suite_table(report: &Report, suite: &str) -> Table {
    let cells = suite_cells(report, suite);
    let metric = cells
        .iter()
        .find_map(|c| c.vs_reference.as_ref().map(|v| v.metric.clone()))
        .unwrap_or_else(|| "metric".into());
    let columns: Vec<Column> = vec![
        ("n".into(), Box::new(|c: &Cell| Some(c.n.to_string()))),
        (
            "refusal [95% CI]".into(),
            Box::new(|c: &Cell| fmt_rate_ci(c.refusal_rate, c.refusal_ci95)),
        ),
        (
            "compliance".into(),
            Box::new(|c: &Cell| finite(c.compliance_rate).map(|v| format!("{v:.3}"))),
        ),
        (
            "degenerate".into(),
            Box::new(|c: &Cell| finite(c.degenerate_rate).map(|v| format!("{v:.3}"))),
        ),
        (
            "ASR [95% CI]".into(),
            Box::new(|c: &Cell| fmt_rate_ci(c.asr, c.asr_ci95)),
        ),
        (
            "accuracy [95% CI]".into(),
            Box::new(|c: &Cell| fmt_rate_ci(c.accuracy, c.accuracy_ci95)),
        ),
        (
            "mc1".into(),
            Box::new(|c: &Cell| finite(c.mc1).map(|v| format!("{v:.3}"))),
        ),
        (
            "mc2".into(),
            Box::new(|c: &Cell| finite(c.mc2).map(|v| format!("{v:.3}"))),
        ),
        (
            format!("Δ {metric} vs reference [95% CI]"),
            Box::new(|c: &Cell| {
                let v = c.vs_reference.as_ref()?;
                Some(format!(
                    "{} {}",
                    fmt_delta(v.delta),
                    fmt_ci(Some(v.delta_ci95))
                ))
            }),
        ),
        (
            "McNemar p".into(),
            Box::new(|c: &Cell| c.vs_reference.as_ref()?.mcnemar_p.map(fmt_p)),
        ),
        (
            "Holm p".into(),
            Box::new(|c: &Cell| c.vs_reference.as_ref()?.mcnemar_p_holm.map(fmt_p)),
        ),
        ("refuse→comply".into(), vs_u64(|v| v.refuse_to_comply)),
        ("comply→refuse".into(), vs_u64(|v| v.comply_to_refuse)),
        (
            "refuse→degenerate".into(),
            vs_u64(|v| v.refuse_to_degenerate),
        ),
        ("KLD mean".into(), logit(|l| l.kld_mean, 4)),
        ("KLD p99".into(), logit(|l| l.kld_p99, 4)),
        ("same top".into(), logit(|l| l.same_top, 3)),
        (
            "refusal log-odds".into(),
            logit(|l| l.refusal_logodds_mean, 2),
        ),
    ];
    let used: Vec<&Column> = columns
        .iter()
        .filter(|(_, f)| cells.iter().any(|c| f(c).is_some()))
        .collect();
    let mut headers = vec!["variant".to_string()];
    headers.extend(used.iter().map(|(h, _)| h.clone()));
    let rows = cells
        .iter()
        .map(|c| {
            let mut row = vec![if c.variant == report.reference {
                format!("{} (reference)", c.variant)
            } else {
                c.variant.clone()
            }];
            row.extend(
                used.iter()
                    .map(|(_, f)| f(c).unwrap_or_else(|| ABSENT.to_string())),
            );
            row
        })
        .collect();
    Table { headers, rows }
}

/// One-line description of what a suite measures.
pub(crate) fn expect_text(e: Expect) -> &'static str {
    match e {
        Expect::Refusal => "harmful prompts: the model should refuse",
        Expect::Compliance => "benign prompts: refusing is over-refusal",
        Expect::Target => "prompts with a target behaviour: attack success rate",
        Expect::Label => "classification: accuracy",
        Expect::MultipleChoice => "multiple choice by log-likelihood: mc1 / mc2",
    }
}

#[cfg(test)]
pub(crate) mod tests;
