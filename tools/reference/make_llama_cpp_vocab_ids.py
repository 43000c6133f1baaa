#!/usr/bin/env python3
"""Token ids from llama.cpp's own `llama_tokenize` (llama-cpp-python 0.3.36) for the real
vocabularies llama.cpp keeps for its tokenizer tests (`models/ggml-vocab-*.gguf` of its
source tree: Llama 2 and Phi-3 SentencePiece, Llama 3, Qwen2, GPT-2, StarCoder, DeepSeek ...
byte-level BPE), on the test strings llama.cpp keeps beside them (`*.gguf.inp`) and the texts of
make_gguf_tokenizer_vectors.py. The vocabulary files are not copied (megabytes each, and the
models' own terms); `engine/tests/gguf_tokenizer.rs`'s ignored test reads them from
`$LLAMA_CPP_MODELS` and compares with the ids written here.

    /work/venvs/llama/bin/python tools/reference/make_llama_cpp_vocab_ids.py \\
        --models /work/venvs/llama-src/llama_cpp_python-0.3.36/vendor/llama.cpp/models
"""

import argparse
import hashlib
import importlib.metadata
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_gguf_tokenizer_vectors import TEXTS  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "engine" / "tests" / "fixtures" / "gguf-tokenizer" / "llama-cpp-vocabs.json"

VOCABS = ["llama-spm", "phi-3", "llama-bpe", "qwen2", "qwen35", "gpt-2", "starcoder", "refact",
          "deepseek-coder", "deepseek-llm", "falcon", "mpt", "command-r"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=Path, required=True, help="llama.cpp's models/ folder")
    args = ap.parse_args()
    from llama_cpp import Llama

    files = {}
    for name in VOCABS:
        path = args.models / f"ggml-vocab-{name}.gguf"
        inp = (args.models / f"ggml-vocab-{name}.gguf.inp").read_text(encoding="utf-8")
        texts = inp.split("\n__ggml_vocab_test__\n")
        texts[-1] = texts[-1].removesuffix("\n")
        texts = [t for t in texts if t != ""] + TEXTS
        llm = Llama(model_path=str(path), vocab_only=True, verbose=False)
        cases = []
        for text in texts:
            b = text.encode("utf-8")
            cases.append({
                "text": text,
                "add_special": llm.tokenize(b, add_bos=True, special=True),
                "no_special": llm.tokenize(b, add_bos=False, special=True),
            })
        files[path.name] = {
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "cases": cases,
        }
        del llm
    meta = {
        "generator": "tools/reference/make_llama_cpp_vocab_ids.py",
        "versions": {"llama_cpp_python": importlib.metadata.version("llama_cpp_python")},
        "call": "llama_tokenize(vocab, text, add_special, parse_special=true)",
        "files": files,
    }
    OUT.write_text(json.dumps(meta, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
