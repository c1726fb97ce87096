#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Runs INSIDE a booted Debian bookworm container with systemd as PID 1
# (../shared/tools/systemd-vm/boot-and-run), after the knock .deb was installed.
# Walks the path of a user: endpoint file, `systemctl start knock@demo`, a
# signed webhook, handler, completion hook, journal, knockctl, watchdog,
# timers and backup, stop, reinstall, purge.
#
# Prints one "ok - what" / "not ok - what" line per check (the host script
# numbers them into TAP); a step that depends on an earlier one that failed
# still runs and fails on its own, so every missing piece is visible.
# Exit status: number of failed checks.
set -u
OUT=${KNOCK_TEST_OUT:-/knock-test/out}
DEB=$(ls /knock-test/in/debs/knock_*.deb 2>/dev/null | head -1)
fails=0
CR=$(printf '\r')

check() {
        d=$1; shift
        echo "== $d" >>"$OUT/inside-commands.log"
        if "$@" >>"$OUT/inside-commands.log" 2>&1; then
                echo "ok - $d"
        else
                echo "not ok - $d"
                fails=$((fails + 1))
        fi
}
note() { echo "# $*"; }
# wait_for SECONDS CMD...: polls CMD every 0.2 s.
wait_for() {
        t=$(($1 * 5)); shift
        while [ $t -gt 0 ]; do
                "$@" >/dev/null 2>&1 && return 0
                sleep 0.2; t=$((t - 1))
        done
        return 1
}
active() { [ "$(systemctl is-active "$1")" = active ]; }
inactive() { ! systemctl is-active -q "$1"; }
mainpid() { systemctl show -P MainPID "$1"; }

note "systemd $(systemctl --version | head -1 | cut -d' ' -f2), $(systemctl is-system-running)"

# ---- the package -------------------------------------------------------------
check "package knock is installed" dpkg-query -W knock
check "sysusers created user and group knock" sh -c 'getent passwd knock && getent group knock'
check "tmpfiles created /var/lib/knock owned by knock, setgid" \
        sh -c '[ "$(stat -c %U:%G:%a /var/lib/knock)" = knock:knock:2770 ]'
check "catalog installed and indexed (journalctl --list-catalog)" \
        sh -c 'journalctl --list-catalog | grep -q 372ae111199c4ecf89ce347293e5daf8'
check "knock.service active after install" active knock.service
check "no maintenance service ran at install" \
        sh -c '! journalctl -b -u knock-prune.service -u knock-backup.service -u knock-retention.service | grep -qE "Starting|Finished"'

# ---- an endpoint: secret, handler, hook receiver -------------------------------
SECRET="It's a Secret to Everybody"
HOOK_SECRET="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
install -d -m 0700 /etc/credstore
printf '%s' "$SECRET" >/etc/credstore/demo-github
printf '%s\n' "$HOOK_SECRET" >/etc/credstore/demo-hook
chmod 0600 /etc/credstore/demo-*

install -d /usr/local/lib/knock
cat >/usr/local/lib/knock/on-demo <<'EOF'
#!/bin/sh
# Test handler: prints that it ran, with the environment knock passes (its
# output is captured into the attempt; handlers cannot write /var/lib/knock).
body=$(cat)
echo "$KNOCK_ENDPOINT $KNOCK_EVENT_ID $KNOCK_PROVIDER_EVENT_ID $KNOCK_EVENT_TYPE $KNOCK_ATTEMPT ${#body}"
echo "handler saw event $KNOCK_EVENT_ID"
EOF
chmod 0755 /usr/local/lib/knock/on-demo

# Completion-hook receiver: one socket-activated shell per connection stores
# the request's headers and body under /var/tmp/hooks and answers 200.
mkdir -p /var/tmp/hooks
cat >/usr/local/bin/hook-recv <<'EOF'
#!/bin/sh
CR=$(printf '\r')
n=$(date +%s%N)
len=0
while IFS= read -r line; do
        line=${line%"$CR"}
        [ -z "$line" ] && break
        echo "$line" >>"/var/tmp/hooks/$n.headers"
        case $line in [Cc]ontent-[Ll]ength:*) len=$(echo "${line#*:}" | tr -d ' ');; esac
done
head -c "$len" >"/var/tmp/hooks/$n.body"
printf 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'
EOF
chmod 0755 /usr/local/bin/hook-recv
cat >/etc/systemd/system/hook-recv.socket <<'EOF'
[Socket]
ListenStream=127.0.0.1:9099
Accept=yes
EOF
cat >/etc/systemd/system/hook-recv@.service <<'EOF'
[Service]
ExecStart=/usr/local/bin/hook-recv
StandardInput=socket
StandardOutput=socket
StandardError=journal
EOF

cat >/etc/knock/endpoints/demo.conf <<'EOF'
[endpoint]
provider = github
secret   = credential:demo-github
listen   = 127.0.0.1:8101

[worker]
handler = exec:/usr/local/lib/knock/on-demo

[hook]
url    = http://127.0.0.1:9099/hooks
secret = credential:demo-hook
on     = handled, dead
EOF
chown root:knock /etc/knock/endpoints/demo.conf
chmod 0640 /etc/knock/endpoints/demo.conf

# Test knobs only: a short watchdog for the SIGSTOP check, debug records.
for d in ingress worker deliver; do
        mkdir -p "/etc/systemd/system/knock-$d@demo.service.d"
        printf '[Service]\nEnvironment=KNOCK_LOG_LEVEL=debug\n' \
                >"/etc/systemd/system/knock-$d@demo.service.d/50-test.conf"
done
printf '[Service]\nWatchdogSec=3s\nTimeoutAbortSec=2s\n' \
        >>/etc/systemd/system/knock-worker@demo.service.d/50-test.conf

systemctl daemon-reload
systemctl start hook-recv.socket

check "knock-generator wrote the listen drop-in from demo.conf" \
        grep -qx 'ListenStream=127.0.0.1:8101' /run/systemd/generator/knock-ingress@demo.socket.d/50-knock-listen.conf
check "knock-generator wrote LoadCredential= for the endpoint's secrets" \
        sh -c 'grep -qx LoadCredential=demo-github /run/systemd/generator/knock-ingress@demo.service.d/50-knock-credentials.conf &&
               grep -qx LoadCredential=demo-hook /run/systemd/generator/knock-deliver@demo.service.d/50-knock-credentials.conf'

# ---- start -------------------------------------------------------------------
check "systemctl start knock@demo" systemctl start knock@demo
systemctl status --no-pager 'knock*' >"$OUT/status-after-start.txt" 2>&1
check "knock-ingress@demo.socket listening on 127.0.0.1:8101" \
        sh -c 'ss -Hltn "sport = :8101" | grep -q 8101'
check "admin listener /run/knock/demo.admin is a socket, group knock" \
        sh -c '[ -S /run/knock/demo.admin ] && [ "$(stat -c %G /run/knock/demo.admin)" = knock ]'
check "knock-ingress@demo.service not started before the first request" inactive knock-ingress@demo.service
check "knock-worker@demo.service active (READY=1)" wait_for 10 active knock-worker@demo.service
check "knock-deliver@demo.service active (READY=1)" wait_for 10 active knock-deliver@demo.service

# ---- a signed webhook -----------------------------------------------------------
BODY='{"action":"opened","zen":"Keep it logically awesome."}'
SIG=$(printf '%s' "$BODY" | openssl dgst -sha256 -hmac "$SECRET" | sed 's/^.* //')
code=$(curl -sS -o "$OUT/webhook-response.json" -w '%{http_code}' --max-time 10 \
        -H 'Content-Type: application/json' -H "X-Hub-Signature-256: sha256=$SIG" \
        -H 'X-GitHub-Delivery: 72d3162e-cc78-11e3-81ab-4c9367dc0958' -H 'X-GitHub-Event: issues' \
        --data-binary "$BODY" http://127.0.0.1:8101/ 2>>"$OUT/inside-commands.log")
check "signed webhook answered 200 (got $code)" [ "$code" = 200 ]
check "the response names the delivery and the event" \
        sh -c "grep -q delivery_id '$OUT/webhook-response.json' && grep -q event_id '$OUT/webhook-response.json'"
check "knock-ingress@demo.service started by the first request" active knock-ingress@demo.service
code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 -H 'X-GitHub-Event: issues' \
        -H 'X-Hub-Signature-256: sha256=00' -H 'X-GitHub-Delivery: forged-1' \
        --data-binary "$BODY" http://127.0.0.1:8101/ 2>>"$OUT/inside-commands.log")
check "badly signed webhook answered 401 (got $code)" [ "$code" = 401 ]
check "ingress has no outbound network (IPAddressDeny=any in its unit)" \
        sh -c '[ "$(systemctl show -P IPAddressDeny knock-ingress@demo.service)" != "" ]'

# handler_output PROVIDER_EVENT_ID: what the handler printed, from its attempts.
# journal_mark: a time for journalctl --since after which only what follows
# shows. --since has a resolution of one second, so wait into the next
# second first: a record from earlier in the current second (the previous
# drill's "Configuration reloaded") would otherwise match.
journal_mark() {
        sleep 1
        date '+%Y-%m-%d %H:%M:%S'
}

handler_output() {
        sqlite3 /var/lib/knock/demo.db "SELECT a.output FROM attempts a JOIN events e
                ON e.id = a.event_id WHERE e.provider_event_id = '$1' ORDER BY a.started_at"
}
check "the handler ran for the event" \
        wait_for 15 sh -c "sqlite3 /var/lib/knock/demo.db \"SELECT a.output FROM attempts a JOIN events e
                ON e.id = a.event_id WHERE e.provider_event_id = '72d3162e-cc78-11e3-81ab-4c9367dc0958'\" |
                grep -q '72d3162e-cc78-11e3-81ab-4c9367dc0958 issues'"
handler_output 72d3162e-cc78-11e3-81ab-4c9367dc0958 >"$OUT/demo-handler.log" 2>&1

check "the completion hook arrived (knock.event.handled)" \
        wait_for 15 sh -c 'cat /var/tmp/hooks/*.body | grep -q knock.event.handled'
hook=$(grep -l knock.event.handled /var/tmp/hooks/*.body 2>/dev/null | head -1)
hook=${hook%.body}
cp -r /var/tmp/hooks "$OUT/" 2>/dev/null
# Standard Webhooks: v1,base64(HMAC-SHA256(base64dec(secret), id.ts.body)).
hook_sig_ok() {
        [ -n "$hook" ] || return 1
        id=$(sed -n "s/^[Ww]ebhook-[Ii]d: *//p" "$hook.headers" | tr -d "$CR")
        ts=$(sed -n "s/^[Ww]ebhook-[Tt]imestamp: *//p" "$hook.headers" | tr -d "$CR")
        sig=$(sed -n "s/^[Ww]ebhook-[Ss]ignature: *//p" "$hook.headers" | tr -d "$CR")
        key=$(printf '%s' "${HOOK_SECRET#whsec_}" | base64 -d | od -An -tx1 | tr -d ' \n')
        want=$( (printf '%s.%s.' "$id" "$ts"; cat "$hook.body") |
                openssl dgst -sha256 -mac HMAC -macopt "hexkey:$key" -binary | base64)
        echo "hook id=$id ts=$ts sig=$sig want=v1,$want"
        case " $sig " in *" v1,$want "*) return 0;; esac
        return 1
}
check "the hook carries a valid Standard Webhooks signature" hook_sig_ok

# ---- journal ---------------------------------------------------------------------
# journald stores records a moment after they are sent: export again until the
# event's records are in (at most 10 s), then check the export.
export_journal() {
        journalctl -b -o json KNOCK_ENDPOINT=demo --no-pager >"$OUT/journal-demo.json" 2>/dev/null
        grep '"KNOCK_EVENT_ID"' "$OUT/journal-demo.json" | grep -q '"KNOCK_STATUS"' &&
                grep '"KNOCK_DELIVERY_ID"' "$OUT/journal-demo.json" | grep -q '"KNOCK_REQUEST_ID"'
}
wait_for 10 export_journal
check "journalctl KNOCK_ENDPOINT=demo has a delivery record (KNOCK_DELIVERY_ID, KNOCK_REQUEST_ID)" \
        sh -c "grep '\"KNOCK_DELIVERY_ID\"' '$OUT/journal-demo.json' | grep -q '\"KNOCK_REQUEST_ID\"'"
check "journalctl KNOCK_ENDPOINT=demo has an event record (KNOCK_EVENT_ID, KNOCK_STATUS)" \
        sh -c "grep '\"KNOCK_EVENT_ID\"' '$OUT/journal-demo.json' | grep -q '\"KNOCK_STATUS\"'"
check "records carry KNOCK_DAEMON and the provider's event id" \
        sh -c "grep '\"KNOCK_DAEMON\"' '$OUT/journal-demo.json' | grep -q 72d3162e-cc78-11e3-81ab-4c9367dc0958"
check "the invalid delivery is logged with its MESSAGE_ID" \
        grep -q '"MESSAGE_ID":"bd97c6782682488e81905c41ba637d6a"' "$OUT/journal-demo.json"

# ---- knockctl for an admin in group knock ------------------------------------------
useradd -m -G knock alice 2>>"$OUT/inside-commands.log"
runuser -u alice -- knockctl -e demo --json events >"$OUT/knockctl-events.json" 2>"$OUT/knockctl-events.err"
check "knockctl events works for alice (group knock)" \
        grep -q 72d3162e-cc78-11e3-81ab-4c9367dc0958 "$OUT/knockctl-events.json"
# Outside a unit there is no $CREDENTIALS_DIRECTORY: the secrets are in the
# credstore, readable by root only, so the check is root's, as knock(7) says.
check "knockctl check-config works for root outside the units (knock(7))" \
        env CREDENTIALS_DIRECTORY=/etc/credstore knockctl -e demo check-config
check "knockctl is refused to a user outside group knock" \
        sh -c 'useradd -m mallory; ! runuser -u mallory -- knockctl -e demo events'

# ---- watchdog and the OOM watchdog file ------------------------------------------------
pid=$(mainpid knock-worker@demo.service)
note "worker pid $pid, stopping it with SIGSTOP"
[ "${pid:-0}" -gt 0 ] && kill -STOP "$pid"
check "SIGSTOP'ed worker: systemd's watchdog restarts it" \
        wait_for 20 sh -c '[ "$(systemctl show -P NRestarts knock-worker@demo.service)" -ge 1 ]'
# journald may receive systemd's record a moment after the restart is visible.
check "the journal says Watchdog timeout" \
        wait_for 10 sh -c 'journalctl -b -u knock-worker@demo.service | grep -q "Watchdog timeout"'
check "restarted worker is a new process and active" \
        wait_for 10 sh -c "systemctl is-active -q knock-worker@demo.service && [ \"\$(systemctl show -P MainPID knock-worker@demo.service)\" != '$pid' ]"
check "the rest of the endpoint stayed up (knock@demo active, the same deliverer)" \
        sh -c "systemctl is-active -q knock@demo.service && [ \"\$(systemctl show -P NRestarts knock-deliver@demo.service)\" = 0 ]"
check "previous-run-ended-unexpectedly record (MESSAGE_ID 372ae111…) for the worker" \
        wait_for 10 sh -c 'journalctl -b -o json KNOCK_ENDPOINT=demo MESSAGE_ID=372ae111199c4ecf89ce347293e5daf8 | grep -q "\"KNOCK_DAEMON\":\"worker\""'
knockctl -e demo --json status >"$OUT/knockctl-status.json" 2>&1
check "knockctl status counts the suspected OOM kill" \
        grep -Eq '"suspected_oom_kills": *[1-9]' "$OUT/knockctl-status.json"

# ---- timers, backup ---------------------------------------------------------------------
systemctl list-timers --all --no-pager >"$OUT/timers.txt" 2>&1
check "timers listed: knock-prune, knock-backup, knock-retention" \
        sh -c "grep -q knock-prune.timer '$OUT/timers.txt' && grep -q knock-backup.timer '$OUT/timers.txt' && grep -q knock-retention.timer '$OUT/timers.txt'"
check "systemctl start knock-backup.service succeeds" systemctl start knock-backup.service
b=$(ls /var/lib/knock/backups/demo/demo-*.db 2>/dev/null | tail -1)
check "a backup was written (${b:-none})" [ -n "$b" ]
check "the backup passes integrity_check" sh -c "[ -n '$b' ] && [ \"\$(sqlite3 '$b' 'PRAGMA integrity_check')\" = ok ]"
check "the backup is logged with its MESSAGE_ID" \
        wait_for 10 sh -c 'journalctl -b -o json MESSAGE_ID=fef6cf5b65b74a5db009682a4e97c291 KNOCK_ENDPOINT=demo | grep -q fef6cf5b65b74a5db009682a4e97c291'
check "systemctl start knock-prune.service succeeds" systemctl start knock-prune.service
check "systemctl start knock-retention.service succeeds" systemctl start knock-retention.service

# ---- static checks against the live system -----------------------------------------------
# No man(1) in the container: Documentation= is checked by offline-check on the host.
systemd-analyze verify --man=no knock.service knock@demo.service knock-ingress@demo.socket \
        knock-ingress-admin@demo.socket knock-ingress@demo.service knock-worker@demo.service \
        knock-deliver@demo.service knock-prune.timer knock-prune.service knock-backup.timer \
        knock-backup.service knock-retention.timer knock-retention.service knock-failed@demo.service \
        >"$OUT/verify-live.txt" 2>&1
check "systemd-analyze verify (inside, with the generator's drop-ins) prints nothing" \
        sh -c "[ ! -s '$OUT/verify-live.txt' ]"
for u in knock-ingress@demo knock-worker@demo knock-deliver@demo; do
        systemd-analyze security --no-pager "$u.service" >"$OUT/security-$u.txt" 2>&1
        note "live $(tail -1 "$OUT/security-$u.txt")"
done

# ---- reload, reinstall -----------------------------------------------------------------------
since=$(journal_mark)
systemctl reload knock.service
check "systemctl reload knock.service reaches knock@demo" \
        wait_for 10 sh -c "journalctl -b --since '$since' -u knock@demo.service | grep -q 'Reloaded knock@demo'"
check "and the worker (RELOADING=1 ... READY=1)" \
        wait_for 10 sh -c "journalctl -b --since '$since' -u knock-worker@demo.service | grep -q 'Reloaded knock-worker@demo'"
wpid=$(mainpid knock-worker@demo.service)
dpid=$(mainpid knock-deliver@demo.service)
apt-get install -y -qq --reinstall "$DEB" >"$OUT/reinstall.log" 2>&1
check "reinstalling the package succeeds" [ $? -eq 0 ]
check "reinstall restarted the running endpoint's worker (new pid)" \
        wait_for 10 sh -c "systemctl is-active -q knock-worker@demo.service &&
                [ \"\$(systemctl show -P MainPID knock-worker@demo.service)\" != '$wpid' ]"
check "reinstall restarted the running endpoint's deliverer (new pid)" \
        wait_for 10 sh -c "systemctl is-active -q knock-deliver@demo.service &&
                [ \"\$(systemctl show -P MainPID knock-deliver@demo.service)\" != '$dpid' ]"
check "the endpoint answers again after the restart" \
        sh -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -H 'X-GitHub-Event: issues' \
                -H 'X-Hub-Signature-256: sha256=$SIG' -H 'X-GitHub-Delivery: after-reinstall' \
                --data-binary '$BODY' http://127.0.0.1:8101/)\" = 200 ]"

# ---- the runbook drills of knock(7), as root ----------------------------------------------
# What a new administrator does, following knock(7) as root; each drill checks
# what the operator would see afterwards, not only exit statuses.
DB=/var/lib/knock/demo.db
q() { sqlite3 "$DB" "$1" 2>>"$OUT/inside-commands.log"; }
# webhook DELIVERY_ID [EVENT_TYPE]: a signed GitHub webhook; prints the HTTP status.
webhook() {
        curl -sS -o /dev/null -w '%{http_code}' --max-time 10 -H 'Content-Type: application/json' \
                -H "X-Hub-Signature-256: sha256=$SIG" -H "X-GitHub-Delivery: $1" \
                -H "X-GitHub-Event: ${2:-issues}" --data-binary "$BODY" http://127.0.0.1:8101/ \
                2>>"$OUT/inside-commands.log"
}
handled() { [ "$(q "SELECT status FROM events WHERE provider_event_id = '$1'")" = handled ]; }
# status_rows: "daemon pid state" per row of `knockctl status --json`.
status_rows() {
        knockctl -e demo --json status | awk -F': ' '
                /"daemon":/ { d = $2 } /"pid":/ { p = $2 }
                /"state":/ { s = $2; gsub(/[",]/, "", d); gsub(/[",]/, "", p); gsub(/[",]/, "", s);
                             print d, p, s }'
}
# Every daemon status calls running is the unit's current main process; none is stale.
status_only_live() {
        status_rows >"$OUT/status-rows.txt"
        cat "$OUT/status-rows.txt"
        grep -q running "$OUT/status-rows.txt" || return 1
        ! grep -q stale "$OUT/status-rows.txt" || return 1
        while read -r d p s; do
                [ "$s" = running ] || continue
                [ "$p" = "$(mainpid "knock-$d@demo.service")" ] || { echo "$d: pid $p is not running"; return 1; }
        done <"$OUT/status-rows.txt"
}
backup_records() { journalctl -b -o json MESSAGE_ID=fef6cf5b65b74a5db009682a4e97c291 KNOCK_ENDPOINT=demo; }

note "drill: a backup as root, then the timer's"
ls /var/lib/knock/backups/demo/ >"$OUT/backups-before.txt" 2>/dev/null
knockctl -e demo backup >"$OUT/drill-backup.txt" 2>&1
check "knockctl -e demo backup as root succeeds" [ $? -eq 0 ]
b1=$(sed -n 's/^backup written to \([^ ]*\) .*/\1/p' "$OUT/drill-backup.txt")
check "systemctl start knock-backup.service right after it succeeds" systemctl start knock-backup.service
b2=$(for f in /var/lib/knock/backups/demo/demo-*.db; do
        [ "$f" = "$b1" ] && continue
        grep -qxF "$(basename "$f")" "$OUT/backups-before.txt" || echo "$f"
done | tail -1)
note "knockctl's backup ${b1:-none}, the timer's ${b2:-none}"
check "both backups exist, under two names" sh -c "[ -f '$b1' ] && [ -f '$b2' ] && [ '$b1' != '$b2' ]"
check "both pass integrity_check" sh -c "[ \"\$(sqlite3 '$b1' 'PRAGMA integrity_check')\" = ok ] &&
        [ \"\$(sqlite3 '$b2' 'PRAGMA integrity_check')\" = ok ]"
check "backups/demo and both files belong to knock:knock" \
        sh -c "[ \"\$(stat -c %U:%G /var/lib/knock/backups/demo '$b1' '$b2' | sort -u)\" = knock:knock ]"
check "knock(7)'s journal query finds both backups" \
        wait_for 10 sh -c "journalctl -b -o json MESSAGE_ID=fef6cf5b65b74a5db009682a4e97c291 KNOCK_ENDPOINT=demo |
                grep -qF '\"KNOCK_BACKUP_PATH\":\"$b1\"' &&
                journalctl -b -o json MESSAGE_ID=fef6cf5b65b74a5db009682a4e97c291 KNOCK_ENDPOINT=demo |
                grep -qF '\"KNOCK_BACKUP_PATH\":\"$b2\"'"

note "drill: restore (knock(7) RESTORE DRILL) from knockctl's backup, as root"
check "stop the endpoint" systemctl stop knock@demo
knockctl -e demo restore "$b1" >"$OUT/drill-restore.txt" 2>&1
check "knockctl -e demo restore as root succeeds" [ $? -eq 0 ]
check "the restored demo.db belongs to knock:knock, mode 0660" \
        sh -c "[ \"\$(stat -c %U:%G:%a $DB)\" = knock:knock:660 ]"
check "no state file belongs to root" sh -c "[ -z \"\$(find /var/lib/knock -user root)\" ]"
check "start the endpoint" systemctl start knock@demo
check "the worker and the deliverer are active" \
        wait_for 10 sh -c 'systemctl is-active -q knock-worker@demo.service knock-deliver@demo.service'
check "the event noted before the backup is there (knockctl events)" \
        sh -c 'knockctl -e demo --json events --limit 0 | grep -q 72d3162e-cc78-11e3-81ab-4c9367dc0958'
code=$(webhook drill-after-restore)
check "after the restore a signed webhook is answered 200 (got $code)" [ "$code" = 200 ]
check "and handled" wait_for 15 handled drill-after-restore
check "knockctl status shows only live daemons (no stale rows from the backup)" \
        wait_for 10 status_only_live
knockctl -e demo status >"$OUT/status-after-restore.txt" 2>&1

note "drill: reload with a typo"
cp /etc/knock/endpoints/demo.conf "$OUT/demo.conf.good"
wpid=$(mainpid knock-worker@demo.service)
sed -i 's/^provider = github$/provider = githb/' /etc/knock/endpoints/demo.conf
systemctl reload knock@demo >"$OUT/reload-typo.txt" 2>&1
rc=$?
systemctl status --no-pager -l knock@demo >"$OUT/reload-typo-status.txt" 2>&1
check "systemctl reload knock@demo with a typo exits non-zero (got $rc)" [ $rc -ne 0 ]
check "systemctl status knock@demo shows FILE:LINE: message" \
        grep -q '/etc/knock/endpoints/demo.conf:2: .*githb' "$OUT/reload-typo-status.txt"
check "knock@demo stays active" active knock@demo.service
code=$(webhook drill-after-typo)
check "the old configuration still serves: signed webhook 200 (got $code)" [ "$code" = 200 ]
check "the worker kept running (not restarted)" \
        sh -c "[ \"\$(systemctl show -P MainPID knock-worker@demo.service)\" = '$wpid' ]"
check "and handled" wait_for 15 handled drill-after-typo

note "drill: an exec handler's environment and children"
cat >/usr/local/lib/knock/env-demo <<'EOF'
#!/bin/sh
# Prints its environment, leaves a background child, tries knock's files.
env
(sleep 300 & echo "bgpid=$!")
# In subshells: a failed redirection ends a POSIX shell.
if (: >>/var/lib/knock/demo.db) 2>/dev/null; then echo "db-write=yes"; else echo "db-write=no"; fi
if (cat /run/credentials/knock-worker@demo.service/demo-github >/dev/null) 2>/dev/null; then
        echo "secret-read=yes"; else echo "secret-read=no"; fi
EOF
chmod 0755 /usr/local/lib/knock/env-demo
cp "$OUT/demo.conf.good" /etc/knock/endpoints/demo.conf
printf '\n[route "envtest"]\nhandler = exec:/usr/local/lib/knock/env-demo\n' >>/etc/knock/endpoints/demo.conf
since=$(journal_mark)
check "systemctl reload knock@demo with the fixed file (and a new route) succeeds" \
        systemctl reload knock@demo
# The daemons' reloads are jobs of their own (ReloadPropagatedFrom=): wait for the worker's.
check "the worker reloaded" wait_for 10 sh -c "journalctl -b --since '$since' -u knock-worker@demo.service | grep -q 'Configuration reloaded'"
code=$(webhook drill-env envtest)
check "an envtest webhook is answered 200 (got $code)" [ "$code" = 200 ]
check "and handled by env-demo" wait_for 15 handled drill-env
handler_output drill-env >"$OUT/handler-env.txt" 2>&1
check "the handler's environment has the event (KNOCK_EVENT_ID)" grep -q '^KNOCK_EVENT_ID=evt_' "$OUT/handler-env.txt"
check "and no credential path or systemd variable" \
        sh -c "! grep -Eq 'CREDENTIALS_DIRECTORY|/run/credentials|^NOTIFY_SOCKET=|^LISTEN_|^WATCHDOG_|^INVOCATION_ID=|^JOURNAL_STREAM=' '$OUT/handler-env.txt'"
check "the handler could not write the database" grep -qx 'db-write=no' "$OUT/handler-env.txt"
check "nor read the endpoint's secret" grep -qx 'secret-read=no' "$OUT/handler-env.txt"
bg=$(sed -n 's/^bgpid=//p' "$OUT/handler-env.txt")
check "its background child (pid ${bg:-?}) is gone after it exited" \
        sh -c "[ -n '$bg' ] && ! kill -0 '$bg' 2>/dev/null"

note "drill: a database the daemons cannot write"
oom_before=$(q "SELECT sum(suspected_oom_kills) FROM daemons")
check "stop the endpoint" systemctl stop knock@demo
chown root:root "$DB"; chmod 0644 "$DB"
t0=$(date +%s)
check "systemctl start knock@demo (the configuration is valid)" systemctl start knock@demo
# Until the endpoint is failed, /readyz answers 503 within a second; after,
# nothing listens and connections are refused at once. Never a hang.
slowest=0 codes=
while :; do
        r=$(curl -s -o "$OUT/readyz-unwritable.json.tmp" -w '%{http_code} %{time_total}' --max-time 5 \
                --unix-socket /run/knock/demo.admin http://localhost/readyz 2>/dev/null)
        code=${r%% *} tt=${r#* }
        [ "$code" = 503 ] && cp "$OUT/readyz-unwritable.json.tmp" "$OUT/readyz-unwritable.json"
        codes="$codes $code"
        slowest=$(echo "$tt $slowest" | awk '{ print ($1 > $2) ? $1 : $2 }')
        systemctl is-failed -q knock@demo.service && break
        [ $(($(date +%s) - t0)) -gt 120 ] && break
        sleep 0.5
done
t1=$(date +%s)
note "readyz codes:$codes; slowest answer ${slowest}s; knock@demo failed after $((t1 - t0)) s"
check "/readyz answered 503 while the endpoint was broken" sh -c "echo '$codes' | grep -q 503"
check "every /readyz answer took under one second (slowest ${slowest}s)" \
        sh -c "echo '$slowest' | awk '{ exit !(\$1 < 1.0) }'"
check "and named the failing check (database_writable)" \
        grep -q '"name":"database_writable","ok":false' "$OUT/readyz-unwritable.json"
check "knock@demo is failed within 120 s (took $((t1 - t0)) s)" systemctl is-failed -q knock@demo.service
check "knock-worker@demo and knock-deliver@demo are failed" \
        sh -c 'systemctl is-failed -q knock-worker@demo.service && systemctl is-failed -q knock-deliver@demo.service'
systemctl --failed --no-legend --plain >"$OUT/failed-unwritable.txt" 2>&1
check "systemctl --failed lists knock@demo.service" grep -q '^knock@demo.service' "$OUT/failed-unwritable.txt"
check "the journal says what to fix" \
        sh -c "journalctl -b -u knock-worker@demo.service | grep -q 'demo.db is not writable by knock-worker'"
chown knock:knock "$DB"; chmod 0660 "$DB"
systemctl reset-failed
check "after chown knock:knock the endpoint starts again" systemctl start knock@demo
check "and its daemons are active" \
        wait_for 10 systemctl is-active -q knock-ingress@demo.socket knock-worker@demo.service \
        knock-deliver@demo.service
code=$(webhook drill-after-fix)
check "and serves: signed webhook 200 (got $code)" [ "$code" = 200 ]
check "and handled" wait_for 15 handled drill-after-fix
oom_after=$(q "SELECT sum(suspected_oom_kills) FROM daemons")
check "the failed starts were not counted as suspected OOM kills ($oom_before → $oom_after)" \
        [ "$oom_before" = "$oom_after" ]

note "drill: a secret that no longer loads"
cp /etc/credstore/demo-hook "$OUT/demo-hook.good"
printf 'not-a-standard-webhooks-secret\n' >/etc/credstore/demo-hook
t0=$(date +%s)
systemctl restart knock-deliver@demo.service >>"$OUT/inside-commands.log" 2>&1
check "knock-deliver@demo is failed within 60 s" \
        wait_for 60 systemctl is-failed -q knock-deliver@demo.service
check "and knock@demo with it" wait_for 10 systemctl is-failed -q knock@demo.service
note "knock@demo failed $(($(date +%s) - t0)) s after the restart with a bad secret"
check "the deliverer's journal names the file, the line and the problem" \
        sh -c "journalctl -b -u knock-deliver@demo.service | grep -q 'demo.conf:[0-9]*: hook secret is not a Standard Webhooks secret'"
check "no secret in the journal" sh -c "! journalctl -b -o json | grep -q 'not-a-standard-webhooks-secret'"
cp "$OUT/demo-hook.good" /etc/credstore/demo-hook
systemctl reset-failed
check "with the secret fixed the endpoint starts again" systemctl start knock@demo
# knock@demo is started once its check ran; its sockets and daemons follow.
check "and its listener and daemons are active" \
        wait_for 10 systemctl is-active -q knock-ingress@demo.socket knock-worker@demo.service \
        knock-deliver@demo.service
code=$(webhook drill-after-secret)
check "and serves: signed webhook 200 (got $code)" [ "$code" = 200 ]
check "and handled" wait_for 15 handled drill-after-secret
oom_now=$(q "SELECT sum(suspected_oom_kills) FROM daemons")
check "those failed starts were not counted as suspected OOM kills ($oom_before → $oom_now)" \
        [ "$oom_before" = "$oom_now" ]

# ---- stop --------------------------------------------------------------------------------------
check "systemctl stop knock@demo" systemctl stop knock@demo
for u in knock-ingress@demo.socket knock-ingress-admin@demo.socket knock-ingress@demo.service \
         knock-worker@demo.service knock-deliver@demo.service; do
        check "$u stopped with the endpoint" wait_for 10 inactive "$u"
done
check "port 8101 closed after stop" sh -c '! ss -Hltn "sport = :8101" | grep -q 8101'
check "clean stop: no OOM watchdog file left" sh -c '! ls /var/lib/knock/demo.*.watchdog'

# ---- a bad configuration ------------------------------------------------------------------------
printf '[endpoint]\nprovider = nosuchprovider\nlisten = 127.0.0.1:8102\n' >/etc/knock/endpoints/bad.conf
chgrp knock /etc/knock/endpoints/bad.conf; chmod 0640 /etc/knock/endpoints/bad.conf
systemctl daemon-reload
check "systemctl start knock@bad fails on a wrong configuration" sh -c '! systemctl start knock@bad'
check "and starts none of its daemons" \
        sh -c '! systemctl is-active -q knock-worker@bad.service && ! systemctl is-active -q knock-ingress@bad.socket'
check "the validation message is in its journal" \
        sh -c 'journalctl -b -u knock@bad.service | grep -q "bad.conf:[0-9]"'

# ---- purge --------------------------------------------------------------------------------------
apt-get purge -y -qq knock >"$OUT/purge.log" 2>&1
check "purging the package succeeds" [ $? -eq 0 ]
check "purge removed /etc/knock" [ ! -e /etc/knock ]
check "purge kept /var/lib/knock and the database" [ -e /var/lib/knock/demo.db ]
check "purge removed the units and timers" \
        sh -c '! systemctl cat knock@.service && ! systemctl list-timers --all | grep -q knock-'

note "$fails check(s) failed"
exit "$fails"
