/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * knockctl — the operator's surface over an endpoint's database.
 *
 * Verbs register themselves with KNOCKCTL_VERB() in whichever file defines
 * them: the macro puts a pointer to the verb into the "knockctl_verbs" linker
 * section and main.c walks that section. Adding a verb (say, the maintenance
 * role's prune/backup/restore/verify) is therefore adding one file to
 * meson.build's source list; nothing else changes.
 *
 * A verb returns 0, a negative errno (a failure: exit 1; the verb has already
 * said what failed, or main prints the errno), or one of the positive codes
 * below, which are the exit status itself. Output goes through output.c so
 * every verb prints the same human tables and the same --json documents.
 */

#include <getopt.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "escape.h"
#include "events.h"
#include "store.h"
#include "util.h"

enum {
        KNOCKCTL_FAILED = 1, /* expected failure, already reported: exit 1 */
        KNOCKCTL_USAGE = 2,  /* usage error, already reported: exit 2 */
        KNOCKCTL_HELPED = 3, /* verb_getopt() printed --help: exit 0 */
};

typedef struct knockctl {
        const char *endpoint;   /* resolved endpoint name; NULL only for VERB_ENDPOINT_OPTIONAL */
        bool endpoint_explicit; /* -e was given */
        bool json;
        int64_t now;

        knock_store *store;
        knock_config *cfg; /* loaded on demand; NULL when the config does not load */
        bool cfg_tried;
} knockctl;

typedef enum verb_section {
        SECTION_READ,
        SECTION_OPERATE,
        SECTION_HOOKS,
        SECTION_MAINTENANCE,
        _SECTION_MAX,
} verb_section;

enum {
        VERB_ENDPOINT_OPTIONAL = 1 << 0, /* works without an endpoint (all of them) */
        VERB_KEEPS_ROOT = 1 << 1,        /* run by root, stays root (writes nothing) */
};

typedef struct knockctl_verb {
        const char *name;
        const char *synopsis; /* arguments after the name, for --help */
        const char *help;     /* one line */
        verb_section section;
        unsigned flags;
        /* argv[0] is the verb name; options are parsed with verb_getopt(). */
        int (*run)(knockctl *c, int argc, char **argv);
} knockctl_verb;

#define KNOCKCTL_VERB(id, ...)                                                                     \
        static const knockctl_verb knockctl_verb_##id = {__VA_ARGS__};                             \
        KNOCKCTL_VERB_AT(id, &knockctl_verb_##id)
/* Registers a verb that is part of a larger object (a listing's, KNOCKCTL_LISTING). */
#define KNOCKCTL_VERB_AT(id, verb)                                                                 \
        static const knockctl_verb *const knockctl_verb_ptr_##id                                   \
                __attribute__((used, section("knockctl_verbs"), aligned(sizeof(void *)))) = (verb)

/* ---- main.c: shared plumbing for verbs ---------------------------------------- */

/*
 * getopt_long for a verb: options is the verb's own table (terminated by a
 * zero entry); --json and --help are accepted by every verb. Returns the
 * option character, -1 at the end of the options, KNOCKCTL_USAGE (already
 * reported) for an unknown option or KNOCKCTL_HELPED after --help; a verb
 * returns those two as they are. After -1, optind is the first operand.
 */
int verb_getopt(
        knockctl *c, int argc, char **argv, const char *shortopts, const struct option *options);
#define VERB_OPT_HELP 0x1000
#define VERB_OPT_JSON 0x1001
#define VERB_OPT_NO_PAGER 0x1002

/* ---- cli.c: the options every verb takes ---------------------------------------- */

/* Writes --json, --help, --wide/--full, --no-pager and the terminating zero
 * entry into o (room for 6); returns the number of options written. */
size_t verb_common_options(struct option *o);
/* Applies -l/--wide/--full or --no-pager; false for any other option. */
bool verb_common_option(int o);
/* True when the verb's arguments (argv[0] the verb) ask for --help/-h. */
bool verb_wants_help(int argc, char **argv);

/* Opens the endpoint's database. Read verbs pass write=false; a missing
 * database is reported ("has knock-ingress run?") and returns KNOCKCTL_FAILED. */
int ctl_open_store(knockctl *c, bool write);
/* The endpoint's configuration, or NULL when it does not load (silently). */
const knock_config *ctl_config(knockctl *c);
/* Where the endpoint's store is (config_store_location()); an endpoint file
 * that does not load still has its SQLite file to read. free() it. */
char *ctl_store_location(knockctl *c);
/* Run as root, becomes the state directory's owner (main.c does it before
 * every verb but VERB_KEEPS_ROOT ones, which call it once they read what
 * only root may). 0 or KNOCKCTL_FAILED (reported). */
int ctl_drop_to_state_owner(void);
/* "user(uid)" of the invoking user, for audit rows. */
void ctl_actor(char *buf, size_t len);
/* Binds the named parameters every query may use: :endpoint, :now, :max_attempts. */
void ctl_bind_common(knockctl *c, db_stmt *st);
/* Binds a named parameter when the statement has it (NULL, or null: SQL NULL). */
void ctl_bind_text(db_stmt *st, const char *name, const char *v);
void ctl_bind_i64(db_stmt *st, const char *name, int64_t v, bool null);
/* Parses --limit N (0: no limit). Reports and returns KNOCKCTL_USAGE on junk. */
int ctl_parse_limit(const char *s, int64_t *ret);
/* Parses --since/--until ("2h", RFC 3339, "@unix"). Reports, returns KNOCKCTL_USAGE. */
int ctl_parse_time(const char *opt, const char *s, int64_t now, int64_t *ret);

/* ---- resolve.c ------------------------------------------------------------------- */

/*
 * The event an operand names: knock's event id first, else a provider event
 * id naming one event. Returns 0 with the event's id (malloc'd),
 * KNOCKCTL_FAILED after reporting "no such event" or the candidates of an
 * ambiguous provider id, or a negative errno. The store must be open.
 */
int ctl_resolve_event(knockctl *c, const char *ref, char **ret_id);

/* ---- txn.c: the frame of every mutating verb ------------------------------------ */

/* Appends the audit row (actor = the invoking user) inside the caller's transaction. */
int ctl_audit(knockctl *c, const char *action, json_t *filters, json_t *counts, json_t *ids);
/* One row's change, asked of common/ (events.h, hooks.h): 0 or a negative errno. */
typedef int (*ctl_apply_fn)(knockctl *c, const char *id, void *userdata);
/* Runs apply once per id in changed, then appends the audit row with counts
 * {changed, unchanged}, inside the caller's transaction. A negative errno:
 * the caller rolls back. */
int ctl_apply(knockctl *c, const char *action, ctl_apply_fn apply, void *userdata,
        json_t *changed, json_t *unchanged, json_t *filters, json_t *ids);
/* BEGIN IMMEDIATE / COMMIT with the operator-facing message; 0 or KNOCKCTL_FAILED. */
int ctl_begin(knockctl *c);
int ctl_commit(knockctl *c);
/* After a commit, never before (a woken daemon must see the rows): wakes role's
 * daemons, "worker" or "deliver", on every host. */
void ctl_wake(knockctl *c, const char *role);
/* Rolls back; a negative r is reported ("VERB failed, nothing was changed")
 * and becomes KNOCKCTL_FAILED, any other r is returned as it is. */
int ctl_rollback(knockctl *c, const char *verb, int r);
/* Operand ids into a JSON array of strings, duplicates dropped; "-" reads stdin. */
int ctl_collect_ids(int argc, char **argv, json_t **ret);
/* "requeued 2 events: …" or the JSON object {action, endpoint, changed, unchanged, counts}. */
int ctl_print_result(knockctl *c, const char *action, const char *past, const char *noun,
        json_t *changed, json_t *unchanged, json_t *extra);

/* ---- output.c: one way to print ------------------------------------------------ */

typedef enum field_kind {
        F_TEXT,   /* string or null */
        F_INT,    /* integer or null */
        F_REAL,   /* number or null */
        F_TIME,   /* ms since the epoch → RFC 3339 UTC string, or null */
        F_BOOL,   /* 0/1 → false/true, or null */
        F_JSON,   /* stored JSON text → parsed value (the text when it does not parse) */
        F_SHA256, /* blob → hex SHA-256 of its bytes, or null */
} field_kind;

typedef struct field_spec {
        const char *name; /* JSON key */
        const char *sql;  /* select expression */
        field_kind kind;
} field_spec;

/* "expr, expr, …" for a SELECT list, in spec order (malloc'd). */
char *fields_select(const field_spec *f, size_t n);
/* One row (columns in spec order, starting at column 0) as a JSON object. */
json_t *fields_row(db_stmt *st, const field_spec *f, size_t n);
/* Runs st to completion, one object per row, into a new array. */
int fields_rows(db_stmt *st, const field_spec *f, size_t n, json_t **ret);
/*
 * Prepares "SELECT <fields> <rest>" and binds the common parameters. rest is
 * a constant of the caller's; values are always bound. A failing prepare is
 * reported and returns KNOCKCTL_FAILED.
 */
int ctl_select(knockctl *c, const field_spec *f, size_t n, const char *rest, db_stmt **ret);

/* A JSON string from possibly non-UTF-8 bytes (invalid sequences become
 * U+FFFD, escape.h utf8_lossy()). */
json_t *json_string_lossy(const char *s, size_t len);

typedef struct column {
        const char *key;    /* JSON key of the row object */
        const char *header; /* column header */
        size_t max;         /* truncate longer cells (0: never) */
} column;

/* Human table of an array of objects. */
void print_table(json_t *rows, const column *cols, size_t n);
/* A listing: the --json document, or the table and, when it holds limit
 * rows (limit > 0), a note on stderr that older `what` were left out. */
int print_list(knockctl *c, json_t *rows, const column *cols, size_t n, int64_t limit,
        const char *what);
/* "key: value" lines of an object; keys NULL prints every member. */
void print_object(json_t *obj, const char *const *keys);
/* The one --json document on stdout. */
int print_json(json_t *doc);
/* A cell's text: "-" for null, strings escaped (escape.h), yes/no for booleans. */
char *value_to_text(json_t *v);
/* s escaped for a terminal (escape.h flags), malloc'd; NULL s is "". */
char *ctl_escape(const char *s, unsigned flags);
/* --wide/-l: human tables never truncate a cell. */
extern bool arg_wide;

/* "knockctl: message" on stderr. */
void ctl_error(const char *fmt, ...) _printf_(1, 2);
/* "knockctl: no WHAT 'ID' in endpoint E", the operand escaped (it may come from a pipe). */
void ctl_error_no_such(const char *what, const char *id, const char *endpoint);

/* ---- list.c: the listings ------------------------------------------------------- */

/*
 * A listing verb (events, deliveries, hooks, audit) is one KNOCKCTL_LISTING
 * entry beside the rows it reads; ctl_run_listing() runs them all: it parses
 * the filters, opens the store read-only, selects the newest rows first with
 * every filter bound to its SQL parameter, and prints them (print_list).
 */
typedef enum list_filter_kind {
        LIST_TEXT,  /* --NAME VALUE: the text, else NULL (check() may refuse it) */
        LIST_FLAG,  /* --NAME: 1, else 0 */
        LIST_SINCE, /* --NAME TIME (2h, RFC 3339, @unix): ms since the epoch, else NULL */
        LIST_EVENT, /* --NAME ID: the event an id names, knock's or the provider's, else NULL */
        LIST_LIMIT, /* --NAME N: at most N rows (0: all; default 50) */
        LIST_PAIRS, /* --NAME KEY=VALUE, repeatable: a JSON array of [KEY, VALUE, key_path(KEY)],
                     * else NULL */
} list_filter_kind;

typedef struct list_filter {
        const char *option; /* the long option, without "--" */
        list_filter_kind kind;
        const char *param; /* its named SQL parameter (":status") */
        /* LIST_TEXT: 0, or KNOCKCTL_USAGE after saying what is wrong with the value */
        int (*check)(const char *value);
        const char *from; /* when given, the listing selects from this instead of its own */
        /* LIST_PAIRS: KEY as the SQL wants it (malloc'd), or NULL after saying why not */
        char *(*key_path)(const char *key);
} list_filter;

#define LIST_MAX_FILTERS 6
#define LIST_MAX_COLUMNS 10

typedef struct ctl_listing {
        knockctl_verb verb; /* .verb.run is ctl_run_listing */
        const char *one;    /* the verb that shows one row: "use 'knockctl ONE ID'" */
        list_filter filters[LIST_MAX_FILTERS]; /* in getopt's order, up to a NULL option */
        const field_spec *fields;              /* the rows: JSON names, SELECT list */
        size_t n_fields;
        const char *from;              /* "FROM … WHERE … ORDER BY … LIMIT :limit" */
        column cols[LIST_MAX_COLUMNS]; /* the human table, up to a NULL key */
        const char *what;              /* "(showing the newest 50 WHAT; …)" */
} ctl_listing;

int ctl_run_listing(knockctl *c, int argc, char **argv);

#define KNOCKCTL_LISTING(id, ...)                                                                  \
        static const ctl_listing knockctl_listing_##id = {                                         \
                .verb.run = ctl_run_listing, __VA_ARGS__};                                         \
        static const ctl_listing *const knockctl_listing_ptr_##id                                  \
                __attribute__((used, section("knockctl_listings"), aligned(sizeof(void *)))) =     \
                        &knockctl_listing_##id;                                                    \
        KNOCKCTL_VERB_AT(id, &knockctl_listing_##id.verb)
