/* SPDX-License-Identifier: MIT */
/*
 * test-config — config_load() against real files in a temporary
 * KNOCK_CONFIG_DIR: defaults, knock.conf → endpoint overrides, secret
 * rotation and sources, and every validation rule with its exact
 * "FILE:LINE: message".
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "config.h"
#include "store.h"
#include "tap.h"
#include "util.h"

static char *dir;  /* the current temporary config dir */
static char *root; /* parent of every temporary dir */
static int dir_seq;

static void write_file(const char *path, const char *content)
{
        FILE *f = fopen(path, "we");

        if (!f) {
                perror(path);
                exit(2);
        }
        fputs(content, f);
        fclose(f);
}

/* A fresh config dir with knock.conf (NULL: none) and endpoints/NAME.conf (NULL: none). */
static void make_dir(const char *name, const char *global, const char *endpoint)
{
        char p[4096];

        free(dir);
        if (asprintf(&dir, "%s/c%d", root, ++dir_seq) < 0)
                exit(2);
        snprintf(p, sizeof(p), "%s/endpoints", dir);
        if (mkdir(dir, 0700) < 0 || mkdir(p, 0700) < 0) {
                perror(dir);
                exit(2);
        }
        if (global) {
                snprintf(p, sizeof(p), "%s/knock.conf", dir);
                write_file(p, global);
        }
        if (endpoint) {
                snprintf(p, sizeof(p), "%s/endpoints/%s.conf", dir, name);
                write_file(p, endpoint);
        }
        setenv("KNOCK_CONFIG_DIR", dir, 1);
}

static int load(const char *global, const char *endpoint, knock_config **c, knock_config_errors *e)
{
        make_dir("x", global, endpoint);
        *c = NULL;
        return config_load("x", c, e);
}

static void dump_errors(const knock_config_errors *e)
{
        for (size_t i = 0; i < e->n; i++)
                printf("#   error: %s\n", e->msgs[i]);
}

/* Checks that the errors hold exactly "DIR/FILE:LINE: MESSAGE". */
static _printf_(4, 5) bool has_error(
        const knock_config_errors *e, const char *file, unsigned line, const char *fmt, ...)
{
        _cleanup_free_ char *msg = NULL, *want = NULL;
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                exit(2);
        va_end(ap);
        if (asprintf(&want, "%s/%s:%u: %s", dir, file, line, msg) < 0)
                exit(2);
        for (size_t i = 0; i < e->n; i++)
                if (streq(e->msgs[i], want))
                        return true;
        printf("#   wanted: %s\n", want);
        dump_errors(e);
        return false;
}

#define EP "endpoints/x.conf"
#define BASE "[endpoint]\nprovider = github\nsecret = literal:abc\nlisten = 127.0.0.1:8101\n"

/* Loads BASE + extra as the endpoint file and expects exactly one error. */
static void expect_one(const char *extra, unsigned line, const char *msg, const char *what)
{
        _cleanup_free_ char *text = NULL;
        knock_config_errors e = {};
        knock_config *c;
        int r;

        if (asprintf(&text, "%s%s", BASE, extra) < 0)
                exit(2);
        r = load(NULL, text, &c, &e);
        ok(r == -EINVAL && c == NULL && e.n == 1 && has_error(&e, EP, line, "%s", msg), "%s", what);
        config_errors_clear(&e);
        config_free(c);
}

/* Loads BASE + extra and expects success. */
static knock_config *expect_ok(const char *global, const char *extra, const char *what)
{
        _cleanup_free_ char *text = NULL;
        knock_config_errors e = {};
        knock_config *c;
        int r;

        if (asprintf(&text, "%s%s", BASE, extra) < 0)
                exit(2);
        r = load(global, text, &c, &e);
        if (!ok(r == 0 && c && e.n == 0, "%s", what))
                dump_errors(&e);
        config_errors_clear(&e);
        return c;
}

static void test_defaults(void)
{
        knock_config *c = expect_ok(NULL, "", "minimal endpoint loads");
        static const uint64_t sched[] = {
                0, 5000, 300000, 1800000, 7200000, 18000000, 36000000, 36000000};
        _cleanup_free_ char *admin = NULL;
        bool sched_ok;

        if (!c)
                return;
        if (asprintf(&admin, "%s/x.admin", getenv("KNOCK_RUNTIME_DIR")) < 0)
                exit(2);
        is_str(c->name, "x", "name");
        ok(c->path_file && strstr(c->path_file, "/endpoints/x.conf"), "path_file");
        is_str(c->listen, "127.0.0.1:8101", "listen");
        is_str(c->admin, admin, "admin defaults to $KNOCK_RUNTIME_DIR/NAME.admin");
        is_str(c->path, "/", "path defaults to /");
        is_int(c->max_body, 1024 * 1024, "max_body 1M");
        is_int(c->max_connections, 512, "max_connections 512");
        is_int(c->header_timeout_ms, 10000, "header_timeout 10s");
        is_int(c->body_timeout_ms, 30000, "body_timeout 30s");
        is_int(c->max_buffered, 64 * 1024 * 1024, "max_buffered 64M");
        is_int(c->orphan_body, 4096, "orphan_body 4K");
        ok(c->orphan_rate.n == 10 && c->orphan_rate.per_ms == 1000, "orphan_rate 10/s");
        is_int(c->orphan_burst, 100, "orphan_burst 100");
        is_int(c->verify.provider, KNOCK_PROVIDER_GITHUB, "provider github");
        is_int(c->verify.tolerance_ms, -1, "tolerance unset is -1");
        ok(!c->verify.allow_unverified, "allow_unverified off");
        is_int(c->verify.algorithm, KNOCK_HMAC_SHA256, "algorithm sha256");
        is_int(c->verify.encoding, KNOCK_ENC_HEX, "encoding hex");
        ok(!c->verify.url && !c->verify.header && !c->verify.prefix && !c->verify.dedupe &&
                        !c->verify.type && !c->verify.timestamp_header && !c->verify.verify_token,
                "provider options unset");
        ok(c->verify.n_secrets == 1 && c->verify.secrets[0].len == 3 &&
                        memcmp(c->verify.secrets[0].data, "abc", 3) == 0,
                "literal secret");
        ok(c->handler == NULL && c->n_routes == 0, "no handler, no routes");
        ok(config_handler_for(c, "anything") == NULL, "no handler for any type");
        is_int(c->concurrency, 4, "concurrency 4");
        is_int(c->timeout_ms, 30000, "timeout 30s");
        is_int(c->max_attempts, 8, "max_attempts 8");
        is_int(c->backoff_base_ms, 2000, "backoff base 2s");
        is_int(c->backoff_cap_ms, 3600000, "backoff cap 1h");
        is_int(c->max_output, 65536, "max_output 64K");
        ok(c->hook_url == NULL && c->n_hook_secrets == 0, "no hook");
        ok(c->hook_on_handled && c->hook_on_dead, "hook on handled, dead");
        is_int(c->hook_max_attempts, 8, "hook max_attempts 8");
        is_int(c->hook_timeout_ms, 15000, "hook timeout 15s");
        is_int(c->hook_concurrency, 16, "hook concurrency 16");
        sched_ok = c->n_hook_schedule == 8 && c->hook_schedule_ms &&
                   memcmp(c->hook_schedule_ms, sched, sizeof(sched)) == 0;
        ok(sched_ok, "hook schedule 0s,5s,5m,30m,2h,5h,10h,10h");
        is_int(c->keep_handled_ms, 30 * 86400000ULL, "retention handled 30d");
        is_int(c->keep_ignored_ms, 30 * 86400000ULL, "retention ignored 30d");
        is_int(c->keep_orphans_ms, 7 * 86400000ULL, "retention orphans 7d");
        ok(c->keep_dead_ms == UINT64_MAX, "retention dead never");
        is_int(c->keep_backups, 7, "backups 7");
        is_int(c->keep_audit_ms, 365 * 86400000ULL, "audit 365d");
        is_int(c->min_free_disk, 100 * 1024 * 1024, "min_free_disk 100M");
        config_free(c);
}

static void test_override(void)
{
        const char *global = "# defaults for all endpoints\n"
                             "[endpoint]\n"
                             "listen = 127.0.0.1:9000\n"
                             "max_body = 2M\n"
                             "secret = literal:global\n"
                             "[worker]\n"
                             "concurrency = 8\n"
                             "timeout = 1m\n"
                             "handler = exec:/bin/true\n"
                             "[retention]\n"
                             "handled = 7d\n"
                             "dead = 90d\n";
        const char *ep = "[endpoint]\n"
                         "provider = stripe\n"
                         "[worker]\n"
                         "concurrency = 2\n"
                         "[retention]\n"
                         "dead = never\n"
                         "orphans =\n";
        knock_config_errors e = {};
        knock_config *c;
        int r;

        r = load(global, ep, &c, &e);
        if (!ok(r == 0 && c, "knock.conf + endpoint loads"))
                dump_errors(&e);
        config_errors_clear(&e);
        if (!c)
                return;
        is_str(c->listen, "127.0.0.1:9000", "listen from knock.conf");
        is_int(c->max_body, 2 * 1024 * 1024, "max_body from knock.conf");
        is_int(c->concurrency, 2, "concurrency from the endpoint overrides");
        is_int(c->timeout_ms, 60000, "timeout from knock.conf");
        is_str(c->handler, "exec:/bin/true", "handler from knock.conf");
        is_int(c->keep_handled_ms, 7 * 86400000ULL, "handled from knock.conf");
        ok(c->keep_dead_ms == UINT64_MAX, "dead = never in the endpoint overrides 90d");
        is_int(c->keep_orphans_ms, 7 * 86400000ULL, "empty assignment resets to the default");
        ok(c->verify.n_secrets == 1 && c->verify.secrets[0].len == 6 &&
                        memcmp(c->verify.secrets[0].data, "global", 6) == 0,
                "secret from knock.conf when the endpoint has none");
        config_free(c);

        /* knock.conf alone may be missing entirely */
        c = expect_ok(NULL, "[worker]\nhandler =\n", "no knock.conf is fine");
        ok(c && c->handler == NULL, "empty handler stays unset");
        config_free(c);
}

static void test_rotation(void)
{
        const char *global = "[endpoint]\nsecret = literal:old-global\n";
        const char *ep = "[endpoint]\n"
                         "provider = github\n"
                         "listen = 127.0.0.1:8101\n"
                         "secret = literal:first\n"
                         "secret = literal:second\n";
        knock_config_errors e = {};
        knock_config *c;
        int r;

        r = load(global, ep, &c, &e);
        ok(r == 0 && c, "two secrets load");
        config_errors_clear(&e);
        if (!c)
                return;
        ok(c->verify.n_secrets == 2, "both secrets kept, knock.conf's replaced");
        ok(c->verify.n_secrets == 2 && c->verify.secrets[0].len == 5 &&
                        memcmp(c->verify.secrets[0].data, "first", 5) == 0 &&
                        c->verify.secrets[1].len == 6 &&
                        memcmp(c->verify.secrets[1].data, "second", 6) == 0,
                "in order");
        config_free(c);

        /* an empty assignment empties the list */
        r = load(global, "[endpoint]\nprovider = github\nlisten = 127.0.0.1:1\nsecret =\n", &c, &e);
        ok(r == -EINVAL && has_error(&e, EP, 1, "provider github requires at least one secret"),
                "secret = (empty) drops knock.conf's secrets");
        config_errors_clear(&e);
        config_free(c);
}

static void test_secret_sources(void)
{
        _cleanup_free_ char *credir = NULL, *f1 = NULL, *f2 = NULL, *f3 = NULL, *f4 = NULL,
                            *text = NULL;
        knock_config_errors e = {};
        knock_config *c;
        int r;

        if (asprintf(&credir, "%s/creds", root) < 0 || mkdir(credir, 0700) < 0)
                exit(2);
        if (asprintf(&f1, "%s/stripe", credir) < 0 || asprintf(&f2, "%s/two-newlines", root) < 0 ||
                asprintf(&f3, "%s/crlf", root) < 0 || asprintf(&f4, "%s/bare", root) < 0)
                exit(2);
        write_file(f1, "whsec_fromcred\n");
        write_file(f2, "abc\n\n");
        write_file(f3, "abc\r\n");
        write_file(f4, "abc");

        setenv("CREDENTIALS_DIRECTORY", credir, 1);
        r = load(NULL,
                "[endpoint]\nprovider = stripe\nlisten = 127.0.0.1:8101\n"
                "secret = credential:stripe\n",
                &c, &e);
        ok(r == 0 && c && c->verify.n_secrets == 1 && c->verify.secrets[0].len == 14 &&
                        memcmp(c->verify.secrets[0].data, "whsec_fromcred", 14) == 0,
                "credential: reads $CREDENTIALS_DIRECTORY/NAME, newline stripped, stripe verbatim");
        config_errors_clear(&e);
        config_free(c);

        r = load(NULL,
                "[endpoint]\nprovider = stripe\nlisten = 127.0.0.1:8101\n"
                "secret = credential:missing\n",
                &c, &e);
        ok(r == -EINVAL && e.n == 1 &&
                        has_error(&e, EP, 4,
                                "secret: cannot read %s/missing: No such file or directory",
                                credir),
                "missing credential is an error at its line");
        config_errors_clear(&e);
        config_free(c);

        unsetenv("CREDENTIALS_DIRECTORY");
        /* An empty root: no credstore has the credential. */
        setenv("KNOCK_CREDSTORE_ROOT", credir, 1);
        r = load(NULL,
                "[endpoint]\nprovider = stripe\nlisten = 127.0.0.1:8101\n"
                "secret = credential:stripe\n",
                &c, &e);
        ok(r == -EINVAL && e.n == 1 &&
                        has_error(&e, EP, 4,
                                "secret credential:stripe: $CREDENTIALS_DIRECTORY is not set "
                                "(LoadCredential= missing?) and no credstore has it"),
                "credential: without $CREDENTIALS_DIRECTORY nor a credstore entry is an error");
        config_errors_clear(&e);
        config_free(c);

        /* Outside a unit, systemd's credstore directories are searched in order. */
        {
                char *d1 = NULL, *d2 = NULL, *f = NULL;
                FILE *fp;

                if (asprintf(&d1, "%s/run", credir) < 0 || asprintf(&d2, "%s/run/credstore", credir) < 0 ||
                    asprintf(&f, "%s/run/credstore/stripe", credir) < 0)
                        exit(2);
                mkdir(d1, 0700);
                mkdir(d2, 0700);
                fp = fopen(f, "w");
                if (!fp)
                        exit(2);
                fputs("whsec_from_credstore\n", fp);
                fclose(fp);
                r = load(NULL,
                        "[endpoint]\nprovider = stripe\nlisten = 127.0.0.1:8101\n"
                        "secret = credential:stripe\n",
                        &c, &e);
                ok(r == 0 && c && c->verify.n_secrets == 1 &&
                                c->verify.secrets[0].len == strlen("whsec_from_credstore") &&
                                memcmp(c->verify.secrets[0].data, "whsec_from_credstore",
                                       c->verify.secrets[0].len) == 0,
                        "credential: found in /run/credstore when $CREDENTIALS_DIRECTORY is unset");
                config_errors_clear(&e);
                c = config_free(c);
                unlink(f);
                rmdir(d2);
                rmdir(d1);
                free(f);
                free(d2);
                free(d1);
        }
        unsetenv("KNOCK_CREDSTORE_ROOT");

        if (asprintf(&text,
                    "[endpoint]\nprovider = github\nlisten = 127.0.0.1:8101\n"
                    "secret = %s\nsecret = %s\nsecret = %s\n",
                    f2, f3, f4) < 0)
                exit(2);
        r = load(NULL, text, &c, &e);
        ok(r == 0 && c && c->verify.n_secrets == 3, "three file secrets load");
        if (c && c->verify.n_secrets == 3) {
                ok(c->verify.secrets[0].len == 4 &&
                                memcmp(c->verify.secrets[0].data, "abc\n", 4) == 0,
                        "\"abc\\n\\n\" loses exactly one newline");
                ok(c->verify.secrets[1].len == 3 &&
                                memcmp(c->verify.secrets[1].data, "abc", 3) == 0,
                        "\"abc\\r\\n\" loses the CRLF");
                ok(c->verify.secrets[2].len == 3 &&
                                memcmp(c->verify.secrets[2].data, "abc", 3) == 0,
                        "\"abc\" is kept as is");
        }
        config_errors_clear(&e);
        config_free(c);

        /* standard: the key is the base64 after whsec_ */
        c = expect_ok(NULL,
                "provider = standard\nsecret = literal:whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n"
                "secret =\nsecret = literal:whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n",
                "standard secret loads");
        ok(c && c->verify.n_secrets == 1 && c->verify.secrets[0].len == 24,
                "standard secret decoded from base64 (24 bytes)");
        config_free(c);

        write_file(f4, "\n");
        free(text);
        if (asprintf(&text, "provider = token\nsecret = %s\n", f4) < 0)
                exit(2);
        expect_one(text, 6, "secret is empty", "a secret file holding only a newline is an error");
}

static void test_validation(void)
{
        /* BASE is 4 lines: extra text starts at line 5. */
        expect_one("[bogus]\nk = v\n", 5, "unknown section [bogus]", "unknown section");
        expect_one("[Endpoint]\n", 5, "unknown section", "section names are case-sensitive");
        expect_one("bogus = 1\n", 5, "unknown key 'bogus' in [endpoint]", "unknown key");
        expect_one("[worker]\nprovider = x\n", 6, "unknown key 'provider' in [worker]",
                "key in the wrong section");
        expect_one("max_body = 1X\n", 5,
                "max_body: invalid size '1X' (a number with an optional K, M or G)", "bad size");
        expect_one("max_body = 0\n", 5, "max_body must be at least 1 bytes", "zero max_body");
        expect_one("orphan_rate = 10/x\n", 5,
                "orphan_rate must be a rate like 10/s, 600/m or 0 (none)", "bad rate unit");
        expect_one("orphan_rate = -1/s\n", 5,
                "orphan_rate must be a rate like 10/s, 600/m or 0 (none)", "negative rate");
        expect_one("max_buffered = 1K\n", 5, "max_buffered must be at least 65536 bytes",
                "max_buffered below 64K");
        {
                knock_config *c = expect_ok(NULL, "orphan_rate = 600/m\norphan_body = 0\n",
                                            "orphan_rate per minute, orphan_body 0");
                ok(c && c->orphan_rate.n == 600 && c->orphan_rate.per_ms == 60000 && c->orphan_body == 0,
                   "600/m is 600 per 60000 ms; orphan_body 0 keeps none");
                config_free(c);
        }
        expect_one("[worker]\ntimeout = 5x\n", 6,
                "timeout: invalid duration '5x' (a number with ms, s, m, h or d)", "bad duration");
        expect_one("[worker]\ntimeout = never\n", 6,
                "timeout: invalid duration 'never' (a number with ms, s, m, h or d)",
                "never is only for retention");
        expect_one("[retention]\nhandled = soon\n", 6,
                "handled: invalid duration 'soon' (a number with ms, s, m, h or d, or never)",
                "bad retention duration");
        expect_one(
                "header_timeout = 0\n", 5, "header_timeout must be greater than 0", "zero timeout");
        expect_one("tolerance = 5q\n", 5,
                "tolerance: invalid duration '5q' (a number with ms, s, m, h or d)",
                "bad tolerance");

        static const char *const bad_listen[] = {"localhost", "127.0.0.1", "127.0.0.1:0",
                "127.0.0.1:65536", "300.1.1.1:80", "[::1]8101", "[zz::1]:80", "relative/path",
                "host name:80", ":80", "::1:80"};
        for (size_t i = 0; i < ELEMENTSOF(bad_listen); i++) {
                _cleanup_free_ char *t = NULL, *what = NULL;
                if (asprintf(&t, "listen = %s\n", bad_listen[i]) < 0 ||
                        asprintf(&what, "listen '%s' rejected", bad_listen[i]) < 0)
                        exit(2);
                expect_one(t, 5,
                        "listen must be host:port, [IPv6]:port or an absolute unix socket path",
                        what);
        }
        static const char *const good_listen[] = {"0.0.0.0:80", "[::1]:8101", "[::]:443",
                "localhost:8101", "hooks.example.com:1", "/run/knock/x.sock"};
        for (size_t i = 0; i < ELEMENTSOF(good_listen); i++) {
                _cleanup_free_ char *t = NULL, *what = NULL;
                knock_config *c;
                if (asprintf(&t, "listen = %s\n", good_listen[i]) < 0 ||
                        asprintf(&what, "listen '%s' accepted", good_listen[i]) < 0)
                        exit(2);
                c = expect_ok(NULL, t, what);
                ok(c && streq(c->listen, good_listen[i]), "listen '%s' kept", good_listen[i]);
                config_free(c);
        }
        expect_one("admin = 8080\n", 5,
                "admin must be host:port, [IPv6]:port or an absolute unix socket path",
                "bad admin");
        expect_one("path = hooks\n", 5,
                "path must start with '/' (and contain no query or fragment)", "path without /");
        expect_one("provider = stripey\n", 5, "unknown provider 'stripey'", "unknown provider");
        expect_one("provider = none\n", 5, "provider none requires allow_unverified = yes",
                "provider none without allow_unverified");
        expect_one("allow_unverified = maybe\n", 5, "allow_unverified must be yes or no",
                "bad boolean");
        {
                knock_config *c = expect_ok(NULL, "provider = none\nallow_unverified = yes\n",
                        "provider none with allow_unverified = yes loads");
                ok(c && c->verify.provider == KNOCK_PROVIDER_NONE && c->verify.allow_unverified,
                        "provider none, unverified allowed");
                config_free(c);
        }
        expect_one("algorithm = md5\n", 5, "algorithm must be sha256, sha512 or sha1",
                "bad algorithm");
        expect_one("encoding = base32\n", 5, "encoding must be hex or base64", "bad encoding");
        expect_one("dedupe = body:id\n", 5,
                "dedupe must be header:NAME, json:/pointer or form:NAME", "bad dedupe");
        expect_one("type = json:type\n", 5, "type must be header:NAME, json:/pointer or form:NAME",
                "bad type");
        expect_one("header = X Sig\n", 5, "header must be an HTTP header name", "bad header name");
        expect_one("provider = hmac\n", 1, "provider hmac requires header (the signature header)",
                "hmac needs header");
        expect_one("url = ftp://x/\n", 5, "url must start with http:// or https://", "bad url");
        expect_one("provider = twilio\n", 1, "provider twilio requires url (the exact public URL)",
                "twilio needs url");
        expect_one("[worker]\nhandler = exec:relative/on-x\n", 6,
                "handler must be exec:/absolute/path [ARGS...], http://... or https://...",
                "exec handler must be absolute");
        expect_one("[worker]\nhandler = ftp://127.0.0.1/x\n", 6,
                "handler must be exec:/absolute/path [ARGS...], http://... or https://...",
                "handler scheme");
        expect_one("[worker]\nconcurrency = 0\n", 6,
                "concurrency must be an integer between 1 and 1024", "concurrency 0");
        expect_one("[worker]\nconcurrency = 1025\n", 6,
                "concurrency must be an integer between 1 and 1024", "concurrency 1025");
        expect_one("[worker]\nconcurrency = -1\n", 6,
                "concurrency must be an integer between 1 and 1024", "concurrency -1");
        expect_one("[worker]\nmax_attempts = 0\n", 6,
                "max_attempts must be an integer of at least 1", "max_attempts 0");
        expect_one("[hook]\nurl = https://h/\nsecret = "
                   "literal:whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n"
                   "max_attempts = 0\n",
                8, "max_attempts must be an integer of at least 1", "hook max_attempts 0");
        expect_one("[hook]\nconcurrency = 2000\n", 6,
                "concurrency must be an integer between 1 and 1024", "hook concurrency 2000");
        expect_one("[worker]\nbackoff = 1h..2s\n", 6, "backoff base must not exceed its cap",
                "backoff base > cap");
        expect_one("[worker]\nbackoff = 2s\n", 6,
                "backoff must be BASE..CAP, two durations such as 2s..1h", "backoff without ..");
        expect_one("[worker]\nbackoff = 2s..x\n", 6,
                "backoff must be BASE..CAP, two durations such as 2s..1h", "backoff bad cap");
        expect_one("[hook]\nurl = file:///tmp/x\n", 6,
                "hook url must start with http:// or https://", "hook url scheme");
        expect_one("[hook]\nurl = https://h.example/\n", 6,
                "hook url requires at least one secret in [hook]", "hook url without secret");
        expect_one("[hook]\nsecret = literal:whpk_"
                   "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
                6, "hook secret is not a Standard Webhooks secret (whsec_...)",
                "hook secret must be a signing secret");
        expect_one("[hook]\non = handled, failed\n", 6,
                "on: unknown state 'failed' (expected handled or dead)", "hook on value");
        expect_one("[hook]\nschedule = 0s, 5q\n", 6,
                "schedule: invalid duration '5q' (a number with ms, s, m, h or d)",
                "bad hook schedule");
        expect_one("[retention]\nbackups = 0\n", 6,
                "backups must be an integer between 1 and 100000", "backups 0");
        expect_one("[retention]\nmin_free_disk = lots\n", 6,
                "min_free_disk: invalid size 'lots' (a number with an optional K, M or G)",
                "bad min_free_disk");
        expect_one("secret = whsec_plain\n", 5,
                "secret must be credential:NAME, an absolute file path or literal:TEXT",
                "secret of an unknown form");
        expect_one("secret = credential:../x\n", 5, "secret: invalid credential name",
                "credential name with a slash");
        expect_one("just some words\n", 5, "expected KEY = VALUE", "line without =");
        expect_one("[endpoint\n", 5, "section header must be [NAME]", "unterminated section");
        expect_one("[route checkout]\nhandler = exec:/bin/true\n", 5,
                "route section must be [route \"EVENT_TYPE\"]", "route without quotes");
        expect_one(
                "[route \"a.b\"]\n", 5, "[route \"a.b\"] has no handler", "route without handler");
        expect_one("[route \"a.b\"]\ntimeout = 5s\nhandler = exec:/bin/true\n", 6,
                "unknown key 'timeout' in [route \"a.b\"]", "unknown key in a route");
}

static void test_missing(void)
{
        knock_config_errors e = {};
        knock_config *c;
        int r;

        r = load(NULL, "# empty\n\n[endpoint]\nprovider = github\nsecret = literal:x\n", &c, &e);
        ok(r == -EINVAL && e.n == 1 && has_error(&e, EP, 3, "[endpoint] listen is not set"),
                "missing listen reported at the [endpoint] line");
        config_errors_clear(&e);

        r = load(NULL, "[worker]\nhandler = exec:/bin/true\n", &c, &e);
        ok(r == -EINVAL && e.n == 2 && has_error(&e, EP, 0, "[endpoint] listen is not set") &&
                        has_error(&e, EP, 0, "[endpoint] provider is not set"),
                "without an [endpoint] section, missing keys are at line 0");
        config_errors_clear(&e);

        r = load(NULL, "[endpoint]\nprovider = stripe\nlisten = 127.0.0.1:1\n", &c, &e);
        ok(r == -EINVAL && e.n == 1 &&
                        has_error(&e, EP, 1, "provider stripe requires at least one secret"),
                "missing secret");
        config_errors_clear(&e);

        make_dir("x", NULL, NULL);
        r = config_load("x", &c, &e);
        ok(r == -ENOENT && c == NULL && e.n == 1 &&
                        has_error(&e, EP, 0, "cannot read: No such file or directory"),
                "missing endpoint file is -ENOENT with a message");
        config_errors_clear(&e);

        r = config_load("Bad", &c, &e);
        ok(r == -EINVAL && c == NULL && e.n == 1 &&
                        has_error(&e, "endpoints/Bad.conf", 0,
                                "invalid endpoint name (expected [a-z0-9][a-z0-9_-]{0,62})"),
                "invalid endpoint name");
        config_errors_clear(&e);
        r = config_load("../etc", &c, &e);
        ok(r == -EINVAL && c == NULL && e.n == 1, "path-like endpoint name rejected");
        config_errors_clear(&e);
}

static void test_multiple_errors(void)
{
        const char *global = "[worker]\nconcurrency = 0\n";
        const char *ep = "[endpoint]\n"
                         "provider = github\n"
                         "secret = literal:x\n"
                         "listen = nowhere\n"
                         "max_body = big\n"
                         "[worker]\n"
                         "timeout = 0\n"
                         "handler = exec:/bin/true\n"
                         "[oops]\n";
        knock_config_errors e = {};
        knock_config *c;
        int r;

        r = load(global, ep, &c, &e);
        ok(r == -EINVAL && c == NULL, "several errors fail the load");
        if (!is_int(e.n, 5, "all five errors are reported"))
                dump_errors(&e);
        ok(e.n == 5 &&
                        has_error(&e, "knock.conf", 2,
                                "concurrency must be an integer between 1 and 1024") &&
                        has_error(&e, EP, 4,
                                "listen must be host:port, [IPv6]:port or an absolute unix socket "
                                "path") &&
                        has_error(&e, EP, 5,
                                "max_body: invalid size 'big' (a number with an optional K, M or "
                                "G)") &&
                        has_error(&e, EP, 7, "timeout must be greater than 0") &&
                        has_error(&e, EP, 9, "unknown section [oops]"),
                "each with its file and line");
        ok(e.n == 5 && strstr(e.msgs[0], "/knock.conf:2: ") && strstr(e.msgs[4], ":9: "),
                "in file order, knock.conf first");
        config_errors_clear(&e);
}

static void test_routes(void)
{
        const char *global = "[route \"shared\"]\nhandler = exec:/bin/global\n"
                             "[route \"over\"]\nhandler = exec:/bin/global-over\n";
        const char *ep = BASE "[worker]\n"
                              "handler = http://127.0.0.1:9000/hooks\n"
                              "[route \"checkout.session.completed\"]\n"
                              "handler = exec:/usr/local/lib/knock/on-checkout --fast\n"
                              "[route  \"over\" ]\n"
                              "handler = https://example.com/over\n";
        knock_config_errors e = {};
        knock_config *c;
        int r;

        r = load(global, ep, &c, &e);
        if (!ok(r == 0 && c, "routes load"))
                dump_errors(&e);
        config_errors_clear(&e);
        if (!c)
                return;
        is_int(c->n_routes, 3, "three routes (one overridden)");
        is_str(config_handler_for(c, "checkout.session.completed"),
                "exec:/usr/local/lib/knock/on-checkout --fast", "route match");
        is_str(config_handler_for(c, "shared"), "exec:/bin/global", "route from knock.conf");
        is_str(config_handler_for(c, "over"), "https://example.com/over",
                "endpoint route overrides knock.conf's");
        is_str(config_handler_for(c, "other"), "http://127.0.0.1:9000/hooks",
                "unrouted type goes to [worker] handler");
        is_str(config_handler_for(c, NULL), "http://127.0.0.1:9000/hooks",
                "no type goes to [worker] handler");
        config_free(c);
}

static void test_grammar(void)
{
        _cleanup_free_ char *longh = NULL, *text = NULL;
        knock_config *c;
        char args[400];

        memset(args, 'a', sizeof(args) - 1);
        args[sizeof(args) - 1] = 0;
        if (asprintf(&longh, "exec:/usr/bin/handler --arg=%s", args) < 0 ||
                asprintf(&text,
                        "  [worker]   # indented section header\n"
                        "    handler = %s   # a long line, longer than inih's buffer\n"
                        "\ttimeout = 45s ; semicolon comment\n"
                        "[endpoint]\n"
                        "   tolerance = 5m    # timestamped schemes\n"
                        "prefix = sha256=\n"
                        "header: X-Signature\n"
                        "[hook]\n"
                        "on = dead\n"
                        "schedule = 0s, 1m 1h\n",
                        longh) < 0)
                exit(2);
        c = expect_ok(NULL, text, "comments, indentation, ':' and long lines parse");
        if (!c)
                return;
        is_str(c->handler, longh, "a 430-character value is kept whole");
        is_int(c->timeout_ms, 45000, "';' comment stripped");
        is_int(c->verify.tolerance_ms, 300000, "'#' comment stripped");
        is_str(c->verify.prefix, "sha256=", "'=' inside a value");
        is_str(c->verify.header, "X-Signature", "KEY: VALUE form");
        ok(!c->hook_on_handled && c->hook_on_dead, "hook on = dead");
        ok(c->n_hook_schedule == 3 && c->hook_schedule_ms[0] == 0 &&
                        c->hook_schedule_ms[1] == 60000 && c->hook_schedule_ms[2] == 3600000,
                "schedule with commas and spaces");
        config_free(c);

        c = expect_ok(NULL,
                "provider = hmac\nheader = X-Sig\nalgorithm = sha512\nencoding = base64\n"
                "dedupe = header:X-Id\ntype = json:/event/type\n"
                "timestamp_header = X-Ts\nverify_token = tok\n"
                "allow_unverified = true\nmax_connections = 1000\n"
                "[worker]\nbackoff = 1s..1s\nmax_output = 0\n"
                "[retention]\nbackups = 3\naudit = never\n",
                "provider options parse");
        ok(c && c->verify.algorithm == KNOCK_HMAC_SHA512 &&
                        c->verify.encoding == KNOCK_ENC_BASE64 &&
                        streq(c->verify.dedupe, "header:X-Id") &&
                        streq(c->verify.type, "json:/event/type") &&
                        streq(c->verify.timestamp_header, "X-Ts") &&
                        streq(c->verify.verify_token, "tok") && c->verify.allow_unverified &&
                        c->max_connections == 1000 && c->backoff_base_ms == 1000 &&
                        c->backoff_cap_ms == 1000 && c->max_output == 0 && c->keep_backups == 3 &&
                        c->keep_audit_ms == UINT64_MAX,
                "values as written");
        config_free(c);
}

/* console_token is a credential (rotation, sources, wiped) with a minimum
 * length; prometheus_url a URL. */
static void test_console_keys(void)
{
        knock_config *c;

        c = expect_ok(NULL,
                "console_token = literal:0123456789abcdef\n"
                "console_token = literal:fedcba9876543210-next\n"
                "prometheus_url = http://prometheus.example:9090\n",
                "console_token twice and prometheus_url");
        ok(c && c->n_console_tokens == 2 && streq(c->console_tokens[0], "0123456789abcdef") &&
                        streq(c->console_tokens[1], "fedcba9876543210-next") &&
                        streq(c->prometheus_url, "http://prometheus.example:9090"),
                "both tokens kept in order, the URL as written");
        config_free(c);
        c = expect_ok(NULL, "", "no console_token");
        ok(c && c->n_console_tokens == 0 && !c->prometheus_url, "no token, no URL by default");
        config_free(c);
        expect_one("console_token = literal:short\n", 5,
                "console_token must be at least 16 characters", "a short console_token");
        expect_one("console_token = hunter2hunter2hunter2\n", 5,
                "secret must be credential:NAME, an absolute file path or literal:TEXT",
                "a console_token that is not a credential reference");
        expect_one("prometheus_url = prometheus:9090\n", 5,
                "prometheus_url must start with http:// or https://", "a prometheus_url without scheme");
}

/* store = sqlite | postgresql:CONNINFO; a password in the file is refused,
 * and never echoed in the error. */
static void test_store_key(void)
{
        _cleanup_free_ char *loc = NULL, *text = NULL;
        knock_config_errors e = {};
        knock_config *c;
        bool echoed = false;

        c = expect_ok(NULL, "", "no store key");
        ok(c && !c->store_conninfo, "SQLite by default");
        loc = c ? config_store_location(c) : NULL;
        ok(loc && strlen(loc) > 5 && streq(loc + strlen(loc) - 5, "/x.db") && !store_location_is_postgresql(loc),
           "the default location is the endpoint's file");
        config_free(c);
        free(loc);

        c = expect_ok(NULL, "store = sqlite\n", "store = sqlite");
        ok(c && !c->store_conninfo, "store = sqlite is the file");
        config_free(c);

        c = expect_ok(NULL, "store = postgresql:host=/run/postgresql dbname=knock\n",
                      "store = postgresql:keywords");
        ok(c && streq(c->store_conninfo, "host=/run/postgresql dbname=knock"),
           "the conninfo kept as written");
        loc = c ? config_store_location(c) : NULL;
        ok(loc && streq(loc, "postgresql:knock_x:host=/run/postgresql dbname=knock") &&
                   store_location_is_postgresql(loc),
           "the location names schema knock_x");
        config_free(c);

        c = expect_ok(NULL, "store = postgresql:postgresql://knock@db.example/knock\n",
                      "store = postgresql:URI");
        ok(c && streq(c->store_conninfo, "postgresql://knock@db.example/knock"), "a URI kept");
        config_free(c);

        expect_one("store = postgresql:host=db password=hunter2\n", 5,
                   "store: a password in the endpoint file is refused; use a PGPASSFILE, a service file or the pgpass credential (knock-endpoint(5))",
                   "a password keyword refused");
        expect_one("store = postgresql:postgresql://knock:hunter2@db/knock\n", 5,
                   "store: a password in the endpoint file is refused; use a PGPASSFILE, a service file or the pgpass credential (knock-endpoint(5))",
                   "a password in a URI refused");
        expect_one("store = mysql:host=db\n", 5, "store must be sqlite or postgresql:CONNINFO",
                   "another engine refused");
        expect_one("store = postgresql:\n", 5, "store must be sqlite or postgresql:CONNINFO",
                   "an empty conninfo refused");
        expect_one("store = postgresql:nonsense\n", 5, "store: not a libpq connection string: missing \"=\" after \"nonsense\" in connection info string",
                   "a malformed conninfo refused");

        if (asprintf(&text, "%sstore = postgresql:host=db password=hunter2\n", BASE) < 0)
                exit(2);
        (void)load(NULL, text, &c, &e);
        for (size_t i = 0; i < e.n; i++)
                echoed |= strstr(e.msgs[i], "hunter2") != NULL;
        ok(e.n == 1 && !echoed, "the refused password is not in the error");
        config_errors_clear(&e);
        config_free(c);
}

static void test_secret_never_in_errors(void)
{
        const char *sentinel = "S3cr3tSentinel42";
        _cleanup_free_ char *f = NULL, *text = NULL;
        knock_config_errors e = {};
        knock_config *c;
        bool leaked = false;
        int r;

        if (asprintf(&f, "%s/nul-secret", root) < 0)
                exit(2);
        {
                FILE *fp = fopen(f, "we");
                fputs(sentinel, fp);
                fputc(0, fp);
                fputs(sentinel, fp);
                fclose(fp);
        }
        if (asprintf(&text,
                    "[endpoint]\n"
                    "provider = discord\n" /* hex public key expected */
                    "listen = 127.0.0.1:1\n"
                    "secret = literal:%1$s\n" /* not valid hex: rejected */
                    "secret = %1$s\n"         /* unknown form */
                    "secert = literal:%1$s\n" /* misspelled key */
                    "%1$s\n"                  /* a bare line */
                    "%1$s==\n"                /* a base64 secret pasted alone */
                    "secret = %2$s\n"         /* NUL inside */
                    "[%1$s]\n"                /* as a section */
                    "[hook]\nurl = https://h/\n"
                    "secret = literal:%1$s!\n", /* not base64 */
                    sentinel, f) < 0)
                exit(2);
        r = load(NULL, text, &c, &e);
        if (!ok(r == -EINVAL && e.n == 8, "misplaced secrets are all errors (%zu)", e.n))
                dump_errors(&e);
        for (size_t i = 0; i < e.n; i++)
                if (strstr(e.msgs[i], sentinel) || strstr(e.msgs[i], "3cr3t"))
                        leaked = true;
        if (!ok(!leaked, "no error message contains the secret"))
                dump_errors(&e);
        ok(has_error(&e, EP, 4, "secret is not valid for provider discord"),
                "rejected secret names the provider only");
        ok(has_error(&e, EP, 9, "secret contains a NUL byte"), "NUL byte in secret file");
        ok(has_error(&e, EP, 8, "unknown key in [endpoint]"), "a secret as a key is not quoted");
        ok(has_error(&e, EP, 10, "unknown section"), "a secret as a section is not quoted");
        config_errors_clear(&e);
        config_free(c);
}

static void test_list_and_paths(void)
{
        char p[4096];
        char **v = NULL;
        size_t n = 0;
        char *s;
        int r;

        make_dir("beta", NULL, "");
        snprintf(p, sizeof(p), "%s/endpoints/alpha.conf", dir);
        write_file(p, "");
        snprintf(p, sizeof(p), "%s/endpoints/Bad.conf", dir);
        write_file(p, "");
        snprintf(p, sizeof(p), "%s/endpoints/alpha.conf~", dir);
        write_file(p, "");
        snprintf(p, sizeof(p), "%s/endpoints/notes.txt", dir);
        write_file(p, "");
        r = config_list_endpoints(&v, &n);
        ok(r == 0 && n == 2 && streq(v[0], "alpha") && streq(v[1], "beta"),
                "endpoints listed sorted, invalid names and other files skipped");
        strv_free(v, n);

        snprintf(p, sizeof(p), "%s/none", root);
        setenv("KNOCK_CONFIG_DIR", p, 1);
        r = config_list_endpoints(&v, &n);
        ok(r == 0 && n == 0, "no endpoints directory: no endpoints");
        strv_free(v, n);

        setenv("KNOCK_STATE_DIR", "/srv/knock-state", 1);
        s = config_db_path("shop");
        is_str(s, "/srv/knock-state/shop.db", "db path");
        free(s);
        s = config_backup_dir("shop");
        is_str(s, "/srv/knock-state/backups/shop", "backup dir");
        free(s);
        unsetenv("KNOCK_STATE_DIR");
        s = config_db_path("shop");
        is_str(s, "/var/lib/knock/shop.db", "db path default");
        free(s);
}

static char *read_source(const char *rel)
{
        _cleanup_free_ char *path = NULL;
        char *text = NULL;

        if (asprintf(&path, "%s/%s", SOURCE_ROOT, rel) < 0 ||
                read_file_full(path, 1 << 20, &text, NULL) < 0) {
                printf("# cannot read %s\n", rel);
                exit(2);
        }
        return text;
}

static bool same_config(const knock_config *a, const knock_config *b)
{
        return streq_ptr(a->listen, b->listen) && streq_ptr(a->admin, b->admin) &&
               streq_ptr(a->path, b->path) && a->max_body == b->max_body &&
               a->max_connections == b->max_connections &&
               a->header_timeout_ms == b->header_timeout_ms &&
               a->body_timeout_ms == b->body_timeout_ms && a->max_buffered == b->max_buffered &&
               a->orphan_body == b->orphan_body && a->orphan_rate.n == b->orphan_rate.n &&
               a->orphan_rate.per_ms == b->orphan_rate.per_ms && a->orphan_burst == b->orphan_burst &&
               a->verify.provider == b->verify.provider &&
               a->verify.n_secrets == b->verify.n_secrets &&
               a->verify.tolerance_ms == b->verify.tolerance_ms &&
               a->verify.allow_unverified == b->verify.allow_unverified &&
               streq_ptr(a->verify.url, b->verify.url) &&
               streq_ptr(a->verify.header, b->verify.header) &&
               streq_ptr(a->verify.prefix, b->verify.prefix) &&
               a->verify.algorithm == b->verify.algorithm &&
               a->verify.encoding == b->verify.encoding &&
               streq_ptr(a->verify.timestamp_header, b->verify.timestamp_header) &&
               streq_ptr(a->verify.dedupe, b->verify.dedupe) &&
               streq_ptr(a->verify.type, b->verify.type) &&
               streq_ptr(a->verify.verify_token, b->verify.verify_token) &&
               streq_ptr(a->handler, b->handler) && a->concurrency == b->concurrency &&
               a->timeout_ms == b->timeout_ms && a->max_attempts == b->max_attempts &&
               a->backoff_base_ms == b->backoff_base_ms && a->backoff_cap_ms == b->backoff_cap_ms &&
               a->max_output == b->max_output && a->n_routes == b->n_routes &&
               streq_ptr(a->hook_url, b->hook_url) && a->n_hook_secrets == b->n_hook_secrets &&
               a->hook_on_handled == b->hook_on_handled && a->hook_on_dead == b->hook_on_dead &&
               a->hook_max_attempts == b->hook_max_attempts &&
               a->hook_timeout_ms == b->hook_timeout_ms &&
               a->n_hook_schedule == b->n_hook_schedule &&
               memcmp(a->hook_schedule_ms, b->hook_schedule_ms,
                       a->n_hook_schedule * sizeof(uint64_t)) == 0 &&
               a->hook_concurrency == b->hook_concurrency &&
               a->keep_handled_ms == b->keep_handled_ms &&
               a->keep_ignored_ms == b->keep_ignored_ms &&
               a->keep_orphans_ms == b->keep_orphans_ms && a->keep_dead_ms == b->keep_dead_ms &&
               a->keep_backups == b->keep_backups && a->keep_audit_ms == b->keep_audit_ms &&
               a->min_free_disk == b->min_free_disk && a->n_console_tokens == b->n_console_tokens &&
               streq_ptr(a->prometheus_url, b->prometheus_url);
}

/* etc/knock.conf documents every key with its default: loaded as it is, and
 * with every "#key = value" line uncommented, it must change nothing. */
static void test_shipped_files(void)
{
        _cleanup_free_ char *conf = NULL, *uncommented = NULL, *example = NULL, *credir = NULL,
                            *p = NULL;
        knock_config *plain, *c;
        knock_config_errors e = {};
        size_t n_keys = 0, o = 0;
        int r;

        conf = read_source("etc/knock.conf");
        uncommented = malloc(strlen(conf) + 1);
        if (!uncommented)
                exit(2);
        for (const char *l = conf; *l;) {
                size_t len = strcspn(l, "\n");
                size_t w = strspn(l + 1, "abcdefghijklmnopqrstuvwxyz_");

                if (l[0] == '#' && w > 0 && l[1 + w] == ' ' && l[2 + w] == '=') {
                        l++, len--; /* drop the '#' */
                        n_keys++;
                }
                memcpy(uncommented + o, l, len);
                o += len;
                l += len;
                if (*l == '\n')
                        uncommented[o++] = *l++;
        }
        uncommented[o] = 0;

        plain = expect_ok(NULL, "", "built-in defaults");
        c = expect_ok(conf, "", "etc/knock.conf as shipped loads");
        ok(plain && c && same_config(plain, c), "etc/knock.conf as shipped changes nothing");
        config_free(c);
        is_int(n_keys, 48, "etc/knock.conf shows every key but the [route] ones (48)");
        c = expect_ok(uncommented, "", "etc/knock.conf with every key uncommented loads");
        ok(plain && c && same_config(plain, c), "every documented default is the built-in one");
        config_free(c);
        config_free(plain);

        example = read_source("etc/example.conf");
        if (asprintf(&credir, "%s/example-creds", root) < 0 || mkdir(credir, 0700) < 0)
                exit(2);
        if (asprintf(&p, "%s/stripe", credir) < 0)
                exit(2);
        write_file(p, "whsec_example\n");
        free(p);
        if (asprintf(&p, "%s/stripe-hook", credir) < 0)
                exit(2);
        write_file(p, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n");
        setenv("CREDENTIALS_DIRECTORY", credir, 1);
        r = load(conf, example, &c, &e);
        if (!ok(r == 0 && c, "etc/example.conf loads"))
                dump_errors(&e);
        ok(c && c->verify.provider == KNOCK_PROVIDER_STRIPE && c->n_routes == 1 &&
                        c->n_hook_secrets == 1 && streq(c->path, "/stripe"),
                "example endpoint as written");
        unsetenv("CREDENTIALS_DIRECTORY");
        config_errors_clear(&e);
        config_free(c);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        return remove(path);
}

int main(void)
{
        char tmpl[] = "/tmp/test-config-XXXXXX";

        root = mkdtemp(tmpl);
        if (!root)
                return 2;
        setenv("KNOCK_RUNTIME_DIR", "/run/knock-test", 1);
        unsetenv("CREDENTIALS_DIRECTORY");

        test_defaults();
        test_override();
        test_rotation();
        test_secret_sources();
        test_validation();
        test_missing();
        test_multiple_errors();
        test_routes();
        test_grammar();
        test_secret_never_in_errors();
        test_console_keys();
        test_store_key();
        test_list_and_paths();
        test_shipped_files();

        nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        free(dir);
        return tap_done();
}
