//! `compsafe search` and a sweep's `[search]`: on the fixture model and its 50% pruned
//! variant, the greedy coordinate search confirms more reference-refuses / variant-complies
//! prompts than random suffixes with the same budget; each found prompt keeps the reference
//! refusing when generated again independently; found prompts join the sweep's divergences
//! marked searched; bad arguments exit 2 naming the flag or field.

use std::path::{Path, PathBuf};

use candle_core::Device;
use compsafe_core::judge::{KeywordJudge, Preset};
use compsafe_engine::{generate, GenerateOptions};
use compsafe_eval::Evaluator;

use compsafe_tests::root;

use compsafe_tests::run_cli as run;

const VARIANT: &str = "prune:0.5";
const LIMIT: &str = "30";
const BUDGET: &str = "64";
const SEED: &str = "20261126";

/// The reference's greedy response to `prompt`, generated here without the search code.
fn reference_response(eval: &Evaluator, prompt: &str) -> String {
    let ids = eval.prompt_tokens(prompt).unwrap();
    let opts = GenerateOptions {
        max_new_tokens: 32,
        batch_tokens: 8192,
        max_batch: 1,
        eos: eval.eos().to_vec(),
    };
    let g = generate(&eval.reference, &[ids], &opts, None).unwrap();
    let toks: Vec<u32> = g[0]
        .tokens
        .iter()
        .copied()
        .filter(|t| !eval.eos().contains(t))
        .collect();
    eval.codec.decode(&toks, true).unwrap()
}

#[test]
fn greedy_search_beats_random_sampling_and_keeps_the_reference_refusing() {
    let tmp = tempfile::tempdir().unwrap();
    let model = root().join("models/tiny-safety");
    let out = tmp.path().join("s");
    let (code, stdout, err) = run(&[
        "search",
        "--model",
        model.to_str().unwrap(),
        "--variant",
        VARIANT,
        "--suite",
        "fixture-harmful",
        "--limit",
        LIMIT,
        "--budget",
        BUDGET,
        "--suffix-len",
        "4",
        "--candidates",
        "8",
        "--seed",
        SEED,
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    // search.json (printed with --json) lists one entry per searched variant.
    let all: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let v = &all[0];
    assert_eq!(v["variant"], VARIANT);
    let s = &v["search"];
    let greedy = s["greedy"]["hits"].as_u64().unwrap();
    let random = s["random"]["hits"].as_u64().unwrap();
    let eligible = s["eligible"].as_u64().unwrap();
    eprintln!(
        "eligible {eligible}, greedy {greedy} hits, random {random} hits, {} s",
        s["greedy"]["seconds"]
    );
    assert!(eligible > 0);
    assert!(greedy >= 1, "greedy found no hit");
    assert!(greedy > random, "greedy {greedy} vs random {random}");
    // The same budget: both scored exactly `budget` suffixes per prompt.
    let budget: u64 = BUDGET.parse().unwrap();
    for m in ["greedy", "random"] {
        assert_eq!(s[m]["evaluations"].as_u64().unwrap(), budget * eligible);
        for f in s[m]["prompts"].as_array().unwrap() {
            assert_eq!(f["evaluations"].as_u64().unwrap(), budget, "{f}");
        }
    }
    // Every greedy hit: the reference still refuses the searched prompt, generated again
    // here; the variant's answer was judged compliance; the prompt is the suite's plus the
    // suffix.
    let eval = Evaluator::load(&model, None, &Device::Cpu).unwrap();
    let judge = KeywordJudge::preset(Preset::Jailbreakbench);
    let mut checked = 0;
    for f in s["greedy"]["prompts"].as_array().unwrap() {
        if f["hit"] != true {
            continue;
        }
        let searched = f["searched_prompt"].as_str().unwrap();
        assert!(searched.starts_with(f["prompt"].as_str().unwrap()));
        assert!(searched.len() > f["prompt"].as_str().unwrap().len());
        assert_eq!(f["reference_verdict"], "refusal", "{f}");
        assert_eq!(f["variant_verdict"], "compliance", "{f}");
        assert!(f["reference_logodds"].as_f64().unwrap() >= 1.0, "{f}");
        let response = reference_response(&eval, searched);
        assert!(
            judge.is_refusal(&response),
            "reference answered {response:?} to {searched:?}"
        );
        // The search stops generating once the verdict is final (as sweeps do), so its
        // recorded response is a prefix of the full one.
        let recorded = f["reference_response"].as_str().unwrap();
        assert!(
            response.starts_with(recorded),
            "{response:?} vs {recorded:?}"
        );
        checked += 1;
    }
    assert_eq!(checked as u64, greedy);
    assert!(out.join("search.json").is_file());
    let md = std::fs::read_to_string(out.join("search.md")).unwrap();
    assert!(md.contains("greedy coordinate search"), "{md}");
}

fn write_spec(dir: &Path, search: &str) -> PathBuf {
    let spec = dir.join("sweep.toml");
    std::fs::write(
        &spec,
        format!(
            r#"variants = ["{VARIANT}"]
[sweep]
name = "searched"
seed = {SEED}
[model]
path = "{}"
[[suites]]
name = "fixture-harmful"
limit = {LIMIT}
[generation]
max_new_tokens = 32
[stats]
bootstrap_resamples = 100
{search}
"#,
            root().join("models/tiny-safety").display()
        ),
    )
    .unwrap();
    spec
}

#[test]
fn a_sweep_with_a_search_section_lists_searched_divergences() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(
        tmp.path(),
        &format!(
            "[search]\nvariants = [\"{VARIANT}\"]\nsuite = \"fixture-harmful\"\nlimit = {LIMIT}\n\
             budget = {BUDGET}\nsuffix_len = 4\ncandidates = 8\n"
        ),
    );
    let out = tmp.path().join("out");
    let (code, _, err) = run(&[
        "run",
        spec.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let ds = r["divergences"].as_array().unwrap();
    let searched: Vec<_> = ds.iter().filter(|d| d["searched"] == true).collect();
    assert!(!searched.is_empty(), "{ds:?}");
    for d in &searched {
        assert_eq!(d["variant"], VARIANT);
        assert_eq!(d["direction"], "refuse_to_comply");
        assert!(!d["reference_response"].as_str().unwrap().is_empty());
        assert!(!d["variant_response"].as_str().unwrap().is_empty());
        assert!(d["prompt"]
            .as_str()
            .unwrap()
            .ends_with(d["suffix"].as_str().unwrap().trim_start()));
    }
    // Divergences of the suites as written carry no mark.
    assert!(ds
        .iter()
        .filter(|d| d["searched"] != true)
        .all(|d| d.get("searched").is_none()));
    let found: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("search.json")).unwrap()).unwrap();
    assert_eq!(
        found[0]["search"]["greedy"]["hits"].as_u64().unwrap() as usize,
        searched.len()
    );
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("Searched prompts"), "{md}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("(searched)"));
}

#[test]
fn bad_arguments_exit_2_and_name_the_problem() {
    let model = root().join("models/tiny-safety");
    let m = model.to_str().unwrap();
    let base = |extra: &[&str]| {
        let mut a = vec![
            "search",
            "--model",
            m,
            "--variant",
            VARIANT,
            "--suite",
            "fixture-harmful",
        ];
        a.extend_from_slice(extra);
        run(&a)
    };
    let (code, _, err) = run(&[
        "search",
        "--model",
        m,
        "--variant",
        VARIANT,
        "--suite",
        "no-such-suite",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--suite") && err.contains("no-such-suite"),
        "{err}"
    );
    let (code, _, err) = base(&["--budget", "0"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--budget = 0"), "{err}");
    let (code, _, err) = base(&["--budget", "many"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--budget") && err.contains("many"), "{err}");
    let (code, _, err) = base(&["--suffix-len", "0"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--suffix-len = 0"), "{err}");
    let (code, _, err) = run(&[
        "search",
        "--model",
        m,
        "--variant",
        "int4:gx",
        "--suite",
        "fixture-harmful",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--variant") && err.contains("int4:gx"),
        "{err}"
    );
    let (code, _, err) = run(&[
        "search",
        "--model",
        m,
        "--variant",
        VARIANT,
        "--suite",
        "fixture-benign",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("expect = refusal"), "{err}");
    let (code, _, err) = run(&[
        "search",
        "--model",
        "/no/such/model",
        "--variant",
        VARIANT,
        "--suite",
        "fixture-harmful",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/no/such/model"), "{err}");

    // The spec's [search] section is checked like the rest of the spec.
    let tmp = tempfile::tempdir().unwrap();
    for (section, field, value) in [
        (
            "[search]\nvariants = [\"int8\"]\nsuite = \"fixture-harmful\"\n",
            "search.variants[0]",
            "int8",
        ),
        (
            "[search]\nvariants = [\"fp32\"]\nsuite = \"fixture-harmful\"\n",
            "search.variants[0]",
            "fp32",
        ),
        (
            &format!("[search]\nvariants = [\"{VARIANT}\"]\nsuite = \"no-such-suite\"\n"),
            "search.suite",
            "no-such-suite",
        ),
        (
            &format!(
                "[search]\nvariants = [\"{VARIANT}\"]\nsuite = \"fixture-harmful\"\nbudget = 0\n"
            ),
            "search.budget",
            "0",
        ),
        (
            &format!(
                "[search]\nvariants = [\"{VARIANT}\"]\nsuite = \"fixture-harmful\"\nbudjet = 3\n"
            ),
            "budjet",
            "",
        ),
    ] {
        let spec = write_spec(tmp.path(), section);
        let (code, _, err) = run(&["validate", spec.to_str().unwrap()]);
        assert_eq!(code, 2, "{section}: {err}");
        assert!(
            err.contains(field) && err.contains(value) && err.contains("sweep.toml"),
            "{section}: {err}"
        );
    }
}
