//! A sweep whose spec pins a manifest: files that do not match it are not evaluated, the
//! variants end as failed with the failing tensor named in report.json, report.md and
//! junit.xml, and the run exits 1; the same spec on the untouched files passes.

use std::path::Path;

use compsafe_tests::root;

use compsafe_tests::run_cli as run;

fn copy_model(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(root().join("models/tiny-safety").join(f), dir.join(f)).unwrap();
    }
}

fn write_spec(path: &Path, model: &Path, manifest: &Path) {
    std::fs::write(
        path,
        format!(
            r#"variants = ["int4:g32", "prune:0.5"]
[sweep]
name = "pinned"
seed = 3
[model]
path = "{}"
manifest = "{}"
[[suites]]
name = "fixture-harmful"
limit = 4
[generation]
max_new_tokens = 16
[stats]
bootstrap_resamples = 100
"#,
            model.display(),
            manifest.display()
        ),
    )
    .unwrap();
}

fn report(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap()
}

const TENSOR: &str = "tensor `model.embed_tokens.weight`";

#[test]
fn a_manifest_mismatch_fails_every_variant_and_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let clean = tmp.path().join("clean");
    copy_model(&clean);
    let (code, _, err) = run(&["manifest", "create", clean.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let manifest = clean.join("MANIFEST.json");
    // The same files with one byte of model.embed_tokens.weight flipped (file bytes
    // 2104..1050680 hold that tensor).
    let tampered = tmp.path().join("tampered");
    copy_model(&tampered);
    let f = tampered.join("model.safetensors");
    let mut bytes = std::fs::read(&f).unwrap();
    bytes[4000] ^= 0x80;
    std::fs::write(&f, bytes).unwrap();

    let good_spec = tmp.path().join("good.toml");
    write_spec(&good_spec, &clean, &manifest);
    let bad_spec = tmp.path().join("bad.toml");
    write_spec(&bad_spec, &tampered, &manifest);

    // The pinned, untouched model passes and is evaluated.
    let out = tmp.path().join("good");
    let (code, _, err) = run(&[
        "run",
        good_spec.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let r = report(&out);
    assert_eq!(r["model"]["integrity"], "ok");
    assert_eq!(r["cells"].as_array().unwrap().len(), 3);
    for v in r["variants"].as_array().unwrap() {
        assert!(v.get("error").is_none(), "{v}");
        assert_eq!(v["integrity"], "ok", "{v}");
    }

    // The tampered model: through the in-process cluster and directly.
    for direct in [false, true] {
        let out = tmp.path().join(format!("bad-{direct}"));
        let mut args = vec![
            "run",
            bad_spec.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        if direct {
            args.push("--direct");
        }
        let (code, stdout, err) = run(&args);
        assert_eq!(code, 1, "direct {direct}: {stdout}\n{err}");
        assert!(err.contains(TENSOR), "{err}");
        let r = report(&out);
        assert_eq!(r["model"]["integrity"], "failed");
        assert!(
            r["model"]["integrity_failures"][0]
                .as_str()
                .unwrap()
                .contains(TENSOR),
            "{}",
            r["model"]
        );
        let variants = r["variants"].as_array().unwrap();
        assert_eq!(variants.len(), 3, "the reference and both variants listed");
        for v in variants {
            assert_eq!(v["integrity"], "failed", "{v}");
            assert!(v["error"].as_str().unwrap().starts_with("integrity"), "{v}");
            let failures = v["integrity_failures"].as_array().unwrap();
            assert!(
                failures
                    .iter()
                    .any(|f| f.as_str().unwrap().contains(TENSOR)),
                "{v}"
            );
            // Not evaluated: no size measured on the tampered weights.
            assert!(v.get("bytes").is_none() && v.get("weight_error").is_none());
        }
        // No evaluation results at all.
        assert!(r["cells"].as_array().unwrap().is_empty(), "{}", r["cells"]);
        assert!(r["divergences"].as_array().unwrap().is_empty());
        let records = std::fs::read_to_string(out.join("records.jsonl")).unwrap();
        assert!(records.trim().is_empty(), "{records}");
        let md = std::fs::read_to_string(out.join("report.md")).unwrap();
        assert!(
            // Markdown escapes the underscores.
            md.contains("not evaluated") && md.contains("model.embed\\_tokens.weight"),
            "{md}"
        );
        let junit = std::fs::read_to_string(out.join("junit.xml")).unwrap();
        assert!(
            junit.contains("variant_failed") && junit.contains("model.embed_tokens.weight"),
            "{junit}"
        );
        let html = std::fs::read_to_string(out.join("report.html")).unwrap();
        assert!(html.contains("failed and was not evaluated"));
    }
}
