#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes tests/fuzz/verify/: one request per provider that verifies (ok-*),
in fuzz-verify.c's input form, signed with the secrets that harness
configures. Published vectors (tests/unit/test-verify-vectors.c) are used as
they are; the rest are signed here: HMACs with Python's hmac, Ed25519 and
ECDSA P-256 with the openssl command and the RFC 8032 / RFC 6979 test keys
(public test vectors, never anyone's real key). The fuzz-verify-seeds test
checks that every ok-* seed verifies.

    tests/fuzz/gen-verify-seeds.py [DIR]
"""

import base64
import hashlib
import hmac
import os
import subprocess
import sys
import tempfile

NOW_S = 1700000000  # fuzz-verify.c's DEFAULT_NOW_MS / 1000
NOW_MS = NOW_S * 1000

# RFC 8032 section 7.1, test 1: the Ed25519 secret key (its public key is in fuzz-verify.c).
ED25519_PKCS8 = bytes.fromhex("302e020100300506032b657004220420"
                              "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
# RFC 6979 appendix A.2.5: the P-256 private key x and public key (Ux, Uy).
P256_X = bytes.fromhex("c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721")
P256_PUB = bytes.fromhex("04"
                         "60fed4ba255a9d31c961eb74c6356d68c049b8923b61fa6ce669622e60f29fb6"
                         "7903fe1008b8bc99a41ae9e95628bc64f2f1b20c2d7e9f5177a3c294d4462299")


def pem(label, der):
    return f"-----BEGIN {label}-----\n{base64.b64encode(der).decode()}\n-----END {label}-----\n"


def p256_sec1():
    oid = bytes.fromhex("06082a8648ce3d030107")
    bits = b"\x03" + bytes([len(P256_PUB) + 1]) + b"\x00" + P256_PUB
    inner = (bytes.fromhex("020101") + b"\x04\x20" + P256_X + b"\xa0" + bytes([len(oid)]) + oid +
             b"\xa1" + bytes([len(bits)]) + bits)
    return b"\x30" + bytes([len(inner)]) + inner


def openssl_sign(key_pem, msg, args):
    """Runs openssl ARGS with {key} and {msg} replaced by files holding the two."""
    with tempfile.TemporaryDirectory() as d:
        kp, mp = os.path.join(d, "key.pem"), os.path.join(d, "msg")
        with open(kp, "w") as f:
            f.write(key_pem)
        with open(mp, "wb") as f:
            f.write(msg)
        args = [kp if a == "{key}" else mp if a == "{msg}" else a for a in args]
        return subprocess.run(["openssl"] + args, check=True, capture_output=True).stdout


def ed25519(msg):
    return openssl_sign(pem("PRIVATE KEY", ED25519_PKCS8), msg,
                        ["pkeyutl", "-sign", "-rawin", "-inkey", "{key}", "-in", "{msg}"])


def ecdsa_p256(msg):
    return openssl_sign(pem("EC PRIVATE KEY", p256_sec1()), msg,
                        ["dgst", "-sha256", "-sign", "{key}", "{msg}"])


def mac(key, msg, alg=hashlib.sha256):
    return hmac.new(key.encode() if isinstance(key, str) else key, msg.encode(), alg).digest()


def b64(b):
    return base64.b64encode(b).decode()


def request(first, method_uri, headers, body=None):
    text = first + "\n" + method_uri + "\n" + "".join(f"{n}: {v}\n" for n, v in headers)
    if body is not None:
        text += "\n" + body
    return text


def seeds():
    s = {}
    json_evt = '{"id":"evt_1","type":"charge.succeeded","data":{"object":{"amount":100}}}'

    s["none"] = request("none allow_unverified=1", "POST /", [], json_evt)

    sig = mac("whsec_fuzz_stripe", f"{NOW_S}.{json_evt}").hex()
    s["stripe"] = request("stripe", "POST /",
                          [("Stripe-Signature", f"t={NOW_S},v1={sig},v0=00")], json_evt)

    s["github"] = request("github", "POST /", [
        ("X-Hub-Signature-256",
         "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"),
        ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ("X-GitHub-Event", "ping")], "Hello, World!")

    body = '{"test": 2432232314}'
    s["standard"] = request("standard now=1614265330000", "POST /", [
        ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"), ("webhook-timestamp", "1614265330"),
        ("webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")], body)
    msg = f"msg_1.{NOW_S}.{json_evt}".encode()
    s["standard-v1a"] = request("standard", "POST /", [
        ("svix-id", "msg_1"), ("svix-timestamp", str(NOW_S)),
        ("svix-signature", f"v1,AAAA v1a,{b64(ed25519(msg))}")], json_evt)

    s["shopify"] = request("shopify", "POST /", [
        ("X-Shopify-Hmac-Sha256", "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g="),
        ("X-Shopify-Topic", "orders/create"), ("X-Shopify-Event-Id", "e1")], '{"foo": "bar"}')

    body = ("token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&"
            "channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&"
            "command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2F"
            "commands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id="
            "398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c")
    s["slack"] = request("slack now=1531420618000", "POST /", [
        ("X-Slack-Request-Timestamp", "1531420618"),
        ("X-Slack-Signature",
         "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503")], body)
    body = '{"token":"t","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",' \
           '"type":"url_verification"}'
    sig = mac("8f742231b10e8888abcd99yyyzzz85a5", f"v0:{NOW_S}:{body}").hex()
    s["slack-challenge"] = request("slack", "POST /", [
        ("X-Slack-Request-Timestamp", str(NOW_S)), ("X-Slack-Signature", f"v0={sig}")], body)

    sig = mac("fuzz-hmac-secret", json_evt).hex()
    s["hmac"] = request("hmac header=X-Signature prefix=sha256= dedupe=json:/id type=json:/type",
                        "POST /", [("X-Signature", f"sha256={sig}")], json_evt)
    sig = b64(mac("fuzz-hmac-secret", f"{NOW_S}.{json_evt}", hashlib.sha512))
    s["hmac-ts-sha512"] = request(
        "hmac header=X-Sig algorithm=sha512 encoding=base64 timestamp_header=X-Ts "
        "dedupe=header:X-Id type=json:/data/object/amount", "POST /",
        [("X-Sig", sig), ("X-Ts", str(NOW_S)), ("X-Id", "d-1")], json_evt)
    sig = mac("fuzz-hmac-secret", json_evt, hashlib.sha1).hex()
    s["hmac-sha1"] = request("hmac header=X-Sig algorithm=sha1 tolerance=1000", "POST /",
                             [("X-Sig", sig)], json_evt)

    s["token"] = request("token", "POST /", [("X-Knock-Token", "fuzz-token")], json_evt)
    s["token-header"] = request("token header=X-Auth", "POST /", [("X-Auth", " fuzz-token ")],
                                json_evt)
    s["basic"] = request("basic", "POST /", [("Authorization", "Basic " + b64(b"user:pa ss"))],
                         json_evt)
    s["bearer"] = request("bearer", "POST /", [("Authorization", "Bearer fuzz-bearer")], json_evt)

    body = ("CallSid=CA1234567890ABCDE&Caller=%2B14158675310&Digits=1234&"
            "From=%2B14158675310&To=%2B18005551212")
    s["twilio"] = request("twilio url=https://mycompany.com/myapp.php",
                          "POST /myapp.php?foo=1&bar=2",
                          [("X-Twilio-Signature", "GvWf1cFY/Q7PnoempGyD5oXAezc=")], body)
    body = "MessageStatus=delivered&MessageSid=SM1&MessageSid=SM0&Body=a+b%26c"
    params = sorted(p.split("=", 1) for p in
                    ["MessageStatus=delivered", "MessageSid=SM1", "MessageSid=SM0", "Body=a b&c"])
    url = "https://example.com:443/sms"
    sig = b64(mac("12345", url + "".join(n + v for n, v in params), hashlib.sha1))
    s["twilio-form"] = request("twilio url=https://example.com/sms", "POST /sms", [
        ("X-Twilio-Signature", sig), ("I-Twilio-Idempotency-Token", "idem-1")], body)
    sha = hashlib.sha256(json_evt.encode()).hexdigest()
    url = f"https://example.com/hook?bodySHA256={sha}"
    s["twilio-json"] = request("twilio url=https://example.com/hook",
                               f"POST /hook?bodySHA256={sha}",
                               [("X-Twilio-Signature", b64(mac("12345", url, hashlib.sha1)))],
                               json_evt)

    s["paddle"] = request("paddle now=1698796800000", "POST /", [
        ("Paddle-Signature",
         "ts=1698796800;h1=a300428748dce5c70e4da19bffd60769591ea969c99dea3105d0ec9612cf43f9")],
        '{"data": ["1", "2"]}')

    body = f'{{"action":"create","type":"Issue","webhookTimestamp":{NOW_MS},"data":{{"id":"i"}}}}'
    s["linear"] = request("linear", "POST /", [
        ("Linear-Signature", mac("lin_wh_fuzz", body).hex()), ("Linear-Delivery", "ld-1")], body)

    s["postmark"] = request("postmark", "POST /",
                            [("Authorization", "Basic " + b64(b"pm:hook"))],
                            '{"RecordType":"Delivery","MessageID":"m"}')

    key = base64.b64decode("c2VjcmV0LWtleS1mb3ItcmVzZW5k")
    for p in ("resend", "clerk"):
        msg = f"msg_2.{NOW_S}.{json_evt}"
        s[p] = request(p, "POST /", [
            ("svix-id", "msg_2"), ("svix-timestamp", str(NOW_S)),
            ("svix-signature", "v1," + b64(mac(key, msg)))], json_evt)
    msg = f"msg_3.{NOW_S}.{json_evt}".encode()
    s["clerk-v1a"] = request("clerk", "POST /", [
        ("webhook-id", "msg_3"), ("webhook-timestamp", str(NOW_S)),
        ("webhook-signature", "v1a," + b64(ed25519(msg)))], json_evt)

    body = '{"meta":{"event_name":"order_created"},"data":{"id":"1"}}'
    s["lemonsqueezy"] = request("lemonsqueezy", "POST /", [
        ("X-Signature", mac("lsq-fuzz", body).hex())], body)

    body = '{"object":"page","entry":[{"id":"1","time":1}]}'
    s["meta"] = request("meta", "POST /", [
        ("X-Hub-Signature-256", "sha256=" + mac("meta-app-secret", body).hex())], body)
    s["meta-get"] = request(
        "meta verify_token=vt-fuzz",
        "GET /?hub.mode=subscribe&hub.verify_token=vt-fuzz&hub.challenge=1158201444", [])

    body = '{"type":"notification_event","id":"notif_1","topic":"conversation.user.created"}'
    s["intercom"] = request("intercom", "POST /", [
        ("X-Hub-Signature", "sha1=" + mac("intercom-fuzz", body, hashlib.sha1).hex())], body)

    ts = "2023-11-14T22:13:20Z"  # NOW_S
    body = '{"type":"zen:event-type:ticket.created","id":"z1"}'
    s["zendesk"] = request("zendesk", "POST /", [
        ("X-Zendesk-Webhook-Signature", b64(mac("dGhpc19zZWNyZXQ=", ts + body))),
        ("X-Zendesk-Webhook-Signature-Timestamp", ts),
        ("X-Zendesk-Webhook-Invocation-Id", "inv-1")], body)

    body = '[{"eventId":1,"subscriptionType":"contact.creation"}]'
    url = "https://example.com/hubspot?x=a%3Ab"
    msg = "POST" + url.replace("%3A", ":") + body + str(NOW_MS)
    s["hubspot"] = request("hubspot url=https://example.com/hubspot", "POST /hubspot?x=a%3Ab", [
        ("X-HubSpot-Signature-v3", b64(mac("hs-client-secret", msg))),
        ("X-HubSpot-Request-Timestamp", str(NOW_MS))], body)

    body = '[{"email":"a@example.com","event":"delivered","sg_event_id":"sg-1"}]'
    s["sendgrid"] = request("sendgrid", "POST /", [
        ("X-Twilio-Email-Event-Webhook-Signature", b64(ecdsa_p256((str(NOW_S) + body).encode()))),
        ("X-Twilio-Email-Event-Webhook-Timestamp", str(NOW_S))], body)

    for name, body in (("discord", '{"id":"int-2","type":2,"data":{"name":"hi"}}'),
                       ("discord-ping", '{"id":"int-1","type":1,"application_id":"app"}'),
                       ("discord-event-ping", '{"type":0,"application_id":"app","version":1}')):
        s[name] = request("discord", "POST /", [
            ("X-Signature-Ed25519", ed25519((str(NOW_S) + body).encode()).hex()),
            ("X-Signature-Timestamp", str(NOW_S))], body)

    s["gitlab"] = request("gitlab", "POST /", [
        ("X-Gitlab-Token", "gl-token"), ("X-Gitlab-Event", "Push Hook"),
        ("X-Gitlab-Event-UUID", "u-1")], '{"object_kind":"push"}')
    return s


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "verify")
    os.makedirs(out, exist_ok=True)
    for name, text in seeds().items():
        with open(os.path.join(out, "ok-" + name), "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
