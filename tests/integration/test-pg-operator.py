#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""What an operator sees of an endpoint stored in PostgreSQL (suite postgresql):
knockctl migrate names the schema, backup and restore point at PostgreSQL's
own tools and change nothing, knock-maint's backup and checkpoint pass such an
endpoint by, verify reads every table, endpoints and status name the schema, a
password in the endpoint file is refused without being echoed, and the
endpoint still serves after all of it."""

import json
import os
import socket
import subprocess

import knocktest as kt

SECRET = "pg-operator-secret"


def main():
    t = kt.Tap()
    if kt.ENGINE != "postgresql":
        t.skip_all("the PostgreSQL store (KNOCK_TEST_STORE=postgresql)")
    ep = kt.Endpoint("pgop")
    try:
        run(t, ep)
    finally:
        ep.cleanup()
    t.done()


def maint(ep, *args):
    p = subprocess.run([kt.binary("knock-maint"), *args], env=ep.env, capture_output=True,
                       text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def run(t, ep):
    ep.write_config("[endpoint]\nprovider = github\nsecret = literal:%s\nlisten = 127.0.0.1:%d\n"
                    "[worker]\nhandler = exec:/bin/true\n" % (SECRET, ep.port))

    rc, out, err = ep.knockctl("events")
    t.ok(rc == 1 and "no database for endpoint pgop in PostgreSQL schema knock_pgop" in err
         and "has knock-ingress run?" in err and "host=" in err,
         "a read verb before the schema exists: exit 1, names the schema", err)
    t.ok(not ep.store.exists("pgop"), "read verbs create no schema")

    rc, out, err = ep.knockctl("migrate")
    t.ok(rc == 0 and "0 \u2192 3" in out and "created PostgreSQL schema knock_pgop" in out,
         "migrate creates the schema and says where", (out, err))
    t.ok(ep.store.exists("pgop") and not os.path.exists(ep.db_path),
         "the schema exists, no SQLite file was made")
    rc, doc, _ = ep.knockctl("--json", "migrate")
    doc = json.loads(doc) if rc == 0 else None
    t.ok(doc and doc["schema"] == {"from": 3, "to": 3, "created": False}
         and doc["database"].startswith("PostgreSQL schema knock_pgop"),
         "migrate again: current", doc)

    ep.start_ingress()
    ep.start("knock-worker")
    body = b'{"zen": "pg"}'
    code = ep.post(body, kt.github_headers(SECRET, body, "pg-op-1"))[0]
    t.eq(code, 200, "a webhook is stored")
    t.ok(kt.wait_for(lambda: [r["status"] for r in ep.query("SELECT status FROM events")]
                     == ["handled"], timeout=20), "and handled")

    # Backups and restores are PostgreSQL's: refused, nothing written.
    backups = os.path.join(ep.state_dir, "backups")
    rc, out, err = ep.knockctl("backup")
    t.ok(rc == 1 and "pg_dump --schema=knock_pgop" in err and "pg_basebackup" in err,
         "knockctl backup names PostgreSQL's tools", err)
    t.ok(not os.path.exists(backups) or not any(os.scandir(backups)), "no backup file written")
    bogus = os.path.join(ep.tmp, "pgop-old.db")
    with open(bogus, "wb") as f:
        f.write(b"SQLite format 3\x00")
    rc, out, err = ep.knockctl("restore", bogus)
    t.ok(rc == 1 and "pg_restore" in err and "knockctl restore writes SQLite files" in err,
         "knockctl restore refuses a PostgreSQL endpoint", err)
    t.ok(not os.path.exists(ep.db_path), "restore wrote no SQLite file")

    rc, out, err = maint(ep, "backup", "--endpoint", "pgop")
    t.ok(rc == 0 and "stored in PostgreSQL" in err and "nothing to do" in err,
         "knock-maint backup passes it by (the timer stays green)", (out, err))
    rc, out, err = maint(ep, "checkpoint", "--endpoint", "pgop")
    t.ok(rc == 0 and "nothing to do" in err, "knock-maint checkpoint passes it by", (out, err))
    rc, out, err = maint(ep, "prune", "--endpoint", "pgop")
    t.ok(rc == 0, "knock-maint prune runs on it", (out, err))

    rc, out, err = ep.knockctl("--json", "verify")
    doc = json.loads(out) if rc == 0 else None
    t.ok(doc and doc["engine"] == "postgresql" and doc["ok"] and doc["schema_version"] == 3
         and doc["rows"]["events"] == 1 and doc["rows"]["deliveries"] == 1,
         "verify: schema current, every table reads, the rows counted", (out, err))

    rc, out, err = ep.knockctl("--json", "endpoints")
    doc = json.loads(out) if rc == 0 else None
    t.ok(doc and doc[0]["database"].startswith("PostgreSQL schema knock_pgop (")
         and doc[0]["queue"] is not None and "password" not in out,
         "endpoints names the schema and reads its queue", (out, err))
    rc, out, err = ep.knockctl("--json", "status")
    doc = json.loads(out) if rc == 0 else None
    t.ok(doc and {d["daemon"] for d in doc["daemons"]} >= {"ingress", "worker"},
         "status reads the daemons' heartbeats from PostgreSQL", (out, err))

    again = b'{"zen": "again"}'
    code = ep.post(again, kt.github_headers(SECRET, again, "pg-op-2"))[0]
    t.eq(code, 200, "the endpoint still serves after the refused backup and restore")

    # Bytes that are not UTF-8 where PostgreSQL keeps text (an unsigned request's provider
    # id): stored with U+FFFD, answered as on SQLite, and the verified webhook
    # stored in the same moment is not failed with them.
    bad_body = b'{"zen": "bad"}'
    bad = (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"X-GitHub-Event: push\r\nX-GitHub-Delivery: id-\xff\r\n"
           b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(bad_body) + bad_body)
    good = b'{"zen": "good"}'
    with socket.create_connection(("127.0.0.1", ep.port)) as s:
        bad_code = kt.http_exchange(s, bad)[0]
    code = ep.post(good, kt.github_headers(SECRET, good, "pg-op-3"))[0]
    t.ok(bad_code == 401 and code == 200,
         "a request with bytes that are not UTF-8 is answered as on SQLite, the next stored",
         (bad_code, code))
    rows = ep.query("SELECT provider_event_id FROM deliveries WHERE provider_event_id LIKE ?",
                    ("id-%",))
    t.ok([r["provider_event_id"] for r in rows] == ["id-\ufffd"],
         "an orphan's provider id that is not UTF-8 is kept with U+FFFD", rows)

    # A password in the endpoint file: refused, never echoed.
    conf = os.path.join(ep.config_dir, "endpoints", "pgop.conf")
    with open(conf) as f:
        text = f.read()
    with open(conf, "w") as f:
        f.write(text.replace("store = postgresql:", "store = postgresql:password=Hunter2pg "))
    rc, out, err = ep.knockctl("check-config")
    t.ok(rc == 1 and "a password in the endpoint file is refused" in out + err
         and "Hunter2pg" not in out + err, "a password in store = is refused, not echoed",
         (out, err))


if __name__ == "__main__":
    main()
