#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""One endpoint served by two hosts over PostgreSQL (issue 19).

Hosts a and b share one database and one endpoint: each has its own
configuration, state and runtime directories (as two machines have), an
ingress on a port of its own, a worker and a deliverer (KNOCK_HOST=a, b).
The workers and deliverers run in PID namespaces of their own (unshare), as
on separate machines or in containers: a PID means nothing on the other host
(host a's daemons are PID 2 in their namespaces, host b's PID 4), which is
what a claim naming only ROLE:PID gets wrong: judged on b, a's live worker is
gone, and its events run a second time while it still runs them. Host b's
clock is also 90 s ahead (clockskew.so, LD_PRELOAD, for its worker and
deliverer): by its own clock a's fresh claims would have run out long ago,
so leases must be reckoned by the database server's clock.

Signed webhooks go to both ingresses, every provider id to both (as a
provider's retries would), some of them at the same moment; a handler that
records each run (start and end, with a delay so that claims overlap) and a
hook receiver on loopback. Host b's worker and deliverer start while host a's
worker holds claims. Under load, worker a and ingress b are killed with
SIGKILL (a's namespace goes with it, handlers included); the sender goes on,
posting what ingress b can no longer take to ingress a.

Asserted: every webhook answered 2xx is stored, once (one event per provider
id, its delivery there); every event is handled; no event was run twice at
the same time (overlapping runs in the handlers' log); each run again only
because its worker was killed, and not before the dead worker's lease ran out;
every hook is delivered; the surviving ingress and worker keep serving, and an
event sent to ingress a after its worker died, or replayed with knockctl on
host a, is handled at once (b hears of it by NOTIFY, not by its 30 s
rescan), also after the listening connections were cut; `knockctl status`
and /readyz show both hosts. Measured (diagnostics): how long the killed worker's events waited.
"""

import base64
import http.server
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import knocktest as kt
from knocktest import Endpoint, Tap, wait_for

NAME = "mh"
SECRET = "multihost-secret"
HOOK_SECRET = "whsec_" + base64.b64encode(b"knock-multihost-hook-secret-32by").decode()
N_IDS = 160          # provider ids, each sent to both ingresses
SEND_SECONDS = 10.0  # the load is spread over this long
RUN_SECONDS = 0.4    # each handler run
LEASE_S = 30         # worker.h LEASE_MS
SKEW_MS = 90000      # host b's clock runs ahead by this much
CLOCKSKEW = os.path.join(kt.BUILD, "tests", "integration", "clockskew.so")


def ns_available():
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    p = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", "true"],
                       capture_output=True, timeout=10)
    return p.returncode == 0


class Host:
    """One host's directories and daemons on the shared endpoint."""

    def __init__(self, tag, store, log, rx_port, ns):
        self.tag = tag
        self.ns = ns
        self.ep = Endpoint(NAME)
        if store:
            self.ep.store = store  # the same database as the other host's
        self.env = {"KNOCK_HOST": tag}
        # Host b's wall clock is wrong: for its worker and deliverer, which read
        # it only through now_ms() (the ingress's threads wait for absolute
        # real-clock deadlines, which the shim would push 90 s away).
        self.skew = {}
        if tag == "b":
            asan = os.environ.get("ASAN_OPTIONS", "")
            self.skew = {"LD_PRELOAD": CLOCKSKEW, "KNOCK_TEST_CLOCK_SKEW_MS": str(SKEW_MS),
                         # The shim comes before ASan's runtime in an ASan build, and
                         # LeakSanitizer's stop-the-world dies with it preloaded
                         # ("LeakSanitizer has encountered a fatal error", seen in CI):
                         # host b's daemons are checked for leaks without the shim, as
                         # host a's, in this test and every other suite.
                         "ASAN_OPTIONS": (asan + ":" if asan else "")
                         + "verify_asan_link_order=0:detect_leaks=0"}
        line = 'echo "%%s $KNOCK_EVENT_ID $KNOCK_ATTEMPT %s $(date +%%%%s%%%%N)" >> %s\n' % (tag, log)
        handler = kt.write_script(self.ep, "handler.sh", line % "start" + "sleep %s\n" % RUN_SECONDS
                                  + line % "end")
        self.ep.write_config("""[endpoint]
provider = github
secret = literal:%s
listen = 127.0.0.1:%d
[worker]
handler = exec:%s
concurrency = 4
timeout = 30s
[hook]
url = http://127.0.0.1:%d/hooks
on = handled
secret = literal:%s
timeout = 5s
""" % (SECRET, self.ep.port, handler, rx_port, HOOK_SECRET))

    def start_ingress(self):
        self.ep.start_ingress(activate=False, extra_env=self.env)

    def start(self, daemon):
        """A worker or deliverer; in a PID namespace of its own when ns (the
        daemon runs under a shell that is the namespace's init)."""
        ep, role = self.ep, daemon.replace("knock-", "")
        if not self.ns:
            return ep.start(daemon, extra_env=dict(self.env, **self.skew))
        nl = ep._notify_listener(role)
        env = dict(ep.env, NOTIFY_SOCKET=nl.path, **self.env, **self.skew)
        # Host b's daemons get PID 4: two short-lived processes come first.
        script = ("/bin/true; /bin/true; " if self.tag == "b" else "") + '"$@" & wait'
        argv = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", "--",
                "sh", "-c", script, "sh", kt.binary(daemon), NAME]
        p = ep._spawn(role, argv, env, os.path.join(ep.tmp, role + ".stderr"))
        wait_for(lambda: nl.seen("READY") or p.poll() is not None, timeout=15)
        return p

    def kill9(self, role):
        self.ep.kill9(role)  # the process group: unshare, the namespace's init, the daemon

    def stop_all(self):
        """SIGTERM to each daemon's process group (unshare and the namespace's
        init ignore it; the daemon stops, and its namespace with it)."""
        for role, p in list(self.ep.procs.items()):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for role, p in list(self.ep.procs.items()):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.ep.kill9(role)


class HookReceiver:
    """Loopback receiver of the completion hooks: (webhook-id, event_id) of each."""

    def __init__(self):
        self.got = []
        self.lock = threading.Lock()
        outer = self

        class H(kt.QuietHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    eid = json.loads(body).get("event_id")
                except ValueError:
                    eid = None
                with outer.lock:
                    outer.got.append((self.headers.get("webhook-id"), eid))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def event_ids(self):
        with self.lock:
            return {eid for _, eid in self.got}

    def close(self):
        self.server.shutdown()


def post(host, pid, body):
    """One signed webhook to host's ingress: (status or None, its JSON answer)."""
    try:
        st, _, data = host.ep.post(body, kt.github_headers(SECRET, body, pid, "push"))
    except OSError:
        return None, None
    try:
        return st, json.loads(data)
    except ValueError:
        return st, None


class Sender:
    """Posts every provider id to both ingresses, spread over SEND_SECONDS: the
    first to one, then the same to the other (one in four at the same moment,
    from two threads). An id no ingress acknowledged is posted again to ingress
    a, as a provider retries. Records every answer."""

    def __init__(self, a, b):
        self.a, self.b = a, b
        self.answers = []  # (provider id, host tag, status, answer)
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def record(self, pid, host, st, doc):
        with self.lock:
            self.answers.append((pid, host.tag, st, doc))

    def send(self, pid, host, body):
        st, doc = post(host, pid, body)
        self.record(pid, host, st, doc)
        return st is not None and 200 <= st < 300

    def one(self, i):
        pid = "mh-%04d" % i
        body = json.dumps({"n": i}).encode()
        first, second = (self.a, self.b) if i % 2 == 0 else (self.b, self.a)
        if i % 4 == 1:
            oks = []
            ts = [threading.Thread(target=lambda h=h: oks.append(self.send(pid, h, body)))
                  for h in (first, second)]
            for th in ts:
                th.start()
            for th in ts:
                th.join()
            acked = any(oks)
        else:
            acked = self.send(pid, first, body)
            acked = self.send(pid, second, body) or acked
        for _ in range(20):
            if acked:
                break
            time.sleep(0.2)
            acked = self.send(pid, self.a, body)

    def run(self):
        t0 = time.monotonic()
        for i in range(N_IDS):
            time.sleep(max(0.0, t0 + SEND_SECONDS * i / N_IDS - time.monotonic()))
            self.one(i)

    def acked(self):
        """{provider id: [event ids of the 2xx answers]}"""
        out = {}
        with self.lock:
            for pid, _, st, doc in self.answers:
                if st is not None and 200 <= st < 300:
                    out.setdefault(pid, []).append(doc)
        return out


def runs(log):
    """{event id: [(start ns, end ns or None, host)]} from the handlers' log."""
    starts, out = {}, {}
    for w in kt.log_lines(log):
        if len(w) != 5:
            continue
        kind, eid, attempt, host, ns = w
        key = (eid, attempt, host)
        if kind == "start":
            starts[key] = int(ns)
        elif key in starts:
            out.setdefault(eid, []).append((starts.pop(key), int(ns), host))
    for (eid, _, host), s in starts.items():
        out.setdefault(eid, []).append((s, None, host))
    return out


def overlapping(by_event, killed_ns):
    """Events run twice at the same time. A run that never ended was cut short
    by the kill of its worker's namespace: it ended then."""
    bad = {}
    for eid, rs in by_event.items():
        spans = sorted((s, e if e is not None else killed_ns, h) for s, e, h in rs)
        for (s1, e1, h1), (s2, e2, h2) in zip(spans, spans[1:]):
            if s2 < e1:
                bad[eid] = spans
    return bad


def main():
    t = Tap()
    if kt.ENGINE != "postgresql":
        t.skip_all("one endpoint on several hosts needs PostgreSQL (KNOCK_TEST_STORE=postgresql)")
    ns = ns_available()
    logdir = tempfile.mkdtemp(prefix="knock-mh-runs-")
    log = os.path.join(logdir, "runs.log")
    open(log, "w").close()
    rx = HookReceiver()
    a = b = None
    try:
        a = Host("a", None, log, rx.port, ns)
        b = Host("b", a.ep.store, log, rx.port, ns)
        if not ns:
            t.skip("the daemons in PID namespaces of their own",
                   "needs root and unshare --pid: the hosts share one PID space")

        a.start_ingress()
        b.start_ingress()
        a.start("knock-worker")
        a.start("knock-deliver")
        t.ok(wait_for(lambda: a.ep.admin_get("/healthz")[0] == 200, 10)
             and wait_for(lambda: b.ep.admin_get("/healthz")[0] == 200, 10),
             "host a and host b: ingress up on their ports", a.ep.stderr("ingress"))

        sender = Sender(a, b)
        sender.thread.start()
        # Host b's worker and deliverer come up while a's worker holds claims.
        t.ok(wait_for(lambda: a.ep.query("SELECT 1 FROM attempts WHERE outcome = 'running'"), 15),
             "worker a runs handlers", a.ep.stderr("worker"))
        b.start("knock-worker")
        b.start("knock-deliver")
        t.ok(wait_for(lambda: len(a.ep.query("SELECT 1 FROM events WHERE status = 'handled'"))
                      >= N_IDS // 4, 30),
             "both workers handle events", b.ep.stderr("worker"))

        # ---- kill -9 one worker and one ingress under load --------------------------------
        held = {r["id"]: r["claim_until"] for r in a.ep.query(
            "SELECT id, claim_until FROM events WHERE status = 'processing' AND claimed_by LIKE ?",
            ("worker:%@a",))}
        a.kill9("worker")
        killed_ns, killed_ms = time.time_ns(), int(time.time() * 1000)
        b.kill9("ingress")
        t.ok(sender.thread.is_alive(), "killed while the load goes on")
        # What worker a held when it died, with the lease it had left.
        held.update({r["id"]: r["claim_until"] for r in a.ep.query(
            "SELECT id, claim_until FROM events WHERE status = 'processing' AND claimed_by LIKE ?",
            ("worker:%@a",))})
        t.ok(held, "worker a held claims when it was killed (%d)" % len(held))
        sender.thread.join(timeout=120)
        t.ok(not sender.thread.is_alive(), "the sender finished")

        # ---- after: every acknowledged webhook stored once, handled, hooked ---------------
        acked = sender.acked()
        t.eq(len(acked), N_IDS, "every provider id was acknowledged by an ingress",
             sorted(set("mh-%04d" % i for i in range(N_IDS)) - set(acked))[:10])
        rows = a.ep.query("SELECT id, provider_event_id, status FROM events")
        by_pid = {}
        for r in rows:
            by_pid.setdefault(r["provider_event_id"], []).append(r["id"])
        t.ok(all(len(by_pid.get(p, [])) == 1 for p in acked),
             "every acknowledged provider id is stored exactly once",
             {p: by_pid.get(p) for p in acked if len(by_pid.get(p, [])) != 1})
        t.ok(all(doc and doc["event_id"] == by_pid.get(p, [None])[0]
                 for p, docs in acked.items() for doc in docs),
             "every 2xx named that one event (the duplicate's answer too)")
        dlv = {r["id"] for r in a.ep.query("SELECT id FROM deliveries")}
        t.ok(all(doc["delivery_id"] in dlv for docs in acked.values() for doc in docs),
             "every acknowledged delivery is stored")
        dups = sum(1 for docs in acked.values() for doc in docs if doc.get("duplicate"))
        t.ok(dups > 0, "the second ingress answered duplicates (%d)" % dups)

        done = wait_for(lambda: {r["status"] for r in a.ep.query(
            "SELECT DISTINCT status FROM events")} == {"handled"}, LEASE_S + 60, 0.2)
        handled_at = time.time()
        t.ok(done, "every event is handled",
             a.ep.query("SELECT status, count(*) AS n FROM events GROUP BY status"))

        by_event = runs(log)
        t.eq(overlapping(by_event, killed_ns), {}, "no event ran twice at the same time")
        again = {eid for eid, rs in by_event.items() if len(rs) > 1}
        t.ok(again <= set(held), "an event ran again only when the killed worker held it",
             sorted(again - set(held)))
        cut = {eid for eid, rs in by_event.items() if any(e is None for _, e, _ in rs)}
        t.ok(cut <= set(held), "runs cut short belong to the killed worker")
        # The dead host's claims are taken when their lease runs out, not before.
        late = {}
        waited = []
        for eid, until in held.items():
            reruns = [s for s, _, h in by_event.get(eid, []) if h == "b" and s > killed_ns]
            if reruns:
                first_ms = min(reruns) // 1000000
                waited.append(first_ms - killed_ms)
                if first_ms < until - 50:
                    late[eid] = (first_ms, until)
        t.ok(not late, "worker b took a's claims only once their lease ran out", late)
        if waited:
            t.diag("worker a's %d held events ran again %.1f to %.1f s after the kill "
                   "(lease %d s, renewed every %d s)" % (len(waited), min(waited) / 1000,
                                                         max(waited) / 1000, LEASE_S, LEASE_S // 3))
        # The skew was real: b's attempt rows carry its clock's start times.
        starts = {(eid, h): s // 1000000 for eid, rs in by_event.items() for s, _, h in rs}
        skews = sorted(r["started_at"] - starts[(r["event_id"], "b")] for r in a.ep.query(
            "SELECT event_id, started_at FROM attempts WHERE worker LIKE ? AND attempt = 1",
            ("worker:%@b",)) if (r["event_id"], "b") in starts)
        seen_skew = skews[len(skews) // 2] if skews else None
        t.ok(seen_skew is not None and abs(seen_skew - SKEW_MS) < 5000,
             "host b's clock ran %s ms ahead (its attempts' start times)" % seen_skew)
        hosts_ran = {h for rs in by_event.values() for _, _, h in rs}
        t.eq(hosts_ran, {"a", "b"}, "both hosts ran handlers")
        after_kill = [s for rs in by_event.values() for s, _, h in rs if h == "b" and s > killed_ns]
        t.ok(after_kill, "worker b kept handling after the kill")

        want_hooks = {r["id"] for r in rows}
        t.ok(wait_for(lambda: rx.event_ids() >= want_hooks, 60, 0.2),
             "every event's hook is delivered", len(want_hooks - rx.event_ids()))
        states = a.ep.query("SELECT state, count(*) AS n FROM hooks GROUP BY state")
        t.eq([(s["state"], s["n"]) for s in states], [("delivered", len(want_hooks))],
             "hooks: all delivered, one per event")

        # ---- the survivors keep serving; the other host hears at once -----------------------
        st, doc = post(a, "mh-late", b'{"late": 1}')
        t.ok(st == 200 and doc, "ingress a still answers 200", st)
        t0 = time.monotonic()
        ok = doc and wait_for(lambda: (kt.event_row(a.ep, doc["event_id"]) or {}).get("status")
                              == "handled", 20, 0.05)
        dt = time.monotonic() - t0
        t.ok(ok and dt < 10, "an event sent to host a (its worker dead) is handled by b within "
             "%.2f s: a notification, not the 30 s rescan" % dt)

        # knockctl on host a wakes every host's workers too.
        late_id = doc and doc["event_id"]
        t0 = time.monotonic()
        rc, out, err = a.ep.knockctl("replay", late_id)
        ok = rc == 0 and wait_for(lambda: len(a.ep.query(
            "SELECT 1 FROM attempts WHERE event_id = ? AND outcome = 'success'", (late_id,))) == 2,
            20, 0.05)
        dt = time.monotonic() - t0
        t.ok(ok and dt < 10, "knockctl replay on host a: run again by worker b within %.2f s" % dt,
             err)

        # A listening connection lost: the daemons go on, listen again, and
        # what was sent meanwhile is still handled at once.
        killed = a.ep.query("SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity "
                            "WHERE query LIKE 'LISTEN %'")
        t.ok(len(killed) >= 3, "the listeners' sessions terminated (%d)" % len(killed))
        st, doc = post(a, "mh-lost", b'{"lost": 1}')
        back = wait_for(lambda: "Listening for new events from other hosts again"
                        in b.ep.stderr("worker"), 10, 0.05)
        t.ok(back, "worker b listens again", b.ep.stderr("worker")[-1500:])
        t.ok(st == 200 and kt.final_event(a.ep, doc["event_id"], 10),
             "the event sent while it was not listening is handled")
        t0 = time.monotonic()
        st, doc = post(a, "mh-relisten", b'{"relisten": 1}')
        ok = st == 200 and wait_for(lambda: (kt.event_row(a.ep, doc["event_id"]) or {}).get(
            "status") == "handled", 20, 0.05)
        t.ok(ok and time.monotonic() - t0 < 10, "and the next one at once (%.2f s)"
             % (time.monotonic() - t0))
        t.ok("Lost the connection listening for new events" in b.ep.stderr("worker")
             and "Lost the connection listening for new hooks" in b.ep.stderr("deliver"),
             "the losses were logged")

        rc, out, err = a.ep.knockctl("status", "--json")
        daemons = json.loads(out)["daemons"] if rc == 0 else []
        seen = {(d["daemon"], d["host"]) for d in daemons}
        t.eq(seen, {(r, h) for r in ("ingress", "worker", "deliver") for h in "ab"},
             "knockctl status --json: every daemon of both hosts, with its host", err)
        states = {(d["daemon"], d["host"]): d["state"] for d in daemons}
        t.ok(states.get(("worker", "b")) == "running" and states.get(("ingress", "a")) == "running",
             "the survivors run", states)
        t.ok(wait_for(lambda: (lambda s: s.get(("worker", "a")) == "stale")(
            {(d["daemon"], d["host"]): d["state"]
             for d in json.loads(a.ep.knockctl("status", "--json")[1])["daemons"]}), 20),
             "the killed worker's heartbeat goes stale")
        rc, out, err = a.ep.knockctl("status")
        lines = out.splitlines()
        t.ok(rc == 0 and any(l.split()[:2] == ["worker", "b"] for l in lines if l.split())
             and any("HOST" in l for l in lines), "knockctl status: a HOST column", out)

        st, body = a.ep.admin_get("/readyz")
        doc = json.loads(body)
        others = {(o["daemon"], o["host"]) for o in doc.get("other_hosts", [])}
        t.eq(others, {(r, "b") for r in ("ingress", "worker", "deliver")},
             "/readyz of host a lists host b's daemons", body)
        t.eq(st, 503, "and judges its own: worker a is gone", body)
        st, body = a.ep.admin_get("/readyz")
        failing = [c["name"] for c in json.loads(body)["checks"] if not c["ok"]]
        t.eq(failing, ["worker_heartbeat"], "only worker a's heartbeat fails")
        # Stopped cleanly: no sanitizer report (ASan builds), no crash.
        reports = {}
        for h in (a, b):
            h.stop_all()
            for role in h.ep.procs:
                err = h.ep.stderr(role)
                if any(m in err for m in ("Sanitizer", "runtime error:")):
                    reports["%s/%s" % (h.tag, role)] = err[-2000:]
        t.eq(reports, {}, "no daemon of either host reported a sanitizer error")
    finally:
        for h in (a, b):
            if h:
                h.stop_all()
                h.ep.cleanup()
        rx.close()
        shutil.rmtree(logdir, ignore_errors=True)
    t.done()


if __name__ == "__main__":
    main()
