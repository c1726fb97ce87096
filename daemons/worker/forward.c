/* SPDX-License-Identifier: MIT */
/*
 * forward — runs an `http://` or `https://` handler for one job: a POST of
 * the stored body to the handler URL.
 *
 * Promises:
 *  - keep-alive: connections are pooled per scheme://host:port and reused
 *    (common/httpclient.c); libevent sends one request at a time per connection, so the pool grows
 *    to at most [worker] concurrency busy connections per target. A
 *    connection the peer closed is dropped from the pool, never reused;
 *  - the request carries the stored Content-Type (application/octet-stream
 *    when none was stored), User-Agent knock/VERSION and X-Knock-Endpoint,
 *    X-Knock-Event-Id, X-Knock-Delivery-Id, X-Knock-Attempt,
 *    X-Knock-Event-Type, X-Knock-Provider-Event-Id;
 *  - outcome (contract §7): 2xx handled; 408, 429, 5xx, 3xx (not followed),
 *    connection errors and timeouts ([worker] timeout, for connect, write
 *    and read) retry; any other 4xx is permanent → dead;
 *  - https verifies the peer against the system trust store and the host
 *    name (or the IP address of a literal), with SNI for names;
 *  - the response body is captured up to [worker] max_output.
 *
 * Host names are resolved with the blocking resolver when a new connection
 * is made (not per request); point handlers at addresses or local names.
 */

#include <errno.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "knock-build.h"
#include "log.h"
#include "worker.h"

void forward_pool_free(worker *w)
{
        http_pool_clear(&w->pool);
        http_target_clear(&w->fwd_target);
        free(w->fwd_handler);
        w->fwd_handler = NULL;
}

/* The handler URL, parsed when it differs from the last job's: an endpoint
 * posts every event to one URL (or one per route). */
static int target_for(worker *w, const char *handler, const http_target **ret)
{
        if (!w->fwd_handler || !streq(w->fwd_handler, handler)) {
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
                http_target_clear(&w->fwd_target);
                free(w->fwd_handler);
                w->fwd_target = t;
                w->fwd_handler = copy;
        }
        *ret = &w->fwd_target;
        return 0;
}

static void job_http_done(job *j)
{
        http_conn_release(&j->conn, false);
        j->req = NULL;
        job_complete(j);
}

static void on_error(enum evhttp_request_error err, void *userdata)
{
        job *j = userdata;

        if (err == EVREQ_HTTP_TIMEOUT)
                j->outcome = EVENT_OUTCOME_TIMEOUT;
        free(j->http_error);
        j->http_error = strdup(http_request_error_string(err));
        if (j->conn)
                j->conn->broken = true;
}

static void on_response(struct evhttp_request *req, void *userdata)
{
        job *j = userdata;
        int code = req ? evhttp_request_get_response_code(req) : 0;

        if (!j->req)
                return; /* cancelled: forward_cancel completed the job */

        j->http_status = code;
        if (code == 0) {
                if (j->outcome != EVENT_OUTCOME_TIMEOUT)
                        j->outcome = EVENT_OUTCOME_TEMPFAIL;
                if (j->conn)
                        j->conn->broken = true;
                (void)asprintf(&j->error, "%s: %s", j->claim.handler,
                        j->http_error ?: "connection failed");
                job_http_done(j);
                return;
        }

        {
                struct evbuffer *in = evhttp_request_get_input_buffer(req);
                size_t len = evbuffer_get_length(in);
                size_t take = MIN(len, (size_t)j->w->d->cfg->max_output);
                unsigned char *p = take > 0 ? evbuffer_pullup(in, (ev_ssize_t)take) : NULL;

                if (p)
                        job_output(j, p, take);
                j->out_dropped += len - take;
        }

        if (code >= 200 && code < 300)
                j->outcome = EVENT_OUTCOME_SUCCESS;
        else if (code == 408 || code == 429 || code >= 500 || code < 400)
                j->outcome = EVENT_OUTCOME_TEMPFAIL;
        else
                j->outcome = EVENT_OUTCOME_PERMANENT;
        if (j->outcome != EVENT_OUTCOME_SUCCESS)
                (void)asprintf(&j->error, "HTTP %d%s", code,
                        j->outcome == EVENT_OUTCOME_PERMANENT ? " (permanent failure)" : "");
        job_http_done(j);
}

int forward_start(job *j)
{
        worker *w = j->w;
        knock_claim *c = &j->claim;
        const http_target *t;
        struct evkeyvalq *h;
        char attempt[24];
        int r;

        r = target_for(w, c->handler, &t);
        if (r < 0)
                return r;
        /* Made on first use: the blocking resolver, libevent's header limit. */
        if (!w->pool.base)
                http_pool_init(&w->pool, w->d->base, NULL, 0);
        r = http_pool_get(&w->pool, t, t->origin, w->d->cfg->timeout_ms,
                          2 * w->d->cfg->concurrency, &j->conn);
        if (r < 0)
                return r;

        j->req = evhttp_request_new(on_response, j);
        if (!j->req) {
                j->conn = NULL;
                return -ENOMEM;
        }
        evhttp_request_set_error_cb(j->req, on_error);
        snprintf(attempt, sizeof(attempt), "%lld", (long long)c->attempt);
        h = evhttp_request_get_output_headers(j->req);
        evhttp_add_header(h, "Host", t->hostport);
        evhttp_add_header(
                h, "Content-Type", c->content_type ? c->content_type : "application/octet-stream");
        evhttp_add_header(h, "User-Agent", "knock/" KNOCK_VERSION);
        evhttp_add_header(h, "X-Knock-Endpoint", w->d->name);
        evhttp_add_header(h, "X-Knock-Event-Id", c->id);
        if (c->delivery_id)
                evhttp_add_header(h, "X-Knock-Delivery-Id", c->delivery_id);
        evhttp_add_header(h, "X-Knock-Attempt", attempt);
        if (c->event_type)
                evhttp_add_header(h, "X-Knock-Event-Type", c->event_type);
        if (c->provider_event_id)
                evhttp_add_header(h, "X-Knock-Provider-Event-Id", c->provider_event_id);
        if (c->body_len > 0)
                evbuffer_add(evhttp_request_get_output_buffer(j->req), c->body, c->body_len);

        r = http_conn_send(j->conn, j->req, EVHTTP_REQ_POST, t->path);
        if (r < 0) {
                /* libevent has freed the request already. */
                j->req = NULL;
                j->conn = NULL;
                return r;
        }
        return 0;
}

void forward_cancel(job *j)
{
        struct evhttp_request *req = j->req;

        if (!req)
                return;
        /* Clear first: callbacks that fire during the cancel see no request. */
        j->req = NULL;
        evhttp_cancel_request(req);
        if (j->conn)
                j->conn->broken = true;
        j->outcome = EVENT_OUTCOME_INTERRUPTED;
        free(j->error);
        j->error = strdup("interrupted: worker stopping");
        http_conn_release(&j->conn, false);
        job_complete(j);
}

void forward_cleanup(job *j)
{
        if (j->req) {
                struct evhttp_request *req = j->req;

                j->req = NULL;
                evhttp_cancel_request(req);
        }
        http_conn_release(&j->conn, true);
}
