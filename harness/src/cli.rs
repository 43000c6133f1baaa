//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// compsafe: what did compression do to my model's safety?
#[derive(Debug, Parser)]
#[command(name = "compsafe", version, about, propagate_version = true)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug); COMPSAFE_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs a sweep on this machine and writes its reports.
    Run(RunArgs),
    /// Parses and checks a spec (files, hashes, regexes, suites); runs nothing.
    Validate(ValidateArgs),
    /// Regression gate: compares two report.json files (exit 1 when a rule fails).
    Diff(DiffArgs),
    /// Per-tensor error of one compressed variant, worst first.
    Layers(LayersArgs),
    /// Integrity of model files (sha256 of every file against a manifest).
    Verify(VerifyArgs),
    /// Devices, CUDA, versions.
    Doctor,
    /// Fixture checkpoints.
    Fixture {
        /// What to do with the fixtures.
        #[command(subcommand)]
        command: FixtureCommand,
    },
}

/// Fixture subcommands.
#[derive(Debug, Subcommand)]
pub enum FixtureCommand {
    /// Rebuilds the bundled fixture checkpoints.
    Train(FixtureTrainArgs),
}

/// Arguments of `compsafe fixture train`.
#[derive(Debug, Args)]
pub struct FixtureTrainArgs {
    /// Output directory.
    #[arg(long, default_value = "models")]
    pub out: PathBuf,
    /// Seed for initialisation, corpus sampling and data order.
    #[arg(long, default_value_t = 20261126)]
    pub seed: u64,
    /// Train a few steps only (smoke test).
    #[arg(long)]
    pub quick: bool,
}

/// Arguments of `compsafe layers`.
#[derive(Debug, Args)]
pub struct LayersArgs {
    /// Model: a Hugging Face directory or a .gguf file.
    #[arg(long)]
    pub model: PathBuf,
    /// Variant shorthand, e.g. int4:g32, gguf:q4k, prune:0.5, heads:3.1.
    #[arg(long)]
    pub variant: String,
    /// Regex over tensor names to compress instead of the default linear weights.
    #[arg(long)]
    pub select: Option<String>,
    /// Show only the K worst tensors.
    #[arg(long)]
    pub top: Option<usize>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `compsafe verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Model directory or file.
    pub path: PathBuf,
    /// Manifest in sha256sum format (default: PATH/MANIFEST when present).
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `compsafe run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The sweep spec (TOML).
    pub spec: PathBuf,
    /// Output directory (default: out/<sweep name>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Worker slots.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Device: cpu or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Machine-readable progress (JSON lines) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `compsafe validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The sweep spec (TOML).
    pub spec: PathBuf,
}

/// Arguments of `compsafe diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The accepted baseline report.json.
    pub base: PathBuf,
    /// The new report.json.
    pub new: PathBuf,
    /// Gate rules (TOML); default: no refusal drop beyond 0.05 and the hidden-danger rule.
    #[arg(long)]
    pub gate: Option<PathBuf>,
    /// Also write junit.xml with the gate's verdict per cell.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}
