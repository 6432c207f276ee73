#!/usr/bin/env bash
# Runs every test: packages without cgo under the race detector, cgo
# packages (OpenCV, ONNX Runtime) without it, and the workstation build's
# packages with -tags workstation. Extra arguments go to `go test`.
set -euo pipefail
cd "$(dirname "$0")/.."

cgo_pattern='gocv\.io/x/gocv|github\.com/yalue/onnxruntime_go'
mapfile -t all < <(go list ./...)
mapfile -t cgo < <(go list -f '{{.ImportPath}} {{join .Imports " "}} {{join .Deps " "}}' ./... | awk -v p="$cgo_pattern" '$0 ~ p {print $1}')
pure=()
for p in "${all[@]}"; do
  skip=
  for c in "${cgo[@]+"${cgo[@]}"}"; do [ "$p" = "$c" ] && skip=1 && break; done
  [ -z "$skip" ] && pure+=("$p")
done

echo "== go test -race (${#pure[@]} packages without cgo)"
go test -race -count=1 "$@" "${pure[@]}"
if [ "${#cgo[@]}" -gt 0 ]; then
  echo "== go test (${#cgo[@]} cgo packages)"
  go test -count=1 "$@" "${cgo[@]}"
fi
mapfile -t ws < <(grep -rl --include='*.go' '^//go:build.*workstation' . | xargs -r -n1 dirname | sort -u)
if [ "${#ws[@]}" -gt 0 ]; then
  echo "== go test -tags workstation (${#ws[@]} packages with workstation files)"
  go test -count=1 -tags workstation "$@" "${ws[@]}"
fi
