//! Model manifests: tensor, chat-template and tokenizer hashes against independent
//! references (Python hashlib over the safetensors byte ranges; the `gguf` package's
//! GGUFReader tensor data), and what a check catches and what it lets through.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use compsafe_engine::integrity::Integrity;
use compsafe_engine::manifest;
use compsafe_tests::root;

/// A copy of the fixture model without its sha256sum MANIFEST, with a JSON manifest.
fn pinned_copy() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    std::fs::create_dir(&dir).unwrap();
    let src = root().join("models/tiny-safety");
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().unwrap() != "MANIFEST" {
            std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
        }
    }
    let m = manifest::create(&dir).unwrap();
    std::fs::write(dir.join("MANIFEST.json"), manifest::render(&m)).unwrap();
    (tmp, dir)
}

fn failures(dir: &Path) -> Vec<String> {
    match manifest::verify(dir, None).unwrap().1 {
        Integrity::Failed(m) => m,
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn hashes_match_independent_references() {
    let m = manifest::create(&root().join("models/tiny-safety")).unwrap();
    // hashlib.sha256 of the tensors' byte ranges (data_offsets of the safetensors header).
    assert_eq!(
        m.tensors["model.embed_tokens.weight"].sha256,
        "8b21ce4fe5638b767b7de21ab03f7686eac766fb89ed348003d2f12f3acf5ef0"
    );
    assert_eq!(
        m.tensors["model.layers.1.mlp.down_proj.weight"].sha256,
        "eda89172514cbc71dee760821c74efb01135dda9cb0e60e199b28fee9191a60e"
    );
    assert_eq!(
        m.tensors["model.embed_tokens.weight"].shape,
        vec![1024, 256]
    );
    assert_eq!(m.tensors["model.embed_tokens.weight"].dtype, "F32");
    // sha256 of tokenizer_config.json's chat_template, and of the JSON token list by id
    // (json.dumps(tokens, ensure_ascii=False, separators=(",", ":"))).
    assert_eq!(
        m.chat_template_sha256.as_deref(),
        Some("3061a8f438f6a98698c004371b5f29ca143186b73bcad6966a7a70b01c2a3bcc")
    );
    let tok = m.tokenizer.as_ref().unwrap();
    assert_eq!(tok.vocab_size, 1024);
    assert_eq!(
        tok.vocab_sha256,
        "11c79b9904b65ca6c26d6261523480258dbf77a395ae93f2f61280aaf9870143"
    );

    // GGUF: the stored (block-quantized) bytes, as gguf.GGUFReader(...).tensors[i].data.
    let g = root().join("engine/tests/fixtures/gguf/llama-plain.q8_0.gguf");
    let m = manifest::create(&g).unwrap();
    assert_eq!(m.tensors.len(), 21);
    let t = &m.tensors["blk.0.attn_q.weight"];
    assert_eq!((t.dtype.as_str(), t.shape.clone()), ("Q8_0", vec![64, 64]));
    assert_eq!(
        t.sha256,
        "7613d07426070844a918d192d312d871fac3b755f9060cdbf325812304d2488b"
    );
    assert_eq!(
        m.tensors["token_embd.weight"].sha256,
        "42b3562f113175cc8b5357d8326021ae14426e347a8730c339ad84267bd6a410"
    );
    assert_eq!(
        m.tensors["blk.0.attn_norm.weight"].sha256,
        "06939e6de9092cdf6134773fbbae8714387341c3a32ddbe90ad326ecd1dedd03"
    );
}

#[test]
fn one_flipped_byte_in_one_tensor_is_named() {
    let (_tmp, dir) = pinned_copy();
    assert_eq!(manifest::verify(&dir, None).unwrap().1, Integrity::Ok);
    // One byte inside model.layers.1.mlp.down_proj.weight (file bytes 3413048..3937336).
    let f = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&f).unwrap();
    bytes[3_500_001] ^= 0x01;
    std::fs::write(&f, bytes).unwrap();
    let msgs = failures(&dir);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert!(
        msgs[0].contains("tensor `model.layers.1.mlp.down_proj.weight` in model.safetensors"),
        "{msgs:?}"
    );
}

#[test]
fn a_resaved_model_with_the_same_tensors_verifies() {
    let (_tmp, dir) = pinned_copy();
    let f = dir.join("model.safetensors");
    let bytes = std::fs::read(&f).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    // The same tensors written again, in reverse order and with header metadata: other
    // bytes, the same model.
    let mut views: Vec<(String, safetensors::tensor::TensorView<'_>)> = st.tensors();
    views.reverse();
    let meta: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
    let out = safetensors::serialize(views, Some(meta)).unwrap();
    assert_ne!(out, bytes);
    std::fs::write(&f, out).unwrap();
    assert_eq!(manifest::verify(&dir, None).unwrap().1, Integrity::Ok);
    // While a plain file manifest (sha256sum lines) would have refused it.
    let legacy = root().join("models/tiny-safety/MANIFEST");
    let Integrity::Failed(m) = manifest::verify(&dir, Some(&legacy)).unwrap().1 else {
        panic!("the file hash changed")
    };
    assert!(m[0].contains("model.safetensors"), "{m:?}");
}

#[test]
fn an_added_tensor_a_new_template_and_a_changed_config_are_named() {
    let (_tmp, dir) = pinned_copy();
    let f = dir.join("model.safetensors");
    let bytes = std::fs::read(&f).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let extra = vec![0u8; 16];
    let mut views = st.tensors();
    views.push((
        "model.backdoor.weight".to_string(),
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![4], &extra).unwrap(),
    ));
    std::fs::write(&f, safetensors::serialize(views, None).unwrap()).unwrap();
    let cfg = dir.join("tokenizer_config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    v["chat_template"] = serde_json::Value::String("{{ messages[0]['content'] }}".into());
    std::fs::write(&cfg, serde_json::to_string(&v).unwrap()).unwrap();
    let msgs = failures(&dir);
    assert!(
        msgs.iter()
            .any(|m| m.contains("tensor `model.backdoor.weight`")
                && m.contains("not in the manifest")),
        "{msgs:?}"
    );
    assert!(msgs.iter().any(|m| m.contains("chat template")), "{msgs:?}");
    assert!(
        msgs.iter().any(|m| m.contains("tokenizer_config.json")),
        "{msgs:?}"
    );
    assert!(
        !msgs.iter().any(|m| m.contains("model.safetensors:")),
        "{msgs:?}"
    );
}

#[test]
fn bad_manifests_name_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("MANIFEST.json");
    std::fs::write(
        &p,
        r#"{"format": "compsafe.manifest/v1", "files": {"a": {"sha256": "xyz", "bytes": 1}}}"#,
    )
    .unwrap();
    let e = manifest::load(&p).unwrap_err().to_string();
    assert!(
        e.contains("files.a.sha256") && e.contains("MANIFEST.json"),
        "{e}"
    );
    std::fs::write(&p, r#"{"format": "other", "files": {}}"#).unwrap();
    let e = manifest::load(&p).unwrap_err().to_string();
    assert!(e.contains("format"), "{e}");
    std::fs::write(
        &p,
        r#"{"format": "compsafe.manifest/v1", "files": {}, "extra": 1}"#,
    )
    .unwrap();
    let e = manifest::load(&p).unwrap_err().to_string();
    assert!(e.contains("extra"), "{e}");
}

/// Quantized checkpoints: a flipped byte in a GPTQ `qweight` or a compressed-tensors
/// `weight_scale` is named with its file.
#[test]
fn a_flipped_byte_in_packed_codes_or_scales_is_named() {
    let quant = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/quant");
    for (fixture, tensor) in [
        ("gptq-w4g128-llama", "model.layers.1.mlp.up_proj.qweight"),
        (
            "ct-w4a16-llama",
            "model.layers.0.self_attn.k_proj.weight_scale",
        ),
        (
            "bnb-nf4-dq-llama",
            "model.layers.0.mlp.down_proj.weight.absmax",
        ),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(fixture);
        std::fs::create_dir_all(&dir).unwrap();
        for f in std::fs::read_dir(quant.join(fixture)).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, dir.join(f.file_name().unwrap())).unwrap();
        }
        let pinned = manifest::create(&dir).unwrap();
        assert!(
            pinned.tensors.contains_key(tensor),
            "{fixture}: {tensor} pinned"
        );
        let path = dir.join("model.safetensors");
        let mut bytes = std::fs::read(&path).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        let at = 8 + n + header[tensor]["data_offsets"][0].as_u64().unwrap() as usize;
        bytes[at + 1] ^= 0x10;
        std::fs::write(&path, bytes).unwrap();
        let found = manifest::create(&dir).unwrap();
        match manifest::check(&found, &pinned) {
            compsafe_engine::integrity::Integrity::Failed(m) => {
                assert_eq!(m.len(), 1, "{fixture}: {m:?}");
                assert!(
                    m[0].contains(tensor) && m[0].contains("model.safetensors"),
                    "{fixture}: {}",
                    m[0]
                );
            }
            other => panic!("{fixture}: {other:?}"),
        }
    }
}
