/* SPDX-License-Identifier: MIT */
/*
 * resolve — which event an operand names.
 *
 * An operator usually holds the provider's id (Stripe's evt_…, GitHub's
 * delivery GUID), not knock's; both kinds may start with "evt_". Every verb
 * that takes an event id resolves it here, in this order:
 *
 *  1. knock's id: an event whose id is the operand is that event. It comes
 *     first because knock's ids are knock's own: a provider (or whoever holds
 *     its secret, and learns knock's ids from the 200 answers) cannot make an
 *     operator's `requeue evt_…` act on another event by sending a provider
 *     id equal to it. When that happens anyway, a note on stderr says so.
 *  2. the provider's id: when it names one event, that event.
 *  3. a provider id naming several events is an error that lists them (the
 *     schema keeps events.provider_event_id UNIQUE today, so this guards a
 *     future per-type dedupe rather than today's data); none is "no such
 *     event".
 *
 * Messages go to stderr, with the operand escaped (it may come from a pipe).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "knockctl.h"

int ctl_resolve_event(knockctl *c, const char *ref, char **ret_id)
{
        _cleanup_stmt_ db_stmt *st = NULL;
        _cleanup_free_ char *own = NULL, *eref = ctl_escape(ref, 0);
        json_t *by_provider = json_array();
        int r, rc;

        if (!by_provider || !eref) {
                json_decref(by_provider);
                return -ENOMEM;
        }
        r = store_prepare(c->store,
                "SELECT id, id = ?1, status, event_type FROM events"
                " WHERE id = ?1 OR provider_event_id = ?1 ORDER BY received_at, id",
                &st);
        if (r < 0)
                goto out;
        stmt_bind_text(st, 1, ref);
        while ((rc = stmt_step(st)) > 0) {
                if (stmt_col_int(st, 1)) {
                        own = stmt_strdup(st, 0);
                        if (!own) {
                                r = -ENOMEM;
                                goto out;
                        }
                } else if (json_array_append_new(by_provider,
                                   json_pack("[s?, s?, s?]",
                                           stmt_col_text(st, 0),
                                           stmt_col_text(st, 2),
                                           stmt_col_text(st, 3))) < 0) {
                        r = -ENOMEM;
                        goto out;
                }
        }
        if (rc < 0) {
                r = rc;
                goto out;
        }

        if (own) {
                json_t *other = json_array_get(by_provider, 0);

                if (other) {
                        _cleanup_free_ char *e = ctl_escape(
                                json_string_value(json_array_get(other, 0)), 0);

                        fprintf(stderr,
                                "knockctl: note: %s is an event id and also the provider event "
                                "id of event %s; using event %s (knock's own id comes first)\n",
                                eref, e ? e : "?", eref);
                }
                *ret_id = TAKE_PTR(own);
                r = 0;
        } else if (json_array_size(by_provider) == 1) {
                *ret_id = strdup(json_string_value(json_array_get(json_array_get(by_provider, 0), 0)));
                r = *ret_id ? 0 : -ENOMEM;
        } else if (json_array_size(by_provider) == 0) {
                fprintf(stderr,
                        "knockctl: %s: no such event in endpoint %s (neither an event id nor a "
                        "provider event id)\n",
                        eref, c->endpoint);
                r = KNOCKCTL_FAILED;
        } else {
                size_t i;
                json_t *v;

                fprintf(stderr,
                        "knockctl: %s: the provider event id of %zu events; name one by its "
                        "event id:\n",
                        eref, json_array_size(by_provider));
                json_array_foreach(by_provider, i, v)
                {
                        _cleanup_free_ char *id = ctl_escape(
                                json_string_value(json_array_get(v, 0)), 0);
                        _cleanup_free_ char *type = ctl_escape(
                                json_string_value(json_array_get(v, 2)), 0);

                        fprintf(stderr, "knockctl:   %s  %s  %s\n", id ? id : "?",
                                json_string_value(json_array_get(v, 1)) ?: "?",
                                type && *type ? type : "-");
                }
                r = KNOCKCTL_FAILED;
        }
out:
        json_decref(by_provider);
        return r;
}
