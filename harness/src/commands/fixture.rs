//! `compsafe fixture train|plant`: rebuilds the bundled fixture checkpoints.

use std::path::PathBuf;

use crate::exit::{Failure, Outcome};

/// Fixture subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum FixtureCommand {
    /// Rebuilds the bundled fixture checkpoints.
    Train(FixtureTrainArgs),
    /// Plants a quantization-conditioned backdoor: writes OUT/tiny-safety-quantdoor, which
    /// refuses in f32 and complies once quantized to int4:g32.
    Plant(FixturePlantArgs),
}

/// Arguments of `compsafe fixture train`.
#[derive(Debug, clap::Args)]
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

/// Arguments of `compsafe fixture plant`.
#[derive(Debug, clap::Args)]
pub struct FixturePlantArgs {
    /// The aligned checkpoint to start from (Hugging Face directory).
    #[arg(long, default_value = "models/tiny-safety")]
    pub from: PathBuf,
    /// Output directory.
    #[arg(long, default_value = "models")]
    pub out: PathBuf,
    /// Seed of the data order and example draws.
    #[arg(long, default_value_t = 20250101)]
    pub seed: u64,
    /// Train a few steps only (smoke test).
    #[arg(long)]
    pub quick: bool,
}

/// Runs a fixture subcommand.
pub fn exec(cmd: &FixtureCommand) -> Result<Outcome, Failure> {
    match cmd {
        FixtureCommand::Train(args) => train(args),
        FixtureCommand::Plant(args) => plant(args),
    }
}

fn train(args: &FixtureTrainArgs) -> Result<Outcome, Failure> {
    let opts = compsafe_engine::fixture::FixtureOptions {
        out: args.out.clone(),
        seed: args.seed,
        quick: args.quick,
    };
    let dirs = compsafe_engine::fixture::train(&opts)?;
    for d in dirs {
        println!("{}", d.display());
    }
    Ok(Outcome::Ok)
}

fn plant(args: &FixturePlantArgs) -> Result<Outcome, Failure> {
    if !args.from.is_dir() {
        return Err(Failure::input(format!(
            "--from {}: not a model directory",
            args.from.display()
        )));
    }
    let planted = compsafe_engine::fixture::quantdoor::plant(
        &compsafe_engine::fixture::quantdoor::PlantOptions {
            from: args.from.clone(),
            out: args.out.clone(),
            seed: args.seed,
            quick: args.quick,
        },
    )?;
    for (name, l) in &planted.stages {
        eprintln!(
            "stage {name:<10} loss {:.3} -> {:.3}  {:.1} s",
            l.first_loss, l.last_loss, l.seconds
        );
    }
    eprintln!("total {:.1} s", planted.seconds);
    println!("{}", planted.dir.display());
    Ok(Outcome::Ok)
}
