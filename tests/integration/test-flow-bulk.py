#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Bulk verbs by query through the real daemons (knockctl(1), OPERATING ON
EVENTS): events that died in an outage are found with `requeue --status
dead --since 1h --dry-run`, which changes nothing and writes no audit row;
the real run requeues exactly those in one audited operation (filters and
count) and the worker handles them; older dead events, handled events and
other statuses are left alone; --until, --type and usage errors."""

import json
import os
import time

import knocktest as kt

SECRET = "bulk-secret"


def main():
    t = kt.Tap()
    ep = kt.Endpoint("bulk")
    post = kt.GithubSender(ep, SECRET)

    def snapshot():
        return ep.query("SELECT id, status, attempt_count, updated_at FROM events ORDER BY id")

    def audit_count():
        return ep.query("SELECT count(*) AS n FROM audit")[0]["n"]

    try:
        rec = os.path.join(ep.tmp, "records")
        os.makedirs(rec)
        flag = os.path.join(rec, "down")
        h = kt.write_script(ep, "h.sh", '[ "$KNOCK_EVENT_TYPE" = invoice ] && [ -e "%s" ] && '
                            'exit 65\nexit 0\n' % flag)
        ep.write_config("[endpoint]\nprovider = github\nsecret = literal:%s\n"
                        "listen = 127.0.0.1:%d\n[worker]\nhandler = exec:%s\n"
                        % (SECRET, ep.port, h))
        ep.start_ingress(activate=False)
        ep.start("knock-worker")

        two_hours_ago = int((time.time() - 7200) * 1000)
        old = ["evt_old%d" % i for i in range(2)]
        for i in old:
            kt.insert_event(ep, i, "invoice", status="dead", received_at=two_hours_ago,
                            updated_at=two_hours_ago, finished_at=two_hours_ago)
        open(flag, "w").close()
        outage = [post("invoice") for _ in range(4)]
        fine = [post("push") for _ in range(2)]
        t.ok(all(kt.final_event(ep, i) for i in outage + fine), "every event ended")
        t.eq([kt.event_row(ep, i)["status"] for i in outage], ["dead"] * 4,
             "the outage killed 4 events")
        os.unlink(flag)

        before, audits = snapshot(), audit_count()
        rc, out, err = ep.knockctl("--json", "requeue", "--status", "dead", "--since", "1h",
                                   "--dry-run")
        doc = json.loads(out) if rc == 0 else {}
        t.eq(rc, 0, "requeue --status dead --since 1h --dry-run", err)
        t.eq((doc.get("dry_run"), doc.get("count"), sorted(doc.get("ids", []))),
             (True, 4, sorted(outage)), "--dry-run names exactly the 4 that died in the outage")
        t.eq(doc.get("filters", {}).get("status"), ["dead"], "… with the filter it ran")
        rc, out, _ = ep.knockctl("requeue", "--status", "dead", "--since", "1h", "--dry-run")
        t.ok(rc == 0 and out.startswith("would requeue 4 events: ") and
             all(i in out for i in outage) and "nothing was changed" in out,
             "the human --dry-run says how many and which", out)
        time.sleep(0.3)
        t.eq(snapshot(), before, "--dry-run changes no event")
        t.eq(audit_count(), audits, "--dry-run writes no audit row")

        rc, out, _ = ep.knockctl("--json", "requeue", "--status", "dead", "--until", "1h",
                                 "--dry-run")
        t.eq(sorted(json.loads(out)["ids"]), sorted(old), "--until selects the older ones")

        rc, out, err = ep.knockctl("--json", "requeue", "--status", "dead", "--since", "1h")
        doc = json.loads(out) if rc == 0 else {}
        t.eq((rc, sorted(doc.get("changed", []))), (0, sorted(outage)),
             "the real run requeues exactly those", err)
        t.ok(all(kt.final_event(ep, i) for i in outage), "the worker runs them again")
        t.eq([kt.event_row(ep, i)["status"] for i in outage], ["handled"] * 4,
             "… and they are handled now")
        t.eq([kt.event_row(ep, i)["status"] for i in old], ["dead", "dead"],
             "the dead events from before the outage are left alone")
        rows = ep.query("SELECT * FROM audit WHERE action = 'requeue'")
        t.eq(len(rows), 1, "one audit row for the whole operation")
        f = json.loads(rows[0]["filters"] or "{}")
        t.eq((f.get("status"), f.get("since") is not None, f.get("until"), f.get("type")),
             (["dead"], True, None, None), "… with the filter")
        t.eq((json.loads(rows[0]["counts"]), sorted(json.loads(rows[0]["ids"]))),
             ({"changed": 4, "unchanged": 0}, sorted(outage)), "… the count and the ids")

        rc, out, _ = ep.knockctl("--json", "replay", "--type", "invoice", "--since", "1h",
                                 "--dry-run")
        t.eq(sorted(json.loads(out)["ids"]), sorted(outage),
             "replay --type selects handled events of that type")
        rc, out, _ = ep.knockctl("--json", "ignore", "--type", "push")
        t.eq((rc, json.loads(out)["changed"]), (0, []),
             "ignore --type push: handled events are not selected; nothing to change")

        t.eq(ep.knockctl("requeue", "--status", "handled")[0], 2,
             "requeue --status handled is a usage error (requeue changes failed, dead, ignored)")
        t.eq(ep.knockctl("requeue", "--status", "nope")[0], 2, "an unknown status is refused")
        t.eq(ep.knockctl("requeue", outage[0], "--status", "dead")[0], 2,
             "ids and a query together are refused")
        t.eq(ep.knockctl("requeue", "--dry-run")[0], 2, "--dry-run without a query is refused")
        t.eq(ep.knockctl("requeue", "--since", "tomorrow")[0], 2, "a bad time is refused")
    finally:
        ep.cleanup()
    t.done()


main()
