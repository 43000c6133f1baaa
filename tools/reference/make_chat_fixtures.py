#!/usr/bin/env python3
"""Render published chat templates with transformers' `apply_chat_template`.

Input: engine/tests/fixtures/chat/templates/*.jinja (the templates, byte-exact; where each
came from is in engine/tests/fixtures/chat/SOURCES.md).
Output: engine/tests/fixtures/chat/expected.json: for every template, its special tokens and
a list of cases (messages, add_generation_prompt, optional tools/documents/extra variables)
with transformers' rendering, or the error the template raised.

`strftime_now` is pinned: transformers calls `datetime.now()` inside it, so the script
replaces the `datetime` name that transformers' chat template module looks up with one whose
`now()` returns midnight of DATE. compsafe renders the same date from its chat options.

Usage: python3 tools/reference/make_chat_fixtures.py
"""

from __future__ import annotations

import datetime as _dt
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import transformers  # noqa: E402
import transformers.utils.chat_template_utils as ctu  # noqa: E402
from tokenizers import Tokenizer, models  # noqa: E402
from transformers import PreTrainedTokenizerFast  # noqa: E402

from common import FIXTURES, versions, write_json  # noqa: E402

DATE = (2026, 3, 5)

CHAT = FIXTURES / "chat"


class _PinnedDatetime(_dt.datetime):
    @classmethod
    def now(cls, tz=None):  # noqa: D102
        return cls(*DATE)


# Special tokens of each model's tokenizer (tokenizer_config.json of the model it came from).
TOKENS = {
    "llama-3.1": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "llama-3.2": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "mistral-v0.3": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
    "qwen2.5": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
    "gemma-2": {"bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>",
                "pad_token": "<pad>"},
    "phi-3": {"bos_token": "<s>", "eos_token": "<|endoftext|>", "unk_token": "<unk>",
              "pad_token": "<|endoftext|>"},
    "zephyr": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
    "features": {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"},
    "issue-17": {"bos_token": "<s>", "eos_token": "</s>"},
}

SYSTEM = {"role": "system", "content": "You are a careful assistant. Answer briefly."}
USER = {"role": "user", "content": "How do I bake bread at home?"}
MULTI = [
    {"role": "user", "content": "  Hello! Who are you?  "},
    {"role": "assistant", "content": "I am an assistant.\nHow can I help?"},
    {"role": "user", "content": "Tell me a fact about the sea, naïvely 🙂."},
]

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "City name, e.g. Zürich"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city"],
            },
        },
    }
]
DOCUMENTS = [
    {"title": "Bread", "text": "Flour, water, salt and yeast."},
    {"title": "Sea", "text": "The sea covers most of the planet."},
]


def cases(name: str) -> list[dict]:
    out = []
    for gen in (True, False):
        out.append({"name": f"user/gen={gen}", "messages": [USER], "add_generation_prompt": gen})
        out.append({"name": f"system+user/gen={gen}", "messages": [SYSTEM, USER],
                    "add_generation_prompt": gen})
        out.append({"name": f"multi-turn/gen={gen}", "messages": MULTI, "add_generation_prompt": gen})
        out.append({"name": f"system+multi-turn/gen={gen}", "messages": [SYSTEM] + MULTI,
                    "add_generation_prompt": gen})
    if name in ("llama-3.1", "llama-3.2", "qwen2.5", "mistral-v0.3", "features"):
        out.append({"name": "tools", "messages": [SYSTEM, USER], "add_generation_prompt": True,
                    "tools": TOOLS})
    if name == "features":
        out.append({"name": "documents+extra", "messages": [USER], "add_generation_prompt": True,
                    "documents": DOCUMENTS, "extra": {"extra_flag": [1, "two", None]}})
    if name == "issue-17":
        out = [{"name": "reproducer", "messages": [{"role": "user", "content": "Hi"}],
                "add_generation_prompt": True}]
    return out


def tokenizer_for(tokens: dict) -> PreTrainedTokenizerFast:
    vocab = {t: i for i, t in enumerate(dict.fromkeys(["[UNK]", *tokens.values()]))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    return PreTrainedTokenizerFast(tokenizer_object=tok, **tokens)


def render(tok, template: str, case: dict) -> dict:
    kwargs = dict(case.get("extra", {}))
    try:
        text = tok.apply_chat_template(
            case["messages"],
            chat_template=template,
            add_generation_prompt=case["add_generation_prompt"],
            tools=case.get("tools"),
            documents=case.get("documents"),
            tokenize=False,
            **kwargs,
        )
        return {"rendered": text}
    except Exception as e:  # the template's own error (raise_exception) is the expected result
        return {"error": str(e), "error_type": type(e).__name__}


def main() -> None:
    ctu.datetime = _PinnedDatetime
    transformers.logging.set_verbosity_error()
    out = {"versions": versions(), "date": "%04d-%02d-%02d" % DATE,
           "note": "apply_chat_template(messages, chat_template=..., add_generation_prompt=..., "
                   "tools=..., documents=..., tokenize=False, **extra) with strftime_now pinned "
                   "to midnight of `date`",
           "templates": {}}
    import jinja2

    out["versions"]["jinja2"] = jinja2.__version__
    for path in sorted((CHAT / "templates").glob("*.jinja")):
        name = path.stem
        template = path.read_text(encoding="utf-8")
        tok = tokenizer_for(TOKENS[name])
        results = []
        for case in cases(name):
            r = dict(case)
            # JSON texts keep the key order Python sees (the Rust test parses these).
            for key in ("tools", "documents", "extra"):
                if key in case:
                    r[key + "_json"] = json.dumps(case[key], ensure_ascii=False)
            r.update(render(tok, template, case))
            results.append(r)
            print(f"{name:14} {case['name']:28} {'error: ' + r['error'] if 'error' in r else len(r['rendered'])}")
        out["templates"][name] = {"file": f"templates/{path.name}", "tokens": TOKENS[name],
                                  "cases": results}
    write_json(CHAT / "expected.json", out, compact=False)


if __name__ == "__main__":
    main()
