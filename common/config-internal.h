/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * config-internal — what the three files of the config module share, and
 * nothing else includes (the rest of knock sees config.h):
 *
 *   config.c          reading the two files (the line reader inih is fed
 *                     through, sections, the key = value callback), the
 *                     checks across keys, the public API;
 *   config-keys.c     the key table: every key's section, parser, field and
 *                     bounds, its built-in default, and the value grammar
 *                     (sizes, durations, listen addresses, URLs, ...);
 *   config-secrets.c  `secret` values, kept as specs while the files are
 *                     read and resolved (credential, file, literal) once
 *                     the provider is known.
 *
 * One parse_ctx lives on config_load()'s stack for one load; errors are
 * collected in it as "FILE:LINE: message" and never name secret material.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define SECRET_FILE_MAX (64 * 1024)
#define CONFIG_FILE_MAX (1024 * 1024)
#define HOOK_SCHEDULE_MAX 64
#define VALUE_ECHO_MAX 64

typedef enum section_kind {
        SECTION_NONE, /* before any header */
        SECTION_ENDPOINT,
        SECTION_WORKER,
        SECTION_ROUTE,
        SECTION_HOOK,
        SECTION_RETENTION,
        SECTION_BAD, /* unknown or malformed: already reported, keys ignored */
} section_kind;

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
        origin order_key_at;                         /* [worker] order_key */
        origin route_order_key_at[KNOCK_MAX_ROUTES]; /* [route] order_key */
        unsigned endpoint_section_line; /* in the endpoint file, 0 when absent */
        const char *endpoint_file;
} parse_ctx;

/* ---- config.c ---------------------------------------------------------------------- */

/* Adds "FILE:LINE: message" to the load's errors (out of memory: ctx->oom). */
void config_error(parse_ctx *ctx, const char *file, unsigned line, const char *fmt, ...)
        _printf_(4, 5);
/* An error at the line being read. */
#define key_error(ctx, fmt, ...) config_error(ctx, (ctx)->file, (ctx)->line, fmt, ##__VA_ARGS__)
/* Whether a name that is not a known key or section may be quoted in an error. */
bool config_quotable(const char *s);
/* strdup(), or NULL with ctx->oom set. */
char *config_strdup(parse_ctx *ctx, const char *s);
/* Wipes len bytes of *buf (it may hold secret text), frees it, sets it NULL. */
void config_wipe(char **buf, size_t len);

/* ---- config-keys.c ----------------------------------------------------------------- */

/* Parses name = value of the section being read into the configuration (an empty value:
 * the key's built-in default). false when the section has no such key. */
bool config_key_parse(parse_ctx *ctx, const char *name, const char *value);
/* Every key's built-in default, before any file is read. */
void config_apply_defaults(knock_config *c);
/* Svix's schedule for hooks, when no file set one. */
void config_default_schedule(parse_ctx *ctx);

/* ---- config-secrets.c -------------------------------------------------------------- */

/* One `secret = VALUE` into l: the first of a file replaces an earlier file's list, an
 * empty value empties it; a spec that is not credential:, /path or literal: is reported. */
void config_secret_add(parse_ctx *ctx, secret_list *l, const char *value);
void config_secrets_clear(secret_list *l);
/* Resolves the endpoint's secrets for its provider into c->verify.secrets, the hook's
 * into c->hook_secrets, the console's tokens into c->console_tokens. Problems are
 * reported; 0 or -ENOMEM. */
int config_resolve_endpoint_secrets(parse_ctx *ctx);
int config_resolve_hook_secrets(parse_ctx *ctx);
int config_resolve_console_tokens(parse_ctx *ctx);
