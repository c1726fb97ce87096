/* SPDX-License-Identifier: MIT */
/*
 * config — loads one endpoint's configuration: KNOCK_CONFIG_DIR/knock.conf
 * (optional, defaults for every key) and then KNOCK_CONFIG_DIR/endpoints/NAME.conf
 * (required, overrides key by key), both in the same INI grammar.
 *
 * Promises (see config.h for the API):
 *  - every problem is collected as "FILE:LINE: message" (those found while
 *    parsing in file order, then those that involve several keys), and
 *    loading goes on after an error so one run reports them all; a value
 *    that was rejected is not reported again as missing;
 *  - unknown sections and keys are errors: a typo such as "secert" must not
 *    silently leave an endpoint unverified;
 *  - secret material never reaches an error message: messages about a secret
 *    name its source (credential name, file path), never its contents, and
 *    lines that fail to parse are never quoted (such a line may be a secret);
 *  - every buffer that held secret text (file contents, literal values,
 *    credential files) is wiped with explicit_bzero before it is freed.
 *
 * Grammar. inih does the splitting into sections and KEY = VALUE pairs, but
 * we feed it lines through our own reader, which lets us:
 *  - count lines exactly, so errors carry the line of the offending key
 *    (Debian's libinih is built without INI_HANDLER_LINENO);
 *  - strip leading white space, so an indented "key = value" is a key and
 *    never a multi-line continuation of the previous key;
 *  - strip inline comments that start with white space then '#' (inih only
 *    knows ';'), as the examples in knock-endpoint(5) use them;
 *  - see section headers, so unknown or empty sections are reported at
 *    their own line and missing keys can point at their section;
 *  - handle lines longer than inih's fixed 200-byte buffer, which would
 *    otherwise be silently truncated: the reader hands inih a short
 *    placeholder value and keeps the real one for the handler.
 *
 * An empty assignment ("handler =") resets a key to its built-in default,
 * and for `secret` empties the list, as in systemd unit files.
 */
#include "config.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <ini.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/un.h>

#include "util.h"

#define SECRET_FILE_MAX (64 * 1024)
#define CONFIG_FILE_MAX (1024 * 1024)
#define HOOK_SCHEDULE_MAX 64
#define VALUE_ECHO_MAX 64

/* The placeholder value the reader gives inih for a line too long for it. */
#define LONG_VALUE_MARK "\x01long"

typedef enum section_kind {
        SECTION_NONE, /* before any header */
        SECTION_ENDPOINT,
        SECTION_WORKER,
        SECTION_ROUTE,
        SECTION_HOOK,
        SECTION_RETENTION,
        SECTION_BAD, /* unknown or malformed: already reported, keys ignored */
} section_kind;

static const char *const section_names[] = {
        [SECTION_NONE] = "",
        [SECTION_ENDPOINT] = "endpoint",
        [SECTION_WORKER] = "worker",
        [SECTION_ROUTE] = "route",
        [SECTION_HOOK] = "hook",
        [SECTION_RETENTION] = "retention",
        [SECTION_BAD] = "",
};

/* One `secret = …` value, kept unresolved until the provider is known. */
typedef struct secret_spec {
        char *spec; /* may be literal secret text: wiped on free */
        const char *file;
        unsigned line;
} secret_spec;

typedef struct secret_list {
        secret_spec *v;
        size_t n;
        const char *set_in_file; /* the file that last started this list */
} secret_list;

/* Where the effective value of a key came from, for checks made after parsing. */
typedef struct origin {
        const char *file;
        unsigned line;
} origin;

typedef struct parse_ctx {
        knock_config *c;
        knock_config_errors *errors;
        bool oom;

        /* the file being read */
        const char *file;
        char *buf;
        size_t len, pos;
        unsigned line;
        char *long_value;   /* the real value when the line was too long for inih */
        bool line_reported; /* the reader already reported this line */

        /* the section being read */
        section_kind section;
        size_t route; /* index into c->routes when section == SECTION_ROUTE */

        /* collected across both files */
        secret_list secrets;
        secret_list hook_secrets;
        secret_list console_tokens;
        origin provider_at;
        bool provider_rejected; /* an unknown name was reported */
        bool secret_rejected;   /* a malformed `secret` was reported */
        bool listen_rejected;   /* a malformed `listen` was reported */
        origin hook_url_at;
        origin route_at[KNOCK_MAX_ROUTES];
        unsigned endpoint_section_line; /* in the endpoint file, 0 when absent */
        const char *endpoint_file;
} parse_ctx;

typedef struct key_def key_def;
typedef void (*key_parser)(parse_ctx *ctx, const key_def *k, const char *value);

struct key_def {
        section_kind section;
        const char *name;
        key_parser parse;
        size_t offset; /* into knock_config */
        uint64_t min, max;
};

static _printf_(4, 5) void add_error(
        parse_ctx *ctx, const char *file, unsigned line, const char *fmt, ...)
{
        _cleanup_free_ char *msg = NULL;
        char *full = NULL;
        char **v;
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (r < 0) {
                msg = NULL;
                ctx->oom = true;
                return;
        }
        if (asprintf(&full, "%s:%u: %s", file, line, msg) < 0) {
                ctx->oom = true;
                return;
        }
        v = reallocarray(ctx->errors->msgs, ctx->errors->n + 1, sizeof(char *));
        if (!v) {
                free(full);
                ctx->oom = true;
                return;
        }
        v[ctx->errors->n++] = full;
        ctx->errors->msgs = v;
}

#define key_error(ctx, fmt, ...) add_error(ctx, (ctx)->file, (ctx)->line, fmt, ##__VA_ARGS__)

/* Whether a name that is not a known key or section may be quoted in an
 * error. Key names are lower-case words; anything else might be a secret
 * pasted on a line of its own ("dGhpcyBpcyBhIHNlY3JldA==" parses as a key). */
static bool quotable(const char *s)
{
        size_t n = strlen(s);

        return n > 0 && n <= 32 && strspn(s, "abcdefghijklmnopqrstuvwxyz_") == n;
}

static void *field(parse_ctx *ctx, const key_def *k)
{
        return (char *)ctx->c + k->offset;
}

static char *strdup_or_oom(parse_ctx *ctx, const char *s)
{
        char *d = strdup(s);

        if (!d)
                ctx->oom = true;
        return d;
}

static void set_string(parse_ctx *ctx, char **p, const char *value)
{
        char *d = NULL;

        if (*value) {
                d = strdup_or_oom(ctx, value);
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
                if (quotable(value))
                        key_error(ctx, "unknown provider '%s'", value);
                else
                        key_error(ctx, "unknown provider");
                ctx->provider_rejected = true;
                return;
        }
        ctx->c->verify.provider = p;
        ctx->provider_at = (origin){ctx->file, ctx->line};
}

static void secret_list_clear(secret_list *l)
{
        for (size_t i = 0; i < l->n; i++)
                secret_free(l->v[i].spec);
        free(l->v);
        *l = (secret_list){};
}

static void parse_secret_into(parse_ctx *ctx, secret_list *l, const char *value)
{
        secret_spec *v;
        char *spec;

        /* The first `secret` of a file replaces what an earlier file gave:
         * an endpoint's own secrets are never mixed with knock.conf's. */
        if (l->set_in_file != ctx->file) {
                secret_list_clear(l);
                l->set_in_file = ctx->file;
        }
        if (!*value) {
                secret_list_clear(l);
                l->set_in_file = ctx->file;
                return;
        }
        if (!startswith(value, "credential:") && !startswith(value, "literal:") &&
                value[0] != '/') {
                key_error(ctx, "secret must be credential:NAME, an absolute file path or "
                               "literal:TEXT");
                ctx->secret_rejected = true;
                return;
        }
        spec = strdup_or_oom(ctx, value);
        if (!spec)
                return;
        v = reallocarray(l->v, l->n + 1, sizeof(secret_spec));
        if (!v) {
                secret_free(spec);
                ctx->oom = true;
                return;
        }
        l->v = v;
        l->v[l->n++] = (secret_spec){spec, ctx->file, ctx->line};
}

static void parse_secret(parse_ctx *ctx, const key_def *k, const char *value)
{
        parse_secret_into(ctx, &ctx->secrets, value);
}

static void parse_console_token(parse_ctx *ctx, const key_def *k, const char *value)
{
        parse_secret_into(ctx, &ctx->console_tokens, value);
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
static void parse_extractor(parse_ctx *ctx, const key_def *k, const char *value)
{
        if (*value && !(startswith(value, "header:") && is_header_name(value + 7)) &&
                !startswith(value, "json:/") && !(startswith(value, "form:") && value[5])) {
                key_error(ctx, "%s must be header:NAME, json:/pointer or form:NAME", k->name);
                return;
        }
        set_string(ctx, field(ctx, k), value);
}

/* ---- [worker] and [route] ------------------------------------------------------ */

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
        parse_secret_into(ctx, &ctx->hook_secrets, value);
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

        {SECTION_WORKER, "handler", parse_handler, 0, 0, 0},
        {SECTION_WORKER, "concurrency", parse_count_key, F(concurrency), 1, 1024},
        {SECTION_WORKER, "timeout", parse_duration_key, F(timeout_ms), 1, 0},
        {SECTION_WORKER, "max_attempts", parse_count_key, F(max_attempts), 1, UINT64_MAX},
        {SECTION_WORKER, "backoff", parse_backoff, 0, 0, 0},
        {SECTION_WORKER, "max_output", parse_size_key, F(max_output), 0, 0},

        {SECTION_ROUTE, "handler", parse_handler, 0, 0, 0},

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

static void apply_defaults(knock_config *c)
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

/* ---- reading lines and sections ------------------------------------------------ */

/* Parses `route "TYPE"` into a route slot; reports a malformed header. */
static void open_route(parse_ctx *ctx, const char *name)
{
        const char *p = name + 5, *end;
        _cleanup_free_ char *type = NULL;
        knock_config *c = ctx->c;
        size_t i;

        p += strspn(p, " \t");
        end = *p == '"' ? strchr(p + 1, '"') : NULL;
        if (!end || end == p + 1 || end[1 + strspn(end + 1, " \t")] != 0) {
                key_error(ctx, "route section must be [route \"EVENT_TYPE\"]");
                ctx->section = SECTION_BAD;
                return;
        }
        type = strndup(p + 1, (size_t)(end - p - 1));
        if (!type) {
                ctx->oom = true;
                ctx->section = SECTION_BAD;
                return;
        }
        /* A route named again (here or in knock.conf) is the same route. */
        for (i = 0; i < c->n_routes; i++)
                if (streq(c->routes[i].event_type, type))
                        break;
        if (i == c->n_routes) {
                if (c->n_routes >= KNOCK_MAX_ROUTES) {
                        key_error(ctx, "too many routes (at most %d)", KNOCK_MAX_ROUTES);
                        ctx->section = SECTION_BAD;
                        return;
                }
                c->routes[i].event_type = TAKE_PTR(type);
                c->n_routes++;
        }
        ctx->route_at[i] = (origin){ctx->file, ctx->line};
        ctx->route = i;
        ctx->section = SECTION_ROUTE;
}

static void open_section(parse_ctx *ctx, const char *name)
{
        static const section_kind plain[] = {
                SECTION_ENDPOINT, SECTION_WORKER, SECTION_HOOK, SECTION_RETENTION};

        for (size_t i = 0; i < ELEMENTSOF(plain); i++)
                if (streq(name, section_names[plain[i]])) {
                        ctx->section = plain[i];
                        if (plain[i] == SECTION_ENDPOINT && ctx->file == ctx->endpoint_file &&
                                ctx->endpoint_section_line == 0)
                                ctx->endpoint_section_line = ctx->line;
                        return;
                }
        if (startswith(name, "route") && (name[5] == ' ' || name[5] == '\t' || name[5] == '"')) {
                open_route(ctx, name);
                return;
        }
        if (quotable(name))
                key_error(ctx, "unknown section [%s]", name);
        else
                key_error(ctx, "unknown section");
        ctx->section = SECTION_BAD;
}

/* Trims a line in place: leading blanks, a " #" or " ;" comment, trailing blanks. */
static char *clean_line(char *s)
{
        char *e;

        s += strspn(s, " \t");
        if (*s == '#' || *s == ';')
                return s + strlen(s); /* "" */
        for (e = s; *e; e++)
                if ((*e == '#' || *e == ';') && e > s && (e[-1] == ' ' || e[-1] == '\t')) {
                        *e = 0;
                        break;
                }
        e = s + strlen(s);
        while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
                *--e = 0;
        return s;
}

/*
 * inih's reader: hands over the next line, cleaned, and keeps section state.
 * A line inih would reject is reported here (without quoting it) and passed
 * on as an empty line; a line too long for inih's buffer is passed on as
 * "key = <mark>" with the real value kept in ctx->long_value.
 */
static char *reader(char *str, int num, void *stream)
{
        parse_ctx *ctx = stream;
        const char *nl;
        char *line, *s;
        size_t n, max = (size_t)num - 2; /* room for '\n' and NUL */

        if (ctx->pos >= ctx->len)
                return NULL;
        nl = memchr(ctx->buf + ctx->pos, '\n', ctx->len - ctx->pos);
        n = nl ? (size_t)(nl - (ctx->buf + ctx->pos)) : ctx->len - ctx->pos;
        line = ctx->buf + ctx->pos;
        ctx->pos += n + (nl ? 1 : 0);
        line[n] = 0; /* the buffer is ours: cut the line in place */
        ctx->line++;
        ctx->long_value = NULL;

        s = clean_line(line);
        if (*s == 0) {
                strcpy(str, "\n");
                return str;
        }
        if (*s == '[') {
                char *end = strchr(s, ']');

                if (!end || end[1] != 0) {
                        key_error(ctx, "section header must be [NAME]");
                        ctx->section = SECTION_BAD;
                } else {
                        *end = 0;
                        open_section(ctx, s + 1);
                }
                /* inih keeps its own section name: give it one it accepts */
                strcpy(str, "[s]\n");
                return str;
        }
        if (!strpbrk(s, "=:")) {
                key_error(ctx, "expected KEY = VALUE");
                strcpy(str, "\n");
                return str;
        }
        if (strlen(s) > max) {
                char *sep = strpbrk(s, "=:");
                size_t keylen = (size_t)(sep - s);

                if (keylen + 1 + strlen(LONG_VALUE_MARK) > max) {
                        key_error(ctx, "key too long");
                        strcpy(str, "\n");
                        return str;
                }
                ctx->long_value = sep + 1 + strspn(sep + 1, " \t");
                memcpy(str, s, keylen + 1);
                strcpy(str + keylen + 1, LONG_VALUE_MARK "\n");
                return str;
        }
        strcpy(str, s);
        strcat(str, "\n");
        return str;
}

static int handler(void *userdata, const char *section, const char *name, const char *value)
{
        parse_ctx *ctx = userdata;

        if (ctx->long_value && streq(value, LONG_VALUE_MARK))
                value = ctx->long_value;

        switch (ctx->section) {
        case SECTION_BAD:
                return 1;
        case SECTION_NONE:
                key_error(ctx, "key outside of any section");
                return 1;
        default:
                break;
        }

        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                const key_def *k = &keys[i];
                const char *def;

                if (k->section != ctx->section || !streq(k->name, name))
                        continue;
                def = empty_default(k);
                k->parse(ctx, k, !*value && def ? def : value);
                return 1;
        }
        if (!quotable(name))
                key_error(ctx, "unknown key in [%s]", section_names[ctx->section]);
        else if (ctx->section == SECTION_ROUTE)
                key_error(ctx, "unknown key '%s' in [route \"%s\"]", name,
                        ctx->c->routes[ctx->route].event_type);
        else
                key_error(ctx, "unknown key '%s' in [%s]", name, section_names[ctx->section]);
        return 1;
}

static void wipe_buf(char **buf, size_t len)
{
        if (*buf) {
                explicit_bzero(*buf, len);
                free(*buf);
                *buf = NULL;
        }
}

/* Parses one file. Returns 0, -ENOENT when it does not exist, or another negative errno. */
static int parse_file(parse_ctx *ctx, const char *path, bool required)
{
        int r;

        ctx->file = path;
        ctx->line = 0;
        ctx->pos = 0;
        ctx->section = SECTION_NONE;
        ctx->long_value = NULL;

        r = read_file_full(path, CONFIG_FILE_MAX, &ctx->buf, &ctx->len);
        if (r == -ENOENT && !required)
                return r;
        if (r < 0) {
                add_error(ctx, path, 0, "cannot read: %s", strerror(-r));
                return r;
        }
        /* a UTF-8 byte order mark is allowed, as inih allows it */
        if (ctx->len >= 3 && memcmp(ctx->buf, "\xEF\xBB\xBF", 3) == 0)
                ctx->pos = 3;

        r = ini_parse_stream(reader, ctx, handler, ctx);
        wipe_buf(&ctx->buf, ctx->len); /* may hold literal secrets */
        if (r == -2)
                return -ENOMEM;
        /* Every line inih could reject has been reported and blanked by the
         * reader already; anything else is reported once, generically. */
        if (r > 0)
                add_error(ctx, path, (unsigned)r, "syntax error");
        return 0;
}

/* ---- secrets ------------------------------------------------------------------ */

/* Reads the text a secret spec names into *ret (wiped by the caller). */
static int secret_text(parse_ctx *ctx, const secret_spec *s, char **ret, size_t *ret_len)
{
        _cleanup_free_ char *path = NULL;
        const char *what;
        int r;

        if (startswith(s->spec, "literal:")) {
                *ret = strdup(s->spec + 8);
                if (!*ret)
                        return -ENOMEM;
                *ret_len = strlen(*ret);
                return 0;
        }
        if (startswith(s->spec, "credential:")) {
                const char *name = s->spec + 11, *dir = getenv("CREDENTIALS_DIRECTORY");

                if (!*name || strchr(name, '/') || streq(name, ".") || streq(name, "..")) {
                        add_error(ctx, s->file, s->line, "secret: invalid credential name");
                        return -EINVAL;
                }
                if (!dir || !*dir) {
                        /* Outside a unit (knockctl check-config by hand), look
                         * where LoadCredential= itself looks, in its order. */
                        static const char *const credstores[] = {
                                "/etc/credstore", "/run/credstore", "/usr/lib/credstore",
                        };
                        const char *root = getenv("KNOCK_CREDSTORE_ROOT"); /* tests */

                        for (size_t i = 0; i < ELEMENTSOF(credstores) && !path; i++) {
                                if (asprintf(&path, "%s%s/%s", root ? root : "", credstores[i],
                                             name) < 0)
                                        return -ENOMEM;
                                if (access(path, F_OK) < 0)
                                        path = mfree(path);
                        }
                        if (!path) {
                                add_error(ctx, s->file, s->line,
                                        "secret credential:%s: $CREDENTIALS_DIRECTORY is not set "
                                        "(LoadCredential= missing?) and no credstore has it",
                                        name);
                                return -EINVAL;
                        }
                } else if (asprintf(&path, "%s/%s", dir, name) < 0) {
                        path = NULL;
                        return -ENOMEM;
                }
                what = path;
        } else
                what = s->spec; /* an absolute path, checked when parsed */

        r = read_file_full(what, SECRET_FILE_MAX, ret, ret_len);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                add_error(ctx, s->file, s->line, "secret: cannot read %s: %s", what,
                        r == -EFBIG ? "file too large" : strerror(-r));
                return -EINVAL;
        }
        return 0;
}

/* Resolves a list of specs into their texts, one trailing newline stripped. */
static int resolve_secret(parse_ctx *ctx, const secret_spec *s, char **ret)
{
        char *text = NULL;
        size_t len = 0, size;
        int r;

        r = secret_text(ctx, s, &text, &len);
        if (r < 0)
                return r;
        size = len; /* what to wipe */
        if (memchr(text, 0, len)) {
                wipe_buf(&text, size);
                add_error(ctx, s->file, s->line, "secret contains a NUL byte");
                return -EINVAL;
        }
        /* exactly one line ending: "\n" or "\r\n" */
        if (len > 0 && text[len - 1] == '\n') {
                text[--len] = 0;
                if (len > 0 && text[len - 1] == '\r')
                        text[--len] = 0;
        }
        if (len == 0) {
                wipe_buf(&text, size);
                add_error(ctx, s->file, s->line, "secret is empty");
                return -EINVAL;
        }
        *ret = text;
        return 0;
}

static int resolve_endpoint_secrets(parse_ctx *ctx)
{
        knock_config *c = ctx->c;

        c->verify.secrets = calloc(ctx->secrets.n ? ctx->secrets.n : 1, sizeof(knock_secret));
        if (!c->verify.secrets)
                return -ENOMEM;
        for (size_t i = 0; i < ctx->secrets.n; i++) {
                const secret_spec *s = &ctx->secrets.v[i];
                char *text = NULL;
                int r;

                r = resolve_secret(ctx, s, &text);
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        continue;
                r = verify_secret_from_text(
                        c->verify.provider, text, &c->verify.secrets[c->verify.n_secrets]);
                secret_free(text);
                if (r == -ENOMEM)
                        return r;
                if (r < 0) {
                        add_error(ctx, s->file, s->line, "secret is not valid for provider %s",
                                provider_to_string(c->verify.provider));
                        continue;
                }
                c->verify.n_secrets++;
        }
        return 0;
}

/* Resolves the texts of a list of specs into *ret (n of them, room for one
 * more), keeping those check() accepts: 0, or -EINVAL after it reported
 * why not. A text that does not resolve was reported by resolve_secret(). */
static int resolve_texts(parse_ctx *ctx, const secret_list *l,
        int (*check)(parse_ctx *ctx, const secret_spec *s, const char *text), char ***ret,
        size_t *ret_n)
{
        *ret = calloc(l->n + 1, sizeof(char *));
        if (!*ret)
                return -ENOMEM;
        for (size_t i = 0; i < l->n; i++) {
                char *text = NULL;
                int r;

                r = resolve_secret(ctx, &l->v[i], &text);
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        continue;
                r = check(ctx, &l->v[i], text);
                if (r < 0) {
                        secret_free(text);
                        if (r == -ENOMEM)
                                return r;
                        continue;
                }
                (*ret)[(*ret_n)++] = text;
        }
        return 0;
}

/* Hooks are signed the Standard Webhooks way: check the text decodes now
 * rather than at the first hook. */
static int check_hook_secret(parse_ctx *ctx, const secret_spec *s, const char *text)
{
        knock_secret key = {};
        int r;

        r = verify_secret_from_text(KNOCK_PROVIDER_STANDARD, text, &key);
        if (r >= 0 && key.kind != KNOCK_KEY_SHARED)
                r = -EINVAL; /* a whpk_ public key cannot sign */
        verify_secret_clear(&key);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                add_error(ctx, s->file, s->line,
                        "hook secret is not a Standard Webhooks secret (whsec_...)");
        return r < 0 ? -EINVAL : 0;
}

/* The console's tokens are credentials like the provider's secret; a short
 * one could be guessed over the network, so 16 characters at least. */
#define CONSOLE_TOKEN_MIN 16

static int check_console_token(parse_ctx *ctx, const secret_spec *s, const char *text)
{
        if (strlen(text) >= CONSOLE_TOKEN_MIN)
                return 0;
        add_error(ctx, s->file, s->line, "console_token must be at least %d characters",
                CONSOLE_TOKEN_MIN);
        return -EINVAL;
}

/* ---- checks across keys ---------------------------------------------------------- */

static int finish(parse_ctx *ctx)
{
        knock_config *c = ctx->c;
        unsigned sect = ctx->endpoint_section_line;
        const char *pname;
        int r;

        if (!c->listen && !ctx->listen_rejected)
                add_error(ctx, ctx->endpoint_file, sect, "[endpoint] listen is not set");
        if (!c->admin && asprintf(&c->admin, "%s/%s.admin", knock_runtime_dir(), c->name) < 0) {
                c->admin = NULL;
                return -ENOMEM;
        }
        if (!c->path) {
                c->path = strdup("/");
                if (!c->path)
                        return -ENOMEM;
        }
        if (!c->hook_schedule_ms) {
                set_schedule(ctx, default_hook_schedule, ELEMENTSOF(default_hook_schedule));
                if (ctx->oom)
                        return -ENOMEM;
        }

        for (size_t i = 0; i < c->n_routes; i++)
                if (!c->routes[i].handler)
                        add_error(ctx, ctx->route_at[i].file, ctx->route_at[i].line,
                                "[route \"%s\"] has no handler", c->routes[i].event_type);

        if (c->verify.provider == KNOCK_PROVIDER_INVALID) {
                /* an unknown name was reported where it was written */
                if (!ctx->provider_rejected)
                        add_error(ctx, ctx->endpoint_file, sect, "[endpoint] provider is not set");
        } else {
                pname = provider_to_string(c->verify.provider);
                if (c->verify.provider == KNOCK_PROVIDER_NONE) {
                        if (!c->verify.allow_unverified)
                                add_error(ctx, ctx->provider_at.file, ctx->provider_at.line,
                                        "provider none requires allow_unverified = yes");
                } else if (ctx->secrets.n == 0 && !ctx->secret_rejected)
                        add_error(ctx, ctx->endpoint_file, sect,
                                "provider %s requires at least one secret", pname);
                /* Twilio and HubSpot sign the URL they call, which only the
                 * operator knows behind a reverse proxy. */
                if ((streq(pname, "twilio") || streq(pname, "hubspot")) && !c->verify.url)
                        add_error(ctx, ctx->endpoint_file, sect,
                                "provider %s requires url (the exact public URL)", pname);
                /* the generic scheme has no signature header of its own */
                if (c->verify.provider == KNOCK_PROVIDER_HMAC && !c->verify.header)
                        add_error(ctx, ctx->endpoint_file, sect,
                                "provider hmac requires header (the signature header)");
                if (c->verify.provider != KNOCK_PROVIDER_NONE) {
                        r = resolve_endpoint_secrets(ctx);
                        if (r < 0)
                                return r;
                }
        }

        if (c->hook_url && ctx->hook_secrets.n == 0)
                add_error(ctx, ctx->hook_url_at.file, ctx->hook_url_at.line,
                        "hook url requires at least one secret in [hook]");
        r = resolve_texts(ctx, &ctx->console_tokens, check_console_token, &c->console_tokens,
                &c->n_console_tokens);
        if (r < 0)
                return r;
        return resolve_texts(ctx, &ctx->hook_secrets, check_hook_secret, &c->hook_secrets,
                &c->n_hook_secrets);
}

/* ---- public API -------------------------------------------------------------- */

int config_load(const char *name, knock_config **ret, knock_config_errors *errors)
{
        _cleanup_(config_freep) knock_config *c = NULL;
        _cleanup_free_ char *global = NULL, *endpoint = NULL;
        parse_ctx ctx = {.errors = errors};
        int r;

        *errors = (knock_config_errors){};
        if (asprintf(&global, "%s/knock.conf", knock_config_dir()) < 0) {
                global = NULL;
                return -ENOMEM;
        }
        if (asprintf(&endpoint, "%s/endpoints/%s.conf", knock_config_dir(), name ? name : "") < 0) {
                endpoint = NULL;
                return -ENOMEM;
        }
        if (!endpoint_name_valid(name)) {
                add_error(&ctx, endpoint, 0,
                        "invalid endpoint name (expected [a-z0-9][a-z0-9_-]{0,62})");
                return ctx.oom ? -ENOMEM : -EINVAL;
        }

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        apply_defaults(c);
        c->name = strdup(name);
        c->path_file = strdup(endpoint);
        if (!c->name || !c->path_file)
                return -ENOMEM;
        ctx.c = c;
        ctx.endpoint_file = c->path_file;

        r = parse_file(&ctx, global, false);
        if (r < 0 && r != -ENOENT)
                goto out;
        r = parse_file(&ctx, c->path_file, true);
        if (r < 0)
                goto out;
        r = finish(&ctx);
        if (r < 0)
                goto out;
        if (ctx.oom) {
                r = -ENOMEM;
                goto out;
        }
        if (errors->n > 0) {
                r = -EINVAL;
                goto out;
        }
        *ret = TAKE_PTR(c);
        r = 0;
out:
        /* A file that could not be read returns its errno; its message is in
         * *errors already. */
        wipe_buf(&ctx.buf, ctx.len);
        secret_list_clear(&ctx.secrets);
        secret_list_clear(&ctx.hook_secrets);
        secret_list_clear(&ctx.console_tokens);
        return r;
}

knock_config *config_free(knock_config *c)
{
        if (!c)
                return NULL;
        free(c->name);
        free(c->path_file);
        free(c->listen);
        free(c->admin);
        free(c->path);
        verify_config_clear(&c->verify);
        free(c->handler);
        for (size_t i = 0; i < c->n_routes; i++) {
                free(c->routes[i].event_type);
                free(c->routes[i].handler);
        }
        free(c->hook_url);
        if (c->hook_secrets)
                for (size_t i = 0; i < c->n_hook_secrets; i++)
                        secret_free(c->hook_secrets[i]);
        free(c->hook_secrets);
        if (c->console_tokens)
                for (size_t i = 0; i < c->n_console_tokens; i++)
                        secret_free(c->console_tokens[i]);
        free(c->console_tokens);
        free(c->prometheus_url);
        free(c->hook_schedule_ms);
        free(c);
        return NULL;
}

void config_freep(knock_config **c)
{
        *c = config_free(*c);
}

void config_errors_clear(knock_config_errors *e)
{
        if (!e)
                return;
        for (size_t i = 0; i < e->n; i++)
                free(e->msgs[i]);
        free(e->msgs);
        *e = (knock_config_errors){};
}

void strv_free(char **v, size_t n)
{
        if (!v)
                return;
        for (size_t i = 0; i < n; i++)
                free(v[i]);
        free(v);
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

int config_list_endpoints(char ***ret, size_t *ret_n)
{
        _cleanup_free_ char *dir = NULL;
        char **v = NULL;
        size_t n = 0;
        struct dirent *de;
        DIR *d;

        if (asprintf(&dir, "%s/endpoints", knock_config_dir()) < 0) {
                dir = NULL;
                return -ENOMEM;
        }
        d = opendir(dir);
        if (!d) {
                if (errno != ENOENT)
                        return -errno;
                /* no endpoints directory: no endpoints */
                *ret = NULL;
                *ret_n = 0;
                return 0;
        }
        while ((de = readdir(d))) {
                size_t len = strlen(de->d_name);
                char *name, **nv;

                if (len <= 5 || !streq(de->d_name + len - 5, ".conf"))
                        continue;
                name = strndup(de->d_name, len - 5);
                if (!name)
                        goto oom;
                /* Files that cannot name an endpoint (editor backups such as
                 * "x.conf~" never match; "Bad.conf" does not) are skipped. */
                if (!endpoint_name_valid(name)) {
                        free(name);
                        continue;
                }
                nv = reallocarray(v, n + 1, sizeof(char *));
                if (!nv) {
                        free(name);
                        goto oom;
                }
                v = nv;
                v[n++] = name;
        }
        closedir(d);
        if (n > 1)
                qsort(v, n, sizeof(char *), cmp_str);
        *ret = v;
        *ret_n = n;
        return 0;
oom:
        closedir(d);
        strv_free(v, n);
        return -ENOMEM;
}

const char *config_handler_for(const knock_config *c, const char *event_type)
{
        if (event_type)
                for (size_t i = 0; i < c->n_routes; i++)
                        if (streq(c->routes[i].event_type, event_type))
                                return c->routes[i].handler;
        return c->handler;
}

char *config_db_path(const char *name)
{
        char *p;

        if (asprintf(&p, "%s/%s.db", knock_state_dir(), name) < 0)
                return NULL;
        return p;
}

char *config_backup_dir(const char *name)
{
        char *p;

        if (asprintf(&p, "%s/backups/%s", knock_state_dir(), name) < 0)
                return NULL;
        return p;
}
