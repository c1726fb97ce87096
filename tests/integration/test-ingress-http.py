#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The public listener's HTTP/1.1 as clients use it (knock-ingress(8),
STRICT HTTP and LIMITS): chunked bodies, Expect: 100-continue, pipelined
requests answered in order, a client that half-closes after its request
still gets its answer, a 413 sent before the body is read reaches a client
that is still sending, HTTP/1.0, HEAD, and a keep-alive connection closed
after header_timeout of silence."""

import json
import socket
import time

import knocktest as kt

SECRET = "http-secret"


def signed(delivery, body):
    h = kt.github_headers(SECRET, body, delivery)
    return "".join("%s: %s\r\n" % kv for kv in h.items()).encode()


def read_answers(s, n, timeout=5):
    """Reads N answers (head + Content-Length body) from socket S."""
    s.settimeout(timeout)
    buf = b""
    out = []
    while len(out) < n:
        while b"\r\n\r\n" not in buf:
            d = s.recv(65536)
            if not d:
                return out, buf
            buf += d
        head, _, rest = buf.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v.strip())
        while len(rest) < length:
            d = s.recv(65536)
            if not d:
                break
            rest += d
        status = int(head.split(b" ")[1])
        out.append((status, head, rest[:length]))
        buf = rest[length:]
    return out, buf


def stored(ep, delivery):
    return bool(ep.query("SELECT 1 AS x FROM events WHERE provider_event_id = ?", (delivery,)))


def main():
    t = kt.Tap()
    ep = kt.Endpoint("http")
    try:
        ep.write_config("[endpoint]\nprovider = github\nsecret = literal:%s\nlisten = 127.0.0.1:%d\n"
                        "max_body = 64K\nheader_timeout = 1s\nbody_timeout = 2s\n" % (SECRET, ep.port))
        ep.start_ingress(activate=False)

        # chunked
        body = b'{"chunked":true,"pad":"' + b"x" * 3000 + b'"}'
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 1000]), body[i:i + 1000])
                          for i in range(0, len(body), 1000)) + b"0\r\n\r\n"
        s = socket.create_connection(("127.0.0.1", ep.port))
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n" + signed("chunked-1", body) +
                  b"Transfer-Encoding: chunked\r\n\r\n" + chunks)
        ans, _ = read_answers(s, 1)
        t.ok(ans and ans[0][0] == 200 and stored(ep, "chunked-1"),
             "a chunked body is verified and stored", ans)
        row = ep.query("SELECT length(d.body) AS n FROM deliveries d JOIN events e "
                       "ON e.delivery_id = d.id WHERE e.provider_event_id = 'chunked-1'")
        t.ok(row and row[0]["n"] == len(body), "the stored body is the dechunked bytes", row)
        s.close()

        # Expect: 100-continue
        body = b'{"expect":1}'
        s = socket.create_connection(("127.0.0.1", ep.port))
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n" + signed("expect-1", body) +
                  b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
        s.settimeout(2)
        first = s.recv(4096)
        t.ok(first.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"),
             "Expect: 100-continue is answered 100 before the body", first[:60])
        s.sendall(body)
        ans, _ = read_answers(s, 1)
        t.ok(ans and ans[0][0] == 200 and stored(ep, "expect-1"), "then the body is stored", ans)
        s.close()

        # Expect with a body over max_body: 413 without 100, nothing read.
        s = socket.create_connection(("127.0.0.1", ep.port))
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n" + signed("expect-big", b"x") +
                  b"Expect: 100-continue\r\nContent-Length: 1000000\r\n\r\n")
        ans, _ = read_answers(s, 1)
        t.ok(ans and ans[0][0] == 413 and b"connection: close" in ans[0][1].lower(),
             "a body announced over max_body gets 413 at once, and Connection: close", ans)
        s.close()

        # 413 to a client still sending its body: it reads the answer, not a reset.
        big = b"y" * (2 * 1024 * 1024)
        s = socket.create_connection(("127.0.0.1", ep.port))
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n" + signed("big-1", b"y") +
                  b"Content-Length: %d\r\n\r\n" % len(big))
        try:
            s.sendall(big[:256 * 1024])
        except OSError:
            pass
        ans, _ = read_answers(s, 1)
        t.ok(ans and ans[0][0] == 413, "a client sending an oversized body reads its 413", ans[:1])
        s.close()

        # pipelined: three requests in one write, answered in order
        reqs = b""
        for i in range(3):
            b = b'{"pipe":%d}' % i
            reqs += (b"POST / HTTP/1.1\r\nHost: x\r\n" + signed("pipe-%d" % i, b) +
                     b"Content-Length: %d\r\n\r\n" % len(b) + b)
        s = socket.create_connection(("127.0.0.1", ep.port))
        s.sendall(reqs)
        ans, _ = read_answers(s, 3)
        ids = [a[2] for a in ans]
        t.ok(len(ans) == 3 and all(a[0] == 200 for a in ans) and
             all(stored(ep, "pipe-%d" % i) for i in range(3)),
             "three pipelined requests are each stored and answered", [a[0] for a in ans])
        t.ok(len(set(ids)) == 3, "in order, each with its own delivery id")
        s.close()

        # half-close after the request
        body = b'{"half":1}'
        s = socket.create_connection(("127.0.0.1", ep.port))
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n" + signed("half-1", body) +
                  b"Content-Length: %d\r\n\r\n" % len(body) + body)
        s.shutdown(socket.SHUT_WR)
        ans, _ = read_answers(s, 1)
        t.ok(ans and ans[0][0] == 200 and stored(ep, "half-1"),
             "a client that half-closes after its request gets its 200", ans)
        s.close()

        # HTTP/1.0 closes; HEAD has no body
        body = b'{"v10":1}'
        s = socket.create_connection(("127.0.0.1", ep.port))
        s.sendall(b"POST / HTTP/1.0\r\n" + signed("v10-1", body) +
                  b"Content-Length: %d\r\n\r\n" % len(body) + body)
        ans, rest = read_answers(s, 1)
        s.settimeout(2)
        eof = s.recv(1) == b""
        t.ok(ans and ans[0][0] == 200 and eof, "HTTP/1.0: answered, then closed", ans)
        s.close()
        s = socket.create_connection(("127.0.0.1", ep.port))
        s.sendall(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(2)
        data = b""
        try:
            while True:
                d = s.recv(4096)
                if not d:
                    break
                data += d
        except socket.timeout:
            pass
        head, _, after = data.partition(b"\r\n\r\n")
        t.ok(head.startswith(b"HTTP/1.1 405") and after == b"" and b"Allow: POST" in head,
             "HEAD gets 405 with Allow and no body", data[:200])
        s.close()

        # an idle keep-alive connection is closed after header_timeout
        s = socket.create_connection(("127.0.0.1", ep.port))
        body = b'{"idle":1}'
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n" + signed("idle-1", body) +
                  b"Content-Length: %d\r\n\r\n" % len(body) + body)
        ans, _ = read_answers(s, 1)
        start = time.monotonic()
        s.settimeout(5)
        try:
            eof = s.recv(1) == b""
        except OSError:
            eof = True
        took = time.monotonic() - start
        t.ok(ans and ans[0][0] == 200 and eof and 0.8 < took < 2.5,
             "an idle keep-alive connection is closed after header_timeout (%.1f s)" % took)
        s.close()

        # the X-Request-ID is echoed, and a bad one replaced
        st, hdrs, _ = ep.request("POST", "/", b"{}", {"X-Request-ID": "abc-123"})
        t.ok(st == 401 and hdrs.get("x-request-id") == "abc-123", "X-Request-ID echoed", hdrs)
        st, hdrs, _ = ep.request("POST", "/", b"{}", {"X-Request-ID": "bad id!"})
        t.ok(hdrs.get("x-request-id", "").startswith("req_"), "an invalid one is replaced", hdrs)

        # Header values as stored: UTF-8 and obs-text (Latin-1) bytes both
        # survive as JSON \\u escapes (jansson dropped a non-UTF-8 header).
        body = b'{"headers":1}'
        s = socket.create_connection(("127.0.0.1", ep.port))
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n" + signed("hdr-1", body) +
                  b"X-Utf8: caf\xc3\xa9 \xf0\x9f\x94\x94\r\nX-Latin: caf\xe9\r\n"
                  b"X-Quote: a\"b\\\\c\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        ans, _ = read_answers(s, 1)
        s.close()
        row = ep.query("SELECT d.headers FROM deliveries d JOIN events e ON e.id = d.event_id"
                       " WHERE e.provider_event_id = 'hdr-1'")
        hdr = dict(json.loads(row[0]["headers"])) if row else {}
        t.ok(ans and ans[0][0] == 200 and hdr.get("X-Utf8") == "caf\u00e9 \U0001f514" and
             hdr.get("X-Latin") == "caf\u00e9" and hdr.get("X-Quote") == 'a"b\\\\c',
             "header values stored: UTF-8, Latin-1 obs-text and quotes read back", hdr)
        t.ok(row and row[0]["headers"].isascii(), "the stored headers JSON is ASCII")
        t.eq(ep.stop("ingress"), 0, "clean stop")
    finally:
        ep.cleanup()
    t.done()


if __name__ == "__main__":
    main()
