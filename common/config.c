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
 *    placeholder value and keeps the real one for apply_key_value(), the
 *    callback inih calls with each KEY = VALUE.
 *
 * An empty assignment ("handler =") resets a key to its built-in default,
 * and for `secret` empties the list, as in systemd unit files.
 *
 * This file reads the files and makes the checks that involve several keys;
 * the key table and value grammar are config-keys.c, secrets and
 * credentials config-secrets.c (config-internal.h joins the three).
 */
#include "config.h"

#include <dirent.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>

#include "config-internal.h"
#include "store.h"
#include "util.h"

/* The placeholder value the reader gives inih for a line too long for it. */
#define LONG_VALUE_MARK "\x01long"

static const char *const section_names[] = {
        [SECTION_NONE] = "",
        [SECTION_ENDPOINT] = "endpoint",
        [SECTION_WORKER] = "worker",
        [SECTION_ROUTE] = "route",
        [SECTION_HOOK] = "hook",
        [SECTION_RETENTION] = "retention",
        [SECTION_BAD] = "",
};

/* ---- errors and small helpers ------------------------------------------------- */

void config_error(parse_ctx *ctx, const char *file, unsigned line, const char *fmt, ...)
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

/* Whether a name that is not a known key or section may be quoted in an
 * error. Key names are lower-case words; anything else might be a secret
 * pasted on a line of its own ("dGhpcyBpcyBhIHNlY3JldA==" parses as a key). */
bool config_quotable(const char *s)
{
        size_t n = strlen(s);

        return n > 0 && n <= 32 && strspn(s, "abcdefghijklmnopqrstuvwxyz_") == n;
}

char *config_strdup(parse_ctx *ctx, const char *s)
{
        char *d = strdup(s);

        if (!d)
                ctx->oom = true;
        return d;
}

void config_wipe(char **buf, size_t len)
{
        if (*buf) {
                explicit_bzero(*buf, len);
                free(*buf);
                *buf = NULL;
        }
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
        if (config_quotable(name))
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

/*
 * inih's callback for each KEY = VALUE it splits off a line (inih calls it its
 * "handler"): the key's parser applies the value to the configuration, in the
 * section the reader last saw. Keys of a malformed section are skipped (that
 * section was reported); an unknown key is reported. Always 1: inih goes on,
 * so one run reports every problem.
 */
static int apply_key_value(
        void *userdata, const char *section, const char *name, const char *value)
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

        if (config_key_parse(ctx, name, value))
                return 1;
        if (!config_quotable(name))
                key_error(ctx, "unknown key in [%s]", section_names[ctx->section]);
        else if (ctx->section == SECTION_ROUTE)
                key_error(ctx, "unknown key '%s' in [route \"%s\"]", name,
                        ctx->c->routes[ctx->route].event_type);
        else
                key_error(ctx, "unknown key '%s' in [%s]", name, section_names[ctx->section]);
        return 1;
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
                config_error(ctx, path, 0, "cannot read: %s", strerror(-r));
                return r;
        }
        /* a UTF-8 byte order mark is allowed, as inih allows it */
        if (ctx->len >= 3 && memcmp(ctx->buf, "\xEF\xBB\xBF", 3) == 0)
                ctx->pos = 3;

        r = ini_parse_stream(reader, ctx, apply_key_value, ctx);
        config_wipe(&ctx->buf, ctx->len); /* may hold literal secrets */
        if (r == -2)
                return -ENOMEM;
        /* Every line inih could reject has been reported and blanked by the
         * reader already; anything else is reported once, generically. */
        if (r > 0)
                config_error(ctx, path, (unsigned)r, "syntax error");
        return 0;
}

/* ---- checks across keys ---------------------------------------------------------- */

static void check_order_key(parse_ctx *ctx, const char *source, const origin *at)
{
        if (source && startswith(source, "header:") &&
            config_header_is_credential(ctx->c, source + 7))
                config_error(ctx, at->file, at->line,
                        "order_key cannot be the credential header %s: it is stored redacted",
                        source + 7);
}

static int finish(parse_ctx *ctx)
{
        knock_config *c = ctx->c;
        unsigned sect = ctx->endpoint_section_line;
        const char *pname;
        int r;

        if (!c->listen && !ctx->listen_rejected)
                config_error(ctx, ctx->endpoint_file, sect, "[endpoint] listen is not set");
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
                config_default_schedule(ctx);
                if (ctx->oom)
                        return -ENOMEM;
        }

        for (size_t i = 0; i < c->n_routes; i++)
                if (!c->routes[i].handler)
                        config_error(ctx, ctx->route_at[i].file, ctx->route_at[i].line,
                                "[route \"%s\"] has no handler", c->routes[i].event_type);

        /* A credential header is stored redacted: as a key, every event
         * would share "[redacted]". */
        check_order_key(ctx, c->order_key, &ctx->order_key_at);
        for (size_t i = 0; i < c->n_routes; i++)
                check_order_key(ctx, c->routes[i].order_key, &ctx->route_order_key_at[i]);

        if (c->verify.provider == KNOCK_PROVIDER_INVALID) {
                /* an unknown name was reported where it was written */
                if (!ctx->provider_rejected)
                        config_error(
                                ctx, ctx->endpoint_file, sect, "[endpoint] provider is not set");
        } else {
                pname = provider_to_string(c->verify.provider);
                if (c->verify.provider == KNOCK_PROVIDER_NONE) {
                        if (!c->verify.allow_unverified)
                                config_error(ctx, ctx->provider_at.file, ctx->provider_at.line,
                                        "provider none requires allow_unverified = yes");
                } else if (ctx->secrets.n == 0 && !ctx->secret_rejected)
                        config_error(ctx, ctx->endpoint_file, sect,
                                "provider %s requires at least one secret", pname);
                /* Twilio and HubSpot sign the URL they call, which only the
                 * operator knows behind a reverse proxy. */
                if ((streq(pname, "twilio") || streq(pname, "hubspot")) && !c->verify.url)
                        config_error(ctx, ctx->endpoint_file, sect,
                                "provider %s requires url (the exact public URL)", pname);
                /* the generic scheme has no signature header of its own */
                if (c->verify.provider == KNOCK_PROVIDER_HMAC && !c->verify.header)
                        config_error(ctx, ctx->endpoint_file, sect,
                                "provider hmac requires header (the signature header)");
                if (c->verify.provider != KNOCK_PROVIDER_NONE) {
                        r = config_resolve_endpoint_secrets(ctx);
                        if (r < 0)
                                return r;
                }
        }

        if (c->hook_url && ctx->hook_secrets.n == 0)
                config_error(ctx, ctx->hook_url_at.file, ctx->hook_url_at.line,
                        "hook url requires at least one secret in [hook]");
        r = config_resolve_console_tokens(ctx);
        if (r < 0)
                return r;
        return config_resolve_hook_secrets(ctx);
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
                config_error(&ctx, endpoint, 0,
                        "invalid endpoint name (expected [a-z0-9][a-z0-9_-]{0,62})");
                return ctx.oom ? -ENOMEM : -EINVAL;
        }

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        config_apply_defaults(c);
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
        config_wipe(&ctx.buf, ctx.len);
        config_secrets_clear(&ctx.secrets);
        config_secrets_clear(&ctx.hook_secrets);
        config_secrets_clear(&ctx.console_tokens);
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
        free(c->order_key);
        free(c->store_conninfo);
        for (size_t i = 0; i < c->n_routes; i++) {
                free(c->routes[i].event_type);
                free(c->routes[i].handler);
                free(c->routes[i].order_key);
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

bool config_header_is_credential(const knock_config *c, const char *name)
{
        static const char *const always[] = {
                "authorization", "proxy-authorization", "cookie", "x-knock-token",
                "x-gitlab-token",
        };
        for (size_t i = 0; i < ELEMENTSOF(always); i++)
                if (strcaseeq(name, always[i]))
                        return true;
        /* The token provider's header carries the secret itself. */
        return c->verify.provider == KNOCK_PROVIDER_TOKEN && c->verify.header &&
               strcaseeq(name, c->verify.header);
}

const char *config_order_key_for(const knock_config *c, const char *event_type)
{
        if (event_type)
                for (size_t i = 0; i < c->n_routes; i++)
                        if (streq(c->routes[i].event_type, event_type))
                                return c->routes[i].order_key ?: c->order_key;
        return c->order_key;
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

char *config_store_location(const knock_config *c)
{
        char schema[CONFIG_PG_SCHEMA_MAX + 1];

        if (!c->store_conninfo)
                return config_db_path(c->name);
        snprintf(schema, sizeof(schema), "knock_%s", c->name);
        return store_location_postgresql(schema, c->store_conninfo);
}

char *config_store_location_of(const char *name)
{
        _cleanup_(config_freep) knock_config *c = NULL;
        knock_config_errors errors = {0};
        int r;

        r = config_load(name, &c, &errors);
        config_errors_clear(&errors);
        return r >= 0 ? config_store_location(c) : config_db_path(name);
}

char *config_backup_dir(const char *name)
{
        char *p;

        if (asprintf(&p, "%s/backups/%s", knock_state_dir(), name) < 0)
                return NULL;
        return p;
}
