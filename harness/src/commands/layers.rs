//! `compsafe layers`: per-tensor error of one variant, worst first.

use std::path::PathBuf;

use candle_core::Device;
use compsafe_core::Variant;
use compsafe_engine::{variant, Checkpoint};

use crate::exit::{Failure, Outcome};

/// Arguments of `compsafe layers`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model: a Hugging Face directory or a .gguf file.
    #[arg(long)]
    pub model: PathBuf,
    /// Variant shorthand, e.g. int4:g32, gguf:q4k, prune:0.5, heads:3.1.
    #[arg(long)]
    pub variant: String,
    /// Regex over tensor names to compress instead of the default linear weights.
    #[arg(long)]
    pub select: Option<String>,
    /// Show only the K worst tensors.
    #[arg(long)]
    pub top: Option<usize>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Prints the table (or JSON).
pub fn exec(args: &Args) -> Result<Outcome, Failure> {
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
