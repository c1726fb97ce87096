#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The live view's streams under load: a slow browser never slows the
ingress. Eight watchers that never read and one that does are connected
while bench/ingest-load drives the endpoint (and a worker handles what it
stores); a ninth watcher is refused (503). Every webhook is answered, the
reading watcher sees receipts and handler attempts with the batches'
"skipped" counts and loses nothing, and a stuck watcher, once it reads
again, is told how many messages it missed: the ingress dropped them
rather than hold them."""

import os
import select
import socket
import subprocess
import threading
import time

import knocktest as kt

SECRET = "bench-secret"


def open_stream(ep, rcvbuf=None):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(10)
    s.connect(ep.admin)
    s.sendall(b"GET /live/stream HTTP/1.1\r\nHost: localhost\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        if not chunk:
            break
        head += chunk
    return s, int(head.split(b" ")[1]) if head else 0


class Reader(threading.Thread):
    def __init__(self, s):
        super().__init__(daemon=True)
        self.s = s
        self.data = b""
        self.stop = False

    def run(self):
        while not self.stop:
            r, _, _ = select.select([self.s], [], [], 0.2)
            if r:
                chunk = self.s.recv(65536)
                if not chunk:
                    return
                self.data += chunk


def main():
    t = kt.Tap()
    # Under ASan freed blocks wait in a 256 MB quarantine, which would count
    # as the ingress's RSS; a small one keeps the bound meaningful (harmless
    # to a build without ASan).
    os.environ["ASAN_OPTIONS"] = (os.environ.get("ASAN_OPTIONS", "")
                                  + ":quarantine_size_mb=4:thread_local_quarantine_size_kb=64")
    ep = kt.Endpoint("lv")
    load = os.path.join(kt.BUILD, "bench", "ingest-load")
    streams = []
    try:
        ep.write_config("[endpoint]\nprovider = github\nsecret = literal:%s\nlisten = 127.0.0.1:%d\n"
                        "max_connections = 1024\n[worker]\nhandler = exec:/bin/true\n"
                        "concurrency = 8\n" % (SECRET, ep.port))
        ing = ep.start_ingress()
        ep.start("knock-worker")
        kt.wait_for(lambda: ep.admin_get("/healthz")[0] == 200, 10)

        good, st = open_stream(ep)
        t.eq(st, 200, "a watcher that reads")
        reader = Reader(good)
        reader.start()
        codes = []
        for i in range(7):
            s, st = open_stream(ep, rcvbuf=4096)
            streams.append(s)
            codes.append(st)
        t.eq(codes, [200] * 7, "seven watchers that never read")
        extra, st = open_stream(ep)
        t.eq(st, 503, "a ninth watcher is refused (503)")
        extra.close()
        kt.wait_for(lambda: b"event: ready" in reader.data, 5)
        before = kt.rss_kb(ing.pid)

        p = subprocess.run([load, "-p", str(ep.port), "-c", "16", "-d", "12", "-s", SECRET],
                           capture_output=True, text=True, timeout=120)
        out = p.stdout.strip()
        t.ok(p.returncode == 0 and '"errors":0' in out, "every webhook was answered 2xx under load",
             out + p.stderr)
        after = kt.rss_kb(ing.pid)
        t.ok(after - before < 32 * 1024, "the ingress grew by %d KiB with seven stuck watchers"
             % (after - before), (before, after))
        time.sleep(1.5)
        data = reader.data.decode(errors="replace")
        t.ok('"kind":"receipt"' in data and '"kind":"attempt"' in data,
             "the reading watcher saw receipts and attempts")
        t.ok('"kind":"skipped"' in data, "more than a batch a poll: the rest is counted (skipped)")
        t.ok('"kind":"dropped"' not in data, "the reading watcher lost nothing")

        stuck = streams[0]
        stuck.settimeout(0.5)
        got = b""
        end = time.monotonic() + 8
        n = 0
        while time.monotonic() < end and b'"kind":"dropped"' not in got:
            try:
                chunk = stuck.recv(65536)
                if not chunk:
                    break
                got += chunk
            except socket.timeout:
                # Something new for the next poll to send.
                body = b'{"n":%d}' % n
                ep.post(body, kt.github_headers(SECRET, body, "after-%d" % n))
                n += 1
        t.ok(b'"kind":"dropped"' in got, "a stuck watcher that reads again is told what it missed",
             got[-300:])
        t.ok(len(got) < 4 * 1024 * 1024, "it was never sent more than it could hold (%d bytes)"
             % len(got))
        reader.stop = True
        t.eq(ep.stop("ingress"), 0, "the ingress stops cleanly with its watchers connected")
        t.ok("Sanitizer" not in ep.stderr("ingress"), "no sanitizer report from the ingress",
             ep.stderr("ingress")[-3000:])
    finally:
        for s in streams:
            s.close()
        ep.cleanup()
    t.done()


if __name__ == "__main__":
    main()
