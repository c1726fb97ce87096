/* SPDX-License-Identifier: MIT */
/*
 * conn — the public listener's connections (see conn.h for the promises).
 *
 * libevent's evhttp server could not keep them: it has no hook at accept,
 * so a burst outran any limit counted after the fact; it buffers a whole
 * body before the application sees the request, so memory was bounded only
 * by max_connections × max_body; and its lenient parser took repeated
 * Content-Length, bare LF and obs-fold, and cut header values at a NUL.
 * Here an evconnlistener accepts, each connection is a plain non-blocking
 * socket with a read event registered for its whole life, and httpreq
 * frames each request strictly. Reads go through one buffer of the loop
 * thread; an answer goes out with one sendmsg(), and only what the socket
 * did not take waits for a write event. (bufferevents cost an ioctl per
 * read and two epoll_ctl per answer, which on this kind of machine is a
 * large share of a receipt's CPU.)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "conn.h"
#include "log.h"

#define MAX_HEAD_BYTES HTTPREQ_MAX_HEAD_BYTES
#define MAX_HEADERS HTTPREQ_MAX_HEADERS
#define MAX_REST (64 * 1024)
#define READ_CHUNK (64 * 1024)
#define ACCEPT_PAUSE_MS 100
#define LINGER_MS 1000
#define LINGER_MAX_BYTES (256 * 1024)
/* Descriptors the process needs besides connections: listeners, the
 * database and WAL of three connections, the journal, eventfds. */
#define FD_RESERVE 64

enum {
        C_READ,    /* reading a request */
        C_PENDING, /* a whole request is with main.c */
        C_WRITE,   /* an answer is going out */
        C_LINGER,  /* answered early: reading and dropping what the client still sends */
};

static void arm(ingest_conn *c, uint64_t ms)
{
        struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};

        evtimer_add(&c->timer, &tv);
}

static void conn_free(ingest_conn *c)
{
        conn_server *s = c->srv;

        if (c->pending) {
                /* The request dies with its connection; the item is still
                 * stored (the provider retries and dedupe absorbs it). */
                c->pending->conn = NULL;
                c->pending = NULL;
        }
        conn_budget_release(s, c->reserved);
        if (c->prev)
                c->prev->next = c->next;
        else
                s->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        s->n_conns--;
        event_del(&c->rev);
        event_del(&c->wev);
        event_del(&c->timer);
        event_del(&c->done);
        close(c->fd);
        httpreq_free(&c->req);
        free(c->rest);
        free(c->wbuf);
        free(c);
}

void conn_budget_release(conn_server *s, size_t n)
{
        s->buffered -= MIN((uint64_t)n, s->buffered);
}

static bool budget_take(ingest_conn *c, size_t n)
{
        conn_server *s = c->srv;

        if (s->buffered + n > s->cfg->max_buffered)
                return false;
        s->buffered += n;
        c->reserved += n;
        return true;
}

/* A chunked body's buffer counts against the budget as it grows. */
static bool reserve_body(ingest_conn *c)
{
        return c->req.body_cap <= c->reserved || budget_take(c, c->req.body_cap - c->reserved);
}

size_t conn_take_budget(ingest_conn *c)
{
        size_t n = c->reserved;

        c->reserved = 0;
        return n;
}

static const char *http_date(void)
{
        static char buf[40];
        static time_t last = -1;
        time_t t = time(NULL);
        struct tm tm;

        if (t != last && gmtime_r(&t, &tm)) {
                strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S GMT", &tm);
                last = t;
        }
        return buf;
}

/* Sends what it can of iov now; keeps the rest for the write event.
 * Returns false when the connection failed (the caller frees it). */
static bool send_or_queue(ingest_conn *c, struct iovec *iov, int n)
{
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        size_t total = 0, sent = 0;
        ssize_t k = 0;

        for (int i = 0; i < n; i++)
                total += iov[i].iov_len;
        if (c->wlen == c->woff) {
                k = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (k < 0 && errno != EAGAIN && errno != EINTR)
                        return false;
                sent = k > 0 ? (size_t)k : 0;
        }
        if (sent == total)
                return true;
        /* The rare case: the socket is full. Keep the rest, in order. */
        {
                size_t have = c->wlen - c->woff, need = have + total - sent, o = have;
                char *b = malloc(need);

                if (!b)
                        return false;
                if (have)
                        memcpy(b, c->wbuf + c->woff, have);
                for (int i = 0; i < n; i++) {
                        size_t skip = MIN(sent, iov[i].iov_len);

                        memcpy(b + o, (char *)iov[i].iov_base + skip, iov[i].iov_len - skip);
                        o += iov[i].iov_len - skip;
                        sent -= skip;
                }
                free(c->wbuf);
                c->wbuf = b;
                c->wlen = need;
                c->woff = 0;
                event_add(&c->wev, NULL);
        }
        return true;
}

void conn_reply(ingest_conn *c, int code, const char *reason, const char *content_type,
                const void *body, size_t len, const char *extra, bool close)
{
        char head[1024];
        struct iovec iov[2];
        int n;

        close = close || c->req.state != HTTPREQ_DONE || !c->req.keep_alive ||
                c->srv->draining || c->peer_closed;
        n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Length: %zu\r\n%s%s%s%s%s%s%s%s\r\n",
                     code, reason, http_date(), len, content_type ? "Content-Type: " : "",
                     content_type ? content_type : "", content_type ? "\r\n" : "",
                     c->request_id[0] ? "X-Request-ID: " : "", c->request_id,
                     c->request_id[0] ? "\r\n" : "", extra ? extra : "",
                     close ? "Connection: close\r\n" : "");
        if (n < 0 || (size_t)n >= sizeof(head)) {
                n = snprintf(head, sizeof(head),
                             "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n"
                             "Connection: close\r\n\r\n");
                len = 0;
                close = true;
        }
        iov[0] = (struct iovec){head, (size_t)n};
        iov[1] = (struct iovec){(void *)body, body && !c->head_request ? len : 0};
        c->close_after = close;
        c->state = C_WRITE;
        arm(c, c->srv->cfg->body_timeout_ms);
        if (!send_or_queue(c, iov, iov[1].iov_len ? 2 : 1)) {
                c->close_after = true;
                c->peer_closed = true;
        }
        /* Finished on the loop, never under the caller's feet. */
        if (c->wlen == c->woff)
                event_active(&c->done, EV_WRITE, 1);
}

void conn_error(ingest_conn *c, int code, const char *reason, const char *message,
                const char *extra, bool close)
{
        json_t *j = json_pack("{s:s}", "error", message);
        char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
        char headers[256];

        snprintf(headers, sizeof(headers), "%s%s", code == 503 ? "Retry-After: 5\r\n" : "",
                 extra ? extra : "");
        conn_reply(c, code, reason, "application/json", body ? body : "{}",
                   body ? strlen(body) : 2, headers, close);
        free(body);
        json_decref(j);
}

static const char *reason_phrase(int code)
{
        switch (code) {
        case 400: return "Bad Request";
        case 413: return "Payload Too Large";
        case 417: return "Expectation Failed";
        case 431: return "Request Header Fields Too Large";
        case 501: return "Not Implemented";
        case 503: return "Service Unavailable";
        case 505: return "HTTP Version Not Supported";
        default: return "Error";
        }
}

static void refuse_parse(ingest_conn *c)
{
        c->srv->stats->bad_requests++;
        conn_error(c, c->req.status, reason_phrase(c->req.status), c->req.error, NULL, true);
}

static void over_budget(ingest_conn *c)
{
        c->srv->stats->over_budget++;
        conn_error(c, 503, "Service Unavailable", "too many request bodies in flight", NULL, true);
}

static void dispatch(ingest_conn *c)
{
        c->state = C_PENDING;
        evtimer_del(&c->timer);
        c->srv->on_request(c, &c->req, c->srv->userdata);
}

/* The head is in: main.c's checks, the budget, 100 Continue, the body. */
static void conn_head(ingest_conn *c)
{
        conn_server *s = c->srv;
        httpreq *r = &c->req;

        c->head_request = streq(r->method, "HEAD");
        if (s->on_head(c, r, s->userdata) == CONN_ANSWERED)
                return;
        if (r->content_length > 0 && !budget_take(c, (size_t)r->content_length)) {
                over_budget(c);
                return;
        }
        if (httpreq_start_body(r) < 0) {
                refuse_parse(c);
                return;
        }
        if (r->chunked && !reserve_body(c)) {
                over_budget(c);
                return;
        }
        if (r->state == HTTPREQ_DONE) {
                dispatch(c);
                return;
        }
        if (r->expect_continue) {
                struct iovec iov = {(void *)"HTTP/1.1 100 Continue\r\n\r\n", 25};

                /* Should it fail, the client sends the body after its own
                 * wait anyway. */
                (void)send_or_queue(c, &iov, 1);
        }
        arm(c, s->cfg->body_timeout_ms);
}

/* Pipelined past what we keep: read no more until answered. */
static void pause_reading(ingest_conn *c)
{
        event_del(&c->rev);
        c->read_paused = true;
}

static void resume_reading(ingest_conn *c)
{
        if (c->read_paused && !c->peer_closed) {
                event_add(&c->rev, NULL);
                c->read_paused = false;
        }
}

/* Keeps bytes that are not the current request's, for later. */
static bool stash(ingest_conn *c, const char *p, size_t len)
{
        char *n;

        if (len == 0)
                return true;
        if (c->rest_len + len > MAX_REST)
                return false;
        n = realloc(c->rest, c->rest_len + len);
        if (!n)
                return false;
        memcpy(n + c->rest_len, p, len);
        c->rest = n;
        c->rest_len += len;
        return true;
}

/* Feeds bytes to the parser as far as the current request goes and acts
 * on what it reached; keeps the rest. */
static void conn_feed(ingest_conn *c, const char *p, size_t len)
{
        while (len > 0 && c->state == C_READ) {
                httpreq_state before = c->req.state;
                size_t k = httpreq_feed(&c->req, p, len);

                p += k;
                len -= k;
                switch (c->req.state) {
                case HTTPREQ_HEAD:
                        break;
                case HTTPREQ_HEAD_DONE:
                        conn_head(c);
                        break;
                case HTTPREQ_BODY:
                        if (!reserve_body(c))
                                over_budget(c);
                        break;
                case HTTPREQ_DONE:
                        if (!reserve_body(c))
                                over_budget(c);
                        else
                                dispatch(c);
                        break;
                case HTTPREQ_ERROR:
                        refuse_parse(c);
                        break;
                }
                if (k == 0 && c->req.state == before)
                        break;
        }
        if (len > 0 && (c->state == C_PENDING || c->state == C_WRITE) && !stash(c, p, len))
                pause_reading(c);
}

static void on_readable(evutil_socket_t fd, short what, void *userdata)
{
        static char buf[READ_CHUNK]; /* the loop thread's */
        ingest_conn *c = userdata;
        ssize_t n = recv(fd, buf, sizeof(buf), 0);

        if (n < 0) {
                if (errno == EAGAIN || errno == EINTR)
                        return;
                conn_free(c);
                return;
        }
        if (n == 0) {
                /* EOF. A request in flight is still answered (some clients
                 * half-close after sending); otherwise the client is gone. */
                if (c->state == C_PENDING || c->state == C_WRITE) {
                        c->peer_closed = true;
                        event_del(&c->rev);
                        return;
                }
                conn_free(c);
                return;
        }
        if (c->state == C_LINGER) {
                c->lingered += (size_t)n;
                if (c->lingered > LINGER_MAX_BYTES)
                        conn_free(c);
                return;
        }
        if (c->state != C_READ) {
                if (!stash(c, buf, (size_t)n))
                        pause_reading(c);
                return;
        }
        conn_feed(c, buf, (size_t)n);
}

/* The answer is out: close, linger, or take the next request. */
static void on_done(evutil_socket_t fd, short what, void *userdata)
{
        ingest_conn *c = userdata;
        char *rest;
        size_t rest_len;

        if (c->state != C_WRITE || c->wlen != c->woff)
                return;
        if (c->close_after) {
                if (!c->peer_closed &&
                    (c->req.state != HTTPREQ_DONE || c->rest_len > 0)) {
                        /* Unread bytes: a close now would reset the connection
                         * and the client might never read the answer. */
                        (void)shutdown(c->fd, SHUT_WR);
                        c->state = C_LINGER;
                        resume_reading(c);
                        arm(c, LINGER_MS);
                        return;
                }
                conn_free(c);
                return;
        }
        conn_budget_release(c->srv, c->reserved);
        c->reserved = 0;
        httpreq_reset(&c->req);
        c->req.lim.max_body = c->srv->cfg->max_body;
        c->request_id[0] = 0;
        c->state = C_READ;
        arm(c, c->srv->cfg->header_timeout_ms);
        if (c->rest_len) {
                rest = TAKE_PTR(c->rest);
                rest_len = c->rest_len;
                c->rest_len = 0;
                conn_feed(c, rest, rest_len);
                free(rest);
        }
        if (c->state == C_READ)
                resume_reading(c);
}

static void on_writable(evutil_socket_t fd, short what, void *userdata)
{
        ingest_conn *c = userdata;
        ssize_t k = send(fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL | MSG_DONTWAIT);

        if (k < 0 && errno != EAGAIN && errno != EINTR) {
                conn_free(c);
                return;
        }
        if (k > 0)
                c->woff += (size_t)k;
        if (c->woff < c->wlen) {
                event_add(&c->wev, NULL);
                return;
        }
        free(c->wbuf);
        c->wbuf = NULL;
        c->wlen = c->woff = 0;
        on_done(-1, 0, c);
}

static void on_timer(evutil_socket_t fd, short what, void *userdata)
{
        ingest_conn *c = userdata;

        if (c->state == C_READ && c->req.head_bytes > 0)
                c->srv->stats->timeouts++;
        conn_free(c);
}

static void peer_format(const struct sockaddr *sa, char *buf, size_t len)
{
        char a[INET6_ADDRSTRLEN] = "";

        if (sa->sa_family == AF_INET) {
                const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
                inet_ntop(AF_INET, &in->sin_addr, a, sizeof(a));
                snprintf(buf, len, "%s:%u", a, (unsigned)ntohs(in->sin_port));
        } else if (sa->sa_family == AF_INET6) {
                const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
                inet_ntop(AF_INET6, &in6->sin6_addr, a, sizeof(a));
                snprintf(buf, len, "%s:%u", a, (unsigned)ntohs(in6->sin6_port));
        } else
                snprintf(buf, len, "unix");
}

static void refuse_fd(int fd)
{
        struct linger l = {.l_onoff = 1, .l_linger = 0};

        /* A reset, so nothing of ours waits in TIME_WAIT for a refusal. */
        (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
        close(fd);
}

static void on_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
                      int socklen, void *userdata)
{
        conn_server *s = userdata;
        httpreq_limits lim = {MAX_HEAD_BYTES, MAX_HEADERS, s->cfg->max_body};
        ingest_conn *c;
        int one = 1;

        if (s->draining || s->n_conns >= s->max_conns) {
                s->stats->connections_refused++;
                refuse_fd(fd);
                return;
        }
        c = calloc(1, sizeof(*c));
        if (!c) {
                s->stats->connections_refused++;
                refuse_fd(fd);
                return;
        }
        c->srv = s;
        c->fd = fd;
        if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6)
                (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        peer_format(sa, c->peer, sizeof(c->peer));
        httpreq_init(&c->req, &lim);
        event_assign(&c->rev, s->base, fd, EV_READ | EV_PERSIST, on_readable, c);
        event_assign(&c->wev, s->base, fd, EV_WRITE, on_writable, c);
        event_assign(&c->timer, s->base, -1, 0, on_timer, c);
        event_assign(&c->done, s->base, -1, 0, on_done, c);
        if (event_add(&c->rev, NULL) < 0) {
                httpreq_free(&c->req);
                free(c);
                s->stats->connections_refused++;
                refuse_fd(fd);
                return;
        }
        c->next = s->conns;
        if (s->conns)
                s->conns->prev = c;
        s->conns = c;
        s->n_conns++;
        s->stats->connections_accepted++;
        arm(c, s->cfg->header_timeout_ms);
}

static void on_resume(evutil_socket_t fd, short what, void *userdata)
{
        conn_server *s = userdata;

        if (s->draining)
                return;
        for (size_t i = 0; i < s->n_listeners; i++)
                evconnlistener_enable(s->listeners[i]);
}

/* accept() failed with something other than EAGAIN: out of descriptors or
 * memory. The listening socket stays readable, so pause instead of spinning. */
static void on_accept_error(struct evconnlistener *lev, void *userdata)
{
        conn_server *s = userdata;
        int err = EVUTIL_SOCKET_ERROR();
        struct timeval tv = {0, ACCEPT_PAUSE_MS * 1000};
        static log_ratelimit rl = LOG_RATELIMIT_INIT(60, 1);
        uint64_t suppressed = 0;

        if (log_ratelimit_ok(&rl, &suppressed))
                log_warning_errno(-err, "Cannot accept connections, pausing %d ms: %m",
                                  ACCEPT_PAUSE_MS);
        for (size_t i = 0; i < s->n_listeners; i++)
                evconnlistener_disable(s->listeners[i]);
        if (!s->ev_resume)
                s->ev_resume = evtimer_new(s->base, on_resume, s);
        if (s->ev_resume)
                evtimer_add(s->ev_resume, &tv);
}

void conn_server_configure(conn_server *s, const knock_config *cfg)
{
        struct rlimit rl;

        s->cfg = cfg;
        s->max_conns = cfg->max_connections;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
            s->max_conns + FD_RESERVE > rl.rlim_cur) {
                s->max_conns = rl.rlim_cur > 2 * FD_RESERVE ? rl.rlim_cur - FD_RESERVE
                                                            : FD_RESERVE;
                log_warning("max_connections = %llu does not fit LimitNOFILE=%llu: serving at "
                            "most %llu connections",
                            (unsigned long long)cfg->max_connections,
                            (unsigned long long)rl.rlim_cur, (unsigned long long)s->max_conns);
        }
}

int conn_server_listen(conn_server *s, int fd)
{
        struct evconnlistener *lev;

        if (s->n_listeners >= ELEMENTSOF(s->listeners))
                return -E2BIG;
        evutil_make_socket_nonblocking(fd);
        lev = evconnlistener_new(s->base, on_accept, s, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
                                 0, fd);
        if (!lev)
                return -EIO;
        evconnlistener_set_error_cb(lev, on_accept_error);
        s->listeners[s->n_listeners++] = lev;
        return 0;
}

void conn_server_stop_accepting(conn_server *s)
{
        for (size_t i = 0; i < s->n_listeners; i++)
                evconnlistener_free(s->listeners[i]);
        s->n_listeners = 0;
        s->draining = true;
}

void conn_server_free(conn_server *s)
{
        conn_server_stop_accepting(s);
        while (s->conns)
                conn_free(s->conns);
        if (s->ev_resume)
                event_free(s->ev_resume);
        s->ev_resume = NULL;
}
