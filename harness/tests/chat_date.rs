//! A sweep renders chat templates with the spec's `[chat] date` (default: the sweep's start
//! date), records it in report.json, and refuses a date that is no calendar day. The model
//! is the fixture model with Llama 3.2's published template, which stamps `Today Date:` with
//! `strftime_now`.

use std::path::Path;

use candle_core::Device;
use compsafe_engine::ChatDate;
use compsafe_eval::Evaluator;
use compsafe_tests::{root, run_cli, write_file};
use serde_json::Value;

const PROMPTS: usize = 4;

fn template() -> std::path::PathBuf {
    root().join("engine/tests/fixtures/chat/templates/llama-3.2.jinja")
}

fn spec(dir: &Path, chat: &str) -> std::path::PathBuf {
    let text = format!(
        r#"variants = ["int8"]
[sweep]
name = "chat-date"
seed = 5
[model]
path = "{}"
chat_template = "{}"
[[suites]]
name = "fixture-harmful"
limit = {PROMPTS}
[generation]
max_new_tokens = 4
[stats]
bootstrap_resamples = 20
{chat}
"#,
        root().join("models/tiny-safety").display(),
        template().display(),
    );
    write_file(dir, "sweep.toml", &text)
}

/// Runs the sweep; its report and the reference's records (prompt, refusal log-odds).
fn run(dir: &Path, chat: &str) -> (Value, Vec<(String, f64)>) {
    let out = dir.join("out");
    let spec = spec(dir, chat);
    let (code, _, err) = run_cli(&[
        "run",
        spec.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let records = std::fs::read_to_string(out.join("records.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["variant"] == "fp32")
        .map(|r| {
            (
                r["prompt"].as_str().unwrap().to_string(),
                r["refusal_logodds"].as_f64().unwrap(),
            )
        })
        .collect();
    (report, records)
}

/// The reference's refusal log-odds of each prompt rendered on `date`, computed here.
fn logodds_on(eval: &mut Evaluator, date: &str, prompts: &[String]) -> Vec<f64> {
    let mut opts = eval.codec.chat_options().clone();
    opts.date = ChatDate::parse(date).unwrap();
    eval.codec.set_chat_options(opts);
    prompts
        .iter()
        .map(|p| {
            let ids = eval.prompt_tokens(p).unwrap();
            eval.refusal_logodds(&eval.reference, &[ids], 8192).unwrap()[0]
        })
        .collect()
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn templates_render_the_spec_date_or_the_start_date() {
    let model = root().join("models/tiny-safety");
    let mut eval = Evaluator::load(&model, Some(&template()), &Device::Cpu).unwrap();

    let pinned = tempfile::tempdir().unwrap();
    let (report, records) = run(pinned.path(), "[chat]\ndate = \"2025-03-14\"");
    assert_eq!(report["chat"]["date"], "2025-03-14");
    assert_eq!(records.len(), PROMPTS);
    let prompts: Vec<String> = records.iter().map(|r| r.0.clone()).collect();
    let got: Vec<f64> = records.iter().map(|r| r.1).collect();
    let on_date = logodds_on(&mut eval, "2025-03-14", &prompts);
    let day_after = logodds_on(&mut eval, "2025-03-15", &prompts);
    // The rendered prompt carries the date, and the sweep's numbers are those of that prompt.
    eval.codec.set_chat_options({
        let mut o = eval.codec.chat_options().clone();
        o.date = ChatDate::parse("2025-03-14").unwrap();
        o
    });
    let rendered = eval
        .codec
        .render_chat(&[compsafe_engine::ChatMessage::user(&prompts[0])], true)
        .unwrap();
    assert!(rendered.contains("Today Date: 14 Mar 2025"), "{rendered}");
    let same = max_diff(&got, &on_date);
    let other = max_diff(&got, &day_after);
    assert!(
        same <= 1e-4 && other > 100.0 * same.max(1e-6),
        "the sweep's refusal log-odds differ by {same} from the prompts rendered on the spec's \
         date and by {other} from those rendered a day later"
    );

    let unpinned = tempfile::tempdir().unwrap();
    let (report, records) = run(unpinned.path(), "");
    let started = report["sweep"]["started_at"].as_str().unwrap();
    let day = &started[..10];
    assert_eq!(report["chat"]["date"], day);
    let got: Vec<f64> = records.iter().map(|r| r.1).collect();
    let on_start = logodds_on(&mut eval, day, &prompts);
    assert!(max_diff(&got, &on_start) <= 1e-4);
}

#[test]
fn a_date_that_is_no_calendar_day_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(dir.path(), "[chat]\ndate = \"2025-02-30\"");
    for cmd in ["validate", "run"] {
        let (code, _, err) = run_cli(&[cmd, spec.to_str().unwrap()]);
        assert_eq!(code, 2, "{cmd}: {err}");
        assert!(
            err.contains("chat.date") && err.contains("2025-02-30"),
            "{cmd}: {err}"
        );
    }
}
