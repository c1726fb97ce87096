#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""knockctl copy-to-postgresql: an SQLite endpoint moves to PostgreSQL (issue 19).

An endpoint lives on SQLite first, run by the real daemons: signed GitHub
webhooks with JSON, binary and empty bodies, a duplicate and an orphan (bad
signature); a handler that fails until a flag file goes (dead), one that
prints bytes that are not UTF-8 and a NUL; completion hooks delivered and
one failed whose receiver answered binary bytes; pauses, an ignore, audit
rows; and rows as a crash or a retry leaves them (processing with an expired
claim, failed waiting for its retry), three received events of one
millisecond whose order only the rowid keeps.

The target is knocktest's private PostgreSQL cluster (tests/pgcluster).
Refused, each leaving its target exactly as it was: while a daemon of the
endpoint runs here, while one runs against the target from "another host" (a
fresh heartbeat), when the target already holds an event, and a second copy.

Then the copy, with a password in the conninfo (never printed, never
audited); every column of every table read back (psycopg2) and compared with
the SQLite rows (text PostgreSQL cannot hold: U+FFFD per bad byte), the
order of events, attempts and audit, the target's own pause and meta kept,
no daemons rows; the SQLite file untouched. The endpoint then runs on
PostgreSQL (`store =` line): knockctl events/event/deliveries/hooks show
what they showed on SQLite, bodies byte for byte; the worker runs the
received events in the copied order, takes over the expired claim, handles a
requeued failed and a requeued dead event, a replay, and a resumed route; a
provider's retry of a copied event is a duplicate; a failed hook is
redelivered.
"""

import hashlib
import json
import os
import re
import subprocess
import threading
import time

os.environ.pop("KNOCK_TEST_STORE", None)  # the endpoint starts on SQLite, whatever the suite
import knocktest as kt  # noqa: E402
from knocktest import Endpoint, Tap, github_headers, insert_event, wait_for  # noqa: E402

t = Tap()
SECRET = "copy-secret"
PASSWORD = "sekrit-pw-4711"
HOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
LIMIT = "1000"  # more than the test's rows: every listing shows them all


# ---- PostgreSQL: knocktest's private cluster, a database per target ------------------------

class Target:
    """knocktest's cluster (tests/pgcluster, removed at exit), its databases
    and their rows through psycopg2."""

    def __init__(self):
        self.cluster = kt.PgCluster.get()
        self.conninfo = self.cluster.conninfo

    def conninfo_for(self, db):
        return self.cluster.conninfo_for(db)

    def create_database(self):
        return self.cluster.create_database()[0]

    def sql(self, db, sql):
        """The first column of the first row of sql."""
        c = kt._psycopg2().connect(self.conninfo_for(db))
        try:
            c.autocommit = True
            cur = c.cursor()
            cur.execute(sql)
            return cur.fetchone()[0]
        finally:
            c.close()

    def rows(self, db, sql):
        """The rows of sql as dicts (json_agg: bytea as "\\x..." hex)."""
        return self.sql(db, "SELECT coalesce(json_agg(q), '[]') FROM (%s) q" % sql)

    def schema_exists(self, db):
        return self.sql(db, "SELECT to_regnamespace('knock_shop') IS NOT NULL")

    def dump(self, db):
        """Every row of every table of knock_shop (None without the schema)."""
        if not self.schema_exists(db):
            return None
        tables = self.sql(db, "SELECT string_agg(tablename, ' ' ORDER BY tablename) FROM "
                              "pg_tables WHERE schemaname = 'knock_shop'").split()
        return {tb: self.rows(db, "SELECT * FROM knock_shop.%s ORDER BY 1" % tb) for tb in tables}


# ---- what PostgreSQL should hold, from the SQLite rows --------------------------------------

def pg_text(b):
    """SQLite's text bytes as the copy stores them: U+FFFD for each byte
    that starts no valid UTF-8 sequence, and for NUL (written here from the
    UTF-8 definition, not from the C code: Python's strict decoder refuses
    overlongs and surrogates as RFC 3629 does)."""
    out, i = [], 0
    while i < len(b):
        if b[i] == 0:
            out.append("\ufffd")
            i += 1
            continue
        for n in (1, 2, 3, 4):
            try:
                ch = b[i:i + n].decode("utf-8")
            except UnicodeDecodeError:
                continue
            if len(ch) == 1:
                out.append(ch)
                i += n
                break
        else:
            out.append("\ufffd")
            i += 1
    return "".join(out)


ROWID_TABLES = ("events", "attempts", "audit")
TABLES = ("events", "deliveries", "attempts", "hooks", "hook_attempts", "audit", "meta",
          "pauses")


def sqlite_columns(ep, table):
    c = ep.db()
    try:
        return [r[1] for r in c.execute("PRAGMA table_info(%s)" % table)]
    finally:
        c.close()


def sqlite_rows(ep, table):
    """Every row of table (rowid order where PostgreSQL has a rowid, else by
    key), each value as PostgreSQL's json_agg would show the copy."""
    c = ep.db()
    c.text_factory = bytes
    cols = sqlite_columns(ep, table)
    order = "rowid" if table in ROWID_TABLES else cols[0]
    out = []
    try:
        for r in c.execute("SELECT %s, %s FROM %s ORDER BY %s" % (
                ", ".join(cols), ", ".join("typeof(%s)" % x for x in cols), table, order)):
            row = {}
            for i, name in enumerate(cols):
                v, kind = r[i], r[len(cols) + i]
                if v is None:
                    row[name] = None
                elif kind == b"blob" or (table, name) == ("deliveries", "body"):
                    row[name] = "\\x" + bytes(v).hex()
                elif kind == b"text":
                    row[name] = pg_text(v)
                else:
                    row[name] = v
            out.append(row)
    finally:
        c.close()
    return out, cols


def pg_rows(cl, db, table, cols):
    order = "rowid" if table in ROWID_TABLES else cols[0]
    return cl.rows(db, "SELECT %s FROM knock_shop.%s ORDER BY %s" % (", ".join(cols), table, order))


# ---- the endpoint on SQLite ------------------------------------------------------------------

class HookReceiver:
    """Completion hooks: 200, but 500 with bytes that are not UTF-8 for the
    events of type hookfail until .ok is set."""

    def __init__(self):
        self.ok = False
        self.got = []
        recv = self

        class Handler(kt.QuietHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                doc = json.loads(body)
                recv.got.append(doc)
                if doc.get("event_type") == "hookfail" and not recv.ok:
                    code, out = 500, b"oops \xff\xfe\x00 binary"
                else:
                    code, out = 200, b"thanks"
                self.send_response(code)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server = kt.http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def config(ep, handler, hook_port, store=None):
    return """[endpoint]
provider = github
secret = literal:%s
listen = 127.0.0.1:%d
%s
[worker]
handler = exec:%s
concurrency = 1
timeout = 10s
max_attempts = 2
backoff = 10ms..20ms

[hook]
url = http://127.0.0.1:%d/hooks
secret = literal:%s
on = handled, dead
max_attempts = 2
schedule = 0s, 50ms
""" % (SECRET, ep.port, "store = postgresql:" + store if store else "", handler, hook_port,
       HOOK_SECRET)


def post(ep, delivery, etype, body):
    st, _, data = ep.post(body, github_headers(SECRET, body, delivery, etype))
    return st, (json.loads(data) if st == 200 else None)


def start_ingress(ep):
    """The ingress, once it said READY=1 (its store is open: created, on
    PostgreSQL; its watchdog file written)."""
    ep.start_ingress()
    if not wait_for(lambda: ep.notify["ingress"].seen("READY"), timeout=15):
        raise RuntimeError("knock-ingress did not start: " + ep.stderr("ingress")[-2000:])


def knockctl_json(ep, *args):
    rc, out, err = ep.knockctl("--json", *args)
    try:
        return rc, json.loads(out), err
    except ValueError:
        return rc, None, err + out


def sha256_file(path):
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


def build_sqlite_endpoint(ep, hooks, handler, flag):
    """Rows in every state, by the real daemons and as a crash leaves them.
    Returns {name: event id}."""
    ids = {}
    ep.write_config(config(ep, handler, hooks.port))
    start_ingress(ep)
    ep.start("knock-worker")
    ep.start("knock-deliver")
    bodies = {"ok1": (b'{"n":1}', "ok"), "okbin": (bytes(range(256)) * 3, "ok"),
              "okempty": (b"", "ok"), "binout": (b'{"n":2}', "binout"),
              "fail1": (b'{"n":3}', "fail"), "hookfail": (b'{"n":4}', "hookfail")}
    for name, (body, etype) in bodies.items():
        st, doc = post(ep, "gh-" + name, etype, body)
        t.eq(st, 200, "sqlite: %s accepted" % name)
        ids[name] = doc and doc["event_id"]
    st, doc = post(ep, "gh-ok1", "ok", b'{"n":1}')
    t.ok(st == 200 and doc["duplicate"] and doc["event_id"] == ids["ok1"],
         "sqlite: the provider's retry of ok1 is a duplicate", doc)
    st, _, _ = ep.post(b'{"forged":1}', {"X-Hub-Signature-256": "sha256=" + "0" * 64,
                                         "X-GitHub-Delivery": "gh-forged",
                                         "X-GitHub-Event": "ok"})
    t.eq(st, 401, "sqlite: a forged signature is refused and kept as an orphan")

    finals = {n: kt.final_event(ep, ids[n], timeout=30) for n in bodies}
    t.eq({n: (e or {}).get("status") for n, e in finals.items()},
         {"ok1": "handled", "okbin": "handled", "okempty": "handled", "binout": "handled",
          "fail1": "dead", "hookfail": "handled"}, "sqlite: the events end as their handlers say")
    hook_states = lambda: {r["event_id"]: r["state"] for r in ep.query("SELECT * FROM hooks")}
    wait_for(lambda: len(hook_states()) == 6 and "pending" not in hook_states().values(),
             timeout=30)
    t.eq(sorted(hook_states().values()), ["delivered"] * 5 + ["failed"],
         "sqlite: five hooks delivered, the hookfail one failed", hook_states())

    for route in ("paused.type", "both.type"):
        rc, _, err = ep.knockctl("pause", "--route", route, "--reason", "sqlite side")
        t.eq(rc, 0, "sqlite: pause --route %s" % route, err)
    st, doc = post(ep, "gh-paused", "paused.type", b'{"n":5}')
    ids["paused"] = doc and doc["event_id"]
    time.sleep(0.3)
    ep.stop("worker")
    for name in ("later1", "later2"):
        st, doc = post(ep, "gh-" + name, "ok", b'{"later":true}')
        ids[name] = doc and doc["event_id"]
    rc, _, err = ep.knockctl("ignore", ids["later2"])
    t.eq(rc, 0, "sqlite: ignore later2", err)
    for verb in (["prune", "--status", "handled", "--older-than", "30d"], ["backup"]):
        rc, _, err = ep.knockctl(*verb)
        t.eq(rc, 0, "sqlite: %s (an audit row, meta rows)" % verb[0], err)
    ep.stop("ingress")
    ep.stop("deliver")

    # What a crash and a retry leave behind, and three received events of
    # one millisecond, inserted against the order of their ids: only the
    # rowid orders them.
    now = int(time.time() * 1000)
    insert_event(ep, "evt_proc", "ok", status="processing", attempt_count=1,
                 claimed_by="worker:1@gone", claim_until=now - 60000, next_attempt_at=now - 60000)
    insert_event(ep, "evt_failed", "ok", status="failed", attempt_count=1,
                 next_attempt_at=now + 3600 * 1000, last_error="exit status 1")
    tie = now - 3600 * 1000
    for eid in ("evt_tie3", "evt_tie1", "evt_tie2"):
        insert_event(ep, eid, "ok", received_at=tie, updated_at=tie, next_attempt_at=tie)
    return ids


def statuses(ep):
    return sorted({r["status"] for r in ep.query("SELECT status FROM events")})


# ---- the test ---------------------------------------------------------------------------------

def main():
    try:
        cl = Target()
    except RuntimeError as e:
        t.skip_all("no PostgreSQL cluster: %s" % e)
    hooks = HookReceiver()
    ep = Endpoint("shop")
    try:
        run(cl, hooks, ep)
    finally:
        ep.cleanup()


def run(cl, hooks, ep):
    flag = os.path.join(ep.tmp, "failing")
    log = os.path.join(ep.tmp, "ran.log")
    open(flag, "w").close()
    open(log, "w").close()  # before the worker starts: its handlers' sandbox allows what exists
    handler = kt.write_script(ep, "handler.sh", """
echo "$KNOCK_EVENT_ID" >> "%s"
cat > /dev/null
case "$KNOCK_EVENT_TYPE" in
fail) if [ -e "%s" ]; then echo "still failing"; exit 1; fi ;;
binout) printf 'bad \\377 byte, a \\000 and more' ;;
esac
exit 0
""" % (log, flag))
    ids = build_sqlite_endpoint(ep, hooks, handler, flag)
    t.eq(statuses(ep), sorted(["received", "processing", "failed", "dead", "ignored", "handled"]),
         "sqlite: events in every status")
    c = ep.db()
    c.text_factory = bytes
    raw = c.execute("SELECT output FROM attempts WHERE event_id = ?", (ids["binout"],)).fetchone()
    c.close()
    t.eq(raw and raw[0], b"bad \xff byte, a \x00 and more",
         "sqlite: the binout attempt kept a byte that is not UTF-8 and a NUL")

    def conninfo(db, password=True):
        return cl.conninfo_for(db) + (" password=" + PASSWORD if password else "")

    main_db, empty_db, busy_db, host2_db = (cl.create_database() for _ in range(4))
    sqlite_config = config(ep, handler, hooks.port)

    # The target's own rows before the copy: the endpoint was started on
    # PostgreSQL once (the schema made by the ingress) and a route paused
    # there. Kept as the target has them; the copied rows join them.
    ep.write_config(config(ep, handler, hooks.port, store=conninfo(main_db, False)))
    start_ingress(ep)
    ep.stop("ingress")
    rc, _, err = ep.knockctl("pause", "--route", "both.type", "--reason", "pg side")
    t.eq(rc, 0, "postgresql: the target's own pause before the copy", err)
    rc, _, err = ep.knockctl("prune", "--status", "handled", "--older-than", "30d")
    t.eq(rc, 0, "postgresql: the target's own prune (meta rows) before the copy", err)
    own = {tb: {r[key]: r for r in cl.rows(main_db, "SELECT * FROM knock_shop.%s" % tb)}
           for tb, key in (("meta", "key"), ("pauses", "route"))}
    # busy_db received one webhook before anyone copied into it.
    ep.write_config(config(ep, handler, hooks.port, store=conninfo(busy_db, False)))
    start_ingress(ep)
    st, _ = post(ep, "gh-early", "other", b"{}")
    t.eq(st, 200, "postgresql: a webhook reached busy_db before the copy")
    ep.stop("ingress")
    ep.write_config(sqlite_config)

    sqlite = {tb: sqlite_rows(ep, tb) for tb in TABLES}
    listings = {v: knockctl_json(ep, v, "--limit", LIMIT)[1]
                for v in ("events", "deliveries", "hooks", "audit")}
    event_docs = {e["id"]: knockctl_json(ep, "event", e["id"])[1] for e in listings["events"]}
    runs = []  # every copy's output, for the password check

    def copy(*args):
        rc, out, err = ep.knockctl("copy-to-postgresql", *args)
        runs.append(out + err)
        return rc, out, err

    # ---- refused -------------------------------------------------------------------------
    before = {db: cl.dump(db) for db in (main_db, busy_db, host2_db)}
    start_ingress(ep)
    rc, out, err = copy(conninfo(main_db))
    t.ok(rc == 1 and "knock-ingress of endpoint shop is running" in err and
         "systemctl stop knock@shop" in err, "refused while the ingress runs", err)
    ep.stop("ingress")
    t.ok(cl.dump(main_db) == before[main_db], "... the target is left as it was")

    host2 = Endpoint("shop")  # the same endpoint on another host, against host2_db
    try:
        host2.write_config(config(host2, handler, hooks.port, store=conninfo(host2_db, False)))
        start_ingress(host2)
        before[host2_db] = cl.dump(host2_db)
        rc, out, err = copy(conninfo(host2_db))
        t.ok(rc == 1 and "fresh heartbeat" in err and "every host" in err,
             "refused while another host's daemon runs against the target", err)
        after = cl.dump(host2_db)
        t.ok(after["events"] == [] and after["audit"] == before[host2_db]["audit"],
             "... the target is left as it was")
    finally:
        host2.cleanup()

    rc, out, err = copy(conninfo(busy_db))
    t.ok(rc == 1 and "already holds 1 row in events" in err and "nothing was changed" in err,
         "refused: the target holds an event", err)
    t.ok(cl.dump(busy_db) == before[busy_db], "... the target is left as it was")

    rc, out, err = copy("host=/nonexistent port=1")
    t.ok(rc == 1 and "cannot open PostgreSQL schema knock_shop" in err,
         "an unreachable server: exit 1, said", err)
    rc, out, err = copy("not a conninfo password=" + PASSWORD)
    t.ok(rc == 2 and "not a libpq connection string" in err, "junk: a usage error", err)
    rc, out, err = copy()
    t.ok(rc == 2 and "needs the target" in err, "no CONNINFO and none in the file: usage", err)

    # ---- the copy --------------------------------------------------------------------------
    db_hash = (sha256_file(ep.db_path), sha256_file(ep.db_path + "-wal"))
    rc, out, err = copy("--json", conninfo(main_db))
    doc = json.loads(out) if rc == 0 else None
    if not t.ok(rc == 0 and doc, "copy-to-postgresql into the prepared schema", err + out):
        return
    keyed = {"meta": "key", "pauses": "route"}
    kept = {tb: [r for r in sqlite[tb][0] if r[k] in own[tb]] for tb, k in keyed.items()}
    want_counts = {tb: len(sqlite[tb][0]) - len(kept.get(tb, [])) for tb in TABLES}
    t.ok(len(kept["meta"]) >= 1 and want_counts["meta"] >= 1 and len(kept["pauses"]) == 1,
         "the target shares some meta keys and one pause route with SQLite, not all", kept)
    t.eq(doc["rows"], want_counts, "--json: rows per table as SQLite holds them, but those kept")
    t.eq(doc["kept"], {tb: len(v) for tb, v in kept.items()},
         "--json: the target's meta and pause rows of the same key were kept")
    t.eq(doc["repaired"], {"attempts.output": 1, "hook_attempts.response": 2},
         "--json: text that was not UTF-8 (U+FFFD): binout's output, the hook's two answers",
         doc)
    t.ok(doc["verified"] is True and doc["schema"] == "knock_shop" and
         doc["source"] == ep.db_path and doc["daemons"] == "not copied", "--json: the rest", doc)
    t.ok("password" not in doc["target"] and cl.conninfo_for(main_db).split()[0] in doc["target"],
         "--json: the target named without its password", doc["target"])

    # Every column of every table, as SQLite holds it.
    for tb in TABLES:
        want, cols = sqlite[tb]
        got = pg_rows(cl, main_db, tb, cols)
        if tb == "audit":
            ours = {r["id"] for r in want}
            extra = [r for r in got if r["id"] not in ours]
            got = [r for r in got if r["id"] in ours]
            t.eq(sorted(r["action"] for r in extra), ["copy-to-postgresql", "pause", "prune"],
                 "audit: the target's own rows and the copy's besides the copied")
        if tb in keyed:
            k = keyed[tb]
            t.eq([r for r in got if r[k] in own[tb]],
                 [dict(own[tb][r[k]]) for r in got if r[k] in own[tb]],
                 "%s: the target's own rows left as they were" % tb)
            want = [r for r in want if r[k] not in own[tb]]
            got = [r for r in got if r[k] not in own[tb]]
        t.ok(got == want and len(want) > 0, "%s: every column of %d rows%s" % (
            tb, len(want), " in rowid order" if tb in ROWID_TABLES else ""),
             next(("sqlite %r\n    pg %r" % (a, b) for a, b in zip(want, got) if a != b),
                  "%d vs %d rows" % (len(want), len(got))))
    order = [r["id"] for r in cl.rows(main_db, "SELECT id FROM knock_shop.events ORDER BY rowid")]
    t.ok(order.index("evt_tie3") < order.index("evt_tie1") < order.index("evt_tie2"),
         "events: the rowid order, not the ids' order", order)
    out = cl.rows(main_db, "SELECT output FROM knock_shop.attempts WHERE event_id = '%s'"
                  % ids["binout"])
    t.eq(out and out[0]["output"], "bad \ufffd byte, a \ufffd and more",
         "attempts.output: U+FFFD for the byte 0xff and the NUL")
    t.eq(cl.rows(main_db, "SELECT daemon FROM knock_shop.daemons ORDER BY 1"),
         [{"daemon": kt.daemon_key("postgresql", "ingress", ep.env)}],
         "daemons: only the target's own (no SQLite rows)")
    audit = cl.rows(main_db, "SELECT actor, filters, counts FROM knock_shop.audit WHERE "
                             "action = 'copy-to-postgresql'")
    t.ok(len(audit) == 1 and json.loads(audit[0]["filters"])["source"] == ep.db_path and
         json.loads(audit[0]["counts"])["events"] == want_counts["events"] and
         re.match(r"^\S+\(\d+\)$", audit[0]["actor"]),
         "the audit row: actor, source, counts", audit)
    t.ok(db_hash[0] and (sha256_file(ep.db_path), sha256_file(ep.db_path + "-wal")) == db_hash,
         "the SQLite file (and its WAL) is left exactly as it was")

    rc, out, err = copy(conninfo(main_db))
    t.ok(rc == 1 and "already holds" in err, "a second copy is refused", err)

    # The text output, into a fresh database named by a URI with a password.
    sock = re.search(r"host=(\S+)", cl.conninfo).group(1)
    rc, out, err = copy("postgresql://postgres:%s@/%s?host=%s" % (PASSWORD, empty_db, sock))
    t.ok(rc == 0 and re.search(r"^  events +%d$" % want_counts["events"], out, re.M) and
         re.search(r"^  deliveries +%d$" % want_counts["deliveries"], out, re.M) and
         "daemons" in out and "U+FFFD" in out and "every row, value and order matches" in out,
         "text: counts per table, daemons, the repaired text, verified", out + err)
    line = re.search(r"^  store = postgresql:(.*)$", out, re.M)
    t.ok(line and "dbname=" + empty_db in line.group(1) and "password" not in line.group(1) and
         "systemctl start knock@shop" in out,
         "text: the next step: the store line (no password) and the start", out)
    t.ok(all(PASSWORD not in r for r in runs), "the password is never printed")
    t.ok(PASSWORD not in cl.sql(main_db, "SELECT string_agg(filters || counts, ' ') FROM "
                                         "knock_shop.audit"), "nor audited")

    # ---- the endpoint on PostgreSQL ------------------------------------------------------------
    ep.write_config(config(ep, handler, hooks.port, store=conninfo(main_db, False)))
    for v in ("events", "deliveries", "hooks"):
        rc, got, err = knockctl_json(ep, v, "--limit", LIMIT)
        t.ok(rc == 0 and got == listings[v], "postgresql: knockctl %s shows the same rows" % v,
             err if rc else next(("%r\n%r" % (a, b) for a, b in zip(listings[v], got) if a != b),
                                 "%d vs %d" % (len(listings[v]), len(got))))
    rc, got, err = knockctl_json(ep, "audit", "--limit", LIMIT)
    got = [a for a in (got or []) if a["id"] in {x["id"] for x in listings["audit"]}]
    t.eq(got, listings["audit"], "postgresql: knockctl audit shows the copied rows", err)
    pg_docs = {eid: knockctl_json(ep, "event", eid)[1] for eid in event_docs}
    # The one difference: the NUL binout printed is U+FFFD there.
    event_docs = json.loads(json.dumps(event_docs).replace("\\u0000", "\\ufffd"))
    diff = [(eid, k, d.get(k), (pg_docs[eid] or {}).get(k)) for eid, d in event_docs.items()
            for k in d if d.get(k) != (pg_docs[eid] or {}).get(k)]
    t.ok(len(event_docs) == 14 and not diff,
         "postgresql: knockctl event ID shows each of the %d events as SQLite did"
         % len(event_docs), "\n".join("%s %s:\n  sqlite %r\n  pg     %r" % x for x in diff))
    for name, body in (("okbin", bytes(range(256)) * 3), ("okempty", b"")):
        did = event_docs[ids[name]]["deliveries"][0]["id"]
        p = subprocess.run([kt.binary("knockctl"), "-e", "shop", "delivery", did, "--body"],
                           env=ep.env, capture_output=True, timeout=30)
        t.ok(p.returncode == 0 and p.stdout == body,
             "postgresql: delivery --body of %s, byte for byte" % name, p.stderr)

    open(log, "w").close()
    os.unlink(flag)
    hooks.ok = True
    start_ingress(ep)
    ep.start("knock-worker")
    ep.start("knock-deliver")

    def status(eid):
        rc, d, _ = knockctl_json(ep, "event", eid)
        return d and d["status"]

    wait_for(lambda: all(status(e) == "handled" for e in
                         ("evt_tie1", "evt_tie2", "evt_tie3", "evt_proc", ids["later1"])),
             timeout=30)
    ran = [l.strip() for l in open(log)]
    t.eq([e for e in ran if e.startswith("evt_tie")], ["evt_tie3", "evt_tie1", "evt_tie2"],
         "postgresql: the worker runs the received events in the copied order", ran)
    t.eq(status("evt_proc"), "handled", "postgresql: the expired claim is taken over")
    t.eq(status(ids["later1"]), "handled", "postgresql: a received event is handled")
    t.eq(status("evt_failed"), "failed", "postgresql: the failed event waits for its retry")
    t.eq(status(ids["paused"]), "received", "postgresql: the paused route stays paused")

    for verb, name in (("requeue", "evt_failed"), ("requeue", ids["fail1"]),
                       ("replay", ids["ok1"])):
        rc, _, err = ep.knockctl(verb, name)
        t.eq(rc, 0, "postgresql: %s %s" % (verb, name), err)
    rc, _, err = ep.knockctl("resume", "--route", "paused.type")
    t.eq(rc, 0, "postgresql: resume paused.type", err)
    for eid, what in (("evt_failed", "a requeued failed event"),
                      (ids["fail1"], "a requeued dead one"), (ids["ok1"], "a replay"),
                      (ids["paused"], "the resumed route's event")):
        wait_for(lambda: status(eid) == "handled", timeout=30)
        t.eq(status(eid), "handled", "postgresql: the worker handles %s" % what)
    rc, d, _ = knockctl_json(ep, "event", ids["ok1"])
    t.ok(d and [a["outcome"] for a in d["attempts"]] == ["success", "success"],
         "postgresql: the replay's attempt follows the copied one", d)

    st, doc = post(ep, "gh-okbin", "ok", bytes(range(256)) * 3)
    t.ok(st == 200 and doc["duplicate"] and doc["event_id"] == ids["okbin"],
         "postgresql: the provider's retry of a copied event is a duplicate", doc)
    st, doc = post(ep, "gh-new", "ok", b'{"new":1}')
    wait_for(lambda: doc and status(doc["event_id"]) == "handled", timeout=30)
    t.ok(doc and status(doc["event_id"]) == "handled", "postgresql: a new webhook is handled")

    rc, hk, _ = knockctl_json(ep, "hooks", "--state", "failed")
    failed = [h["id"] for h in hk or []]
    t.eq(len(failed), 1, "postgresql: the failed hook is there", hk)
    rc, _, err = ep.knockctl("redeliver-hook", *failed)
    t.eq(rc, 0, "postgresql: redeliver-hook", err)
    wait_for(lambda: knockctl_json(ep, "hook", failed[0])[1]["state"] == "delivered", timeout=30)
    t.eq(knockctl_json(ep, "hook", failed[0])[1]["state"], "delivered",
         "postgresql: the redelivered hook is delivered")


main()
t.done()
