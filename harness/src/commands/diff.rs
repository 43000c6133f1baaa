//! `compsafe diff BASE.json NEW.json [--gate F]`: the regression gate of nightly runs.

use std::path::PathBuf;

use compsafe_core::gate::{evaluate, load_gate, load_report, Gate};

use crate::exit::{Failure, Outcome};

/// Arguments of `compsafe diff`.
#[derive(Debug, clap::Args)]
pub struct Args {
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

/// Exit 1 when a rule fails.
pub fn exec(args: &Args) -> Result<Outcome, Failure> {
    let base = load_report(&args.base)?;
    let new = load_report(&args.new)?;
    let gate = match &args.gate {
        Some(p) => load_gate(p)?,
        None => Gate::default(),
    };
    let outcome = evaluate(&base, &new, &gate);
    if let Some(p) = &args.junit {
        std::fs::write(p, compsafe_core::render::junit(&new, Some(&outcome)))
            .map_err(|e| Failure::infra(format!("{}: cannot write: {e}", p.display())))?;
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
    Ok(Outcome::failed_if(!outcome.passed()))
}
