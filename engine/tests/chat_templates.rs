//! Chat templates rendered byte for byte as transformers' `apply_chat_template` renders them:
//! the published templates of Llama 3.1 and 3.2, Mistral v0.3, Qwen2.5, Gemma 2, Phi-3 and
//! Zephyr, a template exercising transformers' environment (tojson arguments, loop controls,
//! Python value printing, strftime_now, `{% generation %}`), and issue 17's reproducer; the
//! expected texts were written by tools/reference/make_chat_fixtures.py with the date pinned.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use compsafe_engine::chat::TemplateValue;
use compsafe_engine::{ChatDate, ChatMessage, ChatOptions, ChatTemplate, TextCodec};
use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chat")
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("expected.json")).unwrap()).unwrap()
}

fn messages(v: &Value) -> Vec<ChatMessage> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|m| ChatMessage::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect()
}

/// A JSON text of the case (`tools_json`, ...): parsed from the text so that object keys keep
/// the order Python gave them.
fn json_text(case: &Value, key: &str) -> Option<TemplateValue> {
    let text = case.get(key)?.as_str()?;
    Some(TemplateValue::from_json(text).unwrap())
}

fn options(exp: &Value, case: &Value) -> ChatOptions {
    let mut opts = ChatOptions::on(ChatDate::parse(exp["date"].as_str().unwrap()).unwrap());
    opts.tools = json_text(case, "tools_json");
    opts.documents = json_text(case, "documents_json");
    if let Some(extra) = case.get("extra").and_then(Value::as_object) {
        for (k, v) in extra {
            let text = serde_json::to_string(v).unwrap();
            opts.variables
                .insert(k.clone(), TemplateValue::from_json(&text).unwrap());
        }
    }
    opts
}

#[test]
fn published_templates_render_as_transformers_does() {
    let exp = expected();
    let mut checked = 0;
    for (name, t) in exp["templates"].as_object().unwrap() {
        let path = dir().join(t["file"].as_str().unwrap());
        let text = std::fs::read_to_string(&path).unwrap();
        let template = ChatTemplate::new(text, &path).unwrap();
        let tokens: BTreeMap<String, String> = t["tokens"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        for case in t["cases"].as_array().unwrap() {
            let what = format!("{name} {}", case["name"].as_str().unwrap());
            let got = template.render(
                &messages(&case["messages"]),
                case["add_generation_prompt"].as_bool().unwrap(),
                &tokens,
                &options(&exp, case),
            );
            match (case.get("rendered"), got) {
                (Some(want), Ok(got)) => assert_eq!(got, want.as_str().unwrap(), "{what}"),
                (None, Err(e)) => {
                    let want = case["error"].as_str().unwrap();
                    let e = e.to_string();
                    assert!(
                        e.contains(want) && e.contains(&path.display().to_string()),
                        "{what}: error {e:?} should carry {want:?} and the template's path"
                    );
                }
                (Some(_), Err(e)) => panic!("{what}: transformers renders it, compsafe fails: {e}"),
                (None, Ok(got)) => panic!(
                    "{what}: transformers raises {:?}, compsafe renders {got:?}",
                    case["error"]
                ),
            }
            checked += 1;
        }
    }
    assert!(checked >= 70, "only {checked} cases");
}

/// A model directory whose template rejects a system message: the codec's error names the
/// template file, the roles and the template's own message.
#[test]
fn a_system_prompt_the_template_rejects_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf/llama-plain");
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(src.join(f), tmp.path().join(f)).unwrap();
    }
    std::fs::copy(
        dir().join("templates/gemma-2.jinja"),
        tmp.path().join("chat_template.jinja"),
    )
    .unwrap();
    let codec = TextCodec::from_hf_dir(tmp.path(), None).unwrap();
    let ok = codec.render_chat(&[ChatMessage::user("Hi")], true).unwrap();
    assert_eq!(
        ok,
        "<s><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
    );
    let e = codec
        .encode_chat(&[ChatMessage::system("Be brief."), ChatMessage::user("Hi")])
        .unwrap_err();
    assert!(e.is_input_error());
    let e = e.to_string();
    assert!(
        e.contains("chat_template.jinja")
            && e.contains("roles: system, user")
            && e.contains("System role not supported"),
        "{e}"
    );
}

/// The date comes from the options, not the clock.
#[test]
fn strftime_now_uses_the_date_of_the_options() {
    let path = dir().join("templates/llama-3.2.jinja");
    let template = ChatTemplate::new(std::fs::read_to_string(&path).unwrap(), &path).unwrap();
    let render = |date: &str| {
        template
            .render(
                &[ChatMessage::user("Hi")],
                true,
                &BTreeMap::new(),
                &ChatOptions::on(ChatDate::parse(date).unwrap()),
            )
            .unwrap()
    };
    assert!(render("2024-12-31").contains("Today Date: 31 Dec 2024\n"));
    assert!(render("2027-01-02").contains("Today Date: 02 Jan 2027\n"));
}
