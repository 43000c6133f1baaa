//! Tensor surgery as compressors: layer and channel ablation, and weight noise, through
//! `variant::derive` on the fixture model like any variant.

use candle_core::{Device, Tensor, D};
use compsafe_core::Variant;
use compsafe_engine::compress::LinearWeight;
use compsafe_engine::variant::{compress, derive};
use compsafe_engine::{Checkpoint, Model};

fn fixture() -> Checkpoint {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tiny-safety");
    Checkpoint::load(&dir, &Device::Cpu).unwrap()
}

fn values(w: &LinearWeight) -> Vec<Vec<f32>> {
    match w {
        LinearWeight::Dense(t) => t.to_vec2::<f32>().unwrap(),
        _ => panic!("expected a dense tensor"),
    }
}

#[test]
fn ablating_every_layer_leaves_the_embedding_alone_in_the_residual_stream() {
    let ckpt = fixture();
    let layers = ckpt.config.num_layers;
    let all: Vec<String> = (0..layers).map(|l| l.to_string()).collect();
    let v = Variant::parse(&format!("ablate:layer:{}", all.join(",")), "v").unwrap();
    let d = derive(&ckpt, &v, &Device::Cpu).unwrap();
    assert_eq!(d.compressed_stats.len(), 2 * layers);
    let ids = Tensor::new(&[[3u32, 17, 42, 5]], &Device::Cpu).unwrap();
    let logits = d.model.forward_logits(&ids).unwrap();
    // With every layer's attention and MLP output zeroed, the final hidden state is
    // norm(embedding): compute it by hand.
    let embed = &ckpt.weights["model.embed_tokens.weight"];
    let x = embed.index_select(&ids.flatten_all().unwrap(), 0).unwrap();
    let norm = &ckpt.weights["model.norm.weight"];
    let eps = ckpt.config.rms_norm_eps;
    let ms = x.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
    let h = x
        .broadcast_div(&(ms + eps).unwrap().sqrt().unwrap())
        .unwrap()
        .broadcast_mul(norm)
        .unwrap();
    let head = ckpt.weights.get("lm_head.weight").unwrap_or(embed).clone();
    let want = h.matmul(&head.t().unwrap()).unwrap();
    let got = logits.squeeze(0).unwrap();
    let diff = (got - want)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(diff < 1e-4, "max |logit difference| {diff}");
    // The reference itself differs from this: the ablation changed the function.
    let r = Model::new(&ckpt).unwrap().forward_logits(&ids).unwrap();
    let gap = (r.squeeze(0).unwrap() - logits.squeeze(0).unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(gap > 1e-2, "{gap}");
}

#[test]
fn channel_ablation_zeroes_exactly_the_block_columns() {
    let ckpt = fixture();
    let v = Variant::parse("ablate:mlp:1:8-24", "v").unwrap();
    let c = compress(&ckpt, &v).unwrap();
    assert_eq!(c.weights.len(), 1);
    let name = "model.layers.1.mlp.down_proj.weight";
    let got = values(&c.weights[name]);
    let reference = ckpt.weights[name].to_vec2::<f32>().unwrap();
    for (row, want) in got.iter().zip(&reference) {
        for (j, (&g, &w)) in row.iter().zip(want).enumerate() {
            if (8..24).contains(&j) {
                assert_eq!(g, 0.0);
            } else {
                assert_eq!(g, w);
            }
        }
    }
    let too_wide = Variant::parse("ablate:mlp:1:8-100000", "v").unwrap();
    let e = compress(&ckpt, &too_wide).unwrap_err().to_string();
    assert!(e.contains("channels 8..100000"), "{e}");
    let bad_layer = Variant::parse("ablate:layer:99", "v").unwrap();
    let e = compress(&ckpt, &bad_layer).unwrap_err().to_string();
    assert!(e.contains("layer 99"), "{e}");
}

#[test]
fn noise_is_seeded_and_scaled_to_each_tensor() {
    let ckpt = fixture();
    let a = compress(&ckpt, &Variant::parse("noise:0.05:s11", "v").unwrap()).unwrap();
    let b = compress(&ckpt, &Variant::parse("noise:0.05:s11", "v").unwrap()).unwrap();
    let other = compress(&ckpt, &Variant::parse("noise:0.05:s12", "v").unwrap()).unwrap();
    // The default selection: the seven linear weights of every layer.
    assert_eq!(a.weights.len(), 7 * ckpt.config.num_layers);
    for (name, w) in &a.weights {
        let (x, y, z) = (
            values(w),
            values(&b.weights[name]),
            values(&other.weights[name]),
        );
        assert_eq!(x, y, "{name}: same seed, same draw");
        assert_ne!(x, z, "{name}: another seed, another draw");
        let r: Vec<f32> = ckpt.weights[name].flatten_all().unwrap().to_vec1().unwrap();
        let e: Vec<f64> = x
            .iter()
            .flatten()
            .zip(&r)
            .map(|(n, w)| f64::from(n - w))
            .collect();
        let n = r.len() as f64;
        let mean = r.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let std = (r
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n)
            .sqrt();
        let e_std = (e.iter().map(|v| v * v).sum::<f64>() / n).sqrt();
        assert!(
            (e_std / (0.05 * std) - 1.0).abs() < 0.1,
            "{name}: noise std {e_std} vs 0.05 x weight std {std}"
        );
    }
}
