#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Crash test: many concurrent keep-alive clients send signed webhooks while
knock-ingress is killed with SIGKILL at a random moment; after a restart,
every request that got a 2xx must be in the database, the database must pass
PRAGMA integrity_check, and every stored event must have its delivery.
Repeated ROUNDS times; zero losses allowed."""

import http.client
import json
import os
import random
import signal
import threading
import time

import knocktest as kt

SECRET = "crash-test-secret"
ROUNDS = int(os.environ.get("KNOCK_CRASH_ROUNDS", "20"))
CLIENTS = 16


def client(ep, k, rnd, acked, stop):
    conn = None
    i = 0
    while not stop.is_set():
        d = "c%d-%d-%d" % (rnd, k, i)
        i += 1
        body = json.dumps({"n": i, "pad": "x" * random.randint(10, 1500)}).encode()
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", ep.port, timeout=5)
            conn.request("POST", "/", body, kt.github_headers(SECRET, body, d))
            r = conn.getresponse()
            data = r.read()
            if r.status == 200:
                acked.append((d, json.loads(data)["delivery_id"]))
        except Exception:
            # The server died mid-request: no answer means no promise.
            conn = None
            time.sleep(0.01)


def main():
    t = kt.Tap()
    ep = kt.Endpoint("crash")
    total_acked = 0
    try:
        ep.write_config("[endpoint]\nprovider = github\nsecret = literal:%s\nlisten = 127.0.0.1:%d\n"
                        % (SECRET, ep.port))
        for rnd in range(ROUNDS):
            ep.start_ingress(activate=False)
            acked, stop = [], threading.Event()
            ths = [threading.Thread(target=client, args=(ep, k, rnd, acked, stop)) for k in range(CLIENTS)]
            for th in ths:
                th.start()
            time.sleep(random.uniform(0.3, 1.2))
            ep.kill9("ingress")
            stop.set()
            for th in ths:
                th.join()
            total_acked += len(acked)

            c = ep.db()
            # PostgreSQL has no integrity_check: its own WAL replay is what a crash tests.
            integrity = (c.execute("PRAGMA integrity_check").fetchone()[0]
                         if ep.engine == "sqlite" else None)
            stored = {row[0] for row in c.execute("SELECT id FROM deliveries")}
            events = {row[0] for row in c.execute("SELECT provider_event_id FROM events")}
            orphans = c.execute("SELECT count(*) FROM events e WHERE NOT EXISTS "
                                "(SELECT 1 FROM deliveries d WHERE d.id = e.delivery_id)").fetchone()[0]
            c.close()
            lost = [d for d, dlv in acked if dlv not in stored or d not in events]
            t.ok(len(acked) > 0 and not lost and integrity in ("ok", None) and orphans == 0,
                 "round %d: %d acknowledged, 0 lost%s" % (rnd + 1, len(acked),
                                                         ", integrity ok" if integrity else ""),
                 "lost=%r integrity=%r events-without-delivery=%d" % (lost[:5], integrity, orphans))
        # One last restart must come up on the crashed database and serve.
        ep.start_ingress(activate=False)
        body = b"{}"
        st, _, _ = ep.post(body, kt.github_headers(SECRET, body, "after-crash"))
        t.eq(st, 200, "after %d crashes the ingress serves again" % ROUNDS)
        t.diag("total acknowledged over all rounds: %d" % total_acked)
    finally:
        ep.cleanup()
    t.done()


if __name__ == "__main__":
    main()
