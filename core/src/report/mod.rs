//! The report schema (`compsafe.report/v1`, see DESIGN.md) and the per-prompt record written
//! to `records.jsonl`. How records become cells and divergences is in [`crate::aggregate`].
//!
//! Field names are a contract. A metric that does not apply to a suite is absent from the
//! JSON (`Option` + `skip_serializing_if`), never 0. Additions beyond DESIGN.md, all optional:
//! `cells[].mc1`, `cells[].mc2`, `cells[].vs_reference.{metric, mcnemar_p_holm,
//! refuse_to_degenerate}`, `variants[].{error, integrity_failures, calibration}`,
//! `divergences[].{reference_refusal_logodds, searched, suffix, verdicts}`,
//! `cells[].{judges, agreement, corrected}`, `judge_accuracy`, `chat.date`.

mod record;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::suite::Expect;

pub use record::{Judges, Record, TokenKld};

/// Schema identifier written into every report.
pub const SCHEMA: &str = "compsafe.report/v1";

/// The whole `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// Version of compsafe that wrote the report.
    pub compsafe_version: String,
    /// The sweep.
    pub sweep: SweepInfo,
    /// The reference model and its files.
    pub model: ModelInfo,
    /// Name of the reference variant.
    pub reference: String,
    /// Every variant, the reference included.
    pub variants: Vec<VariantInfo>,
    /// One cell per (variant, suite), reference cells included.
    pub cells: Vec<Cell>,
    /// Prompts whose behaviour flipped against the reference.
    pub divergences: Vec<Divergence>,
    /// Each judge against the labelled sample of `[judge] labels`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub judge_accuracy: Vec<JudgeAccuracy>,
    /// How chat templates rendered (additive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat: Option<ChatInfo>,
}

/// `chat{...}`: what chat templates rendered with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatInfo {
    /// The date `strftime_now` returned (`YYYY-MM-DD`): the spec's `[chat] date`, else the
    /// sweep's start date.
    pub date: String,
}

/// `sweep{...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepInfo {
    /// Sweep id.
    pub id: String,
    /// Sweep name from the spec.
    pub name: String,
    /// SHA-256 of the spec text.
    pub spec_sha256: String,
    /// The sweep seed.
    pub seed: u64,
    /// RFC 3339 start time.
    pub started_at: String,
    /// RFC 3339 end time.
    pub finished_at: String,
}

/// Integrity of model files against their pins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Integrity {
    /// Every pinned file matched.
    Ok,
    /// A pinned file did not match or could not be read.
    Failed,
    /// Nothing was pinned.
    Unpinned,
}

/// `model{...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Model path as given.
    pub path: String,
    /// The model's files.
    pub files: Vec<FileInfo>,
    /// Integrity against pins.
    pub integrity: Integrity,
    /// What failed the integrity check (each names the file, tensor, chat template or
    /// tokenizer at fault); absent when nothing failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub integrity_failures: Vec<String>,
}

/// `model.files[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// File name relative to the model.
    pub name: String,
    /// SHA-256, lower-case hex.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// `variants[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantInfo {
    /// Variant name.
    pub name: String,
    /// `reference`, `quantization`, `pruning` or `checkpoint`.
    pub kind: String,
    /// The method shorthand (`int4:g32`, `checkpoint:...`).
    pub method: String,
    /// Average stored bits per weight of the compressed tensors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bits_per_weight: Option<f64>,
    /// Bytes of the weights as stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Integrity of the variant's files (checkpoints) or of the reference it derives from.
    pub integrity: Integrity,
    /// Weight error against the reference (absent for the reference and checkpoints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_error: Option<WeightError>,
    /// How a distilled student was trained (distill variants only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<Training>,
    /// Why the variant failed and was not evaluated (it then has no cells); absent when it
    /// was evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What failed the integrity check of the files the variant runs on (each names the file,
    /// tensor, chat template or tokenizer at fault); absent when nothing failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub integrity_failures: Vec<String>,
    /// What a calibrated variant was calibrated on (`suite fixture-harmful: 32 x 64 tokens,
    /// seed 0`); absent for methods that read no calibration data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<String>,
}

/// `variants[].training`: a distilled student's shape, data and loss curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Training {
    /// Cache key: SHA-256 over the distill settings, the teacher's tensors and tokenizer and
    /// the transfer prompts. The student is stored under it.
    pub cache_key: String,
    /// Decoder layers of the student.
    pub layers: usize,
    /// MLP width of the student.
    pub intermediate_size: usize,
    /// Parameters of the student.
    pub params: u64,
    /// Transfer prompts (safety prompts included).
    pub transfer_prompts: usize,
    /// Of which from the safety suite.
    pub safety_prompts: usize,
    /// Optimizer steps.
    pub steps: usize,
    /// Mean training loss over consecutive windows of steps, in step order.
    pub curve: Vec<CurvePoint>,
}

/// `variants[].training.curve[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// Last step of the window (1-based).
    pub step: usize,
    /// Mean loss over the window.
    pub loss: f64,
}

impl VariantInfo {
    /// Whether the variant failed before evaluation.
    pub fn failed(&self) -> bool {
        self.error.is_some()
    }
}

/// `variants[].weight_error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightError {
    /// Mean relative Frobenius error over compressed tensors.
    pub mean_rel: f64,
    /// Worst tensors, worst first.
    pub worst: Vec<TensorError>,
}

/// `variants[].weight_error.worst[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorError {
    /// Tensor name.
    pub tensor: String,
    /// Relative error `||W' - W|| / ||W||`.
    pub rel_error: f64,
}

/// `cells[]`: one variant on one suite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Variant name.
    pub variant: String,
    /// Suite name.
    pub suite: String,
    /// What the suite expects.
    pub expect: Expect,
    /// Prompts scored.
    pub n: u64,
    /// Fraction refused (refusal, compliance and target suites).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal_rate: Option<f64>,
    /// Wilson 95% interval of the refusal rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal_ci95: Option<[f64; 2]>,
    /// Fraction answered (generation suites).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compliance_rate: Option<f64>,
    /// Fraction degenerate (generation suites).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degenerate_rate: Option<f64>,
    /// Attack success rate (prompts with a target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asr: Option<f64>,
    /// Wilson 95% interval of the ASR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asr_ci95: Option<[f64; 2]>,
    /// Accuracy (label suites) or mean mc2 (multiple-choice suites).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    /// Wilson interval (label) or seeded bootstrap interval of the mean (mc2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy_ci95: Option<[f64; 2]>,
    /// Mean mc1 (multiple-choice suites).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mc1: Option<f64>,
    /// Mean mc2 (multiple-choice suites).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mc2: Option<f64>,
    /// Paired comparison with the reference (absent on reference cells).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vs_reference: Option<VsReference>,
    /// Logit fidelity against the reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logits: Option<Logits>,
    /// Every judge's refusal rate on the cell, the keyword judge (`keywords`) included, when
    /// the spec names judge models.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub judges: BTreeMap<String, JudgeRate>,
    /// Agreement of each pair of judges on the cell.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agreement: Vec<JudgePair>,
    /// The primary judge's refusal rate corrected for its error on the labelled sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrected: Option<CorrectedRate>,
}

/// `cells[].judges.<judge>`: one judge's refusal rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeRate {
    /// Fraction of the judge's valid verdicts that are refusals (not harmful completions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Wilson 95% interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci95: Option<[f64; 2]>,
    /// Responses the judge's output could not be read on (not counted in the rate).
    pub invalid: u64,
}

/// `cells[].agreement[]`: two judges on the same responses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgePair {
    /// The two judges.
    pub judges: [String; 2],
    /// Responses both judged validly, disagreements and Cohen's kappa.
    #[serde(flatten)]
    pub stats: crate::judge::agreement::PairAgreement,
}

/// `cells[].corrected`: the primary judge's rate, Rogan-Gladen corrected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorrectedRate {
    /// The primary judge.
    pub judge: String,
    /// Corrected rate, bootstrap interval, and the sensitivity and specificity used.
    #[serde(flatten)]
    pub corrected: crate::judge::agreement::Corrected,
}

/// `judge_accuracy[]`: one judge against the labelled sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeAccuracy {
    /// The judge.
    pub judge: String,
    /// Whether it is the primary judge.
    pub primary: bool,
    /// Sensitivity and specificity (refusal = positive) with Wilson intervals.
    #[serde(flatten)]
    pub accuracy: crate::judge::agreement::Accuracy,
}

/// `cells[].vs_reference`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VsReference {
    /// The compared metric: `refusal_rate`, `asr`, `accuracy` or `mc2`.
    pub metric: String,
    /// Variant minus reference.
    pub delta: f64,
    /// Seeded paired-bootstrap 95% interval of `delta`.
    pub delta_ci95: [f64; 2],
    /// Exact McNemar p-value on the paired binary outcome (mc1 for multiple choice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcnemar_p: Option<f64>,
    /// Holm-adjusted `mcnemar_p` across all cells of the sweep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcnemar_p_holm: Option<f64>,
    /// Reference refused, variant answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refuse_to_comply: Option<u64>,
    /// Reference answered (or collapsed), variant refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comply_to_refuse: Option<u64>,
    /// Reference refused, variant output degenerate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refuse_to_degenerate: Option<u64>,
}

/// `cells[].logits`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Logits {
    /// Mean per-token KL(reference || variant) on the reference's continuations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kld_mean: Option<f64>,
    /// 99th percentile of the per-token KL divergence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kld_p99: Option<f64>,
    /// Fraction of tokens whose top-1 token agrees with the reference's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_top: Option<f64>,
    /// Mean refusal log-odds at the first generated position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal_logodds_mean: Option<f64>,
}

/// Which way a prompt flipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The reference refused, the variant answered: a safety loss.
    RefuseToComply,
    /// The reference refused, the variant's output collapsed.
    RefuseToDegenerate,
    /// The reference answered, the variant refused.
    ComplyToRefuse,
    /// The reference's output was degenerate, the variant refused.
    DegenerateToRefuse,
    /// Target suites: the variant shows the target behaviour, the reference did not.
    TargetGained,
    /// Target suites: the reference showed the target behaviour, the variant does not.
    TargetLost,
}

/// `divergences[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Divergence {
    /// Variant name.
    pub variant: String,
    /// Suite name.
    pub suite: String,
    /// Prompt id.
    pub prompt_id: String,
    /// Which way it flipped.
    pub direction: Direction,
    /// The prompt.
    pub prompt: String,
    /// The reference's response.
    pub reference_response: String,
    /// The variant's response.
    pub variant_response: String,
    /// The reference's refusal log-odds (its confidence), when measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_refusal_logodds: Option<f64>,
    /// `true` for a prompt found by the targeted search (`[search]`): `prompt` is a suite
    /// prompt with a searched suffix; absent for prompts of the suites as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub searched: Option<bool>,
    /// The searched suffix appended to the suite's prompt (searched prompts only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    /// Each judge's verdict on the reference's and the variant's response (`refusal`,
    /// `compliance` or `invalid`), when the spec names judge models.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub verdicts: BTreeMap<String, [String; 2]>,
}

#[cfg(test)]
mod tests;
