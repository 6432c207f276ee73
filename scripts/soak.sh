#!/usr/bin/env bash
# make soak: runs `inspectd run` on a looped 640×480 image replay for
# SOAK_PARTS parts (default 10,000) with a random-weight 256×256 bundle, two
# engine threads, the simulated GPIO actuator and the archive off, sampling
# the daemon's resident memory every 2 s. Prints the RSS after the first 10 %
# of the run and at the end, and fails when it grew by more than
# SOAK_MAX_GROWTH_MB (default 5). Everything it creates lives in .soak/.
set -euo pipefail
cd "$(dirname "$0")/.."

PARTS="${SOAK_PARTS:-10000}"
MAX_GROWTH_MB="${SOAK_MAX_GROWTH_MB:-5}"
DIR=.soak
BIN=bin/inspectd

. scripts/soak_common.sh
cat >"$DIR/inspectd.toml" <<CONF
config_version = 1
state_dir = "state"
[station]
id = "soak"
[camera]
source = "images"
path = "replay"
loop = true
[model]
bundle = "bundle"
threads = 2
[gpio]
enabled = true
chip = "sim"
reject_line = "reject"
reject_delay = "200ms"
reject_pulse = "20ms"
[mqtt]
enabled = false
[archive]
save = "none"
[http]
enabled = false
CONF

echo "soak: $PARTS parts of 640x480 through a 256x256 bundle; sampling RSS every 2 s"
start=$(date +%s)
"$BIN" run -c "$DIR/inspectd.toml" --max-parts "$PARTS" >"$DIR/run.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' INT TERM
: >"$DIR/rss.tsv"
while kill -0 "$pid" 2>/dev/null; do
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
  [ -n "$rss" ] && printf '%s\t%s\n' "$(( $(date +%s) - start ))" "$rss" >>"$DIR/rss.tsv"
  sleep 2
done
wait "$pid" || { echo "soak: inspectd failed; see $DIR/run.log"; tail -5 "$DIR/run.log"; exit 1; }
secs=$(( $(date +%s) - start ))
grep -o 'msg=stopped.*' "$DIR/run.log" || true
awk -v parts="$PARTS" -v secs="$secs" -v max="$MAX_GROWTH_MB" '
  { t[NR] = $1; r[NR] = $2 }
  END {
    if (NR < 3) { print "soak: run too short to sample"; exit 1 }
    b = 1; while (b < NR && t[b] < t[NR] * 0.1) b++
    growth = (r[NR] - r[b]) / 1024
    printf "soak: %d parts in %d s (%.1f parts/s); RSS %.1f MB at %d s, %.1f MB at %d s: growth %+.1f MB (limit %d MB)\n",
      parts, secs, parts / secs, r[b] / 1024, t[b], r[NR] / 1024, t[NR], growth, max
    if (growth > max) { print "soak: FAIL"; exit 1 }
    print "soak: PASS"
  }' "$DIR/rss.tsv"
