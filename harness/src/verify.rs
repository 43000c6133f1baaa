//! `compsafe verify` and `compsafe manifest create`: a model against its manifest.

use compsafe_engine::integrity::{self, Integrity};
use compsafe_engine::manifest;

use crate::cli::{ManifestCreateArgs, VerifyArgs};
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
