#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""knocktest's PostgreSQL mode (KNOCK_TEST_STORE=postgresql), which the
suite `postgresql` runs the storage tests in: every Endpoint's configuration
names a database of its own in one private cluster, ep.db() and ep.query()
speak SQLite's dialect of placeholders and give SQLite's values, and the
cluster is gone when the test process ends, however it ends. No daemon runs
here: this checks the harness, not knock."""

import os
import re
import signal
import subprocess
import sys

import knocktest as kt

HERE = os.path.dirname(os.path.abspath(__file__))


def child(mode):
    """Runs as `--child MODE`: one Endpoint (so the cluster starts), prints
    the cluster's directory, then exits as MODE says."""
    ep = kt.Endpoint("kid")
    print(kt.PgCluster.get().dir, flush=True)
    if mode == "exception":
        raise RuntimeError("a test that fails")
    if mode == "sigterm":
        os.kill(os.getpid(), signal.SIGTERM)
        signal.pause()
    if mode == "fork":
        pid = os.fork()
        if pid == 0:
            sys.exit(0)  # a forked child's exit must leave the cluster alone
        os.waitpid(pid, 0)
        ok = os.path.exists(os.path.join(kt.PgCluster.get().dir, "data", "postmaster.pid"))
        print("after-fork " + ("running" if ok else "gone"), flush=True)
    ep.cleanup()
    sys.exit(0)


def postmasters(d):
    """Processes whose command line names directory d."""
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    if d.encode() in f.read():
                        found.append(int(pid))
            except OSError:
                pass
    return found


def run_child(mode, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, os.path.abspath(__file__), "--child", mode],
                          capture_output=True, text=True, timeout=120, env=e)


def test_config(t, a, b):
    t.eq(a.engine, "postgresql", "ep.engine is 'postgresql'")
    t.ok(a.store.database != b.store.database, "two endpoints get two databases",
         (a.store.database, b.store.database))
    text = "[endpoint]\nprovider = github\nsecret = literal:x\n[worker]\nhandler = exec:/bin/true\n"
    with open(a.write_config(text)) as f:
        got = f.read()
    stores = re.findall(r"^store = postgresql:(.*)$", got, re.M)
    t.ok(got.startswith(text) and len(stores) == 1,
         "write_config adds one store line after the text (line numbers kept)", got)
    m = re.search(r"(?:^|\s)dbname=(\S+)", stores[0] if stores else "")
    t.ok(m and m.group(1) == a.store.database and "host=" in stores[0],
         "the store line is a libpq conninfo naming the endpoint's database", stores)
    sections = re.findall(r"^\[(.*)\]$", got, re.M)
    t.eq(sections[-1:], ["endpoint"], "the line is in an [endpoint] section", got)
    ends_in_endpoint = "[endpoint]\nprovider = github\n"
    with open(a.write_config(ends_in_endpoint)) as f:
        got = f.read()
    t.eq(got.count("[endpoint]"), 1, "no second [endpoint] header when it is the last section",
         got)
    own = "[endpoint]\nstore = postgresql:host=/nowhere dbname=mine\nprovider = none\n"
    with open(a.write_config(own)) as f:
        t.eq(f.read(), own, "a file that sets store itself is written as it is")
    with open(a.write_config("provider = none")) as f:
        got = f.read()
    t.ok(got.startswith("provider = none\n[endpoint]\nstore = postgresql:"),
         "a text without [endpoint] gets one", got)


def test_rows(t, a, b):
    for ep in (a, b):
        c = kt.PgConnection(ep.store.conninfo, "postgres", None)
        c.execute('CREATE SCHEMA "knock_%s"' % ep.name)
        c.execute('CREATE TABLE "knock_%s".blobs (id text PRIMARY KEY, n bigint, b bytea, '
                  'f boolean)' % ep.name)
        c.close()
    c = a.db()
    with c:
        c.execute("INSERT INTO blobs (id, n, b, f) VALUES (?, ?, ?, ?)",
                  ("x?'%", 3, b"\x00\xff\x80", True))
    c.close()
    rows = a.query("SELECT id, n, b, f, '?' AS q, '100%' AS pct, n + ? AS m FROM blobs "
                   "WHERE id = ?", (4, "x?'%"))
    t.eq(rows, [{"id": "x?'%", "n": 3, "b": b"\x00\xff\x80", "f": 1, "q": "?", "pct": "100%",
                 "m": 7}],
         "query: ? placeholders (not inside quotes), % kept, bytea as bytes, boolean as 1")
    t.ok(rows and type(rows[0]["b"]) is bytes and type(rows[0]["f"]) is int,
         "bytes and int, not memoryview and bool", rows)
    t.eq(a.query("SELECT sum(n) AS s FROM blobs")[0]["s"], 3,
         "an integral numeric (sum of bigint) is an int")
    t.eq(b.query("SELECT count(*) AS n FROM blobs"), [{"n": 0}],
         "the other endpoint's database does not see the row")
    t.eq(a.db().execute("SELECT id FROM blobs").fetchone()[0], "x?'%",
         "ep.db() rows index by position")
    c = a.db()
    c.execute("INSERT INTO blobs (id) VALUES (?)", ("uncommitted",))
    c.close()
    t.eq(a.query("SELECT id FROM blobs WHERE id = 'uncommitted'"), [],
         "as sqlite3: a write not committed before close() is rolled back")
    c = a.db(isolation_level=None)
    c.execute("INSERT INTO blobs (id) VALUES ('autocommit')")
    c.execute("BEGIN")
    c.execute("INSERT INTO blobs (id) VALUES ('explicit')")
    c.execute("COMMIT")
    c.close()
    t.eq(len(a.query("SELECT id FROM blobs WHERE id IN ('autocommit', 'explicit')")), 2,
         "isolation_level=None: each statement commits, BEGIN/COMMIT as statements")
    c = a.db()
    c.executemany("INSERT INTO blobs (id, n) VALUES (?, ?)", (("m%04d" % i, i) for i in range(1200)))
    c.commit()
    c.close()
    t.eq(a.query("SELECT count(*) AS n, sum(n) AS s FROM blobs WHERE id LIKE 'm%'"),
         [{"n": 1200, "s": 1200 * 1199 // 2}], "executemany: every row, in one transaction")
    t.ok(not a.store_exists(), "store_exists(): false without the deliveries table")
    c = a.db(isolation_level=None)
    c.execute("CREATE TABLE deliveries (id text)")
    c.close()
    t.ok(a.store_exists() and not b.store_exists(), "store_exists(): true with it, per endpoint")


def test_exit(t):
    for mode, how in (("exit", "a normal exit"), ("exception", "an uncaught exception"),
                      ("sigterm", "SIGTERM (meson's timeout)")):
        p = run_child(mode)
        d = (p.stdout.splitlines() or [""])[0]
        t.ok(d.startswith("/") and not os.path.exists(d) and not postmasters(d),
             "after %s the cluster is stopped and its directory gone" % how,
             (d, p.returncode, p.stderr[-1500:]))
    p = run_child("fork")
    t.ok("after-fork running" in p.stdout and p.returncode == 0,
         "a forked child's exit leaves the cluster running", (p.stdout, p.stderr[-1500:]))
    p = subprocess.run([sys.executable, "-c", "import knocktest as kt, os\n"
                        "ep = kt.Endpoint('lite')\n"
                        "print(ep.engine, kt.PgCluster._one)\n"
                        "print(open(ep.write_config('[endpoint]\\nprovider = none\\n')).read())\n"
                        "ep.cleanup()"],
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, KNOCK_TEST_STORE="", PYTHONPATH=HERE))
    t.eq(p.stdout, "sqlite None\n[endpoint]\nprovider = none\n\n",
         "KNOCK_TEST_STORE unset: sqlite, no cluster, the config as written", p.stderr)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
    t = kt.Tap()
    if kt.ENGINE != "postgresql":
        t.skip_all("runs with KNOCK_TEST_STORE=postgresql (suite postgresql)")
    a, b = kt.Endpoint("alpha"), kt.Endpoint("beta")
    try:
        test_config(t, a, b)
        test_rows(t, a, b)
    finally:
        a.cleanup()
        b.cleanup()
    test_exit(t)
    t.done()


if __name__ == "__main__":
    main()
