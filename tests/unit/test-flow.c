/* SPDX-License-Identifier: MIT */
/*
 * test-flow — knock-worker's rate and route-concurrency bookkeeping
 * (daemons/worker/flow.c): a bucket is full at start with one second's
 * worth, refills continuously, holds claims back at zero and says when its
 * next token comes; a route's running count bounds its allowance and comes
 * down as slots are given back; a worker rate caps the whole claim; a
 * breaker's count of failures in a row.
 *
 * The module lives with its daemon; it is compiled into this test directly,
 * as it has no dependency beyond config and util.
 */
#include "../../daemons/worker/flow.c"

#include "tap.h"

static events_flow_limit *limit_of(events_flow *p, const char *type)
{
        for (size_t i = 0; i < p->n; i++)
                if (streq(p->v[i].event_type, type))
                        return &p->v[i];
        return NULL;
}

/* Claims `take` of type at now, as the writer does: plan, claim, took. */
static size_t claim(worker_flow *f, knock_config *c, const char *type, size_t take, int64_t now)
{
        events_flow p;
        events_flow_limit *l;
        size_t cap = flow_plan(f, c, now, &p), n;

        l = limit_of(&p, type);
        n = MIN(take, cap);
        if (l)
                n = MIN(n, l->allow);
        if (l)
                l->taken = n;
        flow_took(f, c, &p, n);
        return n;
}

int main(void)
{
        knock_config c = {.n_routes = 2};
        worker_flow f = {};
        events_flow p;
        int64_t t0 = 1000000;

        c.routes[0] = (knock_route){.event_type = (char *)"rated", .rate = {5, 1000}};
        c.routes[1] = (knock_route){.event_type = (char *)"single", .concurrency = 1};

        is_int((int64_t)flow_plan(&f, &c, t0, &p), (int64_t)SIZE_MAX, "no worker rate: no cap");
        is_int((int64_t)p.n, 2, "both limited routes are listed");
        is_int((int64_t)limit_of(&p, "rated")->allow, 5, "5/s: a full bucket holds 5");
        is_int((int64_t)limit_of(&p, "single")->allow, 1, "concurrency 1: one may start");

        is_int((int64_t)claim(&f, &c, "rated", 9, t0), 5, "a burst takes the whole bucket");
        is_int((int64_t)claim(&f, &c, "rated", 9, t0 + 100), 0, "100 ms later: no whole token");
        flow_plan(&f, &c, t0 + 100, &p);
        is_int(flow_next_token(&f, &c, &p, t0 + 100), t0 + 201, "the next token is due at 200 ms");
        is_int((int64_t)claim(&f, &c, "rated", 9, t0 + 1000), 5, "a second later: 5 more");
        is_int((int64_t)claim(&f, &c, "rated", 9, t0 + 60000), 5, "a long wait refills to 5, no more");

        is_int((int64_t)claim(&f, &c, "single", 3, t0 + 61000), 1, "concurrency 1: one claim");
        is_int((int64_t)claim(&f, &c, "single", 3, t0 + 65000), 0, "none while it runs");
        flow_plan(&f, &c, t0 + 65000, &p);
        is_int(flow_next_token(&f, &c, &p, t0 + 65000), INT64_MAX,
               "a slot is no token: the end of the running handler wakes the worker");
        flow_done(&f, "single");
        is_int((int64_t)claim(&f, &c, "single", 3, t0 + 65000), 1, "its slot given back: one more");
        flow_done(&f, "single");
        flow_done(&f, "single");
        flow_done(&f, "nobody");
        is_int((int64_t)f.routes[1].running, 0, "the count never goes below zero");

        c.rate = (knock_rate){2, 60000};
        c.routes[0].rate = (knock_rate){0, 1000};
        is_int((int64_t)flow_plan(&f, &c, t0, &p), 1, "2/m: the worker's bucket holds 1");
        flow_took(&f, &c, &p, 1);
        is_int((int64_t)flow_plan(&f, &c, t0 + 1000, &p), 0, "… and is empty after one start");
        is_int(flow_next_token(&f, &c, &p, t0 + 1000), t0 + 30001, "… its next token in 30 s");

        c.routes[1].concurrency = 0;
        c.rate = (knock_rate){0, 1000};
        is_int((int64_t)flow_plan(&f, &c, t0, &p), (int64_t)SIZE_MAX, "bounds removed (a reload)");
        is_int((int64_t)p.n, 0, "… no route is limited");
        ok(!flow_breaker_count(&f, "flaky", true, 3), "breaker 3: one failure");
        ok(!flow_breaker_count(&f, "flaky", true, 3), "two failures");
        ok(!flow_breaker_count(&f, "flaky", false, 3), "a success starts over");
        ok(!flow_breaker_count(&f, "flaky", true, 3) && !flow_breaker_count(&f, "flaky", true, 3),
           "two failures again");
        ok(flow_breaker_count(&f, "flaky", true, 3), "the third in a row opens it");
        ok(!flow_breaker_count(&f, "flaky", true, 3), "and the count starts over");
        flow_free(&f);
        return tap_done();
}
