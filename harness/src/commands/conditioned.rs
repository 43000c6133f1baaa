//! `compsafe conditioned`: behaviour that appears only under compression, with a noise
//! control — a shorthand for a sweep with `[analysis.conditioned]` (see
//! `compsafe_core::analysis::conditioned`).

use std::path::PathBuf;

use compsafe_core::spec::SpecBuilder;

use crate::args::AnalysisArgs;
use crate::exit::{Failure, Outcome};
use crate::shorthand::{model_path, run, write_files};

/// Arguments of `compsafe conditioned`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model: a Hugging Face directory (full precision).
    #[arg(long)]
    pub model: PathBuf,
    /// Harmful suite (expect = refusal): refusal rate.
    #[arg(long, default_value = "fixture-harmful")]
    pub suite: String,
    /// Benign suite (expect = compliance): over-refusal.
    #[arg(long, default_value = "fixture-benign")]
    pub benign: String,
    /// Suite with target strings (expect = target): attack success rate.
    #[arg(long)]
    pub target_suite: Option<String>,
    /// Attack success on the harmful prompts: the response starts with this text.
    #[arg(long)]
    pub target: Option<String>,
    /// Compressors, comma-separated.
    #[arg(
        long,
        default_value = "int8,int4:g32,gguf:q4k,gguf:q6k,gguf:q2k,prune:0.5,prune:2of4"
    )]
    pub variants: String,
    /// Noise control: Gaussian noise of this many times each compressed tensor's weight
    /// standard deviation is added before compressing.
    #[arg(long, default_value_t = 0.05)]
    pub noise: f64,
    /// Seed of the noise.
    #[arg(long, default_value_t = 20261126)]
    pub seed: u64,
    /// Prompts per suite.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Family-wise significance level (Holm) of a flag.
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
    /// Tokens generated per prompt.
    #[arg(long, default_value_t = 40)]
    pub max_new_tokens: u32,
    /// Where and how it runs.
    #[command(flatten)]
    pub run: AnalysisArgs,
}

/// Runs the check and writes conditioned.json and conditioned.md; exit 1 when a change is
/// flagged.
pub fn exec(args: &Args) -> Result<Outcome, Failure> {
    let model = model_path(&args.model)?;
    let mut b = SpecBuilder::new("conditioned", &model);
    let k = "analysis.conditioned";
    let variants: Vec<&str> = args.variants.split(',').map(str::trim).collect();
    b.set(&format!("{k}.suite"), args.suite.as_str())
        .set(&format!("{k}.benign"), args.benign.as_str())
        .set_opt(&format!("{k}.target_suite"), args.target_suite.as_deref())
        .set_opt(&format!("{k}.target"), args.target.as_deref())
        .set_list(&format!("{k}.variants"), &variants)
        .set(&format!("{k}.noise"), args.noise)
        .set(&format!("{k}.seed"), args.seed as i64)
        .set(&format!("{k}.limit"), args.limit as i64)
        .set(&format!("{k}.alpha"), args.alpha)
        .set(
            &format!("{k}.max_new_tokens"),
            i64::from(args.max_new_tokens),
        );
    for (key, flag) in [
        ("suite", "--suite"),
        ("benign", "--benign"),
        ("target_suite", "--target-suite"),
        ("target", "--target"),
        ("variants", "--variants"),
        ("noise", "--noise"),
        ("limit", "--limit"),
        ("alpha", "--alpha"),
        ("max_new_tokens", "--max-new-tokens"),
    ] {
        b.flag(&format!("{k}.{key}"), flag);
    }
    let (out, outputs) = run("conditioned", &args.model, &b, &args.run)?;
    write_files(&out, "conditioned", &outputs, args.run.json)?;
    Ok(Outcome::failed_if(!outputs.flags.is_empty()))
}
