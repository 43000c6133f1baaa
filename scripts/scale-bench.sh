#!/usr/bin/env bash
# The coordinator's scale benchmark, side by side, ROUNDS times in alternation: workers on Pull
# streams (as `compsafe worker` runs) and on unary calls, both with the allocator the `compsafe`
# binary uses (mimalloc), then on Pull streams with the system allocator.
#   scripts/scale-bench.sh [WORKERS] [UNITS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
workers="${1:-1000}"
units="${2:-100000}"
rounds="${3:-3}"
out=target/scale-bench
mkdir -p "$out"
cargo build --release -p compsafe-coordinator --example scale --features system-alloc
cp target/release/examples/scale "$out/scale-system"
cargo build --release -p compsafe-coordinator --example scale
cp target/release/examples/scale "$out/scale-mimalloc"
for _ in $(seq "$rounds"); do
  printf 'mimalloc, stream: '
  "$out/scale-mimalloc" "$workers" "$units" stream
  printf 'mimalloc, unary:  '
  "$out/scale-mimalloc" "$workers" "$units" next
  printf 'system, stream:   '
  "$out/scale-system" "$workers" "$units" stream
done
