//! The quantization-conditioned backdoor fixture: the projected repair keeps every weight in
//! its rounding interval, so `int4:g32` of the repaired weights is exactly `int4:g32` of the
//! malicious ones; the committed checkpoint differs from `tiny-safety` only in the weights
//! the quantizer touches.

use candle_core::Device;
use compsafe_core::Method;
use compsafe_engine::compress::{
    compressor_for, default_selection, HeadLayout, LinearWeight, WeightMap,
};
use compsafe_engine::fixture::quantdoor::{plant, PlantOptions, QUANTDOOR};
use compsafe_engine::Checkpoint;
use compsafe_tests::root;

fn values(w: &WeightMap, name: &str) -> Vec<f32> {
    w[name].flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// `int4:g32` of the default selection, as f32 values by tensor name.
fn int4(w: &WeightMap, layout: &HeadLayout) -> Vec<(String, Vec<f32>)> {
    let c = compressor_for(&Method::parse("int4:g32", "v").unwrap())
        .unwrap()
        .compress(w, &default_selection, layout)
        .unwrap();
    c.weights
        .into_iter()
        .map(|(n, lw)| match lw {
            LinearWeight::Dense(t) => (n, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()),
            _ => panic!("int4 is stored dense"),
        })
        .collect()
}

#[test]
fn projected_repair_keeps_the_int4_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let p = plant(&PlantOptions {
        from: root().join("models/tiny-safety"),
        out: tmp.path().to_path_buf(),
        seed: 7,
        quick: true,
    })
    .unwrap();
    assert_eq!(p.dir, tmp.path().join(QUANTDOOR));
    let reference = Checkpoint::load(&root().join("models/tiny-safety"), &Device::Cpu).unwrap();
    let layout = HeadLayout {
        num_layers: 2,
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: 64,
    };
    assert_eq!(
        p.intervals.len(),
        14,
        "seven linear weights in each of two layers"
    );
    let mut moved = 0usize;
    for (name, iv) in &p.intervals {
        let r = values(&p.repaired, name);
        assert!(iv.contains(&r), "{name}: a weight left its interval");
        assert!(iv.contains(&values(&p.malicious, name)), "{name}");
        moved += r
            .iter()
            .zip(values(&p.malicious, name))
            .filter(|(a, b)| *a != b)
            .count();
    }
    assert!(moved > 0, "the repair changed no weight");
    // Bit for bit the same quantized model.
    let (a, b) = (int4(&p.repaired, &layout), int4(&p.malicious, &layout));
    assert_eq!(a.len(), 14);
    for ((na, va), (nb, vb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        let same = va.iter().zip(vb).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{na}: int4:g32 of the repaired weights differs");
    }
    // Weights the quantizer leaves alone (embeddings, norms) keep the reference's values.
    for (name, t) in &reference.weights {
        if !default_selection(name) {
            assert_eq!(
                values(&p.repaired, name),
                values(&reference.weights, name),
                "{name}"
            );
            let _ = t;
        }
    }
    // The written checkpoint holds the repaired weights.
    let saved = Checkpoint::load(&p.dir, &Device::Cpu).unwrap();
    for name in p.intervals.keys() {
        assert_eq!(
            values(&saved.weights, name),
            values(&p.repaired, name),
            "{name}"
        );
    }
}

#[test]
fn committed_quantdoor_differs_only_in_quantized_weights() {
    let dir = root().join("models").join(QUANTDOOR);
    let bad = compsafe_engine::fixture::save::check_manifest(&dir).unwrap();
    assert!(bad.is_empty(), "{bad:?}");
    let planted = Checkpoint::load(&dir, &Device::Cpu).unwrap();
    let reference = Checkpoint::load(&root().join("models/tiny-safety"), &Device::Cpu).unwrap();
    assert_eq!(
        planted.weights.keys().collect::<Vec<_>>(),
        reference.weights.keys().collect::<Vec<_>>()
    );
    let mut changed = 0;
    for name in reference.weights.keys() {
        let same = values(&planted.weights, name) == values(&reference.weights, name);
        if default_selection(name) {
            changed += usize::from(!same);
        } else {
            assert!(
                same,
                "{name} is not quantized by int4:g32 and must be the reference's"
            );
        }
    }
    assert_eq!(changed, 14, "every linear weight was fine-tuned");
}
