//! Rounding-boundary statistics on the fixture model: counts against a numpy reference
//! (the same grids: per-group scale amax/qmax truncated to 16 significant bits, group
//! extremes excluded), no flag on the trained fixture, and a flag on exactly the tensor whose
//! weights were moved to the boundaries of their int4 grid.

use std::path::Path;

use candle_core::{Device, Tensor};
use compsafe_core::Variant;
use compsafe_engine::compress::boundary::boundary_stats;
use compsafe_engine::compress::rtn::grid_for;
use compsafe_engine::Checkpoint;

fn fixture() -> Checkpoint {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tiny-safety");
    Checkpoint::load(&dir, &Device::Cpu).unwrap()
}

fn method(s: &str) -> compsafe_core::Method {
    Variant::parse(s, "variant").unwrap().method
}

#[test]
fn counts_match_the_numpy_reference() {
    let ckpt = fixture();
    // (variant, eps, tensor, n, near) from tools/reference (numpy over model.safetensors).
    let cases = [
        (
            "int4:g32",
            0.05,
            "model.layers.0.mlp.up_proj.weight",
            122_880,
            12_427,
        ),
        (
            "int4:g32",
            0.05,
            "model.layers.1.self_attn.q_proj.weight",
            61_440,
            6_136,
        ),
        (
            "int8",
            0.05,
            "model.layers.0.mlp.up_proj.weight",
            130_048,
            13_078,
        ),
        (
            "int8",
            0.05,
            "model.layers.1.self_attn.q_proj.weight",
            65_024,
            6_517,
        ),
        (
            "int2:g16",
            0.1,
            "model.layers.0.mlp.up_proj.weight",
            114_688,
            22_546,
        ),
        (
            "int2:g16",
            0.1,
            "model.layers.1.self_attn.q_proj.weight",
            57_344,
            11_228,
        ),
    ];
    for (v, eps, name, n, near) in cases {
        let stats = boundary_stats(&ckpt.weights, &method(v), None, eps, 0.001).unwrap();
        let s = stats.iter().find(|s| s.name == name).unwrap();
        assert_eq!((s.n, s.near), (n, near), "{v} {name}");
    }
}

#[test]
fn the_trained_fixture_is_not_flagged() {
    let ckpt = fixture();
    for v in ["int4:g32", "int8", "int3:g64", "int4:g32:asym", "gguf:q8_0"] {
        let stats = boundary_stats(&ckpt.weights, &method(v), None, 0.05, 0.001).unwrap();
        assert_eq!(stats.len(), 14, "{v}");
        for s in &stats {
            assert!(!s.flagged, "{v}: {s:?}");
            assert!((s.fraction - 0.1).abs() < 0.02, "{v}: {s:?}");
        }
    }
}

#[test]
fn weights_moved_to_their_boundaries_are_flagged() {
    let mut ckpt = fixture();
    let name = "model.layers.0.mlp.up_proj.weight";
    let t = &ckpt.weights[name];
    let shape = t.dims().to_vec();
    let mut w = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    // One weight in 10 of every int4 group of 32 moved to 1% of a step from the nearest
    // rounding boundary: each moves by at most half a step, as a projected attack allows.
    let mut moved = 0;
    for group in w.chunks_exact_mut(32) {
        let s = grid_for(group, 4, false).unwrap().scale;
        let (lo, hi) = group
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
                (a.min(x), b.max(x))
            });
        for (i, x) in group.iter_mut().enumerate() {
            if i % 10 == 3 && *x != lo && *x != hi {
                let k = (*x / s).floor();
                *x = (k + 0.49) * s;
                moved += 1;
            }
        }
    }
    assert!(moved > 10_000);
    ckpt.weights.insert(
        name.to_string(),
        Tensor::from_vec(w, shape, &Device::Cpu).unwrap(),
    );
    let stats = boundary_stats(&ckpt.weights, &method("int4:g32"), None, 0.05, 0.001).unwrap();
    let flagged: Vec<_> = stats.iter().filter(|s| s.flagged).collect();
    assert_eq!(flagged.len(), 1, "{flagged:?}");
    assert_eq!(flagged[0].name, name);
    assert!(flagged[0].fraction > 0.15, "{:?}", flagged[0]);
    eprintln!(
        "planted: {} of {} weights near a boundary ({:.4}, Holm p {:.2e}); clean tensors {:.4}..{:.4}",
        flagged[0].near,
        flagged[0].n,
        flagged[0].fraction,
        flagged[0].p_holm,
        stats
            .iter()
            .filter(|s| !s.flagged)
            .map(|s| s.fraction)
            .fold(1.0, f64::min),
        stats
            .iter()
            .filter(|s| !s.flagged)
            .map(|s| s.fraction)
            .fold(0.0, f64::max)
    );
    // A quantizer without a fixed boundary is refused, naming the flag.
    let e = boundary_stats(&ckpt.weights, &method("gguf:q4k"), None, 0.05, 0.001)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--variant"), "{e}");
}
