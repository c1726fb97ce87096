/* SPDX-License-Identifier: MIT */
/*
 * knock-ingress NAME — the durable front door (contract §5).
 *
 * The loop thread owns HTTP: it checks path, method and limits, verifies
 * the signature over the raw body, and hands a stored-to-be item to the
 * writer thread (writer.c). It answers a verified request only when the
 * writer reports the item's transaction committed (synchronous=FULL), so a
 * 2xx always means "on disk". Rejections (401, 413) are answered at once and
 * their delivery rows stored best effort: a non-2xx promises nothing.
 *
 * conn.c frames requests and keeps the listener's limits; here a request
 * is decided: on_head() answers what needs no body (404, 405, 413),
 * on_request() verifies and answers a rejection at once, and hands the
 * rest to the writer. A connection has at most one item in flight; when it
 * closes first, conn.c detaches the item, which is still stored, and its
 * answer is dropped.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <inttypes.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/thread.h>
#include <jansson.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>

#include "catalog-ids.h"
#include "daemon.h"
#include "admin.h"
#include "conn.h"
#include "ingress.h"
#include "knock-build.h"
#include "log.h"
#include "verify.h"

#define DRAIN_TIMEOUT_S 25

static const char usage[] =
        "Usage: knock-ingress [OPTIONS] NAME\n"
        "\n"
        "Receives webhooks for endpoint NAME and stores them durably before answering.\n"
        "See knock-ingress(8).\n"
        "\n"
        "  -h --help     Show this help\n"
        "  -V --version  Show the version\n";

typedef struct ingress {
        knock_daemon d;
        conn_server srv;
        struct evhttp *http_admin;
        ingest_writer writer;
        ingest_stats stats;
        admin admin;
        bool draining;
        struct event *ev_drain_timeout;
        log_ratelimit rl_invalid;
        log_ratelimit rl_storage;
        log_ratelimit rl_orphans;
        /* the orphan budget: a token bucket of rows */
        double orphan_tokens;
        int64_t orphan_refill_ms;
} ingress;

static ingress *the_ingress;

/* ---- request parsing -------------------------------------------------------------- */

static bool request_id_valid(const char *s)
{
        size_t n = strlen(s);

        if (n == 0 || n > 64)
                return false;
        for (const char *p = s; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                      (*p >= '0' && *p <= '9') || strchr("-_.:", *p)))
                        return false;
        return true;
}

static bool header_is_credential(ingress *in, const char *name)
{
        static const char *const always[] = {
                "authorization", "proxy-authorization", "cookie", "x-knock-token",
                "x-gitlab-token",
        };
        for (size_t i = 0; i < ELEMENTSOF(always); i++)
                if (strcaseeq(name, always[i]))
                        return true;
        /* The token provider's header carries the secret itself. */
        if (in->d.cfg->verify.provider == KNOCK_PROVIDER_TOKEN && in->d.cfg->verify.header &&
            strcaseeq(name, in->d.cfg->verify.header))
                return true;
        return false;
}

/* Headers as a JSON array of [name, value], credentials redacted. */
static char *headers_json(ingress *in, const httpreq *req)
{
        json_t *arr = json_array();
        char *s;

        if (!arr)
                return NULL;
        for (size_t i = 0; i < req->n_headers; i++) {
                const knock_header *h = &req->headers[i];
                json_array_append_new(arr, json_pack("[ss]", h->name,
                                                     header_is_credential(in, h->name)
                                                             ? "[redacted]"
                                                             : h->value));
        }
        s = json_dumps(arr, JSON_COMPACT | JSON_ENSURE_ASCII);
        json_decref(arr);
        return s;
}

/* The URI as stored: query parameters that carry a secret (Meta's
 * hub.verify_token) are replaced by [redacted]. Verification still sees the
 * URI as received. */
static char *uri_for_storage(const char *uri)
{
        static const char *const secret_params[] = {"hub.verify_token"};
        const char *q = strchr(uri, '?');
        char *out;
        size_t o = 0;

        out = malloc(strlen(uri) * 2 + 16);
        if (!out)
                return NULL;
        if (!q)
                return strcpy(out, uri);
        memcpy(out, uri, (size_t)(q - uri) + 1);
        o = (size_t)(q - uri) + 1;
        for (const char *p = q + 1; *p;) {
                size_t seg = strcspn(p, "&");
                bool secret = false;

                /* Compare the percent-decoded name: "hub%2Everify_token" is
                 * the same parameter to the verifier. */
                size_t nlen = strcspn(p, "=&");
                char name[64];
                size_t dn = 0;

                for (size_t i = 0; i < nlen && dn < sizeof(name) - 1; i++) {
                        if (p[i] == '%' && i + 2 < nlen && isxdigit((unsigned char)p[i + 1]) &&
                            isxdigit((unsigned char)p[i + 2])) {
                                char hex[3] = {p[i + 1], p[i + 2], 0};
                                name[dn++] = (char)strtol(hex, NULL, 16);
                                i += 2;
                        } else
                                name[dn++] = p[i] == '+' ? ' ' : p[i];
                }
                name[dn] = 0;
                for (size_t i = 0; i < ELEMENTSOF(secret_params); i++)
                        if (streq(name, secret_params[i]) && p[nlen] == '=') {
                                memcpy(out + o, p, nlen + 1);
                                o += nlen + 1;
                                memcpy(out + o, "[redacted]", 10);
                                o += 10;
                                secret = true;
                        }
                if (!secret) {
                        memcpy(out + o, p, seg);
                        o += seg;
                }
                p += seg;
                if (*p == '&')
                        out[o++] = *p++;
        }
        out[o] = 0;
        return out;
}

static ingest_item *item_new(ingest_conn *c, const httpreq *req)
{
        ingest_item *it = calloc(1, sizeof(*it));
        const char *ct;

        if (!it)
                return NULL;
        it->start_us = mono_us();
        it->received_at = now_ms();
        id_new("dlv", it->delivery_id);
        id_new("evt", it->event_id);
        snprintf(it->request_id, sizeof(it->request_id), "%s", c->request_id);
        it->method = strdup(req->method);
        it->uri = uri_for_storage(req->target);
        it->remote = strdup(c->peer);
        ct = httpreq_header(req, "Content-Type");
        it->content_type = ct ? strndup(ct, 255) : NULL;
        return it;
}

static void item_free(ingress *in, ingest_item *it)
{
        conn_budget_release(&in->srv, it->budget);
        ingest_item_free(it);
}

/* ---- the public listener ------------------------------------------------------------ */

static void log_invalid(ingress *in, ingest_item *it)
{
        uint64_t suppressed = 0;
        char status[8];

        if (!log_ratelimit_ok(&in->rl_invalid, &suppressed))
                return;
        if (suppressed > 0)
                log_warning("%llu invalid-delivery records suppressed by rate limiting",
                            (unsigned long long)suppressed);
        snprintf(status, sizeof(status), "%d", it->http_status);
        log_struct(LOG_WARNING, MSGID_DELIVERY_INVALID,
                   LOG_FIELDS(LF("KNOCK_DELIVERY_ID", it->delivery_id),
                              LF("KNOCK_REQUEST_ID", it->request_id),
                              LF("KNOCK_PROVIDER_EVENT_ID", it->provider_event_id),
                              LF("KNOCK_EVENT_TYPE", it->event_type),
                              LF("KNOCK_HTTP_STATUS", status),
                              LF("KNOCK_ERROR", it->verify_error)),
                   "Rejected delivery %s: %s", it->delivery_id,
                   it->verify_error ? it->verify_error : "invalid");
}

/* The writer's queue: verified requests are at most one per connection,
 * rejected ones come through the orphan budget; this is the backstop. */
static bool writer_full(ingress *in)
{
        return writer_pending(&in->writer) >
               in->d.cfg->max_connections + in->d.cfg->orphan_burst + 1024;
}

/* The orphan budget: a token bucket of rows, orphan_rate with room for
 * orphan_burst. */
static bool orphan_allowed(ingress *in)
{
        const knock_config *cfg = in->d.cfg;
        int64_t now = (int64_t)(mono_us() / 1000);

        if (cfg->orphan_rate.n == 0)
                return false;
        if (in->orphan_refill_ms == 0) {
                in->orphan_tokens = (double)cfg->orphan_burst;
                in->orphan_refill_ms = now;
        }
        in->orphan_tokens += (double)(now - in->orphan_refill_ms) * (double)cfg->orphan_rate.n /
                             (double)cfg->orphan_rate.per_ms;
        in->orphan_refill_ms = now;
        if (in->orphan_tokens > (double)cfg->orphan_burst)
                in->orphan_tokens = (double)cfg->orphan_burst;
        if (in->orphan_tokens < 1.0)
                return false;
        in->orphan_tokens -= 1.0;
        return true;
}

/* A rejected delivery (401, 413) is evidence, kept within the orphan budget
 * and with at most orphan_body bytes of its body; the client already has
 * its answer. */
static void submit_orphan(ingress *in, ingest_item *it)
{
        uint64_t suppressed = 0;

        log_invalid(in, it);
        if (!orphan_allowed(in) || writer_full(in)) {
                in->stats.orphans_dropped++;
                if (log_ratelimit_ok(&in->rl_orphans, &suppressed))
                        log_struct(LOG_WARNING, MSGID_DELIVERY_INVALID,
                                   LOG_FIELDS(LF("KNOCK_DELIVERY_ID", it->delivery_id)),
                                   "Rejected deliveries arrive faster than orphan_rate: not "
                                   "storing them (%llu so far)",
                                   (unsigned long long)in->stats.orphans_dropped);
                item_free(in, it);
                return;
        }
        if (it->body_len > in->d.cfg->orphan_body) {
                unsigned char *b = NULL;

                it->body_len = (size_t)in->d.cfg->orphan_body;
                if (it->body_len == 0)
                        it->body = mfree(it->body);
                else if ((b = realloc(it->body, it->body_len)))
                        it->body = b;
                /* What is left is a few KiB: it leaves the listener's budget,
                 * unless the buffer could not shrink. */
                if (!it->body || b) {
                        conn_budget_release(&in->srv, it->budget);
                        it->budget = 0;
                }
        }
        it->conn = NULL;
        writer_submit(&in->writer, it);
}

/* The head is read: everything that needs no body is decided here, before
 * a byte of it is buffered. */
static conn_verdict on_head(ingest_conn *c, httpreq *req, void *userdata)
{
        ingress *in = userdata;
        const knock_config *cfg = in->d.cfg;
        const char *rid_in = httpreq_header(req, "X-Request-ID");
        size_t plen = strcspn(req->target, "?#");
        ingest_item *it;

        if (rid_in && request_id_valid(rid_in))
                snprintf(c->request_id, sizeof(c->request_id), "%s", rid_in);
        else
                id_new("req", c->request_id);

        if (in->draining) {
                conn_error(c, 503, "Service Unavailable", "shutting down", NULL, false);
                return CONN_ANSWERED;
        }
        if (plen != strlen(cfg->path) || strncmp(req->target, cfg->path, plen) != 0) {
                in->stats.rejected_other++;
                conn_error(c, 404, "Not Found", "no such path", NULL, false);
                return CONN_ANSWERED;
        }
        if (!streq(req->method, "POST") &&
            !(streq(req->method, "GET") && cfg->verify.provider == provider_from_string("meta"))) {
                in->stats.rejected_other++;
                conn_error(c, 405, "Method Not Allowed", "method not allowed", "Allow: POST\r\n",
                           false);
                return CONN_ANSWERED;
        }
        if (req->content_length < 0 || (uint64_t)req->content_length <= cfg->max_body)
                return CONN_READ_BODY;

        /* Recorded without its body, which is never read: the row says it
         * came and why it was refused. */
        in->stats.too_large++;
        conn_error(c, 413, "Payload Too Large", "body too large", NULL, false);
        it = item_new(c, req);
        if (!it)
                return CONN_ANSWERED;
        it->kind = INGEST_ORPHAN;
        it->http_status = 413;
        it->body_bytes = (size_t)req->content_length;
        it->headers_json = headers_json(in, req);
        if (asprintf(&it->verify_error, "body of %" PRId64 " bytes exceeds max_body %llu",
                     req->content_length, (unsigned long long)cfg->max_body) < 0)
                it->verify_error = NULL;
        submit_orphan(in, it);
        return CONN_ANSWERED;
}

/* A whole request: verify it, answer a rejection at once, hand the rest to
 * the writer; its answer waits for the commit. */
static void on_request(ingest_conn *c, httpreq *req, void *userdata)
{
        ingress *in = userdata;
        const knock_config *cfg = in->d.cfg;
        knock_verify_result vr = {0};
        knock_request kr;
        ingest_item *it;
        int r;

        it = item_new(c, req);
        if (!it) {
                conn_error(c, 503, "Service Unavailable", "out of memory", NULL, false);
                return;
        }
        it->body_bytes = req->body_len;
        it->body_len = req->body_len;
        it->body = TAKE_PTR(req->body);
        it->budget = conn_take_budget(c);
        it->headers_json = headers_json(in, req);
        if (!it->body)
                it->body = malloc(1);
        if (!it->body) {
                item_free(in, it);
                conn_error(c, 503, "Service Unavailable", "out of memory", NULL, false);
                return;
        }

        kr = (knock_request){
                .method = req->method,
                .uri = req->target,
                .headers = req->headers,
                .n_headers = req->n_headers,
                .body = it->body,
                .body_len = it->body_len,
                .now_ms = it->received_at,
        };
        r = verify_request(&cfg->verify, &kr, &vr);
        it->provider_event_id = TAKE_PTR(vr.provider_event_id);
        it->event_type = TAKE_PTR(vr.event_type);
        if (r < 0) {
                log_error_errno(r, "Verification failed internally: %m");
                verify_result_clear(&vr);
                item_free(in, it);
                conn_error(c, 503, "Service Unavailable", "internal error", NULL, false);
                return;
        }
        if (r > 0) {
                it->kind = INGEST_ORPHAN;
                it->http_status = 401;
                it->signature_valid = false;
                it->verify_error = strdup(vr.reason[0] ? vr.reason : "signature invalid");
                verify_result_clear(&vr);
                in->stats.invalid++;
                conn_error(c, 401, "Unauthorized", it->verify_error ? it->verify_error
                                                                    : "signature invalid", NULL, false);
                submit_orphan(in, it);
                return;
        }

        it->signature_valid = true;
        it->http_status = 200;
        if (vr.handshake) {
                it->kind = INGEST_HANDSHAKE;
                it->handshake_status = vr.handshake_status ? vr.handshake_status : 200;
                it->handshake_content_type = TAKE_PTR(vr.handshake_content_type);
                it->handshake_body = TAKE_PTR(vr.handshake_body);
                it->http_status = it->handshake_status;
        } else
                it->kind = INGEST_EVENT;
        verify_result_clear(&vr);

        if (writer_full(in)) {
                in->stats.over_budget++;
                item_free(in, it);
                conn_error(c, 503, "Service Unavailable", "too many requests waiting for storage",
                           NULL, false);
                return;
        }
        /* Nothing is answered here: the reply waits for the commit. */
        it->conn = c;
        c->pending = it;
        writer_submit(&in->writer, it);
}

static void log_stored(ingest_item *it)
{
        char ms[32];

        if (log_get_level() < LOG_DEBUG)
                return;
        snprintf(ms, sizeof(ms), "%.3f", (double)(mono_us() - it->start_us) / 1000.0);
        log_struct(LOG_DEBUG, NULL,
                   LOG_FIELDS(LF("KNOCK_DELIVERY_ID", it->delivery_id),
                              LF("KNOCK_EVENT_ID", it->kind == INGEST_EVENT ? it->event_id : NULL),
                              LF("KNOCK_PROVIDER_EVENT_ID", it->provider_event_id),
                              LF("KNOCK_EVENT_TYPE", it->event_type),
                              LF("KNOCK_REQUEST_ID", it->request_id),
                              LF("KNOCK_DURATION_MS", ms), LF("KNOCK_HTTP_STATUS", "200")),
                   "Stored delivery %s%s", it->delivery_id, it->duplicate ? " (duplicate)" : "");
}

static void maybe_finish_drain(ingress *in);

/* Runs on the loop when the writer hands back a batch. */
static void on_writer_done(evutil_socket_t fd, short what, void *userdata)
{
        ingress *in = userdata;
        ingest_item *list = writer_take_done(&in->writer), *next;

        for (ingest_item *it = list; it; it = next) {
                ingest_conn *c = it->conn;

                next = it->next;
                if (c)
                        c->pending = NULL;
                if (it->result < 0) {
                        uint64_t suppressed = 0;

                        in->stats.storage_errors++;
                        if (log_ratelimit_ok(&in->rl_storage, &suppressed))
                                log_struct_errno(LOG_ERR, it->result, MSGID_STORAGE_ERROR,
                                                 LOG_FIELDS(LF("KNOCK_DELIVERY_ID", it->delivery_id),
                                                            LF("KNOCK_REQUEST_ID", it->request_id),
                                                            LF("KNOCK_ERROR", in->writer.last_error)),
                                                 "Cannot store delivery %s, answering 503: %s",
                                                 it->delivery_id, in->writer.last_error);
                        if (c)
                                conn_error(c, 503, "Service Unavailable",
                                           "storage unavailable", NULL, false);
                } else if (it->kind == INGEST_EVENT) {
                        if (it->duplicate)
                                in->stats.duplicates++;
                        else
                                in->stats.accepted++;
                        if (c) {
                                char body[256];
                                int n = snprintf(body, sizeof(body),
                                                 "{\"delivery_id\":\"%s\",\"event_id\":\"%s\","
                                                 "\"duplicate\":%s}",
                                                 it->delivery_id, it->event_id,
                                                 it->duplicate ? "true" : "false");
                                conn_reply(c, 200, "OK", "application/json", body, (size_t)n, NULL,
                                           false);
                        }
                        log_stored(it);
                } else if (it->kind == INGEST_HANDSHAKE) {
                        const char *b = it->handshake_body ? it->handshake_body : "";

                        in->stats.handshakes++;
                        if (c && (it->handshake_status == 204 || !it->handshake_content_type))
                                /* e.g. Discord's webhook-event PING: no body at all. */
                                conn_reply(c, it->handshake_status,
                                           it->handshake_status == 204 ? "No Content" : "OK", NULL,
                                           NULL, 0, NULL, false);
                        else if (c)
                                conn_reply(c, it->handshake_status, "OK",
                                           it->handshake_content_type, b, strlen(b), NULL, false);
                }
                item_free(in, it);
        }
        maybe_finish_drain(in);
}

/* ---- sockets ---------------------------------------------------------------------------- */

static int bind_address(const char *address, bool is_admin)
{
        _cleanup_close_ int fd = -1;
        int r;

        if (address[0] == '/') {
                struct sockaddr_un sa = {.sun_family = AF_UNIX};
                if (strlen(address) >= sizeof(sa.sun_path))
                        return -ENAMETOOLONG;
                strcpy(sa.sun_path, address);
                fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
                if (fd < 0)
                        return -errno;
                (void)unlink(address);
                if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                        return -errno;
                /* The admin socket is for the knock group (knockctl, scrapers). */
                (void)chmod(address, is_admin ? 0660 : 0666);
        } else {
                struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
                struct addrinfo *ai = NULL;
                _cleanup_free_ char *host = NULL;
                const char *colon = strrchr(address, ':');
                int one = 1;

                if (!colon)
                        return -EINVAL;
                host = strndup(address, (size_t)(colon - address));
                if (!host)
                        return -ENOMEM;
                if (host[0] == '[' && host[strlen(host) - 1] == ']') {
                        memmove(host, host + 1, strlen(host));
                        host[strlen(host) - 1] = 0;
                }
                r = getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, &ai);
                if (r != 0)
                        return -EADDRNOTAVAIL;
                fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
                if (fd < 0) {
                        freeaddrinfo(ai);
                        return -errno;
                }
                setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
                if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
                        r = -errno;
                        freeaddrinfo(ai);
                        return r;
                }
                freeaddrinfo(ai);
        }
        if (listen(fd, 1024) < 0)
                return -errno;
        return TAKE_FD(fd);
}

static int add_public_fd(ingress *in, int fd)
{
        return conn_server_listen(&in->srv, fd);
}

/* Socket activation by name: "public" and "admin"; a single unnamed fd is
 * the public one; unknown names are closed. Without LISTEN_FDS we bind. */
static int setup_sockets(ingress *in)
{
        char **names = NULL;
        bool have_admin = false;
        int n, r = 0;

        n = sd_listen_fds_with_names(1, &names);
        if (n < 0)
                return log_error_errno(n, "Cannot read LISTEN_FDS: %m");
        for (int i = 0; i < n; i++) {
                int fd = SD_LISTEN_FDS_START + i;
                const char *nm = names ? names[i] : "unknown";

                if (streq(nm, "public") || (n == 1 && streq(nm, "unknown"))) {
                        r = add_public_fd(in, fd);
                        if (r < 0)
                                log_error_errno(r, "Cannot serve the public socket: %m");
                } else if (streq(nm, "admin")) {
                        evutil_make_socket_nonblocking(fd);
                        if (evhttp_accept_socket_with_handle(in->http_admin, fd))
                                have_admin = true;
                } else {
                        log_warning("Closing unexpected socket-activated fd named '%s'", nm);
                        close(fd);
                }
        }
        if (names) {
                for (int i = 0; i < n; i++)
                        free(names[i]);
                free(names);
        }
        if (r < 0)
                return r;

        if (in->srv.n_listeners == 0) {
                int fd = bind_address(in->d.cfg->listen, false);
                if (fd < 0)
                        return log_error_errno(fd, "Cannot listen on %s: %m", in->d.cfg->listen);
                r = add_public_fd(in, fd);
                if (r < 0)
                        return log_error_errno(r, "Cannot serve %s: %m", in->d.cfg->listen);
        }
        if (!have_admin && in->d.cfg->admin) {
                int fd = bind_address(in->d.cfg->admin, true);
                if (fd < 0)
                        /* The admin listener is for operators; its absence must
                         * not stop webhooks from being received. */
                        log_warning_errno(fd, "Cannot listen on admin address %s: %m",
                                          in->d.cfg->admin);
                else if (!evhttp_accept_socket_with_handle(in->http_admin, fd))
                        close(fd);
        }
        return 0;
}

/* ---- daemon ops ------------------------------------------------------------------------- */

static void maybe_finish_drain(ingress *in)
{
        if (in->draining && writer_pending(&in->writer) == 0)
                daemon_exit_loop(&in->d);
}

static void on_drain_timeout(evutil_socket_t fd, short what, void *userdata)
{
        ingress *in = userdata;

        log_warning("Drain timed out with %zu items pending", writer_pending(&in->writer));
        daemon_exit_loop(&in->d);
}

static void ingress_stop(knock_daemon *d)
{
        ingress *in = the_ingress;
        struct timeval tv = {DRAIN_TIMEOUT_S, 0};

        /* Stop accepting first, then answer what was read once it commits. */
        conn_server_stop_accepting(&in->srv);
        in->draining = true;
        in->ev_drain_timeout = evtimer_new(d->base, on_drain_timeout, in);
        if (in->ev_drain_timeout)
                evtimer_add(in->ev_drain_timeout, &tv);
        maybe_finish_drain(in);
}

static int ingress_health(knock_daemon *d)
{
        ingress *in = the_ingress;
        bool stuck;

        /* A commit that has not returned for 30 s means the disk is wedged:
         * stop pinging so systemd restarts us. */
        pthread_mutex_lock(&in->writer.lock);
        stuck = in->writer.busy && mono_us() - in->writer.busy_since_us > 30 * 1000000ULL;
        pthread_mutex_unlock(&in->writer.lock);
        return stuck ? -EIO : 0;
}

/* The heartbeat rides with the next batch on the writer thread: the loop
 * never waits for SQLite. The ping is withheld while the writer's last
 * commit failed or a commit is stuck (ingress_health). */
static int ingress_heartbeat(knock_daemon *d, const char *counters, const char *status)
{
        ingress *in = the_ingress;
        ingest_item *it = calloc(1, sizeof(*it));

        if (!it)
                return -ENOMEM;
        it->kind = INGEST_HEARTBEAT;
        it->hb_counters = counters ? strdup(counters) : NULL;
        it->hb_status = status ? strdup(status) : NULL;
        writer_submit(&in->writer, it);
        return in->writer.healthy ? 0 : -EIO;
}

static char *ingress_counters(knock_daemon *d)
{
        ingress *in = the_ingress;
        ingest_stats s;
        json_t *j;
        char *out;

        pthread_mutex_lock(&in->writer.lock);
        s = in->stats;
        pthread_mutex_unlock(&in->writer.lock);
        j = json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}",
                      "accepted", (json_int_t)s.accepted, "duplicates", (json_int_t)s.duplicates,
                      "invalid", (json_int_t)s.invalid, "too_large", (json_int_t)s.too_large,
                      "handshakes", (json_int_t)s.handshakes, "storage_errors",
                      (json_int_t)s.storage_errors, "rejected_other", (json_int_t)s.rejected_other,
                      "commits", (json_int_t)s.commits, "commit_failures",
                      (json_int_t)s.commit_failures, "committed_items",
                      (json_int_t)s.committed_items, "batch_us_total",
                      (json_int_t)s.batch_us_total, "commit_us_total",
                      (json_int_t)s.commit_us_total, "commit_us_max", (json_int_t)s.commit_us_max,
                      "batch_max", (json_int_t)s.batch_max);
        if (j)
                json_object_update_new(
                        j, json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}", "connections_accepted",
                                     (json_int_t)s.connections_accepted, "connections_refused",
                                     (json_int_t)s.connections_refused, "timeouts",
                                     (json_int_t)s.timeouts, "bad_requests",
                                     (json_int_t)s.bad_requests, "over_budget",
                                     (json_int_t)s.over_budget, "orphans_dropped",
                                     (json_int_t)s.orphans_dropped));
        out = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        return out;
}

static void ingress_status(knock_daemon *d, char *buf, size_t len)
{
        ingress *in = the_ingress;

        snprintf(buf, len, "%s: %llu stored, %llu duplicates, %llu rejected, %llu storage errors%s",
                 in->draining ? "draining" : "receiving", (unsigned long long)in->stats.accepted,
                 (unsigned long long)in->stats.duplicates,
                 (unsigned long long)(in->stats.invalid + in->stats.too_large),
                 (unsigned long long)in->stats.storage_errors,
                 in->writer.healthy ? "" : " (storage failing)");
}

static int ingress_reload(knock_daemon *d, knock_config *n)
{
        /* Limits and verification settings take effect for the next request;
         * listen addresses change only through the socket units. */
        conn_server_configure(&the_ingress->srv, n);
        the_ingress->admin.cfg = n;
        return 0;
}

static const knock_daemon_ops ingress_ops = {
        .health = ingress_health,
        .heartbeat = ingress_heartbeat,
        .counters = ingress_counters,
        .status = ingress_status,
        .stop = ingress_stop,
        .reload = ingress_reload,
};

int main(int argc, char **argv)
{
        static ingress in;
        _cleanup_free_ char *db = NULL;
        bool setup_done = false;
        int r;

        the_ingress = &in;
        in.rl_invalid = (log_ratelimit)LOG_RATELIMIT_INIT(10, 50);
        in.rl_storage = (log_ratelimit)LOG_RATELIMIT_INIT(10, 20);
        in.rl_orphans = (log_ratelimit)LOG_RATELIMIT_INIT(60, 1);
        /* The writer thread activates an event on the loop's base. */
        evthread_use_pthreads();

        r = daemon_setup(&in.d, "ingress", usage, argc, argv, &ingress_ops,
                         STORE_NO_AUTOCHECKPOINT);
        if (r > 0)
                return 0;
        if (r < 0) {
                if (in.d.base || in.d.store)
                        daemon_finish(&in.d, false);
                return r == -EINVAL ? 2 : 1;
        }
        setup_done = true;

        in.srv = (conn_server){
                .base = in.d.base,
                .cfg = in.d.cfg,
                .stats = &in.stats,
                .on_head = on_head,
                .on_request = on_request,
                .userdata = &in,
        };
        conn_server_configure(&in.srv, in.d.cfg);
        in.http_admin = evhttp_new(in.d.base);
        if (!in.http_admin) {
                r = log_error_errno(-ENOMEM, "Out of memory");
                goto finish;
        }
        evhttp_set_timeout(in.http_admin, 10);
        evhttp_set_gencb(in.http_admin, admin_handle, &in.admin);

        db = config_db_path(in.d.name);
        r = writer_start(&in.writer, db, in.d.name, in.d.base, on_writer_done, &in, &in.stats);
        if (r < 0) {
                log_error_errno(r, "Cannot start the writer thread: %m");
                goto finish;
        }
        r = admin_start(&in.admin, db, &in.writer, &in.stats);
        if (r < 0) {
                log_error_errno(r, "Cannot start the admin thread: %m");
                goto finish;
        }
        in.admin.cfg = in.d.cfg;
        r = setup_sockets(&in);
        if (r < 0)
                goto finish;

        r = daemon_run(&in.d);
finish:
        admin_stop(&in.admin);
        writer_stop(&in.writer);
        /* Answer nothing more: items the writer finished after the loop
         * ended (drain timeout) are freed; their clients get a closed
         * connection, never a false 2xx. */
        for (ingest_item *it = writer_take_done(&in.writer), *next; it; it = next) {
                next = it->next;
                if (it->conn)
                        it->conn->pending = NULL;
                item_free(&in, it);
        }
        if (in.ev_drain_timeout)
                event_free(in.ev_drain_timeout);
        conn_server_free(&in.srv);
        if (in.http_admin)
                evhttp_free(in.http_admin);
        if (setup_done)
                daemon_finish(&in.d, r >= 0);
        return r < 0 ? 1 : 0;
}
