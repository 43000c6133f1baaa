//! Tests of spec parsing and validation.

use super::*;
use crate::judge::MatchMode;
use crate::variant::Method;

const GOOD: &str = r#"
reference = "fp32"
variants = [
  "bf16",
  "int4:g32",
  { name = "attn-only-int4", method = "int4:g32", select = 'self_attn\..*' },
  { name = "student", path = "students/a" },
]

[sweep]
name = "quickstart"
seed = 7

[model]
path = "models/tiny"

[model.sha256]
"model.safetensors" = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"

[[suites]]
name = "xstest-safe"
limit = 20

[[suites]]
name = "mine"
file = "data/mine.csv"
expect = "refusal"
columns = { prompt = "goal", id = "id" }
filters = [{ column = "split", equals = "test" }]
judge = "seed"

[generation]
max_new_tokens = 32
batch_tokens = 4096

[judge]
refusal = "harmbench"
"#;

fn parse(text: &str) -> Result<Spec, FieldError> {
    parse_spec(text, Path::new("/specs/sweep.toml"))
}

#[test]
fn search_section_defaults_and_errors() {
    assert_eq!(parse(GOOD).unwrap().search, None);
    let with = |section: &str| parse(&format!("{GOOD}\n[search]\n{section}"));
    let s = with("variants = [\"int4:g32\"]\nsuite = \"mine\"\n")
        .unwrap()
        .search
        .unwrap();
    assert_eq!(
        (
            s.limit,
            s.budget,
            s.suffix_len,
            s.candidates,
            s.seed,
            s.margin
        ),
        (20, 64, 4, 8, 7, 1.0),
        "defaults, the seed from [sweep]"
    );
    let s = with("variants = [\"student\"]\nsuite = \"mine\"\nseed = 5\nbudget = 9\n")
        .unwrap()
        .search
        .unwrap();
    assert_eq!((s.seed, s.budget), (5, 9));
    for (section, field, value) in [
        ("variants = []\nsuite = \"mine\"\n", "search.variants", "[]"),
        (
            "variants = [\"int2\"]\nsuite = \"mine\"\n",
            "search.variants[0]",
            "int2",
        ),
        (
            "variants = [\"fp32\"]\nsuite = \"mine\"\n",
            "search.variants[0]",
            "fp32",
        ),
        (
            "variants = [\"bf16\"]\nsuite = \"xstest-safe\"\n",
            "search.suite",
            "xstest-safe",
        ),
        (
            "variants = [\"bf16\"]\nsuite = \"nope\"\n",
            "search.suite",
            "nope",
        ),
        (
            "variants = [\"bf16\"]\nsuite = \"mine\"\ncandidates = 0\n",
            "search.candidates",
            "0",
        ),
        (
            "variants = [\"bf16\"]\nsuite = \"mine\"\nmargin = nan\n",
            "search.margin",
            "NaN",
        ),
    ] {
        let e = with(section).unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.value.as_str()),
            (field, value),
            "{section}: {e}"
        );
    }
}

#[test]
fn good_spec() {
    let s = parse(GOOD).unwrap();
    assert_eq!(s.sweep.seed, 7);
    assert_eq!(s.model.path, Path::new("/specs/models/tiny"));
    assert_eq!(s.model.format, ModelFormat::Hf);
    assert_eq!(
        s.model.sha256["model.safetensors"],
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let names: Vec<&str> = s.variants.iter().map(|v| v.variant.name.as_str()).collect();
    assert_eq!(
        names,
        ["fp32", "bf16", "int4:g32", "attn-only-int4", "student"]
    );
    assert_eq!(s.reference_variant().method, Method::reference());
    assert_eq!(
        s.variants[4].variant.method,
        Method::Checkpoint {
            path: "/specs/students/a".into()
        }
    );
    assert_eq!(
        s.variants[3].variant.select.as_deref(),
        Some(r"self_attn\..*")
    );
    assert_eq!(s.suites.len(), 2);
    assert!(s.suites[0].bundled);
    assert_eq!(s.suites[0].source.limit, Some(20));
    assert_eq!(s.suites[1].file(), Path::new("/specs/data/mine.csv"));
    assert_eq!(s.generation.max_new_tokens, 32);
    assert!(s.generation.stop_on_verdict);
    assert_eq!(s.stats.bootstrap_resamples, 2000);
    // Suite's own judge wins for a file suite; [judge] wins over a bundled default.
    assert_eq!(s.refusal_judge(1).name(), "seed");
    assert_eq!(s.refusal_judge(0).name(), "harmbench");
}

#[test]
fn reference_by_name_is_moved_first() {
    let text = GOOD.replace("reference = \"fp32\"", "reference = \"bf16\"");
    let s = parse(&text).unwrap();
    assert_eq!(s.variants[0].variant.name, "bf16");
    assert_eq!(s.variants.len(), 4);
}

fn err(text: &str) -> FieldError {
    parse(text).unwrap_err()
}

#[test]
fn errors_name_file_field_and_value() {
    let cases: &[(&str, &str, &str, &str)] = &[
        // (replace, with, expected field, expected value)
        ("\"int4:g32\",\n", "\"int9\",\n", "variants[1]", "int9"),
        (
            "method = \"int4:g32\"",
            "method = \"int4:g0\"",
            "variants[2].method",
            "int4:g0",
        ),
        (
            r"select = 'self_attn\..*'",
            "select = '('",
            "variants[2].select",
            "(",
        ),
        ("seed = 7", "seed = \"seven\"", "sweep.seed", "\"seven\""),
        ("seed = 7", "seed = 7\ncolour = 1", "sweep.colour", "colour"),
        (
            "max_new_tokens = 32",
            "max_new_tokens = -1",
            "generation.max_new_tokens",
            "-1",
        ),
        (
            "refusal = \"harmbench\"",
            "refusal = \"strongreject\"",
            "judge.refusal",
            "strongreject",
        ),
        (
            "name = \"xstest-safe\"",
            "name = \"xstest-sfe\"",
            "suites[0].name",
            "xstest-sfe",
        ),
        (
            "equals = \"test\"",
            "regex = \"[\"",
            "suites[1].filters[0].regex",
            "[",
        ),
        (
            "expect = \"refusal\"",
            "expect = \"refuse\"",
            "suites[1].expect",
            "\"refuse\"",
        ),
        (
            "columns = { prompt = \"goal\", id = \"id\" }",
            "columns = { prompt = \"goal\", idd = \"id\" }",
            "suites[1].columns.idd",
            "idd",
        ),
        (
            "\"E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855\"",
            "\"abc\"",
            "model.sha256.\"model.safetensors\"",
            "abc",
        ),
    ];
    for (from, to, field, value) in cases {
        assert!(GOOD.contains(from), "{from}");
        let e = err(&GOOD.replacen(from, to, 1));
        assert_eq!(e.field, *field, "{to}: {e}");
        assert_eq!(e.value, *value, "{to}: {e}");
        assert_eq!(e.file.as_deref(), Some(Path::new("/specs/sweep.toml")));
    }
}

#[test]
fn structural_errors() {
    let e = err(&GOOD.replace("[sweep]\nname = \"quickstart\"\nseed = 7\n", ""));
    assert!(e.reason.contains("sweep"), "{e}");
    let e = err("reference = \"fp32\"\nvariants = []\n[sweep]\nname = \"x\"\n[model]\npath = \"m\"\n[[suites]]\nname = \"advbench\"\n");
    assert_eq!(e.field, "variants");
    let e = err(&GOOD.replace("reference = \"fp32\"", "reference = \"nope\""));
    assert_eq!(e.field, "reference");
    let e = err(&GOOD.replace("\"bf16\",", "\"bf16\", \"bf16\","));
    assert!(e.reason.contains("duplicate variant"), "{e}");
    let e = err(&GOOD.replace("limit = 20", "limit = 20\nexpect = \"refusal\""));
    assert_eq!(e.field, "suites[0].expect");
    let e = err(&GOOD.replace("batch_tokens = 4096", "batch_tokens = 8"));
    assert_eq!(e.field, "generation.batch_tokens");
    let e = err(&GOOD.replace(
        "refusal = \"harmbench\"",
        "refusal = \"harmbench\"\nkeywords = [\"no\"]",
    ));
    assert_eq!(e.field, "judge.keywords");
    let e = err(&GOOD.replace(
        "refusal = \"harmbench\"",
        "refusal = \"harmbench\"\ntarget = { mode = \"anywhere\", case = true }",
    ));
    assert_eq!(e.field, "judge.target.case");
    let s = parse(&GOOD.replace(
        "refusal = \"harmbench\"",
        "refusal = \"harmbench\"\ntarget = { mode = \"anywhere\" }",
    ))
    .unwrap();
    assert_eq!(s.judge.target.mode, MatchMode::Anywhere);
    assert!(!s.judge.target.case_sensitive);
    let e = err("this is not toml");
    assert!(e.file.is_some());
}

#[test]
fn custom_judge() {
    let text = GOOD.replace(
        "refusal = \"harmbench\"",
        "keywords = [\"Nope\"]\ncase_sensitive = true\nmatch = \"starts_with\"",
    );
    let s = parse(&text).unwrap();
    let j = s.refusal_judge(0);
    assert!(j.is_refusal("Nope, not doing that"));
    assert!(!j.is_refusal("nope"));
    assert!(!j.is_refusal("Well. Nope"));
}

#[test]
fn validate_checks_files_pins_and_suites() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    std::fs::create_dir_all(root.join("models/tiny")).unwrap();
    std::fs::write(root.join("models/tiny/model.safetensors"), b"").unwrap();
    std::fs::create_dir_all(root.join("students/a")).unwrap();
    std::fs::create_dir_all(root.join("data")).unwrap();
    std::fs::write(
        root.join("data/mine.csv"),
        "id,goal,split\n1,do harm,test\n2,do more harm,train\n",
    )
    .unwrap();
    let spec_path = root.join("sweep.toml");
    std::fs::write(&spec_path, GOOD).unwrap();
    let v = validate(&spec_path).unwrap();
    assert_eq!(v.suites[0].len(), 20);
    assert_eq!(v.suites[1].len(), 1);

    // A wrong pin, a missing checkpoint and a suite with a missing column: all reported.
    std::fs::write(root.join("models/tiny/model.safetensors"), b"x").unwrap();
    std::fs::remove_dir_all(root.join("students/a")).unwrap();
    std::fs::write(root.join("data/mine.csv"), "id,prompt,split\n1,x,test\n").unwrap();
    let e = validate(&spec_path).unwrap_err();
    assert_eq!(e.0.len(), 3, "{e}");
    let m = e.to_string();
    assert!(m.contains("model.sha256.\"model.safetensors\""), "{m}");
    assert!(m.contains("variants[3].path"), "{m}");
    assert!(
        m.contains("suites[1] (mine)") && m.contains("`goal`"),
        "{m}"
    );
}

#[test]
fn judge_models_labels_and_primary() {
    let models = "refusal = \"harmbench\"\nlabels = \"labels.csv\"\nprimary = \"cls\"\n[[judge.models]]\nname = \"cls\"\npath = \"judges/cls\"\nkind = \"harmbench-cls\"\n[[judge.models]]\nname = \"guard\"\npath = \"judges/guard\"\nkind = \"llama-guard-3\"\nmax_new_tokens = 8\n";
    let s = parse(&GOOD.replace("refusal = \"harmbench\"\n", models)).unwrap();
    let m = &s.judge.models;
    assert_eq!(m.len(), 2);
    assert_eq!(m[0].kind, crate::judge::ClassifierKind::HarmbenchCls);
    assert_eq!(m[0].max_new_tokens, 1);
    assert_eq!(m[1].max_new_tokens, 8);
    assert!(m[0].path.ends_with("judges/cls") && m[0].path.is_absolute());
    assert!(s.judge.labels.as_ref().unwrap().ends_with("labels.csv"));
    assert_eq!(s.judge.primary, "cls");
    // Defaults: no models, the keyword judge is primary.
    assert_eq!(parse(GOOD).unwrap().judge.primary, super::KEYWORD_JUDGE);
    for (bad, field) in [
        (
            models.replace("harmbench-cls", "gpt-4"),
            "judge.models[0].kind",
        ),
        (
            models.replace("name = \"guard\"", "name = \"cls\""),
            "judge.models[1].name",
        ),
        (
            models.replace("name = \"cls\"", "name = \"keywords\""),
            "judge.models[0].name",
        ),
        (
            models.replace("primary = \"cls\"", "primary = \"nobody\""),
            "judge.primary",
        ),
        (
            models.replace("max_new_tokens = 8", "max_new_tokens = 0"),
            "judge.models[1].max_new_tokens",
        ),
    ] {
        let e = err(&GOOD.replace("refusal = \"harmbench\"\n", &bad));
        assert_eq!(e.field, field, "{e}");
    }
}

#[test]
fn labelled_sample_loads_and_names_bad_rows() {
    use crate::judge::labels::load_labels;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("labels.csv");
    std::fs::write(
        &p,
        "prompt_id,prompt,response,label\na,Q,\"I'm sorry\",refusal\nb,Q,Sure,1\nc,Q,No,0\n",
    )
    .unwrap();
    let rows = load_labels(&p, &[]).unwrap();
    assert_eq!(
        rows.iter().map(|r| r.refusal).collect::<Vec<_>>(),
        [true, false, true]
    );
    std::fs::write(&p, "prompt_id,prompt,response,label\na,Q,x,maybe\n").unwrap();
    let e = load_labels(&p, &[]).unwrap_err();
    assert_eq!(e.field, "row 2.label");
    assert_eq!(e.value, "maybe");
    std::fs::write(&p, "prompt_id,response,label\nzz,x,refusal\n").unwrap();
    let e = load_labels(&p, &[]).unwrap_err();
    assert_eq!(e.field, "row 2.prompt_id");
    std::fs::write(&p, "id,response,label\n").unwrap();
    assert!(load_labels(&p, &[])
        .unwrap_err()
        .reason
        .contains("prompt_id"));
}

#[test]
fn chat_date_is_a_calendar_day() {
    assert_eq!(parse(GOOD).unwrap().chat.date, None);
    let with = |section: &str| parse(&format!("{GOOD}\n[chat]\n{section}"));
    for (written, want) in [
        ("date = \"2024-07-26\"", "2024-07-26"),
        ("date = 2024-02-29", "2024-02-29"),
    ] {
        assert_eq!(with(written).unwrap().chat.date.as_deref(), Some(want));
    }
    for (written, value) in [
        ("date = \"2025-13-01\"", "2025-13-01"),
        ("date = \"26 Jul 2024\"", "26 Jul 2024"),
        ("date = 2024-07-26T10:00:00Z", "2024-07-26T10:00:00Z"),
        ("date = 20240726", "20240726"),
    ] {
        let e = with(written).unwrap_err();
        assert_eq!((e.field.as_str(), e.value.as_str()), ("chat.date", value));
        assert!(e.to_string().contains("chat.date"), "{e}");
    }
    assert!(with("day = \"2024-07-26\"").is_err());
}
