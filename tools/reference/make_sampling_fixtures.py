#!/usr/bin/env python3
"""transformers' logits processors applied to fixed logits, for the sampling tests.

Output: engine/tests/fixtures/sampling/processors.json: for several sampling settings
(temperature, top_k, top_p, min_p, repetition_penalty) and seeded random logit vectors with
the tokens seen so far, the scores transformers' generate would sample from: the processor
list `GenerationMixin._get_logits_processor` builds for that GenerationConfig (do_sample=True),
applied in its order; filtered tokens are -inf (written as null).

Usage: python3 tools/reference/make_sampling_fixtures.py
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM  # noqa: E402

from common import FIXTURES, deterministic_torch, versions, write_json  # noqa: E402

VOCAB = 64
SETTINGS = [
    {"temperature": 1.0},
    {"temperature": 0.7},
    {"temperature": 1.0, "top_k": 5},
    {"temperature": 1.0, "top_p": 0.9},
    {"temperature": 1.0, "min_p": 0.1},
    {"temperature": 1.0, "repetition_penalty": 1.3},
    {"temperature": 0.8, "top_k": 20, "top_p": 0.8, "min_p": 0.05, "repetition_penalty": 1.2},
    {"temperature": 1.5, "top_p": 0.5, "repetition_penalty": 0.8},
]


def main() -> None:
    deterministic_torch(threads=1)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1)
    model = LlamaForCausalLM(cfg)
    g = torch.Generator().manual_seed(1234)
    cases = []
    for setting in SETTINGS:
        gc = GenerationConfig(do_sample=True, **setting)
        procs = model._get_logits_processor(generation_config=gc, input_ids_seq_length=8,
                                            device="cpu")
        for _ in range(4):
            logits = 1.5 * torch.randn(1, VOCAB, generator=g)
            seen = torch.randint(0, VOCAB, (1, 8), generator=g)
            out = procs(seen, logits.clone())[0]
            cases.append({
                "setting": setting,
                "processors": [type(p).__name__ for p in procs],
                "seen": seen[0].tolist(),
                "logits": logits[0].tolist(),
                "processed": [None if math.isinf(x) else x for x in out.tolist()],
            })
    write_json(FIXTURES / "sampling" / "processors.json",
               {"versions": versions(), "cases": cases}, compact=False)
    print(f"{len(cases)} cases")


if __name__ == "__main__":
    main()
