/* SPDX-License-Identifier: MIT */
/*
 * console-access — who may see the console. On the admin unix socket
 * anyone local may (the socket's mode decides), but only with a Host naming
 * this machine, so a web page cannot read it through a tunnel by DNS
 * rebinding; on a TCP admin listener only with a console_token, given as a
 * bearer token or by the login form's cookie, which holds an HMAC of the
 * token and never the token. Every comparison is constant-time.
 */
#define _GNU_SOURCE
#include "console.h"

#include <event2/bufferevent.h>
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#include "console-internal.h"

/* ---- access ------------------------------------------------------------------------------------- */

static bool request_on_unix_socket(struct evhttp_request *req)
{
        struct evhttp_connection *evcon = evhttp_request_get_connection(req);
        struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
        int fd = bev ? bufferevent_getfd(bev) : -1;
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);

        return fd >= 0 && getsockname(fd, (struct sockaddr *)&ss, &len) == 0 &&
               ss.ss_family == AF_UNIX;
}

/* A Host naming this machine: localhost, *.localhost, a loopback address, or
 * a name of one label (no web page can make a browser use one of those for
 * its own origin). */
static bool host_is_local(const char *host)
{
        struct in_addr v4;
        char name[256];
        size_t n;

        if (!host)
                return true; /* HTTP/1.0 */
        if (host[0] == '[') {
                n = strcspn(host, "]");
                return n == 4 && strncmp(host + 1, "::1", 3) == 0;
        }
        n = strcspn(host, ":");
        if (n == 0 || n >= sizeof(name))
                return false;
        memcpy(name, host, n);
        name[n] = 0;
        if (inet_pton(AF_INET, name, &v4) == 1)
                return (ntohl(v4.s_addr) >> 24) == 127;
        if (streq(name, "localhost") || (n > 10 && streq(name + n - 10, ".localhost")))
                return strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789.-") == n;
        return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") == n;
}

void console_session_value(const char *token, char out[65])
{
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int n = 0;

        HMAC(EVP_sha256(), token, (int)strlen(token), (const unsigned char *)SESSION_LABEL,
             strlen(SESSION_LABEL), mac, &n);
        hex_encode(mac, n, out);
}

/* The index of the configured token a presented one is, or -1. Compared in
 * constant time: both sides are hashed first, so neither the lengths nor the
 * first differing byte show in the time taken, and every token is tried. */
int console_token_index(const knock_config *cfg, const char *given, size_t len)
{
        unsigned char want[32], got[32];
        int found = -1;

        if (EVP_Digest(given, len, got, NULL, EVP_sha256(), NULL) != 1)
                return -1;
        for (size_t i = 0; i < cfg->n_console_tokens; i++) {
                const char *t = cfg->console_tokens[i];

                if (EVP_Digest(t, strlen(t), want, NULL, EVP_sha256(), NULL) == 1 &&
                    CRYPTO_memcmp(want, got, sizeof(want)) == 0)
                        found = (int)i;
        }
        return found;
}

static bool cookie_valid(const knock_config *cfg, const char *cookies)
{
        const char *p = cookies;
        char want[65];
        bool ok = false;

        /* "a=b; knock_console=HEX; c=d" */
        while (p && *p) {
                p += strspn(p, " ;");
                if (startswith(p, COOKIE_NAME "=")) {
                        const char *v = p + strlen(COOKIE_NAME "=");
                        size_t n = strcspn(v, ";");

                        if (n != 64)
                                return false;
                        for (size_t i = 0; i < cfg->n_console_tokens; i++) {
                                console_session_value(cfg->console_tokens[i], want);
                                ok |= CRYPTO_memcmp(want, v, 64) == 0;
                        }
                        return ok;
                }
                p = strchr(p, ';');
        }
        return false;
}

console_access console_check_access(const knock_config *cfg, struct evhttp_request *req)
{
        struct evkeyvalq *in = evhttp_request_get_input_headers(req);
        const char *auth, *cookies;

        if (request_on_unix_socket(req))
                return host_is_local(evhttp_find_header(in, "Host")) ? ACCESS_OK
                                                                     : ACCESS_FORBIDDEN;
        if (!cfg || cfg->n_console_tokens == 0)
                return ACCESS_NONE;
        auth = evhttp_find_header(in, "Authorization");
        if (auth && strncasecmp(auth, "Bearer ", 7) == 0)
                return console_token_index(cfg, auth + 7, strlen(auth + 7)) >= 0 ? ACCESS_OK
                                                                          : ACCESS_DENIED;
        cookies = evhttp_find_header(in, "Cookie");
        if (cookies && cookie_valid(cfg, cookies))
                return ACCESS_OK;
        return ACCESS_LOGIN;
}

/* A form's POST must come from the console's own pages: a browser names
 * the page's origin, which must be this Host (the pages' Referrer-Policy,
 * same-origin, lets it: with no-referrer a browser sends "null"). */
bool console_same_origin(struct evhttp_request *req)
{
        struct evkeyvalq *in = evhttp_request_get_input_headers(req);
        const char *origin = evhttp_find_header(in, "Origin");
        const char *host = evhttp_find_header(in, "Host");
        const char *o;

        if (!origin)
                return true; /* not a browser, or an old one: no cross-site form either */
        o = startswith(origin, "http://")    ? origin + 7
            : startswith(origin, "https://") ? origin + 8
                                              : NULL;
        return o && host && streq(o, host);
}
