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

use super::gguf_pre::{pre_tokenizer, PreTokenizer};
use super::gguf_special::{specials, Special};

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
    /// Position in `specials` by id.
    special_at: HashMap<u32, usize>,
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
        let special_at = specials
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id, i))
            .collect();
        Ok(GgufVocab {
            kind,
            tokenizer,
            specials,
            special_at,
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
            if let Some(s) = self.special_at.get(&id).map(|&i| &self.specials[i]) {
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
        if text.is_empty() {
            return Vec::new();
        }
        let mut pieces = vec![Piece::Text(text)];
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
