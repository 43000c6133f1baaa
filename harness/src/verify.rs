//! `compsafe verify`: sha256 of every model file against a manifest.

use compsafe_engine::integrity::{self, Integrity};

use crate::cli::VerifyArgs;
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
