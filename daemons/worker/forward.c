/* SPDX-License-Identifier: MIT */
/*
 * forward — the runner of `http://` and `https://` handlers: a POST of the
 * stored body to the handler URL, one per job.
 *
 * Promises:
 *  - keep-alive: connections are pooled per scheme://host:port and reused
 *    (common/httpclient.c); one request at a time per connection, so the pool grows
 *    to at most [worker] concurrency busy connections per target. A
 *    connection the peer closed is dropped from the pool, never reused;
 *  - the request carries the stored Content-Type (application/octet-stream
 *    when none was stored), User-Agent knock/VERSION and X-Knock-Endpoint,
 *    X-Knock-Event-Id, X-Knock-Delivery-Id, X-Knock-Attempt,
 *    X-Knock-Event-Type, X-Knock-Provider-Event-Id;
 *  - outcome (contract §7): 2xx handled; 408, 429, 5xx, 3xx (not followed),
 *    connection errors and timeouts retry; any other 4xx is permanent → dead;
 *  - https verifies the peer against the system trust store and the host
 *    name (or the IP address of a literal), with SNI for names;
 *  - the response body is captured up to [worker] max_output;
 *  - a request ends within [worker] timeout, connecting, writing and reading
 *    together (an HTTP handler's time, as an exec handler's is its run);
 *  - a header whose value holds a CR or LF (an event type taken from a
 *    payload, say) is left out rather than let it end the header early.
 *
 * Host names are resolved with the blocking resolver when a new connection
 * is made (not per request); point handlers at addresses or local names.
 *
 * A forward_job is a struct job and the connection its request is out on;
 * the pool and the last parsed handler URL are the runner's forward_state
 * (w->forward). The worker calls it through forward_runner.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "httpclient.h"
#include "knock-build.h"
#include "log.h"
#include "worker.h"

/* A job of this runner: the common head, then its request's connection. */
typedef struct forward_job {
        job j;           /* first: a job of forward_runner is a forward_job */
        http_conn *conn; /* while its request is out */
} forward_job;

/* The runner's state, for the whole worker (w->forward). */
struct forward_state {
        http_pool pool;     /* connections, keyed by origin; made on first use */
        http_target target; /* the last handler URL, parsed */
        char *handler;
};

static forward_job *forward_job_of(job *j)
{
        return (forward_job *)j;
}

/* The handler URL, parsed when it differs from the last job's: an endpoint
 * posts every event to one URL (or one per route). */
static int target_for(forward_state *fs, const char *handler, const http_target **ret)
{
        if (!fs->handler || !streq(fs->handler, handler)) {
                http_target t = {};
                char *copy = strdup(handler);
                int r;

                if (!copy)
                        return -ENOMEM;
                r = http_target_parse(handler, &t);
                if (r < 0) {
                        free(copy);
                        return r;
                }
                http_target_clear(&fs->target);
                free(fs->handler);
                fs->target = t;
                fs->handler = copy;
        }
        *ret = &fs->target;
        return 0;
}

/* A header line for the request, skipped when the value could end it (a
 * CR or LF, from a payload's event type for example): what evhttp did. */
static size_t header_add(char *buf, size_t at, size_t cap, const char *name, const char *value)
{
        size_t nl = strlen(name), vl = strlen(value);

        if (strpbrk(value, "\r\n") || at + nl + vl + 4 > cap)
                return at;
        memcpy(buf + at, name, nl);
        at += nl;
        buf[at++] = ':';
        buf[at++] = ' ';
        memcpy(buf + at, value, vl);
        at += vl;
        buf[at++] = '\r';
        buf[at++] = '\n';
        return at;
}

static void on_response(http_conn *conn, const http_response *r, void *userdata)
{
        forward_job *f = userdata;
        job *j = &f->j;
        int code = r->status;

        f->conn = NULL; /* the connection is given back below */
        http_conn_release(&conn, false);
        j->http_status = code;
        if (code == 0) {
                j->outcome = r->timed_out ? EVENT_OUTCOME_TIMEOUT : EVENT_OUTCOME_TEMPFAIL;
                j->error = strdup_printf("%s: %s", j->claim.handler,
                               r->error ?: "connection failed");
                job_complete(j);
                return;
        }
        if (r->body_len > 0)
                job_output(j, r->body, r->body_len);
        j->out_dropped += r->body_dropped;

        if (code >= 200 && code < 300)
                j->outcome = EVENT_OUTCOME_SUCCESS;
        else if (code == 408 || code == 429 || code >= 500 || code < 400)
                j->outcome = EVENT_OUTCOME_TEMPFAIL;
        else
                j->outcome = EVENT_OUTCOME_PERMANENT;
        if (j->outcome != EVENT_OUTCOME_SUCCESS)
                j->error = strdup_printf("HTTP %d%s", code,
                        j->outcome == EVENT_OUTCOME_PERMANENT ? " (permanent failure)" : "");
        job_complete(j);
}

static int forward_start(job *j)
{
        forward_job *f = forward_job_of(j);
        worker *w = j->w;
        forward_state *fs = w->forward;
        knock_claim *c = &j->claim;
        const http_target *t;
        char attempt[24], stack[2048];
        _cleanup_free_ char *heap = NULL;
        char *h = stack;
        size_t cap = sizeof(stack), at = 0;
        int r;

        r = target_for(fs, c->handler, &t);
        if (r < 0)
                return r;
        /* Made on first use: the blocking resolver, the default head bound. */
        if (!fs->pool.base)
                http_pool_init(&fs->pool, w->d->base, NULL, 0);

        {
                size_t need = 512 + strlen(w->d->name) + strlen(c->id) +
                              (c->content_type ? strlen(c->content_type) : 0) +
                              (c->delivery_id ? strlen(c->delivery_id) : 0) +
                              (c->event_type ? strlen(c->event_type) : 0) +
                              (c->provider_event_id ? strlen(c->provider_event_id) : 0);

                if (need > cap) {
                        heap = malloc(need);
                        if (!heap)
                                return -ENOMEM;
                        h = heap;
                        cap = need;
                }
        }
        snprintf(attempt, sizeof(attempt), "%lld", (long long)c->attempt);
        at = header_add(h, at, cap, "Content-Type",
                        c->content_type ? c->content_type : "application/octet-stream");
        at = header_add(h, at, cap, "User-Agent", "knock/" KNOCK_VERSION);
        at = header_add(h, at, cap, "X-Knock-Endpoint", w->d->name);
        at = header_add(h, at, cap, "X-Knock-Event-Id", c->id);
        if (c->delivery_id)
                at = header_add(h, at, cap, "X-Knock-Delivery-Id", c->delivery_id);
        at = header_add(h, at, cap, "X-Knock-Attempt", attempt);
        if (c->event_type)
                at = header_add(h, at, cap, "X-Knock-Event-Type", c->event_type);
        if (c->provider_event_id)
                at = header_add(h, at, cap, "X-Knock-Provider-Event-Id", c->provider_event_id);

        r = http_pool_get(&fs->pool, t, t->origin, w->d->cfg->timeout_ms,
                          2 * w->d->cfg->concurrency, &f->conn);
        if (r < 0)
                return r;
        r = http_conn_post(f->conn, t->path, h, at, c->body, c->body_len,
                           (size_t)w->d->cfg->max_output, on_response, f);
        if (r < 0) {
                http_conn_release(&f->conn, true);
                return r;
        }
        return 0;
}

/* The stop deadline: the request is aborted and the job completes now. */
static void forward_cancel(job *j)
{
        forward_job *f = forward_job_of(j);

        if (!f->conn)
                return;
        http_conn_release(&f->conn, true); /* aborts the request: no callback */
        j->outcome = EVENT_OUTCOME_INTERRUPTED;
        free(j->error);
        j->error = strdup("interrupted: worker stopping");
        job_complete(j);
}

static void forward_cleanup(job *j)
{
        http_conn_release(&forward_job_of(j)->conn, true);
}

static int forward_setup(worker *w)
{
        w->forward = calloc(1, sizeof(*w->forward));
        return w->forward ? 0 : log_error_errno(-ENOMEM, "Out of memory");
}

static void forward_teardown(worker *w)
{
        forward_state *fs = w->forward;

        if (!fs)
                return;
        http_pool_clear(&fs->pool);
        http_target_clear(&fs->target);
        free(fs->handler);
        w->forward = mfree(fs);
}

const job_runner forward_runner = {
        .prefixes = (const char *const[]){"http://", "https://", NULL},
        .size = sizeof(forward_job),
        .setup = forward_setup,
        .teardown = forward_teardown,
        .start = forward_start,
        .cancel = forward_cancel,
        .cleanup = forward_cleanup,
};
