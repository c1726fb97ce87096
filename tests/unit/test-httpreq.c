/* SPDX-License-Identifier: MIT */
/* httpreq: strict HTTP/1.1 request framing. Every request is fed whole, one
 * byte at a time, and in random pieces: the outcome must not depend on how
 * the bytes arrive. */
#include <stdlib.h>
#include <string.h>

#include "httpreq.h"
#include "tap.h"
#include "util.h"

static const httpreq_limits lim = {.max_head = 4096, .max_headers = 20, .max_body = 1000};

/* Feeds s in pieces of at most step bytes (0: random pieces), starting the
 * body when the head is done. Returns the final state; *consumed is what
 * the parser took. */
static httpreq_state run(httpreq *r, const char *s, size_t len, size_t step, size_t *consumed)
{
        size_t off = 0;

        httpreq_init(r, &lim);
        while (off < len) {
                size_t n = step ? step : (size_t)(rand() % 7) + 1;
                size_t k;

                n = MIN(n, len - off);
                k = httpreq_feed(r, s + off, n);
                off += k;
                if (r->state == HTTPREQ_HEAD_DONE)
                        httpreq_start_body(r);
                if (r->state == HTTPREQ_DONE || r->state == HTTPREQ_ERROR)
                        break;
                if (k < n && r->state != HTTPREQ_BODY && r->state != HTTPREQ_HEAD)
                        break;
        }
        if (r->state == HTTPREQ_HEAD_DONE)
                httpreq_start_body(r);
        *consumed = off;
        return r->state;
}

/* The same request must give the same outcome whole, bytewise and random. */
static int outcome(const char *s, int *status)
{
        httpreq r;
        size_t used[3];
        int st[3], code[3];
        const size_t steps[3] = {SIZE_MAX, 1, 0};

        for (int i = 0; i < 3; i++) {
                st[i] = run(&r, s, strlen(s), steps[i] == SIZE_MAX ? strlen(s) + 1 : steps[i],
                            &used[i]);
                code[i] = r.status;
                httpreq_free(&r);
        }
        if (st[0] != st[1] || st[0] != st[2] || code[0] != code[1] || code[0] != code[2] ||
            used[0] != used[1] || used[0] != used[2])
                return -1;
        *status = code[0];
        return st[0];
}

static void refused(const char *s, int want, const char *what)
{
        int status = 0;
        int st = outcome(s, &status);

        ok(st == HTTPREQ_ERROR && status == want, "%s -> %d (got state %d, %d)", what, want, st,
           status);
}

int main(void)
{
        httpreq r;
        size_t used;
        int status;

        srand(42);

        {
                const char *s = "POST /hook?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                                "X-Sig:  v=1 \r\nX-Empty:\r\n\r\nhelloGET";
                ok(run(&r, s, strlen(s), 1000, &used) == HTTPREQ_DONE, "a POST with a body");
                is_str(r.method, "POST", "method");
                is_str(r.target, "/hook?x=1", "target");
                is_int(r.minor, 1, "HTTP/1.1");
                is_int(r.n_headers, 4, "four fields");
                is_str(httpreq_header(&r, "x-sig"), "v=1", "value without surrounding OWS");
                is_str(httpreq_header(&r, "X-Empty"), "", "an empty value");
                is_int(r.body_len, 5, "five body bytes");
                ok(memcmp(r.body, "hello", 5) == 0, "the body");
                is_int(used, strlen(s) - 3, "the next request's bytes are left alone");
                ok(r.keep_alive, "HTTP/1.1 keeps the connection");
                httpreq_reset(&r);
                ok(r.state == HTTPREQ_HEAD && !r.body && r.n_headers == 0, "reset for the next");
                httpreq_free(&r);
        }
        {
                const char *s = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                                "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\nNEXT";
                int st = outcome(s, &status);
                ok(st == HTTPREQ_DONE, "chunked, same outcome however it is cut (%d)", st);
                run(&r, s, strlen(s), 3, &used);
                ok(r.body_len == 11 && memcmp(r.body, "hello world", 11) == 0, "chunked body");
                is_int(used, strlen(s) - 4, "chunked: stops at the end of the trailers");
                httpreq_free(&r);
        }
        {
                const char *s = "GET /x HTTP/1.0\r\n\r\n";
                ok(outcome(s, &status) == HTTPREQ_DONE, "HTTP/1.0 without Host");
                run(&r, s, strlen(s), 100, &used);
                ok(!r.keep_alive, "HTTP/1.0 closes by default");
                httpreq_free(&r);
                s = "GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
                run(&r, s, strlen(s), 100, &used);
                ok(r.keep_alive, "HTTP/1.0 keep-alive on request");
                httpreq_free(&r);
                s = "POST /x HTTP/1.1\r\nHost: a\r\nConnection: foo, close\r\n\r\n";
                run(&r, s, strlen(s), 100, &used);
                ok(!r.keep_alive, "Connection: close in a list");
                httpreq_free(&r);
                s = "\r\n\r\nPOST http://example.com:80/p?q HTTP/1.1\r\nHost: a\r\n"
                    "Expect: 100-continue\r\nContent-Length: 0\r\n\r\n";
                ok(run(&r, s, strlen(s), 100, &used) == HTTPREQ_DONE, "leading CRLFs skipped");
                is_str(r.target, "/p?q", "absolute-form: the path and query");
                ok(r.expect_continue, "Expect: 100-continue");
                httpreq_free(&r);
        }

        refused("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                400, "conflicting Content-Length");
        refused("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
                400, "repeated equal Content-Length");
        refused("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", 400,
                "a Content-Length list");
        refused("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400,
                "a negative Content-Length");
        refused("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", 400,
                "an overflowing Content-Length");
        refused("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n"
                "\r\n",
                400, "Content-Length with Transfer-Encoding");
        refused("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501,
                "a transfer coding other than chunked");
        refused("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
                "Transfer-Encoding in HTTP/1.0");
        {
                static const char nul[] = "POST / HTTP/1.1\r\nHost: a\r\nX-Event: pu\0sh\r\n\r\n";
                httpreq_init(&r, &lim);
                httpreq_feed(&r, nul, sizeof(nul) - 1);
                ok(r.state == HTTPREQ_ERROR && r.status == 400, "a NUL in a field value -> 400");
                httpreq_free(&r);
        }
        refused("POST / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n", 400, "a bare CR in a value");
        refused("POST / HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n", 400, "a bare LF ending a field");
        refused("POST / HTTP/1.1\nHost: a\r\n\r\n", 400, "a bare LF ending the request line");
        refused("POST / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", 400, "obs-fold");
        refused("POST / HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n", 400,
                "whitespace before the colon");
        refused("POST / HTTP/1.1\r\nHost: a\r\nX\x01A: b\r\n\r\n", 400,
                "a control character in a name");
        refused("POST / HTTP/1.1\r\nHost: a\r\nX-A: b\x7f\r\n\r\n", 400, "DEL in a value");
        refused("POST / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "repeated Host");
        refused("POST / HTTP/1.1\r\n\r\n", 400, "HTTP/1.1 without Host");
        refused("POST / HTTP/2.0\r\nHost: a\r\n\r\n", 505, "HTTP/2.0 over HTTP/1 framing");
        refused("POST / HTTX/1.1\r\nHost: a\r\n\r\n", 400, "a garbled version");
        refused("POST  / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "two spaces in the request line");
        refused("POST /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400, "a space in the target");
        refused("POST / HTTP/1.1\r\nHost: a\r\nExpect: x\r\n\r\n", 417, "an unknown expectation");
        refused("POST ftp://x/ HTTP/1.1\r\nHost: a\r\n\r\n", 400, "a target of another scheme");
        refused("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX\r\n",
                400, "chunk data longer than its size");
        refused("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400,
                "a chunk size that is not hex");
        refused("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                "fffffffffffffffff\r\n",
                400, "an overflowing chunk size");
        refused("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3e9\r\n", 413,
                "a chunked body over max_body (1001 > 1000)");
        refused("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n"
                " x\r\n\r\n",
                400, "obs-fold in the trailers");
        {
                char big[5000];
                size_t n = (size_t)snprintf(big, sizeof(big), "POST / HTTP/1.1\r\nHost: a\r\nX: ");
                memset(big + n, 'a', sizeof(big) - n - 1);
                big[sizeof(big) - 1] = 0;
                refused(big, 431, "a head over max_head");
        }
        {
                char many[2000];
                size_t n = (size_t)snprintf(many, sizeof(many), "POST / HTTP/1.1\r\nHost: a\r\n");
                for (int i = 0; i < 25; i++)
                        n += (size_t)snprintf(many + n, sizeof(many) - n, "X-%d: v\r\n", i);
                snprintf(many + n, sizeof(many) - n, "\r\n");
                refused(many, 431, "more than max_headers fields");
        }
        {
                /* A Content-Length body is exact; feeding after DONE takes nothing. */
                const char *s = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc";
                run(&r, s, strlen(s), 1, &used);
                ok(r.state == HTTPREQ_DONE && httpreq_feed(&r, "x", 1) == 0,
                   "nothing is taken after the end of a request");
                httpreq_free(&r);
        }
        return tap_done();
}
