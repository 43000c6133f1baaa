//! Distilling a student from a loaded teacher (a `distill` variant): the student's shape and
//! initialisation, training on a transfer set of token sequences with the safety-aware
//! distillation loss, and saving the result in Hugging Face layout with a manifest.
//!
//! The loss per answer token is `w * (alpha * T² * KL(teacher_T || student_T) + (1 - alpha) *
//! CE)`, with `w = safety_weight` on safety sequences and 1 elsewhere; the hard labels are the
//! sequence's own answer tokens (the teacher's greedy answers when the worker builds the set).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::Optimizer;
use compsafe_core::{DistillSpec, StudentInit};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::compress::WeightMap;
use crate::config::ModelConfig;
use crate::error::{EngineError, Result};
use crate::fixture::distill::{distill_loss, DistillConfig};
use crate::fixture::train::{
    clip_grads, init_vars, loss_logits, optimizer, pack_batch, snapshot, training_model, Stage,
    VarMap,
};
use crate::loader::Checkpoint;
use crate::model::Model;

/// One transfer sequence: prompt (chat template applied) and answer tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferSeq {
    /// Prompt tokens.
    pub prompt: Vec<u32>,
    /// Answer tokens (the end-of-sequence token included when the answer ended).
    pub answer: Vec<u32>,
    /// Whether it comes from the safety suite (weighted by `safety_weight`).
    pub safety: bool,
}

/// Points of the reported loss curve.
pub const CURVE_POINTS: usize = 20;

/// A trained student.
#[derive(Debug)]
pub struct Student {
    /// Its configuration.
    pub config: ModelConfig,
    /// Its weights (f32).
    pub weights: WeightMap,
    /// Loss of every step.
    pub losses: Vec<f64>,
    /// Wall-clock seconds of training.
    pub seconds: f64,
}

/// What is saved beside a student (`training.json`) and reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingRecord {
    /// `compsafe.distill/v1`.
    pub format: String,
    /// The cache key the student is stored under.
    pub cache_key: String,
    /// The distillation settings.
    pub spec: DistillSpec,
    /// Decoder layers.
    pub layers: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Parameters.
    pub params: u64,
    /// Transfer sequences (safety included).
    pub transfer_prompts: usize,
    /// Of which safety sequences.
    pub safety_prompts: usize,
    /// `(last step of the window, mean loss)`, [`CURVE_POINTS`] windows at most.
    pub curve: Vec<(usize, f64)>,
    /// Wall-clock seconds of training.
    pub seconds: f64,
}

/// The file a student's training record is saved in.
pub const RECORD_FILE: &str = "training.json";
const FORMAT: &str = "compsafe.distill/v1";

/// The student's configuration: the teacher's with `layers` decoder layers (default half the
/// teacher's, rounded up) and the given MLP width (default the teacher's).
pub fn student_config(teacher: &ModelConfig, spec: &DistillSpec) -> Result<ModelConfig> {
    let layers = spec.layers.unwrap_or(teacher.num_layers.div_ceil(2));
    if layers > teacher.num_layers && spec.init == StudentInit::Teacher {
        return Err(EngineError::Invalid(format!(
            "distill: layers = {layers} is more than the teacher's {} (init = \"teacher\" copies its layers)",
            teacher.num_layers
        )));
    }
    let width = spec.intermediate_size.unwrap_or(teacher.intermediate_size);
    if width > teacher.intermediate_size && spec.init == StudentInit::Teacher {
        return Err(EngineError::Invalid(format!(
            "distill: intermediate_size = {width} is more than the teacher's {} (init = \"teacher\" copies its MLP channels)",
            teacher.intermediate_size
        )));
    }
    Ok(ModelConfig {
        num_layers: layers,
        intermediate_size: width,
        ..teacher.clone()
    })
}

/// Teacher layer a student layer starts from: evenly spaced, first and last kept.
pub fn source_layer(i: usize, student_layers: usize, teacher_layers: usize) -> usize {
    if student_layers <= 1 {
        return 0;
    }
    (i * (teacher_layers - 1) + (student_layers - 1) / 2) / (student_layers - 1)
}

/// Initial student weights: copied from the teacher (embeddings, final norm, evenly spaced
/// layers, the first `intermediate_size` MLP channels) or fresh.
pub fn init_student(
    teacher: &Checkpoint,
    cfg: &ModelConfig,
    init: StudentInit,
    seed: u64,
    device: &Device,
) -> Result<VarMap> {
    if init == StudentInit::Random {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        return init_vars(cfg, &mut rng, device);
    }
    let mut vars = VarMap::new();
    for (name, shape) in cfg.expected_shapes() {
        let source = match name.strip_prefix("model.layers.") {
            Some(rest) => {
                let (i, tail) = rest.split_once('.').ok_or_else(|| {
                    EngineError::Invalid(format!("unexpected tensor name `{name}`"))
                })?;
                let i: usize = i.parse().map_err(|_| {
                    EngineError::Invalid(format!("unexpected tensor name `{name}`"))
                })?;
                format!(
                    "model.layers.{}.{tail}",
                    source_layer(i, cfg.num_layers, teacher.config.num_layers)
                )
            }
            None => name.clone(),
        };
        let t = teacher.weights.get(&source).ok_or_else(|| {
            EngineError::Invalid(format!(
                "distill: the teacher has no tensor `{source}` to start `{name}` from"
            ))
        })?;
        let mut t = t.to_dtype(DType::F32)?.to_device(device)?;
        // Narrower MLP: the first channels.
        for (dim, want) in shape.iter().enumerate() {
            if t.dim(dim)? != *want {
                t = t.narrow(dim, 0, *want)?;
            }
        }
        vars.insert(
            name,
            candle_core::Var::from_tensor(&t.contiguous()?.copy()?)?,
        );
    }
    Ok(vars)
}

/// Trains a student of `cfg` from `teacher` on `seqs`.
pub fn train(
    teacher: &Model,
    teacher_ckpt: &Checkpoint,
    cfg: &ModelConfig,
    spec: &DistillSpec,
    seqs: &[TransferSeq],
) -> Result<Student> {
    if seqs.is_empty() {
        return Err(EngineError::Invalid(
            "distill: the transfer set is empty".into(),
        ));
    }
    let device = teacher.device().clone();
    let vars = init_student(teacher_ckpt, cfg, spec.init, spec.seed, &device)?;
    let student = training_model(cfg, &vars)?;
    let mut opt = optimizer(&vars, spec.lr)?;
    let stage = Stage {
        name: "distill",
        steps: spec.steps,
        batch: spec.batch,
        lr: spec.lr,
        warmup: (spec.steps / 10).max(1),
        final_frac: 0.1,
        mix: Vec::new(),
    };
    let dc = DistillConfig {
        temperature: spec.temperature,
        alpha: spec.alpha,
        safety_weight: spec.safety_weight,
    };
    let max_len = cfg.max_position_embeddings.clamp(2, 512) - 1;
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    rng.set_stream(1);
    let start = std::time::Instant::now();
    let mut losses = Vec::with_capacity(spec.steps);
    for step in 0..spec.steps {
        let picked: Vec<&TransferSeq> = (0..spec.batch)
            .map(|_| &seqs[rng.random_range(0..seqs.len())])
            .collect();
        let packed: Vec<(Vec<u32>, usize)> = picked
            .iter()
            .map(|s| {
                let mut full = s.prompt.clone();
                full.extend(&s.answer);
                (full, s.prompt.len())
            })
            .collect();
        let batch = pack_batch(
            &packed,
            picked.iter().map(|s| s.safety).collect(),
            max_len,
            0,
            &device,
        )?;
        if batch.is_empty() {
            continue;
        }
        let weights = batch.weights(spec.safety_weight as f32, &device)?;
        let teacher_logits = loss_logits(teacher, &batch)?.to_dtype(DType::F32)?.detach();
        let logits = loss_logits(&student, &batch)?;
        let loss = distill_loss(&logits, &teacher_logits, &batch.targets, &weights, &dc)?;
        let value = f64::from(loss.to_scalar::<f32>()?);
        if !value.is_finite() {
            return Err(EngineError::Invalid(format!(
                "distill: the loss is {value} at step {step} (lower lr?)"
            )));
        }
        let mut grads = loss.backward()?;
        clip_grads(&mut grads, &vars, 1.0)?;
        opt.set_learning_rate(stage.lr_at(step));
        opt.step(&grads)?;
        losses.push(value);
        if step % 25 == 0 || step + 1 == spec.steps {
            tracing::info!(step, loss = value, "distill");
        }
    }
    Ok(Student {
        config: cfg.clone(),
        weights: snapshot(&vars)?,
        losses,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// `(last step of the window, mean loss)` over at most `points` equal windows.
pub fn curve(losses: &[f64], points: usize) -> Vec<(usize, f64)> {
    if losses.is_empty() || points == 0 {
        return Vec::new();
    }
    let window = losses.len().div_ceil(points);
    losses
        .chunks(window)
        .enumerate()
        .map(|(i, c)| {
            (
                (i * window + c.len()),
                c.iter().sum::<f64>() / c.len() as f64,
            )
        })
        .collect()
}

/// The cache key of a student: SHA-256 over the settings, the teacher's file digests (names
/// and SHA-256) and every transfer sequence's tokens and flag.
pub fn cache_key(
    spec: &DistillSpec,
    teacher_files: &[(String, String)],
    seqs: &[TransferSeq],
) -> String {
    let mut h = Sha256::new();
    h.update(FORMAT.as_bytes());
    h.update(serde_json::to_string(spec).unwrap_or_default().as_bytes());
    for (name, sha) in teacher_files {
        h.update(name.as_bytes());
        h.update([0]);
        h.update(sha.as_bytes());
        h.update([0]);
    }
    for s in seqs {
        h.update((s.prompt.len() as u64).to_le_bytes());
        for t in &s.prompt {
            h.update(t.to_le_bytes());
        }
        h.update((s.answer.len() as u64).to_le_bytes());
        for t in &s.answer {
            h.update(t.to_le_bytes());
        }
        h.update([u8::from(s.safety)]);
    }
    hex::encode(h.finalize())
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> EngineError + '_ {
    move |source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Files copied from the teacher's directory when present.
const COPIED: [&str; 6] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "generation_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "chat_template.json",
];

/// Saves `student` in Hugging Face layout into `dir`: the teacher's config.json with the
/// student's depth and width, model.safetensors (f32), the teacher's tokenizer and template
/// files, `training.json`, and a `MANIFEST.json` over all of them.
pub fn save_student(
    dir: &Path,
    teacher_dir: &Path,
    student: &Student,
    record: &TrainingRecord,
) -> Result<PathBuf> {
    if !teacher_dir.is_dir() {
        return Err(EngineError::Invalid(format!(
            "distill: the teacher {} is not a Hugging Face directory",
            teacher_dir.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let cfg_path = teacher_dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(io(&cfg_path))?;
    let mut config: Value =
        serde_json::from_str(&text).map_err(|e| EngineError::bad_file(&cfg_path, e.to_string()))?;
    config["num_hidden_layers"] = student.config.num_layers.into();
    config["intermediate_size"] = student.config.intermediate_size.into();
    config["torch_dtype"] = "float32".into();
    let out = dir.join("config.json");
    std::fs::write(
        &out,
        serde_json::to_string_pretty(&config).unwrap_or_default() + "\n",
    )
    .map_err(io(&out))?;
    let out = dir.join("model.safetensors");
    std::fs::write(
        &out,
        crate::fixture::save::safetensors_bytes(&student.weights)?,
    )
    .map_err(io(&out))?;
    for f in COPIED {
        let src = teacher_dir.join(f);
        if src.is_file() {
            let dst = dir.join(f);
            std::fs::copy(&src, &dst).map_err(io(&dst))?;
        }
    }
    let out = dir.join(RECORD_FILE);
    std::fs::write(
        &out,
        serde_json::to_string_pretty(record).unwrap_or_default() + "\n",
    )
    .map_err(io(&out))?;
    let manifest = crate::manifest::create(dir)?;
    let out = dir.join("MANIFEST.json");
    std::fs::write(&out, crate::manifest::render(&manifest)).map_err(io(&out))?;
    Ok(dir.to_path_buf())
}

/// Reads a saved student's training record.
pub fn load_record(dir: &Path) -> Result<TrainingRecord> {
    let path = dir.join(RECORD_FILE);
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    serde_json::from_str(&text).map_err(|e| EngineError::bad_file(&path, e.to_string()))
}

/// The training record of a freshly trained student.
pub fn record(
    key: &str,
    spec: &DistillSpec,
    student: &Student,
    seqs: &[TransferSeq],
) -> TrainingRecord {
    TrainingRecord {
        format: FORMAT.to_string(),
        cache_key: key.to_string(),
        spec: spec.clone(),
        layers: student.config.num_layers,
        intermediate_size: student.config.intermediate_size,
        params: student
            .weights
            .values()
            .map(|t| t.elem_count() as u64)
            .sum(),
        transfer_prompts: seqs.len(),
        safety_prompts: seqs.iter().filter(|s| s.safety).count(),
        curve: curve(&student.losses, CURVE_POINTS),
        seconds: student.seconds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_are_evenly_spaced() {
        assert_eq!(source_layer(0, 1, 2), 0);
        let six_of_twelve: Vec<usize> = (0..6).map(|i| source_layer(i, 6, 12)).collect();
        assert_eq!(six_of_twelve, [0, 2, 4, 7, 9, 11]);
        let two_of_two: Vec<usize> = (0..2).map(|i| source_layer(i, 2, 2)).collect();
        assert_eq!(two_of_two, [0, 1]);
    }

    #[test]
    fn curve_windows_cover_every_step() {
        let losses: Vec<f64> = (0..45).map(f64::from).collect();
        let c = curve(&losses, 20);
        assert_eq!(c.len(), 15);
        assert_eq!(c[0], (3, 1.0));
        assert_eq!(c.last().unwrap().0, 45);
        assert_eq!(curve(&losses[..5], 20).len(), 5);
    }
}
