//! `compsafe fixture train --quick`: a few steps of every stage write four loadable
//! checkpoints in Hugging Face layout with valid MANIFESTs.

use candle_core::Device;
use compsafe_engine::fixture::{self, save::check_manifest, FixtureOptions};
use compsafe_engine::{generate, Checkpoint, GenerateOptions, Model, TextCodec};

#[test]
fn quick_training_writes_loadable_checkpoints() {
    let out = tempfile::tempdir().unwrap();
    let dirs = fixture::train(&FixtureOptions {
        out: out.path().to_path_buf(),
        seed: 7,
        quick: true,
    })
    .unwrap();
    let names: Vec<String> = dirs
        .iter()
        .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, fixture::NAMES);
    for dir in &dirs {
        assert!(check_manifest(dir).unwrap().is_empty(), "{}", dir.display());
        let size = std::fs::metadata(dir.join("model.safetensors"))
            .unwrap()
            .len();
        assert!(size <= 8_000_000, "{}: {size} bytes", dir.display());
        let ckpt = Checkpoint::load(dir, &Device::Cpu).unwrap();
        assert_eq!(ckpt.config.num_kv_heads, 2);
        assert!(ckpt.config.tie_word_embeddings);
        let codec = TextCodec::from_hf_dir(dir, None).unwrap();
        let ids = codec.encode_prompt("How do I bake bread at home?").unwrap();
        assert_eq!(codec.decode(&ids[..1], false).unwrap(), "<s>");
        let model = Model::new(&ckpt).unwrap();
        let opts = GenerateOptions {
            max_new_tokens: 4,
            eos: codec.eos_ids.clone(),
            ..GenerateOptions::default()
        };
        let g = generate(&model, &[ids], &opts, None).unwrap();
        assert!(!g[0].tokens.is_empty());
    }
}
