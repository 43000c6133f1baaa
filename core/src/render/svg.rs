//! Hand-written inline SVG: rate-versus-bits scatter plots with interval bars, and per-tensor
//! error bars. Everything is text; every string from the report is escaped.

use std::fmt::Write;

use super::{escape_xml, Bits};
use crate::report::TensorError;

/// One variant's value in a scatter plot.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Point {
    /// Variant name, shown next to the point.
    pub(crate) label: String,
    /// Position on the bits-per-weight axis.
    pub(crate) bits: Bits,
    /// The rate.
    pub(crate) y: f64,
    /// Its 95% interval, when known.
    pub(crate) ci: Option<[f64; 2]>,
    /// Drawn as the reference.
    pub(crate) reference: bool,
}

/// A rate (0..1) against bits per weight (log scale).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Scatter {
    /// Shown above the plot.
    pub(crate) title: String,
    /// The y axis title.
    pub(crate) y_label: String,
    /// One point per variant with a value.
    pub(crate) points: Vec<Point>,
}

const W: f64 = 680.0;
const H: f64 = 300.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 460.0;
const TOP: f64 = 34.0;
const BOTTOM: f64 = 256.0;
const LEGEND_X: f64 = 484.0;
const CHAR_W: f64 = 6.0;

fn label_width(s: &str) -> f64 {
    s.chars().count() as f64 * CHAR_W
}

fn tick_text(log2: i32) -> String {
    let v = 2f64.powi(log2);
    if v >= 1.0 {
        format!("{v}")
    } else {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

/// Renders a scatter plot as an `<svg>` element. Points whose bits are unknown are listed in
/// the side legend with their value instead of being placed on the axis.
pub(crate) fn scatter(plot: &Scatter) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"plot\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\">\
         <title>{}</title>",
        escape_xml(&plot.title)
    );
    let _ = write!(
        s,
        "<text class=\"ptitle\" x=\"{LEFT}\" y=\"18\">{}</text>",
        escape_xml(&plot.title)
    );

    let placed: Vec<&Point> = plot
        .points
        .iter()
        .filter(|p| p.bits.value().is_some_and(|b| b > 0.0 && b.is_finite()))
        .collect();
    let lx: Vec<f64> = placed
        .iter()
        .filter_map(|p| p.bits.value().map(f64::log2))
        .collect();
    let (mut x0, mut x1) = lx
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if lx.is_empty() {
        (x0, x1) = (1.0, 5.0);
    }
    let (mut k0, mut k1) = (x0.floor() as i32, x1.ceil() as i32);
    if k0 == k1 {
        k0 -= 1;
        k1 += 1;
    }
    // Ticks sit on whole powers of two; the domain has a margin so no point sits on an edge.
    let (d0, d1) = (f64::from(k0) - 0.3, f64::from(k1) + 0.3);
    let sx = |v: f64| LEFT + (v.log2() - d0) / (d1 - d0) * (RIGHT - LEFT);
    let sy = |v: f64| BOTTOM - v.clamp(0.0, 1.0) * (BOTTOM - TOP);

    // Grid and axes.
    for i in 0..=4 {
        let v = f64::from(i) / 4.0;
        let y = sy(v);
        let _ = write!(
            s,
            "<line class=\"grid\" x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{RIGHT}\" y2=\"{y:.1}\"/>\
             <text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{v:.2}</text>",
            LEFT - 6.0,
            y + 4.0
        );
    }
    let step = ((k1 - k0) as f64 / 8.0).ceil().max(1.0) as i32;
    let mut k = k0;
    while k <= k1 {
        let x = sx(2f64.powi(k));
        let _ = write!(
            s,
            "<line class=\"grid\" x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{BOTTOM}\"/>\
             <text class=\"tick\" x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            BOTTOM + 16.0,
            tick_text(k)
        );
        k += step;
    }
    let _ = write!(
        s,
        "<line class=\"axis\" x1=\"{LEFT}\" y1=\"{BOTTOM}\" x2=\"{RIGHT}\" y2=\"{BOTTOM}\"/>\
         <line class=\"axis\" x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{BOTTOM}\"/>\
         <text class=\"atitle\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">bits per weight (log scale)</text>\
         <text class=\"atitle\" transform=\"translate(14 {:.1}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
        (LEFT + RIGHT) / 2.0,
        H - 10.0,
        (TOP + BOTTOM) / 2.0,
        escape_xml(&plot.y_label)
    );

    // Points, with labels placed greedily so they do not overlap.
    let mut order: Vec<(f64, f64, &Point)> = placed
        .iter()
        .filter_map(|p| Some((sx(p.bits.value()?), sy(p.y), *p)))
        .collect();
    order.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    let mut boxes: Vec<[f64; 4]> = Vec::new();
    for (px, py, p) in order {
        let derived = matches!(p.bits, Bits::FromBytes(_));
        let class = match (p.reference, derived) {
            (true, _) => "pt ref",
            (false, true) => "pt derived",
            (false, false) => "pt",
        };
        let bits_note = match p.bits {
            Bits::FromBytes(b) => format!("{b:.2} bits/weight (from bytes)"),
            _ => format!("{:.2} bits/weight", p.bits.value().unwrap_or(0.0)),
        };
        let ci_note =
            p.ci.map(|[lo, hi]| format!(" [{lo:.3}, {hi:.3}]"))
                .unwrap_or_default();
        let _ = write!(
            s,
            "<g class=\"{class}\" data-variant=\"{}\"><title>{}: {:.3}{ci_note} at {bits_note}</title>",
            escape_xml(&p.label),
            escape_xml(&p.label),
            p.y
        );
        if let Some([lo, hi]) = p.ci.filter(|c| c[0].is_finite() && c[1].is_finite()) {
            let (ylo, yhi) = (sy(lo), sy(hi));
            let _ = write!(
                s,
                "<line class=\"ci\" x1=\"{px:.1}\" y1=\"{ylo:.1}\" x2=\"{px:.1}\" y2=\"{yhi:.1}\"/>\
                 <line class=\"cap\" x1=\"{:.1}\" y1=\"{ylo:.1}\" x2=\"{:.1}\" y2=\"{ylo:.1}\"/>\
                 <line class=\"cap\" x1=\"{:.1}\" y1=\"{yhi:.1}\" x2=\"{:.1}\" y2=\"{yhi:.1}\"/>",
                px - 4.0,
                px + 4.0,
                px - 4.0,
                px + 4.0
            );
        }
        let _ = write!(s, "<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"4\"/>");
        let w = label_width(&p.label);
        // Right of the point unless that runs past the plot area; then left of it.
        let right_first = px + 7.0 + w <= RIGHT + 2.0;
        let sides = if right_first {
            [true, false]
        } else {
            [false, true]
        };
        let place = |right: bool, dy: f64| {
            let x0 = if right { px + 7.0 } else { px - 7.0 - w };
            [x0, py + dy - 9.0, x0 + w, py + dy + 3.0]
        };
        let mut chosen = (sides[0], 0.0);
        'search: for dy in [0.0, 12.0, -12.0, 24.0, -24.0, 36.0, -36.0] {
            for right in sides {
                let b = place(right, dy);
                let free = boxes
                    .iter()
                    .all(|o| b[2] <= o[0] || b[0] >= o[2] || b[3] <= o[1] || b[1] >= o[3]);
                if free {
                    chosen = (right, dy);
                    break 'search;
                }
            }
        }
        let b = place(chosen.0, chosen.1);
        boxes.push(b);
        let _ = write!(
            s,
            "<text class=\"lbl\" x=\"{:.1}\" y=\"{:.1}\">{}</text></g>",
            b[0],
            b[3],
            escape_xml(&p.label)
        );
    }

    // Side legend.
    let mut ly = TOP + 4.0;
    let line = |s: &mut String, ly: &mut f64, class: &str, text: &str| {
        let _ = write!(
            s,
            "<text class=\"{class}\" x=\"{LEGEND_X}\" y=\"{ly:.1}\">{}</text>",
            escape_xml(text)
        );
        *ly += 14.0;
    };
    line(&mut s, &mut ly, "lgh", "● reported bits/weight");
    if placed.iter().any(|p| matches!(p.bits, Bits::FromBytes(_))) {
        line(&mut s, &mut ly, "lgh", "○ bits/weight from bytes");
    }
    line(&mut s, &mut ly, "lgh", "bars: 95% interval");
    let unplaced: Vec<&Point> = plot.points.iter().filter(|p| !placed.contains(p)).collect();
    if !unplaced.is_empty() {
        ly += 6.0;
        line(&mut s, &mut ly, "lgh", "bits/weight unknown:");
        for p in unplaced {
            let ci =
                p.ci.map(|[lo, hi]| format!(" [{lo:.2}, {hi:.2}]"))
                    .unwrap_or_default();
            let text = format!("{}: {:.3}{ci}", super::truncate(&p.label, 16), p.y);
            let _ = write!(
                s,
                "<g class=\"unplaced\" data-variant=\"{}\">",
                escape_xml(&p.label)
            );
            line(&mut s, &mut ly, "lg", &text);
            s.push_str("</g>");
        }
    }
    s.push_str("</svg>");
    s
}

/// Shortens a tensor name for a bar label: drops a leading `model.` and a trailing `.weight`.
fn short_tensor(name: &str) -> String {
    let n = name.strip_prefix("model.").unwrap_or(name);
    let n = n.strip_suffix(".weight").unwrap_or(n);
    super::truncate(n, 44)
}

/// Horizontal bars of the worst tensors' relative error of one variant, on a shared scale
/// whose right end is `scale_max`.
pub(crate) fn tensor_bars(
    variant: &str,
    mean_rel: f64,
    worst: &[TensorError],
    scale_max: f64,
) -> String {
    const ROW: f64 = 16.0;
    const BAR_X: f64 = 300.0;
    const BAR_W: f64 = 280.0;
    let rows: Vec<&TensorError> = worst.iter().filter(|t| t.rel_error.is_finite()).collect();
    let h = 30.0 + ROW * rows.len().max(1) as f64 + 8.0;
    let mut s = String::new();
    let title = format!(
        "{variant}: relative weight error, worst tensors (mean {})",
        super::fmt_err(mean_rel)
    );
    let _ = write!(
        s,
        "<svg class=\"bars\" viewBox=\"0 0 {W} {h}\" width=\"{W}\" height=\"{h}\" role=\"img\">\
         <title>{t}</title><text class=\"ptitle\" x=\"4\" y=\"16\">{t}</text>",
        t = escape_xml(&title)
    );
    if rows.is_empty() {
        let _ = write!(
            s,
            "<text class=\"lg\" x=\"4\" y=\"42\">no per-tensor error reported</text>"
        );
    }
    let scale = if scale_max > 0.0 && scale_max.is_finite() {
        scale_max
    } else {
        1.0
    };
    for (i, t) in rows.iter().enumerate() {
        let y = 30.0 + ROW * i as f64;
        let w = (t.rel_error / scale).clamp(0.0, 1.0) * BAR_W;
        let _ = write!(
            s,
            "<g class=\"bar\"><title>{}: {}</title>\
             <text class=\"lbl\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\
             <rect x=\"{BAR_X}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{:.1}\"/>\
             <text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\">{}</text></g>",
            escape_xml(&t.tensor),
            super::fmt_err(t.rel_error),
            BAR_X - 6.0,
            y + 11.0,
            escape_xml(&short_tensor(&t.tensor)),
            y + 2.0,
            ROW - 4.0,
            BAR_X + w + 4.0,
            y + 11.0,
            super::fmt_err(t.rel_error)
        );
    }
    s.push_str("</svg>");
    s
}

/// A line plot of `(x, y)` points (a training curve), axes from the data's range.
pub(crate) fn line(title: &str, x_label: &str, y_label: &str, pts: &[(f64, f64)]) -> String {
    const LW: f64 = 420.0;
    const LH: f64 = 240.0;
    let (l, r, t, b) = (56.0, LW - 16.0, 34.0, LH - 40.0);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"plot\" width=\"{LW}\" height=\"{LH}\" \
         viewBox=\"0 0 {LW} {LH}\" role=\"img\" aria-label=\"{}\">\
         <text class=\"title\" x=\"{l}\" y=\"18\">{}</text>",
        escape_xml(title),
        escape_xml(title)
    );
    let finite: Vec<(f64, f64)> = pts
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    if finite.is_empty() {
        s.push_str("<text class=\"lg\" x=\"60\" y=\"120\">no points</text></svg>");
        return s;
    }
    let (x0, x1) = finite
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.0), b.max(p.0))
        });
    let (y0, y1) = finite
        .iter()
        .fold((f64::INFINITY, 0f64), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let y0 = y0.min(0.0);
    let sx = |x: f64| l + (x - x0) / (x1 - x0).max(f64::MIN_POSITIVE) * (r - l);
    let sy = |y: f64| b - (y - y0) / (y1 - y0).max(f64::MIN_POSITIVE) * (b - t);
    let _ = write!(
        s,
        "<line class=\"axis\" x1=\"{l}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\"/>\
         <line class=\"axis\" x1=\"{l}\" y1=\"{t}\" x2=\"{l}\" y2=\"{b}\"/>\
         <text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{y1:.2}</text>\
         <text class=\"tick\" x=\"{:.1}\" y=\"{b}\" text-anchor=\"end\">{y0:.2}</text>\
         <text class=\"tick\" x=\"{l}\" y=\"{:.1}\">{x0}</text>\
         <text class=\"tick\" x=\"{r}\" y=\"{:.1}\" text-anchor=\"end\">{x1}</text>\
         <text class=\"axt\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\
         <text class=\"axt\" x=\"14\" y=\"{:.1}\" transform=\"rotate(-90 14 {:.1})\" text-anchor=\"middle\">{}</text>",
        l - 4.0,
        t + 4.0,
        l - 4.0,
        b + 14.0,
        b + 14.0,
        (l + r) / 2.0,
        b + 30.0,
        escape_xml(x_label),
        (t + b) / 2.0,
        (t + b) / 2.0,
        escape_xml(y_label)
    );
    let path: Vec<String> = finite
        .iter()
        .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
        .collect();
    let _ = write!(
        s,
        "<polyline class=\"curve\" fill=\"none\" stroke=\"currentColor\" points=\"{}\"/></svg>",
        path.join(" ")
    );
    s
}
