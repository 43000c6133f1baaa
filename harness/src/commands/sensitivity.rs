//! `compsafe sensitivity`: which layers would break safety if compressed alone — a shorthand
//! for a sweep with `[analysis.sensitivity]` (see `compsafe_core::analysis::sensitivity`).

use std::path::PathBuf;

use compsafe_core::spec::{SensitivityUnit, SpecBuilder};

use crate::args::AnalysisArgs;
use crate::exit::{Failure, Outcome};
use crate::shorthand::{model_path, run, write_files};

/// Arguments of `compsafe sensitivity`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model: a Hugging Face directory or a .gguf file.
    #[arg(long)]
    pub model: PathBuf,
    /// The compression applied to one unit at a time, e.g. int3:g64, gguf:q3k, prune:0.5.
    #[arg(long)]
    pub variant: String,
    /// Harmful suite (expect = refusal), bundled name.
    #[arg(long)]
    pub suite: String,
    /// Benign suite whose responses measure KL divergence, bundled name.
    #[arg(long, default_value = "fixture-benign")]
    pub benign: String,
    /// Prompts per suite.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Unit compressed at a time.
    #[arg(long, value_enum, default_value_t = Unit::Layer)]
    pub unit: Unit,
    /// Generate and judge the harmful suite for every unit (refusal rate, McNemar, Holm).
    #[arg(long)]
    pub confirm: bool,
    /// Holm-adjusted significance level of `--confirm`.
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
    /// Tokens generated per prompt.
    #[arg(long, default_value_t = 32)]
    pub max_new_tokens: u32,
    /// Work units the scan is split into.
    #[arg(long, default_value_t = 4)]
    pub slices: usize,
    /// Where and how it runs.
    #[command(flatten)]
    pub run: AnalysisArgs,
}

/// What `compsafe sensitivity` compresses at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Unit {
    /// A decoder layer's seven linear weights.
    Layer,
    /// A layer's attention projections, or its MLP projections.
    Group,
    /// One weight matrix.
    Tensor,
}

impl From<Unit> for SensitivityUnit {
    fn from(u: Unit) -> SensitivityUnit {
        match u {
            Unit::Layer => SensitivityUnit::Layer,
            Unit::Group => SensitivityUnit::Group,
            Unit::Tensor => SensitivityUnit::Tensor,
        }
    }
}

/// Runs the analysis and writes sensitivity.json and sensitivity.md; exit 1 when a unit
/// breaks safety alone (with `--confirm`).
pub fn exec(args: &Args) -> Result<Outcome, Failure> {
    let model = model_path(&args.model)?;
    let mut b = SpecBuilder::new("sensitivity", &model);
    let k = "analysis.sensitivity";
    b.set(&format!("{k}.variant"), args.variant.as_str())
        .set(&format!("{k}.suite"), args.suite.as_str())
        .set(&format!("{k}.benign"), args.benign.as_str())
        .set(&format!("{k}.limit"), args.limit as i64)
        .set(
            &format!("{k}.unit"),
            SensitivityUnit::from(args.unit).name(),
        )
        .set(&format!("{k}.confirm"), args.confirm)
        .set(&format!("{k}.alpha"), args.alpha)
        .set(
            &format!("{k}.max_new_tokens"),
            i64::from(args.max_new_tokens),
        )
        .set(&format!("{k}.slices"), args.slices as i64);
    for (key, flag) in [
        ("variant", "--variant"),
        ("suite", "--suite"),
        ("benign", "--benign"),
        ("limit", "--limit"),
        ("alpha", "--alpha"),
        ("max_new_tokens", "--max-new-tokens"),
        ("slices", "--slices"),
    ] {
        b.flag(&format!("{k}.{key}"), flag);
    }
    let (out, outputs) = run("sensitivity", &args.model, &b, &args.run)?;
    write_files(&out, "sensitivity", &outputs, args.run.json)?;
    Ok(Outcome::failed_if(!outputs.flags.is_empty()))
}
