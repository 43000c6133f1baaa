//! `compsafe diff BASE.json NEW.json [--gate FILE]`: the regression gate of nightly runs.

use compsafe_core::gate::{evaluate, load_gate, load_report, Gate};

use crate::cli::DiffArgs;
use crate::exit::{Failure, Outcome};

pub fn run(args: &DiffArgs) -> Result<Outcome, Failure> {
    let base = load_report(&args.base)?;
    let new = load_report(&args.new)?;
    let gate = match &args.gate {
        Some(p) => load_gate(p)?,
        None => Gate::default(),
    };
    let outcome = evaluate(&base, &new, &gate);
    if let Some(p) = &args.junit {
        std::fs::write(p, compsafe_core::render::junit(&new, Some(&outcome))).map_err(|e| {
            Failure {
                code: 3,
                message: format!("{}: cannot write: {e}", p.display()),
            }
        })?;
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&outcome).unwrap_or_default()
        );
    } else {
        for f in &outcome.failures {
            println!(
                "FAIL {} / {} [{:?}]: {}",
                f.variant, f.suite, f.rule, f.message
            );
        }
        println!(
            "{}: {} cells checked, {} failures",
            if outcome.passed() {
                "gate passed"
            } else {
                "gate FAILED"
            },
            outcome.checked,
            outcome.failures.len()
        );
    }
    Ok(if outcome.passed() {
        Outcome::Ok
    } else {
        Outcome::CheckFailed
    })
}
