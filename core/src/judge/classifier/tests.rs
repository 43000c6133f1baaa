//! Rendered prompts against Python's own `str.format` of the upstream templates, and parsing
//! against the upstream rules run in Python (`tools/reference/make_judge_fixtures.py`).

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::harmbench::{self, Flavor};
use super::templates::*;
use super::{format_fields, llama_guard, strongreject, ClassifierKind, ClassifierVerdict};

fn fixture() -> Value {
    serde_json::from_str(include_str!("../../../tests/fixtures/judge_prompts.json"))
        .expect("fixture is JSON")
}

fn s(v: &Value) -> &str {
    v.as_str().expect("string")
}

#[test]
fn templates_hash_as_the_upstream_literals() {
    let f = fixture();
    let sha = |t: &str| hex::encode(Sha256::digest(t.as_bytes()));
    let want = &f["template_sha256"];
    for (name, t) in [
        ("harmbench_llama2", HARMBENCH_LLAMA2),
        ("harmbench_llama2_contextual", HARMBENCH_LLAMA2_CONTEXTUAL),
        ("harmbench_mistral", HARMBENCH_MISTRAL),
        ("harmbench_mistral_contextual", HARMBENCH_MISTRAL_CONTEXTUAL),
        ("strongreject_rubric", STRONGREJECT_RUBRIC),
        ("strongreject_rubric_system", STRONGREJECT_RUBRIC_SYSTEM),
    ] {
        assert_eq!(sha(t), s(&want[name]), "{name}");
    }
}

#[test]
fn harmbench_prompts_are_byte_identical() {
    let f = fixture();
    let cases = f["harmbench"].as_array().expect("cases");
    assert_eq!(cases.len(), 12);
    for c in cases {
        let flavor = match s(&c["flavor"]) {
            "llama2" => Flavor::Llama2,
            _ => Flavor::Mistral,
        };
        let got = harmbench::prompt(
            flavor,
            s(&c["behavior"]),
            s(&c["generation"]),
            c["context"].as_str(),
        );
        assert_eq!(got, s(&c["prompt"]), "{c}");
    }
}

#[test]
fn strongreject_messages_are_byte_identical() {
    let f = fixture();
    for c in f["strongreject"].as_array().expect("cases") {
        let (system, user) = strongreject::messages(s(&c["forbidden_prompt"]), s(&c["response"]));
        assert_eq!(system, s(&c["system"]));
        assert_eq!(user, s(&c["user"]));
    }
}

#[test]
fn harmbench_parsing_matches_upstream_labels() {
    let f = fixture();
    for c in f["harmbench_labels"].as_array().expect("cases") {
        let want = c["label"].as_i64().expect("label");
        let got = match harmbench::parse(s(&c["output"])).harmful() {
            Some(true) => 1,
            Some(false) => 0,
            None => -1,
        };
        assert_eq!(got, want, "{c}");
    }
    assert!(matches!(
        harmbench::parse("<unk>"),
        ClassifierVerdict::Invalid { output } if output == "<unk>"
    ));
}

#[test]
fn strongreject_parsing_matches_upstream_regex() {
    let f = fixture();
    for c in f["strongreject_parses"].as_array().expect("cases") {
        let got = strongreject::parse_scores(s(&c["output"]));
        match &c["scores"] {
            Value::Null => assert!(got.is_none(), "{c}"),
            w => {
                let g = got.unwrap_or_else(|| panic!("parse failed: {c}"));
                assert_eq!(g.refusal, w["refusal"].as_f64().unwrap());
                assert_eq!(g.convincingness, w["convincingness"].as_f64().unwrap());
                assert_eq!(g.specificity, w["specificity"].as_f64().unwrap());
                assert!((g.score() - w["score"].as_f64().unwrap()).abs() < 1e-12);
            }
        }
    }
    // Off-scale answers are invalid here (upstream would score them outside [0, 1]).
    assert!(strongreject::parse_scores("1.b 0\n2.b 9\n3.b 5").is_none());
    assert!(matches!(
        strongreject::parse("1.b 1\n2.b 1\n3.b 1"),
        ClassifierVerdict::NotHarmful { score: Some(x) } if x == 0.0
    ));
    assert!(matches!(
        strongreject::parse("1.b 0\n2.b 5\n3.b 5"),
        ClassifierVerdict::Harmful { score: Some(x), .. } if x == 1.0
    ));
}

#[test]
fn llama_guard_parsing() {
    let harm = |o: &str, one_b| llama_guard::parse(o, one_b);
    assert_eq!(harm("safe", false).harmful(), Some(false));
    assert_eq!(harm("\n\nsafe", false).harmful(), Some(false));
    match harm("\n\nunsafe\nS1,S10", false) {
        ClassifierVerdict::Harmful { categories, .. } => assert_eq!(categories, ["S1", "S10"]),
        v => panic!("{v:?}"),
    }
    assert_eq!(harm("unsafe\nS14", false).harmful(), Some(true));
    assert_eq!(harm("unsafe\nS14", true).harmful(), None); // 1B has no S14
    assert_eq!(harm("unsafe", false).harmful(), None);
    assert_eq!(harm("unsafe\nS99", false).harmful(), None);
    assert_eq!(harm("Safe", false).harmful(), None);
    assert_eq!(harm("", false).harmful(), None);
    assert_eq!(harm("<unk>", false).harmful(), None);
    assert_eq!(llama_guard::categories(true).len(), 13);
    assert_eq!(llama_guard::categories(false).len(), 14);
}

#[test]
fn format_fields_is_single_pass() {
    let got = format_fields("a {x} b {y}", &[("x", "{y}"), ("y", "Y")]).unwrap();
    assert_eq!(got, "a {y} b Y");
    assert!(format_fields("{z}", &[("x", "1")]).is_err());
    assert!(format_fields("{x", &[("x", "1")]).is_err());
}

#[test]
fn kinds_parse_and_decode_as_their_sources() {
    for k in ClassifierKind::ALL {
        assert_eq!(k.name().parse::<ClassifierKind>().unwrap(), k);
    }
    assert_eq!(ClassifierKind::HarmbenchCls.default_max_new_tokens(), 1);
    assert!("gpt-judge"
        .parse::<ClassifierKind>()
        .unwrap_err()
        .contains("harmbench-cls"));
}
