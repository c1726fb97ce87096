#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Crash and shutdown tests for knock-deliver (contract §8, §12).

1. kill -9 the deliverer while requests are on the wire (slow receiver),
   three times, restarting it each time: in the end every hook is delivered,
   every delivered hook has the attempt row of its 2xx, the interrupted
   attempts are recorded as lost, and nothing delivered is sent again.
2. SIGTERM: an attempt that ends before the stop deadline is recorded; one
   that does not is cancelled and its claim released without counting an
   attempt; the daemon exits 0 and the hook is delivered after a restart.
3. Leases: a claim of a holder that is gone is taken over at start; a live
   foreign lease is respected until it expires; a lease lost on the last
   attempt moves the hook to failed.
"""

import http.server
import json
import threading
import time

from knocktest import Endpoint, QuietHandler, Tap, wait_for

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Receiver:
    """Sleeps `delay[eid]` (default self.default_delay) then answers 200;
    records each request's event id, arrival and whether it answered."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []
        self.answered = []
        self.delay = {}
        self.default_delay = 0.0
        recv = self

        class Handler(QuietHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                eid = json.loads(body).get("event_id", "")
                with recv.lock:
                    recv.requests.append((eid, self.headers.get("webhook-id"), time.monotonic()))
                    d = recv.delay.get(eid, recv.default_delay)
                time.sleep(d)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                try:
                    self.wfile.write(b"ok")
                    self.wfile.flush()
                    with recv.lock:
                        recv.answered.append(eid)
                except OSError:
                    pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self, eid=None):
        with self.lock:
            return sum(1 for r in self.requests if eid is None or r[0] == eid)


def make_endpoint(name, url, extra):
    ep = Endpoint(name)
    ep.write_config("""[endpoint]
provider = none
allow_unverified = yes
listen = 127.0.0.1:%d
[hook]
url = %s
secret = literal:%s
%s
""" % (ep.port, url, SECRET, extra))
    rc, _, err = ep.knockctl("migrate")
    if rc != 0:
        raise RuntimeError(err)
    return ep


def add_hook(ep, eid, max_attempts=8, attempt_count=0, claimed_by=None, claim_until=None):
    now = int(time.time() * 1000)
    hid = "hk_" + eid
    payload = json.dumps({"type": "knock.event.handled", "endpoint": ep.name, "event_id": eid,
                          "provider_event_id": None, "event_type": "t", "status": "handled",
                          "attempts": 1, "finished_at": "2026-11-26T12:00:00.000Z",
                          "last_error": None})
    c = ep.db()
    with c:
        c.execute("INSERT INTO events (id, event_type, status, delivery_id, attempt_count, "
                  "received_at, updated_at) VALUES (?, 't', 'handled', ?, 1, ?, ?)",
                  (eid, "dlv_" + eid, now, now))
        c.execute("INSERT INTO hooks (id, event_id, type, payload, state, attempt_count, "
                  "max_attempts, created_at, updated_at, next_attempt_at, claimed_by, claim_until) "
                  "VALUES (?, ?, 'knock.event.handled', ?, 'pending', ?, ?, ?, ?, ?, ?, ?)",
                  (hid, eid, payload, attempt_count, max_attempts, now, now, now, claimed_by,
                   claim_until))
    c.close()
    return hid


def hooks(ep):
    return {h["id"]: h for h in ep.query("SELECT * FROM hooks")}


def no_delivered_without_2xx(ep):
    """Hooks marked delivered that lack a 2xx attempt row at or before delivered_at."""
    return [r["id"] for r in ep.query(
        "SELECT h.id FROM hooks h WHERE h.state = 'delivered' AND NOT EXISTS ("
        " SELECT 1 FROM hook_attempts a WHERE a.hook_id = h.id AND a.status BETWEEN 200 AND 299"
        " AND a.at <= h.delivered_at)")]


def test_kill9(t):
    rx = Receiver()
    rx.default_delay = 0.4
    ep = make_endpoint("dcrash", "http://127.0.0.1:%d/" % rx.port,
                       "concurrency = 4\ntimeout = 10s\nschedule = 0s, 100ms")
    n = 40
    try:
        ids = [add_hook(ep, "c-%02d" % i) for i in range(n)]
        killed = []
        for round_ in range(3):
            p = ep.start("knock-deliver", extra_env={"KNOCK_HOOK_MIN_BACKOFF_MS": "0"})
            base = rx.count()
            # Mid-send: the receiver is holding requests of this process.
            wait_for(lambda: rx.count() >= base + 6, 20)
            time.sleep(0.15)
            held = [h for h in hooks(ep).values()
                    if h["claimed_by"] == ep.holder("deliver", p.pid)]
            ep.kill9("deliver")
            killed.append(p.pid)
            t.ok(held, "round %d: kill -9 with %d hooks claimed (mid-send)" % (round_ + 1, len(held)))
            t.eq(no_delivered_without_2xx(ep), [],
                 "round %d: after kill -9 no hook is delivered without a 2xx row" % (round_ + 1))

        start = time.monotonic()
        ep.start("knock-deliver", extra_env={"KNOCK_HOOK_MIN_BACKOFF_MS": "0"})
        done = wait_for(lambda: all(h["state"] == "delivered" for h in hooks(ep).values()), 60)
        t.ok(done, "after the restart every hook is delivered",
             [(h["id"], h["state"]) for h in hooks(ep).values() if h["state"] != "delivered"])
        t.ok(time.monotonic() - start < 30,
             "claims of the killed deliverers are taken over at once, not after the lease (%.1f s)"
             % (time.monotonic() - start))
        t.eq(no_delivered_without_2xx(ep), [], "no hook is delivered without a 2xx attempt row")
        with rx.lock:
            answered = set(rx.answered)
        t.eq([h["event_id"] for h in hooks(ep).values()
              if h["state"] == "delivered" and h["event_id"] not in answered], [],
             "the receiver answered 200 for every hook marked delivered")
        two = ep.query("SELECT hook_id, count(*) n FROM hook_attempts WHERE status BETWEEN 200 AND 299"
                       " GROUP BY hook_id HAVING count(*) > 1")
        t.eq(two, [], "exactly one 2xx attempt per hook")
        lost = ep.query("SELECT * FROM hook_attempts WHERE status = 0")
        t.ok(lost and all("lease expired" in r["error"]
                          and any(ep.holder("deliver", k) in r["error"] for k in killed)
                          for r in lost),
             "interrupted attempts recorded as lost, naming the dead holder (%d)" % len(lost),
             [r["error"] for r in lost][:3])
        with rx.lock:
            got = {r[0] for r in rx.requests}
            ids_on_wire = [r[1] for r in rx.requests]
        t.eq(got, {"c-%02d" % i for i in range(n)}, "every hook reached the receiver")
        t.ok(set(ids_on_wire) == set(ids), "webhook-id is the hook id on every request")
        resent = len(ids_on_wire) - n
        t.ok(resent <= len(lost), "only interrupted attempts were sent again (%d resent, %d lost)"
             % (resent, len(lost)))

        count = rx.count()
        ep.stop("deliver")
        ep.start("knock-deliver", extra_env={"KNOCK_HOOK_MIN_BACKOFF_MS": "0"})
        time.sleep(1.0)
        t.eq(rx.count(), count, "a delivered hook is never sent again (restart, 1 s)")
        t.eq(ep.stop("deliver"), 0, "clean stop")
    finally:
        ep.cleanup()
        rx.server.shutdown()


def test_sigterm(t):
    rx = Receiver()
    rx.delay = {"s-quick": 0.5, "s-slow": 5.0}
    ep = make_endpoint("dterm", "http://127.0.0.1:%d/" % rx.port, "timeout = 10s")
    try:
        quick = add_hook(ep, "s-quick")
        slow = add_hook(ep, "s-slow")
        p = ep.start("knock-deliver", extra_env={"KNOCK_STOP_TIMEOUT": "1500ms"})
        wait_for(lambda: rx.count() == 2, 10)
        t0 = time.monotonic()
        rc = ep.stop("deliver", timeout=10)
        took = time.monotonic() - t0
        t.eq(rc, 0, "SIGTERM with attempts on the wire: exit 0")
        t.ok(1.2 <= took < 4.0, "waited for the stop deadline, not for the slow receiver (%.1f s)"
             % took)
        h = hooks(ep)
        t.eq((h[quick]["state"], h[quick]["attempt_count"]), ("delivered", 1),
             "an attempt ending before the deadline is recorded (delivered)")
        t.eq((h[slow]["state"], h[slow]["attempt_count"], h[slow]["claimed_by"],
              h[slow]["claim_until"]), ("pending", 0, None, None),
             "a cut-short attempt: claim released, no attempt counted")
        t.eq(ep.query("SELECT count(*) n FROM hook_attempts WHERE hook_id = ?", (slow,))[0]["n"], 0,
             "a cut-short attempt leaves no attempt row")
        st = ep.notify["deliver"].seen("STATUS")
        t.ok(any(s.startswith("stopping:") or "in flight" in s for s in st), "STATUS during stop",
             st[-3:])
        t.ok("STOPPING=1" in "\n".join(ep.notify["deliver"].messages), "STOPPING=1 sent")
        rx.delay["s-slow"] = 0
        ep.start("knock-deliver")
        h = wait_for(lambda: hooks(ep)[slow]["state"] == "delivered" and hooks(ep)[slow], 10)
        t.ok(h and h["attempt_count"] == 1, "after a restart the released hook is delivered "
             "(attempt 1)", hooks(ep)[slow])
    finally:
        ep.cleanup()
        rx.server.shutdown()


def test_leases(t):
    rx = Receiver()
    ep = make_endpoint("dlease", "http://127.0.0.1:%d/" % rx.port, "timeout = 5s")
    try:
        far = int(time.time() * 1000) + 3600 * 1000
        gone = add_hook(ep, "l-gone", claimed_by=ep.holder("deliver", 999999999), claim_until=far)
        soon = int(time.time() * 1000) + 2500
        foreign = add_hook(ep, "l-foreign", claimed_by="deliver-on-other-host", claim_until=soon)
        last = add_hook(ep, "l-last", max_attempts=3, attempt_count=2,
                        claimed_by=ep.holder("deliver", 999999998), claim_until=far)
        t0 = time.monotonic()
        ep.start("knock-deliver")
        h = wait_for(lambda: hooks(ep)[gone]["state"] == "delivered" and hooks(ep)[gone], 10)
        t.ok(h and time.monotonic() - t0 < 2.0,
             "a claim of a holder that is gone is taken over at start", hooks(ep)[gone])
        a = ep.query("SELECT status, error FROM hook_attempts WHERE hook_id = ? ORDER BY at, id",
                     (gone,))
        t.ok(len(a) == 2 and a[0]["status"] == 0
             and ep.holder("deliver", 999999999) in a[0]["error"]
             and a[1]["status"] == 200, "its lost attempt is recorded, then the new one", a)
        t.eq(hooks(ep)[gone]["attempt_count"], 2, "the lost attempt counts")

        h = hooks(ep)[last]
        t.eq((h["state"], h["attempt_count"]), ("failed", 3),
             "a lease lost on the last attempt moves the hook to failed")
        t.eq(rx.count("l-last"), 0, "... and it is not sent again")

        t.eq(rx.count("l-foreign"), 0, "a live foreign lease is respected")
        h = wait_for(lambda: hooks(ep)[foreign]["state"] == "delivered" and hooks(ep)[foreign], 10)
        t.ok(h and time.monotonic() - t0 >= 1.5, "it is taken when the lease runs out",
             hooks(ep)[foreign])
    finally:
        ep.cleanup()
        rx.server.shutdown()


def main():
    t = Tap()
    test_kill9(t)
    test_sigterm(t)
    test_leases(t)
    t.done()


main()
