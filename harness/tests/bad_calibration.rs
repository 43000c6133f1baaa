//! Bad calibration input: unknown method parameters, calibration sources that are missing or
//! too short, group sizes that do not divide a matrix's input dimension, calibration given
//! to a method that reads none. Each exits 2 with a message naming the field (or tensor) and
//! the value, and nothing panics.

use std::path::Path;

use compsafe_tests::{root, run_cli, write_file};

fn spec(dir: &Path, variants: &str, calibration: &str) -> String {
    let model = root().join("models/tiny-safety");
    write_file(
        dir,
        "spec.toml",
        &format!(
            "variants = [{variants}]\n[sweep]\nname = \"bad-calibration\"\n[model]\npath = \"{}\"\n\
             {calibration}\n[[suites]]\nname = \"fixture-harmful\"\nlimit = 2\n\
             [generation]\nmax_new_tokens = 4\n",
            model.display()
        ),
    )
    .display()
    .to_string()
}

/// Runs `compsafe ARGS` on the spec and checks exit 2, every `needles` in the error, no panic.
fn fails(command: &str, variants: &str, calibration: &str, needles: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec(tmp.path(), variants, calibration);
    let out = tmp.path().join("out").display().to_string();
    let args: Vec<&str> = match command {
        "validate" => vec!["validate", &spec],
        _ => vec!["run", &spec, "--direct", "--out", &out],
    };
    let (code, _, err) = run_cli(&args);
    assert_eq!(code, 2, "{variants} {calibration}: exit {code}\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(
            err.contains(n),
            "{variants} {calibration}: `{n}` not in\n{err}"
        );
    }
}

#[test]
fn unknown_method_parameters() {
    fails(
        "validate",
        "\"gptq:w4g128:fast\"",
        "",
        &["variants[0]", "gptq:w4g128:fast", "unknown gptq option"],
    );
    fails(
        "validate",
        "\"awq:w5g128\"",
        "",
        &["variants[0]", "awq:w5g128", "bits"],
    );
    fails(
        "validate",
        "\"smoothquant:w8a8:1.5\"",
        "",
        &["smoothquant:w8a8:1.5", "alpha"],
    );
    fails("validate", "\"nf4:b100\"", "", &["nf4:b100", "block size"]);
    fails("validate", "\"fp8:dynamicish\"", "", &["fp8:dynamicish"]);
    fails(
        "validate",
        "\"gptq:w4g128\"",
        "[calibration]\nsequence = 4",
        &["spec.toml", "sequence"],
    );
    fails(
        "validate",
        "{ name = \"i\", method = \"int8\", calibration = { suite = \"fixture-benign\" } }",
        "",
        &["variants[0].calibration", "int8"],
    );
}

#[test]
fn calibration_source_missing_or_too_short() {
    fails(
        "validate",
        "\"gptq:w4g128\"",
        "[calibration]\nsuite = \"no-such-suite\"",
        &["calibration.suite", "no-such-suite"],
    );
    fails(
        "validate",
        "\"gptq:w4g128\"",
        "[calibration]\nfile = \"missing.txt\"",
        &["calibration.file", "missing.txt"],
    );
    fails(
        "validate",
        "\"gptq:w4g128\"",
        "[calibration]\nsequences = 0",
        &["calibration.sequences", "0"],
    );
    // fixture-benign's prompts give a few thousand tokens; 64 x 256 need 16,384.
    fails(
        "run",
        "\"gptq:w4g128\"",
        "[calibration]\nsuite = \"fixture-benign\"\nsequences = 64\nseq_len = 256",
        &[
            "calibration.suite = \"fixture-benign\"",
            "16384",
            "sequences",
        ],
    );
}

#[test]
fn group_size_not_dividing_the_input_dimension() {
    // The fixture's matrices have 256 or 512 inputs.
    fails(
        "run",
        "\"gptq:w4g96\"",
        "[calibration]\nsuite = \"fixture-benign\"\nsequences = 4\nseq_len = 32",
        &["gptq:w4g96", "96", "does not divide"],
    );
    fails(
        "run",
        "\"awq:w4g96\"",
        "[calibration]\nsuite = \"fixture-benign\"\nsequences = 4\nseq_len = 32",
        &["awq:w4g96", "group size 96 does not divide"],
    );
}
