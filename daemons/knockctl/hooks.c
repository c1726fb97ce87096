/* SPDX-License-Identifier: MIT */
/*
 * hooks — completion hooks (contract §8): hooks, hook, redeliver-hook.
 *
 * Promises:
 *  - `hook ID` shows every attempt (time, HTTP status or 0, duration, the
 *    stored response or error), which is the answer to "was it delivered,
 *    and if not, why";
 *  - `redeliver-hook` re-arms hooks as a new series (pending, attempt_count
 *    0, due now, no claim; common/hooks.c), in one transaction with its
 *    audit row (txn.c), then
 *    wakes knock-deliver. It accepts failed and delivered hooks (a receiver
 *    that lost what it got) and pending ones that are waiting for a retry;
 *    it refuses a hook that is being sent right now (a live claim), and
 *    then changes nothing;
 *  - `--failed --since T [--until T]` selects the dead-lettered hooks whose
 *    last attempt falls in [T, until); it succeeds (and audits) also when
 *    none match.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "knockctl.h"

static const field_spec hook_fields[] = {
        {"id", "h.id", F_TEXT},
        {"event_id", "h.event_id", F_TEXT},
        {"type", "h.type", F_TEXT},
        {"state", "h.state", F_TEXT},
        {"attempt_count", "h.attempt_count", F_INT},
        {"max_attempts", "h.max_attempts", F_INT},
        {"last_status", "h.last_status", F_INT},
        {"last_error", "h.last_error", F_TEXT},
        {"next_attempt_at", "h.next_attempt_at", F_TIME},
        {"delivered_at", "h.delivered_at", F_TIME},
        {"last_attempt_at", "h.last_attempt_at", F_TIME},
        {"created_at", "h.created_at", F_TIME},
        {"updated_at", "h.updated_at", F_TIME},
        {"claimed_by", "h.claimed_by", F_TEXT},
        {"claim_until", "h.claim_until", F_TIME},
        {"payload", "h.payload", F_JSON},
};

static const field_spec hook_attempt_fields[] = {
        {"id", "id", F_TEXT},
        {"at", "at", F_TIME},
        {"status", "status", F_INT},
        {"duration_ms", "duration_ms", F_INT},
        {"error", "error", F_TEXT},
        {"response", "response", F_TEXT},
};

static int check_hook_state(const char *state)
{
        if (streq(state, "pending") || streq(state, "delivered") || streq(state, "failed"))
                return 0;
        ctl_error("unknown hook state '%s' (pending, delivered or failed)", state);
        return KNOCKCTL_USAGE;
}

/* The list leaves out the payload (the last field): it is in `hook ID`. */
KNOCKCTL_LISTING(hooks, .verb.name = "hooks",
        .verb.synopsis = "[--state pending|delivered|failed] [--event ID] [--limit N]",
        .verb.help = "List completion hooks, newest first", .verb.section = SECTION_HOOKS,
        .one = "hook",
        .filters = {
                {"state", LIST_TEXT, ":state", .check = check_hook_state},
                {"event", LIST_EVENT, ":event"},
                {"limit", LIST_LIMIT, ":limit"},
        },
        .fields = hook_fields, .n_fields = ELEMENTSOF(hook_fields) - 1,
        .from = "FROM hooks h WHERE (CAST(:state AS TEXT) IS NULL OR h.state = :state)"
                " AND (CAST(:event AS TEXT) IS NULL OR h.event_id = :event)"
                " ORDER BY h.created_at DESC, h.id DESC LIMIT :limit",
        .cols = {
                {"id", "ID", 0},
                {"event_id", "EVENT_ID", 0},
                {"type", "TYPE", 0},
                {"state", "STATE", 0},
                {"attempt_count", "ATTEMPTS", 0},
                {"last_status", "LAST_STATUS", 0},
                {"next_attempt_at", "NEXT_ATTEMPT_AT", 0},
                {"last_error", "LAST_ERROR", 40},
        },
        .what = "hooks");

static int verb_hook(knockctl *c, int argc, char **argv)
{
        static const char *const keys[] = {"id", "event_id", "type", "state", "attempt_count",
                "max_attempts", "last_status", "last_error", "last_attempt_at", "next_attempt_at",
                "delivered_at", "created_at", "updated_at", "claimed_by", "claim_until", "payload",
                NULL};
        static const column acols[] = {
                {"at", "AT", 0},
                {"status", "STATUS", 0},
                {"duration_ms", "MS", 0},
                {"error", "ERROR", 40},
                {"response", "RESPONSE", 40},
        };
        _cleanup_stmt_ db_stmt *st = NULL, *at = NULL;
        json_t *hook = NULL, *attempts = NULL;
        int o, r, rc;

        while ((o = verb_getopt(c, argc, argv, "", NULL)) >= 0)
                return o;
        if (argc - optind != 1) {
                ctl_error("usage: knockctl hook ID");
                return KNOCKCTL_USAGE;
        }
        r = ctl_open_store(c, false);
        if (r != 0)
                return r;
        r = ctl_select(c, hook_fields, ELEMENTSOF(hook_fields), "FROM hooks h WHERE h.id = :id", &st);
        if (r != 0)
                return r;
        ctl_bind_text(st, ":id", argv[optind]);
        rc = stmt_step(st);
        if (rc == 0) {
                ctl_error_no_such("hook", argv[optind], c->endpoint);
                return KNOCKCTL_FAILED;
        }
        if (rc <= 0)
                return rc;
        hook = fields_row(st, hook_fields, ELEMENTSOF(hook_fields));
        if (!hook)
                return -ENOMEM;

        r = ctl_select(c, hook_attempt_fields, ELEMENTSOF(hook_attempt_fields),
                "FROM hook_attempts WHERE hook_id = :id ORDER BY at, id", &at);
        if (r == 0) {
                ctl_bind_text(at, ":id", argv[optind]);
                r = fields_rows(
                        at, hook_attempt_fields, ELEMENTSOF(hook_attempt_fields), &attempts);
        }
        if (r != 0) {
                json_decref(hook);
                return r;
        }
        json_object_set_new(hook, "attempts", attempts);
        if (c->json)
                r = print_json(hook);
        else {
                print_object(hook, keys);
                printf("\nAttempts (%zu):\n", json_array_size(attempts));
                print_table(attempts, acols, ELEMENTSOF(acols));
        }
        json_decref(hook);
        return r;
}

KNOCKCTL_VERB(hook, .name = "hook", .synopsis = "ID", .help = "Show one hook with its attempts",
        .section = SECTION_HOOKS, .run = verb_hook);

/* Failed hooks whose last attempt lies in [since, until) into ids. */
static int select_failed(knockctl *c, int64_t since, int64_t until, json_t *ids)
{
        char **v = NULL;
        size_t n = 0;
        int r;

        r = hooks_failed_between(c->store, since, until, &v, &n);
        for (size_t i = 0; r >= 0 && i < n; i++)
                if (json_array_append_new(ids, json_string(v[i])) < 0)
                        r = -ENOMEM;
        strv_free(v, n);
        return r;
}

/* Checks one hook under the write lock: 0 when it may be re-armed, 1 when
 * refused (reported), or a negative errno. */
static int check_hook(knockctl *c, const char *id)
{
        _cleanup_free_ char *by = NULL;
        int r;

        r = hooks_in_flight(c->store, id, c->now, &by);
        if (r == -ENOENT) {
                _cleanup_free_ char *e = ctl_escape(id, 0); /* may come from a pipe */

                fprintf(stderr, "knockctl: %s: no such hook in endpoint %s\n", e ? e : "?",
                        c->endpoint);
                return 1;
        }
        if (r > 0)
                fprintf(stderr,
                        "knockctl: %s: hook is being sent now (claimed by %s); "
                        "try again when the attempt has ended\n",
                        id, by ? by : "a deliverer");
        return r;
}

static int apply_rearm(knockctl *c, const char *id, void *userdata)
{
        return hooks_rearm(c->store, id, c->now);
}

static int verb_redeliver_hook(knockctl *c, int argc, char **argv)
{
        static const struct option options[] = {
                {"failed", no_argument, NULL, 'f'},
                {"since", required_argument, NULL, 'S'},
                {"until", required_argument, NULL, 'U'},
                {0},
        };
        json_t *ids = NULL, *changed = NULL, *unchanged = NULL, *filters = NULL, *v;
        bool failed = false, have_since = false, have_until = false;
        int64_t since = 0, until = 0;
        size_t i, problems = 0;
        int o, r;

        while ((o = verb_getopt(c, argc, argv, "", options)) >= 0)
                switch (o) {
                case 'f':
                        failed = true;
                        break;
                case 'S':
                        r = ctl_parse_time("--since", optarg, c->now, &since);
                        if (r != 0)
                                return r;
                        have_since = true;
                        break;
                case 'U':
                        r = ctl_parse_time("--until", optarg, c->now, &until);
                        if (r != 0)
                                return r;
                        have_until = true;
                        break;
                default:
                        return o;
                }
        if (failed == (optind < argc) || (failed && !have_since) ||
                (!failed && (have_since || have_until))) {
                ctl_error(
                        "usage: knockctl redeliver-hook ID... | redeliver-hook --failed --since T "
                        "[--until T]");
                return KNOCKCTL_USAGE;
        }
        if (failed) {
                char a[64], b[64];

                ids = json_array();
                filters = json_pack("{s:s, s:s, s:s?}", "state", "failed", "since",
                        format_rfc3339(since, a, sizeof(a)), "until",
                        have_until ? format_rfc3339(until, b, sizeof(b)) : NULL);
                if (!ids || !filters) {
                        r = -ENOMEM;
                        goto out;
                }
        } else {
                r = ctl_collect_ids(argc - optind, argv + optind, &ids);
                if (r < 0)
                        return r;
        }

        r = ctl_open_store(c, true);
        if (r != 0)
                goto out;
        r = ctl_begin(c);
        if (r != 0)
                goto out;
        if (failed) {
                r = select_failed(c, since, have_until ? until : -1, ids);
                if (r < 0)
                        goto rollback;
        }
        changed = json_array();
        unchanged = json_array();
        if (!changed || !unchanged) {
                r = -ENOMEM;
                goto rollback;
        }
        json_array_foreach(ids, i, v)
        {
                r = check_hook(c, json_string_value(v));
                if (r < 0)
                        goto rollback;
                if (r == 0 && json_array_append(changed, v) < 0) {
                        r = -ENOMEM;
                        goto rollback;
                }
                problems += r;
        }
        if (problems > 0) {
                ctl_error("redeliver-hook: nothing was changed (%zu of %zu ids refused)", problems,
                        json_array_size(ids));
                r = KNOCKCTL_FAILED;
                goto rollback;
        }
        /* unchanged stays empty: a hook is re-armed or refused. */
        r = ctl_apply(c, "redeliver-hook", apply_rearm, NULL, changed, unchanged, filters, ids);
        if (r < 0)
                goto rollback;
        r = ctl_commit(c);
        if (r != 0)
                goto out;
        if (json_array_size(changed) > 0)
                ctl_wake(c, "deliver");
        r = ctl_print_result(c, "redeliver-hook", "re-armed", "hook", changed, unchanged, NULL);
        goto out;

rollback:
        r = ctl_rollback(c, "redeliver-hook", r);
out:
        json_decref(ids);
        json_decref(changed);
        json_decref(unchanged);
        json_decref(filters);
        return r;
}

KNOCKCTL_VERB(redeliver_hook, .name = "redeliver-hook",
        .synopsis = "ID... | --failed --since T [--until T]",
        .help = "Send hooks again as a new series (attempts reset)", .section = SECTION_HOOKS,
        .run = verb_redeliver_hook);
