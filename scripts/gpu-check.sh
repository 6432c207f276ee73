#!/usr/bin/env bash
# gpu-check.sh — compare inspectd's GPU execution providers with the CPU.
#
# On a machine with an NVIDIA GPU (a Jetson, or a desktop/server GPU) and a
# GPU build of ONNX Runtime, this builds inspectd (or uses --bin), runs
# `inspectd bench` on the CPU and on each provider — cuda, tensorrt fp32,
# tensorrt fp16, and tensorrt fp16 again to show the engine cache at work —
# on one bundle, compares each provider's heatmap with the CPU's
# ("rel diff" = max|Δ| / max(1, max|cpu|) ≤ 1e-3 for fp32, ≤ 1e-2 for fp16), prints a
# table and exits non-zero when a provider disagrees, fails, times out or
# is missing.
#
# With --cpu-only (any machine, e.g. CI without a GPU) it compares the CPU
# with a second CPU run through the same comparison path, still tries each
# GPU provider and reports it as SKIP with the library's own one-line reason;
# skips do not fail this mode.
#
# Usage:
#   INSPECTD_ONNXRUNTIME_LIB=/usr/local/lib/libonnxruntime.so scripts/gpu-check.sh [options]
#   scripts/gpu-check.sh --cpu-only [options]
# Options:
#   --bundle DIR      bundle to bench (default: a random-weight 256x256 bundle)
#   --bin PATH        inspectd binary to use (default: go build ./cmd/inspectd)
#   --iterations N    timed runs per stage (default 20)
#   --threads N       CPU threads (default 2)
#   --step-timeout S  seconds per step (default 1200: a first TensorRT build
#                     on a small Jetson takes minutes)
#   --work DIR        keep the binary, heatmaps, logs and engine cache here
#                     (default: a temporary directory, removed at exit)
#   --table FILE      also write the table as Markdown to FILE
#   --cpu-only        see above
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

bundle="" bin="" iterations=20 threads=2 step_timeout=1200 work="" table="" cpu_only=0
while [ $# -gt 0 ]; do
  case $1 in
    --bundle) bundle=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --iterations) iterations=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --step-timeout) step_timeout=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --table) table=$2; shift 2 ;;
    --cpu-only) cpu_only=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu-check: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [ "$cpu_only" = 0 ] && [ -z "${INSPECTD_ONNXRUNTIME_LIB:-}" ]; then
  echo "gpu-check: set INSPECTD_ONNXRUNTIME_LIB to the GPU build of libonnxruntime (see docs/jetson.md), or pass --cpu-only" >&2
  exit 2
fi

cd "$(dirname "$0")/.."
keep_hint="logs in $work"
if [ -z "$work" ]; then
  work=$(mktemp -d "${TMPDIR:-/tmp}/inspectd-gpu-check.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  keep_hint="rerun with --work DIR to keep the logs"
else
  mkdir -p "$work"
fi

# step NAME CMD...: run CMD under the step timeout; its output goes to
# $work/NAME.log; returns CMD's status (124 on timeout).
step() {
  local name=$1; shift
  timeout --kill-after=30 "$step_timeout" "$@" >"$work/$name.log" 2>&1
}

if [ -z "$bin" ]; then
  bin=$work/inspectd
  echo "gpu-check: building $bin"
  if ! step build go build -o "$bin" ./cmd/inspectd; then
    cat "$work/build.log" >&2
    exit 1
  fi
fi

echo "gpu-check: inspectd $("$bin" version 2>/dev/null | head -n1)"
echo "gpu-check: library ${INSPECTD_ONNXRUNTIME_LIB:-(default search)}"
if [ -r /proc/device-tree/model ]; then
  echo "gpu-check: board $(tr -d '\0' </proc/device-tree/model); $(head -n1 /etc/nv_tegra_release 2>/dev/null || true)"
fi
if command -v nvidia-smi >/dev/null 2>&1; then
  echo "gpu-check: $(nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader 2>/dev/null | head -n1 || true)"
fi

common=(--iterations "$iterations" --threads "$threads")
rows=()   # "name|provider|tol|median|wall|rel|result|note"
failed=0

# parse LOG: sets p_provider, p_median, p_rel from a bench log.
parse() {
  p_provider=$(sed -n 's/^inspectd bench: .* provider \(.*\), [0-9]* runs per stage.*/\1/p' "$1" | head -n1)
  p_median=$(awk '$1 == "localize" {print $3}' "$1" | head -n1)
  p_rel=$(sed -n 's/^heatmap vs .*, rel \([^,]*\), tolerance.*/\1/p' "$1" | head -n1)
}

# bench NAME TOL ARGS...: one provider run compared with the CPU heatmap.
bench() {
  local name=$1 tol=$2; shift 2
  local start end status=0 wall result note=""
  start=$(date +%s.%N)
  step "$name" "$bin" bench --bundle "$bundle_dir" "${common[@]}" \
    --compare-heatmap "$work/cpu.npy" --tolerance "$tol" "$@" || status=$?
  end=$(date +%s.%N)
  wall=$(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.1f", b - a}')
  parse "$work/$name.log"
  if [ "$status" = 0 ]; then
    result=ok
  elif [ "$status" = 124 ] || [ "$status" = 137 ]; then
    result=TIMEOUT note="over ${step_timeout}s"
  elif grep -q 'is not available in the onnxruntime library\|did not start:' "$work/$name.log"; then
    result=SKIP
    note=$(grep -o 'execution provider .*' "$work/$name.log" | head -n1 | cut -c1-400)
  elif grep -q DIFFERS "$work/$name.log"; then
    result=DIFFERS
  else
    result=FAIL note=$(tail -n1 "$work/$name.log" | cut -c1-300)
  fi
  case $result in
    ok) ;;
    SKIP) [ "$cpu_only" = 1 ] || failed=1 ;;
    *) failed=1 ;;
  esac
  rows+=("$name|${p_provider:--}|$tol|${p_median:--}|$wall|${p_rel:--}|$result|$note")
}

# The CPU reference (and the random bundle, unless --bundle).
start=$(date +%s.%N)
if [ -n "$bundle" ]; then
  bundle_dir=$bundle
  step cpu "$bin" bench --bundle "$bundle_dir" "${common[@]}" --dump-heatmap "$work/cpu.npy" || { cat "$work/cpu.log" >&2; exit 1; }
else
  bundle_dir=$work/bundle
  step cpu "$bin" bench --save-bundle "$bundle_dir" --size 256 "${common[@]}" --dump-heatmap "$work/cpu.npy" || { cat "$work/cpu.log" >&2; exit 1; }
fi
end=$(date +%s.%N)
parse "$work/cpu.log"
rows+=("cpu (reference)|$p_provider|-|$p_median|$(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.1f", b - a}')|-|ok|heatmap $work/cpu.npy")

if [ "$cpu_only" = 1 ]; then
  bench "cpu vs cpu" 1e-3 --provider cpu
fi
bench "cuda fp32" 1e-3 --provider cuda
bench "tensorrt fp32" 1e-3 --provider tensorrt --engine-cache-dir "$work/engines"
bench "tensorrt fp16" 1e-2 --provider tensorrt --tensorrt-fp16 --engine-cache-dir "$work/engines"
bench "tensorrt fp16 cached" 1e-2 --provider tensorrt --tensorrt-fp16 --engine-cache-dir "$work/engines"

header="run|provider|tolerance|localize median ms|wall s|rel diff|result|note"
{
  printf '%s\n' "$header"
  printf '%s\n' "${rows[@]}"
} | awk -F'|' '{
    n = NF > n ? NF : n
    for (i = 1; i <= NF; i++) { cell[NR, i] = $i; if (i < 8 && length($i) > w[i]) w[i] = length($i) }
    rows = NR
  } END {
    for (r = 1; r <= rows; r++) {
      line = ""
      for (i = 1; i <= 8; i++) line = line sprintf(i < 8 ? "%-" w[i] "s  " : "%s", cell[r, i])
      print line
    }
  }'

if [ -n "$table" ]; then
  {
    echo "| run | provider | tolerance | localize median ms | wall s | rel diff | result | note |"
    echo "|---|---|---|---|---|---|---|---|"
    for r in "${rows[@]}"; do echo "| ${r//|/ | } |"; done
  } >"$table.tmp" && mv "$table.tmp" "$table"
  echo "gpu-check: table written to $table"
fi

if [ "$failed" != 0 ]; then
  echo "gpu-check: FAILED ($keep_hint)" >&2
  exit 1
fi
echo "gpu-check: ok"
