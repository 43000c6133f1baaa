#!/usr/bin/env bash
# Time to derive gptq:w4g128 on the Llama-3.2-1B shape (random weights), compsafe against
# llm-compressor, same shape, token count and thread count. The full setting (16 layers, 128
# sequences of 512 tokens) takes hours on two cores; run it on a quiet machine.
# Needs the llm-compressor venv of tools/reference/README.md (dev tooling; CI does not run this).
#
# usage: scripts/bench-gptq.sh [LAYERS] [SEQS] [LEN] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
layers=${1:-16}
seqs=${2:-128}
len=${3:-512}
threads=${4:-2}
py=${PYTHON:-/work/venvs/calib/bin/python}

cargo build --release -q -p compsafe-engine --example bench_gptq
ours=$(RAYON_NUM_THREADS=$threads taskset -c 0-$((threads - 1)) \
    target/release/examples/bench_gptq --layers "$layers" --seqs "$seqs" --len "$len" | tail -n 1)
theirs=$(taskset -c 0-$((threads - 1)) "$py" tools/reference/bench_llmcompressor_gptq.py \
    --layers "$layers" --seqs "$seqs" --len "$len" --threads "$threads" | tail -n 1)
echo "compsafe:       $ours"
echo "llm-compressor: $theirs"
