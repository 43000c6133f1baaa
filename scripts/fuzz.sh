#!/usr/bin/env bash
# Runs each fuzz target for SECONDS (default 60) or until RUNS executions (default 10 million),
# whichever comes first, starting from the committed seeds in fuzz/seeds/<target>. Prints the
# executions and crashes per target and writes them to target/reliability/fuzz-<target>.json.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]      targets: spec suite safetensors gguf
#
# Needs cargo-fuzz (installed from crates.io when missing). Crashing inputs are kept in
# fuzz/artifacts/<target>/; fix the bug, then add the input to fuzz/seeds/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(spec suite safetensors gguf)
fi
runs="${FUZZ_RUNS:-10000000}"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
# The instrumentation flags cargo-fuzz passes need a nightly compiler or this switch.
export RUSTC_BOOTSTRAP=1
out="$PWD/target/reliability"
mkdir -p "$out"
status=0
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  log="$out/fuzz-$t.log"
  set +e
  (cd fuzz && cargo fuzz run --sanitizer none --release "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$secs" -runs="$runs" -max_len=65536 -rss_limit_mb=4096 \
    -print_final_stats=1) >"$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | awk '{print $2}' | tail -1 || true)
  took=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | awk '{print $5}' | tail -1 || true)
  crashes=$(find "fuzz/artifacts/$t" -type f 2>/dev/null | wc -l | tr -d ' ')
  printf '{"target": "%s", "executions": %s, "seconds": %s, "crashes": %s, "exit": %s}\n' \
    "$t" "${execs:-0}" "${took:-$secs}" "$crashes" "$rc" | tee "$out/fuzz-$t.json"
  if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then status=1; fi
done
exit "$status"
