//! The analysis commands are shorthands: each builds a spec with one `[analysis.*]` (or
//! `[search]`) section from its flags and runs it on an in-process cluster, exactly as
//! `compsafe run` would run that spec (and `compsafe submit` on a fleet).

use std::path::{Path, PathBuf};

use compsafe_core::aggregate::SweepOutputs;
use compsafe_core::spec::SpecBuilder;

use crate::args::AnalysisArgs;
use crate::exit::Failure;
use crate::local::Local;
use crate::output::{output_dir, write};

/// The model path as the spec names it: absolute, or the flag's error.
pub fn model_path(model: &Path) -> Result<PathBuf, Failure> {
    model
        .canonicalize()
        .map_err(|e| Failure::input(format!("--model {}: {e}", model.display())))
}

/// Validates the spec built from the flags, writes it as `spec.toml` into the output
/// directory and runs it; returns the output directory and the sweep's outputs.
pub fn run(
    command: &str,
    model: &Path,
    spec: &SpecBuilder,
    a: &AnalysisArgs,
) -> Result<(PathBuf, SweepOutputs), Failure> {
    let out = output_dir(a.out.as_deref(), command, model)?;
    let out = out
        .canonicalize()
        .map_err(|e| Failure::input(format!("--out {}: {e}", out.display())))?;
    let path = out.join("spec.toml");
    let v = spec.validate(&path)?;
    write(&path, &spec.text())?;
    let local = Local {
        spec: path,
        device: a.device.clone(),
        workers: a.workers,
        json: a.json,
        resume: false,
        prompts_per_unit: 0,
        cache_dir: compsafe_eval::distill::default_cache_dir(),
    };
    let outputs = crate::local::execute(&local, &v, &out)?;
    crate::local::remove_state(&crate::local::state_db(&out))?;
    Ok((out, outputs))
}

/// Writes the analysis's files (those whose name starts with `stem.`) into `out`, and prints
/// its JSON (`json`) or its markdown.
pub fn write_files(
    out: &Path,
    stem: &str,
    outputs: &SweepOutputs,
    json: bool,
) -> Result<(), Failure> {
    let mine: Vec<&(String, String)> = outputs
        .files
        .iter()
        .filter(|(n, _)| n.starts_with(&format!("{stem}.")))
        .collect();
    if mine.is_empty() {
        return Err(Failure::infra(format!(
            "the {stem} analysis produced no result (see the errors above)"
        )));
    }
    let mut names = Vec::new();
    for (name, text) in &mine {
        write(&out.join(name), text)?;
        names.push(name.trim_start_matches(&format!("{stem}.")).to_string());
    }
    let pick = |ext: &str| mine.iter().find(|(n, _)| n.ends_with(ext)).map(|(_, t)| t);
    if json {
        if let Some(t) = pick(".json") {
            println!("{}", t.trim_end());
        }
    } else {
        if let Some(t) = pick(".md") {
            print!("{t}");
        }
        println!("wrote {}/{stem}.{{{}}}", out.display(), names.join(","));
    }
    Ok(())
}
