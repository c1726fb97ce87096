#!/bin/sh
# SPDX-License-Identifier: MIT
# Does the web console slow ingest? The same ingest load (bench/ingest-load,
# 64 connections) against knock-ingress, alternating runs without and with
# the console in use: the live view open (a reader of /live/stream, which
# the console's thread feeds from the database twice a second) and the
# dashboard fetched every INTERVAL seconds (default 1; its own refresh link
# says 10 s), both on the admin socket. Prints one JSON line: ingest rps
# with the console beside the baseline without, their ratio (target >= 0.95),
# and how many live-view bytes and dashboards were served meanwhile.
# PARTS="live" or PARTS="dashboard" measures one of the two alone.
#   [PARTS=...] bench/run-console.sh [BUILD_DIR] [SECONDS] [RUNS] [INTERVAL]
set -eu
build=${1:-build}
secs=${2:-5}
runs=${3:-3}
interval=${4:-1}
parts=${PARTS:-live dashboard}
. "$(dirname "$0")/lib.sh"
port=$bench_port
bench_endpoint console $port
export KNOCK_CONSOLE_DIR="$(cd "$(dirname "$0")/.." && pwd)/console"
admin="$KNOCK_RUNTIME_DIR/console.admin"

: >"$tmp/plain"; : >"$tmp/console"; : >"$tmp/pages"; : >"$tmp/live"
for r in $(seq "$runs"); do
    for mode in plain console; do
        rm -f "$KNOCK_STATE_DIR"/console.db*
        "$build/daemons/ingress/knock-ingress" console 2>/dev/null &
        kpid=$!
        sleep 0.5
        lpid=; dpid=; : >"$tmp/stream"
        if [ $mode = console ]; then
            case $parts in *live*)
                curl -sN --unix-socket "$admin" http://localhost/live/stream >"$tmp/stream" &
                lpid=$! ;;
            esac
            case $parts in *dashboard*)
                ( while :; do
                    curl -s --unix-socket "$admin" http://localhost/ >/dev/null && echo x >>"$tmp/pages"
                    sleep "$interval"
                  done ) &
                dpid=$! ;;
            esac
        fi
        "$build/bench/ingest-load" -p $port -c 64 -d "$secs" -s bench-secret -P $kpid >>"$tmp/$mode"
        if [ $mode = console ]; then
            [ -z "$dpid$lpid" ] || kill $dpid $lpid
            [ -z "$lpid" ] || wait $lpid 2>/dev/null || true
            wc -c <"$tmp/stream" >>"$tmp/live"
        fi
        kill $kpid; wait $kpid 2>/dev/null || true
    done
done
p=$(field rps <"$tmp/plain" | median)
c=$(field rps <"$tmp/console" | median)
pp99=$(field p99_ms <"$tmp/plain" | median)
cp99=$(field p99_ms <"$tmp/console" | median)
# CPU µs per receipt: all threads, and the console's two (its own and the
# admin snapshot's), from ingest-load -P.
cpu() {
    if [ "$2" = total ]; then sed -n 's/.*"cpu_us_total":\([0-9.]*\).*/\1/p' "$1"
    else sed -n "s/.*\"cpu_us\":{[^}]*\"$2\":\([0-9.]*\).*/\1/p" "$1"; fi | median
}
n=$(wc -l <"$tmp/pages")
live=$(median <"$tmp/live")
echo "{\"bench\":\"ingest-with-console\",\"parts\":\"$parts\",\"conns\":64,\"rps\":$c,\"p99_ms\":$cp99,\"baseline\":\"no-console\",\"baseline_rps\":$p,\"baseline_p99_ms\":$pp99,\"ratio\":$(awk -v a="$c" -v b="$p" 'BEGIN {printf "%.3f", a / b}'),\"cpu_us_per_receipt\":$(cpu "$tmp/console" total),\"baseline_cpu_us_per_receipt\":$(cpu "$tmp/plain" total),\"cpu_us_console_thread\":$(cpu "$tmp/console" console),\"cpu_us_admin_thread\":$(cpu "$tmp/console" admin),\"dashboards\":$n,\"live_bytes_per_run\":$live,\"interval_s\":$interval,\"runs\":$runs}"
