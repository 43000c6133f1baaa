//! `compsafe run` end to end on a small sweep: the five output files, the report contract,
//! and reproducibility (two runs give the same report apart from ids and timestamps).

use std::path::{Path, PathBuf};
use std::process::Command;

use compsafe_tests::root;

fn write_spec(dir: &Path) -> PathBuf {
    let model = root().join("engine/tests/fixtures/hf/llama-gqa");
    let spec = dir.join("sweep.toml");
    std::fs::write(
        &spec,
        format!(
            r#"variants = ["bf16", "int4:g32", "int2:g16", "prune:0.5"]
[sweep]
name = "e2e"
seed = 11
[model]
path = "{}"
[[suites]]
name = "advbench"
limit = 12
[[suites]]
name = "xstest-safe"
limit = 12
[generation]
max_new_tokens = 16
[stats]
bootstrap_resamples = 200
"#,
            model.display()
        ),
    )
    .unwrap();
    spec
}

fn run(spec: &Path, out: &Path) -> serde_json::Value {
    let o = Command::new(compsafe_tests::bin_path())
        .args([
            "run",
            spec.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in [
        "report.json",
        "report.md",
        "report.html",
        "records.jsonl",
        "junit.xml",
    ] {
        let p = out.join(f);
        assert!(
            p.is_file() && std::fs::metadata(&p).unwrap().len() > 0,
            "{f} written"
        );
    }
    serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap()
}

fn without_run_identity(mut v: serde_json::Value) -> serde_json::Value {
    for k in ["id", "started_at", "finished_at"] {
        v["sweep"].as_object_mut().unwrap().remove(k);
    }
    v
}

#[test]
fn sweep_writes_the_contract_and_is_reproducible() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path());
    let a = run(&spec, &tmp.path().join("a"));
    // The report.json contract of DESIGN.md.
    assert_eq!(a["schema"], "compsafe.report/v1");
    for k in [
        "compsafe_version",
        "sweep",
        "model",
        "reference",
        "variants",
        "cells",
        "divergences",
    ] {
        assert!(a.get(k).is_some(), "report.{k}");
    }
    for k in [
        "id",
        "name",
        "spec_sha256",
        "seed",
        "started_at",
        "finished_at",
    ] {
        assert!(a["sweep"].get(k).is_some(), "sweep.{k}");
    }
    assert_eq!(a["reference"], "fp32");
    let variants = a["variants"].as_array().unwrap();
    assert_eq!(variants.len(), 5);
    for v in variants {
        for k in [
            "name",
            "kind",
            "method",
            "bits_per_weight",
            "bytes",
            "integrity",
        ] {
            assert!(v.get(k).is_some(), "variants[].{k} of {}", v["name"]);
        }
    }
    let int4 = variants.iter().find(|v| v["name"] == "int4:g32").unwrap();
    assert!(int4["weight_error"]["mean_rel"].as_f64().unwrap() > 0.0);
    assert!(int4["bits_per_weight"].as_f64().unwrap() < 32.0);
    let cells = a["cells"].as_array().unwrap();
    assert_eq!(
        cells.len(),
        10,
        "5 variants x 2 suites, reference cells included"
    );
    for c in cells {
        assert!(c["refusal_rate"].is_number() && c["refusal_ci95"].is_array());
        // Accuracy does not apply to refusal suites: absent, never 0.
        assert!(c.get("accuracy").is_none());
        let is_ref = c["variant"] == "fp32";
        assert_eq!(c.get("vs_reference").is_none(), is_ref, "{}", c["variant"]);
        if !is_ref {
            for k in [
                "delta",
                "delta_ci95",
                "mcnemar_p",
                "refuse_to_comply",
                "comply_to_refuse",
            ] {
                assert!(c["vs_reference"].get(k).is_some(), "vs_reference.{k}");
            }
            assert!(
                c["logits"]["kld_mean"].is_number(),
                "logit fidelity measured"
            );
        }
    }
    let bf16 = cells.iter().find(|c| c["variant"] == "bf16").unwrap();
    assert!(bf16["logits"]["same_top"].as_f64().unwrap() > 0.9);
    let records = std::fs::read_to_string(tmp.path().join("a/records.jsonl")).unwrap();
    assert_eq!(records.lines().count(), 5 * 24);

    let b = run(&spec, &tmp.path().join("b"));
    assert_ne!(a["sweep"]["id"], b["sweep"]["id"]);
    assert_eq!(without_run_identity(a.clone()), without_run_identity(b));

    // The regression gate: the same report passes; a refusal collapse of one variant fails
    // with exit status 1 and shows in junit.xml.
    let base = tmp.path().join("a/report.json");
    let diff = |new: &Path| {
        let junit = tmp.path().join("gate-junit.xml");
        let o = Command::new(compsafe_tests::bin_path())
            .args([
                "diff",
                base.to_str().unwrap(),
                new.to_str().unwrap(),
                "--junit",
                junit.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        (o.status.code(), std::fs::read_to_string(junit).unwrap())
    };
    assert_eq!(diff(&tmp.path().join("b/report.json")).0, Some(0));
    let mut base_json = a.clone();
    let mut worse = a;
    for (doc, rate, ci) in [
        (&mut base_json, 0.9, [0.7, 0.97]),
        (&mut worse, 0.1, [0.03, 0.3]),
    ] {
        for c in doc["cells"].as_array_mut().unwrap() {
            if c["variant"] == "int2:g16" && c["suite"] == "advbench" {
                c["refusal_rate"] = serde_json::json!(rate);
                c["refusal_ci95"] = serde_json::json!(ci);
            }
        }
    }
    std::fs::write(&base, serde_json::to_string(&base_json).unwrap()).unwrap();
    let worse_path = tmp.path().join("worse.json");
    std::fs::write(&worse_path, serde_json::to_string(&worse).unwrap()).unwrap();
    let (code, junit) = diff(&worse_path);
    assert_eq!(code, Some(1));
    assert!(
        junit.contains("<failure") && junit.contains("int2:g16 / advbench"),
        "{junit}"
    );
}

#[test]
fn validate_reports_every_problem_and_exits_2() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = tmp.path().join("bad.toml");
    std::fs::write(
        &spec,
        "variants = [\"int4:g0\"]\n[sweep]\nname = \"x\"\n[model]\npath = \"missing-model\"\n",
    )
    .unwrap();
    let o = Command::new(compsafe_tests::bin_path())
        .args(["validate", spec.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.toml") && err.contains("int4:g0"), "{err}");
    let ok = write_spec(tmp.path());
    let o = Command::new(compsafe_tests::bin_path())
        .args(["validate", ok.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn bundled_example_specs_validate() {
    let specs = [
        "examples/quickstart.toml",
        "examples/backdoor.toml",
        "examples/gguf.toml",
    ];
    for spec in specs {
        let o = Command::new(compsafe_tests::bin_path())
            .args(["validate", root().join(spec).to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{spec}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}
