#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Find by payload through the real ingress (knockctl(1) events --where,
deliveries --header): a nested field, an array index, a number, several
conditions that must all match, bounded by --since and --limit; a header
by name in any case; malformed filters are usage errors."""

import json

import knocktest as kt

SECRET = "where-secret"


def main():
    t = kt.Tap()
    ep = kt.Endpoint("wh")
    try:
        ep.write_config("[endpoint]\nprovider = github\nsecret = literal:%s\n"
                        "listen = 127.0.0.1:%d\n" % (SECRET, ep.port))
        ep.start_ingress(activate=False)
        ids = {}
        docs = [
            ("a", {"data": {"object": {"customer": "cus_1", "amount": 100}}, "items": [{"id": "x"}]}),
            ("b", {"data": {"object": {"customer": "cus_2", "amount": 250}}, "items": [{"id": "y"}]}),
            ("c", {"data": {"object": {"customer": "cus_1", "amount": 250}}, "a/b": "slash"}),
        ]
        for name, doc in docs:
            body = json.dumps(doc).encode()
            st, _, data = ep.post(body, kt.github_headers(SECRET, body, "dlv-" + name, "invoice"))
            ids[name] = json.loads(data)["event_id"]
        ep.post(b"not json", kt.github_headers(SECRET, b"not json", "dlv-bad", "invoice"))

        def where(*conds, extra=()):
            args = ["--json", "events"]
            for c in conds:
                args += ["--where", c]
            rc, out, err = ep.knockctl(*args, *extra)
            return (sorted(e["id"] for e in json.loads(out)) if rc == 0 else (rc, err))

        t.eq(where("/data/object/customer=cus_1"), sorted([ids["a"], ids["c"]]),
             "--where finds events by a nested field")
        t.eq(where("/data/object/customer=cus_1", "/data/object/amount=250"), [ids["c"]],
             "several --where must all match (a number compares as its text)")
        t.eq(where("/items/0/id=y"), [ids["b"]], "a digit segment indexes an array")
        t.eq(where("/a~1b=slash"), [ids["c"]], "~1 in a pointer is /")
        t.eq(where("/data/object/customer=cus_9"), [], "no match: an empty list")
        t.eq(where("/data/object/customer=cus_1", extra=("--limit", "1")), [ids["c"]],
             "--limit bounds it, newest first")
        t.eq(where("/data/object/customer=cus_1", extra=("--since", "@%d" % 2000000000)), [],
             "--since bounds it")
        t.eq(ep.knockctl("events", "--where", "data=1")[0], 2, "a pointer must start with /")
        t.eq(ep.knockctl("events", "--where", "/x")[0], 2, "KEY=VALUE is required")

        rc, out, _ = ep.knockctl("--json", "deliveries", "--header", "x-github-delivery=dlv-b")
        t.eq([d["event_id"] for d in json.loads(out)], [ids["b"]],
             "--header finds a delivery by a header, the name in any case")
        rc, out, _ = ep.knockctl("--json", "deliveries", "--header", "X-GitHub-Event=invoice",
                                 "--header", "X-GitHub-Delivery=dlv-a")
        t.eq([d["event_id"] for d in json.loads(out)], [ids["a"]], "several --header must all match")
        rc, out, _ = ep.knockctl("--json", "deliveries", "--header", "X-GitHub-Delivery=DLV-A")
        t.eq(json.loads(out), [], "the value matches exactly")
    finally:
        ep.cleanup()
    t.done()


main()
