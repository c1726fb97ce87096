/* SPDX-License-Identifier: MIT */
/*
 * read — the inspecting verbs: the listings events, deliveries and audit
 * (KNOCKCTL_LISTING entries, run by list.c), and event and delivery, which
 * show one row with what hangs off it.
 *
 * Promises:
 *  - the database is opened read-only: inspecting never takes the write
 *    lock, so it never stalls the ingress;
 *  - lists are newest first and bounded (--limit, default 50; 0 for all);
 *    a human listing that hit the limit says so on stderr (list.c);
 *  - `event` takes knock's event id or the provider's; `delivery --body`
 *    writes the stored bytes and nothing else;
 *  - JSON field names are contract §10's, plus a few more that answer the
 *    operator questions (status_reason, the delivery whose body runs, the
 *    body's SHA-256 so a provider's retry can be compared with the first).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "knockctl.h"

static const field_spec event_fields[] = {
        {"id", "e.id", F_TEXT},
        {"endpoint", ":endpoint", F_TEXT},
        {"status", "e.status", F_TEXT},
        {"status_reason", "e.status_reason", F_TEXT},
        {"provider_event_id", "e.provider_event_id", F_TEXT},
        {"event_type", "e.event_type", F_TEXT},
        {"attempt_count", "e.attempt_count", F_INT},
        {"max_attempts", ":max_attempts", F_INT},
        {"received_at", "e.received_at", F_TIME},
        {"updated_at", "e.updated_at", F_TIME},
        {"next_attempt_at", "e.next_attempt_at", F_TIME},
        {"last_error", "e.last_error", F_TEXT},
        {"finished_at", "e.finished_at", F_TIME},
        {"delivery_id", "e.delivery_id", F_TEXT},
        {"run_delivery_id", "e.run_delivery_id", F_TEXT},
        {"claimed_by", "e.claimed_by", F_TEXT},
        {"claim_until", "e.claim_until", F_TIME},
};

/* The receipt fields of a delivery list. */
#define DELIVERY_FIELDS                                                                            \
        {"id", "d.id", F_TEXT}, {"event_id", "d.event_id", F_TEXT},                                \
                {"received_at", "d.received_at", F_TIME},                                          \
                {"signature_valid", "d.signature_valid", F_BOOL},                                  \
                {"verify_error", "d.verify_error", F_TEXT},                                        \
                {"http_status", "d.http_status", F_INT},                                           \
                {"provider_event_id", "d.provider_event_id", F_TEXT},                              \
                {"event_type", "d.event_type", F_TEXT}, {"request_id", "d.request_id", F_TEXT},    \
                {"body_bytes", "d.body_bytes", F_INT}, {"duplicate", "d.duplicate", F_BOOL},       \
        {                                                                                          \
                "handshake", "d.handshake", F_BOOL                                                 \
        }

static const field_spec delivery_fields[] = {DELIVERY_FIELDS};

/* One delivery in full: the request line, the (redacted) headers, the body's digest. */
static const field_spec delivery_full_fields[] = {
        DELIVERY_FIELDS,
        {"method", "d.method", F_TEXT},
        {"uri", "d.uri", F_TEXT},
        {"remote", "d.remote", F_TEXT},
        {"content_type", "d.content_type", F_TEXT},
        {"body_sha256", "d.body", F_SHA256},
        {"headers", "d.headers", F_JSON},
};

static const field_spec attempt_fields[] = {
        {"id", "a.id", F_TEXT},
        {"attempt", "a.attempt", F_INT},
        {"delivery_id", "a.delivery_id", F_TEXT},
        {"worker", "a.worker", F_TEXT},
        {"handler", "a.handler", F_TEXT},
        {"started_at", "a.started_at", F_TIME},
        {"ended_at", "a.ended_at", F_TIME},
        {"duration_ms", "a.ended_at - a.started_at", F_INT},
        {"outcome", "a.outcome", F_TEXT},
        {"exit_code", "a.exit_code", F_INT},
        {"signal", "a.signal", F_INT},
        {"http_status", "a.http_status", F_INT},
        {"error", "a.error", F_TEXT},
        {"output", "a.output", F_TEXT},
};

static const field_spec event_hook_fields[] = {
        {"id", "h.id", F_TEXT},
        {"type", "h.type", F_TEXT},
        {"state", "h.state", F_TEXT},
        {"attempt_count", "h.attempt_count", F_INT},
        {"last_status", "h.last_status", F_INT},
        {"last_error", "h.last_error", F_TEXT},
        {"next_attempt_at", "h.next_attempt_at", F_TIME},
        {"delivered_at", "h.delivered_at", F_TIME},
};

static const field_spec audit_fields[] = {
        {"id", "id", F_TEXT},
        {"at", "at", F_TIME},
        {"actor", "actor", F_TEXT},
        {"action", "action", F_TEXT},
        {"filters", "filters", F_JSON},
        {"counts", "counts", F_JSON},
        {"ids", "ids", F_JSON},
};

/* "received,failed" → every name must be an event status. */
static int check_status_list(const char *list)
{
        _cleanup_free_ char *copy = strdup(list);
        char *save = NULL;

        if (!copy)
                return -ENOMEM;
        for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                bool found = false;

                for (size_t i = 0; i < ELEMENTSOF(event_status_names); i++)
                        found = found || streq(t, event_status_names[i]);
                if (!found) {
                        ctl_error("unknown status '%s' (one of received, processing, failed, "
                                  "dead, ignored, handled)",
                                t);
                        return KNOCKCTL_USAGE;
                }
        }
        return 0;
}

/*
 * --where POINTER=VALUE: an RFC 6901 pointer as an SQLite JSON path ("/data/0/id" →
 * $."data"[0]."id"): a segment of digits indexes an array, any other names a member;
 * ~1 and ~0 are / and ~. A member name with a double quote cannot be written in a
 * path and is refused.
 */
static char *pointer_path(const char *ptr)
{
        _cleanup_free_ char *out = NULL;
        size_t len = strlen(ptr), o = 1;

        if (ptr[0] != '/' && ptr[0]) {
                ctl_error("--where: '%s' is not a JSON pointer (it starts with /)", ptr);
                return NULL;
        }
        /* "$", and per segment at most three characters besides its own. */
        out = malloc(4 * len + 2);
        if (!out)
                return NULL;
        out[0] = '$';
        for (const char *s = ptr; *s == '/';) {
                const char *end = strchrnul(s + 1, '/');
                bool digits = end > s + 1 && strspn(s + 1, "0123456789") == (size_t)(end - s - 1);

                out[o++] = digits ? '[' : '.';
                if (!digits)
                        out[o++] = '"';
                for (const char *p = s + 1; p < end; p++) {
                        char ch = *p;

                        if (ch == '~' && (p[1] == '0' || p[1] == '1'))
                                ch = *++p == '0' ? '~' : '/';
                        else if (ch == '"' || ch == '~') {
                                ctl_error("--where: '%s': a member name with '%c' cannot be "
                                          "searched", ptr, ch);
                                return NULL;
                        }
                        out[o++] = ch;
                }
                out[o++] = digits ? ']' : '"';
                s = end;
        }
        out[o] = 0;
        return TAKE_PTR(out);
}

KNOCKCTL_LISTING(events, .verb.name = "events",
        .verb.synopsis = "[--status S[,S...]] [--type T] [--since 2h|TIME] [--where POINTER=VALUE]... "
                         "[--limit N]",
        .verb.help = "List events, newest first", .verb.section = SECTION_READ, .one = "event",
        .filters = {
                {"status", LIST_TEXT, ":status", .check = check_status_list},
                {"type", LIST_TEXT, ":type"},
                {"since", LIST_SINCE, ":since"},
                {"where", LIST_PAIRS, ":where", .key_path = pointer_path},
                {"limit", LIST_LIMIT, ":limit"},
        },
        .fields = event_fields, .n_fields = ELEMENTSOF(event_fields),
        /* --where reads the canonical body of each candidate row, newest first, until
         * the limit is met: a full scan of the bodies since --since on a large store. */
        .from = "FROM events e"
                " WHERE (CAST(:status AS TEXT) IS NULL OR instr(',' || :status || ',', ',' || e.status || ',') > "
                "0)"
                "   AND (CAST(:type AS TEXT) IS NULL OR e.event_type = :type)"
                "   AND (CAST(:since AS BIGINT) IS NULL OR e.received_at >= :since)"
                "   AND (CAST(:where AS TEXT) IS NULL OR (SELECT count(*) FROM json_each(:where) w,"
                "        (SELECT /*LITE{*/CAST(body AS TEXT)/*}*/ /*PG: body_text(body) */ AS b"
                "          FROM deliveries WHERE id = e.delivery_id) cb"
                "        WHERE json_valid(cb.b) AND CAST(json_extract(cb.b,"
                "              json_extract(w.value, '$[2]')) AS TEXT) IS NOT DISTINCT FROM"
                "              json_extract(w.value, '$[1]')) = json_array_length(:where))"
                " ORDER BY e.received_at DESC, e.id DESC LIMIT :limit",
        .cols = {
                {"id", "ID", 0},
                {"status", "STATUS", 0},
                {"provider_event_id", "PROVIDER_ID", 32},
                {"event_type", "TYPE", 32},
                {"attempt_count", "ATTEMPTS", 0},
                {"received_at", "RECEIVED_AT", 0},
                {"next_attempt_at", "NEXT_ATTEMPT_AT", 0},
                {"last_error", "LAST_ERROR", 48},
        },
        .what = "events");

/* Runs a one-parameter (:id) query into an array. */
static int select_rows(
        knockctl *c, const field_spec *f, size_t n, const char *rest, const char *id, json_t **ret)
{
        _cleanup_stmt_ db_stmt *st = NULL;
        int r;

        r = ctl_select(c, f, n, rest, &st);
        if (r != 0)
                return r;
        ctl_bind_text(st, ":id", id);
        return fields_rows(st, f, n, ret);
}

/* Handler output as a block: its lines kept, every other control escaped. */
static void print_outputs(json_t *attempts)
{
        size_t i;
        json_t *a;

        json_array_foreach(attempts, i, a)
        {
                json_t *out = json_object_get(a, "output");
                _cleanup_free_ char *text = NULL, *id = NULL;

                if (!json_is_string(out) || json_string_length(out) == 0)
                        continue;
                text = escape_text(json_string_value(out), json_string_length(out),
                        ESCAPE_KEEP_NEWLINE);
                id = ctl_escape(json_string_value(json_object_get(a, "id")), 0);
                if (!text || !id)
                        continue;
                printf("\nOutput of attempt %" JSON_INTEGER_FORMAT " (%s):\n",
                        json_integer_value(json_object_get(a, "attempt")), id);
                fputs(text, stdout);
                if (text[0] && text[strlen(text) - 1] != '\n')
                        putchar('\n');
        }
}

/* order_key and held_by: the event's key, and the earlier event of that key
 * that holds it back (knock-endpoint(5), FLOW CONTROL); null when none. */
static int event_order(knockctl *c, json_t *event, const char *id)
{
        _cleanup_free_ char *key = NULL, *holder = NULL;
        int r = events_order_holder(c->store, id, &key, &holder);

        if (r < 0)
                return r;
        json_object_set_new(event, "order_key",
                key ? json_string_lossy(key, strlen(key)) : json_null());
        json_object_set_new(event, "held_by",
                holder ? json_string_lossy(holder, strlen(holder)) : json_null());
        return 0;
}

static int verb_event(knockctl *c, int argc, char **argv)
{
        static const char *const keys[] = {"id", "endpoint", "status", "status_reason",
                "provider_event_id", "event_type", "attempt_count", "max_attempts", "received_at",
                "updated_at", "next_attempt_at", "finished_at", "last_error", "delivery_id",
                "run_delivery_id", "claimed_by", "claim_until", "order_key", "held_by", NULL};
        static const column dcols[] = {
                {"id", "ID", 0},
                {"received_at", "RECEIVED_AT", 0},
                {"duplicate", "DUPLICATE", 0},
                {"body_bytes", "BYTES", 0},
                {"body_sha256", "SHA256", 0},
                {"request_id", "REQUEST_ID", 40},
        };
        static const column acols[] = {
                {"attempt", "#", 0},
                {"started_at", "STARTED_AT", 0},
                {"duration_ms", "MS", 0},
                {"outcome", "OUTCOME", 0},
                {"exit_code", "EXIT", 0},
                {"signal", "SIGNAL", 0},
                {"http_status", "HTTP", 0},
                {"delivery_id", "DELIVERY", 0},
                {"error", "ERROR", 48},
        };
        static const column hcols[] = {
                {"id", "ID", 0},
                {"type", "TYPE", 0},
                {"state", "STATE", 0},
                {"attempt_count", "ATTEMPTS", 0},
                {"last_status", "LAST_STATUS", 0},
                {"delivered_at", "DELIVERED_AT", 0},
                {"last_error", "LAST_ERROR", 40},
        };
        json_t *rows = NULL, *event, *deliveries = NULL, *attempts = NULL, *hooks = NULL;
        _cleanup_free_ char *resolved = NULL;
        const char *id;
        int o, r;

        while ((o = verb_getopt(c, argc, argv, "", NULL)) >= 0)
                return o;
        if (argc - optind != 1) {
                ctl_error("usage: knockctl event ID (an event id or a provider event id)");
                return KNOCKCTL_USAGE;
        }
        r = ctl_open_store(c, false);
        if (r != 0)
                return r;

        /* An operator often holds the provider's id, not ours: accept both. */
        r = ctl_resolve_event(c, argv[optind], &resolved);
        if (r != 0)
                return r;
        r = select_rows(c, event_fields, ELEMENTSOF(event_fields), "FROM events e WHERE e.id = :id",
                resolved, &rows);
        if (r != 0)
                return r;
        event = json_array_get(rows, 0);
        if (!event) {
                json_decref(rows);
                return -ENOENT;
        }
        json_incref(event);
        json_decref(rows);
        id = json_string_value(json_object_get(event, "id"));
        r = event_order(c, event, id);
        if (r < 0) {
                json_decref(event);
                return r;
        }

        r = select_rows(c, delivery_full_fields, ELEMENTSOF(delivery_full_fields),
                "FROM deliveries d WHERE d.event_id = :id ORDER BY d.received_at, d.id", id,
                &deliveries);
        if (r == 0)
                r = select_rows(c, attempt_fields, ELEMENTSOF(attempt_fields),
                        "FROM attempts a WHERE a.event_id = :id ORDER BY a.attempt, a.started_at, "
                        "a.id",
                        id, &attempts);
        if (r == 0)
                r = select_rows(c, event_hook_fields, ELEMENTSOF(event_hook_fields),
                        "FROM hooks h WHERE h.event_id = :id ORDER BY h.created_at, h.id", id,
                        &hooks);
        if (r != 0) {
                json_decref(event);
                json_decref(deliveries);
                json_decref(attempts);
                return r;
        }
        json_object_set_new(event, "deliveries", deliveries);
        json_object_set_new(event, "attempts", attempts);
        json_object_set_new(event, "hooks", hooks);

        if (c->json)
                r = print_json(event);
        else {
                print_object(event, keys);
                printf("\nDeliveries (%zu):\n", json_array_size(deliveries));
                print_table(deliveries, dcols, ELEMENTSOF(dcols));
                printf("\nAttempts (%zu):\n", json_array_size(attempts));
                print_table(attempts, acols, ELEMENTSOF(acols));
                print_outputs(attempts);
                if (json_array_size(hooks) > 0) {
                        printf("\nHooks (%zu):\n", json_array_size(hooks));
                        print_table(hooks, hcols, ELEMENTSOF(hcols));
                }
        }
        json_decref(event);
        return r;
}

KNOCKCTL_VERB(event, .name = "event", .synopsis = "ID",
        .help = "Show one event with its deliveries, attempts and hooks", .section = SECTION_READ,
        .run = verb_event);

/* The conditions and order both forms of the deliveries listing share. */
/* --header NAME=VALUE: the stored headers (credentials were redacted) hold NAME, in
 * any case, with exactly VALUE; every one given must. */
#define DELIVERIES_WHERE                                                                           \
        "   (:invalid = 0 OR d.signature_valid = 0)"                                               \
        "   AND (:orphan = 0 OR d.event_id IS NULL)"                                               \
        "   AND (CAST(:since AS BIGINT) IS NULL OR d.received_at >= :since)"                                       \
        "   AND (CAST(:header AS TEXT) IS NULL OR (SELECT count(*) FROM json_each(:header) w WHERE EXISTS"       \
        "        (SELECT 1 FROM json_each(CASE WHEN json_valid(d.headers) THEN d.headers END) h"  \
        "         WHERE lower(json_extract(h.value, '$[0]')) = lower(json_extract(w.value, '$[0]'))" \
        "           AND json_extract(h.value, '$[1]') = json_extract(w.value, '$[1]')))"         \
        "        = json_array_length(:header))"                                                   \
        " ORDER BY d.received_at DESC, d.id DESC LIMIT :limit"

/* By provider id, the deliveries are found through indexes only: a verified one through its
 * event (events.provider_event_id is unique), an orphan through the partial index on
 * orphans' ids. The ingress keeps no index on every delivery's provider id: random keys in
 * a 16 KiB-page index cost it a fifth of its throughput. */
KNOCKCTL_LISTING(deliveries, .verb.name = "deliveries",
        .verb.synopsis = "[--invalid] [--orphan] [--provider-id ID] [--since T] "
                         "[--header NAME=VALUE]... [--limit N]",
        .verb.help = "List stored receipts, newest first", .verb.section = SECTION_READ,
        .one = "delivery",
        .filters = {
                {"invalid", LIST_FLAG, ":invalid"},
                {"orphan", LIST_FLAG, ":orphan"},
                {"since", LIST_SINCE, ":since"},
                {"provider-id", LIST_TEXT, ":pid",
                        .from = "FROM deliveries d"
                                " WHERE d.id IN (SELECT d2.id FROM events e JOIN deliveries d2"
                                "                  ON d2.event_id = e.id"
                                "                  WHERE e.provider_event_id = :pid"
                                "                UNION ALL SELECT d3.id FROM deliveries d3"
                                "                  WHERE d3.event_id IS NULL"
                                "                    AND d3.provider_event_id = :pid)"
                                "   AND" DELIVERIES_WHERE},
                {"header", LIST_PAIRS, ":header"},
                {"limit", LIST_LIMIT, ":limit"},
        },
        .fields = delivery_fields, .n_fields = ELEMENTSOF(delivery_fields),
        .from = "FROM deliveries d WHERE" DELIVERIES_WHERE,
        .cols = {
                {"id", "ID", 0},
                {"received_at", "RECEIVED_AT", 0},
                {"http_status", "HTTP", 0},
                {"signature_valid", "VALID", 0},
                {"event_id", "EVENT_ID", 0},
                {"provider_event_id", "PROVIDER_EVENT_ID", 32},
                {"duplicate", "DUP", 0},
                {"verify_error", "VERIFY_ERROR", 40},
        },
        .what = "deliveries");

/* Writes the stored body bytes, and nothing else, to stdout. */
static int write_body(knockctl *c, const char *id)
{
        _cleanup_stmt_ db_stmt *st = NULL;
        const unsigned char *p;
        size_t len;
        int r, rc;

        r = store_prepare(c->store,
                "SELECT body IS NULL, body, verify_error FROM deliveries WHERE id = ?", &st);
        if (r < 0)
                return r;
        stmt_bind_text(st, 1, id);
        rc = stmt_step(st);
        if (rc == 0) {
                ctl_error_no_such("delivery", id, c->endpoint);
                return KNOCKCTL_FAILED;
        }
        if (rc <= 0)
                return rc;
        if (stmt_col_int(st, 0)) {
                const char *why = stmt_col_text(st, 2);

                ctl_error("delivery %s has no stored body%s%s%s", id, why ? " (" : "",
                        why ? why : "", why ? ")" : "");
                return KNOCKCTL_FAILED;
        }
        p = stmt_col_blob(st, 1);
        len = (size_t)stmt_col_bytes(st, 1);
        if (len > 0 && fwrite(p, 1, len, stdout) != len)
                return -EIO;
        return 0;
}

static void print_headers(json_t *headers)
{
        size_t i;
        json_t *h;

        if (!json_is_array(headers))
                return;
        printf("\nHeaders:\n");
        json_array_foreach(headers, i, h)
        {
                _cleanup_free_ char *name = ctl_escape(json_string_value(json_array_get(h, 0)), 0);
                _cleanup_free_ char *value = ctl_escape(json_string_value(json_array_get(h, 1)), 0);

                printf("  %s: %s\n", name && *name ? name : "?", value ? value : "");
        }
}

static int verb_delivery(knockctl *c, int argc, char **argv)
{
        static const struct option options[] = {
                {"body", no_argument, NULL, 'b'},
                {0},
        };
        static const char *const keys[] = {"id", "event_id", "received_at", "http_status",
                "signature_valid", "verify_error", "provider_event_id", "event_type", "request_id",
                "duplicate", "handshake", "method", "uri", "remote", "content_type", "body_bytes",
                "body_sha256", NULL};
        json_t *rows = NULL, *d;
        bool body = false;
        int o, r;

        while ((o = verb_getopt(c, argc, argv, "", options)) >= 0)
                switch (o) {
                case 'b':
                        body = true;
                        break;
                default:
                        return o;
                }
        if (argc - optind != 1) {
                ctl_error("usage: knockctl delivery ID [--body]");
                return KNOCKCTL_USAGE;
        }
        r = ctl_open_store(c, false);
        if (r != 0)
                return r;
        if (body)
                return write_body(c, argv[optind]);

        r = select_rows(c, delivery_full_fields, ELEMENTSOF(delivery_full_fields),
                "FROM deliveries d WHERE d.id = :id", argv[optind], &rows);
        if (r != 0)
                return r;
        d = json_array_get(rows, 0);
        if (!d) {
                json_decref(rows);
                ctl_error_no_such("delivery", argv[optind], c->endpoint);
                return KNOCKCTL_FAILED;
        }
        if (c->json)
                r = print_json(d);
        else {
                print_object(d, keys);
                print_headers(json_object_get(d, "headers"));
        }
        json_decref(rows);
        return r;
}

KNOCKCTL_VERB(delivery, .name = "delivery", .synopsis = "ID [--body]",
        .help = "Show one receipt with its headers, or write its raw body", .section = SECTION_READ,
        .run = verb_delivery);

KNOCKCTL_LISTING(audit, .verb.name = "audit", .verb.synopsis = "[--action A] [--limit N]",
        .verb.help = "Show the audit trail, newest first", .verb.section = SECTION_READ,
        .filters = {
                {"limit", LIST_LIMIT, ":limit"},
                {"action", LIST_TEXT, ":action"},
        },
        .fields = audit_fields, .n_fields = ELEMENTSOF(audit_fields),
        .from = "FROM audit WHERE (CAST(:action AS TEXT) IS NULL OR action = :action)"
                " ORDER BY at DESC, rowid DESC LIMIT :limit",
        .cols = {
                {"id", "ID", 0},
                {"at", "AT", 0},
                {"actor", "ACTOR", 24},
                {"action", "ACTION", 0},
                {"counts", "COUNTS", 48},
                {"filters", "FILTERS", 40},
                {"ids", "IDS", 40},
        },
        .what = "audit rows");
