#!/bin/sh
# SPDX-License-Identifier: MIT
#
# test-generator GENERATOR: runs knock-generator on a temporary configuration
# (KNOCK_CONFIG_DIR) and checks the drop-ins it writes. TAP.
set -u
GEN=$1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
n=0 failed=0
check() {
        d=$1; shift
        n=$((n + 1))
        if "$@"; then echo "ok $n - $d"; else echo "not ok $n - $d"; failed=$((failed + 1)); fi
}
has() { grep -qxF -- "$2" "$1" 2>/dev/null; }

mkdir -p "$T/etc/endpoints" "$T/out/normal" "$T/out/early" "$T/out/late"
cat >"$T/etc/knock.conf" <<'C'
[endpoint]
admin = 127.0.0.1:9100
secret = credential:global-secret
C
cat >"$T/etc/endpoints/demo.conf" <<'C'
; an endpoint with its own listener, credentials and hook secret
[endpoint]
provider = github
secret   = credential:demo-a   # rotation: both are accepted
secret   = credential:demo-b
listen   = 127.0.0.1:8101
admin    = /run/knock/demo.admin

[hook]
url    = http://127.0.0.1:9099/
secret = credential:demo-hook
C
cat >"$T/etc/endpoints/second.conf" <<'C'
[endpoint]
listen = /run/knock/second.sock
C
cat >"$T/etc/endpoints/evil.conf" <<'C'
[endpoint]
listen = 127.0.0.1:80
ListenStream=0.0.0.0:22
admin = /run/%n
secret = credential:../../etc/shadow
C
printf '[endpoint]\nlisten = 127.0.0.1:1\n' >"$T/etc/endpoints/Bad-Name.conf"

KNOCK_CONFIG_DIR="$T/etc" "$GEN" "$T/out/normal" "$T/out/early" "$T/out/late" 2>"$T/stderr"
check "generator exits 0" [ $? -eq 0 ]
O=$T/out/normal
f=$O/knock-ingress@demo.socket.d/50-knock-listen.conf
check "demo public listener reset and set" sh -c "grep -qx 'ListenStream=' '$f' && grep -qx 'ListenStream=127.0.0.1:8101' '$f'"
check "demo TCP listener gets FreeBind=yes" has "$f" "FreeBind=yes"
f=$O/knock-ingress-admin@demo.socket.d/50-knock-listen.conf
check "demo admin listener from the endpoint file overrides knock.conf" has "$f" "ListenStream=/run/knock/demo.admin"
check "unix admin listener has no FreeBind" sh -c "! grep -q FreeBind '$f'"
f=$O/knock-ingress-admin@second.socket.d/50-knock-listen.conf
check "second inherits admin from knock.conf" has "$f" "ListenStream=127.0.0.1:9100"
check "second public listener is a unix path" has "$O/knock-ingress@second.socket.d/50-knock-listen.conf" "ListenStream=/run/knock/second.sock"
for u in knock knock-ingress knock-worker knock-deliver; do
        f=$O/$u@demo.service.d/50-knock-credentials.conf
        check "$u@demo loads demo-a, demo-b, demo-hook" sh -c "grep -qx 'LoadCredential=demo-a' '$f' && grep -qx 'LoadCredential=demo-b' '$f' && grep -qx 'LoadCredential=demo-hook' '$f'"
        check "$u@demo does not load knock.conf's replaced secret" sh -c "! grep -q global-secret '$f'"
done
check "second inherits the credential of knock.conf" has "$O/knock-worker@second.service.d/50-knock-credentials.conf" "LoadCredential=global-secret"
f=$O/knock-backup.service.d/50-knock-credentials.conf
check "maintenance units load every endpoint's credentials once" sh -c "[ \$(grep -c '^LoadCredential=' '$f') -eq 4 ] && grep -qx 'LoadCredential=global-secret' '$f'"
check "drop-ins start with [Service]/[Socket]" sh -c "grep -qx '\[Service\]' '$f'"
check "no drop-in for an invalid endpoint name" sh -c "! ls '$O' | grep -q Bad-Name"
check "a '%' address is refused (unit default kept)" sh -c "! [ -e '$O/knock-ingress-admin@evil.socket.d/50-knock-listen.conf' ]"
check "unknown keys cannot inject unit settings" sh -c "! grep -rq '0.0.0.0:22' '$O'"
check "a credential name with '/' is refused" sh -c "! grep -rq shadow '$O'"
check "refusals are explained on stderr" sh -c "grep -q 'evil.conf' '$T/stderr'"
check "no network drop-in for SQLite endpoints" sh -c "[ -z \"\$(find '$O' -name '*network*')\" ]"
check "early and late directories untouched" sh -c "[ -z \"\$(find '$T/out/early' '$T/out/late' -mindepth 1)\" ]"

# An endpoint stored in PostgreSQL: its server may be on another host.
cat >"$T/etc/endpoints/pg.conf" <<'C'
[endpoint]
listen = 127.0.0.1:8102
store  = postgresql:host=db.example dbname=knock   # the shared store
C
rm -rf "$O"; mkdir -p "$O"
KNOCK_CONFIG_DIR="$T/etc" "$GEN" "$O" "$T/out/early" "$T/out/late"
f=$O/knock-ingress@pg.service.d/50-knock-network.conf
check "store = postgresql: the ingress may reach the network" sh -c "grep -qx 'IPAddressDeny=' '$f'"
f=$O/knock-failed@pg.service.d/50-knock-network.conf
check "... knock-failed@ too" sh -c "grep -qx 'PrivateNetwork=no' '$f' && grep -qx 'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6' '$f'"
for u in knock-prune knock-backup knock-retention; do
        check "... and $u.service" grep -qx 'PrivateNetwork=no' "$O/$u.service.d/50-knock-network.conf"
done
check "the SQLite endpoints' ingress keeps its fence" sh -c "! [ -e '$O/knock-ingress@demo.service.d/50-knock-network.conf' ]"
rm -f "$T/etc/endpoints/pg.conf"

rm -rf "$T/etc/endpoints"
rm -rf "$O"; mkdir -p "$O"
KNOCK_CONFIG_DIR="$T/etc" "$GEN" "$O" "$T/out/early" "$T/out/late"
check "no endpoints directory: exit 0, nothing written" sh -c "[ \$? -eq 0 ] && [ -z \"\$(ls -A '$O')\" ]"
echo "1..$n"
[ $failed -eq 0 ]
