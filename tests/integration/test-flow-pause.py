#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""knockctl pause/resume through the real daemons (knock-endpoint(5) FLOW
CONTROL): a paused route holds its events as `received` while another route
runs, across a worker restart, and resume drains them; a paused endpoint
claims nothing while a handler already running finishes; status, /metrics,
the worker's STATUS= line and the audit trail say what is paused since when
and by whom; /readyz stays ready; a paused worker with a backlog does not
spin."""

import json
import os
import re
import time

import knocktest as kt

SECRET = "pause-secret"


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def main():
    t = kt.Tap()
    ep = kt.Endpoint("pz")
    post = kt.GithubSender(ep, SECRET)

    def statuses(ids):
        return [(kt.event_row(ep, i) or {}).get("status") for i in ids]

    def all_status(ids, want, timeout=20):
        return kt.wait_for(lambda: all(s == want for s in statuses(ids)), timeout=timeout)

    def attempts(ids):
        return sum(len(kt.event_attempts(ep, i)) for i in ids)

    def worker_status():
        return (ep.notify["worker"].seen("STATUS") or [""])[-1]

    try:
        os.makedirs(os.path.join(ep.tmp, "records"))
        log = os.path.join(ep.tmp, "records", "ran.log")
        rec = kt.write_script(ep, "rec.sh", 'echo "$KNOCK_EVENT_TYPE $KNOCK_EVENT_ID" >> "%s"\n'
                              'exit 0\n' % log)
        slow = kt.write_script(ep, "slow.sh", 'sleep 2\nexit 0\n')
        ep.write_config("[endpoint]\nprovider = github\nsecret = literal:%s\n"
                        "listen = 127.0.0.1:%d\n"
                        "[worker]\nhandler = exec:%s\nconcurrency = 2\n"
                        "[route \"held\"]\nhandler = exec:%s\n"
                        "[route \"slow\"]\nhandler = exec:%s\n" % (SECRET, ep.port, rec, rec, slow))
        ep.start_ingress(activate=False)
        ep.start("knock-worker")

        # ---- a paused route ---------------------------------------------------
        rc, out, err = ep.knockctl("pause", "--route", "held", "--reason", "downstream down")
        t.eq(rc, 0, "pause --route held succeeds", err)
        t.ok("route held of pz paused since" in out, "pause says what it paused", out)
        held = [post("held") for _ in range(5)]
        runs = [post("push") for _ in range(5)]
        t.ok(all(held) and all(runs), "10 events stored")
        t.ok(all_status(runs, "handled"), "the other route runs while 'held' is paused",
             statuses(runs))
        time.sleep(1.0)
        t.eq(statuses(held), ["received"] * 5, "the paused route's events wait as received")
        t.eq(attempts(held), 0, "no attempt was made for them")

        pid = ep.procs["worker"].pid
        c0 = cpu_ticks(pid)
        for _ in range(20):
            kt.wake(ep)
            time.sleep(0.1)
        time.sleep(1.0)
        spent = cpu_ticks(pid) - c0
        t.ok(spent < 50, "a paused backlog does not make the worker spin (%d ticks in 3 s)" % spent)

        rc, out, _ = ep.knockctl("--json", "status")
        doc = json.loads(out)
        p = doc.get("paused") or [{}]
        t.eq(len(doc.get("paused", [])), 1, "status --json lists one pause", doc.get("paused"))
        t.eq((p[0].get("route"), p[0].get("reason"), p[0].get("kind")),
             ("held", "downstream down", "operator"), "… its route, reason and kind")
        t.ok(re.match(r"^\S+\(\d+\)$", p[0].get("by") or "") and p[0].get("since", "").endswith("Z"),
             "… who paused it and since when", p[0])
        rc, out, _ = ep.knockctl("status")
        t.ok(re.search(r"^paused: route held since \S+Z by \S+ \(downstream down\)$", out, re.M),
             "status says what is paused since when and by whom", out)

        st, body = ep.admin_get("/metrics")
        text = body.decode()
        t.eq(kt.metric(text, "knock_paused"), 0.0, "/metrics: knock_paused 0 (the endpoint runs)")
        t.eq(kt.metric(text, "knock_paused", '{route="held"}'), 1.0,
             '/metrics: knock_paused{route="held"} 1')
        since = kt.metric(text, "knock_paused_since_seconds", '{route="held"}')
        t.ok(since and abs(since - time.time()) < 60, "/metrics: since when", since)
        st, _ = ep.admin_get("/readyz")
        t.eq(st, 200, "/readyz stays ready while a route is paused")
        t.ok(kt.wait_for(lambda: "routes paused: held" in worker_status(), timeout=15),
             "the worker's STATUS= says the route is paused", worker_status())

        rc, out, _ = ep.knockctl("--json", "pause", "--route", "held")
        t.eq((rc, json.loads(out).get("changed")), (0, False),
             "pausing a paused route succeeds and changes nothing")

        # Restart-safe: a new worker finds the pause in the database.
        t.eq(ep.stop("worker"), 0, "worker stops cleanly")
        ep.start("knock-worker")
        kt.wake(ep)
        time.sleep(1.5)
        t.eq(statuses(held), ["received"] * 5, "after a worker restart the route is still paused")

        rc, out, err = ep.knockctl("resume", "--route", "held")
        t.eq((rc, out.strip()), (0, "route held of pz resumed"), "resume --route held", err)
        t.ok(all_status(held, "handled"), "resume drains the held events", statuses(held))
        with open(log) as f:
            ran = [l.split()[1] for l in f if l.startswith("held ")]
        t.eq(sorted(ran), sorted(held), "each held event ran exactly once")
        rc, out, _ = ep.knockctl("resume", "--route", "held")
        t.eq((rc, out.strip()), (0, "route held of pz was not paused; nothing changed"),
             "resuming what is not paused changes nothing")

        # ---- the whole endpoint, with a handler in flight ----------------------
        inflight = post("slow")
        t.ok(kt.wait_for(lambda: statuses([inflight]) == ["processing"], timeout=10),
             "a slow handler is running")
        rc, _, err = ep.knockctl("pause", "--reason", "maintenance")
        t.eq(rc, 0, "pause (the whole endpoint)", err)
        after = [post("push"), post("held"), post("other")]
        t.ok(all_status([inflight], "handled", timeout=10),
             "the attempt in flight when the pause came finishes")
        time.sleep(1.0)
        t.eq(statuses(after), ["received"] * 3, "a paused endpoint claims nothing")
        st, body = ep.admin_get("/metrics")
        t.eq(kt.metric(body.decode(), "knock_paused"), 1.0, "/metrics: knock_paused 1")
        st, _ = ep.admin_get("/readyz")
        t.eq(st, 200, "/readyz stays ready while the endpoint is paused")
        t.ok(kt.wait_for(lambda: re.search(r"^paused since \S+Z by \S+\(\d+\); ",
                                           worker_status()), timeout=15),
             "the worker's STATUS= says paused since when and by whom", worker_status())
        ep.kill9("worker")
        ep.start("knock-worker")
        kt.wake(ep)
        time.sleep(1.5)
        t.eq(statuses(after), ["received"] * 3, "after kill -9 and a restart it is still paused")
        rc, out, err = ep.knockctl("resume")
        t.eq((rc, out.strip()), (0, "endpoint pz resumed"), "resume", err)
        t.ok(all_status(after, "handled"), "resume drains the endpoint", statuses(after))

        # ---- audit and usage --------------------------------------------------
        rc, out, _ = ep.knockctl("--json", "audit", "--limit", "0")
        rows = [r for r in json.loads(out) if r["action"] in ("pause", "resume")]
        got = [(r["action"], (r["filters"] or {}).get("route"), r["counts"]["changed"])
               for r in reversed(rows)]
        t.eq(got, [("pause", "held", 1), ("pause", "held", 0), ("resume", "held", 1),
                   ("resume", "held", 0), ("pause", None, 1), ("resume", None, 1)],
             "every pause and resume is audited, with the route and what changed")
        t.eq(ep.knockctl("pause", "--route", "")[0], 2, "an empty route is a usage error")
        t.eq(ep.knockctl("pause", "--route", "a\nb")[0], 2, "a route with a newline is refused")
        t.eq(ep.knockctl("resume", "--reason", "x")[0], 2, "resume takes no --reason")
    finally:
        ep.cleanup()
    t.done()


main()
