/* SPDX-License-Identifier: MIT */
/*
 * config-keys — the key table of knock-endpoint(5): one row per key (its
 * section, its parser, the knock_config field it sets, its bounds), the
 * built-in default each key takes when it is empty or absent, and the value
 * grammar the parsers share.
 *
 * Promises:
 *  - a value that does not parse leaves the field as it was and reports
 *    one error at its line, naming the key and echoing at most
 *    VALUE_ECHO_MAX bytes of a value that is not secret (a provider name
 *    that is not a plain word is not echoed at all);
 *  - an empty value is the key's built-in default (empty_default() and
 *    config_apply_defaults() hold the same values, as text and as numbers);
 *  - `secret` values are handed to config-secrets.c unread.
 *
 * Adding a key is a row in keys[] (and, with a default, a row in
 * empty_default() and a line in config_apply_defaults()).
 */
#include <arpa/inet.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/un.h>

#include <libpq-fe.h>

#include "config-internal.h"
#include "util.h"

typedef struct key_def key_def;
typedef void (*key_parser)(parse_ctx *ctx, const key_def *k, const char *value);

struct key_def {
        section_kind section;
        const char *name;
        key_parser parse;
        size_t offset; /* into knock_config */
        uint64_t min, max;
};

/* ---- the value grammar ---------------------------------------------------------- */

/* A [route]'s keys are offsets into its knock_route, the others into knock_config. */
static void *field(parse_ctx *ctx, const key_def *k)
{
        if (ctx->section == SECTION_ROUTE)
                return (char *)&ctx->c->routes[ctx->route] + k->offset;
        return (char *)ctx->c + k->offset;
}

static void set_string(parse_ctx *ctx, char **p, const char *value)
{
        char *d = NULL;

        if (*value) {
                d = config_strdup(ctx, value);
                if (!d)
                        return;
        }
        free(*p);
        *p = d;
}

static bool is_header_name(const char *s)
{
        /* RFC 9110 token characters. */
        if (!*s)
                return false;
        for (; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
                            (*s >= '0' && *s <= '9') || strchr("!#$%&'*+-.^_`|~", *s)))
                        return false;
        return true;
}

static bool is_http_url(const char *s)
{
        const char *rest;

        if (startswith(s, "http://"))
                rest = s + 7;
        else if (startswith(s, "https://"))
                rest = s + 8;
        else
                return false;
        /* a host is required, and no white space anywhere */
        if (!*rest || *rest == '/')
                return false;
        for (; *s; s++)
                if (*s == ' ' || *s == '\t')
                        return false;
        return true;
}

static bool is_port(const char *s)
{
        uint64_t port;

        return parse_u64_strict(s, &port) == 0 && port >= 1 && port <= 65535;
}

static bool is_host_name(const char *s, size_t n)
{
        if (n == 0 || n > 253)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
                            (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '-'))
                        return false;
        return true;
}

/* "host:port" (IPv4, [IPv6]:port, name:port) or an absolute unix socket path. */
static bool listen_valid(const char *s)
{
        char host[256];
        const char *colon;
        size_t n;

        if (s[0] == '/')
                return strlen(s) < sizeof(((struct sockaddr_un *)NULL)->sun_path);
        if (s[0] == '[') {
                const char *end = strchr(s, ']');
                struct in6_addr a6;

                if (!end || end[1] != ':' || (size_t)(end - s - 1) >= sizeof(host))
                        return false;
                memcpy(host, s + 1, (size_t)(end - s - 1));
                host[end - s - 1] = 0;
                return inet_pton(AF_INET6, host, &a6) == 1 && is_port(end + 2);
        }
        colon = strrchr(s, ':');
        if (!colon)
                return false;
        n = (size_t)(colon - s);
        if (n >= sizeof(host) || !is_host_name(s, n) || !is_port(colon + 1))
                return false;
        memcpy(host, s, n);
        host[n] = 0;
        /* all digits and dots: must then be a real dotted quad */
        if (strspn(host, "0123456789.") == n) {
                struct in_addr a4;
                return inet_pton(AF_INET, host, &a4) == 1;
        }
        return true;
}

static bool handler_valid(const char *s)
{
        if (startswith(s, "exec:"))
                return s[5] == '/' && s[6] != 0 && s[6] != ' ';
        return is_http_url(s);
}

/* ---- generic key parsers ----------------------------------------------------- */

static void parse_size_key(parse_ctx *ctx, const key_def *k, const char *value)
{
        uint64_t v;

        if (parse_size(value, &v) < 0) {
                key_error(ctx, "%s: invalid size '%.*s' (a number with an optional K, M or G)",
                        k->name, VALUE_ECHO_MAX, value);
                return;
        }
        if (v < k->min) {
                key_error(ctx, "%s must be at least %" PRIu64 " bytes", k->name, k->min);
                return;
        }
        *(uint64_t *)field(ctx, k) = v;
}

static void parse_duration_common(
        parse_ctx *ctx, const key_def *k, const char *value, bool allow_never)
{
        uint64_t v;

        if (parse_duration_ms(value, allow_never, &v) < 0) {
                key_error(ctx, "%s: invalid duration '%.*s' (a number with ms, s, m, h or d%s)",
                        k->name, VALUE_ECHO_MAX, value, allow_never ? ", or never" : "");
                return;
        }
        if (v < k->min) {
                key_error(ctx, "%s must be greater than 0", k->name);
                return;
        }
        *(uint64_t *)field(ctx, k) = v;
}

static void parse_duration_key(parse_ctx *ctx, const key_def *k, const char *value)
{
        parse_duration_common(ctx, k, value, false);
}

static void parse_never_key(parse_ctx *ctx, const key_def *k, const char *value)
{
        parse_duration_common(ctx, k, value, true);
}

static void parse_count_key(parse_ctx *ctx, const key_def *k, const char *value)
{
        uint64_t v;

        if (parse_u64_strict(value, &v) < 0 || v < k->min || v > k->max) {
                if (k->max == UINT64_MAX)
                        key_error(
                                ctx, "%s must be an integer of at least %" PRIu64, k->name, k->min);
                else
                        key_error(ctx, "%s must be an integer between %" PRIu64 " and %" PRIu64,
                                k->name, k->min, k->max);
                return;
        }
        *(uint64_t *)field(ctx, k) = v;
}

/* "N/s", "N/m", "N/h" (or N alone, per second) into a knock_rate. */
static void parse_rate_key(parse_ctx *ctx, const key_def *k, const char *value)
{
        if (parse_rate(value, (knock_rate *)field(ctx, k)) < 0)
                key_error(ctx, "%s must be a rate like 10/s, 600/m or 0 (none)", k->name);
}

static void parse_string_key(parse_ctx *ctx, const key_def *k, const char *value)
{
        set_string(ctx, field(ctx, k), value);
}

/* ---- [endpoint] -------------------------------------------------------------- */

static void parse_provider(parse_ctx *ctx, const key_def *k, const char *value)
{
        knock_provider p = provider_from_string(value);

        if (!*value) {
                ctx->c->verify.provider = KNOCK_PROVIDER_INVALID; /* unset again */
                return;
        }
        if (p == KNOCK_PROVIDER_INVALID) {
                if (config_quotable(value))
                        key_error(ctx, "unknown provider '%s'", value);
                else
                        key_error(ctx, "unknown provider");
                ctx->provider_rejected = true;
                return;
        }
        ctx->c->verify.provider = p;
        ctx->provider_at = (origin){ctx->file, ctx->line};
}

static void parse_secret(parse_ctx *ctx, const key_def *k, const char *value)
{
        config_secret_add(ctx, &ctx->secrets, value);
}

static void parse_console_token(parse_ctx *ctx, const key_def *k, const char *value)
{
        config_secret_add(ctx, &ctx->console_tokens, value);
}

/* store = sqlite | postgresql:CONNINFO. The conninfo is libpq's (keywords or
 * a URI), checked here so a typo is a config error and not a daemon that
 * cannot start; a password in it is refused: the endpoint file is readable
 * by the knock group, and libpq reads one from PGPASSFILE, a service file,
 * or the credential the unit passes (knock-endpoint(5)). */
static void parse_store(parse_ctx *ctx, const key_def *k, const char *value)
{
        const char *conninfo;
        PQconninfoOption *opts;
        char *err = NULL;

        if (!*value || streq(value, "sqlite")) {
                set_string(ctx, &ctx->c->store_conninfo, "");
                return;
        }
        conninfo = startswith(value, "postgresql:") ? value + strlen("postgresql:") : NULL;
        if (!conninfo || !*conninfo) {
                key_error(ctx, "store must be sqlite or postgresql:CONNINFO");
                return;
        }
        opts = PQconninfoParse(conninfo, &err);
        if (!opts) {
                size_t n = err ? strcspn(err, "\n") : 0;

                key_error(ctx, "store: not a libpq connection string: %.*s", (int)n,
                          err ? err : "out of memory");
                PQfreemem(err);
                return;
        }
        for (PQconninfoOption *o = opts; o->keyword; o++)
                if (streq(o->keyword, "password") && o->val && *o->val) {
                        key_error(ctx, "store: a password in the endpoint file is refused; "
                                       "use a PGPASSFILE, a service file or the pgpass "
                                       "credential (knock-endpoint(5))");
                        PQconninfoFree(opts);
                        return;
                }
        PQconninfoFree(opts);
        if (strlen(ctx->c->name) + strlen("knock_") > CONFIG_PG_SCHEMA_MAX) {
                key_error(ctx, "store: on PostgreSQL an endpoint's name is at most %zu characters "
                               "(its schema is knock_NAME)",
                          CONFIG_PG_SCHEMA_MAX - strlen("knock_"));
                return;
        }
        set_string(ctx, &ctx->c->store_conninfo, conninfo);
}

static void parse_listen(parse_ctx *ctx, const key_def *k, const char *value)
{
        if (*value && !listen_valid(value)) {
                key_error(ctx, "%s must be host:port, [IPv6]:port or an absolute unix socket path",
                        k->name);
                if (k->offset == offsetof(knock_config, listen))
                        ctx->listen_rejected = true;
                return;
        }
        set_string(ctx, field(ctx, k), value);
}

static void parse_path(parse_ctx *ctx, const key_def *k, const char *value)
{
        if (!*value)
                value = "/";
        if (value[0] != '/' || strpbrk(value, " \t?#")) {
                key_error(ctx, "path must start with '/' (and contain no query or fragment)");
                return;
        }
        set_string(ctx, &ctx->c->path, value);
}

static void parse_tolerance(parse_ctx *ctx, const key_def *k, const char *value)
{
        uint64_t v;

        if (!*value) {
                ctx->c->verify.tolerance_ms = -1;
                return;
        }
        if (parse_duration_ms(value, false, &v) < 0 || v > INT64_MAX) {
                key_error(ctx,
                        "tolerance: invalid duration '%.*s' (a number with ms, s, m, h or d)",
                        VALUE_ECHO_MAX, value);
                return;
        }
        if (v == 0) {
                key_error(ctx, "tolerance must be greater than 0");
                return;
        }
        ctx->c->verify.tolerance_ms = (int64_t)v;
}

static void parse_allow_unverified(parse_ctx *ctx, const key_def *k, const char *value)
{
        if (!*value || strcaseeq(value, "no") || strcaseeq(value, "false") || streq(value, "0"))
                ctx->c->verify.allow_unverified = false;
        else if (strcaseeq(value, "yes") || strcaseeq(value, "true") || streq(value, "1"))
                ctx->c->verify.allow_unverified = true;
        else
                key_error(ctx, "allow_unverified must be yes or no");
}

static void parse_url(parse_ctx *ctx, const key_def *k, const char *value)
{
        if (*value && !is_http_url(value)) {
                key_error(ctx, "%s must start with http:// or https://", k->name);
                return;
        }
        set_string(ctx, field(ctx, k), value);
}

static void parse_header_name(parse_ctx *ctx, const key_def *k, const char *value)
{
        if (*value && !is_header_name(value)) {
                key_error(ctx, "%s must be an HTTP header name", k->name);
                return;
        }
        set_string(ctx, field(ctx, k), value);
}

static void parse_algorithm(parse_ctx *ctx, const key_def *k, const char *value)
{
        if (!*value || streq(value, "sha256"))
                ctx->c->verify.algorithm = KNOCK_HMAC_SHA256;
        else if (streq(value, "sha512"))
                ctx->c->verify.algorithm = KNOCK_HMAC_SHA512;
        else if (streq(value, "sha1"))
                ctx->c->verify.algorithm = KNOCK_HMAC_SHA1;
        else
                key_error(ctx, "algorithm must be sha256, sha512 or sha1");
}

static void parse_encoding(parse_ctx *ctx, const key_def *k, const char *value)
{
        if (!*value || streq(value, "hex"))
                ctx->c->verify.encoding = KNOCK_ENC_HEX;
        else if (streq(value, "base64"))
                ctx->c->verify.encoding = KNOCK_ENC_BASE64;
        else
                key_error(ctx, "encoding must be hex or base64");
}

/* dedupe, type: "header:NAME", "json:/pointer" (RFC 6901) or "form:NAME"
 * (a urlencoded body field), the sources verify.c reads. */
static bool source_valid(const char *v)
{
        return (startswith(v, "header:") && is_header_name(v + 7)) || startswith(v, "json:/") ||
               (startswith(v, "form:") && v[5]);
}

static void parse_extractor(parse_ctx *ctx, const key_def *k, const char *value)
{
        if (*value && !source_valid(value)) {
                key_error(ctx, "%s must be header:NAME, json:/pointer or form:NAME", k->name);
                return;
        }
        set_string(ctx, field(ctx, k), value);
}

/* ---- [worker] and [route] ------------------------------------------------------ */

/* order_key: a source as dedupe's, read by the worker from the stored body or
 * the first delivery's stored headers (a credential header is refused in
 * finish(), once [endpoint] provider and header are known). */
static void parse_order_key(parse_ctx *ctx, const key_def *k, const char *value)
{
        bool route = ctx->section == SECTION_ROUTE;
        char **p = route ? &ctx->c->routes[ctx->route].order_key : &ctx->c->order_key;

        if (*value && !source_valid(value)) {
                key_error(ctx, "order_key must be header:NAME, json:/pointer or form:NAME");
                return;
        }
        *(route ? &ctx->route_order_key_at[ctx->route] : &ctx->order_key_at) =
                (origin){ctx->file, ctx->line};
        set_string(ctx, p, value);
}

static void parse_handler(parse_ctx *ctx, const key_def *k, const char *value)
{
        char **p = ctx->section == SECTION_ROUTE ? &ctx->c->routes[ctx->route].handler
                                                 : &ctx->c->handler;

        if (*value && !handler_valid(value)) {
                key_error(ctx, "handler must be exec:/absolute/path [ARGS...], http://... or "
                               "https://...");
                return;
        }
        set_string(ctx, p, value);
}

static void parse_backoff(parse_ctx *ctx, const key_def *k, const char *value)
{
        _cleanup_free_ char *base = NULL;
        const char *dots;
        uint64_t b, cap;

        if (!*value)
                value = "2s..1h";
        dots = strstr(value, "..");
        if (dots)
                base = strndup(value, (size_t)(dots - value));
        if (dots && !base) {
                ctx->oom = true;
                return;
        }
        if (!dots || parse_duration_ms(base, false, &b) < 0 ||
                parse_duration_ms(dots + 2, false, &cap) < 0 || b == 0) {
                key_error(ctx, "backoff must be BASE..CAP, two durations such as 2s..1h");
                return;
        }
        if (b > cap) {
                key_error(ctx, "backoff base must not exceed its cap");
                return;
        }
        ctx->c->backoff_base_ms = b;
        ctx->c->backoff_cap_ms = cap;
}

/* ---- [hook] ------------------------------------------------------------------ */

static void parse_hook_secret(parse_ctx *ctx, const key_def *k, const char *value)
{
        config_secret_add(ctx, &ctx->hook_secrets, value);
}

static void parse_hook_url(parse_ctx *ctx, const key_def *k, const char *value)
{
        if (*value && !is_http_url(value)) {
                key_error(ctx, "hook url must start with http:// or https://");
                return;
        }
        set_string(ctx, &ctx->c->hook_url, value);
        ctx->hook_url_at = (origin){ctx->file, ctx->line};
}

/* Calls fn for each word of a comma- and/or space-separated list. */
static bool for_each_word(parse_ctx *ctx, const char *value,
        bool (*fn)(parse_ctx *ctx, const char *word, void *userdata), void *userdata)
{
        const char *p = value;

        for (;;) {
                char word[64];
                size_t n;

                p += strspn(p, ", \t");
                if (!*p)
                        return true;
                n = strcspn(p, ", \t");
                if (n >= sizeof(word))
                        n = sizeof(word) - 1; /* too long to be valid: fn rejects it */
                memcpy(word, p, n);
                word[n] = 0;
                if (!fn(ctx, word, userdata))
                        return false;
                p += strcspn(p, ", \t");
        }
}

static bool hook_on_word(parse_ctx *ctx, const char *word, void *userdata)
{
        bool *on = userdata;

        if (streq(word, "handled"))
                on[0] = true;
        else if (streq(word, "dead"))
                on[1] = true;
        else {
                key_error(ctx, "on: unknown state '%s' (expected handled or dead)", word);
                return false;
        }
        return true;
}

static void parse_hook_on(parse_ctx *ctx, const key_def *k, const char *value)
{
        bool on[2] = {};

        if (!*value)
                value = "handled, dead";
        if (!for_each_word(ctx, value, hook_on_word, on))
                return;
        ctx->c->hook_on_handled = on[0];
        ctx->c->hook_on_dead = on[1];
}

typedef struct schedule_acc {
        uint64_t v[HOOK_SCHEDULE_MAX];
        size_t n;
        bool bad;
} schedule_acc;

static bool schedule_word(parse_ctx *ctx, const char *word, void *userdata)
{
        schedule_acc *a = userdata;

        if (a->n >= HOOK_SCHEDULE_MAX) {
                key_error(ctx, "schedule has more than %d entries", HOOK_SCHEDULE_MAX);
                return false;
        }
        if (parse_duration_ms(word, false, &a->v[a->n]) < 0) {
                key_error(ctx, "schedule: invalid duration '%s' (a number with ms, s, m, h or d)",
                        word);
                return false;
        }
        a->n++;
        return true;
}

static const uint64_t default_hook_schedule[] = {
        0,
        5 * 1000,
        5 * 60 * 1000,
        30 * 60 * 1000,
        2 * 3600 * 1000,
        5 * 3600 * 1000,
        10 * 3600 * 1000,
        10 * 3600 * 1000,
};

static void set_schedule(parse_ctx *ctx, const uint64_t *v, size_t n)
{
        uint64_t *copy = malloc(n * sizeof(uint64_t));

        if (!copy) {
                ctx->oom = true;
                return;
        }
        memcpy(copy, v, n * sizeof(uint64_t));
        free(ctx->c->hook_schedule_ms);
        ctx->c->hook_schedule_ms = copy;
        ctx->c->n_hook_schedule = n;
}

static void parse_hook_schedule(parse_ctx *ctx, const key_def *k, const char *value)
{
        schedule_acc a = {};

        if (!*value) {
                set_schedule(ctx, default_hook_schedule, ELEMENTSOF(default_hook_schedule));
                return;
        }
        if (!for_each_word(ctx, value, schedule_word, &a))
                return;
        set_schedule(ctx, a.v, a.n);
}

/* ---- the key table ------------------------------------------------------------- */

#define F(member) offsetof(knock_config, member)

static const key_def keys[] = {
        {SECTION_ENDPOINT, "provider", parse_provider, 0, 0, 0},
        {SECTION_ENDPOINT, "secret", parse_secret, 0, 0, 0},
        {SECTION_ENDPOINT, "listen", parse_listen, F(listen), 0, 0},
        {SECTION_ENDPOINT, "admin", parse_listen, F(admin), 0, 0},
        {SECTION_ENDPOINT, "path", parse_path, 0, 0, 0},
        {SECTION_ENDPOINT, "max_body", parse_size_key, F(max_body), 1, 0},
        {SECTION_ENDPOINT, "tolerance", parse_tolerance, 0, 0, 0},
        {SECTION_ENDPOINT, "max_connections", parse_count_key, F(max_connections), 1, 1000000},
        {SECTION_ENDPOINT, "header_timeout", parse_duration_key, F(header_timeout_ms), 1, 0},
        {SECTION_ENDPOINT, "body_timeout", parse_duration_key, F(body_timeout_ms), 1, 0},
        {SECTION_ENDPOINT, "max_buffered", parse_size_key, F(max_buffered), 64 * 1024, 0},
        {SECTION_ENDPOINT, "orphan_body", parse_size_key, F(orphan_body), 0, 0},
        {SECTION_ENDPOINT, "orphan_rate", parse_rate_key, F(orphan_rate), 0, 0},
        {SECTION_ENDPOINT, "orphan_burst", parse_count_key, F(orphan_burst), 1, 1000000},
        {SECTION_ENDPOINT, "allow_unverified", parse_allow_unverified, 0, 0, 0},
        {SECTION_ENDPOINT, "url", parse_url, F(verify.url), 0, 0},
        {SECTION_ENDPOINT, "header", parse_header_name, F(verify.header), 0, 0},
        {SECTION_ENDPOINT, "prefix", parse_string_key, F(verify.prefix), 0, 0},
        {SECTION_ENDPOINT, "algorithm", parse_algorithm, 0, 0, 0},
        {SECTION_ENDPOINT, "encoding", parse_encoding, 0, 0, 0},
        {SECTION_ENDPOINT, "timestamp_header", parse_header_name, F(verify.timestamp_header), 0, 0},
        {SECTION_ENDPOINT, "dedupe", parse_extractor, F(verify.dedupe), 0, 0},
        {SECTION_ENDPOINT, "type", parse_extractor, F(verify.type), 0, 0},
        {SECTION_ENDPOINT, "verify_token", parse_string_key, F(verify.verify_token), 0, 0},
        {SECTION_ENDPOINT, "console_token", parse_console_token, 0, 0, 0},
        {SECTION_ENDPOINT, "prometheus_url", parse_url, F(prometheus_url), 0, 0},
        {SECTION_ENDPOINT, "store", parse_store, 0, 0, 0},

        {SECTION_WORKER, "handler", parse_handler, 0, 0, 0},
        {SECTION_WORKER, "concurrency", parse_count_key, F(concurrency), 1, 1024},
        {SECTION_WORKER, "timeout", parse_duration_key, F(timeout_ms), 1, 0},
        {SECTION_WORKER, "max_attempts", parse_count_key, F(max_attempts), 1, UINT64_MAX},
        {SECTION_WORKER, "backoff", parse_backoff, 0, 0, 0},
        {SECTION_WORKER, "max_output", parse_size_key, F(max_output), 0, 0},
        {SECTION_WORKER, "rate", parse_rate_key, F(rate), 0, 0},
        {SECTION_WORKER, "order_key", parse_order_key, 0, 0, 0},

        {SECTION_ROUTE, "handler", parse_handler, 0, 0, 0},
        {SECTION_ROUTE, "concurrency", parse_count_key, offsetof(knock_route, concurrency), 1, 1024},
        {SECTION_ROUTE, "rate", parse_rate_key, offsetof(knock_route, rate), 0, 0},
        {SECTION_ROUTE, "breaker", parse_count_key, offsetof(knock_route, breaker), 0, 1000000},
        {SECTION_ROUTE, "order_key", parse_order_key, 0, 0, 0},
        {SECTION_ROUTE, "breaker_cooldown", parse_duration_key,
         offsetof(knock_route, breaker_cooldown_ms), 1, 0},

        {SECTION_HOOK, "url", parse_hook_url, 0, 0, 0},
        {SECTION_HOOK, "secret", parse_hook_secret, 0, 0, 0},
        {SECTION_HOOK, "on", parse_hook_on, 0, 0, 0},
        {SECTION_HOOK, "max_attempts", parse_count_key, F(hook_max_attempts), 1, UINT64_MAX},
        {SECTION_HOOK, "timeout", parse_duration_key, F(hook_timeout_ms), 1, 0},
        {SECTION_HOOK, "schedule", parse_hook_schedule, 0, 0, 0},
        {SECTION_HOOK, "concurrency", parse_count_key, F(hook_concurrency), 1, 1024},

        {SECTION_RETENTION, "handled", parse_never_key, F(keep_handled_ms), 0, 0},
        {SECTION_RETENTION, "ignored", parse_never_key, F(keep_ignored_ms), 0, 0},
        {SECTION_RETENTION, "orphans", parse_never_key, F(keep_orphans_ms), 0, 0},
        {SECTION_RETENTION, "dead", parse_never_key, F(keep_dead_ms), 0, 0},
        {SECTION_RETENTION, "backups", parse_count_key, F(keep_backups), 1, 100000},
        {SECTION_RETENTION, "audit", parse_never_key, F(keep_audit_ms), 0, 0},
        {SECTION_RETENTION, "min_free_disk", parse_size_key, F(min_free_disk), 0, 0},
};

#undef F

/* Built-in defaults for a key, applied when its value is empty. */
static const char *empty_default(const key_def *k)
{
        static const struct {
                section_kind section;
                const char *name, *value;
        } defaults[] = {
                {SECTION_ENDPOINT, "max_body", "1M"},
                {SECTION_ENDPOINT, "max_connections", "512"},
                {SECTION_ENDPOINT, "header_timeout", "10s"},
                {SECTION_ENDPOINT, "body_timeout", "30s"},
                {SECTION_ENDPOINT, "max_buffered", "64M"},
                {SECTION_ENDPOINT, "orphan_body", "4K"},
                {SECTION_ENDPOINT, "orphan_rate", "10/s"},
                {SECTION_ENDPOINT, "orphan_burst", "100"},
                {SECTION_WORKER, "concurrency", "4"},
                {SECTION_WORKER, "timeout", "30s"},
                {SECTION_WORKER, "max_attempts", "8"},
                {SECTION_WORKER, "max_output", "64K"},
                {SECTION_WORKER, "rate", "0"},
                {SECTION_ROUTE, "rate", "0"},
                {SECTION_ROUTE, "breaker", "0"},
                {SECTION_ROUTE, "breaker_cooldown", "30s"},
                {SECTION_HOOK, "max_attempts", "8"},
                {SECTION_HOOK, "timeout", "15s"},
                {SECTION_HOOK, "concurrency", "16"},
                {SECTION_RETENTION, "handled", "30d"},
                {SECTION_RETENTION, "ignored", "30d"},
                {SECTION_RETENTION, "orphans", "7d"},
                {SECTION_RETENTION, "dead", "never"},
                {SECTION_RETENTION, "backups", "7"},
                {SECTION_RETENTION, "audit", "365d"},
                {SECTION_RETENTION, "min_free_disk", "100M"},
        };

        for (size_t i = 0; i < ELEMENTSOF(defaults); i++)
                if (defaults[i].section == k->section && streq(defaults[i].name, k->name))
                        return defaults[i].value;
        return NULL;
}

void config_apply_defaults(knock_config *c)
{
        /* The same values as empty_default(), as numbers. */
        c->max_body = 1024 * 1024;
        c->max_connections = 512;
        c->header_timeout_ms = 10 * 1000;
        c->body_timeout_ms = 30 * 1000;
        c->max_buffered = 64 * 1024 * 1024;
        c->orphan_body = 4 * 1024;
        c->orphan_rate = (knock_rate){10, 1000};
        c->orphan_burst = 100;
        c->verify.provider = KNOCK_PROVIDER_INVALID;
        c->verify.tolerance_ms = -1;
        c->verify.algorithm = KNOCK_HMAC_SHA256;
        c->verify.encoding = KNOCK_ENC_HEX;
        c->concurrency = 4;
        c->timeout_ms = 30 * 1000;
        c->max_attempts = 8;
        c->backoff_base_ms = 2 * 1000;
        c->backoff_cap_ms = 3600 * 1000;
        c->max_output = 64 * 1024;
        c->hook_on_handled = true;
        c->hook_on_dead = true;
        c->hook_max_attempts = 8;
        c->hook_timeout_ms = 15 * 1000;
        c->hook_concurrency = 16;
        c->keep_handled_ms = 30 * 86400000ULL;
        c->keep_ignored_ms = 30 * 86400000ULL;
        c->keep_orphans_ms = 7 * 86400000ULL;
        c->keep_dead_ms = UINT64_MAX;
        c->keep_backups = 7;
        c->keep_audit_ms = 365 * 86400000ULL;
        c->min_free_disk = 100 * 1024 * 1024;
}

void config_default_schedule(parse_ctx *ctx)
{
        set_schedule(ctx, default_hook_schedule, ELEMENTSOF(default_hook_schedule));
}

bool config_key_parse(parse_ctx *ctx, const char *name, const char *value)
{
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                const key_def *k = &keys[i];
                const char *def;

                if (k->section != ctx->section || !streq(k->name, name))
                        continue;
                def = empty_default(k);
                k->parse(ctx, k, !*value && def ? def : value);
                return true;
        }
        return false;
}
