#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The web console in a real browser (Debian's chromium, headless, driven
over the DevTools protocol: browser.py), against an endpoint with real
events: one handled, one dead, one retried then handled, one whose headers,
body, type, id and handler output carry <script> and <img onerror>
payloads, a rejected delivery carrying them too, completion hooks that
failed, and an operator's requeue in the audit trail.

The browser reaches the unix-socket admin listener through a TCP
forwarder, as an operator's browser does through `ssh -L`. Each page must
load, show those rows (checked in the DOM), carry its
Content-Security-Policy, open no dialog, run no injected script and hold
no injected element; the live view must show a webhook sent after it
loaded. Screenshots of the dashboard and of a trace are left in the build
directory (console-artifacts/) as test artifacts.
"""

import http.server
import json
import os
import threading
import time
import urllib.parse

import browser
import knocktest as kt

SECRET = "console-secret"
HOOK_SECRET = "whsec_Y29uc29sZS1ob29rLXNlY3JldC0zMmJ5dGVzISE="
XSS_SCRIPT = "<script>window.__xss=1;alert(1)</script>"
XSS_IMG = "<img src=x onerror=\"window.__xss=2;alert(2)\">"
ARTIFACTS = os.path.join(kt.BUILD, "console-artifacts")

HANDLER = r"""
case "$KNOCK_EVENT_TYPE" in
ok) exit 0 ;;
die) echo "cannot process this one" >&2; exit 65 ;;
retry)
    if [ "$KNOCK_ATTEMPT" -ge 2 ]; then exit 0; fi
    echo "try again later"; exit 75 ;;
*) printf '%s\n' '<script>window.__xss=3</script><img src=x onerror=window.__xss=4>'; exit 0 ;;
esac
"""

# Every page: no dialog, no injected script or element, no handler attribute.
DOM_CLEAN = """(() => {
  const scripts = [...document.scripts].map(s => s.getAttribute('src'));
  const handlers = [...document.querySelectorAll('*')].filter(
      e => [...e.attributes].some(a => a.name.startsWith('on')));
  return {xss: window.__xss === undefined ? null : window.__xss,
          scripts: scripts, imgs: document.images.length, handlers: handlers.length};
})()"""


class GoneReceiver(http.server.BaseHTTPRequestHandler):
    """A hook receiver that answers 410: the hook fails at once."""

    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(410)
        self.send_header("Content-Length", "4")
        self.end_headers()
        self.wfile.write(b"gone")

    def log_message(self, *args):
        pass


def post(ep, body, delivery, etype, extra=None):
    h = kt.github_headers(SECRET, body, delivery, etype)
    h.update(extra or {})
    return ep.post(body, h)


def event_of(ep, pid):
    rows = ep.query("SELECT id FROM events WHERE provider_event_id = ?", (pid,))
    return rows[0]["id"] if rows else None


def check_page(t, page, url, what, want_scripts=None):
    """Loads url; checks status, CSP, a clean DOM. Returns the body text."""
    page.goto(url)
    status, headers = page.responses.get(url, (None, {}))
    t.eq(status, 200, "%s: 200" % what)
    csp = headers.get("content-security-policy", "")
    t.ok("script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp,
         "%s: strict Content-Security-Policy" % what, csp)
    dom = page.eval(DOM_CLEAN)
    t.ok(dom["xss"] is None and dom["imgs"] == 0 and dom["handlers"] == 0 and not page.dialogs
         and dom["scripts"] == (want_scripts or []),
         "%s: no injected script ran, no injected element" % what, (dom, page.dialogs))
    refused = [m for _, m in page.console if "Content Security Policy" in m or "Refused" in m]
    t.eq(refused, [], "%s: nothing refused by the CSP (nothing injected to refuse)" % what)
    return page.text("main")


def main():
    t = kt.Tap()
    if not browser.available():
        t.ok(False, "chromium is installed (Debian package chromium; scripts/install-deps --test)")
        t.done()
    os.makedirs(ARTIFACTS, exist_ok=True)
    ep = kt.Endpoint("con")
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), GoneReceiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    handler = kt.write_script(ep, "handler", HANDLER)
    fwd = b = None
    try:
        ep.write_config(
            "[endpoint]\nprovider = github\nsecret = literal:%s\nlisten = 127.0.0.1:%d\n"
            "prometheus_url = http://prometheus.example:9090/\n"
            "[worker]\nhandler = exec:%s\nbackoff = 1s..1s\nmax_attempts = 3\n"
            "[hook]\nurl = http://127.0.0.1:%d/hook\nsecret = literal:%s\non = handled, dead\n"
            % (SECRET, ep.port, handler, receiver.server_address[1], HOOK_SECRET))
        ep.start_ingress()
        ep.start("knock-worker")
        ep.start("knock-deliver")

        st, _, _ = post(ep, b'{"n":1}', "pe-ok", "ok")
        t.eq(st, 200, "a webhook to be handled")
        post(ep, b'{"n":2}', "pe-die", "die")
        post(ep, b'{"n":3}', "pe-retry", "retry")
        xss_body = ('{"comment":"%s %s"}' % (XSS_SCRIPT, XSS_IMG.replace('"', '\\"'))).encode()
        st, _, _ = post(ep, xss_body, "pe-" + XSS_SCRIPT, XSS_IMG,
                        {"X-Note": XSS_SCRIPT, "X-Other": XSS_IMG})
        t.eq(st, 200, "a verified webhook whose id, type, headers and body carry payloads")
        st, _, _ = ep.post(b'{"n":5}', {"X-Hub-Signature-256": "sha256=" + "0" * 64,
                                        "X-GitHub-Delivery": "pe-bad" + XSS_IMG,
                                        "X-GitHub-Event": XSS_SCRIPT})
        t.eq(st, 401, "a rejected webhook carrying payloads")

        ids = {k: kt.wait_for(lambda k=k: event_of(ep, k), 10)
               for k in ("pe-ok", "pe-die", "pe-retry", "pe-" + XSS_SCRIPT)}
        finals = {k: (kt.final_event(ep, v, 30) or {}).get("status") for k, v in ids.items()}
        t.eq(finals, {"pe-ok": "handled", "pe-die": "dead", "pe-retry": "handled",
                      "pe-" + XSS_SCRIPT: "handled"}, "the events end handled, dead, handled")
        t.eq(len(kt.event_attempts(ep, ids["pe-retry"])), 2, "the retried event ran twice")
        failed_hooks = kt.wait_for(lambda: ep.query(
            "SELECT count(*) AS n FROM hooks WHERE state = 'failed'")[0]["n"] >= 4, 30)
        t.ok(failed_hooks, "completion hooks answered 410 are failed")
        rc, _, err = ep.knockctl("requeue", ids["pe-die"])
        t.eq(rc, 0, "knockctl requeue writes an audit row", err)
        kt.wait_for(lambda: (kt.event_row(ep, ids["pe-die"]) or {}).get("status") == "dead", 20)

        fwd = browser.Forwarder(ep.admin)
        base = "http://localhost:%d" % fwd.port
        b = browser.Browser()
        page = b.open()

        # ---- dashboard ----
        text = check_page(t, page, base + "/", "dashboard")
        daemons = page.eval("[...document.querySelectorAll('#daemons tr[data-daemon]')].map("
                            "r => [r.dataset.daemon, r.cells[1].textContent.trim()])")
        t.eq(daemons, [["ingress", "running"], ["worker", "running"], ["deliver", "running"]],
             "dashboard: each daemon's state from its heartbeat")
        counts = page.eval("Object.fromEntries([...document.querySelectorAll('#queue tr')].map("
                           "r => [r.dataset.status, +r.cells[1].textContent]))")
        t.eq((counts.get("handled"), counts.get("dead")), (3, 1), "dashboard: events by status",
             counts)
        t.ok("Newest dead events" in text and "cannot process this one" not in text
             and page.eval("document.querySelector('#attention ul.dead').textContent")
             .count(ids["pe-die"]) == 1, "dashboard: the dead event needs attention")
        t.ok(page.eval("document.querySelectorAll('#attention ul.hooks-failed li').length") >= 4,
             "dashboard: failed hooks need attention")
        t.ok(page.eval("document.querySelectorAll('svg.spark rect').length") >= 1,
             "dashboard: a throughput sparkline")
        t.ok("knockctl -e con status" in text, "dashboard: names the knockctl command")
        graphs = page.eval("[...document.querySelectorAll('#prometheus a')].map(a => a.href)")
        exprs = [urllib.parse.parse_qs(urllib.parse.urlsplit(g).query).get("g0.expr", [""])[0]
                 for g in graphs]
        t.ok(len(graphs) >= 5 and all(g.startswith("http://prometheus.example:9090/graph?")
                                      for g in graphs)
             and 'sum by (result) (rate(knock_deliveries_total{endpoint="con"}[5m]))' in exprs,
             "dashboard: links to Prometheus graphs of this endpoint's series", exprs)
        page.screenshot(os.path.join(ARTIFACTS, "dashboard.png"))
        t.diag("artifact: " + os.path.join(ARTIFACTS, "dashboard.png"))

        # ---- events ----
        text = check_page(t, page, base + "/events", "events")
        listed = page.eval("[...document.querySelectorAll('#events tbody tr')].map("
                           "r => r.cells[1].textContent)")
        t.eq(sorted(listed), sorted(ids.values()), "events: every event listed")
        t.ok(XSS_SCRIPT in text and XSS_IMG in text, "events: the payloads are shown as text")
        url = base + "/events?status=dead"
        check_page(t, page, url, "events?status=dead")
        listed = page.eval("[...document.querySelectorAll('#events tbody tr')].map("
                           "r => r.cells[1].textContent)")
        t.eq(listed, [ids["pe-die"]], "events: the status filter")
        check_page(t, page, base + "/events?limit=2", "events?limit=2")
        first = page.eval("[...document.querySelectorAll('#events tbody tr')].map("
                          "r => r.cells[1].textContent)")
        older = page.eval("(document.querySelector('a[rel=next]') || {}).href")
        t.ok(older and "before=" in older, "events: a page of 2 links to older ones", older)
        check_page(t, page, older, "events, older page")
        second = page.eval("[...document.querySelectorAll('#events tbody tr')].map("
                           "r => r.cells[1].textContent)")
        t.ok(len(first) == 2 and len(second) == 2 and not set(second) & set(first)
             and set(first) | set(second) == set(ids.values()),
             "events: the older page holds the other two", (first, second))

        # ---- trace: the retried event ----
        url = base + "/event?id=" + ids["pe-retry"]
        text = check_page(t, page, url, "trace")
        tl = page.eval("[...document.querySelectorAll('table.timeline tbody tr')].map("
                       "r => r.className + ':' + r.cells[3].textContent)")
        t.eq([x for x in tl if x.startswith("tl-attempt")],
             ["tl-attempt:tempfail", "tl-attempt:success"], "trace: both attempts on the timeline", tl)
        t.ok("tl-delivery:200" in tl and "tl-hook:failed" in tl and "tl-finished:handled" in tl,
             "trace: the delivery, the hook and the end on the timeline", tl)
        t.ok("try again later" in text and "exit 75" in text,
             "trace: the attempt's exit code and output")
        t.ok("knockctl -e con replay " + ids["pe-retry"] in text,
             "trace: names the knockctl command for a handled event")
        page.screenshot(os.path.join(ARTIFACTS, "trace.png"))
        t.diag("artifact: " + os.path.join(ARTIFACTS, "trace.png"))

        # ---- trace: the payloads ----
        url = base + "/event?id=" + urllib.parse.quote(ids["pe-" + XSS_SCRIPT])
        text = check_page(t, page, url, "trace of the payload event")
        t.ok(text.count(XSS_SCRIPT) >= 3 and text.count(XSS_IMG) >= 2,
             "trace: id, header, type and body payloads shown as text", text[:2000])
        t.ok("<script>window.__xss=3</script>" in text, "trace: the handler's output as text")
        url = base + "/event?id=" + urllib.parse.quote("pe-" + XSS_SCRIPT)
        check_page(t, page, url, "trace by the provider's id")
        t.eq(page.eval("document.querySelector('section.event h2 code').textContent"),
             ids["pe-" + XSS_SCRIPT], "trace: found by the provider's id too")

        # ---- rejected ----
        text = check_page(t, page, base + "/rejected", "rejected")
        rows = page.eval("[...document.querySelectorAll('#rejected tbody tr')].map("
                         "r => [r.cells[2].textContent, r.cells[3].textContent, r.cells[5].textContent])")
        t.eq(rows, [["401", "no signature matches", XSS_SCRIPT]],
             "rejected: the 401 with its reason and its claimed type")
        link = page.eval("document.querySelector('#rejected tbody a').href")
        text = check_page(t, page, link, "a rejected delivery")
        t.ok("no signature matches" in text and XSS_IMG in text,
             "rejected delivery: reason and payload id as text")

        # ---- hooks ----
        text = check_page(t, page, base + "/hooks?state=failed", "hooks")
        states = page.eval("[...document.querySelectorAll('#hooks tbody tr')].map("
                           "r => r.cells[4].textContent + ' ' + r.cells[6].textContent)")
        t.ok(len(states) >= 4 and all(s == "failed 410" for s in states),
             "hooks: the failed hooks with their last status", states)
        t.ok("knockctl -e con redeliver-hook --failed --since 1d" in text,
             "hooks: names the knockctl command")

        # ---- audit ----
        text = check_page(t, page, base + "/audit", "audit")
        actions = page.eval("[...document.querySelectorAll('#audit tbody tr')].map("
                            "r => r.cells[2].textContent)")
        t.ok("requeue" in actions and ids["pe-die"] in text, "audit: the requeue and its id",
             actions)

        # ---- probe (the form; its verdicts are test-console-probe's) ----
        check_page(t, page, base + "/probe", "probe")
        body = b'{"n":6}'
        raw = ("POST / HTTP/1.1\r\nHost: x\r\nX-Hub-Signature-256: %s\r\nX-GitHub-Delivery: pe-ok"
               "\r\nX-GitHub-Event: ok\r\nContent-Length: %d\r\n\r\n%s"
               % (kt.sign_github(SECRET, body), len(body), body.decode()))
        page.eval("document.getElementById('request').value = %s; "
                  "document.querySelector('form.probe').submit(); 1" % json.dumps(raw))
        page.wait_for("document.getElementById('verdict') !== null", 10)
        v = page.eval("[document.getElementById('verdict').dataset.status, "
                      "document.getElementById('verdict').textContent]")
        t.ok(v[0] == "200" and ids["pe-ok"] in v[1],
             "probe form: 200, a duplicate of the stored event", v)

        # ---- live ----
        check_page(t, page, base + "/live", "live", want_scripts=["/static/live.js"])
        ready = page.wait_for("document.getElementById('live-status').dataset.state === 'ready'", 10)
        t.ok(ready, "live: the stream is connected")
        body = b'{"n":7}'
        post(ep, body, "pe-live" + XSS_IMG, "ok")
        shown = page.wait_for("document.querySelector('#feed').textContent.includes('pe-live')", 10)
        t.ok(shown, "live: a webhook sent after the page loaded is shown")
        ran = page.wait_for("[...document.querySelectorAll('#feed tr.live-attempt')].some("
                            "r => r.textContent.includes('success'))", 10)
        t.ok(ran, "live: its handler's attempt is shown")
        dom = page.eval(DOM_CLEAN)
        t.ok(dom["xss"] is None and dom["imgs"] == 0 and dom["handlers"] == 0 and not page.dialogs,
             "live: the payload id is text there too", dom)
        page.screenshot(os.path.join(ARTIFACTS, "live.png"))

        # Stopped with the live view still open: the stream ends, the exit is clean.
        t.eq(ep.stop("ingress"), 0, "the ingress stops cleanly while a browser watches")
        t.ok("Sanitizer" not in ep.stderr("ingress"), "no sanitizer report from the ingress",
             ep.stderr("ingress")[-3000:])
    finally:
        if b:
            b.close()
        if fwd:
            fwd.close()
        receiver.shutdown()
        ep.cleanup()
    t.done()


if __name__ == "__main__":
    main()
