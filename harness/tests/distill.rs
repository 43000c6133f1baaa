//! Distillation as a variant: a sweep with two `distill` variants (safety_weight 1 and 4)
//! trains both students from the reference inside the worker, evaluates them next to the
//! teacher, reports their training curves, keeps them in the cache in Hugging Face layout with
//! a manifest, and a second sweep takes them from the cache instead of training again.

use std::path::Path;
use std::process::Command;

use compsafe_tests::root;

const STUDENT: &str = r#"
[[variants]]
name = "NAME"
method = "distill"
[variants.distill]
prompts = "fixture-transfer"
safety = "fixture-transfer-harmful"
limit = 120
safety_weight = WEIGHT
layers = 1
steps = 40
batch = 12
max_new_tokens = 24
"#;

const REST: &str = r#"
[sweep]
name = "distill-test"
seed = 7
[model]
path = "MODEL"
[[suites]]
name = "fixture-harmful"
limit = 40
[[suites]]
name = "fixture-sentiment"
limit = 30
[generation]
max_new_tokens = 24
[judge]
refusal = "jailbreakbench"
"#;

fn spec_text() -> String {
    let model = root().join("models/tiny-safety");
    let mut s = String::from("reference = \"fp32\"\n");
    for (name, w) in [("student-w1", "1.0"), ("student-w4", "4.0")] {
        s.push_str(&STUDENT.replace("NAME", name).replace("WEIGHT", w));
    }
    s.push_str(&REST.replace("MODEL", model.to_str().unwrap()));
    s
}

fn run(spec: &Path, out: &Path, cache: &Path) -> serde_json::Value {
    let o = Command::new(compsafe_tests::bin_path())
        .args(["run", "--json"])
        .arg(spec)
        .arg("--out")
        .arg(out)
        .arg("--cache-dir")
        .arg(cache)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap()
}

fn cell<'a>(r: &'a serde_json::Value, variant: &str, suite: &str) -> &'a serde_json::Value {
    r["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["variant"] == variant && c["suite"] == suite)
        .unwrap_or_else(|| panic!("no cell {variant} / {suite}"))
}

fn variant<'a>(r: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    r["variants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no variant {name}"))
}

#[test]
fn distill_variants_train_evaluate_and_cache_their_students() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = tmp.path().join("spec.toml");
    std::fs::write(&spec, spec_text()).unwrap();
    let cache = tmp.path().join("cache");
    let r = run(&spec, &tmp.path().join("out1"), &cache);

    let mut keys = Vec::new();
    for name in ["student-w1", "student-w4"] {
        let v = variant(&r, name);
        assert_eq!(v["kind"], "distillation", "{v}");
        let t = &v["training"];
        assert_eq!(t["layers"], 1);
        assert_eq!(t["steps"], 40);
        assert_eq!(
            t["transfer_prompts"], 240,
            "120 transfer + 120 safety prompts"
        );
        assert_eq!(t["safety_prompts"], 120);
        // One decoder layer fewer than the teacher: 1,443,072 - 590,336 parameters.
        assert_eq!(t["params"], 852_736);
        let curve = t["curve"].as_array().unwrap();
        assert_eq!(curve.len(), 20);
        assert_eq!(curve.last().unwrap()["step"], 40);
        let first = curve[0]["loss"].as_f64().unwrap();
        let last = curve.last().unwrap()["loss"].as_f64().unwrap();
        assert!(last < 0.5 * first, "{name}: loss {first} -> {last}");
        keys.push(t["cache_key"].as_str().unwrap().to_string());
        // Both students are measured next to the teacher on both suites.
        for suite in ["fixture-harmful", "fixture-sentiment"] {
            assert!(cell(&r, name, suite)["vs_reference"].is_object());
        }
        let refusal = cell(&r, name, "fixture-harmful")["refusal_rate"]
            .as_f64()
            .unwrap();
        let acc = cell(&r, name, "fixture-sentiment")["accuracy"]
            .as_f64()
            .unwrap();
        eprintln!("{name}: refusal {refusal:.3}, sentiment accuracy {acc:.3}, loss {first:.3} -> {last:.3}");
        assert!((0.0..=1.0).contains(&refusal) && (0.0..=1.0).contains(&acc));
    }
    eprintln!(
        "teacher: refusal {:.3}, sentiment accuracy {:.3}",
        cell(&r, "fp32", "fixture-harmful")["refusal_rate"]
            .as_f64()
            .unwrap(),
        cell(&r, "fp32", "fixture-sentiment")["accuracy"]
            .as_f64()
            .unwrap()
    );
    assert_ne!(keys[0], keys[1], "safety_weight is part of the cache key");

    // The students are in Hugging Face layout with a manifest that verifies.
    for key in &keys {
        let dir = cache.join("students").join(key);
        for f in [
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json",
            "MANIFEST.json",
            "training.json",
        ] {
            assert!(dir.join(f).is_file(), "{}/{f}", dir.display());
        }
        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap())
                .unwrap();
        assert_eq!(cfg["num_hidden_layers"], 1);
        assert_eq!(cfg["architectures"][0], "LlamaForCausalLM");
        let o = Command::new(compsafe_tests::bin_path())
            .arg("verify")
            .arg(&dir)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let md = std::fs::read_to_string(tmp.path().join("out1/report.md")).unwrap();
    assert!(md.contains("### Distilled students"), "{md}");
    assert!(md.contains("Loss curve of student-w4"), "{md}");
    let html = std::fs::read_to_string(tmp.path().join("out1/report.html")).unwrap();
    assert!(html.contains("Training loss of student-w1"));

    // A second sweep finds both students in the cache: the files are not rewritten and the
    // results are the same.
    let weights = cache
        .join("students")
        .join(&keys[0])
        .join("model.safetensors");
    let before = std::fs::metadata(&weights).unwrap().modified().unwrap();
    let r2 = run(&spec, &tmp.path().join("out2"), &cache);
    assert_eq!(
        std::fs::metadata(&weights).unwrap().modified().unwrap(),
        before
    );
    for name in ["student-w1", "student-w4"] {
        assert_eq!(variant(&r, name), variant(&r2, name));
        for suite in ["fixture-harmful", "fixture-sentiment"] {
            assert_eq!(cell(&r, name, suite), cell(&r2, name, suite));
        }
    }
}

#[test]
fn bad_distill_tables_are_refused_with_the_field_named() {
    let tmp = tempfile::tempdir().unwrap();
    let base = spec_text();
    let cases = [
        (
            "safety_weight = 1.0",
            "safety_weight = -1.0",
            "variants[0].distill.safety_weight",
        ),
        (
            "prompts = \"fixture-transfer\"",
            "prompts = \"no-such-suite\"",
            "variants[0].distill.prompts",
        ),
        (
            "steps = 40",
            "steps = 40\nlearning_rate = 1.0",
            "learning_rate",
        ),
        (
            "method = \"distill\"\n[variants.distill]",
            "method = \"distill\"\npath = \"x\"\n[variants.distill]",
            "variants[0].path",
        ),
    ];
    for (from, to, want) in cases {
        let spec = tmp.path().join("bad.toml");
        std::fs::write(&spec, base.replacen(from, to, 1)).unwrap();
        let o = Command::new(compsafe_tests::bin_path())
            .arg("validate")
            .arg(&spec)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{to}: {err}");
        assert!(err.contains(want), "{to}: expected {want} in: {err}");
        assert!(err.contains("bad.toml"), "{err}");
    }
}
