#!/bin/sh
# SPDX-License-Identifier: MIT
#
# check-silent SILENT.a SPEAKING.a — "common never logs", checked where
# macros cannot hide a call: in the objects. No object of the silent library
# (lib_common) may reference
#  - a symbol the speaking library (lib_daemon: the logger and the daemon
#    skeleton) defines: log_emit, log_setup, daemon_*, …, whatever macro
#    led there;
#  - a way around the logger: the journal (sd_journal_*), syslog, the
#    standard streams (stderr, stdout, printf, puts, perror), err(3) and
#    warn(3).
# A module that must say something returns an error code or an error
# message, and the daemon logs it once, at the boundary.
#
# TAP: one test per object of the silent library, after two that make sure
# the check cannot pass by reading nothing. NM: the nm to use (default nm).
set -eu

nm=${NM:-nm}
silent=$1
speaking=$2

# Global symbols the speaking library defines, one per line.
defined=$("$nm" -g --defined-only "$speaking" | awk 'NF == 3 && $2 ~ /^[A-Z]$/ { print $3 }' | sort -u)
escapes='^(sd_journal_.*|syslog|vsyslog|openlog|stderr|stdout|perror|printf|vprintf|__printf_chk|__vprintf_chk|puts|putchar|err|errx|verr|verrx|warn|warnx|vwarn|vwarnx|error|error_at_line)$'

# "object<TAB>symbol" for every undefined reference of the silent library.
refs=$("$nm" -u "$silent" | awk '
        /:$/ { obj = $0; sub(/:$/, "", obj); n = split(obj, p, "/"); obj = p[n]; print obj "\t"; next }
        NF == 2 && $1 == "U" { print obj "\t" $2 }')
objects=$(printf '%s\n' "$refs" | cut -f1 | sort -u | grep -v '^$' || true)

n_objects=$(printf '%s\n' "$objects" | grep -c . || true)
echo "1..$((n_objects + 2))"
if printf '%s\n' "$defined" | grep -qx 'log_emit'; then
        echo "ok 1 - $(basename "$speaking") defines log_emit (the logger is what is looked for)"
else
        echo "not ok 1 - $(basename "$speaking") does not define log_emit: nothing to look for"
fi
if [ "$n_objects" -gt 0 ]; then
        echo "ok 2 - $(basename "$silent") has $n_objects objects"
else
        echo "not ok 2 - no object read from $(basename "$silent")"
fi

# Each object's forbidden references, in the order nm lists the objects.
{
        printf '%s\n' "$defined" | sed 's/^/D\t/'
        printf '%s\n' "$refs" | sed 's/^/R\t/'
} | awk -F '\t' -v escapes="$escapes" '
        $1 == "D" { defined[$2] = 1; next }
        $1 == "R" && !($2 in seen) { seen[$2] = 1; order[++n] = $2; bad[$2] = "" }
        $1 == "R" && $3 != "" && (($3 in defined) || $3 ~ escapes) && index(" " bad[$2] " ", " " $3 " ") == 0 {
                bad[$2] = bad[$2] (bad[$2] == "" ? "" : " ") $3
        }
        END {
                for (i = 1; i <= n; i++) {
                        o = order[i]
                        if (bad[o] == "")
                                printf "ok %d - %s is silent\n", i + 2, o
                        else
                                printf "not ok %d - %s logs: it references %s\n", i + 2, o, bad[o]
                }
        }'
