//! `compsafe boundary`: weights piled at rounding boundaries, per tensor (exit 1 when a tensor is flagged).

use std::path::PathBuf;

use candle_core::Device;
use compsafe_core::Variant;
use compsafe_engine::Checkpoint;

use crate::exit::{Failure, Outcome};

/// Arguments of `compsafe boundary`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model: a Hugging Face directory or a .gguf file.
    #[arg(long)]
    pub model: PathBuf,
    /// The quantizer whose boundaries to test: intN[:gG][:asym] or gguf:q8_0.
    #[arg(long)]
    pub variant: String,
    /// Regex over tensor names to examine instead of the default linear weights.
    #[arg(long)]
    pub select: Option<String>,
    /// "Near": within this fraction of a step of a boundary (trained weights: 2 x this).
    #[arg(long, default_value_t = 0.05)]
    pub epsilon: f64,
    /// Flag tensors whose Holm-adjusted p-value is below this.
    #[arg(long, default_value_t = 0.001)]
    pub alpha: f64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Exit 1 when a tensor is flagged.
pub fn exec(args: &Args) -> Result<Outcome, Failure> {
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
    Ok(Outcome::failed_if(flagged > 0))
}
