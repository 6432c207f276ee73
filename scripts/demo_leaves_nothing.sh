#!/usr/bin/env bash
# Checks that `make demo` leaves no process behind: runs scripts/demo.sh for
# DEMO_PARTS parts (default 5) in a session of its own, and once it has
# exited, fails if any process of that session is still alive (a
# mosquitto_sub that outlived the demo reconnected to the gone broker
# forever). The demo must also succeed and must have started its MQTT broker
# and subscribers, or the check would prove nothing. The first run in a
# checkout draws the synthetic gears and trains the demo bundle into .demo/
# (1 to 2 minutes on 2 cores); later runs reuse them (under 10 s).
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { printf 'demo_leaves_nothing: FAIL: %s\n' "$*" >&2; exit 1; }

command -v setsid >/dev/null || fail "setsid (util-linux) is not installed"

# Training the demo bundle needs the ResNet-18 weights (README "Assets in
# ../shared"); without them and without a bundle, skip as the Go tests do.
if [ ! -f .demo/bundle/manifest.toml ]; then
  found=""
  for d in "${INSPECTD_BACKBONE:-}" ../shared/backbones/resnet18 /usr/share/inspectd/backbones/resnet18; do
    if [ -n "$d" ] && [ -e "$d" ]; then found=$d; break; fi
  done
  if [ -z "$found" ]; then
    echo "demo_leaves_nothing: skipped: no demo bundle and no ResNet-18 weights to train one (set INSPECTD_BACKBONE or provide ../shared/backbones/resnet18)"
    exit 0
  fi
fi

# session_procs SID: the live (not zombie) processes of session SID, one
# "pid command line" per line.
session_procs() {
  local stat pid rest f
  for stat in /proc/[0-9]*/stat; do
    pid=${stat#/proc/}; pid=${pid%/stat}
    read -r rest 2>/dev/null <"$stat" || continue
    # Fields after the ")" closing the command name: state ppid pgrp session.
    read -r -a f <<<"${rest##*) }"
    if [ "${f[3]:-}" = "$1" ] && [ "${f[0]}" != Z ]; then
      printf '%s %s\n' "$pid" "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)"
    fi
  done
}

parts="${DEMO_PARTS:-5}"
log="$(mktemp)"
pidfile="$(mktemp)"
trap 'rm -f "$log" "$pidfile"' EXIT
start=$SECONDS
status=0
# The new session's id is the PID of its leader: the bash that execs demo.sh.
DEMO_PARTS="$parts" setsid -w bash -c 'echo $$ >"$1"; exec bash scripts/demo.sh' _ "$pidfile" \
  </dev/null >"$log" 2>&1 || status=$?
sid="$(cat "$pidfile")"
[ -n "$sid" ] || fail "the demo did not start"

# Give exiting processes a moment, then list what is left.
left=""
for _ in $(seq 50); do
  left="$(session_procs "$sid")"
  [ -z "$left" ] && break
  sleep 0.1
done
if [ -n "$left" ]; then
  # Clean up what the demo left, then fail.
  while read -r pid _; do kill "$pid" 2>/dev/null || true; done <<<"$left"
  sleep 0.5
  while read -r pid _; do kill -9 "$pid" 2>/dev/null || true; done <<<"$(session_procs "$sid")"
  tail -n 20 "$log" >&2
  fail "processes of the demo (session $sid) still alive after it exited (now killed):
$left"
fi
if [ "$status" -ne 0 ]; then
  tail -n 40 "$log" >&2
  fail "scripts/demo.sh exited with status $status"
fi
grep -q 'local MQTT broker' "$log" || { tail -n 40 "$log" >&2; fail "the demo ran without its MQTT broker and subscribers (is mosquitto installed?): nothing was checked"; }
echo "demo_leaves_nothing: ok: the demo ($parts parts) exited and left no process behind ($((SECONDS - start)) s)"
