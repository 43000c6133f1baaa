//! `compsafe quantize`: writes a Hugging Face checkpoint or an f32/f16 GGUF file as the GGUF
//! file `llama-quantize` writes (a file type's recipe or one block type, with an optional
//! importance matrix).

use std::path::PathBuf;

use crate::exit::{Failure, Outcome};

/// Arguments of `compsafe quantize`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Hugging Face model directory, or an f32/f16 GGUF file (as `llama-quantize` takes).
    #[arg(long)]
    pub model: PathBuf,
    /// llama.cpp's file type (q4_k_m q5_k_m q3_k_m q2_k q6_k q8_0 iq4_xs ...: its per-tensor
    /// recipe), one block type for every quantizable tensor (q4k q6k iq4xs ...), or f32.
    #[arg(long = "type")]
    pub ty: String,
    /// Every quantizable tensor in the file type's default type (llama-quantize --pure).
    #[arg(long)]
    pub pure: bool,
    /// Importance matrix from llama-imatrix (legacy .dat/.imatrix or GGUF).
    #[arg(long, conflicts_with = "calib")]
    pub imatrix: Option<PathBuf>,
    /// Compute the importance matrix from this bundled suite's prompts, as llama-imatrix does.
    #[arg(long)]
    pub calib: Option<String>,
    /// Tokens per chunk of the calibration text (llama-imatrix's -c).
    #[arg(long, default_value_t = 512)]
    pub calib_ctx: usize,
    /// Also write the computed importance matrix here (GGUF format).
    #[arg(long, requires = "calib")]
    pub imatrix_out: Option<PathBuf>,
    /// Output .gguf file.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace an existing output file.
    #[arg(long)]
    pub force: bool,
}

/// Writes the file.
pub fn exec(args: &Args) -> Result<Outcome, Failure> {
    use compsafe_engine::gguf_quantize::{quantize_path, QuantizeRequest};
    if args.out.exists() && !args.force {
        return Err(Failure::input(format!(
            "--out {}: the file exists (--force replaces it)",
            args.out.display()
        )));
    }
    let req = if args.ty.eq_ignore_ascii_case("f32") {
        if args.pure || args.imatrix.is_some() || args.calib.is_some() {
            return Err(Failure::input(
                "--type f32 takes no --pure, --imatrix or --calib",
            ));
        }
        None
    } else {
        let mut req = match compsafe_core::Method::parse(&format!("gguf:{}", args.ty), "--type")? {
            compsafe_core::Method::GgufFile { ftype, .. } => QuantizeRequest::recipe(ftype),
            compsafe_core::Method::Gguf { ty } => QuantizeRequest::one_type(ty),
            _ => {
                return Err(Failure::input(format!(
                    "--type = {:?}: not a GGUF type",
                    args.ty
                )))
            }
        };
        req.pure |= args.pure;
        if let Some(p) = &args.imatrix {
            let im = compsafe_engine::ggml::imatrix::Imatrix::read(p)
                .map_err(|e| Failure::input(format!("--imatrix {}: {e}", p.display())))?;
            req.imatrix = Some((im, p.display().to_string()));
        }
        if let Some(suite) = &args.calib {
            let im = compsafe_engine::ggml::imatrix_compute::from_suite(
                &args.model,
                suite,
                args.calib_ctx,
            )?;
            if let Some(o) = &args.imatrix_out {
                im.write_gguf(o)
                    .map_err(|e| Failure::input(format!("--imatrix-out {}: {e}", o.display())))?;
            }
            req.imatrix = Some((im, suite.clone()));
        }
        Some(req)
    };
    let w = quantize_path(&args.model, req.as_ref(), &args.out)?;
    println!(
        "wrote {} ({} tensors, {} bytes)",
        args.out.display(),
        w.tensors.len(),
        w.bytes
    );
    Ok(Outcome::Ok)
}
