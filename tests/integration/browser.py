# SPDX-License-Identifier: MIT
"""browser — Debian's chromium, headless, driven over the DevTools protocol
for the web console's tests (Python 3 stdlib only).

The protocol runs over a pipe (--remote-debugging-pipe: commands on fd 3,
answers and events on fd 4, each a JSON text ended by a NUL byte), so no
websocket client is needed. Browser.open() makes a page target; the Page
it returns navigates, evaluates JavaScript in the page (the test's own
code: the DevTools protocol is not subject to the page's CSP, the page's
scripts are), takes screenshots, and records what the page did: console
messages, JavaScript dialogs (an alert() an XSS payload would open) and
CSP violations (reported as console errors).

Forwarder gives the browser a TCP port for a unix socket, as `ssh -L
PORT:/run/knock/NAME.admin` does for an operator (knock(7), CONSOLE).
"""

import base64
import json
import os
import select
import shutil
import socket
import subprocess
import tempfile
import threading
import time

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def available():
    return CHROMIUM is not None


class BrowserError(Exception):
    pass


class Browser:
    def __init__(self, timeout=30):
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="knock-chromium-")
        to_chrome_r, self._w = os.pipe()
        self._r, from_chrome_w = os.pipe()
        for fd in (self._w, self._r):
            os.set_inheritable(fd, False)

        def child_fds():
            # Through high numbers first: either pipe end may itself be 3 or 4.
            os.dup2(to_chrome_r, 100)
            os.dup2(from_chrome_w, 101)
            os.dup2(100, 3)
            os.dup2(101, 4)
            os.close(100)
            os.close(101)

        args = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
                "--disable-extensions", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--remote-debugging-pipe",
                "--user-data-dir=" + self.profile, "--window-size=1280,900", "about:blank"]
        self.stderr = open(os.path.join(self.profile, "stderr"), "wb")
        self.proc = subprocess.Popen(args, close_fds=False, preexec_fn=child_fds,
                                     stdout=subprocess.DEVNULL, stderr=self.stderr)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._id = 0
        self.events = []  # (sessionId, method, params) not yet consumed

    # ---- the protocol ------------------------------------------------------------

    def _send(self, method, params=None, session=None):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        return self._id

    def _read_one(self, deadline):
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self._r], [], [], left)
            if not r:
                return None
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise BrowserError("chromium went away")
            self._buf += chunk
        msg, _, self._buf = self._buf.partition(b"\0")
        return json.loads(msg)

    def call(self, method, params=None, session=None, timeout=None):
        i = self._send(method, params, session)
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            m = self._read_one(deadline)
            if m is None:
                raise BrowserError("no answer to %s" % method)
            if m.get("id") == i:
                if "error" in m:
                    raise BrowserError("%s: %s" % (method, m["error"]))
                return m.get("result", {})
            if "method" in m:
                self.events.append((m.get("sessionId"), m["method"], m.get("params", {})))

    def pump(self, seconds=0.0):
        """Reads events for up to SECONDS."""
        deadline = time.monotonic() + seconds
        while True:
            m = self._read_one(deadline)
            if m is None:
                return
            if "method" in m:
                self.events.append((m.get("sessionId"), m["method"], m.get("params", {})))

    def open(self):
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget",
                            {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        for domain in ("Page", "Runtime", "Log"):
            self.call(domain + ".enable", session=session)
        # Dialogs are dismissed (and recorded), so a payload's alert() cannot hang the test.
        return page

    def close(self):
        try:
            self.call("Browser.close", timeout=5)
        except (BrowserError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._r, self._w):
            try:
                os.close(fd)
            except OSError:
                pass
        self.stderr.close()
        shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    def __init__(self, browser, session):
        self.b = browser
        self.session = session
        self.console = []  # (level, text)
        self.dialogs = []  # messages of alert/confirm/prompt
        self.responses = {}  # url -> (status, headers)
        self.b.call("Network.enable", session=session)

    def _collect(self):
        keep = []
        for sess, method, params in self.b.events:
            if sess != self.session:
                keep.append((sess, method, params))
                continue
            if method == "Runtime.consoleAPICalled":
                text = " ".join(str(a.get("value", a.get("description", "")))
                                for a in params.get("args", []))
                self.console.append((params.get("type"), text))
            elif method == "Log.entryAdded":
                e = params.get("entry", {})
                self.console.append((e.get("level"), e.get("text", "")))
            elif method == "Runtime.exceptionThrown":
                self.console.append(("exception", json.dumps(params.get("exceptionDetails", {}))))
            elif method == "Page.javascriptDialogOpening":
                self.dialogs.append(params.get("message"))
                self.b._send("Page.handleJavaScriptDialog", {"accept": False}, self.session)
            elif method == "Network.responseReceived":
                r = params.get("response", {})
                headers = {k.lower(): v for k, v in r.get("headers", {}).items()}
                self.responses[r.get("url")] = (r.get("status"), headers)
            elif method == "Page.loadEventFired":
                self._loaded = True
        self.b.events = keep

    def goto(self, url, timeout=20):
        self._loaded = False
        self.b.call("Page.navigate", {"url": url}, session=self.session)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.b.pump(0.05)
            self._collect()
            if self._loaded:
                break
        self.b.pump(0.1)
        self._collect()
        if not self._loaded:
            raise BrowserError("%s did not load" % url)

    def eval(self, expression):
        r = self.b.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                             "awaitPromise": True}, session=self.session)
        self._collect()
        if "exceptionDetails" in r:
            raise BrowserError("%s: %s" % (expression, r["exceptionDetails"]))
        return r.get("result", {}).get("value")

    def wait_for(self, expression, timeout=10):
        """Polls expression until it is true. A page that is navigating (a
        form just submitted) has no context to evaluate in for a moment:
        chromium answers "Inspected target navigated or closed" or "Cannot
        find context"; that is polled through, not a failure."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                v = self.eval(expression)
            except BrowserError as e:
                if "navigated" not in str(e) and "context" not in str(e):
                    raise
                v = None
            if v:
                return v
            self.b.pump(0.1)
            self._collect()
        return self.eval(expression)

    def text(self, selector="body"):
        return self.eval("(document.querySelector(%s) || {}).textContent || ''" % json.dumps(selector))

    def html(self):
        return self.eval("document.documentElement.outerHTML")

    def screenshot(self, path, full=True):
        params = {"format": "png"}
        if full:
            size = self.eval("[document.documentElement.scrollWidth, "
                             "document.documentElement.scrollHeight]")
            params["clip"] = {"x": 0, "y": 0, "width": max(size[0], 1280),
                              "height": min(max(size[1], 300), 6000), "scale": 1}
            params["captureBeyondViewport"] = True
        data = self.b.call("Page.captureScreenshot", params, session=self.session)["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        return path


class Forwarder:
    """127.0.0.1:PORT → the unix socket at PATH, one thread per connection."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._pipe, args=(c,), daemon=True).start()

    def _pipe(self, c):
        u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            u.connect(self.path)
        except OSError:
            c.close()
            return
        socks = [c, u]
        try:
            while True:
                r, _, _ = select.select(socks, [], [], 60)
                if not r:
                    continue
                for s in r:
                    data = s.recv(65536)
                    if not data:
                        return
                    (u if s is c else c).sendall(data)
        except OSError:
            pass
        finally:
            c.close()
            u.close()

    def close(self):
        self.closed = True
        self.sock.close()
