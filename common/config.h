/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * config — knock.conf + endpoints/NAME.conf (knock-endpoint(5)).
 *
 * Promises:
 *  - /etc/knock/knock.conf (KNOCK_CONFIG_DIR) is read first and holds
 *    defaults for every key; endpoints/NAME.conf overrides key by key.
 *    `secret` is a list: repeating it adds a secret (rotation); the endpoint
 *    file's secrets replace knock.conf's.
 *  - every key of contract §4 and the provider options of §6 are parsed and
 *    validated; every problem is collected as "FILE:LINE: message" (not just
 *    the first), so `knockctl check-config` can print them all.
 *  - secrets ("credential:NAME", a file path, or for tests a literal
 *    "literal:TEXT") are resolved into memory (one trailing newline
 *    stripped) and are wiped on free. They never appear in error messages.
 *  - unknown sections or keys are errors (a typo must not silently disable
 *    verification).
 *
 * Library code: returns errors, never logs.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"
#include "verify.h"

#define KNOCK_MAX_ROUTES 64
#define KNOCK_MAX_HOOK_ON 6

typedef struct knock_route {
        char *event_type;
        char *handler;
        uint64_t concurrency; /* its handlers running at once; 0: only [worker]'s bound */
        knock_rate rate;      /* its handler starts; n 0: unlimited */
        uint64_t breaker;     /* failed attempts in a row that open its breaker; 0: none */
        uint64_t breaker_cooldown_ms; /* before the probe; 0: the default, 30 s */
        char *order_key;      /* as [worker]'s; NULL: [worker]'s */
} knock_route;

typedef struct knock_config {
        char *name;      /* endpoint name */
        char *path_file; /* endpoints/NAME.conf */

        /* [endpoint] */
        char *listen;       /* host:port or absolute unix path */
        char *admin;        /* host:port or absolute unix path */
        char *path;         /* accepted request path, default "/" */
        uint64_t max_body;  /* bytes, default 1M */
        uint64_t max_connections; /* default 512 */
        uint64_t header_timeout_ms; /* default 10s */
        uint64_t body_timeout_ms;   /* default 30s */
        uint64_t max_buffered;      /* body bytes held for unanswered requests, default 64M */
        uint64_t orphan_body;       /* bytes of a rejected delivery's body kept, default 4K */
        knock_rate orphan_rate;     /* rejected deliveries stored, default 10/s */
        uint64_t orphan_burst;      /* the bucket's size, default 100 */
        knock_verify_config verify; /* provider, secrets, tolerance, options */
        char **console_tokens;      /* the web console on a TCP admin listener (wiped on free) */
        size_t n_console_tokens;
        char *prometheus_url;       /* the console links its graphs there; NULL: no links */
        char *store_conninfo;       /* store = postgresql:CONNINFO; NULL: SQLite (the default) */

        /* [worker] */
        char *handler;         /* exec:… | http(s)://… | NULL */
        uint64_t concurrency;  /* default 4 */
        uint64_t timeout_ms;   /* default 30s */
        uint64_t max_attempts; /* default 8 */
        uint64_t backoff_base_ms; /* default 2s */
        uint64_t backoff_cap_ms;  /* default 1h */
        uint64_t max_output;      /* captured handler output, default 64K */
        knock_rate rate;          /* handler starts of the whole worker; n 0: unlimited */
        char *order_key;          /* "header:NAME" | "json:/pointer" | "form:NAME"; NULL: none */
        knock_route routes[KNOCK_MAX_ROUTES];
        size_t n_routes;

        /* [hook] */
        char *hook_url;
        char **hook_secrets; /* resolved whsec_… texts */
        size_t n_hook_secrets;
        bool hook_on_handled;
        bool hook_on_dead;
        uint64_t hook_max_attempts; /* default 8 */
        uint64_t hook_timeout_ms;   /* default 15s */
        uint64_t *hook_schedule_ms; /* waits before attempts 1..n (the first is 0: at once);
                                     * default Svix's 0s,5s,5m,30m,2h,5h,10h,10h */
        size_t n_hook_schedule;
        uint64_t hook_concurrency; /* default 16 */

        /* [retention] (UINT64_MAX = never) */
        uint64_t keep_handled_ms;
        uint64_t keep_ignored_ms;
        uint64_t keep_orphans_ms;
        uint64_t keep_dead_ms;
        uint64_t keep_backups;     /* default 7 */
        uint64_t keep_audit_ms;    /* default 365d */
        uint64_t min_free_disk;    /* /readyz threshold, default 100M */
} knock_config;

typedef struct knock_config_errors {
        char **msgs; /* "FILE:LINE: message" */
        size_t n;
} knock_config_errors;

/*
 * Loads endpoint NAME. Returns 0 with *ret set, or -EINVAL when the
 * configuration has errors (all of them in *errors, which the caller frees
 * with config_errors_clear), or another negative errno (e.g. -ENOENT when the
 * endpoint file does not exist; also described in *errors).
 */
int config_load(const char *name, knock_config **ret, knock_config_errors *errors);
knock_config *config_free(knock_config *c);
void config_freep(knock_config **c);
void config_errors_clear(knock_config_errors *e);

/* Lists endpoint names (sorted) from the *.conf files in KNOCK_CONFIG_DIR/endpoints. */
int config_list_endpoints(char ***ret, size_t *ret_n);
void strv_free(char **v, size_t n);

/* Whether header name carries a credential (Authorization, Cookie, …, the
 * token provider's header): stored as "[redacted]", never its value. */
bool config_header_is_credential(const knock_config *c, const char *name);

/* The order_key SOURCE for an event type: its route's, else [worker]'s, else NULL. */
const char *config_order_key_for(const knock_config *c, const char *event_type);

/* Picks the handler for an event type: a [route] match, else [worker] handler, else NULL. */
const char *config_handler_for(const knock_config *c, const char *event_type);

/* Default paths derived from the name and the environment. Caller frees. */
/* The longest PostgreSQL identifier (NAMEDATALEN - 1): knock_NAME must fit. */
#define CONFIG_PG_SCHEMA_MAX 63
char *config_db_path(const char *name);
/* Where the endpoint's store is, for store_open(): its SQLite file, or its
 * PostgreSQL schema (knock_NAME) and connection (free() it; NULL: no memory). */
char *config_store_location(const knock_config *c);
/* The same for endpoint name, its file loaded quietly; an endpoint file that
 * does not load gives the SQLite file, which may still hold its data. */
char *config_store_location_of(const char *name);
char *config_backup_dir(const char *name);
