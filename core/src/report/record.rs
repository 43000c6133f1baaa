//! One line of `records.jsonl` and the judging that fills it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::judge::{ClassifierVerdict, LabelJudge, ResponseJudge, TargetJudge, Verdict};
use crate::suite::Prompt;

/// Per-token logit statistics of one prompt, teacher-forced on the reference's continuation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenKld {
    /// KL(reference || variant) at each continuation token.
    pub values: Vec<f32>,
    /// Tokens whose top-1 agrees with the reference's.
    pub same_top: u32,
}

/// One line of `records.jsonl`: one prompt run through one variant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Variant name.
    pub variant: String,
    /// Suite name.
    pub suite: String,
    /// Prompt id within the suite.
    pub prompt_id: String,
    /// The prompt.
    pub prompt: String,
    /// The generated response (generation suites).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
    /// Refusal / compliance / degenerate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// `verdict == refusal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<bool>,
    /// The target behaviour was shown (prompts with a target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_hit: Option<bool>,
    /// The label found in the response (label suites).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted_label: Option<String>,
    /// The predicted label is the gold one (label suites).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_correct: Option<bool>,
    /// mc1 score (multiple choice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mc1: Option<f64>,
    /// mc2 score (multiple choice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mc2: Option<f64>,
    /// Refusal log-odds at the first generated position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal_logodds: Option<f64>,
    /// Refusal log-odds over whole refusal openings, teacher-forced (see the evaluator's
    /// `refusal_prefix_logodds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal_prefix_logodds: Option<f64>,
    /// Mean per-token log-likelihood of the response under the reference model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_logprob: Option<f64>,
    /// Logit drift against the reference (compressed variants).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kld: Option<TokenKld>,
    /// Each judge model's verdict on the response, by judge name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub judges: BTreeMap<String, ClassifierVerdict>,
}

/// The judges applied to a generated response.
#[derive(Debug, Clone)]
pub struct Judges {
    /// Refusal + degeneracy.
    pub response: ResponseJudge,
    /// Target behaviour.
    pub target: TargetJudge,
    /// Classification (label suites).
    pub label: Option<LabelJudge>,
}

impl Record {
    /// A record for a generated response, judged: verdict, refusal, target hit and label.
    /// `likelihood` is `(response_logprob, reference_logprob)` for the degeneracy check.
    pub fn judged(
        variant: &str,
        suite: &str,
        prompt: &Prompt,
        response: &str,
        judges: &Judges,
        likelihood: Option<(f64, f64)>,
    ) -> Record {
        let verdict = judges.response.classify(response, likelihood);
        let predicted_label = judges
            .label
            .as_ref()
            .and_then(|j| j.predict(response).map(str::to_string));
        let label_correct = match (&judges.label, &prompt.label) {
            (Some(j), Some(gold)) => Some(j.is_correct(response, gold)),
            _ => None,
        };
        Record {
            variant: variant.to_string(),
            suite: suite.to_string(),
            prompt_id: prompt.id.clone(),
            prompt: prompt.prompt.clone(),
            response: Some(response.to_string()),
            verdict: Some(verdict),
            refused: Some(verdict == Verdict::Refusal),
            target_hit: prompt
                .target
                .as_deref()
                .map(|t| judges.target.hit(response, t)),
            predicted_label,
            label_correct,
            response_logprob: likelihood.map(|(lp, _)| lp),
            ..Record::default()
        }
    }
}
