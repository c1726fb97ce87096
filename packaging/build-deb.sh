#!/bin/sh
# SPDX-License-Identifier: MIT
#
# build-deb.sh OUTDIR: builds knock_VERSION_ARCH.deb from this source tree with
# dpkg-buildpackage and copies it into OUTDIR (printed on the last line).
#
# debian/ must sit at the source root for dpkg-buildpackage, so the tree is
# copied to a temporary directory (without build directories and .git) and
# packaging/debian is placed there as debian/. Missing build dependencies are
# installed with apt-get when running as root (CI); otherwise the build stops
# and dpkg-checkbuilddeps names them.
set -eu

[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
SRC=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$1"
OUT=$(cd "$1" && pwd)

# Tools of the packaging itself, then the package's Build-Depends.
tools="debhelper dpkg-dev fakeroot build-essential"
missing=
for p in $tools; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
        [ "$(id -u)" = 0 ] || { echo "build-deb: missing:$missing" >&2; exit 1; }
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >&2
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/knock-deb.XXXXXX")
trap 'rm -rf "$TMP"' EXIT INT TERM
mkdir "$TMP/knock"
# Build directories are any directory holding meson-private/ (build, build-*).
( cd "$SRC" && tar -c --exclude=.git --exclude=./packaging/debian \
        $(for d in */meson-private; do [ -d "$d" ] && printf -- '--exclude=./%s ' "${d%/meson-private}"; done) . ) |
        tar -x -C "$TMP/knock"
cp -r "$SRC/packaging/debian" "$TMP/knock/debian"

cd "$TMP/knock"
if ! deps=$(dpkg-checkbuilddeps 2>&1); then
        deps=$(printf '%s\n' "$deps" | sed -n 's/.*Unmet build dependencies: //p' | sed 's/([^)]*)//g; s/|[^ ]*//g')
        [ "$(id -u)" = 0 ] && [ -n "$deps" ] || { echo "build-deb: $deps" >&2; exit 1; }
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $deps >&2
fi
dpkg-buildpackage -us -uc -b >"$OUT/build-deb.log" 2>&1 || {
        tail -40 "$OUT/build-deb.log" >&2
        echo "build-deb: dpkg-buildpackage failed (log: $OUT/build-deb.log)" >&2
        exit 1
}
rm -f "$OUT"/knock_*.deb
cp "$TMP"/knock_*.deb "$OUT/"
ls "$OUT"/knock_*.deb
