#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A broken endpoint is visibly broken, and a failed start is not an OOM kill.

The database is left unwritable to the daemons' user (owned by root, as a
restore run by root used to leave it). Asserted: the worker exits 1 at once
with a record naming the file, its owner and mode and what to do; the
ingress stays up and answers a webhook 503 and /readyz 503 naming
database_writable, each within a second; once the file is given back, the
worker starts and the failed starts were not counted as suspected OOM
kills, while a SIGKILL after READY=1 still is. `knockctl status` calls a
heartbeat older than 15 s stale, with its age. With the write lock held
elsewhere, /readyz answers 503 (the writer is stuck) within a second.

Runs the daemons as nobody (root ignores file modes), so it needs root; as
another user it makes the file read-only instead.
"""

import json
import os
import pwd
import signal
import socket
import subprocess
import threading
import time

import knocktest as kt

t = kt.Tap()
ROOT = os.geteuid() == 0
nobody = pwd.getpwnam("nobody")


def as_daemon_user(argv):
    if not ROOT:
        return argv
    return ["setpriv", "--reuid=%d" % nobody.pw_uid, "--regid=%d" % nobody.pw_gid,
            "--clear-groups"] + argv


def start(ep, daemon, wait_ready=True):
    role = daemon.replace("knock-", "")
    nl = ep._notify_listener(role)
    os.chmod(nl.path, 0o777)
    env = dict(ep.env)
    env["NOTIFY_SOCKET"] = nl.path
    err = os.path.join(ep.tmp, role + ".stderr")
    p = ep._spawn(role, as_daemon_user([kt.binary(daemon), ep.name]), env, err)
    if wait_ready:
        kt.wait_for(lambda: nl.seen("READY") or p.poll() is not None, timeout=15)
    return p, nl, err


def timed_http(connect, request):
    """(status, body, seconds) of one request, or (None, error, seconds)."""
    t0 = time.monotonic()
    try:
        s = connect()
        s.settimeout(5)
        status, body = kt.http_exchange(s, request)
        return status, body.decode(errors="replace"), time.monotonic() - t0
    except (OSError, ValueError, IndexError) as e:
        return None, str(e), time.monotonic() - t0


def oom_kills(ep, daemon):
    rows = ep.query("SELECT suspected_oom_kills FROM daemons WHERE daemon = ?", (daemon,))
    return rows[0]["suspected_oom_kills"] if rows else None


kt.sqlite_only(t, "the database file's owner and mode, and its write lock")
ep = kt.Endpoint("broken")
try:
    os.chmod(ep.tmp, 0o755)
    ep.write_config("[endpoint]\nprovider = none\nallow_unverified = yes\n"
                    "listen = 127.0.0.1:%d\n[worker]\nhandler = exec:/bin/true\n" % ep.port)
    rc, _, err = ep.knockctl("migrate")
    t.ok(rc == 0, "knockctl migrate", err)
    if ROOT:
        for d in (ep.state_dir, ep.runtime_dir):
            os.chown(d, nobody.pw_uid, nobody.pw_gid)
        os.chown(ep.db_path, 0, 0)
        os.chmod(ep.db_path, 0o644)
    else:
        os.chmod(ep.db_path, 0o444)

    # ---- the worker: one clear record and exit 1 ----------------------------
    t0 = time.monotonic()
    w, nl, werr = start(ep, "knock-worker", wait_ready=False)
    code = w.wait(timeout=15)
    took = time.monotonic() - t0
    text = open(werr).read()
    t.ok(code == 1 and took < 5, "the worker exits 1 at once (%.2f s)" % took, code)
    t.ok("is not writable by knock-worker" in text and "chown knock:knock" in text
         and ("owned by 0:0, mode 0644" in text if ROOT else "mode 0444" in text),
         "its record names the file, its owner and mode, and what to do", text)
    t.ok(not nl.seen("READY"), "it never said READY=1")
    wd = os.path.join(ep.state_dir, "broken.worker.watchdog")
    t.ok(not os.path.exists(wd) or "READY" not in open(wd).read(),
         "its OOM watchdog file does not say READY")

    # ---- the ingress: stays up, answers 503 fast --------------------------------
    i, inl, ierr = start(ep, "knock-ingress")
    t.ok(i.poll() is None and inl.seen("READY"), "the ingress starts anyway", open(ierr).read())
    status, body, secs = timed_http(
        lambda: socket.create_connection(("127.0.0.1", ep.port)),
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 2\r\nConnection: close\r\n\r\n{}")
    t.ok(status == 503 and secs < 1.0, "a webhook is answered 503 in %.3f s" % secs, body)

    def admin():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(ep.admin)
        return s
    status, body, secs = timed_http(admin, b"GET /readyz HTTP/1.1\r\nHost: x\r\n"
                                           b"Connection: close\r\n\r\n")
    checks = {}
    try:
        checks = {c["name"]: c for c in json.loads(body)["checks"]}
    except (ValueError, KeyError):
        pass
    t.ok(status == 503 and secs < 1.0, "/readyz answers 503 in %.3f s" % secs, body)
    t.ok(checks.get("database_writable", {}).get("ok") is False,
         "and names database_writable", checks.get("database_writable"))
    t.ok("Database not writable (read-only to this daemon); answering 503" in open(ierr).read(),
         "the ingress says so")
    ep.stop("ingress")

    # ---- given back: starts, and nothing was counted ------------------------------
    if ROOT:
        os.chown(ep.db_path, nobody.pw_uid, nobody.pw_gid)
    else:
        os.chmod(ep.db_path, 0o644)
    w, nl, werr = start(ep, "knock-worker")
    t.ok(nl.seen("READY") and w.poll() is None, "with the file given back the worker starts",
         open(werr).read()[-500:])
    t.eq(oom_kills(ep, "worker"), 0, "the failed start was not counted as a suspected OOM kill")
    t.ok("ended unexpectedly" not in open(werr).read(), "nor reported as an unexpected end")

    # ---- a real crash still counts --------------------------------------------------
    os.kill(w.pid, signal.SIGKILL)
    w.wait()
    w, nl, werr = start(ep, "knock-worker")
    t.eq(oom_kills(ep, "worker"), 1, "a SIGKILL after READY=1 is counted (1)")

    # ---- status: a stale heartbeat ------------------------------------------------------
    c = ep.db()
    with c:
        c.execute("INSERT OR REPLACE INTO daemons(daemon, pid, started_at, heartbeat_at, status)"
                  " VALUES ('deliver', 4242, ?, ?, 'running')",
                  (int(time.time() * 1000) - 600000, int(time.time() * 1000) - 60000))
    c.close()
    rc, out, err = ep.knockctl("--json", "status")
    rows = {d["daemon"]: d for d in json.loads(out)["daemons"]} if rc == 0 else {}
    t.ok(rows.get("deliver", {}).get("state") == "stale"
         and rows["deliver"]["heartbeat_age_s"] >= 59,
         "status: a heartbeat 60 s old is stale, with its age", rows.get("deliver"))
    t.eq(rows.get("worker", {}).get("state"), "running", "status: the live worker is running")
    rc, out, err = ep.knockctl("status")
    t.ok(any(line.split()[:3] == ["deliver", "4242", "stale"] for line in out.splitlines()),
         "the table shows STATE stale", out)
    ep.stop("worker")
    rc, out, err = ep.knockctl("--json", "status")
    rows = {d["daemon"]: d for d in json.loads(out)["daemons"]} if rc == 0 else {}
    t.eq(rows.get("worker", {}).get("state"), "stopped", "status: a cleanly stopped worker")

    # ---- a symlink planted at the OOM watchdog file is not followed ------------------
    victim = os.path.join(ep.tmp, "victim")
    with open(victim, "w") as f:
        f.write("precious\n")
    os.chmod(victim, 0o666)
    wd = os.path.join(ep.state_dir, "broken.worker.watchdog")
    if os.path.lexists(wd):
        os.unlink(wd)
    os.symlink(victim, wd)
    w, nl, werr = start(ep, "knock-worker")
    t.ok(nl.seen("READY") and open(victim).read() == "precious\n"
         and not os.path.islink(wd) and os.path.isfile(wd),
         "a symlink planted at the OOM watchdog file is replaced, its target untouched",
         (open(victim).read(), os.path.islink(wd)))
    ep.stop("worker")

    # ---- a stuck writer: /readyz still answers, 503 -------------------------------------
    i, inl, ierr = start(ep, "knock-ingress")
    lock = ep.db()
    lock.execute("BEGIN IMMEDIATE")
    post = threading.Thread(target=timed_http, args=(
        lambda: socket.create_connection(("127.0.0.1", ep.port)),
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 2\r\nConnection: close\r\n\r\n{}"), daemon=True)
    post.start()
    time.sleep(1.5)
    status, body, secs = timed_http(admin, b"GET /readyz HTTP/1.1\r\nHost: x\r\n"
                                           b"Connection: close\r\n\r\n")
    lock.rollback()
    lock.close()
    post.join(timeout=10)
    t.ok(status == 503 and secs < 1.0 and "the writer has been committing" in body,
         "with the write lock held elsewhere, /readyz answers 503 in %.3f s: writer stuck" % secs,
         body)
finally:
    ep.cleanup()
t.done()
