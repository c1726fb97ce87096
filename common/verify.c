/* SPDX-License-Identifier: MIT */
/*
 * verify — every provider's signature scheme (../shared/spec/providers.md).
 *
 * Promises (see verify.h for the full contract):
 *  - one table row per provider says which family of scheme it uses, which
 *    headers carry the signature and timestamp, how the signed bytes are laid
 *    out, its tolerance, and where its dedupe id and event type come from;
 *    one function per family does the work, so a provider that signs like
 *    another is a table row, not code;
 *  - signatures are decoded to bytes and compared with CRYPTO_memcmp after a
 *    length check; every secret is tried against every signature, and each
 *    secret's MAC is computed once per request however many signatures there
 *    are;
 *  - a timestamp is accepted when |receive time - timestamp| <= tolerance:
 *    the boundary itself is accepted, one millisecond past it is rejected.
 *    Providers whose own SDKs check only the past (stripe, paddle, hubspot)
 *    accept timestamps from the future, as those SDKs do;
 *  - metadata is read before any verification, from headers, the JSON body
 *    (one validating scan for every value the request needs, only when a rule
 *    needs one; jsonscan.h) or a form body (parsed once; form.h); a body that is
 *    not JSON yields no id and no type, never an error;
 *  - public keys (discord, sendgrid, standard v1a) are parsed once, when the
 *    secret is read, and shared read-only by every request;
 *  - reasons name what was wrong ("missing Stripe-Signature header"), never a
 *    secret, a signature or a body byte.
 *
 * Sources for each scheme are named beside its table row.
 */

#include "verify.h"

#include <ctype.h>
#include <inttypes.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

#include "form.h"
#include "jsonscan.h"
#include "util.h"

#define MAX_SIGS 16        /* signatures considered in one request */
#define MAX_SIG_BYTES 160  /* decoded signature: HMAC ≤ 64, Ed25519 64, ECDSA DER ≤ 72 */
#define MAX_META 512       /* longer ids/types are dropped, never truncated */
#define JSON_MAX_PTRS JSON_SCAN_MAX_PTRS /* JSON values one request reads */
#define MAX_CHALLENGE 2048 /* echoed handshake challenge */
#define DEFAULT_TOKEN_HEADER "X-Knock-Token"

/* ---- the provider table ------------------------------------------------------------------ */

typedef enum family {
        FAM_NONE,
        FAM_SIMPLE,   /* one signature header [+ timestamp header] over pre ts mid body */
        FAM_TS_LIST,  /* "t=…,v1=…,v1=…" (stripe) / "ts=…;h1=…" (paddle) */
        FAM_STANDARD, /* webhook-id/-timestamp/-signature or svix-*: "v1,… v1a,…" */
        FAM_TWILIO,   /* URL + sorted form params, HMAC-SHA1 */
        FAM_TOKEN,    /* header equals secret */
        FAM_BASIC,    /* Authorization: Basic */
        FAM_BEARER,   /* Authorization: Bearer */
} family;

typedef enum ts_kind {
        TS_NONE,
        TS_UNIX_S,
        TS_UNIX_MS,
        TS_RFC3339,
} ts_kind;

typedef enum msg_layout {
        MSG_PRE_TS_MID_BODY, /* msg_pre ts msg_mid body (body alone without timestamp) */
        MSG_HUBSPOT,         /* method url body ts */
} msg_layout;

typedef struct scheme {
        family family;
        const char *sig_header;
        const char *sig_header_alt; /* another accepted name; both at once is a duplicate */
        const char *ts_header;
        const char *prefix; /* text before the signature in its header */
        knock_hmac_alg alg;
        knock_encoding enc;
        knock_key_kind key; /* what verifies a signature */
        ts_kind ts;
        int64_t tolerance_ms; /* default; 0: no timestamp */
        bool future;          /* reject timestamps too far ahead as well */
        msg_layout layout;
        const char *msg_pre, *msg_mid;
        char list_sep; /* FAM_TS_LIST */
        const char *list_ts, *list_sig;
        const char *body_ts;   /* JSON pointer to a ms timestamp inside the body (linear) */
        const char *dedupe[3]; /* "header:NAME" | "json:/ptr" | "form:NAME", first found wins */
        const char *type[3];
        const char *type_suffix; /* appended as ".value" when present */
} scheme;

#define S(x) ((int64_t)(x)*1000)

/* clang-format off */
static const struct {
        const char *name;
        scheme s;
} providers[_KNOCK_PROVIDER_MAX] = {
        [KNOCK_PROVIDER_NONE] = { "none", { .family = FAM_NONE } },
        /* stripe.com/docs/webhooks/signatures and stripe-node's Webhooks.ts:
         * only the past is checked. */
        [KNOCK_PROVIDER_STRIPE] = { "stripe", {
                .family = FAM_TS_LIST, .sig_header = "Stripe-Signature",
                .list_sep = ',', .list_ts = "t", .list_sig = "v1", .msg_mid = ".",
                .ts = TS_UNIX_S, .tolerance_ms = S(300),
                .dedupe = { "json:/id" }, .type = { "json:/type" } } },
        /* docs.github.com "Validating webhook deliveries" */
        [KNOCK_PROVIDER_GITHUB] = { "github", {
                .family = FAM_SIMPLE, .sig_header = "X-Hub-Signature-256", .prefix = "sha256=",
                .dedupe = { "header:X-GitHub-Delivery" }, .type = { "header:X-GitHub-Event" } } },
        /* standardwebhooks.com spec and its reference libraries (svix) */
        [KNOCK_PROVIDER_STANDARD] = { "standard", {
                .family = FAM_STANDARD, .tolerance_ms = S(300), .future = true,
                .dedupe = { "header:webhook-id", "header:svix-id" }, .type = { "json:/type" } } },
        /* shopify.dev "Verify webhooks" */
        [KNOCK_PROVIDER_SHOPIFY] = { "shopify", {
                .family = FAM_SIMPLE, .sig_header = "X-Shopify-Hmac-Sha256",
                .sig_header_alt = "shopify-hmac-sha256", .enc = KNOCK_ENC_BASE64,
                .dedupe = { "header:X-Shopify-Event-Id", "header:X-Shopify-Webhook-Id" },
                .type = { "header:X-Shopify-Topic" } } },
        /* api.slack.com/authentication/verifying-requests-from-slack */
        [KNOCK_PROVIDER_SLACK] = { "slack", {
                .family = FAM_SIMPLE, .sig_header = "X-Slack-Signature", .prefix = "v0=",
                .ts_header = "X-Slack-Request-Timestamp", .ts = TS_UNIX_S,
                .tolerance_ms = S(300), .future = true, .msg_pre = "v0:", .msg_mid = ":",
                .dedupe = { "json:/event_id" }, .type = { "json:/event/type", "json:/type" } } },
        /* knock's own: everything from the endpoint's options */
        [KNOCK_PROVIDER_HMAC] = { "hmac", { .family = FAM_SIMPLE } },
        [KNOCK_PROVIDER_TOKEN] = { "token", { .family = FAM_TOKEN } },
        [KNOCK_PROVIDER_BASIC] = { "basic", { .family = FAM_BASIC } },
        [KNOCK_PROVIDER_BEARER] = { "bearer", { .family = FAM_BEARER } },
        /* twilio.com/docs/usage/security and twilio-node's webhooks.ts */
        [KNOCK_PROVIDER_TWILIO] = { "twilio", {
                .family = FAM_TWILIO, .sig_header = "X-Twilio-Signature",
                .alg = KNOCK_HMAC_SHA1, .enc = KNOCK_ENC_BASE64,
                .dedupe = { "header:I-Twilio-Idempotency-Token" },
                .type = { "form:MessageStatus", "form:CallStatus", "form:SmsStatus" } } },
        /* developer.paddle.com "Verify webhook signatures"; paddle-node-sdk checks the past */
        [KNOCK_PROVIDER_PADDLE] = { "paddle", {
                .family = FAM_TS_LIST, .sig_header = "Paddle-Signature",
                .list_sep = ';', .list_ts = "ts", .list_sig = "h1", .msg_mid = ":",
                .ts = TS_UNIX_S, .tolerance_ms = S(5),
                .dedupe = { "json:/event_id" }, .type = { "json:/event_type" } } },
        /* linear.app/developers/webhooks "Securing webhooks" */
        [KNOCK_PROVIDER_LINEAR] = { "linear", {
                .family = FAM_SIMPLE, .sig_header = "Linear-Signature",
                .body_ts = "/webhookTimestamp", .tolerance_ms = S(60), .future = true,
                .dedupe = { "header:Linear-Delivery" }, .type = { "json:/type" },
                .type_suffix = "json:/action" } },
        /* postmarkapp.com "Webhooks overview": basic auth in the webhook URL */
        [KNOCK_PROVIDER_POSTMARK] = { "postmark", {
                .family = FAM_BASIC, .type = { "json:/RecordType" } } },
        /* resend.com/docs/dashboard/webhooks/verify-webhooks-requests, clerk.com/docs
         * (both are Svix-delivered) */
        [KNOCK_PROVIDER_RESEND] = { "resend", {
                .family = FAM_STANDARD, .tolerance_ms = S(300), .future = true,
                .dedupe = { "header:svix-id", "header:webhook-id" }, .type = { "json:/type" } } },
        [KNOCK_PROVIDER_CLERK] = { "clerk", {
                .family = FAM_STANDARD, .tolerance_ms = S(300), .future = true,
                .dedupe = { "header:svix-id", "header:webhook-id" }, .type = { "json:/type" } } },
        /* docs.lemonsqueezy.com/help/webhooks/signing-requests */
        [KNOCK_PROVIDER_LEMONSQUEEZY] = { "lemonsqueezy", {
                .family = FAM_SIMPLE, .sig_header = "X-Signature",
                .type = { "header:X-Event-Name", "json:/meta/event_name" } } },
        /* developers.facebook.com/docs/graph-api/webhooks/getting-started */
        [KNOCK_PROVIDER_META] = { "meta", {
                .family = FAM_SIMPLE, .sig_header = "X-Hub-Signature-256", .prefix = "sha256=",
                .type = { "json:/object" } } },
        /* developers.intercom.com "Webhooks: signed notifications" */
        [KNOCK_PROVIDER_INTERCOM] = { "intercom", {
                .family = FAM_SIMPLE, .sig_header = "X-Hub-Signature", .prefix = "sha1=",
                .alg = KNOCK_HMAC_SHA1, .dedupe = { "json:/id" }, .type = { "json:/topic" } } },
        /* developer.zendesk.com/documentation/webhooks/verifying: base64(HMAC(ts + body)),
         * the timestamp is ISO 8601 UTC */
        [KNOCK_PROVIDER_ZENDESK] = { "zendesk", {
                .family = FAM_SIMPLE, .sig_header = "X-Zendesk-Webhook-Signature",
                .ts_header = "X-Zendesk-Webhook-Signature-Timestamp", .ts = TS_RFC3339,
                .tolerance_ms = S(300), .future = true, .enc = KNOCK_ENC_BASE64,
                .dedupe = { "header:X-Zendesk-Webhook-Invocation-Id" },
                .type = { "json:/type" } } },
        /* developers.hubspot.com "Validating requests" (v3): only the past is checked */
        [KNOCK_PROVIDER_HUBSPOT] = { "hubspot", {
                .family = FAM_SIMPLE, .sig_header = "X-HubSpot-Signature-v3",
                .ts_header = "X-HubSpot-Request-Timestamp", .ts = TS_UNIX_MS,
                .tolerance_ms = S(300), .layout = MSG_HUBSPOT, .enc = KNOCK_ENC_BASE64,
                .dedupe = { "json:/0/eventId" }, .type = { "json:/0/subscriptionType" } } },
        /* docs.sendgrid.com "Event Webhook security features": ECDSA over ts + body */
        [KNOCK_PROVIDER_SENDGRID] = { "sendgrid", {
                .family = FAM_SIMPLE, .sig_header = "X-Twilio-Email-Event-Webhook-Signature",
                .ts_header = "X-Twilio-Email-Event-Webhook-Timestamp", .ts = TS_UNIX_S,
                .tolerance_ms = S(300), .future = true, .enc = KNOCK_ENC_BASE64,
                .key = KNOCK_KEY_ECDSA_P256,
                .dedupe = { "json:/0/sg_event_id" }, .type = { "json:/0/event" } } },
        /* discord.com/developers/docs/interactions/overview "Security and authorization";
         * Discord itself makes no tolerance check, knock adds one. */
        [KNOCK_PROVIDER_DISCORD] = { "discord", {
                .family = FAM_SIMPLE, .sig_header = "X-Signature-Ed25519",
                .ts_header = "X-Signature-Timestamp", .ts = TS_UNIX_S,
                .tolerance_ms = S(300), .future = true, .key = KNOCK_KEY_ED25519,
                .dedupe = { "json:/id" }, .type = { "json:/event/type", "json:/type" } } },
        /* docs.gitlab.com/user/project/integrations/webhooks */
        [KNOCK_PROVIDER_GITLAB] = { "gitlab", {
                .family = FAM_TOKEN, .sig_header = "X-Gitlab-Token",
                .dedupe = { "header:X-Gitlab-Event-UUID" }, .type = { "header:X-Gitlab-Event" } } },
};
/* clang-format on */
knock_provider provider_from_string(const char *s)
{
        if (!s)
                return KNOCK_PROVIDER_INVALID;
        for (int p = 0; p < _KNOCK_PROVIDER_MAX; p++)
                if (providers[p].name && streq(providers[p].name, s))
                        return (knock_provider)p;
        /* Svix is the Standard Webhooks reference implementation. */
        if (streq(s, "svix"))
                return KNOCK_PROVIDER_STANDARD;
        return KNOCK_PROVIDER_INVALID;
}

const char *provider_to_string(knock_provider p)
{
        if (p < 0 || p >= _KNOCK_PROVIDER_MAX)
                return NULL;
        return providers[p].name;
}

/* ---- small helpers ----------------------------------------------------------------------- */

typedef struct span {
        const char *p;
        size_t n;
} span;

static span span_trim(const char *p, size_t n)
{
        while (n > 0 && (*p == ' ' || *p == '\t'))
                p++, n--;
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
                n--;
        return (span){p, n};
}

static bool span_eq(span s, const char *lit)
{
        size_t l = strlen(lit);
        return s.n == l && memcmp(s.p, lit, l) == 0;
}

size_t request_header(const knock_request *req, const char *name, const char **ret)
{
        size_t n = 0;

        for (size_t i = 0; i < req->n_headers; i++) {
                if (!req->headers[i].name || !strcaseeq(req->headers[i].name, name))
                        continue;
                if (n++ == 0 && ret)
                        *ret = req->headers[i].value;
        }
        if (n == 0 && ret)
                *ret = NULL;
        return n;
}

static const char *hmac_digest_name(knock_hmac_alg alg)
{
        return alg == KNOCK_HMAC_SHA512 ? "SHA512" : alg == KNOCK_HMAC_SHA1 ? "SHA1" : "SHA256";
}

/* The HMAC implementation is fetched once. Each thread keeps one context per digest,
 * made on first use: setting the digest (a fetch by name) costs more than an HMAC of a
 * small body, and EVP_MAC_init with a new key and no parameters reuses it. So
 * verify_request() stays safe to call from several threads. */
#define HMAC_ALGS (KNOCK_HMAC_SHA1 + 1)

static EVP_MAC *hmac_impl;
static pthread_key_t hmac_key;
static bool hmac_key_ok;
static pthread_once_t hmac_once = PTHREAD_ONCE_INIT;

static void hmac_ctxs_free(void *p)
{
        EVP_MAC_CTX **ctxs = p;

        for (size_t i = 0; i < HMAC_ALGS; i++)
                EVP_MAC_CTX_free(ctxs[i]);
        free(ctxs);
}

static void hmac_fetch(void)
{
        hmac_impl = EVP_MAC_fetch(NULL, "HMAC", NULL);
        hmac_key_ok = pthread_key_create(&hmac_key, hmac_ctxs_free) == 0;
}

/* This thread's context for alg, its digest set; NULL when out of memory. */
static EVP_MAC_CTX *hmac_ctx(knock_hmac_alg alg)
{
        EVP_MAC_CTX **ctxs;
        OSSL_PARAM params[2];

        pthread_once(&hmac_once, hmac_fetch);
        if (!hmac_impl || !hmac_key_ok || (unsigned)alg >= HMAC_ALGS)
                return NULL;
        ctxs = pthread_getspecific(hmac_key);
        if (!ctxs) {
                ctxs = calloc(HMAC_ALGS, sizeof(*ctxs));
                if (!ctxs || pthread_setspecific(hmac_key, ctxs) != 0) {
                        free(ctxs);
                        return NULL;
                }
        }
        if (!ctxs[alg]) {
                EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(hmac_impl);

                params[0] = OSSL_PARAM_construct_utf8_string(
                        OSSL_MAC_PARAM_DIGEST, (char *)hmac_digest_name(alg), 0);
                params[1] = OSSL_PARAM_construct_end();
                if (!ctx || EVP_MAC_CTX_set_params(ctx, params) != 1) {
                        EVP_MAC_CTX_free(ctx);
                        return NULL;
                }
                ctxs[alg] = ctx;
        }
        return ctxs[alg];
}

/* HMAC over the concatenation of parts, without building the concatenation. */
static int hmac_parts(knock_hmac_alg alg, const unsigned char *key, size_t key_len,
        const span *parts, size_t n_parts, unsigned char *out, size_t *out_len)
{
        EVP_MAC_CTX *ctx = hmac_ctx(alg);

        if (!ctx)
                return hmac_impl ? -ENOMEM : -ENOSYS;
        /* A zero-length key still (re)keys: OpenSSL takes NULL as "keep the old key". */
        if (EVP_MAC_init(ctx, key_len ? key : (const unsigned char *)"", key_len, NULL) != 1)
                return -EIO;
        for (size_t i = 0; i < n_parts; i++)
                if (parts[i].n > 0 &&
                        EVP_MAC_update(ctx, (const unsigned char *)parts[i].p, parts[i].n) != 1)
                        return -EIO;
        if (EVP_MAC_final(ctx, out, out_len, EVP_MAX_MD_SIZE) != 1)
                return -EIO;
        return 0;
}

static EVP_PKEY *parse_pkey(knock_key_kind kind, const unsigned char *data, size_t len)
{
        if (kind == KNOCK_KEY_ED25519)
                return len == 32 ? EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, data, len)
                                 : NULL;
        return d2i_PUBKEY(NULL, &data, (long)len);
}

/* Public-key signature check. Ed25519 signs the whole message (no streaming), so the
 * parts are joined; ECDSA P-256 is over SHA-256 of the same bytes, DER signature. */
static int pkey_verify(const knock_secret *key, const span *parts, size_t n_parts,
        const unsigned char *sig, size_t sig_len)
{
        _cleanup_free_ unsigned char *msg = NULL;
        EVP_PKEY *pkey = NULL;
        EVP_MD_CTX *md = NULL;
        size_t len = 0, o = 0;
        int r;

        for (size_t i = 0; i < n_parts; i++)
                len += parts[i].n;
        msg = malloc(len + 1);
        if (!msg)
                return -ENOMEM;
        for (size_t i = 0; i < n_parts; i++) {
                if (parts[i].n > 0)
                        memcpy(msg + o, parts[i].p, parts[i].n);
                o += parts[i].n;
        }

        if (key->kind == KNOCK_KEY_ED25519 && sig_len != 64)
                return 0;
        /* Parsed once by verify_secret_from_text (the OpenSSL 3 decoders cost more than
         * the verification itself); a hand-built secret is parsed here. */
        if (key->pkey) {
                pkey = key->pkey;
                if (EVP_PKEY_up_ref(pkey) != 1)
                        return -ENOMEM;
        } else
                pkey = parse_pkey(key->kind, key->data, key->len);
        if (!pkey)
                return 0;
        md = EVP_MD_CTX_new();
        if (!md) {
                EVP_PKEY_free(pkey);
                return -ENOMEM;
        }
        r = EVP_DigestVerifyInit(md, NULL, key->kind == KNOCK_KEY_ED25519 ? NULL : EVP_sha256(),
                    NULL, pkey) == 1 &&
            EVP_DigestVerify(md, sig, sig_len, msg, len) == 1;
        EVP_MD_CTX_free(md);
        EVP_PKEY_free(pkey);
        return r;
}

/* ---- the per-request context --------------------------------------------------------------- */

typedef struct sig {
        unsigned char b[MAX_SIG_BYTES];
        size_t n;
        knock_key_kind kind;
} sig;

typedef struct vctx {
        const knock_verify_config *cfg;
        const knock_request *req;
        knock_verify_result *res;
        const scheme *s;
        int64_t tolerance_ms;
        /* JSON pointers this request reads, resolved together in one pass */
        const char *jptr[JSON_MAX_PTRS];
        json_span jval[JSON_MAX_PTRS];
        bool jhave[JSON_MAX_PTRS];
        size_t n_jptr;
        bool json_scanned;
        /* the form body, parsed once (twilio) */
        form form;
        int form_state; /* 0 not parsed, 1 parsed, -1 not a form */
        sig sigs[MAX_SIGS];
        size_t n_sigs;
} vctx;

_printf_(3, 4) static int fail(vctx *c, int code, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(c->res->reason, sizeof(c->res->reason), fmt, ap);
        va_end(ap);
        return code;
}

/* JSON bodies are read with jsonscan (every pointer the request needs in one pass),
 * form bodies and query strings with form. */

/* Registers a pointer the request will look up, so one pass resolves them all. */
static void json_want(vctx *c, const char *ptr)
{
        for (size_t i = 0; i < c->n_jptr; i++)
                if (streq(c->jptr[i], ptr))
                        return;
        if (c->n_jptr < JSON_MAX_PTRS && !c->json_scanned)
                c->jptr[c->n_jptr++] = ptr;
}

static void body_scan(vctx *c)
{
        c->json_scanned = true;
        json_scan((const char *)c->req->body, c->req->body_len, c->jptr, c->n_jptr, c->jval,
                c->jhave);
}

/* Finds ptr in the body. Returns true with *ret the value's raw text. The first call scans
 * for every pointer registered so far (and this one); later calls read the results. */
static bool body_lookup(vctx *c, const char *ptr, span *ret)
{
        json_span v;
        bool have;

        if (!c->req->body || c->req->body_len == 0 || (*ptr && *ptr != '/'))
                return false;
        if (!c->json_scanned) {
                json_want(c, ptr);
                body_scan(c);
        }
        for (size_t i = 0; i < c->n_jptr; i++)
                if (streq(c->jptr[i], ptr)) {
                        if (c->jhave[i])
                                *ret = (span){c->jval[i].p, c->jval[i].n};
                        return c->jhave[i];
                }
        /* Not registered before the scan: a pass of its own (there is always room). */
        if (!json_scan((const char *)c->req->body, c->req->body_len, &ptr, 1, &v, &have) || !have)
                return false;
        *ret = (span){v.p, v.n};
        return true;
}

/* A JSON string or integer as text; *ret NULL for anything else. */
static int json_text(span v, char **ret)
{
        return json_scan_text((json_span){v.p, v.n}, MAX_META, ret);
}

/* The body's value at ptr as text, or NULL. */
static int body_text(vctx *c, const char *ptr, char **ret)
{
        span v;

        *ret = NULL;
        return body_lookup(c, ptr, &v) ? json_text(v, ret) : 0;
}

/* The body as form parameters, parsed once per request. Returns 1 with the list, 0 when
 * the body is not a form, or -ENOMEM. */
static int body_form(vctx *c, form_param **ret, size_t *ret_n)
{
        if (c->form_state == 0) {
                int r = c->req->body ? form_parse((const char *)c->req->body, c->req->body_len,
                                               &c->form)
                                     : -EINVAL;
                if (r == -ENOMEM)
                        return r;
                c->form_state = r < 0 ? -1 : 1;
        }
        *ret = c->form.p;
        *ret_n = c->form.n;
        return c->form_state > 0;
}

/* The query string of req->uri (after '?', before '#'), or an empty span. */
static span request_query(const knock_request *req)
{
        const char *q = req->uri ? strchr(req->uri, '?') : NULL;
        if (!q)
                return (span){"", 0};
        q++;
        return (span){q, strcspn(q, "#")};
}

/* ---- metadata (rule 8: before verification) ------------------------------------------------ */

/* Reads one "header:NAME" / "json:/ptr" / "form:NAME" source. *ret stays NULL when absent. */
static int meta_source(vctx *c, const char *src, char **ret)
{
        *ret = NULL;
        if (startswith(src, "header:")) {
                const char *v;
                size_t n;

                if (request_header(c->req, src + 7, &v) == 0 || !v)
                        return 0;
                n = strlen(v);
                if (n == 0 || n > MAX_META)
                        return 0;
                *ret = strdup(v);
                return *ret ? 0 : -ENOMEM;
        }
        if (startswith(src, "json:"))
                return body_text(c, src + 5, ret);
        if (startswith(src, "form:")) {
                form_param *f;
                size_t nf;
                int r = body_form(c, &f, &nf);

                if (r <= 0)
                        return r;
                for (size_t i = 0; i < nf; i++)
                        if (streq(f[i].name, src + 5) && *f[i].value &&
                                strlen(f[i].value) <= MAX_META) {
                                *ret = strdup(f[i].value);
                                return *ret ? 0 : -ENOMEM;
                        }
                return 0;
        }
        return 0; /* "none" or an unknown kind: config validation reports those */
}

/* An endpoint option replaces the provider's list entirely. */
static int meta_first(
        vctx *c, const char *override, const char *const *defaults, size_t n, char **ret)
{
        int r;

        if (override)
                return meta_source(c, override, ret);
        for (size_t i = 0; i < n && defaults[i]; i++) {
                r = meta_source(c, defaults[i], ret);
                if (r < 0 || *ret)
                        return r;
        }
        return 0;
}

static void want_sources(vctx *c, const char *override, const char *const *list, size_t n)
{
        if (override) {
                list = &override;
                n = 1;
        }
        for (size_t i = 0; i < n && list[i]; i++)
                if (startswith(list[i], "json:"))
                        json_want(c, list[i] + 5);
}

static int extract_metadata(vctx *c)
{
        int r;

        r = meta_first(c, c->cfg->dedupe, c->s->dedupe, ELEMENTSOF(c->s->dedupe),
                &c->res->provider_event_id);
        if (r < 0)
                return r;
        r = meta_first(c, c->cfg->type, c->s->type, ELEMENTSOF(c->s->type), &c->res->event_type);
        if (r < 0)
                return r;
        if (!c->cfg->type && c->s->type_suffix && c->res->event_type) {
                _cleanup_free_ char *suffix = NULL;
                char *joined;

                r = meta_source(c, c->s->type_suffix, &suffix);
                if (r < 0)
                        return r;
                if (suffix) {
                        if (asprintf(&joined, "%s.%s", c->res->event_type, suffix) < 0)
                                return -ENOMEM;
                        free(c->res->event_type);
                        c->res->event_type = joined;
                }
        }
        return 0;
}

/* ---- timestamps (rules 4 and 7) ------------------------------------------------------------ */

static int parse_ts_ms(span s, ts_kind kind, int64_t *ret)
{
        char buf[24];
        uint64_t v;

        if (kind == TS_RFC3339)
                return parse_rfc3339_ms(s.p, s.n, 0, ret);
        if (s.n == 0 || s.n >= sizeof(buf))
                return -EINVAL;
        memcpy(buf, s.p, s.n);
        buf[s.n] = 0;
        if (parse_u64_strict(buf, &v) < 0)
                return -EINVAL;
        if (kind == TS_UNIX_S) {
                if (v > (uint64_t)(INT64_MAX / 1000))
                        return -ERANGE;
                v *= 1000;
        } else if (v > (uint64_t)INT64_MAX)
                return -ERANGE;
        *ret = (int64_t)v;
        return 0;
}

/* Accepted when |now - ts| <= tolerance (future side only when the scheme checks it). */
static int check_window(vctx *c, int64_t ts_ms)
{
        int64_t tol = c->tolerance_ms, now = c->req->now_ms;

        if (tol == INT64_MAX || tol < 0)
                return 0;
        if (now > ts_ms && (uint64_t)now - (uint64_t)ts_ms > (uint64_t)tol)
                return fail(c, KNOCK_VERIFY_E_EXPIRED, "timestamp outside tolerance (too old)");
        if (c->s->future && ts_ms > now && (uint64_t)ts_ms - (uint64_t)now > (uint64_t)tol)
                return fail(
                        c, KNOCK_VERIFY_E_FUTURE, "timestamp outside tolerance (in the future)");
        return 0;
}

static int check_timestamp(vctx *c, span ts, ts_kind kind, const char *what)
{
        int64_t ms;

        if (parse_ts_ms(ts, kind, &ms) < 0)
                return fail(c, KNOCK_VERIFY_E_MALFORMED, "malformed %s", what);
        return check_window(c, ms);
}

/* ---- signatures ---------------------------------------------------------------------------- */

/* Decodes one signature into the request's list; undecodable text is not a signature. */
static bool add_sig(vctx *c, span s, knock_encoding enc, knock_key_kind kind)
{
        sig *g;
        int r;

        if (c->n_sigs >= MAX_SIGS || s.n == 0)
                return false;
        g = &c->sigs[c->n_sigs];
        r = enc == KNOCK_ENC_HEX ? hex_decode(s.p, s.n, g->b, sizeof(g->b), &g->n)
                                 : base64_decode(s.p, s.n, g->b, sizeof(g->b), &g->n);
        if (r < 0 || g->n == 0)
                return false;
        g->kind = kind;
        c->n_sigs++;
        return true;
}

/* Rule 5: any secret matching any signature passes. Returns 1 on a match, 0 on none. */
static int match_any(vctx *c, knock_hmac_alg alg, const span *parts, size_t n_parts)
{
        int found = 0;

        for (size_t k = 0; k < c->cfg->n_secrets; k++) {
                const knock_secret *key = &c->cfg->secrets[k];
                unsigned char mac[EVP_MAX_MD_SIZE];
                size_t mac_len = 0;
                bool have_mac = false;
                int r;

                for (size_t i = 0; i < c->n_sigs; i++) {
                        const sig *g = &c->sigs[i];

                        if (g->kind != key->kind)
                                continue;
                        if (key->kind != KNOCK_KEY_SHARED) {
                                r = pkey_verify(key, parts, n_parts, g->b, g->n);
                                if (r < 0)
                                        return r;
                                found |= r;
                                continue;
                        }
                        if (!have_mac) {
                                r = hmac_parts(
                                        alg, key->data, key->len, parts, n_parts, mac, &mac_len);
                                if (r < 0)
                                        return r;
                                have_mac = true;
                        }
                        /* Rule 2: length first, then constant time; keep going so the
                         * time taken does not say which secret matched. */
                        if (g->n == mac_len && CRYPTO_memcmp(g->b, mac, mac_len) == 0)
                                found = 1;
                }
                OPENSSL_cleanse(mac, sizeof(mac));
        }
        return found;
}

/* Exactly one occurrence of the scheme's signature header (either accepted name). */
static int one_header(vctx *c, const char *name, const char *alt, const char **ret)
{
        const char *v = NULL, *va = NULL;
        size_t n = request_header(c->req, name, &v) + (alt ? request_header(c->req, alt, &va) : 0);

        if (n == 0)
                return fail(c, KNOCK_VERIFY_E_MISSING, "missing %s header", name);
        if (n > 1)
                return fail(c, KNOCK_VERIFY_E_MALFORMED, "duplicate %s header", name);
        *ret = v ? v : va;
        return 0;
}

static int verify_simple(vctx *c)
{
        const scheme *s = c->s;
        const char *hv, *tv = NULL;
        span parts[5], sigtext, ts = {"", 0};
        size_t np = 0;
        int r;

        if (!s->sig_header)
                return fail(c, KNOCK_VERIFY_E_MISMATCH, "header option not set");
        r = one_header(c, s->sig_header, s->sig_header_alt, &hv);
        if (r)
                return r;
        if (s->ts_header) {
                r = one_header(c, s->ts_header, NULL, &tv);
                if (r)
                        return r;
                ts = span_trim(tv, strlen(tv));
                r = check_timestamp(c, ts, s->ts, "timestamp header");
                if (r)
                        return r;
        }

        sigtext = span_trim(hv, strlen(hv));
        if (s->prefix) {
                size_t pl = strlen(s->prefix);
                if (sigtext.n < pl || strncasecmp(sigtext.p, s->prefix, pl) != 0)
                        return fail(
                                c, KNOCK_VERIFY_E_MALFORMED, "malformed %s header", s->sig_header);
                sigtext.p += pl;
                sigtext.n -= pl;
        }
        if (!add_sig(c, sigtext, s->enc, s->key))
                return fail(c, KNOCK_VERIFY_E_MALFORMED, "malformed %s header", s->sig_header);

        if (s->msg_pre)
                parts[np++] = (span){s->msg_pre, strlen(s->msg_pre)};
        if (s->ts_header) {
                parts[np++] = ts;
                if (s->msg_mid)
                        parts[np++] = (span){s->msg_mid, strlen(s->msg_mid)};
        }
        parts[np++] = (span){(const char *)c->req->body, c->req->body_len};

        r = match_any(c, s->alg, parts, np);
        if (r < 0)
                return r;
        if (r == 0)
                return fail(c, KNOCK_VERIFY_E_MISMATCH, "no signature matches");

        /* Linear: the timestamp is inside the (now authenticated) body. */
        if (s->body_ts) {
                span v;
                int64_t ms;

                if (!body_lookup(c, s->body_ts, &v))
                        return fail(c, KNOCK_VERIFY_E_MISSING, "missing webhookTimestamp");
                if (parse_ts_ms(v, TS_UNIX_MS, &ms) < 0)
                        return fail(c, KNOCK_VERIFY_E_MALFORMED, "malformed webhookTimestamp");
                return check_window(c, ms);
        }
        return 0;
}

/* "t=1,v1=ab,v1=cd,v0=ef" (stripe) or "ts=1;h1=ab;h1=cd" (paddle). Unknown keys are
 * ignored; a second timestamp, or no timestamp, or no signature is malformed. */
static int verify_ts_list(vctx *c)
{
        const scheme *s = c->s;
        const char *hv, *p;
        span ts = {NULL, 0}, parts[3];
        size_t n, n_sig_fields = 0;
        int r;

        r = one_header(c, s->sig_header, NULL, &hv);
        if (r)
                return r;
        for (p = hv, n = strlen(hv);;) {
                const char *sep = memchr(p, s->list_sep, n);
                span item = span_trim(p, sep ? (size_t)(sep - p) : n);
                const char *eq = memchr(item.p, '=', item.n);

                if (eq) {
                        span key = span_trim(item.p, (size_t)(eq - item.p));
                        span val = span_trim(eq + 1, item.n - (size_t)(eq - item.p) - 1);

                        if (span_eq(key, s->list_ts)) {
                                if (ts.p)
                                        return fail(c, KNOCK_VERIFY_E_MALFORMED,
                                                "malformed %s header", s->sig_header);
                                ts = val;
                        } else if (span_eq(key, s->list_sig)) {
                                n_sig_fields++;
                                add_sig(c, val, KNOCK_ENC_HEX, KNOCK_KEY_SHARED);
                        }
                }
                if (!sep)
                        break;
                n -= (size_t)(sep - p) + 1;
                p = sep + 1;
        }
        if (!ts.p || n_sig_fields == 0)
                return fail(c, KNOCK_VERIFY_E_MALFORMED, "malformed %s header", s->sig_header);
        r = check_timestamp(c, ts, s->ts, "timestamp");
        if (r)
                return r;

        parts[0] = ts;
        parts[1] = (span){s->msg_mid, strlen(s->msg_mid)};
        parts[2] = (span){(const char *)c->req->body, c->req->body_len};
        r = match_any(c, KNOCK_HMAC_SHA256, parts, 3);
        if (r < 0)
                return r;
        return r ? 0 : fail(c, KNOCK_VERIFY_E_MISMATCH, "no signature matches");
}

/* Standard Webhooks: the three headers come from one family, webhook-* first, svix-*
 * otherwise. Signatures are space-separated "version,base64"; v1 is HMAC-SHA256 with a
 * whsec_ key, v1a Ed25519 with a whpk_ key; other versions are skipped. */
static int verify_standard(vctx *c)
{
        static const char *const fam[2][3] = {
                {"webhook-id", "webhook-timestamp", "webhook-signature"},
                {"svix-id", "svix-timestamp", "svix-signature"},
        };
        const char *v[3];
        const char *const *names;
        span parts[5], id, ts;
        const char *p;
        size_t n;
        int r;

        /* svix-* only when it is the family that carries a signature, so a request with
         * neither is reported as missing webhook-signature's family. */
        names = request_header(c->req, fam[0][2], NULL) == 0 &&
                                request_header(c->req, fam[1][2], NULL) > 0
                        ? fam[1]
                        : fam[0];
        for (size_t i = 0; i < 3; i++) {
                r = one_header(c, names[i], NULL, &v[i]);
                if (r)
                        return r;
        }
        id = span_trim(v[0], strlen(v[0]));
        ts = span_trim(v[1], strlen(v[1]));
        if (id.n == 0)
                return fail(c, KNOCK_VERIFY_E_MALFORMED, "malformed %s header", names[0]);
        r = check_timestamp(c, ts, TS_UNIX_S, "timestamp");
        if (r)
                return r;

        for (p = v[2], n = strlen(v[2]); n > 0;) {
                const char *sp = memchr(p, ' ', n);
                size_t len = sp ? (size_t)(sp - p) : n;
                const char *comma = memchr(p, ',', len);

                if (comma) {
                        span ver = {p, (size_t)(comma - p)};
                        span val = {comma + 1, len - (size_t)(comma - p) - 1};
                        if (span_eq(ver, "v1"))
                                add_sig(c, val, KNOCK_ENC_BASE64, KNOCK_KEY_SHARED);
                        else if (span_eq(ver, "v1a"))
                                add_sig(c, val, KNOCK_ENC_BASE64, KNOCK_KEY_ED25519);
                }
                if (!sp)
                        break;
                n -= len + 1;
                p = sp + 1;
        }
        if (c->n_sigs == 0)
                return fail(c, KNOCK_VERIFY_E_MISMATCH, "no signature matches");

        parts[0] = id;
        parts[1] = (span){".", 1};
        parts[2] = ts;
        parts[3] = (span){".", 1};
        parts[4] = (span){(const char *)c->req->body, c->req->body_len};
        r = match_any(c, KNOCK_HMAC_SHA256, parts, 5);
        if (r < 0)
                return r;
        return r ? 0 : fail(c, KNOCK_VERIFY_E_MISMATCH, "no signature matches");
}

/* The configured public URL with the request's query appended (replacing any query in
 * the option), so Twilio's bodySHA256 and HubSpot's parameters are the ones received. */
static int public_url(vctx *c, char **ret)
{
        const char *u = c->cfg->url;
        span q = request_query(c->req);
        size_t base;

        if (!u)
                return fail(c, KNOCK_VERIFY_E_MISMATCH, "url option not set");
        base = strcspn(u, "?#");
        if (q.n == 0 && u[base] == '?')
                base = strcspn(u, "#");
        if (asprintf(ret, "%.*s%s%.*s", (int)base, u, q.n ? "?" : "", (int)q.n, q.p) < 0)
                return -ENOMEM;
        return 0;
}

/* twilio-node's validateRequest tries the URL with and without the scheme's default
 * port. Writes the other form into *ret, or NULL when it cannot be derived. */
static int url_port_variant(const char *url, char **ret)
{
        const char *auth, *end, *at, *colon, *host_end;
        const char *port = NULL;

        *ret = NULL;
        if (startswith(url, "https://"))
                port = "443";
        else if (startswith(url, "http://"))
                port = "80";
        else
                return 0;
        auth = strstr(url, "://") + 3;
        end = auth + strcspn(auth, "/?#");
        at = memrchr(auth, '@', (size_t)(end - auth));
        if (at)
                auth = at + 1;
        host_end = *auth == '[' ? memchr(auth, ']', (size_t)(end - auth)) : auth;
        if (!host_end)
                return 0;
        colon = memchr(host_end, ':', (size_t)(end - host_end));
        if (colon) /* remove ":port" */
                return asprintf(ret, "%.*s%s", (int)(colon - url), url, end) < 0 ? -ENOMEM : 0;
        return asprintf(ret, "%.*s:%s%s", (int)(end - url), url, port, end) < 0 ? -ENOMEM : 0;
}

static int param_cmp(const void *a, const void *b)
{
        const form_param *x = a, *y = b;
        int r = strcmp(x->name, y->name);
        return r ? r : strcmp(x->value, y->value);
}

/* Twilio: base64(HMAC-SHA1(url + name1 + value1 + …)) with form params sorted by name
 * (values of a repeated name sorted too). A JSON body is not in the params: the URL
 * carries bodySHA256 = hex SHA-256 of the body, which must match as well. */
static int verify_twilio(vctx *c)
{
        _cleanup_free_ char *url = NULL, *alt = NULL, *body_sha = NULL;
        _cleanup_free_ span *parts = NULL;
        form_param *f = NULL;
        form q;
        size_t nf = 0, np = 0;
        span query;
        const char *hv;
        int r;

        r = one_header(c, c->s->sig_header, NULL, &hv);
        if (r)
                return r;
        if (!add_sig(c, span_trim(hv, strlen(hv)), KNOCK_ENC_BASE64, KNOCK_KEY_SHARED))
                return fail(c, KNOCK_VERIFY_E_MALFORMED, "malformed X-Twilio-Signature header");
        r = public_url(c, &url);
        if (r)
                return r;

        query = request_query(c->req);
        r = form_parse(query.p, query.n, &q);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return fail(c, KNOCK_VERIFY_E_MALFORMED, "malformed query string");
        for (size_t i = 0; i < q.n && !body_sha; i++)
                if (streq(q.p[i].name, "bodySHA256")) {
                        body_sha = strdup(q.p[i].value);
                        if (!body_sha) {
                                form_free(&q);
                                return -ENOMEM;
                        }
                }
        form_free(&q);

        if (!body_sha && c->req->body_len > 0) {
                r = body_form(c, &f, &nf);
                if (r < 0)
                        return r;
                if (r == 0)
                        return fail(c, KNOCK_VERIFY_E_MALFORMED, "malformed form body");
                /* Metadata was read already; the cached list may be reordered now. A form
                 * of empty segments ("&") has no list at all: qsort() must not see NULL. */
                if (nf > 1)
                        qsort(f, nf, sizeof(*f), param_cmp);
        }
        parts = calloc(1 + 2 * nf, sizeof(span));
        if (!parts)
                return -ENOMEM;
        parts[np++] = (span){url, strlen(url)};
        for (size_t i = 0; i < nf; i++) {
                parts[np++] = (span){f[i].name, strlen(f[i].name)};
                parts[np++] = (span){f[i].value, strlen(f[i].value)};
        }

        r = match_any(c, KNOCK_HMAC_SHA1, parts, np);
        if (r == 0) {
                r = url_port_variant(url, &alt);
                if (r == 0 && alt) {
                        parts[0] = (span){alt, strlen(alt)};
                        r = match_any(c, KNOCK_HMAC_SHA1, parts, np);
                }
        }
        if (r < 0)
                return r;
        if (r == 0)
                return fail(c, KNOCK_VERIFY_E_MISMATCH, "no signature matches");

        if (body_sha) {
                unsigned char want[32], got[32];
                size_t wn;

                if (hex_decode(body_sha, strlen(body_sha), want, sizeof(want), &wn) < 0 ||
                        wn != sizeof(want))
                        return fail(c, KNOCK_VERIFY_E_MALFORMED, "malformed bodySHA256");
                if (EVP_Digest(c->req->body, c->req->body_len, got, NULL, EVP_sha256(), NULL) != 1)
                        return -EIO;
                if (CRYPTO_memcmp(want, got, sizeof(got)) != 0)
                        return fail(c, KNOCK_VERIFY_E_MISMATCH, "bodySHA256 does not match body");
        }
        return 0;
}

/* HubSpot v3: method + URI + body + timestamp; the URI has %3A %2F %3F %40 %21 %24 %27
 * %28 %29 %2A %2C %3B decoded (developers.hubspot.com "Validating requests"). */
static int verify_hubspot(vctx *c)
{
        static const char decoded[] = ":/?@!$'()*,;";
        _cleanup_free_ char *url = NULL;
        const char *hv, *tv;
        span parts[4], ts;
        size_t o = 0;
        int r;

        r = one_header(c, c->s->sig_header, NULL, &hv);
        if (r)
                return r;
        r = one_header(c, c->s->ts_header, NULL, &tv);
        if (r)
                return r;
        ts = span_trim(tv, strlen(tv));
        r = check_timestamp(c, ts, TS_UNIX_MS, "timestamp header");
        if (r)
                return r;
        if (!add_sig(c, span_trim(hv, strlen(hv)), KNOCK_ENC_BASE64, KNOCK_KEY_SHARED))
                return fail(c, KNOCK_VERIFY_E_MALFORMED, "malformed %s header", c->s->sig_header);
        r = public_url(c, &url);
        if (r)
                return r;
        for (size_t i = 0; url[i]; i++) {
                int hi = url[i] == '%' ? unhexchar(url[i + 1]) : -1;
                int lo = hi >= 0 ? unhexchar(url[i + 2]) : -1;
                char ch = hi >= 0 && lo >= 0 ? (char)(hi << 4 | lo) : 0;

                if (ch && strchr(decoded, ch)) {
                        url[o++] = ch;
                        i += 2;
                } else
                        url[o++] = url[i];
        }
        url[o] = 0;

        parts[0] = (span){c->req->method ? c->req->method : "POST",
                strlen(c->req->method ? c->req->method : "POST")};
        parts[1] = (span){url, o};
        parts[2] = (span){(const char *)c->req->body, c->req->body_len};
        parts[3] = ts;
        r = match_any(c, KNOCK_HMAC_SHA256, parts, 4);
        if (r < 0)
                return r;
        return r ? 0 : fail(c, KNOCK_VERIFY_E_MISMATCH, "no signature matches");
}

/* Token, Basic and Bearer: the presented credential equals a secret. */
static bool credential_matches(vctx *c, const unsigned char *cred, size_t n)
{
        bool found = false;

        for (size_t k = 0; k < c->cfg->n_secrets; k++) {
                const knock_secret *key = &c->cfg->secrets[k];
                if (key->kind == KNOCK_KEY_SHARED && key->len == n &&
                        CRYPTO_memcmp(key->data, cred, n) == 0)
                        found = true;
        }
        return found;
}

static int verify_credential(vctx *c)
{
        const knock_verify_config *cfg = c->cfg;
        const char *name, *hv;
        span v;
        int r;

        if (c->s->family == FAM_TOKEN)
                name = c->s->sig_header ? c->s->sig_header
                       : cfg->header    ? cfg->header
                                        : DEFAULT_TOKEN_HEADER;
        else
                name = "Authorization";
        r = one_header(c, name, NULL, &hv);
        if (r)
                return r;
        v = span_trim(hv, strlen(hv));

        if (c->s->family == FAM_TOKEN)
                return credential_matches(c, (const unsigned char *)v.p, v.n)
                               ? 0
                               : fail(c, KNOCK_VERIFY_E_MISMATCH, "token does not match");

        const char *scheme_name = c->s->family == FAM_BASIC ? "Basic" : "Bearer";
        size_t sl = strlen(scheme_name);
        if (v.n <= sl || strncasecmp(v.p, scheme_name, sl) != 0 ||
                (v.p[sl] != ' ' && v.p[sl] != '\t'))
                return fail(c, KNOCK_VERIFY_E_MALFORMED, "Authorization is not %s", scheme_name);
        v = span_trim(v.p + sl, v.n - sl);
        if (c->s->family == FAM_BEARER)
                return credential_matches(c, (const unsigned char *)v.p, v.n)
                               ? 0
                               : fail(c, KNOCK_VERIFY_E_MISMATCH, "credentials do not match");

        _cleanup_free_ unsigned char *dec = malloc(v.n + 1);
        size_t dn = 0;
        bool ok;

        if (!dec)
                return -ENOMEM;
        if (v.n == 0 || base64_decode(v.p, v.n, dec, v.n, &dn) < 0)
                return fail(c, KNOCK_VERIFY_E_MALFORMED, "malformed Basic credentials");
        ok = credential_matches(c, dec, dn);
        OPENSSL_cleanse(dec, v.n);
        return ok ? 0 : fail(c, KNOCK_VERIFY_E_MISMATCH, "credentials do not match");
}

/* ---- handshakes (rule 10: only after verification) ----------------------------------------- */

static int set_handshake(knock_verify_result *res, int status, const char *ctype, const char *body)
{
        res->handshake_content_type = ctype ? strdup(ctype) : NULL;
        res->handshake_body = strdup(body);
        if ((ctype && !res->handshake_content_type) || !res->handshake_body)
                return -ENOMEM;
        res->handshake = true;
        res->handshake_status = status;
        return 0;
}

/* Slack url_verification: answer the challenge as text/plain (api.slack.com/events/
 * url_verification). Discord: PING (type 1) → {"type":1}; webhook-event PING (type 0)
 * → 204 with no body. */
static int detect_handshake(vctx *c, knock_provider p)
{
        _cleanup_free_ char *challenge = NULL;
        span type, v;
        int r;

        if (p != KNOCK_PROVIDER_SLACK && p != KNOCK_PROVIDER_DISCORD)
                return 0;
        if (!body_lookup(c, "/type", &type)) /* found only in an object */
                return 0;
        if (p == KNOCK_PROVIDER_SLACK) {
                if (!span_eq(type, "\"url_verification\"") || !body_lookup(c, "/challenge", &v) ||
                        v.p[0] != '"')
                        return 0;
                r = json_text(v, &challenge);
                if (r < 0)
                        return r;
                if (!challenge || strlen(challenge) > MAX_CHALLENGE)
                        return 0;
                return set_handshake(c->res, 200, "text/plain", challenge);
        }
        if (span_eq(type, "1") && !body_lookup(c, "/event", &v))
                return set_handshake(c->res, 200, "application/json", "{\"type\":1}");
        if (span_eq(type, "0") && body_lookup(c, "/application_id", &v))
                return set_handshake(c->res, 204, NULL, "");
        return 0;
}

/* Meta's subscription check: GET ?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…
 * is authentic when the token equals the verify_token option; the challenge is echoed. */
static int verify_meta_get(vctx *c)
{
        _cleanup_free_ char *mode = NULL, *token = NULL, *challenge = NULL;
        form q;
        span query = request_query(c->req);
        bool ok;
        int r;

        r = form_parse(query.p, query.n, &q);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return fail(c, KNOCK_VERIFY_E_MALFORMED, "malformed query string");
        for (size_t i = 0; i < q.n; i++) {
                char **slot = streq(q.p[i].name, "hub.mode")           ? &mode
                              : streq(q.p[i].name, "hub.verify_token") ? &token
                              : streq(q.p[i].name, "hub.challenge")    ? &challenge
                                                                       : NULL;
                if (slot && !*slot && !(*slot = strdup(q.p[i].value))) {
                        form_free(&q);
                        return -ENOMEM;
                }
        }
        form_free(&q);
        if (!mode || !token || !challenge)
                return fail(c, KNOCK_VERIFY_E_MISSING, "missing hub.* parameters");
        if (!streq(mode, "subscribe") || strlen(challenge) > MAX_CHALLENGE)
                return fail(c, KNOCK_VERIFY_E_MALFORMED, "malformed hub.* parameters");
        if (!c->cfg->verify_token)
                return fail(c, KNOCK_VERIFY_E_MISMATCH, "verify_token option not set");
        ok = strlen(token) == strlen(c->cfg->verify_token) &&
             CRYPTO_memcmp(token, c->cfg->verify_token, strlen(token)) == 0;
        if (!ok)
                return fail(c, KNOCK_VERIFY_E_MISMATCH, "hub.verify_token does not match");
        return set_handshake(c->res, 200, "text/plain", challenge);
}

/* ---- entry points -------------------------------------------------------------------------- */

int verify_request(
        const knock_verify_config *cfg, const knock_request *req, knock_verify_result *result)
{
        scheme hmac_scheme;
        vctx c = {
                .cfg = cfg,
                .req = req,
                .res = result,
        };
        int r;

        *result = (knock_verify_result){};
        if (!cfg || cfg->provider < 0 || cfg->provider >= _KNOCK_PROVIDER_MAX)
                return -EINVAL;
        c.s = &providers[cfg->provider].s;

        if (cfg->provider == KNOCK_PROVIDER_HMAC) {
                /* The generic scheme is a simple one built from the endpoint's options. */
                hmac_scheme = *c.s;
                hmac_scheme.sig_header = cfg->header;
                hmac_scheme.prefix = cfg->prefix && *cfg->prefix ? cfg->prefix : NULL;
                hmac_scheme.alg = cfg->algorithm;
                hmac_scheme.enc = cfg->encoding;
                if (cfg->timestamp_header) {
                        hmac_scheme.ts_header = cfg->timestamp_header;
                        hmac_scheme.ts = TS_UNIX_S;
                        hmac_scheme.tolerance_ms = S(300);
                        hmac_scheme.future = true;
                        hmac_scheme.msg_mid = ".";
                }
                c.s = &hmac_scheme;
        }
        c.tolerance_ms = cfg->tolerance_ms >= 0 ? cfg->tolerance_ms : c.s->tolerance_ms;

        /* Every JSON value this request may read, so the body is scanned once. */
        want_sources(&c, cfg->dedupe, c.s->dedupe, ELEMENTSOF(c.s->dedupe));
        want_sources(&c, cfg->type, c.s->type, ELEMENTSOF(c.s->type));
        if (!cfg->type)
                want_sources(&c, NULL, &c.s->type_suffix, 1);
        if (c.s->body_ts)
                json_want(&c, c.s->body_ts);
        if (cfg->provider == KNOCK_PROVIDER_SLACK || cfg->provider == KNOCK_PROVIDER_DISCORD) {
                json_want(&c, "/type");
                json_want(&c, cfg->provider == KNOCK_PROVIDER_SLACK ? "/challenge" : "/event");
                if (cfg->provider == KNOCK_PROVIDER_DISCORD)
                        json_want(&c, "/application_id");
        }

        r = extract_metadata(&c);
        if (r < 0)
                goto finish;

        if (cfg->provider == KNOCK_PROVIDER_META && req->method && streq(req->method, "GET")) {
                r = verify_meta_get(&c);
                goto finish;
        }

        switch (c.s->family) {
        case FAM_NONE:
                r = cfg->allow_unverified ? 0
                                          : fail(&c, KNOCK_VERIFY_E_UNVERIFIED,
                                                    "provider none without allow_unverified");
                break;
        case FAM_SIMPLE:
                r = c.s->layout == MSG_HUBSPOT ? verify_hubspot(&c) : verify_simple(&c);
                break;
        case FAM_TS_LIST:
                r = verify_ts_list(&c);
                break;
        case FAM_STANDARD:
                r = verify_standard(&c);
                break;
        case FAM_TWILIO:
                r = verify_twilio(&c);
                break;
        case FAM_TOKEN:
        case FAM_BASIC:
        case FAM_BEARER:
                r = verify_credential(&c);
                break;
        default:
                r = -EINVAL;
        }
        if (r == 0)
                r = detect_handshake(&c, cfg->provider);
finish:
        form_free(&c.form);
        OPENSSL_cleanse(c.sigs, c.n_sigs * sizeof(c.sigs[0]));
        if (r == 0)
                result->reason[0] = 0;
        else if (r > 0 && !result->reason[0])
                snprintf(result->reason, sizeof(result->reason), "not verified");
        if (r != 0 && result->handshake) {
                free(result->handshake_body);
                free(result->handshake_content_type);
                result->handshake_body = result->handshake_content_type = NULL;
                result->handshake = false;
                result->handshake_status = 0;
        }
        return r;
}

void verify_result_clear(knock_verify_result *r)
{
        if (!r)
                return;
        free(r->provider_event_id);
        free(r->event_type);
        free(r->handshake_content_type);
        free(r->handshake_body);
        *r = (knock_verify_result){};
}

static void secret_wipe(knock_secret *s)
{
        EVP_PKEY_free(s->pkey);
        if (s->data) {
                OPENSSL_cleanse(s->data, s->len);
                free(s->data);
        }
        *s = (knock_secret){};
}

void verify_secret_clear(knock_secret *s)
{
        if (s)
                secret_wipe(s);
}

void verify_config_clear(knock_verify_config *c)
{
        if (!c)
                return;
        for (size_t i = 0; i < c->n_secrets; i++)
                secret_wipe(&c->secrets[i]);
        free(c->secrets);
        free(c->url);
        free(c->header);
        free(c->prefix);
        free(c->timestamp_header);
        free(c->dedupe);
        free(c->type);
        secret_free(c->verify_token);
        *c = (knock_verify_config){.tolerance_ms = -1};
}

/* base64 text into a fresh buffer; whitespace (PEM-style line breaks) is skipped. */
static int b64_to_bytes(const char *text, unsigned char **ret, size_t *ret_len)
{
        _cleanup_free_ char *clean = malloc(strlen(text) + 1);
        _cleanup_free_ unsigned char *out = NULL;
        size_t n = 0, on;

        if (!clean)
                return -ENOMEM;
        for (const char *p = text; *p; p++)
                if (!isspace((unsigned char)*p))
                        clean[n++] = *p;
        if (n == 0)
                return -EINVAL;
        out = malloc(n);
        if (!out)
                return -ENOMEM;
        if (base64_decode(clean, n, out, n, &on) < 0 || on == 0) {
                OPENSSL_cleanse(out, n);
                return -EINVAL;
        }
        *ret = TAKE_PTR(out);
        *ret_len = on;
        return 0;
}

/* SendGrid shows its key as base64 DER; a PEM file is accepted too. The key must be an
 * EC P-256 key; it is kept as DER SubjectPublicKeyInfo. */
static int sendgrid_key(const char *text, knock_secret *ret)
{
        _cleanup_free_ unsigned char *der = NULL;
        EVP_PKEY *pkey = NULL;
        size_t n = 0;
        char group[32] = "";
        int r;

        if (strstr(text, "-----BEGIN")) {
                BIO *bio = BIO_new_mem_buf(text, -1);
                unsigned char *p = NULL;
                int len;

                if (!bio)
                        return -ENOMEM;
                pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
                BIO_free(bio);
                if (!pkey)
                        return -EINVAL;
                len = i2d_PUBKEY(pkey, &p);
                if (len <= 0) {
                        EVP_PKEY_free(pkey);
                        return -EINVAL;
                }
                der = malloc((size_t)len);
                if (der)
                        memcpy(der, p, (size_t)len);
                OPENSSL_free(p);
                n = (size_t)len;
                if (!der) {
                        EVP_PKEY_free(pkey);
                        return -ENOMEM;
                }
        } else {
                const unsigned char *p;

                r = b64_to_bytes(text, &der, &n);
                if (r < 0)
                        return r;
                p = der;
                pkey = d2i_PUBKEY(NULL, &p, (long)n);
                if (!pkey || p != der + n) {
                        EVP_PKEY_free(pkey);
                        return -EINVAL;
                }
        }
        r = EVP_PKEY_is_a(pkey, "EC") &&
            EVP_PKEY_get_utf8_string_param(
                    pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), NULL) == 1 &&
            streq(group, "prime256v1");
        EVP_PKEY_free(pkey);
        if (!r)
                return -EINVAL;
        ret->data = TAKE_PTR(der);
        ret->len = n;
        ret->kind = KNOCK_KEY_ECDSA_P256;
        return 0;
}

static int secret_from_text(knock_provider p, const char *text, knock_secret *ret)
{
        unsigned char *data = NULL;
        size_t n = 0;
        int r;

        if (!text || !*text || !ret)
                return -EINVAL;
        switch (p) {
        case KNOCK_PROVIDER_STANDARD:
        case KNOCK_PROVIDER_RESEND:
        case KNOCK_PROVIDER_CLERK:
                /* Rule 6: the key is the base64 decoding of what follows "whsec_" (the
                 * prefix is optional, as in the reference libraries); "whpk_" is an
                 * Ed25519 public key for v1a signatures. */
                if (startswith(text, "whpk_")) {
                        r = b64_to_bytes(text + 5, &data, &n);
                        if (r < 0)
                                return r;
                        if (n != 32) {
                                free(data);
                                return -EINVAL;
                        }
                        *ret = (knock_secret){data, n, KNOCK_KEY_ED25519};
                        return 0;
                }
                r = b64_to_bytes(startswith(text, "whsec_") ? text + 6 : text, &data, &n);
                if (r < 0)
                        return r;
                *ret = (knock_secret){data, n, KNOCK_KEY_SHARED};
                return 0;
        case KNOCK_PROVIDER_DISCORD:
                data = malloc(32);
                if (!data)
                        return -ENOMEM;
                if (hex_decode(text, strlen(text), data, 32, &n) < 0 || n != 32) {
                        free(data);
                        return -EINVAL;
                }
                *ret = (knock_secret){data, n, KNOCK_KEY_ED25519};
                return 0;
        case KNOCK_PROVIDER_SENDGRID:
                return sendgrid_key(text, ret);
        default:
                /* Everything else, stripe's own "whsec_…" included: the bytes as written. */
                if (p < 0 || p >= _KNOCK_PROVIDER_MAX)
                        return -EINVAL;
                n = strlen(text);
                data = malloc(n);
                if (!data)
                        return -ENOMEM;
                memcpy(data, text, n);
                *ret = (knock_secret){data, n, KNOCK_KEY_SHARED};
                return 0;
        }
}

int verify_secret_from_text(knock_provider p, const char *text, knock_secret *ret)
{
        knock_secret k = {};
        int r;

        if (!ret)
                return -EINVAL;
        r = secret_from_text(p, text, &k);
        if (r < 0)
                return r;
        if (k.kind != KNOCK_KEY_SHARED) {
                k.pkey = parse_pkey(k.kind, k.data, k.len);
                if (!k.pkey) {
                        secret_wipe(&k);
                        return -EINVAL;
                }
        }
        *ret = k;
        return 0;
}

int standard_sign(const knock_secret *key, const char *id, const char *ts,
        const unsigned char *body, size_t len, char *out, size_t out_len)
{
        unsigned char mac[EVP_MAX_MD_SIZE];
        size_t mac_len = 0;
        span parts[5] = {
                {id, strlen(id)},
                {".", 1},
                {ts, strlen(ts)},
                {".", 1},
                {(const char *)body, len},
        };
        int r;

        if (!key || !key->data || key->kind != KNOCK_KEY_SHARED)
                return -EINVAL;
        if (out_len < 3 + 4 * ((32 + 2) / 3) + 1)
                return -ENOBUFS;
        r = hmac_parts(KNOCK_HMAC_SHA256, key->data, key->len, parts, 5, mac, &mac_len);
        if (r < 0)
                return r;
        memcpy(out, "v1,", 3);
        base64_encode(mac, mac_len, out + 3);
        OPENSSL_cleanse(mac, sizeof(mac));
        return 0;
}
