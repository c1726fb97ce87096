/* SPDX-License-Identifier: MIT */
/*
 * fuzz-verify — verify_request() over every provider, as knock-ingress calls it.
 *
 * An input is a request in a small text form (tests/fuzz/verify/ holds one
 * that verifies per provider, made by gen-verify-seeds.py):
 *
 *     PROVIDER [now=MS] [tolerance=MS] [url=U] [header=H] [prefix=P]
 *              [algorithm=A] [encoding=E] [timestamp_header=T] [dedupe=D]
 *              [type=T] [verify_token=V] [allow_unverified=1]
 *     METHOD URI
 *     Name: value            (any number of header lines)
 *                            (an empty line)
 *     body bytes             (to the end; no empty line: no body at all)
 *
 * Each provider's configuration is made once, with a known secret (a
 * published vector's where there is one; the RFC 8032 and RFC 6979 test keys
 * for Ed25519 and ECDSA P-256), so mutations of a seed reach both the valid
 * and the invalid paths. The options on the first line are the endpoint
 * options of knock-endpoint(5).
 *
 * Beyond what ASan and UBSan catch, it aborts when verify_request() breaks
 * its contract: a negative errno (nothing a client sends is fatal), a result
 * without a reason or a reason on success, a handshake that did not verify,
 * or a reason that holds a secret the input did not. With KNOCK_FUZZ_EXPECT=verified it also
 * aborts when an input does not verify (the fuzz-verify-seeds test).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "verify.h"

#define MAX_HEADERS 64
#define DEFAULT_NOW_MS 1700000000000LL

/* One row per provider: the secrets its configuration holds. */
static const char *const secret_texts[_KNOCK_PROVIDER_MAX][2] = {
        [KNOCK_PROVIDER_STRIPE] = {"whsec_fuzz_stripe"},
        [KNOCK_PROVIDER_GITHUB] = {"It's a Secret to Everybody"},
        [KNOCK_PROVIDER_STANDARD] = {"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="},
        [KNOCK_PROVIDER_SHOPIFY] = {"test_secret_key"},
        [KNOCK_PROVIDER_SLACK] = {"8f742231b10e8888abcd99yyyzzz85a5"},
        [KNOCK_PROVIDER_HMAC] = {"fuzz-hmac-secret"},
        [KNOCK_PROVIDER_TOKEN] = {"fuzz-token"},
        [KNOCK_PROVIDER_BASIC] = {"user:pa ss"},
        [KNOCK_PROVIDER_BEARER] = {"fuzz-bearer"},
        [KNOCK_PROVIDER_TWILIO] = {"12345"},
        [KNOCK_PROVIDER_PADDLE] = {"VALID_SECRET"},
        [KNOCK_PROVIDER_LINEAR] = {"lin_wh_fuzz"},
        [KNOCK_PROVIDER_POSTMARK] = {"pm:hook"},
        [KNOCK_PROVIDER_RESEND] = {"whsec_c2VjcmV0LWtleS1mb3ItcmVzZW5k"},
        [KNOCK_PROVIDER_CLERK] = {"whsec_c2VjcmV0LWtleS1mb3ItcmVzZW5k",
                "whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="},
        [KNOCK_PROVIDER_LEMONSQUEEZY] = {"lsq-fuzz"},
        [KNOCK_PROVIDER_META] = {"meta-app-secret"},
        [KNOCK_PROVIDER_INTERCOM] = {"intercom-fuzz"},
        [KNOCK_PROVIDER_ZENDESK] = {"dGhpc19zZWNyZXQ="},
        [KNOCK_PROVIDER_HUBSPOT] = {"hs-client-secret"},
        [KNOCK_PROVIDER_SENDGRID] =
                {"MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEYP7UuiVanTHJYet0xjVtaMBJuJI7"
                 "Yfps5mliLmDyn7Z5A/4QCLi8maQa6elWKLxk8vGyDC1+n1F3o8KU1EYimQ=="},
        [KNOCK_PROVIDER_DISCORD] =
                {"d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"},
        [KNOCK_PROVIDER_GITLAB] = {"gl-token"},
};

static knock_verify_config configs[_KNOCK_PROVIDER_MAX];
static bool expect_verified;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        const char *e = getenv("KNOCK_FUZZ_EXPECT");

        expect_verified = e && streq(e, "verified");
        for (int p = 0; p < _KNOCK_PROVIDER_MAX; p++) {
                knock_verify_config *c = &configs[p];

                *c = (knock_verify_config){.provider = p, .tolerance_ms = -1};
                c->secrets = calloc(2, sizeof(knock_secret));
                if (!c->secrets)
                        abort();
                for (size_t i = 0; i < 2 && secret_texts[p][i]; i++)
                        if (verify_secret_from_text(
                                    p, secret_texts[p][i], &c->secrets[c->n_secrets++]) < 0) {
                                fprintf(stderr, "fuzz-verify: bad test secret for %s\n",
                                        provider_to_string(p));
                                abort();
                        }
        }
        return 0;
}

/* Cuts the line at *p (up to '\n' or end) in place; NULL at the end of the text. */
static char *next_line(char **p, char *end)
{
        char *line = *p, *nl;

        if (line >= end)
                return NULL;
        nl = memchr(line, '\n', (size_t)(end - line));
        if (!nl)
                nl = end;
        *nl = 0;
        *p = nl + 1;
        return line;
}

/* "key=value" words of the first line into a copy of the provider's configuration. */
static bool apply_option(knock_verify_config *c, int64_t *now, char *word)
{
        char *v = strchr(word, '=');
        long long n;

        if (!v)
                return false;
        *v++ = 0;
        if (streq(word, "now") || streq(word, "tolerance")) {
                n = strtoll(v, NULL, 10);
                if (streq(word, "now"))
                        *now = n;
                else
                        c->tolerance_ms = n < 0 ? -1 : n;
        } else if (streq(word, "url"))
                c->url = v;
        else if (streq(word, "header"))
                c->header = v;
        else if (streq(word, "prefix"))
                c->prefix = v;
        else if (streq(word, "timestamp_header"))
                c->timestamp_header = v;
        else if (streq(word, "dedupe"))
                c->dedupe = v;
        else if (streq(word, "type"))
                c->type = v;
        else if (streq(word, "verify_token"))
                c->verify_token = v;
        else if (streq(word, "algorithm"))
                c->algorithm = streq(v, "sha512") ? KNOCK_HMAC_SHA512
                               : streq(v, "sha1") ? KNOCK_HMAC_SHA1
                                                  : KNOCK_HMAC_SHA256;
        else if (streq(word, "encoding"))
                c->encoding = streq(v, "base64") ? KNOCK_ENC_BASE64 : KNOCK_ENC_HEX;
        else if (streq(word, "allow_unverified"))
                c->allow_unverified = streq(v, "1");
        else
                return false;
        return true;
}

/* The contract every result keeps, whatever the request. */
static void check_result(const knock_verify_config *c, int r, const knock_verify_result *res,
        const unsigned char *data, size_t size)
{
        size_t rl = strnlen(res->reason, sizeof(res->reason));

        if (r < 0 || rl == sizeof(res->reason) || (r == 0) != (rl == 0) ||
                (r != 0 && res->handshake) || (res->handshake && !res->handshake_body)) {
                fprintf(stderr, "fuzz-verify: broken result %d '%.*s' handshake %d\n", r,
                        (int)sizeof(res->reason), res->reason, res->handshake);
                abort();
        }
        for (size_t i = 0; i < c->n_secrets; i++) {
                const knock_secret *k = &c->secrets[i];

                /* The fuzzer learns secrets from the comparisons it sees; one that the
                 * input itself holds (in an option that names a header, say) is no leak. */
                if (k->len >= 4 && memmem(res->reason, rl, k->data, k->len) &&
                        !memmem(data, size, k->data, k->len)) {
                        fprintf(stderr, "fuzz-verify: a secret in the reason\n");
                        abort();
                }
        }
        if (expect_verified && r != 0) {
                fprintf(stderr, "fuzz-verify: expected to verify, got %d: %s\n", r, res->reason);
                abort();
        }
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
        _cleanup_free_ char *text = malloc(size + 1);
        _cleanup_free_ unsigned char *body = NULL;
        knock_header headers[MAX_HEADERS];
        knock_verify_config cfg;
        knock_verify_result res;
        knock_request req = {};
        int64_t now = DEFAULT_NOW_MS;
        char *p, *end, *line, *word, *save = NULL;
        knock_provider provider;
        bool has_body = false;
        int r;

        if (!text)
                abort();
        memcpy(text, data, size);
        text[size] = 0;
        p = text;
        end = text + size;

        line = next_line(&p, end);
        word = line ? strtok_r(line, " ", &save) : NULL;
        provider = provider_from_string(word);
        if (provider == KNOCK_PROVIDER_INVALID)
                return -1; /* not worth keeping in the corpus */
        cfg = configs[provider];
        while ((word = strtok_r(NULL, " ", &save)))
                if (!apply_option(&cfg, &now, word))
                        return -1;

        line = next_line(&p, end);
        if (!line)
                return -1;
        req.method = strtok_r(line, " ", &save);
        req.uri = strtok_r(NULL, "", &save);
        if (!req.method)
                req.method = "POST";
        if (!req.uri)
                req.uri = "/";

        while ((line = next_line(&p, end))) {
                char *colon;

                if (!*line) {
                        has_body = true;
                        break;
                }
                if (req.n_headers == MAX_HEADERS)
                        return -1;
                colon = strchr(line, ':');
                if (colon) {
                        *colon++ = 0;
                        colon += *colon == ' ';
                }
                headers[req.n_headers++] = (knock_header){line, colon ? colon : ""};
        }
        req.headers = headers;
        if (has_body) {
                /* An allocation of exactly the body's size, so ASan sees any read past it. */
                req.body_len = (size_t)(end - MIN(p, end));
                body = malloc(req.body_len);
                if (!body)
                        abort();
                if (req.body_len > 0)
                        memcpy(body, p, req.body_len);
                req.body = body;
        }
        req.now_ms = now;

        r = verify_request(&cfg, &req, &res);
        check_result(&cfg, r, &res, data, size);
        verify_result_clear(&res);
        return 0;
}
