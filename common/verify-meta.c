/* SPDX-License-Identifier: MIT */
/*
 * verify-meta — what a request says it is, whether or not it verifies: its
 * dedupe id and event type (rule 8: read before verification, so a rejected
 * delivery still records what it claimed to be), and after verification a
 * handshake (rule 10: Slack's url_verification, Discord's PINGs).
 *
 * Promises:
 *  - a source is "header:NAME", "json:/pointer" or "form:NAME"; an endpoint
 *    option replaces the provider's list, otherwise the first source found
 *    wins; a value that is empty or longer than MAX_META is absent, never
 *    truncated;
 *  - the JSON body is scanned once for every value the request needs
 *    (meta_want registers them first; jsonscan.h), the form body parsed
 *    once (form.h); a body that is neither yields no id and no type, never
 *    an error;
 *  - a handshake answer is built only from a verified body, and a challenge
 *    longer than MAX_CHALLENGE is no handshake; Meta's GET subscription
 *    check is the one handshake that is its own verification (its token is
 *    compared in constant time).
 *
 * Only verify.c calls in here (verify-internal.h).
 */
#include <openssl/crypto.h>

#include "verify-internal.h"

/* ---- the body, read once --------------------------------------------------------------------- */

/* JSON bodies are read with jsonscan (every pointer the request needs in one pass),
 * form bodies with form. */

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
bool body_lookup(vctx *c, const char *ptr, span *ret)
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

/* A JSON value's text when it is a string or an integer (decoded); *ret NULL for
 * anything else. */
static int json_value_to_text(span v, char **ret)
{
        return json_scan_text((json_span){v.p, v.n}, MAX_META, ret);
}

/* The body's value at ptr as text, or NULL. */
static int body_text(vctx *c, const char *ptr, char **ret)
{
        span v;

        *ret = NULL;
        return body_lookup(c, ptr, &v) ? json_value_to_text(v, ret) : 0;
}

/* The body as form parameters, parsed once per request. Returns 1 with the list, 0 when
 * the body is not a form, or -ENOMEM. */
int body_form(vctx *c, form_param **ret, size_t *ret_n)
{
        if (c->form_state == 0) {
                int r = c->req->body
                                ? form_parse((const char *)c->req->body, c->req->body_len, &c->form)
                                : -EINVAL;
                if (r == -ENOMEM)
                        return r;
                c->form_state = r < 0 ? -1 : 1;
        }
        *ret = c->form.p;
        *ret_n = c->form.n;
        return c->form_state > 0;
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

void meta_want(vctx *c)
{
        want_sources(c, c->cfg->dedupe, c->s->dedupe, ELEMENTSOF(c->s->dedupe));
        want_sources(c, c->cfg->type, c->s->type, ELEMENTSOF(c->s->type));
        if (!c->cfg->type)
                want_sources(c, NULL, &c->s->type_suffix, 1);
        if (c->s->body_ts)
                json_want(c, c->s->body_ts);
        /* the handshakes meta_handshake() looks for */
        if (c->cfg->provider == KNOCK_PROVIDER_SLACK) {
                json_want(c, "/type");
                json_want(c, "/challenge");
        } else if (c->cfg->provider == KNOCK_PROVIDER_DISCORD) {
                json_want(c, "/type");
                json_want(c, "/event");
                json_want(c, "/application_id");
        }
}

int meta_extract(vctx *c)
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
int meta_handshake(vctx *c)
{
        knock_provider p = c->cfg->provider;
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
                r = json_value_to_text(v, &challenge);
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
int verify_meta_get(vctx *c)
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
