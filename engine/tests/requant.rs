//! GGUF writing and re-quantize-and-diff: compsafe's GGUF of the llama-plain fixture holds
//! the same tensors as the gguf-py conversion (tools/reference/make_gguf_vectors.py: names,
//! q/k permutation, f32 and Q8_0 bytes, tokenizer and chat template), and requant-diff finds
//! nothing in honest files and exactly the tensor of one altered block.

use std::path::{Path, PathBuf};

use compsafe_core::GgufType;
use compsafe_engine::gguf_write::write_gguf;
use compsafe_engine::manifest;
use compsafe_engine::requant::requant_diff;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[test]
fn written_tensors_equal_the_gguf_py_conversion() {
    let tmp = tempfile::tempdir().unwrap();
    let hf = fixtures().join("hf/llama-plain");
    for (ty, reference) in [
        (None, "gguf/llama-plain.f32.gguf"),
        (Some(GgufType::Q8_0), "gguf/llama-plain.q8_0.gguf"),
    ] {
        let out = tmp.path().join("out.gguf");
        let w = write_gguf(&hf, ty, &out).unwrap();
        assert_eq!(w.tensors.len(), 21);
        let ours = manifest::create(&out).unwrap();
        let theirs = manifest::create(&fixtures().join(reference)).unwrap();
        assert_eq!(
            ours.tensors.keys().collect::<Vec<_>>(),
            theirs.tensors.keys().collect::<Vec<_>>()
        );
        for (name, t) in &theirs.tensors {
            let o = &ours.tensors[name];
            assert_eq!(
                (&o.dtype, &o.shape, &o.sha256),
                (&t.dtype, &t.shape, &t.sha256),
                "{reference}: {name}"
            );
        }
        assert_eq!(ours.tokenizer, theirs.tokenizer, "{reference}");
        assert_eq!(ours.chat_template_sha256, theirs.chat_template_sha256);
    }
}

#[test]
fn an_honest_file_is_clean_and_one_altered_block_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let hf = fixtures().join("hf/llama-plain");
    let out = tmp.path().join("q4k.gguf");
    write_gguf(&hf, Some(GgufType::Q4K), &out).unwrap();
    let d = requant_diff(&hf, &out, 2.0).unwrap();
    assert!(d.clean(), "{d:?}");
    assert_eq!(d.tensors.len(), 21);
    assert!(d.tensors.iter().all(|t| t.differing == 0), "{d:?}");
    assert_eq!(
        (d.chat_template_equal, d.tokenizer_equal),
        (Some(true), Some(true))
    );

    // gguf-py's Q8_0 file: another writer, the same source — honest.
    let d = requant_diff(&hf, &fixtures().join("gguf/llama-plain.q8_0.gguf"), 2.0).unwrap();
    assert!(d.clean(), "{d:?}");

    // Alter one block of one tensor: the 3rd block of blk.1.ffn_down.weight, its codes
    // rewritten (the scales kept), as a tampered file would.
    let bytes = std::fs::read(&out).unwrap();
    let header = compsafe_engine::gguf_header::scan(&bytes).unwrap();
    let (_, dims, ty, offset) = header
        .tensors
        .iter()
        .find(|t| t.0 == "blk.1.ffn_down.weight")
        .unwrap()
        .clone();
    let block = if ty == 12 { 144 } else { 22 }; // Q4_K, or its Q5_0 fallback for short rows
    assert!(dims.iter().product::<u64>() > 0);
    let start = (header.data_start + offset) as usize + 2 * block;
    let mut altered = bytes.clone();
    let code_start = if ty == 12 { 16 } else { 6 };
    for b in &mut altered[start + code_start..start + block] {
        *b ^= 0x5a;
    }
    let bad = tmp.path().join("altered.gguf");
    std::fs::write(&bad, &altered).unwrap();
    let d = requant_diff(&hf, &bad, 2.0).unwrap();
    assert!(!d.clean());
    let s = d.suspicious();
    assert_eq!(s.len(), 1, "{d:?}");
    assert_eq!(s[0].name, "blk.1.ffn_down.weight");
    assert_eq!(
        (s[0].differing, s[0].beyond_honest, s[0].first_beyond),
        (1, 1, Some(2))
    );
    eprintln!(
        "altered block: RMS error {:.1}x the reference quantizer's; honest gguf-py Q8_0 file: \
         clean",
        s[0].worst_ratio
    );

    // The same weights under llama3 rope scaling: the GGUF computes something else.
    let d = requant_diff(&fixtures().join("hf/llama-gqa"), &out, 2.0).unwrap();
    assert!(d.suspicious().is_empty(), "{d:?}");
    assert_eq!(d.config_differences.len(), 1, "{d:?}");
    assert!(d.config_differences[0].contains("rope scaling"), "{d:?}");
    assert!(!d.clean());
}
