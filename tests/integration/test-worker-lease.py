#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Lease takeover rules of a running knock-worker: an expired claim held by
another worker is taken over, but an expired claim the running worker holds
itself is not (its handler may still be running after a failed renewal; only
that attempt's result may finish it)."""

import time

import knocktest as kt


def main():
    t = kt.Tap()
    ep = kt.Endpoint("lease")
    try:
        ep.write_config("[endpoint]\nprovider = none\nallow_unverified = yes\nlisten = 127.0.0.1:%d\n"
                        "[worker]\nhandler = exec:/bin/true\n" % ep.port)
        w = ep.start("knock-worker")
        t.ok(w.poll() is None, "worker running")
        own = ep.holder("worker", w.pid)
        past = int(time.time() * 1000) - 60000
        # Both claims expired a minute ago; one is the running worker's own. Inserted
        # so, never "received" (the worker would claim it at once).
        kt.insert_event(ep, "evt_own", "t", status="processing", attempt_count=1, claimed_by=own,
                        claim_until=past)
        kt.insert_event(ep, "evt_foreign", "t", status="processing", attempt_count=1,
                        claimed_by=ep.holder("worker", 1), claim_until=past)
        kt.wake(ep)
        handled = kt.wait_for(lambda: ep.query("SELECT status FROM events WHERE id='evt_foreign'")[0]
                              ["status"] == "handled", timeout=10)
        t.ok(handled, "an expired claim of another worker is taken over and handled")
        kt.wake(ep)
        time.sleep(1.0)
        row = ep.query("SELECT status, claimed_by FROM events WHERE id='evt_own'")[0]
        t.eq((row["status"], row["claimed_by"]), ("processing", own),
             "an expired claim of the running worker itself is left to its own attempt")
        t.eq(ep.stop("worker"), 0, "clean stop")
    finally:
        ep.cleanup()
    t.done()


if __name__ == "__main__":
    main()
