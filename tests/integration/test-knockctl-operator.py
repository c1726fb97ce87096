#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""knockctl as an administrator uses it (issue 16).

- requeue/replay/ignore/event/hooks --event take a provider event id as well
  as knock's; knock's id comes first when one string is both (the ambiguous
  case), and bulk input read from stdin may mix both kinds;
- every human listing escapes the control characters a client chose (ESC,
  BEL, newline, C1, bidi overrides) as systemctl does, while --json carries
  the stored text unchanged;
- a provider event id holding a JSON "\\n" cannot forge a line of the
  ingress's stderr log, nor reach the terminal through `knockctl delivery`;
- --no-pager is accepted anywhere, VERB --help needs no -e with several
  endpoints, --wide/-l never truncates, JSON ages have no float noise.

The database rows are written the way test-knockctl writes them (its
helpers are imported, not copied); the stderr-log case runs the real ingress.
"""

import importlib.util
import json
import os
import sys
import tempfile

import knocktest

_spec = importlib.util.spec_from_file_location(
    "kc", os.path.join(os.path.dirname(os.path.abspath(__file__)), "test-knockctl.py"))
kc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(kc)

NOW, HOUR = kc.NOW, kc.HOUR
t = knocktest.Tap()

ESC_TYPE = "\x1b]0;PWNED\x07\x1b[2J"          # retitle the terminal, clear it
EVIL = "a\nforged\x1b[31m\u202eRTL\x9b"          # newline, SGR, bidi override, C1 CSI
CONTROL_BYTES = [b"\x1b", b"\x07", b"\x9b", b"\xe2\x80\xae", b"\xc2\x9b", b"\r"]


def clean(out):
    """No control byte a client chose reaches the terminal (newlines of the
    layout itself are fine: the evil one must not appear as a raw line)."""
    return not any(c in out for c in CONTROL_BYTES) and b"\nforged" not in out


def test_provider_ids(env):
    db = env.db()
    kc.insert_event(db, "evt_K1", "failed", provider_event_id="evt_C3")
    kc.insert_event(db, "evt_K2", "handled", provider_event_id="evt_C4")
    kc.insert_event(db, "evt_K3", "received", provider_event_id="evt_C5")
    kc.insert_event(db, "evt_K4", "dead", provider_event_id="evt_C6")
    kc.insert_hook(db, "hk_K2", "evt_K2", "failed")
    db.close()

    rc, out, err = env.run("requeue", "evt_C3")
    t.ok(rc == 0 and b"requeued 1 event: evt_K1" in out and
         kc.event_row(env, "evt_K1")["status"] == "received",
         "requeue by provider id: the event it names is requeued", out + err.encode())
    audit = kc.audit_rows(env, "requeue")[-1]
    t.eq(json.loads(audit["ids"]), ["evt_K1"], "the audit row names knock's id")
    rc, out, err = env.run("replay", "evt_C4")
    t.ok(rc == 0 and kc.event_row(env, "evt_K2")["status"] == "received",
         "replay by provider id", err)
    rc, out, err = env.run("ignore", "evt_C5")
    t.ok(rc == 0 and kc.event_row(env, "evt_K3")["status"] == "ignored",
         "ignore by provider id", err)
    rc, doc, err = env.json("event", "evt_C6")
    t.ok(rc == 0 and doc["id"] == "evt_K4" and doc["provider_event_id"] == "evt_C6",
         "event by provider id shows the event", err)
    rc, doc, err = env.json("hooks", "--event", "evt_C4")
    t.ok(rc == 0 and [h["id"] for h in doc] == ["hk_K2"], "hooks --event by provider id", err)

    # stdin: knock's id and the provider's of one event count once.
    rc, out, err = env.run("ignore", "-", stdin=b"evt_K4\nevt_C6  evt_K4\n")
    t.ok(rc == 0 and b"ignored 1 event: evt_K4" in out, "stdin mixing both kinds: one event",
         out + err.encode())
    t.eq(json.loads(kc.audit_rows(env, "ignore")[-1]["ids"]), ["evt_K4"],
         "the audit row lists it once")
    long_id = "p" * 400
    db = env.db()
    kc.insert_event(db, "evt_K5", "dead", provider_event_id=long_id)
    db.close()
    rc, out, err = env.run("requeue", "-", stdin=long_id.encode() + b"\n")
    t.ok(rc == 0 and kc.event_row(env, "evt_K5")["status"] == "received",
         "a 400-byte provider id from stdin is one id", err)

    rc, out, err = env.run("requeue", "evt_NOPE")
    t.ok(rc == 1 and "neither an event id nor a provider event id" in err,
         "unknown id: exit 1, says both kinds were tried", err)
    rc, out, err = env.run("requeue", "evt_C3", "evt_NOPE")
    t.ok(rc == 1 and "nothing was changed" in err, "all or nothing with one unknown", err)

    # The ambiguous case: one string is knock's id of one event and the
    # provider id of another. Knock's id comes first, and stderr says so.
    db = env.db()
    kc.insert_event(db, "evt_AMB", "failed", provider_event_id="p-amb")
    kc.insert_event(db, "evt_OTHER", "dead", provider_event_id="evt_AMB")
    db.close()
    rc, out, err = env.run("requeue", "evt_AMB")
    t.ok(rc == 0 and kc.event_row(env, "evt_AMB")["status"] == "received" and
         kc.event_row(env, "evt_OTHER")["status"] == "dead",
         "ambiguous: knock's id wins, the other event is untouched", out + err.encode())
    t.ok("also the provider event id of event evt_OTHER" in err,
         "ambiguous: a note names the other candidate", err)
    rc, out, err = env.run("ignore", "evt_OTHER")
    t.ok(rc == 0 and kc.event_row(env, "evt_OTHER")["status"] == "ignored",
         "the other candidate is reached by its own id", err)


def test_escaping(env):
    db = env.db()
    kc.insert_event(db, "evt_E1", "failed", provider_event_id="prov" + EVIL,
                    event_type=ESC_TYPE, last_error="boom " + EVIL)
    kc.insert_delivery(db, "dlv_E1", "evt_E1", provider_event_id="prov" + EVIL,
                       event_type=ESC_TYPE, request_id="req" + EVIL,
                       headers=json.dumps([["X-GitHub-Event", ESC_TYPE], ["X-Evil" + EVIL, "v"]]))
    kc.insert_delivery(db, "dlv_E2", None, signature_valid=0, http_status=401,
                       verify_error="bad " + EVIL, event_type=ESC_TYPE, body=None, body_bytes=0)
    db.execute("INSERT INTO attempts(id, event_id, attempt, delivery_id, worker, handler,"
               " started_at, ended_at, outcome, exit_code, error, output)"
               " VALUES('att_E1','evt_E1',1,'dlv_E1','w','exec:/bin/x',?,?,'failure',1,?,?)",
               (NOW - HOUR, NOW - HOUR + 5, "err " + EVIL, "line1\nline2 \x1b[2J\u202eRTL\x9b"))
    kc.insert_hook(db, "hk_E1", "evt_E1", "failed", last_error="hook " + EVIL)
    db.close()

    for args in (["events"], ["event", "evt_E1"], ["deliveries"], ["delivery", "dlv_E1"],
                 ["delivery", "dlv_E2"], ["hooks"], ["hook", "hk_E1"], ["events", "-l"],
                 ["deliveries", "--wide"], ["audit"]):
        rc, out, err = env.run(*args)
        t.ok(rc == 0 and clean(out), "%s: no raw control character" % " ".join(args), out)
    rc, out, _ = env.run("delivery", "dlv_E1")
    t.ok(b"X-GitHub-Event: \\x1b]0;PWNED\\a\\x1b[2J" in out,
         "delivery ID shows the header escaped as systemctl does", out)
    rc, out, _ = env.run("event", "evt_E1")
    t.ok(b"line1\nline2 \\x1b[2J" in out and b"\\u202eRTL\\u009b" in out,
         "handler output keeps its lines, escapes the rest (bidi, C1 as \\uXXXX)", out)
    rc, out, _ = env.run("-l", "events")
    t.ok(b"prova\\nforged" in out, "events shows the provider id, its newline escaped", out)

    rc, doc, _ = env.json("event", "evt_E1")
    t.ok(rc == 0 and doc["event_type"] == ESC_TYPE and doc["provider_event_id"] == "prov" + EVIL
         and doc["attempts"][0]["output"].endswith("\u202eRTL\x9b"),
         "--json carries the stored text unchanged")
    rc, doc, _ = env.json("delivery", "dlv_E1")
    t.ok(rc == 0 and ["X-GitHub-Event", ESC_TYPE] in doc["headers"],
         "--json delivery: headers unchanged")
    rc, out, err = env.run("requeue", "-", stdin=("prov" + EVIL).encode())
    t.ok(rc == 1 and "\x1b" not in err and "\\x1b" in err,
         "an id echoed in an error is escaped too", err)
    for args in (["redeliver-hook", "-"], ["delivery", "-"], ["hook", "-"]):
        argv = args if args[-1] != "-" or args[0] == "redeliver-hook" else args[:-1] + ["x" + EVIL]
        rc, out, err = env.run(*argv, stdin=("hk" + EVIL).encode())
        t.ok(rc == 1 and "\x1b" not in err and "\\x1b" in err,
             "%s: the unknown id is echoed escaped" % args[0], err)


def test_conventions(tmp):
    env = kc.Env(os.path.join(tmp, "two"), {"alpha": kc.GOOD, "beta": kc.GOOD})
    for args in (["requeue", "--help"], ["events", "-h"], ["event", "--help"],
                 ["redeliver-hook", "--help"], ["prune", "--help"], ["status", "--help"]):
        rc, out, err = env.run(*args)
        t.ok(rc == 0 and out.startswith(b"Usage: knockctl") and args[0].encode() in out,
             "%s with two endpoints and no -e: exit 0" % " ".join(args), out + err.encode())
    rc, _, err = env.run("requeue", "evt_x")
    t.ok(rc == 2 and "choose one with -e" in err, "without --help the endpoint is still needed",
         err)

    env = kc.Env(os.path.join(tmp, "one-more"), {"demo": kc.GOOD})
    env.run("migrate")
    db = env.db()
    kc.insert_event(db, "evt_W1", "failed", last_error="x" * 100 + "END")
    db.execute("INSERT INTO daemons(daemon, pid, started_at, heartbeat_at, last_clean_exit,"
               " suspected_oom_kills) VALUES('worker', 42, ?, ?, 1, 0)",
               (NOW - HOUR, NOW - 637))
    db.close()
    rc, plain, _ = env.run("events")
    rc2, nopager, _ = env.run("--no-pager", "events")
    rc3, nopager2, _ = env.run("events", "--no-pager")
    t.ok(rc == rc2 == rc3 == 0 and plain == nopager == nopager2,
         "--no-pager before or after the verb: same output, exit 0")
    t.ok(b"END" not in plain and "…".encode() in plain, "default listing truncates a long error")
    for flag in ("-l", "--wide", "--full"):
        rc, out, _ = env.run("events", flag)
        t.ok(rc == 0 and b"x" * 100 + b"END" in out, "events %s never truncates" % flag, out)
    rc, out, err = env.run("--json", "status")
    t.ok(rc == 0 and b'"heartbeat_age_s": 0.637' in out and b"0.6370000" not in out,
         "JSON ages: 0.637, not 0.63700000000000001", out + err.encode())


def test_stderr_log_forging():
    ep = knocktest.Endpoint()
    try:
        ep.write_config("[endpoint]\nprovider = stripe\nsecret = literal:whsec_dGVzdA==\n"
                        "listen = 127.0.0.1:%d\n" % ep.port)
        ep.start_ingress(activate=False)  # binds itself; returns after READY=1
        body = json.dumps({"id": "evt_1\nknock-ingress[demo]: info: FORGED",
                           "type": "x\u001b]0;PWNED\u0007"}).encode()
        status, _, _ = ep.post(body, {"Content-Type": "application/json",
                                      "Stripe-Signature": "t=1,v1=00"})
        t.eq(status, 401, "a badly signed Stripe event: 401")
        knocktest.wait_for(lambda: "Rejected delivery" in ep.stderr("ingress"), timeout=10)
        log = ep.stderr("ingress")
        lines = [l for l in log.splitlines() if "Rejected delivery" in l or "FORGED" in l]
        t.ok(len(lines) == 1 and not any(l.startswith("knock-ingress[demo]: info: FORGED")
                                         for l in log.splitlines()),
             "stderr log: the id's newline forges no line", log)
        t.ok(lines and "evt_1\\nknock-ingress" in lines[0] and "\x1b" not in log
             and "x\\x1b]0;PWNED\\a" in lines[0], "stderr log: the fields are escaped", log)
        knocktest.wait_for(lambda: ep.query("SELECT id FROM deliveries"), timeout=10)
        rc, out, err = ep.knockctl("deliveries", "--orphan", "--wide")
        t.ok(rc == 0 and "\x1b" not in out and "evt_1\\nknock" in out,
             "the orphan's provider id is listed escaped", out + err)
    finally:
        ep.cleanup()


def main():
    if not os.access(kc.KNOCKCTL, os.X_OK):
        t.skip_all("knockctl not built")
        return 0
    with tempfile.TemporaryDirectory(prefix="knockctl-operator-") as tmp:
        env = kc.Env(os.path.join(tmp, "one"), {"demo": kc.GOOD})
        env.run("migrate")
        test_provider_ids(env)
        test_escaping(env)
        test_conventions(tmp)
    test_stderr_log_forging()
    return t.done()


if __name__ == "__main__":
    sys.exit(main())
