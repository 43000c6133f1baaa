//! `compsafe quantize`: writes a Hugging Face Llama checkpoint as a GGUF file.

use std::path::PathBuf;

use crate::exit::{Failure, Outcome};

/// Arguments of `compsafe quantize`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Hugging Face model directory (Llama architecture).
    #[arg(long)]
    pub model: PathBuf,
    /// Block type of the 2-D weights: q8_0 q4_0 q4_1 q5_0 q5_1 q2k q3k q4k q5k q6k, or f32.
    #[arg(long = "type")]
    pub ty: String,
    /// Output .gguf file.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace an existing output file.
    #[arg(long)]
    pub force: bool,
}

/// Writes the file.
pub fn exec(args: &Args) -> Result<Outcome, Failure> {
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
