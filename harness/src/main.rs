//! The `compsafe` command line.
//!
//! Exit status: 0 ok; 1 ran fine but a check or gate failed; 2 usage, spec or input error;
//! 3 infrastructure failure.

mod cli;
mod cluster;
mod conditioned;
mod diff;
mod exit;
mod heads;
mod layers;
mod local;
mod outputs;
mod progress;
mod run;
mod search;
mod sensitivity;
mod verify;

use std::process::ExitCode;

// The coordinator's gRPC path allocates per message; mimalloc serves it 15-25% faster than
// the system allocator (coordinator/examples/scale.rs, side by side).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;

use crate::cli::{Cli, Command, FixtureCommand, ManifestCommand};
use crate::exit::{Failure, Outcome};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    init_tracing(cli.verbose);
    match dispatch(cli.command) {
        Ok(Outcome::Ok) => ExitCode::from(0),
        Ok(Outcome::CheckFailed) => ExitCode::from(1),
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
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

fn dispatch(cmd: Command) -> Result<Outcome, Failure> {
    match cmd {
        Command::Run(args) => run::run_cmd(&args),
        Command::Validate(args) => run::validate_cmd(&args),
        Command::Diff(args) => diff::run(&args),
        Command::Layers(args) => layers::run(&args),
        Command::Boundary(args) => layers::boundary(&args),
        Command::Quantize(args) => verify::quantize(&args),
        Command::Heads(args) => heads::run(&args),
        Command::Sensitivity(args) => sensitivity::run(&args),
        Command::Conditioned(args) => conditioned::run(&args),
        Command::Search(args) => search::run(&args),
        Command::RequantDiff(args) => verify::requant_diff(&args),
        Command::Verify(args) => verify::run(&args),
        Command::Manifest {
            command: ManifestCommand::Create(args),
        } => verify::create(&args),
        Command::Doctor => doctor(),
        Command::Coordinator(args) => cluster::coordinator_cmd(&args),
        Command::Worker(args) => cluster::worker_cmd(&args),
        Command::Submit(args) => cluster::submit_cmd(&args),
        Command::Status(args) => cluster::status_cmd(&args),
        Command::Watch(args) => cluster::watch_cmd(&args),
        Command::Cancel(args) => cluster::cancel_cmd(&args),
        Command::Report(args) => cluster::report_cmd(&args),
        Command::Health(args) => cluster::health_cmd(&args),
        Command::Fixture {
            command: FixtureCommand::Train(args),
        } => {
            let opts = compsafe_engine::fixture::FixtureOptions {
                out: args.out,
                seed: args.seed,
                quick: args.quick,
            };
            let dirs = compsafe_engine::fixture::train(&opts)?;
            for d in dirs {
                println!("{}", d.display());
            }
            Ok(Outcome::Ok)
        }
        Command::Fixture {
            command: FixtureCommand::Plant(args),
        } => {
            if !args.from.is_dir() {
                return Err(Failure::input(format!(
                    "--from {}: not a model directory",
                    args.from.display()
                )));
            }
            let planted = compsafe_engine::fixture::quantdoor::plant(
                &compsafe_engine::fixture::quantdoor::PlantOptions {
                    from: args.from,
                    out: args.out,
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
    }
}

/// The human-readable outputs of a report, by file name.
pub(crate) fn render_all(report: &compsafe_core::Report) -> Vec<(&'static str, String)> {
    vec![
        ("report.md", compsafe_core::render::markdown(report)),
        ("report.html", compsafe_core::render::html(report)),
        ("junit.xml", compsafe_core::render::junit(report, None)),
    ]
}

fn doctor() -> Result<Outcome, Failure> {
    println!("compsafe {}", env!("CARGO_PKG_VERSION"));
    println!("os: {} {}", std::env::consts::OS, std::env::consts::ARCH);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("cpu threads: {threads}");
    println!(
        "cuda: {}",
        if cfg!(feature = "cuda") {
            "compiled in"
        } else {
            "not compiled in (build with --features cuda for GPU workers)"
        }
    );
    for line in compsafe_engine::device::describe_devices() {
        println!("{line}");
    }
    Ok(Outcome::Ok)
}
