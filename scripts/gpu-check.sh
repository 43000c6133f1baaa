#!/usr/bin/env bash
# The GPU check: run once per visit to a GPU machine, in a copy of the repository with the
# packed CUDA build of scripts/build-cuda.sh in dist/cuda/. The machine needs no Rust and no
# network: python3 with torch + transformers (and the CUDA 13 libraries of its nvidia wheels)
# and an NVIDIA driver. It finishes within GPU_CHECK_BUDGET_S (default 450 s), writes every
# log into one folder ($OUT, else out/gpu-check) and prints a table last:
#
#   1. engine tests with per-device cases (engine/tests/devices.rs) pass with cuda:0 required;
#   2. the quickstart sweep on cuda:0 decides every prompt as the CPU run does for f32-computed
#      variants, and within 2% of the prompts for bf16 and GGUF variants
#      (tools/gpu/compare_quickstart.py says why);
#   3. decode throughput of a Llama-3-8B-shaped bf16 model with random weights made on the GPU
#      (engine/examples/throughput.rs) against the HBM roofline, and transformers' generate on
#      the same shape, dtype and card (tools/gpu/hf_throughput.py).
#
# Knobs (for dry runs on a CPU machine): COMPSAFE_BIN_DIR (a folder holding unpacked compsafe,
# devices and throughput binaries instead of dist/cuda), GPU_CHECK_DEVICE (cuda:0),
# GPU_CHECK_SHAPE (llama3-8b), GPU_CHECK_BATCHES (1,16,64), GPU_CHECK_SPEC
# (examples/quickstart.toml), GPU_CHECK_BUDGET_S (450).
#
# usage: scripts/gpu-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=${OUT:-$root/out/gpu-check}
device=${GPU_CHECK_DEVICE:-cuda:0}
shape=${GPU_CHECK_SHAPE:-llama3-8b}
batches=${GPU_CHECK_BATCHES:-1,16,64}
spec=${GPU_CHECK_SPEC:-examples/quickstart.toml}
budget=${GPU_CHECK_BUDGET_S:-450}
start=$(date +%s)
deadline=$((start + budget))
mkdir -p "$out"
rm -rf "$out/quickstart-cpu" "$out/quickstart-gpu" "$out/steps.tsv"
exec > >(tee -a "$out/gpu-check.log") 2>&1

say() { printf '[gpu-check %3ds] %s\n' "$(($(date +%s) - start))" "$*"; }

# step NAME STATUS SECONDS DETAIL: one row of the closing table.
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$out/steps.tsv"; say "$1: $2 ($4)"; }

# The seconds a step may take: its own cap, or what is left before the deadline less a reserve
# for the steps after it.
allow() {
  local cap=$1 reserve=${2:-15} left
  left=$((deadline - $(date +%s) - reserve))
  ((left < cap)) && cap=$left
  # timeout 0 would mean no limit at all: a step past the deadline gets 5 s and fails.
  ((cap < 5)) && cap=5
  echo "$cap"
}

# --- binaries -------------------------------------------------------------------------------
bin=$(mktemp -d /tmp/compsafe-gpu-check.XXXXXX)
trap 'rm -rf "$bin"' EXIT
if [[ -n ${COMPSAFE_BIN_DIR:-} ]]; then
  for b in compsafe devices throughput; do cp "$COMPSAFE_BIN_DIR/$b" "$bin/$b"; done
else
  dist=$root/dist/cuda
  if [[ ! -f $dist/BUILD.txt ]]; then
    echo "gpu-check: $dist/BUILD.txt missing: run scripts/build-cuda.sh and carry dist/cuda" >&2
    exit 2
  fi
  cp "$dist/BUILD.txt" "$out/BUILD.txt"
  for b in compsafe devices throughput; do
    python3 - "$dist/$b.xz" "$bin/$b" <<'PY'
import hashlib, lzma, shutil, sys
src, dst = sys.argv[1], sys.argv[2]
with lzma.open(src) as f, open(dst, "wb") as g:
    shutil.copyfileobj(f, g)
PY
    want=$(awk -v n="$b" '$1 == n && $2 == "stripped" { print $NF }' "$dist/BUILD.txt")
    got=$(python3 -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$bin/$b")
    if [[ $want != "$got" ]]; then
      echo "gpu-check: $b does not match the sha256 in BUILD.txt" >&2
      exit 2
    fi
  done
fi
chmod +x "$bin"/*

# --- loader and environment -----------------------------------------------------------------
if [[ $device == cuda* ]]; then
  # CUDA 13 user-space libraries from the nvidia wheels of python3 (torch's); the driver's
  # libcuda.so.1 is left to the system loader. Never a toolkit stubs or compat folder.
  nvlib=$(python3 -c "import nvidia, os, glob; print(next(iter(glob.glob(os.path.join(list(nvidia.__path__)[0], 'cu13', 'lib'))), ''))" 2>/dev/null || true)
  if [[ -z $nvlib ]]; then
    for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
      if [[ -d $d ]]; then
        nvlib=$d
        break
      fi
    done
  fi
  export LD_LIBRARY_PATH="${nvlib}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  if ! ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1 '; then
    for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu /usr/lib64; do
      if [[ -e $d/libcuda.so.1 ]]; then
        export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$d"
        break
      fi
    done
  fi
  # The PTX of candle's kernels is compiled by the driver on first use; keep it for the
  # processes after the first.
  export CUDA_CACHE_PATH=${CUDA_CACHE_PATH:-/tmp/compsafe-cuda-cache}
  export CUDA_CACHE_MAXSIZE=${CUDA_CACHE_MAXSIZE:-4294967296}
  export COMPSAFE_REQUIRE_CUDA=1
fi
export COMPSAFE_REPO_ROOT=$root
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host: $(hostname)"
  echo "device: $device"
  echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
  nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total,clocks.max.memory --format=csv 2>&1 || true
  python3 -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__)' 2>&1 || true
  echo "nproc: $(nproc)"
} >"$out/env.txt" 2>&1
for b in compsafe devices throughput; do
  echo "== ldd $b"
  ldd "$bin/$b" 2>&1 | grep -E 'cuda|cublas|curand|nvrtc|not found' || true
done >"$out/ldd.txt"
say "environment in $out/env.txt, libraries in $out/ldd.txt"
if grep -q 'not found' "$out/ldd.txt"; then
  record "libraries" FAIL 0 "$(grep -m1 'not found' "$out/ldd.txt" | tr -s ' \t' ' ')"
fi

# --- doctor ---------------------------------------------------------------------------------
t=$(date +%s)
if timeout 60 "$bin/compsafe" doctor >"$out/doctor.txt" 2>&1 && grep -q "device ${device}" "$out/doctor.txt"; then
  record "doctor" PASS $(($(date +%s) - t)) "$(grep "device ${device}" "$out/doctor.txt" | head -1)"
else
  record "doctor" FAIL $(($(date +%s) - t)) "$(tail -1 "$out/doctor.txt")"
fi

# --- the CPU run of the quickstart, in the background while the GPU works -------------------
cpu_workers=$(($(nproc) / 2))
((cpu_workers < 1)) && cpu_workers=1
((cpu_workers > 8)) && cpu_workers=8
cpu_limit=$(allow 360 60)
say "quickstart on the cpu (${cpu_workers} workers, up to ${cpu_limit} s) in the background"
(
  rc=0
  t=$(date +%s)
  timeout "$cpu_limit" "$bin/compsafe" run "$spec" --out "$out/quickstart-cpu" --device cpu \
    --workers "$cpu_workers" --json >"$out/quickstart-cpu.log" 2>&1 || rc=$?
  echo "$rc $(($(date +%s) - t))" >"$out/quickstart-cpu.rc"
) &
cpu_pid=$!

# --- 1. engine tests ------------------------------------------------------------------------
t=$(date +%s)
lim=$(allow 180 200)
rc=0
(cd "$root" && timeout "$lim" "$bin/devices" --test-threads=4) >"$out/engine-tests.log" 2>&1 || rc=$?
line=$(grep -E '^test result:' "$out/engine-tests.log" | tail -1 || true)
if ((rc == 0)); then
  record "engine tests (cpu + $device)" PASS $(($(date +%s) - t)) "${line:-no result line}"
else
  record "engine tests (cpu + $device)" FAIL $(($(date +%s) - t)) "exit $rc; ${line:-see engine-tests.log}"
fi

# --- 2. quickstart on the device, compared with the CPU run ---------------------------------
t=$(date +%s)
lim=$(allow 180 150)
rc=0
timeout "$lim" "$bin/compsafe" run "$spec" --out "$out/quickstart-gpu" --device "$device" \
  --json >"$out/quickstart-gpu.log" 2>&1 || rc=$?
gpu_s=$(($(date +%s) - t))
say "quickstart on $device: exit $rc in ${gpu_s} s; waiting for the cpu run"
wait "$cpu_pid" || true
read -r cpu_rc cpu_s <"$out/quickstart-cpu.rc" || { cpu_rc=1; cpu_s=0; }
if ((rc != 0 && rc != 1)) || ((cpu_rc != 0 && cpu_rc != 1)); then
  # Exit 1 is a failed safety gate: the run itself is fine.
  record "quickstart $device vs cpu" FAIL $((gpu_s + cpu_s)) "exit $rc on $device, $cpu_rc on cpu (see quickstart-*.log)"
else
  crc=0
  python3 tools/gpu/compare_quickstart.py "$out/quickstart-cpu" "$out/quickstart-gpu" \
    --json "$out/quickstart-compare.json" >/dev/null 2>"$out/quickstart-compare.err" || crc=$?
  detail=$(python3 - "$out/quickstart-compare.json" <<'PY' 2>/dev/null || echo "comparison failed (see quickstart-compare.err)"
import json, sys
r = json.load(open(sys.argv[1]))
names = {"f32": "f32", "gguf": "gguf", "half": "bf16/f16"}
parts = [f"{names.get(c, c)}: {s['differ']} of {s['decisions']} differ" for c, s in sorted(r["per_class"].items())]
print("; ".join(parts) + f" (tolerance bf16 {r['half_tolerance']:.0%}, gguf {r['gguf_tolerance']:.0%})")
PY
)
  if ((crc == 0)); then
    record "quickstart $device vs cpu" PASS "$gpu_s" "$detail; cpu run ${cpu_s} s"
  else
    record "quickstart $device vs cpu" FAIL "$gpu_s" "$detail"
  fi
fi

# --- 3. throughput: compsafe, then transformers on the same card ----------------------------
t=$(date +%s)
lim=$(allow 150 100)
rc=0
timeout "$lim" "$bin/throughput" --device "$device" --shape "$shape" --batches "$batches" \
  >"$out/throughput-compsafe.jsonl" 2>"$out/throughput-compsafe.log" || rc=$?
n=$(grep -c '^{' "$out/throughput-compsafe.jsonl" || true)
if ((rc == 0)); then
  record "throughput compsafe" PASS $(($(date +%s) - t)) "$n batch sizes ($shape)"
else
  record "throughput compsafe" FAIL $(($(date +%s) - t)) "exit $rc after $n batch sizes; $(tail -1 "$out/throughput-compsafe.log")"
fi
t=$(date +%s)
lim=$(allow 180 10)
rc=0
hf_device=cuda
[[ $device == cpu ]] && hf_device=cpu
timeout "$lim" python3 tools/gpu/hf_throughput.py --device "$hf_device" --shape "$shape" \
  --batches "$batches" >"$out/throughput-hf.jsonl" 2>"$out/throughput-hf.log" || rc=$?
n=$(grep -c '^{' "$out/throughput-hf.jsonl" || true)
if ((rc == 0)); then
  record "throughput transformers" PASS $(($(date +%s) - t)) "$n batch sizes ($shape)"
else
  record "throughput transformers" FAIL $(($(date +%s) - t)) "exit $rc after $n batch sizes; $(tail -1 "$out/throughput-hf.log")"
fi

say "done in $(($(date +%s) - start)) s; logs in $out"
python3 tools/gpu/summary.py "$out" | tee "$out/summary.txt"
if grep -q $'\tFAIL\t' "$out/steps.tsv"; then
  exit 1
fi
