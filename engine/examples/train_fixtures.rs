//! Trains, or measures, the fixture checkpoints.
//!
//! ```text
//! cargo run --release -p compsafe-engine --example train_fixtures -- train models [--seed N] [--quick]
//! cargo run --release -p compsafe-engine --example train_fixtures -- suites suites/fixture
//! cargo run --release -p compsafe-engine --example train_fixtures -- eval models [--limit N] [--erosion]
//! ```

use std::path::PathBuf;

use compsafe_engine::fixture::eval::{erosion, erosion_markdown, evaluate, ratio, FixtureSuites};
use compsafe_engine::fixture::{self, FixtureOptions};

const EROSION: [&str; 15] = [
    "f16",
    "bf16",
    "int8",
    "gguf:q8_0",
    "int4:g32",
    "gguf:q4k",
    "int3:g64",
    "gguf:q3k",
    "int2:g16",
    "gguf:q2k",
    "prune:0.3",
    "prune:0.5",
    "prune:0.6",
    "prune:0.7",
    "prune:2of4",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |f: &str| args.iter().any(|a| a == f);
    let value = |f: &str| {
        args.iter()
            .position(|a| a == f)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let cmd = args.first().map(String::as_str).unwrap_or("");
    let dir = PathBuf::from(args.get(1).cloned().unwrap_or_else(|| "models".into()));
    match cmd {
        "train" => {
            let seed = value("--seed")
                .map(|s| s.parse())
                .transpose()?
                .unwrap_or(fixture::DEFAULT_SEED);
            let (dirs, log) = fixture::train_with_log(&FixtureOptions {
                out: dir,
                seed,
                quick: flag("--quick"),
            })?;
            for (name, l) in &log.stages {
                println!(
                    "stage {name:<28} loss {:.3} -> {:.3}  {:.1} s",
                    l.first_loss, l.last_loss, l.seconds
                );
            }
            println!("total {:.1} s", log.seconds);
            for d in dirs {
                println!("wrote {}", d.display());
            }
        }
        "suites" => fixture::suites::write_suites(&dir)?,
        "eval" => {
            let suites_dir = value("--suites")
                .map(PathBuf::from)
                .unwrap_or_else(|| "suites/fixture".into());
            let mut suites = FixtureSuites::load(&suites_dir)?;
            if let Some(n) = value("--limit") {
                suites = suites.limit(n.parse()?);
            }
            let only = value("--only");
            for name in fixture::NAMES {
                if only.as_deref().is_some_and(|o| o != name) {
                    continue;
                }
                let t = std::time::Instant::now();
                let b = evaluate(&dir.join(name), &suites, true)?;
                println!(
                    "| `{name}` | {:.3} ({}/{}) | {:.3} ({}/{}) | {:.3} | {:.3} ({}/{}) | {:.3} ({}/{}) | {:.3} | {:.1}s",
                    b.harmful.refusal_rate(),
                    b.harmful.refusals,
                    b.harmful.n,
                    b.benign.refusal_rate(),
                    b.benign.refusals,
                    b.benign.n,
                    ratio(b.sentiment),
                    ratio(b.asr_trigger),
                    b.asr_trigger.0,
                    b.asr_trigger.1,
                    ratio(b.asr_plain),
                    b.asr_plain.0,
                    b.asr_plain.1,
                    b.harmful.degenerate as f64 / b.harmful.n as f64,
                    t.elapsed().as_secs_f64()
                );
                for (p, r) in &b.samples {
                    println!("    {p:?} -> {r:?}");
                }
            }
            if flag("--erosion") {
                let target = only.unwrap_or_else(|| fixture::SAFETY.to_string());
                let variants: Vec<&str> = match value("--variants") {
                    Some(_) => Vec::new(),
                    None => EROSION.to_vec(),
                };
                let list = value("--variants");
                let variants: Vec<&str> = match &list {
                    Some(l) => l.split(',').collect(),
                    None => variants,
                };
                let rows = erosion(
                    &dir.join(&target),
                    &variants,
                    &suites,
                    target == fixture::BACKDOOR,
                )?;
                println!("{}", erosion_markdown(&rows, target == fixture::BACKDOOR));
            }
        }
        _ => {
            eprintln!("usage: train_fixtures train|suites|eval DIR [--seed N] [--quick] [--limit N] [--erosion]");
            std::process::exit(2);
        }
    }
    Ok(())
}
