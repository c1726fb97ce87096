#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""exec: handlers get least privilege (knock-worker(8), HANDLERS: the
environment of exec: handlers, and Sandbox).

The worker runs with systemd-like variables (CREDENTIALS_DIRECTORY,
INVOCATION_ID, WATCHDOG_*, NOTIFY_SOCKET) and knock's own settings in its
environment; one handler prints its environment, tries to append to the
database, to list the state directory and to read a secret from
$CREDENTIALS_DIRECTORY, and leaves a "(sleep 300 &)" behind. Asserted: the
environment holds only the documented variables; every one of those
accesses failed while the handler could still write its own directory; the
database is untouched and the endpoint goes on handling events; the
background child is gone once the handler has exited.
"""

import os
import time

from knocktest import Endpoint, Tap, insert_event, wake, wait_for, write_script
from knocktest import final_event as final

t = Tap()

ALLOWED = {"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR",
           "SSL_CERT_FILE", "SSL_CERT_DIR"}
EVENT_VARS = {"KNOCK_ENDPOINT", "KNOCK_EVENT_ID", "KNOCK_EVENT_TYPE", "KNOCK_PROVIDER_EVENT_ID",
              "KNOCK_DELIVERY_ID", "KNOCK_ATTEMPT"}


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


ep = Endpoint("sandbox")
try:
    out = os.path.join(ep.tmp, "out")
    os.makedirs(out)
    creds = os.path.join(ep.tmp, "creds")
    os.makedirs(creds)
    with open(os.path.join(creds, "provider"), "w") as f:
        f.write("It's a Secret to Everybody")
    h = write_script(ep, "h.sh", """
out=%(out)s
env | cut -d= -f1 | sort > "$out/$KNOCK_EVENT_ID.env"
{
  if echo x >> "%(db)s" 2>/dev/null; then echo "db-write: yes"; else echo "db-write: no"; fi
  if ls "%(state)s" >/dev/null 2>&1; then echo "state-list: yes"; else echo "state-list: no"; fi
  if touch "%(state)s/planted" 2>/dev/null; then echo "state-create: yes"; else echo "state-create: no"; fi
  if cat "%(creds)s/provider" >/dev/null 2>&1; then echo "secret-read: yes"; else echo "secret-read: no"; fi
  if echo ok > "$out/own-$KNOCK_EVENT_ID"; then echo "own-write: yes"; else echo "own-write: no"; fi
} > "$out/$KNOCK_EVENT_ID.access"
(sleep 300 & echo $! > "$out/$KNOCK_EVENT_ID.bgpid")
exit 0
""" % {"out": out, "db": ep.db_path, "state": ep.state_dir, "creds": creds})
    ep.write_config("[endpoint]\nprovider = none\nallow_unverified = yes\n"
                    "listen = 127.0.0.1:%d\n[worker]\nhandler = exec:%s\n" % (ep.port, h))
    w = ep.start("knock-worker", extra_env={
        "CREDENTIALS_DIRECTORY": creds, "INVOCATION_ID": "0123456789abcdef0123456789abcdef",
        "WATCHDOG_USEC": "30000000", "JOURNAL_STREAM": "8:12345", "LANG": "C.UTF-8",
        "MY_APP_TOKEN": "leaks-if-passed"})
    db_before = os.path.getsize(ep.db_path) if ep.engine == "sqlite" else None

    insert_event(ep, "evt_env", "t")
    wake(ep)
    row = final(ep, "evt_env")
    t.ok(row and row["status"] == "handled", "the handler ran and the event is handled", row)

    names = set(open(os.path.join(out, "evt_env.env")).read().split())
    extra = sorted(n for n in names - ALLOWED - EVENT_VARS if not n.startswith("LC_") and n != "PWD"
                   and n != "SHLVL" and n != "_")
    t.ok(not extra, "the handler's environment holds only the documented variables", extra)
    t.ok(EVENT_VARS <= names, "and every KNOCK_* variable of the event", sorted(EVENT_VARS - names))
    t.ok("CREDENTIALS_DIRECTORY" not in names and "NOTIFY_SOCKET" not in names
         and "INVOCATION_ID" not in names and "KNOCK_STATE_DIR" not in names,
         "no CREDENTIALS_DIRECTORY, NOTIFY_SOCKET, INVOCATION_ID or KNOCK_STATE_DIR")
    t.ok("LANG" in names, "LANG is passed on")

    access = dict(line.split(": ") for line in
                  open(os.path.join(out, "evt_env.access")).read().split("\n") if line)
    t.ok(access.get("own-write") == "yes", "the handler writes its own directory", access)
    if ep.engine == "sqlite":
        t.ok(access.get("db-write") == "no", "the handler cannot write the database", access)
    else:
        t.skip("the handler cannot write the database", "SQLite-only: the .db file")
    t.ok(access.get("state-list") == "no" and access.get("state-create") == "no",
         "nor list or create files in the state directory", access)
    t.ok(not os.path.exists(os.path.join(ep.state_dir, "planted")), "nothing was planted there")
    t.ok(access.get("secret-read") == "no", "nor read a secret in $CREDENTIALS_DIRECTORY", access)
    if ep.engine == "sqlite":
        t.ok(ep.query("PRAGMA integrity_check")[0]["integrity_check"] == "ok",
             "the database passes integrity_check", db_before)
    else:
        t.skip("the database passes integrity_check", "SQLite-only: PRAGMA integrity_check")

    bg = int(open(os.path.join(out, "evt_env.bgpid")).read())
    t.ok(wait_for(lambda: not pid_alive(bg), timeout=5),
         "the handler's background child (pid %d) is gone after it exited" % bg)

    insert_event(ep, "evt_after", "t")
    wake(ep)
    row = final(ep, "evt_after")
    t.ok(row and row["status"] == "handled", "the endpoint goes on handling events", row)
    t.ok(w.poll() is None, "the worker is still running")
finally:
    ep.cleanup()
t.done()
