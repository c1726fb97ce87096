#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Who may see the web console. A TCP admin listener without console_token
serves no console (only /healthz, /readyz, /metrics); with one it asks for
the token: a wrong bearer token is refused, the right one served; the
login form (driven in chromium) refuses a wrong token and sets, for the
right one, an HttpOnly cookie that is not the token; a forged cookie is
refused. On the unix socket, a Host that is not this machine's (a page
that rebinds its own name to a tunnel's port) is refused."""

import re
import time
import urllib.parse

import browser
import knocktest as kt

SECRET = "auth-secret"
TOKEN = "c0ns0le-t0ken-f0r-the-test-0123456789"




def config(ep, aport, token=None):
    ep.write_config("[endpoint]\nprovider = github\nsecret = literal:%s\nlisten = 127.0.0.1:%d\n"
                    "admin = 127.0.0.1:%d\n%s"
                    % (SECRET, ep.port, aport,
                       "console_token = literal:%s\n" % token if token else ""))


def main():
    t = kt.Tap()
    ep = kt.Endpoint("auth")
    aport = kt.free_port()
    b = None

    def get(path, headers=None):
        return ep.request("GET", path, headers=headers, port=aport)
    try:
        # ---- TCP without console_token: the three probes only ----
        config(ep, aport)
        ep.start_ingress(activate=False)
        for path in ("/healthz", "/metrics"):
            t.eq(get(path)[0], 200, "no token: %s is served" % path)
        for path in ("/", "/events", "/event?id=x", "/live", "/live/stream", "/probe", "/login",
                     "/static/live.js"):
            st, _, body = get(path, {"Accept": "text/html"})
            t.ok(st == 404 and b"<html" not in body, "no token: GET %s is 404, no console" % path,
                 (st, body[:200]))
        st, _, _ = get("/", {"Authorization": "Bearer " + TOKEN})
        t.eq(st, 404, "no token: a bearer token opens nothing")
        st, _, _ = ep.request("POST", "/probe", b"request=x", port=aport)
        t.eq(st, 405, "no token: POST is refused as before (405)")
        ep.stop("ingress")

        # ---- TCP with console_token ----
        config(ep, aport, TOKEN)
        ep.start_ingress(activate=False)
        st, h, _ = get("/", {"Accept": "text/html"})
        t.ok(st == 303 and h.get("location") == "/login", "a browser without the token is sent "
             "to /login", (st, h))
        st, h, _ = get("/events")
        t.ok(st == 401 and "Bearer" in h.get("www-authenticate", ""),
             "a script without the token: 401 with WWW-Authenticate", (st, h))
        st, _, body = get("/events", {"Authorization": "Bearer " + TOKEN[:-1] + "x"})
        t.ok(st == 401 and b"<table" not in body, "a wrong bearer token is refused", st)
        st, _, _ = get("/live/stream", {"Authorization": "Bearer wrong"})
        t.eq(st, 401, "the live stream refuses a wrong token too")
        st, h, body = get("/events", {"Authorization": "Bearer " + TOKEN})
        t.ok(st == 200 and b"<h1>Events</h1>" in body and "content-security-policy" in h,
             "the right bearer token: the page, with its CSP", st)
        t.eq(get("/metrics")[0], 200, "/metrics needs no token")

        form = {"Content-Type": "application/x-www-form-urlencoded"}
        st, h, body = ep.request("POST", "/login", urllib.parse.urlencode({"token": "nope"}), form,
                                port=aport)
        t.ok(st == 403 and "set-cookie" not in h, "login with a wrong token: 403, no cookie", st)
        st, h, body = ep.request("POST", "/login", urllib.parse.urlencode({"token": TOKEN}), form,
                                port=aport)
        cookie = h.get("set-cookie", "")
        m = re.match(r"knock_console=([0-9a-f]{64}); Path=/; HttpOnly; SameSite=Strict$", cookie)
        t.ok(st == 303 and m and TOKEN not in cookie,
             "login with the token: an HttpOnly, SameSite cookie that is not the token", (st, cookie))
        value = m.group(1) if m else ""
        st, _, body = get("/", {"Cookie": "a=b; knock_console=" + value})
        t.ok(st == 200 and b"<h1>Dashboard</h1>" in body, "the cookie opens the console", st)
        forged = value[:-1] + ("0" if value[-1:] != "0" else "1")
        st, _, _ = get("/", {"Cookie": "knock_console=" + forged,
                                           "Accept": "text/html"})
        t.eq(st, 303, "a forged cookie is refused (back to /login)")
        st, _, _ = ep.request("POST", "/probe", "request=x",
                              {"Cookie": "knock_console=" + value, "Origin": "http://evil.example",
                               "Content-Type": form["Content-Type"]}, port=aport)
        t.eq(st, 403, "a form posted from another origin is refused")

        # The login form in a browser.
        if not browser.available():
            t.ok(False, "chromium is installed (Debian package chromium)")
        else:
            b = browser.Browser()
            page = b.open()
            base = "http://127.0.0.1:%d" % aport
            page.goto(base + "/")
            t.eq(page.eval("location.pathname"), "/login", "browser: the console sends it to /login")
            page.eval("document.querySelector('input[name=token]').value = 'not-the-token-at-all';"
                      "document.querySelector('form.login').submit(); 1")
            page.wait_for("document.querySelector('p.error') !== null", 10)
            t.ok("not this endpoint's console_token" in page.text("main")
                 and page.responses.get(base + "/login", (0,))[0] == 403,
                 "browser: a wrong token is refused (403)")
            page.eval("document.querySelector('input[name=token]').value = %r;"
                      "document.querySelector('form.login').submit(); 1" % TOKEN)
            page.wait_for("document.querySelector('h1') && "
                          "document.querySelector('h1').textContent === 'Dashboard'", 10)
            t.eq(page.eval("document.querySelector('h1').textContent"), "Dashboard",
                 "browser: the right token logs in")
            t.eq(page.eval("document.cookie"), "", "browser: the cookie is not readable by scripts")
            page.goto(base + "/events")
            t.eq(page.eval("document.querySelector('h1').textContent"), "Events",
                 "browser: the next page needs no token again")
        t.eq(ep.stop("ingress"), 0, "the ingress stops cleanly")
        t.ok("Sanitizer" not in ep.stderr("ingress"), "no sanitizer report from the ingress",
             ep.stderr("ingress")[-3000:])

        # ---- unix socket: this machine's Host only ----
        ep2 = kt.Endpoint("unx", tmp=ep.tmp + "/unx")
        try:
            ep2.write_config("[endpoint]\nprovider = github\nsecret = literal:%s\n"
                             "listen = 127.0.0.1:%d\n" % (SECRET, ep2.port))
            ep2.start_ingress()
            kt.wait_for(lambda: ep2.admin_get("/healthz")[0] == 200, 10)
            for host, want in (("localhost", 200), ("localhost:8080", 200), ("127.0.0.1:9", 200),
                               ("[::1]:8080", 200), ("admin", 200), ("knock.localhost:80", 200),
                               ("attacker.example:8080", 403), ("127.0.0.1.nip.io", 403),
                               ("[2001:db8::1]:80", 403)):
                st, _, _ = ep2.admin_request("GET", "/", headers={"Host": host})
                t.eq(st, want, "unix socket, Host %s: %d" % (host, want))
            st, _, _ = ep2.admin_request("GET", "/metrics", headers={"Host": "attacker.example"})
            t.eq(st, 200, "unix socket: /metrics answers any Host, as before")
        finally:
            ep2.cleanup()
    finally:
        if b:
            b.close()
        ep.cleanup()
    t.done()


if __name__ == "__main__":
    main()
