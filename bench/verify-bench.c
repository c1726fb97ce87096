/* SPDX-License-Identifier: MIT */
/*
 * verify-bench — verifications per second for every provider, each beside a
 * bare HMAC-SHA256 loop (OpenSSL's one-shot HMAC()) over the same body,
 * measured in the same run, interleaved, median of five rounds.
 *
 * Every request is a correctly signed one (signed here with OpenSSL, not with
 * verify.c) for a receipt-sized body (about 1.5 KB, as in performance.md), and
 * verify_request() runs in full: metadata extraction, signature, tolerance,
 * handshake detection. A request that does not verify aborts the run, so a
 * fast path that rejects everything cannot show up as a figure.
 *
 * Usage: verify-bench [SECONDS-PER-MEASUREMENT] [PROVIDER]   (default 0.2, all)
 * Output: one JSON line per provider:
 *   {"bench":"verify","provider":"stripe","ops":…,"baseline":"hmac-sha256",
 *    "baseline_ops":…,"ratio":…}
 * ratio = ops / baseline_ops; above 0.5 means "costs less than 2× a bare HMAC".
 */

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/x509.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "benchutil.h"
#include "util.h"
#include "verify.h"

#define TS "1700000000"
#define TS_MS "1700000000000"
#define NOW 1700000000000LL

static double opt_seconds = 0.2;

static char *xfmt(const char *f, ...) _printf_(1, 2);
static char *xfmt(const char *f, ...)
{
        va_list ap;
        char *s;

        va_start(ap, f);
        if (vasprintf(&s, f, ap) < 0)
                abort();
        va_end(ap);
        return s;
}

static char *enc(const unsigned char *b, size_t n, bool hex)
{
        char *s = malloc(hex ? 2 * n + 1 : 4 * ((n + 2) / 3) + 1);

        if (!s)
                abort();
        if (hex)
                for (size_t i = 0; i < n; i++)
                        sprintf(s + 2 * i, "%02x", b[i]);
        else
                EVP_EncodeBlock((unsigned char *)s, b, (int)n);
        return s;
}

static char *hmac_enc(const char *md, const void *key, size_t kl, const char *msg, bool hex)
{
        unsigned char m[64];
        unsigned int n = 0;

        HMAC(EVP_get_digestbyname(md), key, (int)kl, (const unsigned char *)msg, strlen(msg), m,
                &n);
        return enc(m, n, hex);
}

static char *pkey_sign(EVP_PKEY *k, const char *msg, bool hex)
{
        unsigned char sig[128];
        size_t n = sizeof(sig);
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        bool ed = EVP_PKEY_is_a(k, "ED25519");

        if (!md || EVP_DigestSignInit(md, NULL, ed ? NULL : EVP_sha256(), NULL, k) != 1 ||
                EVP_DigestSign(md, sig, &n, (const unsigned char *)msg, strlen(msg)) != 1)
                abort();
        EVP_MD_CTX_free(md);
        return enc(sig, n, hex);
}

static double now_s(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct bcase {
        knock_verify_config cfg;
        knock_header h[4];
        size_t nh;
        const char *method, *uri;
        char *body;
        char *owned[8];
        size_t n_owned;
} bcase;

static char *own(bcase *b, char *s)
{
        b->owned[b->n_owned++] = s;
        return s;
}

static double measure_verify(bcase *b)
{
        knock_request req = {
                .method = b->method,
                .uri = b->uri,
                .headers = b->h,
                .n_headers = b->nh,
                .body = (const unsigned char *)b->body,
                .body_len = strlen(b->body),
                .now_ms = NOW,
        };
        knock_verify_result res;
        double start = now_s(), t;
        long n = 0;

        do {
                for (int i = 0; i < 64; i++) {
                        if (verify_request(&b->cfg, &req, &res) != 0) {
                                fprintf(stderr, "%s: does not verify: %s\n",
                                        provider_to_string(b->cfg.provider), res.reason);
                                exit(1);
                        }
                        verify_result_clear(&res);
                }
                n += 64;
                t = now_s() - start;
        } while (t < opt_seconds);
        return (double)n / t;
}

static double measure_hmac(const char *body)
{
        static const char key[] = "bench-secret-0123456789abcdef";
        unsigned char m[32];
        unsigned int ml;
        size_t len = strlen(body);
        double start = now_s(), t;
        long n = 0;

        do {
                for (int i = 0; i < 64; i++)
                        HMAC(EVP_sha256(), key, sizeof(key) - 1, (const unsigned char *)body, len,
                                m, &ml);
                n += 64;
                t = now_s() - start;
        } while (t < opt_seconds);
        return (double)n / t;
}

/* A JSON body of about 1.5 KB: the shape of a Stripe event, with the fields each provider
 * reads for its id and type. */
static char *json_body(const char *head)
{
        char pad[1200];

        memset(pad, 'x', sizeof(pad) - 1);
        pad[sizeof(pad) - 1] = 0;
        return xfmt("%s\"id\":\"evt_1NG8Du2eZvKYlo2CUI79vXWy\",\"type\":\"invoice.paid\","
                    "\"event_id\":\"evt_01h\",\"event_type\":\"transaction.paid\",\"topic\":\"t\","
                    "\"object\":\"page\",\"RecordType\":\"Bounce\",\"action\":\"create\","
                    "\"webhookTimestamp\":" TS_MS ",\"data\":{\"object\":{\"id\":\"in_1\","
                    "\"description\":\"%s\"}}}",
                head, pad);
}

static void setup(bcase *b, knock_provider p, EVP_PKEY *ed, EVP_PKEY *ec)
{
        const char *secret = "bench-secret-0123456789abcdef";
        const char *std_secret = "whsec_YmVuY2gtc2VjcmV0LTAxMjM0NTY3ODlhYmNkZWY=";
        const char *std_key = "bench-secret-0123456789abcdef"; /* its decoding */
        const char *text = secret;
        char *s;

        *b = (bcase){.method = "POST", .uri = "/", .cfg = {.provider = p, .tolerance_ms = -1}};
        b->body = json_body("{");

        switch (p) {
        case KNOCK_PROVIDER_NONE:
                b->cfg.allow_unverified = true;
                break;
        case KNOCK_PROVIDER_STRIPE:
                s = own(b, hmac_enc("SHA256", secret, strlen(secret),
                                   own(b, xfmt(TS ".%s", b->body)), true));
                b->h[b->nh++] =
                        (knock_header){"Stripe-Signature", own(b, xfmt("t=" TS ",v1=%s", s))};
                break;
        case KNOCK_PROVIDER_GITHUB:
        case KNOCK_PROVIDER_META:
                s = own(b, hmac_enc("SHA256", secret, strlen(secret), b->body, true));
                b->h[b->nh++] = (knock_header){"X-Hub-Signature-256", own(b, xfmt("sha256=%s", s))};
                b->h[b->nh++] =
                        (knock_header){"X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"};
                b->h[b->nh++] = (knock_header){"X-GitHub-Event", "issues"};
                break;
        case KNOCK_PROVIDER_STANDARD:
        case KNOCK_PROVIDER_RESEND:
        case KNOCK_PROVIDER_CLERK:
                text = std_secret;
                s = own(b, hmac_enc("SHA256", std_key, strlen(std_key),
                                   own(b, xfmt("msg_1." TS ".%s", b->body)), false));
                b->h[b->nh++] = (knock_header){"webhook-id", "msg_1"};
                b->h[b->nh++] = (knock_header){"webhook-timestamp", TS};
                b->h[b->nh++] = (knock_header){"webhook-signature", own(b, xfmt("v1,%s", s))};
                break;
        case KNOCK_PROVIDER_SHOPIFY:
                b->h[b->nh++] = (knock_header){"X-Shopify-Hmac-Sha256",
                        own(b, hmac_enc("SHA256", secret, strlen(secret), b->body, false))};
                b->h[b->nh++] = (knock_header){"X-Shopify-Event-Id", "ev-1"};
                b->h[b->nh++] = (knock_header){"X-Shopify-Topic", "orders/create"};
                break;
        case KNOCK_PROVIDER_SLACK:
                s = own(b, hmac_enc("SHA256", secret, strlen(secret),
                                   own(b, xfmt("v0:" TS ":%s", b->body)), true));
                b->h[b->nh++] = (knock_header){"X-Slack-Request-Timestamp", TS};
                b->h[b->nh++] = (knock_header){"X-Slack-Signature", own(b, xfmt("v0=%s", s))};
                break;
        case KNOCK_PROVIDER_HMAC:
                b->cfg.header = strdup("X-Signature");
                b->cfg.prefix = strdup("sha256=");
                b->cfg.dedupe = strdup("json:/id");
                b->cfg.type = strdup("json:/type");
                s = own(b, hmac_enc("SHA256", secret, strlen(secret), b->body, true));
                b->h[b->nh++] = (knock_header){"X-Signature", own(b, xfmt("sha256=%s", s))};
                break;
        case KNOCK_PROVIDER_TOKEN:
                b->h[b->nh++] = (knock_header){"X-Knock-Token", secret};
                break;
        case KNOCK_PROVIDER_BASIC:
        case KNOCK_PROVIDER_POSTMARK:
                text = "user:bench-password";
                b->h[b->nh++] = (knock_header){"Authorization",
                        own(b, xfmt("Basic %s", own(b, enc((const unsigned char *)text,
                                                               strlen(text), false))))};
                break;
        case KNOCK_PROVIDER_BEARER:
                b->h[b->nh++] = (knock_header){"Authorization", own(b, xfmt("Bearer %s", secret))};
                break;
        case KNOCK_PROVIDER_TWILIO: {
                char pad[1200];
                memset(pad, 'x', sizeof(pad) - 1);
                pad[sizeof(pad) - 1] = 0;
                free(b->body);
                b->body = xfmt("AccountSid=AC1&Body=%s&From=%%2B15550001&MessageSid=SM1&"
                               "MessageStatus=delivered&To=%%2B15550002",
                        pad);
                b->cfg.url = strdup("https://example.com/twilio");
                s = own(b, xfmt("https://example.com/twilioAccountSidAC1Body%sFrom+15550001"
                                "MessageSidSM1MessageStatusdeliveredTo+15550002",
                                   pad));
                b->h[b->nh++] = (knock_header){"X-Twilio-Signature",
                        own(b, hmac_enc("SHA1", secret, strlen(secret), s, false))};
                b->h[b->nh++] = (knock_header){"I-Twilio-Idempotency-Token", "idem-1"};
                break;
        }
        case KNOCK_PROVIDER_PADDLE:
                s = own(b, hmac_enc("SHA256", secret, strlen(secret),
                                   own(b, xfmt(TS ":%s", b->body)), true));
                b->h[b->nh++] =
                        (knock_header){"Paddle-Signature", own(b, xfmt("ts=" TS ";h1=%s", s))};
                break;
        case KNOCK_PROVIDER_LINEAR:
                b->h[b->nh++] = (knock_header){"Linear-Signature",
                        own(b, hmac_enc("SHA256", secret, strlen(secret), b->body, true))};
                b->h[b->nh++] = (knock_header){"Linear-Delivery", "dlv-1"};
                break;
        case KNOCK_PROVIDER_LEMONSQUEEZY:
                b->h[b->nh++] = (knock_header){"X-Signature",
                        own(b, hmac_enc("SHA256", secret, strlen(secret), b->body, true))};
                b->h[b->nh++] = (knock_header){"X-Event-Name", "order_created"};
                break;
        case KNOCK_PROVIDER_INTERCOM:
                s = own(b, hmac_enc("SHA1", secret, strlen(secret), b->body, true));
                b->h[b->nh++] = (knock_header){"X-Hub-Signature", own(b, xfmt("sha1=%s", s))};
                break;
        case KNOCK_PROVIDER_ZENDESK:
                b->h[b->nh++] = (knock_header){"X-Zendesk-Webhook-Signature",
                        own(b, hmac_enc("SHA256", secret, strlen(secret),
                                       own(b, xfmt("2023-11-14T22:13:20Z%s", b->body)), false))};
                b->h[b->nh++] = (knock_header){
                        "X-Zendesk-Webhook-Signature-Timestamp", "2023-11-14T22:13:20Z"};
                break;
        case KNOCK_PROVIDER_HUBSPOT:
                free(b->body);
                b->body = json_body("[{\"eventId\":100,\"subscriptionType\":\"contact.creation\",");
                b->body = (char *)realloc(b->body, strlen(b->body) + 2);
                strcat(b->body, "]");
                b->cfg.url = strdup("https://example.com/hubspot");
                b->h[b->nh++] = (knock_header){"X-HubSpot-Signature-v3",
                        own(b, hmac_enc("SHA256", secret, strlen(secret),
                                       own(b, xfmt("POSThttps://example.com/hubspot%s" TS_MS,
                                                      b->body)),
                                       false))};
                b->h[b->nh++] = (knock_header){"X-HubSpot-Request-Timestamp", TS_MS};
                break;
        case KNOCK_PROVIDER_SENDGRID: {
                unsigned char *der = NULL;
                int n = i2d_PUBKEY(ec, &der);
                text = own(b, enc(der, (size_t)n, false));
                OPENSSL_free(der);
                free(b->body);
                b->body = json_body("[{\"sg_event_id\":\"sg-1\",\"event\":\"delivered\",");
                b->body = (char *)realloc(b->body, strlen(b->body) + 2);
                strcat(b->body, "]");
                b->h[b->nh++] = (knock_header){"X-Twilio-Email-Event-Webhook-Signature",
                        own(b, pkey_sign(ec, own(b, xfmt(TS "%s", b->body)), false))};
                b->h[b->nh++] = (knock_header){"X-Twilio-Email-Event-Webhook-Timestamp", TS};
                break;
        }
        case KNOCK_PROVIDER_DISCORD: {
                unsigned char pub[32];
                size_t pl = sizeof(pub);
                EVP_PKEY_get_raw_public_key(ed, pub, &pl);
                text = own(b, enc(pub, pl, true));
                b->h[b->nh++] = (knock_header){"X-Signature-Ed25519",
                        own(b, pkey_sign(ed, own(b, xfmt(TS "%s", b->body)), true))};
                b->h[b->nh++] = (knock_header){"X-Signature-Timestamp", TS};
                break;
        }
        case KNOCK_PROVIDER_GITLAB:
                b->h[b->nh++] = (knock_header){"X-Gitlab-Token", secret};
                b->h[b->nh++] = (knock_header){"X-Gitlab-Event-UUID", "uuid-1"};
                break;
        default:
                abort();
        }
        if (p != KNOCK_PROVIDER_NONE) {
                b->cfg.secrets = calloc(1, sizeof(knock_secret));
                if (!b->cfg.secrets || verify_secret_from_text(p, text, &b->cfg.secrets[0]) < 0)
                        abort();
                b->cfg.n_secrets = 1;
        }
}

int main(int argc, char *argv[])
{
        EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
        EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");

        if (argc > 1)
                opt_seconds = atof(argv[1]);
        if (opt_seconds <= 0)
                opt_seconds = 0.2;

        for (int p = 0; p < _KNOCK_PROVIDER_MAX; p++) {
                double v[5], h[5], ops, hmac;
                bcase b;

                if (argc > 2 && !streq(argv[2], provider_to_string(p)))
                        continue;
                setup(&b, (knock_provider)p, ed, ec);
                /* Interleaved so drift in the machine's speed hits both alike. */
                for (int round = 0; round < 5; round++) {
                        h[round] = measure_hmac(b.body);
                        v[round] = measure_verify(&b);
                }
                ops = bench_median(v, 5);
                hmac = bench_median(h, 5);
                printf("{\"bench\":\"verify\",\"provider\":\"%s\",\"body_bytes\":%zu,\"ops\":%.0f,"
                       "\"baseline\":\"hmac-sha256\",\"baseline_ops\":%.0f,\"ratio\":%.2f}\n",
                        provider_to_string(p), strlen(b.body), ops, hmac, ops / hmac);
                fflush(stdout);

                verify_config_clear(&b.cfg);
                free(b.body);
                for (size_t i = 0; i < b.n_owned; i++)
                        free(b.owned[i]);
        }
        EVP_PKEY_free(ed);
        EVP_PKEY_free(ec);
        return 0;
}
