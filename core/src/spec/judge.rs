//! `[judge]`: the refusal judge (a preset or a custom keyword list), the target judge and the
//! degeneracy thresholds.

use std::path::Path;

use super::raw::RawJudge;
use super::resolve;
use super::types::{JudgeConfig, JudgeModel, RefusalJudgeSpec, KEYWORD_JUDGE};
use crate::error::FieldError;
use crate::judge::{ClassifierKind, KeywordJudge, MatchMode, Preset};

/// The validated `[judge]` section.
pub(super) fn parse_judge(
    raw: &RawJudge,
    dir: &Path,
    file: &Path,
) -> Result<JudgeConfig, FieldError> {
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
    let mut models: Vec<JudgeModel> = Vec::with_capacity(raw.models.len());
    for (i, m) in raw.models.iter().enumerate() {
        let field = |f: &str| format!("judge.models[{i}].{f}");
        let name = m.name.trim();
        if name.is_empty() || name == KEYWORD_JUDGE || models.iter().any(|o| o.name == name) {
            return Err(at(FieldError::new(
                field("name"),
                &m.name,
                format!("a judge model needs a unique name other than `{KEYWORD_JUDGE}`"),
            )));
        }
        if m.path.as_os_str().is_empty() {
            return Err(at(FieldError::new(
                field("path"),
                "",
                "judge model path is empty",
            )));
        }
        let kind: ClassifierKind = m
            .kind
            .parse()
            .map_err(|e: String| at(FieldError::new(field("kind"), &m.kind, e)))?;
        let max_new_tokens = m.max_new_tokens.unwrap_or(kind.default_max_new_tokens());
        if max_new_tokens == 0 {
            return Err(at(FieldError::new(
                field("max_new_tokens"),
                "0",
                "must be at least 1",
            )));
        }
        models.push(JudgeModel {
            name: name.to_string(),
            path: resolve(dir, &m.path),
            kind,
            chat_template: m.chat_template.as_deref().map(|p| resolve(dir, p)),
            max_new_tokens,
        });
    }
    let primary = raw
        .primary
        .clone()
        .unwrap_or_else(|| KEYWORD_JUDGE.to_string());
    if primary != KEYWORD_JUDGE && !models.iter().any(|m| m.name == primary) {
        return Err(at(FieldError::new(
            "judge.primary",
            &primary,
            format!("not `{KEYWORD_JUDGE}` nor the name of a judge model"),
        )));
    }
    let judge = JudgeConfig {
        refusal,
        target: raw.target.unwrap_or_default(),
        degenerate,
        models,
        labels: raw.labels.as_deref().map(|p| resolve(dir, p)),
        primary,
    };
    Ok(judge)
}
