/* SPDX-License-Identifier: MIT */
/*
 * ops — the operator's transitions (contract §7) and `migrate`.
 *
 *   requeue ID…           failed|dead|ignored → received
 *   replay ID…            handled → received (the canonical body)
 *   replay-delivery DLV   the delivery's event → received, running that
 *                         delivery's body (not while it is processing)
 *   ignore ID…            received|failed|dead → ignored (ignored: no-op)
 *
 * Which statuses each verb accepts is the table in common/event-state.c;
 * the rows change through common/events.c; the transaction, the audit row
 * and the printed result are txn.c's. This file says it to the operator.
 *
 * Promises:
 *  - one command is one transaction (BEGIN IMMEDIATE): the source states are
 *    checked under the write lock, so a worker cannot claim an event between
 *    the check and the change;
 *  - all or nothing: when any id is unknown or in a state the verb does not
 *    accept, nothing changes, every problem is printed and the exit status
 *    is 1; the operator fixes the list and runs it again;
 *  - every command that changes something, or was asked to and found nothing
 *    to do (ignore of an ignored event), writes one audit row in the same
 *    transaction: actor "user(uid)", the verb, the ids, the counts;
 *  - runnable again means a new series: attempt_count 0, next attempt now, no
 *    claim; after the commit the worker is woken (a datagram to its wake
 *    socket; if it is not running it will find the events when it starts).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "knockctl.h"

/* One verb of the operator's state machine (event-state.h): which statuses
 * it accepts and where it leads are the table's, not this file's. */
typedef struct transition {
        const char *verb;
        const char *past;
        event_op op;
} transition;

static const transition t_requeue = {"requeue", "requeued", EVENT_OP_REQUEUE};
static const transition t_replay = {"replay", "replayed", EVENT_OP_REPLAY};
static const transition t_ignore = {"ignore", "ignored", EVENT_OP_IGNORE};

/* What to tell the operator when `status` is not accepted by `verb`. */
static const char *reject_hint(event_op op, event_status status)
{
        if (status == EVENT_STATUS_PROCESSING)
                return "a handler is running it now; wait for the attempt to end";
        if (op == EVENT_OP_REQUEUE && status == EVENT_STATUS_HANDLED)
                return "use 'knockctl replay' to run a handled event again";
        if (op == EVENT_OP_REQUEUE && status == EVENT_STATUS_RECEIVED)
                return "it is already queued";
        if (op == EVENT_OP_REPLAY)
                return status == EVENT_STATUS_RECEIVED
                               ? "it is already queued"
                               : "use 'knockctl requeue' for failed, dead or ignored events";
        if (op == EVENT_OP_IGNORE && status == EVENT_STATUS_HANDLED)
                return "it has already run successfully";
        return NULL;
}

/* "failed, dead or ignored": the statuses the table lets the verb change. */
static void accepted_list(const transition *t, char *accepted, size_t size)
{
        size_t n = 0, k = 0;

        accepted[0] = 0;
        for (int i = 0; i < _EVENT_STATUS_MAX; i++)
                n += event_op_check(t->op, (event_status)i) == EVENT_OP_CHANGES;
        for (int i = 0; i < _EVENT_STATUS_MAX; i++) {
                size_t len = strlen(accepted);

                if (event_op_check(t->op, (event_status)i) != EVENT_OP_CHANGES)
                        continue;
                k++;
                snprintf(accepted + len, size - len, "%s%s",
                        k == 1 ? "" : k < n ? ", " : " or ", event_status_names[i]);
        }
}

static void reject(const transition *t, const char *id, event_status status, const char *claimed_by)
{
        const char *hint = reject_hint(t->op, status);
        char accepted[128];

        accepted_list(t, accepted, sizeof(accepted));
        fprintf(stderr, "knockctl: %s: event is %s%s%s%s; %s accepts %s events%s%s\n", id,
                event_status_to_string(status), claimed_by ? " (claimed by " : "",
                claimed_by ? claimed_by : "", claimed_by ? ")" : "", t->verb, accepted,
                hint ? ": " : "", hint ? hint : "");
}

static int apply_op(knockctl *c, const char *id, void *userdata)
{
        const transition *t = userdata;

        return events_apply_op(c->store, t->op, id, NULL, c->now);
}

/* Checks one operand under the write lock: into changed, unchanged, or
 * reported (1). Two operands naming one event (its id and its provider id)
 * count once. */
static int check_operand(knockctl *c, const transition *t, const char *operand, json_t *resolved,
        json_t *changed, json_t *unchanged)
{
        _cleanup_free_ char *id = NULL, *claimed_by = NULL, *eid = NULL;
        event_status status;
        size_t k;
        json_t *w;
        int r;

        r = ctl_resolve_event(c, operand, &id);
        if (r != 0)
                return r < 0 ? r : 1;
        json_array_foreach(resolved, k, w) if (streq(json_string_value(w), id)) return 0;
        w = json_string(id);
        if (!w || json_array_append_new(resolved, w) < 0)
                return -ENOMEM;
        r = events_get_status(c->store, id, &status, &claimed_by);
        if (r < 0)
                return r;
        switch (event_op_check(t->op, status)) {
        case EVENT_OP_UNCHANGED:
                return json_array_append(unchanged, w) < 0 ? -ENOMEM : 0;
        case EVENT_OP_CHANGES:
                return json_array_append(changed, w) < 0 ? -ENOMEM : 0;
        default:
                eid = ctl_escape(id, 0);
                reject(t, eid ? eid : "?", status, claimed_by);
                return 1;
        }
}

/* ---- by query: --status, --type, --since, --until, --dry-run ---------------------------- */

/* The statuses verb t changes, as a mask. */
static unsigned op_statuses(const transition *t)
{
        unsigned m = 0;

        for (int i = 0; i < _EVENT_STATUS_MAX; i++)
                if (event_op_check(t->op, (event_status)i) == EVENT_OP_CHANGES)
                        m |= 1u << i;
        return m;
}

/* "failed,dead" into q->statuses: each a status t changes. */
static int parse_statuses(const transition *t, const char *list, events_query *q)
{
        _cleanup_free_ char *copy = strdup(list);
        char *save = NULL;

        if (!copy)
                return -ENOMEM;
        q->statuses = 0;
        for (char *w = strtok_r(copy, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
                event_status st = event_status_from_string(w);

                if (st < 0 || !(op_statuses(t) & (1u << st))) {
                        _cleanup_free_ char *e = ctl_escape(w, 0);
                        char accepted[128];

                        accepted_list(t, accepted, sizeof(accepted));
                        ctl_error("%s --status: %s '%s'; %s changes %s events", t->verb,
                                st < 0 ? "unknown status" : "cannot select", e ? e : "?",
                                t->verb, accepted);
                        return KNOCKCTL_USAGE;
                }
                q->statuses |= 1u << st;
        }
        if (q->statuses == 0) {
                ctl_error("%s --status: no status given", t->verb);
                return KNOCKCTL_USAGE;
        }
        return 0;
}

/* The query as the audit row and the result show it. */
static json_t *query_filters(const events_query *q)
{
        json_t *f = json_object(), *st = json_array();
        char a[64], b[64];

        if (!f || !st) {
                json_decref(f);
                json_decref(st);
                return NULL;
        }
        for (int i = 0; i < _EVENT_STATUS_MAX; i++)
                if (q->statuses & (1u << i))
                        json_array_append_new(st, json_string(event_status_names[i]));
        json_object_set_new(f, "status", st);
        json_object_set_new(f, "type", q->type ? json_string(q->type) : json_null());
        json_object_set_new(f, "since", q->since >= 0 ? json_string(format_rfc3339(q->since, a,
                                                               sizeof(a)))
                                                      : json_null());
        json_object_set_new(f, "until", q->until >= 0 ? json_string(format_rfc3339(q->until, b,
                                                               sizeof(b)))
                                                      : json_null());
        return f;
}

/* Prints what a --dry-run would change; changes nothing, writes no audit row. */
static int print_dry_run(knockctl *c, const transition *t, json_t *ids, json_t *filters)
{
        size_t i;
        json_t *v;

        if (c->json) {
                json_t *doc = json_pack("{s:s, s:s, s:b, s:O, s:I, s:O}", "action", t->verb,
                        "endpoint", c->endpoint, "dry_run", true, "filters", filters, "count",
                        (json_int_t)json_array_size(ids), "ids", ids);
                int r = print_json(doc);

                json_decref(doc);
                return r;
        }
        printf("would %s %zu event%s", t->verb, json_array_size(ids),
                json_array_size(ids) == 1 ? "" : "s");
        json_array_foreach(ids, i, v)
        {
                _cleanup_free_ char *e = ctl_escape(json_string_value(v), 0);

                printf("%s%s", i == 0 ? ": " : " ", e ? e : "?");
        }
        printf("\n(--dry-run: nothing was changed)\n");
        return 0;
}

/*
 * The events a query selects, changed in one transaction with one audit row
 * (the filters, the count, the ids). Only statuses the verb changes are ever
 * selected, so nothing selected is refused: the selection under the write
 * lock is exactly what changes.
 */
static int run_query(knockctl *c, const transition *t, const events_query *q, bool dry_run)
{
        json_t *ids = NULL, *none = NULL, *filters = NULL, *extra = NULL;
        char **v = NULL;
        size_t n = 0;
        int r;

        r = ctl_open_store(c, !dry_run);
        if (r != 0)
                return r;
        if (!dry_run && (r = ctl_begin(c)) != 0)
                return r;
        r = events_select_ids(c->store, q, &v, &n);
        ids = json_array();
        none = json_array();
        filters = query_filters(q);
        for (size_t i = 0; r >= 0 && i < n; i++)
                if (!ids || json_array_append_new(ids, json_string(v[i])) < 0)
                        r = -ENOMEM;
        strv_free(v, n);
        if (r >= 0 && (!ids || !none || !filters))
                r = -ENOMEM;
        if (dry_run) {
                if (r < 0)
                        ctl_error("%s --dry-run: cannot read the events: %s", t->verb,
                                strerror(-r));
                r = r < 0 ? KNOCKCTL_FAILED : print_dry_run(c, t, ids, filters);
                goto out;
        }
        if (r >= 0)
                r = ctl_apply(c, t->verb, apply_op, (void *)t, ids, none, filters, ids);
        if (r < 0) {
                r = ctl_rollback(c, t->verb, r);
                goto out;
        }
        r = ctl_commit(c);
        if (r != 0)
                goto out;
        if (json_array_size(ids) > 0)
                ctl_wake(c, "worker");
        extra = json_pack("{s:O}", "filters", filters);
        r = ctl_print_result(c, t->verb, t->past, "event", ids, none, extra);
out:
        json_decref(ids);
        json_decref(none);
        json_decref(filters);
        json_decref(extra);
        return r;
}

static int run_transition(knockctl *c, const transition *t, int argc, char **argv)
{
        static const struct option options[] = {
                {"status", required_argument, NULL, 's'},
                {"type", required_argument, NULL, 't'},
                {"since", required_argument, NULL, 'S'},
                {"until", required_argument, NULL, 'U'},
                {"dry-run", no_argument, NULL, 'n'},
                {0},
        };
        events_query q = {.statuses = op_statuses(t), .since = -1, .until = -1};
        json_t *ids = NULL, *resolved = NULL, *changed = NULL, *unchanged = NULL, *v;
        size_t i, problems = 0;
        bool by_query = false, dry_run = false;
        int o, r;

        while ((o = verb_getopt(c, argc, argv, "", options)) >= 0) {
                r = 0;
                switch (o) {
                case 's':
                        r = parse_statuses(t, optarg, &q);
                        break;
                case 't':
                        q.type = optarg;
                        break;
                case 'S':
                        r = ctl_parse_time("--since", optarg, c->now, &q.since);
                        break;
                case 'U':
                        r = ctl_parse_time("--until", optarg, c->now, &q.until);
                        break;
                case 'n':
                        dry_run = true;
                        break;
                default:
                        return o;
                }
                if (r != 0)
                        return r;
                by_query = by_query || o != 'n';
        }
        if (by_query || dry_run) {
                if (optind < argc || !by_query) {
                        ctl_error("%s: give event ids, or a query (--status, --type, --since, "
                                  "--until, with --dry-run to see it first), not both",
                                t->verb);
                        return KNOCKCTL_USAGE;
                }
                return run_query(c, t, &q, dry_run);
        }
        if (optind >= argc) {
                ctl_error("usage: knockctl %s ID… (event ids or provider event ids; '-' reads them "
                          "from stdin)",
                        t->verb);
                return KNOCKCTL_USAGE;
        }
        r = ctl_collect_ids(argc - optind, argv + optind, &ids);
        if (r < 0)
                return r;
        if (json_array_size(ids) == 0) {
                json_decref(ids);
                ctl_error("%s: no event ids given", t->verb);
                return KNOCKCTL_USAGE;
        }
        r = ctl_open_store(c, true);
        if (r != 0)
                goto out;
        r = ctl_begin(c);
        if (r != 0)
                goto out;

        changed = json_array();
        unchanged = json_array();
        resolved = json_array();
        if (!changed || !unchanged || !resolved) {
                r = -ENOMEM;
                goto rollback;
        }
        /* Resolve and check every operand under the write lock before changing
         * any. */
        json_array_foreach(ids, i, v)
        {
                r = check_operand(c, t, json_string_value(v), resolved, changed, unchanged);
                if (r < 0)
                        goto rollback;
                problems += r;
        }
        if (problems > 0) {
                ctl_error("%s: nothing was changed (%zu of %zu ids refused)", t->verb, problems,
                        json_array_size(ids));
                r = KNOCKCTL_FAILED;
                goto rollback;
        }

        r = ctl_apply(c, t->verb, apply_op, (void *)t, changed, unchanged, NULL, resolved);
        if (r < 0)
                goto rollback;
        r = ctl_commit(c);
        if (r != 0)
                goto out;

        /* After the commit, never before: a woken worker must see the rows. An
         * ignored event may release the events ordered behind it, too. */
        if (json_array_size(changed) > 0)
                ctl_wake(c, "worker");
        r = ctl_print_result(c, t->verb, t->past, "event", changed, unchanged, NULL);
        goto out;

rollback:
        r = ctl_rollback(c, t->verb, r);
out:
        json_decref(ids);
        json_decref(resolved);
        json_decref(changed);
        json_decref(unchanged);
        return r;
}

static int verb_requeue(knockctl *c, int argc, char **argv)
{
        return run_transition(c, &t_requeue, argc, argv);
}

static int verb_replay(knockctl *c, int argc, char **argv)
{
        return run_transition(c, &t_replay, argc, argv);
}

static int verb_ignore(knockctl *c, int argc, char **argv)
{
        return run_transition(c, &t_ignore, argc, argv);
}

#define QUERY_SYNOPSIS "ID... | [--status S[,S]] [--type T] [--since TIME] [--until TIME] [--dry-run]"

KNOCKCTL_VERB(requeue, .name = "requeue", .synopsis = QUERY_SYNOPSIS,
        .help = "failed|dead|ignored → received, attempts reset (canonical body)",
        .section = SECTION_OPERATE, .run = verb_requeue);
KNOCKCTL_VERB(replay, .name = "replay", .synopsis = QUERY_SYNOPSIS,
        .help = "handled → received: run a handled event again, attempts reset",
        .section = SECTION_OPERATE, .run = verb_replay);
KNOCKCTL_VERB(ignore, .name = "ignore", .synopsis = QUERY_SYNOPSIS,
        .help = "received|failed|dead → ignored: never run it", .section = SECTION_OPERATE,
        .run = verb_ignore);

/*
 * replay-delivery: run one specific stored delivery's body (a provider retry
 * whose body differed, say) instead of the event's canonical one. The event
 * keeps the choice in run_delivery_id until the next requeue/replay.
 */
/* Whether delivery dlv may be replayed now (0), or why not (reported,
 * KNOCKCTL_FAILED). */
static int check_delivery(const char *dlv, const knock_delivery_info *d)
{
        if (!d->event_id) {
                ctl_error("%s: an orphan delivery (%s%s%s) is linked to no event and cannot be "
                          "replayed",
                        dlv, d->signature_valid ? "stored without an event" : "signature invalid",
                        d->verify_error ? ": " : "", d->verify_error ?: "");
                return KNOCKCTL_FAILED;
        }
        if (event_op_check(EVENT_OP_REPLAY_DELIVERY, d->status) != EVENT_OP_CHANGES) {
                ctl_error("%s: its event %s is %s%s%s%s; replay-delivery accepts an "
                          "event in any other state: wait for the attempt to end",
                        dlv, d->event_id, event_status_to_string(d->status) ?: "?",
                        d->claimed_by ? " (claimed by " : "", d->claimed_by ?: "",
                        d->claimed_by ? ")" : "");
                return KNOCKCTL_FAILED;
        }
        if (!d->has_body) {
                ctl_error("%s: the delivery has no stored body; nothing to replay", dlv);
                return KNOCKCTL_FAILED;
        }
        return 0;
}

static int verb_replay_delivery(knockctl *c, int argc, char **argv)
{
        _cleanup_(knock_delivery_info_clear) knock_delivery_info d = {};
        const char *dlv;
        json_t *changed = NULL, *unchanged = NULL, *filters = NULL, *counts = NULL, *extra = NULL;
        int o, r;

        while ((o = verb_getopt(c, argc, argv, "", NULL)) >= 0)
                return o;
        if (argc - optind != 1) {
                ctl_error("usage: knockctl replay-delivery DELIVERY_ID");
                return KNOCKCTL_USAGE;
        }
        dlv = argv[optind];
        r = ctl_open_store(c, true);
        if (r != 0)
                return r;
        r = ctl_begin(c);
        if (r != 0)
                return r;

        r = events_get_delivery(c->store, dlv, &d);
        if (r == -ENOENT) {
                ctl_error("%s: no such delivery in endpoint %s", dlv, c->endpoint);
                r = KNOCKCTL_FAILED;
        }
        if (r == 0)
                r = check_delivery(dlv, &d);
        if (r == 0)
                r = events_apply_op(c->store, EVENT_OP_REPLAY_DELIVERY, d.event_id, dlv, c->now);
        if (r != 0)
                goto rollback;
        changed = json_pack("[s]", d.event_id);
        unchanged = json_array();
        filters = json_pack("{s:s, s:s}", "delivery_id", dlv, "previous_status",
                event_status_to_string(d.status));
        counts = json_pack("{s:i, s:i}", "changed", 1, "unchanged", 0);
        extra = json_pack("{s:s}", "delivery_id", dlv);
        if (!changed || !unchanged || !filters || !counts || !extra) {
                r = -ENOMEM;
                goto rollback;
        }
        r = ctl_audit(c, "replay-delivery", filters, counts, changed);
        if (r < 0)
                goto rollback;
        r = ctl_commit(c);
        if (r != 0)
                goto out;
        ctl_wake(c, "worker");
        if (c->json)
                r = ctl_print_result(
                        c, "replay-delivery", "replayed", "event", changed, unchanged, extra);
        else
                printf("event %s will run the body of delivery %s (attempts reset)\n", d.event_id,
                        dlv);
        goto out;

rollback:
        r = ctl_rollback(c, "replay-delivery", r);
out:
        json_decref(changed);
        json_decref(unchanged);
        json_decref(filters);
        json_decref(counts);
        json_decref(extra);
        return r;
}

KNOCKCTL_VERB(replay_delivery, .name = "replay-delivery", .synopsis = "DELIVERY_ID",
        .help = "Run one stored delivery's body for its event, attempts reset",
        .section = SECTION_OPERATE, .run = verb_replay_delivery);

/* Schema version of path without migrating it (0 when empty or unreadable). */
static int peek_version(const char *path)
{
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        int v = 0;

        if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
                sqlite3_prepare_v2(db, "SELECT coalesce(max(version), 0) FROM schema_migrations",
                        -1, &st, NULL) == SQLITE_OK &&
                sqlite3_step(st) == SQLITE_ROW)
                v = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        sqlite3_close_v2(db);
        return v;
}

/* The same for a PostgreSQL endpoint's schema. */
static int peek_version_pg(const char *location)
{
        _cleanup_(store_closep) knock_store *s = NULL;
        int v = 0;

        if (store_open(location, STORE_ANY_VERSION, &s) < 0 || store_schema_version(s, &v) < 0)
                return 0;
        return v;
}

/*
 * migrate: create the database or bring its schema up to this build's
 * version. Daemons do the same on start; this lets an operator do it
 * before starting them (after an upgrade, or to inspect an empty endpoint).
 */
static int verb_migrate(knockctl *c, int argc, char **argv)
{
        _cleanup_free_ char *path = NULL, *where = NULL;
        struct stat stb, dir;
        bool existed;
        int o, r, before = 0, after = 0;
        json_t *counts;

        while ((o = verb_getopt(c, argc, argv, "", NULL)) >= 0)
                return o;
        if (optind < argc) {
                ctl_error("migrate takes no arguments");
                return KNOCKCTL_USAGE;
        }
        path = ctl_store_location(c);
        if (!path)
                return -ENOMEM;
        if (store_location_is_postgresql(path)) {
                before = peek_version_pg(path);
                existed = before > 0;
        } else
                existed = stat(path, &stb) == 0;
        where = store_location_describe(path);
        if (!where)
                return -ENOMEM;
        if (store_location_is_postgresql(path))
                ;
        else if (existed)
                before = peek_version(path);
        else if (mkdir(knock_state_dir(), 0755) < 0 && errno != EEXIST) {
                ctl_error("cannot create %s: %s", knock_state_dir(), strerror(errno));
                return KNOCKCTL_FAILED;
        }
        r = store_open(path, STORE_CREATE, &c->store);
        if (r == -EPROTO) {
                ctl_error("%s: the database is newer than this knockctl (schema version %d)", where,
                        STORE_SCHEMA_VERSION);
                return KNOCKCTL_FAILED;
        }
        if (r < 0) {
                ctl_error("%s: cannot create or migrate the database: %s", where, strerror(-r));
                return KNOCKCTL_FAILED;
        }
        /* Created by root: hand the file to the owner of the state directory
         * (the knock user), or the daemons could not write it. SQLite gives
         * its -wal and -shm files the database file's owner. */
        if (!existed && !store_location_is_postgresql(path) && geteuid() == 0 &&
                stat(knock_state_dir(), &dir) == 0 &&
                chown(path, dir.st_uid, dir.st_gid) < 0)
                ctl_error("warning: cannot chown %s: %s", path, strerror(errno));

        r = store_schema_version(c->store, &after);
        if (r < 0)
                return r;
        counts = json_pack("{s:i, s:i, s:b}", "from", before, "to", after, "created", !existed);
        r = counts ? ctl_audit(c, "migrate", NULL, counts, NULL) : -ENOMEM;
        if (r < 0) {
                json_decref(counts);
                ctl_error("cannot write the audit row: %s", strerror(-r));
                return KNOCKCTL_FAILED;
        }
        if (c->json) {
                json_t *doc = json_pack("{s:s, s:s, s:O}", "endpoint", c->endpoint, "database",
                        where, "schema", counts);
                r = print_json(doc);
                json_decref(doc);
        } else if (before == after)
                printf("%s: schema version %d is current (%s)\n", c->endpoint, after, where);
        else
                printf("%s: schema version %d → %d (%s%s)\n", c->endpoint, before, after,
                        existed ? "" : "created ", where);
        json_decref(counts);
        return r;
}

KNOCKCTL_VERB(migrate, .name = "migrate", .synopsis = "",
        .help = "Create the database or upgrade its schema", .section = SECTION_MAINTENANCE,
        .run = verb_migrate);
