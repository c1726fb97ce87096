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
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon.h"
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

static void reject(const transition *t, const char *id, event_status status, const char *claimed_by)
{
        const char *hint = reject_hint(t->op, status);
        char accepted[128] = "";
        size_t n = 0, k = 0;

        /* "failed, dead or ignored": the statuses the table lets the verb change. */
        for (int i = 0; i < _EVENT_STATUS_MAX; i++)
                n += event_op_check(t->op, (event_status)i) == EVENT_OP_CHANGES;
        for (int i = 0; i < _EVENT_STATUS_MAX; i++) {
                size_t len = strlen(accepted);

                if (event_op_check(t->op, (event_status)i) != EVENT_OP_CHANGES)
                        continue;
                k++;
                snprintf(accepted + len, sizeof(accepted) - len, "%s%s",
                        k == 1 ? "" : k < n ? ", " : " or ", event_status_names[i]);
        }
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

static int run_transition(knockctl *c, const transition *t, int argc, char **argv)
{
        json_t *ids = NULL, *resolved = NULL, *changed = NULL, *unchanged = NULL, *v;
        size_t i, problems = 0;
        int o, r;

        while ((o = verb_getopt(c, argc, argv, "", NULL)) >= 0)
                return o;
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

        /* After the commit, never before: a woken worker must see the rows. */
        if (event_op_target(t->op) == EVENT_STATUS_RECEIVED && json_array_size(changed) > 0)
                daemon_wake_peer(c->endpoint, "worker");
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

KNOCKCTL_VERB(requeue, .name = "requeue", .synopsis = "ID...",
        .help = "failed|dead|ignored → received, attempts reset (canonical body)",
        .section = SECTION_OPERATE, .run = verb_requeue);
KNOCKCTL_VERB(replay, .name = "replay", .synopsis = "ID...",
        .help = "handled → received: run a handled event again, attempts reset",
        .section = SECTION_OPERATE, .run = verb_replay);
KNOCKCTL_VERB(ignore, .name = "ignore", .synopsis = "ID...",
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
        daemon_wake_peer(c->endpoint, "worker");
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

/*
 * migrate: create the database or bring its schema up to this build's
 * version. Daemons do the same on start; this lets an operator do it
 * before starting them (after an upgrade, or to inspect an empty endpoint).
 */
static int verb_migrate(knockctl *c, int argc, char **argv)
{
        _cleanup_free_ char *path = NULL;
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
        path = config_db_path(c->endpoint);
        if (!path)
                return -ENOMEM;
        existed = stat(path, &stb) == 0;
        if (existed)
                before = peek_version(path);
        else if (mkdir(knock_state_dir(), 0755) < 0 && errno != EEXIST) {
                ctl_error("cannot create %s: %s", knock_state_dir(), strerror(errno));
                return KNOCKCTL_FAILED;
        }
        r = store_open(path, STORE_CREATE, &c->store);
        if (r == -EPROTO) {
                ctl_error("%s: the database is newer than this knockctl (schema version %d)", path,
                        STORE_SCHEMA_VERSION);
                return KNOCKCTL_FAILED;
        }
        if (r < 0) {
                ctl_error("%s: cannot create or migrate the database: %s", path, strerror(-r));
                return KNOCKCTL_FAILED;
        }
        /* Created by root: hand the file to the owner of the state directory
         * (the knock user), or the daemons could not write it. SQLite gives
         * its -wal and -shm files the database file's owner. */
        if (!existed && geteuid() == 0 && stat(knock_state_dir(), &dir) == 0 &&
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
                        path, "schema", counts);
                r = print_json(doc);
                json_decref(doc);
        } else if (before == after)
                printf("%s: schema version %d is current (%s)\n", c->endpoint, after, path);
        else
                printf("%s: schema version %d → %d (%s%s)\n", c->endpoint, before, after,
                        existed ? "" : "created ", path);
        json_decref(counts);
        return r;
}

KNOCKCTL_VERB(migrate, .name = "migrate", .synopsis = "",
        .help = "Create the database or upgrade its schema", .section = SECTION_MAINTENANCE,
        .run = verb_migrate);
