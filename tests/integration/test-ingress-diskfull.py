#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Disk full: the state directory is a small tmpfs that fills up. The
ingress must answer 503 with Retry-After, not crash, keep everything already
acknowledged, and accept again once space is freed. Needs root (mount)."""

import os
import subprocess
import sqlite3

import knocktest as kt

SECRET = "disk-full-secret"


def main():
    t = kt.Tap()
    if os.geteuid() != 0:
        t.skip_all("needs root to mount a tmpfs")
    kt.sqlite_only(t, "the .db file's file system fills up")
    ep = kt.Endpoint("full")
    mounted = False
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", ep.state_dir], check=True)
        mounted = True
        ep.write_config("[endpoint]\nprovider = github\nsecret = literal:%s\nlisten = 127.0.0.1:%d\n"
                        "max_body = 256K\n" % (SECRET, ep.port))
        ep.start_ingress(activate=False)
        acked, statuses, retry_after = [], [], None
        body = b"{" + b'"pad":"' + b"x" * 60000 + b'"}'
        for i in range(400):
            st, hdrs, _ = ep.post(body, kt.github_headers(SECRET, body, "full-%d" % i))
            statuses.append(st)
            if st == 200:
                acked.append("full-%d" % i)
            elif st == 503:
                retry_after = hdrs.get("retry-after")
                break
        t.ok(503 in statuses, "a full disk answers 503 (%d stored before)" % len(acked), statuses[-5:])
        t.ok(retry_after is not None, "the 503 carries Retry-After")
        t.ok(all(s in (200, 503) for s in statuses), "never anything but 200 or 503", set(statuses))
        # More attempts while full: still 503, still alive.
        st, _, _ = ep.post(body, kt.github_headers(SECRET, body, "full-more"))
        t.eq(st, 503, "still full: 503 again")
        t.ok(ep.procs["ingress"].poll() is None, "the daemon did not crash")

        # Free space, as an operator would: grow the filesystem.
        subprocess.run(["mount", "-o", "remount,size=16m", ep.state_dir], check=True)
        st, _, _ = ep.post(body, kt.github_headers(SECRET, body, "full-after"))
        t.eq(st, 200, "space freed: accepted again")
        ep.stop("ingress")
        c = sqlite3.connect(ep.db_path)
        stored = {r[0] for r in c.execute("SELECT provider_event_id FROM events")}
        integrity = c.execute("PRAGMA integrity_check").fetchone()[0]
        c.close()
        missing = [a for a in acked if a not in stored]
        t.ok(acked and not missing, "every acknowledged webhook survived the full disk (%d)" % len(acked),
             missing[:5])
        t.eq(integrity, "ok", "integrity_check passes after the full disk")
        t.ok("full-after" in stored and "full-more" not in stored,
             "what got 503 is not stored; what got 200 after is")
    finally:
        for role in list(ep.procs):
            ep.stop(role, timeout=5)
        if mounted:
            subprocess.run(["umount", ep.state_dir])
        ep.cleanup()
    t.done()


if __name__ == "__main__":
    main()
