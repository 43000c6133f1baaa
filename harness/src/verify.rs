//! `compsafe verify` and `compsafe manifest create`: a model against its manifest.

use compsafe_engine::integrity::{self, Integrity};
use compsafe_engine::manifest;

use crate::cli::{ManifestCreateArgs, QuantizeArgs, RequantDiffArgs, VerifyArgs};
use crate::exit::{Failure, Outcome};

pub fn run(args: &VerifyArgs) -> Result<Outcome, Failure> {
    let (digests, result) = integrity::verify(&args.path, args.manifest.as_deref())?;
    if args.json {
        let out = serde_json::json!({
            "path": args.path.display().to_string(),
            "integrity": result.as_str(),
            "files": digests.iter().map(|d| serde_json::json!({
                "name": d.name, "sha256": d.sha256, "bytes": d.bytes})).collect::<Vec<_>>(),
            "failures": match &result { Integrity::Failed(m) => m.clone(), _ => vec![] },
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        for d in &digests {
            println!("{}  {}  ({} bytes)", d.sha256, d.name, d.bytes);
        }
        match &result {
            Integrity::Ok => println!("integrity: ok ({} files)", digests.len()),
            Integrity::Unpinned => println!("integrity: unpinned (no manifest)"),
            Integrity::Failed(msgs) => {
                for m in msgs {
                    println!("{m}");
                }
                println!("integrity: failed");
            }
        }
    }
    Ok(match result {
        Integrity::Failed(_) => Outcome::CheckFailed,
        _ => Outcome::Ok,
    })
}

/// `compsafe manifest create`.
pub fn create(args: &ManifestCreateArgs) -> Result<Outcome, Failure> {
    let out = match &args.out {
        Some(p) => p.clone(),
        None if args.path.is_dir() => args.path.join("MANIFEST.json"),
        None => {
            let mut s = args.path.as_os_str().to_owned();
            s.push(".manifest.json");
            s.into()
        }
    };
    if out.exists() && !args.force {
        return Err(Failure::input(format!(
            "{}: a manifest is already there (--force replaces it)",
            out.display()
        )));
    }
    let m = manifest::create(&args.path)?;
    std::fs::write(&out, manifest::render(&m))
        .map_err(|e| Failure::input(format!("{}: {e}", out.display())))?;
    println!(
        "wrote {} ({} files, {} tensors, chat template {}, tokenizer {})",
        out.display(),
        m.files.len(),
        m.tensors.len(),
        if m.chat_template_sha256.is_some() {
            "pinned"
        } else {
            "none"
        },
        m.tokenizer
            .as_ref()
            .map_or("none".to_string(), |t| format!("{} tokens", t.vocab_size))
    );
    Ok(Outcome::Ok)
}

/// `compsafe quantize`.
pub fn quantize(args: &QuantizeArgs) -> Result<Outcome, Failure> {
    let ty = if args.ty.eq_ignore_ascii_case("f32") {
        None
    } else {
        match compsafe_core::Method::parse(&format!("gguf:{}", args.ty), "--type")? {
            compsafe_core::Method::Gguf { ty } => Some(ty),
            _ => {
                return Err(Failure::input(format!(
                    "--type = {:?}: not a GGUF type",
                    args.ty
                )))
            }
        }
    };
    if args.out.exists() && !args.force {
        return Err(Failure::input(format!(
            "--out {}: the file exists (--force replaces it)",
            args.out.display()
        )));
    }
    let w = compsafe_engine::gguf_write::write_gguf(&args.model, ty, &args.out)?;
    println!(
        "wrote {} ({} tensors, {} bytes)",
        args.out.display(),
        w.tensors.len(),
        w.bytes
    );
    Ok(Outcome::Ok)
}

/// `compsafe requant-diff`.
pub fn requant_diff(args: &RequantDiffArgs) -> Result<Outcome, Failure> {
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
    Ok(if d.clean() {
        Outcome::Ok
    } else {
        Outcome::CheckFailed
    })
}

/// `compsafe requant-diff` on a GPTQ, AWQ or compressed-tensors directory: each layer's error
/// against the source next to round-to-nearest's at the file's grid; a layer beyond `--ratio`
/// times it is not what a calibrated quantizer produces.
fn requant_diff_checkpoint(args: &RequantDiffArgs) -> Result<Outcome, Failure> {
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
                if r.beyond_honest { "  BEYOND HONEST" } else { "" }
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
            if flagged.is_empty() { "clean" } else { "SUSPICIOUS" }
        );
    }
    Ok(if flagged.is_empty() {
        Outcome::Ok
    } else {
        Outcome::CheckFailed
    })
}
