#!/bin/sh
# SPDX-License-Identifier: MIT
#
# build-rpm.sh OUTDIR: builds knock-VERSION-1.ARCH.rpm from this source tree
# with rpmbuild (packaging/rpm/knock.spec) and copies it into OUTDIR.
# On a system without Fedora's systemd-rpm-macros (Debian), the macros come
# from packaging/rpm/macros.compat. Build dependencies are checked by meson,
# not rpm (a Debian host has no rpm database of them): --nodeps.
set -eu

[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
SRC=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$1"
OUT=$(cd "$1" && pwd)

if ! command -v rpmbuild >/dev/null; then
        [ "$(id -u)" = 0 ] || { echo "build-rpm: rpmbuild missing (package rpm)" >&2; exit 1; }
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rpm >&2
fi

VERSION=$(sed -n 's/^Version: *//p' "$SRC/packaging/rpm/knock.spec")
TOP=$(mktemp -d "${TMPDIR:-/tmp}/knock-rpm.XXXXXX")
trap 'rm -rf "$TOP"' EXIT INT TERM
mkdir -p "$TOP/SOURCES" "$TOP/SPECS" "$TOP/stage/knock-$VERSION"
( cd "$SRC" && tar -c --exclude=.git \
        $(for d in */meson-private; do [ -d "$d" ] && printf -- '--exclude=./%s ' "${d%/meson-private}"; done) . ) |
        tar -x -C "$TOP/stage/knock-$VERSION"
tar -C "$TOP/stage" -czf "$TOP/SOURCES/knock-$VERSION.tar.gz" "knock-$VERSION"
cp "$SRC/units/knock.sysusers" "$TOP/SOURCES/knock.sysusers"
cp "$SRC/packaging/rpm/knock.spec" "$TOP/SPECS/"

load=
rpm --eval '%{?systemd_post:yes}' | grep -q yes || load="--load=$SRC/packaging/rpm/macros.compat"
rpmbuild -bb --nodeps $load --define "_topdir $TOP" "$TOP/SPECS/knock.spec" \
        >"$OUT/build-rpm.log" 2>&1 || {
        tail -40 "$OUT/build-rpm.log" >&2
        echo "build-rpm: rpmbuild failed (log: $OUT/build-rpm.log)" >&2
        exit 1
}
rm -f "$OUT"/knock-*.rpm
find "$TOP/RPMS" -name 'knock-*.rpm' -exec cp {} "$OUT/" \;
ls "$OUT"/knock-*.rpm
