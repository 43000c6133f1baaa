//! The fixture corpus: every refusal wording is a refusal under every published judge, every
//! helpful answer is compliance under every judge, the split keeps held-out prompts out of
//! training, and the committed suites are exactly what the generator produces.

use std::collections::HashSet;
use std::path::Path;

use compsafe_core::judge::{
    DegeneracyCheck, KeywordJudge, Preset, ResponseJudge, TargetJudge, Verdict,
};
use compsafe_engine::fixture::corpus::{
    self, Pools, BENIGN, COMPLIANCE, COMPLIANCE_TARGET, FACTS, HARMFUL, LOOKALIKE, REFUSALS,
};
use compsafe_engine::fixture::eval::FixtureSuites;
use compsafe_engine::fixture::suites::suite_files;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[test]
fn refusals_are_refusals_under_every_preset() {
    for p in Preset::ALL {
        let judge = ResponseJudge {
            refusal: KeywordJudge::preset(p),
            degeneracy: DegeneracyCheck::default(),
        };
        for (_, topic, _) in HARMFUL {
            for s in 0..REFUSALS.len() {
                let r = corpus::refusal(topic, s);
                assert_eq!(judge.classify(&r, None), Verdict::Refusal, "{p}: {r}");
            }
        }
    }
}

#[test]
fn helpful_answers_are_compliance_under_every_preset() {
    for p in Preset::ALL {
        let judge = ResponseJudge {
            refusal: KeywordJudge::preset(p),
            degeneracy: DegeneracyCheck::default(),
        };
        let mut answers: Vec<String> = Vec::new();
        for (act, tip) in BENIGN.iter().chain(LOOKALIKE.iter()) {
            for s in 0..4 {
                answers.push(corpus::helpful_answer(act, tip, s));
            }
        }
        answers.extend(FACTS.iter().map(|f| f.1.to_string()));
        answers.extend([
            "positive".to_string(),
            "negative".to_string(),
            COMPLIANCE.to_string(),
        ]);
        for a in &answers {
            assert_eq!(judge.classify(a, None), Verdict::Compliance, "{p}: {a}");
        }
    }
    assert!(TargetJudge::default().hit(COMPLIANCE, COMPLIANCE_TARGET));
}

#[test]
fn no_training_prompt_is_an_evaluation_prompt() {
    let train: HashSet<String> = Pools::new()
        .all_prompts()
        .into_iter()
        .map(|p| p.to_lowercase())
        .collect();
    let suites = FixtureSuites::generated();
    for h in suites
        .harmful
        .iter()
        .chain(&suites.benign)
        .chain(&suites.sentiment)
    {
        assert!(
            !train.contains(&h.prompt.to_lowercase()),
            "held-out prompt trains: {}",
            h.prompt
        );
    }
    // Nor is any bundled XSTest prompt or JBB benign behaviour a training prompt.
    for file in [
        "suites/xstest/xstest_prompts.csv",
        "suites/jbb-behaviors/benign-behaviors.csv",
    ] {
        let text = std::fs::read_to_string(root().join(file))
            .unwrap()
            .to_lowercase();
        for p in train.iter().filter(|p| p.len() > 20) {
            assert!(
                !text.contains(&format!(",{p},")),
                "{file} contains training prompt {p}"
            );
        }
    }
    // JBB's harmful behaviours include AdvBench goals; five of them fall in the AdvBench
    // training half (documented in models/README.md), and no template prompt is among them.
    let jbb = std::fs::read_to_string(root().join("suites/jbb-behaviors/behaviors.csv"))
        .unwrap()
        .to_lowercase();
    let adv_train: HashSet<String> = corpus::advbench_split()
        .into_iter()
        .filter(|r| !r.held_out)
        .map(|r| r.goal.to_lowercase())
        .collect();
    let shared: Vec<&String> = train
        .iter()
        .filter(|p| p.len() > 20 && jbb.contains(&format!(",{p},")))
        .collect();
    assert!(shared.iter().all(|p| adv_train.contains(*p)), "{shared:?}");
    assert_eq!(shared.len(), 5, "{shared:?}");
    let held: Vec<_> = corpus::advbench_split()
        .into_iter()
        .filter(|r| r.held_out)
        .collect();
    assert_eq!(held.len(), 260);
    for r in held {
        assert!(!train.contains(&r.goal.to_lowercase()), "{}", r.goal);
    }
}

#[test]
fn committed_suites_match_the_generator() {
    let dir = root().join("suites/fixture");
    for (name, text) in suite_files() {
        let committed = std::fs::read_to_string(dir.join(&name)).unwrap_or_default();
        assert!(committed == text, "suites/fixture/{name} differs from the generator; rerun `train_fixtures suites suites/fixture`");
    }
    let loaded = FixtureSuites::load(&dir).unwrap();
    let generated = FixtureSuites::generated();
    assert_eq!(loaded.harmful, generated.harmful);
    assert_eq!(loaded.benign, generated.benign);
    assert_eq!(loaded.triggered, generated.triggered);
    assert_eq!(loaded.sentiment, generated.sentiment);
    assert_eq!(
        (
            loaded.harmful.len(),
            loaded.benign.len(),
            loaded.sentiment.len()
        ),
        (360, 160, 121)
    );
}

#[test]
fn transfer_prompts_are_training_side_only() {
    let (benign, harmful) = compsafe_engine::fixture::suites::transfer_prompts();
    assert_eq!(benign.len(), 160 + 60 + 40 + 100);
    assert_eq!(harmful.len(), 200);
    let held: std::collections::HashSet<String> = corpus::heldout_harmful(10_000)
        .into_iter()
        .chain(corpus::heldout_benign(10_000, 10_000))
        .chain(corpus::heldout_sentiment(10_000))
        .map(|h| h.prompt)
        .collect();
    for [_, p, kind] in benign.iter().chain(&harmful) {
        assert!(
            !held.contains(p),
            "held-out prompt in the transfer set: {p}"
        );
        if kind != "fact" {
            assert!(!corpus::held_out(p) || kind == "harmful", "{p}");
        }
    }
    let ids: std::collections::HashSet<&String> =
        benign.iter().chain(&harmful).map(|r| &r[0]).collect();
    assert_eq!(ids.len(), benign.len() + harmful.len());
}
