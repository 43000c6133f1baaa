//! Bad model files give errors that name the file and what is wrong; nothing panics.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use compsafe_engine::{Checkpoint, TextCodec};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
}

fn model_copy() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    copy_dir(&fixture("hf/llama-gqa"), &dir);
    (tmp, dir)
}

fn load_err(path: &Path) -> String {
    Checkpoint::load(path, &Device::Cpu)
        .unwrap_err()
        .to_string()
}

#[test]
fn truncated_safetensors() {
    let (_t, dir) = model_copy();
    let f = dir.join("model.safetensors");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_err(&dir);
    assert!(
        e.contains("model.safetensors") && e.contains("invalid safetensors"),
        "{e}"
    );
}

#[test]
fn header_length_larger_than_the_file() {
    let (_t, dir) = model_copy();
    let f = dir.join("model.safetensors");
    let mut bytes = (1u64 << 40).to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    std::fs::write(&f, bytes).unwrap();
    let e = load_err(&dir);
    assert!(
        e.contains("model.safetensors") && e.contains("invalid safetensors"),
        "{e}"
    );
}

#[test]
fn shape_disagreeing_with_config() {
    let (_t, dir) = model_copy();
    let cfg = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["intermediate_size"] = serde_json::json!(96);
    std::fs::write(&cfg, v.to_string()).unwrap();
    let e = load_err(&dir);
    assert!(
        e.contains("model.safetensors") && e.contains("mlp") && e.contains("config.json implies"),
        "{e}"
    );
}

#[test]
fn integer_dtype_is_refused() {
    let (_t, dir) = model_copy();
    let f = dir.join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&f, &Device::Cpu).unwrap();
    let shape = tensors["model.norm.weight"].dims().to_vec();
    tensors.insert(
        "model.norm.weight".into(),
        Tensor::zeros(shape, candle_core::DType::U32, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&tensors, &f).unwrap();
    let e = load_err(&dir);
    assert!(
        e.contains("model.norm.weight") && e.contains("dtype"),
        "{e}"
    );
}

#[test]
fn missing_tensor_is_named() {
    let (_t, dir) = model_copy();
    let f = dir.join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&f, &Device::Cpu).unwrap();
    tensors.remove("model.layers.1.mlp.up_proj.weight");
    candle_core::safetensors::save(&tensors, &f).unwrap();
    let e = load_err(&dir);
    assert!(
        e.contains("model.layers.1.mlp.up_proj.weight") && e.contains("missing"),
        "{e}"
    );
}

#[test]
fn pickled_checkpoints_are_never_loaded() {
    let (_t, dir) = model_copy();
    std::fs::rename(dir.join("model.safetensors"), dir.join("pytorch_model.bin")).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("never loaded"), "{e}");
}

#[test]
fn gguf_bad_magic() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("m.gguf");
    let mut bytes = std::fs::read(fixture("gguf/llama-plain.f32.gguf")).unwrap();
    bytes[..4].copy_from_slice(b"GGXX");
    std::fs::write(&f, bytes).unwrap();
    let e = load_err(&f);
    assert!(e.contains("m.gguf") && e.contains("invalid GGUF"), "{e}");
}

#[test]
fn gguf_tensor_data_beyond_the_end() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("m.gguf");
    let bytes = std::fs::read(fixture("gguf/llama-plain.f32.gguf")).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() - 4096]).unwrap();
    let e = load_err(&f);
    assert!(e.contains("m.gguf"), "{e}");
}

#[test]
fn missing_tokenizer() {
    let (_t, dir) = model_copy();
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    let e = TextCodec::from_hf_dir(&dir, None).unwrap_err().to_string();
    assert!(e.contains("tokenizer.json") && e.contains("missing"), "{e}");
}

#[test]
fn corrupt_tokenizer() {
    let (_t, dir) = model_copy();
    std::fs::write(dir.join("tokenizer.json"), b"{\"model\": 3}").unwrap();
    let e = TextCodec::from_hf_dir(&dir, None).unwrap_err().to_string();
    assert!(
        e.contains("tokenizer.json") && e.contains("invalid tokenizer"),
        "{e}"
    );
}

#[test]
fn chat_template_that_fails_to_render() {
    let (_t, dir) = model_copy();
    let bad = dir.join("bad.jinja");
    std::fs::write(&bad, "{{ raise_exception('no system role') }}").unwrap();
    let e = TextCodec::from_hf_dir(&dir, Some(&bad))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("bad.jinja") && e.contains("fails to render"),
        "{e}"
    );
    std::fs::write(&bad, "{% for m in messages %}").unwrap();
    let e = TextCodec::from_hf_dir(&dir, Some(&bad))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("bad.jinja") && e.contains("does not parse"),
        "{e}"
    );
}

#[test]
fn prompt_longer_than_the_context() {
    let ckpt = Checkpoint::load(&fixture("hf/llama-gqa"), &Device::Cpu).unwrap();
    let model = compsafe_engine::Model::new(&ckpt).unwrap();
    let long = vec![5u32; ckpt.config.max_position_embeddings + 1];
    let opts = compsafe_engine::GenerateOptions {
        max_new_tokens: 4,
        ..Default::default()
    };
    let e = compsafe_engine::generate(&model, &[long], &opts, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("exceeds the model's context"), "{e}");
}
