//! `compsafe requant-diff`: is a GGUF an honest quantization of its source?

use std::path::PathBuf;

use crate::exit::{Failure, Outcome};

/// Arguments of `compsafe requant-diff`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The full-precision source (Hugging Face directory).
    #[arg(long)]
    pub source: PathBuf,
    /// The GGUF file, or GPTQ / AWQ / compressed-tensors directory, to check.
    #[arg(long)]
    pub quantized: PathBuf,
    /// A GGUF block (or a layer of a quantized directory) is beyond honest when its error
    /// exceeds this many times the reference (round-to-nearest) quantizer's.
    #[arg(long, default_value_t = 2.0)]
    pub ratio: f64,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Exit 1 when a tensor is beyond what an honest quantizer produces.
pub fn exec(args: &Args) -> Result<Outcome, Failure> {
    if args.quantized.is_dir() {
        return requant_diff_checkpoint(args);
    }
    let d = compsafe_engine::requant::requant_diff(&args.source, &args.quantized, args.ratio)?;
    let verdict = |x: Option<bool>| match x {
        Some(true) => "same",
        Some(false) => "DIFFERENT",
        None => "absent",
    };
    if args.json {
        let out = serde_json::json!({
            "source": args.source.display().to_string(),
            "quantized": args.quantized.display().to_string(),
            "ratio": args.ratio,
            "clean": d.clean(),
            "chat_template": verdict(d.chat_template_equal),
            "tokenizer": verdict(d.tokenizer_equal),
            "unmatched": d.unmatched,
            "config_differences": d.config_differences,
            "tensors": d.tensors.iter().map(|t| serde_json::json!({
                "tensor": t.name, "ggml_type": t.ggml_type, "blocks": t.blocks,
                "differing": t.differing, "beyond_honest": t.beyond_honest,
                "worst_rms_ratio": t.worst_ratio, "first_beyond": t.first_beyond,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        for t in &d.tensors {
            if t.differing > 0 {
                println!(
                    "{}  {}  {} of {} blocks differ, {} beyond honest (worst RMS ratio {:.2}){}",
                    t.name,
                    t.ggml_type,
                    t.differing,
                    t.blocks,
                    t.beyond_honest,
                    t.worst_ratio,
                    t.first_beyond
                        .map_or(String::new(), |b| format!(", first at block {b}"))
                );
            }
        }
        for u in &d.unmatched {
            println!("UNMATCHED {u}");
        }
        for c in &d.config_differences {
            println!("CONFIG {c}");
        }
        let identical = d.tensors.iter().filter(|t| t.differing == 0).count();
        println!(
            "{} tensors: {identical} identical to compsafe's re-quantization, {} with blocks \
             beyond honest; chat template {}, tokenizer {}",
            d.tensors.len(),
            d.suspicious().len(),
            verdict(d.chat_template_equal),
            verdict(d.tokenizer_equal)
        );
        println!(
            "requant-diff: {}",
            if d.clean() { "clean" } else { "SUSPICIOUS" }
        );
    }
    Ok(Outcome::failed_if(!d.clean()))
}

/// `compsafe requant-diff` on a GPTQ, AWQ or compressed-tensors directory: each layer's error
/// against the source next to round-to-nearest's at the file's grid; a layer beyond `--ratio`
/// times it is not what a calibrated quantizer produces.
fn requant_diff_checkpoint(args: &Args) -> Result<Outcome, Failure> {
    use compsafe_engine::Checkpoint;
    let dev = candle_core::Device::Cpu;
    let source = Checkpoint::load(&args.source, &dev)?;
    let quantized = Checkpoint::load(&args.quantized, &dev)?;
    let rows = compsafe_engine::formats::compare::layer_errors(&source, &quantized, args.ratio)?;
    let flagged: Vec<_> = rows.iter().filter(|r| r.beyond_honest).collect();
    if args.json {
        let out = serde_json::json!({
            "source": args.source.display().to_string(),
            "quantized": args.quantized.display().to_string(),
            "format": quantized.format.as_ref().map(|f| f.method.clone()),
            "ratio": args.ratio,
            "clean": flagged.is_empty(),
            "tensors": rows.iter().map(|r| serde_json::json!({
                "tensor": r.name, "rel_error": r.rel_error, "rtn_rel_error": r.rtn_rel_error,
                "ratio_to_rtn": r.ratio, "beyond_honest": r.beyond_honest,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        for r in &rows {
            println!(
                "{}  error {:.6}, round-to-nearest {:.6}, ratio {:.2}{}",
                r.name,
                r.rel_error,
                r.rtn_rel_error,
                r.ratio,
                if r.beyond_honest {
                    "  BEYOND HONEST"
                } else {
                    ""
                }
            );
        }
        println!(
            "{} layers, {} beyond {} times round-to-nearest's error",
            rows.len(),
            flagged.len(),
            args.ratio
        );
        println!(
            "requant-diff: {}",
            if flagged.is_empty() {
                "clean"
            } else {
                "SUSPICIOUS"
            }
        );
    }
    Ok(if flagged.is_empty() {
        Outcome::Ok
    } else {
        Outcome::CheckFailed
    })
}
