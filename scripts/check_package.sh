#!/usr/bin/env bash
# make check-package: prove the amd64 Debian package on a booted Debian 12
# under systemd. Builds the package twice with scripts/package.sh (the
# version make package gives, and a newer one for the upgrade), copies a
# cached Debian 12 minbase root with systemd (debootstrap, made once under
# ${XDG_CACHE_HOME:-~/.cache}/inspectd/nspawn), boots the copy with
# systemd-nspawn and drives it with nsenter:
#
#   install   apt-get install ./inspectd_<v>_amd64.deb (apt resolves the
#             Depends from Debian's mirror): user and groups, directory
#             owners, unit enabled and not started
#   unconfigured  a start without a bundle fails and stops retrying
#             (StartLimitBurst) instead of flapping
#   configure the demo bundle (two versions: gear-v1, gear-v2) and the demo
#             replay under /var/lib/inspectd, /etc/inspectd/inspectd.toml
#             edited as a technician would (images replay, simulated GPIO,
#             no MQTT, the status page on a free port)
#   start     systemctl start → active (Type=notify: after READY)
#   status    the status page answers with gear-v1's bundle hash
#   reload    models/current → gear-v2, systemctl reload → gear-v2's hash
#   watchdog  SIGSTOP of the main PID → systemd's watchdog restarts it
#   stop      systemctl stop → exit status 0, GPIO outputs in the safe state
#   upgrade   apt-get install of the newer .deb (--force-confold): the
#             edited configuration and the state are kept, daemon restarted
#   purge     apt-get purge → /etc/inspectd, /var/lib/inspectd, user gone
#
# One PASS/FAIL line per step with its time; exit status 1 if any failed.
# The container shares the host's network (no --private-network), so the
# status page is reached from here. Everything it creates lives in one
# temporary directory under the cache, removed at the end with the
# container; the cache keeps the base root and apt's downloaded archives.
# The demo bundle and replay come from .demo (scripts/demo.sh's steps make
# them when missing). CHECK_MIRROR overrides the Debian mirror.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
REPO="$PWD"

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/inspectd/nspawn"
BASE="$CACHE/bookworm-minbase-systemd"
MIRROR="${CHECK_MIRROR:-http://deb.debian.org/debian}"
say() { printf 'check-package: %s\n' "$*"; }
die() { printf 'check-package: %s\n' "$*" >&2; exit 1; }

for tool in debootstrap systemd-nspawn nsenter curl python3 sha256sum; do
  command -v "$tool" >/dev/null || die "$tool is missing: apt-get install debootstrap systemd-container util-linux curl python3"
done
[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, systemd-nspawn, nsenter)"

FAILED=0
declare -a SUMMARY=()
T0=$(date +%s.%N)
now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }
# record STATUS NAME T_START DETAIL
record() {
  local line
  line="$(printf '%-4s %-13s %6ss  %s' "$1" "$2" "$(elapsed "$3")" "$4")"
  printf '%s\n' "$line"
  SUMMARY+=("$line")
  if [ "$1" = FAIL ]; then FAILED=$((FAILED + 1)); fi
}

mkdir -p "$CACHE"
RUN="$(mktemp -d "$CACHE/run.XXXXXX")"
ROOT="$RUN/root"
NSPAWN_PID=""
CPID=""
cleanup() {
  local status=$?
  if [ -n "$NSPAWN_PID" ] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
    if [ -n "$CPID" ]; then
      nsenter -t "$CPID" -m -u -i -p -- systemctl poweroff >/dev/null 2>&1 || true
    fi
    for _ in $(seq 60); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$NSPAWN_PID" 2>/dev/null; then
      say "the container did not power off in 30 s; ending systemd-nspawn ($NSPAWN_PID)"
      kill "$NSPAWN_PID" 2>/dev/null || true
      wait "$NSPAWN_PID" 2>/dev/null || true
    fi
  fi
  rm -rf "$RUN"
  exit "$status"
}
trap cleanup EXIT

# ct runs a command inside the booted container.
ct() { nsenter -t "$CPID" -m -u -i -p -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"; }
# journal [ARGS] prints inspectd.service's journal, whole (a grep -q
# reading journalctl directly would end it early: SIGPIPE, and pipefail).
journal() { local j; j="$(ct journalctl -u inspectd.service --no-pager "$@")"; printf '%s\n' "$j"; }
# prop UNIT-PROPERTY prints inspectd.service's property.
prop() { ct systemctl show -p "$1" --value inspectd.service; }

# ---- the packages ---------------------------------------------------------
t=$(now)
[ -x bin/inspectd ] || die "bin/inspectd is missing: make build"
PACKAGE_COMPRESS="-Zgzip -z1" PACKAGE_DIST="$RUN/dist" PACKAGE_ARCHES=amd64 PACKAGE_LINTIAN=0 bash scripts/package.sh >"$RUN/package.log" 2>&1 ||
  { cat "$RUN/package.log" >&2; die "scripts/package.sh failed"; }
DEB1="$(ls "$RUN"/dist/inspectd_*_amd64.deb)"
V1="$(dpkg-deb -f "$DEB1" Version)"
V2="${V1}+upgrade1"
PACKAGE_COMPRESS="-Zgzip -z1" PACKAGE_VERSION="$V2" PACKAGE_DIST="$RUN/dist2" PACKAGE_ARCHES=amd64 PACKAGE_LINTIAN=0 bash scripts/package.sh >>"$RUN/package.log" 2>&1 ||
  { cat "$RUN/package.log" >&2; die "scripts/package.sh (upgrade version) failed"; }
DEB2="$(ls "$RUN"/dist2/inspectd_*_amd64.deb)"
record PASS packages "$t" "$(basename "$DEB1") and $(basename "$DEB2") built by scripts/package.sh"

# ---- the demo bundle and replay ------------------------------------------
t=$(now)
if [ ! -f .demo/bundle/manifest.toml ] || [ ! -d .demo/replay ]; then
  say "no demo bundle or replay in .demo: running scripts/demo.sh's steps (DEMO_PARTS=1)"
  DEMO_PARTS=1 bash scripts/demo.sh >"$RUN/demo.log" 2>&1 || { tail -20 "$RUN/demo.log" >&2; die "scripts/demo.sh failed"; }
fi
record PASS demo-bundle "$t" ".demo/bundle ($(du -sh .demo/bundle | cut -f1)), .demo/replay ($(ls .demo/replay | wc -l) images)"

# ---- the root file system -------------------------------------------------
t=$(now)
if [ ! -f "$BASE/.inspectd-base-complete" ]; then
  say "making the Debian 12 base root in $BASE (debootstrap, ~1 min, 241 MB)"
  partial="$CACHE/base.partial.$$"
  mkdir -p "$CACHE"
  debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus bookworm "$partial" "$MIRROR" >"$RUN/debootstrap.log" 2>&1 ||
    { rm -rf "$partial"; tail -20 "$RUN/debootstrap.log" >&2; die "debootstrap failed"; }
  date -u >"$partial/.inspectd-base-complete"
  mv "$partial" "$BASE"
fi
cp -a "$BASE" "$ROOT"
rm -f "$ROOT/.inspectd-base-complete"
mkdir -p "$CACHE/apt-archives/partial"
cp "$DEB1" "$DEB2" "$ROOT/root/"
record PASS rootfs "$t" "fresh copy of the cached debootstrap root ($(du -sh "$ROOT" | cut -f1))"

# ---- boot -----------------------------------------------------------------
t=$(now)
systemd-nspawn --register=no --keep-unit -q -D "$ROOT" --boot \
  --bind="$CACHE/apt-archives:/var/cache/apt/archives" >"$RUN/console.log" 2>&1 </dev/null &
NSPAWN_PID=$!
for _ in $(seq 150); do
  CPID="$(ps -o pid= --ppid "$NSPAWN_PID" | head -n 1 | tr -d ' ' || true)"
  # The container's PID 1 once it has executed systemd.
  [ -n "$CPID" ] && [ "$(cat "/proc/$CPID/comm" 2>/dev/null)" = systemd ] && break
  CPID=""
  sleep 0.2
done
[ -n "$CPID" ] || { cat "$RUN/console.log" >&2; die "systemd-nspawn started no container"; }
state=""
for _ in $(seq 60); do
  state="$(timeout 120 nsenter -t "$CPID" -m -u -i -p -- systemctl is-system-running --wait 2>/dev/null || true)"
  case "$state" in running|degraded|maintenance|stopping) break ;; esac
  sleep 0.5
done
if [ "$state" = running ] || [ "$state" = degraded ]; then
  record PASS boot "$t" "systemd in the container: is-system-running=$state"
else
  record FAIL boot "$t" "is-system-running=$state"
  exit 1
fi

# ---- install --------------------------------------------------------------
t=$(now)
if ct sh -c "apt-get update -q && apt-get install -y -q -o Dpkg::Options::=--force-unsafe-io /root/$(basename "$DEB1")" >"$RUN/install.log" 2>&1; then
  installed="$(ct dpkg-query -W -f '${Version}' inspectd || true)"
  groups="$(ct id -nG inspectd || true)"
  owners="$(ct stat -c '%U:%G %a' /etc/inspectd /var/lib/inspectd | tr '\n' ' ' || true)"
  enabled="$(ct systemctl is-enabled inspectd || true)"
  active="$(ct systemctl is-active inspectd || true)"
  n="$(grep -o '[0-9]* newly installed' "$RUN/install.log" | head -n 1 || true)"
  if [ "$installed" = "$V1" ] && [[ " $groups " == *" video "* ]] && [ "$owners" = "root:inspectd 750 inspectd:inspectd 750 " ] &&
    [ "$enabled" = enabled ] && [ "$active" = inactive ]; then
    record PASS install "$t" "apt-get install ./$(basename "$DEB1"): $n; user inspectd in [$groups]; /etc/inspectd, /var/lib/inspectd: $owners; $enabled, $active"
  else
    record FAIL install "$t" "version=$installed groups=[$groups] owners=[$owners] $enabled $active"
  fi
else
  tail -30 "$RUN/install.log"
  record FAIL install "$t" "apt-get install failed (above)"
  exit 1
fi

# ---- unconfigured: no flapping ---------------------------------------------
t=$(now)
ct systemctl start inspectd >/dev/null 2>&1 || true
for _ in $(seq 60); do
  [ "$(prop ActiveState)" = failed ] && [ "$(prop SubState)" = failed ] && [[ "$(ct systemctl list-jobs --no-legend)" != *inspectd* ]] && break
  sleep 1
done
sleep 3 # a restart would be due RestartSec after the last failure
n="$(prop NRestarts)"
if [ "$(prop ActiveState)" = failed ] && [ "$n" -le 5 ] && [[ "$(journal)" == *model.bundle*"no such file or directory"* ]]; then
  record PASS unconfigured "$t" "no bundle: check-config refused it, $n restarts, then failed (start limit), no flapping"
else
  record FAIL unconfigured "$t" "ActiveState=$(prop ActiveState) NRestarts=$n"
fi
ct systemctl reset-failed inspectd || true

# ---- configure: the technician's edit ----------------------------------------
t=$(now)
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
M="$ROOT/var/lib/inspectd/models"
cp -r .demo/bundle "$M/gear-v1"
cp -r .demo/bundle "$M/gear-v2"
# gear-v2: the same model recalibrated (a new manifest, so a new bundle hash).
python3 - "$M/gear-v2/manifest.toml" <<'PY'
import re, sys
p = sys.argv[1]
s = open(p).read()
s, n = re.subn(r'^created = .*$', 'created = 2026-12-31T00:00:00Z', s, count=1, flags=re.M)
assert n == 1, "no created line in the manifest"
open(p, "w").write(s)
PY
ln -s gear-v1 "$M/current"
cp -r .demo/replay "$ROOT/var/lib/inspectd/demo-replay"
chmod -R a+rX "$M" "$ROOT/var/lib/inspectd/demo-replay"
HASH1="$(sha256sum "$M/gear-v1/manifest.toml" | cut -c1-64)"
HASH2="$(sha256sum "$M/gear-v2/manifest.toml" | cut -c1-64)"
CONF="$ROOT/etc/inspectd/inspectd.toml"
python3 - "$CONF" "$PORT" <<'PY'
import re, sys
path, port = sys.argv[1], sys.argv[2]
text = open(path).read()
edits = {
    "station": {"id": '"pkgcheck-station"'},
    "camera": {"source": '"images"', "path": '"/var/lib/inspectd/demo-replay"', "loop": "true", "fps": "4.0"},
    "gpio": {"enabled": "true", "chip": '"sim"', "reject_line": '"reject"', "ready_line": '"ready"',
             "fault_line": '"fault"', "reject_delay": '"500ms"'},
    "mqtt": {"enabled": "false"},
    "http": {"listen": f'"127.0.0.1:{port}"'},
}
out, section, done = [], "", set()
for line in text.split("\n"):
    m = re.match(r"^\[([a-z_.]+)\]$", line)
    if m:
        section = m.group(1)
    m = re.match(r"^([a-z_]+) = ", line)
    if m and m.group(1) in edits.get(section, {}):
        line = f"{m.group(1)} = {edits[section][m.group(1)]}"
        done.add((section, m.group(1)))
    out.append(line)
want = {(s, k) for s, ks in edits.items() for k in ks}
assert done == want, f"keys not found: {want - done}"
# Written in place, as an editor would: the file keeps its owner and mode.
open(path, "w").write("# Edited by the technician (check_package.sh).\n" + "\n".join(out))
PY
CONF_SHA="$(sha256sum "$CONF" | cut -c1-64)"
if ct runuser -u inspectd -- inspectd check-config -c /etc/inspectd/inspectd.toml >"$RUN/check-config.log" 2>&1; then
  record PASS configure "$t" "bundles gear-v1 (${HASH1:0:12}) and gear-v2 (${HASH2:0:12}), current → gear-v1; inspectd.toml edited; check-config as inspectd: ok"
else
  cat "$RUN/check-config.log"
  record FAIL configure "$t" "check-config refused the edited configuration (above)"
fi

# ---- start ------------------------------------------------------------------
t=$(now)
if ct systemctl start inspectd && [ "$(prop ActiveState)" = active ]; then
  record PASS start "$t" "systemctl start returned after READY (Type=$(prop Type)): active, MainPID $(prop MainPID), status \"$(prop StatusText)\""
else
  ct journalctl -u inspectd --no-pager | tail -20
  record FAIL start "$t" "ActiveState=$(prop ActiveState)"
fi

# status_hash prints the bundle hash the status API reports ("" if none).
status_hash() {
  curl -fsS --max-time 5 "http://127.0.0.1:$PORT/api/status" 2>/dev/null |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["model"]["bundle_hash"])' 2>/dev/null || true
}

# ---- status page ------------------------------------------------------------
t=$(now)
code="$(curl -s -o "$RUN/page.html" -w '%{http_code}' --max-time 5 "http://127.0.0.1:$PORT/" || true)"
h="$(status_hash)"
if [ "$code" = 200 ] && [ "$h" = "$HASH1" ]; then
  record PASS status-page "$t" "GET http://127.0.0.1:$PORT/ → 200 ($(wc -c <"$RUN/page.html") bytes); /api/status bundle_hash ${h:0:12} = gear-v1"
else
  record FAIL status-page "$t" "GET / → $code; bundle_hash \"$h\", gear-v1 is $HASH1"
fi

# ---- reload -----------------------------------------------------------------
t=$(now)
pid_before="$(prop MainPID)"
ln -s gear-v2 "$M/current.new"
mv -T "$M/current.new" "$M/current"
ct systemctl reload inspectd || true
h=""
for _ in $(seq 120); do
  h="$(status_hash)"
  [ "$h" = "$HASH2" ] && break
  sleep 0.5
done
if [ "$h" = "$HASH2" ] && [ "$(prop MainPID)" = "$pid_before" ] && [[ "$(journal | grep 'reload done' || true)" == *"hash=${HASH2:0:12}"* ]]; then
  record PASS reload "$t" "current → gear-v2, systemctl reload: /api/status bundle_hash ${h:0:12} = gear-v2, journal \"reload done\", same MainPID $pid_before"
else
  record FAIL reload "$t" "bundle_hash \"$h\" (gear-v2 is ${HASH2:0:12}), MainPID $pid_before → $(prop MainPID)"
fi

# ---- watchdog ---------------------------------------------------------------
t=$(now)
pid="$(prop MainPID)"
restarts="$(prop NRestarts)"
wd_usec="$(prop WatchdogUSec)"
ct sh -c "kill -STOP $pid"
stopped_at=$(now)
newpid=""
for _ in $(seq 240); do
  p="$(prop MainPID)"
  if [ "$p" != "$pid" ] && [ "$p" != 0 ] && [ "$(prop ActiveState)" = active ]; then newpid="$p"; break; fi
  sleep 0.25
done
took="$(elapsed "$stopped_at")"
wd_line="$(journal | grep 'Watchdog timeout' | head -n 1 || true)"
wd_s="$(python3 -c "import re,sys; v=sys.argv[1]; m=re.fullmatch(r'(?:(\d+)min ?)?(?:(\d+(?:\.\d+)?)s)?', v); print(int(m.group(1) or 0)*60+float(m.group(2) or 0) if m else -1)" "$wd_usec")"
# The budget: WatchdogSec until systemd acts, then RestartSec (2 s) and a
# start-up (model load and warm-up, READY) of up to 15 s on this machine.
limit="$(python3 -c "print($wd_s + 2 + 15)")"
if [ -n "$newpid" ] && [ -n "$wd_line" ] && [ "$(prop NRestarts)" -gt "$restarts" ] &&
  python3 -c "import sys; sys.exit(0 if $took <= $limit else 1)"; then
  record PASS watchdog "$t" "SIGSTOP of MainPID $pid: \"${wd_line##*: }\"; active again as MainPID $newpid ${took}s after the stop (WatchdogSec=$wd_usec, limit ${limit}s), NRestarts $restarts → $(prop NRestarts)"
else
  record FAIL watchdog "$t" "after ${took}s: MainPID $pid → $(prop MainPID), NRestarts $restarts → $(prop NRestarts), watchdog line: \"$wd_line\""
fi

# ---- stop -------------------------------------------------------------------
t=$(now)
since="$(ct date '+%Y-%m-%d %H:%M:%S')"
sleep 1 # the journal's --since has whole seconds
ct systemctl stop inspectd || true
code="$(prop ExecMainCode)/$(prop ExecMainStatus)/$(prop Result)"
safe="$(journal --since "$since" | grep 'outputs halted in safe state.*reason=shutdown' | head -n 1 || true)"
if [ "$code" = "1/0/success" ] && [ -n "$safe" ]; then
  record PASS stop "$t" "systemctl stop: exited, status 0, Result=success; journal: \"$(printf '%s' "$safe" | sed 's/.*msg=/msg=/' | cut -c1-90)\""
else
  record FAIL stop "$t" "ExecMainCode/Status/Result=$code; safe-state line: \"$safe\""
fi

# ---- upgrade ----------------------------------------------------------------
t=$(now)
ct systemctl start inspectd || true
pid="$(prop MainPID)"
echo "kept across upgrades" >"$ROOT/var/lib/inspectd/technician-note.txt"
# Every path under /var/lib/inspectd before the upgrade must be there after
# it (the daemon may add files: it runs during the upgrade).
(cd "$ROOT/var/lib/inspectd" && find . | LC_ALL=C sort) >"$RUN/state-before"
if ct apt-get install -y -q -o Dpkg::Options::=--force-confold -o Dpkg::Options::=--force-unsafe-io \
  "/root/$(basename "$DEB2")" >"$RUN/upgrade.log" 2>&1; then
  installed="$(ct dpkg-query -W -f '${Version}' inspectd || true)"
  conf_now="$(sha256sum "$CONF" | cut -c1-64)"
  (cd "$ROOT/var/lib/inspectd" 2>/dev/null && find . | LC_ALL=C sort) >"$RUN/state-after" || true
  lost="$(LC_ALL=C comm -23 "$RUN/state-before" "$RUN/state-after" | wc -l)"
  note="$(cat "$ROOT/var/lib/inspectd/technician-note.txt" 2>/dev/null || true)"
  newpid="$(prop MainPID)"
  if [ "$installed" = "$V2" ] && [ "$conf_now" = "$CONF_SHA" ] && [ "$note" = "kept across upgrades" ] && [ "$lost" = 0 ] &&
    [ -L "$M/current" ] && [ "$(status_hash)" = "$HASH2" ] && [ "$(prop ActiveState)" = active ] && [ "$newpid" != "$pid" ]; then
    record PASS upgrade "$t" "$V1 → $V2 (--force-confold): edited inspectd.toml kept (sha ${CONF_SHA:0:12}), /var/lib/inspectd kept (all $(wc -l <"$RUN/state-before") paths, the note, the bundles), daemon restarted (MainPID $pid → $newpid) on gear-v2"
  else
    record FAIL upgrade "$t" "version $installed; config sha ${conf_now:0:12} (edited: ${CONF_SHA:0:12}); $lost state paths lost; note \"$note\"; current link $( [ -L "$M/current" ] && echo kept || echo gone); hash \"$(status_hash)\"; $(prop ActiveState) MainPID $pid → $newpid"
  fi
else
  tail -20 "$RUN/upgrade.log"
  record FAIL upgrade "$t" "apt-get install of $(basename "$DEB2") failed (above)"
fi

# ---- purge ------------------------------------------------------------------
t=$(now)
if ct apt-get purge -y -q inspectd >"$RUN/purge.log" 2>&1; then
  left=""
  for p in etc/inspectd var/lib/inspectd lib/systemd/system/inspectd.service usr/bin/inspectd usr/lib/inspectd \
    etc/systemd/system/multi-user.target.wants/inspectd.service; do
    if [ -e "$ROOT/$p" ] || [ -L "$ROOT/$p" ]; then left="$left /$p"; fi
  done
  user="$(ct getent passwd inspectd || true)"
  group="$(ct getent group inspectd || true)"
  running="$(ct sh -c 'for d in /proc/[0-9]*; do [ "$(cat "$d/comm" 2>/dev/null)" = inspectd ] && echo "${d#/proc/}"; done; true')"
  if [ -z "$left" ] && [ -z "$user" ] && [ -z "$group" ] && [ -z "$running" ]; then
    record PASS purge "$t" "apt-get purge inspectd: /etc/inspectd, /var/lib/inspectd, the unit, user and group gone; no inspectd process"
  else
    record FAIL purge "$t" "left:${left:- nothing}; user \"$user\"; group \"$group\"; processes \"$running\""
  fi
else
  tail -20 "$RUN/purge.log"
  record FAIL purge "$t" "apt-get purge failed (above)"
fi

# ---- shut down ----------------------------------------------------------------
t=$(now)
ct systemctl poweroff >/dev/null 2>&1 || true
for _ in $(seq 120); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 0.25; done
if ! kill -0 "$NSPAWN_PID" 2>/dev/null; then
  wait "$NSPAWN_PID" 2>/dev/null || true
  NSPAWN_PID=""
  record PASS shutdown "$t" "systemctl poweroff: the container is gone"
else
  record FAIL shutdown "$t" "the container is still running after poweroff"
fi

say "summary ($(elapsed "$T0") s in all):"
printf '  %s\n' "${SUMMARY[@]}"
if [ "$FAILED" -gt 0 ]; then
  say "$FAILED step(s) FAILED"
  exit 1
fi
say "all steps PASS"
