/* SPDX-License-Identifier: MIT */
/*
 * list — the one runner of the listing verbs. A listing (events,
 * deliveries, hooks, audit) is a KNOCKCTL_LISTING entry beside the rows it
 * reads: its verb, its filters (each an option bound to a named SQL
 * parameter), the rest of its SELECT, and its human columns with their
 * widths. Adding a listing, or a filter to one, is adding an entry or a
 * line; this file does not change.
 *
 * Promises, for every listing:
 *  - the database is opened read-only: listing never takes the write lock,
 *    so it never stalls the ingress;
 *  - options are checked as they come, before the database is opened; a bad
 *    value, an unknown option or an operand is a usage error (exit 2), and
 *    an event id that names no event is reported (exit 1);
 *  - every filter's value is bound to its parameter, never spliced into the
 *    SQL; a filter not given is bound as NULL (or 0 for a flag), so one
 *    statement serves every combination;
 *  - newest first (the entry's ORDER BY) and bounded: --limit N, default 50,
 *    0 for all; a human listing that hit the limit says so on stderr;
 *  - --json prints the rows as one array, with the entry's JSON names;
 *    otherwise a table of the entry's columns (print_list).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "knockctl.h"

#define DEFAULT_LIMIT 50
#define OPT_FILTER 0x2000 /* getopt's value for filter i: OPT_FILTER + i */

/* Bounds of the listing section, provided by the linker. */
extern const ctl_listing *const __start_knockctl_listings[];
extern const ctl_listing *const __stop_knockctl_listings[];

/* A filter's value from the command line. */
typedef struct filter_value {
        bool given;
        const char *text; /* LIST_TEXT, LIST_EVENT as given */
        int64_t n;        /* LIST_SINCE, LIST_LIMIT */
        char *event_id;   /* LIST_EVENT: the event it names (malloc'd) */
        json_t *pairs;    /* LIST_PAIRS: every KEY=VALUE given */
} filter_value;

static const ctl_listing *listing_find(const char *verb)
{
        for (const ctl_listing *const *l = __start_knockctl_listings; l < __stop_knockctl_listings;
                l++)
                if (streq((*l)->verb.name, verb))
                        return *l;
        return NULL;
}

static size_t n_filters(const ctl_listing *l)
{
        size_t n = 0;

        while (n < LIST_MAX_FILTERS && l->filters[n].option)
                n++;
        return n;
}

static size_t n_columns(const ctl_listing *l)
{
        size_t n = 0;

        while (n < LIST_MAX_COLUMNS && l->cols[n].key)
                n++;
        return n;
}

/* --NAME KEY=VALUE into v->pairs as [KEY, VALUE, key_path(KEY)]. */
static int pair_parse(const list_filter *f, const char *arg, filter_value *v)
{
        const char *eq = strchr(arg, '=');
        _cleanup_free_ char *key = NULL, *path = NULL;
        json_t *p;

        if (!eq || eq == arg) {
                ctl_error("--%s: expected KEY=VALUE, got '%s'", f->option, arg);
                return KNOCKCTL_USAGE;
        }
        key = strndup(arg, (size_t)(eq - arg));
        if (!key)
                return -ENOMEM;
        path = f->key_path ? f->key_path(key) : strdup(key);
        if (!path)
                return KNOCKCTL_USAGE;
        if (!v->pairs && !(v->pairs = json_array()))
                return -ENOMEM;
        p = json_pack("[s, s, s]", key, eq + 1, path);
        return p && json_array_append_new(v->pairs, p) == 0 ? 0 : -ENOMEM;
}

/* One option's value, checked as it comes. 0 or KNOCKCTL_USAGE (reported). */
static int filter_parse(knockctl *c, const list_filter *f, const char *arg, filter_value *v)
{
        char opt[64];
        int r = 0;

        v->given = true;
        v->text = arg;
        switch (f->kind) {
        case LIST_TEXT:
                if (f->check)
                        r = f->check(arg);
                break;
        case LIST_SINCE:
                snprintf(opt, sizeof(opt), "--%s", f->option);
                r = ctl_parse_time(opt, arg, c->now, &v->n);
                break;
        case LIST_LIMIT:
                r = ctl_parse_limit(arg, &v->n);
                break;
        case LIST_PAIRS:
                r = pair_parse(f, arg, v);
                break;
        case LIST_FLAG:
        case LIST_EVENT:
                break;
        }
        return r;
}

/* Binds every filter, given or not, to its parameter. */
static void filters_bind(db_stmt *st, const ctl_listing *l, const filter_value *v, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                const list_filter *f = &l->filters[i];

                switch (f->kind) {
                case LIST_TEXT:
                        ctl_bind_text(st, f->param, v[i].given ? v[i].text : NULL);
                        break;
                case LIST_EVENT:
                        ctl_bind_text(st, f->param, v[i].event_id);
                        break;
                case LIST_FLAG:
                        ctl_bind_i64(st, f->param, v[i].given, false);
                        break;
                case LIST_SINCE:
                        ctl_bind_i64(st, f->param, v[i].n, !v[i].given);
                        break;
                case LIST_LIMIT:
                        /* 0: every row (INT64_MAX: SQLite and PostgreSQL read -1 differently) */
                        ctl_bind_i64(st, f->param, v[i].n > 0 ? v[i].n : INT64_MAX, false);
                        break;
                case LIST_PAIRS: {
                        _cleanup_free_ char *t =
                                v[i].pairs ? json_dumps(v[i].pairs, JSON_COMPACT) : NULL;

                        ctl_bind_text(st, f->param, t);
                        break;
                }
                }
        }
}

static void filter_values_free(filter_value *v, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                free(v[i].event_id);
                json_decref(v[i].pairs);
        }
}

/* Resolves the LIST_EVENT filters given (the store is open). 0 or as ctl_resolve_event. */
static int filters_resolve(knockctl *c, const ctl_listing *l, filter_value *v, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (l->filters[i].kind == LIST_EVENT && v[i].given) {
                        int r = ctl_resolve_event(c, v[i].text, &v[i].event_id);

                        if (r != 0)
                                return r;
                }
        return 0;
}

/* The SELECT's FROM clause: a given filter's own, else the listing's. */
static const char *listing_from(const ctl_listing *l, const filter_value *v, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (l->filters[i].from && v[i].given)
                        return l->filters[i].from;
        return l->from;
}

static int listing_print(
        knockctl *c, const ctl_listing *l, const filter_value *v, size_t n, db_stmt *st)
{
        int64_t limit = DEFAULT_LIMIT;
        json_t *rows = NULL;
        int r;

        for (size_t i = 0; i < n; i++)
                if (l->filters[i].kind == LIST_LIMIT)
                        limit = v[i].n;
        r = fields_rows(st, l->fields, l->n_fields, &rows);
        if (r < 0)
                return r;
        r = print_list(c, rows, l->cols, n_columns(l), limit, l->what);
        json_decref(rows);
        return r;
}

int ctl_run_listing(knockctl *c, int argc, char **argv)
{
        const ctl_listing *l = listing_find(argv[0]);
        struct option options[LIST_MAX_FILTERS + 1] = {};
        filter_value v[LIST_MAX_FILTERS] = {};
        _cleanup_stmt_ db_stmt *st = NULL;
        size_t n;
        int o, r;

        if (!l)
                return -ENOENT;
        n = n_filters(l);
        for (size_t i = 0; i < n; i++) {
                options[i] = (struct option){l->filters[i].option,
                        l->filters[i].kind == LIST_FLAG ? no_argument : required_argument, NULL,
                        OPT_FILTER + (int)i};
                if (l->filters[i].kind == LIST_LIMIT)
                        v[i].n = DEFAULT_LIMIT;
        }
        while ((o = verb_getopt(c, argc, argv, "", options)) >= 0) {
                if (o < OPT_FILTER || o >= OPT_FILTER + (int)n)
                        return o;
                r = filter_parse(c, &l->filters[o - OPT_FILTER], optarg, &v[o - OPT_FILTER]);
                if (r != 0)
                        return r;
        }
        if (optind < argc) {
                if (l->one)
                        ctl_error("%s takes no arguments (use 'knockctl %s ID')", l->verb.name,
                                l->one);
                else
                        ctl_error("%s takes no arguments", l->verb.name);
                return KNOCKCTL_USAGE;
        }

        r = ctl_open_store(c, false);
        if (r == 0)
                r = filters_resolve(c, l, v, n);
        if (r == 0)
                r = ctl_select(c, l->fields, l->n_fields, listing_from(l, v, n), &st);
        if (r == 0) {
                filters_bind(st, l, v, n);
                r = listing_print(c, l, v, n, st);
        }
        filter_values_free(v, n);
        return r;
}
