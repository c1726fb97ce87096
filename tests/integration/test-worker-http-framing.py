#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""knock-worker's HTTP/1.1 client (common/httpclient.c) against a raw socket
server that writes exact bytes: chunked responses (extensions, trailers) on a
reused keep-alive connection, Connection: close and HTTP/1.0 read-to-close
responses (not reused), an interim 100 before the real response, a response
head over 64 KiB (refused, retried), a peer that closes without answering, a
response that trickles in slower than the total timeout, an event type that
would inject a header (left out), and 404 (permanent) / 302 (retried, not
followed). Each case is checked by the event's final status and its attempts
rows, which would differ if the client mis-framed.
"""

import socket
import socketserver
import threading
import time

from knocktest import Endpoint, Tap, insert_event, wake
from knocktest import event_attempts as attempts, event_row as event, final_event as final

t = Tap()

lock = threading.Lock()
requests = []          # every request the server read, in order
conn_counter = [0]     # connection numbers, 1, 2, ... in accept order
trickle_done = threading.Event()

CHUNKED = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"3;x=y\r\nhel\r\n2\r\nlo\r\n0\r\nX-T: 1\r\n\r\n")
HUGE = 70 * 1024


def simple(code, reason, body, extra=b""):
    return (b"HTTP/1.1 %d %s\r\nContent-Length: %d\r\n%s\r\n" % (code, reason, len(body), extra)
            + body)


def read_request(sock, buf):
    """One request from sock: (head bytes, headers, body, rest) or None at EOF."""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            return None
        buf += data
    head, _, buf = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.decode("latin-1").strip()] = value.decode("latin-1").strip()
    n = int(headers.get("Content-Length", "0"))
    while len(buf) < n:
        data = sock.recv(65536)
        if not data:
            return None
        buf += data
    return head, lines[0].decode("latin-1"), headers, buf[:n], buf[n:]


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        sock = self.request
        with lock:
            conn_counter[0] += 1
            conn = conn_counter[0]
        buf = b""
        try:
            while True:
                req = read_request(sock, buf)
                if req is None:
                    return
                head, reqline, headers, body, buf = req
                typ = headers.get("X-Knock-Event-Type", "")
                eid = headers.get("X-Knock-Event-Id", "")
                attempt = headers.get("X-Knock-Attempt", "")
                with lock:
                    requests.append({"conn": conn, "reqline": reqline, "head": head,
                                     "headers": headers, "body": body, "type": typ,
                                     "eid": eid, "attempt": attempt})
                if not self.reply(sock, typ, eid, attempt):
                    return
        except OSError:
            return
        finally:
            try:
                sock.close()
            except OSError:
                pass

    def reply(self, sock, typ, eid, attempt):
        """Answers one request; False when the connection is to be closed."""
        first = attempt == "1"
        if eid == "evt_inject":
            sock.sendall(simple(200, b"OK", b"injected?"))
        elif typ == "chunked":
            sock.sendall(CHUNKED)
        elif typ == "close":
            sock.sendall(simple(200, b"OK", b"closing", b"Connection: close\r\n"))
            return False
        elif typ == "http10":
            sock.sendall(b"HTTP/1.0 200 OK\r\n\r\nbody to the end")
            return False
        elif typ == "interim":
            sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            time.sleep(0.05)
            sock.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
        elif typ == "interim-joined":
            sock.sendall(b"HTTP/1.1 100 Continue\r\nX-A: b\r\n\r\n"
                         b"HTTP/1.1 202 Accepted\r\nContent-Length: 3\r\n\r\nyes")
        elif typ == "hugehead" and first:
            sock.sendall(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * HUGE +
                         b"\r\nContent-Length: 2\r\n\r\nok")
        elif typ == "noresp" and first:
            return False
        elif typ == "trickle" and first:
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
            try:
                # Until the client hangs up (a send then fails), at most 10 s.
                for _ in range(33):
                    time.sleep(0.3)
                    sock.sendall(b"x")
            finally:
                trickle_done.set()
            return False
        elif typ == "notfound":
            sock.sendall(simple(404, b"Not Found", b"not here"))
        elif typ == "redirect" and first:
            sock.sendall(simple(302, b"Found", b"moved",
                                b"Location: http://127.0.0.1:%d/elsewhere\r\n" % port))
        else:
            sock.sendall(simple(200, b"OK", ("reply for %s" % typ).encode()))
        return True


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


server = Server(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
port = server.server_address[1]


def run(ep, eid, typ, timeout=15):
    """Inserts one event, wakes the worker, waits for its end; (event, attempts)."""
    insert_event(ep, eid, typ)
    wake(ep)
    e = final(ep, eid, timeout)
    return e, attempts(ep, eid)


def reqs(eid):
    with lock:
        return [r for r in requests if r["eid"] == eid]


def summary(a):
    return [{k: x.get(k) for k in ("attempt", "outcome", "http_status", "error", "output")}
            for x in a]


ep = Endpoint("framing")
try:
    ep.write_config("""[endpoint]
provider = none
allow_unverified = yes
listen = 127.0.0.1:%d
[worker]
handler = http://127.0.0.1:%d/x
concurrency = 1
timeout = 1s
max_attempts = 3
backoff = 10ms..50ms
""" % (ep.port, port))
    w = ep.start("knock-worker")
    t.ok(w.poll() is None, "worker started", ep.stderr("worker"))

    # ---- 1. chunked, with a chunk extension and a trailer; keep-alive reuse --
    e, a = run(ep, "evt_chunk1", "chunked")
    t.ok(e and e["status"] == "handled" and len(a) == 1 and a[0]["http_status"] == 200
         and a[0]["outcome"] == "success", "chunked: handled with 200", summary(a))
    t.eq(a and a[0]["output"], "hello", "chunked: output is the de-chunked body", summary(a))
    e, a = run(ep, "evt_chunk2", "chunked")
    t.ok(e and e["status"] == "handled" and len(a) == 1 and a[0]["output"] == "hello",
         "chunked: second event handled, output hello", summary(a))
    r1, r2 = reqs("evt_chunk1"), reqs("evt_chunk2")
    t.ok(len(r1) == 1 and len(r2) == 1 and r1[0]["conn"] == r2[0]["conn"],
         "chunked: the second request reused the first one's connection (trailers consumed)",
         [(r["eid"], r["conn"]) for r in r1 + r2])
    h = r1[0]["headers"] if r1 else {}
    t.ok(r1 and r1[0]["reqline"] == "POST /x HTTP/1.1" and h.get("Host") == "127.0.0.1:%d" % port
         and h.get("X-Knock-Event-Type") == "chunked" and h.get("X-Knock-Attempt") == "1"
         and h.get("X-Knock-Event-Id") == "evt_chunk1" and r1[0]["body"] == b"{}",
         "request line, Host, X-Knock-* headers and body as sent", r1)

    # ---- 2. Connection: close → the next request on a new connection -----
    e, a = run(ep, "evt_close", "close")
    t.ok(e and e["status"] == "handled" and len(a) == 1 and a[0]["http_status"] == 200
         and a[0]["output"] == "closing", "close: handled, output is the Content-Length body",
         summary(a))
    e, a = run(ep, "evt_afterclose", "plain")
    t.ok(e and e["status"] == "handled" and len(a) == 1,
         "close: the next event handled at its first attempt", summary(a))
    rc, ra = reqs("evt_close"), reqs("evt_afterclose")
    t.ok(len(rc) == 1 and len(ra) == 1 and ra[0]["conn"] != rc[0]["conn"],
         "close: the next request arrived on a new connection",
         [(r["eid"], r["conn"]) for r in rc + ra])

    # ---- 3. HTTP/1.0, body to the close; not reused -----------------------
    e, a = run(ep, "evt_http10", "http10")
    t.ok(e and e["status"] == "handled" and len(a) == 1 and a[0]["http_status"] == 200
         and a[0]["outcome"] == "success", "http10: handled with 200", summary(a))
    t.eq(a and a[0]["output"], "body to the end", "http10: output is everything to the close",
         summary(a))
    e, a = run(ep, "evt_after10", "plain")
    r10, ra = reqs("evt_http10"), reqs("evt_after10")
    t.ok(e and e["status"] == "handled" and len(a) == 1 and len(r10) == 1 and len(ra) == 1
         and ra[0]["conn"] != r10[0]["conn"],
         "http10: the next request on a new connection, first attempt", (summary(a), ra, r10))

    # ---- 4. interim 1xx responses skipped ---------------------------------
    e, a = run(ep, "evt_interim", "interim")
    t.ok(e and e["status"] == "handled" and len(a) == 1 and a[0]["http_status"] == 201
         and a[0]["outcome"] == "success" and a[0]["output"] == "ok",
         "interim: 100 Continue skipped, 201 recorded, output ok", summary(a))
    e, a = run(ep, "evt_interim2", "interim-joined")
    t.ok(e and e["status"] == "handled" and len(a) == 1 and a[0]["http_status"] == 202
         and a[0]["output"] == "yes",
         "interim: 100 (with a header) and 202 in one write, 202 recorded, output yes",
         summary(a))
    ri, ri2 = reqs("evt_interim"), reqs("evt_interim2")
    t.ok(len(ri) == 1 and len(ri2) == 1 and ri[0]["conn"] == ri2[0]["conn"],
         "interim: connection reused after the interim exchange",
         [(r["eid"], r["conn"]) for r in ri + ri2])

    # ---- 5. a response head over 64 KiB ------------------------------------
    e, a = run(ep, "evt_huge", "hugehead")
    t.ok(len(a) >= 1 and a[0]["outcome"] == "tempfail" and a[0]["http_status"] is None
         and "response headers too long" in (a[0]["error"] or ""),
         "hugehead: first attempt tempfail, 'response headers too long'", summary(a))
    t.ok(e and e["status"] == "handled" and len(a) == 2 and a[1]["outcome"] == "success"
         and a[1]["http_status"] == 200 and a[1]["output"] == "reply for hugehead",
         "hugehead: retried and handled in 2 attempts", summary(a))

    # ---- 6. the peer closes without answering -----------------------------
    e, a = run(ep, "evt_noresp", "noresp")
    t.ok(len(a) >= 1 and a[0]["outcome"] == "tempfail" and a[0]["http_status"] is None
         and "connection closed before a response" in (a[0]["error"] or ""),
         "noresp: first attempt tempfail, 'connection closed before a response'", summary(a))
    t.ok(e and e["status"] == "handled" and len(a) == 2 and a[1]["http_status"] == 200
         and a[1]["outcome"] == "success",
         "noresp: handled after 2 attempts", summary(a))

    # ---- 7. bytes trickle in: the deadline is total, not per read --------
    e, a = run(ep, "evt_trickle", "trickle")
    t.ok(len(a) >= 1 and a[0]["outcome"] == "timeout" and a[0]["http_status"] is None,
         "trickle: first attempt ends with outcome timeout", summary(a))
    dur = (a[0]["ended_at"] - a[0]["started_at"]) if a and a[0]["ended_at"] else None
    t.ok(dur is not None and 900 <= dur < 2500,
         "trickle: the first attempt ended about the 1 s timeout", dur)
    t.ok(e and e["status"] == "handled" and len(a) == 2 and a[1]["outcome"] == "success"
         and a[1]["output"] == "reply for trickle", "trickle: retried and handled", summary(a))
    rt = reqs("evt_trickle")
    t.ok(len(rt) == 2 and rt[0]["conn"] != rt[1]["conn"],
         "trickle: the timed-out connection was not reused", [(r["attempt"], r["conn"]) for r in rt])

    # ---- 8. an event type that would inject a header ------------------------
    e, a = run(ep, "evt_inject", "evil\r\nX-Evil: 1")
    t.ok(e and e["status"] == "handled" and len(a) == 1 and a[0]["http_status"] == 200
         and a[0]["output"] == "injected?", "inject: handled", summary(a))
    rj = reqs("evt_inject")
    hj = rj[0]["headers"] if rj else {}
    t.ok(len(rj) == 1 and "X-Knock-Event-Type" not in hj and "X-Evil" not in hj
         and b"evil" not in rj[0]["head"].lower(),
         "inject: no X-Knock-Event-Type, no X-Evil header in the request", rj)
    t.ok(hj.get("X-Knock-Provider-Event-Id") == "pe-evt_inject"
         and hj.get("X-Knock-Event-Id") == "evt_inject" and hj.get("X-Knock-Attempt") == "1",
         "inject: the other X-Knock-* headers still sent", hj)

    # ---- 9. 404 permanent, 302 retried and not followed -------------------
    e, a = run(ep, "evt_404", "notfound")
    t.ok(e and e["status"] == "dead" and e["status_reason"] == "permanent_failure"
         and len(a) == 1 and a[0]["http_status"] == 404 and a[0]["outcome"] == "permanent",
         "404: dead at once, outcome permanent", (e, summary(a)))
    t.eq(a and a[0]["output"], "not here", "404: response body captured", summary(a))
    e, a = run(ep, "evt_302", "redirect")
    t.ok(e and e["status"] == "handled" and [x["http_status"] for x in a] == [302, 200]
         and a[0]["outcome"] == "tempfail" and a[0]["output"] == "moved",
         "302: tempfail, retried, then handled", summary(a))
    with lock:
        paths = {r["reqline"] for r in requests}
    t.ok(paths == {"POST /x HTTP/1.1"}, "302: redirect not followed (every request to /x)", paths)

    t.eq(ep.stop("worker"), 0, "clean stop")
    t.ok(trickle_done.wait(12), "trickle sender ended")
finally:
    ep.cleanup()
    server.shutdown()

t.done()
