//! `compsafe run` with quantized output projections: GGUF files written as llama.cpp's Q4_K_M
//! (output Q6_K) and as one-type q4k (output Q4_K) evaluated as checkpoint variants, and the
//! `gguf:q6_k` recipe derived in memory: the last-position slice the output projection
//! multiplies is made contiguous, and every unit completes.

use compsafe_tests::{bin, root};

fn compsafe(args: &[&str]) -> std::process::Output {
    bin().args(args).output().unwrap()
}

#[test]
fn quantized_output_projections_run_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let model = root().join("models/tiny-safety");
    let q4km = tmp.path().join("q4_k_m.gguf");
    let q4k = tmp.path().join("q4k.gguf");
    for (ty, out) in [("q4_k_m", &q4km), ("q4k", &q4k)] {
        let o = compsafe(&[
            "quantize",
            "--model",
            model.to_str().unwrap(),
            "--type",
            ty,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let spec = tmp.path().join("sweep.toml");
    std::fs::write(
        &spec,
        format!(
            r#"variants = [{{ name = "q4_k_m-file", path = "{}" }}, {{ name = "q4k-file", path = "{}" }}, "gguf:q6_k"]
[sweep]
name = "gguf-output"
seed = 3
[model]
path = "{}"
[[suites]]
name = "fixture-harmful"
limit = 6
[generation]
max_new_tokens = 8
[stats]
bootstrap_resamples = 50
"#,
            q4km.display(),
            q4k.display(),
            model.display()
        ),
    )
    .unwrap();
    let out = tmp.path().join("out");
    let o = compsafe(&[
        "run",
        spec.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let variants = report["variants"].as_array().unwrap();
    assert_eq!(variants.len(), 4, "{variants:?}");
    for v in variants {
        assert!(v.get("error").is_none(), "{v}");
    }
    let cells = report["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 4);
    for c in cells {
        assert_eq!(c["n"], 6, "{c}");
    }
}
