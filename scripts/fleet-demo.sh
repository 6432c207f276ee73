#!/usr/bin/env bash
# scripts/fleet-demo.sh: a fleet's model rollout on one host, end to end.
#
# Starts a central mosquitto (the plant's broker) and an edge mosquitto
# bridged to it (the line's broker), and FLEET_STATIONS (20) inspectd
# stations st01..st20 on the edge broker: the demo bundle
# (testdata/demo-bundle), an images replay (.demo/replay), software trigger,
# each its own state_dir and status page, [rollout] trusting a publisher key
# made for the demo. Then, from the central broker, as a plant engineer would:
#
#   1. packs and signs a second bundle (the demo bundle recalibrated: its
#      manifest notes changed, so another bundle hash), serves it over HTTPS
#      with a throwaway CA (tools/fileserver) and rolls it out to every
#      station with one `inspectd fleet install --activate`; prints the
#      per-station table and the total rollout time, and checks that every
#      station runs the new bundle;
#   2. the same with a third bundle from a server that gives 3 stations
#      (st03, st07, st13) a corrupted download: they must report the hash
#      failure and keep running the second bundle, the others move on;
#   3. stops the central broker for FLEET_OUTAGE_S (10) seconds while parts
#      keep being triggered on every station (on the edge broker), restarts
#      it, and counts the results of those parts that reach a persistent
#      subscriber on the central broker: every one must arrive.
#
# Prints PASS/FAIL lines and exits 1 on any FAIL. Needs bin/inspectd (make
# build), mosquitto, openssl, curl, python3 and go (to build tools/fileserver,
# or FILESERVER=path), and .demo/replay (make demo, or DEMO_PREPARE_ONLY=1
# make demo). Everything it creates lives in a temporary directory that is
# removed at exit (FLEET_KEEP=1 keeps it); every process it started is
# stopped on exit. Stations start one after another, each once its status
# page answers, to spare the 2-core development machine.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

N="${FLEET_STATIONS:-20}"
CORRUPT="${FLEET_CORRUPT:-st03,st07,st13}"
OUTAGE_S="${FLEET_OUTAGE_S:-10}"
PARTS_PER_STATION="${FLEET_OUTAGE_PARTS:-3}"
BIN="${INSPECTD:-$ROOT/bin/inspectd}"
BUNDLE="$ROOT/testdata/demo-bundle"
REPLAY="$ROOT/.demo/replay"

say() { printf '\033[1mfleet-demo:\033[0m %s\n' "$*"; }
fails=0
pass() { printf 'PASS  %s\n' "$*"; }
fail() { printf 'FAIL  %s\n' "$*"; fails=$((fails + 1)); }
die() { printf 'FAIL  %s\n' "$*"; exit 1; }

for tool in mosquitto mosquitto_sub mosquitto_pub openssl curl python3; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || die "$tool is not installed (make deps)"
done
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
[ -x "$BIN" ] || die "$BIN is missing: run make build"
[ -f "$BUNDLE/manifest.toml" ] || die "$BUNDLE has no bundle: run make demo (DEMO_PREPARE_ONLY=1 make demo)"
[ -d "$REPLAY" ] || die "$REPLAY is missing: run DEMO_PREPARE_ONLY=1 make demo"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/fleet-demo.XXXXXX")
PIDS=()   # every process started, stopped in reverse order at exit
cleanup() {
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill "${PIDS[$i]}" 2>/dev/null; done
  for _ in $(seq 100); do
    local alive=0
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  if [ "${FLEET_KEEP:-0}" = 1 ]; then
    say "kept $TMP"
  else
    rm -rf "$TMP"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# wait_for SECONDS WHAT CMD...: polls CMD every 0.2 s.
wait_for() {
  local secs=$1 what=$2; shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -ge "$end" ] && { echo "timed out after ${secs}s waiting for $what" >&2; return 1; }
    sleep 0.2
  done
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
station() { printf 'st%02d' "$1"; }

# --- tools: the file server ---------------------------------------------------
mkdir -p "$TMP/bin" "$TMP/pki" "$TMP/keys" "$TMP/www" "$TMP/www-bad" "$TMP/brokers"
FILESERVER="${FILESERVER:-}"
if [ -z "$FILESERVER" ]; then
  say "building tools/fileserver"
  nice -n 10 go build -o "$TMP/bin/fileserver" ./tools/fileserver || die "cannot build tools/fileserver"
  FILESERVER="$TMP/bin/fileserver"
fi

# --- a throwaway CA and the file server's certificate ----------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj "/CN=fleet-demo throwaway CA" -keyout "$TMP/pki/ca.key" -out "$TMP/pki/ca.pem" 2>/dev/null || die "openssl: CA"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=127.0.0.1" \
  -keyout "$TMP/pki/server.key" -out "$TMP/pki/server.csr" 2>/dev/null || die "openssl: server key"
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$TMP/pki/ext.cnf"
openssl x509 -req -in "$TMP/pki/server.csr" -CA "$TMP/pki/ca.pem" -CAkey "$TMP/pki/ca.key" -CAcreateserial \
  -days 1 -extfile "$TMP/pki/ext.cnf" -out "$TMP/pki/server.pem" 2>/dev/null || die "openssl: server certificate"

# --- the publisher key and the bundles ------------------------------------------
"$BIN" keys generate --out "$TMP/keys/publisher" >"$TMP/keys/generate.out" || die "inspectd keys generate failed: $(cat "$TMP/keys/generate.out")"
PUBKEY=$(head -n 1 "$TMP/keys/publisher.pub")
say "publisher key $PUBKEY"
mkbundle() { # mkbundle DIR NOTE: the demo bundle with its manifest notes changed (another bundle hash)
  mkdir -p "$1"
  cp "$BUNDLE"/align.onnx "$BUNDLE"/localize.onnx "$BUNDLE"/template.png "$1"/
  sed "s|^\( *notes = \).*|\1\"$2\"|" "$BUNDLE/manifest.toml" >"$1/manifest.toml"
}
mkdir -p "$TMP/bundle-v1"
cp "$BUNDLE"/align.onnx "$BUNDLE"/localize.onnx "$BUNDLE"/template.png "$BUNDLE"/manifest.toml "$TMP/bundle-v1/"
mkbundle "$TMP/bundle-v2" "fleet-demo v2: recalibrated"
mkbundle "$TMP/bundle-v3" "fleet-demo v3: recalibrated again"
hash_of() { sha256sum "$1/manifest.toml" | cut -d' ' -f1; }
V1=$(hash_of "$TMP/bundle-v1"); V2=$(hash_of "$TMP/bundle-v2"); V3=$(hash_of "$TMP/bundle-v3")
for v in v2 v3; do
  "$BIN" pack --bundle "$TMP/bundle-$v" --out "$TMP/www/bundle-$v.tar.gz" >/dev/null || die "inspectd pack $v failed"
  "$BIN" sign --key "$TMP/keys/publisher.key" "$TMP/www/bundle-$v.tar.gz" >/dev/null || die "inspectd sign $v failed"
done
cp "$TMP/www/bundle-v3.tar.gz" "$TMP/www-bad/"
say "bundles: v1 ${V1:0:12} (running), v2 ${V2:0:12}, v3 ${V3:0:12}; archives $(du -h "$TMP/www/bundle-v2.tar.gz" | cut -f1) each"

# --- brokers: central (plant) and edge (line), bridged ---------------------------
CENTRAL=$(freeport); EDGE=$(freeport)
root_line() { [ "$(id -u)" -eq 0 ] && echo "user root"; }
cat >"$TMP/brokers/central.conf" <<CONF
listener $CENTRAL 127.0.0.1
allow_anonymous true
persistence true
persistence_location $TMP/brokers/
autosave_interval 1
max_queued_messages 100000
log_dest file $TMP/brokers/central.log
$(root_line)
CONF
cat >"$TMP/brokers/edge.conf" <<CONF
listener $EDGE 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 100000
log_dest file $TMP/brokers/edge.log
$(root_line)
connection central
address 127.0.0.1:$CENTRAL
cleansession false
clientid fleet-demo-edge-bridge
restart_timeout 1 2
keepalive_interval 5
topic inspectd/+/result out 1
topic inspectd/+/event out 1
topic inspectd/+/status out 1
topic inspectd/+/reply/+ out 1
topic inspectd/+/cmd/+ in 1
CONF
start_central() {
  "$MOSQUITTO" -c "$TMP/brokers/central.conf" >>"$TMP/brokers/central.out" 2>&1 &
  CENTRAL_PID=$!
  PIDS+=("$CENTRAL_PID")
  wait_for 10 "the central broker" port_open "$CENTRAL" || die "the central broker did not start ($TMP/brokers/central.log)"
}
start_central
"$MOSQUITTO" -c "$TMP/brokers/edge.conf" >"$TMP/brokers/edge.out" 2>&1 &
PIDS+=($!)
wait_for 10 "the edge broker" port_open "$EDGE" || die "the edge broker did not start"
# The SCADA side: a persistent subscriber on the central broker (its
# session and queue survive the central broker's restart).
mosquitto_sub -h 127.0.0.1 -p "$CENTRAL" -i fleet-demo-scada -c -q 1 -t 'inspectd/+/result' >"$TMP/central-results.jsonl" 2>"$TMP/scada.err" &
PIDS+=($!)
say "central broker :$CENTRAL, edge broker :$EDGE (bridged), SCADA subscriber on the central broker"

# --- the stations ------------------------------------------------------------------
declare -A HTTP
start_station() { # start_station ID
  local id=$1 dir="$TMP/$1" port
  port=$(freeport)
  HTTP[$id]=$port
  mkdir -p "$dir"
  cat >"$dir/inspectd.toml" <<CONF
config_version = 1
state_dir = "$dir/state"
[station]
id = "$id"
line = "fleet-demo"
[camera]
source = "images"
path = "$REPLAY"
loop = true
fps = 1.0
[trigger]
mode = "software"
[model]
bundle = "$TMP/bundle-v1"
threads = 1
[mqtt]
enabled = true
broker = "tcp://127.0.0.1:$EDGE"
stats_interval = "10m"
[archive]
save = "none"
[http]
enabled = true
listen = "127.0.0.1:$port"
[log]
level = "info"
[rollout]
enabled = true
trusted_keys = ["$PUBKEY"]
ca_file = "$TMP/pki/ca.pem"
stall_timeout = "10s"
retries = 2
CONF
  GOMAXPROCS=1 "$BIN" run -c "$dir/inspectd.toml" >"$dir/stdout" 2>"$dir/log" &
  local pid=$!
  PIDS+=("$pid")
  if ! wait_for 60 "$id's status page" curl -fsS "http://127.0.0.1:$port/healthz"; then
    kill -0 "$pid" 2>/dev/null || echo "$id exited; its log:" >&2
    tail -n 20 "$dir/log" >&2
    return 1
  fi
}
STATIONS=()
say "starting $N stations, one after another (each once its status page answers)"
t0=$SECONDS
for i in $(seq 1 "$N"); do
  id=$(station "$i")
  start_station "$id" || die "station $id did not start ($TMP/$id/log)"
  STATIONS+=("$id")
done
LIST=$(IFS=,; echo "${STATIONS[*]}")
online() { # all stations say online on the central broker (retained status, through the bridge)
  local n
  n=$(timeout 3 mosquitto_sub -h 127.0.0.1 -p "$CENTRAL" -t 'inspectd/+/status' -W 2 -C "$N" 2>/dev/null | grep -c '"state":"online"')
  [ "$n" -ge "$N" ]
}
wait_for 60 "every station online on the central broker" online || die "not every station is online on the central broker"
rss=$(for id in "${STATIONS[@]}"; do pgrep -f "$TMP/$id/inspectd.toml" ; done | xargs -r ps -o rss= -p | awk '{s+=$1} END {printf "%.0f", s/1024}')
pass "$N stations started in $((SECONDS - t0)) s, all online through the bridge (resident memory of the daemons: ${rss} MB)"

running_hash() { # running_hash ID: the bundle hash the station runs (/api/status)
  curl -fsS "http://127.0.0.1:${HTTP[$1]}/api/status" | python3 -c '
import json, sys
s = json.load(sys.stdin)
ps = (s.get("products") or {}).get("products") or []
act = [p for p in ps if p.get("active")]
print(act[0]["bundle_hash"] if act else (s.get("model") or {}).get("bundle_hash", ""))'
}
check_running() { # check_running WANT_HASH IDS...: prints the stations that run another bundle
  local want=$1; shift
  for id in "$@"; do
    h=$(running_hash "$id")
    case "$h" in *"$want"*) ;; *) echo "$id:${h:0:19}" ;; esac
  done
}

FS_URL=""
start_fileserver() { # start_fileserver DIR [CORRUPT_FOR]
  rm -f "$TMP/fileserver.addr"
  "$FILESERVER" -dir "$1" -addr 127.0.0.1:0 -addr-file "$TMP/fileserver.addr" -cert "$TMP/pki/server.pem" \
    -key "$TMP/pki/server.key" ${2:+-corrupt-for "$2"} >>"$TMP/fileserver.log" 2>&1 &
  FS_PID=$!
  PIDS+=("$FS_PID")
  wait_for 10 "the file server" test -s "$TMP/fileserver.addr" || die "the file server did not start ($TMP/fileserver.log)"
  FS_URL="https://$(cat "$TMP/fileserver.addr")"
}

# --- 1. roll v2 out to every station ----------------------------------------------
start_fileserver "$TMP/www"
say "1. rolling bundle v2 out to $N stations: inspectd fleet install --activate (HTTPS, throwaway CA)"
"$BIN" fleet install --broker "tcp://127.0.0.1:$CENTRAL" --stations "$LIST" --url "$FS_URL/bundle-v2.tar.gz" \
  --sig "$TMP/www/bundle-v2.tar.gz.sig" --activate --timeout 5m | tee "$TMP/rollout-1.txt"
rc=${PIPESTATUS[0]}
others=$(check_running "$V2" "${STATIONS[@]}")
if [ "$rc" = 0 ] && [ -z "$others" ]; then
  pass "rollout of v2 to $N stations: every station runs bundle ${V2:0:12} ($(tail -n 1 "$TMP/rollout-1.txt" | sed 's/.*; //'))"
else
  fail "rollout of v2: fleet exit $rc; stations not on v2: ${others:-none}"
fi

# A part on every station after the rollout: its result names the new bundle.
for id in "${STATIONS[@]}"; do
  mosquitto_pub -h 127.0.0.1 -p "$EDGE" -q 1 -t "inspectd/$id/cmd/trigger" -m "{\"correlation_id\":\"after-v2-$id\",\"part_id\":\"after-v2-$id\"}"
done
after_v2() { [ "$(grep '"part_id":"after-v2-' "$TMP/central-results.jsonl" | grep -c "$V2")" -ge "$N" ]; }
if wait_for 60 "results after the rollout" after_v2; then
  pass "a part inspected on each of the $N stations after the rollout carries bundle ${V2:0:12} in its result"
else
  fail "results after the rollout: $(grep -c '"part_id":"after-v2-' "$TMP/central-results.jsonl") received, $(grep '"part_id":"after-v2-' "$TMP/central-results.jsonl" | grep -c "$V2") with bundle v2; want $N"
fi
kill "$FS_PID" 2>/dev/null; wait "$FS_PID" 2>/dev/null

# --- 2. v3 with corrupt downloads for 3 stations -----------------------------------
start_fileserver "$TMP/www-bad" "$CORRUPT"
say "2. rolling bundle v3 out; the file server corrupts the download of $CORRUPT"
"$BIN" fleet install --broker "tcp://127.0.0.1:$CENTRAL" --stations "$LIST" --url "$FS_URL/bundle-v3.tar.gz" \
  --sig "$TMP/www/bundle-v3.tar.gz.sig" --activate --timeout 5m | tee "$TMP/rollout-2.txt"
rc=${PIPESTATUS[0]}
IFS=, read -r -a BAD <<<"$CORRUPT"
GOOD=()
for id in "${STATIONS[@]}"; do [[ ",$CORRUPT," == *",$id,"* ]] || GOOD+=("$id"); done
bad_ok=1
for id in "${BAD[@]}"; do
  grep -E "^$id +FAILED .*(hash|sha256)" "$TMP/rollout-2.txt" >/dev/null || bad_ok=0
done
others_good=$(check_running "$V3" "${GOOD[@]}")
others_bad=$(check_running "$V2" "${BAD[@]}")
if [ "$rc" = 1 ] && [ "$bad_ok" = 1 ] && [ -z "$others_good" ] && [ -z "$others_bad" ]; then
  pass "corrupt downloads: ${#BAD[@]} stations report the hash failure and keep bundle ${V2:0:12}; the other ${#GOOD[@]} run ${V3:0:12}"
else
  fail "corrupt downloads: fleet exit $rc (want 1), hash failure reported by all of $CORRUPT: $([ $bad_ok = 1 ] && echo yes || echo no), not on v3: ${others_good:-none}, not on v2: ${others_bad:-none}"
fi
for id in "${BAD[@]}"; do
  left=$(find "$TMP/$id/state" -name '.staging-*' -o -name '.download-*' | head -n 1)
  [ -z "$left" ] || fail "$id left $left behind"
done
kill "$FS_PID" 2>/dev/null; wait "$FS_PID" 2>/dev/null

# --- 3. the central broker goes away while the line keeps inspecting ----------------
say "3. stopping the central broker for ${OUTAGE_S}s while every station inspects $PARTS_PER_STATION parts"
kill "$CENTRAL_PID"; wait "$CENTRAL_PID" 2>/dev/null
sent=0
for k in $(seq 1 "$PARTS_PER_STATION"); do
  for id in "${STATIONS[@]}"; do
    mosquitto_pub -h 127.0.0.1 -p "$EDGE" -q 1 -t "inspectd/$id/cmd/trigger" \
      -m "{\"correlation_id\":\"outage-$id-$k\",\"part_id\":\"outage-$id-$k\"}" && sent=$((sent + 1))
  done
  sleep "$(python3 -c "print($OUTAGE_S / $PARTS_PER_STATION)")"
done
# The parts were inspected while the central broker was down: their results
# wait in the edge broker's bridge queue.
on_edge=$(timeout 5 mosquitto_sub -h 127.0.0.1 -p "$EDGE" -t 'inspectd/+/status' -W 2 -C "$N" 2>/dev/null | grep -c '"state":"online"')
say "central broker down for ${OUTAGE_S}s; $sent parts triggered; $on_edge stations online on the edge broker; restarting it"
start_central
arrived() { [ "$(grep -o '"part_id":"outage-[^"]*"' "$TMP/central-results.jsonl" | sort -u | wc -l)" -ge "$sent" ]; }
wait_for 60 "the outage's results at the central subscriber" arrived
got=$(grep -o '"part_id":"outage-[^"]*"' "$TMP/central-results.jsonl" | sort -u | wc -l)
if [ "$sent" -gt 0 ] && [ "$got" -ge "$sent" ]; then
  pass "bridge outage: $got of $sent results of parts inspected while the central broker was down reached the central subscriber"
else
  fail "bridge outage: $got of $sent results reached the central subscriber"
fi

if [ "$fails" -gt 0 ]; then
  say "$fails FAIL(s); logs in $TMP (set FLEET_KEEP=1 to keep them)"
  exit 1
fi
say "all PASS"
