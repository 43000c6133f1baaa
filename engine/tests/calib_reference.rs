//! Calibrated compressors against llm-compressor: given the same calibration tokens on the
//! same tiny Llama, compsafe's weights agree with the library's tensor by tensor (fixtures
//! written by tools/reference/make_calib_fixtures.py).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use compsafe_engine::calib::{calibrate, CalibTokens, LayerCompressor};
use compsafe_engine::compress::awq::{Awq, AwqParams};
use compsafe_engine::compress::gptq::{Gptq, GptqParams};
use compsafe_engine::compress::sparsegpt::{SparseGpt, Sparsity};
use compsafe_engine::compress::wanda::Wanda;
use compsafe_engine::compress::{default_selection, Compressed, LinearWeight};
use compsafe_engine::Checkpoint;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/calib")
}

fn model() -> Checkpoint {
    Checkpoint::load(&dir().join("model"), &Device::Cpu).unwrap()
}

fn tokens() -> CalibTokens {
    let text = std::fs::read_to_string(dir().join("tokens.json")).unwrap();
    CalibTokens {
        seqs: serde_json::from_str(&text).unwrap(),
    }
}

fn reference(variant: &str) -> BTreeMap<String, Tensor> {
    let path = dir().join(format!("{variant}.safetensors"));
    candle_core::safetensors::load(&path, &Device::Cpu)
        .unwrap()
        .into_iter()
        .collect()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}

/// The library's quantized weight: `(code - zero) * scale`, computed as it computes it (codes
/// are stored as `code + 128` in u8).
fn dequant(r: &BTreeMap<String, Tensor>, name: &str) -> Vec<f32> {
    let codes = values(&r[&format!("{name}.codes")]);
    let scale = &r[&format!("{name}.scale")];
    let zero = values(&r[&format!("{name}.zero")]);
    let (rows, groups) = scale.dims2().unwrap();
    let scale = values(scale);
    let cols = codes.len() / rows;
    let g = cols / groups;
    (0..rows * cols)
        .map(|i| {
            let (row, col) = (i / cols, i % cols);
            let k = row * groups + col / g;
            (codes[i] - 128.0 - zero[k]) * scale[k]
        })
        .collect()
}

fn ours(c: &Compressed, name: &str) -> Vec<f32> {
    match &c.weights[name] {
        LinearWeight::Dense(t) => values(t),
        _ => panic!("{name} is not dense"),
    }
}

fn rel(a: &[f32], b: &[f32]) -> f64 {
    let (mut d, mut n) = (0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        d += f64::from(x - y).powi(2);
        n += f64::from(*y).powi(2);
    }
    (d / n).sqrt()
}

fn run(compressor: &dyn LayerCompressor) -> Compressed {
    calibrate(&model(), &tokens(), 1, compressor, &default_selection).unwrap()
}

/// How closely a variant must agree with the library.
#[derive(Debug, Clone, Copy)]
enum Agree {
    /// Every weight bit-identical.
    Exact,
    /// Float summation order differs (the inverse Hessian comes from another factorisation):
    /// a weight within about 1e-5 of a rounding boundary may round the other way, and GPTQ
    /// carries that difference along the rest of its row and into the next layer's inputs.
    /// Bounds: the fraction of differing weights in layer 0 (same inputs) and anywhere.
    Flips { layer0: f64, any: f64 },
}

/// Per tensor: relative difference of the weights and the fraction of weights that differ.
fn compare_quantized(variant: &str, c: &Compressed, agree: Agree) {
    let r = reference(variant);
    for name in c.weights.keys() {
        let want = dequant(&r, name);
        let got = ours(c, name);
        let d = rel(&got, &want);
        let differ = got.iter().zip(&want).filter(|(a, b)| a != b).count();
        let frac = differ as f64 / want.len() as f64;
        eprintln!(
            "{variant} {name}: rel diff {d:.3e}, {differ} of {} weights differ",
            want.len()
        );
        match agree {
            Agree::Exact => assert_eq!(differ, 0, "{variant} {name}: rel diff {d:.3e}"),
            Agree::Flips { layer0, any } => {
                let bound = if name.starts_with("model.layers.0.") {
                    layer0
                } else {
                    any
                };
                assert!(
                    frac <= bound,
                    "{variant} {name}: {frac:.2e} of weights differ"
                );
            }
        }
    }
    assert_eq!(c.weights.len(), 14, "{variant}: every linear quantized");
}

fn gptq(bits: u8, group: Option<usize>, symmetric: bool, act_order: bool) -> Gptq {
    Gptq {
        params: GptqParams {
            bits,
            group,
            symmetric,
            act_order,
            ..GptqParams::default()
        },
        keep_zero: false,
    }
}

#[test]
fn gptq_w4g128_matches_llm_compressor() {
    compare_quantized(
        "gptq_w4g128",
        &run(&gptq(4, Some(128), true, false)),
        Agree::Exact,
    );
}

#[test]
fn gptq_act_order_matches_llm_compressor() {
    // Measured: 5 of 32,768 weights of layer 0's down_proj differ, then 0.15-2% of layer 1's.
    compare_quantized(
        "gptq_w4g128_act",
        &run(&gptq(4, Some(128), true, true)),
        Agree::Flips {
            layer0: 1e-3,
            any: 0.05,
        },
    );
}

#[test]
fn gptq_asymmetric_three_bit_matches_llm_compressor() {
    compare_quantized(
        "gptq_w3g64_asym",
        &run(&gptq(3, Some(64), false, false)),
        Agree::Exact,
    );
}

#[test]
fn gptq_eight_bit_per_channel_matches_llm_compressor() {
    compare_quantized("gptq_w8", &run(&gptq(8, None, true, false)), Agree::Exact);
}

fn sparsegpt(sparsity: Sparsity) -> SparseGpt {
    SparseGpt {
        sparsity,
        damp: 0.01,
        block: 128,
    }
}

/// Pruned weights: relative difference per tensor and disagreement of the masks.
fn compare_pruned(variant: &str, c: &Compressed, want: impl Fn(&str) -> Vec<f32>, tol: f64) {
    let mut worst = 0f64;
    for name in c.weights.keys() {
        let want = want(name);
        let got = ours(c, name);
        let d = rel(&got, &want);
        let masks = got
            .iter()
            .zip(&want)
            .filter(|(a, b)| (**a == 0.0) != (**b == 0.0))
            .count();
        let zeros = got.iter().filter(|v| **v == 0.0).count();
        eprintln!(
            "{variant} {name}: rel diff {d:.3e}, masks differ at {masks} of {} ({zeros} zeros)",
            want.len()
        );
        worst = worst.max(d);
    }
    assert_eq!(c.weights.len(), 14, "{variant}: every linear pruned");
    assert!(
        worst < tol,
        "{variant}: worst relative difference {worst:.3e}"
    );
}

#[test]
fn sparsegpt_matches_llm_compressor() {
    for (variant, sp) in [
        ("sparsegpt_0.5", Sparsity::Fraction(0.5)),
        ("sparsegpt_2of4", Sparsity::NofM { n: 2, m: 4 }),
    ] {
        let r = reference(variant);
        compare_pruned(variant, &run(&sparsegpt(sp)), |n| values(&r[n]), 1e-3);
    }
}

#[test]
fn wanda_matches_llm_compressor() {
    let reference_weights = model().weights;
    for (variant, sp) in [
        ("wanda_0.5", Sparsity::Fraction(0.5)),
        ("wanda_2of4", Sparsity::NofM { n: 2, m: 4 }),
    ] {
        let r = reference(variant);
        let want = |n: &str| {
            let kept = values(&r[&format!("{n}.kept")]);
            values(&reference_weights[n])
                .iter()
                .zip(kept)
                .map(|(w, k)| if k == 1.0 { *w } else { 0.0 })
                .collect()
        };
        compare_pruned(variant, &run(&Wanda { sparsity: sp }), want, 1e-3);
    }
}

#[test]
fn awq_chooses_llm_compressors_scales() {
    let awq = Awq::new(AwqParams {
        bits: 4,
        group: Some(128),
        symmetric: false,
        grid: 20,
    });
    let c = run(&awq);
    let r = reference("awq_w4g128");
    let choices = awq.choices.lock().unwrap().clone();
    assert_eq!(
        choices.len(),
        6,
        "three mappings per layer (no v->o under GQA)"
    );
    for ch in &choices {
        let want: Vec<f64> = r[&format!("{}.awq_scales", ch.smooth)]
            .to_dtype(DType::F64)
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let worst = ch
            .scales
            .iter()
            .zip(&want)
            .map(|(a, b)| ((a - b) / b).abs())
            .fold(0f64, f64::max);
        eprintln!(
            "awq {}: ratio {} (duo {}), scales within {worst:.2e} relative",
            ch.smooth, ch.ratio, ch.duo
        );
        assert!(worst < 1e-5, "{}: scales differ by {worst:.2e}", ch.smooth);
    }
    for l in 0..2 {
        for n in ["input_layernorm", "post_attention_layernorm"] {
            let name = format!("model.layers.{l}.{n}.weight");
            let d = rel(&ours(&c, &name), &values(&r[&name]));
            eprintln!("awq {name}: rel diff {d:.3e}");
            assert!(d < 1e-5, "{name}: {d:.3e}");
        }
    }
    let linears: Vec<String> = c
        .weights
        .keys()
        .filter(|n| !n.contains("norm"))
        .cloned()
        .collect();
    for name in &linears {
        let want = dequant(&r, name);
        let got = ours(&c, name);
        let differ = got.iter().zip(&want).filter(|(a, b)| a != b).count();
        let d = rel(&got, &want);
        eprintln!(
            "awq {name}: rel diff {d:.3e}, {differ} of {} differ in the last bits",
            want.len()
        );
        // The scales agree to ~1e-7, so scaled weights and grids differ in their last bits;
        // one weight rounded to another code would alone move a tensor by ~1e-3.
        assert!(d < 1e-5, "{name}: rel diff {d:.3e}");
    }
}

/// SmoothQuant: the same smoothing scales up to the activations' last bits (compsafe's
/// RMSNorm output differs from transformers' by float rounding, ~1e-7 relative, which moves
/// each channel's range as much); int8 codes equal in layer 0, and in layer 1, whose inputs
/// carry that difference through a whole layer, a few weights near a rounding boundary take
/// the neighbouring code.
#[test]
fn smoothquant_matches_llm_compressor() {
    use compsafe_engine::compress::smoothquant::SmoothQuant;
    use compsafe_engine::formats::packed::{Codes, CtCodes};
    let c = run(&SmoothQuant { alpha: 0.5 });
    let r = reference("smoothquant_w8a8");
    let mut worst_norm = 0f64;
    for l in 0..2 {
        for n in ["input_layernorm", "post_attention_layernorm"] {
            let name = format!("model.layers.{l}.{n}.weight");
            worst_norm = worst_norm.max(rel(&ours(&c, &name), &values(&r[&name])));
        }
    }
    let (mut flips0, mut flips, mut total, mut worst_scale) = (0usize, 0usize, 0usize, 0f64);
    for (name, w) in &c.weights {
        let LinearWeight::Packed(p) = w else { continue };
        let Codes::CtInt {
            scales,
            codes: CtCodes::Int8(codes),
            ..
        } = &p.codes
        else {
            panic!("{name}: not int8")
        };
        let lib_s = values(&r[&format!("{name}.scale")]);
        worst_scale = worst_scale.max(rel(scales, &lib_s));
        let lib_w = values(&r[name]);
        let cols = p.in_features;
        let differ = codes
            .iter()
            .enumerate()
            .filter(|&(i, &q)| f32::from(q) != (lib_w[i] / lib_s[i / cols]).round())
            .count();
        if name.starts_with("model.layers.0.") {
            flips0 += differ;
        }
        flips += differ;
        total += codes.len();
    }
    eprintln!(
        "smoothquant: norm weights within {worst_norm:.2e}, row scales within \
         {worst_scale:.2e}; {flips0} codes differ in layer 0, {flips} of {total} in all"
    );
    assert_eq!(c.weights.len(), 14 + 4);
    assert!(
        worst_norm < 1e-6 && worst_scale < 1e-6,
        "{worst_norm} {worst_scale}"
    );
    assert_eq!(flips0, 0);
    assert!(flips * 1000 < total, "{flips} of {total}");
}

/// `fp8+kv:fp8`: the per-layer key and value scales (calibrated with the FP8 weights in
/// place) against llm-compressor's `kv_cache_scheme` (float8, per tensor, static). Not
/// identical: the scales agree within 3.3e-2 relative (layer 1 keys within 4e-5), and which
/// observations the library's moving average takes in its sequential pipeline (and in what
/// order) has not been reproduced exactly; the bound records the measured agreement.
#[test]
fn kv_cache_scales_match_llm_compressor() {
    use compsafe_core::calibrated::KvQuant as KvType;
    use compsafe_engine::compress::{compressor_for, HeadLayout};
    use compsafe_engine::Model;
    let m = model();
    let c = &m.config;
    let layout = HeadLayout {
        num_layers: c.num_layers,
        num_heads: c.num_heads,
        num_kv_heads: c.num_kv_heads,
        head_dim: c.head_dim,
    };
    let fp8 = compressor_for(&compsafe_core::Method::parse("fp8", "v").unwrap())
        .unwrap()
        .compress(&m.weights, &default_selection, &layout)
        .unwrap();
    let with_weights = Model::with_variant(&m, &fp8).unwrap();
    let q = compsafe_engine::calib::kv::scales(&with_weights, &tokens(), 1, KvType::Fp8).unwrap();
    let r = reference("kv_fp8");
    let mut worst = 0f64;
    for l in 0..2 {
        for (what, ours) in [("k_scale", q.k_scales[l]), ("v_scale", q.v_scales[l])] {
            let lib = values(&r[&format!("model.layers.{l}.self_attn.{what}")])[0];
            let e = f64::from((ours - lib).abs() / lib);
            eprintln!("layer {l} {what}: {ours} vs {lib} ({e:.2e})");
            worst = worst.max(e);
        }
    }
    assert!(worst < 5e-2, "{worst}");
}
