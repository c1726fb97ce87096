# SPDX-License-Identifier: MIT
# Shared by the bench/run-*.sh scripts (sourced, POSIX sh).

# bench_endpoint NAME PORT [EXTRA_LINE]: a temporary $tmp (removed, with
# every background job killed, on exit), KNOCK_*_DIR under it, and a GitHub
# endpoint NAME listening on 127.0.0.1:PORT with secret "bench-secret".
bench_endpoint() {
    tmp=$(mktemp -d)
    trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
    export KNOCK_CONFIG_DIR=$tmp/etc KNOCK_STATE_DIR=$tmp/state KNOCK_RUNTIME_DIR=$tmp/run
    mkdir -p "$KNOCK_CONFIG_DIR/endpoints" "$KNOCK_STATE_DIR" "$KNOCK_RUNTIME_DIR"
    {
        printf '[endpoint]\nprovider = github\nsecret = literal:bench-secret\n'
        printf 'listen = 127.0.0.1:%s\n' "$2"
        if [ $# -ge 3 ]; then printf '%s\n' "$3"; fi
    } >"$KNOCK_CONFIG_DIR/endpoints/$1.conf"
}

# The median of the numbers on stdin, one a line.
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# The numeric JSON field $1 of each line on stdin.
field() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p"; }
