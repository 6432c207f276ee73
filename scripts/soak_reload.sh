#!/usr/bin/env bash
# make soak-reload: runs `inspectd run` on a looped 640×480 image replay with
# a random-weight 256×256 bundle (as make soak), sends RELOADS SIGHUPs
# (default 200), each after the previous reload is done (a "reload done"
# log line), and samples the daemon's resident memory after each. Prints the
# RSS after the first 10 reloads and at the end, and fails when it grew by
# more than RELOAD_MAX_GROWTH_MB (default 20). Everything it creates lives in
# .soak/ (shared with make soak: the replay and the bundle).
set -euo pipefail
cd "$(dirname "$0")/.."

RELOADS="${RELOADS:-200}"
MAX_GROWTH_MB="${RELOAD_MAX_GROWTH_MB:-20}"
DIR=.soak
BIN=bin/inspectd

. scripts/soak_common.sh
cat >"$DIR/reload.toml" <<CONF
config_version = 1
state_dir = "state-reload"
[station]
id = "soak-reload"
[camera]
source = "images"
path = "replay"
loop = true
fps = 10.0
[model]
bundle = "bundle"
threads = 2
[mqtt]
enabled = false
[archive]
save = "none"
[http]
enabled = false
CONF

echo "soak-reload: $RELOADS reloads of a 256x256 bundle while inspecting a 640x480 replay"
"$BIN" run -c "$DIR/reload.toml" >"$DIR/reload.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT
rss() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }
for _ in $(seq 100); do grep -q 'inspection started' "$DIR/reload.log" && break; sleep 0.2; done
grep -q 'inspection started' "$DIR/reload.log" || { echo "soak-reload: inspectd did not start"; tail -5 "$DIR/reload.log"; exit 1; }
: >"$DIR/reload-rss.tsv"
start=$(date +%s)
for i in $(seq "$RELOADS"); do
  kill -HUP "$pid"
  for _ in $(seq 600); do
    [ "$(grep -c 'msg="reload done"' "$DIR/reload.log")" -ge "$i" ] && break
    kill -0 "$pid" 2>/dev/null || { echo "soak-reload: inspectd died at reload $i"; tail -5 "$DIR/reload.log"; exit 1; }
    sleep 0.05
  done
  [ "$(grep -c 'msg="reload done"' "$DIR/reload.log")" -ge "$i" ] || { echo "soak-reload: reload $i not done in 30 s"; tail -5 "$DIR/reload.log"; exit 1; }
  printf '%s\t%s\n' "$i" "$(rss)" >>"$DIR/reload-rss.tsv"
done
secs=$(( $(date +%s) - start ))
kill -TERM "$pid"; wait "$pid" || true
trap - EXIT
awk -v n="$RELOADS" -v secs="$secs" -v max="$MAX_GROWTH_MB" '
  { i[NR] = $1; r[NR] = $2 }
  END {
    b = (NR >= 10) ? 10 : 1
    growth = (r[NR] - r[b]) / 1024
    printf "soak-reload: %d reloads in %d s; RSS %.1f MB after reload %d, %.1f MB after reload %d: growth %+.1f MB (limit %d MB)\n",
      n, secs, r[b] / 1024, i[b], r[NR] / 1024, i[NR], growth, max
    if (growth > max) { print "soak-reload: FAIL"; exit 1 }
    print "soak-reload: PASS"
  }' "$DIR/reload-rss.tsv"
