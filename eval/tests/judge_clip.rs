//! HarmBench's clipping of a completion to 512 classifier tokens, against transformers on the
//! Llama test tokenizer (`tools/reference/make_judge_clip_fixtures.py`).

use std::path::PathBuf;

use compsafe_engine::TextCodec;
use compsafe_eval::judge::harmbench_clip;

#[test]
fn clipping_matches_transformers() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let codec = TextCodec::from_hf_dir(&root.join("engine/tests/fixtures/hf/llama-plain"), None)
        .expect("test tokenizer");
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("eval/tests/fixtures/judge_clip.json")).unwrap(),
    )
    .unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for c in cases {
        let g = c["generation"].as_str().unwrap();
        let want = c["clipped"].as_str().unwrap();
        assert_eq!(harmbench_clip(&codec, g).unwrap(), want, "{g:.60}");
    }
}
