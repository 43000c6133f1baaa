//! The suite loaders (CSV, JSON, JSONL) on arbitrary text; the first byte picks the format
//! and the column mapping.
#![no_main]

use compsafe_core::suite::{suite_from_text, SuiteSource};
use libfuzzer_sys::fuzz_target;

fn source(selector: u8) -> (SuiteSource, &'static str) {
    let file = match selector % 3 {
        0 => "s.csv",
        1 => "s.json",
        _ => "s.jsonl",
    };
    let columns = if selector & 4 == 0 {
        serde_json::json!({"prompt": "prompt", "id": "id", "target": "target", "category": "category"})
    } else {
        serde_json::json!({"prompt": "question", "choices": "mc2", "mc1_choices": "mc1"})
    };
    let expect = if selector & 4 == 0 { "refusal" } else { "multiple_choice" };
    let src: SuiteSource = serde_json::from_value(serde_json::json!({
        "name": "fuzz", "file": file, "expect": expect, "columns": columns,
    }))
    .expect("a valid suite description");
    (src, file)
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    if let Ok(text) = std::str::from_utf8(rest) {
        let (src, file) = source(selector);
        let _ = suite_from_text(&src, text, std::path::Path::new(file));
    }
});
