//! Text in and out: `tokenizer.json` through the `tokenizers` crate, or a GGUF vocabulary
//! tokenized as llama.cpp does ([`gguf`]), and the chat template (from
//! `tokenizer_config.json`, `chat_template.jinja`, GGUF metadata or an override file) rendered
//! with minijinja.

mod gguf;
mod gguf_pre;
mod gguf_special;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tokenizers::Tokenizer;

use crate::chat::{ChatOptions, ChatTemplate};
use crate::error::{EngineError, Result};
use crate::loader::GgufTokenizerMeta;
use gguf::GgufVocab;

pub use crate::chat::ChatMessage;

/// Tokenizer plus chat template of one model.
#[derive(Debug, Clone)]
pub struct TextCodec {
    backend: Backend,
    template: Option<ChatTemplate>,
    template_source: PathBuf,
    /// The named special tokens a template sees (`bos_token`, `eos_token`, ...).
    special_tokens: BTreeMap<String, String>,
    chat_options: ChatOptions,
    /// Token ids that end generation.
    pub eos_ids: Vec<u32>,
}

/// Where token ids come from.
#[derive(Debug, Clone)]
enum Backend {
    /// A `tokenizer.json`.
    Hf(Tokenizer),
    /// A GGUF vocabulary, tokenized as llama.cpp does.
    Gguf(GgufVocab),
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
            backend: Backend::Hf(tokenizer),
            template,
            template_source,
            special_tokens,
            chat_options: ChatOptions::default(),
            eos_ids,
        };
        codec.check_template()?;
        Ok(codec)
    }

    /// Builds the tokenizer of a GGUF file from its metadata: a SentencePiece (`llama`) or
    /// byte-level BPE (`gpt2`) vocabulary, giving the token ids llama.cpp's `llama_tokenize`
    /// gives with special tokens parsed; generation ends at every token llama.cpp ends it at.
    pub fn from_gguf(path: &Path, meta: &GgufTokenizerMeta) -> Result<TextCodec> {
        let vocab = GgufVocab::new(path, meta)?;
        let mut special_tokens = BTreeMap::new();
        for (name, id) in [
            ("bos_token", meta.bos),
            ("eos_token", meta.eos),
            ("unk_token", meta.unk),
            ("pad_token", meta.pad),
        ] {
            if let Some(text) = id.and_then(|i| vocab.token_text(i)) {
                special_tokens.insert(name.to_string(), text);
            }
        }
        let eos_ids = vocab.eog.clone();
        let codec = TextCodec {
            backend: Backend::Gguf(vocab),
            template: meta
                .chat_template
                .clone()
                .map(|t| ChatTemplate::new(t, path))
                .transpose()?,
            template_source: path.to_path_buf(),
            special_tokens,
            chat_options: ChatOptions::default(),
            eos_ids,
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
        match &self.backend {
            Backend::Hf(t) => t
                .encode(text, add_special)
                .map(|e| e.get_ids().to_vec())
                .map_err(|e| EngineError::Invalid(format!("tokenizer failed on {text:?}: {e}"))),
            Backend::Gguf(v) => v.encode(text, add_special),
        }
    }

    /// Decodes ids to text, optionally dropping special tokens.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        match &self.backend {
            Backend::Hf(t) => t
                .decode(ids, skip_special)
                .map_err(|e| EngineError::Invalid(format!("cannot decode tokens: {e}"))),
            Backend::Gguf(v) => v.decode(ids, skip_special),
        }
    }

    /// Token id of an exact token string, if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        match &self.backend {
            Backend::Hf(t) => t.token_to_id(token),
            Backend::Gguf(v) => v.token_id(token),
        }
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        match &self.backend {
            Backend::Hf(t) => t.get_vocab_size(true),
            Backend::Gguf(v) => v.vocab_size(),
        }
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
