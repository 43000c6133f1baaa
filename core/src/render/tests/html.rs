//! report.html: self-contained, escaped, and its plots draw what the report holds.

use super::*;

/// The `<svg>...</svg>` elements of a page.
fn svgs(html: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut s = html;
    while let Some(i) = s.find("<svg") {
        let end = s[i..].find("</svg>").unwrap() + i + "</svg>".len();
        out.push(&s[i..end]);
        s = &s[end..];
    }
    out
}

fn svg_titled<'a>(html: &'a str, title: &str) -> &'a str {
    svgs(html)
        .into_iter()
        .find(|s| s.contains(&format!("<title>{title}")))
        .unwrap_or_else(|| panic!("no plot titled {title}"))
}

#[test]
fn html_is_self_contained_and_escaped() {
    let h = html(&sample());
    assert!(h.starts_with("<!DOCTYPE html>"));
    for banned in [
        "http://", "https://", "<script", "src=", "href=", "url(", "@import", "<link",
    ] {
        assert!(!h.contains(banned), "found {banned}");
    }
    assert!(h.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(h.contains("&lt;b&gt;done&lt;/b&gt; &amp; more"));
    assert!(!h.contains('\u{1}'));
    // The same tables as the Markdown.
    for want in [
        "<td class=\"num\">0.400 [0.276, 0.538]</td>",
        "<td class=\"num\">-0.560 [-0.700, -0.420]</td>",
        "<td class=\"num\">5.0e-8</td>",
        "int2:g16 on advbench: refusal rate 0.960 → 0.400",
        "<td>int2:g16</td><td>advbench</td><td>adv-17</td><td>refuse → comply</td>",
    ] {
        assert!(h.contains(want), "missing {want:?}");
    }
    // Every plot is well-formed XML.
    let plots = svgs(&h);
    // advbench, xstest, sentiment, tqa, and two weight-error charts.
    assert_eq!(plots.len(), 6);
    for s in &plots {
        well_formed(s).unwrap_or_else(|e| panic!("{e}\n{s}"));
    }
}

#[test]
fn refusal_plot_has_one_point_per_variant_with_ci_bars() {
    let h = html(&sample());
    let adv = svg_titled(&h, "advbench: refusal rate");
    // fp32, int8, int2:g16 at reported bits; student from bytes; gguf-dl in the legend.
    assert_eq!(adv.matches("<circle").count(), 4, "{adv}");
    assert_eq!(adv.matches("class=\"ci\"").count(), 4);
    assert_eq!(adv.matches("class=\"cap\"").count(), 8);
    for v in ["fp32", "int8", "int2:g16", "student"] {
        let tag = format!("data-variant=\"{v}\"");
        assert_eq!(adv.matches(&tag).count(), 1, "{v}");
        assert!(adv.contains(&format!(">{v}</text>")), "label of {v}");
    }
    assert!(adv.contains("class=\"pt ref\""));
    assert!(adv.contains("class=\"pt derived\" data-variant=\"student\""));
    assert!(adv.contains("<g class=\"unplaced\" data-variant=\"gguf-dl\">"));
    assert!(adv.contains("gguf-dl: 0.920 [0.81, 0.97]"), "{adv}");
    // int2:g16's bar spans its Wilson interval [0.276, 0.538] on the 0..1 axis (y 256..34).
    let y = |v: f64| 256.0 - v * 222.0; // BOTTOM - v * (BOTTOM - TOP)
    let g = &adv[adv.find("data-variant=\"int2:g16\"").unwrap()..];
    let g = &g[..g.find("</g>").unwrap()];
    assert!(g.contains(&format!("y1=\"{:.1}\"", y(0.2762))), "{g}");
    assert!(g.contains(&format!("y2=\"{:.1}\"", y(0.5382))), "{g}");
    assert!(g.contains(&format!("cy=\"{:.1}\"", y(0.4))), "{g}");
}

#[test]
fn absent_metrics_are_not_plotted() {
    let h = html(&sample());
    // The student's xstest cell has no refusal rate: no point, named in the caption.
    let xs = svg_titled(&h, "xstest: over-refusal");
    assert!(!xs.contains("data-variant=\"student\""), "{xs}");
    assert_eq!(xs.matches("<circle").count(), 3);
    assert!(h.contains("Not measured on xstest (not plotted): student, gguf-dl."));
    // Accuracy plots only show variants with an accuracy; no refusal appears as 0 there.
    let sent = svg_titled(&h, "sentiment: accuracy");
    assert_eq!(sent.matches("<circle").count(), 3);
    assert!(!sent.contains("data-variant=\"student\""));
    // A variant whose accuracy is absent is not drawn at y = 0 (cy = 256).
    assert!(!sent.contains("cy=\"256.0\""));
}

#[test]
fn weight_error_bars() {
    let h = html(&sample());
    let bars = svg_titled(&h, "int2:g16: relative weight error");
    assert_eq!(bars.matches("<rect").count(), 2);
    assert!(bars.contains(">layers.1.mlp.down_proj</text>"));
    assert!(bars.contains("<title>model.layers.1.mlp.down_proj.weight: 0.5123</title>"));
    // One scale for all variants: the worst tensor overall spans the full width.
    assert!(bars.contains("width=\"280.0\""));
    let small = svg_titled(&h, "int8: relative weight error");
    assert!(!small.contains("width=\"280.0\""));
}

#[test]
fn html_of_an_empty_report() {
    let h = html(&empty());
    assert!(h.contains("The report has no cells."));
    assert!(h.contains("No refusal or compliance suite"));
    assert!(h.contains("No variant reports a weight error."));
    assert!(svgs(&h).is_empty());
    assert!(h.ends_with("</body></html>\n"));
}

#[test]
fn plot_with_every_bits_unknown_lists_all_in_the_legend() {
    let mut r = sample();
    for v in &mut r.variants {
        v.bits_per_weight = None;
        v.bytes = None;
    }
    let h = html(&r);
    let adv = svg_titled(&h, "advbench: refusal rate");
    assert_eq!(adv.matches("<circle").count(), 0);
    assert_eq!(adv.matches("class=\"unplaced\"").count(), 5);
    well_formed(adv).unwrap();
}

// ---------------------------------------------------------------------------------------
// JUnit.
// ---------------------------------------------------------------------------------------
