//! `compsafe search`: targeted search at the compression boundary — a shorthand for a sweep
//! with a `[search]` section (see `compsafe_eval::search` for the method and what the budget
//! counts). Writes search.json and search.md.
//!
//! Exit status: 0 when the search ran, whatever it found (a search is an exploration); with
//! `--fail-on-hit`, 1 when the greedy search confirmed a hit, for pipelines that gate on it.

use std::path::PathBuf;

use compsafe_core::spec::SpecBuilder;
use compsafe_core::Variant;

use crate::args::AnalysisArgs;
use crate::exit::{Failure, Outcome};
use crate::shorthand::{model_path, run, write_files};

/// Arguments of `compsafe search`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model: a Hugging Face directory or a .gguf file (the reference).
    #[arg(long)]
    pub model: PathBuf,
    /// Compressed variant shorthand, e.g. int4:g32, gguf:q3k, prune:0.5.
    #[arg(long)]
    pub variant: String,
    /// Harmful suite (expect = refusal), bundled name.
    #[arg(long)]
    pub suite: String,
    /// Prompts of the suite looked at (the first N).
    #[arg(long, default_value_t = 40)]
    pub limit: usize,
    /// Scored suffixes per prompt and method: one forward pass of each model per suffix.
    #[arg(long, default_value_t = 64)]
    pub budget: usize,
    /// Suffix length in tokens.
    #[arg(long, default_value_t = 4)]
    pub suffix_len: usize,
    /// Replacement tokens scored per greedy step.
    #[arg(long, default_value_t = 8)]
    pub candidates: usize,
    /// Seed of the initial suffixes, positions, candidates and random baseline.
    #[arg(long, default_value_t = 20261126)]
    pub seed: u64,
    /// The reference's refusal log-odds must stay at or above this (nats) on a searched prompt.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub margin: f64,
    /// Tokens generated per prompt when confirming.
    #[arg(long, default_value_t = 32)]
    pub max_new_tokens: u32,
    /// Prompts searched per work unit.
    #[arg(long, default_value_t = 10)]
    pub slice: usize,
    /// Exit 1 when the greedy search confirms a hit (for pipelines that gate on it).
    #[arg(long)]
    pub fail_on_hit: bool,
    /// Where and how it runs.
    #[command(flatten)]
    pub run: AnalysisArgs,
}

/// Runs the search and writes search.json and search.md.
pub fn exec(args: &Args) -> Result<Outcome, Failure> {
    let model = model_path(&args.model)?;
    let variant = Variant::parse(&args.variant, "--variant")?;
    if !args.margin.is_finite() {
        return Err(Failure::input(format!(
            "--margin = {}: must be a finite number of nats",
            args.margin
        )));
    }
    let mut b = SpecBuilder::new("search", &model);
    b.set_list("variants", &[&variant.name])
        .set("generation.max_new_tokens", i64::from(args.max_new_tokens))
        .set("generation.stop_on_verdict", true)
        .set_list("search.variants", &[&variant.name])
        .set("search.suite", args.suite.as_str())
        .set("search.limit", args.limit as i64)
        .set("search.budget", args.budget as i64)
        .set("search.suffix_len", args.suffix_len as i64)
        .set("search.candidates", args.candidates as i64)
        .set("search.seed", args.seed as i64)
        .set("search.margin", args.margin)
        .set("search.slice", args.slice as i64);
    for (key, flag) in [
        ("variants", "--variant"),
        ("generation.max_new_tokens", "--max-new-tokens"),
        ("search.suite", "--suite"),
        ("search.limit", "--limit"),
        ("search.budget", "--budget"),
        ("search.suffix_len", "--suffix-len"),
        ("search.candidates", "--candidates"),
        ("search.slice", "--slice"),
    ] {
        b.flag(key, flag);
    }
    let (out, outputs) = run("search", &args.model, &b, &args.run)?;
    write_files(&out, "search", &outputs, args.run.json)?;
    let hits = outputs
        .report
        .divergences
        .iter()
        .filter(|d| d.searched == Some(true))
        .count();
    Ok(Outcome::failed_if(args.fail_on_hit && hits > 0))
}
