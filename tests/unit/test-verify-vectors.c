/* SPDX-License-Identifier: MIT */
/*
 * test-verify-vectors — the test vectors the providers themselves publish
 * (../shared/spec/providers.md, "Published test vectors"), run through
 * verify_request() exactly as a request would arrive. Each vector is also
 * checked to fail once a single byte of the body changes, so a verifier that
 * accepted everything could not pass.
 */

#include <stdio.h>
#include <stdlib.h>

#include "tap.h"
#include "util.h"
#include "verify.h"

#define NH(...)                                                                                    \
        ((const knock_header[]){__VA_ARGS__}), ELEMENTSOF(((const knock_header[]){__VA_ARGS__}))

static knock_verify_config cfg_new(knock_provider p, const char *secret)
{
        knock_verify_config c = {.provider = p, .tolerance_ms = -1};

        c.secrets = calloc(1, sizeof(knock_secret));
        if (!c.secrets || verify_secret_from_text(p, secret, &c.secrets[0]) < 0)
                abort();
        c.n_secrets = 1;
        return c;
}

/* Verifies once as given and once with the last body byte flipped. */
static void check(const char *what, knock_verify_config *cfg, const char *method, const char *uri,
        const knock_header *h, size_t nh, const char *body, int64_t now)
{
        knock_verify_result res;
        size_t len = strlen(body);
        char *tampered = strdup(body);
        knock_request req = {
                .method = method,
                .uri = uri,
                .headers = h,
                .n_headers = nh,
                .body = (const unsigned char *)body,
                .body_len = len,
                .now_ms = now,
        };
        int r;

        r = verify_request(cfg, &req, &res);
        if (!is_int(r, KNOCK_VERIFY_OK, "%s: published vector verifies", what))
                printf("#   reason: %s\n", res.reason);
        verify_result_clear(&res);

        tampered[len - 1] ^= 1;
        req.body = (const unsigned char *)tampered;
        r = verify_request(cfg, &req, &res);
        is_int(r, KNOCK_VERIFY_E_MISMATCH, "%s: one flipped body byte is rejected", what);
        verify_result_clear(&res);
        free(tampered);
        verify_config_clear(cfg);
}

int main(void)
{
        knock_verify_config c;

        /* GitHub docs, "Validating webhook deliveries". */
        c = cfg_new(KNOCK_PROVIDER_GITHUB, "It's a Secret to Everybody");
        check("github", &c, "POST", "/",
                NH({"X-Hub-Signature-256",
                        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"}),
                "Hello, World!", 0);

        /* Standard Webhooks reference libraries. */
        c = cfg_new(KNOCK_PROVIDER_STANDARD, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        check("standard", &c, "POST", "/",
                NH({"webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"},
                        {"webhook-timestamp", "1614265330"},
                        {"webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}),
                "{\"test\": 2432232314}", 1614265330000);
        c = cfg_new(KNOCK_PROVIDER_STANDARD, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        check("standard (svix-* names)", &c, "POST", "/",
                NH({"svix-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"}, {"svix-timestamp", "1614265330"},
                        {"svix-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}),
                "{\"test\": 2432232314}", 1614265330000);

        /* The signer used for completion hooks reproduces the same vector. */
        {
                knock_secret key;
                char out[64];
                const char *body = "{\"test\": 2432232314}";

                if (verify_secret_from_text(KNOCK_PROVIDER_STANDARD,
                            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", &key) < 0)
                        abort();
                is_int(standard_sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330",
                               (const unsigned char *)body, strlen(body), out, sizeof(out)),
                        0, "standard_sign succeeds");
                is_str(out, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
                        "standard_sign reproduces the Standard Webhooks vector");
                is_int(standard_sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330",
                               (const unsigned char *)body, strlen(body), out, 40),
                        -ENOBUFS, "standard_sign refuses a short buffer");
                verify_secret_clear(&key);
                ok(!key.data && key.len == 0, "verify_secret_clear wipes and zeroes the secret");
        }

        /* Shopify library tests. */
        c = cfg_new(KNOCK_PROVIDER_SHOPIFY, "test_secret_key");
        check("shopify", &c, "POST", "/",
                NH({"X-Shopify-Hmac-Sha256", "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g="}),
                "{\"foo\": \"bar\"}", 0);

        /* Slack docs worked example (the timestamp is the request's own). */
        c = cfg_new(KNOCK_PROVIDER_SLACK, "8f742231b10e8888abcd99yyyzzz85a5");
        check("slack", &c, "POST", "/",
                NH({"X-Slack-Request-Timestamp", "1531420618"},
                        {"X-Slack-Signature", "v0="
                                              "a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd275196"
                                              "66489c69b503"}),
                "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&"
                "channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&"
                "command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2F"
                "commands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id="
                "398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c",
                1531420618000);

        /* Twilio docs: the params arrive form-encoded ('+' as %2B). */
        c = cfg_new(KNOCK_PROVIDER_TWILIO, "12345");
        c.url = strdup("https://mycompany.com/myapp.php");
        check("twilio", &c, "POST", "/myapp.php?foo=1&bar=2",
                NH({"X-Twilio-Signature", "GvWf1cFY/Q7PnoempGyD5oXAezc="}),
                "CallSid=CA1234567890ABCDE&Caller=%2B14158675310&Digits=1234&"
                "From=%2B14158675310&To=%2B18005551212",
                0);
        /* Same params in another order: Twilio sorts them, so the body order is irrelevant. */
        c = cfg_new(KNOCK_PROVIDER_TWILIO, "12345");
        c.url = strdup("https://mycompany.com/myapp.php");
        check("twilio (params reordered)", &c, "POST", "/myapp.php?foo=1&bar=2",
                NH({"X-Twilio-Signature", "GvWf1cFY/Q7PnoempGyD5oXAezc="}),
                "To=%2B18005551212&Digits=1234&From=%2B14158675310&CallSid=CA1234567890ABCDE&"
                "Caller=%2B14158675310",
                0);

        /* Paddle SDK tests. */
        c = cfg_new(KNOCK_PROVIDER_PADDLE, "VALID_SECRET");
        check("paddle", &c, "POST", "/",
                NH({"Paddle-Signature",
                        "ts=1698796800;h1="
                        "a300428748dce5c70e4da19bffd60769591ea969c99dea3105d0ec9612cf43f9"}),
                "{\"data\": [\"1\", \"2\"]}", 1698796800000);

        return tap_done();
}
