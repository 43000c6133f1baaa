use super::*;

fn layout() -> HeadLayout {
    HeadLayout {
        num_layers: 1,
        num_heads: 1,
        num_kv_heads: 1,
        head_dim: 4,
    }
}

fn seeded(rows: usize, cols: usize) -> Tensor {
    // A small deterministic LCG, values in [-1, 1).
    let mut x = 0x2545_f491_u64;
    let v: Vec<f32> = (0..rows * cols)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    Tensor::from_vec(v, (rows, cols), &Device::Cpu).unwrap()
}

#[test]
fn fallback_follows_llama_cpp() {
    assert_eq!(storage_for(GgufType::Q4K, 4096), GgmlType::Q4K);
    assert_eq!(storage_for(GgufType::Q2K, 64), GgmlType::Q4_0);
    assert_eq!(storage_for(GgufType::Q3K, 64), GgmlType::Q4_0);
    assert_eq!(storage_for(GgufType::Q4K, 64), GgmlType::Q5_0);
    assert_eq!(storage_for(GgufType::Q5K, 64), GgmlType::Q5_1);
    assert_eq!(storage_for(GgufType::Q6K, 64), GgmlType::Q8_0);
    assert_eq!(storage_for(GgufType::Q8K, 96), GgmlType::Q8_0);
    assert_eq!(storage_for(GgufType::IQ4XS, 96), GgmlType::IQ4NL);
    assert_eq!(storage_for(GgufType::Q6K, 48), GgmlType::F16);
    assert_eq!(storage_for(GgufType::Q8_0, 48), GgmlType::F16);
    assert_eq!(storage_for(GgufType::Q8_0, 32), GgmlType::Q8_0);
}

#[test]
fn every_writable_type_quantizes_and_reports_its_storage() {
    let mut weights = WeightMap::new();
    weights.insert("wide".into(), seeded(4, 512));
    weights.insert("narrow".into(), seeded(4, 64));
    weights.insert("odd".into(), seeded(4, 48));
    for ty in GgufType::ALL {
        let g = GgmlType::of(ty);
        if !g.can_quantize() || g.requires_imatrix() {
            continue;
        }
        let c = Gguf::new(ty)
            .compress(&weights, &|_| true, &layout())
            .unwrap();
        let wide = c.stat("wide").unwrap();
        match (&c.weights["wide"], g.candle()) {
            (LinearWeight::Quantized(q), Some(dt)) => {
                assert_eq!(q.dtype(), dt);
                assert_eq!(q.shape().dims(), &[4, 512]);
            }
            (LinearWeight::Blocks(b), None) => assert_eq!(b.dims(), (4, 512)),
            _ => panic!("{ty:?}: wrong storage"),
        }
        assert_eq!(wide.bits_per_weight, ty.bits_per_weight(), "{ty:?}");
        assert_eq!(wide.bytes, (2048 / ty.block_size() * ty.type_size()) as u64);
        assert!(wide.note.is_none());
        assert!(
            wide.rel_error > 0.0 && wide.rel_error < 0.7,
            "{ty:?} {}",
            wide.rel_error
        );
        if ty.bits_per_weight() >= 8.0 {
            assert!(wide.rel_error < 0.01, "{ty:?} {}", wide.rel_error);
        }
        let narrow = c.stat("narrow").unwrap();
        let expect = storage_for(ty, 64);
        assert_eq!(narrow.bits_per_weight, expect.bits_per_weight());
        assert_eq!(narrow.note.is_some(), expect != g, "{ty:?}");
        let odd = c.stat("odd").unwrap();
        let LinearWeight::Dense(t) = &c.weights["odd"] else {
            panic!("{ty:?} odd must stay dense f16")
        };
        assert_eq!(t.dtype(), DType::F16);
        assert_eq!(odd.bits_per_weight, 16.0);
        assert!(odd.note.as_deref().unwrap().contains("f16"));
    }
}

#[test]
fn block_matmul_agrees_with_the_dequantized_weight() {
    for ty in [GgufType::Q4K, GgufType::IQ4XS, GgufType::TQ2_0] {
        let mut weights = WeightMap::new();
        weights.insert("w".into(), seeded(8, 256));
        let c = Gguf::new(ty)
            .compress(&weights, &|_| true, &layout())
            .unwrap();
        let x = seeded(3, 256);
        let lin =
            crate::linear::Linear::from_weight(c.weights["w"].clone(), None, DType::F32).unwrap();
        let y = lin.forward(&x, false).unwrap();
        let deq = match &c.weights["w"] {
            LinearWeight::Quantized(q) => q.dequantize(&Device::Cpu).unwrap(),
            LinearWeight::Blocks(b) => b.to_tensor(&Device::Cpu).unwrap(),
            _ => panic!("{ty:?}: a block weight was expected"),
        };
        let y_ref = x.matmul(&deq.t().unwrap()).unwrap();
        let diff = (y - &y_ref)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let scale = y_ref
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        // Both paths quantize the activations (Q8_K) as llama.cpp does, hence the tolerance.
        let tol = 0.02;
        assert!(diff < tol * scale, "{ty:?}: {diff} vs {scale}");
    }
}

#[test]
fn rejects_non_matrices() {
    let mut weights = WeightMap::new();
    weights.insert(
        "norm".into(),
        Tensor::ones(64, DType::F32, &Device::Cpu).unwrap(),
    );
    let e = Gguf::new(GgufType::Q8_0)
        .compress(&weights, &|_| true, &layout())
        .unwrap_err();
    assert!(e.to_string().contains("`norm`"), "{e}");
}

#[test]
fn a_recipe_quantizes_the_whole_model_with_a_tied_output() {
    let mut weights = WeightMap::new();
    weights.insert("model.embed_tokens.weight".into(), seeded(64, 256));
    weights.insert(
        "model.norm.weight".into(),
        Tensor::ones(256, DType::F32, &Device::Cpu).unwrap(),
    );
    for (n, r, c) in [
        ("self_attn.q_proj", 256, 256),
        ("self_attn.k_proj", 128, 256),
        ("self_attn.v_proj", 128, 256),
        ("self_attn.o_proj", 256, 256),
        ("mlp.gate_proj", 512, 256),
        ("mlp.up_proj", 512, 256),
        ("mlp.down_proj", 256, 512),
    ] {
        weights.insert(format!("model.layers.0.{n}.weight"), seeded(r, c));
    }
    let layout = HeadLayout {
        num_layers: 1,
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: 64,
    };
    let c = GgufRecipe::new(GgufFtype::Q4KM, false, None)
        .compress(&weights, &|_| true, &layout)
        .unwrap();
    let ty_of = |n: &str| c.stat(n).unwrap().note.clone().unwrap();
    assert!(ty_of("model.embed_tokens.weight").ends_with("q6_K"));
    assert!(ty_of("model.layers.0.self_attn.v_proj.weight").ends_with("q6_K"));
    assert!(ty_of("model.layers.0.mlp.down_proj.weight").ends_with("q6_K"));
    assert!(ty_of("model.layers.0.self_attn.q_proj.weight").ends_with("q4_K"));
    assert!(matches!(
        c.weights["model.embed_tokens.weight"],
        LinearWeight::Dense(_)
    ));
    assert!(matches!(
        c.weights["lm_head.weight"],
        LinearWeight::Quantized(_)
    ));
    assert!(c.stat("model.norm.weight").is_none());
}
