//! `compsafe run SPEC`: a sweep on this machine, on an in-process cluster (or `--direct`,
//! one unit after the other without the coordinator), and its outputs.

use std::path::PathBuf;

use compsafe_core::aggregate::{sweep_outputs, SweepOutputs};
use compsafe_core::report::SweepInfo;
use compsafe_core::spec::{validate, Validated};
use compsafe_core::text::{now_ms, rfc3339};
use compsafe_core::unit::{depends_on, plan, SweepId, UnitResult, UnitSpec};
use compsafe_engine::device::parse_device;

use crate::exit::{Failure, Outcome};
use crate::local::Local;

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
    /// Where distilled students and calibrated variants are kept (default:
    /// $XDG_CACHE_HOME/compsafe or ~/.cache/compsafe).
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

impl Args {
    /// How the sweep runs in this process.
    pub fn local(&self) -> Result<Local, Failure> {
        Ok(Local {
            spec: self
                .spec
                .canonicalize()
                .map_err(|e| Failure::input(format!("{}: {e}", self.spec.display())))?,
            device: self.device.clone(),
            workers: self.workers,
            json: self.json,
            resume: self.resume,
            prompts_per_unit: self.prompts_per_unit,
            cache_dir: self.cache_dir(),
        })
    }
}

/// Runs the sweep and writes its outputs.
pub fn exec(args: &Args) -> Result<Outcome, Failure> {
    let v = validate(&args.spec)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("out").join(&v.spec.sweep.name));
    let local = args.local()?;
    let outputs = if args.direct {
        direct(&local, &v)?
    } else {
        crate::local::execute(&local, &v, &out)?
    };
    crate::output::finish(&out, &outputs, args.json)
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

/// Runs every unit of the sweep in this process, in plan order, without the coordinator (a
/// cross-check of the cluster path: the same units, the same runner, the same assembly).
pub fn direct(local: &Local, v: &Validated) -> Result<SweepOutputs, Failure> {
    let spec = &v.spec;
    let started_at = rfc3339(now_ms());
    let id = SweepId::new(&spec.sha256, now_ms(), u64::from(std::process::id())).0;
    let text = std::fs::read_to_string(&local.spec)
        .map_err(|e| Failure::input(format!("{}: {e}", local.spec.display())))?;
    let path = local.spec.display().to_string();
    let device = parse_device(&local.device)?;
    let mut runner =
        compsafe_eval::Runner::new(device, None).with_cache_dir(local.cache_dir.clone());
    let units = plan(v, local.prompts_per_unit);
    let mut results: Vec<UnitResult> = Vec::with_capacity(units.len());
    for (i, p) in units.iter().enumerate() {
        progress(
            local.json,
            &format!("unit {}/{} ({})", i + 1, units.len(), p.kind),
        );
        let deps: Vec<&UnitResult> = units[..i]
            .iter()
            .zip(&results)
            .filter(|(d, _)| depends_on(p, d))
            .map(|(_, r)| r)
            .collect();
        let u = UnitSpec::new(&id, i as u32, (&text, &path), p, &deps).started(&started_at);
        let r = runner.run(&u).map_err(|e| {
            let message = format!("unit {}: {}", u.unit_id, e.reason);
            match e.fault {
                compsafe_eval::Fault::Input => Failure::input(message),
                _ => Failure::infra(message),
            }
        })?;
        results.push(r);
    }
    let sweep = SweepInfo {
        id,
        name: spec.sweep.name.clone(),
        spec_sha256: spec.sha256.clone(),
        seed: spec.sweep.seed,
        started_at,
        finished_at: rfc3339(now_ms()),
    };
    let with: Vec<_> = units.iter().copied().zip(results.iter()).collect();
    sweep_outputs(v, sweep, &with).map_err(Failure::infra)
}
