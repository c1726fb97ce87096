#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""knock-maint and the knockctl maintenance verbs against a real database.

The database is created by `knockctl migrate`; rows with chosen ages are
inserted with Python's sqlite3 and the clock is fixed with KNOCK_FAKE_NOW_MS,
so every expected deletion is computed here, independently of the C code:
prune by each status and by age, orphans, the cascade to deliveries,
attempts, hooks and hook attempts, events with a pending hook kept, dry-run
(reports, changes nothing), audit rows (also for a prune that deleted
nothing), bounded batches, backups, verify, retention of exactly `backups`
files, the audit-trail bound and the node_exporter textfile.

With KNOCK_TEST_STORE=postgresql only prune runs (rows written with
psycopg2): backups, verify, restore and the WAL are SQLite's, and a
PostgreSQL endpoint is backed up with PostgreSQL's own tools.
"""

import json
import os
import pwd
import sqlite3
import subprocess
import tempfile

import knocktest as kt

NOW = 1_780_000_000_000  # 2026-05-28T20:26:40Z
DAY = 86_400_000
ACTOR = "%s(%d)" % (pwd.getpwuid(os.getuid()).pw_name, os.getuid())
STATUSES = ["received", "processing", "failed", "dead", "ignored", "handled"]
AGES = [1, 15, 40]  # days since the event finished
SQLITE_ONLY = "SQLite-only: backups of a PostgreSQL endpoint are pg_dump's and pg_basebackup's"

CONFIG = """[endpoint]
provider = github
secret = literal:abc
listen = 127.0.0.1:1

[retention]
handled = 30d
ignored = 10d
orphans = 7d
dead = never
backups = 3
audit = 30d
"""


class Env:
    def __init__(self, root):
        self.root = root
        self.ep = kt.Endpoint("demo", tmp=root)
        self.ep.write_config(CONFIG)

    def env(self, now=NOW, extra=None):
        e = dict(self.ep.env)
        e["KNOCK_FAKE_NOW_MS"] = str(now)
        if extra:
            e.update(extra)
        return e

    def knockctl(self, *args, now=NOW):
        p = subprocess.run([kt.binary("knockctl"), "-e", "demo", *args], env=self.env(now),
                           capture_output=True, text=True, timeout=120)
        return p.returncode, p.stdout, p.stderr

    def maint(self, *args, now=NOW, extra=None):
        p = subprocess.run([kt.binary("knock-maint"), *args], env=self.env(now, extra),
                           capture_output=True, text=True, timeout=300)
        return p.returncode, p.stdout, p.stderr

    def db(self):
        return self.ep.db(isolation_level=None)

    def scalar(self, sql, args=()):
        c = self.db()
        try:
            return c.execute(sql, args).fetchone()[0]
        finally:
            c.close()

    def ids(self, table):
        return {r[0] for r in self.db().execute("SELECT id FROM " + table)}

    def audit(self, action):
        c = self.db()
        rows = [dict(r) for r in c.execute(
            "SELECT * FROM audit WHERE action = ? ORDER BY at, rowid", (action,))]
        c.close()
        for r in rows:
            r["counts"] = json.loads(r["counts"]) if r["counts"] else None
            r["filters"] = json.loads(r["filters"]) if r["filters"] else None
        return rows

    def counts(self):
        return {t: self.scalar("SELECT count(*) FROM " + t)
                for t in ("events", "deliveries", "attempts", "hooks", "hook_attempts", "audit")}


def add_event(db, eid, status, age_days, hooks=0, hook_state="delivered", deliveries=2):
    at = NOW - age_days * DAY
    db.execute("INSERT INTO events(id, provider_event_id, event_type, status, delivery_id,"
               " attempt_count, received_at, updated_at, finished_at) VALUES(?,?,?,?,?,?,?,?,?)",
               (eid, "p-" + eid, "push", status, "dlv_" + eid + "_0", 1, at - 1000, at,
                at if status in ("handled", "ignored", "dead") else None))
    for k in range(deliveries):
        db.execute("INSERT INTO deliveries(id, event_id, received_at, signature_valid,"
                   " http_status, body, body_bytes, duplicate) VALUES(?,?,?,?,?,?,?,?)",
                   ("dlv_%s_%d" % (eid, k), eid, at - 1000, 1, 200, b'{"x":1}', 7, int(k > 0)))
    db.execute("INSERT INTO attempts(id, event_id, delivery_id, attempt, started_at, ended_at,"
               " outcome) VALUES(?,?,?,?,?,?,?)",
               ("att_" + eid, eid, "dlv_" + eid + "_0", 1, at - 500, at, "ok"))
    for k in range(hooks):
        hid = "hk_%s_%d" % (eid, k)
        db.execute("INSERT INTO hooks(id, event_id, type, payload, state, created_at, updated_at)"
                   " VALUES(?,?,?,?,?,?,?)", (hid, eid, "knock.event.handled", "{}", hook_state,
                                              at, at))
        for a in range(2):
            db.execute("INSERT INTO hook_attempts(id, hook_id, at, status, duration_ms)"
                       " VALUES(?,?,?,?,?)", ("hka_%s_%d" % (hid, a), hid, at, 200, 5))


def add_orphan(db, did, age_days):
    db.execute("INSERT INTO deliveries(id, event_id, received_at, signature_valid, verify_error,"
               " http_status, body, body_bytes) VALUES(?,?,?,?,?,?,?,?)",
               (did, None, NOW - age_days * DAY, 0, "signature mismatch", 401, b"{}", 2))


def seed(env):
    """Every status at every age, each with 2 deliveries, 1 attempt, 1 hook
    with 2 hook attempts; an old handled event whose hook is still pending;
    orphans at 1 and 8 days."""
    c = env.db()
    c.execute("BEGIN")
    for s in STATUSES:
        for age in AGES:
            add_event(c, "evt_%s_%d" % (s, age), s, age, hooks=1)
    add_event(c, "evt_pending_hook", "handled", 40, hooks=1, hook_state="pending")
    for age in (1, 8):
        add_orphan(c, "dlv_orphan_%d" % age, age)
    c.execute("COMMIT")
    c.close()


def expected_gone(rules):
    """Event ids the rules {status: max_age_days_kept} delete (age > keep)."""
    return {"evt_%s_%d" % (s, a) for s, keep in rules.items() for a in AGES if a > keep}


def check_cascade(t, env, gone, what):
    ev = env.ids("events")
    dl = env.ids("deliveries")
    at = env.ids("attempts")
    hk = env.ids("hooks")
    ha = env.ids("hook_attempts")
    t.ok(not (gone & ev), what + ": the expected events are gone", sorted(gone & ev))
    t.ok(all(("dlv_%s_0" % e) not in dl and ("dlv_%s_1" % e) not in dl and ("att_" + e) not in at
             and ("hk_%s_0" % e) not in hk and ("hka_hk_%s_0_0" % e) not in ha for e in gone),
         what + ": their deliveries, attempts, hooks and hook attempts went with them")
    kept = {"evt_%s_%d" % (s, a) for s in STATUSES for a in AGES} - gone
    t.ok(kept <= ev and all(("dlv_%s_0" % e) in dl and ("att_" + e) in at and
                            ("hka_hk_%s_0_1" % e) in ha for e in kept),
         what + ": everything else is untouched", sorted(kept - ev))


def test_usage(t, env):
    rc, out, _ = env.maint("--help")
    t.ok(rc == 0 and "prune" in out and "--all" in out, "knock-maint --help: exit 0", out)
    rc, out, _ = env.maint("--version")
    t.ok(rc == 0 and out.startswith("knock-maint "), "knock-maint --version")
    t.eq(env.maint()[0], 2, "knock-maint without a command: exit 2")
    t.eq(env.maint("prune")[0], 2, "knock-maint prune without --endpoint/--all: exit 2")
    t.eq(env.maint("prune", "--all", "--endpoint", "demo")[0], 2, "--all with --endpoint: exit 2")
    t.eq(env.maint("frob", "--all")[0], 2, "unknown command: exit 2")
    if env.ep.engine == "postgresql":
        t.skip("backup --all skips an endpoint without a database", SQLITE_ONLY)
        return
    rc, _, err = env.maint("backup", "--all")
    t.ok(rc == 0 and "no database" in err, "an endpoint without a database is skipped, exit 0",
         err)
    t.ok(not os.path.exists(env.ep.db_path), "... and no database is created")


def test_prune(t, env):
    seed(env)
    before = env.counts()
    audit_before = before["audit"]

    # Dry run: reports exactly what [retention] would delete, changes nothing.
    rc, out, err = env.knockctl("--json", "prune", "--dry-run")
    doc = json.loads(out) if rc == 0 else {}
    want = expected_gone({"handled": 30, "ignored": 10})
    n = len(want)
    c = doc.get("counts", {})
    t.ok(rc == 0 and doc.get("dry_run") is True and c.get("events") == n
         and c.get("handled") == 1 and c.get("ignored") == 2 and c.get("dead") == 0
         and c.get("deliveries") == 2 * n and c.get("attempts") == n and c.get("hooks") == n
         and c.get("hook_attempts") == 2 * n and c.get("orphan_deliveries") == 1,
         "prune --dry-run reports what [retention] would delete", (rc, out, err))
    t.eq(env.counts(), before, "prune --dry-run changes nothing (no audit row either)")
    rc, out, _ = env.knockctl("prune", "--dry-run")
    t.ok(rc == 0 and out.startswith("would prune %d events" % n), "dry run, human output", out)

    # The timer's prune: [retention] applied.
    rc, out, err = env.maint("prune", "--endpoint", "demo")
    t.eq(rc, 0, "knock-maint prune: exit 0")
    check_cascade(t, env, want, "[retention] prune")
    t.ok("evt_pending_hook" in env.ids("events") and "hk_evt_pending_hook_0" in env.ids("hooks"),
         "an old handled event whose hook is still pending is kept")
    orph = env.ids("deliveries")
    t.ok("dlv_orphan_8" not in orph and "dlv_orphan_1" in orph,
         "orphan deliveries older than [retention] orphans = 7d are gone, younger kept")
    rows = env.audit("prune")
    last = rows[-1] if rows else {}
    t.ok(len(rows) == 1 and last["actor"] == "knock-maint" and last["at"] == NOW
         and last["counts"]["events"] == n and last["counts"]["orphan_deliveries"] == 1
         and last["counts"]["deliveries"] == 2 * n and last["counts"]["hook_attempts"] == 2 * n
         and last["filters"]["statuses"] == ["ignored", "handled"]
         and last["filters"]["orphans"] is True,
         "one audit row: actor, when, filters and per-table counts", rows)
    t.eq(env.scalar("SELECT value FROM meta WHERE key='last_prune_at'"), str(NOW),
         "meta last_prune_at")
    t.ok("KNOCK_PRUNED_EVENTS=%d" % n in err, "journal record carries the counts", err)

    # Nothing left to delete: the audit row is still written.
    rc, _, _ = env.maint("prune", "--all")
    rows = env.audit("prune")
    t.ok(rc == 0 and len(rows) == 2 and rows[-1]["counts"]["events"] == 0
         and rows[-1]["counts"]["orphan_deliveries"] == 0,
         "a prune that deletes nothing still writes its audit row", rows)

    # knockctl prune by status.
    rc, _, err = env.knockctl("prune", "--status", "dead")
    t.ok(rc == 2 and "never" in err, "--status dead with dead = never needs --older-than", err)
    rc, _, err = env.knockctl("prune", "--status", "received")
    t.ok(rc == 2 and "cannot be pruned" in err, "--status received is refused (exit 2)", err)
    rc, _, _ = env.knockctl("prune", "--older-than", "soon")
    t.eq(rc, 2, "--older-than junk: exit 2")
    rc, out, err = env.knockctl("prune", "--status", "dead", "--older-than", "20d")
    gone = want | expected_gone({"dead": 20})
    t.eq(rc, 0, "knockctl prune --status dead --older-than 20d", err)
    check_cascade(t, env, gone, "--status dead --older-than 20d")
    rows = env.audit("prune")
    t.ok(rows[-1]["actor"] == ACTOR and rows[-1]["filters"]["statuses"] == ["dead"]
         and rows[-1]["counts"]["dead"] == 1 and rows[-1]["filters"]["orphans"] is False,
         "knockctl prune audit row: actor user(uid), the filters", rows[-1])

    rc, out, _ = env.knockctl("prune", "--status", "handled,ignored", "--older-than", "12d")
    gone |= expected_gone({"handled": 12, "ignored": 12})
    t.eq(rc, 0, "knockctl prune --status handled,ignored --older-than 12d")
    check_cascade(t, env, gone, "--status handled,ignored --older-than 12d")
    rc, out, _ = env.knockctl("prune", "--status", "handled", "--older-than", "0")
    gone |= expected_gone({"handled": 0})
    check_cascade(t, env, gone, "--status handled --older-than 0")
    t.ok("evt_pending_hook" in env.ids("events"), "... the event with a pending hook is still kept")
    rc, out, _ = env.knockctl("prune", "--orphans", "--older-than", "0")
    t.ok(rc == 0 and env.scalar("SELECT count(*) FROM deliveries WHERE event_id IS NULL") == 0
         and len(env.ids("events")) == len(STATUSES) * len(AGES) - len(gone) + 1,
         "knockctl prune --orphans --older-than 0: orphans only", out)
    for s in ("received", "processing", "failed"):
        t.ok(all("evt_%s_%d" % (s, a) in env.ids("events") for a in AGES),
             "%s events are never pruned" % s)


def test_batches(t, env):
    c = env.db()
    c.execute("BEGIN")
    for i in range(1234):
        add_event(c, "evt_bulk_%05d" % i, "handled", 60, deliveries=1)
    c.execute("COMMIT")
    c.close()
    rc, _, err = env.maint("prune", "--endpoint", "demo")
    row = env.audit("prune")[-1]
    t.ok(rc == 0 and row["counts"]["handled"] == 1234 and row["counts"]["batches"] >= 3,
         "1234 events are deleted in batches of at most 500 (3 or more)", (row, err))
    t.ok(row["counts"]["longest_batch_us"] > 0, "the longest batch is measured and recorded")
    t.diag("longest batch (500 events + children): %.1f ms"
           % (row["counts"]["longest_batch_us"] / 1000))


def test_backup_retention(t, env):
    bdir = os.path.join(env.ep.state_dir, "backups", "demo")
    prom = os.path.join(env.root, "textfile")
    os.makedirs(prom)
    events = env.ids("events")
    made = []
    for i in range(5):
        now = NOW + i * 3600 * 1000
        rc, out, err = env.maint("backup", "--all", now=now, extra={"KNOCK_TEXTFILE_DIR": prom})
        made.append(out.split()[2] if rc == 0 and len(out.split()) > 2 else None)
        if i == 0:
            t.ok(rc == 0 and made[0] == os.path.join(bdir, "demo-20260528T202640Z.db"),
                 "backup into backups/NAME/NAME-YYYYmmddTHHMMSSZ.db", (out, err))
            ok = sqlite3.connect(made[0]).execute("PRAGMA integrity_check").fetchone()[0]
            t.eq(ok, "ok", "the backup passes integrity_check (checked here independently)")
            copy = {r[0] for r in sqlite3.connect(made[0]).execute("SELECT id FROM events")}
            t.eq(copy, events, "the backup holds every event")
            mode = sqlite3.connect(made[0]).execute("PRAGMA journal_mode").fetchone()[0]
            t.eq(mode, "delete", "the backup is one self-contained file (no WAL)")
            t.ok("MESSAGE_ID" in err or "backup written" in err, "backup journal record", err)
    files = sorted(f for f in os.listdir(bdir))
    t.eq(len(files), 5, "five backups at five times: five files, no temporary left over")
    t.eq(env.scalar("SELECT value FROM meta WHERE key='last_backup_at'"), str(NOW + 4 * 3600000),
         "meta last_backup_at is the newest backup's time")
    rows = env.audit("backup")
    t.ok(len(rows) == 5 and rows[-1]["actor"] == "knock-maint"
         and rows[-1]["filters"]["to"] == made[-1] and rows[-1]["counts"]["bytes"] > 0,
         "one audit row per backup", rows[-1:])
    text = open(os.path.join(prom, "knock_maint.prom")).read()
    t.ok('knock_backup_last_success_timestamp_seconds{endpoint="demo"} %d.000'
         % ((NOW + 4 * 3600000) // 1000) in text and "knock_prune_rows_deleted_total" in text
         and 'knock_database_bytes{endpoint="demo"}' in text,
         "node_exporter textfile written", text)

    # An old audit row for the audit bound; retention with backups = 3.
    c = env.db()
    c.execute("INSERT INTO audit(id, at, actor, action) VALUES('aud_old', ?, 'x', 'requeue')",
              (NOW - 40 * DAY,))
    c.close()
    rc, out, err = env.maint("retention", "--endpoint", "demo", now=NOW + 5 * 3600000)
    left = sorted(os.listdir(bdir))
    t.ok(rc == 0 and left == sorted(os.path.basename(p) for p in made[2:]),
         "retention keeps exactly `backups` = 3 files, the newest", (left, err))
    t.eq(env.scalar("SELECT count(*) FROM audit WHERE id = 'aud_old'"), 0,
         "retention removes audit rows older than [retention] audit")
    row = env.audit("retention")[-1]
    t.ok(row["counts"] == {"backups_deleted": 2, "audit_deleted": 1},
         "retention writes its own audit row with the counts", row)
    t.ok("database" in out and "wal" in out and "bytes" in out,
         "retention reports database and WAL size", out)
    t.eq(os.path.getsize(env.ep.db_path + "-wal") if os.path.exists(env.ep.db_path + "-wal")
         else 0, 0, "retention checkpoints the WAL (TRUNCATE)")
    rc, out, err = env.maint("checkpoint", "--endpoint", "demo")
    t.ok(rc == 0 and "wal 0 bytes" in out, "knock-maint checkpoint", (out, err))

    # knockctl backup --to, verify.
    dest = os.path.join(env.root, "manual.db")
    rc, out, err = env.knockctl("backup", "--to", dest, now=NOW + 6 * 3600000)
    t.ok(rc == 0 and os.path.exists(dest) and env.audit("backup")[-1]["actor"] == ACTOR,
         "knockctl backup --to PATH, audited as the user", (out, err))
    rc, _, err = env.knockctl("backup", "--to", dest)
    t.ok(rc == 1 and "exists" in err, "knockctl backup --to never replaces a file", err)
    rc, out, err = env.knockctl("--json", "verify")
    doc = json.loads(out) if rc == 0 else {}
    t.ok(rc == 0 and doc["database"]["integrity"] == "ok"
         and doc["newest_backup"]["integrity"] == "ok"
         and doc["newest_backup"]["path"] == made[-1]
         and doc["last_backup_at"] == "2026-05-29T02:26:40.000Z",
         "verify: database and newest backup ok, last backup time", (out, err))
    # Damage the newest backup: verify fails.
    with open(made[-1], "r+b") as f:
        f.seek(16384 * 3)
        f.write(os.urandom(16384 * 4))
    rc, out, err = env.knockctl("verify")
    t.ok(rc == 1 and "ok" in out.splitlines()[0] and "newest backup" in out,
         "verify: a damaged backup fails integrity_check, exit 1", (out, err))


def test_same_second(t, env):
    """The timer's backup and an operator's in the same second both survive;
    so do two restores' kept databases."""
    bdir = os.path.join(env.ep.state_dir, "backups", "demo")
    now = NOW + 10 * 86400 * 1000  # after the retention test's files
    # A worker that was running when the backup was taken (pid 4242 is no
    # knock process here, so restore does not refuse).
    c = env.db()
    c.execute("INSERT OR REPLACE INTO daemons(daemon, pid, started_at, heartbeat_at, status)"
              " VALUES ('worker', 4242, ?, ?, 'running')", (now, now))
    c.close()
    rc1, out1, err1 = env.knockctl("backup", now=now)
    rc2, out2, err2 = env.maint("backup", "--all", now=now)
    a = out1.split("backup written to ")[-1].split(" ")[0]
    b = out2.split()[2] if rc2 == 0 else None
    t.ok(rc1 == 0 and rc2 == 0 and a != b and os.path.dirname(a) == bdir
         and os.path.basename(a) == "demo-20260607T202640Z.db"
         and os.path.basename(b) == "demo-20260607T202641Z.db",
         "two backups in one second: both kept, the second under the next second's name",
         (out1, err1, out2, err2))
    for path in (a, b):
        c = sqlite3.connect(path)
        t.eq(c.execute("PRAGMA integrity_check").fetchone()[0], "ok",
             "%s passes integrity_check" % os.path.basename(path or "?"))
        c.close()
    left = [f for f in os.listdir(bdir) if f.startswith(".")]
    t.eq(left, [], "no temporary file or directory left in the backup directory")
    kept = []
    for i in range(2):
        rc, out, err = env.knockctl("restore", a, now=now)
        kept += [line.split()[-1] for line in out.splitlines() if "previous database" in line]
    t.ok(len(kept) == 2 and kept[0] != kept[1] and all(os.path.exists(k) for k in kept),
         "two restores in one second keep both previous databases", kept)
    st = env.db().execute("SELECT daemon, pid, stopped_at FROM daemons").fetchall()
    t.ok(len(st) == 1 and all(r["pid"] is None and r["stopped_at"] is not None for r in st),
         "a restored copy's daemons rows are marked stopped", [dict(r) for r in st])


def main():
    t = kt.Tap()
    root = tempfile.mkdtemp(prefix="knock-maint-")
    env = Env(root)
    try:
        test_usage(t, env)
        rc, _, err = env.knockctl("migrate")
        if rc != 0:
            t.ok(False, "knockctl migrate creates the database", err)
            t.done()
        test_prune(t, env)
        test_batches(t, env)
        if env.ep.engine == "postgresql":
            t.skip("backups, retention of backup files, verify, restore", SQLITE_ONLY)
        else:
            test_backup_retention(t, env)
            test_same_second(t, env)
    finally:
        env.ep.cleanup()
    t.done()


if __name__ == "__main__":
    main()
