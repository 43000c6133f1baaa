//! `compsafe verify PATH [--manifest FILE]`: a model against its manifest.

use std::path::PathBuf;

use compsafe_engine::integrity::{self, Integrity};

use crate::exit::{Failure, Outcome};

/// Arguments of `compsafe verify`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model directory or file.
    pub path: PathBuf,
    /// Manifest: JSON from `compsafe manifest create`, or sha256sum lines (default:
    /// PATH/MANIFEST.json, PATH/MANIFEST or FILE.gguf.manifest.json when present).
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Exit 1 when the integrity check fails.
pub fn exec(args: &Args) -> Result<Outcome, Failure> {
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
    Ok(Outcome::failed_if(matches!(result, Integrity::Failed(_))))
}
