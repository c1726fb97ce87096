#!/bin/sh
# SPDX-License-Identifier: MIT
# Ingest benchmark: the same load (bench/ingest-load: unique GitHub-signed
# ~1.5 KB bodies over keep-alive connections) against a bare evhttp server
# answering 204 (the ceiling) and against knock-ingress storing every
# webhook with synchronous=FULL before its 200. Prints one JSON line per
# figure, ingress beside the baseline of the same run.
#   bench/run-ingest.sh [BUILD_DIR] [SECONDS] [RUNS]
set -eu
build=${1:-build}
secs=${2:-5}
runs=${3:-3}
port=18431
bport=18432
. "$(dirname "$0")/lib.sh"
bench_endpoint bench $port "max_connections = 1024"

# The disk's fsync latency, measured in the same run: at one connection every
# receipt waits for one fsync, so this bounds the 1-connection figure.
fsync_ms=$(dd if=/dev/zero of="$tmp/fsync-probe" bs=4k count=200 oflag=dsync 2>&1 |
    sed -n 's/.*copied, \([0-9.]*\) s.*/\1/p' | awk '{printf "%.3f", $1 * 1000 / 200}')
rm -f "$tmp/fsync-probe"

for conns in 64 1; do
    : >"$tmp/bare" ; : >"$tmp/knock"
    for r in $(seq "$runs"); do
        "$build/bench/bare-server" -p $bport &
        bpid=$!
        sleep 0.3
        "$build/bench/ingest-load" -p $bport -c $conns -d "$secs" -s bench-secret >>"$tmp/bare"
        kill $bpid; wait $bpid 2>/dev/null || true

        rm -f "$KNOCK_STATE_DIR"/bench.db*
        "$build/daemons/ingress/knock-ingress" bench 2>/dev/null &
        kpid=$!
        sleep 0.5
        "$build/bench/ingest-load" -p $port -c $conns -d "$secs" -s bench-secret >>"$tmp/knock"
        kill $kpid; wait $kpid 2>/dev/null || true
    done
    # The storage ceiling of this disk: the same rows, no HTTP, batches as
    # large as the connections allow.
    fl=$(for r in $(seq "$runs"); do rm -rf "$tmp/floor"; mkdir -p "$tmp/floor"
        "$build/bench/store-floor" "$tmp/floor" $conns "$secs" | field rps; done | median)
    b=$(field rps <"$tmp/bare" | median)
    k=$(field rps <"$tmp/knock" | median)
    p50=$(field p50_ms <"$tmp/knock" | median)
    p99=$(field p99_ms <"$tmp/knock" | median)
    bp99=$(field p99_ms <"$tmp/bare" | median)
    ratio=$(awk -v k="$k" -v b="$b" 'BEGIN {printf "%.2f", k / b}')
    echo "{\"bench\":\"ingest\",\"conns\":$conns,\"rps\":$k,\"p50_ms\":$p50,\"p99_ms\":$p99,\"baseline\":\"evhttp-204\",\"baseline_rps\":$b,\"baseline_p99_ms\":$bp99,\"ratio\":$ratio,\"fsync_ms\":$fsync_ms,\"store_floor_rps\":$fl,\"runs\":$runs}"
done
