#!/usr/bin/env python3
"""Load a Hugging Face model directory with transformers and print a greedy continuation.

Used to show that a checkpoint written by compsafe (for example a compressed or
fine-tuned fixture) loads unchanged in transformers and generates text.

Usage:
  python3 tools/reference/check_load.py MODEL_DIR [--prompt TEXT] [--chat]
         [--max-new-tokens N] [--dtype float32|float16|bfloat16] [--json]

Exit status is non-zero if loading or generation fails.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

import transformers
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--prompt", default="When a user asks for something harmful,")
    ap.add_argument("--chat", action="store_true",
                    help="wrap the prompt as one user message with the chat template")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    ap.add_argument("--eager", action="store_true", help="attn_implementation='eager'")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(0)

    config = AutoConfig.from_pretrained(args.model_dir)
    kwargs = {"dtype": getattr(torch, args.dtype)}
    if args.eager:
        kwargs["attn_implementation"] = "eager"
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, **kwargs)
    model.eval()
    tok = AutoTokenizer.from_pretrained(args.model_dir)

    if args.chat:
        text = tok.apply_chat_template([{"role": "user", "content": args.prompt}],
                                       add_generation_prompt=True, tokenize=False)
        enc = tok(text, add_special_tokens=False, return_tensors="pt")
    else:
        text = args.prompt
        enc = tok(text, return_tensors="pt")

    with torch.no_grad():
        out = model.generate(**enc, do_sample=False, max_new_tokens=args.max_new_tokens,
                             pad_token_id=tok.pad_token_id if tok.pad_token_id is not None
                             else config.eos_token_id)
    new_ids = out[0, enc["input_ids"].shape[1]:].tolist()
    completion = tok.decode(new_ids, skip_special_tokens=False)
    n_params = sum(p.numel() for p in model.parameters())

    result = {
        "model_dir": str(args.model_dir),
        "model_type": config.model_type,
        "architectures": getattr(config, "architectures", None),
        "parameters": n_params,
        "dtype": args.dtype,
        "prompt": text,
        "prompt_ids": enc["input_ids"][0].tolist(),
        "new_ids": new_ids,
        "completion": completion,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        for k, v in result.items():
            print(f"{k}: {v!r}" if k in ("prompt", "completion") else f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
