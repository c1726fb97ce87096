#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The shipped alert rules and dashboard name only series knock exposes.

Starts a real ingress and reads /metrics from its admin listener, runs
knock-maint with a node_exporter textfile directory and reads
knock_maint.prom, then checks that every knock_* series named in
monitoring/knock.rules.yml and monitoring/knock-dashboard.json is one of
them (a renamed metric would otherwise leave an alert that never fires),
and that knock(7) explains every alert.
"""

import json
import os
import re
import subprocess

import knocktest

SRC = os.environ.get("KNOCK_SOURCE_DIR", ".")
TEXTFILE = os.path.join(os.environ.get("KNOCK_BUILD_DIR", "build"), "monitoring/knock-textfile")
t = knocktest.Tap()
NAME = re.compile(r"\bknock_[a-z0-9_]+")


def exposed_names(text):
    names = set()
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)
        names.add(name)
    return names


def main():
    ep = knocktest.Endpoint()
    try:
        ep.write_config("[endpoint]\nprovider = github\nsecret = literal:abc\n"
                        "listen = 127.0.0.1:%d\n" % ep.port)
        ep.start_ingress(activate=False)  # binds itself; returns after READY=1
        status, body = ep.admin_get("/metrics")
        t.eq(status, 200, "/metrics answers")
        names = exposed_names(body.decode())

        textdir = os.path.join(ep.tmp, "textfile")
        os.makedirs(textdir)
        env = dict(ep.env, KNOCK_TEXTFILE_DIR=textdir)
        for verb in ("prune", "backup"):
            p = subprocess.run([knocktest.binary("knock-maint"), verb, "--endpoint", ep.name],
                               env=env, capture_output=True, text=True, timeout=60)
            t.eq(p.returncode, 0, "knock-maint " + verb, p.stderr)
        with open(os.path.join(textdir, "knock_maint.prom")) as f:
            names |= exposed_names(f.read())
        t.ok("knock_backup_last_success_timestamp_seconds" in names,
             "the textfile holds the backup time")

        # knock-textfile: the admin listener's series into the same directory.
        p = subprocess.run([TEXTFILE, ep.name, textdir],
                           env=env, capture_output=True, text=True, timeout=60)
        t.eq(p.returncode, 0, "knock-textfile NAME DIR", p.stderr)
        with open(os.path.join(textdir, "knock_%s.prom" % ep.name)) as f:
            lines = f.read().splitlines()
        t.ok(lines and all(re.match(r'^knock_[a-z0-9_]+\{endpoint="%s"[,}].* \S+$' % ep.name, l)
                           for l in lines),
             "knock-textfile: every series has the endpoint label (%d)" % len(lines), lines[:5])
        t.ok(any(l.startswith("knock_events{") for l in lines) and
             not any(l.startswith("knock_database_bytes") for l in lines) and
             not any(l.startswith("#") for l in lines),
             "knock-textfile: queue series in, size series and comments left to knock_maint.prom")
        t.eq(sorted(f for f in os.listdir(textdir) if f.startswith(".")), [],
             "knock-textfile leaves no temporary file")
        p = subprocess.run([TEXTFILE, "Bad/Name", textdir],
                           env=env, capture_output=True, text=True, timeout=60)
        t.eq(p.returncode, 2, "knock-textfile refuses a bad name")
        p = subprocess.run([TEXTFILE, "--version"], capture_output=True, text=True)
        t.ok(p.returncode == 0 and p.stdout.startswith("knock-textfile "), "knock-textfile --version")
    finally:
        ep.cleanup()

    with open(os.path.join(SRC, "monitoring/knock.rules.yml")) as f:
        rules = f.read()
    with open(os.path.join(SRC, "monitoring/knock-dashboard.json")) as f:
        dash = json.load(f)
    exprs = []

    def walk(o):
        if isinstance(o, dict):
            for k, v in o.items():
                if k in ("expr", "query", "definition") and isinstance(v, str):
                    exprs.append(v)
                else:
                    walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
    walk(dash)
    t.ok(len(exprs) > 20, "the dashboard has its queries (%d)" % len(exprs))

    rule_exprs = re.findall(r"expr: (?:>-\n)?((?:.|\n)*?)\n\s+(?:for|labels):", rules)
    for where, texts in (("rules", rule_exprs), ("dashboard", exprs)):
        used = set()
        for e in texts:
            used |= set(NAME.findall(e))
        base = {re.sub(r"_(bucket|sum|count)$", "", n) if n not in names else n for n in used}
        missing = sorted(n for n in base if n not in names)
        t.ok(used and not missing, "every series the %s name is exposed (%d)" % (where, len(used)),
             "missing: %s" % missing)

    with open(os.path.join(SRC, "man/knock.7.scd")) as f:
        man = f.read()
    alerts = re.findall(r"- alert: (\w+)", rules)
    undocumented = [a for a in alerts if a not in man]
    t.ok(len(alerts) >= 10 and not undocumented,
         "knock(7) explains every alert (%d)" % len(alerts), undocumented)
    t.done()


if __name__ == "__main__":
    main()
