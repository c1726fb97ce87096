/* SPDX-License-Identifier: MIT */
/*
 * flow — see flow.h. The buckets count in fractions of a token so that a
 * slow rate (1/h) refills exactly; a claim only ever takes whole tokens.
 */
#include "flow.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* One second's worth, at least one. */
static double burst(knock_rate r)
{
        return (double)MAX((r.n * 1000 + r.per_ms - 1) / r.per_ms, (uint64_t)1);
}

static void refill(flow_bucket *b, knock_rate r, int64_t now)
{
        if (b->at == 0) {
                b->tokens = burst(r);
                b->at = now;
                return;
        }
        if (now > b->at)
                b->tokens = MIN(burst(r), b->tokens + (double)(now - b->at) * (double)r.n /
                                                          (double)r.per_ms);
        b->at = MAX(b->at, now);
}

static size_t whole(const flow_bucket *b)
{
        return b->tokens < 1.0 ? 0 : (size_t)b->tokens;
}

/* When b has a whole token again. */
static int64_t next_token(const flow_bucket *b, knock_rate r)
{
        double wait = (1.0 - b->tokens) * (double)r.per_ms / (double)r.n;

        if (b->tokens >= 1.0)
                return b->at;
        return b->at + (int64_t)wait + 1;
}

static bool limited(const knock_route *r)
{
        return r->concurrency > 0 || r->rate.n > 0;
}

static flow_route *route_state(worker_flow *f, const char *event_type, bool create)
{
        flow_route *v;

        for (size_t i = 0; i < f->n_routes; i++)
                if (streq(f->routes[i].event_type, event_type))
                        return &f->routes[i];
        if (!create)
                return NULL;
        v = reallocarray(f->routes, f->n_routes + 1, sizeof(*v));
        if (!v)
                return NULL;
        f->routes = v;
        v = &f->routes[f->n_routes];
        *v = (flow_route){.event_type = strdup(event_type)};
        if (!v->event_type)
                return NULL;
        f->n_routes++;
        return v;
}

size_t flow_plan(worker_flow *f, const knock_config *cfg, int64_t now, events_flow *ret)
{
        size_t n = 0;

        *ret = (events_flow){};
        for (size_t i = 0; i < cfg->n_routes; i++)
                n += limited(&cfg->routes[i]);
        if (n > f->cap_limits) {
                events_flow_limit *v = reallocarray(f->limits, n, sizeof(*v));

                if (!v)
                        return 0;
                f->limits = v;
                f->cap_limits = n;
        }
        n = 0;
        for (size_t i = 0; i < cfg->n_routes; i++) {
                const knock_route *r = &cfg->routes[i];
                flow_route *st;
                size_t allow = SIZE_MAX;

                if (!limited(r))
                        continue;
                st = route_state(f, r->event_type, true);
                if (!st)
                        return 0;
                if (r->concurrency > 0)
                        allow = r->concurrency > st->running ? r->concurrency - st->running : 0;
                if (r->rate.n > 0) {
                        refill(&st->bucket, r->rate, now);
                        allow = MIN(allow, whole(&st->bucket));
                }
                f->limits[n++] = (events_flow_limit){.event_type = r->event_type, .allow = allow};
        }
        *ret = (events_flow){.v = f->limits, .n = n};
        if (cfg->rate.n == 0)
                return SIZE_MAX;
        refill(&f->bucket, cfg->rate, now);
        return whole(&f->bucket);
}

static const knock_route *cfg_route(const knock_config *cfg, const char *event_type)
{
        for (size_t k = 0; k < cfg->n_routes; k++)
                if (streq(cfg->routes[k].event_type, event_type))
                        return &cfg->routes[k];
        return NULL;
}

void flow_took(worker_flow *f, const knock_config *cfg, const events_flow *plan, size_t n)
{
        for (size_t i = 0; i < plan->n; i++) {
                const events_flow_limit *l = &plan->v[i];
                flow_route *st = route_state(f, l->event_type, false);
                const knock_route *r = cfg_route(cfg, l->event_type);

                if (!st || !r)
                        continue;
                /* Counted whether or not the route bounds its concurrency: the count
                 * must match the claims marked flow_counted. */
                st->running += l->taken;
                if (r->rate.n > 0)
                        st->bucket.tokens -= (double)l->taken;
        }
        if (cfg->rate.n > 0)
                f->bucket.tokens -= (double)n;
}

int64_t flow_next_token(worker_flow *f, const knock_config *cfg, const events_flow *plan,
        int64_t now)
{
        int64_t due = INT64_MAX;

        for (size_t i = 0; i < plan->n; i++) {
                const events_flow_limit *l = &plan->v[i];
                flow_route *st = route_state(f, l->event_type, false);
                const knock_route *r = cfg_route(cfg, l->event_type);

                if (st && r && r->rate.n > 0 && st->bucket.tokens < 1.0)
                        due = MIN(due, next_token(&st->bucket, r->rate));
        }
        if (cfg->rate.n > 0 && f->bucket.tokens < 1.0)
                due = MIN(due, next_token(&f->bucket, cfg->rate));
        return due == INT64_MAX ? due : MAX(due, now + 1);
}

bool flow_breaker_count(worker_flow *f, const char *event_type, bool failed, uint64_t threshold)
{
        flow_route *st = route_state(f, event_type, true);

        if (!st)
                return false;
        st->failures = failed ? st->failures + 1 : 0;
        if (st->failures < threshold)
                return false;
        st->failures = 0;
        return true;
}

void flow_done(worker_flow *f, const char *event_type)
{
        flow_route *st = event_type ? route_state(f, event_type, false) : NULL;

        if (st && st->running > 0)
                st->running--;
}

void flow_free(worker_flow *f)
{
        for (size_t i = 0; i < f->n_routes; i++)
                free(f->routes[i].event_type);
        free(f->routes);
        free(f->limits);
        *f = (worker_flow){};
}
