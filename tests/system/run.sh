#!/bin/sh
# SPDX-License-Identifier: MIT
#
# run.sh SOURCE_ROOT OUTDIR: the `system` suite. Builds the .deb and the .rpm
# from the tree, checks them statically (lintian; systemd-analyze verify and
# security through systemd-vm's offline-check; rpm and deb file lists), then
# boots a real systemd (../shared/tools/systemd-vm/boot-and-run), installs the
# .deb and runs inside.sh there. Prints TAP: one line per check, numbered
# here; inside.sh's lines are renumbered into the same stream.
#
# Skips (1..0 # SKIP) when not root, or when systemd-nspawn or the systemd-vm
# tools are missing. Results and logs stay in OUTDIR (vm/ holds the
# container's journal.json, journal.txt and the inside logs).
set -u
SRC=$(cd "$1" && pwd)
mkdir -p "$2"
OUT=$(cd "$2" && pwd)
VM=${KNOCK_VM_TOOLS:-$SRC/../shared/tools/systemd-vm}
THRESHOLD=20          # systemd-analyze security: exposure 2.0 on its 0-100 scale

skip() { echo "1..0 # SKIP $*"; exit 0; }
[ "$(id -u)" = 0 ] || skip "needs root (systemd-nspawn, overlay mounts)"
command -v systemd-nspawn >/dev/null || skip "systemd-nspawn missing (apt-get install systemd-container)"
[ -x "$VM/boot-and-run" ] || skip "systemd-vm tools not found at $VM"
[ -d /var/cache/knock-systemd-vm/rootfs ] || command -v debootstrap >/dev/null ||
        skip "no cached rootfs and no debootstrap (apt-get install debootstrap)"

n=0
tap() { # tap ok|fail DESCRIPTION
        n=$((n + 1))
        if [ "$1" = ok ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi
}
diag() { sed 's/^/# /'; }
finish() { echo "1..$n"; exit 0; }

# ---- packages --------------------------------------------------------------------
if DEB=$("$SRC/packaging/build-deb.sh" "$OUT/deb" 2>"$OUT/build-deb.err" | tail -1) && [ -f "$DEB" ]; then
        tap ok "the .deb builds with dpkg-buildpackage ($(basename "$DEB"))"
else
        tap fail "the .deb builds with dpkg-buildpackage"
        tail -20 "$OUT/build-deb.err" | diag
        finish
fi

# No compiler warning in the package build (dpkg-buildflags adds FORTIFY,
# which warns about unused results the project's own build does not).
nwarn=$(grep -c 'warning:' "$OUT/deb/build-deb.log")
[ "$nwarn" = 0 ] && tap ok "the .deb build prints no compiler warning" ||
        { tap fail "the .deb build prints $nwarn compiler warning(s)"; grep 'warning:' "$OUT/deb/build-deb.log" | head -20 | diag; }

if ! command -v lintian >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends lintian \
                >/dev/null 2>&1
fi
if command -v lintian >/dev/null; then
        lintian --no-tag-display-limit "$DEB" >"$OUT/lintian.txt" 2>&1
        bad=$(grep -Ec '^[EW]: ' "$OUT/lintian.txt")
        [ "$bad" = 0 ] && tap ok "lintian: no error, no warning" ||
                { tap fail "lintian: $bad error(s)/warning(s)"; grep -E '^[EW]: ' "$OUT/lintian.txt" | diag; }
else
        tap fail "lintian could not be installed"
fi

# offline-check overlays the package on the rootfs; the man pages that
# Documentation= names are looked up by the host's man, so point it at the
# package's own pages.
rm -rf "$OUT/pkgroot"; dpkg-deb -x "$DEB" "$OUT/pkgroot"
MANPATH="$OUT/pkgroot/usr/share/man:" "$VM/offline-check" --threshold $THRESHOLD "$DEB" \
        >"$OUT/offline-check.txt" 2>&1
grep -q '^== verify .*: clean$' "$OUT/offline-check.txt" &&
        tap ok "systemd-analyze verify prints nothing for every unit" ||
        { tap fail "systemd-analyze verify prints nothing for every unit";
          sed -n '/^== verify/,/^== security/p' "$OUT/offline-check.txt" | grep -v '^== security' | diag; }
nsec=0
while IFS= read -r line; do
        unit=${line#== security }; unit=${unit%%:*}
        score=$(echo "$line" | sed -n 's/.*exposure level for [^:]*: \([0-9.]*\).*/\1/p')
        nsec=$((nsec + 1))
        case $line in
        *"threshold $THRESHOLD: ok)") tap ok "systemd-analyze security $unit: exposure $score <= 2.0" ;;
        *) tap fail "systemd-analyze security $unit: exposure ${score:-?} <= 2.0"; echo "$line" | diag ;;
        esac
done <<EOF2
$(grep '^== security ' "$OUT/offline-check.txt")
EOF2
[ $nsec -ge 9 ] && tap ok "security rated all $nsec services" || tap fail "security rated $nsec services, expected 9"

if RPM=$("$SRC/packaging/build-rpm.sh" "$OUT/rpm" 2>"$OUT/build-rpm.err" | tail -1) && [ -f "$RPM" ]; then
        tap ok "the .rpm builds with rpmbuild ($(basename "$RPM"))"
        # Same files, directories aside; Debian adds its changelog and copyright;
        # man page compression is each distribution's choice, and so are the
        # places of units (Debian 12: /lib) and zsh completions.
        dpkg-deb -c "$DEB" | awk '$1 !~ /^d/ {print $6}' | sed 's|^\.||' |
                grep -v '^/usr/share/doc/knock/' | sed 's/\.gz$//' |
                sed 's|^/lib/|/usr/lib/|; s|/zsh/vendor-completions/|/zsh/site-functions/|' |
                sort >"$OUT/files-deb.txt"
        rpm -qp --qf '[%{FILEMODES:perms} %{FILENAMES}\n]' "$RPM" 2>/dev/null |
                awk '$1 !~ /^d/ {print $2}' | grep -v '^/usr/share/doc/knock/' |
                grep -v '^/usr/lib/.build-id' | sed 's/\.gz$//' | sort >"$OUT/files-rpm.txt"
        diff -u "$OUT/files-deb.txt" "$OUT/files-rpm.txt" >"$OUT/files.diff" &&
                tap ok "rpm -qlp lists the same files as the .deb ($(wc -l <"$OUT/files-rpm.txt") files)" ||
                { tap fail "rpm -qlp lists the same files as the .deb"; diag <"$OUT/files.diff"; }
        nwarn=$(grep -c 'warning: ' "$OUT/rpm/build-rpm.log")
        [ "$nwarn" = 0 ] && tap ok "the .rpm build prints no compiler warning" ||
                { tap fail "the .rpm build prints $nwarn warning(s)"; grep 'warning: ' "$OUT/rpm/build-rpm.log" | head -20 | diag; }
        rpm -qp --qf '[%{FILENAMES}\n]' "$RPM" 2>/dev/null >"$OUT/rpm-paths.txt"
        grep -qx /usr/lib/systemd/system/knock@.service "$OUT/rpm-paths.txt" &&
        grep -qx /var/lib/knock "$OUT/rpm-paths.txt" && ! grep -q '^/usr/com\|^/lib/' "$OUT/rpm-paths.txt" &&
                tap ok "the .rpm uses Fedora's paths (/usr/lib/systemd/system, /var/lib/knock)" ||
                { tap fail "the .rpm uses Fedora's paths"; grep -v '^/usr/share/man' "$OUT/rpm-paths.txt" | diag; }
        if command -v rpmlint >/dev/null; then
                rpmlint -r "$SRC/packaging/rpm/knock.rpmlintrc" "$SRC/packaging/rpm/knock.spec" "$RPM" \
                        >"$OUT/rpmlint.txt" 2>&1
                grep -q ' 0 errors, 0 warnings' "$OUT/rpmlint.txt" &&
                        tap ok "rpmlint (with knock.rpmlintrc): no error, no warning" ||
                        { tap fail "rpmlint (with knock.rpmlintrc)"; grep -E ': [EW]: ' "$OUT/rpmlint.txt" | diag; }
        else
                echo "# rpmlint not installed (scripts/install-deps --test installs it)"
        fi
else
        tap fail "the .rpm builds with rpmbuild"
        tail -20 "$OUT/build-rpm.err" | diag
fi

# ---- under a real systemd ----------------------------------------------------------------
# boot-and-run answers 125 when the container did not boot (seen on a loaded
# machine: systemctl asked PID 1 before it listened and got "offline"). That
# is the harness, not knock: boot again, at most three times, but only when
# the test script never started.
# nspawn's own seccomp filter refuses Landlock, which the worker puts
# exec handlers in (knock-worker(8), Sandbox); a real host does not.
KNOCK_VM_NSPAWN_ARGS="${KNOCK_VM_NSPAWN_ARGS:-} --system-call-filter=landlock_create_ruleset
        --system-call-filter=landlock_add_rule --system-call-filter=landlock_restrict_self"
export KNOCK_VM_NSPAWN_ARGS
# The container installs the .deb offline: its runtime libraries beyond the
# rootfs's own set must be in it (libpq5, for `store = postgresql:`).
KNOCK_VM_EXTRA="${KNOCK_VM_EXTRA:+$KNOCK_VM_EXTRA,}libpq5"
export KNOCK_VM_EXTRA

# boot_run NAME TIMEOUT: boots the .deb under systemd-vm and runs
# tests/system/NAME.sh inside (out dir vm-NAME, vm for inside), booting
# again when the boot itself failed; its lines become TAP lines here.
boot_run() {
        name=$1 vmout=$OUT/vm-$1
        [ "$1" = inside ] && vmout=$OUT/vm
        for try in 1 2 3; do
                rm -rf "$vmout"
                "$VM/boot-and-run" -t "$2" -o "$vmout" -d "$DEB" "$SRC/tests/system/$name.sh" \
                        >"$OUT/$name.txt" 2>"$OUT/boot-and-run-$name.err"
                rc=$?
                [ $rc -eq 125 ] && [ ! -s "$OUT/$name.txt" ] &&
                        grep -q "boot failed" "$OUT/boot-and-run-$name.err" || break
                echo "# boot attempt $try failed before the test started; booting again"
                sleep 2
        done
        while IFS= read -r line; do
                case $line in
                "ok - "*) tap ok "${line#ok - }" ;;
                "not ok - "*) tap fail "${line#not ok - }" ;;
                "#"*) echo "$line" ;;
                esac
        done <"$OUT/$name.txt"
        case $rc in
        124) tap fail "boot-and-run ($name) timed out"; tail -5 "$OUT/boot-and-run-$name.err" | diag ;;
        125) tap fail "boot-and-run ($name) infrastructure failure"
             tail -20 "$OUT/boot-and-run-$name.err" | diag ;;
        *) if [ -s "$vmout/failed-units.txt" ]; then
                   echo "# failed units ($name):"; diag <"$vmout/failed-units.txt"
           fi ;;
        esac
}

boot_run inside 600

# A second boot for what an administrator's tools find (inside-cli.sh):
# completion, rules and dashboard, TCP and textfile scraping, the resolver.
boot_run inside-cli 300
finish
