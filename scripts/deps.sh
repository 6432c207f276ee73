#!/usr/bin/env bash
# Installs everything inspectd needs on a fresh Debian 12 machine, idempotently:
# apt packages, the ONNX Runtime CPU library (from the npm package onnxruntime-node,
# checksum-verified and cached), and the Go modules. Quiet when everything is present.
# INSPECTD_ORT_ARCH (arm64, x64) picks the ONNX Runtime library's architecture;
# INSPECTD_DEPS_APT=0 skips the apt packages (a box that is not Debian 12).
set -euo pipefail

cd "$(dirname "$0")/.."

ORT_VERSION=1.30.0
ORT_TGZ_SHA256=6e3390d6b783e7be946fad629292799da28d0b42f84856e50d2c1b0383291e75
declare -A ORT_LIB_SHA256=(
  [x64]=ffb75a925ba05e47b235bb66e3e3911714a80b328a9c9425539feb204aa32a23
  [arm64]=1f549d46250b005580b597f4164984aaf75b3bcb9f3aeb07c7f8a8fe60b23c76
)
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/inspectd"
ORT_DIR=.deps/onnxruntime

# Debian packages: build (OpenCV for gocv, pkg-config), camera stand-ins
# (GStreamer test sources, RTSP server, H.264/MJPEG codecs), test services (mosquitto),
# the status-page check (headless chromium),
# unit verification (systemd-analyze), the npm client for the runtime library,
# and the PyTorch/scikit-learn references used by golden-file scripts and benches.
APT_PACKAGES=(
  build-essential pkg-config libopencv-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly
  gstreamer1.0-libav gstreamer1.0-tools gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gi
  mosquitto mosquitto-clients
  chromium
  systemd
  npm ca-certificates
  python3 python3-numpy python3-torch python3-sklearn python3-onnx
)

log() { printf 'deps: %s\n' "$*"; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# npm may come from outside Debian (e.g. a NodeSource install); accept any working npm.
if command -v npm >/dev/null 2>&1; then
  missing=("${missing[@]/npm}")
fi
read -r -a missing <<<"${missing[*]:-}"
# INSPECTD_DEPS_APT=0 leaves apt alone: on a box that is not Debian 12 (a
# Jetson's Ubuntu), whoever builds there installs Go, libopencv-dev,
# pkg-config and npm from its own distribution.
if [ "${INSPECTD_DEPS_APT:-1}" = 0 ]; then
  [ "${#missing[@]}" -eq 0 ] || log "INSPECTD_DEPS_APT=0: not installing ${missing[*]}"
  missing=()
fi
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing apt packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# INSPECTD_ORT_ARCH=arm64 (or x64) fetches the library of another architecture
# instead of this machine's, e.g. for the arm64 cross build (make build-arm64).
case "${INSPECTD_ORT_ARCH:-$(uname -m)}" in
  x86_64|x64) ort_arch=x64 ;;
  aarch64|arm64) ort_arch=arm64 ;;
  *) echo "deps: unsupported architecture ${INSPECTD_ORT_ARCH:-$(uname -m)} for the ONNX Runtime library" >&2; exit 1 ;;
esac
ort_lib="$ORT_DIR/linux-$ort_arch/libonnxruntime.so.1"
want_lib_sha="${ORT_LIB_SHA256[$ort_arch]}"

sha_of() { sha256sum "$1" | awk '{print $1}'; }

if [ ! -f "$ort_lib" ] || [ "$(sha_of "$ort_lib")" != "$want_lib_sha" ]; then
  mkdir -p "$CACHE_DIR"
  tgz="$CACHE_DIR/onnxruntime-node-$ORT_VERSION.tgz"
  if [ ! -f "$tgz" ] || [ "$(sha_of "$tgz")" != "$ORT_TGZ_SHA256" ]; then
    log "fetching onnxruntime-node@$ORT_VERSION (about 110 MB, cached in $CACHE_DIR)"
    rm -f "$tgz"
    (cd "$CACHE_DIR" && npm pack --silent "onnxruntime-node@$ORT_VERSION" >/dev/null)
    got="$(sha_of "$tgz")"
    if [ "$got" != "$ORT_TGZ_SHA256" ]; then
      echo "deps: $tgz has SHA-256 $got, expected $ORT_TGZ_SHA256; refusing to use it" >&2
      rm -f "$tgz"
      exit 1
    fi
  fi
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  tar -xzf "$tgz" -C "$tmp" "package/bin/napi-v6/linux/$ort_arch/libonnxruntime.so.1"
  got="$(sha_of "$tmp/package/bin/napi-v6/linux/$ort_arch/libonnxruntime.so.1")"
  if [ "$got" != "$want_lib_sha" ]; then
    echo "deps: libonnxruntime.so.1 for $ort_arch has SHA-256 $got, expected $want_lib_sha" >&2
    exit 1
  fi
  mkdir -p "$(dirname "$ort_lib")"
  install -m 0644 "$tmp/package/bin/napi-v6/linux/$ort_arch/libonnxruntime.so.1" "$ort_lib"
  log "ONNX Runtime $ORT_VERSION installed at $ort_lib"
fi

# The two WASM TensorFlow Lite interpreters the TFLite export test runs
# (tools/tflite-check, pinned by its package-lock.json): installed with
# `npm ci` from the npm cache under $CACHE_DIR (works offline once cached),
# skipped while node_modules matches the lock file.
TFLITE_CHECK=tools/tflite-check
tflite_stamp="$TFLITE_CHECK/node_modules/.inspectd-lock.sha256"
if [ ! -f "$tflite_stamp" ] || [ "$(cat "$tflite_stamp")" != "$(sha_of "$TFLITE_CHECK/package-lock.json")" ]; then
  log "installing the TFLite WASM interpreters into $TFLITE_CHECK/node_modules (npm cache in $CACHE_DIR/npm)"
  (cd "$TFLITE_CHECK" && npm ci --prefer-offline --no-audit --no-fund --silent --cache "$CACHE_DIR/npm")
  sha_of "$TFLITE_CHECK/package-lock.json" >"$tflite_stamp"
fi

go mod download
