#!/bin/sh
# SPDX-License-Identifier: MIT
# Ingest on PostgreSQL beside SQLite, in one run (issue 19's benchmark): the
# same load (bench/ingest-load: unique GitHub-signed ~1.5 KB bodies over
# keep-alive connections) against
#   - one knock-ingress storing into SQLite (the default store),
#   - the same knock-ingress storing into PostgreSQL (`store =
#     postgresql:CONNINFO`, the schema knock_bench),
#   - two knock-ingress processes on PostgreSQL: the same endpoint and
#     database from two config/state/runtime directories, two ports, the
#     connections split over both (ingest-load -p P1,P2); receipts/s is their
#     sum, p99 that of the union of both's latencies,
# rounds alternated so the three see the same machine, at 64 connections,
# then one ingress on each engine at 1 connection. The PostgreSQL server is a
# private cluster of this run (tests/pgcluster: fsync on, synchronous_commit
# on: a 2xx waited for the COMMIT's WAL flush on this disk, as SQLite's waits
# for its fsync); each round gets a fresh schema (DROP SCHEMA ... CASCADE,
# then a CHECKPOINT, so every round starts with the same WAL state).
#
# Prints one JSON line per figure: medians of RUNS rounds; the ratio
# PostgreSQL/SQLite; knock-ingress's CPU per receipt by thread (ingest-load
# -P, summed over both processes for two); the PostgreSQL server's CPU per
# receipt (utime+stime of the postmaster and its children from /proc, the
# exited ones through the postmaster's cutime+cstime, over the load,
# divided by the receipts stored); the mean commit batch from /metrics;
# receipts per WAL flush and WAL bytes per receipt (pg_stat_wal over the
# round); the disk's fsync latency; the load average. A first line
# ("pg-env") names the server's version and durability settings.
#
# Then, unless WORKER=0, bench/worker-bench's http figure on the same
# cluster (WB_PG): WORKER_EVENTS (20000) events forwarded to a local sink by
# one knock-worker on SQLite, by two on SQLite, by one and by two on
# PostgreSQL, beside the bare evhttp client, RUNS rounds (its lines).
#
# Then, unless WHERE=0, where the time goes: the server restarted with
# pg_stat_statements loaded, one more round of one ingress on PostgreSQL at
# 64 connections with the server's view of the ingress's sessions sampled
# every 10 ms (pg_stat_activity): the statements (round trips) per commit,
# the server's execution time per receipt, the most frequent statements, and
# where the writer's session spent its time (idle between transactions,
# idle in a transaction waiting for the writer's next statement, flushing
# WAL, running); and one round of worker-bench's http figure (its
# PostgreSQL lines, with the statements per event the workers ran). Not
# among the medians: the statistics and the sampler cost a little.
#
#   [WORKER=0] [WORKER_EVENTS=N] [WHERE=0] bench/run-pg.sh [BUILD_DIR] [SECONDS] [RUNS]
set -eu
build=${1:-build}
secs=${2:-5}
runs=${3:-3}
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/bench/lib.sh"
port=$bench_port

bench_tmp
# As root the server runs as `postgres`, which must reach the cluster's directory.
chmod 0711 "$tmp"
pgdir=$tmp/pg
# The daemons running ($live: their pids) are stopped first, then the cluster.
live=
bench_on_exit='kill $live 2>/dev/null || true; "$here/tests/pgcluster" stop "$pgdir" >/dev/null 2>&1 || true'
conninfo=$("$here/tests/pgcluster" start "$pgdir")
tick_us=$(awk -v t="$(getconf CLK_TCK)" 'BEGIN {print 1e6 / t}')

# sql [ARG...]: psql on the cluster, rows unaligned (| between columns), no
# NOTICE (DROP SCHEMA's cascade); q SQL runs SQL with it.
sql() { PGOPTIONS='-c client_min_messages=warning' psql -X -q -At -v ON_ERROR_STOP=1 "$conninfo" "$@"; }
q() { sql -c "$1"; }

bench_conf "$tmp/lite" bench $port "max_connections = 1024"
bench_conf "$tmp/pg1" bench $port "max_connections = 1024
store = postgresql:$conninfo"
bench_conf "$tmp/pg2" bench $((port + 1)) "max_connections = 1024
store = postgresql:$conninfo"

fsync_ms=$(fsync_ms "$tmp")
sync_commit=$(q 'SHOW synchronous_commit')
load() { cut -d' ' -f1-3 /proc/loadavg; }
echo "{\"bench\":\"pg-env\",\"server_version\":\"$(q 'SHOW server_version' | cut -d' ' -f1)\",\"synchronous_commit\":\"$sync_commit\",\"fsync\":\"$(q 'SHOW fsync')\",\"wal_sync_method\":\"$(q 'SHOW wal_sync_method')\",\"full_page_writes\":\"$(q 'SHOW full_page_writes')\",\"shared_buffers\":\"$(q 'SHOW shared_buffers')\",\"fsync_ms\":$fsync_ms,\"cpus\":$(nproc),\"loadavg\":\"$(load)\"}"

# start_ingress DIR: knock-ingress on bench_conf's DIR (env execs it: $last_pid is its pid).
start_ingress() {
    env KNOCK_CONFIG_DIR="$1/etc" KNOCK_STATE_DIR="$1/state" KNOCK_RUNTIME_DIR="$1/run" \
        "$build/daemons/ingress/knock-ingress" bench 2>>"$tmp/ingress.log" &
    last_pid=$!
    live="$live $last_pid"
    wait_ready "$1/run/bench.admin" || {
        echo "run-pg: knock-ingress in $1 did not become ready:" >&2
        tail -5 "$tmp/ingress.log" >&2
        exit 1
    }
}
port_of() { sed -n 's/^listen = 127.0.0.1://p' "$1/etc/endpoints/bench.conf"; }

# pg_ticks: CPU ticks (utime+stime) the server has used so far: the
# postmaster, its live children, and (cutime+cstime) those it reaped.
pg_ticks() {
    pm=$(head -1 "$pgdir/data/postmaster.pid")
    { sed 's/^.*) //' "/proc/$pm/stat" | awk '{print $12 + $13 + $14 + $15}'
      for c in $(ps -o pid= --ppid "$pm"); do
          sed 's/^.*) //' "/proc/$c/stat" 2>/dev/null | awk '{print $12 + $13}' || true
      done; } | awk '{s += $1} END {print s}'
}
# wal: "FLUSHES BYTES" the server's WAL has had so far (pg_stat_wal).
wal() { q 'SELECT wal_sync, wal_bytes FROM pg_stat_wal' | tr '|' ' '; }
# Until the server has no client session left (theirs flush their statistics on exit).
wait_sessions_gone() {
    i=0
    while [ "$(q "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")" != 0 ]; do
        i=$((i + 1))
        [ $i -lt 100 ] || break
        sleep 0.05
    done
}

# round MODE CONNS: one round of MODE (lite, pg1, pg2) at CONNS connections;
# appends ingest-load's line, with the round's pg_cpu_us, batch, flush and
# WAL figures and its ratios to the rounds of lite (and pg1) just before
# added, to $tmp/MODE-CONNS.
round() {
    case $1 in
    lite) rm -f "$tmp/lite/state"/bench.db*; dirs=$tmp/lite ;;
    pg1) dirs=$tmp/pg1 ;;
    pg2) dirs="$tmp/pg1 $tmp/pg2" ;;
    esac
    if [ "$1" != lite ]; then
        q 'DROP SCHEMA IF EXISTS knock_bench CASCADE'
        q 'CHECKPOINT'
        set -- "$1" "$2" $(wal)
    fi
    pids=; ports=
    for d in $dirs; do
        start_ingress "$d"
        pids=$pids${pids:+,}$last_pid
        ports=$ports${ports:+,}$(port_of "$d")
    done
    t0=$(pg_ticks)
    line=$("$build/bench/ingest-load" -p "$ports" -c "$2" -d "$secs" -s bench-secret -P "$pids")
    t1=$(pg_ticks)
    batch=$(for d in $dirs; do batch_sums "$d/run/bench.admin"; done | mean_batch)
    kill $(echo "$pids" | tr ',' ' ')
    for p in $(echo "$pids" | tr ',' ' '); do wait "$p" 2>/dev/null || true; done
    live=
    rps=$(echo "$line" | field rps)
    echo "$rps" >"$tmp/last-$1"
    extra=",\"batch\":${batch:-null}"
    if [ "$1" != lite ]; then
        extra="$extra,\"to_lite\":$(ratio "$rps" "$(cat "$tmp/last-lite")" %.3f)"
        [ "$1" = pg1 ] || extra="$extra,\"to_pg1\":$(ratio "$rps" "$(cat "$tmp/last-pg1")" %.3f)"
        wait_sessions_gone
        n=$(q 'SELECT count(*) FROM knock_bench.deliveries')
        extra=$extra$(wal | awk -v f0="$3" -v b0="$4" -v n="$n" -v t="$((t1 - t0))" -v us="$tick_us" \
            '{printf ",\"stored\":%d,\"pg_cpu_us\":%.1f,\"per_flush\":%.1f,\"wal_bytes\":%.0f",
                     n, t * us / n, ($1 > f0 ? n / ($1 - f0) : 0), ($2 - b0) / n}')
    fi
    echo "$line" | sed "s/}\$/$extra}/" >>"$tmp/$1-$2"
}

for r in $(seq "$runs"); do
    for mode in lite pg1 pg2; do round $mode 64; done
done
for r in $(seq "$runs"); do
    for mode in lite pg1; do round $mode 1; done
done

# m FILE FIELD: the median of FIELD over FILE's rounds.
m() { field "$2" <"$1" | median; }
sum_errors() { cat "$@" | field errors | awk '{s += $1} END {print s + 0}'; }

# figure MODE CONNS: the JSON line of MODE beside SQLite at CONNS connections.
figure() {
    f=$tmp/$1-$2 l=$tmp/lite-$2
    n=1; [ "$1" = pg2 ] && n=2
    rps=$(m "$f" rps) lrps=$(m "$l" rps)
    cpu=$(cpu "$f" total) lcpu=$(cpu "$l" total)
    srv=$(m "$f" pg_cpu_us)
    total=$(awk -v a="$cpu" -v b="$srv" 'BEGIN {printf "%.1f", a + b}')
    one=
    if [ "$1" = pg2 ]; then
        one=",\"p99_of\":\"the union of both ingresses' latencies\",\"one_ingress_rps\":$(m "$tmp/pg1-$2" rps),\"ratio_to_one_ingress\":$(m "$f" to_pg1)"
    fi
    echo "{\"bench\":\"ingest-pg\",\"conns\":$2,\"store\":\"postgresql\",\"ingresses\":$n,\"rps\":$rps,\"p50_ms\":$(m "$f" p50_ms),\"p99_ms\":$(m "$f" p99_ms)$one,\"baseline\":\"sqlite, one ingress\",\"baseline_rps\":$lrps,\"baseline_p50_ms\":$(m "$l" p50_ms),\"baseline_p99_ms\":$(m "$l" p99_ms),\"ratio\":$(m "$f" to_lite),\"ratio_min\":$(field to_lite <"$f" | sort -n | head -1),\"ratio_max\":$(field to_lite <"$f" | sort -n | tail -1),\"cpu_us_per_receipt\":$cpu,\"cpu_us_loop\":$(cpu "$f" knock-ingress),\"cpu_us_writer\":$(cpu "$f" writer),\"baseline_cpu_us_per_receipt\":$lcpu,\"baseline_cpu_us_writer\":$(cpu "$l" writer),\"baseline_cpu_us_checkpoint\":$(cpu "$l" checkpoint),\"server_cpu_us_per_receipt\":$srv,\"total_cpu_us_per_receipt\":$total,\"total_cpu_ratio\":$(ratio "$total" "$lcpu"),\"mean_batch\":$(m "$f" batch),\"baseline_mean_batch\":$(m "$l" batch),\"receipts_per_wal_flush\":$(m "$f" per_flush),\"wal_bytes_per_receipt\":$(m "$f" wal_bytes),\"errors\":$(sum_errors "$f" "$l"),\"synchronous_commit\":\"$sync_commit\",\"fsync_ms\":$fsync_ms,\"runs\":$runs,\"loadavg\":\"$(load)\"}"
}
figure pg1 64
figure pg2 64
figure pg1 1

# worker-bench ARGS...: its http figure on this cluster.
worker_bench() {
    WB_PG=$conninfo WB_FIGURES=http "$build/bench/worker-bench" \
        "$build/daemons/worker/knock-worker" 0 "${WORKER_EVENTS:-20000}" 64 "$1" 2>>"$tmp/worker-bench.log"
}
if [ "${WORKER:-1}" != 0 ]; then
    out=$(worker_bench "$runs")
    echo "$out" | sed "s/}\$/,\"loadavg\":\"$(load)\"}/"
fi

[ "${WHERE:-1}" != 0 ] || exit 0

# ---- where the time goes: one more round, with pg_stat_statements ----------------
q "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'" >/dev/null
"$here/tests/pgcluster" restart "$pgdir"
q 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements' >/dev/null
q 'DROP SCHEMA IF EXISTS knock_bench CASCADE'
q 'CHECKPOINT'
start_ingress "$tmp/pg1"
kpid=$last_pid
q 'SELECT pg_stat_statements_reset()' >/dev/null
# The sampler: every 10 ms over the measured window (after ingest-load's 1 s
# warm-up), each knock session's state and wait event.
( sleep 1
  sql >"$tmp/samples" <<EOF
CREATE TEMP TABLE s (pid int, what text);
DO \$\$ BEGIN
  FOR i IN 1..$((secs * 100)) LOOP
    PERFORM pg_stat_clear_snapshot();
    INSERT INTO s SELECT pid, CASE
        WHEN state = 'idle in transaction' THEN 'in_transaction_waiting_for_writer'
        WHEN state = 'idle' THEN 'between_transactions'
        WHEN wait_event IN ('WALSync', 'WALWrite') THEN 'wal_flush'
        WHEN wait_event IS NULL THEN 'running'
        ELSE state || ' ' || wait_event_type || ':' || wait_event END
      FROM pg_stat_activity WHERE application_name = 'knock' AND pid <> pg_backend_pid();
    PERFORM pg_sleep(0.01);
  END LOOP;
END \$\$;
-- The writer's session: the one seen in a transaction most often.
WITH w AS (SELECT pid FROM s WHERE what <> 'between_transactions'
           GROUP BY pid ORDER BY count(*) DESC LIMIT 1)
SELECT what, round(count(*)::numeric / sum(count(*)) OVER (), 3) FROM s JOIN w USING (pid)
  GROUP BY what ORDER BY 2 DESC;
EOF
) &
spid=$!
line=$("$build/bench/ingest-load" -p $port -c 64 -d "$secs" -s bench-secret -P $kpid)
wait $spid
# The ingress's statements, not this script's nor the sampler's.
knock_only="query NOT LIKE '%pg_stat%' AND query NOT LIKE 'DO %' AND query NOT LIKE 'CREATE TEMP%' AND query NOT LIKE 'WITH w AS%'"
stmts=$(q "SELECT sum(calls), sum(calls) FILTER (WHERE query = 'COMMIT'), sum(total_exec_time) FROM pg_stat_statements WHERE $knock_only")
q "SELECT calls, round(mean_exec_time::numeric * 1000, 1), left(regexp_replace(query, '\\s+', ' ', 'g'), 60) FROM pg_stat_statements WHERE $knock_only ORDER BY total_exec_time DESC LIMIT 6" >"$tmp/statements"
n=$(q 'SELECT count(*) FROM knock_bench.deliveries')
kill $kpid; wait $kpid 2>/dev/null || true
live=
time_split=$(awk -F'|' '{printf "%s\"%s\":%s", (NR > 1 ? "," : ""), $1, $2}' "$tmp/samples")
statements=$(awk -F'|' '{gsub(/"/, "\\\"", $3)
    printf "%s{\"calls\":%s,\"mean_us\":%s,\"sql\":\"%s\"}", (NR > 1 ? "," : ""), $1, $2, $3}' "$tmp/statements")
per=$(echo "$stmts" | awk -F'|' -v n="$n" -v w="$((secs + 1))" '{printf "\"statements_per_commit\":%.1f,\"receipts_per_commit\":%.1f,\"server_exec_us_per_receipt\":%.1f,\"wall_us_per_statement\":%.0f", $1 / $2, n / $2, $3 * 1000 / n, w * 1e6 / $1}')
echo "{\"bench\":\"ingest-pg-where\",\"conns\":64,\"ingresses\":1,\"rps\":$(echo "$line" | field rps),\"p99_ms\":$(echo "$line" | field p99_ms),\"stored\":$n,$per,\"writer_session_time\":{$time_split},\"top_statements\":[$statements],\"loadavg\":\"$(load)\"}"

if [ "${WORKER:-1}" != 0 ]; then
    out=$(worker_bench 1)
    echo "$out" | grep '"store":"postgresql"' |
        sed "s/\"bench\":\"worker-drain\"/\"bench\":\"worker-drain-pg-where\"/; s/}\$/,\"loadavg\":\"$(load)\"}/"
fi
