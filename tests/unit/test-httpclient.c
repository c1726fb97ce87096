/* SPDX-License-Identifier: MIT */
/*
 * test-httpclient — http_target_parse(): schemes, default ports, the path
 * with its query, the Host header (IPv6 brackets, port only when not the
 * default), the pool key origin and literal detection; the TLS context with
 * and without an extra CA file; the response parser, fed whole and byte by
 * byte: Content-Length, chunked with extensions and trailers, a body run to
 * the close, interim 1xx, the body bound, and what it refuses.
 */

#include <errno.h>
#include <event2/buffer.h>
#include <stdio.h>
#include <string.h>

#include "httpclient.h"
#include "tap.h"
#include "util.h"

static void target(const char *url, int want_r, bool https, const char *host, int port,
                   const char *path, const char *hostport, const char *origin, bool literal)
{
        http_target t = {};
        int r = http_target_parse(url, &t);

        is_int(r, want_r, "%s: parse result", url);
        if (r < 0 || want_r < 0)
                return;
        ok(t.https == https, "%s: https is %d", url, https);
        is_str(t.host, host, "%s: host", url);
        is_int(t.port, port, "%s: port", url);
        is_str(t.path, path, "%s: path", url);
        is_str(t.hostport, hostport, "%s: Host header", url);
        is_str(t.origin, origin, "%s: origin", url);
        ok(t.ip_literal == literal, "%s: ip_literal is %d", url, literal);
        is_str(t.url, url, "%s: url kept", url);
        http_target_clear(&t);
        ok(!t.url && !t.host && !t.path && !t.hostport && !t.origin, "%s: cleared", url);
}

/* Feeds text to a fresh parser whole, then again one byte at a time (every
 * split a socket could make): both must end the same way. Returns the
 * whole-feed parser for the caller to check; leftover is what it left. */
static int feed(http_parser *p, const char *text, size_t max_head, size_t max_body, bool eof,
                size_t *leftover)
{
        struct evbuffer *in = evbuffer_new();
        http_parser q = {};
        int r, rq = 0;
        size_t len = strlen(text), i;

        http_parser_reset(p, max_head, max_body);
        evbuffer_add(in, text, len);
        r = http_parser_feed(p, in);
        if (r == 0 && eof)
                r = http_parser_eof(p);
        *leftover = evbuffer_get_length(in);
        evbuffer_drain(in, *leftover);

        http_parser_reset(&q, max_head, max_body);
        for (i = 0; i < len && rq == 0; i++) {
                evbuffer_add(in, text + i, 1);
                rq = http_parser_feed(&q, in);
        }
        if (rq == 0 && eof)
                rq = http_parser_eof(&q);
        ok(rq == r && q.status == p->status && q.body_len == p->body_len &&
                   q.body_dropped == p->body_dropped && q.close == p->close &&
                   (q.body_len == 0 || memcmp(q.body, p->body, q.body_len) == 0),
           "byte by byte ends the same (%d/%d, status %d/%d, body %zu/%zu)", rq, r, q.status,
           p->status, q.body_len, p->body_len);
        http_parser_free(&q);
        evbuffer_free(in);
        return r;
}

static void parser_cases(void)
{
        http_parser p = {};
        size_t left;

        is_int(feed(&p, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x\r\n\r\nhello", 0,
                    100, false, &left),
               1, "Content-Length: a whole response");
        is_int(p.status, 200, "status 200");
        is_str((char *)p.body, "hello", "body kept");
        ok(!p.close, "HTTP/1.1 keeps the connection");
        is_int((int)left, 0, "nothing left over");

        is_int(feed(&p, "HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200", 0, 10, false, &left), 1,
               "204 has no body");
        is_int((int)left, 12, "the next response's bytes are left in the buffer");

        is_int(feed(&p,
                    "HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\nRetry-After:  120 \r\n"
                    "\r\n4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n"
                    "X-Trailer: y\r\n\r\n",
                    0, 100, false, &left),
               1, "chunked with extensions and a trailer");
        is_int(p.status, 503, "status 503");
        is_str((char *)p.body, "Wikipedia in\r\n\r\nchunks.", "chunks joined");
        ok(p.has_retry_after && strcmp(p.retry_after, "120") == 0, "Retry-After trimmed");

        is_int(feed(&p, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789", 0, 4, false,
                    &left),
               1, "a body over max_body");
        is_str((char *)p.body, "0123", "its head kept");
        is_int((int)p.body_dropped, 6, "the rest counted as dropped");

        is_int(feed(&p, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
                    0, 10, false, &left),
               1, "an interim 100 is skipped");
        is_int(p.status, 201, "the real status");

        is_int(feed(&p, "HTTP/1.0 200 OK\r\n\r\nto the end", 0, 100, true, &left), 1,
               "HTTP/1.0 without a length: the body runs to the close");
        is_str((char *)p.body, "to the end", "all of it");
        ok(p.close, "and the connection is not reused");

        is_int(feed(&p, "HTTP/1.1 200 OK\nConnection: Keep-Alive, close\nContent-Length: 2\n\nok",
                    0, 10, false, &left),
               1, "bare LF line ends");
        ok(p.close, "Connection: close among tokens");

        is_int(feed(&p, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", 0, 100, true,
                    &left),
               -EPIPE, "closed before Content-Length bytes");
        is_int(feed(&p, "", 0, 100, true, &left), -EPIPE, "closed before anything");
        is_str(p.error, "connection closed before a response", "in words");

        is_int(feed(&p, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx", 0,
                    10, false, &left),
               -EBADMSG, "conflicting Content-Length refused");
        is_int(feed(&p, "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", 0, 10, false, &left),
               -EBADMSG, "negative Content-Length refused");
        is_int(feed(&p, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 0, 10,
                    false, &left),
               -EBADMSG, "a chunk size that is not hex refused");
        is_int(feed(&p, "ICY 200 OK\r\n\r\n", 0, 10, false, &left), -EBADMSG,
               "not HTTP refused");
        is_int(feed(&p, "HTTP/1.1 101 Switching\r\n\r\n", 0, 10, false, &left), -EBADMSG,
               "a protocol switch refused");
        {
                char big[600];

                snprintf(big, sizeof(big), "HTTP/1.1 200 OK\r\nX-Big: %0500d\r\n\r\n", 0);
                is_int(feed(&p, big, 256, 10, false, &left), -EBADMSG,
                       "a head over max_head refused");
                is_str(p.error, "response headers too long", "in words");
        }
        is_int(feed(&p, "HTTP/1.1 200 OK\r\nX-Big: 0000000000000000000000000000", 32, 10, false,
                    &left),
               -EBADMSG, "an unfinished head over max_head refused before its end arrives");
        http_parser_free(&p);
}

/* Mutated responses fed in random pieces: every outcome is 1, 0 or -EBADMSG
 * (then -EPIPE or 1 at the close), the kept body stays within max_body, and
 * nothing reads or writes out of bounds (the ASan build runs this too). */
static void parser_fuzz(void)
{
        static const char *const seeds[] = {
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x\r\nabc\r\n0\r\nT: 1\r\n\r\n",
                "HTTP/1.0 200 OK\r\n\r\nto the end",
                "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No\r\n\r\n",
                "HTTP/1.1 503 X\r\nRetry-After: 5\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        };
        const char alphabet[] = "HTTP/1.0 2:\r\n;aF9\t-,chunkedContent-Length";
        uint64_t seed = 0x9e3779b97f4a7c15ULL;
        size_t bad = 0, runs = 20000;

        for (size_t n = 0; n < runs; n++) {
                const char *s = seeds[n % (sizeof(seeds) / sizeof(seeds[0]))];
                char buf[256];
                size_t len = strlen(s), max_body = 1 + n % 7;
                struct evbuffer *in = evbuffer_new();
                http_parser p = {};
                int r = 0;

                memcpy(buf, s, len);
                for (int m = 0; m < 1 + (int)(n % 4); m++) {
                        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
                        size_t at = (seed >> 33) % len;

                        buf[at] = alphabet[(seed >> 20) % (sizeof(alphabet) - 1)];
                }
                http_parser_reset(&p, 64, max_body);
                for (size_t at = 0; at < len && r == 0;) {
                        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
                        size_t k = MIN(len - at, 1 + (seed >> 40) % 9);

                        evbuffer_add(in, buf + at, k);
                        at += k;
                        r = http_parser_feed(&p, in);
                }
                if (r == 0)
                        r = http_parser_eof(&p);
                if (!(r == 1 || r == -EBADMSG || r == -EPIPE) || p.body_len > max_body ||
                    (r < 0 && !p.error))
                        bad++;
                http_parser_free(&p);
                evbuffer_free(in);
        }
        is_int((int)bad, 0, "%zu mutated responses in random pieces: results and bounds hold", runs);
}

int main(void)
{
        SSL_CTX *ctx = NULL;

        target("http://example.org/hook", 0, false, "example.org", 80, "/hook", "example.org",
               "http://example.org:80", false);
        target("https://example.org", 0, true, "example.org", 443, "/", "example.org",
               "https://example.org:443", false);
        target("HTTPS://Example.org:8443/a/b?x=1&y=2", 0, true, "Example.org", 8443,
               "/a/b?x=1&y=2", "Example.org:8443", "https://Example.org:8443", false);
        target("http://127.0.0.1:8080/sink", 0, false, "127.0.0.1", 8080, "/sink",
               "127.0.0.1:8080", "http://127.0.0.1:8080", true);
        target("https://[::1]:9443/x", 0, true, "::1", 9443, "/x", "[::1]:9443",
               "https://::1:9443", true);
        target("http://[::1]/", 0, false, "::1", 80, "/", "[::1]", "http://::1:80", true);
        target("http://example.org:443/", 0, false, "example.org", 443, "/", "example.org:443",
               "http://example.org:443", false);
        target("ftp://example.org/", -EINVAL, false, NULL, 0, NULL, NULL, NULL, false);
        target("exec:/bin/true", -EINVAL, false, NULL, 0, NULL, NULL, NULL, false);
        target("http:///nohost", -EINVAL, false, NULL, 0, NULL, NULL, NULL, false);
        target("not a url", -EINVAL, false, NULL, 0, NULL, NULL, NULL, false);

        is_int(http_tls_context(NULL, &ctx), 0, "TLS context on the system trust store");
        ok(ctx && SSL_CTX_get_verify_mode(ctx) == SSL_VERIFY_PEER, "peers are verified");
        ok(ctx && SSL_CTX_get_min_proto_version(ctx) == TLS1_2_VERSION, "TLS 1.2 at least");
        SSL_CTX_free(ctx);
        ctx = NULL;
        is_int(http_tls_context("/nonexistent/ca.pem", &ctx), -ENOENT,
               "a missing extra CA file is -ENOENT");
        ok(ctx == NULL, "and leaves no context");
        is_int(http_tls_context("", &ctx), 0, "an empty extra CA file name is none");
        SSL_CTX_free(ctx);

        parser_cases();
        parser_fuzz();
        return tap_done();
}
