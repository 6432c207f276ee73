#!/usr/bin/env bash
# make hostile: replays the classes of hostile input and faults of issue 24
# against a real daemon (the edge binary, an images replay, the simulated
# GPIO chip, a real mosquitto on 127.0.0.1, the status page) and prints one
# line per class, PASS or FAIL; exits 1 if any failed. Everything it creates
# lives in .hostile/ (removed first); it sends traffic to 127.0.0.1 only.
#
# Classes: a damaged MQTT outbox (truncated, random pages) at start; hostile
# files in the replay (a 69-byte PNG claiming 100,000², a BMP with a height
# of −2e9, an empty file, a FIFO, a symlink to /dev/zero); a reload with a
# bundle whose template claims 2,000,000² (hash updated); a SIGHUP storm;
# POST /api/trigger with text/plain and multipart; a reused MQTT
# correlation_id with another payload; check-config on /dev/zero, a FIFO
# and 40,000 unknown keys; a second daemon on the same state_dir; SIGINT.
set -uo pipefail
cd "$(dirname "$0")/.."

DIR=.hostile
BIN=bin/inspectd
fails=0
pass() { printf 'PASS  %s\n' "$*"; }
fail() { printf 'FAIL  %s\n' "$*"; fails=$((fails + 1)); }

bash scripts/deps.sh >/dev/null
go build -o "$BIN" ./cmd/inspectd || exit 1
rm -rf "$DIR"
mkdir -p "$DIR/replay" "$DIR/state"
DIR=$(cd "$DIR" && pwd)

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
BROKER_PORT=$(freeport)
HTTP_PORT=$(freeport)
mosquitto -p "$BROKER_PORT" >"$DIR/mosquitto.log" 2>&1 &
broker=$!
daemon=""
cleanup() {
  [ -n "$daemon" ] && kill "$daemon" 2>/dev/null
  kill "$broker" 2>/dev/null
  wait 2>/dev/null
}
trap cleanup EXIT

# A small replay and a random-weight bundle.
gst-launch-1.0 -q videotestsrc num-buffers=6 pattern=ball ! video/x-raw,width=320,height=240 \
  ! videoconvert ! pngenc ! multifilesink location="$DIR/replay/frame%03d.png"
"$BIN" bench --save-bundle "$DIR/bundle" --size 64 --shared-entries 64 --iterations 1 >/dev/null || exit 1

conf() { # conf FILE BUNDLE
  cat >"$1" <<CONF
config_version = 1
state_dir = "$DIR/state"
[station]
id = "hostile"
[camera]
source = "images"
path = "$DIR/replay"
loop = true
fps = 20.0
[trigger]
mode = "free_run"
[model]
bundle = "$2"
threads = 1
[gpio]
enabled = true
chip = "sim"
reject_line = "reject"
reject_delay = "300ms"
[mqtt]
enabled = true
broker = "tcp://127.0.0.1:$BROKER_PORT"
[archive]
save = "none"
[http]
enabled = true
listen = "127.0.0.1:$HTTP_PORT"
CONF
}
conf "$DIR/inspectd.toml" "$DIR/bundle"

start_daemon() {
  : >"$DIR/run.log"
  "$BIN" run -c "$DIR/inspectd.toml" >"$DIR/run.log" 2>&1 &
  daemon=$!
  for _ in $(seq 150); do
    grep -q 'inspection started' "$DIR/run.log" && return 0
    kill -0 "$daemon" 2>/dev/null || return 1
    sleep 0.2
  done
  return 1
}
stop_daemon() {
  kill -INT "$daemon" 2>/dev/null
  wait "$daemon"
  local rc=$?
  daemon=""
  return $rc
}
alive() { kill -0 "$daemon" 2>/dev/null && curl -fsS -o /dev/null -m 5 "http://127.0.0.1:$HTTP_PORT/api/status"; }

# 1. The outbox: a first run creates it; then it is damaged two ways.
start_daemon && stop_daemon || { fail "first start"; tail -5 "$DIR/run.log"; exit 1; }
outbox="$DIR/state/outbox/outbox.db"
for damage in truncate pages; do
  [ -f "$outbox" ] || { fail "outbox $damage: no $outbox"; continue; }
  if [ "$damage" = truncate ]; then
    truncate -s $(( $(stat -c %s "$outbox") / 2 )) "$outbox"
  else
    # 4 KiB of random bytes over the page the current meta page names as
    # the root (a page in use, past the header).
    root=$(python3 - "$outbox" <<'PY'
import struct, sys
f = open(sys.argv[1], "rb").read()
metas = []
for i in (0, 1):
    m = f[i * 4096 + 16:]
    root, = struct.unpack_from("<Q", m, 16)
    txid, = struct.unpack_from("<Q", m, 48)
    metas.append((txid, root))
print(max(metas)[1])
PY
)
    dd if=/dev/urandom of="$outbox" bs=4096 seek="$root" count=1 conv=notrunc status=none
  fi
  aside=$(ls "$DIR/state/outbox" | grep -c -v '^outbox.db$')
  if start_daemon && alive && [ "$(ls "$DIR/state/outbox" | grep -c -v '^outbox.db$')" -gt "$aside" ]; then
    pass "outbox $damage: started empty, the damaged file kept aside ($(ls -t "$DIR/state/outbox" | grep -v '^outbox.db$' | head -1))"
  else
    fail "outbox $damage: daemon did not start cleanly"; tail -5 "$DIR/run.log"
  fi
  [ -n "$daemon" ] && stop_daemon
done

# 2. Hostile files in the replay.
python3 - "$DIR/replay" <<'PY'
import struct, sys, zlib, os
d = sys.argv[1]
def chunk(t, b): return struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b) & 0xffffffff)
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")
open(os.path.join(d, "frame100-claims-100000.png"), "wb").write(png)
bmp = b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) + struct.pack("<iiiHHIIiiII", 40, 64, -2000000000, 1, 24, 0, 0, 0, 0, 0, 0)
open(os.path.join(d, "frame101-negative-height.bmp"), "wb").write(bmp)
open(os.path.join(d, "frame102-empty.png"), "wb").close()
PY
mkfifo "$DIR/replay/frame103-fifo.png"
ln -s /dev/zero "$DIR/replay/frame104-zero.png"
if start_daemon; then
  sleep 4
  skipped=$(curl -fsS -m 5 "http://127.0.0.1:$HTTP_PORT/metrics" | awk '/^inspectd_camera_images_skipped_total/ {print $2}')
  parts=$(curl -fsS -m 5 "http://127.0.0.1:$HTTP_PORT/api/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["counts"]["total"])')
  if alive && [ "${skipped:-0}" != 0 ] && [ "${parts:-0}" -gt 6 ]; then
    pass "hostile replay files: $skipped skips, $parts parts inspected, still running"
  else
    fail "hostile replay files: skipped=${skipped:-?} parts=${parts:-?}"; tail -5 "$DIR/run.log"
  fi
else
  fail "hostile replay files: daemon did not start"; tail -5 "$DIR/run.log"
fi

# 3. HTTP trigger bodies that would lose the part ID.
for ct in "text/plain" "multipart/form-data; boundary=x"; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -m 5 -X POST -H "Content-Type: $ct" --data 'part_id=A1' "http://127.0.0.1:$HTTP_PORT/api/trigger")
  [ "$code" = 415 ] && pass "POST /api/trigger $ct: 415" || fail "POST /api/trigger $ct: $code, want 415"
done

# 4. A reused MQTT correlation_id with another payload.
sub_out="$DIR/replies.txt"
mosquitto_sub -p "$BROKER_PORT" -t 'inspectd/hostile/reply/#' -C 2 -W 10 >"$sub_out" 2>/dev/null &
sub=$!
sleep 0.5
mosquitto_pub -p "$BROKER_PORT" -q 1 -t inspectd/hostile/cmd/threshold -m '{"correlation_id":"h1","image_threshold":0.7}'
mosquitto_pub -p "$BROKER_PORT" -q 1 -t inspectd/hostile/cmd/threshold -m '{"correlation_id":"h1","image_threshold":0.9}'
wait "$sub"
if grep -q '"ok":false' "$sub_out" && grep -q 'already used' "$sub_out" && curl -fsS -m 5 "http://127.0.0.1:$HTTP_PORT/api/status" | grep -q '"threshold":0.7'; then
  pass "reused correlation_id with another payload: refused, the first command's threshold 0.7 kept"
else
  fail "reused correlation_id: $(tr '\n' ' ' <"$sub_out")"
fi

# 5. A reload with a bundle whose template claims 2,000,000² (hash updated).
cp -r "$DIR/bundle" "$DIR/bomb"
python3 - "$DIR/bomb" <<'PY'
import hashlib, re, struct, sys, zlib, os
d = sys.argv[1]
def chunk(t, b): return struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b) & 0xffffffff)
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2000000, 2000000, 8, 0, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")
if not os.path.exists(os.path.join(d, "template.png")):
    print("no template.png in the bundle (trained without alignment)"); sys.exit(0)
open(os.path.join(d, "template.png"), "wb").write(png)
m = open(os.path.join(d, "manifest.toml")).read()
h = hashlib.sha256(png).hexdigest()
m, n = re.subn(r'("template\.png"\s*=\s*")[0-9a-f]{64}', lambda x: x.group(1) + h, m)
if n != 1:
    sys.exit("no SHA-256 of template.png in the manifest")
open(os.path.join(d, "manifest.toml"), "w").write(m)
PY
rss() { awk '/VmRSS/ {print int($2/1024)}' "/proc/$daemon/status"; }
conf "$DIR/inspectd.toml" "$DIR/bomb"
before=$(rss)
kill -HUP "$daemon"
sleep 3
if alive && grep 'reload failed' "$DIR/run.log" | grep -q '2000000x2000000' && [ "$(rss)" -lt $((before + 200)) ]; then
  pass "reload with a template claiming 2,000,000²: refused, still running (RSS $before → $(rss) MB)"
else
  fail "reload with a huge template"; tail -3 "$DIR/run.log"
fi
conf "$DIR/inspectd.toml" "$DIR/bundle"

# 6. A SIGHUP storm.
for _ in $(seq 20); do kill -HUP "$daemon"; done
sleep 5
alive && pass "20 SIGHUPs at once: still running" || fail "SIGHUP storm"

# 7. A second daemon on the same state_dir.
if out=$(timeout 30 "$BIN" run -c "$DIR/inspectd.toml" 2>&1); then
  fail "second daemon on the same state_dir started"
elif grep -q 'in use by another inspectd' <<<"$out"; then
  pass "second daemon on the same state_dir: refused ($(grep -o 'is in use by another inspectd (pid [0-9]*)' <<<"$out"))"
else
  fail "second daemon: $out"
fi

# 8. check-config on what is not a configuration file.
mkfifo "$DIR/fifo.toml"
python3 -c 'print("config_version = 1"); [print(f"k{i} = 1") for i in range(40000)]' >"$DIR/unknown.toml"
for f in /dev/zero "$DIR/fifo.toml" "$DIR/unknown.toml"; do
  start=$(date +%s%N)
  timeout 20 "$BIN" check-config -c "$f" >/dev/null 2>&1
  rc=$?
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  if [ "$rc" = 1 ] || [ "$rc" = 2 ]; then pass "check-config -c $f: refused (exit $rc) in $ms ms"; else fail "check-config -c $f: exit $rc after $ms ms"; fi
done

# 9. SIGINT: exit 0 with every output flushed.
if stop_daemon; then pass "SIGINT: exit 0"; else fail "SIGINT: exit non-zero"; fi
grep -q 'msg=stopped' "$DIR/run.log" || fail "no 'stopped' summary in the log"

if [ "$fails" -gt 0 ]; then echo "hostile: $fails FAILED"; exit 1; fi
echo "hostile: all passed"
