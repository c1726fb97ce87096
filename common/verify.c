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
 *    not JSON yields no id and no type, never an error (verify-meta.c);
 *  - public keys (discord, sendgrid, standard v1a) are parsed once, when the
 *    secret is read, and shared read-only by every request (keys.c, which
 *    also computes the MACs; the row's key_text names the secret's rule);
 *  - reasons name what was wrong ("missing Stripe-Signature header"), never a
 *    secret, a signature or a body byte.
 *
 * Sources for each scheme are named beside its table row. The types of the
 * table and of the per-request context are in verify-internal.h.
 */

#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "verify-internal.h"

#define DEFAULT_TOKEN_HEADER "X-Knock-Token"

/* ---- the provider table ------------------------------------------------------------------ */

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
                .family = FAM_STANDARD, .key_text = KEY_TEXT_STANDARD,
                .tolerance_ms = S(300), .future = true,
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
                .family = FAM_STANDARD, .key_text = KEY_TEXT_STANDARD,
                .tolerance_ms = S(300), .future = true,
                .dedupe = { "header:svix-id", "header:webhook-id" }, .type = { "json:/type" } } },
        [KNOCK_PROVIDER_CLERK] = { "clerk", {
                .family = FAM_STANDARD, .key_text = KEY_TEXT_STANDARD,
                .tolerance_ms = S(300), .future = true,
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
                .key = KNOCK_KEY_ECDSA_P256, .key_text = KEY_TEXT_EC_P256,
                .dedupe = { "json:/0/sg_event_id" }, .type = { "json:/0/event" } } },
        /* discord.com/developers/docs/interactions/overview "Security and authorization";
         * Discord itself makes no tolerance check, knock adds one. */
        [KNOCK_PROVIDER_DISCORD] = { "discord", {
                .family = FAM_SIMPLE, .sig_header = "X-Signature-Ed25519",
                .ts_header = "X-Signature-Timestamp", .ts = TS_UNIX_S,
                .tolerance_ms = S(300), .future = true, .key = KNOCK_KEY_ED25519,
                .key_text = KEY_TEXT_ED25519_HEX,
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

/* ---- the request ------------------------------------------------------------------------- */

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
                unsigned char mac[KEY_MAC_MAX];
                size_t mac_len = 0;
                bool have_mac = false;
                int r;

                for (size_t i = 0; i < c->n_sigs; i++) {
                        const sig *g = &c->sigs[i];

                        if (g->kind != key->kind)
                                continue;
                        if (key->kind != KNOCK_KEY_SHARED) {
                                r = key_verify_signature(key, parts, n_parts, g->b, g->n);
                                if (r < 0)
                                        return r;
                                found |= r;
                                continue;
                        }
                        if (!have_mac) {
                                r = key_hmac(
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
        meta_want(&c);
        r = meta_extract(&c);
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
                r = meta_handshake(&c);
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

void verify_config_clear(knock_verify_config *c)
{
        if (!c)
                return;
        for (size_t i = 0; i < c->n_secrets; i++)
                verify_secret_clear(&c->secrets[i]);
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

int verify_secret_from_text(knock_provider p, const char *text, knock_secret *ret)
{
        if (p < 0 || p >= _KNOCK_PROVIDER_MAX)
                return -EINVAL;
        return key_from_text(providers[p].s.key_text, text, ret);
}
