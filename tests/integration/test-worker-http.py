#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""knock-worker with an http:// forward handler against a real local HTTP
server (http.server, HTTP/1.1 keep-alive): 200 → handled, 503 → retried
(then handled, or dead when attempts run out), 400 → dead at once, a slow
response → timeout and retry, a refused connection → retry; the stored
body and content type and the X-Knock-* headers arrive; connections are
reused (keep-alive).
"""

import http.server
import threading
import time

from knocktest import Endpoint, QuietHandler, Tap, free_port, insert_event, wake
from knocktest import event_attempts as attempts, event_row as event, final_event as final

t = Tap()

requests = []
lock = threading.Lock()
counts = {}


class Handler(QuietHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        typ = self.headers.get("X-Knock-Event-Type", "")
        with lock:
            counts[typ] = counts.get(typ, 0) + 1
            n = counts[typ]
            requests.append({"path": self.path, "headers": dict(self.headers), "body": body,
                             "peer": self.client_address[1], "type": typ})
        if typ == "ok":
            code = 200
        elif typ == "flaky":
            code = 503 if n == 1 else 204
        elif typ == "unavailable":
            code = 503
        elif typ == "bad":
            code = 400
        elif typ == "throttled":
            code = 429 if n == 1 else 200
        elif typ == "slow":
            if n == 1:
                time.sleep(2.5)
            code = 200
        else:
            code = 500
        out = b"reply for %s" % typ.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
threading.Thread(target=server.serve_forever, daemon=True).start()
port = server.server_address[1]
closed_port = free_port()


ep = Endpoint("fwd")
try:
    ep.write_config("""[endpoint]
provider = none
allow_unverified = yes
listen = 127.0.0.1:%d
[worker]
handler = http://127.0.0.1:%d/hooks/in?src=knock
concurrency = 2
timeout = 1s
max_attempts = 3
backoff = 10ms..50ms
[route "refused"]
handler = http://127.0.0.1:%d/
""" % (ep.port, port, closed_port))
    w = ep.start("knock-worker")
    t.ok(w.poll() is None, "worker started", ep.stderr("worker"))

    body = b'<xml a="1">payload</xml>'
    insert_event(ep, "evt_ok", "ok", body, "application/xml; charset=utf-8")
    for i in range(5):
        insert_event(ep, "evt_ok%d" % i, "ok")
    for eid, typ in (("evt_flaky", "flaky"), ("evt_unavail", "unavailable"), ("evt_bad", "bad"),
                     ("evt_429", "throttled"), ("evt_slow", "slow"), ("evt_refused", "refused")):
        insert_event(ep, eid, typ)
    wake(ep)

    e = final(ep, "evt_ok")
    t.eq(e and e["status"], "handled", "200 → handled")
    a = attempts(ep, "evt_ok")
    t.ok(len(a) == 1 and a[0]["http_status"] == 200 and a[0]["outcome"] == "success",
         "attempt records HTTP status 200", a)
    t.ok(a and a[0]["output"] == "reply for ok", "response body captured", a)
    with lock:
        r = next((x for x in requests if x["headers"].get("X-Knock-Event-Id") == "evt_ok"), None)
    t.ok(r is not None, "request reached the server")
    r = r or {"headers": {}, "body": b"", "path": ""}
    h = r["headers"]
    t.eq(r["path"], "/hooks/in?src=knock", "POSTed to the handler URL path and query")
    t.eq(r["body"], body, "stored body forwarded byte for byte")
    t.eq(h.get("Content-Type"), "application/xml; charset=utf-8", "stored content type")
    t.eq(h.get("X-Knock-Delivery-Id"), "dlv_evt_ok", "X-Knock-Delivery-Id")
    t.eq(h.get("X-Knock-Attempt"), "1", "X-Knock-Attempt")
    t.eq(h.get("X-Knock-Event-Type"), "ok", "X-Knock-Event-Type")
    t.ok((h.get("User-Agent") or "").startswith("knock/"), "User-Agent knock/VERSION", h)

    e = final(ep, "evt_flaky")
    a = attempts(ep, "evt_flaky")
    t.ok(e and e["status"] == "handled" and [x["http_status"] for x in a] == [503, 204],
         "503 → retried, then 204 → handled", a)
    t.ok(len(a) == 2 and a[1]["outcome"] == "success", "second attempt success", a)

    e = final(ep, "evt_429")
    a = attempts(ep, "evt_429")
    t.ok(e and e["status"] == "handled" and [x["http_status"] for x in a] == [429, 200],
         "429 → retried", a)

    e = final(ep, "evt_unavail")
    t.ok(e and e["status"] == "dead" and e["attempt_count"] == 3
         and e["status_reason"] == "max_attempts", "503 every time → dead after max_attempts", e)

    e = final(ep, "evt_bad")
    a = attempts(ep, "evt_bad")
    t.ok(e and e["status"] == "dead" and e["attempt_count"] == 1
         and e["status_reason"] == "permanent_failure", "400 → dead at once", e)
    t.ok(a and a[0]["http_status"] == 400 and a[0]["outcome"] == "permanent",
         "attempt records 400 permanent", a)

    e = final(ep, "evt_slow")
    a = attempts(ep, "evt_slow")
    t.ok(e and e["status"] == "handled" and len(a) == 2 and a[0]["outcome"] == "timeout",
         "response slower than timeout → timeout, retried, handled", a)

    e = final(ep, "evt_refused")
    a = attempts(ep, "evt_refused")
    t.ok(e and e["status"] == "dead" and len(a) == 3
         and all(x["outcome"] == "tempfail" and x["http_status"] is None for x in a),
         "connection refused → retried each time (no HTTP status), dead after max_attempts", a)
    t.ok(a and a[0]["error"] and "127.0.0.1" in a[0]["error"], "connect error recorded", a)

    for i in range(5):
        final(ep, "evt_ok%d" % i)
    with lock:
        ok_reqs = [x for x in requests if x["type"] == "ok"]
        peers = {x["peer"] for x in ok_reqs}
    t.ok(len(ok_reqs) == 6 and len(peers) <= 3,
         "keep-alive: 6 requests over at most 3 connections", (len(ok_reqs), peers))
    t.eq(ep.stop("worker"), 0, "clean stop")
finally:
    ep.cleanup()
    server.shutdown()

t.done()
