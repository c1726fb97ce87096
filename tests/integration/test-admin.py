#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Health, readiness and metrics (contract §11) on the ingress's admin
listener: /readyz flips to 503 when the worker stops and when the database
is not writable, and back; /metrics passes `promtool check metrics` and its
counters move, handler durations come from the worker and survive pruning;
`knockctl status` shows a suspected OOM kill after kill -9."""

import json
import shutil
import sqlite3
import subprocess
import time

import knocktest as kt

SECRET = "admin-secret"


def readyz(ep):
    st, body = ep.admin_get("/readyz")
    doc = json.loads(body)
    failing = {c["name"]: c["message"] for c in doc["checks"] if not c["ok"]}
    return st, doc, failing


metric = kt.metric


def main():
    t = kt.Tap()
    ep = kt.Endpoint("adm")
    try:
        ep.write_config("[endpoint]\nprovider = github\nsecret = literal:%s\nlisten = 127.0.0.1:%d\n"
                        "[worker]\nhandler = exec:/bin/true\n" % (SECRET, ep.port))
        ep.start_ingress(activate=False)
        ep.start("knock-worker")

        st, doc, failing = kt.wait_for(lambda: (lambda r: r if r[0] == 200 else None)(readyz(ep)), 10) or readyz(ep)
        t.eq(st, 200, "/readyz 200 with ingress and worker running")
        names = {c["name"] for c in doc["checks"]}
        t.ok({"database_writable", "schema_current", "worker_heartbeat", "disk_space"} <= names,
             "/readyz lists every check", names)

        # Worker stopped: its heartbeat is no longer fresh.
        ep.stop("worker")
        st, doc, failing = kt.wait_for(lambda: (lambda r: r if r[0] == 503 else None)(readyz(ep)), 10) or readyz(ep)
        t.eq(st, 503, "/readyz 503 when the worker is stopped")
        t.ok("worker_heartbeat" in failing and "worker" in failing.get("worker_heartbeat", ""),
             "the failing check names the worker with a message", failing)
        ep.start("knock-worker")
        st, _, failing = kt.wait_for(lambda: (lambda r: r if r[0] == 200 else None)(readyz(ep)), 10) or readyz(ep)
        t.eq(st, 200, "/readyz back to 200 once the worker runs again", failing)

        # Database not writable: another process holds the write lock.
        if ep.engine == "postgresql":
            t.skip("/readyz 503 while another process holds the write lock",
                   "SQLite-only: the database file's write lock")
        else:
            c = sqlite3.connect(ep.db_path, timeout=1, isolation_level=None)
            c.execute("BEGIN IMMEDIATE")
            st, _, failing = kt.wait_for(lambda: (lambda r: r if r[0] == 503 else None)(readyz(ep)), 10) or readyz(ep)
            t.eq(st, 503, "/readyz 503 while the database cannot be written")
            t.ok("database_writable" in failing, "the failing check is database_writable", failing)
            c.execute("ROLLBACK")
            c.close()
            st, _, failing = kt.wait_for(lambda: (lambda r: r if r[0] == 200 else None)(readyz(ep)), 15) or readyz(ep)
            t.eq(st, 200, "/readyz back to 200 once the lock is released", failing)

        # Metrics: valid exposition format, counters move.
        st, before = ep.admin_get("/metrics")
        before = before.decode()
        t.eq(st, 200, "/metrics answers 200")
        for i in range(5):
            body = b'{"n":%d}' % i
            ep.post(body, kt.github_headers(SECRET, body, "m-%d" % i))
        ep.post(b"{}", {"X-Hub-Signature-256": "sha256=00", "X-GitHub-Delivery": "bad"})
        time.sleep(1.2)
        st, after = ep.admin_get("/metrics")
        after = after.decode()
        s0 = metric(before, "knock_deliveries_total", '{result="stored"}')
        s1 = metric(after, "knock_deliveries_total", '{result="stored"}')
        t.ok(s0 is not None and s1 == s0 + 5, "knock_deliveries_total{result=stored} moved by 5", (s0, s1))
        t.eq(metric(after, "knock_deliveries_total", '{result="invalid_signature"}'), 1.0,
             "invalid signatures counted")
        t.ok(metric(after, "knock_commit_duration_seconds_count") >= 5, "commit histogram counts commits")
        t.ok(metric(after, "knock_database_bytes") > 0, "database size reported")
        frames = metric(after, "knock_ingress_wal_frames_total")
        if kt.ENGINE == "postgresql":
            t.eq(frames, 0.0, "no WAL frames counted on PostgreSQL")
        else:
            t.ok(frames is not None and frames >= 5, "WAL frames written by the commits counted", frames)
        t.ok('knock_build_info{version="' in after, "build info")
        handled = kt.wait_for(lambda: metric(ep.admin_get("/metrics")[1].decode(), "knock_events",
                                             '{status="handled"}') == 5, 10)
        t.ok(handled, "knock_events{status=handled} reaches 5 once the worker ran the handler")
        # Handler durations come from the worker's heartbeat (every 5 s), not
        # from the attempts table: pruning attempts must not make them go down.
        n = kt.wait_for(lambda: metric(ep.admin_get("/metrics")[1].decode(),
                                       "knock_handler_duration_seconds_count") == 5, 15)
        t.ok(n, "knock_handler_duration_seconds_count reaches 5 with the worker's heartbeat")
        c = ep.db(isolation_level=None, timeout=5)
        c.execute("DELETE FROM attempts")
        c.close()
        time.sleep(1.5)
        m = ep.admin_get("/metrics")[1].decode()
        t.eq(metric(m, "knock_handler_duration_seconds_count"), 5.0,
             "the count stays 5 after the attempts are pruned")
        t.eq(metric(m, "knock_handler_duration_seconds_bucket", '{le="+Inf"}'), 5.0,
             "the +Inf bucket equals the count")
        t.ok((metric(m, "knock_handler_duration_seconds_sum") or 0) > 0, "the sum of durations is positive")
        promtool = shutil.which("promtool")
        if promtool:
            p = subprocess.run([promtool, "check", "metrics"], input=after, capture_output=True, text=True)
            t.ok(p.returncode == 0, "promtool check metrics passes", p.stdout + p.stderr)
        else:
            t.ok(False, "promtool is installed (Debian package prometheus)")

        # kill -9 then restart: knockctl status shows the suspected OOM kill.
        ep.kill9("worker")
        ep.start("knock-worker")
        rc, out, err = ep.knockctl("--json", "status")
        t.eq(rc, 0, "knockctl status --json", err)
        doc = json.loads(out) if rc == 0 else {}
        w = [d for d in doc.get("daemons", []) if d.get("daemon") == "worker"]
        t.ok(w and w[0].get("suspected_oom_kills") == 1, "knockctl status: worker suspected_oom_kills = 1", w)
        # The snapshot is at most a second old.
        got = kt.wait_for(lambda: metric(ep.admin_get("/metrics")[1].decode(),
                                         "knock_suspected_oom_kills_total", '{daemon="worker"}') == 1.0, 5)
        t.ok(got, "/metrics: knock_suspected_oom_kills_total{daemon=worker} = 1")
    finally:
        ep.cleanup()
    t.done()


if __name__ == "__main__":
    main()
