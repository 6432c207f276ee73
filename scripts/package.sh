#!/usr/bin/env bash
# make package: build dist/inspectd_<version>_<arch>.deb for each arch of
# PACKAGE_ARCHES (default "amd64"; make package passes "amd64 arm64") with
# dpkg-deb --root-owner-group, from a tree staged here
# out of the built binaries and the templates in packaging/, then run
# lintian on each (it must be clean; packaging/lintian-overrides says why
# for each tag it overrides).
#
#   amd64: bin/inspectd                 (make build)
#          .deps/onnxruntime/linux-x64/libonnxruntime.so.1   (make deps)
#   arm64: bin/linux-arm64/inspectd     (make build-arm64)
#          .deps/onnxruntime/linux-arm64/libonnxruntime.so.1 (make build-arm64)
#
# PACKAGE_VERSION overrides the version, which is otherwise the Debian form
# of `git describe`: 1.2.3 for the tag v1.2.3, 1.2.3+git4.gabcdef 4 commits
# after it, 0.0.0~git<UTC commit time>.<sha> without a tag, and "+dirty"
# appended when the tree has uncommitted changes.
# PACKAGE_MAINTAINER overrides the Maintainer field, PACKAGE_DIST the
# output directory (dist). PACKAGE_LINTIAN=0 skips lintian
# (check_package.sh, whose packages are make package's with other versions),
# PACKAGE_COMPRESS the dpkg-deb compression (-Zxz; it uses -Zgzip -z1).
#
# Depends: the build machine's own architecture's come from dpkg-shlibdeps on
# the staged files. For arm64 cross-built on amd64, whose libraries are not
# installed on the build machine, the libraries
# the arm64 binaries need (readelf NEEDED) must be the ones the amd64
# binaries need — same source, same Debian 12 packages, whose names are the
# same on every architecture — and the amd64 result is used, after checking
# against the arm64 sysroot (.deps/sysroot-arm64, scripts/sysroot-arm64.sh)
# that each of those libraries is there and each package exists for arm64
# (check_arm64_depends). Added
# by hand: the GStreamer plugins the camera pipelines use (they are loaded
# at run time, no ELF names them): gstreamer1.0-plugins-base (appsink,
# videoconvert, videoscale, decodebin) and gstreamer1.0-plugins-good
# (rtspsrc, rtph264depay/rtph265depay, jpegdec, v4l2src); recommended:
# gstreamer1.0-libav (software H.264/H.265 decoding of RTSP streams; a
# Jetson decodes with nvv4l2decoder from L4T instead). adduser for postinst;
# procps for /bin/kill, which the unit's ExecReload runs (a minbase Debian
# has none).
#
# The package is native (no Debian revision: the packaging lives in this
# tree), so its changelog is usr/share/doc/inspectd/changelog.gz, the name
# Debian policy gives a native package's (changelog.Debian.gz is for a
# non-native one; lintian: wrong-name-for-changelog-of-native-package).
#
# Every .deb is built in dist/ under a temporary name and renamed when
# complete; the staging tree is removed on exit.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."

ARCHES="${PACKAGE_ARCHES:-amd64}"
MAINTAINER="${PACKAGE_MAINTAINER:-inspectd maintainers <inspectd@users.noreply.github.com>}"
DIST="${PACKAGE_DIST:-dist}"
SYSROOT_ARM64=.deps/sysroot-arm64
GST_DEPENDS="gstreamer1.0-plugins-base, gstreamer1.0-plugins-good"
RECOMMENDS="gstreamer1.0-libav"
say() { printf 'package: %s\n' "$*"; }
die() { printf 'package: %s\n' "$*" >&2; exit 1; }

for tool in dpkg-deb dpkg-shlibdeps readelf gzip python3; do
  command -v "$tool" >/dev/null || die "$tool is missing: apt-get install dpkg-dev binutils python3"
done

# version prints the Debian-valid version of this checkout.
version() {
  local v desc date sha
  if desc="$(git describe --tags --match 'v[0-9]*' 2>/dev/null)"; then
    v="${desc#v}"
    if [[ "$v" =~ ^(.*)-([0-9]+)-g([0-9a-f]+)$ ]]; then
      v="${BASH_REMATCH[1]}+git${BASH_REMATCH[2]}.g${BASH_REMATCH[3]}"
    fi
    v="${v//-/\~}" # v1.2.3-rc1 → 1.2.3~rc1, which sorts before 1.2.3
  else
    date="$(TZ=UTC git log -1 --format=%cd --date=format-local:%Y%m%d%H%M%S)"
    sha="$(git rev-parse --short=7 HEAD)"
    v="0.0.0~git${date}.${sha}"
  fi
  if ! git diff --quiet HEAD 2>/dev/null; then
    v="${v}+dirty"
  fi
  printf '%s\n' "$v"
}

VERSION="${PACKAGE_VERSION:-$(version)}"
dpkg --validate-version "$VERSION" 2>/dev/null || die "version \"$VERSION\" is not a valid Debian version"
[[ "$VERSION" != *-* ]] || die "version \"$VERSION\": a native package has no Debian revision (no '-')"
COMMIT="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
# The changelog's date: the commit's, so that a rebuild of one commit
# gives the same changelog.
DATE="$(LC_ALL=C date -u -R -d "@$(git log -1 --format=%ct 2>/dev/null || date +%s)")"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/inspectd-package.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# HOST_ARCH is this machine's Debian architecture: its package is built
# from `make build`'s binary, with Depends from dpkg-shlibdeps on it (on a
# Jetson too: `make package PACKAGE_ARCHES=arm64` there derives Depends from
# the box's own libraries). arm64 on an amd64 machine is the cross-build.
HOST_ARCH="$(dpkg --print-architecture)"

# inputs_of ARCH prints the binary and the ONNX Runtime library of ARCH.
inputs_of() {
  case "$1:$HOST_ARCH" in
    amd64:amd64) echo "bin/inspectd .deps/onnxruntime/linux-x64/libonnxruntime.so.1" ;;
    arm64:arm64) echo "bin/inspectd .deps/onnxruntime/linux-arm64/libonnxruntime.so.1" ;;
    arm64:amd64) echo "bin/linux-arm64/inspectd .deps/onnxruntime/linux-arm64/libonnxruntime.so.1" ;;
    amd64:* | arm64:*) die "cannot package $1 on a $HOST_ARCH machine: build it on $1 (or arm64 on amd64, cross-built)" ;;
    *) die "architecture \"$1\" is not one of amd64, arm64" ;;
  esac
}

# machine_of ARCH prints readelf's Machine for ARCH.
machine_of() {
  case "$1" in
    amd64) echo "Advanced Micro Devices X86-64" ;;
    arm64) echo "AArch64" ;;
  esac
}

# strip_tool ARCH prints the strip that understands ARCH's objects.
strip_tool() {
  case "$1" in
    amd64) command -v strip || die "strip is missing: apt-get install binutils" ;;
    arm64) command -v aarch64-linux-gnu-strip || die "aarch64-linux-gnu-strip is missing: apt-get install binutils-aarch64-linux-gnu (make build-arm64 installs it)" ;;
  esac
}

# needed FILE prints the sonames FILE needs, one a line, sorted, without
# the dynamic loader (its name differs by architecture; libc6 ships it).
needed() {
  readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | grep -v '^ld-linux' | sort -u
}

# write_config DST writes the conffile: config/inspectd.example.toml with
# the package's paths (state in /var/lib/inspectd, the model bundle in
# /var/lib/inspectd/models/current).
write_config() {
  python3 - config/inspectd.example.toml "$1" <<'PY'
import re, sys, tomllib
src, dst = sys.argv[1], sys.argv[2]
text = open(src, encoding="utf-8").read()

def sub_once(pattern, repl, text, required=True):
    new, n = re.subn(pattern, repl, text, flags=re.M)
    if n > 1 or (required and n != 1):
        sys.exit(f"package: {src}: expected one match of {pattern!r}, found {n}")
    return new

text = sub_once(r"^# Copy to /etc/inspectd/inspectd\.toml and edit\. Check it with$",
                "# Installed by the inspectd package as a conffile: your edits survive\n"
                "# upgrades (dpkg asks, or keeps yours with --force-confold). Check it with",
                text)
text = sub_once(r'^bundle = ".*"$', 'bundle = "/var/lib/inspectd/models/current"', text)
text = sub_once(r'^state_dir = ".*"$', 'state_dir = "/var/lib/inspectd"', text)
# The example's note on the source tree's demo bundle means nothing here.
text = sub_once(r"^# This example points at the demo bundle folder of the source tree, which\n"
                r"# `make demo` fills: after it, this file passes `inspectd check-config`\.\n",
                "# The package's default is below: install the bundle there, or make that\n"
                "# a link to the bundle's directory, so that a new bundle is swapped in by\n"
                "# changing the link and `systemctl reload inspectd`.\n", text, required=False)
cfg = tomllib.loads(text)
if cfg["state_dir"] != "/var/lib/inspectd" or cfg["model"]["bundle"] != "/var/lib/inspectd/models/current":
    sys.exit("package: the generated configuration does not name the package's paths")
open(dst, "w", encoding="utf-8").write(text)
PY
}

# depends_of_stage TOP PKGDIR prints the shared-library Depends of the
# binaries staged in PKGDIR (TOP/debian/inspectd), from dpkg-shlibdeps
# (which wants debian/control beside the staged tree, as in a source
# package). Its warnings that ONNX Runtime links libraries it does not use
# are about the upstream build and harmless; any other warning fails.
depends_of_stage() {
  local top="$1" pkgdir="$2" out
  mkdir -p "$top/debian" "$pkgdir/DEBIAN"
  printf 'Source: inspectd\n\nPackage: inspectd\nArchitecture: any\n' >"$top/debian/control"
  out="$(cd "$top" && dpkg-shlibdeps -O -xinspectd \
    "-e${pkgdir#"$top"/}/usr/bin/inspectd" \
    "-e${pkgdir#"$top"/}/usr/lib/inspectd/libonnxruntime.so.1" 2>"$top/shlibdeps.err")" ||
    { cat "$top/shlibdeps.err" >&2; die "dpkg-shlibdeps failed"; }
  if grep -v -e '^$' -e 'could avoid a useless dependency if .*libonnxruntime' "$top/shlibdeps.err" >&2; then
    die "dpkg-shlibdeps warned (above)"
  fi
  out="${out#shlibs:Depends=}"
  [ -n "$out" ] || die "dpkg-shlibdeps found no Depends"
  printf '%s\n' "$out"
}

# set_host_depends sets HOST_DEPENDS, the Depends dpkg-shlibdeps derives
# for this machine's own binaries (HOST_ARCH).
HOST_DEPENDS=""
set_host_depends() {
  [ -z "$HOST_DEPENDS" ] || return 0
  local top="$WORK/shlibdeps-$HOST_ARCH" pkgdir bin ort
  read -r bin ort <<<"$(inputs_of "$HOST_ARCH")"
  [ -f "$bin" ] && [ -f "$ort" ] || die "the $HOST_ARCH binaries ($bin, $ort) are needed to derive Depends: make build deps"
  pkgdir="$top/debian/inspectd"
  install -D -m 0755 "$bin" "$pkgdir/usr/bin/inspectd"
  install -D -m 0644 "$ort" "$pkgdir/usr/lib/inspectd/libonnxruntime.so.1"
  HOST_DEPENDS="$(depends_of_stage "$top" "$pkgdir")"
}

# check_arm64_depends checks that the arm64 binaries need no library the
# amd64 ones do not, that each library they need is in the arm64 sysroot
# (.deps/sysroot-arm64, Debian 12's arm64 packages unpacked), and that each
# package of HOST_DEPENDS (amd64's) exists for arm64: installed in the sysroot's
# dpkg database when it has one, else among the arm64 .debs the sysroot was
# made from (scripts/sysroot-arm64.sh's cache).
check_arm64_depends() {
  local abin aort bin ort extra pkg lib missing="" status="$SYSROOT_ARM64/var/lib/dpkg/status"
  local debs="${XDG_CACHE_HOME:-$HOME/.cache}/inspectd/sysroot-arm64/debs"
  read -r abin aort <<<"$(inputs_of amd64)"
  read -r bin ort <<<"$(inputs_of arm64)"
  extra="$(comm -23 <({ needed "$bin"; needed "$ort"; } | sort -u) <({ needed "$abin"; needed "$aort"; } | sort -u))"
  if [ -n "$extra" ]; then
    die "the arm64 binaries need libraries the amd64 ones do not ($(echo $extra)); add their Debian 12 packages in $0"
  fi
  if [ ! -d "$SYSROOT_ARM64" ]; then
    say "arm64 Depends: no $SYSROOT_ARM64 to cross-check against (make build-arm64 makes it)"
    return 0
  fi
  for lib in $({ needed "$bin"; needed "$ort"; } | sort -u); do
    [ -e "$SYSROOT_ARM64/usr/lib/aarch64-linux-gnu/$lib" ] || [ -e "$SYSROOT_ARM64/lib/aarch64-linux-gnu/$lib" ] ||
      missing="$missing $lib"
  done
  [ -z "$missing" ] || die "arm64 libraries not in $SYSROOT_ARM64:$missing"
  for pkg in $(printf '%s\n' "$HOST_DEPENDS" | tr ',' '\n' | sed 's/([^)]*)//; s/|.*//; s/[[:space:]]//g'); do
    if grep -q '^Package: ' "$status" 2>/dev/null; then
      awk -v p="$pkg" 'BEGIN{RS=""} $0 ~ "(^|\n)Package: " p "\n" && $0 ~ /\nStatus: install ok installed/ && $0 ~ /\nArchitecture: (arm64|all)/ {found=1} END{exit !found}' "$status" ||
        die "$pkg (a Depends of the arm64 package) is not installed for arm64 in $SYSROOT_ARM64"
    elif compgen -G "$debs/${pkg}_*_arm64.deb" >/dev/null || compgen -G "$debs/${pkg}_*_all.deb" >/dev/null; then
      :
    else
      die "$pkg (a Depends of the arm64 package) is not among the arm64 packages of $SYSROOT_ARM64 ($debs)"
    fi
  done
  say "arm64 Depends: its $( { needed "$bin"; needed "$ort"; } | sort -u | wc -l) libraries are the amd64 ones and are in $SYSROOT_ARM64; every package exists for arm64"
}

# build ARCH writes dist/inspectd_<version>_ARCH.deb.
build() {
  local arch="$1" bin ort top pkg deps size deb f strip
  read -r bin ort <<<"$(inputs_of "$arch")"
  for f in "$bin" "$ort"; do
    if [ ! -f "$f" ]; then
      case "$arch" in
        amd64) die "$f is missing: run make build (and make deps)" ;;
        arm64) die "$f is missing: run make build-arm64 (or PACKAGE_ARCHES=amd64)" ;;
      esac
    fi
    [ "$(readelf -h "$f" | sed -n 's/^ *Machine: *//p')" = "$(machine_of "$arch")" ] ||
      die "$f is not a $arch object ($(readelf -h "$f" | sed -n 's/^ *Machine: *//p'))"
  done
  strip="$(strip_tool "$arch")"

  top="$WORK/$arch"
  pkg="$top/debian/inspectd"
  install -d -m 0755 "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/usr/lib/inspectd" "$pkg/lib/systemd/system" \
    "$pkg/etc/inspectd" "$pkg/var/lib/inspectd/models" "$pkg/usr/share/doc/inspectd" \
    "$pkg/usr/share/lintian/overrides"
  install -m 0755 "$bin" "$pkg/usr/bin/inspectd"
  "$strip" --remove-section=.comment --remove-section=.note "$pkg/usr/bin/inspectd"
  install -m 0644 "$ort" "$pkg/usr/lib/inspectd/libonnxruntime.so.1"
  "$strip" --remove-section=.comment --remove-section=.note --strip-unneeded "$pkg/usr/lib/inspectd/libonnxruntime.so.1"
  install -m 0644 systemd/inspectd.service "$pkg/lib/systemd/system/inspectd.service"
  write_config "$pkg/etc/inspectd/inspectd.toml"
  chmod 0644 "$pkg/etc/inspectd/inspectd.toml"
  install -m 0644 packaging/copyright "$pkg/usr/share/doc/inspectd/copyright"
  sed -e "s|@VERSION@|$VERSION|g" -e "s|@COMMIT@|$COMMIT|g" -e "s|@MAINTAINER@|$MAINTAINER|g" \
    -e "s|@DATE@|$DATE|g" packaging/changelog.in | gzip -9n >"$pkg/usr/share/doc/inspectd/changelog.gz"
  chmod 0644 "$pkg/usr/share/doc/inspectd/changelog.gz"
  install -m 0644 packaging/lintian-overrides "$pkg/usr/share/lintian/overrides/inspectd"
  for f in postinst prerm postrm; do
    install -m 0755 "packaging/$f" "$pkg/DEBIAN/$f"
  done
  install -m 0644 packaging/conffiles "$pkg/DEBIAN/conffiles"

  set_host_depends
  if [ "$arch" != "$HOST_ARCH" ]; then
    check_arm64_depends # the cross-built arm64 package on amd64
  fi
  deps="adduser, procps, $HOST_DEPENDS, $GST_DEPENDS"
  size="$(du -s -k --apparent-size --exclude=DEBIAN "$pkg" | cut -f1)"
  sed -e "s|@VERSION@|$VERSION|" -e "s|@ARCH@|$arch|" -e "s|@MAINTAINER@|$MAINTAINER|" \
    -e "s|@INSTALLED_SIZE@|$size|" -e "s|@DEPENDS@|$deps|" -e "s|@RECOMMENDS@|$RECOMMENDS|" \
    packaging/control.in >"$pkg/DEBIAN/control"
  (cd "$pkg" && find . -type f ! -path './DEBIAN/*' -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' md5sum) >"$pkg/DEBIAN/md5sums"
  chmod 0644 "$pkg/DEBIAN/md5sums" "$pkg/DEBIAN/control"

  mkdir -p "$DIST"
  deb="$DIST/inspectd_${VERSION}_${arch}.deb"
  SOURCE_DATE_EPOCH="$(git log -1 --format=%ct 2>/dev/null || date +%s)" \
    dpkg-deb --root-owner-group ${PACKAGE_COMPRESS:--Zxz} --build "$pkg" "$deb.partial" >/dev/null
  mv -f "$deb.partial" "$deb"
  say "$deb ($(du -h "$deb" | cut -f1)): Depends: $deps"
  if [ "${PACKAGE_LINTIAN:-1}" != 0 ]; then
    command -v lintian >/dev/null || die "lintian is missing: apt-get install lintian (or PACKAGE_LINTIAN=0)"
    local out
    # Its exit status counts overridden tags too (with --show-overrides):
    # judge by what it prints, where every tag not overridden is a line.
    out="$(lintian --display-info --show-overrides "$deb" 2>&1 || true)"
    if printf '%s\n' "$out" | grep -qvE '^(O: |N: |$|running with root privileges is not recommended!$)'; then
      printf '%s\n' "$out" >&2
      die "lintian reported tags for $deb (above); fix them or override them with a reason in packaging/lintian-overrides"
    fi
    say "lintian: clean ($(printf '%s\n' "$out" | grep -c '^O: ' || true) overridden tags, each with its reason in packaging/lintian-overrides)"
  fi
}

say "version $VERSION, architectures $ARCHES"
for arch in $ARCHES; do
  build "$arch"
done
