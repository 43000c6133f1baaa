#!/usr/bin/env python3
"""Token ids from llama.cpp's own tokenizer (`llama_tokenize` through llama-cpp-python) for
GGUF vocabularies of both kinds llama.cpp reads for the supported architectures:

1. `spm.gguf`: a SentencePiece vocabulary (`tokenizer.ggml.model = llama`). A BPE
   SentencePiece model is trained with the `sentencepiece` library the way Llama 2's was
   configured (byte fallback, split digits, identity normalisation, dummy prefix, whitespace
   pieces), put in a tiny Hugging Face Llama directory with added tokens (special and not),
   and converted by llama.cpp's own `convert_hf_to_gguf.py --vocab-only`.
   `spm-noprefix.gguf` is the same with `add_prefix_space: false` (as Gemma's files say).
2. `bpe-<pre>.gguf`: a byte-level BPE vocabulary (`gpt2`) trained with the `tokenizers`
   library, converted by the same script with `tokenizer.ggml.pre` set to each pre-tokenizer
   name tested (the script names it by hashing a known tokenizer's output, which a freshly
   trained tokenizer is not, so the name is given).

`expected.json` holds, for every file and every text, `llama_tokenize(text, add_special,
parse_special=true)` with add_special true and false. These files are vocabulary-only (no
tensors). `spm-model.gguf` is the whole tiny random Llama of `spm.gguf` (f32, 233 kB), with
llama.cpp's prompt ids and greedy tokens for a few prompts (`model` in `expected.json`).

Writes engine/tests/fixtures/gguf-tokenizer/. Usage (see tools/reference/README.md):

    /work/venvs/llama/bin/python tools/reference/make_gguf_tokenizer_vectors.py \\
        --llama-cpp /work/venvs/llama-src/llama_cpp_python-0.3.36/vendor/llama.cpp
"""

import argparse
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "engine" / "tests" / "fixtures" / "gguf-tokenizer"

TRAINING_TEXT = [
    "The quick brown fox jumps over the lazy dog.",
    "How do I bake bread at home? Mix flour, water, salt and yeast, then wait.",
    "I cannot help with that request, but I can tell you about safety.",
    "Sure! Here is a short poem about the sea and the wind and the rain.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 2024 3.14159 1,000,000.",
    "Don't worry, we'll see what they've done; I'm sure it's fine.",
    "Café, naïve, résumé, jalapeño, Ångström, straße, Œuvre.",
    "Здравствуйте, как дела? Привет мир.",
    "日本語のテキストと中文文本。",
    "def main():\n    print('hello world')\n    return 0\n",
    "if (x >= 10 && y != 3) { z = x + y; }",
    "Line one\nLine two\n\nLine four after a blank line.",
    "   leading spaces and trailing spaces   ",
    "Tabs\tseparate\tcolumns\there.",
    "Emoji are fun 😀🚀 and so are symbols ∑ ∫ √ ≈ ≠.",
    "UPPER CASE WORDS and lower case words and MiXeD CaSe.",
    "Questions? Answers! Ellipses... Dashes -- and — em dashes.",
    "The assistant should refuse harmful requests and answer benign ones helpfully.",
    "Please explain photosynthesis in simple terms for a child.",
    "What is the capital of France? Paris is the capital of France.",
]

# Strings tokenized by both implementations: spaces, newlines, unicode, digits, bytes the
# vocabulary lacks, special tokens in the text.
TEXTS = [
    "",
    " ",
    "  ",
    "Hello world",
    " Hello world",
    "  two leading spaces",
    "trailing spaces   ",
    "multiple   inner    spaces",
    "\n",
    "line one\nline two",
    "\n\nblank lines\n\n\nbetween\n",
    "a\r\nb\rc",
    "\ttabbed\t\tcolumns",
    "numbers 1234567 and 3.14159 and 1,000,000",
    "2024-12-03T14:55:00Z",
    "Don't I'm we'll they've IT'S",
    "café naïve résumé Ångström",
    "Здравствуйте мир",
    "日本語 中文 한국어",
    "emoji 😀🚀🤖 end",
    "unseen bytes \u0007\u001b and \u00a0 nbsp",
    "combining e\u0301 and ﬁ ligature",
    "x=1+2; y=[3,4]; z={'a': 5}",
    "!!! ??? ... ---",
    "    def f(x):\n        return x * 2\n",
    "<s>",
    "<s> hello</s>",
    "hello<|user|>world<|assistant|> reply",
    "<|user|>\nHow do I bake bread?\n<|assistant|>\n",
    "text [TOOL] call",
    "MiXeD CaSe WORDS and lower",
    "ZZZZZZZZZZZZ qqqqqqqq",
    "The assistant should refuse harmful requests.",
]

SPECIAL = ["<|user|>", "<|assistant|>"]
USER_DEFINED = ["[TOOL]"]

# tokenizer.ggml.pre names tested on the byte-level BPE vocabulary, and the families they
# stand for in llama.cpp's llama-vocab.cpp.
BPE_PRES = {
    "llama-bpe": "llama3",
    "qwen2": "qwen2",
    "gpt-2": "gpt2",
    "default": "default",
    "smollm": "starcoder family",
    "tekken": "tekken",
    "deepseek-coder": "deepseek-coder",
}


def train_spm(workdir: Path) -> Path:
    import sentencepiece as spm

    corpus = workdir / "corpus.txt"
    corpus.write_text("\n".join(TRAINING_TEXT * 3) + "\n", encoding="utf-8")
    prefix = workdir / "sp"
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(prefix),
        model_type="bpe",
        vocab_size=700,
        character_coverage=0.98,
        byte_fallback=True,
        split_digits=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=True,
        allow_whitespace_only_pieces=True,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        num_threads=1,
        seed_sentencepiece_size=100000,
        minloglevel=2,
    )
    return prefix.with_suffix(".model")


def hf_config(vocab_size: int) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "num_hidden_layers": 1,
        "max_position_embeddings": 128,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "vocab_size": vocab_size,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
    }


def write_weights(d: Path, vocab_size: int) -> None:
    # The converter walks the checkpoint's tensors even for --vocab-only; a tiny random one.
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    h, m = 32, 64
    t = {
        "model.embed_tokens.weight": torch.randn(vocab_size, h, generator=g),
        "model.norm.weight": torch.ones(h),
        "lm_head.weight": torch.randn(vocab_size, h, generator=g),
        "model.layers.0.input_layernorm.weight": torch.ones(h),
        "model.layers.0.post_attention_layernorm.weight": torch.ones(h),
        "model.layers.0.self_attn.q_proj.weight": torch.randn(h, h, generator=g),
        "model.layers.0.self_attn.k_proj.weight": torch.randn(h // 2, h, generator=g),
        "model.layers.0.self_attn.v_proj.weight": torch.randn(h // 2, h, generator=g),
        "model.layers.0.self_attn.o_proj.weight": torch.randn(h, h, generator=g),
        "model.layers.0.mlp.gate_proj.weight": torch.randn(m, h, generator=g),
        "model.layers.0.mlp.up_proj.weight": torch.randn(m, h, generator=g),
        "model.layers.0.mlp.down_proj.weight": torch.randn(h, m, generator=g),
    }
    save_file(t, str(d / "model.safetensors"))


def spm_dir(workdir: Path, model: Path, add_prefix_space: bool | None) -> Path:
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(model))
    n = sp.vocab_size()
    d = workdir / ("spm" if add_prefix_space is None else "spm-noprefix")
    d.mkdir()
    (d / "tokenizer.model").write_bytes(model.read_bytes())
    added = {}
    for i, tok in enumerate(SPECIAL + USER_DEFINED):
        added[str(n + i)] = {
            "content": tok, "lstrip": False, "rstrip": False, "normalized": False,
            "single_word": False, "special": tok in SPECIAL,
        }
    cfg = {
        "tokenizer_class": "LlamaTokenizer",
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "added_tokens_decoder": added,
        "legacy": True,
    }
    if add_prefix_space is not None:
        cfg["add_prefix_space"] = add_prefix_space
    (d / "tokenizer_config.json").write_text(json.dumps(cfg, indent=1))
    vocab = n + len(added)
    (d / "config.json").write_text(json.dumps(hf_config(vocab), indent=1))
    write_weights(d, vocab)
    return d


def bpe_dir(workdir: Path) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers, processors

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"] + SPECIAL
    trainer = trainers.BpeTrainer(
        vocab_size=900,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(TRAINING_TEXT * 3, trainer=trainer)
    tok.add_tokens(USER_DEFINED)
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", 0)])
    d = workdir / "bpe"
    d.mkdir()
    tok.save(str(d / "tokenizer.json"))
    n = tok.get_vocab_size(with_added_tokens=True)
    cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
        "add_bos_token": True,
        "model_max_length": 1024,
    }
    (d / "tokenizer_config.json").write_text(json.dumps(cfg, indent=1))
    conf = hf_config(n)
    conf["bos_token_id"] = 0
    conf["eos_token_id"] = 2
    (d / "config.json").write_text(json.dumps(conf, indent=1))
    write_weights(d, n)
    return d


MODEL_PROMPTS = ["How do I bake bread?", "Hello world", "<|user|>\nTell me a story.\n<|assistant|>\n"]
GREEDY_TOKENS = 8


def convert(llama_cpp: Path, model_dir: Path, out: Path, pre: str | None,
            vocab_only: bool = True) -> None:
    """Runs llama.cpp's converter (vocabulary only unless asked), naming the BPE pre-tokenizer."""
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(llama_cpp / 'gguf-py')!r})\n"
        f"sys.path.insert(0, {str(llama_cpp)!r})\n"
        "import conversion.base as base\n"
        f"PRE = {pre!r}\n"
        "if PRE is not None:\n"
        "    base.TextModel.get_vocab_base_pre = lambda self, tokenizer: PRE\n"
        "import convert_hf_to_gguf as c\n"
        f"sys.argv = ['convert_hf_to_gguf.py', {str(model_dir)!r}, '--outtype', 'f32',"
        f" '--outfile', {str(out)!r}] + {['--vocab-only'] if vocab_only else []!r}\n"
        "c.main()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def tokenize_all(path: Path) -> list:
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), vocab_only=True, verbose=False)
    rows = []
    for text in TEXTS:
        b = text.encode("utf-8")
        rows.append({
            "text": text,
            "add_special": llm.tokenize(b, add_bos=True, special=True),
            "no_special": llm.tokenize(b, add_bos=False, special=True),
        })
    return rows


def greedy(path: Path) -> dict:
    """llama.cpp's prompt ids and greedy tokens (CPU, f32), with the smallest top-1/top-2 logit
    gap over the steps."""
    import numpy as np
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), n_ctx=128, logits_all=True, verbose=False)
    rows = []
    for text in MODEL_PROMPTS:
        ids = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        llm.reset()
        llm.eval(ids)
        out, gap = [], float("inf")
        for _ in range(GREEDY_TOKENS):
            logits = np.array(llm.scores[llm.n_tokens - 1])
            top = np.sort(logits)[-2:]
            gap = min(gap, float(top[1] - top[0]))
            t = int(logits.argmax())
            out.append(t)
            llm.eval([t])
        rows.append({"text": text, "prompt_ids": ids, "greedy": out, "min_top2_gap": gap})
    return {"file": path.name, "max_new_tokens": GREEDY_TOKENS, "eos": "not stopped", "cases": rows}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--llama-cpp", type=Path, required=True,
                    help="llama.cpp source tree (vendored by llama-cpp-python)")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    files = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = train_spm(work)
        for prefix in (None, False):
            d = spm_dir(work, model, prefix)
            name = "spm.gguf" if prefix is None else "spm-noprefix.gguf"
            convert(args.llama_cpp, d, OUT / name, None)
            files[name] = {"model": "llama", "add_prefix_space": prefix}
            if prefix is None:
                convert(args.llama_cpp, d, OUT / "spm-model.gguf", None, vocab_only=False)
        d = bpe_dir(work)
        for pre, family in BPE_PRES.items():
            name = f"bpe-{pre}.gguf"
            convert(args.llama_cpp, d, OUT / name, pre)
            files[name] = {"model": "gpt2", "pre": pre, "family": family}
    for name in files:
        files[name]["cases"] = tokenize_all(OUT / name)
    import sentencepiece
    import tokenizers
    meta = {
        "generator": "tools/reference/make_gguf_tokenizer_vectors.py",
        "versions": {
            "python": sys.version.split()[0],
            "llama_cpp_python": importlib.metadata.version("llama_cpp_python"),
            "sentencepiece": sentencepiece.__version__,
            "tokenizers": tokenizers.__version__,
        },
        "call": "llama_tokenize(vocab, text, add_special, parse_special=true); "
                "add_special true -> `add_special`, false -> `no_special`",
        "files": files,
        "model": greedy(OUT / "spm-model.gguf"),
    }
    (OUT / "expected.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
