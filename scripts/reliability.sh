#!/usr/bin/env bash
# The reliability suite in full mode, then docs/RELIABILITY.md from its figures:
# fault injection (>= 100 worker kills, >= 10 coordinator restarts), the bad-input corpus,
# and each fuzz target for FUZZ_SECONDS (default 1800) or 10 million executions.
#
#   scripts/reliability.sh [FUZZ_SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
fuzz_secs="${1:-1800}"
COMPSAFE_FAULTS=full cargo test --release --workspace --test faults -- --nocapture
cargo test --release --workspace --test bad_input_corpus
scripts/fuzz.sh "$fuzz_secs" || echo "fuzzing found crashes: see target/reliability/fuzz-*.log" >&2
python3 tools/reference/reliability_table.py > docs/RELIABILITY.md
echo "wrote docs/RELIABILITY.md"
