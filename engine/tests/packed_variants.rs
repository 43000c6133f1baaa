//! `nf4`, `nf4:dq`, `fp4` and `fp8` derived in memory from a reference, against what the
//! libraries made of the same reference: bitsandbytes' 4-bit checkpoints of
//! `tests/fixtures/quant/src/llama` (tools/reference/make_quant_fixtures.py) must hold the
//! same codes and, after double quantization is undone, the same absmax values, bit for bit.

use std::path::{Path, PathBuf};

use candle_core::Device;
use compsafe_core::Variant;
use compsafe_engine::compress::LinearWeight;
use compsafe_engine::formats::packed::Codes;
use compsafe_engine::variant::{compress, derive};
use compsafe_engine::Checkpoint;

fn quant(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/quant")
        .join(name)
}

fn bnb4_codes(w: &LinearWeight) -> (&[u8], &[f32]) {
    let LinearWeight::Packed(p) = w else {
        panic!("not packed")
    };
    let Codes::Bnb4 { packed, absmax, .. } = &p.codes else {
        panic!("not bnb4")
    };
    (packed, absmax)
}

#[test]
fn bitsandbytes_4bit_blocks_are_bit_identical() {
    let dev = Device::Cpu;
    let src = Checkpoint::load(&quant("src/llama"), &dev).unwrap();
    let (mut dq_differ, mut dq_total) = (0, 0);
    for (variant, fixture) in [
        ("nf4", "bnb-nf4-llama"),
        ("nf4:dq", "bnb-nf4-dq-llama"),
        ("fp4", "bnb-fp4-llama"),
    ] {
        let c = compress(&src, &Variant::parse(variant, "v").unwrap()).unwrap();
        let lib = Checkpoint::load(&quant(fixture), &dev).unwrap();
        assert_eq!(c.weights.len(), lib.packed.len(), "{variant}");
        for (name, w) in &c.weights {
            let (codes, absmax) = bnb4_codes(w);
            let p = &lib.packed[name];
            let Codes::Bnb4 {
                packed: want,
                absmax: want_absmax,
                ..
            } = &p.codes
            else {
                panic!("{fixture}: {name} is not a 4-bit layer")
            };
            assert_eq!(codes, want.as_slice(), "{variant}: codes of {name}");
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            let (a, b) = (bits(absmax), bits(want_absmax));
            let differ = (0..a.len()).filter(|&i| a[i] != b[i]).count();
            if variant == "nf4:dq" {
                // bitsandbytes' CPU kernel finds the 8-bit code of a centred absmax with an
                // approximate bin search (BinSearch's Direct2) that, for a value within a
                // fraction of a code step of the midpoint, can return the farther of the two
                // neighbouring codes; compsafe takes the nearer one.
                dq_differ += differ;
                dq_total += a.len();
            } else {
                assert_eq!(differ, 0, "{variant}: absmax of {name}");
            }
        }
    }
    eprintln!("nf4:dq: {dq_differ} of {dq_total} absmax values on another 8-bit code");
    assert!(dq_differ * 200 <= dq_total, "{dq_differ} of {dq_total}");
}

#[test]
fn fp8_and_nf4_variants_run_and_cost_what_they_store() {
    let dev = Device::Cpu;
    let src = Checkpoint::load(&quant("src/llama"), &dev).unwrap();
    // Tiny matrices: the code table and the double quantization's tables weigh in.
    for (variant, bits) in [("fp8", 8.0), ("nf4", 4.0), ("nf4:dq", 4.0)] {
        let d = derive(&src, &Variant::parse(variant, "v").unwrap(), &dev).unwrap();
        for s in &d.compressed_stats {
            assert!(
                s.bits_per_weight > bits && s.bits_per_weight < bits + 1.5,
                "{variant}: {} stores {} bits per weight",
                s.name,
                s.bits_per_weight
            );
            assert!(s.rel_error > 0.0 && s.rel_error < 0.2, "{variant}: {s:?}");
        }
        let logits = compsafe_engine::score::all_logits(&d.model, &[vec![1, 5, 9, 13]]).unwrap();
        let v = logits[0].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(v.iter().all(|x| x.is_finite()), "{variant}");
    }
}

#[test]
fn fp8_weights_and_scales_are_llm_compressors() {
    let dev = Device::Cpu;
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/calib");
    let src = Checkpoint::load(&fixtures.join("model"), &dev).unwrap();
    let want =
        candle_core::safetensors::load(fixtures.join("fp8_dynamic.safetensors"), &dev).unwrap();
    let c = compress(&src, &Variant::parse("fp8", "v").unwrap()).unwrap();
    assert_eq!(c.weights.len(), 14);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for (name, w) in &c.weights {
        let LinearWeight::Packed(p) = w else {
            panic!("{name} not packed")
        };
        let Codes::Fp8 { scales, .. } = &p.codes else {
            panic!("{name} not fp8")
        };
        let lib_w = want[name].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let lib_s = want[&format!("{name}.scale")].to_vec1::<f32>().unwrap();
        assert_eq!(bits(scales), bits(&lib_s), "scales of {name}");
        assert_eq!(bits(&p.dequantize_vec()), bits(&lib_w), "weights of {name}");
        assert!(matches!(
            p.act,
            Some(compsafe_engine::formats::ActQuant::Dynamic(
                compsafe_engine::quant::act::ActType::Fp8E4m3
            ))
        ));
    }
}
