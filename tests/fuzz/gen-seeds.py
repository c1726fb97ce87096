#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the seed corpora of form/, json/, config/, http-response/,
timestamp/ and keys/ (verify/ has gen-verify-seeds.py): the shapes each parser meets
in tests/unit and etc/, in each fuzz target's input form. Regression inputs
(regress-*) are added by hand beside them and never rewritten.

    tests/fuzz/gen-seeds.py [DIR]
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

FORM = {
    "twilio": "CallSid=CA1234567890ABCDE&Caller=%2B14158675310&Digits=1234&"
              "From=%2B14158675310&To=%2B18005551212",
    "decoding": "Body=Hi+there%21+%F0%9F%98%80++&&Flag&Name=a%2Bb%2b+&",
    "repeated": "Tag=b&Tag=a&MessageStatus=delivered",
    "query": "hub.mode=subscribe&hub.verify_token=vt&hub.challenge=1158201444",
    "empty-parts": "&=&a=&=b&",
    "bad-escape": "a=%zz",
    "nul-escape": "a=b%00c",
}

JSON = {
    "stripe": "/id /type /data/object/amount\n"
              '{"id":"evt_1","type":"charge.succeeded","data":{"object":{"amount":100}}}',
    "array": "/0/eventId /0/subscriptionType /1\n"
             '[{"eventId":1,"subscriptionType":"contact.creation"},{"x":[1,2.5e-3,-0,true]}]',
    "escapes": "/a~1b /m~0n /\u00e9 /s\n"
               '{"a/b":"\\u00e9\\n","m~n":-12,"\\u00e9":"x","s":"tab\\there \\"q\\""}',
    "nested": "/a/b/c/d - /a/b\n"
              ' {"a":{"b":{"c":{"d":[[[{}]]]}}},"a":{"dup":"first wins"}} ',
    "types": "/t /f /n /big /neg /exp /str\n"
             '{"t":true,"f":false,"n":null,"big":123456789012345678901,"neg":-9223372036854775808,'
             '"exp":1E+2,"str":""}',
    "slack": "/type /challenge /event/type\n"
             '{"token":"t","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",'
             '"type":"url_verification"}',
    "not-json": "/id\n{\"id\":1,}",
}

CONFIG = {
    "example": open(os.path.join(HERE, "..", "..", "etc", "example.conf")).read()
               .replace("credential:stripe-hook", "credential:hook")
               .replace("credential:stripe", "credential:endpoint"),
    "knock-conf": open(os.path.join(HERE, "..", "..", "etc", "knock.conf")).read() + "%%\n"
                  "[endpoint]\nprovider = github\nsecret = literal:gh\nlisten = 127.0.0.1:9000\n",
    "hmac": "[endpoint]\nprovider = hmac\nsecret = literal:s1\nsecret = literal:s2\n"
            "header = X-Signature\nprefix = sha256=\nalgorithm = sha512\nencoding = base64\n"
            "timestamp_header = X-Ts\ntolerance = 5m\ndedupe = json:/id\ntype = header:X-Event\n"
            "listen = [::1]:8080\nadmin = /run/knock/x.admin\nmax_body = 64K\n"
            "max_connections = 10\nheader_timeout = 5s\nbody_timeout = 1m\n"
            "[worker]\nhandler = https://127.0.0.1/x\n"
            "[hook]\nurl = http://127.0.0.1/h\nsecret = credential:hook\non = dead\n"
            "schedule = 0s, 5s, 1h\nmax_attempts = 3\ntimeout = 10s\nconcurrency = 2\n"
            "[retention]\nhandled = 30d\nignored = never\norphans = 7d\ndead = never\n"
            "backups = 3\naudit = 365d\nmin_free_disk = 1G\n",
    "twilio": "[endpoint]\nprovider = twilio\nsecret = credential:endpoint\n"
              "url = https://example.com/sms\nlisten = /run/knock/sms.sock\n"
              "  # an indented comment\n[route \"delivered\"]\nhandler = exec:/bin/true\n",
    "meta": "[endpoint]\nprovider = meta\nsecret = literal:app\nverify_token = vt\n"
            "listen = localhost:8000 ; inline comment\n",
    "errors": "key = outside\n[endpoint]\nprovider = nope\nsecert = x\nlisten = 1.2.3:80\n"
              "secret = relative/path\nmax_body = 1X\n[nope]\nx = y\n[route \"\"]\n"
              "[worker]\nbackoff = 1h..2s\n[hook]\nschedule = 5s, x\nsecret = /nonexistent/s\n"
              "[endpoint\n",
    "none": "[endpoint]\nprovider = none\nallow_unverified = yes\nlisten = 127.0.0.1:1\n"
            "secret =\nhandler =\n[worker]\nhandler =\n",
    "long-line": "[endpoint]\nprovider = token\nsecret = literal:" + "x" * 300 + "\n"
                 "listen = 127.0.0.1:2\n",
}

CRLF = "\r\n"
HTTP = {
    "length": "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x\r\n\r\nhello",
    "chunked": "HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\nRetry-After:  120 \r\n"
               "\r\n4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n"
               "X-Trailer: y\r\n\r\n",
    "pipelined": "HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                 "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
    "to-close": "HTTP/1.0 200 OK\r\n\r\nto the end",
    "lf-only": "HTTP/1.1 200 OK\nConnection: Keep-Alive, close\nContent-Length: 2\n\nok",
    "both": "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
            "3\r\nabc\r\n0\r\n\r\n",
    "http10-keepalive": "HTTP/1.0 429 Slow\r\nConnection: keep-alive\r\n"
                        "Retry-After: Wed, 21 Oct 2015 07:28:00 GMT\r\nContent-Length: 1\r\n\r\nx",
    "folded": "HTTP/1.1 200 OK\r\nX-A: 1\r\n  folded\r\nContent-Length: 0\r\n\r\n",
    "bad": "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx",
}
# byte 0: max_body index (0-5) | max_head index << 3; byte 1: piece size | 0x80 for a close
HTTP_SETTINGS = {"length": b"\x04\x00", "chunked": b"\x1c\x03", "pipelined": b"\x04\x01",
                 "to-close": b"\x03\x85", "lf-only": b"\x01\x02", "both": b"\x0c\x07",
                 "http10-keepalive": b"\x1a\x81", "folded": b"\x00\x00", "bad": b"\x04\x80"}

# selector: 0 Retry-After, 1 RFC 3339 (bit 2: RFC3339_OFFSET, bit 3: RFC3339_PARTIAL),
# 2 time spec, 3 numbers
TIMESTAMP = {
    "retry-seconds": "\x00120",
    "retry-imf": "\x00Wed, 21 Oct 2015 07:28:00 GMT",
    "retry-rfc850": "\x00Wednesday, 21-Oct-15 07:28:00 GMT",
    "retry-asctime": "\x00 Wed Oct 21 07:28:00 2015 ",
    "rfc3339": "\x012023-11-14T22:13:20Z",
    "rfc3339-frac": "\x012000-02-29t23:59:59.123456z",
    "rfc3339-offset": "\x052026-11-26T14:30:00+02:30",
    "rfc3339-partial": "\x092026-11-26",
    "rfc3339-all": "\x0d9999-12-31T23:59:59.999-23:59",
    "spec-relative": "\x022h",
    "spec-rfc3339": "\x022026-11-26T12:00:00.5+01:30",
    "spec-date": "\x022026-11-26",
    "spec-unix": "\x02@1700000000",
    "numbers-size": "\x0364K",
    "numbers-duration": "\x03250ms",
    "numbers-never": "\x03never",
    "numbers-max": "\x0318446744073709551615",
}

SENDGRID_DER = ("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEYP7UuiVanTHJYet0xjVtaMBJuJI7"
                "Yfps5mliLmDyn7Z5A/4QCLi8maQa6elWKLxk8vGyDC1+n1F3o8KU1EYimQ==")
# selector: 0 raw, 1 standard, 2 ed25519-hex, 3 ec-p256 (keys.h key_text_rule)
KEYS = {
    "raw": "\x00whsec_fuzz_stripe",
    "standard-whsec": "\x01whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "standard-bare": "\x01MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n",
    "standard-whpk": "\x01whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
    "standard-short-whpk": "\x01whpk_AAAA",
    "discord": "\x02d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
    "sendgrid-der": "\x03" + SENDGRID_DER,
    "sendgrid-pem": "\x03-----BEGIN PUBLIC KEY-----\n" + SENDGRID_DER[:64] + "\n"
                    + SENDGRID_DER[64:] + "\n-----END PUBLIC KEY-----\n",
    "p384-pem": "\x03-----BEGIN PUBLIC KEY-----\n"
                "MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEUEeD+jVwV7VbkQNyXmlCnqPBEXGBTPs5\n"
                "/SUNTUQjyJiwiLtb+099g+svOUEFwukNQZw1/U0KhKCNcgIFDwb2uGMhXiEQ31Uu\n"
                "ZfRe+IhjNRrWihUYIvsgV2olAFufI+m9\n"
                "-----END PUBLIC KEY-----\n",
    "not-a-key": "\x03bm90IGEga2V5",
}


def write(d, name, data):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else HERE
    for name, text in FORM.items():
        write(os.path.join(out, "form"), name, text)
    for name, text in JSON.items():
        write(os.path.join(out, "json"), name, text)
    for name, text in CONFIG.items():
        write(os.path.join(out, "config"), name, text)
    for name, text in HTTP.items():
        write(os.path.join(out, "http-response"), name, HTTP_SETTINGS[name] + text.encode())
    for name, text in TIMESTAMP.items():
        write(os.path.join(out, "timestamp"), name, text)
    for name, text in KEYS.items():
        write(os.path.join(out, "keys"), name, text)


if __name__ == "__main__":
    main()
