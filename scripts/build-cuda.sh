#!/usr/bin/env bash
# Builds the CUDA (sm_90: H100/H200) build of compsafe and what scripts/gpu-check.sh runs
# beside it, and packs them small enough to copy to a GPU machine (at most 64 MiB in all):
#
#   dist/cuda/compsafe.xz      the `compsafe` binary, --features cuda
#   dist/cuda/devices.xz       engine/tests/devices.rs (per-device test cases) with cuda
#   dist/cuda/throughput.xz    engine/examples/throughput.rs with cuda
#   dist/cuda/BUILD.txt        commit, toolchain, sizes and sha256 of each binary
#
# Uses the toolchain of scripts/cuda-toolchain.sh (run it first; this script runs it when
# .cuda/env.sh is missing) and its own target folder, target-cuda/, so the CPU build in
# target/ is never touched. The libcuda stub the linker needs is not shipped: the binaries
# load the GPU machine's libcuda.so.1 from its driver and the CUDA 13 libraries (cuBLAS,
# cuRAND, runtime) from LD_LIBRARY_PATH, which gpu-check.sh points at the nvidia wheels of
# that machine's python3.
#
# usage: scripts/build-cuda.sh   (JOBS=N caps cargo's parallel jobs; COMPSAFE_CUDA_DIR and
#                               CARGO_TARGET_DIR override .cuda and target-cuda)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
dir=${COMPSAFE_CUDA_DIR:-$root/.cuda}
dist=$root/dist/cuda
limit=$((64 * 1024 * 1024))

[[ -f $dir/env.sh ]] || scripts/cuda-toolchain.sh
# shellcheck source=/dev/null
source "$dir/env.sh"
export CUDA_COMPUTE_CAP=90     # no GPU here to ask; 90 builds sm_90a (H100, H200)
export CUDAFORGE_THREADS=${CUDAFORGE_THREADS:-2}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target-cuda}
jobs=()
[[ -n ${JOBS:-} ]] && jobs=(--jobs "$JOBS")

start=$(date +%s)
# One cargo invocation for the three targets: every target then shares one feature
# resolution, so candle's CUDA kernels (most of the build) are compiled once.
artifacts=$(cargo build --release --locked "${jobs[@]}" -p compsafe -p compsafe-engine \
  --features compsafe/cuda,compsafe-engine/cuda \
  --bin compsafe --example throughput --test devices --message-format=json-render-diagnostics |
  python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["target"]["name"], m["executable"])
')
build_s=$(($(date +%s) - start))
exe() { awk -v n="$1" '$1 == n { print $2 }' <<<"$artifacts" | tail -1; }
compsafe=$(exe compsafe)
throughput=$(exe throughput)
devices=$(exe devices)
for f in "$compsafe" "$throughput" "$devices"; do
  if [[ -z $f || ! -x $f ]]; then
    echo "build-cuda: an executable is missing from cargo's output:" >&2
    echo "$artifacts" >&2
    exit 3
  fi
done

rm -rf "$dist"
mkdir -p "$dist"
pack() {
  local name=$1 src=$2 tmp
  tmp=$(mktemp -d)
  cp "$src" "$tmp/$name"
  strip "$tmp/$name"
  # A binary must not carry a run path into the build machine's toolchain or link folder.
  if readelf -d "$tmp/$name" | grep -qE 'R(UN)?PATH'; then
    echo "build-cuda: $name has a run path: $(readelf -d "$tmp/$name" | grep -E 'R(UN)?PATH')" >&2
    exit 3
  fi
  local size sha
  size=$(stat -c %s "$tmp/$name")
  sha=$(sha256sum "$tmp/$name" | cut -d' ' -f1)
  xz -T1 -6 -c "$tmp/$name" >"$dist/$name.xz"
  rm -rf "$tmp"
  awk -v n="$name" -v s="$size" -v x="$(stat -c %s "$dist/$name.xz")" -v h="$sha" \
    'BEGIN { printf "%-12s stripped %6.1f MiB  xz %5.1f MiB  sha256 %s\n", n, s / 1048576, x / 1048576, h }' \
    >>"$dist/BUILD.txt"
}
{
  echo "compsafe CUDA build (sm_90, CUDA 13.0 from PyPI wheels)"
  echo "commit  $(git rev-parse HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "date    $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "rustc   $(rustc --version)"
  echo "nvcc    $(nvcc --version | sed -n 's/.*\(release [0-9.]*, V[0-9.]*\).*/\1/p')"
  echo "build   ${build_s} s (cargo, this run)"
  echo "needs   $(readelf -d "$compsafe" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | tr '\n' ' ')"
} >"$dist/BUILD.txt"
pack compsafe "$compsafe"
pack throughput "$throughput"
pack devices "$devices"
shopt -s nullglob
stubs=("$dist"/*libcuda*)
shopt -u nullglob
if ((${#stubs[@]})); then
  echo "build-cuda: a libcuda file reached $dist" >&2
  exit 3
fi

total=$(du -cb "$dist"/* | tail -1 | cut -f1)
cat "$dist/BUILD.txt"
awk -v t="$total" 'BEGIN { printf "dist/cuda: %.1f MiB in all (limit 64 MiB)\n", t / 1048576 }'
if ((total > limit)); then
  echo "build-cuda: dist/cuda exceeds 64 MiB" >&2
  exit 1
fi
