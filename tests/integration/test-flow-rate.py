#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Rate and concurrency per route through the real daemons
(knock-endpoint(5) FLOW CONTROL): a route with rate = 5/s starts no more
handlers than its bucket allows (measured from the attempts' start times,
generous bounds), a route with concurrency = 1 never overlaps, a route
without bounds is not held up behind them, waiting is never an attempt;
[worker] rate bounds the whole worker."""

import json

import knocktest as kt

SECRET = "rate-secret"


def post_all(ep, types):
    ids = []
    for i, etype in enumerate(types):
        body = b'{"i":%d}' % i
        st, _, data = ep.post(body, kt.github_headers(SECRET, body, "d-%s-%d" % (etype, i), etype))
        ids.append(json.loads(data)["event_id"] if st == 200 else None)
    return ids


def one_attempt_each(ep, ids):
    rows = [kt.event_attempts(ep, i) for i in ids]
    return all(len(r) == 1 and r[0]["outcome"] == "success" for r in rows) and \
        all(kt.event_row(ep, i)["attempt_count"] == 1 for i in ids)


def within_bucket(starts, rate, burst, slack=1):
    """Every window [starts[i], starts[j]] holds at most burst + rate·width (+ slack) starts."""
    starts = sorted(starts)
    worst = None
    for i in range(len(starts)):
        for j in range(i, len(starts)):
            allowed = burst + rate * (starts[j] - starts[i]) / 1000.0 + slack
            if j - i + 1 > allowed:
                worst = (i, j, starts[j] - starts[i])
                return False, worst
    return True, worst


def main():
    t = kt.Tap()
    ep = kt.Endpoint("rt")
    try:
        slow = kt.write_script(ep, "slow.sh", "sleep 0.2\nexit 0\n")
        ep.write_config("[endpoint]\nprovider = github\nsecret = literal:%s\n"
                        "listen = 127.0.0.1:%d\n"
                        "[worker]\nhandler = exec:/bin/true\nconcurrency = 4\n"
                        "[route \"limited\"]\nhandler = exec:/bin/true\nrate = 5/s\n"
                        "[route \"single\"]\nhandler = exec:%s\nconcurrency = 1\n"
                        % (SECRET, ep.port, slow))
        rc, _, err = ep.knockctl("check-config")
        t.eq(rc, 0, "rate and concurrency in [route] are valid keys", err)
        ep.start_ingress(activate=False)
        ep.start("knock-worker")
        limited = post_all(ep, ["limited"] * 30)
        single = post_all(ep, ["single"] * 6)
        free = post_all(ep, ["free"] * 5)
        t.ok(all(limited + single + free), "41 events stored")
        t.ok(all(kt.final_event(ep, i, timeout=40) for i in limited + single + free),
             "every event ends")
        t.eq({kt.event_row(ep, i)["status"] for i in limited + single + free}, {"handled"},
             "… handled")

        starts = [kt.event_attempts(ep, i)[0]["started_at"] for i in limited]
        ok, worst = within_bucket(starts, 5, 5)
        t.ok(ok, "rate = 5/s: no window holds more starts than the bucket allows", worst)
        span = max(starts) - min(starts)
        t.ok(span >= 4000, "30 starts at 5/s (burst 5) take at least 4 s (%d ms)" % span)
        t.ok(one_attempt_each(ep, limited), "waiting for a token is no attempt: one attempt each")

        iv = sorted((a["started_at"], a["ended_at"]) for a in
                    (kt.event_attempts(ep, i)[0] for i in single))
        overlaps = [(a, b) for a, b in zip(iv, iv[1:]) if b[0] < a[1]]
        t.eq(overlaps, [], "concurrency = 1: the route's attempts never overlap")
        t.ok(one_attempt_each(ep, single), "waiting for a slot is no attempt: one attempt each")

        free_end = max(kt.event_attempts(ep, i)[0]["ended_at"] for i in free)
        t.ok(free_end < max(starts), "a route without bounds is not held up behind the limited one",
             (free_end, max(starts)))
        text = ep.admin_get("/metrics")[1].decode()
        t.ok("knock_paused 0" in text, "nothing is paused by a rate")
    finally:
        ep.cleanup()

    ep = kt.Endpoint("rw")
    try:
        ep.write_config("[endpoint]\nprovider = github\nsecret = literal:%s\n"
                        "listen = 127.0.0.1:%d\n"
                        "[worker]\nhandler = exec:/bin/true\nconcurrency = 8\nrate = 4/s\n"
                        % (SECRET, ep.port))
        ep.start_ingress(activate=False)
        ep.start("knock-worker")
        ids = post_all(ep, ["a", "b", "c", "d"] * 4)
        t.ok(all(kt.final_event(ep, i, timeout=30) for i in ids), "[worker] rate: every event ends")
        starts = [kt.event_attempts(ep, i)[0]["started_at"] for i in ids]
        ok, worst = within_bucket(starts, 4, 4)
        t.ok(ok, "[worker] rate = 4/s bounds every type together", worst)
        t.ok(max(starts) - min(starts) >= 2000, "16 starts at 4/s take at least 2 s")
        t.ok(one_attempt_each(ep, ids), "one attempt each")
    finally:
        ep.cleanup()
    t.done()


main()
