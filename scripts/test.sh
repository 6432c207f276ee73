#!/usr/bin/env bash
# Runs every test in both build flavours: packages without cgo under the race
# detector, cgo packages (OpenCV, ONNX Runtime) without it; the packages with
# workstation-only files once more with -tags workstation (again under -race
# unless they use cgo); the camera's Mat-leak check (-tags matprofile); then
# a short pass of every fuzz target (FUZZTIME each, default 2000x — a count:
# Go 1.26's fuzz coordinator can fail a duration-bounded run with a spurious
# "context deadline exceeded" at its end on a busy machine, golang/go#75804,
# fixed in Go 1.27; FUZZTIME=0
# skips it); then that `make demo` leaves no process behind
# (scripts/demo_leaves_nothing.sh: 5 parts; the first run in a checkout also
# trains the demo bundle, 1 to 2 minutes; DEMO_CHECK=0 skips it) and that
# config/inspectd.example.toml then passes check-config; and last that
# go.mod and go.sum are tidy. Extra arguments go to every `go test`.
set -euo pipefail
cd "$(dirname "$0")/.."

cgo_pattern='gocv\.io/x/gocv|github\.com/yalue/onnxruntime_go'
fuzztime="${FUZZTIME:-2000x}"
# GoMLX's pure-Go backend does pointer arithmetic that -race's checkptr
# refuses (gomlx/compute v0.1.6 matmul: "pointer arithmetic result points to
# invalid allocation"); keep the race detector, drop checkptr for GoMLX only.
race=(-race -gcflags='github.com/gomlx/...=-d=checkptr=0')

# classify TAGS PKG...: sets pure and cgo to the packages (of those given, all
# when none) whose non-test dependencies, built with TAGS, include no cgo
# library, and the others.
classify() {
  local tags=$1; shift
  local p
  pure=(); cgo=()
  while read -r p deps; do
    if [[ " $deps " =~ $cgo_pattern ]]; then cgo+=("$p"); else pure+=("$p"); fi
  done < <(go list -tags "$tags" -f '{{.ImportPath}} {{join .Imports " "}} {{join .Deps " "}}' "${@:-./...}")
}

run() { echo "== $*"; "$@"; }

# Edge flavour.
classify ""
run go test "${race[@]}" -count=1 "$@" "${pure[@]}"
[ "${#cgo[@]}" -eq 0 ] || run go test -count=1 "$@" "${cgo[@]}"

# Workstation flavour: the packages whose files differ with the tag.
mapfile -t ws < <(grep -rl --include='*.go' '^//go:build.*workstation' . | xargs -r -n1 dirname | sort -u)
if [ "${#ws[@]}" -gt 0 ]; then
  classify workstation "${ws[@]}"
  [ "${#pure[@]}" -eq 0 ] || run go test "${race[@]}" -count=1 -tags workstation "$@" "${pure[@]}"
  [ "${#cgo[@]}" -eq 0 ] || run go test -count=1 -tags workstation "$@" "${cgo[@]}"
fi

# Every gocv Mat the camera allocates is closed (gocv's Mat profile).
run go test -count=1 -tags matprofile "$@" ./camera

# A short fuzz pass over every fuzz target, found anew each run: `go test
# -list` prints a package's matching names, then its "ok" line.
if [ "$fuzztime" != "0" ]; then
  go test -list '^Fuzz' ./... | awk '/^Fuzz/ {names[n++] = $1; next}
    /^ok/ {for (i = 0; i < n; i++) print $2, names[i]; n = 0; next}
    {n = 0}' | while read -r pkg fuzz; do
    run go test -run '^$' -fuzz "^${fuzz}\$" -fuzztime "$fuzztime" "$pkg" </dev/null
  done
fi

# `make demo` stops every process it starts (its MQTT subscribers once
# outlived it, reconnecting forever).
# Once the demo has run (and filled testdata/demo-bundle), the example
# configuration passes check-config.
if [ "${DEMO_CHECK:-1}" != "0" ]; then
  run bash scripts/demo_leaves_nothing.sh
  if [ -f .demo/bundle/manifest.toml ]; then
    run bin/inspectd-workstation check-config -c config/inspectd.example.toml
  fi
fi

# go.mod and go.sum are what `go mod tidy` makes of the imports (tidy
# considers every build tag, so workstation and matprofile files count).
echo "== go mod tidy -diff"
if ! tidy="$(go mod tidy -diff 2>&1)"; then
  printf '%s\n' "$tidy"
  echo "go.mod/go.sum are not tidy (or tidy failed, see above): run 'go mod tidy' and commit go.mod and go.sum" >&2
  exit 1
fi
