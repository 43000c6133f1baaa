//! `compsafe heads`: which attention heads (or layers, or MLP channel blocks) carry the
//! refusals — a shorthand for a sweep with `[analysis.heads]` (see
//! `compsafe_core::analysis::heads` for the method).

use std::path::PathBuf;

use compsafe_core::spec::{HeadsUnit, SpecBuilder};

use crate::args::AnalysisArgs;
use crate::exit::{Failure, Outcome};
use crate::shorthand::{model_path, run, write_files};

/// Arguments of `compsafe heads`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model: a Hugging Face directory or a .gguf file.
    #[arg(long)]
    pub model: PathBuf,
    /// Harmful suite (expect = refusal), bundled name.
    #[arg(long)]
    pub suite: String,
    /// Benign suite whose likelihood measures capability, bundled name.
    #[arg(long, default_value = "fixture-benign")]
    pub benign: String,
    /// Prompts per suite.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Unit of ablation: head, layer or mlp.
    #[arg(long, value_enum, default_value_t = Unit::Head)]
    pub unit: Unit,
    /// MLP channels per unit with `--unit mlp`.
    #[arg(long, default_value_t = 64)]
    pub channels: usize,
    /// Confirm the top K by generation and judging (each alone, together, and against
    /// random sets of K).
    #[arg(long, default_value_t = 0)]
    pub confirm: usize,
    /// Random sets of K units compared with the top K.
    #[arg(long, default_value_t = 5)]
    pub random_sets: usize,
    /// Seed of the random sets.
    #[arg(long, default_value_t = 20261126)]
    pub seed: u64,
    /// Tokens generated per prompt (benign responses, confirmation).
    #[arg(long, default_value_t = 32)]
    pub max_new_tokens: u32,
    /// Work units the scan is split into.
    #[arg(long, default_value_t = 8)]
    pub slices: usize,
    /// Where and how it runs.
    #[command(flatten)]
    pub run: AnalysisArgs,
}

/// What `compsafe heads` ablates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Unit {
    /// One attention head at a time (its columns of the output projection).
    Head,
    /// One whole layer at a time (attention and MLP outputs).
    Layer,
    /// One block of `--channels` MLP channels at a time (their columns of `down_proj`).
    Mlp,
}

impl From<Unit> for HeadsUnit {
    fn from(u: Unit) -> HeadsUnit {
        match u {
            Unit::Head => HeadsUnit::Head,
            Unit::Layer => HeadsUnit::Layer,
            Unit::Mlp => HeadsUnit::Mlp,
        }
    }
}

/// Runs the analysis and writes heads.json, heads.md and heads.html.
pub fn exec(args: &Args) -> Result<Outcome, Failure> {
    let model = model_path(&args.model)?;
    let mut b = SpecBuilder::new("heads", &model);
    let k = "analysis.heads";
    b.set(&format!("{k}.suite"), args.suite.as_str())
        .set(&format!("{k}.benign"), args.benign.as_str())
        .set(&format!("{k}.limit"), args.limit as i64)
        .set(&format!("{k}.unit"), HeadsUnit::from(args.unit).name())
        .set(&format!("{k}.confirm"), args.confirm as i64)
        .set(&format!("{k}.random_sets"), args.random_sets as i64)
        .set(&format!("{k}.seed"), args.seed as i64)
        .set(
            &format!("{k}.max_new_tokens"),
            i64::from(args.max_new_tokens),
        )
        .set(&format!("{k}.slices"), args.slices as i64);
    if args.unit == Unit::Mlp {
        b.set(&format!("{k}.channels"), args.channels as i64);
    }
    for (key, flag) in [
        ("suite", "--suite"),
        ("benign", "--benign"),
        ("limit", "--limit"),
        ("channels", "--channels"),
        ("max_new_tokens", "--max-new-tokens"),
        ("slices", "--slices"),
    ] {
        b.flag(&format!("{k}.{key}"), flag);
    }
    let (out, outputs) = run("heads", &args.model, &b, &args.run)?;
    write_files(&out, "heads", &outputs, args.run.json)?;
    Ok(Outcome::Ok)
}
