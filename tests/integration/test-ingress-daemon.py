#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""knock-ingress as a daemon: sd_notify on a real NOTIFY_SOCKET (READY,
STATUS, WATCHDOG, STOPPING), the OOM watchdog file in its three states,
503 + Retry-After on a lock timeout, SIGTERM drain, the admin listener, and
journal fields through a private systemd-journald."""

import json
import os
import signal
import sqlite3
import sys
import threading
import time

import knocktest as kt

SECRET = "It's a Secret to Everybody"


def config(ep, extra=""):
    ep.write_config("[endpoint]\nprovider = github\nsecret = literal:%s\nlisten = 127.0.0.1:%d\n%s"
                    % (SECRET, ep.port, extra))


def post(ep, delivery, body=b"{}"):
    return ep.post(body, kt.github_headers(SECRET, body, delivery))


def test_notify(t):
    ep = kt.Endpoint("demo")
    try:
        config(ep)
        ep.start_ingress(extra_env={"WATCHDOG_USEC": "400000"})
        st, _, _ = post(ep, "n-1")
        t.eq(st, 200, "first request after socket activation is stored")
        nl = ep.notify["ingress"]
        t.ok(kt.wait_for(lambda: nl.seen("READY"), 5), "READY=1 on NOTIFY_SOCKET", nl.messages)
        t.ok(kt.wait_for(lambda: len(nl.seen("WATCHDOG")) >= 2, 5),
             "WATCHDOG=1 pings at half of WATCHDOG_USEC", nl.messages)
        t.ok(any("stored" in s for s in nl.seen("STATUS")), "STATUS= summarises what was stored",
             nl.seen("STATUS"))
        # Admin listener on its named socket-activated fd.
        st, body = ep.admin_get("/healthz")
        t.eq(st, 200, "/healthz on the admin listener")
        # No worker runs in this test: /readyz says exactly that, and only that.
        st, body = ep.admin_get("/readyz")
        failing = [c["name"] for c in json.loads(body)["checks"] if not c["ok"]]
        t.ok(st == 503 and failing == ["worker_heartbeat"],
             "/readyz: 503 naming only the missing worker", body)
        rc = ep.stop("ingress")
        t.eq(rc, 0, "SIGTERM: clean exit")
        t.ok(nl.seen("STOPPING"), "STOPPING=1 sent")
        row = ep.query("SELECT last_clean_exit, status FROM daemons WHERE daemon=?",
                       (ep.daemon_key("ingress"),))[0]
        t.eq(row["last_clean_exit"], 1, "clean stop recorded in the daemons table")
        t.ok(not os.path.exists(os.path.join(ep.state_dir, "demo.ingress.watchdog")),
             "watchdog file removed at clean stop")
    finally:
        ep.cleanup()


def test_oomfile(t):
    ep = kt.Endpoint("demo")
    wd = None
    try:
        config(ep)
        wd = os.path.join(ep.state_dir, "demo.ingress.watchdog")
        # Fresh: no file before, file while running, no warning.
        ep.start_ingress(activate=False)
        t.ok(os.path.exists(wd), "fresh start: watchdog file created")
        t.ok("ended unexpectedly" not in ep.stderr("ingress"), "fresh start: no unclean warning")
        # Unclean: kill -9, the file stays without CLEAN_EXIT.
        ep.kill9("ingress")
        t.ok(os.path.exists(wd) and "CLEAN_EXIT" not in open(wd).read(),
             "after kill -9 the file is left without CLEAN_EXIT")
        ep.start_ingress(activate=False)
        t.ok(kt.wait_for(lambda: "ended unexpectedly" in ep.stderr("ingress"), 5),
             "restart after kill -9 warns that the previous run ended unexpectedly",
             ep.stderr("ingress"))
        n = ep.query("SELECT suspected_oom_kills FROM daemons WHERE daemon=?",
                     (ep.daemon_key("ingress"),))[0]
        t.eq(n["suspected_oom_kills"], 1, "suspected OOM kill counted in the database")
        ep.stop("ingress")
        # Disabled: a directory where the file should be; the daemon still runs.
        os.mkdir(wd)
        open(os.path.join(ep.tmp, "ingress.stderr"), "w").close()
        ep.start_ingress(activate=False)
        st, _, _ = post(ep, "oom-1")
        t.eq(st, 200, "unwritable watchdog path: daemon still receives webhooks")
        t.ok("watchdog file disabled" in ep.stderr("ingress"), "unwritable path: one warning",
             ep.stderr("ingress"))
        t.eq(ep.stop("ingress"), 0, "unwritable path: clean stop")
    finally:
        ep.cleanup()


def test_lock_timeout(t):
    ep = kt.Endpoint("demo")
    try:
        config(ep)
        ep.start_ingress()
        t.eq(post(ep, "lk-1")[0], 200, "baseline request stored")
        if ep.engine == "postgresql":
            t.skip("write lock held elsewhere: 503, then stored once released",
                   "SQLite-only: the database file's write lock and busy timeout")
            return
        # Another process holds the write lock past the busy timeout (5 s).
        c = sqlite3.connect(ep.db_path, timeout=1, isolation_level=None)
        c.execute("BEGIN IMMEDIATE")
        st, hdrs, _ = post(ep, "lk-2")
        t.eq(st, 503, "write lock held elsewhere: 503")
        t.ok(hdrs.get("retry-after") is not None, "503 carries Retry-After", hdrs)
        st, body = ep.admin_get("/readyz")
        t.eq(st, 503, "/readyz reports the storage failure")
        c.execute("ROLLBACK")
        c.close()
        st, _, _ = post(ep, "lk-2")
        t.eq(st, 200, "lock released: the retried webhook is stored")
        t.eq(ep.query("SELECT count(*) AS n FROM events WHERE provider_event_id='lk-2'")[0]["n"], 1,
             "exactly one event for the retried webhook")
    finally:
        ep.cleanup()


def test_drain(t):
    """SIGTERM while requests are in flight: every request that got an answer
    got it after commit, and the process exits 0."""
    ep = kt.Endpoint("demo")
    try:
        config(ep)
        ep.start_ingress(activate=False)
        acked, errors = [], []

        def client(k):
            for i in range(200):
                d = "dr-%d-%d" % (k, i)
                try:
                    st, _, body = post(ep, d)
                except Exception:
                    return
                if st == 200:
                    acked.append(d)
                elif st != 503:
                    errors.append(st)

        ths = [threading.Thread(target=client, args=(k,)) for k in range(8)]
        for th in ths:
            th.start()
        time.sleep(0.3)
        rc = ep.stop("ingress")
        for th in ths:
            th.join()
        t.eq(rc, 0, "SIGTERM under load: clean exit")
        stored = {r["provider_event_id"] for r in ep.query("SELECT provider_event_id FROM events")}
        missing = [d for d in acked if d not in stored]
        t.ok(len(acked) > 0 and not missing, "every acknowledged request is stored (%d acked)" % len(acked),
             missing[:5])
        t.eq(errors, [], "no answers other than 200/503 during drain")
    finally:
        ep.cleanup()


def test_reload(t):
    ep = kt.Endpoint("demo")
    try:
        config(ep)
        ep.start_ingress(activate=False)
        nl = ep.notify["ingress"]
        big = b'{"pad":"' + b"x" * 3000 + b'"}'
        t.eq(post(ep, "rl-1", big)[0], 200, "reload: 3 KB body accepted with the default max_body")
        config(ep, "max_body = 1K\n")
        os.kill(ep.procs["ingress"].pid, signal.SIGHUP)
        t.ok(kt.wait_for(lambda: any("reloaded" in s for s in nl.seen("STATUS")), 5),
             "SIGHUP: RELOADING=1 then READY=1 with a reloaded STATUS", nl.messages[-3:])
        t.ok(nl.seen("RELOADING"), "RELOADING=1 sent")
        t.eq(post(ep, "rl-2", big)[0], 413, "reload: the new max_body applies")
        ep.write_config("[endpoint]\nprovider = nosuch\n")
        os.kill(ep.procs["ingress"].pid, signal.SIGHUP)
        t.ok(kt.wait_for(lambda: any("reload failed" in s for s in nl.seen("STATUS")), 5),
             "a broken configuration on reload is refused and STATUS says so", nl.seen("STATUS")[-2:])
        t.eq(post(ep, "rl-3", b"{}")[0], 200, "the previous configuration keeps serving")
        t.eq(ep.stop("ingress"), 0, "clean stop after reloads")
    finally:
        ep.cleanup()


def journal_child(t):
    """Runs inside a private mount namespace with a private journald."""
    ep = kt.Endpoint("jdemo")
    ep.env["KNOCK_LOG"] = "journal"
    try:
        config(ep)
        ep.start_ingress()
        st, _, _ = ep.post(b"{}", {"X-Hub-Signature-256": "sha256=00", "X-GitHub-Delivery": "j-1",
                                   "X-GitHub-Event": "push", "X-Request-ID": "rid-journal-1"})
        t.eq(st, 401, "journal: invalid delivery rejected")
        ep.stop("ingress")

        def records():
            return kt.journal_records("KNOCK_ENDPOINT=jdemo")
        recs = kt.wait_for(lambda: [r for r in records() if r.get("KNOCK_REQUEST_ID") == "rid-journal-1"], 5)
        t.ok(recs, "journalctl -o json KNOCK_ENDPOINT=jdemo finds the rejected delivery", records()[-3:])
        if recs:
            r = recs[0]
            t.eq(r.get("KNOCK_DAEMON"), "ingress", "journal: KNOCK_DAEMON")
            t.eq(r.get("KNOCK_HTTP_STATUS"), "401", "journal: KNOCK_HTTP_STATUS")
            t.eq(r.get("KNOCK_PROVIDER_EVENT_ID"), "j-1", "journal: KNOCK_PROVIDER_EVENT_ID")
            t.ok(r.get("KNOCK_DELIVERY_ID", "").startswith("dlv_"), "journal: KNOCK_DELIVERY_ID")
            t.ok(r.get("MESSAGE_ID"), "journal: MESSAGE_ID on the rejected-delivery record")
            t.ok(r.get("KNOCK_ERROR"), "journal: KNOCK_ERROR says why")
            t.eq(r.get("PRIORITY"), "4", "journal: warning priority")
            t.ok(SECRET not in json.dumps(records()), "journal: the secret never appears")
        started = [r for r in records() if "started for jdemo" in r.get("MESSAGE", "")]
        t.ok(started, "journal: start record")
    finally:
        ep.cleanup()


def main():
    kt.journal_child_main(journal_child)
    t = kt.Tap()
    test_notify(t)
    test_oomfile(t)
    test_lock_timeout(t)
    test_drain(t)
    test_reload(t)
    kt.run_journal_child(t, __file__)
    t.done()


if __name__ == "__main__":
    main()
