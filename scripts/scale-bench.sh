#!/usr/bin/env bash
# The coordinator's scale benchmark, side by side: the same run with the allocator the
# `compsafe` binary uses (mimalloc) and with the system allocator, alternately, ROUNDS times.
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
  printf 'mimalloc: '
  "$out/scale-mimalloc" "$workers" "$units"
  printf 'system:   '
  "$out/scale-system" "$workers" "$units"
done
