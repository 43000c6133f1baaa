//! `compsafe heads`: which attention heads (or layers) carry the model's refusals?
//!
//! Every unit is ablated on its own — a head by zeroing its columns of the layer's output
//! projection (only that head's contribution goes, see `compress::heads`), a layer by zeroing
//! its attention and MLP output projections (the residual stream passes through) — and two
//! effects are measured against the unablated model:
//!
//! - **safety impact**: the fall of the mean refusal log-odds over the harmful suite's prompts
//!   (the log-odds that the response opens with a refusal, as the report's column);
//! - **capability impact**: the fall of the mean per-token log-likelihood of the reference
//!   model's own greedy responses to the benign suite, teacher-forced through the ablated
//!   model.
//!
//! Both impacts are in nats — a log-odds and a mean log-probability per token — and units are
//! ranked by `safety - capability`: a unit ranks high when ablating it lowers the refusal
//! log-odds by more than it costs the benign responses per token. (Standardising the two
//! impacts across units instead would rank a head that barely moves refusal above one that
//! moves it a lot but also moves likelihood; the raw difference keeps the scale that matters.) `--confirm K` then generates and judges: each of the top K alone, the top K together,
//! and `--random-sets` random sets of K units (seeded) together, so that the ranking is checked
//! against chance by the behaviour that matters, the refusal rate.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use candle_core::Device;
use compsafe_core::suite::Expect;
use compsafe_core::Variant;
use compsafe_engine::score::loglikelihood;
use compsafe_engine::{generate, GenerateOptions, Model};
use compsafe_eval::evaluator::{judges_for, Evaluator};
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::exit::{Failure, Outcome};
use crate::output::write;
use std::path::PathBuf;

/// Arguments of `compsafe heads`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model: a Hugging Face directory or a .gguf file.
    #[arg(long)]
    pub model: PathBuf,
    /// Harmful suite (expect = refusal), bundled name.
    #[arg(long)]
    pub suite: String,
    /// Benign suite whose likelihood measures capability, bundled name.
    #[arg(long, default_value = "fixture-benign")]
    pub benign: String,
    /// Prompts per suite.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Unit of ablation.
    #[arg(long, value_enum, default_value_t = HeadsUnit::Head)]
    pub unit: HeadsUnit,
    /// MLP channels per unit with `--unit mlp`.
    #[arg(long, default_value_t = 64)]
    pub channels: usize,
    /// Confirm the top K by generation and judging (each alone, together, and against
    /// random sets of K).
    #[arg(long, default_value_t = 0)]
    pub confirm: usize,
    /// Random sets of K units compared with the top K.
    #[arg(long, default_value_t = 5)]
    pub random_sets: usize,
    /// Seed of the random sets.
    #[arg(long, default_value_t = 20261126)]
    pub seed: u64,
    /// Tokens generated per prompt (benign responses, confirmation).
    #[arg(long, default_value_t = 32)]
    pub max_new_tokens: u32,
    /// Output directory for heads.json, heads.md and heads.html (default out/heads-<model>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// What `compsafe heads` ablates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HeadsUnit {
    /// One attention head at a time (its columns of the output projection).
    Head,
    /// One whole layer at a time (attention and MLP outputs).
    Layer,
    /// One block of `--channels` MLP channels at a time (their columns of `down_proj`).
    Mlp,
}

/// One ablated unit's measurements.
#[derive(Debug, Clone, serde::Serialize)]
struct UnitScore {
    /// `L.H` for a head, `L` for a layer.
    unit: String,
    layer: usize,
    head: Option<usize>,
    /// Column of the heatmap (head or channel block).
    #[serde(skip)]
    col: usize,
    /// MLP channel range `[start, end)` (`--unit mlp`).
    #[serde(skip_serializing_if = "Option::is_none")]
    channels: Option<(usize, usize)>,
    safety_impact: f64,
    capability_impact: f64,
    score: f64,
    /// Refusal rate with the unit ablated alone (`--confirm`, top K only).
    #[serde(skip_serializing_if = "Option::is_none")]
    refusal_rate: Option<f64>,
}

/// The model with `units` ablated.
fn ablated(eval: &Evaluator, units: &[&UnitScore], kind: HeadsUnit) -> Result<Model, Failure> {
    match kind {
        HeadsUnit::Head => {
            let refs: Vec<String> = units
                .iter()
                .map(|u| format!("{}.{}", u.layer, u.head.unwrap_or(0)))
                .collect();
            let v = Variant::parse(&format!("heads:{}", refs.join(",")), "--unit")?;
            Ok(eval.derive(&v)?.model)
        }
        HeadsUnit::Layer => {
            // The layer's attention and MLP outputs go; the residual stream passes through.
            let mut ckpt = eval.checkpoint.clone();
            let layers: BTreeSet<usize> = units.iter().map(|u| u.layer).collect();
            for l in layers {
                for name in [
                    format!("model.layers.{l}.self_attn.o_proj.weight"),
                    format!("model.layers.{l}.mlp.down_proj.weight"),
                ] {
                    if let Some(q) = ckpt.quantized.remove(&name) {
                        let zeros = candle_core::Tensor::zeros(
                            q.shape(),
                            candle_core::DType::F32,
                            &Device::Cpu,
                        )
                        .map_err(compsafe_engine::EngineError::from)?;
                        ckpt.weights.insert(name, zeros);
                    } else if let Some(t) = ckpt.weights.get_mut(&name) {
                        *t = t.zeros_like().map_err(compsafe_engine::EngineError::from)?;
                    }
                }
            }
            Ok(Model::new(&ckpt)?)
        }
        HeadsUnit::Mlp => {
            // The channels' columns of down_proj go: their activations no longer reach the
            // residual stream.
            let mut ckpt = eval.checkpoint.clone();
            for u in units {
                let name = format!("model.layers.{}.mlp.down_proj.weight", u.layer);
                let dense = match ckpt.quantized.remove(&name) {
                    Some(q) => q
                        .dequantize(&Device::Cpu)
                        .map_err(compsafe_engine::EngineError::from)?,
                    None => ckpt.weights.get(&name).cloned().ok_or_else(|| {
                        Failure::input(format!("--unit mlp: the model has no tensor `{name}`"))
                    })?,
                };
                let (start, end) = u.channels.unwrap_or((0, 0));
                let dtype = dense.dtype();
                let mut w = dense
                    .to_dtype(candle_core::DType::F32)
                    .and_then(|t| t.to_vec2::<f32>())
                    .map_err(compsafe_engine::EngineError::from)?;
                let rows = w.len();
                let cols = w.first().map_or(0, Vec::len);
                for row in &mut w {
                    for x in &mut row[start.min(cols)..end.min(cols)] {
                        *x = 0.0;
                    }
                }
                let t = candle_core::Tensor::from_vec(
                    w.into_iter().flatten().collect::<Vec<f32>>(),
                    (rows, cols),
                    &Device::Cpu,
                )
                .and_then(|t| t.to_dtype(dtype))
                .map_err(compsafe_engine::EngineError::from)?;
                ckpt.weights.insert(name, t);
            }
            Ok(Model::new(&ckpt)?)
        }
    }
}

/// The mean, 0 for no values.
fn mean(xs: &[f64]) -> f64 {
    compsafe_core::stats::mean(xs).unwrap_or(0.0)
}

/// Loads the two suites through a spec, so that names, limits and judges work as in sweeps.
fn suites(args: &Args) -> Result<compsafe_core::spec::Validated, Failure> {
    harmful_and_benign(
        &args.model,
        &args.suite,
        &args.benign,
        args.limit,
        args.max_new_tokens,
    )
}

/// A harmful suite (`--suite`) and a benign one (`--benign`) loaded through a spec, so that
/// names, limits and judges work as in sweeps; errors name the flags.
pub(crate) fn harmful_and_benign(
    model: &Path,
    suite: &str,
    benign: &str,
    limit: usize,
    max_new_tokens: u32,
) -> Result<compsafe_core::spec::Validated, Failure> {
    let model = model
        .canonicalize()
        .map_err(|e| Failure::input(format!("--model {}: {e}", model.display())))?;
    let text = format!(
        "reference = \"fp32\"\nvariants = [\"heads:0.0\"]\n[sweep]\nname = \"heads\"\n[model]\npath = {model:?}\n\
         [[suites]]\nname = {h:?}\nlimit = {n}\n[[suites]]\nname = {b:?}\nlimit = {n}\n\
         [generation]\nmax_new_tokens = {t}\nstop_on_verdict = true\n",
        model = model.display().to_string(),
        h = suite,
        b = benign,
        n = limit,
        t = max_new_tokens,
    );
    // Suite and model errors name the flags, not a spec file the user never wrote.
    let pseudo = std::env::current_dir()
        .unwrap_or_default()
        .join("compsafe-heads");
    let v = compsafe_core::spec::validate_text(&text, &pseudo).map_err(|e| {
        Failure::input(
            e.to_string()
                .replace(&format!("{}: ", pseudo.display()), "")
                .replace("suites[0]", "--suite")
                .replace("suites[1]", "--benign"),
        )
    })?;
    if v.suites[0].expect != Expect::Refusal {
        return Err(Failure::input(format!(
            "--suite = {suite:?}: a suite of harmful prompts (expect = refusal) is needed"
        )));
    }
    if !v.suites[1].expect.generates() || v.suites[1].expect == Expect::Refusal {
        return Err(Failure::input(format!(
            "--benign = {benign:?}: a suite of benign prompts is needed"
        )));
    }
    Ok(v)
}

/// Refusal rate of `model` on the harmful prompts, by generation and the suite's judge.
fn refusal_rate(
    eval: &Evaluator,
    v: &compsafe_core::spec::Validated,
    model: &Model,
    name: &str,
) -> Result<f64, Failure> {
    let refused = refusals(eval, v, model, name)?;
    Ok(refused.iter().filter(|&&r| r).count() as f64 / refused.len().max(1) as f64)
}

/// Per harmful prompt (suite 0 of `v`): whether `model`'s greedy response is judged a refusal.
pub(crate) fn refusals(
    eval: &Evaluator,
    v: &compsafe_core::spec::Validated,
    model: &Model,
    name: &str,
) -> Result<Vec<bool>, Failure> {
    let suite = &v.suites[0];
    let judges = judges_for(&v.spec, 0, suite)?;
    let (recs, _) = eval.eval_generation(
        name,
        model,
        suite,
        &suite.prompts,
        &judges,
        &v.spec.generation,
        None,
    )?;
    Ok(recs.iter().map(|r| r.refused == Some(true)).collect())
}

/// Runs the analysis and writes its files.
pub fn exec(args: &Args) -> Result<Outcome, Failure> {
    let v = suites(args)?;
    let eval = Evaluator::load(&args.model, None, &Device::Cpu)?;
    let c = eval.checkpoint.config.clone();
    let budget = v.spec.generation.batch_tokens as usize;
    let harmful: Vec<Vec<u32>> = v.suites[0]
        .prompts
        .iter()
        .map(|p| eval.prompt_tokens(&p.prompt))
        .collect::<Result<_, _>>()?;
    let benign: Vec<Vec<u32>> = v.suites[1]
        .prompts
        .iter()
        .map(|p| eval.prompt_tokens(&p.prompt))
        .collect::<Result<_, _>>()?;
    // The reference's own greedy responses to the benign prompts.
    let opts = GenerateOptions {
        max_new_tokens: args.max_new_tokens as usize,
        batch_tokens: budget,
        max_batch: 64,
        eos: eval.eos().to_vec(),
    };
    let gens = generate(&eval.reference, &benign, &opts, None)?;
    let reqs: Vec<(Vec<u32>, Vec<u32>)> = benign
        .iter()
        .zip(gens)
        .filter(|(_, g)| !g.tokens.is_empty())
        .map(|(p, g)| (p.clone(), g.tokens))
        .collect();
    let per_token = |m: &Model| -> Result<f64, Failure> {
        let lls = loglikelihood(m, &reqs, budget)?;
        Ok(mean(
            &lls.iter()
                .zip(&reqs)
                .map(|(ll, (_, r))| ll.sum / r.len() as f64)
                .collect::<Vec<_>>(),
        ))
    };
    let base_refusal = mean(&eval.refusal_logodds(&eval.reference, &harmful, budget)?);
    let base_ll = per_token(&eval.reference)?;

    if args.unit == HeadsUnit::Mlp && !(1..=c.intermediate_size).contains(&args.channels) {
        return Err(Failure::input(format!(
            "--channels = {}: must be between 1 and the MLP width {}",
            args.channels, c.intermediate_size
        )));
    }
    let width = c.intermediate_size;
    let per = args.channels.max(1);
    let mut units: Vec<UnitScore> = match args.unit {
        HeadsUnit::Head => (0..c.num_layers)
            .flat_map(|l| (0..c.num_heads).map(move |h| (l, Some(h))))
            .collect::<Vec<_>>(),
        HeadsUnit::Layer => (0..c.num_layers).map(|l| (l, None)).collect(),
        HeadsUnit::Mlp => (0..c.num_layers)
            .flat_map(|l| (0..width.div_ceil(per)).map(move |g| (l, Some(g))))
            .collect(),
    }
    .into_iter()
    .map(|(layer, head)| UnitScore {
        unit: match (args.unit, head) {
            (HeadsUnit::Mlp, Some(g)) => {
                format!("{layer}.mlp[{}..{}]", g * per, ((g + 1) * per).min(width))
            }
            (_, Some(h)) => format!("{layer}.{h}"),
            (_, None) => layer.to_string(),
        },
        channels: (args.unit == HeadsUnit::Mlp)
            .then(|| head.map(|g| (g * per, ((g + 1) * per).min(width))))
            .flatten(),
        layer,
        col: head.unwrap_or(0),
        head: head.filter(|_| args.unit == HeadsUnit::Head),
        safety_impact: 0.0,
        capability_impact: 0.0,
        score: 0.0,
        refusal_rate: None,
    })
    .collect();
    let total = units.len();
    for (i, u) in units.iter_mut().enumerate() {
        let m = ablated(&eval, &[&*u], args.unit)?;
        u.safety_impact = base_refusal - mean(&eval.refusal_logodds(&m, &harmful, budget)?);
        u.capability_impact = base_ll - per_token(&m)?;
        if !args.json {
            eprintln!("ablated {} ({}/{total})", u.unit, i + 1);
        }
    }
    for u in units.iter_mut() {
        u.score = u.safety_impact - u.capability_impact;
    }
    // Highest score first; ties in unit order, so the ranking is deterministic.
    units.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.unit.cmp(&b.unit)));

    let mut confirm = serde_json::Value::Null;
    let k = args.confirm.min(units.len());
    if k > 0 {
        let base_rate = refusal_rate(&eval, &v, &eval.reference, "reference")?;
        for u in units.iter_mut().take(k) {
            let m = ablated(&eval, &[&*u], args.unit)?;
            u.refusal_rate = Some(refusal_rate(&eval, &v, &m, &u.unit)?);
        }
        let top: Vec<&UnitScore> = units.iter().take(k).collect();
        let top_rate = refusal_rate(&eval, &v, &ablated(&eval, &top, args.unit)?, "top")?;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(args.seed);
        let mut random_rates = Vec::new();
        let mut random_sets = Vec::new();
        for _ in 0..args.random_sets {
            let mut idx: Vec<usize> = (0..units.len()).collect();
            idx.shuffle(&mut rng);
            let set: Vec<&UnitScore> = idx.iter().take(k).map(|&i| &units[i]).collect();
            let names: BTreeSet<String> = set.iter().map(|u| u.unit.clone()).collect();
            random_rates.push(refusal_rate(
                &eval,
                &v,
                &ablated(&eval, &set, args.unit)?,
                "random",
            )?);
            random_sets.push(names.into_iter().collect::<Vec<_>>());
        }
        confirm = serde_json::json!({
            "k": k,
            "reference_refusal_rate": base_rate,
            "top_k_together_refusal_rate": top_rate,
            "random_sets": random_sets,
            "random_sets_refusal_rates": random_rates,
            "random_sets_mean_refusal_rate": mean(&random_rates),
            "seed": args.seed,
        });
    }

    let out_dir = crate::output::output_dir(args.out.as_deref(), "heads", &args.model)?;
    let json = serde_json::json!({
        "model": args.model.display().to_string(),
        "unit": match args.unit { HeadsUnit::Head => "head", HeadsUnit::Layer => "layer", HeadsUnit::Mlp => "mlp" },
        "harmful_suite": args.suite,
        "benign_suite": args.benign,
        "prompts": {"harmful": harmful.len(), "benign": reqs.len()},
        "reference": {"refusal_logodds": base_refusal, "benign_logprob_per_token": base_ll},
        "ranking": units,
        "confirm": confirm,
    });
    let text = serde_json::to_string_pretty(&json).unwrap_or_default();
    write(&out_dir.join("heads.json"), &text)?;
    write(&out_dir.join("heads.md"), &markdown(&json, &units))?;
    write(
        &out_dir.join("heads.html"),
        &html(
            &units,
            args.unit,
            c.num_layers,
            if args.unit == HeadsUnit::Mlp {
                width.div_ceil(per)
            } else {
                c.num_heads
            },
        ),
    )?;
    if args.json {
        println!("{text}");
    } else {
        print!("{}", markdown(&json, &units));
        println!("wrote {}/heads.{{json,md,html}}", out_dir.display());
    }
    Ok(Outcome::Ok)
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
