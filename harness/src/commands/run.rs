//! `compsafe run SPEC`: a sweep on this machine, on an in-process cluster (or `--direct`), and
//! its outputs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use compsafe_core::aggregate::{assemble, Inputs};
use compsafe_core::report::{Integrity, Record, SweepInfo, VariantInfo};
use compsafe_core::spec::{validate, SearchSection, Validated};
use compsafe_core::suite::Expect;
use compsafe_core::Report;
use compsafe_engine::device::parse_device;
use compsafe_eval::evaluator::{judges_for, Evaluator, ReferenceOutputs};
use compsafe_eval::info::{failed_variant_info, model_info, variant_info, variant_integrity};
use compsafe_eval::search::{search, SearchConfig, SearchResult, Searcher};

use crate::exit::{Failure, Outcome};

/// Arguments of `compsafe run`.
#[derive(Debug, clap::Args)]
pub struct Args {
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
    /// Continue the interrupted run whose state is in the output directory.
    #[arg(long)]
    pub resume: bool,
    /// Prompts per work unit (0: a whole suite per unit); smaller units resume with less
    /// lost work.
    #[arg(long, default_value_t = 0)]
    pub prompts_per_unit: usize,
    /// Evaluate sequentially in this process, without the coordinator and its state (no
    /// resume); a cross-check of the cluster path.
    #[arg(long, conflicts_with_all = ["resume", "workers"])]
    pub direct: bool,
    /// Where distilled students are kept (default: $XDG_CACHE_HOME/compsafe or
    /// ~/.cache/compsafe).
    #[arg(long, env = "COMPSAFE_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
}

impl Args {
    /// The cache directory of distilled students.
    pub fn cache_dir(&self) -> PathBuf {
        self.cache_dir
            .clone()
            .unwrap_or_else(compsafe_eval::distill::default_cache_dir)
    }
}

fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn sweep_id(spec_sha: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{}-{:x}",
        &spec_sha[..12.min(spec_sha.len())],
        nanos & 0xffff_ffff_ffff
    )
}

fn progress(json: bool, msg: &str) {
    if json {
        eprintln!(
            "{}",
            serde_json::json!({"event": "progress", "message": msg})
        );
    } else {
        eprintln!("{msg}");
    }
}

/// Runs the sweep sequentially in this process, without the coordinator (`--direct`), and
/// returns its report and records.
pub fn execute(
    v: &Validated,
    device: &str,
    cache_dir: &Path,
    json: bool,
) -> Result<(Report, Vec<Record>), Failure> {
    let spec = &v.spec;
    let started_at = now_rfc3339();
    let device = parse_device(device)?;
    let model_info = model_info(spec)?;
    for m in &model_info.integrity_failures {
        eprintln!("{m}");
    }
    let checks = spec
        .variants
        .iter()
        .map(|e| variant_integrity(e, &model_info))
        .collect::<Result<Vec<_>, _>>()?;
    let eval = if checks.iter().all(|c| !c.failures.is_empty()) {
        None
    } else {
        progress(json, &format!("loading {}", spec.model.path.display()));
        Some(Evaluator::load(
            &spec.model.path,
            spec.model.chat_template.as_deref(),
            &device,
        )?)
    };
    let mut records: Vec<Record> = Vec::new();
    let mut variants: Vec<VariantInfo> = Vec::new();
    let mut reference_outputs: BTreeMap<String, ReferenceOutputs> = BTreeMap::new();
    let budget = spec.generation.batch_tokens as usize;
    for (vi, entry) in spec.variants.iter().enumerate() {
        let variant = &entry.variant;
        let is_ref = vi == 0;
        let check = &checks[vi];
        let Some(eval) = eval.as_ref().filter(|_| check.failures.is_empty()) else {
            // The files do not match their pins: nothing is evaluated on them.
            variants.push(failed_variant_info(entry, check));
            continue;
        };
        progress(
            json,
            &format!(
                "variant {} ({}/{})",
                variant.name,
                vi + 1,
                spec.variants.len()
            ),
        );
        let (derived, training) = compsafe_eval::distill::derive(eval, variant, cache_dir, budget)?;
        variants.push(variant_info(entry, &derived, check.integrity, training));
        for (si, suite) in v.suites.iter().enumerate() {
            let judges = judges_for(spec, si, suite)?;
            let recs = if suite.expect == Expect::MultipleChoice {
                eval.eval_multiple_choice(
                    &variant.name,
                    &derived.model,
                    suite,
                    &suite.prompts,
                    budget,
                )?
            } else {
                let reference = if is_ref {
                    None
                } else {
                    reference_outputs.get(&suite.name)
                };
                let (recs, own) = eval.eval_generation(
                    &variant.name,
                    &derived.model,
                    suite,
                    &suite.prompts,
                    &judges,
                    &spec.generation,
                    reference,
                )?;
                if is_ref {
                    reference_outputs.insert(suite.name.clone(), own);
                }
                recs
            };
            records.extend(recs);
        }
    }
    let sweep = SweepInfo {
        id: sweep_id(&spec.sha256),
        name: spec.sweep.name.clone(),
        spec_sha256: spec.sha256.clone(),
        seed: spec.sweep.seed,
        started_at,
        finished_at: now_rfc3339(),
    };
    let report = assemble(
        Inputs {
            spec,
            suites: &v.suites,
            sweep,
            model: model_info,
            variants,
        },
        &records,
    )?;
    Ok((report, records))
}

/// Runs the sweep and writes its outputs.
pub fn exec(args: &Args) -> Result<Outcome, Failure> {
    let v = validate(&args.spec).map_err(|e| Failure::input(e.to_string()))?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("out").join(&v.spec.sweep.name));
    let (report, records) = if args.direct {
        execute(&v, &args.device, &args.cache_dir(), args.json)?
    } else {
        crate::local::execute(args, &v, &out)?
    };
    if report.model.integrity == Integrity::Failed {
        eprintln!(
            "INTEGRITY FAILURE: {} does not match its manifest (see report.json model.files)",
            report.model.path
        );
    }
    let failed: Vec<VariantInfo> = report
        .variants
        .iter()
        .filter(|v| v.failed())
        .cloned()
        .collect();
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
    let mut report = report;
    if let Some(section) = &v.spec.search {
        if failed.is_empty() {
            let found = run_search(&v, section, &args.device, args.json)?;
            let text = serde_json::to_string_pretty(&found.iter().map(|(n, r)| {
                serde_json::json!({"variant": n, "suite": section.suite, "search": r})
            }).collect::<Vec<_>>())
            .map_err(|e| Failure::infra(format!("search serialisation failed: {e}")))?;
            std::fs::create_dir_all(&out).map_err(|e| {
                Failure::infra(format!(
                    "{}: cannot create output directory: {e}",
                    out.display()
                ))
            })?;
            crate::output::write_file(&out.join("search.json"), format!("{text}\n").as_bytes())?;
            for (name, r) in &found {
                report
                    .divergences
                    .extend(compsafe_eval::search::divergences(
                        &r.greedy,
                        name,
                        &section.suite,
                    ));
            }
        }
    }
    let written = crate::output::write_outputs(&out, &report, &records)?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"event": "done", "sweep": report.sweep.id,
                "files": written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>()})
        );
    } else {
        print_summary(&report);
        for p in &written {
            println!("wrote {}", p.display());
        }
    }
    // A variant that could not be evaluated on trusted files fails the run (exit 1).
    Ok(Outcome::failed_if(!failed.is_empty()))
}

/// The spec's `[search]`: the targeted search of each named variant on the named suite, run
/// in this process after the sweep (greedy search and its random baseline).
fn run_search(
    v: &Validated,
    section: &SearchSection,
    device: &str,
    json: bool,
) -> Result<Vec<(String, SearchResult)>, Failure> {
    let spec = &v.spec;
    let device = parse_device(device)?;
    let si = spec
        .suites
        .iter()
        .position(|s| s.source.name == section.suite)
        .ok_or_else(|| {
            Failure::input(format!("search.suite = {:?}: not a suite", section.suite))
        })?;
    let suite = &v.suites[si];
    let judges = judges_for(spec, si, suite)?;
    let eval = Evaluator::load(
        &spec.model.path,
        spec.model.chat_template.as_deref(),
        &device,
    )?;
    let cfg = SearchConfig {
        budget: section.budget,
        suffix_len: section.suffix_len,
        candidates: section.candidates,
        seed: section.seed,
        margin: section.margin,
    };
    let prompts = &suite.prompts[..section.limit.min(suite.prompts.len())];
    let mut out = Vec::new();
    for name in &section.variants {
        let entry = spec
            .variants
            .iter()
            .find(|e| &e.variant.name == name)
            .ok_or_else(|| Failure::input(format!("search.variants: {name:?} is not a variant")))?;
        progress(json, &format!("search: {name} on {}", suite.name));
        let derived = eval.derive(&entry.variant)?;
        let searcher = Searcher::new(
            &eval,
            &derived.model,
            name,
            suite,
            &judges,
            &spec.generation,
            cfg,
        )?;
        out.push((name.clone(), search(&searcher, prompts)?));
    }
    Ok(out)
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
