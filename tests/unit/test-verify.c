/* SPDX-License-Identifier: MIT */
/*
 * test-verify — every provider's own valid and invalid cases: tampered body,
 * wrong secret, missing/malformed/duplicated headers, several signatures in
 * one header, rotation with two secrets, the whsec_ key rule in both
 * directions, metadata read from rejected requests, handshakes only after
 * verification, and the exact tolerance boundaries.
 *
 * Boundary convention (verify.c): a timestamp is accepted when
 * |now - ts| <= tolerance. "boundary" means now - ts == tolerance exactly
 * (accepted); boundary + 1 s and boundary + 1 ms are rejected, as EXPIRED on
 * the past side and FUTURE on the future side.
 *
 * Expected signatures are computed here with OpenSSL directly (HMAC(),
 * EVP_DigestSign) from the provider's documented layout, never through
 * verify.c, so a layout mistake in verify.c cannot cancel itself out.
 */

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "tap.h"
#include "util.h"
#include "verify.h"

#define NOW 1700000000000LL /* receive time in every case unless stated */
#define TS "1700000000"     /* == NOW in seconds */
#define TS_MS "1700000000000"

/* ---- allocation pool: everything is freed at the end (ASan runs these too) ---------------- */

static void *pool[4096];
static size_t n_pool;

static char *keep(char *p)
{
        if (!p || n_pool >= ELEMENTSOF(pool))
                abort();
        pool[n_pool++] = p;
        return p;
}

_printf_(1, 2) static char *fmt(const char *f, ...)
{
        va_list ap;
        char *s;

        va_start(ap, f);
        if (vasprintf(&s, f, ap) < 0)
                abort();
        va_end(ap);
        return keep(s);
}

/* ---- independent signers ------------------------------------------------------------------ */

static size_t mac(const char *md, const void *key, size_t klen, const void *msg, size_t mlen,
        unsigned char *out)
{
        unsigned int n = 0;

        if (!HMAC(EVP_get_digestbyname(md), key, (int)klen, msg, mlen, out, &n))
                abort();
        return n;
}

static char *to_hex(const unsigned char *b, size_t n)
{
        char *s = keep(malloc(2 * n + 1));
        for (size_t i = 0; i < n; i++)
                sprintf(s + 2 * i, "%02x", b[i]);
        s[2 * n] = 0;
        return s;
}

static char *to_b64(const unsigned char *b, size_t n)
{
        char *s = keep(malloc(4 * ((n + 2) / 3) + 1));
        EVP_EncodeBlock((unsigned char *)s, b, (int)n);
        return s;
}

static char *hmac_hex(const char *md, const char *key, const char *msg)
{
        unsigned char m[64];
        return to_hex(m, mac(md, key, strlen(key), msg, strlen(msg), m));
}

static char *hmac_b64(const char *md, const void *key, size_t klen, const char *msg)
{
        unsigned char m[64];
        return to_b64(m, mac(md, key, klen, msg, strlen(msg), m));
}

static char *ed25519_sig(EVP_PKEY *pkey, const char *msg, bool hex)
{
        unsigned char sig[64];
        size_t n = sizeof(sig);
        EVP_MD_CTX *md = EVP_MD_CTX_new();

        if (!md || EVP_DigestSignInit(md, NULL, NULL, NULL, pkey) != 1 ||
                EVP_DigestSign(md, sig, &n, (const unsigned char *)msg, strlen(msg)) != 1)
                abort();
        EVP_MD_CTX_free(md);
        return hex ? to_hex(sig, n) : to_b64(sig, n);
}

static char *ecdsa_sig_b64(EVP_PKEY *pkey, const char *msg)
{
        unsigned char sig[128];
        size_t n = sizeof(sig);
        EVP_MD_CTX *md = EVP_MD_CTX_new();

        if (!md || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, pkey) != 1 ||
                EVP_DigestSign(md, sig, &n, (const unsigned char *)msg, strlen(msg)) != 1)
                abort();
        EVP_MD_CTX_free(md);
        return to_b64(sig, n);
}

/* ---- requests ----------------------------------------------------------------------------- */

#define H(...)                                                                                     \
        ((const knock_header[]){__VA_ARGS__}), ELEMENTSOF(((const knock_header[]){__VA_ARGS__}))
#define NOH NULL, 0

static knock_verify_config cfg_new(knock_provider p, const char *s1, const char *s2)
{
        knock_verify_config c = {.provider = p, .tolerance_ms = -1};
        const char *s[2] = {s1, s2};

        c.secrets = calloc(2, sizeof(knock_secret));
        if (!c.secrets)
                abort();
        for (size_t i = 0; i < 2 && s[i]; i++) {
                if (verify_secret_from_text(p, s[i], &c.secrets[i]) < 0)
                        abort();
                c.n_secrets++;
        }
        return c;
}

static knock_verify_result res; /* the last run's result, cleared by the next run */

static int run_m(knock_verify_config *c, const char *method, const char *uri, const knock_header *h,
        size_t nh, const char *body, int64_t now)
{
        knock_request req = {
                .method = method,
                .uri = uri ? uri : "/",
                .headers = h,
                .n_headers = nh,
                .body = (const unsigned char *)body,
                .body_len = body ? strlen(body) : 0,
                .now_ms = now,
        };
        int r;

        verify_result_clear(&res);
        r = verify_request(c, &req, &res);
        if (r == 0 && res.reason[0])
                printf("#   reason set on success: %s\n", res.reason);
        if (r > 0 && !res.reason[0])
                printf("#   no reason on failure\n");
        if (r != 0)
                printf("#   (%d: %s)\n", r, res.reason);
        return r;
}

static int run(
        knock_verify_config *c, const knock_header *h, size_t nh, const char *body, int64_t now)
{
        return run_m(c, "POST", "/", h, nh, body, now);
}

/* ---- cases -------------------------------------------------------------------------------- */

static void test_names(void)
{
        for (int p = 0; p < _KNOCK_PROVIDER_MAX; p++) {
                const char *n = provider_to_string((knock_provider)p);
                if (!ok(n && provider_from_string(n) == p, "provider %d has a name that maps back",
                            p))
                        break;
        }
        is_int(provider_from_string("svix"), KNOCK_PROVIDER_STANDARD, "svix is standard");
        is_int(provider_from_string("Stripe"), KNOCK_PROVIDER_INVALID, "names are exact");
        is_int(provider_from_string("nope"), KNOCK_PROVIDER_INVALID, "unknown name is invalid");
        ok(provider_to_string(_KNOCK_PROVIDER_MAX) == NULL, "out of range has no name");

        knock_header hs[] = {{"X-A", "1"}, {"x-a", "2"}, {"X-B", "3"}};
        knock_request r = {.headers = hs, .n_headers = 3};
        const char *v;
        is_int(request_header(&r, "X-a", &v), 2, "request_header counts case-insensitively");
        is_str(v, "1", "request_header returns the first");
        is_int(request_header(&r, "X-C", &v), 0, "absent header counts 0");
}

static void test_none(void)
{
        knock_verify_config c = {.provider = KNOCK_PROVIDER_NONE, .tolerance_ms = -1};

        is_int(run(&c, NOH, "{\"id\":\"e1\"}", NOW), KNOCK_VERIFY_E_UNVERIFIED,
                "none: refused without allow_unverified");
        c.allow_unverified = true;
        c.dedupe = strdup("json:/id");
        c.type = strdup("header:X-Kind");
        is_int(run(&c, H({"X-Kind", "thing"}), "{\"id\":\"e1\"}", NOW), 0,
                "none: accepted with allow_unverified");
        is_str(res.provider_event_id, "e1", "none: dedupe = json:/id");
        is_str(res.event_type, "thing", "none: type = header:X-Kind");
        verify_config_clear(&c);
}

static void test_stripe(void)
{
        const char *secret = "whsec_stripe0123456789abcdefABCDEF";
        const char *body = "{\"id\":\"evt_1\",\"type\":\"invoice.paid\",\"data\":{\"object\":{"
                           "\"id\":\"in_9\"}}}";
        char *good = hmac_hex("SHA256", secret, fmt("%s.%s", TS, body));
        char *other = hmac_hex("SHA256", "whsec_other", fmt("%s.%s", TS, body));
        knock_verify_config c = cfg_new(KNOCK_PROVIDER_STRIPE, secret, NULL);

        is_int(run(&c, H({"Stripe-Signature", fmt("t=%s,v1=%s", TS, good)}), body, NOW), 0,
                "stripe: valid");
        is_str(res.provider_event_id, "evt_1", "stripe: dedupe id is body id (the event)");
        is_str(res.event_type, "invoice.paid", "stripe: type is body type");
        is_int(run(&c, H({"stripe-signature", fmt("t=%s,v1=%s", TS, good)}), body, NOW), 0,
                "stripe: header name is case-insensitive");
        is_int(run(&c, H({"Stripe-Signature", fmt("t=%s,v1=%s", TS, good)}),
                       "{\"id\":\"evt_1\",\"type\":\"invoice.paid\",\"data\":{\"object\":{\"id\":"
                       "\"in_8\"}}}",
                       NOW),
                KNOCK_VERIFY_E_MISMATCH, "stripe: tampered body rejected");
        is_str(res.provider_event_id, "evt_1", "stripe: rejected request still yields its id");
        is_str(res.event_type, "invoice.paid", "stripe: rejected request still yields its type");
        is_str(res.reason, "no signature matches", "stripe: mismatch reason");
        is_int(run(&c, H({"Stripe-Signature", fmt("t=%s,v1=%s", TS, other)}), body, NOW),
                KNOCK_VERIFY_E_MISMATCH, "stripe: wrong secret rejected");
        is_int(run(&c,
                       H({"Stripe-Signature",
                               fmt("t=%s,v1=%s,v1=%s,v0=%s", TS, other, good, other)}),
                       body, NOW),
                0, "stripe: several v1 in one header, any may match");
        is_int(run(&c, H({"Stripe-Signature", fmt("t=%s,v0=%s", TS, good)}), body, NOW),
                KNOCK_VERIFY_E_MALFORMED, "stripe: v0 alone is not a signature (malformed)");
        is_int(run(&c, H({"Stripe-Signature", fmt("v1=%s", good)}), body, NOW),
                KNOCK_VERIFY_E_MALFORMED, "stripe: no t is malformed");
        is_int(run(&c, H({"Stripe-Signature", fmt("t=%s,t=%s,v1=%s", TS, TS, good)}), body, NOW),
                KNOCK_VERIFY_E_MALFORMED, "stripe: t twice is malformed");
        is_int(run(&c, H({"Stripe-Signature", fmt("t=+%s,v1=%s", TS, good)}), body, NOW),
                KNOCK_VERIFY_E_MALFORMED, "stripe: signed timestamp is malformed");
        is_int(run(&c, H({"Stripe-Signature", fmt("t=%sx,v1=%s", TS, good)}), body, NOW),
                KNOCK_VERIFY_E_MALFORMED, "stripe: timestamp with junk is malformed");
        is_int(run(&c, H({"Stripe-Signature", fmt("t=%s,v1=%.62s", TS, good)}), body, NOW),
                KNOCK_VERIFY_E_MISMATCH, "stripe: truncated signature (a prefix) rejected");
        is_int(run(&c, H({"Stripe-Signature", fmt("t=%s,v1=%s00", TS, good)}), body, NOW),
                KNOCK_VERIFY_E_MISMATCH, "stripe: extended signature rejected");
        is_int(run(&c, NOH, body, NOW), KNOCK_VERIFY_E_MISSING, "stripe: missing header");
        is_str(res.reason, "missing Stripe-Signature header",
                "stripe: missing reason names header");
        is_str(res.provider_event_id, "evt_1", "stripe: id read even with no signature");
        is_int(run(&c,
                       H({"Stripe-Signature", fmt("t=%s,v1=%s", TS, good)},
                               {"Stripe-Signature", fmt("t=%s,v1=%s", TS, good)}),
                       body, NOW),
                KNOCK_VERIFY_E_MALFORMED, "stripe: duplicated header is malformed");
        ok(!strstr(res.reason, good), "stripe: reason never contains the signature");

        /* Tolerance 300 s, past side only (stripe-node checks only the age). */
        const knock_header *h =
                (const knock_header[]){{"Stripe-Signature", fmt("t=%s,v1=%s", TS, good)}};
        is_int(run(&c, h, 1, body, NOW + 300000), 0, "stripe: age == 300 s accepted (boundary)");
        is_int(run(&c, h, 1, body, NOW + 300001), KNOCK_VERIFY_E_EXPIRED,
                "stripe: boundary + 1 ms expired");
        is_int(run(&c, h, 1, body, NOW + 301000), KNOCK_VERIFY_E_EXPIRED,
                "stripe: boundary + 1 s expired");
        is_str(res.reason, "timestamp outside tolerance (too old)", "stripe: expired reason");
        is_int(run(&c, h, 1, body, NOW - 3600000), 0, "stripe: future timestamps are not checked");
        c.tolerance_ms = 10000;
        is_int(run(&c, h, 1, body, NOW + 10000), 0,
                "stripe: configured tolerance boundary accepted");
        is_int(run(&c, h, 1, body, NOW + 11000), KNOCK_VERIFY_E_EXPIRED,
                "stripe: configured tolerance + 1 s expired");
        c.tolerance_ms = INT64_MAX;
        is_int(run(&c, h, 1, body, NOW + 86400000LL * 365), 0,
                "stripe: INT64_MAX disables the check");
        verify_config_clear(&c);

        /* Rotation: two secrets, either order. */
        c = cfg_new(KNOCK_PROVIDER_STRIPE, "whsec_old", secret);
        is_int(run(&c, h, 1, body, NOW), 0, "stripe: rotation, new secret second");
        verify_config_clear(&c);
        c = cfg_new(KNOCK_PROVIDER_STRIPE, secret, "whsec_old");
        is_int(run(&c, h, 1, body, NOW), 0, "stripe: rotation, new secret first");
        verify_config_clear(&c);

        /* Rule 6, stripe's direction: "whsec_" + base64 text is used verbatim. */
        {
                const char *b64secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
                unsigned char key[64];
                int kl = EVP_DecodeBlock(
                        key, (const unsigned char *)"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", 32);
                unsigned char m[32];
                const char *msg = fmt("%s.%s", TS, body);
                char *decoded_sig = to_hex(m, mac("SHA256", key, (size_t)kl, msg, strlen(msg), m));

                c = cfg_new(KNOCK_PROVIDER_STRIPE, b64secret, NULL);
                is_int(c.secrets[0].len, strlen(b64secret),
                        "stripe: secret kept as written (whsec_ included)");
                is_int(run(&c,
                               H({"Stripe-Signature",
                                       fmt("t=%s,v1=%s", TS, hmac_hex("SHA256", b64secret, msg))}),
                               body, NOW),
                        0, "stripe: whsec_ text used verbatim verifies");
                is_int(run(&c, H({"Stripe-Signature", fmt("t=%s,v1=%s", TS, decoded_sig)}), body,
                               NOW),
                        KNOCK_VERIFY_E_MISMATCH, "stripe: base64-decoded whsec_ key does not");
                verify_config_clear(&c);
        }
}

static void test_github(void)
{
        const char *body = "{\"action\":\"opened\",\"issue\":{\"id\":42}}";
        char *sig = hmac_hex("SHA256", "gh-secret", body);
        knock_verify_config c = cfg_new(KNOCK_PROVIDER_GITHUB, "gh-secret", NULL);

        is_int(run(&c,
                       H({"x-hub-signature-256", fmt("sha256=%s", sig)},
                               {"X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"},
                               {"X-GitHub-Event", "issues"}),
                       body, NOW),
                0, "github: valid");
        is_str(res.provider_event_id, "72d3162e-cc78-11e3-81ab-4c9367dc0958",
                "github: dedupe X-GitHub-Delivery");
        is_str(res.event_type, "issues", "github: type X-GitHub-Event");
        is_int(run(&c,
                       H({"X-Hub-Signature-256", fmt("sha256=%s", sig)},
                               {"X-GitHub-Event", "push"}),
                       "{\"action\":\"closed\",\"issue\":{\"id\":42}}", NOW),
                KNOCK_VERIFY_E_MISMATCH, "github: tampered body");
        is_str(res.event_type, "push", "github: rejected request keeps its type");
        is_int(run(&c,
                       H({"X-Hub-Signature-256",
                               fmt("sha256=%s", hmac_hex("SHA256", "nope", body))}),
                       body, NOW),
                KNOCK_VERIFY_E_MISMATCH, "github: wrong secret");
        is_int(run(&c, H({"X-Hub-Signature-256", sig}), body, NOW), KNOCK_VERIFY_E_MALFORMED,
                "github: missing sha256= prefix is malformed");
        is_int(run(&c, H({"X-Hub-Signature-256", "sha256=zz"}), body, NOW),
                KNOCK_VERIFY_E_MALFORMED, "github: non-hex is malformed");
        is_int(run(&c, H({"X-Hub-Signature", fmt("sha1=%s", hmac_hex("SHA1", "gh-secret", body))}),
                       body, NOW),
                KNOCK_VERIFY_E_MISSING, "github: the SHA-1 header alone is not accepted");
        is_int(run(&c,
                       H({"X-Hub-Signature-256", fmt("sha256=%s", sig)},
                               {"X-HUB-SIGNATURE-256", fmt("sha256=%s", sig)}),
                       body, NOW),
                KNOCK_VERIFY_E_MALFORMED, "github: duplicated header (any case) is malformed");
        verify_config_clear(&c);
        c = cfg_new(KNOCK_PROVIDER_GITHUB, "old", "gh-secret");
        is_int(run(&c, H({"X-Hub-Signature-256", fmt("sha256=%s", sig)}), body, NOW), 0,
                "github: rotation");
        verify_config_clear(&c);
}

static void test_standard(void)
{
        const char *b64key = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        const char *secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        unsigned char key[48];
        int kl = EVP_DecodeBlock(key, (const unsigned char *)b64key, 32);
        const char *body = "{\"type\":\"user.created\",\"data\":{\"id\":\"u_1\"}}";
        const char *msg = fmt("msg_1.%s.%s", TS, body);
        char *good = hmac_b64("SHA256", key, (size_t)kl, msg);
        char *raw = hmac_b64("SHA256", secret, strlen(secret), msg);
        knock_verify_config c = cfg_new(KNOCK_PROVIDER_STANDARD, secret, NULL);

#define STD(sig, ts)                                                                               \
        H({"webhook-id", "msg_1"}, {"webhook-timestamp", ts}, {"webhook-signature", sig})
        is_int(run(&c, STD(fmt("v1,%s", good), TS), body, NOW), 0, "standard: valid");
        is_str(res.provider_event_id, "msg_1", "standard: dedupe webhook-id");
        is_str(res.event_type, "user.created", "standard: type from body");
        is_int(run(&c,
                       H({"svix-id", "msg_1"}, {"svix-timestamp", TS},
                               {"svix-signature", fmt("v1,%s", good)}),
                       body, NOW),
                0, "standard: svix-* names");
        is_str(res.provider_event_id, "msg_1", "standard: dedupe svix-id");
        is_int(run(&c, STD(fmt("v1,%s", raw), TS), body, NOW), KNOCK_VERIFY_E_MISMATCH,
                "standard: whsec_ text used verbatim as key is rejected (key is decoded)");
        is_int(run(&c, STD(fmt("v1,%s", good), TS),
                       "{\"type\":\"user.deleted\",\"data\":{\"id\":\"u_1\"}}", NOW),
                KNOCK_VERIFY_E_MISMATCH, "standard: tampered body");
        is_str(res.event_type, "user.deleted",
                "standard: rejected request keeps its (claimed) type");
        is_int(run(&c, STD(fmt("v1,AAAA v1,%s", good), TS), body, NOW), 0,
                "standard: space-separated list, second matches");
        is_int(run(&c, STD(fmt("v2,%s", good), TS), body, NOW), KNOCK_VERIFY_E_MISMATCH,
                "standard: non-v1 entries are skipped");
        is_int(run(&c, STD(fmt("v2,%s v1,%s", good, good), TS), body, NOW), 0,
                "standard: v1 entry after a skipped one");
        is_int(run(&c, STD(good, TS), body, NOW), KNOCK_VERIFY_E_MISMATCH,
                "standard: entry without version is skipped");
        is_int(run(&c, H({"webhook-id", "msg_1"}, {"webhook-timestamp", TS}), body, NOW),
                KNOCK_VERIFY_E_MISSING, "standard: missing signature");
        is_str(res.reason, "missing webhook-signature header", "standard: reason names the header");
        is_int(run(&c, H({"webhook-timestamp", TS}, {"webhook-signature", fmt("v1,%s", good)}),
                       body, NOW),
                KNOCK_VERIFY_E_MISSING, "standard: missing id");
        is_int(run(&c,
                       H({"webhook-id", "msg_1"}, {"webhook-timestamp", TS},
                               {"webhook-timestamp", TS},
                               {"webhook-signature", fmt("v1,%s", good)}),
                       body, NOW),
                KNOCK_VERIFY_E_MALFORMED, "standard: duplicated timestamp header");
        is_int(run(&c, STD(fmt("v1,%s", good), "1700000000.0"), body, NOW),
                KNOCK_VERIFY_E_MALFORMED, "standard: non-integer timestamp");
        is_int(run(&c, STD(fmt("v1,%s", good), "-1700000000"), body, NOW), KNOCK_VERIFY_E_MALFORMED,
                "standard: signed timestamp");
        /* ±300 s */
        is_int(run(&c, STD(fmt("v1,%s", good), TS), body, NOW + 300000), 0,
                "standard: age boundary accepted");
        is_int(run(&c, STD(fmt("v1,%s", good), TS), body, NOW + 301000), KNOCK_VERIFY_E_EXPIRED,
                "standard: boundary + 1 s expired");
        is_int(run(&c, STD(fmt("v1,%s", good), TS), body, NOW - 300000), 0,
                "standard: future boundary accepted");
        is_int(run(&c, STD(fmt("v1,%s", good), TS), body, NOW - 301000), KNOCK_VERIFY_E_FUTURE,
                "standard: future boundary + 1 s rejected");
        is_str(res.reason, "timestamp outside tolerance (in the future)",
                "standard: future reason");
        is_int(run(&c, STD(fmt("v1,%s", good), TS), body, NOW - 300001), KNOCK_VERIFY_E_FUTURE,
                "standard: future boundary + 1 ms rejected");
        verify_config_clear(&c);

        /* Rule 6, standard's direction, without the prefix, and rotation. */
        c = cfg_new(KNOCK_PROVIDER_STANDARD, b64key, NULL);
        is_int(c.secrets[0].len, (size_t)kl, "standard: unprefixed secret is base64-decoded too");
        verify_config_clear(&c);
        c = cfg_new(KNOCK_PROVIDER_STANDARD, "whsec_b2xkIHNlY3JldA==", secret);
        is_int(run(&c, STD(fmt("v1,%s", good), TS), body, NOW), 0, "standard: rotation");
        verify_config_clear(&c);
        knock_secret bad;
        is_int(verify_secret_from_text(KNOCK_PROVIDER_STANDARD, "whsec_not*base64", &bad), -EINVAL,
                "standard: undecodable secret refused");
        is_int(verify_secret_from_text(KNOCK_PROVIDER_STANDARD, "whpk_AAAA", &bad), -EINVAL,
                "standard: whpk_ key of the wrong size refused");

        /* v1a: Ed25519 with a whpk_ public key. */
        {
                EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
                unsigned char pub[32];
                size_t pl = sizeof(pub);
                EVP_PKEY_get_raw_public_key(k, pub, &pl);
                char *pk = fmt("whpk_%s", to_b64(pub, pl));
                char *sig = ed25519_sig(k, msg, false);

                c = cfg_new(KNOCK_PROVIDER_STANDARD, pk, secret);
                is_int(c.secrets[0].kind, KNOCK_KEY_ED25519, "standard: whpk_ is an Ed25519 key");
                is_int(run(&c, STD(fmt("v1a,%s", sig), TS), body, NOW), 0, "standard v1a: valid");
                is_int(run(&c, STD(fmt("v1a,%s", sig), TS), "{\"type\":\"x\"}", NOW),
                        KNOCK_VERIFY_E_MISMATCH, "standard v1a: tampered body");
                is_int(run(&c, STD(fmt("v1,%s v1a,%s", good, sig), TS), body, NOW), 0,
                        "standard: v1 and v1a in one header");
                is_int(run(&c, STD(fmt("v1,%s", sig), TS), body, NOW), KNOCK_VERIFY_E_MISMATCH,
                        "standard: an Ed25519 signature labelled v1 does not verify");
                verify_config_clear(&c);
                c = cfg_new(KNOCK_PROVIDER_STANDARD, secret, NULL);
                is_int(run(&c, STD(fmt("v1a,%s", sig), TS), body, NOW), KNOCK_VERIFY_E_MISMATCH,
                        "standard: v1a without a whpk_ key does not verify");
                verify_config_clear(&c);
                EVP_PKEY_free(k);
        }
#undef STD
}

static void test_shopify(void)
{
        const char *body = "{\"id\":820982911946154508,\"email\":\"jon@example.com\"}";
        char *sig = hmac_b64("SHA256", "shp-secret", 10, body);
        knock_verify_config c = cfg_new(KNOCK_PROVIDER_SHOPIFY, "shp-secret", NULL);

        is_int(run(&c,
                       H({"X-Shopify-Hmac-Sha256", sig}, {"X-Shopify-Event-Id", "ev-1"},
                               {"X-Shopify-Webhook-Id", "wh-1"},
                               {"X-Shopify-Topic", "orders/create"}),
                       body, NOW),
                0, "shopify: valid");
        is_str(res.provider_event_id, "ev-1", "shopify: dedupe Event-Id first");
        is_str(res.event_type, "orders/create", "shopify: type Topic");
        is_int(run(&c, H({"shopify-hmac-sha256", sig}, {"X-Shopify-Webhook-Id", "wh-1"}), body,
                       NOW),
                0, "shopify: alternative header name");
        is_str(res.provider_event_id, "wh-1", "shopify: dedupe falls back to Webhook-Id");
        is_int(run(&c, H({"X-Shopify-Hmac-Sha256", sig}, {"shopify-hmac-sha256", sig}), body, NOW),
                KNOCK_VERIFY_E_MALFORMED, "shopify: both header names at once is a duplicate");
        is_int(run(&c, H({"X-Shopify-Hmac-Sha256", sig}), "{\"id\":1}", NOW),
                KNOCK_VERIFY_E_MISMATCH, "shopify: tampered");
        is_int(run(&c, H({"X-Shopify-Hmac-Sha256", "!!!"}), body, NOW), KNOCK_VERIFY_E_MALFORMED,
                "shopify: non-base64 is malformed");
        is_int(run(&c, H({"X-Shopify-Hmac-Sha256", hmac_b64("SHA256", "x", 1, body)}), body, NOW),
                KNOCK_VERIFY_E_MISMATCH, "shopify: wrong secret");
        verify_config_clear(&c);
}

static void test_slack(void)
{
        const char *secret = "slack-signing";
        const char *body = "{\"type\":\"event_callback\",\"event_id\":\"Ev1\",\"event\":{\"type\":"
                           "\"app_mention\"}}";
        const char *hs = "{\"token\":\"t\",\"challenge\":"
                         "\"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P\",\"type\":\"url_"
                         "verification\"}";
        knock_verify_config c = cfg_new(KNOCK_PROVIDER_SLACK, secret, NULL);
        char *sig = fmt("v0=%s", hmac_hex("SHA256", secret, fmt("v0:%s:%s", TS, body)));
        char *hsig = fmt("v0=%s", hmac_hex("SHA256", secret, fmt("v0:%s:%s", TS, hs)));

#define SL(s) H({"X-Slack-Request-Timestamp", TS}, {"X-Slack-Signature", s})
        is_int(run(&c, SL(sig), body, NOW), 0, "slack: valid");
        is_str(res.provider_event_id, "Ev1", "slack: dedupe event_id");
        is_str(res.event_type, "app_mention", "slack: type event.type");
        ok(!res.handshake, "slack: an event is not a handshake");
        is_int(run(&c, SL(sig), body, NOW + 300000), 0, "slack: past boundary accepted");
        is_int(run(&c, SL(sig), body, NOW + 301000), KNOCK_VERIFY_E_EXPIRED,
                "slack: past boundary + 1 s");
        is_int(run(&c, SL(sig), body, NOW - 300000), 0, "slack: future boundary accepted");
        is_int(run(&c, SL(sig), body, NOW - 301000), KNOCK_VERIFY_E_FUTURE,
                "slack: future boundary + 1 s");
        is_int(run(&c, SL(sig), "{\"type\":\"event_callback\"}", NOW), KNOCK_VERIFY_E_MISMATCH,
                "slack: tampered");
        is_int(run(&c, H({"X-Slack-Signature", sig}), body, NOW), KNOCK_VERIFY_E_MISSING,
                "slack: missing timestamp");
        is_int(run(&c, H({"X-Slack-Request-Timestamp", " 1700000000x"}, {"X-Slack-Signature", sig}),
                       body, NOW),
                KNOCK_VERIFY_E_MALFORMED, "slack: junk timestamp");
        is_int(run(&c, SL(fmt("v1=%s", sig + 3)), body, NOW), KNOCK_VERIFY_E_MALFORMED,
                "slack: wrong version prefix");

        is_int(run(&c, SL(hsig), hs, NOW), 0, "slack: signed url_verification verifies");
        ok(res.handshake, "slack: url_verification is a handshake");
        is_int(res.handshake_status, 200, "slack: handshake status 200");
        is_str(res.handshake_content_type, "text/plain", "slack: handshake content type");
        is_str(res.handshake_body, "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
                "slack: challenge echoed");
        is_int(run(&c, SL(sig), hs, NOW), KNOCK_VERIFY_E_MISMATCH,
                "slack: unsigned url_verification rejected");
        ok(!res.handshake && !res.handshake_body, "slack: no handshake before verification");
        is_int(run(&c, SL(hsig), hs, NOW + 301000), KNOCK_VERIFY_E_EXPIRED,
                "slack: stale url_verification rejected");
        ok(!res.handshake, "slack: no handshake for a stale request");
#undef SL
        verify_config_clear(&c);

        /* Slash commands are form bodies: verified, no id, no type. */
        c = cfg_new(KNOCK_PROVIDER_SLACK, secret, NULL);
        const char *form = "token=x&command=%2Fdo&text=hi";
        is_int(run(&c,
                       H({"X-Slack-Request-Timestamp", TS},
                               {"X-Slack-Signature",
                                       fmt("v0=%s", hmac_hex("SHA256", secret,
                                                            fmt("v0:%s:%s", TS, form)))}),
                       form, NOW),
                0, "slack: form body verifies");
        ok(!res.provider_event_id && !res.event_type,
                "slack: non-JSON body yields no id and no type");
        verify_config_clear(&c);
}

static void test_hmac(void)
{
        const char *body = "{\"event\":{\"id\":\"x1\",\"kind\":\"k\"}}";
        knock_verify_config c = cfg_new(KNOCK_PROVIDER_HMAC, "generic", NULL);

        is_int(run(&c, NOH, body, NOW), KNOCK_VERIFY_E_MISMATCH,
                "hmac: no header option fails closed");
        c.header = strdup("X-Sig");
        c.prefix = strdup("sha512=");
        c.algorithm = KNOCK_HMAC_SHA512;
        c.encoding = KNOCK_ENC_BASE64;
        c.dedupe = strdup("json:/event/id");
        c.type = strdup("json:/event/kind");
        char *s512 = fmt("sha512=%s", hmac_b64("SHA512", "generic", 7, body));
        is_int(run(&c, H({"X-Sig", s512}), body, NOW), 0, "hmac: sha512 base64 with prefix");
        is_str(res.provider_event_id, "x1", "hmac: configured dedupe");
        is_str(res.event_type, "k", "hmac: configured type");
        is_int(run(&c, H({"X-Sig", s512 + 7}), body, NOW), KNOCK_VERIFY_E_MALFORMED,
                "hmac: prefix required");
        c.algorithm = KNOCK_HMAC_SHA256;
        is_int(run(&c, H({"X-Sig", s512}), body, NOW), KNOCK_VERIFY_E_MISMATCH,
                "hmac: a SHA-512 MAC is not accepted as SHA-256");
        free(c.prefix);
        c.prefix = NULL;
        c.algorithm = KNOCK_HMAC_SHA1;
        c.encoding = KNOCK_ENC_HEX;
        is_int(run(&c, H({"X-Sig", hmac_hex("SHA1", "generic", body)}), body, NOW), 0,
                "hmac: sha1 hex");
        c.algorithm = KNOCK_HMAC_SHA256;
        c.timestamp_header = strdup("X-Ts");
        char *st = hmac_hex("SHA256", "generic", fmt("%s.%s", TS, body));
        is_int(run(&c, H({"X-Sig", st}, {"X-Ts", TS}), body, NOW), 0,
                "hmac: with timestamp (ts.body)");
        is_int(run(&c, H({"X-Sig", st}), body, NOW), KNOCK_VERIFY_E_MISSING,
                "hmac: missing timestamp header");
        is_int(run(&c, H({"X-Sig", st}, {"X-Ts", TS}), body, NOW + 300000), 0,
                "hmac: default 300 s boundary");
        is_int(run(&c, H({"X-Sig", st}, {"X-Ts", TS}), body, NOW + 301000), KNOCK_VERIFY_E_EXPIRED,
                "hmac: boundary + 1 s");
        is_int(run(&c, H({"X-Sig", st}, {"X-Ts", TS}), body, NOW - 301000), KNOCK_VERIFY_E_FUTURE,
                "hmac: future + 1 s");
        c.tolerance_ms = 60000;
        is_int(run(&c, H({"X-Sig", st}, {"X-Ts", TS}), body, NOW + 60000), 0,
                "hmac: configured boundary");
        is_int(run(&c, H({"X-Sig", st}, {"X-Ts", TS}), body, NOW + 61000), KNOCK_VERIFY_E_EXPIRED,
                "hmac: configured + 1 s");
        verify_config_clear(&c);
}

static void test_credentials(void)
{
        knock_verify_config c = cfg_new(KNOCK_PROVIDER_TOKEN, "tok-123", "tok-456");
        const char *body = "{}";

        is_int(run(&c, H({"x-knock-token", "tok-123"}), body, NOW), 0, "token: default header");
        is_int(run(&c, H({"X-Knock-Token", "tok-456"}), body, NOW), 0, "token: rotation");
        is_int(run(&c, H({"X-Knock-Token", "tok-12"}), body, NOW), KNOCK_VERIFY_E_MISMATCH,
                "token: prefix of secret rejected");
        is_int(run(&c, H({"X-Knock-Token", "tok-1234"}), body, NOW), KNOCK_VERIFY_E_MISMATCH,
                "token: extension rejected");
        is_int(run(&c, NOH, body, NOW), KNOCK_VERIFY_E_MISSING, "token: missing");
        is_int(run(&c, H({"X-Knock-Token", "tok-123"}, {"X-Knock-Token", "tok-123"}), body, NOW),
                KNOCK_VERIFY_E_MALFORMED, "token: duplicated");
        c.header = strdup("X-Api-Key");
        is_int(run(&c, H({"X-Knock-Token", "tok-123"}), body, NOW), KNOCK_VERIFY_E_MISSING,
                "token: custom header required");
        is_int(run(&c, H({"X-Api-Key", "tok-123"}), body, NOW), 0, "token: custom header");
        verify_config_clear(&c);

        c = cfg_new(KNOCK_PROVIDER_BASIC, "user:pa ss", NULL);
        is_int(run(&c,
                       H({"Authorization",
                               fmt("Basic %s", to_b64((const unsigned char *)"user:pa ss", 10))}),
                       body, NOW),
                0, "basic: valid");
        is_int(run(&c,
                       H({"Authorization",
                               fmt("basic  %s", to_b64((const unsigned char *)"user:pa ss", 10))}),
                       body, NOW),
                0, "basic: scheme case-insensitive");
        is_int(run(&c,
                       H({"Authorization",
                               fmt("Basic %s", to_b64((const unsigned char *)"user:pass", 9))}),
                       body, NOW),
                KNOCK_VERIFY_E_MISMATCH, "basic: wrong password");
        is_int(run(&c, H({"Authorization", "Basic %%%"}), body, NOW), KNOCK_VERIFY_E_MALFORMED,
                "basic: bad base64");
        is_int(run(&c, H({"Authorization", "Bearer user:pa ss"}), body, NOW),
                KNOCK_VERIFY_E_MALFORMED, "basic: other scheme");
        is_int(run(&c, NOH, body, NOW), KNOCK_VERIFY_E_MISSING, "basic: missing");
        verify_config_clear(&c);

        c = cfg_new(KNOCK_PROVIDER_BEARER, "sekrit", NULL);
        is_int(run(&c, H({"Authorization", "Bearer sekrit"}), body, NOW), 0, "bearer: valid");
        is_int(run(&c, H({"Authorization", "bearer sekrit"}), body, NOW), 0,
                "bearer: scheme case-insensitive");
        is_int(run(&c, H({"Authorization", "Bearer sekri"}), body, NOW), KNOCK_VERIFY_E_MISMATCH,
                "bearer: wrong");
        is_int(run(&c, H({"Authorization", "Bearersekrit"}), body, NOW), KNOCK_VERIFY_E_MALFORMED,
                "bearer: no space");
        is_int(run(&c, H({"Authorization", "Bearer sekrit"}, {"authorization", "Bearer sekrit"}),
                       body, NOW),
                KNOCK_VERIFY_E_MALFORMED, "bearer: duplicated Authorization");
        verify_config_clear(&c);

        c = cfg_new(KNOCK_PROVIDER_POSTMARK, "pm:hook", NULL);
        const char *pm =
                "{\"RecordType\":\"Bounce\",\"ID\":4323372036854775807,\"MessageID\":\"m-1\"}";
        is_int(run(&c,
                       H({"Authorization",
                               fmt("Basic %s", to_b64((const unsigned char *)"pm:hook", 7))}),
                       pm, NOW),
                0, "postmark: basic auth");
        is_str(res.event_type, "Bounce", "postmark: type RecordType");
        ok(!res.provider_event_id, "postmark: no dedupe by default (ids name the message/bounce)");
        is_int(run(&c,
                       H({"Authorization",
                               fmt("Basic %s", to_b64((const unsigned char *)"pm:nope", 7))}),
                       pm, NOW),
                KNOCK_VERIFY_E_MISMATCH, "postmark: wrong credentials");
        verify_config_clear(&c);

        c = cfg_new(KNOCK_PROVIDER_GITLAB, "gl-token", NULL);
        is_int(run(&c,
                       H({"X-Gitlab-Token", "gl-token"}, {"X-Gitlab-Event", "Push Hook"},
                               {"X-Gitlab-Event-UUID", "uuid-1"}),
                       "{}", NOW),
                0, "gitlab: valid");
        is_str(res.provider_event_id, "uuid-1", "gitlab: dedupe Event-UUID");
        is_str(res.event_type, "Push Hook", "gitlab: type X-Gitlab-Event");
        is_int(run(&c, H({"X-Gitlab-Token", "gl-tokem"}, {"X-Gitlab-Event", "Push Hook"}), "{}",
                       NOW),
                KNOCK_VERIFY_E_MISMATCH, "gitlab: wrong token");
        is_str(res.event_type, "Push Hook", "gitlab: rejected keeps type");
        is_int(run(&c, H({"X-Knock-Token", "gl-token"}), "{}", NOW), KNOCK_VERIFY_E_MISSING,
                "gitlab: its own header");
        verify_config_clear(&c);
}

static void test_overrides(void)
{
        knock_verify_config c = cfg_new(KNOCK_PROVIDER_TOKEN, "t", NULL);
        const char *body = "{\"a/b\":{\"~k\":[\"zero\",{\"id\":7}]},\"s\":\"\"}";

        c.dedupe = strdup("json:/a~1b/~0k/1/id");
        c.type = strdup("json:/a~1b/~0k/0");
        is_int(run(&c, H({"X-Knock-Token", "t"}), body, NOW), 0, "overrides: valid");
        is_str(res.provider_event_id, "7",
                "overrides: pointer with escapes and index, integer as text");
        is_str(res.event_type, "zero", "overrides: array element");
        free(c.dedupe);
        c.dedupe = strdup("json:/a~1b/~0k/01/id");
        free(c.type);
        c.type = strdup("json:/s");
        run(&c, H({"X-Knock-Token", "t"}), body, NOW);
        ok(!res.provider_event_id, "overrides: leading-zero index is not an index");
        ok(!res.event_type, "overrides: empty string is no type");
        free(c.dedupe);
        c.dedupe = strdup("header:X-Delivery");
        run(&c, H({"X-Knock-Token", "t"}, {"x-delivery", "d-9"}), "not json", NOW);
        is_str(res.provider_event_id, "d-9", "overrides: header source");
        ok(!res.event_type, "overrides: non-JSON body yields no type");
        verify_config_clear(&c);

        /* An override replaces the provider's default. */
        c = cfg_new(KNOCK_PROVIDER_STRIPE, "s", NULL);
        c.dedupe = strdup("header:Idempotency-Key");
        run(&c, H({"Idempotency-Key", "ik"}), "{\"id\":\"evt\"}", NOW);
        is_str(res.provider_event_id, "ik", "overrides: replace stripe's body id");
        verify_config_clear(&c);
}

static void test_twilio(void)
{
        const char *token = "tw-token";
        const char *body = "MessageSid=SM1&MessageStatus=delivered&To=%2B15550001&Tag=b&Tag=a";
        /* sorted: MessageSid, MessageStatus, Tag(a), Tag(b), To */
        const char *params = "MessageSidSM1MessageStatusdeliveredTagaTagbTo+15550001";
        knock_verify_config c = cfg_new(KNOCK_PROVIDER_TWILIO, token, NULL);
        c.url = strdup("https://example.com/twilio");

        char *sig =
                hmac_b64("SHA1", token, strlen(token), fmt("https://example.com/twilio%s", params));
        is_int(run_m(&c, "POST", "/",
                       H({"X-Twilio-Signature", sig}, {"I-Twilio-Idempotency-Token", "idem-1"}),
                       body, NOW),
                0, "twilio: form params sorted, repeated names by value");
        is_str(res.provider_event_id, "idem-1", "twilio: dedupe idempotency token");
        is_str(res.event_type, "delivered", "twilio: type MessageStatus");
        is_int(run_m(&c, "POST", "/", H({"X-Twilio-Signature", sig}),
                       "MessageSid=SM1&MessageStatus=failed", NOW),
                KNOCK_VERIFY_E_MISMATCH, "twilio: tampered");
        is_str(res.event_type, "failed", "twilio: rejected keeps the claimed status");
        is_int(run_m(&c, "POST", "/", H({"X-Twilio-Signature", sig}), "a=%zz", NOW),
                KNOCK_VERIFY_E_MALFORMED, "twilio: bad percent-encoding is malformed");
        is_int(run_m(&c, "POST", "/", H({"X-Twilio-Signature", sig}), "a=b%2", NOW),
                KNOCK_VERIFY_E_MALFORMED, "twilio: truncated percent-encoding is malformed");
        is_int(run_m(&c, "POST", "/", H({"X-Twilio-Signature", sig}), "a=b%00c", NOW),
                KNOCK_VERIFY_E_MALFORMED, "twilio: an escaped NUL byte is malformed");
        /* Decoding: '+' is a space (also next to escapes), %XX a byte (UTF-8 kept), a
         * name without '=' has an empty value, empty segments are skipped. */
        const char *dec_body = "Body=Hi+there%21+%F0%9F%98%80++&&Flag&Name=a%2Bb%2b+&";
        char *dec_sig = hmac_b64("SHA1", token, strlen(token),
                "https://example.com/twilioBodyHi there! \xF0\x9F\x98\x80  FlagNamea+b+ ");
        is_int(run_m(&c, "POST", "/", H({"X-Twilio-Signature", dec_sig}), dec_body, NOW), 0,
                "twilio: form decoding of '+', percent escapes, a bare name and empty segments");
        /* A body of empty segments only ("&", found by fuzz-verify: the empty list was
         * sorted from a NULL pointer) signs the URL alone. */
        char *url_sig = hmac_b64("SHA1", token, strlen(token), "https://example.com/twilio");
        is_int(run_m(&c, "POST", "/", H({"X-Twilio-Signature", url_sig}), "&", NOW), 0,
                "twilio: a form body of only '&' has no params");
        is_int(run_m(&c, "POST", "/", H({"X-Twilio-Signature", url_sig}), "&&", NOW), 0,
                "twilio: '&&' has none either");
        /* The default-port rule, both ways. */
        char *with_port = hmac_b64(
                "SHA1", token, strlen(token), fmt("https://example.com:443/twilio%s", params));
        is_int(run_m(&c, "POST", "/", H({"X-Twilio-Signature", with_port}), body, NOW), 0,
                "twilio: signed with :443, configured without");
        free(c.url);
        c.url = strdup("https://example.com:443/twilio");
        is_int(run_m(&c, "POST", "/", H({"X-Twilio-Signature", sig}), body, NOW), 0,
                "twilio: signed without port, configured with :443");
        free(c.url);
        c.url = strdup("https://example.com/twilio");
        char *other_port = hmac_b64(
                "SHA1", token, strlen(token), fmt("https://example.com:8443/twilio%s", params));
        is_int(run_m(&c, "POST", "/", H({"X-Twilio-Signature", other_port}), body, NOW),
                KNOCK_VERIFY_E_MISMATCH,
                "twilio: only the default port is added (a signature over :8443 does not match)");
        c.url[8] = 'X';
        is_int(run_m(&c, "POST", "/", H({"X-Twilio-Signature", sig}), body, NOW),
                KNOCK_VERIFY_E_MISMATCH, "twilio: the host is signed");
        c.url[8] = 'e';
        /* JSON body: bodySHA256 in the query. */
        {
                const char *json = "{\"status\":\"ok\"}";
                unsigned char h[32];
                EVP_Digest(json, strlen(json), h, NULL, EVP_sha256(), NULL);
                char *uri = fmt("/twilio?bodySHA256=%s", to_hex(h, 32));
                char *js = hmac_b64("SHA1", token, strlen(token),
                        fmt("https://example.com/twilio?bodySHA256=%s", to_hex(h, 32)));
                is_int(run_m(&c, "POST", uri, H({"X-Twilio-Signature", js}), json, NOW), 0,
                        "twilio: JSON body with bodySHA256");
                is_int(run_m(&c, "POST", uri, H({"X-Twilio-Signature", js}), "{\"status\":\"no\"}",
                               NOW),
                        KNOCK_VERIFY_E_MISMATCH, "twilio: JSON body not matching bodySHA256");
                is_str(res.reason, "bodySHA256 does not match body", "twilio: reason");
        }
        free(c.url);
        c.url = NULL;
        is_int(run_m(&c, "POST", "/", H({"X-Twilio-Signature", sig}), body, NOW),
                KNOCK_VERIFY_E_MISMATCH, "twilio: no url option fails closed");
        verify_config_clear(&c);
}

static void test_ts_hex_family(void)
{
        /* paddle: ts:body, several h1, 5 s, past only */
        const char *body = "{\"event_id\":\"evt_01\",\"event_type\":\"transaction.paid\"}";
        knock_verify_config c = cfg_new(KNOCK_PROVIDER_PADDLE, "pdl_ntfset_x", NULL);
        char *h1 = hmac_hex("SHA256", "pdl_ntfset_x", fmt("%s:%s", TS, body));
        char *bad = hmac_hex("SHA256", "other", fmt("%s:%s", TS, body));
        const knock_header *h =
                (const knock_header[]){{"Paddle-Signature", fmt("ts=%s;h1=%s;h1=%s", TS, bad, h1)}};

        is_int(run(&c, h, 1, body, NOW), 0, "paddle: any h1 may match");
        is_str(res.provider_event_id, "evt_01", "paddle: dedupe event_id");
        is_str(res.event_type, "transaction.paid", "paddle: type event_type");
        is_int(run(&c, h, 1, body, NOW + 5000), 0, "paddle: 5 s boundary accepted");
        is_int(run(&c, h, 1, body, NOW + 5001), KNOCK_VERIFY_E_EXPIRED,
                "paddle: boundary + 1 ms expired");
        is_int(run(&c, h, 1, body, NOW + 6000), KNOCK_VERIFY_E_EXPIRED,
                "paddle: boundary + 1 s expired");
        is_int(run(&c, H({"Paddle-Signature", fmt("ts=%s;h1=%s", TS, bad)}), body, NOW),
                KNOCK_VERIFY_E_MISMATCH, "paddle: wrong secret");
        is_int(run(&c, H({"Paddle-Signature", fmt("h1=%s", h1)}), body, NOW),
                KNOCK_VERIFY_E_MALFORMED, "paddle: no ts");
        is_int(run(&c, H({"Paddle-Signature", fmt("ts=%s,h1=%s", TS, h1)}), body, NOW),
                KNOCK_VERIFY_E_MALFORMED, "paddle: wrong separator");
        verify_config_clear(&c);

        /* linear: body HMAC, timestamp inside the body in ms, ±60 s */
        const char *lb = "{\"action\":\"create\",\"type\":\"Issue\",\"data\":{\"id\":\"iss\"},"
                         "\"webhookTimestamp\":" TS_MS "}";
        c = cfg_new(KNOCK_PROVIDER_LINEAR, "lin_wh", NULL);
        char *ls = hmac_hex("SHA256", "lin_wh", lb);
        is_int(run(&c, H({"Linear-Signature", ls}, {"Linear-Delivery", "dlv-1"}), lb, NOW), 0,
                "linear: valid");
        is_str(res.provider_event_id, "dlv-1", "linear: dedupe Linear-Delivery (not the issue id)");
        is_str(res.event_type, "Issue.create", "linear: type plus action");
        is_int(run(&c, H({"Linear-Signature", ls}), lb, NOW + 60000), 0,
                "linear: 60 s boundary accepted");
        is_int(run(&c, H({"Linear-Signature", ls}), lb, NOW + 60001), KNOCK_VERIFY_E_EXPIRED,
                "linear: boundary + 1 ms expired");
        is_int(run(&c, H({"Linear-Signature", ls}), lb, NOW - 61000), KNOCK_VERIFY_E_FUTURE,
                "linear: future + 1 s");
        const char *nots = "{\"type\":\"Issue\"}";
        is_int(run(&c, H({"Linear-Signature", hmac_hex("SHA256", "lin_wh", nots)}), nots, NOW),
                KNOCK_VERIFY_E_MISSING, "linear: no webhookTimestamp");
        is_int(run(&c, H({"Linear-Signature", ls}), nots, NOW), KNOCK_VERIFY_E_MISMATCH,
                "linear: tampered");
        verify_config_clear(&c);

        /* lemonsqueezy, intercom, meta: body HMACs with their own header shapes */
        const char *lsb = "{\"meta\":{\"event_name\":\"order_created\"},\"data\":{\"id\":\"1\"}}";
        c = cfg_new(KNOCK_PROVIDER_LEMONSQUEEZY, "lsq", NULL);
        is_int(run(&c, H({"X-Signature", hmac_hex("SHA256", "lsq", lsb)}), lsb, NOW), 0,
                "lemonsqueezy: valid");
        is_str(res.event_type, "order_created", "lemonsqueezy: type from meta.event_name");
        ok(!res.provider_event_id, "lemonsqueezy: no dedupe by default");
        is_int(run(&c,
                       H({"X-Signature", hmac_hex("SHA256", "lsq", lsb)},
                               {"X-Event-Name", "order_refunded"}),
                       lsb, NOW),
                0, "lemonsqueezy: with X-Event-Name");
        is_str(res.event_type, "order_refunded", "lemonsqueezy: X-Event-Name first");
        is_int(run(&c, H({"X-Signature", hmac_hex("SHA256", "lsq2", lsb)}), lsb, NOW),
                KNOCK_VERIFY_E_MISMATCH, "lemonsqueezy: wrong secret");
        verify_config_clear(&c);

        const char *ib = "{\"type\":\"notification_event\",\"id\":\"notif_1\",\"topic\":"
                         "\"conversation.user.created\"}";
        c = cfg_new(KNOCK_PROVIDER_INTERCOM, "ic", NULL);
        is_int(run(&c, H({"X-Hub-Signature", fmt("sha1=%s", hmac_hex("SHA1", "ic", ib))}), ib, NOW),
                0, "intercom: sha1");
        is_str(res.provider_event_id, "notif_1", "intercom: dedupe notification id");
        is_str(res.event_type, "conversation.user.created", "intercom: type topic");
        is_int(run(&c, H({"X-Hub-Signature", fmt("sha1=%s", hmac_hex("SHA256", "ic", ib))}), ib,
                       NOW),
                KNOCK_VERIFY_E_MISMATCH, "intercom: a SHA-256 MAC in the sha1= header is rejected");
        verify_config_clear(&c);
}

static void test_meta(void)
{
        const char *body = "{\"object\":\"page\",\"entry\":[{\"id\":\"1\"}]}";
        knock_verify_config c = cfg_new(KNOCK_PROVIDER_META, "app-secret", NULL);

        is_int(run(&c,
                       H({"X-Hub-Signature-256",
                               fmt("sha256=%s", hmac_hex("SHA256", "app-secret", body))}),
                       body, NOW),
                0, "meta: POST valid");
        is_str(res.event_type, "page", "meta: type object");
        ok(!res.handshake, "meta: POST is not a handshake");
        is_int(run(&c,
                       H({"X-Hub-Signature-256",
                               fmt("sha256=%s", hmac_hex("SHA256", "other", body))}),
                       body, NOW),
                KNOCK_VERIFY_E_MISMATCH, "meta: POST wrong secret");

        const char *uri =
                "/hook?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=my%20token";
        is_int(run_m(&c, "GET", uri, NOH, NULL, NOW), KNOCK_VERIFY_E_MISMATCH,
                "meta: GET without verify_token option fails");
        ok(!res.handshake, "meta: no handshake then");
        c.verify_token = strdup("my token");
        is_int(run_m(&c, "GET", uri, NOH, NULL, NOW), 0, "meta: GET with matching verify_token");
        ok(res.handshake, "meta: GET is a handshake");
        is_int(res.handshake_status, 200, "meta: status 200");
        is_str(res.handshake_body, "1158201444", "meta: challenge echoed");
        is_int(run_m(&c, "GET",
                       "/hook?hub.mode=subscribe&hub.challenge=1&hub.verify_token=my%20tokem", NOH,
                       NULL, NOW),
                KNOCK_VERIFY_E_MISMATCH, "meta: wrong verify_token");
        ok(!res.handshake && !res.handshake_body, "meta: no handshake for a wrong token");
        is_int(run_m(&c, "GET", "/hook?hub.mode=subscribe&hub.verify_token=my%20token", NOH, NULL,
                       NOW),
                KNOCK_VERIFY_E_MISSING, "meta: no challenge");
        is_int(run_m(&c, "GET",
                       "/hook?hub.mode=unsubscribe&hub.challenge=1&hub.verify_token=my%20token",
                       NOH, NULL, NOW),
                KNOCK_VERIFY_E_MALFORMED, "meta: other mode");
        verify_config_clear(&c);
}

static void test_zendesk_hubspot(void)
{
        const char *zts = "2023-11-14T22:13:20Z"; /* == TS */
        const char *body = "{\"type\":\"zen:event-type:ticket.created\",\"id\":\"e-1\",\"detail\":{"
                           "\"id\":\"35\"}}";
        knock_verify_config c = cfg_new(KNOCK_PROVIDER_ZENDESK, "dGhpc19zZWNyZXQ=", NULL);
        char *zs = hmac_b64("SHA256", "dGhpc19zZWNyZXQ=", 16, fmt("%s%s", zts, body));

#define ZD(ts)                                                                                     \
        H({"X-Zendesk-Webhook-Signature", zs}, {"X-Zendesk-Webhook-Signature-Timestamp", ts},      \
                {"X-Zendesk-Webhook-Invocation-Id", "inv-1"})
        is_int(run(&c, ZD(zts), body, NOW), 0, "zendesk: valid (ts + body, secret as written)");
        is_str(res.provider_event_id, "inv-1", "zendesk: dedupe invocation id");
        is_str(res.event_type, "zen:event-type:ticket.created", "zendesk: type");
        is_int(run(&c, ZD(zts), body, NOW + 300000), 0, "zendesk: boundary");
        is_int(run(&c, ZD(zts), body, NOW + 301000), KNOCK_VERIFY_E_EXPIRED,
                "zendesk: boundary + 1 s");
        is_int(run(&c, ZD(zts), body, NOW - 301000), KNOCK_VERIFY_E_FUTURE,
                "zendesk: future + 1 s");
        is_int(run(&c, ZD(TS), body, NOW), KNOCK_VERIFY_E_MALFORMED,
                "zendesk: unix timestamp is malformed");
        is_int(run(&c, ZD("2023-11-14 22:13:20Z"), body, NOW), KNOCK_VERIFY_E_MALFORMED,
                "zendesk: not ISO 8601");
        is_int(run(&c, ZD("2023-11-14T22:13:21Z"), body, NOW), KNOCK_VERIFY_E_MISMATCH,
                "zendesk: other timestamp");
        is_int(run(&c, ZD(zts), "{}", NOW), KNOCK_VERIFY_E_MISMATCH, "zendesk: tampered");
        is_int(run(&c, ZD("2023-11-14T22:13:20.500Z"), body, NOW), KNOCK_VERIFY_E_MISMATCH,
                "zendesk: fractional seconds parse (then the signature decides)");
        is_int(run(&c, ZD("2023-11-14T22:13:20+00:00"), body, NOW), KNOCK_VERIFY_E_MALFORMED,
                "zendesk: offsets refused");
        is_int(run(&c, ZD("2023-02-29T22:13:20Z"), body, NOW), KNOCK_VERIFY_E_MALFORMED,
                "zendesk: no Feb 29 in 2023");
        is_int(run(&c, ZD("2023-11-14T24:00:00Z"), body, NOW), KNOCK_VERIFY_E_MALFORMED,
                "zendesk: hour 24 refused");
        is_int(run(&c, ZD("2024-02-29T22:13:20Z"), body, NOW), KNOCK_VERIFY_E_FUTURE,
                "zendesk: Feb 29 2024 parses (and is months ahead)");
        is_int(run(&c, ZD(zts), body, NOW + 300000), 0,
                "zendesk: date arithmetic matches the epoch");
#undef ZD
        verify_config_clear(&c);

        const char *hb =
                "[{\"eventId\":100,\"subscriptionType\":\"contact.creation\",\"objectId\":5}]";
        c = cfg_new(KNOCK_PROVIDER_HUBSPOT, "hs-client-secret", NULL);
        c.url = strdup("https://example.com/hubspot");
        /* The signed URI has %3A etc. decoded; the request carries them encoded. */
        char *hsig = hmac_b64("SHA256", "hs-client-secret", 16,
                fmt("POSThttps://example.com/hubspot?x=a:b@c%%20d%s%s", hb, TS_MS));
        const char *uri = "/hubspot?x=a%3Ab%40c%20d";
#define HS H({"X-HubSpot-Signature-v3", hsig}, {"X-HubSpot-Request-Timestamp", TS_MS})
        is_int(run_m(&c, "POST", uri, HS, hb, NOW), 0,
                "hubspot: valid (method url body ts, URI decoding)");
        is_str(res.provider_event_id, "100", "hubspot: dedupe first eventId");
        is_str(res.event_type, "contact.creation", "hubspot: type first subscriptionType");
        is_int(run_m(&c, "POST", uri, HS, hb, NOW + 300000), 0, "hubspot: boundary (ms timestamp)");
        is_int(run_m(&c, "POST", uri, HS, hb, NOW + 300001), KNOCK_VERIFY_E_EXPIRED,
                "hubspot: boundary + 1 ms");
        is_int(run_m(&c, "POST", uri, HS, hb, NOW + 301000), KNOCK_VERIFY_E_EXPIRED,
                "hubspot: boundary + 1 s");
        is_int(run_m(&c, "PUT", uri, HS, hb, NOW), KNOCK_VERIFY_E_MISMATCH,
                "hubspot: method is signed");
        is_int(run_m(&c, "POST", "/hubspot?x=other", HS, hb, NOW), KNOCK_VERIFY_E_MISMATCH,
                "hubspot: query is signed");
        is_int(run_m(&c, "POST", uri, H({"X-HubSpot-Signature-v3", hsig}), hb, NOW),
                KNOCK_VERIFY_E_MISSING, "hubspot: missing timestamp");
#undef HS
        verify_config_clear(&c);
}

static void test_asymmetric(void)
{
        /* sendgrid: ECDSA P-256 over ts + body; key as base64 DER or PEM */
        EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
        EVP_PKEY *ec2 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
        EVP_PKEY *p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
        unsigned char *der = NULL;
        int dl = i2d_PUBKEY(ec, &der);
        char *b64der = fmt("%s", to_b64(der, (size_t)dl));
        BIO *bio = BIO_new(BIO_s_mem());
        char *pem, *pp;
        long pl;
        knock_secret sk;

        OPENSSL_free(der);
        PEM_write_bio_PUBKEY(bio, ec);
        pl = BIO_get_mem_data(bio, &pp);
        pem = fmt("%.*s", (int)pl, pp);
        BIO_free(bio);

        const char *body = "[{\"email\":\"a@example.com\",\"event\":\"delivered\",\"sg_event_id\":"
                           "\"sg-1\",\"sg_message_id\":\"m\"}]";
        char *sig = ecdsa_sig_b64(ec, fmt("%s%s", TS, body));
        char *sig_other = ecdsa_sig_b64(ec2, fmt("%s%s", TS, body));
#define SG(s)                                                                                      \
        H({"X-Twilio-Email-Event-Webhook-Signature", s},                                           \
                {"X-Twilio-Email-Event-Webhook-Timestamp", TS})
        knock_verify_config c = cfg_new(KNOCK_PROVIDER_SENDGRID, b64der, NULL);
        is_int(c.secrets[0].kind, KNOCK_KEY_ECDSA_P256, "sendgrid: base64 DER key accepted");
        is_int(run(&c, SG(sig), body, NOW), 0, "sendgrid: valid");
        is_str(res.provider_event_id, "sg-1",
                "sendgrid: dedupe first sg_event_id (not the message id)");
        is_str(res.event_type, "delivered", "sendgrid: type first event");
        is_int(run(&c, SG(sig), "[]", NOW), KNOCK_VERIFY_E_MISMATCH, "sendgrid: tampered");
        is_int(run(&c, SG(sig_other), body, NOW), KNOCK_VERIFY_E_MISMATCH, "sendgrid: other key");
        is_int(run(&c, SG(sig), body, NOW + 300000), 0, "sendgrid: boundary");
        is_int(run(&c, SG(sig), body, NOW + 301000), KNOCK_VERIFY_E_EXPIRED,
                "sendgrid: boundary + 1 s");
        is_int(run(&c, SG(sig), body, NOW - 301000), KNOCK_VERIFY_E_FUTURE,
                "sendgrid: future + 1 s");
        is_int(run(&c, SG("###"), body, NOW), KNOCK_VERIFY_E_MALFORMED,
                "sendgrid: malformed signature");
        verify_config_clear(&c);
        c = cfg_new(KNOCK_PROVIDER_SENDGRID, pem, b64der);
        is_int(run(&c, SG(sig), body, NOW), 0, "sendgrid: PEM key (and rotation)");
        verify_config_clear(&c);
        {
                unsigned char *d = NULL;
                int n = i2d_PUBKEY(p384, &d);
                is_int(verify_secret_from_text(KNOCK_PROVIDER_SENDGRID, to_b64(d, (size_t)n), &sk),
                        -EINVAL, "sendgrid: a P-384 key is refused");
                OPENSSL_free(d);
        }
        is_int(verify_secret_from_text(KNOCK_PROVIDER_SENDGRID, "bm90IGEga2V5", &sk), -EINVAL,
                "sendgrid: base64 that is not a key is refused");
#undef SG

        /* discord: Ed25519 hex over ts + body; PING → PONG */
        EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
        unsigned char pub[32];
        size_t publ = sizeof(pub);
        EVP_PKEY_get_raw_public_key(ed, pub, &publ);
        const char *ping = "{\"id\":\"int-1\",\"type\":1,\"application_id\":\"app\"}";
        const char *cmd = "{\"id\":\"int-2\",\"type\":2,\"data\":{\"name\":\"hi\"}}";
        char *ps = ed25519_sig(ed, fmt("%s%s", TS, ping), true);
        char *cs = ed25519_sig(ed, fmt("%s%s", TS, cmd), true);
#define DC(s) H({"X-Signature-Ed25519", s}, {"X-Signature-Timestamp", TS})
        c = cfg_new(KNOCK_PROVIDER_DISCORD, to_hex(pub, 32), NULL);
        is_int(run(&c, DC(cs), cmd, NOW), 0, "discord: valid interaction");
        is_str(res.provider_event_id, "int-2", "discord: dedupe interaction id");
        is_str(res.event_type, "2", "discord: type");
        ok(!res.handshake, "discord: a command is not a handshake");
        is_int(run(&c, DC(ps), ping, NOW), 0, "discord: PING verifies");
        ok(res.handshake, "discord: PING is a handshake");
        is_str(res.handshake_body, "{\"type\":1}", "discord: PONG body");
        is_str(res.handshake_content_type, "application/json", "discord: PONG content type");
        is_int(run(&c, DC(cs), ping, NOW), KNOCK_VERIFY_E_MISMATCH,
                "discord: unsigned PING rejected");
        ok(!res.handshake, "discord: no PONG before verification");
        is_int(run(&c, DC(ps), ping, NOW + 300000), 0, "discord: boundary");
        is_int(run(&c, DC(ps), ping, NOW + 301000), KNOCK_VERIFY_E_EXPIRED,
                "discord: boundary + 1 s (knock's check)");
        is_int(run(&c, DC(ps), ping, NOW - 301000), KNOCK_VERIFY_E_FUTURE, "discord: future + 1 s");
        is_int(run(&c, DC("abc"), ping, NOW), KNOCK_VERIFY_E_MALFORMED,
                "discord: odd hex malformed");
        ok(c.secrets[0].pkey != NULL, "discord: the key is parsed once, with the secret");
        EVP_PKEY_free(c.secrets[0].pkey);
        c.secrets[0].pkey = NULL;
        is_int(run(&c, DC(cs), cmd, NOW), 0,
                "discord: a hand-built secret (no parsed key) verifies too");
        is_int(run(&c, DC(fmt("%.126s", ps)), ping, NOW), KNOCK_VERIFY_E_MISMATCH,
                "discord: short signature rejected");
        verify_config_clear(&c);
        is_int(verify_secret_from_text(KNOCK_PROVIDER_DISCORD, "abcd", &sk), -EINVAL,
                "discord: short key refused");
        is_int(verify_secret_from_text(KNOCK_PROVIDER_DISCORD, fmt("%sxy", to_hex(pub, 31)), &sk),
                -EINVAL, "discord: non-hex key refused");
#undef DC

        /* resend and clerk are Svix: svix-* headers, whsec_ decoded, svix-id dedupe */
        const char *rb = "{\"type\":\"email.delivered\",\"data\":{\"email_id\":\"em_1\"}}";
        unsigned char key[32];
        /* "secret-key-for-resend": 21 bytes, 28 base64 characters without padding */
        int kl = EVP_DecodeBlock(key, (const unsigned char *)"c2VjcmV0LWtleS1mb3ItcmVzZW5k", 28);
        char *rs = hmac_b64("SHA256", key, (size_t)kl, fmt("msg_r.%s.%s", TS, rb));
        for (int p = KNOCK_PROVIDER_RESEND; p <= KNOCK_PROVIDER_CLERK; p++) {
                c = cfg_new((knock_provider)p, "whsec_c2VjcmV0LWtleS1mb3ItcmVzZW5k", NULL);
                is_int(run(&c,
                               H({"svix-id", "msg_r"}, {"svix-timestamp", TS},
                                       {"svix-signature", fmt("v1,%s", rs)}),
                               rb, NOW),
                        0, "%s: valid", provider_to_string(p));
                is_str(res.provider_event_id, "msg_r", "%s: dedupe svix-id (not the email id)",
                        provider_to_string(p));
                is_str(res.event_type, "email.delivered", "%s: type", provider_to_string(p));
                is_int(run(&c,
                               H({"svix-id", "msg_r"}, {"svix-timestamp", TS},
                                       {"svix-signature", fmt("v1,%s", rs)}),
                               rb, NOW + 301000),
                        KNOCK_VERIFY_E_EXPIRED, "%s: expired", provider_to_string(p));
                verify_config_clear(&c);
        }

        EVP_PKEY_free(ec);
        EVP_PKEY_free(ec2);
        EVP_PKEY_free(p384);
        EVP_PKEY_free(ed);
}

/* The body scanner (verify.c) against jansson as the oracle: for every body and pointer,
 * the dedupe id verify_request() reports equals what a jansson DOM lookup gives. */
static char *oracle(const char *body, const char *ptr)
{
        json_t *root = json_loads(body, 0, NULL), *cur = root;
        char tok[64], *out = NULL;

        while (cur && *ptr == '/') {
                size_t n = 0;
                for (ptr++; *ptr && *ptr != '/'; ptr++) {
                        char ch = *ptr;
                        if (ch == '~') {
                                ch = ptr[1] == '1' ? '/' : '~';
                                ptr++;
                        }
                        tok[n++] = ch;
                }
                tok[n] = 0;
                if (json_is_object(cur))
                        cur = json_object_get(cur, tok);
                else if (json_is_array(cur) && n > 0 && strspn(tok, "0123456789") == n &&
                         (n == 1 || tok[0] != '0'))
                        cur = json_array_get(cur, strtoul(tok, NULL, 10));
                else
                        cur = NULL;
        }
        if (json_is_string(cur) && json_string_length(cur) > 0)
                out = strdup(json_string_value(cur));
        else if (json_is_integer(cur) &&
                 asprintf(&out, "%" JSON_INTEGER_FORMAT, json_integer_value(cur)) < 0)
                out = NULL;
        json_decref(root);
        return out ? keep(out) : NULL;
}

static void test_json_scanner(void)
{
        static const char *const bodies[] = {
                "{\"id\":\"evt_1\",\"type\":\"a.b\"}",
                "  {\"id\" : \"evt_1\" ,\n\t\"type\":\"a.b\"}  \r\n",
                "{\"data\":{\"object\":{\"id\":\"in_1\"}},\"id\":\"evt_2\"}",
                "[{\"eventId\":100,\"subscriptionType\":\"contact.creation\"},{\"eventId\":101}]",
                "{\"id\":12345678901234567}",
                "{\"id\":-42}",
                "{\"id\":1234567890123456789012}",
                "{\"id\":1.5}",
                "{\"id\":1e3}",
                "{\"id\":true,\"type\":null}",
                "{\"id\":\"caf\\u00e9\",\"type\":\"q\\\"uote\"}",
                "{\"id\":\"\\ud83d\\ude00\"}",
                "{\"id\":\"caf\xc3\xa9\"}",
                "{\"id\":\"bad\xff\"}",
                "{\"id\":\"nul\\u0000x\"}",
                "{\"id\":\"\"}",
                "{\"a/b\":{\"~k\":[\"zero\",{\"id\":7}]}}",
                "{\"id\":\"x\",}",
                "{\"id\":\"x\"} junk",
                "{\"id\":\"x\"",
                "{\"id\":\"tab\there\"}",
                "{\"id\":\"bad\\escape\"}",
                "{\"id\":01}",
                "{\"id\":-}",
                "{\"id\":1.}",
                "\"just a string\"",
                "42",
                "",
                "not json at all",
                "{\"id\":[1,2,{\"x\":\"y\"}],\"type\":{\"deep\":[[[]]]}}",
                "{\"id\":\"evt\",\"type\":tru}",
                "{\"\\u0069d\":\"escaped-key\"}",
        };
        static const char *const ptrs[] = {
                "/id",
                "/type",
                "/data/object/id",
                "/0/eventId",
                "/1/eventId",
                "/0/subscriptionType",
                "/a~1b/~0k/1/id",
                "/a~1b/~0k/0",
                "/id/2/x",
                "/01/eventId",
                "",
        };
        knock_verify_config c = {
                .provider = KNOCK_PROVIDER_NONE, .allow_unverified = true, .tolerance_ms = -1};
        size_t agree = 0, total = 0;

        for (size_t b = 0; b < ELEMENTSOF(bodies); b++)
                for (size_t q = 0; q < ELEMENTSOF(ptrs); q++) {
                        char *want = oracle(bodies[b], ptrs[q]);
                        free(c.dedupe);
                        if (asprintf(&c.dedupe, "json:%s", ptrs[q]) < 0)
                                abort();
                        run(&c, NOH, bodies[b], NOW);
                        total++;
                        if (streq_ptr(res.provider_event_id, want))
                                agree++;
                        else
                                printf("#   body %zu ptr '%s': scanner '%s', jansson '%s'\n", b,
                                        ptrs[q],
                                        res.provider_event_id ? res.provider_event_id : "(null)",
                                        want ? want : "(null)");
                }
        is_int(agree, total, "json scanner agrees with jansson on %zu body/pointer pairs", total);

        /* Where they may differ, knock's rules are explicit: the first duplicate key wins,
         * and nesting deeper than the scanner's bound yields no metadata (still verifies). */
        free(c.dedupe);
        c.dedupe = strdup("json:/id");
        run(&c, NOH, "{\"id\":\"first\",\"id\":\"second\"}", NOW);
        is_str(res.provider_event_id, "first", "json scanner: first duplicate key wins");
        {
                char *deep = keep(malloc(2 * 1000 + 32));
                size_t o = (size_t)sprintf(deep, "{\"id\":\"d\",\"x\":");
                for (int i = 0; i < 1000; i++)
                        deep[o++] = '[';
                for (int i = 0; i < 1000; i++)
                        deep[o++] = ']';
                strcpy(deep + o, "}");
                is_int(run(&c, NOH, deep, NOW), 0, "json scanner: very deep body still accepted");
                ok(!res.provider_event_id, "json scanner: very deep body yields no id");
        }
        /* An id too long to keep is dropped, escaped or not (an escaped one was reported
         * as -ENOMEM, which the ingress takes for a failure of its own). */
        {
                char *body = keep(malloc(600 + 32));
                size_t o = (size_t)sprintf(body, "{\"id\":\"\\u0041");
                memset(body + o, 'a', 600);
                strcpy(body + o + 600, "\"}");
                is_int(run(&c, NOH, body, NOW), 0, "json scanner: a long escaped id verifies");
                ok(!res.provider_event_id, "json scanner: a long escaped id is dropped");
                body[o - 6] = 'a'; /* no escape left: the plain path */
                memset(body + o - 5, 'a', 5);
                is_int(run(&c, NOH, body, NOW), 0, "json scanner: a long plain id verifies");
                ok(!res.provider_event_id, "json scanner: a long plain id is dropped");
                is_int(run(&c, NOH, "{\"id\":\"caf\xc3\xa9\\u0000\"}", NOW), 0,
                        "json scanner: an escaped NUL in an id verifies");
                ok(!res.provider_event_id, "json scanner: an id with a NUL is dropped");
        }
        verify_config_clear(&c);
}

int main(void)
{
        test_names();
        test_none();
        test_stripe();
        test_github();
        test_standard();
        test_shopify();
        test_slack();
        test_hmac();
        test_credentials();
        test_overrides();
        test_twilio();
        test_ts_hex_family();
        test_meta();
        test_zendesk_hubspot();
        test_asymmetric();
        test_json_scanner();

        verify_result_clear(&res);
        for (size_t i = 0; i < n_pool; i++)
                free(pool[i]);
        return tap_done();
}
