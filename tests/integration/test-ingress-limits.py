#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Slow clients and the connection limit (contract §5: "Slow clients are cut
off, connections are bounded"): a client that drips its headers slower than
header_timeout + body_timeout is disconnected even though it is never idle;
connections beyond max_connections are closed at once, before they send
anything; once they are gone, new clients are served."""

import socket
import time

import knocktest as kt

SECRET = "limits-secret"


def closed_within(sock, seconds):
    """True when the server closes the connection within SECONDS."""
    sock.settimeout(0.1)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            data = sock.recv(4096)
            if data == b"":
                return True
            # an error answer is fine too; keep reading until EOF
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return True
    return False


def still_open(sock):
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


def main():
    t = kt.Tap()
    ep = kt.Endpoint("lim")
    try:
        ep.write_config("[endpoint]\nprovider = github\nsecret = literal:%s\nlisten = 127.0.0.1:%d\n"
                        "header_timeout = 1s\nbody_timeout = 1s\nmax_connections = 4\n"
                        % (SECRET, ep.port))
        ep.start_ingress(activate=False)

        # A drip: one header line every 0.4 s, never idle for the 1 s idle timeout.
        s = socket.create_connection(("127.0.0.1", ep.port))
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")
        start = time.monotonic()
        cut = False
        for i in range(20):
            time.sleep(0.4)
            try:
                s.sendall(b"X-Drip-%d: y\r\n" % i)
            except (BrokenPipeError, ConnectionResetError):
                cut = True
                break
            if not still_open(s):
                cut = True
                break
        took = time.monotonic() - start
        t.ok(cut and took < 4.5, "a client dripping its headers is cut off after the 2 s budget (%.1f s)"
             % took)
        s.close()
        time.sleep(0.6)  # closed connections are reaped by a 250 ms sweep

        # The limit counts connections from accept, data or not.
        idle = [socket.create_connection(("127.0.0.1", ep.port)) for _ in range(4)]
        time.sleep(0.1)
        extra = socket.create_connection(("127.0.0.1", ep.port))
        t.ok(closed_within(extra, 1.0), "a fifth connection (max_connections = 4) is closed at once")
        t.ok(all(still_open(c) for c in idle), "the four within the limit stay open meanwhile")
        for c in idle:
            c.close()
        time.sleep(0.6)

        body = b'{"ok":1}'
        st, _, _ = ep.post(body, kt.github_headers(SECRET, body, "after-limit"))
        t.eq(st, 200, "once they are gone a new client is served")

        # Keep-alive clients that keep sending are not cut off.
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", ep.port, timeout=5)
        statuses = []
        for i in range(6):
            b = b'{"n":%d}' % i
            conn.request("POST", "/", b, kt.github_headers(SECRET, b, "ka-%d" % i))
            r = conn.getresponse()
            r.read()
            statuses.append(r.status)
            time.sleep(0.5)
        conn.close()
        t.eq(statuses, [200] * 6, "a keep-alive client sending every 0.5 s for 3 s is served throughout")
        t.eq(ep.stop("ingress"), 0, "clean stop")
    finally:
        ep.cleanup()
    t.done()


if __name__ == "__main__":
    main()
