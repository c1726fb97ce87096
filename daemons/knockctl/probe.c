/* SPDX-License-Identifier: MIT */
/*
 * probe — `knockctl probe [FILE]`: what the endpoint's ingress would answer
 * to a raw HTTP request, and why (probe.h); the web console's probe page
 * gives the same verdict for the same bytes.
 *
 * Promises:
 *  - nothing is stored and nothing runs: the configuration is read (as
 *    root when run as root, for its credentials), then the database only
 *    read-only and as its owner, to say which stored event the dedupe id
 *    names;
 *  - the request is read from FILE or standard input, at most max_body
 *    plus a head's worth of bytes;
 *  - exit 0 when the ingress would accept it (2xx), 1 when not, 2 on a
 *    usage error.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "console-query.h"
#include "httpreq.h"
#include "knockctl.h"
#include "probe.h"

/* Reads at most max bytes of f; *ret_more when there was more. */
static int read_all(FILE *f, size_t max, char **ret, size_t *ret_len, bool *ret_more)
{
        size_t cap = 64 * 1024, len = 0;
        char *buf = malloc(cap);

        if (!buf)
                return -ENOMEM;
        for (;;) {
                size_t n;

                if (len == cap) {
                        char *nb;

                        if (cap > max) {
                                *ret_more = true;
                                break;
                        }
                        nb = realloc(buf, cap * 2);
                        if (!nb) {
                                free(buf);
                                return -ENOMEM;
                        }
                        buf = nb;
                        cap *= 2;
                }
                n = fread(buf + len, 1, cap - len, f);
                len += n;
                if (n == 0) {
                        if (ferror(f)) {
                                free(buf);
                                return -EIO;
                        }
                        break;
                }
        }
        if (len > max) {
                *ret_more = true;
                len = max;
        }
        *ret = buf;
        *ret_len = len;
        return 0;
}

static const char *handler_text(const probe_result *r, char *buf, size_t len)
{
        if (r->outcome != PROBE_ACCEPTED)
                return "none (only an accepted event is handled)";
        if (!r->handler)
                return "none: the event would be ignored (no_handler)";
        if (r->route)
                snprintf(buf, len, "[route \"%s\"] %s", r->route, r->handler);
        else
                snprintf(buf, len, "[worker] %s", r->handler);
        return buf;
}

static json_t *result_json(knockctl *c, const probe_result *r, const char *dup_id,
        const char *dup_status, bool dup_known, int64_t at)
{
        char when[40];
        json_t *o, *notes = json_array();

        for (size_t i = 0; notes && i < r->n_notes; i++)
                json_array_append_new(notes, json_string(r->notes[i]));
        o = json_pack("{s:s,s:s,s:i,s:s?,s:o,s:o,s:I,s:o,s:o,s:s?,s:s?,s:s,s:s,s:o}", "endpoint",
                c->endpoint, "outcome", probe_outcome_to_string(r->outcome), "status", r->status,
                "reason", r->reason[0] ? r->reason : NULL, "method",
                r->method ? json_string_lossy(r->method, strlen(r->method)) : json_null(),
                "target",
                r->target ? json_string_lossy(r->target, strlen(r->target)) : json_null(),
                "body_bytes", (json_int_t)r->body_len, "provider_event_id",
                r->provider_event_id
                        ? json_string_lossy(r->provider_event_id, strlen(r->provider_event_id))
                        : json_null(),
                "event_type",
                r->event_type ? json_string_lossy(r->event_type, strlen(r->event_type))
                              : json_null(),
                "route", r->route, "handler", r->outcome == PROBE_ACCEPTED ? r->handler : NULL,
                "would_store", probe_stored(r, dup_id != NULL), "at",
                format_rfc3339(at, when, sizeof(when)), "notes", notes ? notes : json_array());
        if (o)
                json_object_set_new(o, "duplicate_of",
                        dup_id      ? json_pack("{s:s,s:s}", "id", dup_id, "status", dup_status)
                        : dup_known ? json_null()
                                    : json_string("unknown: the database cannot be read"));
        return o;
}

static void print_human(
        const probe_result *r, const char *dup_id, const char *dup_status, bool dup_known)
{
        _cleanup_free_ char *reason = ctl_escape(r->reason, 0);
        _cleanup_free_ char *method = ctl_escape(r->method, 0);
        _cleanup_free_ char *target = ctl_escape(r->target, 0);
        _cleanup_free_ char *pid = ctl_escape(r->provider_event_id, 0);
        _cleanup_free_ char *type = ctl_escape(r->event_type, 0);
        char h[512];

        if (r->outcome == PROBE_INCOMPLETE)
                printf("verdict:      no answer (%s): %s\n", probe_outcome_to_string(r->outcome),
                        reason);
        else
                printf("verdict:      %d %s%s%s\n", r->status, probe_outcome_to_string(r->outcome),
                        r->reason[0] ? ": " : "", reason);
        if (r->method)
                printf("request:      %s %s (body %zu bytes)\n", method, target, r->body_len);
        printf("dedupe id:    %s\n", r->provider_event_id ? pid : "-");
        printf("event type:   %s\n", r->event_type ? type : "-");
        printf("handler:      %s\n", handler_text(r, h, sizeof(h)));
        if (dup_id)
                printf("duplicate of: %s (%s)\n", dup_id, dup_status);
        else
                printf("duplicate of: %s\n",
                        dup_known ? "none" : "unknown (the database cannot be read)");
        printf("would store:  %s (a probe stores nothing)\n", probe_stored(r, dup_id != NULL));
        for (size_t i = 0; i < r->n_notes; i++)
                printf("note:         %s\n", r->notes[i]);
}

static int verb_probe(knockctl *c, int argc, char **argv)
{
        static const struct option options[] = {
                {"at", required_argument, NULL, 'a'},
                {0},
        };
        _cleanup_free_ char *raw = NULL, *dup_id = NULL, *dup_status = NULL;
        const knock_config *cfg;
        probe_result r = {0};
        int64_t at = c->now;
        bool more = false, dup_known = false;
        size_t len = 0;
        FILE *f = stdin;
        int o, v;

        while ((o = verb_getopt(c, argc, argv, "", options)) >= 0)
                switch (o) {
                case 'a':
                        v = ctl_parse_time("--at", optarg, c->now, &at);
                        if (v != 0)
                                return v;
                        break;
                default:
                        return o;
                }
        if (argc - optind > 1) {
                ctl_error("probe takes one FILE (or none, or -, for standard input)");
                return KNOCKCTL_USAGE;
        }
        cfg = ctl_config(c);
        if (!cfg) {
                ctl_error("the configuration of %s does not load (see 'knockctl -e %s "
                          "check-config')",
                        c->endpoint, c->endpoint);
                return KNOCKCTL_FAILED;
        }
        if (optind < argc && strcmp(argv[optind], "-") != 0) {
                f = fopen(argv[optind], "re");
                if (!f) {
                        ctl_error("%s: %s", argv[optind], strerror(errno));
                        return KNOCKCTL_FAILED;
                }
        }
        v = read_all(f, cfg->max_body + HTTPREQ_MAX_HEAD_BYTES, &raw, &len, &more);
        if (f != stdin)
                fclose(f);
        if (v < 0)
                return v;
        v = probe_request(cfg, raw, len, PROBE_LF_HEAD, at, &r);
        if (v < 0)
                return v;
        if (more && r.n_notes < PROBE_MAX_NOTES)
                snprintf(r.notes[r.n_notes++], sizeof(r.notes[0]),
                        "the input is longer than max_body and a head: read the first %zu bytes",
                        len);

        /* The secrets are read: from here on, the state directory's owner. */
        v = ctl_drop_to_state_owner();
        if (v == 0 && ctl_open_store(c, false) == 0) {
                v = cq_duplicate_of(c->store, r.provider_event_id, &dup_id, &dup_status);
                dup_known = v >= 0;
        }
        if (c->json) {
                json_t *doc = result_json(c, &r, dup_id, dup_status, dup_known, at);

                v = doc ? print_json(doc) : -ENOMEM;
                json_decref(doc);
        } else {
                print_human(&r, dup_id, dup_status, dup_known);
                v = 0;
        }
        o = r.outcome == PROBE_ACCEPTED || r.outcome == PROBE_HANDSHAKE ? 0 : KNOCKCTL_FAILED;
        probe_result_clear(&r);
        return v < 0 ? v : o;
}

KNOCKCTL_VERB(probe, .name = "probe", .synopsis = "[--at TIME] [FILE|-]",
        .help = "What the ingress would answer to a raw HTTP request (stores nothing)",
        .section = SECTION_READ, .flags = VERB_KEEPS_ROOT, .run = verb_probe);
