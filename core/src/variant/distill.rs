//! Safety-aware knowledge distillation's parameters.

use serde::{Deserialize, Serialize};

/// How a distilled student starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StudentInit {
    /// Embeddings, final norm and evenly spaced decoder layers copied from the teacher.
    Teacher,
    /// Fresh N(0, 0.02) weights.
    Random,
}

/// A `distill` variant: the student's shape, the transfer data and the loss of
/// safety-aware knowledge distillation, `w * (alpha * T^2 * KL(teacher_T || student_T) +
/// (1 - alpha) * CE(hard label))` per answer token, with `w = safety_weight` on the safety
/// suite's prompts and 1 elsewhere. Hard labels are the teacher's own greedy answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistillSpec {
    /// Bundled suite whose prompts form the transfer set.
    pub prompts: String,
    /// Bundled suite of safety prompts, added to the transfer set and up-weighted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety: Option<String>,
    /// Prompts taken from each suite (its first N; all when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Softmax temperature of both distributions.
    pub temperature: f64,
    /// Weight of the distillation term; `1 - alpha` weighs the hard-label term.
    pub alpha: f64,
    /// Multiplier of both terms on safety prompts.
    pub safety_weight: f64,
    /// Optimizer steps.
    pub steps: usize,
    /// Sequences per step.
    pub batch: usize,
    /// Peak learning rate (AdamW, linear warmup over the first tenth, cosine decay to 10%).
    pub lr: f64,
    /// Decoder layers of the student (default: half the teacher's, rounded up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<usize>,
    /// MLP width of the student (default: the teacher's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intermediate_size: Option<usize>,
    /// Initialisation.
    pub init: StudentInit,
    /// Seed of initialisation and batch order.
    pub seed: u64,
    /// Longest teacher answer generated for the transfer set, in tokens.
    pub max_new_tokens: usize,
}

impl Default for DistillSpec {
    fn default() -> Self {
        DistillSpec {
            prompts: String::new(),
            safety: None,
            limit: None,
            temperature: 2.0,
            alpha: 0.5,
            safety_weight: 1.0,
            steps: 300,
            batch: 24,
            lr: 1e-3,
            layers: None,
            intermediate_size: None,
            init: StudentInit::Teacher,
            seed: 0,
            max_new_tokens: 48,
        }
    }
}

impl DistillSpec {
    /// Checks the numeric fields; the error names the field (relative to the distill table).
    pub fn check(&self) -> Result<(), (&'static str, String, &'static str)> {
        let f = |x: f64| x.to_string();
        if self.prompts.trim().is_empty() {
            return Err(("prompts", self.prompts.clone(), "name a bundled suite"));
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(("temperature", f(self.temperature), "must be positive"));
        }
        if !(0.0..=1.0).contains(&self.alpha) {
            return Err(("alpha", f(self.alpha), "must be in [0, 1]"));
        }
        if !(self.safety_weight.is_finite() && self.safety_weight >= 0.0) {
            return Err(("safety_weight", f(self.safety_weight), "must be 0 or more"));
        }
        if self.steps == 0 {
            return Err(("steps", "0".into(), "must be at least 1"));
        }
        if self.batch == 0 {
            return Err(("batch", "0".into(), "must be at least 1"));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(("lr", f(self.lr), "must be positive"));
        }
        if self.layers == Some(0) {
            return Err(("layers", "0".into(), "must be at least 1"));
        }
        if self.intermediate_size == Some(0) {
            return Err(("intermediate_size", "0".into(), "must be at least 1"));
        }
        if self.limit == Some(0) {
            return Err(("limit", "0".into(), "must be at least 1"));
        }
        if self.max_new_tokens == 0 {
            return Err(("max_new_tokens", "0".into(), "must be at least 1"));
        }
        Ok(())
    }
}
