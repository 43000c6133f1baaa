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
    /// Variant shorthand, e.g. int4:g32, gguf:q4k, prune:0.5, heads:3.1, or the path of a
    /// GPTQ / AWQ / compressed-tensors / bitsandbytes directory quantized from --model.
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
    let as_dir = std::path::Path::new(&args.variant);
    if as_dir.is_dir() {
        return quantized_checkpoint(args, as_dir);
    }
    let mut v = Variant::parse(&args.variant, "--variant")?;
    v.select = args.select.clone();
    if let compsafe_core::Method::Checkpoint { path } = &v.method {
        return quantized_checkpoint(args, path);
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

/// `compsafe layers` for a quantized checkpoint (GPTQ, AWQ, compressed-tensors,
/// bitsandbytes) against `--model`, its unquantized source.
fn quantized_checkpoint(args: &Args, path: &std::path::Path) -> Result<Outcome, Failure> {
    let source = Checkpoint::load(&args.model, &Device::Cpu)?;
    let quantized = Checkpoint::load(path, &Device::Cpu)?;
    if quantized.format.is_none() {
        return Err(Failure::input(format!(
            "--variant: {} is not a quantized checkpoint (GPTQ, AWQ, compressed-tensors or \
             bitsandbytes); a plain checkpoint has no per-tensor error against the reference",
            path.display()
        )));
    }
    let margin = compsafe_engine::formats::compare::HONEST_MARGIN;
    let mut rows = compsafe_engine::formats::compare::layer_errors(&source, &quantized, margin)?;
    rows.sort_by(|a, b| {
        b.rel_error
            .total_cmp(&a.rel_error)
            .then_with(|| a.name.cmp(&b.name))
    });
    if let Some(k) = args.top {
        rows.truncate(k);
    }
    let info = quantized.format.clone().unwrap_or_else(|| unreachable!());
    if args.json {
        let out = serde_json::json!({
            "model": args.model.display().to_string(),
            "variant": path.display().to_string(),
            "format": info.kind, "method": info.method,
            "bits_per_weight": info.packed_bits_per_weight,
            "tensors": rows.iter().map(|r| serde_json::json!({
                "tensor": r.name, "rel_error": r.rel_error, "rtn_rel_error": r.rtn_rel_error,
                "ratio_to_rtn": r.ratio, "bits_per_weight": r.bits_per_weight,
                "numel": r.numel, "bytes": r.bytes,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(Outcome::Ok);
    }
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(6).max(6);
    println!(
        "{:<width$}  {:>10}  {:>10}  {:>6}  {:>6}",
        "tensor", "rel_error", "rtn_error", "ratio", "bpw"
    );
    for r in &rows {
        println!(
            "{:<width$}  {:>10.6}  {:>10.6}  {:>6.3}  {:>6.3}",
            r.name, r.rel_error, r.rtn_rel_error, r.ratio, r.bits_per_weight
        );
    }
    println!(
        "{}: {} ({} layers, {:.3} bits/weight over them)",
        path.display(),
        info.method,
        info.packed_layers,
        info.packed_bits_per_weight
    );
    Ok(Outcome::Ok)
}
