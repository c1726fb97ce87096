#!/bin/sh
# SPDX-License-Identifier: MIT
# Does scraping /metrics slow ingest? The same ingest load (bench/ingest-load,
# 64 connections) against knock-ingress, alternating runs without and with a
# scraper that fetches /metrics from the admin socket every INTERVAL seconds
# (default 1; Prometheus' usual interval is 15 s, so this is 15x harsher).
# Prints one JSON line: ingest rps with scraping beside the baseline without.
#   bench/run-scrape.sh [BUILD_DIR] [SECONDS] [RUNS] [INTERVAL]
set -eu
build=${1:-build}
secs=${2:-5}
runs=${3:-3}
interval=${4:-1}
port=18451
. "$(dirname "$0")/lib.sh"
bench_endpoint scrape $port

: >"$tmp/plain"; : >"$tmp/scraped"; scrapes=0
for r in $(seq "$runs"); do
    for mode in plain scraped; do
        rm -f "$KNOCK_STATE_DIR"/scrape.db*
        "$build/daemons/ingress/knock-ingress" scrape 2>/dev/null &
        kpid=$!
        sleep 0.5
        if [ $mode = scraped ]; then
            ( while :; do
                curl -s --unix-socket "$KNOCK_RUNTIME_DIR/scrape.admin" http://admin/metrics >/dev/null
                echo x >>"$tmp/count"
                sleep "$interval"
              done ) &
            spid=$!
        fi
        "$build/bench/ingest-load" -p $port -c 64 -d "$secs" -s bench-secret >>"$tmp/$mode"
        [ $mode = scraped ] && kill $spid
        kill $kpid; wait $kpid 2>/dev/null || true
    done
done
p=$(field rps <"$tmp/plain" | median)
s=$(field rps <"$tmp/scraped" | median)
n=$(wc -l <"$tmp/count")
echo "{\"bench\":\"ingest-while-scraping\",\"conns\":64,\"rps\":$s,\"baseline\":\"no-scrape\",\"baseline_rps\":$p,\"ratio\":$(awk -v a="$s" -v b="$p" 'BEGIN {printf "%.3f", a / b}'),\"scrapes\":$n,\"interval_s\":$interval,\"runs\":$runs}"
