#!/usr/bin/env bash
# make demo: the daemon on a built-in demo. Installs what it needs
# (scripts/deps.sh), builds, creates a small demo bundle trained on synthetic
# gears if none exists (about a minute), then runs `inspectd run` on an image
# replay of good and defective gears with the status page, the simulated
# GPIO reject actuator and (when mosquitto is installed) a local MQTT broker,
# printing one line per part and a summary. Stops after DEMO_PARTS parts
# (default 50) or on Ctrl-C. Everything it creates lives in .demo/, apart
# from links to the demo bundle's files in testdata/demo-bundle (which the
# example configuration names). DEMO_PREPARE_ONLY=1 only prepares the bundle
# and the replay.
set -euo pipefail
cd "$(dirname "$0")/.."

DEMO_PARTS="${DEMO_PARTS:-50}"
DEMO=.demo
BIN=bin/inspectd-workstation
say() { printf '\033[1mdemo:\033[0m %s\n' "$*"; }

bash scripts/deps.sh
say "building $BIN"
go build -tags workstation -o "$BIN" ./cmd/inspectd
mkdir -p "$DEMO"

if [ ! -d "$DEMO/synth" ]; then
  say "drawing synthetic gears (known poses, painted defects) into $DEMO/synth"
  "$BIN" dataset synth --dst "$DEMO/synth" --objects gear --size 128 --train 40 --test-good 16 \
    --test-per-defect 4 --max-rotation 10 --max-shift 0.05 --seed 7
fi
if [ ! -f "$DEMO/bundle/manifest.toml" ]; then
  say "training the demo bundle on $DEMO/synth/gear/train/good (about a minute on 2 cores)"
  "$BIN" train --good "$DEMO/synth/gear/train/good" --out "$DEMO/bundle" \
    --recipe testdata/demo/recipe.toml --defects "$DEMO/synth/gear"
fi
# The example configuration (config/inspectd.example.toml) names
# $EXAMPLE_BUNDLE: give it the demo bundle's files (hard links, or copies
# across file systems) beside its README, so that the example passes
# `inspectd check-config` (cmd/inspectd/example_config_test.go).
EXAMPLE_BUNDLE=testdata/demo-bundle
mkdir -p "$EXAMPLE_BUNDLE"
find "$EXAMPLE_BUNDLE" -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
for f in "$DEMO"/bundle/*; do
  ln -f "$f" "$EXAMPLE_BUNDLE/" 2>/dev/null || cp -rf "$f" "$EXAMPLE_BUNDLE/"
done

if [ ! -d "$DEMO/replay" ]; then
  say "laying out the replay: good and defective parts interleaved, as a line delivers them"
  stage="$(mktemp -d "$DEMO/.replay.partial-XXXXXX")"
  mapfile -t good < <(ls "$DEMO"/synth/gear/test/good/*.png)
  mapfile -t bad < <(ls "$DEMO"/synth/gear/test/*/*.png | grep -v /good/)
  n=0 g=0 b=0
  while [ "$g" -lt "${#good[@]}" ] || [ "$b" -lt "${#bad[@]}" ]; do
    # Two good parts, then a defective one.
    for _ in 1 2; do
      if [ "$g" -lt "${#good[@]}" ]; then cp "${good[$g]}" "$stage/$(printf '%03d' $n)_good.png"; g=$((g+1)); n=$((n+1)); fi
    done
    if [ "$b" -lt "${#bad[@]}" ]; then
      kind="$(basename "$(dirname "${bad[$b]}")")"
      cp "${bad[$b]}" "$stage/$(printf '%03d' $n)_${kind}.png"; b=$((b+1)); n=$((n+1))
    fi
  done
  mv "$stage" "$DEMO/replay"
fi
# DEMO_PREPARE_ONLY=1: stop here, with the bundle and the replay ready
# (scripts/check_arm64.sh runs them on both architectures).
if [ "${DEMO_PREPARE_ONLY:-0}" = 1 ]; then
  say "prepared $DEMO/bundle and $DEMO/replay"
  exit 0
fi

# A local broker and a SCADA-side subscriber: what the plant would receive.
MQTT_PORT=18830
if command -v mosquitto >/dev/null; then
  cat >"$DEMO/mosquitto.conf" <<CONF
listener $MQTT_PORT 127.0.0.1
allow_anonymous true
persistence false
CONF
  if [ "$(id -u)" -eq 0 ]; then echo "user root" >>"$DEMO/mosquitto.conf"; fi
  mosquitto -c "$DEMO/mosquitto.conf" >"$DEMO/mosquitto.log" 2>&1 &
  broker=$!
  sleep 0.3
  # Status, events and stats as they arrive; results into a file (one JSON
  # document per part), summarised at the end. The prefixing sed reads a
  # process substitution, so that $! is mosquitto_sub itself (in a pipeline
  # it would be sed, and the trap would leave mosquitto_sub reconnecting
  # forever); sed ends when mosquitto_sub does.
  mosquitto_sub -p "$MQTT_PORT" -v -t 'inspectd/demo-station/status' -t 'inspectd/demo-station/event' \
    -t 'inspectd/demo-station/stats' > >(sed -u 's/^/  scada< /') &
  sub=$!
  mosquitto_sub -p "$MQTT_PORT" -t 'inspectd/demo-station/result' >"$DEMO/scada-results.jsonl" &
  subres=$!
  # Stop them on every exit and wait until they are gone: the demo leaves
  # no process behind (scripts/demo_leaves_nothing.sh checks it).
  trap 'kill $sub $subres $broker 2>/dev/null || true; wait $sub $subres $broker 2>/dev/null || true' EXIT
  say "local MQTT broker on 127.0.0.1:$MQTT_PORT; SCADA-side messages are shown as 'scada<'"
else
  say "mosquitto is not installed: running without the MQTT broker"
fi

say "starting inspectd: status page http://127.0.0.1:9120/  (metrics /metrics, simulated actuator /api/actuations)"
say "one line per part; stops after $DEMO_PARTS parts or on Ctrl-C"
status=0
"$BIN" run -c testdata/demo/inspectd.toml --max-parts "$DEMO_PARTS" --print || status=$?
if [ -f "$DEMO/scada-results.jsonl" ]; then
  sleep 0.5
  say "a SCADA subscriber received $(wc -l <"$DEMO/scada-results.jsonl") results on inspectd/demo-station/result; the first:"
  head -n 1 "$DEMO/scada-results.jsonl" | python3 -m json.tool 2>/dev/null | head -n 40 || head -n 1 "$DEMO/scada-results.jsonl"
fi
say "archived NG images: $DEMO/state/archive"
exit "$status"
