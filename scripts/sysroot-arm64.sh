#!/usr/bin/env bash
# Builds the Debian 12 (bookworm) arm64 sysroot that `make build-arm64`
# cross-compiles against and `make check-arm64` runs the binary in, at
# .deps/sysroot-arm64: libopencv-dev:arm64 with all its dependencies (headers,
# shared libraries, pkg-config files), libc6-dev and libstdc++-12-dev, plus
# the arm64 dynamic loader. Idempotent and quiet when the sysroot is current.
#
# Debian 12's multiarch libopencv-dev:arm64 cannot be installed beside the
# amd64 one (apt would remove the amd64 -dev packages), so this machine never
# gets `dpkg --add-architecture arm64`: mmdebstrap's "extract" variant
# downloads the packages and their dependencies with a private apt
# configuration and unpacks them into a directory, running no maintainer
# script (no emulation needed). Absolute symbolic links inside are made
# relative, so that a linker given --sysroot does not follow them out into
# the host's amd64 libraries.
#
# The sysroot is made in a staging directory beside it and renamed into
# place; its stamp file holds the hash of the recipe (suite, package list,
# steps), and a sysroot whose stamp matches is kept. The downloaded .debs
# are cached in ${XDG_CACHE_HOME:-~/.cache}/inspectd/sysroot-arm64/debs, so
# a rebuild does not fetch them again. Host tools (the aarch64 cross
# compilers, qemu-user-static, mmdebstrap) are installed with apt when
# missing, as scripts/deps.sh does. SYSROOT_MIRROR and
# SYSROOT_SECURITY_MIRROR choose the Debian mirrors (deb.debian.org by
# default).
set -euo pipefail
cd "$(dirname "$0")/.."

SUITE=bookworm
MIRROR="${SYSROOT_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${SYSROOT_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
PACKAGES=(libopencv-dev libc6-dev libstdc++-12-dev)
HOST_PACKAGES=(gcc-aarch64-linux-gnu g++-aarch64-linux-gnu qemu-user-static mmdebstrap)
# Bump when the steps below change what ends up in the sysroot.
RECIPE=3
SYSROOT=.deps/sysroot-arm64
STAMP_NAME=.inspectd-sysroot
DEB_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/inspectd/sysroot-arm64/debs"

log() { printf 'sysroot-arm64: %s\n' "$*"; }
die() { printf 'sysroot-arm64: %s\n' "$*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi

missing=()
for p in "${HOST_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing host tools: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

want="$(printf 'recipe %s\nsuite %s\npackages %s\n' "$RECIPE" "$SUITE" "${PACKAGES[*]}" | sha256sum | awk '{print $1}')"
if [ -f "$SYSROOT/$STAMP_NAME" ] && [ "$(head -n 1 "$SYSROOT/$STAMP_NAME")" = "$want" ]; then
  exit 0
fi
if [ -e "$SYSROOT" ] && [ ! -f "$SYSROOT/$STAMP_NAME" ]; then
  die "$SYSROOT exists but was not made by this script (no $STAMP_NAME): move it away first"
fi

mkdir -p .deps "$DEB_CACHE"
# Staging directories left by an interrupted run of this script.
find .deps -maxdepth 1 -name '.sysroot-arm64.partial-*' -exec rm -rf {} +
stage="$(mktemp -d .deps/.sysroot-arm64.partial-XXXXXX)"
trap 'rm -rf "$stage"' EXIT
start=$SECONDS
log "building the Debian $SUITE arm64 sysroot for ${PACKAGES[*]} (about 1 GB; debs cached in $DEB_CACHE)"
# The .debs travel through the cache: synced into the target's apt archive
# before the download, and back out before mmdebstrap empties it (the
# extract variant runs extract hooks only, no customize hooks).
if ! mmdebstrap --quiet --variant=extract --architectures=arm64 \
  --include="$(IFS=,; echo "${PACKAGES[*]}")" \
  --skip=download/empty \
  --setup-hook='mkdir -p "$1"/var/cache/apt/archives' \
  --setup-hook="sync-in '$DEB_CACHE' /var/cache/apt/archives/" \
  --extract-hook="sync-out /var/cache/apt/archives '$DEB_CACHE'" \
  --extract-hook='cd "$1"/var/cache/apt/archives && ls *.deb >"$1"/.inspectd-sysroot-debs' \
  "$SUITE" "$stage" \
  "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" \
  "deb $SECURITY_MIRROR $SUITE-security main" >"$stage.log" 2>&1; then
  tail -n 30 "$stage.log" >&2
  rm -f "$stage.log"
  die "mmdebstrap failed (log above)"
fi
rm -f "$stage.log"
# Drop cached .debs that this build did not use (older versions).
find "$DEB_CACHE" -maxdepth 1 -name '*.deb' -printf '%f\n' | sort >"$stage/.cache-debs"
sort "$stage/.inspectd-sysroot-debs" | comm -23 "$stage/.cache-debs" - | while read -r f; do rm -f "$DEB_CACHE/$f"; done
rm -f "$stage/.cache-debs"

# Absolute links (libz.so -> /lib/aarch64-linux-gnu/libz.so.1.2.13) would
# lead the linker to the host's amd64 files: point them inside the sysroot.
root="$(cd "$stage" && pwd)"
while IFS= read -r -d '' link; do
  target="$(readlink "$link")"
  ln -sfn "$(realpath -m -s --relative-to="$(dirname "$link")" "$root$target")" "$link"
done < <(find "$root" -path "$root/dev" -prune -o -type l -lname '/*' -print0)
# Maintainer scripts did not run, so the links update-alternatives would
# make are missing: in this package set only the reference BLAS and LAPACK
# (libopencv_core needs libblas.so.3 and liblapack.so.3).
libdir="$root/usr/lib/aarch64-linux-gnu"
ln -sfn blas/libblas.so.3 "$libdir/libblas.so.3"
ln -sfn lapack/liblapack.so.3 "$libdir/liblapack.so.3"
# Every library a shared object in the sysroot needs must be in it: what the
# linker (-rpath-link) and the loader under qemu will look for.
missing_libs="$(find "$libdir" "$root/lib/aarch64-linux-gnu" "$root/usr/lib" -maxdepth 1 -name '*.so*' -type f -print0 |
  { xargs -0 aarch64-linux-gnu-readelf -d 2>/dev/null || true; } | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | sort -u |
  while read -r n; do
    [ -e "$libdir/$n" ] || [ -e "$root/lib/aarch64-linux-gnu/$n" ] || [ -e "$root/usr/lib/$n" ] || echo "$n"
  done)"
[ -z "$missing_libs" ] || die "libraries needed in the sysroot but missing from it: $(echo $missing_libs)"
# Documentation is of no use to a linker.
rm -rf "$root"/usr/share/doc "$root"/usr/share/man "$root"/usr/share/info "$root"/usr/share/locale

for f in usr/lib/aarch64-linux-gnu/pkgconfig/opencv4.pc lib/ld-linux-aarch64.so.1 usr/include/opencv4/opencv2/core.hpp; do
  [ -e "$root/$f" ] || die "the sysroot lacks $f"
done
{ echo "$want"; echo "# made by scripts/sysroot-arm64.sh on $(date -u +%FT%TZ): Debian $SUITE arm64, ${PACKAGES[*]}"; } >"$stage/$STAMP_NAME"

if [ -e "$SYSROOT" ]; then
  # Ours (checked above) and out of date: replaced by the new one.
  old="$(mktemp -d .deps/.sysroot-arm64.partial-XXXXXX)"
  mv "$SYSROOT" "$old/old"
  mv "$stage" "$SYSROOT"
  rm -rf "$old"
else
  mv "$stage" "$SYSROOT"
fi
trap - EXIT
log "done in $((SECONDS - start)) s: $SYSROOT ($(du -sh "$SYSROOT" | awk '{print $1}'), $(wc -l <"$SYSROOT/.inspectd-sysroot-debs") packages)"
