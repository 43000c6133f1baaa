#!/usr/bin/env python3
"""transformers `generate` throughput on the model shape engine/examples/throughput.rs uses.

Random weights (transformers' own initialisation, made on the device: nothing downloaded),
same shape (tools/gpu/shapes.json), dtype, batch sizes, prompt length and number of new
tokens, greedy, KV cache on, no early stop. Prints one JSON object per batch on stdout with
the same keys as the Rust benchmark, so scripts/gpu-check.sh can put them side by side:

  tokens_per_s         batch x new tokens / wall time of generate (prefill included)
  decode_tokens_per_s  the decode steps alone (the run minus a one-token run)

usage: tools/gpu/hf_throughput.py [--shape llama3-8b|tiny] [--dtype bf16|f16|f32]
                                  [--batches 1,16,64] [--prompt 128] [--new 128]
                                  [--device cuda|cpu] [--attn sdpa|eager]
"""

import argparse
import json
import os
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", default="llama3-8b")
    ap.add_argument("--tiny", action="store_true", help="same as --shape tiny")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "f16", "f32"])
    ap.add_argument("--batches", default="1,16,64")
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    args = ap.parse_args()
    if args.tiny:
        args.shape = "tiny"
    if args.new < 2:
        ap.error("--new must be at least 2")

    import torch
    import transformers
    from transformers import LlamaConfig, LlamaForCausalLM

    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "shapes.json")) as f:
        shapes = json.load(f)
    if args.shape not in shapes:
        ap.error(f"--shape {args.shape}: not in tools/gpu/shapes.json")
    raw = dict(shapes[args.shape])
    raw.pop("architectures", None)
    raw.pop("model_type", None)
    dtype = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}[args.dtype]
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(0)

    config = LlamaConfig(**raw)
    config._attn_implementation = args.attn
    t = time.perf_counter()
    prev = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with device:
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(prev)
    model = model.to(device=device, dtype=dtype).eval()
    params = sum(p.numel() for p in model.parameters())
    if device.type == "cuda":
        torch.cuda.synchronize()
        gpu = torch.cuda.get_device_name(device)
    else:
        gpu = f"{torch.get_num_threads()} threads"
    print(
        f"{args.shape} model: {params / 1e9:.2f} B parameters in {args.dtype}, made in "
        f"{time.perf_counter() - t:.1f} s on {device} ({gpu}); torch {torch.__version__}, "
        f"transformers {transformers.__version__}, attention {args.attn}",
        file=sys.stderr,
    )

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def run(ids, new):
        sync()
        t = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=new,
                min_new_tokens=new,
                do_sample=False,
                num_beams=1,
                use_cache=True,
                pad_token_id=0,
            )
        sync()
        secs = time.perf_counter() - t
        made = out.shape[1] - ids.shape[1]
        if made != new:
            raise SystemExit(f"generate made {made} tokens, expected {new}")
        return secs

    gen = torch.Generator().manual_seed(1)
    vocab = config.vocab_size
    warm = torch.randint(1, vocab, (1, 8), generator=gen).to(device)
    run(warm, 3)
    print(
        f"{'batch':>6} {'tokens/s':>12} {'decode tok/s':>14} {'step ms':>9}",
        file=sys.stderr,
    )
    for batch in [int(b) for b in args.batches.split(",")]:
        ids = torch.randint(1, vocab, (batch, args.prompt), generator=gen).to(device)
        run(ids, 2)
        prefill_s = run(ids, 1)
        total_s = run(ids, args.new)
        decode_s = max(total_s - prefill_s, 1e-9)
        steps = args.new - 1
        row = {
            "engine": "transformers",
            "device": str(device),
            "gpu": gpu,
            "shape": args.shape,
            "dtype": args.dtype,
            "attention": args.attn,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "batch": batch,
            "prompt_tokens": args.prompt,
            "new_tokens": args.new,
            "total_s": total_s,
            "prefill_s": prefill_s,
            "tokens_per_s": batch * args.new / total_s,
            "decode_tokens_per_s": batch * steps / decode_s,
            "step_ms": decode_s / steps * 1e3,
        }
        print(
            f"{batch:>6} {row['tokens_per_s']:>12.1f} {row['decode_tokens_per_s']:>14.1f} "
            f"{row['step_ms']:>9.3f}",
            file=sys.stderr,
        )
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
