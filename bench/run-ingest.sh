#!/bin/sh
# SPDX-License-Identifier: MIT
# Ingest benchmark: the same load (bench/ingest-load: unique GitHub-signed
# ~1.5 KB bodies over keep-alive connections) against
#   - a bare evhttp server answering 204 (the ceiling of HTTP on this machine),
#   - adnanh/webhook (Debian's `webhook`, the tool people run for this: a hook
#     that checks the same HMAC signature and runs nothing, stores nothing),
#   - knock-ingress storing every webhook with synchronous=FULL before its 200,
# rounds alternated so the three see the same machine. Prints one JSON line
# per connection count: medians of RUNS rounds of each, knock's CPU time per
# receipt by thread (event loop, writer, checkpointer) beside the bare
# server's and webhook's CPU per request, knock's mean commit batch, the
# disk's fsync latency and the store floor (bench/store-floor: the same rows,
# no HTTP), all from the same run. Also: the WAL pages each commit wrote,
# the writer's WAL restarts (a second, mean ms, share of the run), and the
# serial bound (1 / (1/bare + 1/floor): a bare round trip plus one floor
# commit per receipt, what one connection could reach if knock added
# nothing) with knock's ratio to it.
#   bench/run-ingest.sh [BUILD_DIR] [SECONDS] [RUNS]
set -eu
build=${1:-build}
secs=${2:-5}
runs=${3:-3}
. "$(dirname "$0")/lib.sh"
port=$bench_port
bport=$((port + 1))
wport=$((port + 2))
bench_endpoint bench $port "max_connections = 1024"

if ! command -v webhook >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends webhook \
        >/dev/null 2>&1 || true
fi
cat >"$tmp/hooks.json" <<'EOF'
[{"id": "bench", "execute-command": "", "response-message": "ok",
  "trigger-rule": {"match": {"type": "payload-hmac-sha256", "secret": "bench-secret",
                             "parameter": {"source": "header", "name": "X-Hub-Signature-256"}}}}]
EOF

# The disk's fsync latency, measured in the same run: at one connection every
# receipt waits for one fsync, so this bounds the 1-connection figure.
fsync_ms=$(fsync_ms "$tmp")

for conns in 64 1; do
    : >"$tmp/bare"; : >"$tmp/knock"; : >"$tmp/webhook"; : >"$tmp/batch"; : >"$tmp/wal"
    for r in $(seq "$runs"); do
        "$build/bench/bare-server" -p $bport &
        bpid=$!
        sleep 0.3
        "$build/bench/ingest-load" -p $bport -c $conns -d "$secs" -s bench-secret -P $bpid \
            >>"$tmp/bare"
        kill $bpid; wait $bpid 2>/dev/null || true

        if command -v webhook >/dev/null; then
            webhook -hooks "$tmp/hooks.json" -ip 127.0.0.1 -port $wport >/dev/null 2>&1 &
            wpid=$!
            sleep 0.5
            "$build/bench/ingest-load" -p $wport -c $conns -d "$secs" -s bench-secret \
                -u /hooks/bench -P $wpid >>"$tmp/webhook"
            kill $wpid; wait $wpid 2>/dev/null || true
        fi

        rm -f "$KNOCK_STATE_DIR"/bench.db*
        "$build/daemons/ingress/knock-ingress" bench 2>/dev/null &
        kpid=$!
        sleep 0.5
        "$build/bench/ingest-load" -p $port -c $conns -d "$secs" -s bench-secret -P $kpid \
            >>"$tmp/knock"
        batch_sums "$KNOCK_RUNTIME_DIR/bench.admin" | mean_batch >>"$tmp/batch"
        wal_sums "$KNOCK_RUNTIME_DIR/bench.admin" >>"$tmp/wal"
        kill $kpid; wait $kpid 2>/dev/null || true
    done
    # The storage ceiling of this disk: the same rows, no HTTP, batches as
    # large as the connections allow.
    for r in $(seq "$runs"); do rm -rf "$tmp/floor"; mkdir -p "$tmp/floor"
        "$build/bench/store-floor" "$tmp/floor" $conns "$secs"; done >"$tmp/fl"
    fl=$(field rps <"$tmp/fl" | median)
    flcpu=$(field cpu_us <"$tmp/fl" | median)
    b=$(field rps <"$tmp/bare" | median)
    k=$(field rps <"$tmp/knock" | median)
    w=$(field rps <"$tmp/webhook" | median)
    p50=$(field p50_ms <"$tmp/knock" | median)
    p99=$(field p99_ms <"$tmp/knock" | median)
    bp99=$(field p99_ms <"$tmp/bare" | median)
    wp99=$(field p99_ms <"$tmp/webhook" | median)
    kratio=$(ratio "$k" "$b")
    wratio=$(ratio "$k" "$w")
    kcpu=$(cpu "$tmp/knock" total); bcpu=$(cpu "$tmp/bare" total); wcpu=$(cpu "$tmp/webhook" total)
    cratio=$(ratio "$kcpu" "$bcpu")
    # WAL pages per commit; the writer's restarts of the WAL: how many a
    # second, their mean length, and the share of the run spent on them
    # (no batch is stored meanwhile: see daemons/ingress/writer.c).
    walf=$(awk '$2 > 0 {print $1 / $2}' "$tmp/wal" | median)
    walr=$(awk -v s="$secs" '{print $3 / s}' "$tmp/wal" | median)
    walms=$(awk '$3 > 0 {print $4 * 1000 / $3}' "$tmp/wal" | median)
    walshare=$(awk -v s="$secs" '{print $4 / s}' "$tmp/wal" | median)
    # At one connection nothing overlaps: a receipt costs at least a bare
    # HTTP round trip plus one commit of the store floor. The rate if knock
    # added nothing to those two, and knock's share of it.
    bound=null; kbound=null
    if [ "$conns" = 1 ]; then
        bound=$(awk -v b="$b" -v f="$fl" 'BEGIN {printf "%.0f", 1 / (1 / b + 1 / f)}')
        kbound=$(ratio "$k" "$bound")
    fi
    echo "{\"bench\":\"ingest\",\"conns\":$conns,\"rps\":$k,\"p50_ms\":$p50,\"p99_ms\":$p99,\"baseline\":\"evhttp-204\",\"baseline_rps\":$b,\"baseline_p99_ms\":$bp99,\"ratio\":$kratio,\"webhook_rps\":${w:-null},\"webhook_p99_ms\":${wp99:-null},\"ratio_to_webhook\":$wratio,\"cpu_us_per_receipt\":$kcpu,\"cpu_us_loop\":$(cpu "$tmp/knock" knock-ingress),\"cpu_us_writer\":$(cpu "$tmp/knock" writer),\"cpu_us_checkpoint\":$(cpu "$tmp/knock" checkpoint),\"baseline_cpu_us_per_request\":$bcpu,\"webhook_cpu_us_per_request\":${wcpu:-null},\"cpu_ratio\":$cratio,\"mean_batch\":$(median <"$tmp/batch"),\"wal_frames_per_commit\":$(printf %.1f "${walf:-0}"),\"wal_restarts_per_s\":$(printf %.1f "${walr:-0}"),\"wal_restart_ms\":$(printf %.2f "${walms:-0}"),\"wal_restart_share\":$(printf %.3f "${walshare:-0}"),\"fsync_ms\":$fsync_ms,\"store_floor_rps\":$fl,\"store_floor_cpu_us\":$flcpu,\"serial_bound_rps\":$bound,\"ratio_to_serial_bound\":$kbound,\"runs\":$runs}"
done
