#!/usr/bin/env bash
# Times inspectd's localise stage (ONNX Runtime) and the same network in
# PyTorch on the same weights, and prints the speed ratio.
# Usage: bench/compare.sh [THREADS] [ITERATIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${1:-2}"
iterations="${2:-50}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
bin/inspectd bench --json --threads "$threads" --iterations "$iterations" --save-bundle "$tmp/bundle" --localize centres >"$tmp/go.json"
/usr/bin/python3 bench/torch_reference.py --bundle "$tmp/bundle" --threads "$threads" --iterations "$iterations" --json >"$tmp/torch.json"
/usr/bin/python3 - "$tmp/go.json" "$tmp/torch.json" <<'PY'
import json, sys
go = json.load(open(sys.argv[1]))
pt = json.load(open(sys.argv[2]))
g, t = go["stages"]["localize"]["median_ms"], pt["localize"]["median_ms"]
b = go["stages"]["backbone"]["median_ms"]
print(f"input {go['width']}x{go['height']}, {go['threads']} threads (medians)")
print(f"  inspectd backbone only      {b:8.2f} ms")
print(f"  inspectd align              {go['stages'].get('align', {}).get('median_ms', float('nan')):8.2f} ms")
print(f"  inspectd localize (ORT)     {g:8.2f} ms   ({g / b:.2f}x backbone)")
print(f"  PyTorch {pt['torch']:<10} localize {t:8.2f} ms")
print(f"  speed-up over PyTorch       {t / g:8.2f}x")
PY
