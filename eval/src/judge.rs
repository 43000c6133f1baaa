//! Judge units: a judge model (any checkpoint the engine loads) reads responses and gives a
//! classifier verdict, with the prompt, decoding and parsing its kind fixes
//! ([`compsafe_core::judge::classifier`]). Decoding is greedy.

use std::path::{Path, PathBuf};

use candle_core::Device;
use compsafe_core::aggregate::judges::{JudgeOutput, JudgedResponse};
use compsafe_core::judge::classifier::harmbench::{self, Flavor, CLIP_TOKENS};
use compsafe_core::judge::classifier::{llama_guard, strongreject};
use compsafe_core::judge::{ClassifierKind, ClassifierVerdict};
use compsafe_core::report::Record;
use compsafe_core::spec::{JudgeModel, Validated};
use compsafe_core::unit::{UnitSpec, LABELS_GROUP};
use compsafe_engine::{
    generate, ChatMessage, Checkpoint, EngineError, GenerateOptions, Model, TextCodec,
};

use crate::unit::UnitError;

/// A loaded judge model.
#[derive(Debug)]
pub struct LoadedJudge {
    /// Where it was loaded from.
    pub path: PathBuf,
    codec: TextCodec,
    model: Model,
    eos: Vec<u32>,
}

impl LoadedJudge {
    /// Loads the judge's checkpoint, tokenizer and chat template.
    pub fn load(m: &JudgeModel, device: &Device) -> Result<LoadedJudge, EngineError> {
        let ckpt = Checkpoint::load(&m.path, device)?;
        let codec = match &ckpt.gguf_metadata {
            Some(meta) => TextCodec::from_gguf(&m.path, meta)?,
            None => TextCodec::from_hf_dir(&m.path, m.chat_template.as_deref())?,
        };
        let model = Model::new(&ckpt)?;
        let mut eos = codec.eos_ids.clone();
        eos.extend(&ckpt.config.eos_token_ids);
        eos.sort_unstable();
        eos.dedup();
        Ok(LoadedJudge {
            path: m.path.clone(),
            codec,
            model,
            eos,
        })
    }

    fn clip(&self, response: &str) -> Result<String, EngineError> {
        harmbench_clip(&self.codec, response)
    }

    /// The judge's input tokens for one (behaviour, response).
    fn input(
        &self,
        kind: ClassifierKind,
        behavior: &str,
        response: &str,
    ) -> Result<Vec<u32>, EngineError> {
        match kind {
            ClassifierKind::HarmbenchCls | ClassifierKind::HarmbenchMistralCls => {
                let flavor = if kind == ClassifierKind::HarmbenchCls {
                    Flavor::Llama2
                } else {
                    Flavor::Mistral
                };
                let text = harmbench::prompt(flavor, behavior, &self.clip(response)?, None);
                self.codec.encode(&text, true)
            }
            ClassifierKind::LlamaGuard3 | ClassifierKind::LlamaGuard3_1b => {
                // apply_chat_template(conversation): no generation prompt (the template ends
                // with the assistant header itself), tokens without added special tokens.
                let text = self.codec.render_chat(
                    &[
                        ChatMessage::user(behavior),
                        ChatMessage::assistant(response),
                    ],
                    false,
                )?;
                self.codec.encode(&text, false)
            }
            ClassifierKind::Strongreject => {
                let (system, user) = strongreject::messages(behavior, response);
                self.codec
                    .encode_chat(&[ChatMessage::system(system), ChatMessage::user(user)])
            }
        }
    }

    /// Verdicts on `(behaviour, response)` pairs.
    pub fn judge(
        &self,
        m: &JudgeModel,
        items: &[(&str, &str)],
        batch_tokens: usize,
    ) -> Result<Vec<ClassifierVerdict>, UnitError> {
        if m.kind == ClassifierKind::LlamaGuard3_1b {
            return Err(UnitError::input(format!(
                "judge {}: llama-guard-3-1b passes message content as a list of text parts, which the chat renderer does not pass yet; use llama-guard-3 with an 8B checkpoint",
                m.name
            )));
        }
        let ids: Vec<Vec<u32>> = items
            .iter()
            .map(|(b, r)| self.input(m.kind, b, r))
            .collect::<Result<_, _>>()?;
        let longest = ids.iter().map(Vec::len).max().unwrap_or(0);
        let opts = GenerateOptions {
            max_new_tokens: m.max_new_tokens,
            batch_tokens: batch_tokens.max(longest + m.max_new_tokens),
            max_batch: 64,
            eos: self.eos.clone(),
        };
        let gens = generate(&self.model, &ids, &opts, None)?;
        gens.iter()
            .map(|g| {
                let text = self.codec.decode(&g.tokens, true)?;
                Ok(match m.kind {
                    ClassifierKind::HarmbenchCls | ClassifierKind::HarmbenchMistralCls => {
                        harmbench::parse(&text)
                    }
                    ClassifierKind::LlamaGuard3 => llama_guard::parse(&text, false),
                    ClassifierKind::LlamaGuard3_1b => llama_guard::parse(&text, true),
                    ClassifierKind::Strongreject => strongreject::parse(&text),
                })
            })
            .collect::<Result<_, EngineError>>()
            .map_err(UnitError::from)
    }
}

/// HarmBench's clipping: the first [`CLIP_TOKENS`] tokens of the response as the
/// classifier's tokenizer encodes it (special tokens included, as `encode` adds them),
/// decoded without special tokens.
pub fn harmbench_clip(codec: &TextCodec, response: &str) -> Result<String, EngineError> {
    let mut ids = codec.encode(response, true)?;
    ids.truncate(CLIP_TOKENS);
    codec.decode(&ids, true)
}

/// Loads `m` unless `held` already holds it.
pub fn ensure_loaded<'a>(
    held: &'a mut Option<LoadedJudge>,
    m: &JudgeModel,
    device: &Device,
) -> Result<&'a LoadedJudge, UnitError> {
    if held.as_ref().map(|j| j.path.as_path()) != Some(Path::new(&m.path)) {
        *held = None;
        tracing::info!(judge = %m.name, model = %m.path.display(), "loading judge model");
        *held = Some(LoadedJudge::load(m, device)?);
    }
    Ok(held.as_ref().expect("loaded above"))
}

/// Runs one judge unit: the judge model on a suite's records (its inputs), or on the
/// labelled sample.
pub fn run(judge: &LoadedJudge, v: &Validated, u: &UnitSpec) -> Result<JudgeOutput, UnitError> {
    let m = v.spec.judge.models.get(u.variant).ok_or_else(|| {
        UnitError::input(format!("unit {}: no judge model {}", u.unit_id, u.variant))
    })?;
    let budget = v.spec.generation.batch_tokens as usize;
    if u.group == LABELS_GROUP as usize {
        let items: Vec<(&str, &str)> = v
            .labels
            .iter()
            .map(|l| (l.prompt.as_str(), l.response.as_str()))
            .collect();
        return Ok(JudgeOutput {
            judge: m.name.clone(),
            verdicts: Vec::new(),
            labels: judge.judge(m, &items, budget)?,
        });
    }
    let mut records: Vec<Record> = Vec::new();
    for input in &u.inputs {
        let part: Vec<Record> = serde_json::from_value(input.clone()).map_err(|e| {
            UnitError::input(format!(
                "unit {}: records sent to a judge unit: {e}",
                u.unit_id
            ))
        })?;
        records.extend(part);
    }
    records.retain(|r| r.response.is_some());
    let items: Vec<(&str, &str)> = records
        .iter()
        .map(|r| (r.prompt.as_str(), r.response.as_deref().unwrap_or("")))
        .collect();
    let verdicts = judge.judge(m, &items, budget)?;
    Ok(JudgeOutput {
        judge: m.name.clone(),
        verdicts: records
            .iter()
            .zip(verdicts)
            .map(|(r, verdict)| JudgedResponse {
                variant: r.variant.clone(),
                suite: r.suite.clone(),
                prompt_id: r.prompt_id.clone(),
                verdict,
            })
            .collect(),
        labels: Vec::new(),
    })
}
