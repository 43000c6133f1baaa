//! The `compsafe` command line: one file per command under `commands/`, each with its
//! arguments and an `exec`.
//!
//! Exit status: 0 ok; 1 ran fine but a check or gate failed; 2 usage, spec or input error;
//! 3 infrastructure failure (see [`exit::ExitStatus`]).

mod args;
mod commands;
mod exit;
mod local;
mod output;
mod progress;
mod shorthand;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::args::IdArgs;
use crate::commands::*;
use crate::exit::{ExitStatus, Failure, Outcome};

// The coordinator's gRPC path allocates per message; mimalloc serves it 15-25% faster than
// the system allocator (coordinator/examples/scale.rs, side by side).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// compsafe: what did compression do to my model's safety?
#[derive(Debug, Parser)]
#[command(name = "compsafe", version, about, propagate_version = true)]
struct Cli {
    /// More log output on stderr (-v info, -vv debug); COMPSAFE_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// The command.
    #[command(subcommand)]
    command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Runs a sweep on this machine and writes its reports.
    Run(run::Args),
    /// Parses and checks a spec (files, hashes, regexes, suites); runs nothing.
    Validate(validate::Args),
    /// Regression gate: compares two report.json files (exit 1 when a rule fails).
    Diff(diff::Args),
    /// Per-tensor error of one compressed variant, worst first.
    Layers(layers::Args),
    /// Ranks attention heads (or layers, or MLP channel blocks) by how much ablating each
    /// alone lowers refusal relative to how much it hurts benign likelihood.
    Heads(heads::Args),
    /// Compresses one layer (or attention/MLP group, or tensor) at a time: which layers
    /// would break safety alone?
    Sensitivity(sensitivity::Args),
    /// Behaviour that appears only under compression, with a noise control (exit 1 when
    /// something is flagged).
    Conditioned(conditioned::Args),
    /// Targeted search: short prompt suffixes that keep the reference refusing while a
    /// compressed variant complies.
    Search(search::Args),
    /// Writes a Hugging Face Llama checkpoint as a GGUF file.
    Quantize(quantize::Args),
    /// Is a GGUF file an honest quantization of its source? (exit 1 when not)
    RequantDiff(requant_diff::Args),
    /// Weights sitting at rounding boundaries, per tensor (exit 1 when a tensor is flagged).
    Boundary(boundary::Args),
    /// Integrity of a model against its manifest: files, every tensor, chat template, tokenizer.
    Verify(verify::Args),
    /// Model manifests: hashes of every file, every tensor, the chat template and tokenizer.
    Manifest {
        /// What to do.
        #[command(subcommand)]
        command: manifest::ManifestCommand,
    },
    /// Devices, CUDA, versions.
    Doctor,
    /// Serves sweeps to workers over gRPC, with state in SQLite.
    Coordinator(coordinator::Args),
    /// Pulls work units from a coordinator and runs them.
    Worker(worker::Args),
    /// Submits a sweep spec to a coordinator; prints the sweep id.
    Submit(submit::Args),
    /// Progress of a submitted sweep.
    Status(IdArgs),
    /// Progress of a submitted sweep as it changes, until it finishes.
    Watch(IdArgs),
    /// Cancels a submitted sweep.
    Cancel(IdArgs),
    /// Writes the reports of a finished sweep.
    Report(report::Args),
    /// Asks a coordinator's grpc.health.v1 service whether it is serving (exit 0 when it is,
    /// 1 when it answers but is not serving, 3 when it cannot be reached); needs no token.
    Health(health::Args),
    /// Fixture checkpoints.
    Fixture {
        /// What to do with the fixtures.
        #[command(subcommand)]
        command: fixture::FixtureCommand,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let status = if e.use_stderr() {
                ExitStatus::Input
            } else {
                ExitStatus::Ok
            };
            let _ = e.print();
            return status.into();
        }
    };
    init_tracing(cli.verbose);
    match dispatch(&cli.command) {
        Ok(outcome) => outcome.status().into(),
        Err(f) => {
            eprintln!("error: {}", f.message);
            f.status.into()
        }
    }
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("COMPSAFE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn dispatch(cmd: &Command) -> Result<Outcome, Failure> {
    match cmd {
        Command::Run(a) => run::exec(a),
        Command::Validate(a) => validate::exec(a),
        Command::Diff(a) => diff::exec(a),
        Command::Layers(a) => layers::exec(a),
        Command::Heads(a) => heads::exec(a),
        Command::Sensitivity(a) => sensitivity::exec(a),
        Command::Conditioned(a) => conditioned::exec(a),
        Command::Search(a) => search::exec(a),
        Command::Quantize(a) => quantize::exec(a),
        Command::RequantDiff(a) => requant_diff::exec(a),
        Command::Boundary(a) => boundary::exec(a),
        Command::Verify(a) => verify::exec(a),
        Command::Manifest { command } => manifest::exec(command),
        Command::Doctor => doctor::exec(),
        Command::Coordinator(a) => coordinator::exec(a),
        Command::Worker(a) => worker::exec(a),
        Command::Submit(a) => submit::exec(a),
        Command::Status(a) => status::exec(a),
        Command::Watch(a) => watch::exec(a),
        Command::Cancel(a) => cancel::exec(a),
        Command::Report(a) => report::exec(a),
        Command::Health(a) => health::exec(a),
        Command::Fixture { command } => fixture::exec(command),
    }
}
