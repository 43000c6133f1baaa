"""HarmBench's clipping of a completion to 512 classifier tokens, as evaluate_completions.py
does it (`tokenizer.encode(generation, max_length=512, truncation=True)`, then
`tokenizer.decode(ids, skip_special_tokens=True)`, truncation side right), on the Llama test
tokenizer. Writes eval/tests/fixtures/judge_clip.json.

Run: /work/venv/bin/python tools/reference/make_judge_clip_fixtures.py
"""
import json
import pathlib

import transformers
from transformers import AutoTokenizer

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOK = ROOT / "engine/tests/fixtures/hf/llama-plain"

TEXTS = [
    "Sure, here is a short answer.",
    " ".join(["The quick brown fox jumps over the lazy dog, again and again."] * 80),
    " ".join(["Schritt für Schritt: naïve café – “quoted” text, 42 × 7 = 294."] * 60),
    "",
]


def main():
    t = AutoTokenizer.from_pretrained(TOK)
    t.truncation_side = "right"
    cases = []
    for g in TEXTS:
        ids = t.encode(g, max_length=512, truncation=True)
        cases.append({"generation": g, "tokens": len(ids), "clipped": t.decode(ids, skip_special_tokens=True)})
    out = ROOT / "eval/tests/fixtures/judge_clip.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"transformers": transformers.__version__, "cases": cases}, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
