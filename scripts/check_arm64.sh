#!/usr/bin/env bash
# make check-arm64: proves the arm64 edge binary (bin/linux-arm64/inspectd,
# make build-arm64) without arm64 hardware. It runs under Debian's
# qemu-user-static with the arm64 sysroot as its root for libraries
# (qemu-aarch64-static -L .deps/sysroot-arm64; binfmt_misc is not needed):
# `version` (must say linux/arm64, edge flavour), `check-config`, `bench
# --iterations 3` on the demo bundle, and `run --max-parts N` (ARM64_CHECK_PARTS,
# default 12) on the demo replay with the demo bundle, on an emulated
# Cortex-A76 (QEMU_CPU overrides); then the same run with
# the amd64 edge binary (bin/inspectd). Both runs archive every part (the
# archive's JSON holds the full-precision score); their verdicts must be
# equal and their scores within 1e-3. Prints a table, one timing line per
# step and a PASS/FAIL line; exits 1 on failure.
#
# Every run also checks the comparison itself: the arm64 results with one
# score moved by 2e-3, with one verdict flipped and with one part missing
# must each fail it. `--compare-only` compares the results of the last run
# again without running anything; ARM64_CHECK_PERTURB=<delta> adds delta to
# the first arm64 score before comparing (to watch the check fail).
#
# The demo bundle and replay come from scripts/demo.sh (DEMO_PREPARE_ONLY=1;
# the first time it trains the bundle, about a minute). Everything else this
# script writes lives in .arm64-check/ (removed first). Each qemu step runs
# in the foreground under a timeout; no MQTT broker, no status page (the
# station's outputs are the archive and the simulated GPIO chip), so nothing
# is left running.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=.arm64-check
SYSROOT=.deps/sysroot-arm64
ARM=bin/linux-arm64/inspectd
AMD=bin/inspectd
PARTS="${ARM64_CHECK_PARTS:-12}"
TOLERANCE=1e-3
STEP_TIMEOUT="${ARM64_CHECK_TIMEOUT:-900}"

say() { printf 'check-arm64: %s\n' "$*"; }
die() { printf 'check-arm64: FAIL: %s\n' "$*" >&2; exit 1; }

# compare AMD_STATE ARM_STATE REPLAY [PERTURB]: the comparison table and
# verdict; with "selftest" as PERTURB, checks instead that three damaged
# copies of the arm64 results each fail the comparison.
compare() {
  python3 - "$@" <<'PY'
import glob, json, os, sys

amd_state, arm_state, replay, mode = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
parts, tol = int(os.environ["PARTS"]), float(os.environ["TOLERANCE"])

def results(state):
    out = {}
    for p in glob.glob(os.path.join(state, "archive", "*", "*.json")):
        if os.path.basename(p).startswith(".tmp-"):
            continue
        with open(p) as f:
            r = json.load(f)
        out[r["seq"]] = {"part": r["part_id"], "verdict": r["verdict"], "score": r["score"]}
    return out

def compare(a, b):
    """Rows of the table and the list of failures."""
    rows, failures = [], []
    for want in (("amd64", a), ("arm64", b)):
        if len(want[1]) != parts:
            failures.append(f"{want[0]}: {len(want[1])} results, want {parts}")
    for seq in sorted(set(a) | set(b)):
        x, y = a.get(seq), b.get(seq)
        if x is None or y is None:
            failures.append(f"part {seq}: only in the {'arm64' if x is None else 'amd64'} run")
            continue
        d = abs(x["score"] - y["score"])
        ok = x["verdict"] == y["verdict"] and d <= tol
        if x["verdict"] != y["verdict"]:
            failures.append(f"{x['part']}: verdict {x['verdict']} (amd64) vs {y['verdict']} (arm64)")
        if not d <= tol:
            failures.append(f"{x['part']}: |score difference| {d:.2e} > {tol:g}")
        rows.append((x["part"], seq, x, y, d, ok))
    return rows, failures

a, b = results(amd_state), results(arm_state)
if mode == "selftest":
    if not b:
        sys.exit("self-check: no arm64 results")
    first = min(b)
    damaged = {
        "a score moved by 2e-3": {**b, first: {**b[first], "score": b[first]["score"] + 2e-3}},
        "a flipped verdict": {**b, first: {**b[first], "verdict": "OK" if b[first]["verdict"] != "OK" else "NG"}},
        "a missing part": {k: v for k, v in b.items() if k != first},
    }
    bad = [name for name, d in damaged.items() if not compare(a, d)[1]]
    if bad:
        sys.exit("self-check: the comparison accepted " + ", ".join(bad))
    print("self-check: the comparison rejects " + ", ".join(damaged))
    sys.exit(0)
if mode:
    first = min(b)
    b[first]["score"] += float(mode)
    print(f"(ARM64_CHECK_PERTURB: arm64 score of {b[first]['part']} moved by {float(mode):g})")

names = sorted(n for n in os.listdir(replay) if n.lower().endswith((".png", ".jpg", ".jpeg", ".bmp")))
rows, failures = compare(a, b)
print(f"{'part':<6} {'replay image':<18} {'amd64':<5} {'score':>10}  {'arm64':<5} {'score':>10}  {'|Δscore|':>9}")
for part, seq, x, y, d, ok in rows:
    img = names[seq - 1] if 0 < seq <= len(names) else "?"
    print(f"{part:<6} {img:<18} {x['verdict']:<5} {x['score']:>10.6f}  {y['verdict']:<5} {y['score']:>10.6f}  {d:>9.2e}{'' if ok else '  <-- differs'}")
worst = max((r[4] for r in rows), default=float("nan"))
same = sum(1 for r in rows if r[2]["verdict"] == r[3]["verdict"])
print(f"{same}/{len(rows)} verdicts equal; max |Δscore| {worst:.2e} (tolerance {tol:g})")
for f in failures:
    print("  " + f)
sys.exit(1 if failures else 0)
PY
}

export PARTS TOLERANCE
if [ "${1:-}" = "--compare-only" ]; then
  [ -d "$DIR/state-arm64" ] && [ -d "$DIR/state-amd64" ] || die "no results in $DIR: run make check-arm64 first"
  if compare "$DIR/state-amd64" "$DIR/state-arm64" .demo/replay "${ARM64_CHECK_PERTURB:-}" &&
    compare "$DIR/state-amd64" "$DIR/state-arm64" .demo/replay selftest; then
    say "PASS (compare only)"; exit 0
  fi
  say "FAIL (compare only)"; exit 1
fi

command -v qemu-aarch64-static >/dev/null || die "qemu-aarch64-static is missing (bash scripts/sysroot-arm64.sh installs it)"
[ -f "$SYSROOT/.inspectd-sysroot" ] || die "no arm64 sysroot at $SYSROOT: run make build-arm64"
[ -x "$ARM" ] || die "$ARM is missing: run make build-arm64"
[ -x "$AMD" ] || die "$AMD is missing: run make build"
[ -f .deps/onnxruntime/linux-arm64/libonnxruntime.so.1 ] || die "no arm64 ONNX Runtime library: run make build-arm64"
if [ ! -f .demo/bundle/manifest.toml ] || [ ! -d .demo/replay ]; then
  say "preparing the demo bundle and replay (scripts/demo.sh)"
  DEMO_PREPARE_ONLY=1 bash scripts/demo.sh
fi

rm -rf "$DIR"
mkdir -p "$DIR"
# One configuration per architecture (separate state directories: each
# daemon locks its own); paths are relative to the configuration file.
for arch in amd64 arm64; do
  cat >"$DIR/$arch.toml" <<CONF
# Written by scripts/check_arm64.sh: the demo replay, every image once, in
# name order (fps 0, no loop), every result archived with its JSON.
config_version = 1
state_dir = "state-$arch"

[station]
id = "arm64-check"
name = "arm64 check ($arch)"

[camera]
source = "images"
path = "../.demo/replay"
loop = false
fps = 0.0
# Under emulation a part takes seconds: no frame may be dropped as stale.
max_frame_age = "1m"
read_timeout = "1m"

[trigger]
mode = "free_run"

[model]
bundle = "../.demo/bundle"
threads = 2

[gpio]
enabled = true
chip = "sim"
reject_line = "reject"
reject_delay = "30s"
reject_pulse = "100ms"

[mqtt]
enabled = false

[archive]
save = "all"
heatmap_overlay = false

[http]
enabled = false

[log]
level = "warn"
CONF
done

# The emulated CPU: a Cortex-A76 by default, the feature set of a Jetson
# Orin's Cortex-A78AE (ARMv8.2 with dotprod and fp16, no SVE), not qemu's
# "max" (SVE2, SME: no Jetson has them); QEMU_CPU=cortex-a57 emulates a
# Jetson Nano/TX2 core (ARMv8.0).
export QEMU_CPU="${QEMU_CPU:-cortex-a76}"
QEMU=(timeout -k 10 "$STEP_TIMEOUT" qemu-aarch64-static -L "$SYSROOT")
timings=()
# step NAME LOG CMD...: runs CMD with its output in LOG, records its time.
step() {
  local name=$1 log=$2 t0 rc=0
  shift 2
  t0=$(date +%s.%N)
  "$@" >"$log" 2>&1 || rc=$?
  local dt
  dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  timings+=("$(printf '%-34s %7s s' "$name" "$dt")")
  say "$(printf '%-34s %7s s  (rc %d)' "$name" "$dt" "$rc")"
  if [ "$rc" -ne 0 ]; then
    grep -v 'cpuid_info warning' "$log" | tail -n 20 >&2
    die "$name failed (exit $rc; log $log)"
  fi
}

say "qemu: $(qemu-aarch64-static --version | head -n 1), cpu $QEMU_CPU; sysroot: $(sed -n 2p "$SYSROOT/.inspectd-sysroot" | sed 's/^# //')"
step "arm64 version" "$DIR/version.log" "${QEMU[@]}" "$ARM" version
grep -q '^platform: *linux/arm64$' "$DIR/version.log" || die "$ARM version does not say platform linux/arm64: $(cat "$DIR/version.log")"
grep -q '^flavour: *edge$' "$DIR/version.log" || die "$ARM is not the edge flavour: $(cat "$DIR/version.log")"
step "arm64 check-config" "$DIR/check-config.log" "${QEMU[@]}" "$ARM" check-config -c "$DIR/arm64.toml"
step "arm64 bench --iterations 3" "$DIR/bench.log" "${QEMU[@]}" "$ARM" bench --bundle .demo/bundle --threads 2 --iterations 3
step "arm64 run --max-parts $PARTS" "$DIR/run-arm64.log" "${QEMU[@]}" "$ARM" run -c "$DIR/arm64.toml" --max-parts "$PARTS" --print
step "amd64 run --max-parts $PARTS" "$DIR/run-amd64.log" timeout -k 10 "$STEP_TIMEOUT" "$AMD" run -c "$DIR/amd64.toml" --max-parts "$PARTS" --print

say "arm64 bench (under emulation: for the pipeline, not for sizing a box):"
grep -v 'cpuid_info warning' "$DIR/bench.log" | sed 's/^/  /'
status=0
compare "$DIR/state-amd64" "$DIR/state-arm64" .demo/replay "${ARM64_CHECK_PERTURB:-}" || status=1
compare "$DIR/state-amd64" "$DIR/state-arm64" .demo/replay selftest || status=1
if [ "$status" -ne 0 ]; then
  say "FAIL: arm64 and amd64 disagree (or the comparison is broken); logs in $DIR"
  exit 1
fi
say "PASS: $PARTS parts, equal verdicts, scores within $TOLERANCE"
