/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * probe — what knock-ingress would do with one request, decided by the code
 * the ingress itself runs: the strict request framing of its public
 * listener (httpreq), the checks on the head (request_admission(), which
 * the ingress calls too), the provider's verification (verify_request()) and
 * the worker's routing (config_handler_for()). `knockctl probe` and the web
 * console's probe page use it to answer "why does my provider's webhook get
 * 401?" without sending anything to the endpoint.
 *
 * Promises:
 *  - no I/O, no database, no logging: a probe stores nothing and runs
 *    nothing; whether the dedupe id names a stored event is the caller's
 *    read-only query (console-query.h);
 *  - the verdict is the answer the ingress would give to these bytes at
 *    now_ms with this configuration; what depends on the moment (draining,
 *    the writer's queue, the orphan budget, storage errors) is not probed;
 *  - a head written with bare LF line endings (typed or pasted, with no CR
 *    at all) is read with CRLF when PROBE_LF_HEAD is given, and a body that
 *    a browser's form turned to CRLF is turned back with PROBE_BODY_LF; each
 *    such change is listed in notes, so the operator knows the bytes differ
 *    from what was pasted.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

/*
 * The checks the ingress makes on a request's head before a byte of its
 * body is read: the request target's path (without its query) must be
 * cfg->path, the method POST (or GET for meta's handshake), the announced
 * Content-Length at most max_body (content_length < 0: none announced).
 * Returns 0 (read the body), 404, 405 or 413.
 */
int request_admission(
        const knock_config *cfg, const char *method, const char *target, int64_t content_length);

enum {
        PROBE_LF_HEAD = 1 << 0, /* a head without any CR: read its LFs as CRLF */
        PROBE_BODY_LF = 1 << 1, /* the body's CRLFs back to LF (a browser form's textarea) */
};

#define PROBE_MAX_NOTES 4

typedef enum probe_outcome {
        PROBE_INCOMPLETE, /* the bytes end before the request does: the ingress waits, then times
                             out */
        PROBE_REFUSED,    /* answered before verification (400, 404, 405, 413, 431, …) */
        PROBE_REJECTED,   /* 401: verification failed */
        PROBE_HANDSHAKE,  /* a verified setup handshake: answered, stored, no event */
        PROBE_ACCEPTED,   /* 200: a new event, or a duplicate delivery of a stored one */
} probe_outcome;

typedef struct probe_result {
        probe_outcome outcome;
        int status;            /* the ingress's answer; 0 when incomplete */
        char reason[160];      /* why it is not accepted; "" when it is */
        char *method, *target; /* as parsed (malloc'd), NULL when the head did not parse */
        size_t body_len;
        char *provider_event_id; /* the dedupe id (malloc'd), also of a rejected request */
        char *event_type;        /* malloc'd */
        const char *route;       /* the [route "TYPE"] that matches, or NULL; points into cfg */
        const char *handler;     /* what would run, NULL: ignored (no_handler); points into cfg */
        char notes[PROBE_MAX_NOTES][160];
        size_t n_notes;
} probe_result;

/* Probes the len bytes at raw as one request received at now_ms. Returns 0
 * (the verdict in *ret, cleared with probe_result_clear), or a negative
 * errno (-ENOMEM; verification failing internally). */
int probe_request(const knock_config *cfg, const void *raw, size_t len, unsigned flags,
        int64_t now_ms, probe_result *ret);
void probe_result_clear(probe_result *r);

/* "accepted", "rejected", … for an outcome. */
const char *probe_outcome_to_string(probe_outcome o);
/* What the ingress would store for this verdict, in a few words. */
const char *probe_stored(const probe_result *r, bool duplicate);
