//! `compsafe manifest create PATH`: pins a model (every file, every tensor, chat template, tokenizer).

use std::path::PathBuf;

use compsafe_engine::manifest;

use crate::exit::{Failure, Outcome};

/// Manifest subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ManifestCommand {
    /// Writes the manifest of a model directory or GGUF file (default: DIR/MANIFEST.json or
    /// FILE.gguf.manifest.json).
    Create(ManifestCreateArgs),
}

/// Arguments of `compsafe manifest create`.
#[derive(Debug, clap::Args)]
pub struct ManifestCreateArgs {
    /// Model directory (Hugging Face layout) or .gguf file.
    pub path: PathBuf,
    /// Where to write the manifest.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace an existing manifest.
    #[arg(long)]
    pub force: bool,
}

/// Runs a manifest subcommand.
pub fn exec(cmd: &ManifestCommand) -> Result<Outcome, Failure> {
    match cmd {
        ManifestCommand::Create(args) => create(args),
    }
}

fn create(args: &ManifestCreateArgs) -> Result<Outcome, Failure> {
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
