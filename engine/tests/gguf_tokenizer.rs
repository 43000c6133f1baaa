//! GGUF vocabularies tokenized as llama.cpp tokenizes them: for SentencePiece (`llama`, with
//! and without the space prefix) and byte-level BPE (`gpt2`) files under seven pre-tokenizer
//! names, compsafe's ids for 33 texts (spaces, newlines, unicode, digits, bytes the vocabulary
//! lacks, special and user-defined tokens in the text) equal `llama_tokenize`'s with and
//! without the special tokens added. The files and ids were written by
//! tools/reference/make_gguf_tokenizer_vectors.py (llama-cpp-python 0.3.36).

use std::path::{Path, PathBuf};

use compsafe_engine::gguf_load::read_tokenizer_meta;
use compsafe_engine::TextCodec;
use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf-tokenizer")
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn codec(name: &str) -> TextCodec {
    let path = dir().join(name);
    let meta = read_tokenizer_meta(&path).unwrap();
    TextCodec::from_gguf(&path, &meta).unwrap()
}

fn check(name: &str) {
    let exp: Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("expected.json")).unwrap())
            .unwrap();
    let file = &exp["files"][name];
    let codec = codec(name);
    let mut failures = Vec::new();
    for case in file["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        for (key, add) in [("add_special", true), ("no_special", false)] {
            let want = ids(&case[key]);
            let got = codec.encode(text, add).unwrap();
            if got != want {
                failures.push(format!("{text:?} ({key}): got {got:?}, llama.cpp {want:?}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: {} of {} encodings differ:\n{}",
        failures.len(),
        2 * file["cases"].as_array().unwrap().len(),
        failures.join("\n")
    );
}

#[test]
fn sentencepiece_with_space_prefix() {
    check("spm.gguf");
}

#[test]
fn sentencepiece_without_space_prefix() {
    check("spm-noprefix.gguf");
}

#[test]
fn bpe_llama3() {
    check("bpe-llama-bpe.gguf");
}

#[test]
fn bpe_qwen2() {
    check("bpe-qwen2.gguf");
}

#[test]
fn bpe_gpt2() {
    check("bpe-gpt-2.gguf");
}

#[test]
fn bpe_default() {
    check("bpe-default.gguf");
}

#[test]
fn bpe_smollm() {
    check("bpe-smollm.gguf");
}

#[test]
fn bpe_tekken() {
    check("bpe-tekken.gguf");
}

#[test]
fn bpe_deepseek_coder() {
    check("bpe-deepseek-coder.gguf");
}

#[test]
fn sentencepiece_decodes_what_it_encodes() {
    let codec = codec("spm.gguf");
    for text in ["Hello world", "café naïve 日本語 😀", "line one\nline two"] {
        let ids = codec.encode(text, false).unwrap();
        assert_eq!(codec.decode(&ids, true).unwrap(), text);
    }
    // After a special token llama.cpp prefixes a space again: `<s>`, `▁▁hello`, `</s>`.
    let ids = codec.encode("<s> hello</s>", false).unwrap();
    assert_eq!(codec.decode(&ids, true).unwrap(), "  hello");
    assert_eq!(codec.decode(&ids, false).unwrap(), "<s>  hello</s>");
}

#[test]
fn unsupported_vocabularies_are_refused_by_name() {
    let path = dir().join("bpe-qwen2.gguf");
    let mut meta = read_tokenizer_meta(&path).unwrap();
    meta.pre = Some("kimi-k2".into());
    let e = TextCodec::from_gguf(&path, &meta).unwrap_err().to_string();
    assert!(
        e.contains("tokenizer.ggml.pre") && e.contains("kimi-k2"),
        "{e}"
    );
    meta.model = "t5".into();
    let e = TextCodec::from_gguf(&path, &meta).unwrap_err().to_string();
    assert!(
        e.contains("tokenizer.ggml.model") && e.contains("t5"),
        "{e}"
    );
}

/// llama.cpp's own test vocabularies (Llama 2 and Phi-3 SentencePiece; Llama 3, Qwen2, GPT-2,
/// StarCoder, DeepSeek, Falcon, MPT, Command-R byte-level BPE) on llama.cpp's test strings:
/// the files are not kept here, so this runs with `LLAMA_CPP_MODELS` set to llama.cpp's
/// `models/` folder (`cargo test --release --test gguf_tokenizer -- --ignored`).
#[test]
#[ignore = "needs llama.cpp's models/ folder in LLAMA_CPP_MODELS"]
fn llama_cpp_test_vocabularies() {
    let Some(models) = std::env::var_os("LLAMA_CPP_MODELS") else {
        panic!("set LLAMA_CPP_MODELS to llama.cpp's models/ folder");
    };
    let exp: Value = serde_json::from_str(
        &std::fs::read_to_string(dir().join("llama-cpp-vocabs.json")).unwrap(),
    )
    .unwrap();
    let mut report = Vec::new();
    let mut failures = Vec::new();
    for (name, file) in exp["files"].as_object().unwrap() {
        let path = Path::new(&models).join(name);
        let meta = read_tokenizer_meta(&path).unwrap();
        let codec = TextCodec::from_gguf(&path, &meta).unwrap();
        let cases = file["cases"].as_array().unwrap();
        let mut same = 0;
        for case in cases {
            let text = case["text"].as_str().unwrap();
            for (key, add) in [("add_special", true), ("no_special", false)] {
                let want = ids(&case[key]);
                let got = codec.encode(text, add).unwrap();
                if got == want {
                    same += 1;
                } else {
                    failures.push(format!(
                        "{name} {text:?} ({key}): got {got:?}, llama.cpp {want:?}"
                    ));
                }
            }
        }
        report.push(format!("{name}: {same}/{}", 2 * cases.len()));
    }
    eprintln!("{}", report.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A whole model with a SentencePiece vocabulary, as llama.cpp's converter writes it, loads and
/// runs: its prompt ids and 8 greedy tokens equal llama.cpp's for three prompts (the smallest
/// top-1/top-2 logit gap on llama.cpp's side is 0.055).
#[test]
fn sentencepiece_model_generates_llama_cpp_tokens() {
    use candle_core::Device;
    use compsafe_engine::{generate, Checkpoint, GenerateOptions, Model};

    let exp: Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("expected.json")).unwrap())
            .unwrap();
    let m = &exp["model"];
    let path = dir().join(m["file"].as_str().unwrap());
    let ck = Checkpoint::load(&path, &Device::Cpu).unwrap();
    let codec = TextCodec::from_gguf(&path, ck.gguf_metadata.as_ref().unwrap()).unwrap();
    let model = Model::new(&ck).unwrap();
    let opts = GenerateOptions {
        max_new_tokens: m["max_new_tokens"].as_u64().unwrap() as usize,
        max_batch: 1,
        eos: Vec::new(),
        ..GenerateOptions::default()
    };
    for case in m["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let prompt = codec.encode(text, true).unwrap();
        assert_eq!(prompt, ids(&case["prompt_ids"]), "{text:?}");
        let gens = generate(&model, std::slice::from_ref(&prompt), &opts, None).unwrap();
        assert_eq!(gens[0].tokens, ids(&case["greedy"]), "{text:?}");
    }
}
