//! GGUF vocabularies tokenized the way llama.cpp's `llama_tokenize` does (its
//! `src/llama-vocab.cpp`): special tokens split out first (longest first), then each piece of
//! text through the `tokenizers` crate's BPE model, set up as llama.cpp's tokenizer for the
//! vocabulary kind:
//!
//! - `llama` (SentencePiece): llama.cpp merges adjacent symbols by the score of the token they
//!   form, highest first. A BPE model whose merges are every split of every token into two
//!   tokens, ranked by the score of the result, does the same; bytes the vocabulary lacks fall
//!   back to `<0xNN>` tokens. Spaces become `▁`, and one is prefixed to the text at the start
//!   and after every special token when the file asks for it (`add_space_prefix`, default on).
//! - `gpt2` (byte-level BPE): the pre-tokenizer regexes llama.cpp uses for the file's
//!   `tokenizer.ggml.pre`, applied in turn, then the byte-level alphabet and the file's merges
//!   (whole words in the vocabulary taken as they are where llama.cpp ignores merges).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::Replace;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{DecoderWrapper, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};

use crate::error::{EngineError, Result};
use crate::loader::GgufTokenizerMeta;

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
const UNKNOWN: i32 = 2;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;

/// Token texts llama.cpp treats as end of generation (and so as control tokens), whatever
/// their stored type (llama-vocab.cpp, `special_eog_ids`).
const EOG_TEXTS: [&str; 22] = [
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// Fill-in-the-middle tokens llama.cpp finds by text when the file does not name them: the
/// metadata key, the texts, and whether the token ends generation.
const FIM_TEXTS: [(&str, &[&str], bool); 6] = [
    (
        "fim_pre",
        &[
            "<|fim_prefix|>",
            "<fim-prefix>",
            "<fim_prefix>",
            "<｜fim▁begin｜>",
            "<PRE>",
            "▁<PRE>",
            "<|code_prefix|>",
            "<|prefix|>",
        ],
        false,
    ),
    (
        "fim_suf",
        &[
            "<|fim_suffix|>",
            "<fim-suffix>",
            "<fim_suffix>",
            "<｜fim▁hole｜>",
            "<SUF>",
            "▁<SUF>",
            "<|code_suffix|>",
            "<|suffix|>",
        ],
        false,
    ),
    (
        "fim_mid",
        &[
            "<|fim_middle|>",
            "<fim-middle>",
            "<fim_middle>",
            "<｜fim▁end｜>",
            "<MID>",
            "▁<MID>",
            "<|code_middle|>",
            "<|middle|>",
        ],
        false,
    ),
    (
        "fim_pad",
        &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"],
        true,
    ),
    (
        "fim_rep",
        &[
            "<|fim_repo|>",
            "<|repo_name|>",
            "<fim-repo>",
            "<REPO>",
            "<reponame>",
        ],
        true,
    ),
    ("fim_sep", &["<|file_sep|>"], true),
];

/// Tokens llama.cpp always renders and splits out as user-defined (gpt-oss).
const ALWAYS_USER_DEFINED: [&str; 4] = ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"];

/// One token split out of the text before tokenization.
#[derive(Debug, Clone)]
struct Special {
    text: String,
    id: u32,
    /// Whitespace after it is dropped (llama.cpp's RSTRIP attribute).
    rstrip: bool,
    /// Control or unknown: dropped when decoding with `skip_special`.
    control: bool,
}

/// What the text between special tokens goes through.
#[derive(Debug, Clone)]
enum Kind {
    /// SentencePiece: `▁` for spaces, a leading one where `add_space_prefix` asks.
    Spm { add_space_prefix: bool },
    /// Byte-level BPE.
    Bpe,
}

/// A GGUF vocabulary with llama.cpp's tokenization.
#[derive(Debug, Clone)]
pub(crate) struct GgufVocab {
    kind: Kind,
    tokenizer: Tokenizer,
    /// Longest text first, as llama.cpp splits them.
    specials: Vec<Special>,
    /// Ids of the vocabulary's tokens; ids from `n_tokens` on stand for characters that are no
    /// token but take part in merges (llama.cpp merges characters, not tokens).
    n_tokens: u32,
    /// Byte tokens of each such character.
    char_bytes: HashMap<u32, Vec<u32>>,
    control_ids: BTreeSet<u32>,
    add_bos: bool,
    add_eos: bool,
    bos: Option<u32>,
    eos: Option<u32>,
    /// The tokens that end generation.
    pub eog: Vec<u32>,
}

/// llama.cpp's pre-tokenizer for a `tokenizer.ggml.pre` name: its regexes (applied in turn),
/// whether whole words in the vocabulary skip the merges, whether BOS is added by default,
/// whether the default BOS id is dropped.
struct PreTokenizer {
    regexes: &'static [&'static str],
    ignore_merges: bool,
    add_bos: bool,
    no_default_bos: bool,
}

const GPT2_RE: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
const LLAMA3_RE: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_RE: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN35_RE: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const STARCODER_RE: [&str; 2] = [
    r"\p{N}",
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)",
];
const DEFAULT_RE: [&str; 4] = [
    r"[\p{P}\$\+<=>\^~\|]+",
    GPT2_RE,
    r"\p{N}+",
    r"[0-9][0-9][0-9]",
];
const DEEPSEEK_CODER_RE: [&str; 5] = [
    r"[\r\n]",
    r"\s?\p{L}+",
    r"\s?\p{P}+",
    r"[一-龥ࠀ-一가-퟿]+",
    r"\p{N}",
];
const DEEPSEEK_LLM_RE: [&str; 6] = [
    r"[\r\n]",
    r"\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
    r"\s?[!-/:-~！-／：-～‘-‟　-。]+",
    r"\s+$",
    r"[一-龥ࠀ-一가-퟿]+",
    r"\p{N}+",
];
const DEEPSEEK3_RE: [&str; 3] = [
    r"\p{N}{1,3}",
    r"[一-龥぀-ゟ゠-ヿ]+",
    r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##,
];
const FALCON_RE: [&str; 3] = [
    r"[\p{P}\$\+<=>\^~\|`]+",
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)",
    r"[0-9][0-9][0-9]",
];
const PORO_RE: &str = r" ?[^(\s|.,!?…。，、।۔،)]+";
const TEKKEN_RE: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const GPT4O_RE: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const SEED_CODER_RE: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+";
const MINICPM5_RE: [&str; 2] = [
    r"\p{N}{1,3}",
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}+| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
];

const fn pre(regexes: &'static [&'static str]) -> PreTokenizer {
    PreTokenizer {
        regexes,
        ignore_merges: false,
        add_bos: false,
        no_default_bos: false,
    }
}

/// llama.cpp's pre-tokenizer for `name` (llama-vocab.cpp, `llama_vocab::impl::load` and
/// `llm_tokenizer_bpe`); `None` for names it does not know or whose splitting is custom code.
fn pre_tokenizer(name: &str) -> Option<PreTokenizer> {
    let p = match name {
        "" | "default" => pre(&DEFAULT_RE),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" | "jina-v5-nano" => PreTokenizer {
            ignore_merges: true,
            add_bos: true,
            ..pre(&[LLAMA3_RE])
        },
        "dbrx" | "smaug-bpe" => pre(&[LLAMA3_RE]),
        "deepseek-llm" => pre(&DEEPSEEK_LLM_RE),
        "deepseek-coder" => pre(&DEEPSEEK_CODER_RE),
        "deepseek-v3" | "hunyuan-dense" | "joyai-llm" | "hy_v4" => pre(&DEEPSEEK3_RE),
        "falcon" => pre(&FALCON_RE),
        "starcoder" | "refact" | "command-r" | "smollm" | "codeshell" | "exaone" | "minerva-7b"
        | "mellum2" => pre(&STARCODER_RE),
        "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de"
        | "a.x-4.0" | "mellum" | "modern-bert" | "exaone4" | "jina-v1-en" | "jina-v2-code"
        | "roberta-bpe" | "mpt" | "olmo" | "jais" | "trillion" | "granite-docling" => {
            pre(&[GPT2_RE])
        }
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "megrez" | "stablelm2" | "hunyuan"
        | "solar-open" | "grok-2" => pre(&[QWEN2_RE]),
        "qwen35" => pre(&[QWEN35_RE]),
        "poro-chat" | "bloom" | "gpt3-finnish" => pre(&[PORO_RE]),
        "viking" => pre(&[PORO_RE, r"\p{N}"]),
        "chatglm-bpe" => PreTokenizer {
            no_default_bos: true,
            ..pre(&[LLAMA3_RE])
        },
        "glm4" | "glm5" => PreTokenizer {
            no_default_bos: true,
            ignore_merges: true,
            ..pre(&[LLAMA3_RE])
        },
        "tekken" => PreTokenizer {
            ignore_merges: true,
            add_bos: true,
            ..pre(&[TEKKEN_RE])
        },
        "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => pre(&[GPT4O_RE]),
        "seed-coder" => pre(&[SEED_CODER_RE]),
        "minicpm5" => PreTokenizer {
            ignore_merges: true,
            ..pre(&MINICPM5_RE)
        },
        _ => return None,
    };
    Some(p)
}

fn bad(path: &Path, m: impl Into<String>) -> EngineError {
    EngineError::bad_file(path, m)
}

fn build_error(path: &Path, e: impl std::fmt::Display) -> EngineError {
    bad(
        path,
        format!("tokenizer metadata does not form a valid tokenizer: {e}"),
    )
}

impl GgufVocab {
    /// Reads the vocabulary of a GGUF file (`path` names it in errors).
    pub(crate) fn new(path: &Path, meta: &GgufTokenizerMeta) -> Result<GgufVocab> {
        let n = meta.tokens.len();
        if n == 0 {
            return Err(bad(
                path,
                "metadata `tokenizer.ggml.tokens` is missing or empty",
            ));
        }
        for (key, len) in [
            ("tokenizer.ggml.scores", meta.scores.len()),
            ("tokenizer.ggml.token_type", meta.token_types.len()),
        ] {
            if len != 0 && len < n {
                return Err(bad(
                    path,
                    format!("metadata `{key}` has {len} entries for {n} tokens"),
                ));
            }
        }
        // llama.cpp names empty tokens so that they never match text.
        let texts: Vec<String> = meta
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if t.is_empty() {
                    format!("[EMPTY_{i}]")
                } else {
                    t.clone()
                }
            })
            .collect();
        let in_range = |id: u32| (id as usize) < n;
        let (kind, tokenizer, n_tokens, char_bytes, defaults) = match meta.model.as_str() {
            "llama" => {
                let add_space_prefix = meta.add_space_prefix.unwrap_or(true);
                let (tokenizer, n_tokens, char_bytes) = spm_tokenizer(path, &texts, &meta.scores)?;
                (
                    Kind::Spm { add_space_prefix },
                    tokenizer,
                    n_tokens,
                    char_bytes,
                    (Some(1), Some(2), true),
                )
            }
            "gpt2" => {
                let name = meta.pre.as_deref().unwrap_or("");
                let pre = pre_tokenizer(name).ok_or_else(|| {
                    bad(
                        path,
                        format!(
                            "metadata `tokenizer.ggml.pre` = {name:?}: this pre-tokenizer is not \
                             supported (supported: llama.cpp's regex pre-tokenizers such as \
                             llama-bpe, qwen2, gpt-2, default, smollm, tekken, deepseek-coder)"
                        ),
                    )
                })?;
                let tokenizer = bpe_tokenizer(path, &texts, &meta.merges, &pre)?;
                let bos = if pre.no_default_bos { None } else { Some(11) };
                (
                    Kind::Bpe,
                    tokenizer,
                    n as u32,
                    HashMap::new(),
                    (bos, Some(11), pre.add_bos),
                )
            }
            other => {
                return Err(bad(
                    path,
                    format!(
                        "metadata `tokenizer.ggml.model` = {other:?}: supported are `llama` \
                         (SentencePiece) and `gpt2` (byte-level BPE)"
                    ),
                ))
            }
        };
        let (default_bos, default_eos, default_add_bos) = defaults;
        let bos = meta
            .bos
            .filter(|&i| in_range(i))
            .or(default_bos.filter(|&i| in_range(i)));
        let eos = meta
            .eos
            .filter(|&i| in_range(i))
            .or(default_eos.filter(|&i| in_range(i)));
        let types: Vec<i32> = (0..n)
            .map(|i| meta.token_types.get(i).copied().unwrap_or(1))
            .collect();
        let (specials, control_ids, eog) = specials(meta, &texts, &types, eos);
        Ok(GgufVocab {
            kind,
            tokenizer,
            specials,
            n_tokens,
            char_bytes,
            control_ids,
            add_bos: meta.add_bos.unwrap_or(default_add_bos),
            add_eos: meta.add_eos.unwrap_or(false),
            bos,
            eos,
            eog,
        })
    }

    /// Token ids of `text` as `llama_tokenize(text, add_special, parse_special = true)`.
    pub(crate) fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        if add_special && self.add_bos {
            out.extend(self.bos);
        }
        let mut prev_special = true;
        for piece in self.partition(text) {
            match piece {
                Piece::Token(id) => {
                    out.push(id);
                    prev_special = true;
                }
                Piece::Text(t) => {
                    let t = match self.kind {
                        Kind::Spm { add_space_prefix } if add_space_prefix && prev_special => {
                            format!(" {t}")
                        }
                        _ => t.to_string(),
                    };
                    prev_special = false;
                    if t.is_empty() {
                        continue;
                    }
                    let enc = self.tokenizer.encode(t.as_str(), false).map_err(|e| {
                        EngineError::Invalid(format!("tokenizer failed on {text:?}: {e}"))
                    })?;
                    for &id in enc.get_ids() {
                        match self.char_bytes.get(&id) {
                            Some(bytes) => out.extend_from_slice(bytes),
                            None => out.push(id),
                        }
                    }
                }
            }
        }
        if add_special && self.add_eos {
            out.extend(self.eos);
        }
        Ok(out)
    }

    /// Id of an exact token text.
    pub(crate) fn token_id(&self, token: &str) -> Option<u32> {
        self.tokenizer
            .token_to_id(token)
            .filter(|&i| i < self.n_tokens)
    }

    /// Number of tokens.
    pub(crate) fn vocab_size(&self) -> usize {
        self.n_tokens as usize
    }

    /// Text of a token id, if it is one.
    pub(crate) fn token_text(&self, id: u32) -> Option<String> {
        (id < self.n_tokens)
            .then(|| self.tokenizer.id_to_token(id))
            .flatten()
    }

    /// Text of `ids`: control tokens as their text (dropped with `skip_special`), the rest
    /// through the vocabulary's decoder; SentencePiece drops the prefixed space of the first
    /// token as llama.cpp's detokenizer does.
    pub(crate) fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        let mut out = String::new();
        let mut run: Vec<u32> = Vec::new();
        let flush = |run: &mut Vec<u32>, out: &mut String| -> Result<()> {
            if !run.is_empty() {
                let s = self
                    .tokenizer
                    .decode(run, false)
                    .map_err(|e| EngineError::Invalid(format!("cannot decode tokens: {e}")))?;
                out.push_str(&s);
                run.clear();
            }
            Ok(())
        };
        for &id in ids {
            if id >= self.n_tokens {
                continue;
            }
            if let Some(s) = self.specials.iter().find(|s| s.id == id) {
                flush(&mut run, &mut out)?;
                if !(skip_special && s.control) {
                    out.push_str(&s.text);
                }
            } else {
                run.push(id);
            }
        }
        flush(&mut run, &mut out)?;
        if let Kind::Spm {
            add_space_prefix: true,
        } = self.kind
        {
            let first_plain = ids.first().is_some_and(|i| !self.control_ids.contains(i));
            if first_plain && out.starts_with(' ') {
                out.remove(0);
            }
        }
        Ok(out)
    }

    /// The text split at special tokens, longest token first (llama.cpp's
    /// `tokenizer_st_partition` with `parse_special`).
    fn partition<'a>(&self, text: &'a str) -> Vec<Piece<'a>> {
        let mut pieces = vec![Piece::Text(text)];
        if text.is_empty() {
            return Vec::new();
        }
        for s in &self.specials {
            let mut next = Vec::with_capacity(pieces.len());
            for p in pieces {
                let Piece::Text(mut rest) = p else {
                    next.push(p);
                    continue;
                };
                while let Some(at) = rest.find(s.text.as_str()) {
                    if at > 0 {
                        next.push(Piece::Text(&rest[..at]));
                    }
                    next.push(Piece::Token(s.id));
                    rest = &rest[at + s.text.len()..];
                    if s.rstrip {
                        rest = rest
                            .trim_start_matches(|c: char| c.is_ascii_whitespace() || c == '\x0b');
                    }
                }
                if !rest.is_empty() {
                    next.push(Piece::Text(rest));
                }
            }
            pieces = next;
        }
        pieces
    }
}

#[derive(Debug, Clone, Copy)]
enum Piece<'a> {
    Text(&'a str),
    Token(u32),
}

/// The special tokens (split out of text), the control ones, and the end-of-generation ids,
/// with llama.cpp's corrections by token text.
fn specials(
    meta: &GgufTokenizerMeta,
    texts: &[String],
    types: &[i32],
    eos: Option<u32>,
) -> (Vec<Special>, BTreeSet<u32>, Vec<u32>) {
    let mut kind: Vec<i32> = types.to_vec();
    let mut eog: BTreeSet<u32> = BTreeSet::new();
    let by_text: HashMap<&str, u32> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i as u32))
        .collect();
    let control = |k: &mut Vec<i32>, id: u32| {
        if !matches!(k[id as usize], CONTROL) {
            k[id as usize] = CONTROL;
        }
    };
    for (key, names, ends) in FIM_TEXTS {
        let id = match meta.special_ids.get(key) {
            Some(&id) if (id as usize) < texts.len() => Some(id),
            _ => names
                .iter()
                .filter_map(|t| by_text.get(t).copied())
                .min()
                .inspect(|&id| control(&mut kind, id)),
        };
        if ends {
            eog.extend(id);
        }
    }
    for t in EOG_TEXTS {
        if let Some(&id) = by_text.get(t) {
            eog.insert(id);
            control(&mut kind, id);
        }
    }
    for t in ALWAYS_USER_DEFINED {
        if let Some(&id) = by_text.get(t) {
            kind[id as usize] = USER_DEFINED;
        }
    }
    for key in ["eot", "eom"] {
        if let Some(&id) = meta.special_ids.get(key) {
            if (id as usize) < texts.len() {
                eog.insert(id);
            }
        }
    }
    eog.extend(eos);
    // o200k_harmony and solar-open: `<|end|>` is no end of generation there.
    let has = |eog: &BTreeSet<u32>, t: &str| by_text.get(t).is_some_and(|id| eog.contains(id));
    let call = has(&eog, "<|call|>") || has(&eog, "<|calls|>");
    let end_not_eog = (has(&eog, "<|return|>") && call) || (call && has(&eog, "<|flush|>"));
    if let Some(&end) = by_text.get("<|end|>") {
        if eog.contains(&end) && end_not_eog {
            eog.remove(&end);
            kind[end as usize] = USER_DEFINED;
        }
    }
    // Gemma 4 and PLaMo 2: `</s>` is an ordinary token there.
    if has(&eog, "<|tool_response>") || has(&eog, "<|plamo:eos|>") {
        if let Some(&s) = by_text.get("</s>") {
            eog.remove(&s);
            kind[s as usize] = 1;
        }
    }
    // Phi-3's files: whitespace after special tokens is dropped, except after <unk>, <s> and
    // <|endoftext|> (llama.cpp sets these attributes by model name).
    let name = meta.name.as_deref().unwrap_or("").to_lowercase();
    let phi3 = name.contains("phi-3") || name.contains("phi3");
    let mut specials: Vec<Special> = kind
        .iter()
        .enumerate()
        .filter(|(_, &k)| matches!(k, UNKNOWN | CONTROL | USER_DEFINED))
        .map(|(i, &k)| Special {
            text: texts[i].clone(),
            id: i as u32,
            rstrip: phi3 && !matches!(texts[i].as_str(), "<unk>" | "<s>" | "<|endoftext|>"),
            control: matches!(k, UNKNOWN | CONTROL),
        })
        .collect();
    specials.sort_by(|a, b| b.text.len().cmp(&a.text.len()).then(a.id.cmp(&b.id)));
    let control_ids = specials
        .iter()
        .filter(|s| s.control)
        .map(|s| s.id)
        .collect();
    (specials, control_ids, eog.into_iter().collect())
}

/// A BPE model that merges like llama.cpp's SentencePiece tokenizer: every split of a token
/// into two symbols (tokens, or characters no token consists of) is a merge, ranked by the
/// score of the token it forms. Returns the tokenizer, the number of real tokens, and the byte
/// tokens of each stand-in character id.
fn spm_tokenizer(
    path: &Path,
    texts: &[String],
    scores: &[f32],
) -> Result<(Tokenizer, u32, HashMap<u32, Vec<u32>>)> {
    let n = texts.len() as u32;
    let mut vocab: HashMap<String, u32> = HashMap::with_capacity(texts.len());
    for (i, t) in texts.iter().enumerate() {
        vocab.insert(t.clone(), i as u32);
    }
    // Characters inside tokens that are no token themselves still merge in llama.cpp.
    let mut extra: Vec<String> = Vec::new();
    for t in texts {
        for c in t.chars() {
            let s = c.to_string();
            if !vocab.contains_key(&s) {
                vocab.insert(s.clone(), n + extra.len() as u32);
                extra.push(s);
            }
        }
    }
    let byte_token = |b: u8| -> Option<u32> {
        let hex = format!("<0x{b:02X}>");
        vocab.get(&hex).copied().filter(|&i| i < n).or_else(|| {
            vocab
                .get(&(b as char).to_string())
                .copied()
                .filter(|&i| i < n)
        })
    };
    let mut char_bytes = HashMap::new();
    for (k, s) in extra.iter().enumerate() {
        let bytes: Vec<u32> = s.bytes().filter_map(byte_token).collect();
        char_bytes.insert(n + k as u32, bytes);
    }
    let score = |id: u32| -> f32 {
        let s = scores.get(id as usize).copied().unwrap_or(0.0);
        if s.is_nan() {
            f32::NEG_INFINITY
        } else {
            s
        }
    };
    let mut merges: Vec<(f32, u32, String, String)> = Vec::new();
    for (i, t) in texts.iter().enumerate() {
        let id = i as u32;
        // Only the id the text maps to forms by merging (llama.cpp looks tokens up by text).
        if vocab.get(t) != Some(&id) {
            continue;
        }
        for (at, _) in t.char_indices().skip(1) {
            let (l, r) = t.split_at(at);
            if vocab.contains_key(l) && vocab.contains_key(r) {
                merges.push((score(id), id, l.to_string(), r.to_string()));
            }
        }
    }
    merges.sort_by(|a, b| {
        b.0.partial_cmp(&a.0)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.1.cmp(&b.1))
    });
    let merges: Vec<(String, String)> = merges.into_iter().map(|(_, _, l, r)| (l, r)).collect();
    let model = BPE::builder()
        .vocab_and_merges(vocab.into_iter().collect::<Vocab>(), merges)
        .byte_fallback(true)
        .build()
        .map_err(|e| build_error(path, e))?;
    let mut tokenizer = Tokenizer::new(model);
    let replace = Replace::new(" ", "▁").map_err(|e| build_error(path, e))?;
    tokenizer
        .with_normalizer(Some(replace))
        .map_err(|e| build_error(path, e))?;
    let unescape = Replace::new("▁", " ").map_err(|e| build_error(path, e))?;
    tokenizer.with_decoder(Some(DecoderSequence::new(vec![
        DecoderWrapper::Replace(unescape),
        DecoderWrapper::ByteFallback(ByteFallback::new()),
        DecoderWrapper::Fuse(Fuse::new()),
    ])));
    Ok((tokenizer, n, char_bytes))
}

/// A byte-level BPE model with llama.cpp's pre-tokenizer regexes for the file's `pre`.
fn bpe_tokenizer(
    path: &Path,
    texts: &[String],
    merges: &[String],
    pre: &PreTokenizer,
) -> Result<Tokenizer> {
    let mut vocab: HashMap<String, u32> = HashMap::with_capacity(texts.len());
    for (i, t) in texts.iter().enumerate() {
        vocab.insert(t.clone(), i as u32);
    }
    // llama.cpp splits a merge at its first space after the first byte, keeps the first rank
    // of a pair, and skips pairs that cannot form a token.
    let mut seen = std::collections::HashSet::new();
    let mut pairs = Vec::with_capacity(merges.len());
    for m in merges {
        let Some(at) = m.bytes().skip(1).position(|b| b == b' ').map(|p| p + 1) else {
            continue;
        };
        let (l, r) = (&m[..at], &m[at + 1..]);
        let joined = format!("{l}{r}");
        if vocab.contains_key(l)
            && vocab.contains_key(r)
            && vocab.contains_key(&joined)
            && seen.insert((l.to_string(), r.to_string()))
        {
            pairs.push((l.to_string(), r.to_string()));
        }
    }
    let model = BPE::builder()
        .vocab_and_merges(vocab.into_iter().collect::<Vocab>(), pairs)
        .ignore_merges(pre.ignore_merges)
        .build()
        .map_err(|e| build_error(path, e))?;
    let mut tokenizer = Tokenizer::new(model);
    let mut steps: Vec<PreTokenizerWrapper> = Vec::new();
    for re in pre.regexes {
        let split = Split::new(
            SplitPattern::Regex((*re).to_string()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| build_error(path, e))?;
        steps.push(PreTokenizerWrapper::Split(split));
    }
    steps.push(PreTokenizerWrapper::ByteLevel(ByteLevel::new(
        false, false, false,
    )));
    tokenizer.with_pre_tokenizer(Some(PreSequence::new(steps)));
    tokenizer.with_decoder(Some(ByteLevel::new(false, false, false)));
    Ok(tokenizer)
}
