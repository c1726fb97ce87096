/* SPDX-License-Identifier: MIT */
/*
 * test-httpclient — http_target_parse(): schemes, default ports, the path
 * with its query, the Host header (IPv6 brackets, port only when not the
 * default), the pool key origin and literal detection; the TLS context with
 * and without an extra CA file; the request error words.
 */

#include <errno.h>
#include <stdio.h>

#include "httpclient.h"
#include "tap.h"

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

        is_str(http_request_error_string(EVREQ_HTTP_TIMEOUT), "timed out", "timeout in words");
        is_str(http_request_error_string(EVREQ_HTTP_EOF), "connection closed before a response",
               "EOF in words");
        is_str(http_request_error_string(EVREQ_HTTP_DATA_TOO_LONG), "response headers too long",
               "too long in words");
        return tap_done();
}
