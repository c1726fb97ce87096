#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""knock-maint next to a busy knock-ingress, and the restore drill.

- bounded batches: 100,000 old handled events are pruned while clients post
  signed webhooks; every request must get its 200 and the longest request
  (the ingress stall) is measured and printed as a TAP comment;
- backup while the ingress is under load: no 503, the copy passes
  integrity_check (checked here with Python's sqlite3) and holds every event
  acknowledged before the backup started;
- restore refuses while the ingress runs and leaves the database alone;
- the restore drill of knock(7): back up, stop, lose the database, restore,
  start, and every event from before the backup is there (a provider retry
  of one of them is a duplicate again).
"""

import json
import os
import sqlite3
import statistics
import subprocess
import threading
import time

import knocktest as kt

SECRET = "It's a Secret to Everybody"
N_OLD = 100_000
DAY = 86_400_000
STALL_BOUND_S = 1.0  # generous: a loaded CI machine must not make this flaky


def config(ep):
    ep.write_config("[endpoint]\nprovider = github\nsecret = literal:%s\nlisten = 127.0.0.1:%d\n"
                    "\n[retention]\nhandled = 30d\nbackups = 3\n" % (SECRET, ep.port))


def post(ep, delivery, body=None):
    body = body or json.dumps({"delivery": delivery}).encode()
    return ep.post(body, kt.github_headers(SECRET, body, delivery))


class Load:
    """Clients posting signed webhooks back to back; records every latency."""

    def __init__(self, ep, prefix, clients=4):
        self.ep = ep
        self.prefix = prefix
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()
        self.results = []  # (start, latency, status, delivery)
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(clients)]

    def _run(self, k):
        i = 0
        while not self.stop_flag.is_set():
            d = "%s-%d-%d" % (self.prefix, k, i)
            i += 1
            t0 = time.monotonic()
            try:
                st, _, _ = post(self.ep, d)
            except OSError as e:
                st = str(e)
            with self.lock:
                self.results.append((t0, time.monotonic() - t0, st, d))

    def start(self):
        for th in self.threads:
            th.start()
        return self

    def stop(self):
        self.stop_flag.set()
        for th in self.threads:
            th.join(30)
        return self.results


def seed_old(ep):
    """N_OLD handled events from 60 days ago, each with a delivery and an attempt."""
    c = ep.db(isolation_level=None)
    now = int(time.time() * 1000)
    at = now - 60 * DAY
    body = b'{"old":true,"pad":"' + b"x" * 200 + b'"}'
    c.execute("BEGIN")
    c.executemany(
        "INSERT INTO events(id, provider_event_id, event_type, status, delivery_id,"
        " attempt_count, received_at, updated_at, finished_at) VALUES(?,?,?,?,?,?,?,?,?)",
        (("evt_old_%06d" % i, "old-%d" % i, "push", "handled", "dlv_old_%06d" % i, 1, at, at, at)
         for i in range(N_OLD)))
    c.executemany(
        "INSERT INTO deliveries(id, event_id, received_at, signature_valid, http_status, body,"
        " body_bytes) VALUES(?,?,?,?,?,?,?)",
        (("dlv_old_%06d" % i, "evt_old_%06d" % i, at, 1, 200, body, len(body))
         for i in range(N_OLD)))
    c.executemany(
        "INSERT INTO attempts(id, event_id, attempt, started_at, ended_at, outcome)"
        " VALUES(?,?,?,?,?,?)",
        (("att_old_%06d" % i, "evt_old_%06d" % i, 1, at, at, "ok") for i in range(N_OLD)))
    c.execute("COMMIT")
    c.close()


def maint(ep, *args):
    p = subprocess.run([kt.binary("knock-maint"), *args], env=ep.env, capture_output=True,
                       text=True, timeout=600)
    return p.returncode, p.stdout, p.stderr


def summary(lat):
    lat = sorted(lat)
    return "n=%d median=%.1f ms p99=%.1f ms max=%.1f ms" % (
        len(lat), statistics.median(lat) * 1000, lat[int(len(lat) * 0.99) - 1] * 1000,
        lat[-1] * 1000)


def test_prune_under_load(t, ep):
    seed_old(ep)
    ep.start_ingress()
    st, _, _ = post(ep, "warmup")
    t.eq(st, 200, "ingress takes signed webhooks")

    base = Load(ep, "base").start()
    time.sleep(2)
    base_res = base.stop()

    load = Load(ep, "prune").start()
    time.sleep(0.5)
    t0 = time.monotonic()
    rc, out, err = maint(ep, "prune", "--endpoint", "demo")
    t1 = time.monotonic()
    time.sleep(0.5)
    res = load.stop()

    during = [r for r in res if r[0] >= t0 and r[0] <= t1]
    bad = [r for r in res if r[2] != 200]
    t.ok(rc == 0, "knock-maint prune of %d events while the ingress is busy: exit 0" % N_OLD, err)
    left = ep.query("SELECT count(*) AS n FROM events WHERE id LIKE 'evt_old_%'")[0]["n"]
    t.eq(left, 0, "every old handled event was pruned")
    t.eq(ep.query("SELECT count(*) AS n FROM deliveries WHERE id LIKE 'dlv_old_%'")[0]["n"], 0,
         "... with its delivery")
    t.ok(not bad, "every webhook posted during the prune got its 200", bad[:5])
    audit = ep.query("SELECT counts FROM audit WHERE action='prune' ORDER BY at DESC LIMIT 1")
    counts = json.loads(audit[0]["counts"]) if audit else {}
    t.ok(counts.get("handled") == N_OLD and counts.get("batches", 0) >= N_OLD // 500,
         "audit row: %d events in bounded batches" % N_OLD, counts)
    t.ok(len(during) > 20, "requests were served throughout the prune (%d)" % len(during))
    worst = max(r[1] for r in during) if during else 99
    t.diag("prune of %d events took %.1f s, %d batches, longest batch held the lock %.1f ms"
           % (N_OLD, t1 - t0, counts.get("batches", 0), counts.get("longest_batch_us", 0) / 1000))
    t.diag("ingress latency before the prune: " + summary([r[1] for r in base_res]))
    t.diag("ingress latency during the prune: " + summary([r[1] for r in during]))
    t.ok(worst < STALL_BOUND_S, "longest ingress stall during the prune %.1f ms < %d ms"
         % (worst * 1000, STALL_BOUND_S * 1000))
    # Every acknowledged request is stored.
    ids = {r[3] for r in res if r[2] == 200}
    stored = {r["provider_event_id"] for r in ep.query(
        "SELECT provider_event_id FROM events WHERE provider_event_id LIKE 'prune-%'")}
    t.ok(ids <= stored, "every acknowledged webhook is in the database", len(ids - stored))


def test_backup_under_load(t, ep):
    acked_before = {r["id"] for r in ep.query("SELECT id FROM events")}
    load = Load(ep, "backup").start()
    time.sleep(0.3)
    rc, out, err = maint(ep, "backup", "--endpoint", "demo")
    time.sleep(0.3)
    res = load.stop()
    bad = [r for r in res if r[2] != 200]
    t.ok(rc == 0, "knock-maint backup while the ingress is busy: exit 0", err)
    t.ok(not bad and len(res) > 10, "no 503 (or anything but 200) during the backup (%d requests)"
         % len(res), bad[:5])
    path = out.split()[2] if rc == 0 else None
    ok = sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] if path else None
    t.eq(ok, "ok", "the backup taken under load passes integrity_check")
    in_copy = {r[0] for r in sqlite3.connect(path).execute("SELECT id FROM events")} if path \
        else set()
    t.ok(acked_before <= in_copy, "the copy holds every event stored before it started",
         len(acked_before - in_copy))
    t.diag("ingress latency during the backup: " + summary([r[1] for r in res]))
    return path


def test_restore(t, ep, backup):
    # While the ingress runs: refused, nothing touched.
    ino = os.stat(ep.db_path).st_ino
    rc, out, err = ep.knockctl("restore", backup)
    t.ok(rc == 1 and "running" in err and "knock@demo" in err,
         "restore refuses while knock-ingress runs, and says how to stop it", (rc, out, err))
    t.ok(os.stat(ep.db_path).st_ino == ino and not [f for f in os.listdir(ep.state_dir)
                                                    if "pre-restore" in f],
         "... and leaves the database alone")

    # The drill: a known set of events, backed up.
    for i in range(20):
        post(ep, "drill-%d" % i)
    before = {r["id"]: r["provider_event_id"] for r in ep.query("SELECT id, provider_event_id"
                                                                " FROM events")}
    rc, out, err = ep.knockctl("backup")
    t.eq(rc, 0, "drill: knockctl backup", err)
    drill_backup = out.split()[3] if rc == 0 else ""
    st, _, _ = post(ep, "after-backup")
    # Stop the endpoint and lose the database.
    t.eq(ep.stop("ingress"), 0, "drill: stop the endpoint")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(ep.db_path + suffix):
            os.unlink(ep.db_path + suffix)
    rc, out, err = ep.knockctl("restore", os.path.basename(drill_backup))
    t.ok(rc == 0 and "restored" in out, "drill: knockctl restore NAME-….db from the backup "
                                        "directory", (out, err))
    t.ok(not os.path.exists(ep.db_path + "-wal") or os.path.getsize(ep.db_path + "-wal") == 0,
         "no stale WAL next to the restored database")
    after = {r["id"]: r["provider_event_id"] for r in ep.query("SELECT id, provider_event_id"
                                                               " FROM events")}
    t.ok(set(before.items()) <= set(after.items()),
         "drill: every event from before the backup is there (%d)" % len(before),
         len(set(before) - set(after)))
    ok = ep.query("PRAGMA integrity_check")[0]
    t.eq(list(ok.values())[0], "ok", "drill: the restored database passes integrity_check")
    rows = ep.query("SELECT actor, filters FROM audit WHERE action='restore'")
    t.ok(len(rows) == 1 and json.loads(rows[0]["filters"])["backup"] == drill_backup,
         "drill: the restore is in the restored database's audit trail", rows)

    # Restore over an existing database keeps it.
    rc, out, err = ep.knockctl("restore", drill_backup)
    kept = [f for f in os.listdir(ep.state_dir) if f.startswith("demo.db.pre-restore-")]
    t.ok(rc == 0 and len(kept) == 1, "restore over a database keeps it as NAME.db.pre-restore-TS",
         (os.listdir(ep.state_dir), err))

    # Start again: it serves, and a provider retry of an old event is a duplicate.
    ep.start_ingress()
    known = sorted(before.values())[0]
    st, _, body = post(ep, known)
    t.ok(st == 200 and json.loads(body).get("duplicate") is True,
         "drill: after the restore the ingress knows the old events (retry = duplicate)", body)
    st, _, body = post(ep, "new-after-restore")
    t.ok(st == 200 and json.loads(body).get("duplicate") is False,
         "drill: and stores new ones", body)


def main():
    t = kt.Tap()
    if not os.path.exists(kt.binary("knock-ingress")):
        t.skip_all("knock-ingress not built")
    ep = kt.Endpoint("demo")
    try:
        config(ep)
        rc, _, err = ep.knockctl("migrate")
        if not t.ok(rc == 0, "knockctl migrate", err):
            t.done()
        test_prune_under_load(t, ep)
        if ep.engine == "postgresql":
            t.skip("backup under load, restore and the restore drill",
                   "SQLite-only: a PostgreSQL endpoint is backed up with PostgreSQL's own tools")
            t.done()
        backup = test_backup_under_load(t, ep)
        if backup:
            test_restore(t, ep, backup)
    finally:
        ep.cleanup()
    t.done()


if __name__ == "__main__":
    main()
