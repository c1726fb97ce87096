#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""knockctl against a real endpoint database.

The database is created by `knockctl migrate` (the store's own migrations),
rows are inserted with Python's sqlite3 (psycopg2 with KNOCK_TEST_STORE=postgresql:
knocktest.Store) exactly as the daemons would store them, and every verb is run as a subprocess: human and --json output, exit
codes 0/1/2, every accepted and every refused source state of each operator
transition, audit rows, and the wake-up datagram to the worker/deliverer.
"""

import datetime
import json
import os
import pwd
import re
import socket
import subprocess
import sys
import tempfile

import knocktest

KNOCKCTL = os.path.join(os.environ.get("KNOCK_BUILD_DIR", "build"), "daemons/knockctl/knockctl")
NOW = 1_780_000_000_000  # KNOCK_FAKE_NOW_MS: 2026-05-28T20:26:40Z
HOUR = 3600 * 1000
STATUSES = ["received", "processing", "failed", "dead", "ignored", "handled"]

EVENT_FIELDS = {"id", "endpoint", "status", "provider_event_id", "event_type", "attempt_count",
                "max_attempts", "received_at", "updated_at", "next_attempt_at", "last_error"}
DELIVERY_FIELDS = {"id", "event_id", "received_at", "signature_valid", "verify_error",
                   "provider_event_id", "event_type", "request_id", "body_bytes", "duplicate"}
HOOK_FIELDS = {"id", "event_id", "state", "attempt_count", "last_status", "last_error",
               "next_attempt_at", "delivered_at"}
AUDIT_FIELDS = {"id", "at", "actor", "action", "filters", "counts"}
DAEMON_FIELDS = {"daemon", "pid", "heartbeat_age_s", "started_at", "last_clean_exit",
                 "suspected_oom_kills"}
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")

n_tests = 0
n_failed = 0


def check(cond, what, detail=None):
    global n_tests, n_failed
    n_tests += 1
    if cond:
        print(f"ok {n_tests} - {what}")
    else:
        n_failed += 1
        print(f"not ok {n_tests} - {what}")
        if detail is not None:
            for line in str(detail).splitlines()[:20]:
                print(f"#   {line}")
    sys.stdout.flush()
    return cond


def skip(what, why):
    global n_tests
    n_tests += 1
    print(f"ok {n_tests} - {what} # SKIP {why}", flush=True)


def rfc3339(ms):
    t = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


class Env:
    def __init__(self, root, endpoints):
        self.root = root
        self.config = os.path.join(root, "etc")
        self.state = os.path.join(root, "state")
        self.runtime = os.path.join(root, "run")
        for d in (os.path.join(self.config, "endpoints"), self.state, self.runtime):
            os.makedirs(d, exist_ok=True)
        self.store = knocktest.Store(self.state)
        for name, text in endpoints.items():
            with open(os.path.join(self.config, "endpoints", name + ".conf"), "w") as f:
                f.write(self.store.config_text(text))

    def run(self, *args, stdin=None, now=NOW):
        env = dict(os.environ)
        env.update(KNOCK_CONFIG_DIR=self.config, KNOCK_STATE_DIR=self.state,
                   KNOCK_RUNTIME_DIR=self.runtime, KNOCK_FAKE_NOW_MS=str(now))
        p = subprocess.run([KNOCKCTL, *args], input=stdin, capture_output=True, env=env,
                           timeout=60)
        return p.returncode, p.stdout, p.stderr.decode(errors="replace")

    def json(self, *args):
        rc, out, err = self.run("--json", *args)
        try:
            doc = json.loads(out)
        except ValueError as e:
            doc = e
        return rc, doc, err

    def db(self, name="demo"):
        return self.store.connect(name, isolation_level=None)


GOOD = "[endpoint]\nprovider = github\nsecret = literal:abc\nlisten = 127.0.0.1:1\n"


def insert_event(db, eid, status, **kw):
    row = dict(id=eid, provider_event_id="p-" + eid, event_type="push", status=status,
               delivery_id="dlv_" + eid, attempt_count=3, received_at=NOW - HOUR,
               updated_at=NOW - HOUR, next_attempt_at=None, claimed_by=None, claim_until=None,
               last_error=None, run_delivery_id=None, status_reason=None)
    if status == "failed":
        row.update(next_attempt_at=NOW + HOUR, last_error="exit status 1")
    if status == "processing":
        row.update(claimed_by="worker:4242", claim_until=NOW + 60_000)
    row.update(kw)
    cols = ",".join(row)
    db.execute(f"INSERT INTO events({cols}) VALUES({','.join('?' * len(row))})",
               list(row.values()))
    return row


def insert_delivery(db, did, event_id, **kw):
    row = dict(id=did, event_id=event_id, received_at=NOW - HOUR, signature_valid=1,
               verify_error=None, http_status=200, provider_event_id="p-" + str(event_id),
               event_type="push", request_id="req-" + did, method="POST", uri="/",
               remote="127.0.0.1", content_type="application/json",
               headers=json.dumps([["Content-Type", "application/json"],
                                   ["X-Hub-Signature-256", "[redacted]"]]),
               body=b'{"a":1}', body_bytes=7, duplicate=0, handshake=0)
    row.update(kw)
    cols = ",".join(row)
    db.execute(f"INSERT INTO deliveries({cols}) VALUES({','.join('?' * len(row))})",
               list(row.values()))
    return row


def insert_hook(db, hid, event_id, state, **kw):
    row = dict(id=hid, event_id=event_id, type="knock.event.handled",
               payload=json.dumps({"type": "knock.event.handled", "event_id": event_id}),
               state=state, attempt_count=8, max_attempts=8, created_at=NOW - 2 * HOUR,
               updated_at=NOW - HOUR, next_attempt_at=None, claimed_by=None, claim_until=None,
               last_status=503, last_error="HTTP 503", last_attempt_at=NOW - HOUR,
               delivered_at=None)
    row.update(kw)
    cols = ",".join(row)
    db.execute(f"INSERT INTO hooks({cols}) VALUES({','.join('?' * len(row))})",
               list(row.values()))
    return row


def event_row(env, eid):
    with env.db() as db:
        return db.execute("SELECT * FROM events WHERE id = ?", (eid,)).fetchone()


def audit_rows(env, action=None):
    db = env.db()
    q = "SELECT * FROM audit" + (" WHERE action = ?" if action else "") + " ORDER BY at, rowid"
    rows = db.execute(q, (action,) if action else ()).fetchall()
    db.close()
    return rows


def listen_wake(env, role):
    path = os.path.join(env.runtime, f"demo.{role}.sock")
    if os.path.exists(path):
        os.unlink(path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(2)
    return s


def got_datagram(s):
    try:
        s.recv(16)
        return True
    except OSError:
        return False
    finally:
        s.close()


ACTOR = f"{pwd.getpwuid(os.getuid()).pw_name}({os.getuid()})"


def test_basics(env):
    rc, out, err = env.run("--help")
    text = out.decode()
    check(rc == 0 and all(v in text for v in (
        "events", "event ID", "deliveries", "delivery ID", "status", "endpoints", "check-config",
        "requeue", "replay", "replay-delivery", "ignore", "audit", "hooks", "hook ID",
        "redeliver-hook", "migrate")), "--help lists every verb, exit 0", out)
    rc, out, _ = env.run("--version")
    check(rc == 0 and out.decode().startswith("knockctl "), "--version")
    check(env.run()[0] == 2, "no command: exit 2")
    rc, _, err = env.run("frobnicate")
    check(rc == 2 and "unknown command" in err, "unknown command: exit 2", err)
    check(env.run("events", "--bogus")[0] == 2, "unknown verb option: exit 2")
    check(env.run("--bogus", "events")[0] == 2, "unknown global option: exit 2")
    rc, _, err = env.run("-e", "Bad/Name", "events")
    check(rc == 2 and "invalid endpoint name" in err, "invalid -e name: exit 2", err)
    rc, out, _ = env.run("events", "--help")
    check(rc == 0 and b"--status" in out, "verb --help: exit 0 with its synopsis", out)


def test_check_config(tmp):
    env = Env(os.path.join(tmp, "cfg"), {
        "good": GOOD,
        "bad": "[endpoint]\nprovider = github\nsecret = literal:abc\nlisten = 127.0.0.1:1\n"
               "max_body = lots\nfrobnicate = yes\n",
    })
    rc, out, err = env.run("-e", "good", "check-config")
    check(rc == 0 and out.decode().strip() == "good: ok", "check-config ok: 'NAME: ok', exit 0",
          (rc, out, err))
    rc, out, err = env.run("-e", "bad", "check-config")
    lines = [l for l in err.splitlines() if l.strip()]
    check(rc == 1, "check-config with errors: exit 1", (rc, err))
    check(len(lines) >= 2 and all(re.match(r"^\S*bad\.conf:\d+: \S", l) for l in lines),
          "every problem as FILE:LINE: message (both bad lines reported)", err)
    check(any(":5:" in l for l in lines) and any(":6:" in l for l in lines),
          "the lines are the offending ones (5 and 6)", err)
    rc, doc, _ = env.json("-e", "bad", "check-config")
    check(rc == 1 and isinstance(doc, dict) and doc.get("ok") is False
          and len(doc.get("errors", [])) >= 2 and doc.get("endpoint") == "bad",
          "check-config --json -e: one object {endpoint, ok, errors}", doc)
    rc, doc, _ = env.json("check-config")
    check(rc == 1 and isinstance(doc, list) and {d["endpoint"] for d in doc} == {"good", "bad"}
          and [d["ok"] for d in sorted(doc, key=lambda d: d["endpoint"])] == [False, True],
          "check-config without -e checks every endpoint (array), exit 1 if any is bad", doc)
    rc, _, err = env.run("-e", "missing", "check-config")
    check(rc == 1 and "missing" in err, "check-config of an unconfigured endpoint: exit 1", err)
    rc, _, err = env.run("events")
    check(rc == 2 and "-e NAME" in err, "two endpoints and no -e: exit 2", err)


def test_database_lifecycle(env):
    rc, _, err = env.run("events")
    check(rc == 1 and "no database" in err and "has knock-ingress run?" in err,
          "read verb without a database: exit 1, says so", err)
    check(not env.store.exists("demo"), "read verbs never create the database")
    rc, out, err = env.run("requeue", "evt_x")
    check(rc == 1 and not env.store.exists("demo"), "mutating verb does not create it either",
          err)
    rc, out, err = env.run("migrate")
    check(rc == 0 and env.store.exists("demo") and b"0 \xe2\x86\x92 3" in out,
          "migrate creates the database (schema 0 → 3)", (out, err))
    rc, doc, _ = env.json("migrate")
    check(rc == 0 and doc["schema"] == {"from": 3, "to": 3, "created": False},
          "migrate again: current, --json", doc)
    rows = audit_rows(env, "migrate")
    check(len(rows) == 2 and rows[0]["actor"] == ACTOR
          and json.loads(rows[0]["counts"]) == {"from": 0, "to": 3, "created": True},
          "migrate writes an audit row each time (actor user(uid))",
          [dict(r) for r in rows])


def seed(env):
    db = env.db()
    insert_event(db, "evt_a", "received", received_at=NOW - 3 * HOUR, event_type="push")
    insert_event(db, "evt_b", "failed", received_at=NOW - 90 * 60_000, event_type="issues")
    insert_event(db, "evt_c", "dead", received_at=NOW - 30 * 60_000, event_type="push",
                 last_error="exit status 65")
    insert_event(db, "evt_d", "handled", received_at=NOW - 10 * 60_000, event_type="push",
                 finished_at=NOW - 9 * 60_000)
    insert_delivery(db, "dlv_evt_a", "evt_a", received_at=NOW - 3 * HOUR)
    insert_delivery(db, "dlv_evt_b", "evt_b")
    insert_delivery(db, "dlv_evt_c", "evt_c", body=b"first")
    # the provider retried evt_c with a different body
    insert_delivery(db, "dlv_evt_c2", "evt_c", duplicate=1, body=b"second\x00\xff", body_bytes=8,
                    received_at=NOW - 20 * 60_000)
    insert_delivery(db, "dlv_evt_d", "evt_d")
    # an orphan: bad signature, no event
    insert_delivery(db, "dlv_orphan", None, signature_valid=0, verify_error="signature mismatch",
                    http_status=401, provider_event_id=None, body=b"x", body_bytes=1,
                    received_at=NOW - 5 * 60_000)
    # a 413: reason, no body, no event
    insert_delivery(db, "dlv_big", None, signature_valid=0, verify_error="body too large",
                    http_status=413, body=None, body_bytes=0, received_at=NOW - 4 * 60_000)
    db.execute("INSERT INTO attempts(id,event_id,delivery_id,attempt,worker,handler,started_at,"
               "ended_at,outcome,exit_code,signal,http_status,error,output) VALUES"
               "('att_1','evt_c','dlv_evt_c',1,'worker:1','exec:/bin/h',?,?,'tempfail',75,NULL,"
               "NULL,'exit status 75','try later\n'),"
               "('att_2','evt_c','dlv_evt_c',2,'worker:1','exec:/bin/h',?,?,'permanent',65,NULL,"
               "NULL,'exit status 65',?)",
               (NOW - 29 * 60_000, NOW - 29 * 60_000 + 120, NOW - 28 * 60_000,
                NOW - 28 * 60_000 + 80, b"bad \xff bytes".decode("latin-1")))
    if env.store.engine == "sqlite":  # PostgreSQL's text holds only valid UTF-8
        db.execute("UPDATE attempts SET output = CAST(? AS BLOB) WHERE id = 'att_2'",
                   (b"bad \xff bytes",))
    db.execute("INSERT INTO daemons(daemon,pid,started_at,heartbeat_at,stopped_at,last_clean_exit,"
               "suspected_oom_kills,status) VALUES"
               "('ingress',100,?,?,NULL,1,0,'serving'),"
               "('worker',101,?,?,NULL,0,2,'idle')",
               (NOW - HOUR, NOW - 1500, NOW - HOUR, NOW - 12_000))
    db.close()


def test_events(env):
    rc, out, err = env.run("events")
    text = out.decode()
    check(rc == 0 and text.splitlines()[0].split()[:2] == ["ID", "STATUS"]
          and all(e in text for e in ("evt_a", "evt_b", "evt_c", "evt_d")),
          "events: human table with every event", (out, err))
    rc, doc, _ = env.json("events")
    check(rc == 0 and isinstance(doc, list) and [e["id"] for e in doc] ==
          ["evt_d", "evt_c", "evt_b", "evt_a"], "events --json: an array, newest first", doc)
    e = next(x for x in doc if x["id"] == "evt_b")
    check(EVENT_FIELDS <= set(e), "event objects carry every contract field",
          EVENT_FIELDS - set(e))
    check(e["endpoint"] == "demo" and e["status"] == "failed" and e["attempt_count"] == 3
          and e["max_attempts"] == 8 and e["provider_event_id"] == "p-evt_b",
          "event values (max_attempts from the configuration)", e)
    check(e["received_at"] == rfc3339(NOW - 90 * 60_000) and RFC3339.match(e["updated_at"])
          and e["next_attempt_at"] == rfc3339(NOW + HOUR),
          "timestamps are RFC 3339 UTC strings", e)
    a = next(x for x in doc if x["id"] == "evt_a")
    check(a["next_attempt_at"] is None and a["last_error"] is None, "absent values are null", a)
    rc, doc, _ = env.json("events", "--status", "dead")
    check(rc == 0 and [x["id"] for x in doc] == ["evt_c"], "--status dead", doc)
    rc, doc, _ = env.json("events", "--status", "failed,dead")
    check(rc == 0 and {x["id"] for x in doc} == {"evt_b", "evt_c"}, "--status failed,dead", doc)
    rc, _, err = env.run("events", "--status", "bogus")
    check(rc == 2 and "bogus" in err, "--status with an unknown status: exit 2", err)
    rc, doc, _ = env.json("events", "--type", "issues")
    check(rc == 0 and [x["id"] for x in doc] == ["evt_b"], "--type", doc)
    rc, doc, _ = env.json("events", "--since", "2h")
    check(rc == 0 and {x["id"] for x in doc} == {"evt_b", "evt_c", "evt_d"},
          "--since 2h (relative to now)", doc)
    rc, doc, _ = env.json("events", "--since", rfc3339(NOW - 45 * 60_000))
    check(rc == 0 and {x["id"] for x in doc} == {"evt_c", "evt_d"}, "--since RFC 3339", doc)
    check(env.run("events", "--since", "yesterday-ish")[0] == 2, "--since junk: exit 2")
    rc, doc, _ = env.json("events", "--limit", "1")
    check(rc == 0 and [x["id"] for x in doc] == ["evt_d"], "--limit 1", doc)
    rc, out, err = env.run("events", "--limit", "1")
    check(rc == 0 and "--limit 0" in err, "a human list cut by --limit says so on stderr", err)
    check(env.run("events", "--limit", "-3")[0] == 2, "--limit junk: exit 2")
    check(env.run("events", "extra")[0] == 2, "events with an operand: exit 2")


def test_event(env):
    rc, doc, err = env.json("event", "evt_c")
    check(rc == 0 and isinstance(doc, dict) and doc["id"] == "evt_c" and EVENT_FIELDS <= set(doc),
          "event ID --json: one object with the event fields", (doc, err))
    d = doc.get("deliveries", [])
    check([x["id"] for x in d] == ["dlv_evt_c", "dlv_evt_c2"]
          and all(DELIVERY_FIELDS <= set(x) for x in d), "… with its deliveries, oldest first", d)
    check(len(d) == 2 and d[0]["body_sha256"] != d[1]["body_sha256"] and d[1]["duplicate"] is True,
          "the retry is marked duplicate and its body digest differs", d)
    a = doc.get("attempts", [])
    check([x["attempt"] for x in a] == [1, 2] and a[0]["exit_code"] == 75
          and a[1]["outcome"] == "permanent" and a[0]["output"] == "try later\n"
          and a[0]["duration_ms"] == 120, "… with its attempts (exit code, outcome, output)", a)
    if env.store.engine == "sqlite":
        check(len(a) == 2 and a[1]["output"] == "bad \ufffd bytes",
              "non-UTF-8 handler output becomes U+FFFD, JSON stays valid", a)
    else:
        skip("non-UTF-8 handler output becomes U+FFFD, JSON stays valid",
             "SQLite-only: a TEXT column holding bytes that are not UTF-8")
    rc, doc2, _ = env.json("event", "p-evt_c")
    check(rc == 0 and doc2.get("id") == "evt_c", "event accepts the provider event id", doc2)
    rc, out, err = env.run("event", "evt_c")
    text = out.decode(errors="replace")
    check(rc == 0 and "status: dead" in text and "Deliveries (2)" in text
          and "Attempts (2)" in text and "try later" in text,
          "event ID human: fields, deliveries, attempts and their output", text)
    rc, _, err = env.run("event", "evt_nope")
    check(rc == 1 and "evt_nope" in err, "unknown event: exit 1", err)
    check(env.run("event")[0] == 2, "event without an id: exit 2")


def test_deliveries(env):
    rc, doc, _ = env.json("deliveries")
    check(rc == 0 and len(doc) == 7 and all(DELIVERY_FIELDS <= set(x) for x in doc),
          "deliveries --json: every receipt with the contract fields", doc)
    rc, doc, _ = env.json("deliveries", "--invalid")
    check(rc == 0 and {x["id"] for x in doc} == {"dlv_orphan", "dlv_big"}
          and all(x["signature_valid"] is False for x in doc), "--invalid", doc)
    rc, doc, _ = env.json("deliveries", "--orphan")
    check(rc == 0 and {x["id"] for x in doc} == {"dlv_orphan", "dlv_big"}
          and all(x["event_id"] is None for x in doc), "--orphan", doc)
    o = next(x for x in doc if x["id"] == "dlv_orphan")
    check(o["verify_error"] == "signature mismatch", "an orphan keeps its reason", o)
    rc, doc, _ = env.json("deliveries", "--provider-id", "p-evt_c")
    check(rc == 0 and {x["id"] for x in doc} == {"dlv_evt_c", "dlv_evt_c2"}, "--provider-id", doc)
    rc, doc, _ = env.json("deliveries", "--limit", "2")
    check(rc == 0 and [x["id"] for x in doc] == ["dlv_big", "dlv_orphan"], "--limit 2", doc)
    rc, out, _ = env.run("deliveries", "--invalid")
    check(rc == 0 and b"signature mismatch" in out and b"dlv_evt_a" not in out,
          "deliveries human table", out)

    rc, doc, _ = env.json("delivery", "dlv_evt_a")
    check(rc == 0 and isinstance(doc, dict) and DELIVERY_FIELDS <= set(doc)
          and doc["headers"] == [["Content-Type", "application/json"],
                                 ["X-Hub-Signature-256", "[redacted]"]],
          "delivery ID --json: one object with its (redacted) headers", doc)
    rc, out, _ = env.run("delivery", "dlv_evt_a")
    check(rc == 0 and b"X-Hub-Signature-256: [redacted]" in out and b"request_id: req-dlv_evt_a"
          in out and b'{"a":1}' not in out, "delivery ID human: fields and headers, no body", out)
    rc, out, err = env.run("delivery", "dlv_evt_c2", "--body")
    check(rc == 0 and out == b"second\x00\xff", "--body writes the raw bytes and nothing else",
          (out, err))
    rc, out, err = env.run("delivery", "--body", "dlv_big")
    check(rc == 1 and out == b"" and "body too large" in err,
          "--body of a receipt stored without a body: exit 1, reason", err)
    rc, _, err = env.run("delivery", "dlv_nope")
    check(rc == 1 and "dlv_nope" in err, "unknown delivery: exit 1", err)


def test_status(env):
    rc, doc, err = env.json("status")
    check(rc == 0 and isinstance(doc, dict) and doc.get("endpoint") == "demo"
          and isinstance(doc.get("daemons"), list), "status --json: {endpoint, daemons, queue}",
          (doc, err))
    ds = {d["daemon"]: d for d in doc["daemons"]}
    check(set(ds) == {"ingress", "worker"} and all(DAEMON_FIELDS <= set(d) for d in ds.values()),
          "one object per daemon with the contract fields", doc["daemons"])
    w = ds.get("worker", {})
    check(w.get("pid") == 101 and abs(w.get("heartbeat_age_s", 0) - 12.0) < 0.01
          and w.get("last_clean_exit") is False and w.get("suspected_oom_kills") == 2
          and w.get("started_at") == rfc3339(NOW - HOUR),
          "worker: pid, heartbeat age, unclean last exit, suspected OOM kills", w)
    check(ds.get("ingress", {}).get("last_clean_exit") is True
          and abs(ds["ingress"]["heartbeat_age_s"] - 1.5) < 0.01, "ingress row", ds.get("ingress"))
    check(doc.get("queue") == {"received": 1, "processing": 0, "failed": 1, "dead": 1,
                               "ignored": 0, "handled": 1}, "queue counts by status",
          doc.get("queue"))
    check(doc.get("oldest_queued_at") == rfc3339(NOW - 3 * HOUR)
          and abs(doc.get("oldest_queued_age_s", 0) - 3 * 3600) < 0.01,
          "oldest queued event and its age", doc)
    rc, out, _ = env.run("status")
    text = out.decode()
    check(rc == 0 and "DAEMON" in text and "worker" in text and "received 1" in text
          and "SUSPECTED_OOM_KILLS" in text, "status human", text)

    rc, doc, _ = env.json("endpoints")
    check(rc == 0 and isinstance(doc, list) and len(doc) == 1 and doc[0]["name"] == "demo"
          and doc[0]["queue"]["failed"] == 1, "endpoints --json: name and queue depth", doc)
    if not os.path.exists("/run/systemd/system"):
        check(doc[0]["unit_state"] is None, "endpoints: unit state null without systemd", doc)
    else:
        check(doc[0]["unit_state"] is None or isinstance(doc[0]["unit_state"], str),
              "endpoints: unit state from systemctl", doc)
    rc, out, _ = env.run("endpoints")
    check(rc == 0 and out.decode().splitlines()[1].startswith("demo"), "endpoints human", out)


def fresh_event(env, eid, status, **kw):
    db = env.db()
    insert_event(db, eid, status, run_delivery_id="dlv_other", **kw)
    insert_delivery(db, "dlv_" + eid, eid)
    insert_delivery(db, "dlv2_" + eid, eid, duplicate=1, body=b"retry")
    db.close()


def test_transitions(env):
    allowed = {
        "requeue": {"failed", "dead", "ignored"},
        "replay": {"handled"},
        "ignore": {"received", "failed", "dead"},
    }
    for verb, ok_states in allowed.items():
        for status in STATUSES:
            eid = f"evt_{verb}_{status}"
            fresh_event(env, eid, status)
            before = len(audit_rows(env))
            wake = listen_wake(env, "worker") if verb != "ignore" else None
            rc, out, err = env.run(verb, eid)
            row = event_row(env, eid)
            n_audit = len(audit_rows(env)) - before
            if status in ok_states:
                target = "ignored" if verb == "ignore" else "received"
                good = rc == 0 and row["status"] == target and n_audit == 1
                if verb != "ignore":
                    good = good and row["attempt_count"] == 0 and row["next_attempt_at"] == NOW \
                        and row["run_delivery_id"] is None and row["claimed_by"] is None
                check(good, f"{verb}: {status} → {target}, attempts reset, one audit row",
                      (rc, dict(row), err, n_audit))
                if wake:
                    check(got_datagram(wake), f"{verb} from {status} wakes the worker")
            elif verb == "ignore" and status == "ignored":
                check(rc == 0 and row["status"] == "ignored" and n_audit == 1
                      and "unchanged" in out.decode(),
                      "ignore: ignored is a no-op (exit 0, audited as unchanged)", (rc, out, err))
            else:
                check(rc == 1 and row["status"] == status and row["attempt_count"] == 3
                      and n_audit == 0 and status in err and eid in err,
                      f"{verb} refuses {status}: exit 1, clear message, nothing changed",
                      (rc, err, dict(row)))
            if wake and status not in ok_states:
                wake.close()

    # the audit row: actor, action, ids, counts
    rows = audit_rows(env, "requeue")
    last = rows[-1] if rows else None
    check(last is not None and last["actor"] == ACTOR and json.loads(last["ids"]) ==
          ["evt_requeue_ignored"] and json.loads(last["counts"]) == {"changed": 1, "unchanged": 0}
          and last["at"] == NOW, "requeue audit row: actor, ids, counts, time",
          dict(last) if last else None)

    # hints point at the right verb
    rc, _, err = env.run("requeue", "evt_replay_handled")
    check(rc == 1 and "replay" in err, "requeue of a handled event points at replay", err)

    # all or nothing
    fresh_event(env, "evt_mix1", "dead")
    fresh_event(env, "evt_mix2", "processing")
    rc, _, err = env.run("requeue", "evt_mix1", "evt_mix2", "evt_nope")
    check(rc == 1 and event_row(env, "evt_mix1")["status"] == "dead"
          and "evt_nope" in err and "evt_mix2" in err,
          "one refused id: nothing changes, every problem is reported", err)
    # several ids, duplicates, stdin, --json
    fresh_event(env, "evt_many1", "failed")
    fresh_event(env, "evt_many2", "dead")
    rc, doc, err = env.json("requeue", "evt_many1", "evt_many1", "evt_many2")
    check(rc == 0 and doc.get("changed") == ["evt_many1", "evt_many2"]
          and doc.get("counts") == {"changed": 2, "unchanged": 0} and doc.get("action") == "requeue",
          "requeue ID ID --json: one object, duplicates dropped", (doc, err))
    fresh_event(env, "evt_stdin1", "dead")
    fresh_event(env, "evt_stdin2", "failed")
    rc, out, err = env.run("ignore", "-", stdin=b"evt_stdin1\nevt_stdin2\n")
    check(rc == 0 and event_row(env, "evt_stdin1")["status"] == "ignored"
          and event_row(env, "evt_stdin2")["status"] == "ignored"
          and event_row(env, "evt_stdin2")["status_reason"] == "operator",
          "ids from stdin ('-')", (rc, out, err))
    check(env.run("requeue")[0] == 2, "requeue without ids: exit 2")


def test_replay_delivery(env):
    for status in STATUSES:
        eid = f"evt_rd_{status}"
        fresh_event(env, eid, status)
        before = len(audit_rows(env))
        wake = listen_wake(env, "worker")
        rc, out, err = env.run("replay-delivery", "dlv2_" + eid)
        row = event_row(env, eid)
        n_audit = len(audit_rows(env)) - before
        if status != "processing":
            check(rc == 0 and row["status"] == "received" and row["run_delivery_id"] == "dlv2_" + eid
                  and row["attempt_count"] == 0 and n_audit == 1,
                  f"replay-delivery: {status} → received running that delivery's body",
                  (rc, dict(row), err))
            check(got_datagram(wake), f"replay-delivery from {status} wakes the worker")
        else:
            wake.close()
            check(rc == 1 and row["status"] == "processing" and n_audit == 0
                  and "processing" in err,
                  "replay-delivery refuses an event that is processing", (rc, err))
    rows = audit_rows(env, "replay-delivery")
    check(rows and json.loads(rows[-1]["filters"])["delivery_id"] == "dlv2_evt_rd_handled"
          and json.loads(rows[-1]["ids"]) == ["evt_rd_handled"],
          "replay-delivery audit row names the delivery and the event",
          dict(rows[-1]) if rows else None)
    rc, _, err = env.run("replay-delivery", "dlv_orphan")
    check(rc == 1 and "orphan" in err and "signature mismatch" in err,
          "replay-delivery refuses an orphan delivery, with its reason", err)
    check(env.run("replay-delivery", "dlv_nope")[0] == 1, "replay-delivery of an unknown id: 1")
    check(env.run("replay-delivery")[0] == 2, "replay-delivery without an id: exit 2")
    # requeue after replay-delivery goes back to the canonical body
    fresh_event(env, "evt_rd2", "dead")
    env.run("replay-delivery", "dlv2_evt_rd2")
    db = env.db()
    db.execute("UPDATE events SET status = 'dead' WHERE id = 'evt_rd2'")
    db.close()
    rc, _, _ = env.run("requeue", "evt_rd2")
    check(rc == 0 and event_row(env, "evt_rd2")["run_delivery_id"] is None,
          "requeue returns to the canonical body")


def test_hooks(env):
    db = env.db()
    insert_hook(db, "hk_failed_old", "evt_d", "failed", last_attempt_at=NOW - 5 * HOUR)
    insert_hook(db, "hk_failed_new", "evt_d", "failed", last_attempt_at=NOW - HOUR)
    insert_hook(db, "hk_delivered", "evt_d", "delivered", last_status=200, last_error=None,
                delivered_at=NOW - HOUR, attempt_count=1)
    insert_hook(db, "hk_pending", "evt_d", "pending", next_attempt_at=NOW + HOUR,
                attempt_count=2)
    insert_hook(db, "hk_inflight", "evt_d", "pending", claimed_by="deliver:7",
                claim_until=NOW + 30_000)
    db.execute("INSERT INTO hook_attempts(id,hook_id,at,status,duration_ms,response,error) VALUES"
               "('hka_1','hk_failed_new',?,503,12,'busy',NULL),"
               "('hka_2','hk_failed_new',?,0,10000,NULL,'timeout')",
               (NOW - 2 * HOUR, NOW - HOUR))
    db.close()

    rc, doc, _ = env.json("hooks")
    check(rc == 0 and len(doc) == 5 and all(HOOK_FIELDS <= set(h) for h in doc),
          "hooks --json: every hook with the contract fields", doc)
    rc, doc, _ = env.json("hooks", "--state", "failed")
    check(rc == 0 and {h["id"] for h in doc} == {"hk_failed_old", "hk_failed_new"},
          "hooks --state failed", doc)
    check(env.run("hooks", "--state", "lost")[0] == 2, "hooks --state junk: exit 2")
    rc, doc, _ = env.json("hook", "hk_failed_new")
    at = doc.get("attempts", []) if isinstance(doc, dict) else []
    check(rc == 0 and doc["state"] == "failed" and [a["status"] for a in at] == [503, 0]
          and at[1]["error"] == "timeout" and at[0]["response"] == "busy"
          and doc["payload"]["event_id"] == "evt_d",
          "hook ID --json: state, payload and every attempt", doc)
    rc, out, _ = env.run("hook", "hk_failed_new")
    check(rc == 0 and b"Attempts (2)" in out and b"timeout" in out, "hook ID human", out)
    check(env.run("hook", "hk_nope")[0] == 1, "unknown hook: exit 1")

    wake = listen_wake(env, "deliver")
    rc, out, err = env.run("redeliver-hook", "hk_failed_old", "hk_delivered", "hk_pending")
    db = env.db()
    rows = {r["id"]: r for r in db.execute("SELECT * FROM hooks")}
    db.close()
    check(rc == 0 and all(rows[h]["state"] == "pending" and rows[h]["attempt_count"] == 0
                          and rows[h]["next_attempt_at"] == NOW and rows[h]["delivered_at"] is None
                          for h in ("hk_failed_old", "hk_delivered", "hk_pending")),
          "redeliver-hook ID...: failed, delivered and waiting hooks re-armed as a new series",
          (rc, err, {k: dict(v) for k, v in rows.items()}))
    check(got_datagram(wake), "redeliver-hook wakes the deliverer")
    a = audit_rows(env, "redeliver-hook")
    check(len(a) == 1 and json.loads(a[0]["counts"])["changed"] == 3,
          "redeliver-hook writes an audit row", [dict(r) for r in a])
    rc, _, err = env.run("redeliver-hook", "hk_inflight", "hk_failed_new")
    db = env.db()
    st = db.execute("SELECT state FROM hooks WHERE id = 'hk_failed_new'").fetchone()[0]
    db.close()
    check(rc == 1 and "being sent now" in err and st == "failed",
          "a hook being sent is refused, nothing changes", err)

    db = env.db()
    insert_hook(db, "hk_failed_older", "evt_d", "failed", last_attempt_at=NOW - 30 * HOUR)
    db.close()
    rc, doc, err = env.json("redeliver-hook", "--failed", "--since", "2h")
    check(rc == 0 and doc.get("changed") == ["hk_failed_new"],
          "redeliver-hook --failed --since 2h picks only failures since then", (doc, err))
    rc, doc, err = env.json("redeliver-hook", "--failed", "--since", "2d", "--until", "24h")
    check(rc == 0 and doc.get("changed") == ["hk_failed_older"], "--since … --until …",
          (doc, err))
    a = audit_rows(env, "redeliver-hook")
    f = json.loads(a[-1]["filters"]) if a and a[-1]["filters"] else {}
    check(f.get("state") == "failed" and f.get("since") == rfc3339(NOW - 48 * HOUR)
          and f.get("until") == rfc3339(NOW - 24 * HOUR), "the audit row keeps the filters", f)
    rc, doc, _ = env.json("redeliver-hook", "--failed", "--since", "1h")
    check(rc == 0 and doc.get("changed") == [] and len(audit_rows(env, "redeliver-hook")) == len(a) + 1,
          "nothing matching: exit 0, still audited", doc)
    check(env.run("redeliver-hook", "--failed")[0] == 2, "--failed without --since: exit 2")
    check(env.run("redeliver-hook", "--failed", "--since", "1h", "hk_x")[0] == 2,
          "--failed with ids: exit 2")
    check(env.run("redeliver-hook")[0] == 2, "redeliver-hook with nothing: exit 2")


def test_audit(env):
    rc, doc, _ = env.json("audit", "--limit", "3")
    check(rc == 0 and isinstance(doc, list) and len(doc) == 3
          and all(AUDIT_FIELDS <= set(r) for r in doc) and RFC3339.match(doc[0]["at"]),
          "audit --json --limit 3", doc)
    rc, doc, _ = env.json("audit", "--action", "migrate")
    check(rc == 0 and len(doc) == 2 and doc[0]["counts"] == {"from": 3, "to": 3, "created": False},
          "audit --action, counts as JSON values", doc)
    rc, out, _ = env.run("audit")
    check(rc == 0 and b"ACTION" in out and b"requeue" in out and ACTOR.encode() in out,
          "audit human", out)
    # read verbs left no trace
    n = len(audit_rows(env))
    env.run("events")
    env.run("status")
    check(len(audit_rows(env)) == n, "read verbs write no audit row")


def main():
    if not os.access(KNOCKCTL, os.X_OK):
        print(f"1..0 # SKIP {KNOCKCTL} not built")
        return 0
    with tempfile.TemporaryDirectory(prefix="knockctl-test-") as tmp:
        env = Env(os.path.join(tmp, "one"), {"demo": GOOD})
        test_basics(env)
        test_check_config(tmp)
        test_database_lifecycle(env)
        seed(env)
        test_events(env)
        test_event(env)
        test_deliveries(env)
        test_status(env)
        test_transitions(env)
        test_replay_delivery(env)
        test_hooks(env)
        test_audit(env)
    print(f"1..{n_tests}")
    return 1 if n_failed else 0


if __name__ == "__main__":
    sys.exit(main())
