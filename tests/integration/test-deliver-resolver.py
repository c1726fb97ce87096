#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""knock-deliver's resolver where /etc/resolv.conf lists no nameserver.

An empty /etc/resolv.conf (containers, hosts with only a local resolver) made
libevent refuse to build its asynchronous resolver, and knock-deliver warned
on every start. It now uses 127.0.0.1 as glibc does and says so at debug
level. The file is replaced in a private mount namespace (unshare -m), so
this needs root; it is skipped otherwise.
"""

import os
import shutil
import signal
import subprocess
import time

from knocktest import Endpoint, Tap, binary

t = Tap()


def run_deliver(ep, resolv_text):
    fake = os.path.join(ep.tmp, "resolv.conf")
    with open(fake, "w") as f:
        f.write(resolv_text)
    env = dict(ep.env, KNOCK_LOG="stderr", KNOCK_LOG_LEVEL="debug")
    script = 'mount --bind "$1" /etc/resolv.conf && exec "$2" "$3"'
    p = subprocess.Popen(["unshare", "-m", "sh", "-c", script, "sh", fake,
                          binary("knock-deliver"), ep.name],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 10
    time.sleep(1.0)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=max(1, deadline - time.time()))
    return p.returncode, err


def main():
    if os.geteuid() != 0 or not shutil.which("unshare"):
        t.skip_all("needs root and unshare(1) for a private /etc/resolv.conf")
    ep = Endpoint("resolv")
    try:
        ep.write_config("[endpoint]\nprovider = none\nallow_unverified = yes\n"
                        "listen = 127.0.0.1:%d\n[hook]\nurl = http://hooks.invalid/x\n"
                        "secret = literal:whsec_dGVzdHNlY3JldHRlc3RzZWNyZXQ=\n" % ep.port)
        rc, out, err = ep.knockctl("migrate")
        t.eq(rc, 0, "migrate", err)

        rc, err = run_deliver(ep, "")
        t.ok("started for resolv" in err, "knock-deliver starts with an empty resolv.conf", err)
        t.ok("Cannot set up the asynchronous resolver" not in err and "warning" not in err,
             "no warning about the resolver", err)
        t.ok("lists no nameserver; names are resolved by 127.0.0.1" in err,
             "debug: it says what it does instead", err)

        rc, err = run_deliver(ep, "nameserver 127.0.0.53\n")
        t.ok("started for resolv" in err and "resolv.conf" not in err and "warning" not in err,
             "a resolv.conf with a nameserver: nothing to say", err)
    finally:
        ep.cleanup()
    t.done()


if __name__ == "__main__":
    main()
