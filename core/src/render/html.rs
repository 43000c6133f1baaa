//! `report.html`: one self-contained file (inline CSS and SVG, no scripts, no external
//! references) with the Markdown report's tables and four kinds of plot.

use std::fmt::Write;

use super::markdown::direction_text;
use super::svg::{self, Point, Scatter};
use super::{
    bits_of, cell, escape_xml, expect_text, findings, fmt_bytes, suite_table, suites,
    training_table, truncate, variants, variants_table, Bits, Table, HTML_DIVERGENCES_PER_CELL,
    HTML_TEXT_CHARS,
};
use crate::gate;
use crate::report::{Cell, Report};
use crate::suite::Expect;

const CSS: &str = "\
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:#1d2330;margin:0 auto;\
max-width:1320px;padding:16px 28px;background:#fff}\
h1{font-size:1.6em;margin:.2em 0 .4em}h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #d8dce4}\
h3{font-size:1.05em;margin:1.2em 0 .4em}\
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:0}\
dl.meta dt{font-weight:600}dl.meta dd{margin:0;word-break:break-all}\
.wrap{overflow-x:auto}\
table{border-collapse:collapse;font-size:12.5px;margin:.4em 0 1em}\
th,td{border:1px solid #d8dce4;padding:3px 7px;text-align:left;vertical-align:top}\
th{background:#f1f3f7;position:sticky;top:0}\
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}\
tr.ref td{background:#f8f9fb}\
.txt{white-space:pre-wrap;word-break:break-word;max-height:12em;overflow:auto;min-width:16em;max-width:34em}\
.figs{display:flex;flex-wrap:wrap;gap:8px 20px}\
figure{margin:0}figcaption{font-size:12px;color:#5a6272;max-width:660px}\
ul.findings li{margin-bottom:.5em}\
.bad{color:#a1261b;font-weight:600}.ok{color:#1d6b36;font-weight:600}\
svg text{font:11px system-ui,sans-serif;fill:#1d2330}\
svg .ptitle{font-size:13px;font-weight:600}svg .tick{fill:#5a6272}\
svg .atitle{font-size:11.5px;fill:#3b4252}svg .lgh{font-size:11px;fill:#3b4252}\
svg .lg{font-size:11px;fill:#5a6272}\
svg .grid{stroke:#e6e9ef;stroke-width:1}svg .axis{stroke:#5a6272;stroke-width:1}\
svg .pt circle{fill:#2f6fb3;stroke:#1d4f86}svg .pt.ref circle{fill:#1d2330;stroke:#1d2330}\
svg .pt.derived circle{fill:#fff;stroke:#2f6fb3;stroke-width:1.5}\
svg .ci,svg .cap{stroke:#2f6fb3;stroke-width:1.3}svg .pt.ref .ci,svg .pt.ref .cap{stroke:#1d2330}\
svg .bar rect{fill:#c0562f}\
";

/// Each line escaped, after a `<br>`.
fn br_lines(lines: &[String]) -> String {
    lines
        .iter()
        .map(|f| format!("<br>{}", escape_xml(f)))
        .collect()
}

fn table_html(out: &mut String, t: &Table, reference_rows: &[usize]) {
    out.push_str("<div class=\"wrap\"><table><thead><tr>");
    for h in &t.headers {
        let _ = write!(out, "<th>{}</th>", escape_xml(h));
    }
    out.push_str("</tr></thead><tbody>");
    for (i, r) in t.rows.iter().enumerate() {
        if reference_rows.contains(&i) {
            out.push_str("<tr class=\"ref\">");
        } else {
            out.push_str("<tr>");
        }
        for (j, c) in r.iter().enumerate() {
            let numeric = j > 0
                && c.chars()
                    .next()
                    .is_some_and(|ch| ch.is_ascii_digit() || ch == '-' || ch == '+' || ch == '—');
            let class = if numeric { " class=\"num\"" } else { "" };
            let _ = write!(out, "<td{class}>{}</td>", escape_xml(c));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>\n");
}

/// A rate and its 95% interval, when the cell has the rate.
type Value = Option<(f64, Option<[f64; 2]>)>;

/// One metric of a cell plotted against bits per weight.
struct Metric {
    title: String,
    y_label: &'static str,
    get: fn(&Cell) -> Value,
}

fn refusal(c: &Cell) -> Value {
    Some((c.refusal_rate?, c.refusal_ci95))
}

fn asr(c: &Cell) -> Value {
    Some((c.asr?, c.asr_ci95))
}

fn accuracy(c: &Cell) -> Value {
    Some((c.accuracy?, c.accuracy_ci95))
}

/// A figure: the scatter of one metric on one suite, and a caption naming variants without a
/// value (absent metrics are not plotted).
fn figure(out: &mut String, report: &Report, suite: &str, m: &Metric) {
    let mut points = Vec::new();
    let mut missing = Vec::new();
    for v in variants(report) {
        match cell(report, v, suite).and_then(|c| (m.get)(c)) {
            Some((y, ci)) if y.is_finite() => points.push(Point {
                label: v.to_string(),
                bits: bits_of(report, v),
                y,
                ci,
                reference: v == report.reference,
            }),
            _ => missing.push(v),
        }
    }
    out.push_str("<figure>");
    if points.is_empty() {
        let _ = write!(
            out,
            "<p>{}: no variant has a value.</p>",
            escape_xml(&m.title)
        );
    } else {
        out.push_str(&svg::scatter(&Scatter {
            title: m.title.clone(),
            y_label: m.y_label.to_string(),
            points,
        }));
    }
    if !missing.is_empty() {
        let names: Vec<String> = missing.iter().map(|v| escape_xml(v)).collect();
        let _ = write!(
            out,
            "<figcaption>Not measured on {} (not plotted): {}.</figcaption>",
            escape_xml(suite),
            names.join(", ")
        );
    }
    out.push_str("</figure>\n");
}

/// Renders `report.html`.
pub fn html(report: &Report) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let e = |s: &str| escape_xml(s);
    let sw = &report.sweep;
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>compsafe report: {}</title><style>{CSS}</style></head><body>\n",
        e(&sw.name)
    );
    let _ = write!(
        out,
        "<h1>compsafe report: {}</h1>\n<dl class=\"meta\">",
        e(&sw.name)
    );
    let integrity = format!("{:?}", report.model.integrity).to_lowercase();
    let integrity_class = if integrity == "failed" { "bad" } else { "ok" };
    for (k, v) in [
        ("sweep", format!("{} (id {})", sw.name, sw.id)),
        ("seed", sw.seed.to_string()),
        ("spec sha256", sw.spec_sha256.clone()),
        ("run", format!("{} – {}", sw.started_at, sw.finished_at)),
        ("model", report.model.path.clone()),
    ] {
        let _ = write!(out, "<dt>{}</dt><dd>{}</dd>", e(k), e(&v));
    }
    let failures = br_lines(&report.model.integrity_failures);
    let _ = writeln!(
        out,
        "<dt>integrity</dt><dd class=\"{integrity_class}\">{}{failures}</dd>\
         <dt>reference</dt><dd>{}</dd><dt>compsafe</dt><dd>{}</dd></dl>",
        e(&integrity),
        e(&report.reference),
        e(&report.compsafe_version)
    );
    if !report.model.files.is_empty() {
        out.push_str("<details><summary>model files</summary>");
        let t = Table {
            headers: vec!["file".into(), "sha256".into(), "size".into()],
            rows: report
                .model
                .files
                .iter()
                .map(|f| vec![f.name.clone(), f.sha256.clone(), fmt_bytes(f.bytes)])
                .collect(),
        };
        table_html(&mut out, &t, &[]);
        out.push_str("</details>\n");
    }

    // Findings.
    out.push_str("<h2 id=\"findings\">Findings</h2>\n");
    let found = findings(report);
    if report.cells.is_empty() {
        out.push_str("<p>The report has no cells.</p>\n");
    } else if !found.iter().any(|f| f.harm.kind.is_safety_loss()) {
        let _ = writeln!(
            out,
            "<p class=\"ok\">No variant lost refusals or gained attack success significantly \
             (Holm-adjusted McNemar p &lt; {} with the delta's 95% interval excluding 0).</p>",
            gate::DEFAULT_ALPHA
        );
    }
    if !found.is_empty() {
        out.push_str("<ul class=\"findings\">");
        for f in &found {
            let class = if f.harm.kind.is_safety_loss() {
                "bad"
            } else {
                ""
            };
            let _ = write!(
                out,
                "<li><span class=\"{class}\">{}</span></li>",
                e(&f.describe(report))
            );
        }
        out.push_str("</ul>\n");
    }

    // Plots.
    let all_suites = suites(report);
    out.push_str(
        "<h2 id=\"refusal\">Refusal and over-refusal against bits per weight</h2>\n\
         <p>Refusal rate per variant with its 95% Wilson interval. On harmful suites higher is \
         safer; on benign suites the refusal rate is over-refusal and lower is better. A \
         variant without a reported bits per weight is placed at its size in bits per \
         reference weight (hollow point) or, without a size, listed beside the plot.</p>\n\
         <div class=\"figs\">",
    );
    let mut any = false;
    for (suite, expect) in &all_suites {
        let metrics: Vec<Metric> = match expect {
            Expect::Refusal => vec![Metric {
                title: format!("{suite}: refusal rate (harmful, higher is safer)"),
                y_label: "refusal rate",
                get: refusal,
            }],
            Expect::Target => vec![
                Metric {
                    title: format!("{suite}: refusal rate (harmful, higher is safer)"),
                    y_label: "refusal rate",
                    get: refusal,
                },
                Metric {
                    title: format!("{suite}: attack success rate (lower is safer)"),
                    y_label: "attack success rate",
                    get: asr,
                },
            ],
            Expect::Compliance => vec![Metric {
                title: format!("{suite}: over-refusal (benign, lower is better)"),
                y_label: "refusal rate",
                get: refusal,
            }],
            _ => vec![],
        };
        for m in &metrics {
            any = true;
            figure(&mut out, report, suite, m);
        }
    }
    if !any {
        out.push_str("<p>No refusal or compliance suite in this report.</p>");
    }
    out.push_str(
        "</div>\n<h2 id=\"accuracy\">Accuracy against bits per weight</h2>\n<div class=\"figs\">",
    );
    let mut any = false;
    for (suite, expect) in &all_suites {
        let label = match expect {
            Expect::Label => "accuracy",
            Expect::MultipleChoice => "mc2",
            _ => continue,
        };
        any = true;
        figure(
            &mut out,
            report,
            suite,
            &Metric {
                title: format!("{suite}: {label}"),
                y_label: if *expect == Expect::Label {
                    "accuracy"
                } else {
                    "mc2"
                },
                get: accuracy,
            },
        );
    }
    if !any {
        out.push_str("<p>No label or multiple-choice suite in this report.</p>");
    }
    out.push_str("</div>\n");

    out.push_str(
        "<h2 id=\"layers\">Per-tensor weight error</h2>\n\
         <p>Relative error ‖W′ − W‖ / ‖W‖ of each variant's worst tensors, on one scale for \
         all variants.</p>\n<div class=\"figs\">",
    );
    let with_error: Vec<_> = report
        .variants
        .iter()
        .filter_map(|v| Some((v, v.weight_error.as_ref()?)))
        .collect();
    let scale = with_error
        .iter()
        .flat_map(|(_, w)| w.worst.iter().map(|t| t.rel_error))
        .filter(|x| x.is_finite())
        .fold(0.0f64, f64::max);
    if with_error.is_empty() {
        out.push_str("<p>No variant reports a weight error.</p>");
    }
    for (v, w) in &with_error {
        let worst: Vec<_> = w.worst.iter().take(12).cloned().collect();
        out.push_str("<figure>");
        out.push_str(&svg::tensor_bars(&v.name, w.mean_rel, &worst, scale));
        out.push_str("</figure>");
    }
    let without: Vec<String> = report
        .variants
        .iter()
        .filter(|v| v.weight_error.is_none())
        .map(|v| e(&v.name))
        .collect();
    if !without.is_empty() && !with_error.is_empty() {
        let _ = write!(
            out,
            "<p>No weight error (reference or separate checkpoint): {}.</p>",
            without.join(", ")
        );
    }
    out.push_str("</div>\n");

    // Tables.
    out.push_str("<h2 id=\"variants\">Variants</h2>\n");
    if report.variants.is_empty() {
        out.push_str("<p>No variants listed.</p>\n");
    } else {
        let t = variants_table(report);
        let refs: Vec<usize> = report
            .variants
            .iter()
            .enumerate()
            .filter(|(_, v)| v.name == report.reference)
            .map(|(i, _)| i)
            .collect();
        table_html(&mut out, &t, &refs);
    }
    if let Some(t) = training_table(report) {
        out.push_str("<h3 id=\"students\">Distilled students</h3>\n");
        table_html(&mut out, &t, &[]);
        out.push_str("<div class=\"figs\">");
        for v in &report.variants {
            if let Some(tr) = &v.training {
                let pts: Vec<(f64, f64)> =
                    tr.curve.iter().map(|p| (p.step as f64, p.loss)).collect();
                out.push_str(&svg::line(
                    &format!("Training loss of {}", v.name),
                    "step",
                    "loss",
                    &pts,
                ));
            }
        }
        out.push_str("</div>\n");
    }
    for v in report.variants.iter().filter(|v| v.failed()) {
        let failures = br_lines(&v.integrity_failures);
        let _ = writeln!(
            out,
            "<p class=\"bad\">{} failed and was not evaluated: {}{failures}</p>",
            e(&v.name),
            e(v.error.as_deref().unwrap_or_default())
        );
    }
    let bits_unknown: Vec<String> = variants(report)
        .into_iter()
        .filter(|v| bits_of(report, v) == Bits::Unknown)
        .map(e)
        .collect();
    if !bits_unknown.is_empty() && !report.cells.is_empty() {
        let _ = writeln!(
            out,
            "<p>Bits per weight unknown (listed beside the plots): {}.</p>",
            bits_unknown.join(", ")
        );
    }
    out.push_str("<h2 id=\"suites\">Suites</h2>\n");
    if all_suites.is_empty() {
        out.push_str("<p>No suites.</p>\n");
    }
    for (suite, expect) in &all_suites {
        let _ = writeln!(
            out,
            "<h3>{} <small>({}: {})</small></h3>",
            e(suite),
            expect,
            expect_text(*expect)
        );
        let t = suite_table(report, suite);
        let refs: Vec<usize> = t
            .rows
            .iter()
            .enumerate()
            .filter(|(_, r)| r.first().is_some_and(|n| n.ends_with("(reference)")))
            .map(|(i, _)| i)
            .collect();
        table_html(&mut out, &t, &refs);
    }

    // Divergences.
    out.push_str("<h2 id=\"divergences\">Divergences</h2>\n");
    if report.divergences.is_empty() {
        out.push_str("<p>No prompt flipped against the reference.</p>\n");
    } else {
        let _ = writeln!(
            out,
            "<p>{} prompts flipped against the reference; the reference's least confident \
             refusals first, at most {HTML_DIVERGENCES_PER_CELL} per variant and suite here \
             (report.json has them all).</p>",
            report.divergences.len()
        );
        out.push_str(
            "<div class=\"wrap\"><table class=\"div\"><thead><tr><th>variant</th><th>suite</th>\
             <th>prompt id</th><th>direction</th><th>prompt</th><th>reference response</th>\
             <th>variant response</th></tr></thead><tbody>",
        );
        let mut omitted = 0usize;
        let mut shown: Vec<((&str, &str), usize)> = Vec::new();
        for d in &report.divergences {
            let key = (d.variant.as_str(), d.suite.as_str());
            let n = match shown.iter_mut().find(|(k, _)| *k == key) {
                Some((_, n)) => {
                    *n += 1;
                    *n
                }
                None => {
                    shown.push((key, 1));
                    1
                }
            };
            let searched = d.searched == Some(true);
            if n > HTML_DIVERGENCES_PER_CELL && !searched {
                omitted += 1;
                continue;
            }
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td><div class=\"txt\">{}</div></td><td><div class=\"txt\">{}</div></td>\
                 <td><div class=\"txt\">{}</div></td></tr>",
                e(&d.variant),
                e(&d.suite),
                e(&d.prompt_id),
                e(&if searched {
                    format!("{} (searched)", direction_text(d.direction))
                } else {
                    direction_text(d.direction).to_string()
                }),
                e(&truncate(&d.prompt, HTML_TEXT_CHARS)),
                e(&truncate(&d.reference_response, HTML_TEXT_CHARS)),
                e(&truncate(&d.variant_response, HTML_TEXT_CHARS)),
            );
        }
        out.push_str("</tbody></table></div>\n");
        if omitted > 0 {
            let _ = writeln!(out, "<p>{omitted} more in report.json.</p>");
        }
    }
    out.push_str("</body></html>\n");
    out
}
