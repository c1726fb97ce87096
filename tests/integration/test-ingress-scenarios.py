#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Runs every scenarios/*.json against a real knock-ingress (socket-activated
with systemd-socket-activate, fresh state per scenario) and checks the HTTP
answers and the rows stored. A regression test is a new data file."""

import atexit
import glob
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time

import knocktest as kt

GH_SECRET = "It's a Secret to Everybody"
STRIPE_SECRET = "whsec_stripe_test_secret"
STD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"

META_TOKEN = "meta-verify-token-123"
META_SECRET = "meta-app-secret"


class Ed25519:
    """A Discord-style key pair made with the openssl CLI (stdlib has no
    Ed25519); signatures are computed by openssl, independently of knock."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="knock-ed25519-")
        atexit.register(shutil.rmtree, self.dir, True)
        self.key = os.path.join(self.dir, "key.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", self.key], check=True)
        der = subprocess.run(["openssl", "pkey", "-in", self.key, "-pubout", "-outform", "DER"],
                             check=True, capture_output=True).stdout
        self.public_hex = der[-32:].hex()

    def sign(self, msg):
        path = os.path.join(self.dir, "msg")
        with open(path, "wb") as f:
            f.write(msg)
        return subprocess.run(["openssl", "pkeyutl", "-sign", "-inkey", self.key, "-rawin", "-in", path],
                              check=True, capture_output=True).stdout.hex()


ED = Ed25519()

CONFIGS = {
    "github": "provider = github\nsecret = literal:%s\nmax_body = 4K\n" % GH_SECRET,
    "stripe": "provider = stripe\nsecret = literal:%s\n" % STRIPE_SECRET,
    "standard": "provider = standard\nsecret = literal:%s\n" % STD_SECRET,
    "slack": "provider = slack\nsecret = literal:%s\n" % SLACK_SECRET,
    "bearer": "provider = bearer\nsecret = literal:s3cr3t-token\n",
    "discord": "provider = discord\nsecret = literal:%s\n" % ED.public_hex,
    "meta": "provider = meta\nsecret = literal:%s\nverify_token = %s\n" % (META_SECRET, META_TOKEN),
}


def build_request(r):
    import hashlib
    import hmac
    body = r.get("body", "")
    if "body_repeat" in r:
        body = r["body_repeat"][0] * r["body_repeat"][1]
    body = body.encode()
    headers = dict(r.get("headers", {}))
    sign = r.get("sign")
    now = int(time.time())
    if sign in ("github", "github-wrong-secret"):
        secret = GH_SECRET if sign == "github" else "wrong"
        headers.update(kt.github_headers(secret, body, r.get("delivery", "d")))
    elif sign == "stripe":
        headers["Stripe-Signature"] = kt.sign_stripe(STRIPE_SECRET, body, now + r.get("ts_offset", 0))
    elif sign == "standard":
        headers.update({"webhook-id": r["msg_id"], "webhook-timestamp": str(now),
                        "webhook-signature": kt.sign_standard(STD_SECRET, r["msg_id"], now, body)})
    elif sign in ("slack", "slack-wrong-secret"):
        secret = SLACK_SECRET if sign == "slack" else "wrong"
        base = b"v0:" + str(now).encode() + b":" + body
        headers.update({"X-Slack-Request-Timestamp": str(now),
                        "X-Slack-Signature": "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()})
    elif sign == "discord":
        ts = str(now + r.get("ts_offset", 0))
        headers.update({"X-Signature-Timestamp": ts,
                        "X-Signature-Ed25519": ED.sign(ts.encode() + body)})
    elif sign == "meta":
        headers["X-Hub-Signature-256"] = "sha256=" + hmac.new(META_SECRET.encode(), body,
                                                              hashlib.sha256).hexdigest()
    for i in range(r.get("big_headers", 0)):
        headers["X-Filler-%03d" % i] = "v" * 600
    return r.get("method", "POST"), r.get("path", "/"), body, headers


def raw_request(ep, raw):
    s = socket.create_connection(("127.0.0.1", ep.port), timeout=10)
    s.sendall(raw.encode())
    data = s.recv(65536)
    s.close()
    return int(data.split(b" ")[1]), {}, data


def run_scenario(t, path):
    sc = json.load(open(path))
    name = os.path.basename(path)[:-5]
    ep = kt.Endpoint("demo")
    try:
        ep.write_config("[endpoint]\nlisten = 127.0.0.1:%d\n%s" % (ep.port, CONFIGS[sc["config"]]))
        ep.start_ingress()
        for i, r in enumerate(sc["requests"]):
            if "sql" in r:
                c = ep.db()
                c.execute(r["sql"])
                c.commit()
                c.close()
                continue
            if "raw" in r:
                status, hdrs, data = raw_request(ep, r["raw"])
            else:
                method, p, body, headers = build_request(r)
                status, hdrs, data = ep.request(method, p, body, headers)
            exp = r["expect"]
            t.eq(status, exp["status"], "%s: request %d answers %d" % (name, i + 1, exp["status"]))
            for k, v in exp.get("json", {}).items():
                got = json.loads(data).get(k) if status < 300 else None
                t.eq(got, v, "%s: request %d JSON %s" % (name, i + 1, k))
            for k, v in exp.get("headers", {}).items():
                t.eq(hdrs.get(k), v, "%s: request %d header %s" % (name, i + 1, k))
            if "body_contains" in exp:
                t.ok(exp["body_contains"].encode() in data, "%s: request %d body" % (name, i + 1), data)
            if status == 200 and "json" in exp:
                j = json.loads(data)
                t.ok(j.get("delivery_id", "").startswith("dlv_") and j.get("event_id", "").startswith("evt_"),
                     "%s: request %d ids in the answer" % (name, i + 1), j)
        rows = sc["rows"]
        # 401/413 rows are stored after the answer: give the writer a moment.
        kt.wait_for(lambda: ep.store_exists() and
                    ep.query("SELECT count(*) AS n FROM deliveries")[0]["n"] >= rows["deliveries"], timeout=5)
        if not ep.store_exists():
            t.ok(rows["events"] == 0 and rows["deliveries"] == 0, "%s: no database, nothing stored" % name)
            return
        t.eq(ep.query("SELECT count(*) AS n FROM events")[0]["n"], rows["events"], "%s: events stored" % name)
        t.eq(ep.query("SELECT count(*) AS n FROM deliveries")[0]["n"], rows["deliveries"],
             "%s: deliveries stored" % name)
        for sql, want in rows.get("checks", []):
            got = ep.db().execute(sql).fetchone()[0]
            if isinstance(got, bytes):
                got = got.decode()
            t.eq(got, want, "%s: %s" % (name, sql))
    finally:
        ep.cleanup()


def main():
    t = kt.Tap()
    here = os.path.dirname(os.path.abspath(__file__))
    for path in sorted(glob.glob(os.path.join(here, "scenarios", "*.json"))):
        run_scenario(t, path)
    t.done()


if __name__ == "__main__":
    main()
