#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Runs INSIDE a booted Debian bookworm container (boot-and-run) after the
# knock .deb was installed: what an administrator's tools find there (issue
# 16). The shell completion, the alert rules and the dashboard are
# installed; the package owns /etc/knock/endpoints; an endpoint with a TCP
# admin listener can be scraped by Prometheus under the real units'
# sandbox; knock-textfile feeds node_exporter's textfile directory;
# knock-deliver does not warn about its resolver (this rootfs has an empty
# /etc/resolv.conf); knockctl's verb --help, --no-pager and provider ids.
# Same output convention as inside.sh: "ok - what" / "not ok - what".
set -u
OUT=${KNOCK_TEST_OUT:-/knock-test/out}
fails=0

check() {
        d=$1; shift
        echo "== $d" >>"$OUT/inside-cli-commands.log"
        if "$@" >>"$OUT/inside-cli-commands.log" 2>&1; then
                echo "ok - $d"
        else
                echo "not ok - $d"
                fails=$((fails + 1))
        fi
}
wait_for() {
        t=$(($1 * 5)); shift
        while [ $t -gt 0 ]; do
                "$@" >/dev/null 2>&1 && return 0
                sleep 0.2; t=$((t - 1))
        done
        return 1
}

# ---- files ------------------------------------------------------------------
check "bash completion installed and loads (complete -p knockctl)" \
        bash -c '. /usr/share/bash-completion/completions/knockctl && complete -p knockctl'
check "zsh completion installed" test -s /usr/share/zsh/vendor-completions/_knockctl
check "alert rules installed in /usr/share/knock/prometheus" \
        grep -q 'alert: KnockQueueStuck' /usr/share/knock/prometheus/knock.rules.yml
check "Grafana dashboard installed in /usr/share/knock/grafana" \
        grep -q '"uid": "knock-overview"' /usr/share/knock/grafana/knock-dashboard.json
check "web console's script and style sheet installed in /usr/share/knock/console" \
        grep -q 'EventSource' /usr/share/knock/console/live.js
check "knock-textfile installed" test -x /usr/libexec/knock/knock-textfile
check "the package owns /etc/knock/endpoints (dpkg -S)" \
        sh -c 'dpkg -S /etc/knock/endpoints | grep -q "^knock: /etc/knock/endpoints$"'
check "/etc/knock/endpoints is root:knock 0750 after install" \
        sh -c '[ "$(stat -c %U:%G:%a /etc/knock/endpoints)" = root:knock:750 ]'

# ---- an endpoint scraped over TCP ----------------------------------------------
cat >/etc/knock/endpoints/scrape.conf <<'CONF'
[endpoint]
provider = none
allow_unverified = yes
listen = 127.0.0.1:18190
admin = 127.0.0.1:19190
[worker]
handler = exec:/bin/true
[hook]
url = http://127.0.0.1:9/hooks
secret = literal:whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
CONF
chgrp knock /etc/knock/endpoints/scrape.conf
chmod 0640 /etc/knock/endpoints/scrape.conf
systemctl daemon-reload
check "systemctl start knock@scrape" systemctl start knock@scrape.service
check "/metrics answers on the TCP admin listener (admin = 127.0.0.1:19190)" \
        wait_for 10 sh -c 'curl -sf http://127.0.0.1:19190/metrics | grep -q "^knock_events{status=\"received\"}"'
check "the public listener does not serve /metrics" \
        sh -c '[ "$(curl -s -o /dev/null -w %{http_code} http://127.0.0.1:18190/metrics)" != 200 ]'
check "a TCP admin listener without console_token serves no console (404)" \
        sh -c '[ "$(curl -s -o /dev/null -w %{http_code} http://127.0.0.1:19190/)" = 404 ]'
check "knock-deliver is running" wait_for 10 systemctl is-active -q knock-deliver@scrape.service
check "knock-deliver: no resolver warning with an empty /etc/resolv.conf" \
        sh -c '[ ! -s /etc/resolv.conf ] && journalctl -b -u knock-deliver@scrape.service | grep -q "started for scrape" &&
               ! journalctl -b -u knock-deliver@scrape.service | grep -q "asynchronous resolver"'
# knock-textfile reads the default unix admin socket: a second endpoint.
cat >/etc/knock/endpoints/tf.conf <<'CONF'
[endpoint]
provider = none
allow_unverified = yes
listen = 127.0.0.1:18191
[worker]
handler = exec:/bin/true
CONF
chgrp knock /etc/knock/endpoints/tf.conf
chmod 0640 /etc/knock/endpoints/tf.conf
systemctl daemon-reload
check "systemctl start knock@tf (default unix admin socket)" systemctl start knock@tf.service
mkdir -p /var/lib/prometheus/node-exporter
chown knock /var/lib/prometheus/node-exporter
check "knock-textfile writes knock_tf.prom as user knock" \
        wait_for 10 setpriv --reuid=knock --regid=knock --init-groups \
        /usr/libexec/knock/knock-textfile tf /var/lib/prometheus/node-exporter
check "knock_tf.prom: series labelled endpoint=\"tf\"" \
        grep -q '^knock_events{endpoint="tf",status="received"} ' \
        /var/lib/prometheus/node-exporter/knock_tf.prom
check "the web console on the unix admin socket, its style sheet from /usr/share/knock/console" \
        sh -c 'curl -sf --unix-socket /run/knock/tf.admin http://localhost/ | grep -q "<h1>Dashboard</h1>" &&
               curl -sf --unix-socket /run/knock/tf.admin http://localhost/static/console.css | grep -q "font"'
systemctl stop knock@tf.service

# ---- knockctl as an administrator types it ----------------------------------------
check "requeue --help needs no -e" \
        sh -c 'knockctl requeue --help | grep -q "^Usage: knockctl"'
check "knockctl --no-pager status" knockctl -e scrape --no-pager status
check "knockctl -e scrape events -l" knockctl -e scrape events -l

systemctl stop knock@scrape.service
exit $fails
