# SPDX-License-Identifier: MIT
# Shared by the bench/run-*.sh scripts (sourced, POSIX sh).

# A port to listen on (and the next few): below Linux's ephemeral range
# (32768-60999), where a load generator's own connections, ours or another
# run's, would sometimes hold it (webhook's bind failed so).
bench_port=$((20000 + $$ % 10000))

# bench_tmp: a temporary $tmp, removed on exit with every background job
# killed; $bench_on_exit (shell code, if set) runs first.
bench_tmp() {
    tmp=$(mktemp -d)
    trap 'eval "${bench_on_exit:-}"; kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
}

# bench_conf DIR NAME PORT [EXTRA_LINE]: DIR/etc, DIR/state and DIR/run (a
# config, state and runtime directory, as KNOCK_*_DIR name them) holding a
# GitHub endpoint NAME listening on 127.0.0.1:PORT with secret "bench-secret".
bench_conf() {
    mkdir -p "$1/etc/endpoints" "$1/state" "$1/run"
    {
        printf '[endpoint]\nprovider = github\nsecret = literal:bench-secret\n'
        printf 'listen = 127.0.0.1:%s\n' "$3"
        if [ $# -ge 4 ]; then printf '%s\n' "$4"; fi
    } >"$1/etc/endpoints/$2.conf"
}

# bench_endpoint NAME PORT [EXTRA_LINE]: bench_tmp, and KNOCK_*_DIR under it
# (exported) holding bench_conf's endpoint NAME.
bench_endpoint() {
    bench_tmp
    export KNOCK_CONFIG_DIR=$tmp/etc KNOCK_STATE_DIR=$tmp/state KNOCK_RUNTIME_DIR=$tmp/run
    bench_conf "$tmp" "$@"
}

# The median of the numbers on stdin, one a line.
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# The numeric JSON field $1 of each line on stdin.
field() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p"; }

# fsync_ms DIR: the mean latency of a 4 KiB O_DSYNC write in DIR, in ms (the
# disk's fsync latency: at one connection every receipt waits for one).
fsync_ms() {
    dd if=/dev/zero of="$1/fsync-probe" bs=4k count=200 oflag=dsync 2>&1 |
        sed -n 's/.*copied, \([0-9.]*\) s.*/\1/p' | awk '{printf "%.3f", $1 * 1000 / 200}'
    rm -f "$1/fsync-probe"
}

# metric SOCKET NAME: a sample of a daemon's /metrics on its admin socket.
metric() {
    curl -s --unix-socket "$1" http://admin/metrics | sed -n "s/^$2 //p"
}

# batch_sums SOCKET: "SUM COUNT" of knock_commit_batch_size (an ingress's
# receipts and commits so far); mean_batch sums them over its input lines.
batch_sums() {
    echo "$(metric "$1" knock_commit_batch_size_sum) $(metric "$1" knock_commit_batch_size_count)"
}
mean_batch() {
    awk '{s += $1; c += $2} END {if (c > 0) printf "%.1f\n", s / c}'
}

# wal_sums SOCKET: "FRAMES COMMITS RESTARTS RESTART_SECONDS" of an ingress so
# far (knock_ingress_wal_*: the WAL frames its commits wrote, and the WAL
# restarts with the time its writer spent on them).
wal_sums() {
    echo "$(metric "$1" knock_ingress_wal_frames_total)" \
         "$(metric "$1" knock_commit_duration_seconds_count)" \
         "$(metric "$1" knock_ingress_wal_restarts_total)" \
         "$(metric "$1" knock_ingress_wal_restart_seconds_total)"
}

# wait_ready SOCKET: until the ingress behind the admin SOCKET says (/readyz)
# that its database is writable and its schema current (its other checks,
# a worker's heartbeat among them, do not matter to ingest); 10 s at most,
# then returns 1.
wait_ready() {
    i=0
    until curl -s --unix-socket "$1" http://admin/readyz | tr -d ' ' |
        grep '"database_writable","ok":true' | grep -q '"schema_current","ok":true'; do
        i=$((i + 1))
        [ $i -lt 200 ] || return 1
        sleep 0.05
    done
}

# cpu FILE THREAD: the median CPU µs per request of THREAD ("total" for all)
# over ingest-load's lines in FILE (ingest-load -P).
cpu() {
    if [ "$2" = total ]; then sed -n 's/.*"cpu_us_total":\([0-9.]*\).*/\1/p' "$1"
    else sed -n "s/.*\"cpu_us\":{[^}]*\"$2\":\([0-9.]*\).*/\1/p" "$1"; fi | median
}

# ratio A B [FORMAT]: A / B (printf FORMAT, default %.2f), null when B is 0 or empty.
ratio() {
    awk -v a="${1:-0}" -v b="${2:-0}" -v f="${3:-%.2f}" 'BEGIN {if (b > 0) printf f, a / b; else print "null"}'
}
