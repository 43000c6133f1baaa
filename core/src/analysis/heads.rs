//! `[analysis.heads]` / `compsafe heads`: which attention heads (or layers, or MLP channel
//! blocks) carry the model's refusals.
//!
//! Every unit is ablated on its own — a head by zeroing its columns of the layer's output
//! projection (only that head's contribution goes), a layer by zeroing its attention and MLP
//! output projections (the residual stream passes through), an MLP block by zeroing its
//! columns of `down_proj` — and two effects are measured against the unablated model:
//!
//! - **safety impact**: the fall of the mean refusal log-odds over the harmful suite's prompts
//!   (the log-odds that the response opens with a refusal, as the report's column);
//! - **capability impact**: the fall of the mean per-token log-likelihood of the reference
//!   model's own greedy responses to the benign suite, teacher-forced through the ablated
//!   model.
//!
//! Both impacts are in nats, and units are ranked by `safety - capability`: a unit ranks high
//! when ablating it lowers the refusal log-odds by more than it costs the benign responses per
//! token. (Standardising the two impacts across units instead would rank a head that barely
//! moves refusal above one that moves it a lot but also moves likelihood; the raw difference
//! keeps the scale that matters.) With `confirm = K` the top K are generated and judged: each
//! alone, the top K together, and `random_sets` random sets of K units (seeded) together, so
//! that the ranking is checked against chance by the behaviour that matters, the refusal rate.
//!
//! As work units: a baseline (the unablated model's figures and the list of units), scan
//! slices (each ablates its share of the units) and, with `confirm`, one confirmation unit.
//! This module holds the data they exchange, the ranking and the rendering.

use std::fmt::Write as _;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::spec::HeadsUnit;

/// One unit that can be ablated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitDesc {
    /// `L.H` for a head, `L` for a layer, `L.mlp[A..B]` for a channel block.
    pub unit: String,
    /// Decoder layer.
    pub layer: usize,
    /// Attention head (`unit = "head"`).
    pub head: Option<usize>,
    /// Column of the heatmap (head or channel block).
    pub col: usize,
    /// MLP channel range `[start, end)` (`unit = "mlp"`).
    pub channels: Option<(usize, usize)>,
}

/// The units of a model: every head of every layer, every layer, or every block of
/// `channels` MLP channels of every layer.
pub fn units(
    kind: HeadsUnit,
    layers: usize,
    heads: usize,
    width: usize,
    channels: usize,
) -> Vec<UnitDesc> {
    let per = channels.max(1);
    let cells: Vec<(usize, Option<usize>)> = match kind {
        HeadsUnit::Head => (0..layers)
            .flat_map(|l| (0..heads).map(move |h| (l, Some(h))))
            .collect(),
        HeadsUnit::Layer => (0..layers).map(|l| (l, None)).collect(),
        HeadsUnit::Mlp => (0..layers)
            .flat_map(|l| (0..width.div_ceil(per)).map(move |g| (l, Some(g))))
            .collect(),
    };
    cells
        .into_iter()
        .map(|(layer, col)| {
            let channels = match (kind, col) {
                (HeadsUnit::Mlp, Some(g)) => Some((g * per, ((g + 1) * per).min(width))),
                _ => None,
            };
            UnitDesc {
                unit: match (kind, col, channels) {
                    (HeadsUnit::Mlp, _, Some((a, b))) => format!("{layer}.mlp[{a}..{b}]"),
                    (_, Some(h), _) => format!("{layer}.{h}"),
                    _ => layer.to_string(),
                },
                layer,
                head: col.filter(|_| kind == HeadsUnit::Head),
                col: col.unwrap_or(0),
                channels,
            }
        })
        .collect()
}

/// What the baseline unit measured on the unablated model, and the units to scan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadsBaseline {
    /// Mean refusal log-odds over the harmful prompts.
    pub refusal_logodds: f64,
    /// Mean per-token log-likelihood of the reference's own benign responses.
    pub benign_logprob_per_token: f64,
    /// Harmful prompts.
    pub harmful: usize,
    /// Benign prompts with a non-empty response (the ones scored).
    pub benign: usize,
    /// The benign prompts and the reference's responses, as tokens, teacher-forced through
    /// every ablated model.
    pub benign_requests: Vec<(Vec<u32>, Vec<u32>)>,
    /// Decoder layers (rows of the heatmap).
    pub layers: usize,
    /// Columns of the heatmap: heads per layer, or channel blocks per layer.
    pub cols: usize,
    /// The units, in scan order.
    pub units: Vec<UnitDesc>,
}

/// One scanned unit's impacts, by its index in [`HeadsBaseline::units`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScanItem {
    /// Index in the baseline's unit list.
    pub index: usize,
    /// Fall of the mean refusal log-odds.
    pub safety_impact: f64,
    /// Fall of the benign log-likelihood per token.
    pub capability_impact: f64,
}

/// One ablated unit's measurements, as heads.json ranks them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnitScore {
    /// `L.H`, `L` or `L.mlp[A..B]`.
    pub unit: String,
    /// Decoder layer.
    pub layer: usize,
    /// Attention head.
    pub head: Option<usize>,
    /// Column of the heatmap (head or channel block).
    #[serde(skip)]
    pub col: usize,
    /// MLP channel range `[start, end)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<(usize, usize)>,
    /// Fall of the mean refusal log-odds.
    pub safety_impact: f64,
    /// Fall of the benign log-likelihood per token.
    pub capability_impact: f64,
    /// `safety_impact - capability_impact`.
    pub score: f64,
    /// Refusal rate with the unit ablated alone (confirmation, top K only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal_rate: Option<f64>,
}

/// The units ranked, highest score first (ties in unit order, so the ranking is
/// deterministic), from the baseline and every scan slice's items.
pub fn rank(baseline: &HeadsBaseline, items: &[ScanItem]) -> Result<Vec<UnitScore>, String> {
    let mut seen = vec![false; baseline.units.len()];
    let mut units = Vec::with_capacity(items.len());
    for it in items {
        let d = baseline
            .units
            .get(it.index)
            .ok_or_else(|| format!("scan item {} beyond the {} units", it.index, seen.len()))?;
        if std::mem::replace(&mut seen[it.index], true) {
            return Err(format!("unit {} scanned twice", d.unit));
        }
        units.push(UnitScore {
            unit: d.unit.clone(),
            layer: d.layer,
            head: d.head,
            col: d.col,
            channels: d.channels,
            safety_impact: it.safety_impact,
            capability_impact: it.capability_impact,
            score: it.safety_impact - it.capability_impact,
            refusal_rate: None,
        });
    }
    if let Some(i) = seen.iter().position(|s| !s) {
        return Err(format!("unit {} was not scanned", baseline.units[i].unit));
    }
    units.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.unit.cmp(&b.unit)));
    Ok(units)
}

/// The random sets of `k` units the top `k` are compared with: `sets` shuffles of the
/// ranked units' indices from one generator seeded with `seed`, the first `k` of each.
pub fn random_sets(n: usize, k: usize, sets: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..sets)
        .map(|_| {
            let mut idx: Vec<usize> = (0..n).collect();
            idx.shuffle(&mut rng);
            idx.truncate(k);
            idx
        })
        .collect()
}

/// What the confirmation unit measured by generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadsConfirm {
    /// How many of the top units were confirmed.
    pub k: usize,
    /// Refusal rate of the unablated model.
    pub reference_refusal_rate: f64,
    /// Refusal rate with each of the top `k` ablated alone, in rank order.
    pub alone: Vec<f64>,
    /// Refusal rate with the top `k` ablated together.
    pub top_k_together_refusal_rate: f64,
    /// The random sets (unit names, sorted).
    pub random_sets: Vec<Vec<String>>,
    /// Their refusal rates.
    pub random_sets_refusal_rates: Vec<f64>,
    /// Seed of the random sets.
    pub seed: u64,
}

/// The files of the analysis: heads.json, heads.md and heads.html.
pub struct HeadsFiles {
    /// heads.json.
    pub json: serde_json::Value,
    /// heads.md.
    pub markdown: String,
    /// heads.html.
    pub html: String,
}

/// Everything `compsafe heads` writes, from the baseline, the ranked units and the
/// confirmation (if any).
pub fn files(
    model: &str,
    kind: HeadsUnit,
    suites: (&str, &str),
    baseline: &HeadsBaseline,
    mut ranked: Vec<UnitScore>,
    confirm: Option<&HeadsConfirm>,
) -> HeadsFiles {
    let confirm_json = match confirm {
        None => serde_json::Value::Null,
        Some(c) => {
            for (u, r) in ranked.iter_mut().zip(&c.alone) {
                u.refusal_rate = Some(*r);
            }
            serde_json::json!({
                "k": c.k,
                "reference_refusal_rate": c.reference_refusal_rate,
                "top_k_together_refusal_rate": c.top_k_together_refusal_rate,
                "random_sets": c.random_sets,
                "random_sets_refusal_rates": c.random_sets_refusal_rates,
                "random_sets_mean_refusal_rate": crate::stats::mean(&c.random_sets_refusal_rates).unwrap_or(0.0),
                "seed": c.seed,
            })
        }
    };
    let json = serde_json::json!({
        "model": model,
        "unit": kind.name(),
        "harmful_suite": suites.0,
        "benign_suite": suites.1,
        "prompts": {"harmful": baseline.harmful, "benign": baseline.benign},
        "reference": {
            "refusal_logodds": baseline.refusal_logodds,
            "benign_logprob_per_token": baseline.benign_logprob_per_token,
        },
        "ranking": ranked,
        "confirm": confirm_json,
    });
    let markdown = markdown(&json, &ranked);
    let html = html(&ranked, kind, baseline.layers, baseline.cols);
    HeadsFiles {
        json,
        markdown,
        html,
    }
}

fn markdown(json: &serde_json::Value, units: &[UnitScore]) -> String {
    let mut s = String::new();
    let _ =
        writeln!(
        s,
        "# Safety-critical {}s of {}\n\nHarmful suite `{}`, benign suite `{}`. Reference: mean \
         refusal log-odds {:.3}, benign log-prob per token {:.4}.\n",
        json["unit"].as_str().unwrap_or(""),
        json["model"].as_str().unwrap_or(""),
        json["harmful_suite"].as_str().unwrap_or(""),
        json["benign_suite"].as_str().unwrap_or(""),
        json["reference"]["refusal_logodds"].as_f64().unwrap_or(0.0),
        json["reference"]["benign_logprob_per_token"].as_f64().unwrap_or(0.0),
    );
    let _ = writeln!(
        s,
        "| rank | unit | refusal log-odds drop | benign log-prob drop | score | refusal rate alone |\n|---|---|---|---|---|---|"
    );
    for (i, u) in units.iter().enumerate() {
        let _ = writeln!(
            s,
            "| {} | {} | {:+.4} | {:+.5} | {:+.3} | {} |",
            i + 1,
            u.unit,
            u.safety_impact,
            u.capability_impact,
            u.score,
            u.refusal_rate
                .map_or("—".to_string(), |r| format!("{r:.3}"))
        );
    }
    let c = &json["confirm"];
    if !c.is_null() {
        let _ =
            writeln!(
            s,
            "\nConfirmation by generation: refusal rate {:.3} unablated; top {} ablated together \
             {:.3}; {} random sets of {} together {:.3} on average ({}).",
            c["reference_refusal_rate"].as_f64().unwrap_or(0.0),
            c["k"],
            c["top_k_together_refusal_rate"].as_f64().unwrap_or(0.0),
            c["random_sets_refusal_rates"].as_array().map_or(0, Vec::len),
            c["k"],
            c["random_sets_mean_refusal_rate"].as_f64().unwrap_or(0.0),
            c["random_sets_refusal_rates"]
                .as_array()
                .map(|a| a
                    .iter()
                    .map(|x| format!("{:.3}", x.as_f64().unwrap_or(0.0)))
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default()
        );
    }
    s
}

/// A layer x head heatmap of the refusal log-odds drop (red: ablating lowers refusal).
fn html(units: &[UnitScore], kind: HeadsUnit, layers: usize, heads: usize) -> String {
    let cols = if kind == HeadsUnit::Layer { 1 } else { heads };
    let max = units
        .iter()
        .map(|u| u.safety_impact.abs())
        .fold(1e-12, f64::max);
    let mut s = String::from(
        "<!doctype html><meta charset=\"utf-8\"><title>compsafe heads</title>\
         <style>body{font-family:sans-serif}td{width:4em;height:2em;text-align:center;\
         font-size:12px;border:1px solid #ddd}</style>\
         <h1>Refusal log-odds drop when each unit is ablated</h1><table><tr><th>layer</th>",
    );
    for h in 0..cols {
        let _ = write!(
            s,
            "<th>{}</th>",
            match kind {
                HeadsUnit::Layer => "layer".into(),
                HeadsUnit::Head => format!("head {h}"),
                HeadsUnit::Mlp => format!("block {h}"),
            }
        );
    }
    s.push_str("</tr>");
    for l in 0..layers {
        let _ = write!(s, "<tr><th>{l}</th>");
        for h in 0..cols {
            let u = units
                .iter()
                .find(|u| u.layer == l && (cols == 1 || u.col == h));
            match u {
                Some(u) => {
                    let a = (u.safety_impact / max).clamp(-1.0, 1.0);
                    let (r, g, b) = if a >= 0.0 {
                        (255, (255.0 * (1.0 - a)) as u8, (255.0 * (1.0 - a)) as u8)
                    } else {
                        ((255.0 * (1.0 + a)) as u8, (255.0 * (1.0 + a)) as u8, 255)
                    };
                    let _ = write!(
                        s,
                        "<td style=\"background:rgb({r},{g},{b})\" title=\"score {:.3}\">{:+.3}</td>",
                        u.score, u.safety_impact
                    );
                }
                None => s.push_str("<td></td>"),
            }
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>\n");
    s
}
