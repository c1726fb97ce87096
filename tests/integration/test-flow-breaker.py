#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The circuit breaker of a route through the real daemons (knock-endpoint(5)
FLOW CONTROL): after `breaker` failed attempts in a row the route pauses
itself (a pause of kind breaker: status, metrics, a journal record) while
other routes run; after the cooldown exactly one probe attempt runs; a
failed probe opens it again, a successful one closes it and the waiting
events drain; resume --route closes it by hand."""

import json
import os
import time

import knocktest as kt

SECRET = "breaker-secret"


def main():
    t = kt.Tap()
    ep = kt.Endpoint("br")
    post = kt.GithubSender(ep, SECRET)

    def breaker():
        rc, out, _ = ep.knockctl("--json", "status")
        return [p for p in json.loads(out)["paused"] if p["kind"] == "breaker"]

    def attempts(ids):
        return sum(len(kt.event_attempts(ep, i)) for i in ids)

    def metrics():
        return ep.admin_get("/metrics")[1].decode()

    try:
        rec = os.path.join(ep.tmp, "records")
        os.makedirs(rec)
        down = os.path.join(rec, "down")
        h = kt.write_script(ep, "flaky.sh", '[ -e "%s" ] && exit 75\nexit 0\n' % down)
        ep.write_config("[endpoint]\nprovider = github\nsecret = literal:%s\n"
                        "listen = 127.0.0.1:%d\n"
                        "[worker]\nhandler = exec:/bin/true\nmax_attempts = 50\n"
                        "backoff = 10ms..20ms\n"
                        "[route \"flaky\"]\nhandler = exec:%s\nbreaker = 3\n"
                        "breaker_cooldown = 2s\n" % (SECRET, ep.port, h))
        ep.start_ingress(activate=False)
        ep.start("knock-worker")

        open(down, "w").close()
        flaky = [post("flaky") for _ in range(3)]
        t.ok(kt.wait_for(lambda: breaker(), timeout=15), "3 failed attempts open the breaker")
        b = (breaker() or [{}])[0]
        t.eq((b.get("route"), b.get("by"), b.get("reason")),
             ("flaky", "breaker", "3 failed attempts in a row"), "status shows it, with why")
        t.ok(kt.wait_for(lambda: "Circuit breaker of event type flaky opened" in ep.stderr("worker"),
                         timeout=5), "a record says it opened")
        time.sleep(0.3)
        a0 = attempts(flaky)
        other = [post("other") for _ in range(3)]
        t.ok(all(kt.final_event(ep, i) for i in other), "another route runs meanwhile")
        time.sleep(0.8)
        t.eq(attempts(flaky), a0, "while open (within the cooldown) no attempt is made")
        t.ok(all(kt.event_row(ep, i)["status"] in ("failed", "received") for i in flaky),
             "the route's events wait")
        t.ok(kt.wait_for(lambda: (kt.metric(metrics(), "knock_breaker_transitions_total",
                                         '{to="open"}') or 0) >= 1.0, timeout=15),
             "/metrics counts the opening")

        # Still down: the probe after the cooldown fails and opens it again.
        since = (breaker() or [{}])[0].get("since")
        a0 = attempts(flaky)
        t.ok(kt.wait_for(lambda: (breaker() or [{}])[0].get("since", since) != since, timeout=10),
             "after the cooldown a failed probe opens it again")
        t.eq(attempts(flaky), a0 + 1, "… after exactly one probe attempt")

        # The downstream is back: the next probe closes it and everything drains.
        os.unlink(down)
        t.ok(kt.wait_for(lambda: not breaker(), timeout=10), "a successful probe closes it")
        t.ok(all(kt.final_event(ep, i) for i in flaky), "the waiting events drain")
        t.eq({kt.event_row(ep, i)["status"] for i in flaky}, {"handled"}, "… handled")
        t.ok("Circuit breaker of event type flaky closed" in ep.stderr("worker"),
             "a record says it closed")
        t.ok(kt.wait_for(lambda: kt.metric(metrics(), "knock_breaker_transitions_total",
                                        '{to="closed"}') == 1.0, timeout=15),
             "/metrics counts the closing")

        # Open again, then closed by hand.
        open(down, "w").close()
        more = [post("flaky") for _ in range(3)]
        t.ok(kt.wait_for(lambda: breaker(), timeout=15), "it opens again after 3 more failures")
        ep.stop("worker")
        ep.start("knock-worker")
        time.sleep(0.5)
        t.ok(breaker(), "a restarted worker keeps it open")
        os.unlink(down)
        rc, out, err = ep.knockctl("resume", "--route", "flaky")
        t.eq((rc, out.strip()), (0, "route flaky of br resumed"), "resume --route closes it", err)
        t.ok(all(kt.final_event(ep, i) for i in more), "its events drain at once")
        t.eq(breaker(), [], "no breaker is left")
    finally:
        ep.cleanup()
    t.done()


main()
