#!/bin/sh
# SPDX-License-Identifier: MIT
# The fuzz suite's run of one target: its seed corpus once, then SECONDS of
# fuzzing (ASan + UBSan, LeakSanitizer, a 10 s per-input timeout) into a
# scratch corpus that is thrown away. Fails on any crash, leak, timeout or
# out-of-memory; the input that did it is kept as ARTIFACTS<kind>-<sha1>.
#   smoke.sh FUZZ_EXE SEED_DIR SECONDS ARTIFACTS
set -eu
exe=$1 seeds=$2 seconds=$3 artifacts=$4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# libFuzzer's own failure status, 77, is meson's "skipped": every failure exits 1.
set -- -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -error_exitcode=1 -timeout_exitcode=1 -artifact_prefix="$artifacts"
if [ -f "${seeds%/}.dict" ]; then
    set -- "$@" -dict="${seeds%/}.dict"
fi
exec "$exe" "$@" "$work" "$seeds"
