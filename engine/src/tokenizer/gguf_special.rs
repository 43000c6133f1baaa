//! Which tokens llama.cpp splits out of text before tokenizing (control, user-defined and
//! unknown ones, with its corrections by token text) and which end generation
//! (llama-vocab.cpp, `llama_vocab::impl::load`).

use std::collections::{BTreeSet, HashMap};

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
pub(super) struct Special {
    pub(super) text: String,
    pub(super) id: u32,
    /// Whitespace after it is dropped (llama.cpp's RSTRIP attribute).
    pub(super) rstrip: bool,
    /// Control or unknown: dropped when decoding with `skip_special`.
    pub(super) control: bool,
}

/// The special tokens (split out of text), the control ones, and the end-of-generation ids,
/// with llama.cpp's corrections by token text.
pub(super) fn specials(
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
    let end_not_eog = call && (has(&eog, "<|return|>") || has(&eog, "<|flush|>"));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(tokens: &[&str], name: &str) -> GgufTokenizerMeta {
        GgufTokenizerMeta {
            model: "llama".into(),
            tokens: tokens.iter().map(|t| t.to_string()).collect(),
            name: Some(name.into()),
            ..GgufTokenizerMeta::default()
        }
    }

    #[test]
    fn llama_cpp_corrections_by_text_and_model_name() {
        let tokens = [
            "<unk>",
            "<s>",
            "</s>",
            "<|end|>",
            "<|user|>",
            "[PAD]",
            "<|fim_prefix|>",
            "hi",
        ];
        let texts: Vec<String> = tokens.iter().map(|t| t.to_string()).collect();
        // <|end|> and the FIM tokens are stored as normal tokens; llama.cpp makes them control.
        let types = [2, 3, 3, 1, 4, 1, 1, 1];
        let (found, control, eog) = specials(&meta(&tokens, "Phi-3 Mini"), &texts, &types, Some(2));
        let by_id = |id: u32| found.iter().find(|s| s.id == id).unwrap();
        assert_eq!(eog, vec![2, 3, 5]);
        assert_eq!(
            control.into_iter().collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 5, 6]
        );
        assert!(!by_id(4).control);
        assert!(found.iter().all(|s| s.id != 7));
        // Phi-3: whitespace after special tokens is dropped, except after <unk> and <s>.
        for (id, rstrip) in [(0, false), (1, false), (2, true), (3, true), (4, true)] {
            assert_eq!(by_id(id).rstrip, rstrip, "{}", tokens[id as usize]);
        }
        let (found, _, _) = specials(&meta(&tokens, "Llama"), &texts, &types, Some(2));
        assert!(found.iter().all(|s| !s.rstrip));
        // Longest first.
        assert_eq!(found[0].text, "<|fim_prefix|>");
    }
}
