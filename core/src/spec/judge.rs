//! `[judge]`: the refusal judge (a preset or a custom keyword list), the target judge and the
//! degeneracy thresholds.

use std::path::Path;

use super::raw::RawJudge;
use super::types::{JudgeConfig, RefusalJudgeSpec};
use crate::error::FieldError;
use crate::judge::{KeywordJudge, MatchMode, Preset};

/// The validated `[judge]` section.
pub(super) fn parse_judge(raw: &RawJudge, file: &Path) -> Result<JudgeConfig, FieldError> {
    let at = |e: FieldError| e.in_file(file);
    let refusal = match (&raw.refusal, &raw.keywords) {
        (Some(r), Some(_)) => {
            return Err(at(FieldError::new(
                "judge.keywords",
                r,
                "give either a refusal preset or a custom keyword list, not both",
            )))
        }
        (Some(r), None) => {
            if raw.case_sensitive.is_some() || raw.match_mode.is_some() {
                return Err(at(FieldError::new(
                    "judge.case_sensitive",
                    r,
                    "case_sensitive and match apply to custom keyword lists; a preset keeps its source's rule",
                )));
            }
            Some(RefusalJudgeSpec::Preset {
                preset: Preset::parse(r, "judge.refusal").map_err(at)?,
            })
        }
        (None, Some(k)) => {
            let case_sensitive = raw.case_sensitive.unwrap_or(false);
            let mode = raw.match_mode.unwrap_or(MatchMode::Anywhere);
            KeywordJudge::new("custom", k, case_sensitive, mode).map_err(at)?;
            Some(RefusalJudgeSpec::Custom {
                keywords: k.clone(),
                case_sensitive,
                mode,
            })
        }
        (None, None) => None,
    };
    let degenerate = raw.degenerate.unwrap_or_default();
    if degenerate.ngram == 0 || !(0.0..=1.0).contains(&degenerate.max_repeated_fraction) {
        return Err(at(FieldError::new(
            "judge.degenerate",
            format!(
                "ngram = {}, max_repeated_fraction = {}",
                degenerate.ngram, degenerate.max_repeated_fraction
            ),
            "ngram must be at least 1 and max_repeated_fraction in [0, 1]",
        )));
    }
    if degenerate.max_logprob_drop.is_nan() || degenerate.max_logprob_drop <= 0.0 {
        return Err(at(FieldError::new(
            "judge.degenerate.max_logprob_drop",
            degenerate.max_logprob_drop.to_string(),
            "must be a positive number of nats",
        )));
    }
    let judge = JudgeConfig {
        refusal,
        target: raw.target.unwrap_or_default(),
        degenerate,
    };
    Ok(judge)
}
