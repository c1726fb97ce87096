/* SPDX-License-Identifier: MIT */
/*
 * bare-server — the ceiling for bench/ingest: a libevent evhttp server on
 * 127.0.0.1:PORT that reads each POST and answers 204 without verifying or
 * storing anything. With -v SECRET it also computes the body's
 * HMAC-SHA256 (the "bare + HMAC" line of performance.md).
 */
#define _GNU_SOURCE
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *secret;

static void on_request(struct evhttp_request *req, void *userdata)
{
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        size_t len = evbuffer_get_length(in);
        unsigned char mac[32];
        unsigned maclen;

        if (secret) {
                unsigned char *body = evbuffer_pullup(in, -1);
                HMAC(EVP_sha256(), secret, (int)strlen(secret), body, len, mac, &maclen);
        }
        evhttp_send_reply(req, 204, "No Content", NULL);
}

static void on_term(evutil_socket_t fd, short what, void *base)
{
        event_base_loopexit(base, NULL);
}

int main(int argc, char **argv)
{
        struct event_base *base;
        struct evhttp *http;
        struct event *term;
        int c, port = 0;

        while ((c = getopt(argc, argv, "p:v:")) >= 0) {
                if (c == 'p')
                        port = atoi(optarg);
                else if (c == 'v')
                        secret = optarg;
                else
                        return 2;
        }
        if (port <= 0)
                return 2;
        signal(SIGPIPE, SIG_IGN);
        base = event_base_new();
        http = evhttp_new(base);
        if (!base || !http || evhttp_bind_socket(http, "127.0.0.1", (unsigned short)port) < 0)
                return 1;
        evhttp_set_gencb(http, on_request, NULL);
        term = evsignal_new(base, SIGTERM, on_term, base);
        evsignal_add(term, NULL);
        event_base_dispatch(base);
        event_free(term);
        evhttp_free(http);
        event_base_free(base);
        return 0;
}
