//! The shared quantization numerics against bitsandbytes' own quantizers on seeded data
//! (tools/reference/make_quant_fixtures.py `vectors`): 4-bit NF4/FP4 codes and absmax, and
//! the 8-bit blockwise quantization double quantization uses, bit for bit.

use std::path::Path;

use compsafe_engine::quant::bnb::{self, FourBit};
use serde_json::Value;

fn vectors() -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/quant/bnb_vectors.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn u8s(v: &Value) -> Vec<u8> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u8)
        .collect()
}

#[test]
fn four_bit_codes_and_absmax_are_bitsandbytes_own() {
    let v = vectors();
    let x = f32s(&v["x"]);
    for (key, ty) in [("nf4", FourBit::Nf4), ("fp4", FourBit::Fp4)] {
        let (packed, absmax) = bnb::quantize_4bit(&x, 64, ty);
        assert_eq!(absmax, f32s(&v[key]["absmax"]), "{key} absmax");
        let want = u8s(&v[key]["packed"]);
        let differ: Vec<usize> = (0..want.len()).filter(|&i| packed[i] != want[i]).collect();
        assert!(
            differ.is_empty(),
            "{key}: {} of {} bytes differ, first at {} (ours {:#04x}, bitsandbytes {:#04x})",
            differ.len(),
            want.len(),
            differ[0],
            packed[differ[0]],
            want[differ[0]]
        );
    }
}

#[test]
fn nf4_table_is_bitsandbytes_own() {
    let bits: Vec<u32> = vectors()["nf4_table_bits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_u64().unwrap() as u32)
        .collect();
    let ours: Vec<u32> = bnb::NF4.iter().map(|v| v.to_bits()).collect();
    assert_eq!(ours, bits);
}

#[test]
fn blockwise_8bit_codes_are_bitsandbytes_own() {
    let v = vectors();
    let b = &v["blockwise"];
    let (codes, absmax) = bnb::quantize_blockwise(
        &f32s(&b["x"]),
        &bnb::dynamic_map(),
        b["blocksize"].as_u64().unwrap() as usize,
    );
    assert_eq!(absmax, f32s(&b["absmax"]));
    assert_eq!(codes, u8s(&b["codes"]));
}
