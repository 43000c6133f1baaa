//! The distillation student: its initialisation copies the teacher (evenly spaced layers, the
//! first MLP channels), and a student equal to its teacher has zero distillation loss.

use std::path::Path;

use candle_core::{Device, Tensor};
use compsafe_core::{DistillSpec, StudentInit};
use compsafe_engine::distill::{init_student, student_config};
use compsafe_engine::fixture::distill::{distill_loss, DistillConfig};
use compsafe_engine::fixture::train::{loss_logits, pack_batch, training_model};
use compsafe_engine::{Checkpoint, Model};

fn teacher() -> Checkpoint {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tiny-safety");
    Checkpoint::load(&dir, &Device::Cpu).unwrap()
}

fn same(a: &Tensor, b: &Tensor) -> bool {
    let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    a == b
}

#[test]
fn teacher_init_copies_layers_and_channels() {
    let t = teacher();
    let spec = DistillSpec {
        prompts: "x".into(),
        layers: Some(1),
        intermediate_size: Some(128),
        ..DistillSpec::default()
    };
    let cfg = student_config(&t.config, &spec).unwrap();
    assert_eq!((cfg.num_layers, cfg.intermediate_size), (1, 128));
    let vars = init_student(&t, &cfg, StudentInit::Teacher, 0, &Device::Cpu).unwrap();
    let v = |n: &str| vars[n].as_tensor().clone();
    let w = |n: &str| t.weights[n].clone();
    assert!(same(
        &v("model.embed_tokens.weight"),
        &w("model.embed_tokens.weight")
    ));
    assert!(same(&v("model.norm.weight"), &w("model.norm.weight")));
    assert!(same(
        &v("model.layers.0.self_attn.q_proj.weight"),
        &w("model.layers.0.self_attn.q_proj.weight")
    ));
    // The first 128 channels: rows of gate/up, columns of down.
    assert!(same(
        &v("model.layers.0.mlp.up_proj.weight"),
        &w("model.layers.0.mlp.up_proj.weight")
            .narrow(0, 0, 128)
            .unwrap()
    ));
    assert!(same(
        &v("model.layers.0.mlp.down_proj.weight"),
        &w("model.layers.0.mlp.down_proj.weight")
            .narrow(1, 0, 128)
            .unwrap()
    ));
    // A wider or deeper student cannot be copied from the teacher.
    let too_deep = DistillSpec {
        layers: Some(3),
        ..spec.clone()
    };
    assert!(student_config(&t.config, &too_deep).is_err());
}

#[test]
fn a_student_equal_to_its_teacher_has_zero_kl() {
    let t = teacher();
    let spec = DistillSpec {
        prompts: "x".into(),
        layers: Some(2),
        ..DistillSpec::default()
    };
    let cfg = student_config(&t.config, &spec).unwrap();
    let vars = init_student(&t, &cfg, StudentInit::Teacher, 0, &Device::Cpu).unwrap();
    let student = training_model(&cfg, &vars).unwrap();
    let teacher = Model::new(&t).unwrap();
    let seqs = vec![
        (vec![0, 3, 10, 11, 12, 4, 20, 21, 1], 6),
        (vec![0, 3, 30, 31, 4, 40, 41, 42, 43, 1], 5),
    ];
    let batch = pack_batch(&seqs, vec![false, true], 95, 0, &Device::Cpu).unwrap();
    assert_eq!(batch.len(), 3 + 5, "answer tokens predicted");
    let ts = loss_logits(&teacher, &batch).unwrap();
    let ss = loss_logits(&student, &batch).unwrap();
    let w = batch.weights(4.0, &Device::Cpu).unwrap();
    let kl_only = DistillConfig {
        temperature: 2.0,
        alpha: 1.0,
        safety_weight: 4.0,
    };
    let kl = distill_loss(&ss, &ts, &batch.targets, &w, &kl_only)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(kl.abs() < 1e-4, "KL {kl}");
    // The hard-label term is the weighted cross-entropy: positive.
    let ce_only = DistillConfig {
        alpha: 0.0,
        ..kl_only
    };
    let ce = distill_loss(&ss, &ts, &batch.targets, &w, &ce_only)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(ce > 0.1, "CE {ce}");
}
