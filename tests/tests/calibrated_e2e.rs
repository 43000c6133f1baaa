//! A calibrated sweep end to end on the bundled fixture: GPTQ calibrated on benign and on
//! harmful prompts, SmoothQuant and NF4, through `compsafe run --direct` (in process) and
//! `compsafe run` (coordinator and two workers over gRPC). The reports agree, each
//! calibrated variant says what it was calibrated on, the variants are derived once into the
//! cache and a second sweep takes them from it.

use std::path::Path;

use compsafe_tests::{bin, report, root, without_run_identity, write_file};

fn spec(dir: &Path) -> std::path::PathBuf {
    let model = root().join("models/tiny-safety");
    write_file(
        dir,
        "calibrated.toml",
        &format!(
            r#"variants = ["gptq:w4g128", "smoothquant:w8a8", "nf4",
  {{ name = "gptq-harmful", method = "gptq:w4g128", calibration = {{ suite = "fixture-harmful", seed = 1 }} }}]
[sweep]
name = "calibrated-e2e"
seed = 3
[model]
path = "{}"
[calibration]
suite = "fixture-benign"
sequences = 8
seq_len = 32
[[suites]]
name = "fixture-harmful"
limit = 6
[generation]
max_new_tokens = 8
[stats]
bootstrap_resamples = 50
"#,
            model.display()
        ),
    )
}

fn run(spec: &Path, out: &Path, cache: &Path, extra: &[&str]) -> serde_json::Value {
    let o = bin()
        .args([
            "run",
            spec.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .args(extra)
        .env("COMPSAFE_CACHE_DIR", cache)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    without_run_identity(report(out))
}

fn entries(cache: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(cache.join("calibrated"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    v.sort();
    v
}

#[test]
fn calibrated_sweep_in_process_and_on_workers() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec(tmp.path());
    let (cache_a, cache_b) = (tmp.path().join("cache-a"), tmp.path().join("cache-b"));
    let direct = run(&spec, &tmp.path().join("direct"), &cache_a, &["--direct"]);
    // GPTQ twice (two calibration sets) and SmoothQuant; NF4 reads no calibration data.
    let stored = entries(&cache_a);
    assert_eq!(stored.len(), 3, "{stored:?}");
    for e in &stored {
        assert!(cache_a
            .join("calibrated")
            .join(e)
            .join("stats.json")
            .is_file());
    }
    let fleet = run(
        &spec,
        &tmp.path().join("fleet"),
        &cache_b,
        &["--workers", "2"],
    );
    assert_eq!(
        entries(&cache_b),
        stored,
        "the same cache keys on the fleet"
    );
    assert_eq!(direct["cells"], fleet["cells"]);
    assert_eq!(direct["variants"], fleet["variants"]);
    // From the cache: the same report.
    let again = run(
        &spec,
        &tmp.path().join("again"),
        &cache_a,
        &["--workers", "2"],
    );
    assert_eq!(again["cells"], direct["cells"]);
    assert_eq!(entries(&cache_a), stored);

    let calibration = |name: &str| {
        direct["variants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("{name}"))
            .get("calibration")
            .cloned()
    };
    assert_eq!(
        calibration("gptq:w4g128").unwrap(),
        "suite fixture-benign: 8 x 32 tokens, seed 0"
    );
    assert_eq!(
        calibration("gptq-harmful").unwrap(),
        "suite fixture-harmful: 8 x 32 tokens, seed 1"
    );
    assert_eq!(
        calibration("smoothquant:w8a8").unwrap(),
        "suite fixture-benign: 8 x 32 tokens, seed 0"
    );
    assert_eq!(calibration("nf4"), None);
    assert_eq!(calibration("fp32"), None);
    for c in direct["cells"].as_array().unwrap() {
        if c["variant"] != "fp32" {
            let kld = c["logits"]["kld_mean"].as_f64().unwrap();
            assert!(kld > 0.0 && kld < 0.5, "{}: {kld}", c["variant"]);
        }
    }
}
