//! `compsafe validate SPEC`: parses and checks a spec (files, hashes, regexes, suites); runs nothing.

use std::path::PathBuf;

use compsafe_core::spec::validate;

use crate::exit::{Failure, Outcome};

/// Arguments of `compsafe validate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The sweep spec (TOML).
    pub spec: PathBuf,
}

/// Prints a one-line summary of a valid spec.
pub fn exec(args: &Args) -> Result<Outcome, Failure> {
    let v = validate(&args.spec).map_err(|e| Failure::input(e.to_string()))?;
    let prompts: usize = v.suites.iter().map(|s| s.len()).sum();
    println!(
        "{}: ok — model {}, {} variants, {} suites, {} prompts",
        args.spec.display(),
        v.spec.model.path.display(),
        v.spec.variants.len(),
        v.suites.len(),
        prompts
    );
    Ok(Outcome::Ok)
}
