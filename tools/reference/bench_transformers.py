#!/usr/bin/env python3
"""CPU throughput baseline for transformers greedy generation, to compare the engine against.

Runs (a) one prompt at a time, generate(do_sample=False, max_new_tokens=100), and
(b) batches of 32 prompts, left padded, same settings, then prints one JSON line:

  {"one_at_a_time_prompts_per_s": .., "batched_prompts_per_s": .., "n_prompts": ..,
   "threads": .., ...}

EOS never stops generation: the model's generation_config.eos_token_id is set to
None and generate() gets eos_token_id=None, so every prompt gets exactly
max_new_tokens new tokens (EOS, if produced, is an ordinary token). This keeps
the amount of work identical across runs and engines.

Usage:
  python3 tools/reference/bench_transformers.py MODEL_DIR PROMPTS_FILE
         [--threads 2] [--batch-size 32] [--max-new-tokens 100] [--limit N]
         [--chat] [--attn sdpa|eager] [--skip-single]

PROMPTS_FILE has one prompt per line (blank lines are skipped);
tools/reference/bench_prompts.txt is a ready-made one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("prompts_file", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=100)
    ap.add_argument("--limit", type=int, default=None, help="use only the first N prompts")
    ap.add_argument("--chat", action="store_true", help="wrap each prompt with the chat template")
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--skip-single", action="store_true", help="only run the batched pass")
    args = ap.parse_args()

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    prompts = [ln.strip() for ln in args.prompts_file.read_text(encoding="utf-8").splitlines()]
    prompts = [p for p in prompts if p]
    if args.limit:
        prompts = prompts[: args.limit]
    if not prompts:
        print("no prompts", file=sys.stderr)
        return 2

    tok = AutoTokenizer.from_pretrained(args.model_dir)
    tok.padding_side = "left"
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(
        args.model_dir, dtype=getattr(torch, args.dtype), attn_implementation=args.attn)
    model.eval()
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = tok.pad_token_id

    if args.chat:
        texts = [tok.apply_chat_template([{"role": "user", "content": p}],
                                         add_generation_prompt=True, tokenize=False)
                 for p in prompts]
        add_special = False
    else:
        texts, add_special = prompts, True

    gen_kwargs = dict(do_sample=False, max_new_tokens=args.max_new_tokens,
                      eos_token_id=None, pad_token_id=tok.pad_token_id)

    def run(batch_texts: list[str]) -> int:
        enc = tok(batch_texts, return_tensors="pt", padding=True, add_special_tokens=add_special)
        with torch.inference_mode():
            out = model.generate(**enc, **gen_kwargs)
        new = out.shape[1] - enc["input_ids"].shape[1]
        assert new == args.max_new_tokens, new
        return new * len(batch_texts)

    run(texts[:1])  # warm-up

    result: dict = {}
    if not args.skip_single:
        t0 = time.perf_counter()
        n_tok = sum(run([t]) for t in texts)
        dt = time.perf_counter() - t0
        result["one_at_a_time_prompts_per_s"] = len(texts) / dt
        result["one_at_a_time_new_tokens_per_s"] = n_tok / dt
        result["one_at_a_time_seconds"] = dt

    t0 = time.perf_counter()
    n_tok = sum(run(texts[i:i + args.batch_size]) for i in range(0, len(texts), args.batch_size))
    dt = time.perf_counter() - t0
    result["batched_prompts_per_s"] = len(texts) / dt
    result["batched_new_tokens_per_s"] = n_tok / dt
    result["batched_seconds"] = dt

    result.update({
        "n_prompts": len(texts),
        "threads": args.threads,
        "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens,
        "eos_stops_generation": False,
        "chat_template": args.chat,
        "attn_implementation": args.attn,
        "dtype": args.dtype,
        "device": "cpu",
        "model_dir": str(args.model_dir),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    })
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
