#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""knock-worker with https:// forward handlers against real local TLS
servers (http.server, HTTP/1.1 keep-alive, wrapped in ssl) and a test CA
made by the openssl CLI, trusted through SSL_CERT_FILE:
- a host name with a good certificate → handled, SNI carries the name, the
  body and X-Knock-* headers arrive, one TLS connection carries several
  requests (keep-alive over TLS);
- an IP literal in the certificate's IP SAN → handled, no SNI sent;
- a certificate for another name → "certificate verify failed: hostname
  mismatch", retried, dead after max_attempts, no HTTP request sent;
- a worker that does not trust the CA → "certificate verify failed", no
  HTTP request sent.
"""

import http.server
import os
import shutil
import ssl
import tempfile
import threading

from knocktest import Endpoint, QuietHandler, Tap, insert_event, wake
from knocktest import event_attempts as attempts, event_row as event, final_event as final
from knocktest import make_pki as kt_make_pki

t = Tap()
if not shutil.which("openssl"):
    t.skip_all("no openssl CLI")


# ---- PKI --------------------------------------------------------------------------------

def make_pki(d):
    """A CA; 'good' for localhost and 127.0.0.1; 'other' for other.example only."""
    kt_make_pki(d, (("good", "DNS:localhost,IP:127.0.0.1"), ("other", "DNS:other.example")),
                ca_name="knock worker test CA")


# ---- TLS receivers -------------------------------------------------------------------------

class TLSReceiver:
    """An HTTP/1.1 keep-alive server behind TLS on 127.0.0.1 (ephemeral port).
    Records every TLS handshake as (client port, SNI name or None) and every
    request (path, headers, body, client port); answers 200 "reply N"."""

    def __init__(self, d, cert):
        self.lock = threading.Lock()
        self.handshakes = []
        self.requests = []
        recv = self

        class Handler(QuietHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with recv.lock:
                    recv.requests.append({"path": self.path, "headers": dict(self.headers),
                                          "body": body, "peer": self.client_address[1]})
                    n = len(recv.requests)
                out = b"reply %d" % n
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(d, cert + ".pem"), os.path.join(d, cert + ".key"))

        def on_sni(sock, name, _ctx):
            # Called for every ClientHello; name is None without SNI.
            try:
                port = sock.getpeername()[1]
            except (OSError, AttributeError):
                port = None
            with recv.lock:
                recv.handshakes.append((port, name))

        ctx.sni_callback = on_sni
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def by_event(self, eid):
        with self.lock:
            return [r for r in self.requests if r["headers"].get("X-Knock-Event-Id") == eid]

    def sni_of(self, port):
        with self.lock:
            return [name for p, name in self.handshakes if p == port]

    def all_requests(self):
        with self.lock:
            return list(self.requests)

    def all_handshakes(self):
        with self.lock:
            return list(self.handshakes)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# ---- configuration -------------------------------------------------------------------------

def config(ep, default_handler, routes=()):
    text = """[endpoint]
provider = none
allow_unverified = yes
listen = 127.0.0.1:%d
[worker]
handler = %s
concurrency = 1
timeout = 2s
max_attempts = 2
backoff = 10ms..50ms
""" % (ep.port, default_handler)
    for typ, url in routes:
        text += '[route "%s"]\nhandler = %s\n' % (typ, url)
    ep.write_config(text)


def worker_env(ca):
    """The worker's OpenSSL trust: only ca (SSL_CERT_FILE), or the system
    default when ca is None (an inherited SSL_CERT_FILE/DIR is dropped)."""
    return {"SSL_CERT_FILE": ca} if ca else {}


d = tempfile.mkdtemp(prefix="knock-pki-")
eps = []
servers = []
try:
    make_pki(d)
    ca = os.path.join(d, "ca.pem")
    good = TLSReceiver(d, "good")
    servers.append(good)
    other = TLSReceiver(d, "other")
    servers.append(other)
    url_name = "https://localhost:%d/in" % good.port
    url_ip = "https://127.0.0.1:%d/in" % good.port
    url_other = "https://localhost:%d/in" % other.port

    ep = Endpoint("tls")
    eps.append(ep)
    for k in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
        ep.env.pop(k, None)
    config(ep, url_name, (("ip", url_ip), ("mismatch", url_other)))
    w = ep.start("knock-worker", extra_env=worker_env(ca))
    t.ok(w.poll() is None, "worker started (SSL_CERT_FILE = test CA)", ep.stderr("worker"))

    # 1. a host name with a good certificate: three events, one after another
    bodies = {"evt_name%d" % i: b'{"n":%d,"tls":"yes"}' % i for i in range(3)}
    for eid, body in bodies.items():
        insert_event(ep, eid, "name", body)
    wake(ep)
    for eid in bodies:
        e = final(ep, eid)
        a = attempts(ep, eid)
        t.ok(e and e["status"] == "handled" and len(a) == 1 and a[0]["outcome"] == "success"
             and a[0]["http_status"] == 200 and a[0]["error"] is None
             and a[0]["handler"] == url_name,
             "https://localhost (good certificate): %s handled, attempt success 200" % eid,
             (e, a, ep.stderr("worker")[-1500:]))
        reqs = good.by_event(eid)
        t.eq(len(reqs), 1, "%s: exactly one request reached the server" % eid)
        r = reqs[0] if reqs else {"path": None, "body": None, "headers": {}, "peer": None}
        t.eq(r["body"], bodies[eid], "%s: stored body arrives byte for byte over TLS" % eid)
        t.eq(r["path"], "/in", "%s: POSTed to the handler path" % eid)
        t.eq(r["headers"].get("X-Knock-Delivery-Id"), "dlv_" + eid, "%s: X-Knock-Delivery-Id" % eid)
        t.eq(r["headers"].get("Host"), "localhost:%d" % good.port, "%s: Host header" % eid)
        t.eq(a[0]["output"] if a else None, "reply %d" % (good.all_requests().index(r) + 1)
             if reqs else "?", "%s: response body stored in attempts.output" % eid)
    name_reqs = [x for eid in bodies for x in good.by_event(eid)]
    peers = sorted({x["peer"] for x in name_reqs})
    t.ok(len(name_reqs) == 3 and len(peers) == 1,
         "keep-alive over TLS: the 3 requests came over one connection (client port %s)" % peers,
         (peers, good.all_handshakes()))
    t.eq(good.sni_of(peers[0]) if len(peers) == 1 else peers, ["localhost"],
         "SNI of that connection: exactly one handshake, server name 'localhost'")

    # 2. an IP literal (certificate has IP:127.0.0.1): handled, no SNI
    insert_event(ep, "evt_ip", "ip", b'{"ip":true}')
    # 3. a certificate for other.example reached as localhost
    insert_event(ep, "evt_mismatch", "mismatch", b'{"mismatch":true}')
    wake(ep)

    e = final(ep, "evt_ip")
    a = attempts(ep, "evt_ip")
    t.ok(e and e["status"] == "handled" and len(a) == 1 and a[0]["outcome"] == "success"
         and a[0]["http_status"] == 200 and a[0]["handler"] == url_ip,
         "https://127.0.0.1 (IP SAN): handled, attempt success 200", (e, a))
    reqs = good.by_event("evt_ip")
    t.ok(len(reqs) == 1 and reqs[0]["body"] == b'{"ip":true}' and reqs[0]["path"] == "/in",
         "IP literal: the request and body arrived", reqs)
    ip_peer = reqs[0]["peer"] if reqs else None
    t.ok(ip_peer is not None and ip_peer not in peers,
         "IP literal: its own connection (not the localhost one)", (ip_peer, peers))
    t.eq(good.sni_of(ip_peer), [None], "IP literal: the handshake carried no SNI")
    t.eq(a[0]["output"] if a else None, "reply 4", "IP literal: response body stored")

    e = final(ep, "evt_mismatch")
    a = attempts(ep, "evt_mismatch")
    t.ok(e and e["status"] == "dead" and e["attempt_count"] == 2
         and e["status_reason"] == "max_attempts",
         "certificate for another name: dead after max_attempts (2)", (e, a))
    t.ok(len(a) == 2 and all(x["outcome"] == "tempfail" and x["http_status"] is None
                             and x["output"] is None and x["handler"] == url_other for x in a),
         "certificate for another name: 2 attempts, tempfail, no HTTP status", a)
    errs = [x["error"] or "" for x in a]
    t.diag("hostname mismatch errors: %r" % errs)
    t.ok(len(errs) == 2 and all("TLS: certificate verify failed: hostname mismatch" in x
                                for x in errs),
         "certificate for another name: error says 'TLS: certificate verify failed: "
         "hostname mismatch'", errs)
    t.eq(errs, [url_other + ": TLS: certificate verify failed: hostname mismatch"
                " (connection failed)"] * 2,
         "certificate for another name: exact error text")
    t.eq(other.all_requests(), [], "certificate for another name: no HTTP request was sent")
    t.eq([name for _, name in other.all_handshakes()], ["localhost", "localhost"],
         "certificate for another name: two handshakes were attempted, with SNI 'localhost'")
    t.eq(ep.stop("worker"), 0, "clean stop")

    # 4. a worker that does not trust the test CA
    ep2 = Endpoint("untrusted")
    eps.append(ep2)
    for k in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
        ep2.env.pop(k, None)
    config(ep2, url_name)
    w2 = ep2.start("knock-worker", extra_env=worker_env(None))
    t.ok(w2.poll() is None, "second worker started (system trust store only)",
         ep2.stderr("worker"))
    insert_event(ep2, "evt_untrusted", "name", b'{"untrusted":true}')
    wake(ep2)
    e = final(ep2, "evt_untrusted")
    a = attempts(ep2, "evt_untrusted")
    t.ok(e and e["status"] == "dead" and e["attempt_count"] == 2
         and e["status_reason"] == "max_attempts",
         "untrusted CA: dead after max_attempts (2)", (e, a))
    errs = [x["error"] or "" for x in a]
    t.diag("untrusted CA errors: %r" % errs)
    t.ok(len(a) == 2 and all(x["outcome"] == "tempfail" and x["http_status"] is None for x in a)
         and all("TLS: certificate verify failed: " in x for x in errs),
         "untrusted CA: tempfail, error says 'TLS: certificate verify failed'", a)
    t.eq(errs, [url_name + ": TLS: certificate verify failed: unable to get local issuer"
                " certificate (connection failed)"] * 2, "untrusted CA: exact error text")
    t.eq(good.by_event("evt_untrusted"), [], "untrusted CA: no HTTP request was sent")
    t.eq(len(good.all_requests()), 4, "good server: 4 requests in all (3 name + 1 IP)")
    t.eq(ep2.stop("worker"), 0, "second worker: clean stop")
finally:
    for ep in eps:
        ep.cleanup()
    for s in servers:
        s.close()
    shutil.rmtree(d, ignore_errors=True)

t.done()
