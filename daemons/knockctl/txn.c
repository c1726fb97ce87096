/* SPDX-License-Identifier: MIT */
/*
 * txn — the frame every mutating verb shares (ops.c, hooks.c): its operand
 * ids, its one transaction with the audit row, its result.
 *
 * Promises:
 *  - ctl_begin() takes the write lock (BEGIN IMMEDIATE) before the verb
 *    looks at any row, so what it checks cannot change before it writes;
 *  - ctl_apply() changes the rows and appends the audit row in that same
 *    transaction: actor "user(uid)", the verb, the ids, the counts {changed,
 *    unchanged}. A verb changes everything it was asked to or nothing;
 *  - ctl_commit() and ctl_rollback() say in the operator's words what
 *    happened when it failed: "nothing was changed";
 *  - ctl_wake(), after the commit, wakes the daemons that have work now:
 *    this host's by a datagram, every host's by a notification (PostgreSQL).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "knockctl.h"

int ctl_begin(knockctl *c)
{
        int r = store_begin(c->store);

        if (r == -EBUSY)
                ctl_error("the database is busy (another writer holds the lock); try again");
        else if (r < 0)
                ctl_error("cannot start a transaction: %s", store_errmsg(c->store));
        return r < 0 ? KNOCKCTL_FAILED : 0;
}

int ctl_commit(knockctl *c)
{
        int r = store_commit(c->store);

        if (r < 0) {
                ctl_error("commit failed, nothing was changed: %s", strerror(-r));
                return KNOCKCTL_FAILED;
        }
        return 0;
}

void ctl_wake(knockctl *c, const char *role)
{
        daemon_wake_peer(c->endpoint, role);
        /* Its own transaction: delivered at once. A failure only leaves the
         * other hosts' daemons to their rescan. */
        (void)store_notify(c->store,
                streq(role, "deliver") ? STORE_TOPIC_HOOKS : STORE_TOPIC_EVENTS);
}

int ctl_rollback(knockctl *c, const char *verb, int r)
{
        store_rollback(c->store);
        if (r >= 0)
                return r;
        ctl_error("%s failed, nothing was changed: %s", verb, strerror(-r));
        return KNOCKCTL_FAILED;
}

int ctl_audit(knockctl *c, const char *action, json_t *filters, json_t *counts, json_t *ids)
{
        _cleanup_free_ char *f = NULL, *n = NULL, *i = NULL;
        char actor[128];

        ctl_actor(actor, sizeof(actor));
        if (filters && !(f = json_dumps(filters, JSON_COMPACT)))
                return -ENOMEM;
        if (counts && !(n = json_dumps(counts, JSON_COMPACT)))
                return -ENOMEM;
        if (ids && !(i = json_dumps(ids, JSON_COMPACT)))
                return -ENOMEM;
        return store_audit(c->store, actor, action, f, n, i);
}

int ctl_apply(knockctl *c, const char *action, ctl_apply_fn apply, void *userdata,
        json_t *changed, json_t *unchanged, json_t *filters, json_t *ids)
{
        json_t *counts, *v;
        size_t i;
        int r;

        json_array_foreach(changed, i, v)
        {
                r = apply(c, json_string_value(v), userdata);
                if (r < 0)
                        return r;
        }
        counts = json_pack("{s:I, s:I}", "changed", (json_int_t)json_array_size(changed),
                "unchanged", (json_int_t)json_array_size(unchanged));
        r = counts ? ctl_audit(c, action, filters, counts, ids) : -ENOMEM;
        json_decref(counts);
        return r;
}

/* Appends id unless it is there already. */
static int ids_add(json_t *ids, const char *id, size_t len)
{
        size_t k;
        json_t *v;

        json_array_foreach(ids, k, v) if (json_string_length(v) == len &&
                                          memcmp(json_string_value(v), id, len) == 0) return 0;
        return json_array_append_new(ids, json_string_lossy(id, len)) < 0 ? -ENOMEM : 0;
}

/* Reads ids from the arguments; "-" reads whitespace-separated ids from stdin
 * (of any length: a provider's id may be long). Duplicates are dropped (the
 * second would see the state the first set). */
int ctl_collect_ids(int argc, char **argv, json_t **ret)
{
        json_t *ids = json_array();
        int r = 0;

        if (!ids)
                return -ENOMEM;
        for (int i = 0; i < argc && r == 0; i++) {
                _cleanup_free_ char *line = NULL;
                size_t cap = 0;
                ssize_t n;

                if (!streq(argv[i], "-")) {
                        r = ids_add(ids, argv[i], strlen(argv[i]));
                        continue;
                }
                while (r == 0 && (n = getline(&line, &cap, stdin)) > 0) {
                        char *save = NULL;

                        for (char *t = strtok_r(line, " \t\r\n\v\f", &save); t && r == 0;
                                t = strtok_r(NULL, " \t\r\n\v\f", &save))
                                r = ids_add(ids, t, strlen(t));
                }
        }
        if (r < 0) {
                json_decref(ids);
                return r;
        }
        *ret = ids;
        return 0;
}

/* Prints " id id …" (escaped: ids may come from a pipe). */
static void print_ids(json_t *ids, const char *first)
{
        size_t i;
        json_t *v;

        json_array_foreach(ids, i, v)
        {
                _cleanup_free_ char *e = ctl_escape(json_string_value(v), 0);

                printf("%s%s", i == 0 ? first : " ", e ? e : "?");
        }
}

/* Prints the result of a transition: "requeued 2 events: …" or the JSON object. */
int ctl_print_result(knockctl *c, const char *action, const char *past, const char *noun,
        json_t *changed, json_t *unchanged, json_t *extra)
{
        json_t *doc;
        int r = 0;

        if (c->json) {
                doc = json_pack("{s:s, s:s, s:O, s:O, s:{s:I, s:I}}", "action", action, "endpoint",
                        c->endpoint, "changed", changed, "unchanged", unchanged, "counts",
                        "changed", (json_int_t)json_array_size(changed), "unchanged",
                        (json_int_t)json_array_size(unchanged));
                if (doc && extra)
                        json_object_update(doc, extra);
                r = print_json(doc);
                json_decref(doc);
                return r;
        }
        printf("%s %zu %s%s", past, json_array_size(changed), noun,
                json_array_size(changed) == 1 ? "" : "s");
        print_ids(changed, ": ");
        putchar('\n');
        if (json_array_size(unchanged) > 0) {
                printf("unchanged (already in the target state):");
                print_ids(unchanged, " ");
                putchar('\n');
        }
        return 0;
}
