//! Writing a command's outputs: the report files of a sweep, and the files of an analysis.

use std::io::Write;
use std::path::{Path, PathBuf};

use compsafe_core::aggregate::SweepOutputs;
use compsafe_core::report::{Integrity, Record};
use compsafe_core::Report;

use crate::exit::{Failure, Outcome};

fn render_all(report: &compsafe_core::Report) -> Vec<(&'static str, String)> {
    vec![
        ("report.md", compsafe_core::render::markdown(report)),
        ("report.html", compsafe_core::render::html(report)),
        ("junit.xml", compsafe_core::render::junit(report, None)),
    ]
}

/// Writes one file; the error names it (exit 3).
pub fn write_file(path: &Path, contents: &[u8]) -> Result<(), Failure> {
    std::fs::write(path, contents)
        .map_err(|e| Failure::infra(format!("{}: cannot write: {e}", path.display())))
}

/// Writes report.json, records.jsonl, report.md, report.html and junit.xml into `out`.
pub fn write_outputs(
    out: &Path,
    report: &Report,
    records: &[Record],
) -> Result<Vec<PathBuf>, Failure> {
    std::fs::create_dir_all(out).map_err(|e| {
        Failure::infra(format!(
            "{}: cannot create output directory: {e}",
            out.display()
        ))
    })?;
    let mut written = Vec::new();
    let json = serde_json::to_string_pretty(report)
        .map_err(|e| Failure::infra(format!("report serialisation failed: {e}")))?;
    let p = out.join("report.json");
    write_file(&p, format!("{json}\n").as_bytes())?;
    written.push(p);
    let mut jsonl = Vec::new();
    for r in records {
        serde_json::to_writer(&mut jsonl, r)
            .map_err(|e| Failure::infra(format!("record serialisation failed: {e}")))?;
        let _ = jsonl.write_all(b"\n");
    }
    let p = out.join("records.jsonl");
    write_file(&p, &jsonl)?;
    written.push(p);
    for (name, text) in render_all(report) {
        let p = out.join(name);
        write_file(&p, text.as_bytes())?;
        written.push(p);
    }
    Ok(written)
}

/// `--out`, or `out/<command>-<model file name>`; created.
pub fn output_dir(out: Option<&Path>, command: &str, model: &Path) -> Result<PathBuf, Failure> {
    let dir = out.map(Path::to_path_buf).unwrap_or_else(|| {
        PathBuf::from("out").join(format!(
            "{command}-{}",
            model
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ))
    });
    std::fs::create_dir_all(&dir)
        .map_err(|e| Failure::input(format!("--out {}: {e}", dir.display())))?;
    Ok(dir)
}

/// Writes one output file; the error names it.
pub fn write(path: &Path, text: &str) -> Result<(), Failure> {
    std::fs::write(path, text).map_err(|e| Failure::input(format!("{}: {e}", path.display())))
}

/// Writes a sweep's outputs into `out` (the report files and the analyses' files) and tells
/// the user how it went: integrity failures, failed variants, failed analysis checks, the
/// cells (or, with `json`, one JSON line). A variant that could not be evaluated on trusted
/// files, or a failed analysis check, fails the run (exit 1).
pub fn finish(out: &Path, outputs: &SweepOutputs, json: bool) -> Result<Outcome, Failure> {
    let report = &outputs.report;
    if report.model.integrity == Integrity::Failed {
        eprintln!(
            "INTEGRITY FAILURE: {} does not match its manifest (see report.json model.files)",
            report.model.path
        );
    }
    let failed: Vec<_> = report.variants.iter().filter(|v| v.failed()).collect();
    for v in &failed {
        eprintln!(
            "variant {} failed: {}",
            v.name,
            v.error.as_deref().unwrap_or_default()
        );
        for f in &v.integrity_failures {
            eprintln!("  {f}");
        }
    }
    for f in &outputs.flags {
        eprintln!("FLAGGED {f}");
    }
    let mut written = write_outputs(out, report, &outputs.records)?;
    for (name, text) in &outputs.files {
        let p = out.join(name);
        write_file(&p, text.as_bytes())?;
        written.push(p);
    }
    if json {
        println!(
            "{}",
            serde_json::json!({"event": "done", "sweep": report.sweep.id,
                "flags": outputs.flags,
                "files": written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>()})
        );
    } else {
        print_summary(report);
        for p in &written {
            println!("wrote {}", p.display());
        }
    }
    Ok(Outcome::failed_if(
        !failed.is_empty() || !outputs.flags.is_empty(),
    ))
}

fn print_summary(report: &Report) {
    println!(
        "sweep {} ({}), reference {}",
        report.sweep.name, report.sweep.id, report.reference
    );
    for c in &report.cells {
        let mut parts = vec![format!("{:<18} {:<22} n={:<4}", c.variant, c.suite, c.n)];
        if let Some(r) = c.refusal_rate {
            parts.push(format!("refusal {:.3}", r));
        }
        if let Some(r) = c.asr {
            parts.push(format!("asr {:.3}", r));
        }
        if let Some(r) = c.accuracy {
            parts.push(format!("acc {:.3}", r));
        }
        if let Some(r) = c.mc2 {
            parts.push(format!("mc2 {:.3}", r));
        }
        if let Some(vs) = &c.vs_reference {
            parts.push(format!("Δ {:+.3}", vs.delta));
            if let Some(p) = vs.mcnemar_p {
                parts.push(format!("p={p:.2e}"));
            }
        }
        println!("{}", parts.join("  "));
    }
}
