#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""knock-deliver against real local receivers (contract §8, §11).

HTTP (http.server, HTTP/1.1 keep-alive), behaviour chosen per event id:
delivered first time; 503, 503, 200 → delivered on the third attempt;
429 with Retry-After honoured (and clamped to twice the schedule); the
minimum wait after a 429 and after a timeout; 400 and 410 → failed at once;
302 → retried, never followed; a receiver that hangs → timeout → retried;
attempts exhausted → failed; the stored response is cut at 20,000 bytes;
knockctl redeliver-hook of a failed hook → delivered; a delivered hook is
never sent again; a refused connection is retried.

Every request is checked with an independent Standard Webhooks verifier
written here from the spec (HMAC-SHA256 over "id.timestamp.body" keyed with
the base64-decoded whsec_ secret, space-separated "v1,<b64>" entries), with
two secrets configured.

HTTPS with a test CA made by the openssl CLI: delivered to an IP literal and
to a host name (SNI checked); a certificate for another name → the error is
recorded and the hook retried; an untrusted CA → the same.

The dead-letter journal record (MESSAGE_ID, KNOCK_* fields) is checked in a
private journald when the test runs as root.
"""

import base64
import hashlib
import hmac
import http.server
import json
import os
import shutil
import socket
import ssl
import sys
import tempfile
import threading
import time

import knocktest as kt
from knocktest import Endpoint, Tap, free_port, wait_for

MSGID_HOOK_FAILED = "a06c50cafbf14e209e9e85c790d83374"
SECRET_A = "whsec_" + base64.b64encode(b"knock-deliver-test-secret-A-32by").decode()
SECRET_B = "whsec_" + base64.b64encode(os.urandom(24)).decode()
SECRET_WRONG = "whsec_" + base64.b64encode(b"not-the-secret-at-all").decode()


# ---- an independent Standard Webhooks verifier (from the spec) ------------------------

def sw_verify(secret, headers, body, tolerance=300):
    """True when one entry of webhook-signature is HMAC-SHA256(key, id.ts.body)
    with key = base64 decode of the secret after whsec_, and ts is fresh."""
    msg_id = headers.get("webhook-id")
    ts = headers.get("webhook-timestamp")
    sigs = headers.get("webhook-signature")
    if not msg_id or not ts or not sigs or not ts.isdigit():
        return False
    if abs(time.time() - int(ts)) > tolerance:
        return False
    key = base64.b64decode(secret[len("whsec_"):])
    content = msg_id.encode() + b"." + ts.encode() + b"." + body
    want = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    for entry in sigs.split(" "):
        version, _, sig = entry.partition(",")
        if version == "v1" and hmac.compare_digest(sig, want):
            return True
    return False


# ---- receivers --------------------------------------------------------------------------

class Receiver:
    """Records every request; answers per event id from a script of
    responses (the last one repeats). A response is (status, headers, body)
    or ("sleep", seconds, status)."""

    def __init__(self, tls_context=None, family=socket.AF_INET, host="127.0.0.1"):
        self.requests = []
        self.lock = threading.Lock()
        self.script = {}
        self.sni = []
        recv = self

        class Handler(kt.QuietHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    eid = json.loads(body).get("event_id", "")
                except ValueError:
                    eid = ""
                hdrs = {k.lower(): v for k, v in self.headers.items()}
                with recv.lock:
                    n = sum(1 for r in recv.requests if r["eid"] == eid)
                    recv.requests.append({"eid": eid, "path": self.path, "headers": hdrs,
                                          "body": body, "at": time.monotonic(),
                                          "peer": self.client_address[1]})
                    steps = recv.script.get(eid, [(200, {}, b"ok")])
                    step = steps[min(n, len(steps) - 1)]
                if step[0] == "sleep":
                    time.sleep(step[1])
                    step = (step[2], {}, b"late")
                code, extra, out = step
                self.send_response(code)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                try:
                    self.wfile.write(out)
                except OSError:
                    pass

            def do_GET(self):
                with recv.lock:
                    recv.requests.append({"eid": "GET " + self.path, "path": self.path,
                                          "headers": {}, "body": b"", "at": time.monotonic(),
                                          "peer": 0})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        class Server(http.server.ThreadingHTTPServer):
            address_family = family
            daemon_threads = True

            def server_bind(self):
                if family == socket.AF_INET6:
                    self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                super().server_bind()

        self.server = Server((host, 0), Handler)
        if tls_context is not None:
            def on_sni(sock, name, ctx):
                with recv.lock:
                    recv.sni.append(name)
            tls_context.sni_callback = on_sni
            self.server.socket = tls_context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of(self, eid):
        with self.lock:
            return [r for r in self.requests if r["eid"] == eid]

    def all(self):
        with self.lock:
            return list(self.requests)


# ---- endpoints and hooks -----------------------------------------------------------------

def make_endpoint(name, url, hook_extra="", secrets=(SECRET_A, SECRET_B)):
    ep = Endpoint(name)
    ep.write_config("""[endpoint]
provider = none
allow_unverified = yes
listen = 127.0.0.1:%d
[hook]
url = %s
%s
%s
""" % (ep.port, url, "\n".join("secret = literal:" + s for s in secrets), hook_extra))
    rc, out, err = ep.knockctl("migrate")
    if rc != 0:
        raise RuntimeError("knockctl migrate failed: " + err)
    return ep


def add_hook(ep, eid, status="handled", max_attempts=3, hid=None):
    """An event in its final state and its pending hook, as the worker's
    outbox writes them."""
    now = int(time.time() * 1000)
    hid = hid or "hk_" + eid
    payload = json.dumps({"type": "knock.event." + status, "endpoint": ep.name, "event_id": eid,
                          "provider_event_id": "pe-" + eid, "event_type": "test.thing",
                          "status": status, "attempts": 1,
                          "finished_at": "2026-11-26T12:00:00.000Z", "last_error": None},
                         separators=(",", ":"))
    c = ep.db()
    with c:
        c.execute("INSERT INTO events (id, provider_event_id, event_type, status, delivery_id, "
                  "attempt_count, received_at, updated_at, finished_at) "
                  "VALUES (?, ?, 'test.thing', ?, ?, 1, ?, ?, ?)",
                  (eid, "pe-" + eid, status, "dlv_" + eid, now, now, now))
        c.execute("INSERT INTO hooks (id, event_id, type, payload, state, attempt_count, "
                  "max_attempts, created_at, updated_at, next_attempt_at) "
                  "VALUES (?, ?, ?, ?, 'pending', 0, ?, ?, ?, ?)",
                  (hid, eid, "knock.event." + status, payload, max_attempts, now, now, now))
    c.close()
    return hid, payload.encode()


def wake(ep):
    kt.wake(ep, "deliver", ignore_errors=True)


def hook(ep, hid):
    rows = ep.query("SELECT * FROM hooks WHERE id = ?", (hid,))
    return rows[0] if rows else {}


def attempts(ep, hid):
    return ep.query("SELECT * FROM hook_attempts WHERE hook_id = ? ORDER BY at, id", (hid,))


def settled(ep, hid, timeout=20):
    return wait_for(lambda: hook(ep, hid).get("state") in ("delivered", "failed")
                    and hook(ep, hid), timeout=timeout)


def gaps(reqs):
    return [round(b["at"] - a["at"], 3) for a, b in zip(reqs, reqs[1:])]


# ---- HTTP ---------------------------------------------------------------------------------

def test_http(t):
    rx = Receiver()
    big = b"x" * 50000
    rx.script.update({
        "e-ok": [(200, {}, b"thanks")],
        "e-flaky": [(503, {}, b"busy"), (503, {}, b"busy"), (200, {}, b"ok")],
        "e-ra": [(429, {"Retry-After": "2"}, b"slow down"), (200, {}, b"ok")],
        "e-radate": [(503, {"Retry-After": time.strftime(
            "%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 3600))}, b""),
            (200, {}, b"ok")],
        "e-429": [(429, {}, b""), (200, {}, b"ok")],
        "e-bad": [(400, {}, b"no such thing")],
        "e-gone": [(410, {}, b"gone")],
        "e-redirect": [(302, {"Location": "/elsewhere"}, b"")],
        "e-hang": [("sleep", 5, 200), (200, {}, b"ok")],
        "e-exhaust": [(500, {}, b"broken")],
        "e-big": [(500, {}, big), (204, {}, b"")],
    })
    url = "http://127.0.0.1:%d/hooks/in?src=knock" % rx.port
    # A 2 s timeout: long enough that a loaded CI machine does not time out
    # the quick receivers, short enough for the hanging one (5 s).
    ep = make_endpoint("dlv", url, """max_attempts = 3
timeout = 2s
schedule = 0s, 1s, 1s
concurrency = 8""")
    try:
        ids = {}
        for eid in rx.script:
            ids[eid] = add_hook(ep, eid)
        dead_hid, dead_payload = add_hook(ep, "e-dead", status="dead")
        rx.script["e-dead"] = [(200, {}, b"ok")]
        ids["e-dead"] = (dead_hid, dead_payload)

        p = ep.start("knock-deliver", extra_env={"KNOCK_HOOK_MIN_BACKOFF_MS": "1500"})
        nl = ep.notify["deliver"]
        t.ok(nl.seen("READY"), "READY=1 sent", ep.stderr("deliver"))

        final = {eid: settled(ep, hid, 30) for eid, (hid, _) in ids.items()}
        t.ok(all(final.values()), "every hook settles (delivered or failed)",
             {k: hook(ep, v[0]).get("state") for k, v in ids.items()})

        # -- delivered first time, with the contract's headers and body
        hid, payload = ids["e-ok"]
        h, reqs = hook(ep, hid), rx.of("e-ok")
        t.eq((h.get("state"), h.get("attempt_count"), h.get("last_status")),
             ("delivered", 1, 200), "200: delivered on the first attempt")
        t.ok(h.get("delivered_at") and h.get("claimed_by") is None and h.get("claim_until") is None,
             "delivered: delivered_at set, claim cleared", h)
        t.eq(len(reqs), 1, "200: one request")
        if reqs:
            r = reqs[0]
            t.eq(r["path"], "/hooks/in?src=knock", "request path and query from [hook] url")
            t.eq(r["body"], payload, "body is the stored payload")
            t.eq(r["headers"].get("content-type"), "application/json", "Content-Type")
            t.ok(r["headers"].get("user-agent", "").startswith("knock/"), "User-Agent knock/VERSION",
                 r["headers"].get("user-agent"))
            t.eq(r["headers"].get("webhook-id"), hid, "webhook-id is the hook id")
            ts = int(r["headers"].get("webhook-timestamp", "0"))
            t.ok(abs(ts - time.time()) < 30, "webhook-timestamp is now (seconds)", ts)
            sig = r["headers"].get("webhook-signature", "")
            t.eq(len(sig.split(" ")), 2, "two secrets: two space-separated signature entries")
            t.ok(all(e.startswith("v1,") for e in sig.split(" ")), "entries are v1,<base64>", sig)
            t.ok(sw_verify(SECRET_A, r["headers"], r["body"]), "verifies with the first secret")
            t.ok(sw_verify(SECRET_B, r["headers"], r["body"]), "verifies with the second secret")
            t.ok(not sw_verify(SECRET_WRONG, r["headers"], r["body"]),
                 "does not verify with another secret")
            t.ok(not sw_verify(SECRET_A, r["headers"], r["body"] + b" "),
                 "does not verify with a changed body")
        rows = attempts(ep, hid)
        t.eq([(a["status"], a["response"], a["error"]) for a in rows], [(200, "thanks", None)],
             "attempt row: status 200, response body, no error")
        t.ok(rows and 0 <= rows[0]["duration_ms"] < 5000, "attempt row: duration", rows)

        every = [r for r in rx.all() if not r["eid"].startswith("GET")]
        bad = [r["eid"] for r in every if not (sw_verify(SECRET_A, r["headers"], r["body"])
                                               and sw_verify(SECRET_B, r["headers"], r["body"]))]
        t.eq(bad, [], "every request of every attempt verifies with both secrets (%d requests)"
             % len(every))
        t.ok(len({r["peer"] for r in every}) < len(every),
             "keep-alive: connections are reused (%d requests, %d connections)"
             % (len(every), len({r["peer"] for r in every})))

        # -- 503, 503, 200
        hid, _ = ids["e-flaky"]
        h, reqs = hook(ep, hid), rx.of("e-flaky")
        t.eq((h.get("state"), h.get("attempt_count"), h.get("last_status")),
             ("delivered", 3, 200), "503, 503, 200: delivered on the third attempt")
        t.eq([a["status"] for a in attempts(ep, hid)], [503, 503, 200],
             "503, 503, 200: three attempt rows")
        t.eq({r["headers"].get("webhook-id") for r in reqs}, {hid},
             "webhook-id is the same on every attempt")
        g = gaps(reqs)
        t.ok(len(g) == 2 and all(0.75 <= x <= 2.5 for x in g),
             "waits follow the schedule (1 s ±20 %%): %s" % g)
        t.eq(attempts(ep, hid)[0]["error"], "HTTP 503", "attempt error says HTTP 503")

        # -- Retry-After
        g = gaps(rx.of("e-ra"))
        t.eq(hook(ep, ids["e-ra"][0]).get("state"), "delivered", "429 then 200: delivered")
        t.ok(len(g) == 1 and 1.95 <= g[0] < 3.5,
             "429 with Retry-After: 2 waits 2 s, not the scheduled 1 s (%s)" % g)
        g = gaps(rx.of("e-radate"))
        t.ok(len(g) == 1 and 1.95 <= g[0] < 3.5,
             "Retry-After as an HTTP date an hour ahead is clamped to twice the schedule (%s)" % g)
        g = gaps(rx.of("e-429"))
        t.ok(len(g) == 1 and 1.45 <= g[0] < 3.0,
             "429 without Retry-After waits at least the minimum (1.5 s in this test): %s" % g)

        # -- permanent failures
        for eid, code in (("e-bad", 400), ("e-gone", 410)):
            h = hook(ep, ids[eid][0])
            t.eq((h.get("state"), h.get("attempt_count"), h.get("last_status")),
                 ("failed", 1, code), "%d: failed at once" % code)
            t.ok("permanent" in (h.get("last_error") or ""), "%d: last_error says permanent" % code,
                 h.get("last_error"))
            t.ok(h.get("last_attempt_at") and h.get("next_attempt_at") is None,
                 "%d: last attempt time kept, no next attempt" % code, h)

        # -- redirects are not followed
        h = hook(ep, ids["e-redirect"][0])
        t.eq((h.get("state"), h.get("attempt_count"), h.get("last_status")),
             ("failed", 3, 302), "302: retried (3 attempts), then failed")
        t.eq([r for r in rx.all() if "elsewhere" in r["path"]], [], "302: Location never followed")

        # -- a receiver that hangs
        hid = ids["e-hang"][0]
        rows = attempts(ep, hid)
        t.eq(hook(ep, hid).get("state"), "delivered", "hang: delivered on a later attempt")
        t.ok(len(rows) == 2 and rows[0]["status"] == 0 and "timed out" in (rows[0]["error"] or ""),
             "hang: first attempt recorded as status 0, timed out", rows)
        t.ok(rows and 1900 <= rows[0]["duration_ms"] < 3500,
             "hang: the attempt ended at the 2 s timeout (%s ms)" % (rows[0]["duration_ms"] if rows else None))
        g = gaps(rx.of("e-hang"))
        t.ok(len(g) == 1 and g[0] >= 1.45 + 1.9,
             "hang: after a timeout the wait is at least the minimum (%s s incl. the timeout)" % g)

        # -- exhausted
        hid = ids["e-exhaust"][0]
        h = hook(ep, hid)
        t.eq((h.get("state"), h.get("attempt_count"), h.get("last_status"), h.get("last_error")),
             ("failed", 3, 500, "HTTP 500"), "500 ×3: failed after max_attempts")
        t.eq(len(attempts(ep, hid)), 3, "500 ×3: three attempt rows")

        # -- stored response bounded
        rows = attempts(ep, ids["e-big"][0])
        t.ok(len(rows) == 2 and len(rows[0]["response"] or "") == 20000,
             "a 50,000-byte response is stored as its first 20,000 bytes",
             [len(r["response"] or "") for r in rows])
        t.eq(hook(ep, ids["e-big"][0]).get("state"), "delivered", "204 counts as delivered")
        t.eq(hook(ep, dead_hid).get("state"), "delivered", "a knock.event.dead hook is delivered")
        t.eq(json.loads(rx.of("e-dead")[0]["body"])["type"] if rx.of("e-dead") else None,
             "knock.event.dead", "dead hook payload type")

        # -- no extra requests for anything settled
        counts = {eid: len(rx.of(eid)) for eid in ids}
        time.sleep(1.5)
        t.eq({eid: len(rx.of(eid)) for eid in ids}, counts,
             "nothing settled is sent again while the deliverer runs")

        # -- STATUS
        st = nl.seen("STATUS")
        t.ok(any("in flight" in s and "pending" in s for s in st), "STATUS= has in-flight and pending",
             st[-3:])

        # -- redeliver a failed hook
        hid = ids["e-bad"][0]
        rx.script["e-bad"] = [(200, {}, b"fixed")]
        rc, out, err = ep.knockctl("redeliver-hook", hid)
        t.eq(rc, 0, "knockctl redeliver-hook succeeds", err)
        h = wait_for(lambda: hook(ep, hid).get("state") == "delivered" and hook(ep, hid), 10)
        t.ok(h and h.get("attempt_count") == 1 and h.get("last_status") == 200,
             "redelivered hook: delivered as a new series (attempt 1)", hook(ep, hid))
        t.eq([a["status"] for a in attempts(ep, hid)], [400, 200], "redeliver: both attempts kept")
        t.eq({r["headers"].get("webhook-id") for r in rx.of("e-bad")}, {hid},
             "redeliver: same webhook-id")

        # -- at-most-once across a restart
        counts = {eid: len(rx.of(eid)) for eid in ids}
        t.eq(ep.stop("deliver"), 0, "SIGTERM: clean exit")
        ep.start("knock-deliver", extra_env={"KNOCK_HOOK_MIN_BACKOFF_MS": "1500"})
        wake(ep)
        time.sleep(1.5)
        t.eq({eid: len(rx.of(eid)) for eid in ids}, counts,
             "after a restart nothing delivered or failed is sent again")
        ep.stop("deliver")
        t.ok("warning" in ep.stderr("deliver") and "failed after 3 attempts" in ep.stderr("deliver"),
             "dead-letter and retry records logged", ep.stderr("deliver")[-1500:])
    finally:
        ep.cleanup()
        rx.server.shutdown()


def test_refused(t):
    port = free_port()
    ep = make_endpoint("refused", "http://127.0.0.1:%d/" % port,
                       "max_attempts = 2\ntimeout = 1s\nschedule = 0s, 200ms")
    try:
        hid, _ = add_hook(ep, "e-refused", max_attempts=2)
        ep.start("knock-deliver", extra_env={"KNOCK_HOOK_MIN_BACKOFF_MS": "0"})
        h = settled(ep, hid, 15)
        rows = attempts(ep, hid)
        t.ok(h and h["state"] == "failed" and h["attempt_count"] == 2,
             "connection refused: retried, then failed", h)
        t.ok(len(rows) == 2 and all(r["status"] == 0 and r["error"] for r in rows),
             "connection refused: attempts with status 0 and the error", rows)
    finally:
        ep.cleanup()


# ---- HTTPS --------------------------------------------------------------------------------

def make_pki(d):
    """A CA, a server certificate for localhost/127.0.0.1 and one for wrong.example."""
    kt.make_pki(d, (("good", "DNS:localhost,IP:127.0.0.1,IP:::1"), ("wrong", "DNS:wrong.example")))


def server_ctx(d, name):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(d, name + ".pem"), os.path.join(d, name + ".key"))
    return ctx


def test_https(t):
    if not shutil.which("openssl"):
        t.ok(True, "https: skipped (no openssl CLI) # SKIP")
        return
    d = tempfile.mkdtemp(prefix="knock-pki-")
    eps = []
    try:
        make_pki(d)
        ca = os.path.join(d, "ca.pem")
        try:
            good = Receiver(server_ctx(d, "good"), socket.AF_INET6, "::")
        except OSError:
            good = Receiver(server_ctx(d, "good"))
        try:
            wrong = Receiver(server_ctx(d, "wrong"), socket.AF_INET6, "::")
        except OSError:
            wrong = Receiver(server_ctx(d, "wrong"))
        cfg = "max_attempts = 5\ntimeout = 2s\nschedule = 0s, 300ms"
        env = {"KNOCK_HOOK_CA_FILE": ca, "KNOCK_HOOK_MIN_BACKOFF_MS": "0"}

        ep_ip = make_endpoint("tlsip", "https://127.0.0.1:%d/tls" % good.port, cfg,
                              secrets=(SECRET_A,))
        ep_name = make_endpoint("tlsname", "https://localhost:%d/tls" % good.port, cfg,
                                secrets=(SECRET_A,))
        ep_wrong = make_endpoint("tlswrong", "https://localhost:%d/" % wrong.port, cfg)
        ep_wrongip = make_endpoint("tlswrongip", "https://127.0.0.1:%d/" % wrong.port, cfg)
        ep_untrusted = make_endpoint("tlsuntr", "https://127.0.0.1:%d/" % good.port, cfg)
        eps = [ep_ip, ep_name, ep_wrong, ep_wrongip, ep_untrusted]
        h_ip, _ = add_hook(ep_ip, "t-ip", max_attempts=5)
        h_name, _ = add_hook(ep_name, "t-name", max_attempts=5)
        h_wrong, _ = add_hook(ep_wrong, "t-wrong", max_attempts=5)
        h_wrongip, _ = add_hook(ep_wrongip, "t-wrongip", max_attempts=5)
        h_untr, _ = add_hook(ep_untrusted, "t-untrusted", max_attempts=5)
        for ep in (ep_ip, ep_name, ep_wrong, ep_wrongip):
            ep.start("knock-deliver", extra_env=env)
        ep_untrusted.start("knock-deliver", extra_env={"KNOCK_HOOK_MIN_BACKOFF_MS": "0"})

        h = settled(ep_ip, h_ip, 15)
        t.ok(h and h["state"] == "delivered" and h["last_status"] == 200,
             "https to an IP literal with the test CA: delivered", ep_ip.stderr("deliver")[-800:])
        reqs = good.of("t-ip")
        t.ok(reqs and sw_verify(SECRET_A, reqs[0]["headers"], reqs[0]["body"]),
             "https: the signature verifies")
        t.eq(len(reqs[0]["headers"].get("webhook-signature", "").split(" ")) if reqs else 0, 1,
             "one secret: one signature entry")

        h = settled(ep_name, h_name, 15)
        t.ok(h and h["state"] == "delivered", "https to a host name (localhost): delivered",
             (h, attempts(ep_name, h_name), ep_name.stderr("deliver")[-800:]))
        t.ok("localhost" in good.sni, "SNI carries the host name", good.sni)

        rows = wait_for(lambda: len(attempts(ep_wrong, h_wrong)) >= 2 and attempts(ep_wrong, h_wrong),
                        15)
        t.ok(rows and all(r["status"] == 0 for r in rows), "wrong host name: no response (status 0)",
             rows)
        t.ok(rows and "hostname mismatch" in (rows[0]["error"] or "").lower(),
             "wrong host name: the error says the name does not match (%s)"
             % (rows[0]["error"] if rows else None))
        h = hook(ep_wrong, h_wrong)
        t.ok(h.get("state") in ("pending", "failed") and h.get("attempt_count", 0) >= 2,
             "wrong host name: retried", h)
        t.eq(wrong.of("t-wrong"), [], "wrong host name: no request was sent")

        rows = wait_for(lambda: len(attempts(ep_wrongip, h_wrongip)) >= 2
                        and attempts(ep_wrongip, h_wrongip), 15)
        t.ok(rows and "ip address mismatch" in (rows[0]["error"] or "").lower(),
             "IP literal not in the certificate: error recorded (%s)"
             % (rows[0]["error"] if rows else None))
        t.eq(wrong.of("t-wrongip"), [], "IP literal not in the certificate: no request was sent")

        rows = wait_for(lambda: len(attempts(ep_untrusted, h_untr)) >= 2
                        and attempts(ep_untrusted, h_untr), 15)
        t.ok(rows and "certificate verify failed" in (rows[0]["error"] or ""),
             "untrusted CA: certificate verify failed recorded (%s)"
             % (rows[0]["error"] if rows else None))
        t.eq(good.of("t-untrusted"), [], "untrusted CA: no request was sent")
    finally:
        for ep in eps:
            ep.cleanup()
        shutil.rmtree(d, ignore_errors=True)


# ---- the whole chain ---------------------------------------------------------------------

def test_chain(t):
    """ingress → worker (exec:/bin/true) → outbox → deliver, woken by datagrams."""
    if not (os.path.exists(kt.binary("knock-worker")) and os.path.exists(kt.binary("knock-ingress"))):
        t.ok(True, "chain: skipped (worker or ingress not built) # SKIP")
        return
    rx = Receiver()
    ep = make_endpoint("chain", "http://127.0.0.1:%d/done" % rx.port,
                       "on = handled\n[worker]\nhandler = exec:/bin/true",
                       secrets=(SECRET_A,))
    try:
        ep.start_ingress()
        ep.start("knock-worker")
        ep.start("knock-deliver")
        time.sleep(0.3)
        t0 = time.monotonic()
        st, _, _ = ep.post(b'{"id":"chain-1"}', {"Content-Type": "application/json"})
        t.ok(200 <= st < 300, "chain: ingress accepts the webhook (%d)" % st)
        reqs = wait_for(lambda: rx.all(), 10)
        took = time.monotonic() - t0
        t.ok(reqs, "chain: the completion hook arrives", (ep.stderr("worker")[-500:],
                                                          ep.stderr("deliver")[-500:]))
        if reqs:
            r = reqs[0]
            body = json.loads(r["body"])
            ev = ep.query("SELECT * FROM events")
            t.eq((body.get("type"), body.get("status"), body.get("endpoint")),
                 ("knock.event.handled", "handled", "chain"), "chain: payload type, status, endpoint")
            t.eq(body.get("event_id"), ev[0]["id"] if ev else None, "chain: payload event_id")
            t.ok(sw_verify(SECRET_A, r["headers"], r["body"]), "chain: signature verifies")
            t.ok(took < 3.0, "chain: woken by datagrams, no polling delay (%.2f s)" % took)
            h = wait_for(lambda: ep.query("SELECT * FROM hooks WHERE state = 'delivered'"), 5)
            t.ok(h and h[0]["id"] == r["headers"].get("webhook-id"), "chain: hook row delivered")
    finally:
        ep.cleanup()
        rx.server.shutdown()


# ---- journal ------------------------------------------------------------------------------

def journal_child(t):
    """Runs inside a private mount namespace with a private journald."""
    rx = Receiver()
    rx.script["j-gone"] = [(410, {}, b"gone")]
    ep = make_endpoint("jdlv", "http://127.0.0.1:%d/" % rx.port)
    ep.env["KNOCK_LOG"] = "journal"
    try:
        hid, _ = add_hook(ep, "j-gone")
        ep.start("knock-deliver")
        settled(ep, hid, 10)
        ep.stop("deliver")

        def records():
            return kt.journal_records("MESSAGE_ID=" + MSGID_HOOK_FAILED)
        recs = wait_for(lambda: [r for r in records() if r.get("KNOCK_HOOK_ID") == hid], 5)
        t.ok(recs, "journal: dead-letter record with MESSAGE_ID=" + MSGID_HOOK_FAILED)
        if recs:
            r = recs[0]
            t.eq(r.get("KNOCK_EVENT_ID"), "j-gone", "journal: KNOCK_EVENT_ID")
            t.eq(r.get("KNOCK_HTTP_STATUS"), "410", "journal: KNOCK_HTTP_STATUS")
            t.eq(r.get("KNOCK_ENDPOINT"), "jdlv", "journal: KNOCK_ENDPOINT")
            t.eq(r.get("KNOCK_DAEMON"), "deliver", "journal: KNOCK_DAEMON")
            t.eq(r.get("KNOCK_STATUS"), "failed", "journal: KNOCK_STATUS")
            t.ok(r.get("KNOCK_ERROR"), "journal: KNOCK_ERROR says why")
            t.eq(r.get("PRIORITY"), "3", "journal: error priority")
            t.ok(SECRET_A[6:] not in json.dumps(records()), "journal: the secret never appears")
    finally:
        ep.cleanup()


def main():
    kt.journal_child_main(journal_child)
    t = Tap()
    if not os.path.exists(kt.binary("knock-deliver")):
        t.skip_all("knock-deliver not built")
    test_http(t)
    test_refused(t)
    test_https(t)
    test_chain(t)
    kt.run_journal_child(t, __file__)
    t.done()


main()
