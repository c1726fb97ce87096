/* SPDX-License-Identifier: MIT */
/*
 * test-probe — probe_request() over raw requests as a provider would send
 * them, against configurations loaded from files: a signed GitHub request
 * is accepted and routed, a tampered one rejected with the verifier's
 * reason, a Stripe signature outside the tolerance rejected as expired, the
 * head checks answer 404/405/413 and the framing 400, a truncated body is
 * incomplete; pasted line endings are read back only when asked, and say so.
 */
#define _GNU_SOURCE
#include <ftw.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "config.h"
#include "probe.h"
#include "tap.h"
#include "util.h"

#define SECRET "probe-secret"
#define NOW 1700000000000LL

static char *root;

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
        return remove(p);
}

static knock_config *load(const char *name, const char *text)
{
        _cleanup_free_ char *path = NULL;
        knock_config_errors e = {};
        knock_config *c = NULL;
        FILE *f;

        if (asprintf(&path, "%s/endpoints/%s.conf", root, name) < 0)
                abort();
        f = fopen(path, "w");
        if (!f)
                abort();
        fputs(text, f);
        fclose(f);
        if (config_load(name, &c, &e) < 0) {
                for (size_t i = 0; i < e.n; i++)
                        printf("# %s\n", e.msgs[i]);
                abort();
        }
        config_errors_clear(&e);
        return c;
}

static void hmac_hex(const char *key, const char *data, size_t len, char out[65])
{
        unsigned char mac[32];
        unsigned int n = 0;

        HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)data, len, mac, &n);
        hex_encode(mac, n, out);
}

/* A GitHub request for body, signed with key; eol ends each head line. */
static char *github(const char *key, const char *body, const char *type, const char *eol)
{
        char sig[65], *s;

        hmac_hex(key, body, strlen(body), sig);
        if (asprintf(&s,
                    "POST /hooks HTTP/1.1%sHost: example%sX-GitHub-Event: %s%s"
                    "X-GitHub-Delivery: d-1%sX-Hub-Signature-256: sha256=%s%s"
                    "Content-Type: application/json%sContent-Length: %zu%s%s%s",
                    eol, eol, type, eol, eol, sig, eol, eol, strlen(body), eol, eol, body) < 0)
                abort();
        return s;
}

static probe_result run(const knock_config *c, const char *raw, unsigned flags)
{
        probe_result r;

        if (probe_request(c, raw, strlen(raw), flags, NOW, &r) < 0)
                abort();
        return r;
}

static void test_github(void)
{
        knock_config *c = load("gh", "[endpoint]\nprovider = github\nsecret = literal:" SECRET "\n"
                                     "listen = 127.0.0.1:1\npath = /hooks\nmax_body = 1K\n"
                                     "[worker]\nhandler = exec:/bin/true\n"
                                     "[route \"push\"]\nhandler = exec:/bin/false\n");
        const char *body = "{\"ref\":\"main\"}";
        _cleanup_free_ char *ok = github(SECRET, body, "push", "\r\n");
        _cleanup_free_ char *lf = github(SECRET, body, "issues", "\n");
        _cleanup_free_ char *wrong = github("another-secret", body, "push", "\r\n");
        _cleanup_free_ char *tampered = strdup(ok), *trailing = NULL, *cut = NULL;
        probe_result r;

        r = run(c, ok, 0);
        ok(r.outcome == PROBE_ACCEPTED && r.status == 200 && !r.reason[0], "signed: accepted, 200");
        is_str(r.provider_event_id, "d-1", "the dedupe id is the delivery header");
        is_str(r.event_type, "push", "the event type");
        ok(r.route && streq(r.route, "push") && streq(r.handler, "exec:/bin/false"),
                "routed by [route \"push\"]");
        ok(r.n_notes == 0 && r.body_len == strlen(body), "no notes, the body's length");
        probe_result_clear(&r);

        tampered[strlen(tampered) - 3] ^= 1;
        r = run(c, tampered, 0);
        ok(r.outcome == PROBE_REJECTED && r.status == 401, "a flipped body byte: rejected, 401");
        ok(strstr(r.reason, "match") != NULL, "the verifier's reason: %s", r.reason);
        is_str(r.provider_event_id, "d-1", "a rejected request still says what it claimed");
        ok(!r.handler && !r.route, "a rejected request is not routed");
        probe_result_clear(&r);

        r = run(c, wrong, 0);
        ok(r.outcome == PROBE_REJECTED && r.status == 401, "another secret: rejected, 401");
        probe_result_clear(&r);

        r = run(c, lf, 0);
        ok(r.outcome == PROBE_REFUSED && r.status == 400, "bare LF without PROBE_LF_HEAD: 400 (%s)",
                r.reason);
        probe_result_clear(&r);
        r = run(c, lf, PROBE_LF_HEAD);
        ok(r.outcome == PROBE_ACCEPTED && r.n_notes == 1 && strstr(r.notes[0], "LF"),
                "bare LF with PROBE_LF_HEAD: accepted, and a note says so");
        ok(streq(r.handler, "exec:/bin/true") && !r.route, "no route for issues: [worker] handler");
        probe_result_clear(&r);

        if (asprintf(&trailing, "%s\n", ok) < 0)
                abort();
        r = run(c, trailing, 0);
        ok(r.outcome == PROBE_ACCEPTED && r.n_notes == 1 && strstr(r.notes[0], "1 byte after"),
                "a trailing newline is not part of the request, and noted");
        probe_result_clear(&r);

        cut = strndup(ok, strlen(ok) - 4);
        r = run(c, cut, 0);
        ok(r.outcome == PROBE_INCOMPLETE && r.status == 0 && strstr(r.reason, "body_timeout"),
                "a truncated body is incomplete");
        probe_result_clear(&r);

        r = run(c, "POST /other HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 0);
        ok(r.outcome == PROBE_REFUSED && r.status == 404, "another path: 404");
        probe_result_clear(&r);
        r = run(c, "PUT /hooks?x=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 0);
        ok(r.outcome == PROBE_REFUSED && r.status == 405, "PUT: 405");
        probe_result_clear(&r);
        r = run(c, "POST /hooks HTTP/1.1\r\nHost: x\r\nContent-Length: 2048\r\n\r\n", 0);
        ok(r.outcome == PROBE_REFUSED && r.status == 413, "Content-Length over max_body: 413");
        ok(streq(probe_stored(&r, false),
                   "a delivery with the reason and no body (within orphan_rate)"),
                "a 413 is stored without its body");
        probe_result_clear(&r);
        r = run(c,
                "POST /hooks HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: "
                "1\r\n\r\nx",
                0);
        ok(r.outcome == PROBE_REFUSED && r.status == 400, "a repeated Content-Length: 400");
        probe_result_clear(&r);
        r = run(c, "POST /hooks HTTP/1.1\r\nHost: x\r\n", 0);
        ok(r.outcome == PROBE_INCOMPLETE && strstr(r.reason, "header_timeout"),
                "a head without its empty line is incomplete");
        probe_result_clear(&r);
        config_free(c);
}

/* Stripe signs "t.body" and bounds t: a request signed an hour before now
 * is rejected, the same one probed at its own time is not. */
static void test_stripe(void)
{
        knock_config *c =
                load("st", "[endpoint]\nprovider = stripe\nsecret = literal:whsec_stripe\n"
                           "listen = 127.0.0.1:1\n");
        const char *body = "{\"id\":\"evt_1\",\r\n\"type\":\"charge.succeeded\"}";
        _cleanup_free_ char *signed_text = NULL, *raw = NULL, *crlf = NULL;
        char sig[65];
        int64_t ts = NOW / 1000 - 3600;
        probe_result r;

        if (asprintf(&signed_text, "%lld.{\"id\":\"evt_1\",\n\"type\":\"charge.succeeded\"}",
                    (long long)ts) < 0)
                abort();
        hmac_hex("whsec_stripe", signed_text, strlen(signed_text), sig);
        /* The body as a browser form sends it: CRLF where the provider sent LF. */
        if (asprintf(&raw,
                    "POST / HTTP/1.1\r\nHost: x\r\nStripe-Signature: t=%lld,v1=%s\r\n"
                    "Content-Length: %zu\r\n\r\n%s",
                    (long long)ts, sig, strlen(body) - 1, body) < 0)
                abort();

        if (probe_request(c, raw, strlen(raw), PROBE_BODY_LF, NOW, &r) < 0)
                abort();
        ok(r.outcome == PROBE_REJECTED && r.status == 401 && strstr(r.reason, "tolerance"),
                "an hour-old Stripe signature: rejected (%s)", r.reason);
        is_str(r.provider_event_id, "evt_1", "the Stripe event id");
        probe_result_clear(&r);

        if (probe_request(c, raw, strlen(raw), PROBE_BODY_LF, ts * 1000, &r) < 0)
                abort();
        ok(r.outcome == PROBE_ACCEPTED && r.n_notes == 1 && strstr(r.notes[0], "1 CRLF"),
                "probed at its own time, the body's CRLF read as LF: accepted, noted");
        probe_result_clear(&r);

        if (probe_request(c, raw, strlen(raw), 0, ts * 1000, &r) < 0)
                abort();
        ok(r.outcome == PROBE_INCOMPLETE || r.outcome == PROBE_REJECTED,
                "without PROBE_BODY_LF the bytes differ from what was signed");
        probe_result_clear(&r);
        config_free(c);
}

int main(void)
{
        char tmpl[] = "/tmp/test-probe-XXXXXX";
        _cleanup_free_ char *eps = NULL;

        root = mkdtemp(tmpl);
        if (!root || asprintf(&eps, "%s/endpoints", root) < 0 || mkdir(eps, 0700) < 0)
                return 2;
        setenv("KNOCK_CONFIG_DIR", root, 1);
        setenv("KNOCK_RUNTIME_DIR", root, 1);

        test_github();
        test_stripe();

        nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        return tap_done();
}
