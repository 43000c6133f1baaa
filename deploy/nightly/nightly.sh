#!/usr/bin/env bash
# Nightly compression-safety regression: submit the sweep to the coordinator, wait for it,
# fetch its reports, gate the new report.json against the last accepted baseline.
#
# Exit status: 0 the gate passed; 1 the gate failed (junit.xml names the failing cells);
# 2 bad input (spec, gate, token); 3 infrastructure (coordinator unreachable, sweep failed).
#
# Read by compsafe itself:
#   COMPSAFE_COORDINATOR  coordinator URL (default http://127.0.0.1:7070)
#   COMPSAFE_TOKEN or COMPSAFE_TOKEN_FILE   the bearer token
#   COMPSAFE_TLS_CA       CA certificate for https:// coordinators
# Read by this script:
#   NIGHTLY_SPEC      sweep spec (default: nightly.toml beside this script)
#   NIGHTLY_GATE      gate rules (default: gate.toml beside this script)
#   NIGHTLY_BASELINE  the last accepted report.json (default: baseline/report.json here)
#   NIGHTLY_OUT       output folder (default: out/nightly-<UTC time>)
#   NIGHTLY_ACCEPT    1: when the gate passes, the new report becomes the baseline
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
spec="${NIGHTLY_SPEC:-$here/nightly.toml}"
gate="${NIGHTLY_GATE:-$here/gate.toml}"
baseline="${NIGHTLY_BASELINE:-$here/baseline/report.json}"
out="${NIGHTLY_OUT:-out/nightly-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"

# A spec that does not parse, or names files the coordinator cannot see, exits 2 here.
id=$(compsafe submit "$spec")
echo "nightly: sweep $id submitted from $spec"
# JSON lines of progress; exits 2 or 3 when the sweep fails or is cancelled.
compsafe watch "$id" --json >"$out/progress.jsonl"
compsafe report "$id" --out "$out"

if [[ -f $baseline ]]; then
    base="$baseline"
else
    # First night: the report is gated against its own reference only.
    echo "nightly: no accepted baseline at $baseline; gating against this sweep's reference"
    base="$out/report.json"
fi

status=0
compsafe diff "$base" "$out/report.json" --gate "$gate" --junit "$out/junit.xml" \
    >"$out/gate.txt" || status=$?
cat "$out/gate.txt"

if [[ $status -eq 0 && ${NIGHTLY_ACCEPT:-0} == 1 ]]; then
    mkdir -p "$(dirname "$baseline")"
    cp "$out/report.json" "$baseline.tmp"
    mv "$baseline.tmp" "$baseline"
    echo "nightly: accepted as the new baseline ($baseline)"
fi
echo "nightly: gate exit status $status; reports in $out (report.html, junit.xml)"
exit "$status"
