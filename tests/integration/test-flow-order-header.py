#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""order_key = header:NAME (knock-endpoint(5) FLOW CONTROL): a credential
header (Authorization, Cookie, the token provider's header; stored redacted)
is refused by check-config and the worker, with the line; events keyed by a
request header, matched case-insensitively, run in order per key while the
keys interleave; the key is the first delivery's header, not the body's;
events without the header are not held."""

import json

import knocktest as kt

SECRET = "order-hdr-secret"


def main():
    t = kt.Tap()
    ep = kt.Endpoint("ordh")
    n = [0]

    def post(doc, customer=None):
        n[0] += 1
        body = json.dumps(doc).encode()
        hdrs = kt.github_headers(SECRET, body, "d-%d" % n[0], "push")
        if customer is not None:
            hdrs["X-Customer"] = customer
        st, _, data = ep.post(body, hdrs)
        return json.loads(data)["event_id"] if st == 200 else None

    base = ("[endpoint]\nprovider = github\nsecret = literal:%s\nlisten = 127.0.0.1:%d\n"
            % (SECRET, ep.port))
    try:
        # Credential headers are stored as "[redacted]": refused, with the line.
        ep.write_config(base + "[worker]\nhandler = exec:/bin/true\n"
                        "order_key = header:Authorization\n")
        rc, out, err = ep.knockctl("check-config")
        t.ok(rc != 0 and "order_key cannot be the credential header Authorization" in err
             and ":7:" in err, "order_key = header:Authorization is refused", (rc, out, err))
        ep.write_config(base + "[worker]\nhandler = exec:/bin/true\n"
                        "[route \"push\"]\nhandler = exec:/bin/true\norder_key = header:cookie\n")
        rc, out, err = ep.knockctl("check-config")
        t.ok(rc != 0 and "credential header cookie" in err and ":9:" in err,
             "… as is a route's order_key = header:cookie", (rc, out, err))
        ep.write_config("[endpoint]\nprovider = token\nheader = X-Hook-Token\n"
                        "secret = literal:tok\nlisten = 127.0.0.1:%d\n"
                        "[worker]\nhandler = exec:/bin/true\norder_key = header:x-hook-token\n"
                        % ep.port)
        rc, out, err = ep.knockctl("check-config")
        t.ok(rc != 0 and "credential header x-hook-token" in err,
             "… and the token provider's header", (rc, out, err))
        ep.write_config(base + "[worker]\nhandler = exec:/bin/true\n"
                        "order_key = header:X Customer\n")
        rc, out, err = ep.knockctl("check-config")
        t.ok(rc != 0 and "order_key must be header:NAME, json:/pointer or form:NAME" in err,
             "a malformed header name is refused", (rc, out, err))
        ep.write_config(base + "[worker]\nhandler = exec:/bin/true\n"
                        "order_key = header:Authorization\n")
        p = ep.start("knock-worker", wait_ready=False)
        t.ok(kt.wait_for(lambda: p.poll() is not None, timeout=10) and p.returncode != 0
             and "credential header Authorization" in ep.stderr("worker"),
             "the worker does not start with it", ep.stderr("worker"))

        h, log = kt.record_handler(ep, ["d.get('c', '-')", "d['seq']",
                                        "os.environ['KNOCK_EVENT_ID']"])
        # Lower case in the config, X-Customer on the wire; the body has a
        # customer member that must not be the key.
        ep.write_config(base + "[worker]\nhandler = exec:%s\nconcurrency = 4\n"
                        "order_key = header:x-customer\n" % h)
        rc, _, err = ep.knockctl("check-config")
        t.eq(rc, 0, "order_key = header:x-customer is valid", err)
        ep.start_ingress(activate=False)
        ep.start("knock-worker")

        keys = ["h%d" % i for i in range(4)]
        sent = []
        for seq in range(32):
            k = keys[seq % 4]
            doc = {"seq": seq, "c": k, "customer": "same-for-all"}
            if seq == 0:
                doc["sleep"] = 0.6    # h0's first event is slow: its followers wait
            sent.append((k, seq, post(doc, k)))
        t.ok(all(e for _, _, e in sent), "32 events stored")
        ids = [e for _, _, e in sent]
        t.ok(all(kt.final_event(ep, i, timeout=40) for i in ids), "every event ends")
        t.eq({kt.event_row(ep, i)["status"] for i in ids}, {"handled"}, "… handled")
        t.eq({kt.event_row(ep, e)["order_key"] for _, _, e in sent}, set(keys),
             "each event's key is its X-Customer header")

        first = [(k, int(s)) for k, s, _ in kt.log_lines(log)]
        per_key = {k: [s for kk, s in first if kk == k] for k in keys}
        t.eq(per_key, {k: list(range(i, 32, 4)) for i, k in enumerate(keys)},
             "each key's events ran in the order they were sent")
        switches = sum(1 for a, b in zip(first, first[1:]) if a[0] != b[0])
        t.ok(switches >= 12, "keys interleave (%d switches in 32 starts)" % switches)
        done0 = kt.event_row(ep, sent[0][2])["finished_at"]
        starts4 = kt.event_attempts(ep, sent[4][2])[0]["started_at"]
        t.ok(starts4 >= done0, "h0's follower started only after its first was handled",
             (starts4, done0))
        others = [kt.event_attempts(ep, e)[0]["started_at"] for _, _, e in sent[1:4]]
        t.ok(max(others) < done0, "other keys did not wait for it")

        # Without the header: no key, not held (they share a body customer).
        free = [post({"seq": 100 + i, "c": "-", "customer": "same-for-all", "sleep": 0.5})
                for i in range(4)]
        t.ok(kt.wait_for(lambda: sum(kt.event_row(ep, e)["status"] == "processing"
                                     for e in free) >= 2, timeout=10),
             "events without the header run in parallel")
        t.ok(all(kt.final_event(ep, e) for e in free) and
             all(kt.event_row(ep, e)["order_key"] is None for e in free), "… with no key")

        # knockctl event shows a held event's header key and its holder.
        slow = post({"seq": 300, "c": "hh", "sleep": 3}, "hh")
        t.ok(kt.wait_for(lambda: kt.event_row(ep, slow)["status"] == "processing", timeout=10),
             "hh's first event runs (slowly)")
        follower = post({"seq": 301, "c": "hh"}, "hh")
        doc = kt.wait_for(lambda: (lambda d: d if d.get("held_by") else None)(
            json.loads(ep.knockctl("--json", "event", follower)[1])), timeout=5) or {}
        t.eq((doc.get("status"), doc.get("order_key"), doc.get("held_by")),
             ("received", "hh", slow), "knockctl event shows the header key and its holder")
        t.ok(kt.final_event(ep, follower), "the follower runs once it is released")
    finally:
        ep.cleanup()
    t.done()


main()
