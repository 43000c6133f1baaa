//! Text in and out: `tokenizer.json` through the `tokenizers` crate and the chat template
//! (from `tokenizer_config.json`, `chat_template.jinja`, GGUF metadata or an override file)
//! rendered with minijinja.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tokenizers::Tokenizer;

use crate::chat::{ChatOptions, ChatTemplate};
use crate::error::{EngineError, Result};
use crate::loader::GgufTokenizerMeta;

pub use crate::chat::ChatMessage;

/// Tokenizer plus chat template of one model.
#[derive(Debug, Clone)]
pub struct TextCodec {
    tokenizer: Tokenizer,
    template: Option<ChatTemplate>,
    template_source: PathBuf,
    /// The named special tokens a template sees (`bos_token`, `eos_token`, ...).
    special_tokens: BTreeMap<String, String>,
    chat_options: ChatOptions,
    /// Token ids that end generation.
    pub eos_ids: Vec<u32>,
}

/// The named special tokens transformers hands a chat template (its `special_tokens_map`).
const SPECIAL_TOKEN_NAMES: [&str; 7] = [
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
];

fn token_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(String::from),
        _ => None,
    }
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text)
        .map_err(|e| EngineError::bad_file(path, format!("invalid JSON: {e}")))
}

impl TextCodec {
    /// Loads the tokenizer and chat template of an HF model directory. `template_override`
    /// replaces the model's own chat template (a spec may name one).
    pub fn from_hf_dir(dir: &Path, template_override: Option<&Path>) -> Result<TextCodec> {
        let tok_path = dir.join("tokenizer.json");
        if !tok_path.exists() {
            return Err(EngineError::Missing {
                path: tok_path,
                what: "tokenizer".into(),
            });
        }
        let tokenizer = Tokenizer::from_file(&tok_path)
            .map_err(|e| EngineError::bad_file(&tok_path, format!("invalid tokenizer: {e}")))?;
        let cfg_path = dir.join("tokenizer_config.json");
        let cfg = if cfg_path.exists() {
            read_json(&cfg_path)?
        } else {
            Value::Null
        };
        let jinja_path = dir.join("chat_template.jinja");
        let (template, template_source) = if let Some(p) = template_override {
            (Some(read_text(p)?), p.to_path_buf())
        } else if jinja_path.exists() {
            (Some(read_text(&jinja_path)?), jinja_path)
        } else {
            let t = match cfg.get("chat_template") {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Array(list)) => Some(
                    list.iter()
                        .find(|e| e.get("name").and_then(Value::as_str) == Some("default"))
                        .and_then(|e| e.get("template"))
                        .and_then(Value::as_str)
                        .map(String::from)
                        .ok_or_else(|| {
                            EngineError::bad_file(
                                &cfg_path,
                                "field `chat_template` lists several templates and none is named `default`",
                            )
                        })?,
                ),
                _ => None,
            };
            (t, cfg_path.clone())
        };
        let map_path = dir.join("special_tokens_map.json");
        let map = if map_path.exists() {
            read_json(&map_path)?
        } else {
            Value::Null
        };
        let special_tokens: BTreeMap<String, String> = SPECIAL_TOKEN_NAMES
            .iter()
            .filter_map(|&name| {
                token_text(cfg.get(name))
                    .or_else(|| token_text(map.get(name)))
                    .map(|t| (name.to_string(), t))
            })
            .collect();
        let mut eos_ids = Vec::new();
        if let Some(id) = special_tokens
            .get("eos_token")
            .and_then(|t| tokenizer.token_to_id(t))
        {
            eos_ids.push(id);
        }
        let gen_cfg = dir.join("generation_config.json");
        if gen_cfg.exists() {
            let v = read_json(&gen_cfg)?;
            match v.get("eos_token_id") {
                Some(Value::Number(n)) => eos_ids.extend(n.as_u64().map(|x| x as u32)),
                Some(Value::Array(a)) => {
                    eos_ids.extend(a.iter().filter_map(Value::as_u64).map(|x| x as u32))
                }
                _ => {}
            }
        }
        eos_ids.sort_unstable();
        eos_ids.dedup();
        let template = template
            .map(|t| ChatTemplate::new(t, template_source.clone()))
            .transpose()?;
        let codec = TextCodec {
            tokenizer,
            template,
            template_source,
            special_tokens,
            chat_options: ChatOptions::default(),
            eos_ids,
        };
        codec.check_template()?;
        Ok(codec)
    }

    /// Builds a byte-level BPE tokenizer from GGUF metadata (`tokenizer.ggml.model = gpt2`).
    pub fn from_gguf(path: &Path, meta: &GgufTokenizerMeta) -> Result<TextCodec> {
        if meta.model != "gpt2" {
            return Err(EngineError::bad_file(
                path,
                format!(
                    "metadata `tokenizer.ggml.model` = {:?}: only gpt2 (byte-level BPE) tokenizers are read from GGUF; give the model's tokenizer.json directory instead",
                    meta.model
                ),
            ));
        }
        let vocab: serde_json::Map<String, Value> = meta
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), Value::from(i)))
            .collect();
        let merges: Vec<Value> = meta
            .merges
            .iter()
            .map(|m| Value::from(m.as_str()))
            .collect();
        let json = serde_json::json!({
            "version": "1.0",
            "added_tokens": [],
            "normalizer": null,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
            "post_processor": null,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                      "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                      "vocab": vocab, "merges": merges}
        });
        let tokenizer: Tokenizer = serde_json::to_string(&json)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                EngineError::bad_file(
                    path,
                    "tokenizer metadata does not form a valid BPE tokenizer",
                )
            })?;
        let name = |id: Option<u32>| {
            id.and_then(|i| meta.tokens.get(i as usize).cloned())
                .unwrap_or_default()
        };
        let special_tokens = [("bos_token", meta.bos), ("eos_token", meta.eos)]
            .into_iter()
            .filter(|(_, id)| id.is_some())
            .map(|(k, id)| (k.to_string(), name(id)))
            .collect();
        let codec = TextCodec {
            tokenizer,
            template: meta
                .chat_template
                .clone()
                .map(|t| ChatTemplate::new(t, path))
                .transpose()?,
            template_source: path.to_path_buf(),
            special_tokens,
            chat_options: ChatOptions::default(),
            eos_ids: meta.eos.into_iter().collect(),
        };
        codec.check_template()?;
        Ok(codec)
    }

    fn check_template(&self) -> Result<()> {
        if self.template.is_some() {
            self.render_chat(&[ChatMessage::user("hello")], true)?;
        }
        Ok(())
    }

    /// Encodes text; `add_special` adds the tokenizer's own special tokens (e.g. BOS).
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>> {
        self.tokenizer
            .encode(text, add_special)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| EngineError::Invalid(format!("tokenizer failed on {text:?}: {e}")))
    }

    /// Decodes ids to text, optionally dropping special tokens.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.tokenizer
            .decode(ids, skip_special)
            .map_err(|e| EngineError::Invalid(format!("cannot decode tokens: {e}")))
    }

    /// Token id of an exact token string, if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.tokenizer.token_to_id(token)
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    /// True when the model has a chat template.
    pub fn has_chat_template(&self) -> bool {
        self.template.is_some()
    }

    /// The options every render uses (date of `strftime_now`, tools, documents, variables).
    pub fn chat_options(&self) -> &ChatOptions {
        &self.chat_options
    }

    /// Sets the options every later render uses; a sweep sets the date here.
    pub fn set_chat_options(&mut self, opts: ChatOptions) {
        self.chat_options = opts;
    }

    /// The named special tokens a template sees (`bos_token`, `eos_token`, ...).
    pub fn special_tokens(&self) -> &BTreeMap<String, String> {
        &self.special_tokens
    }

    /// Renders messages with the chat template and the codec's options, as transformers'
    /// `apply_chat_template(..., tokenize=False)` does.
    pub fn render_chat(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String> {
        self.render_chat_with(messages, add_generation_prompt, &self.chat_options)
    }

    /// [`render_chat`](TextCodec::render_chat) with other options.
    pub fn render_chat_with(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        opts: &ChatOptions,
    ) -> Result<String> {
        let Some(template) = &self.template else {
            return Err(EngineError::bad_file(
                &self.template_source,
                "the model has no chat template",
            ));
        };
        template.render(messages, add_generation_prompt, &self.special_tokens, opts)
    }

    /// Token ids of a conversation (system, user and assistant turns) ready for the next
    /// assistant turn: rendered with the generation prompt and encoded without adding special
    /// tokens, as `apply_chat_template(tokenize=True)` does. Without a chat template the
    /// messages' texts are joined by blank lines and encoded with the tokenizer's special
    /// tokens.
    pub fn encode_chat(&self, messages: &[ChatMessage]) -> Result<Vec<u32>> {
        if self.template.is_some() {
            let text = self.render_chat(messages, true)?;
            self.encode(&text, false)
        } else {
            let text: Vec<&str> = messages.iter().map(|m| m.content.as_str()).collect();
            self.encode(&text.join("\n\n"), true)
        }
    }

    /// Token ids of a single-turn chat prompt ready for generation. Without a chat template the
    /// raw text is encoded with the tokenizer's special tokens.
    pub fn encode_prompt(&self, user: &str) -> Result<Vec<u32>> {
        self.encode_chat(&[ChatMessage::user(user)])
    }
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    })
}
