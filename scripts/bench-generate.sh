#!/usr/bin/env bash
# Generation throughput on the same checkpoint, prompts, machine and thread count:
#   (a) transformers generate, one prompt at a time (the seed's method),
#   (b) transformers generate, batched (batch 32, left padding),
#   (c) compsafe batched generation,
# 100 new tokens each, EOS never stopping (c also reports early stopping separately).
# Needs python3 with torch + transformers for (a) and (b) (dev tooling; CI does not run this).
#
# usage: scripts/bench-generate.sh [MODEL_DIR] [PROMPTS] [THREADS] [LIMIT]
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-engine/tests/fixtures/hf/llama-gqa}
prompts=${2:-tools/reference/bench_prompts.txt}
threads=${3:-2}
limit=${4:-64}

cargo build --release -q -p compsafe-engine --example bench_generate
hf=$(python3 tools/reference/bench_transformers.py "$model" "$prompts" --threads "$threads" --limit "$limit" --chat | tail -n 1)
cs=$(RAYON_NUM_THREADS=$threads target/release/examples/bench_generate "$model" "$prompts" --limit "$limit" --new 100 --batch 32)
python3 - "$hf" "$cs" <<'PY'
import json, sys
hf, cs = json.loads(sys.argv[1]), json.loads(sys.argv[2])
one, bat, ours = hf["one_at_a_time_prompts_per_s"], hf["batched_prompts_per_s"], cs["batched_prompts_per_s"]
print(f"threads {cs['threads']}, {cs['n_prompts']} prompts, 100 new tokens")
print(f"(a) transformers one at a time : {one:8.2f} prompts/s")
print(f"(b) transformers batched (32)  : {bat:8.2f} prompts/s   ({bat/one:5.1f}x a)")
print(f"(c) compsafe batched (32)      : {ours:8.2f} prompts/s   ({ours/bat:5.2f}x b, {ours/one:5.1f}x a)")
print(f"    compsafe with EOS stop     : {cs['early_stop_prompts_per_s']:8.2f} prompts/s   ({cs['early_stop_tokens_generated']} tokens instead of {cs['batched_tokens_generated']})")
PY
