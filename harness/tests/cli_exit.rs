//! Exit statuses and error messages of the command line.

use compsafe_tests::{root, run_cli as run};

#[test]
fn layers_lists_tensors_worst_first() {
    let model = root().join("engine/tests/fixtures/hf/llama-gqa");
    let (code, out, err) = run(&[
        "layers",
        "--model",
        model.to_str().unwrap(),
        "--variant",
        "int4:g32",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let errs: Vec<f64> = v["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["rel_error"].as_f64().unwrap())
        .collect();
    assert!(!errs.is_empty());
    assert!(
        errs.windows(2).all(|w| w[0] >= w[1]),
        "worst first: {errs:?}"
    );
    // int4 with one f16 scale per 32 weights: 4.5 bits per weight.
    assert!(
        (v["bits_per_weight"].as_f64().unwrap() - 4.5).abs() < 1e-9,
        "{}",
        v["bits_per_weight"]
    );
}

#[test]
fn bad_input_exits_2_and_names_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    let (code, _, err) = run(&[
        "layers",
        "--model",
        missing.to_str().unwrap(),
        "--variant",
        "int4",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("nope"), "{err}");

    let model = root().join("engine/tests/fixtures/hf/llama-gqa");
    let (code, _, err) = run(&[
        "layers",
        "--model",
        model.to_str().unwrap(),
        "--variant",
        "int9:g7",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--variant") && err.contains("int9:g7"),
        "{err}"
    );

    // A truncated weight file.
    let dir = tmp.path().join("m");
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(&model).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    let st = dir.join("model.safetensors");
    let bytes = std::fs::read(&st).unwrap();
    std::fs::write(&st, &bytes[..100]).unwrap();
    let (code, _, err) = run(&[
        "layers",
        "--model",
        dir.to_str().unwrap(),
        "--variant",
        "int8",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("model.safetensors"), "{err}");

    let (code, _, _) = run(&["no-such-command"]);
    assert_eq!(code, 2);
}

#[test]
fn verify_exits_1_on_integrity_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("model.safetensors"), b"weights").unwrap();
    std::fs::write(dir.join("config.json"), b"{}").unwrap();
    let (code, out, _) = run(&["verify", dir.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains("unpinned"), "{out}");
    let manifest: String = out
        .lines()
        .filter(|l| l.contains("  ("))
        .map(|l| {
            let mut p = l.split_whitespace();
            format!("{}  {}\n", p.next().unwrap(), p.next().unwrap())
        })
        .collect();
    std::fs::write(dir.join("MANIFEST"), manifest).unwrap();
    let (code, out, _) = run(&["verify", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("integrity: ok"), "{out}");
    std::fs::write(dir.join("model.safetensors"), b"weightz").unwrap();
    let (code, out, _) = run(&["verify", dir.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("INTEGRITY FAILURE: model.safetensors"),
        "{out}"
    );
}

#[test]
fn manifest_create_then_verify_names_a_changed_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    std::fs::create_dir_all(&dir).unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(root().join("models/tiny-safety").join(f), dir.join(f)).unwrap();
    }
    let d = dir.to_str().unwrap();
    let (code, out, err) = run(&["manifest", "create", d]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("20 tensors"), "{out}");
    let (code, out, _) = run(&["verify", d]);
    assert_eq!((code, out.contains("integrity: ok")), (0, true), "{out}");
    // A second create would overwrite the pins: refused without --force, nothing lost.
    let before = std::fs::read(dir.join("MANIFEST.json")).unwrap();
    let (code, _, err) = run(&["manifest", "create", d]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("MANIFEST.json") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read(dir.join("MANIFEST.json")).unwrap(), before);
    // One byte of model.embed_tokens.weight (file bytes 2104..1050680).
    let f = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&f).unwrap();
    bytes[4000] ^= 0x80;
    std::fs::write(&f, bytes).unwrap();
    let (code, out, _) = run(&["verify", d, "--json"]);
    assert_eq!(code, 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let failures = v["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{out}");
    assert!(
        failures[0]
            .as_str()
            .unwrap()
            .contains("tensor `model.embed_tokens.weight`"),
        "{out}"
    );
}

#[test]
fn quantize_requant_diff_and_boundary_exit_statuses() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("m.gguf");
    let o = out.to_str().unwrap();
    let hf = root().join("engine/tests/fixtures/hf/llama-plain");
    let h = hf.to_str().unwrap();
    let (code, _, err) = run(&["quantize", "--model", h, "--type", "q8_0", "--out", o]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(&["quantize", "--model", h, "--type", "q8_0", "--out", o]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--force"), "{err}");
    let (code, _, err) = run(&[
        "quantize", "--model", h, "--type", "q9", "--out", o, "--force",
    ]);
    assert_eq!(code, 2, "{err}");
    let (code, out_text, err) = run(&["requant-diff", "--source", h, "--quantized", o]);
    assert_eq!(code, 0, "{out_text}{err}");
    assert!(out_text.contains("requant-diff: clean"), "{out_text}");
    let gqa = root().join("engine/tests/fixtures/hf/llama-gqa");
    let (code, out_text, _) = run(&[
        "requant-diff",
        "--source",
        gqa.to_str().unwrap(),
        "--quantized",
        o,
        "--json",
    ]);
    assert_eq!(code, 1, "{out_text}");
    let model = root().join("models/tiny-safety");
    let m = model.to_str().unwrap();
    let (code, out_text, err) = run(&["boundary", "--model", m, "--variant", "int4:g32"]);
    assert_eq!(code, 0, "{err}");
    assert!(out_text.contains("14 tensors, 0 flagged"), "{out_text}");
    let (code, _, err) = run(&["boundary", "--model", m, "--variant", "gguf:q4k"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--variant"), "{err}");
    let (code, _, err) = run(&[
        "boundary",
        "--model",
        m,
        "--variant",
        "int4",
        "--epsilon",
        "0.7",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--epsilon"), "{err}");
}

#[test]
fn doctor_reports_devices() {
    let (code, out, _) = run(&["doctor"]);
    assert_eq!(code, 0);
    assert!(out.contains("device cpu"), "{out}");
}
