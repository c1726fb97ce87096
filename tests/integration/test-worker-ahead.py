#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Claims held ahead of a free slot (knock-worker(8), "Claiming ahead"): with
every slot busy the worker claims further events, whose attempts say "queued"
until their handler starts; then "running" with the real start time. Never
more handlers at once than concurrency. On SIGTERM the queued claims are given
back without an attempt: the events are "received" again with attempt_count 0.
A burst of quick handlers, most of which exit before the loop hears from the
spawner thread, each ends with its own exit status and output."""

import os
import time

import knocktest as kt


def attempts(ep):
    return ep.query("SELECT event_id, attempt, outcome, started_at, ended_at FROM attempts "
                    "ORDER BY started_at, event_id")


def main():
    t = kt.Tap()
    ep = kt.Endpoint("ahead")
    try:
        log = os.path.join(ep.tmp, "runs.log")
        # Made before the worker starts: handlers may not create files directly
        # in a directory above the state directory (knock-worker(8), SANDBOX).
        open(log, "w").close()
        h = kt.write_script(ep, "h.sh",
                            'echo "$KNOCK_EVENT_ID start $(date +%%s%%3N)" >> "%s"\n'
                            'sleep 0.6\nexit 0\n' % log)
        ep.write_config("[endpoint]\nprovider = none\nallow_unverified = yes\n"
                        "listen = 127.0.0.1:%d\n[worker]\nhandler = exec:%s\nconcurrency = 1\n"
                        % (ep.port, h))
        w = ep.start("knock-worker")
        for i in range(3):
            kt.insert_event(ep, "evt_%d" % i, "t")
        kt.wake(ep)
        t.ok(kt.wait_for(lambda: [a["outcome"] for a in attempts(ep)] == ["running", "queued"],
                         timeout=10),
             "one handler running (concurrency 1), the next event claimed ahead as queued",
             attempts(ep))
        first = attempts(ep)
        queued_id = first[1]["event_id"]
        t.eq(ep.query("SELECT status FROM events WHERE id = ?", (queued_id,))[0]["status"],
             "processing", "a queued claim is processing (held, with a lease)")
        t.ok(kt.wait_for(lambda: ep.query(
            "SELECT outcome FROM attempts WHERE event_id = ?", (queued_id,))[0]["outcome"]
            == "running", timeout=10, interval=0.005),
             "once its handler starts, the queued attempt says running")
        done = kt.wait_for(lambda: {r["status"] for r in ep.query("SELECT status FROM events")}
                           == {"handled"}, timeout=20)
        t.ok(done, "every event handled")
        rows = attempts(ep)
        t.eq([(r["attempt"], r["outcome"]) for r in rows], [(1, "success")] * 3,
             "one attempt each, numbered 1")
        t.ok(all(rows[i + 1]["started_at"] >= rows[i]["ended_at"] for i in range(2)),
             "handlers ran one at a time: each queued attempt started after the previous ended",
             rows)
        with open(log) as f:
            starts = {l.split()[0]: int(l.split()[2]) for l in f}
        t.ok(all(abs(r["started_at"] - starts[r["event_id"]]) < 300 for r in rows),
             "the recorded start is when the handler started, not when it was claimed",
             (rows, starts))

        # SIGTERM with a claim held ahead: given back, no attempt, attempt_count 0.
        for i in range(3, 6):
            kt.insert_event(ep, "evt_%d" % i, "t")
        kt.wake(ep)
        t.ok(kt.wait_for(lambda: len(ep.query(
            "SELECT 1 FROM attempts WHERE outcome = 'queued'")) == 1, timeout=10),
             "again one claim held ahead")
        q = ep.query("SELECT event_id FROM attempts WHERE outcome = 'queued'")[0]["event_id"]
        t.eq(ep.stop("worker"), 0, "clean stop while a handler runs and a claim waits")
        ev = ep.query("SELECT status, attempt_count FROM events WHERE id = ?", (q,))[0]
        t.eq((ev["status"], ev["attempt_count"]), ("received", 0),
             "the queued claim was given back uncounted")
        t.eq(len(ep.query("SELECT 1 FROM attempts WHERE event_id = ?", (q,))), 0,
             "and left no attempt row")
        t.eq(len(ep.query("SELECT 1 FROM attempts WHERE outcome IN ('queued', 'running')")), 0,
             "no attempt left queued or running after the stop")
        w = ep.start("knock-worker")
        t.ok(kt.wait_for(lambda: {r["status"] for r in ep.query("SELECT status FROM events")}
                         == {"handled"}, timeout=20), "after a restart every event is handled")
        t.eq(ep.stop("worker"), 0, "clean stop")

        # The bodies held by claims are bounded: over KNOCK_CLAIM_AHEAD_BYTES,
        # nothing is claimed ahead (only what starts at once).
        w = ep.start("knock-worker", extra_env={"KNOCK_CLAIM_AHEAD_BYTES": "100"})
        for i in range(6, 9):
            kt.insert_event(ep, "evt_%d" % i, "t", body=b"x" * 200)
        kt.wake(ep)
        t.ok(kt.wait_for(lambda: len(ep.query(
            "SELECT 1 FROM attempts WHERE outcome = 'running'")) == 1, timeout=10),
             "a handler runs")
        time.sleep(0.3)
        t.eq(len(ep.query("SELECT 1 FROM attempts WHERE outcome = 'queued'")), 0,
             "no claim ahead while the claims' bodies exceed KNOCK_CLAIM_AHEAD_BYTES")
        t.ok(kt.wait_for(lambda: {r["status"] for r in ep.query("SELECT status FROM events")}
                         == {"handled"}, timeout=20), "still every event is handled")
        t.eq(ep.stop("worker"), 0, "clean stop")

        # A burst of quick handlers: most exit before the loop hears from the
        # spawner thread that they started, so their exit is held until then.
        # Each must still be matched to its own job: odd events exit 65 (dead at
        # once), even ones print their id and succeed.
        quick = kt.write_script(ep, "quick.sh",
                                'case "$KNOCK_EVENT_ID" in *[13579]) exit 65;; esac\n'
                                'echo "$KNOCK_EVENT_ID"\n')
        ep.write_config("[endpoint]\nprovider = none\nallow_unverified = yes\n"
                        "listen = 127.0.0.1:%d\n[worker]\nhandler = exec:%s\nconcurrency = 4\n"
                        % (ep.port, quick))
        burst = ["evt_b%03d" % i for i in range(200)]
        for e in burst:
            kt.insert_event(ep, e, "t")
        w = ep.start("knock-worker")
        t.ok(kt.wait_for(lambda: not ep.query(
            "SELECT 1 FROM events WHERE id LIKE 'evt_b%' AND status NOT IN ('handled', 'dead')"),
            timeout=60), "a burst of 200 quick handlers all end")
        rows = ep.query("SELECT e.id, e.status, a.outcome, a.exit_code, a.output FROM events e "
                        "JOIN attempts a ON a.event_id = e.id WHERE e.id LIKE 'evt_b%' ORDER BY e.id")
        want = [(e, "dead", "permanent", 65, None) if int(e[-1]) % 2 else
                (e, "handled", "success", 0, e + "\n") for e in burst]
        got = [(r["id"], r["status"], r["outcome"], r["exit_code"], r["output"]) for r in rows]
        t.eq(got, want, "each exit status and output belongs to its own event, one attempt each",
             [g for g, x in zip(got, want) if g != x][:5])
        t.eq(ep.stop("worker"), 0, "clean stop")
    finally:
        ep.cleanup()
    t.done()


if __name__ == "__main__":
    main()
