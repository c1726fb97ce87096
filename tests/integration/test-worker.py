#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""knock-worker with exec: handlers (contract §7, §8 outbox, §12 SIGTERM).

Real handler programs (small shell scripts) routed per event type on one
endpoint: handled; retried then handled; exit 65 → dead at once; attempts
exhausted → dead; timeout → process group killed and retried; no handler →
ignored; output bounded; completion hooks queued in the outbox for handled
and dead only. A second endpoint checks SIGTERM: running handlers are
killed at the stop deadline and their claims released uncounted. Events are
inserted with sqlite3 and the worker is woken by its datagram socket, as
the ingress does after a commit.
"""

import json
import os
import signal
import time

from knocktest import Endpoint, Tap, insert_event, wait_for, wake, write_script
from knocktest import event_attempts as attempts, event_row as event, final_event as final

t = Tap()


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# ---- endpoint 1: every exec outcome --------------------------------------------------

ep = Endpoint("work")
try:
    rec = os.path.join(ep.tmp, "records")
    os.makedirs(rec)
    ok_sh = write_script(ep, "ok.sh",
                   'env | grep ^KNOCK_ | sort > "%s/$KNOCK_EVENT_ID.env"\n'
                   'cat > "%s/$KNOCK_EVENT_ID.body"\n'
                   'echo "handled $KNOCK_EVENT_ID"\nexit 0\n' % (rec, rec))
    flaky_sh = write_script(ep, "flaky.sh",
                      'n=$(cat "%s/flaky.n" 2>/dev/null || echo 0)\n'
                      'echo $((n + 1)) > "%s/flaky.n"\n'
                      '[ "$n" -ge 2 ] && exit 0\n'
                      'echo "not yet ($n)" >&2\nexit 75\n' % (rec, rec))
    bad_sh = write_script(ep, "bad.sh", 'echo "malformed payload" >&2\nexit 65\n')
    fail_sh = write_script(ep, "fail.sh", 'echo "always failing"\nexit 1\n')
    slow_sh = write_script(ep, "slow.sh",
                     'if [ "$KNOCK_ATTEMPT" = 1 ]; then\n'
                     '  sleep 60 &\n  echo $! > "%s/grandchild.pid"\n  sleep 60\nfi\n'
                     'exit 0\n' % rec)
    loud_sh = write_script(ep, "loud.sh", 'head -c 10000 /dev/zero | tr "\\0" x\nexit 0\n')
    sig_sh = write_script(ep, "sig.sh",
                    'if [ "$KNOCK_ATTEMPT" = 1 ]; then kill -KILL $$; fi\nexit 0\n')

    ep.write_config("""[endpoint]
provider = none
allow_unverified = yes
listen = 127.0.0.1:%d

[worker]
concurrency = 4
timeout = 1s
max_attempts = 3
backoff = 10ms..50ms
max_output = 1K

[route "ok"]
handler = exec:%s
[route "flaky"]
handler = exec:%s
[route "bad"]
handler = exec:%s  --strict
[route "fail"]
handler = exec:%s
[route "slow"]
handler = exec:%s
[route "loud"]
handler = exec:%s
[route "sig"]
handler = exec:%s

[hook]
url = http://127.0.0.1:9/hooks
secret = literal:whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
on = handled, dead
""" % (ep.port, ok_sh, flaky_sh, bad_sh, fail_sh, slow_sh, loud_sh, sig_sh))

    w = ep.start("knock-worker")
    ready = ep.notify["worker"].seen("READY")
    if not t.ok(ready and w.poll() is None, "worker starts and sends READY=1", ep.stderr("worker")):
        t.done()

    # No polling: an idle worker uses (almost) no CPU.
    c0 = cpu_ticks(w.pid)
    time.sleep(1.5)
    t.ok(cpu_ticks(w.pid) - c0 <= 3, "idle worker uses no CPU (no polling loop)",
         "ticks used: %d" % (cpu_ticks(w.pid) - c0))

    body = b'{"hello":"world","n":1}'
    insert_event(ep, "evt_ok", "ok", body)
    for eid, typ in (("evt_flaky", "flaky"), ("evt_bad", "bad"), ("evt_fail", "fail"),
                     ("evt_slow", "slow"), ("evt_none", "unrouted"), ("evt_loud", "loud"),
                     ("evt_sig", "sig")):
        insert_event(ep, eid, typ)
    wake(ep)

    # handled
    e = final(ep, "evt_ok")
    t.eq(e and e["status"], "handled", "exit 0 → handled")
    t.eq(e and e["attempt_count"], 1, "handled after one attempt")
    t.ok(e and e["claimed_by"] is None and e["claim_until"] is None,
         "claim cleared when handled")
    a = attempts(ep, "evt_ok")
    t.ok(len(a) == 1 and a[0]["outcome"] == "success" and a[0]["exit_code"] == 0
         and a[0]["ended_at"] and a[0]["started_at"], "attempt recorded: start, end, outcome, exit code", a)
    t.ok(a and "handled evt_ok" in (a[0]["output"] or ""), "handler output captured", a)
    with open(os.path.join(rec, "evt_ok.body"), "rb") as f:
        t.eq(f.read(), body, "body delivered on stdin, byte for byte")
    with open(os.path.join(rec, "evt_ok.env")) as f:
        env = dict(l.rstrip("\n").split("=", 1) for l in f if "=" in l)
    t.eq(env.get("KNOCK_ENDPOINT"), "work", "KNOCK_ENDPOINT")
    t.eq(env.get("KNOCK_EVENT_ID"), "evt_ok", "KNOCK_EVENT_ID")
    t.eq(env.get("KNOCK_EVENT_TYPE"), "ok", "KNOCK_EVENT_TYPE")
    t.eq(env.get("KNOCK_PROVIDER_EVENT_ID"), "pe-evt_ok", "KNOCK_PROVIDER_EVENT_ID")
    t.eq(env.get("KNOCK_DELIVERY_ID"), "dlv_evt_ok", "KNOCK_DELIVERY_ID")
    t.eq(env.get("KNOCK_ATTEMPT"), "1", "KNOCK_ATTEMPT")

    # retried then handled
    e = final(ep, "evt_flaky")
    t.eq(e and e["status"], "handled", "exit 75 twice, then 0 → handled")
    a = attempts(ep, "evt_flaky")
    t.eq([x["outcome"] for x in a], ["tempfail", "tempfail", "success"],
         "attempts: tempfail, tempfail, success")
    t.eq([x["attempt"] for x in a], [1, 2, 3], "attempt numbers 1, 2, 3")
    t.ok(len(a) == 3 and a[1]["started_at"] - a[0]["ended_at"] >= 10,
         "retry waited at least the backoff base (10 ms)", a)
    t.ok(a and "not yet" in (a[0]["output"] or ""), "stderr captured too", a)

    # exit 65 → dead at once
    e = final(ep, "evt_bad")
    t.eq(e and e["status"], "dead", "exit 65 → dead")
    t.eq(e and e["attempt_count"], 1, "dead at once, no retry")
    t.eq(e and e["status_reason"], "permanent_failure", "status_reason permanent_failure")
    t.ok(e and "65" in (e["last_error"] or ""), "last_error names the exit status", e)

    # attempts exhausted → dead
    e = final(ep, "evt_fail")
    t.eq(e and e["status"], "dead", "exit 1 on every attempt → dead")
    t.eq(e and e["attempt_count"], 3, "after max_attempts (3)")
    t.eq(e and e["status_reason"], "max_attempts", "status_reason max_attempts")
    t.eq([x["exit_code"] for x in attempts(ep, "evt_fail")], [1, 1, 1],
         "every attempt recorded with its exit code")

    # signal → retry
    e = final(ep, "evt_sig")
    a = attempts(ep, "evt_sig")
    t.ok(e and e["status"] == "handled" and len(a) == 2 and a[0]["signal"] == 9
         and a[0]["outcome"] == "tempfail", "killed by a signal → retried", a)

    # timeout → killed and retried
    e = final(ep, "evt_slow")
    a = attempts(ep, "evt_slow")
    t.eq(e and e["status"], "handled", "timed-out handler retried, then handled")
    t.ok(len(a) == 2 and a[0]["outcome"] == "timeout" and a[1]["outcome"] == "success",
         "attempts: timeout, success", a)
    t.ok(a and 900 <= a[0]["ended_at"] - a[0]["started_at"] < 10000,
         "first attempt ended at the 1 s timeout", a)
    gc = int(open(os.path.join(rec, "grandchild.pid")).read())
    t.ok(wait_for(lambda: not pid_alive(gc), timeout=10),
         "timeout killed the whole process group (grandchild gone)")

    # no handler → ignored
    e = final(ep, "evt_none")
    t.eq(e and e["status"], "ignored", "no handler for the type → ignored")
    t.eq(e and e["status_reason"], "no_handler", "status_reason no_handler")
    t.eq(len(attempts(ep, "evt_none")), 0, "ignored without an attempt")

    # output is bounded
    e = final(ep, "evt_loud")
    a = attempts(ep, "evt_loud")
    t.ok(e and e["status"] == "handled" and a and len(a[0]["output"] or "") == 1024,
         "10000 bytes of output captured up to max_output (1K)",
         a and len(a[0]["output"] or ""))

    # hook outbox
    hooks = ep.query("SELECT * FROM hooks ORDER BY created_at")
    by_event = {}
    for h in hooks:
        by_event.setdefault(h["event_id"], []).append(h)
    t.eq(sorted(by_event),
         sorted(["evt_ok", "evt_flaky", "evt_bad", "evt_fail", "evt_slow", "evt_loud",
                 "evt_sig"]),
         "one hook per handled/dead event, none for ignored")
    t.ok(all(len(v) == 1 for v in by_event.values()), "exactly one hook each (not per attempt)")
    h = by_event.get("evt_bad", [{}])[0]
    p = json.loads(h.get("payload") or "{}")
    t.eq(h.get("state"), "pending", "hook queued as pending")
    t.eq(p.get("type"), "knock.event.dead", "dead hook type")
    t.ok(p.get("endpoint") == "work" and p.get("event_id") == "evt_bad"
         and p.get("provider_event_id") == "pe-evt_bad" and p.get("event_type") == "bad"
         and p.get("status") == "dead" and p.get("attempts") == 1
         and p.get("finished_at", "").endswith("Z") and "65" in (p.get("last_error") or ""),
         "dead hook payload per contract §8", p)
    p = json.loads(by_event.get("evt_flaky", [{}])[0].get("payload") or "{}")
    t.ok(p.get("type") == "knock.event.handled" and p.get("attempts") == 3,
         "handled hook payload carries the attempt count", p)

    # journal records for failed and dead
    err = ep.stderr("worker")
    t.ok("KNOCK_EVENT_ID=evt_bad" in err and "dead" in err, "dead event logged with its id", err[-2000:])
    t.ok("KNOCK_EVENT_ID=evt_flaky" in err and "failed" in err,
         "failed attempt logged with its id", err[-2000:])

    # STATUS= shows in-flight handlers and queue depth
    time.sleep(0.1)
    t.ok(any("running" in s and "queue" in s for s in ep.notify["worker"].seen("STATUS")),
         "STATUS= shows handlers running and queue depth", ep.notify["worker"].seen("STATUS"))

    # clean stop
    rc = ep.stop("worker")
    t.eq(rc, 0, "SIGTERM with nothing running: exit 0")
    t.ok(ep.notify["worker"].seen("STOPPING"), "STOPPING=1 sent")
finally:
    ep.cleanup()

# ---- endpoint 2: SIGTERM releases running claims --------------------------------------

ep = Endpoint("stopper")
try:
    rec = os.path.join(ep.tmp, "records")
    os.makedirs(rec)
    sleeper = write_script(ep, "sleeper.sh", 'echo $$ > "%s/$KNOCK_EVENT_ID.pid"\nexec sleep 60\n' % rec)
    quick = write_script(ep, "quick.sh", 'echo $$ > "%s/$KNOCK_EVENT_ID.pid"\nsleep 0.3\nexit 0\n' % rec)
    ep.write_config("""[endpoint]
provider = none
allow_unverified = yes
listen = 127.0.0.1:%d
[worker]
concurrency = 4
timeout = 60s
[route "long"]
handler = exec:%s
[route "quick"]
handler = exec:%s
""" % (ep.port, sleeper, quick))
    w = ep.start("knock-worker", extra_env={"KNOCK_STOP_TIMEOUT": "2s"})
    insert_event(ep, "evt_long1", "long")
    insert_event(ep, "evt_long2", "long")
    insert_event(ep, "evt_quick", "quick")
    wake(ep)
    # 'processing' is written at the claim, before the job is spawned; a job
    # claimed but not yet started when SIGTERM comes is given back unrun. Wait
    # for the three handlers themselves (their pid files).
    running = wait_for(lambda: len(ep.query(
        "SELECT id FROM events WHERE status = 'processing'")) == 3
        and all(os.path.exists(os.path.join(rec, i + ".pid"))
                for i in ("evt_long1", "evt_long2", "evt_quick")), timeout=10)
    e = event(ep, "evt_long1")
    t.ok(running and e["claimed_by"] == ep.holder("worker", w.pid)
         and e["claim_until"] > e["updated_at"],
         "processing is visible: claimed_by worker:PID and claim_until", e)
    t0 = time.monotonic()
    os.kill(w.pid, signal.SIGTERM)
    try:
        rc = w.wait(timeout=20)
    except Exception:
        rc = None
    took = time.monotonic() - t0
    t.eq(rc, 0, "SIGTERM with handlers running: clean exit")
    t.ok(1.5 <= took < 10, "waited for the stop deadline (2 s) then stopped", took)
    e = event(ep, "evt_quick")
    t.eq(e["status"], "handled", "a handler finishing before the deadline is recorded")
    for eid in ("evt_long1", "evt_long2"):
        e = event(ep, eid)
        a = attempts(ep, eid)
        t.ok(e["status"] == "received" and e["attempt_count"] == 0 and e["claimed_by"] is None,
             "%s released: back to received, attempt not counted" % eid, e)
        t.ok(len(a) == 1 and a[0]["outcome"] == "interrupted", "%s attempt kept as interrupted" % eid, a)
        pid = int(open(os.path.join(rec, eid + ".pid")).read())
        t.ok(not pid_alive(pid), "%s handler killed" % eid)

    # a restarted worker runs the released events at once
    ep.write_config("""[endpoint]
provider = none
allow_unverified = yes
listen = 127.0.0.1:%d
[worker]
handler = exec:%s
""" % (ep.port, quick))
    ep.start("knock-worker")
    t.ok(final(ep, "evt_long1") and final(ep, "evt_long2"),
         "released events handled by the next worker")
    t.eq(event(ep, "evt_long1")["attempt_count"], 1, "the interrupted run did not count")
finally:
    ep.cleanup()

t.done()
