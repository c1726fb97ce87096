/* SPDX-License-Identifier: MIT */
/*
 * pause — `pause [--route TYPE] [--reason TEXT]` and `resume [--route TYPE]`
 * (knockctl(1), FLOW CONTROL). The pauses table is common/pause.c's; this
 * file says it to the operator.
 *
 * Promises:
 *  - one command is one transaction with its audit row (txn.c): actor, the
 *    verb, filters {route, reason}, counts {changed}. Pausing what is paused,
 *    or resuming what is not, succeeds, changes nothing and is audited with
 *    changed 0;
 *  - a pause takes effect at the worker's next claim: it claims nothing
 *    paused from then on, and the handlers already running finish;
 *  - resume wakes the worker after the commit, so what waited runs at once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "knockctl.h"
#include "pause.h"

#define ROUTE_MAX 256

/* An event type an operator may name: printable, one line (it goes into the
 * worker's STATUS= line), bounded. */
static bool route_valid(const char *s)
{
        size_t n = strlen(s);

        if (n == 0 || n > ROUTE_MAX)
                return false;
        for (const unsigned char *p = (const unsigned char *)s; *p; p++)
                if (*p < 0x20 || *p == 0x7f)
                        return false;
        return true;
}

static int run_pause(knockctl *c, bool pause, int argc, char **argv)
{
        static const struct option options[] = {
                {"route", required_argument, NULL, 'r'},
                {"reason", required_argument, NULL, 'R'},
                {0},
        };
        const char *verb = pause ? "pause" : "resume", *route = NULL, *reason = NULL;
        char actor[128], t[64];
        json_t *filters = NULL, *counts = NULL;
        bool changed = false;
        int o, r;

        while ((o = verb_getopt(c, argc, argv, "", options)) >= 0) {
                if (o == 'r')
                        route = optarg;
                else if (o == 'R' && pause)
                        reason = optarg;
                else
                        return o == 'R' ? (ctl_error("resume takes no --reason"), KNOCKCTL_USAGE)
                                        : o;
        }
        if (optind < argc) {
                ctl_error("usage: knockctl %s [--route TYPE]%s", verb,
                        pause ? " [--reason TEXT]" : "");
                return KNOCKCTL_USAGE;
        }
        if (route && !route_valid(route)) {
                ctl_error("--route: an event type of 1 to %d printable characters", ROUTE_MAX);
                return KNOCKCTL_USAGE;
        }
        if (reason && strlen(reason) > 1024) {
                ctl_error("--reason: at most 1024 bytes");
                return KNOCKCTL_USAGE;
        }
        r = ctl_open_store(c, true);
        if (r != 0)
                return r;
        r = ctl_begin(c);
        if (r != 0)
                return r;

        ctl_actor(actor, sizeof(actor));
        r = pause ? pause_set(c->store, route, c->now, actor, reason, &changed)
                  : pause_clear(c->store, route, &changed);
        if (r < 0)
                goto rollback;
        filters = json_pack("{s:s?, s:s?}", "route", route, "reason", reason);
        counts = json_pack("{s:i}", "changed", changed);
        if (!filters || !counts) {
                r = -ENOMEM;
                goto rollback;
        }
        r = ctl_audit(c, verb, filters, counts, NULL);
        if (r < 0)
                goto rollback;
        r = ctl_commit(c);
        if (r != 0)
                goto out;

        /* After the commit: the woken worker must see the pause gone. */
        if (!pause && changed)
                ctl_wake(c, "worker");
        if (c->json) {
                json_t *doc = json_pack("{s:s, s:s, s:s?, s:b}", "action", verb, "endpoint",
                        c->endpoint, "route", route, "changed", changed);

                r = print_json(doc);
                json_decref(doc);
        } else {
                _cleanup_free_ char *e = route ? ctl_escape(route, 0) : NULL;
                char what[ROUTE_MAX * 4 + 64];

                if (route)
                        snprintf(what, sizeof(what), "route %s of %s", e ? e : "?", c->endpoint);
                else
                        snprintf(what, sizeof(what), "endpoint %s", c->endpoint);
                if (pause && changed)
                        printf("%s paused since %s: the worker claims none of its events until "
                               "'knockctl resume%s%s'\n",
                                what, format_rfc3339(c->now, t, sizeof(t)), route ? " --route " : "",
                                route ? e : "");
                else if (pause)
                        printf("%s was paused already; nothing changed\n", what);
                else if (changed)
                        printf("%s resumed\n", what);
                else
                        printf("%s was not paused; nothing changed\n", what);
        }
        goto out;

rollback:
        r = ctl_rollback(c, verb, r);
out:
        json_decref(filters);
        json_decref(counts);
        return r;
}

static int verb_pause(knockctl *c, int argc, char **argv)
{
        return run_pause(c, true, argc, argv);
}

static int verb_resume(knockctl *c, int argc, char **argv)
{
        return run_pause(c, false, argc, argv);
}

KNOCKCTL_VERB(pause, .name = "pause", .synopsis = "[--route TYPE] [--reason TEXT]",
        .help = "Hold the endpoint's (or one event type's) events as received: claim none",
        .section = SECTION_OPERATE, .run = verb_pause);
KNOCKCTL_VERB(resume, .name = "resume", .synopsis = "[--route TYPE]",
        .help = "Undo a pause: what waited runs", .section = SECTION_OPERATE,
        .run = verb_resume);
