#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The probe gives the real ingress's verdict. The same raw requests (a
Stripe endpoint: valid, tampered body, stale timestamp, wrong secret, and
a wrong path, another method, a body over max_body, a malformed head) are
sent to knock-ingress's public listener, to `knockctl probe` (a file and
standard input) and to the console's probe form (POST /probe on the
admin socket): the three answers' status codes agree, and so do the
reasons of the 401s. The probes store nothing: every table counts the same
rows before and after them, and the audit trail gains none."""

import hashlib
import hmac
import json
import os
import re
import socket
import subprocess
import time
import urllib.parse

import knocktest as kt

SECRET = "whsec_probe_stripe_secret"
OTHER = "whsec_another_secret"
TABLES = ("events", "deliveries", "attempts", "hooks", "hook_attempts", "audit")


def stripe_request(secret, body, ts, path="/", tamper=False):
    mac = hmac.new(secret.encode(), str(ts).encode() + b"." + body, hashlib.sha256).hexdigest()
    if tamper:
        body = body.replace(b"100", b"999")
    head = ("POST %s HTTP/1.1\r\nHost: shop.example\r\nContent-Type: application/json\r\n"
            "Stripe-Signature: t=%d,v1=%s\r\nContent-Length: %d\r\n\r\n" % (path, ts, mac, len(body)))
    return head.encode() + body


def cases():
    now = int(time.time())

    def body(n):
        return json.dumps({"id": "evt_probe_%s" % n, "type": "charge.refunded",
                           "data": {"amount": 100}}).encode()

    return [
        ("valid", stripe_request(SECRET, body("valid"), now)),
        ("tampered body", stripe_request(SECRET, body("tampered"), now, tamper=True)),
        ("stale timestamp", stripe_request(SECRET, body("stale"), now - 3600)),
        ("wrong secret", stripe_request(OTHER, body("other"), now)),
        ("wrong path", stripe_request(SECRET, body("path"), now, path="/elsewhere")),
        ("other method", b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"),
        ("over max_body", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n"),
        ("malformed", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1"
                      b"\r\n\r\nx"),
    ]


def send_raw(ep, raw):
    """raw as sent by a client; the one answer, read to its Content-Length
    (a keep-alive answer is not followed by a close)."""
    s = socket.create_connection(("127.0.0.1", ep.port), timeout=10)
    s.sendall(raw)
    data = b""
    while True:
        head, sep, body = data.partition(b"\r\n\r\n")
        m = re.search(rb"(?im)^content-length: *(\d+)", head) if sep else None
        if m and len(body) >= int(m.group(1)):
            break
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    status = int(head.split(b" ")[1])
    try:
        reason = json.loads(body).get("error")
    except ValueError:
        reason = None
    return status, reason


def counts(ep):
    return {t: ep.query("SELECT count(*) AS n FROM %s" % t)[0]["n"] for t in TABLES}


def console_probe(ep, raw):
    form = urllib.parse.urlencode({"request": raw.decode("latin-1"), "crlf": "on"},
                                  encoding="latin-1").encode()
    st, _, body = ep.admin_request("POST", "/probe", form,
                                   {"Content-Type": "application/x-www-form-urlencoded"})
    html = body.decode("utf-8", "replace")
    m = re.search(r'id="verdict" data-status="(\d+)" data-outcome="([a-z]+)"', html)
    r = re.search(r'<span class="reason">(.*?)</span>', html, re.S)
    return st, (int(m.group(1)) if m else None), (m.group(2) if m else None), (
        r.group(1) if r else None)


def main():
    t = kt.Tap()
    ep = kt.Endpoint("prb")
    try:
        ep.write_config("[endpoint]\nprovider = stripe\nsecret = literal:%s\nlisten = 127.0.0.1:%d\n"
                        "max_body = 4K\n[worker]\nhandler = exec:/bin/true\n"
                        "[route \"charge.refunded\"]\nhandler = exec:/bin/false\n"
                        % (SECRET, ep.port))
        ep.start_ingress()
        kt.wait_for(ep.store_exists, 10)
        reqs = cases()
        real = {}
        for name, raw in reqs:
            real[name] = send_raw(ep, raw)
        t.eq([real[n][0] for n, _ in reqs], [200, 401, 401, 401, 404, 405, 413, 400],
             "the ingress answers each case", real)
        time.sleep(0.5)  # the rejected deliveries are committed in groups
        before = counts(ep)

        paths = {}
        for name, raw in reqs:
            p = os.path.join(ep.tmp, re.sub(r"\W", "_", name) + ".http")
            with open(p, "wb") as f:
                f.write(raw)
            paths[name] = p
        for name, raw in reqs:
            rc, out, err = ep.knockctl("--json", "probe", paths[name])
            doc = json.loads(out) if out.startswith("{") else {}
            want_rc = 0 if real[name][0] == 200 else 1
            t.ok(rc == want_rc and doc.get("status") == real[name][0],
                 "knockctl probe, %s: %s like the ingress" % (name, real[name][0]), (rc, out, err))
            if real[name][0] == 401:
                t.eq(doc.get("reason"), real[name][1], "knockctl probe, %s: the same reason" % name)

            st, status, outcome, reason = console_probe(ep, raw)
            t.ok(st == 200 and status == real[name][0],
                 "console probe, %s: %s like the ingress" % (name, real[name][0]),
                 (st, status, outcome))
            if real[name][0] == 401:
                t.eq(reason, real[name][1], "console probe, %s: the same reason" % name)

        # Standard input, and what only the probe says.
        p = subprocess.run([kt.binary("knockctl"), "-e", "prb", "--json", "probe", "-"],
                           input=reqs[0][1], env=ep.env, capture_output=True, timeout=30)
        doc = json.loads(p.stdout) if p.returncode == 0 else {}
        stored = ep.query("SELECT id, status FROM events WHERE provider_event_id = 'evt_probe_valid'")
        t.ok(doc.get("status") == 200 and doc.get("provider_event_id") == "evt_probe_valid"
             and doc.get("event_type") == "charge.refunded" and doc.get("route") == "charge.refunded"
             and doc.get("handler") == "exec:/bin/false",
             "knockctl probe -: dedupe id, type and the route's handler", p.stdout)
        t.ok(stored and doc.get("duplicate_of") == {"id": stored[0]["id"],
                                                     "status": stored[0]["status"]},
             "knockctl probe: the stored event it would be a duplicate of", doc)
        rc, out, _ = ep.knockctl("probe", "--at", "@%d" % (int(time.time()) - 3600),
                                 paths["stale timestamp"])
        t.ok(rc == 0 and "200 accepted" in out,
             "knockctl probe --at the time it was signed: accepted", out)

        t.eq(counts(ep), before, "the probes stored nothing (every table counts the same rows)")
        t.eq(ep.query("SELECT count(*) AS n FROM audit")[0]["n"], 0, "and wrote no audit row")
    finally:
        ep.cleanup()
    t.done()


if __name__ == "__main__":
    main()
