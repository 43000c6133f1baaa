//! `compsafe layers`: per-tensor error of one variant, worst first; `compsafe boundary`:
//! weights at rounding boundaries.

use candle_core::Device;
use compsafe_core::Variant;
use compsafe_engine::{variant, Checkpoint};

use crate::cli::{BoundaryArgs, LayersArgs};
use crate::exit::{Failure, Outcome};

pub fn run(args: &LayersArgs) -> Result<Outcome, Failure> {
    let mut v = Variant::parse(&args.variant, "--variant")?;
    v.select = args.select.clone();
    if let compsafe_core::Method::Checkpoint { .. } = v.method {
        return Err(Failure::input(
            "--variant: a checkpoint has no per-tensor error against the reference",
        ));
    }
    let ckpt = Checkpoint::load(&args.model, &Device::Cpu)?;
    let compressed = variant::compress(&ckpt, &v)?;
    let mut rows = compressed.worst_first();
    if let Some(k) = args.top {
        rows.truncate(k);
    }
    if args.json {
        let out = serde_json::json!({
            "model": args.model.display().to_string(),
            "variant": v.name,
            "mean_rel_error": compressed.mean_rel_error(),
            "bits_per_weight": compressed.bits_per_weight(),
            "tensors": rows.iter().map(|s| serde_json::json!({
                "tensor": s.name, "rel_error": s.rel_error, "bits_per_weight": s.bits_per_weight,
                "numel": s.numel, "bytes": s.bytes, "note": s.note,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(Outcome::Ok);
    }
    let width = rows.iter().map(|s| s.name.len()).max().unwrap_or(6).max(6);
    println!(
        "{:<width$}  {:>10}  {:>6}  note",
        "tensor", "rel_error", "bpw"
    );
    for s in &rows {
        println!(
            "{:<width$}  {:>10.6}  {:>6.3}  {}",
            s.name,
            s.rel_error,
            s.bits_per_weight,
            s.note.as_deref().unwrap_or("")
        );
    }
    if let Some(m) = compressed.mean_rel_error() {
        println!(
            "{} tensors, mean rel_error {m:.6}, {:.3} bits/weight over compressed tensors",
            compressed.stats.len(),
            compressed.bits_per_weight().unwrap_or(0.0)
        );
    }
    Ok(Outcome::Ok)
}

/// `compsafe boundary`.
pub fn boundary(args: &BoundaryArgs) -> Result<Outcome, Failure> {
    let v = Variant::parse(&args.variant, "--variant")?;
    let select = args
        .select
        .as_deref()
        .map(regex::Regex::new)
        .transpose()
        .map_err(|e| Failure::input(format!("--select: {e}")))?;
    let ckpt = Checkpoint::load(&args.model, &Device::Cpu)?;
    let stats = compsafe_engine::compress::boundary::boundary_stats(
        &ckpt.weights,
        &v.method,
        select.as_ref(),
        args.epsilon,
        args.alpha,
    )?;
    if stats.is_empty() {
        return Err(Failure::input(format!(
            "{}: no tensor matches the selection",
            args.model.display()
        )));
    }
    let flagged = stats.iter().filter(|s| s.flagged).count();
    if args.json {
        let out = serde_json::json!({
            "model": args.model.display().to_string(),
            "variant": v.name,
            "epsilon": args.epsilon,
            "alpha": args.alpha,
            "expected_fraction": 2.0 * args.epsilon,
            "flagged": flagged,
            "tensors": stats.iter().map(|s| serde_json::json!({
                "tensor": s.name, "n": s.n, "near": s.near, "fraction": s.fraction,
                "p": s.p, "p_holm": s.p_holm, "flagged": s.flagged,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        let width = stats.iter().map(|s| s.name.len()).max().unwrap_or(6).max(6);
        println!(
            "{:<width$}  {:>9}  {:>8}  {:>9}  flag",
            "tensor", "n", "near", "p (Holm)"
        );
        for s in &stats {
            println!(
                "{:<width$}  {:>9}  {:>8.4}  {:>9.2e}  {}",
                s.name,
                s.n,
                s.fraction,
                s.p_holm,
                if s.flagged { "ANOMALY" } else { "" }
            );
        }
        println!(
            "{} tensors, {flagged} flagged; trained weights put {:.3} of their weights within \
             {} of a step from a boundary",
            stats.len(),
            2.0 * args.epsilon,
            args.epsilon
        );
    }
    Ok(if flagged > 0 {
        Outcome::CheckFailed
    } else {
        Outcome::Ok
    })
}
