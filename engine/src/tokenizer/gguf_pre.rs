//! llama.cpp's pre-tokenizers of byte-level BPE vocabularies by `tokenizer.ggml.pre` name:
//! the regexes its `llm_tokenizer_bpe` applies in turn and the flags its
//! `llama_vocab::impl::load` sets (llama-vocab.cpp). Names whose splitting llama.cpp does in
//! custom code (kimi-k2, afmoe, tiny_aya, ...) or without the byte-level alphabet (gemma4,
//! whitespace, ...) are not listed.

/// llama.cpp's pre-tokenizer for a `tokenizer.ggml.pre` name: its regexes (applied in turn),
/// whether whole words in the vocabulary skip the merges, whether BOS is added by default,
/// whether the default BOS id is dropped.
pub(super) struct PreTokenizer {
    pub(super) regexes: &'static [&'static str],
    pub(super) ignore_merges: bool,
    pub(super) add_bos: bool,
    pub(super) no_default_bos: bool,
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
// The letter class is llama.cpp's, its characters written as escapes.
const DEEPSEEK_LLM_RE: [&str; 6] = [
    r"[\r\n]",
    r"\s?[A-Za-z\x{B5}\x{C0}-\x{D6}\x{D8}-\x{F6}\x{F8}-\x{1BA}\x{1BC}-\x{1BF}\x{1C4}-\x{293}\x{295}-\x{2AF}\x{370}-\x{373}\x{376}\x{377}\x{37B}-\x{37D}\x{37F}\x{386}\x{388}-\x{38A}\x{38C}\x{38E}-\x{3A1}\x{3A3}-\x{3F5}\x{3F7}-\x{481}\x{48A}-\x{52F}\x{531}-\x{556}\x{10A0}-\x{10C5}\x{13A0}-\x{13F5}\x{13F8}-\x{13FD}\x{1C90}-\x{1CBA}\x{1CBD}-\x{1CBF}\x{1D00}-\x{1D2B}\x{1D6B}-\x{1D77}\x{1D79}-\x{1D9A}\x{1E00}-\x{1F15}\x{1F18}-\x{1F1D}\x{1F20}-\x{1F45}\x{1F48}-\x{1F4D}\x{1F50}-\x{1F57}\x{1F59}\x{1F5B}\x{1F5D}\x{1F5F}-\x{1F7D}\x{1F80}-\x{1FB4}\x{1FB6}-\x{1FBC}\x{1FBE}\x{1FC2}-\x{1FC4}\x{1FC6}-\x{1FCC}\x{1FD0}-\x{1FD3}\x{1FD6}-\x{1FDB}\x{1FE0}-\x{1FEC}\x{1FF2}-\x{1FF4}\x{1FF6}-\x{1FFC}\x{2102}\x{2107}\x{210A}-\x{2113}\x{2115}\x{2119}-\x{211D}\x{2124}\x{2126}\x{2128}\x{212A}-\x{212D}\x{212F}-\x{2134}\x{2139}\x{213C}-\x{213F}\x{2145}-\x{2149}\x{214E}\x{2183}\x{2184}\x{2C00}-\x{2C7B}\x{2C7E}-\x{2CE4}\x{2CEB}-\x{2CEE}\x{2CF2}\x{2CF3}\x{A640}-\x{A66D}\x{A680}-\x{A69B}\x{A722}-\x{A76F}\x{A771}-\x{A787}\x{A78B}-\x{A78E}\x{AB70}-\x{ABBF}\x{FB00}-\x{FB06}\x{FB13}-\x{FB17}\x{FF21}-\x{FF3A}\x{FF41}-\x{FF5A}\x{10400}-\x{1044F}\x{104B0}-\x{104D3}\x{104D8}-\x{104FB}\x{10C80}-\x{10CB2}\x{10CC0}-\x{10CF2}\x{118A0}-\x{118DF}\x{1E900}-\x{1E943}]+",
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
pub(super) fn pre_tokenizer(name: &str) -> Option<PreTokenizer> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
    use tokenizers::SplitDelimiterBehavior;

    #[test]
    fn every_listed_regex_compiles() {
        for name in [
            "default",
            "llama-bpe",
            "dbrx",
            "deepseek-llm",
            "deepseek-coder",
            "deepseek-v3",
            "falcon",
            "smollm",
            "gpt-2",
            "qwen2",
            "qwen35",
            "bloom",
            "viking",
            "chatglm-bpe",
            "glm4",
            "tekken",
            "gpt-4o",
            "seed-coder",
            "minicpm5",
        ] {
            let p = pre_tokenizer(name).unwrap();
            for re in p.regexes {
                Split::new(
                    SplitPattern::Regex((*re).to_string()),
                    SplitDelimiterBehavior::Isolated,
                    false,
                )
                .unwrap_or_else(|e| panic!("{name}: {re}: {e}"));
            }
        }
        assert!(pre_tokenizer("kimi-k2").is_none());
    }
}
