#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Ordered processing per key through the real daemons (knock-endpoint(5)
FLOW CONTROL, order_key): 50 events over 5 keys sent in a known order are
handled in that order per key while the keys interleave, up to the
concurrency; a key whose first event fails (75, then 0) delays its
followers until it is handled; a kill -9 of the worker in the middle keeps
the order; events without a key are not held; a dead event releases its
key."""

import json

import knocktest as kt

SECRET = "order-secret"


def main():
    t = kt.Tap()
    ep = kt.Endpoint("ord")
    post = kt.GithubSender(ep, SECRET)

    try:
        h, log = kt.record_handler(ep, ["d.get('data', {}).get('customer', '-')", "d['seq']",
                                        "a", "os.environ['KNOCK_EVENT_ID']"])
        ep.write_config("[endpoint]\nprovider = github\nsecret = literal:%s\n"
                        "listen = 127.0.0.1:%d\n"
                        "[worker]\nhandler = exec:%s\nconcurrency = 4\nbackoff = 300ms..300ms\n"
                        "max_attempts = 2\norder_key = json:/data/customer\n"
                        % (SECRET, ep.port, h))
        rc, _, err = ep.knockctl("check-config")
        t.eq(rc, 0, "order_key = json:/data/customer is valid", err)
        ep.start_ingress(activate=False)
        ep.start("knock-worker")

        keys = ["k%d" % i for i in range(5)]
        sent = []
        for seq in range(50):
            k = keys[seq % 5]
            doc = {"seq": seq, "data": {"customer": k}}
            if seq == 0:
                doc["exit"] = {"1": 75}   # k0's first event fails once, then succeeds
            if seq == 20:
                doc["sleep"] = 0.5        # the worker is killed while this one runs
            sent.append((k, seq, post("push", doc)))
            if seq == 19:
                kt.wait_for(lambda: any(l[1] == "20" for l in kt.log_lines(log)) or
                            len(kt.log_lines(log)) > 30, timeout=10)
        t.ok(all(e for _, _, e in sent), "50 events stored")
        # kill -9 while the worker is busy, then restart: the order must hold.
        kt.wait_for(lambda: len(kt.log_lines(log)) >= 20, timeout=10)
        ep.kill9("worker")
        ep.start("knock-worker")
        ids = [e for _, _, e in sent]
        t.ok(all(kt.final_event(ep, i, timeout=40) for i in ids), "every event ends")
        t.eq({kt.event_row(ep, i)["status"] for i in ids}, {"handled"}, "… handled")

        lines = kt.log_lines(log)
        first = []
        seen = set()
        for k, seq, att, eid in lines:
            if eid not in seen:
                seen.add(eid)
                first.append((k, int(seq)))
        per_key = {k: [s for kk, s in first if kk == k] for k in keys}
        t.eq(per_key, {k: list(range(i, 50, 5)) for i, k in enumerate(keys)},
             "each key's events ran in the order they were sent (across a kill -9)")
        switches = sum(1 for a, b in zip(first, first[1:]) if a[0] != b[0])
        t.ok(switches >= 20, "keys interleave (%d switches in 50 starts)" % switches)

        k0 = [l for l in lines if l[0] == "k0"]
        t.eq((k0[0][1], k0[0][2], k0[1][1], k0[1][2]), ("0", "1", "0", "2"),
             "k0's first event failed and ran again before any follower")
        done0 = kt.event_row(ep, sent[0][2])["finished_at"]
        starts5 = kt.event_attempts(ep, sent[5][2])[0]["started_at"]
        t.ok(starts5 >= done0, "its follower started only after it was handled",
             (starts5, done0))
        others = [kt.event_attempts(ep, e)[0]["started_at"] for k, s, e in sent[1:5]]
        t.ok(max(others) < done0, "other keys did not wait for it")

        # No key: not ordered. A dead event releases its key.
        free = [post("push", {"seq": 100 + i, "sleep": 0.3}) for i in range(4)]
        t.ok(kt.wait_for(lambda: sum(kt.event_row(ep, e)["status"] == "processing"
                                     for e in free) >= 2, timeout=10),
             "events without a key run in parallel")
        dead = post("push", {"seq": 200, "data": {"customer": "kd"}, "exit": {"1": 75, "2": 75}})
        after = post("push", {"seq": 201, "data": {"customer": "kd"}})
        t.ok(kt.final_event(ep, dead) and kt.event_row(ep, dead)["status"] == "dead",
             "kd's first event dies (max_attempts 2)")
        t.ok(kt.final_event(ep, after) and kt.event_row(ep, after)["status"] == "handled",
             "a dead event releases its key: the follower runs")

        # knockctl event says what holds an event back.
        slow = post("push", {"seq": 300, "data": {"customer": "kh"}, "sleep": 3})
        t.ok(kt.wait_for(lambda: kt.event_row(ep, slow)["status"] == "processing", timeout=10),
             "kh's first event runs (slowly)")
        follower = post("push", {"seq": 301, "data": {"customer": "kh"}})
        doc = kt.wait_for(lambda: (lambda d: d if d.get("held_by") else None)(
            json.loads(ep.knockctl("--json", "event", follower)[1])), timeout=5) or {}
        t.eq((doc.get("status"), doc.get("order_key"), doc.get("held_by")),
             ("received", "kh", slow), "knockctl event shows its key and the event holding it")
        rc, out, _ = ep.knockctl("event", follower)
        t.ok("held_by: " + slow in out, "… in the human form too", out)
        t.ok(kt.final_event(ep, follower) and
             json.loads(ep.knockctl("--json", "event", follower)[1])["held_by"] is None,
             "once it ran, nothing holds it")
    finally:
        ep.cleanup()
    t.done()


main()
