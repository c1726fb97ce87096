/* SPDX-License-Identifier: MIT */
/*
 * config-secrets — `secret = …` in [endpoint] and [hook], and the web
 * console's `console_token = …`: each value is kept as a spec
 * (credential:NAME, an absolute file path, or literal:TEXT) with the file
 * and line it came from, and resolved only after both files are read, when
 * the provider is known.
 *
 * Promises:
 *  - the first `secret` of a file replaces what an earlier file gave, so
 *    an endpoint's secrets are never mixed with knock.conf's; an empty value
 *    empties the list;
 *  - credential:NAME is read from $CREDENTIALS_DIRECTORY (LoadCredential=),
 *    or outside a unit from the credstores LoadCredential= itself searches,
 *    in its order; a NAME with '/' or a dot name is refused;
 *  - a secret's text is at most SECRET_FILE_MAX bytes, has no NUL byte,
 *    loses exactly one line ending, and must not be empty; the endpoint's
 *    must fit its provider's rule (keys.h), the hook's must be a Standard
 *    Webhooks signing secret (whsec_..., not a whpk_ public key), a console
 *    token must have CONSOLE_TOKEN_MIN characters at least;
 *  - an error names the secret's source (the credential, the path, the
 *    line), never its text; every buffer that held the text is wiped before
 *    it is freed (config_wipe, secret_free, verify_secret_clear).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config-internal.h"
#include "util.h"

void config_secrets_clear(secret_list *l)
{
        for (size_t i = 0; i < l->n; i++)
                secret_free(l->v[i].spec);
        free(l->v);
        *l = (secret_list){};
}

void config_secret_add(parse_ctx *ctx, secret_list *l, const char *value)
{
        secret_spec *v;
        char *spec;

        /* The first `secret` of a file replaces what an earlier file gave:
         * an endpoint's own secrets are never mixed with knock.conf's. */
        if (l->set_in_file != ctx->file) {
                config_secrets_clear(l);
                l->set_in_file = ctx->file;
        }
        if (!*value) {
                config_secrets_clear(l);
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
        spec = config_strdup(ctx, value);
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
                        config_error(ctx, s->file, s->line, "secret: invalid credential name");
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
                                config_error(ctx, s->file, s->line,
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
                config_error(ctx, s->file, s->line, "secret: cannot read %s: %s", what,
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
                config_wipe(&text, size);
                config_error(ctx, s->file, s->line, "secret contains a NUL byte");
                return -EINVAL;
        }
        /* exactly one line ending: "\n" or "\r\n" */
        if (len > 0 && text[len - 1] == '\n') {
                text[--len] = 0;
                if (len > 0 && text[len - 1] == '\r')
                        text[--len] = 0;
        }
        if (len == 0) {
                config_wipe(&text, size);
                config_error(ctx, s->file, s->line, "secret is empty");
                return -EINVAL;
        }
        *ret = text;
        return 0;
}

/* Takes one resolved text: 0 kept or done with it, -EINVAL rejected (the caller reports
 * the spec), -ENOMEM. The text is the taker's, kept or wiped. */
typedef int (*secret_taker)(knock_config *c, char *text);

/* Resolves each spec of l and hands its text to take(); a text that is not valid
 * (unreadable, empty, or rejected by take) is reported with why_invalid at its spec. */
static int resolve_list(
        parse_ctx *ctx, const secret_list *l, secret_taker take, const char *why_invalid)
{
        for (size_t i = 0; i < l->n; i++) {
                const secret_spec *s = &l->v[i];
                char *text = NULL;
                int r;

                r = resolve_secret(ctx, s, &text);
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        continue;
                r = take(ctx->c, text);
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        config_error(ctx, s->file, s->line, "%s", why_invalid);
        }
        return 0;
}

/* The endpoint's secret, as key bytes by its provider's rule. */
static int take_endpoint_secret(knock_config *c, char *text)
{
        int r = verify_secret_from_text(
                c->verify.provider, text, &c->verify.secrets[c->verify.n_secrets]);

        secret_free(text);
        if (r == 0)
                c->verify.n_secrets++;
        return r == -ENOMEM ? r : r < 0 ? -EINVAL : 0;
}

/* The hook's secret, kept as text: knock-deliver decodes it, but it is checked now
 * rather than at the first hook. Hooks are signed the Standard Webhooks way, and a
 * whpk_ public key cannot sign. */
static int take_hook_secret(knock_config *c, char *text)
{
        knock_secret key = {};
        int r = verify_secret_from_text(KNOCK_PROVIDER_STANDARD, text, &key);

        if (r >= 0 && key.kind != KNOCK_KEY_SHARED)
                r = -EINVAL;
        verify_secret_clear(&key);
        if (r < 0) {
                secret_free(text);
                return r == -ENOMEM ? r : -EINVAL;
        }
        c->hook_secrets[c->n_hook_secrets++] = text;
        return 0;
}

/* The console's tokens are credentials like the provider's secret; a short one could be
 * guessed over the network, so 16 characters at least. */
#define CONSOLE_TOKEN_MIN 16

static int take_console_token(knock_config *c, char *text)
{
        if (strlen(text) < CONSOLE_TOKEN_MIN) {
                secret_free(text);
                return -EINVAL;
        }
        c->console_tokens[c->n_console_tokens++] = text;
        return 0;
}

int config_resolve_endpoint_secrets(parse_ctx *ctx)
{
        _cleanup_free_ char *why = NULL;
        knock_config *c = ctx->c;

        c->verify.secrets = calloc(ctx->secrets.n ? ctx->secrets.n : 1, sizeof(knock_secret));
        why = strdup_printf("secret is not valid for provider %s",
                provider_to_string(c->verify.provider));
        if (!c->verify.secrets || !why)
                return -ENOMEM;
        return resolve_list(ctx, &ctx->secrets, take_endpoint_secret, why);
}

int config_resolve_hook_secrets(parse_ctx *ctx)
{
        ctx->c->hook_secrets = calloc(ctx->hook_secrets.n + 1, sizeof(char *));
        if (!ctx->c->hook_secrets)
                return -ENOMEM;
        return resolve_list(ctx, &ctx->hook_secrets, take_hook_secret,
                "hook secret is not a Standard Webhooks secret (whsec_...)");
}

int config_resolve_console_tokens(parse_ctx *ctx)
{
        ctx->c->console_tokens = calloc(ctx->console_tokens.n + 1, sizeof(char *));
        if (!ctx->c->console_tokens)
                return -ENOMEM;
        return resolve_list(ctx, &ctx->console_tokens, take_console_token,
                "console_token must be at least " STRINGIFY(CONSOLE_TOKEN_MIN) " characters");
}
