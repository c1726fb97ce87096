# SPDX-License-Identifier: MIT
"""knocktest — helpers for knock's integration tests (Python 3 stdlib only).

Tests start the real binaries from the build directory (KNOCK_BUILD_DIR, set
by meson): the ingress under systemd-socket-activate with named fds, every
daemon with a real NOTIFY_SOCKET listener, and, where logging is checked, a
private systemd-journald in its own mount namespace (see journal_namespace).
Output is TAP: Tap.ok() prints "ok N - what", Tap.done() the plan.

The store engine is chosen by KNOCK_TEST_STORE: `sqlite` (the default: each
endpoint's STATE/NAME.db) or `postgresql` (issue 19: the process starts one
private cluster with tests/pgcluster on its first Endpoint and removes it at
exit; every Endpoint gets a fresh database in it, which write_config() names
in a `store = postgresql:CONNINFO` line; the endpoint's rows are in its
schema knock_NAME). Endpoint.db() and Endpoint.query() read and write rows
the same way on both (see PgConnection); tests of what only SQLite has
(WAL, the .db file, backups) skip on PostgreSQL with sqlite_only().
"""

import atexit
import base64
import hashlib
import hmac
import http.client
import http.server
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import time

BUILD = os.environ.get("KNOCK_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../build"))
SOURCE = os.environ.get("KNOCK_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "../.."))

BINARIES = {
    "knock-ingress": "daemons/ingress/knock-ingress",
    "knock-worker": "daemons/worker/knock-worker",
    "knock-deliver": "daemons/deliver/knock-deliver",
    "knock-maint": "daemons/maint/knock-maint",
    "knockctl": "daemons/knockctl/knockctl",
}


def binary(name):
    return os.path.join(BUILD, BINARIES[name])


ENGINE = os.environ.get("KNOCK_TEST_STORE") or "sqlite"
if ENGINE not in ("sqlite", "postgresql"):
    raise SystemExit("knocktest: KNOCK_TEST_STORE=%s: must be sqlite or postgresql" % ENGINE)


class Tap:
    """TAP producer. Failures print diagnostics as '#' lines."""

    def __init__(self):
        self.n = 0
        self.failed = 0

    def ok(self, cond, what, diag=None):
        self.n += 1
        if not cond:
            self.failed += 1
        print(("ok" if cond else "not ok") + " %d - %s" % (self.n, what), flush=True)
        if not cond and diag is not None:
            for line in str(diag).splitlines()[:40]:
                print("#   " + line, flush=True)
        return bool(cond)

    def eq(self, got, want, what, diag=None):
        extra = "" if diag is None else "\n" + str(diag)
        return self.ok(got == want, what, "got %r, want %r%s" % (got, want, extra))

    def skip_all(self, why):
        print("1..0 # SKIP " + why, flush=True)
        sys.exit(0)

    def skip(self, what, why):
        """One test point that did not run: "ok N - what # SKIP why"."""
        return self.ok(True, "%s # SKIP %s" % (what, why))

    def diag(self, msg):
        for line in str(msg).splitlines():
            print("# " + line, flush=True)

    def done(self):
        print("1..%d" % self.n, flush=True)
        sys.exit(1 if self.failed else 0)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rss_kb(pid):
    """The resident set of process pid, in KiB (0 when it is gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def wait_for(pred, timeout=10.0, interval=0.01):
    """pred() until it is true or timeout passed. A socket that is not
    there or not listening yet (the predicate's connect raising) is "not
    yet"; the last try lets it raise."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            v = pred()
        except (ConnectionError, FileNotFoundError):
            v = None
        if v:
            return v
        time.sleep(interval)
    return pred()


class NotifyListener:
    """A real NOTIFY_SOCKET: an AF_UNIX datagram socket collecting messages."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.messages = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            with self.lock:
                self.messages.append(data.decode(errors="replace"))

    def seen(self, key):
        """Every value of KEY= received so far."""
        out = []
        with self.lock:
            for m in self.messages:
                for line in m.split("\n"):
                    if line.startswith(key + "="):
                        out.append(line[len(key) + 1:])
        return out

    def close(self):
        self.sock.close()


def read_to_close(s):
    """Every byte the peer sends on S until it closes; closes S."""
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return data


def http_exchange(s, request):
    """Sends REQUEST on the connected socket S, reads until the server
    closes, closes S; (status, body bytes)."""
    s.sendall(request)
    head, _, body = read_to_close(s).partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


# ---- the store engine ---------------------------------------------------------------

def knock_host(env=None):
    """This host's name in a PostgreSQL endpoint's claim holders and daemons
    rows, as knock_host() (util.h) makes it: KNOCK_HOST of env (the
    environment when None), else the host name; blanks and control
    characters as _, at most 64 bytes."""
    h = (env if env is not None else os.environ).get("KNOCK_HOST") or socket.gethostname()
    h = h.encode()[:64].decode(errors="ignore")
    return "".join("_" if ord(c) <= 32 or ord(c) == 127 else c for c in h) or "localhost"


def holder_name(engine, role, pid, env=None):
    """A claim holder as the daemons write claimed_by (lease.h): ROLE:PID on
    SQLite, ROLE:PID@HOST on PostgreSQL (hosts may share the store)."""
    name = "%s:%d" % (role, pid)
    return name + "@" + knock_host(env) if engine == "postgresql" else name


def daemon_key(engine, role, env=None):
    """The daemons row of role on this host: ROLE, ROLE@HOST on PostgreSQL."""
    return role + "@" + knock_host(env) if engine == "postgresql" else role


def sqlite_only(t, why):
    """Ends a test that exercises what only the SQLite engine has (the .db
    file, WAL, backups, file modes) with a SKIP plan on PostgreSQL."""
    if ENGINE == "postgresql":
        t.skip_all("SQLite-only: " + why)


def _psycopg2():
    try:
        import psycopg2
        import psycopg2.extensions
        import psycopg2.extras
    except ImportError as e:
        raise RuntimeError("KNOCK_TEST_STORE=postgresql needs psycopg2: Debian's python3-psycopg2 "
                           "(scripts/install-deps --test), imported by /usr/bin/python3 "
                           "(this is %s): %s" % (sys.executable, e))
    return psycopg2


class PgCluster:
    """The process's private PostgreSQL cluster (tests/pgcluster start DIR),
    started by the first Endpoint; stopped and its directory removed at exit
    (atexit; SIGTERM, meson's timeout, exits through it too)."""

    _one = None

    @classmethod
    def get(cls):
        if cls._one is None:
            cls._one = PgCluster()
        return cls._one

    def __init__(self):
        _psycopg2()
        self.pid = os.getpid()
        self.dir = tempfile.mkdtemp(prefix="knock-pg-")
        self.databases = 0
        atexit.register(self.remove)
        try:
            if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
                signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
        except ValueError:
            pass  # not the main thread: atexit only
        script = os.path.join(SOURCE, "tests", "pgcluster")
        if not os.access(script, os.X_OK):
            raise RuntimeError("KNOCK_TEST_STORE=postgresql needs %s" % script)
        p = subprocess.run([script, "start", self.dir], capture_output=True, text=True,
                           timeout=180)
        lines = p.stdout.strip().splitlines()
        if p.returncode != 0 or not lines:
            raise RuntimeError("tests/pgcluster start %s failed (exit %d): %s"
                               % (self.dir, p.returncode, p.stderr.strip()))
        self.conninfo = lines[-1]

    def conninfo_for(self, database):
        """The cluster's conninfo naming database instead of its own."""
        if re.search(r"(^|\s)dbname=\S+", self.conninfo):
            return re.sub(r"(^|\s)dbname=\S+", r"\1dbname=" + database, self.conninfo)
        return self.conninfo + " dbname=" + database

    def create_database(self):
        """A new, empty database: (its name, a conninfo naming it)."""
        psycopg2 = _psycopg2()
        self.databases += 1
        name = "knock_test_%d" % self.databases
        c = psycopg2.connect(self.conninfo)
        try:
            c.autocommit = True
            c.cursor().execute('CREATE DATABASE "%s"' % name)
        finally:
            c.close()
        return name, self.conninfo_for(name)

    def remove(self):
        if os.getpid() != self.pid or self.dir is None:
            return  # a forked child exits: the cluster is its parent's
        d, self.dir = self.dir, None
        subprocess.run([os.path.join(SOURCE, "tests", "pgcluster"), "stop", d],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
        if os.environ.get("KNOCK_TEST_KEEP"):
            print("# kept the PostgreSQL cluster in " + d, flush=True)
        else:
            shutil.rmtree(d, ignore_errors=True)


def pg_sql(sql, args):
    """SQLite's statement text and arguments as psycopg2 takes them: each `?`
    outside '...' and "..." becomes %s, and every % is doubled (psycopg2
    formats the whole text). Without arguments the text is sent as it is."""
    if isinstance(args, dict):
        raise TypeError("pg_sql: named parameters are not supported (use ?)")
    if not args:
        return sql, None
    return _pg_placeholders(sql), tuple(args)


def _pg_placeholders(sql):
    out, quote = [], None
    for ch in sql:
        if ch == "%":
            out.append("%%")
        elif quote:
            out.append(ch)
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
            out.append(ch)
        elif ch == "?":
            out.append("%s")
        else:
            out.append(ch)
    return "".join(out)


_PG_TYPES = None


def _pg_types():
    """Typecasters giving rows the values the store itself reads (store-pg:
    bytea is a blob, booleans and integral numerics are integers): bytes,
    not memoryview; 1/0, not True/False; 3, not Decimal('3')."""
    global _PG_TYPES
    if _PG_TYPES is None:
        psycopg2 = _psycopg2()
        ext = psycopg2.extensions

        def blob(v, cur):
            b = psycopg2.BINARY(v, cur)
            return None if b is None else bytes(b)

        def boolean(v, cur):
            return None if v is None else int(v == "t")

        def numeric(v, cur):
            if v is None:
                return None
            return int(v) if re.fullmatch(r"-?\d+", v) else float(v)

        _PG_TYPES = [ext.new_type(psycopg2.BINARY.values, "KNOCK_BLOB", blob),
                     ext.new_type((16,), "KNOCK_BOOL", boolean),
                     ext.new_type((1700,), "KNOCK_NUMERIC", numeric)]
    return _PG_TYPES


_DML = re.compile(r"\s*(INSERT|UPDATE|DELETE|REPLACE)\b", re.I)


class PgConnection:
    """What the tests use of sqlite3.Connection, on one endpoint's schema
    (search_path knock_NAME): execute(sql, args) with `?` placeholders
    returning a cursor whose rows index by position and by name, commit(),
    rollback(), close(), and `with c:` (commits, or rolls back on an
    exception). As sqlite3's default, a statement that changes rows opens a
    transaction that only commit() ends (close() without it rolls back);
    with isolation_level=None every statement commits on its own, and BEGIN
    and COMMIT may be sent as statements."""

    def __init__(self, conninfo, schema, isolation_level=""):
        psycopg2 = _psycopg2()
        self.conn = psycopg2.connect(conninfo)
        for t in _pg_types():
            psycopg2.extensions.register_type(t, self.conn)
        self.conn.autocommit = True
        self.implicit = isolation_level is not None
        cur = self.conn.cursor()
        cur.execute("SET search_path TO " + psycopg2.extensions.quote_ident(schema, self.conn))
        cur.close()

    def _in_transaction(self):
        return self.conn.get_transaction_status() != _psycopg2().extensions.TRANSACTION_STATUS_IDLE

    def _cursor(self, sql):
        """A cursor for sql, after the BEGIN sqlite3 would send before it."""
        cur = self.conn.cursor(cursor_factory=_psycopg2().extras.DictCursor)
        if self.implicit and _DML.match(sql) and not self._in_transaction():
            cur.execute("BEGIN")
        return cur

    def execute(self, sql, args=()):
        cur = self._cursor(sql)
        cur.execute(*pg_sql(sql, args))
        return cur

    def executemany(self, sql, seq):
        """execute() for each argument tuple of seq, sent in pages."""
        cur = self._cursor(sql)
        _psycopg2().extras.execute_batch(cur, _pg_placeholders(sql), [tuple(a) for a in seq],
                                         page_size=500)
        return cur

    def commit(self):
        if self._in_transaction():
            self.conn.cursor().execute("COMMIT")

    def rollback(self):
        if self._in_transaction():
            self.conn.cursor().execute("ROLLBACK")

    def close(self):
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.commit()
        else:
            self.rollback()
        return False


class Store:
    """Where the endpoints of one configuration directory keep their rows:
    on SQLite STATE_DIR/NAME.db, as the daemons make it; on PostgreSQL a
    database of its own in the process's cluster, one schema knock_NAME per
    endpoint."""

    def __init__(self, state_dir):
        self.engine = ENGINE
        self.state_dir = state_dir
        self.database = self.conninfo = None
        if self.engine == "postgresql":
            self.database, self.conninfo = PgCluster.get().create_database()

    def db_path(self, name):
        return os.path.join(self.state_dir, name + ".db")

    @staticmethod
    def schema(name):
        return "knock_" + name

    def config_text(self, text):
        """An endpoint file's text as this engine needs it. On PostgreSQL a
        `store = postgresql:CONNINFO` line is added at the end, under an
        [endpoint] header of its own unless [endpoint] is the last section
        (the lines above keep their numbers, which errors cite); a file that
        sets store itself is left as it is. On SQLite: unchanged."""
        if self.engine != "postgresql" or re.search(r"^\s*store\s*=", text, re.M):
            return text
        sections = re.findall(r"^\s*\[([^\]\n]*)\]", text, re.M)
        if text and not text.endswith("\n"):
            text += "\n"
        if not sections or sections[-1].strip() != "endpoint":
            text += "[endpoint]\n"
        return text + "store = postgresql:%s\n" % self.conninfo

    def connect(self, name, isolation_level="", timeout=5.0):
        """A connection to endpoint name's rows (sqlite3.connect's defaults)."""
        if self.engine == "postgresql":
            return PgConnection(self.conninfo, self.schema(name), isolation_level)
        c = sqlite3.connect(self.db_path(name), timeout=timeout, isolation_level=isolation_level)
        c.row_factory = sqlite3.Row
        return c

    def exists(self, name):
        """Whether endpoint name's store has been created (the .db file; the
        schema and its deliveries table)."""
        if self.engine != "postgresql":
            return os.path.exists(self.db_path(name))
        c = PgConnection(self.conninfo, self.schema(name), None)
        try:
            table = _psycopg2().extensions.quote_ident(self.schema(name), c.conn) + ".deliveries"
            return c.execute("SELECT to_regclass(?) IS NOT NULL", (table,)).fetchone()[0] == 1
        finally:
            c.close()


class Endpoint:
    """A temporary endpoint: config, state and runtime directories, and its
    store (engine: 'sqlite' or 'postgresql', from KNOCK_TEST_STORE)."""

    def __init__(self, name="demo", tmp=None):
        self.name = name
        self.tmp = tmp or tempfile.mkdtemp(prefix="knock-test-")
        self.config_dir = os.path.join(self.tmp, "etc")
        self.state_dir = os.path.join(self.tmp, "state")
        self.runtime_dir = os.path.join(self.tmp, "run")
        for d in (self.config_dir + "/endpoints", self.state_dir, self.runtime_dir):
            os.makedirs(d, exist_ok=True)
        self.port = free_port()
        self.admin = os.path.join(self.runtime_dir, name + ".admin")
        self.procs = {}
        self.notify = {}
        self.store = Store(self.state_dir)
        self.engine = self.store.engine
        self._pg = None  # query()'s connection on PostgreSQL
        self.env = dict(os.environ)
        self.env.update({
            "KNOCK_CONFIG_DIR": self.config_dir,
            "KNOCK_STATE_DIR": self.state_dir,
            "KNOCK_RUNTIME_DIR": self.runtime_dir,
            "KNOCK_LOG": os.environ.get("KNOCK_LOG", "stderr"),
            # The web console's style sheet and script, from the source tree.
            "KNOCK_CONSOLE_DIR": os.path.join(SOURCE, "console"),
        })
        self.env.pop("NOTIFY_SOCKET", None)
        self.env.pop("LISTEN_FDS", None)

    @property
    def db_path(self):
        return os.path.join(self.state_dir, self.name + ".db")

    def holder(self, role, pid):
        """claimed_by of this endpoint's daemon role with pid (holder_name)."""
        return holder_name(self.engine, role, pid, self.env)

    def daemon_key(self, role):
        """The daemons row of role on this host (daemon_key)."""
        return daemon_key(self.engine, role, self.env)

    def write_config(self, text, name=None):
        """Writes endpoints/NAME.conf (this endpoint's by default); on
        PostgreSQL with a store line naming this endpoint's database."""
        path = os.path.join(self.config_dir, "endpoints", (name or self.name) + ".conf")
        with open(path, "w") as f:
            f.write(self.store.config_text(text))
        return path

    def write_global(self, text):
        with open(os.path.join(self.config_dir, "knock.conf"), "w") as f:
            f.write(text)

    def _spawn(self, key, argv, env, stderr_path):
        errf = open(stderr_path, "ab")
        p = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=errf,
                             start_new_session=True)
        errf.close()
        self.procs[key] = p
        return p

    def start_ingress(self, activate=True, admin=True, extra_env=None, wait_ready=True):
        """Starts knock-ingress under systemd-socket-activate (named fds
        'public' and 'admin') with a NOTIFY_SOCKET listener."""
        nl = self._notify_listener("ingress")
        env = dict(self.env)
        env["NOTIFY_SOCKET"] = nl.path
        if extra_env:
            env.update(extra_env)
        argv = []
        if activate:
            argv = ["systemd-socket-activate", "-l", "127.0.0.1:%d" % self.port]
            names = "public"
            if admin:
                argv += ["-l", self.admin]
                names += ":admin"
            argv += ["--fdname=" + names]
            for k in ("KNOCK_CONFIG_DIR", "KNOCK_STATE_DIR", "KNOCK_RUNTIME_DIR", "KNOCK_LOG",
                      "NOTIFY_SOCKET", "KNOCK_FAKE_NOW_MS", "KNOCK_LOG_LEVEL", "ASAN_OPTIONS",
                      "UBSAN_OPTIONS", "WATCHDOG_USEC", "KNOCK_CONSOLE_DIR"):
                if k in env:
                    argv += ["-E", "%s=%s" % (k, env[k])]
        argv += [binary("knock-ingress"), self.name]
        p = self._spawn("ingress", argv, env, os.path.join(self.tmp, "ingress.stderr"))
        if activate:
            # systemd-socket-activate binds before it execs, one listener
            # after the other: wait for the port and for the admin socket.
            wait_for(lambda: self._port_open(), timeout=10)
            if admin:
                wait_for(lambda: os.path.exists(self.admin), timeout=10)
        if wait_ready and not activate:
            wait_for(lambda: nl.seen("READY"), timeout=10)
        return p

    def _port_open(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def _notify_listener(self, role):
        path = os.path.join(self.runtime_dir, "notify-%s-%d.sock" % (role, len(self.notify)))
        if os.path.exists(path):
            os.unlink(path)
        nl = NotifyListener(path)
        self.notify[role] = nl
        return nl

    def start(self, daemon, args=None, extra_env=None, wait_ready=True):
        """Starts knock-worker/knock-deliver NAME with a NOTIFY_SOCKET listener."""
        role = daemon.replace("knock-", "")
        nl = self._notify_listener(role)
        env = dict(self.env)
        env["NOTIFY_SOCKET"] = nl.path
        if extra_env:
            env.update(extra_env)
        argv = [binary(daemon)] + (args if args is not None else [self.name])
        p = self._spawn(role, argv, env, os.path.join(self.tmp, role + ".stderr"))
        if wait_ready:
            wait_for(lambda: nl.seen("READY") or p.poll() is not None, timeout=15)
        return p

    def stop(self, role, sig=signal.SIGTERM, timeout=15):
        p = self.procs.get(role)
        if not p or p.poll() is not None:
            return p.returncode if p else None
        try:
            os.kill(p.pid, sig)
        except ProcessLookupError:
            pass
        try:
            return p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            return p.wait()

    def kill9(self, role):
        p = self.procs.get(role)
        if p and p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()

    def stderr(self, role):
        try:
            with open(os.path.join(self.tmp, role + ".stderr"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def cleanup(self):
        for role in list(self.procs):
            self.stop(role, timeout=5)
        for nl in self.notify.values():
            nl.close()
        if self._pg is not None:
            self._pg.close()
            self._pg = None
        if os.environ.get("KNOCK_TEST_KEEP"):
            print("# kept " + self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # ---- HTTP -------------------------------------------------------------

    def request(self, method, path="/", body=b"", headers=None, timeout=10, port=None):
        conn = http.client.HTTPConnection("127.0.0.1", port or self.port, timeout=timeout)
        if isinstance(body, str):
            body = body.encode()
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        hdrs = {k.lower(): v for k, v in resp.getheaders()}
        conn.close()
        return resp.status, hdrs, data

    def post(self, body, headers=None, path="/"):
        return self.request("POST", path, body, headers)

    def admin_get(self, path):
        """GET on the admin unix socket."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(self.admin)
        return http_exchange(
            s, ("GET %s HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n" % path).encode())

    def admin_request(self, method, path, body=b"", headers=None):
        """A request on the admin unix socket: (status, {header: value}, body)."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(self.admin)
        head = "%s %s HTTP/1.1\r\nConnection: close\r\nContent-Length: %d\r\n" % (
            method, path, len(body))
        hdrs = {"Host": "localhost"}
        hdrs.update(headers or {})
        head += "".join("%s: %s\r\n" % kv for kv in hdrs.items())
        s.sendall(head.encode() + b"\r\n" + body)
        rawhead, _, rbody = read_to_close(s).partition(b"\r\n\r\n")
        lines = rawhead.decode("latin-1").split("\r\n")
        rh = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            rh[k.strip().lower()] = v.strip()
        return int(lines[0].split(" ")[1]), rh, rbody

    # ---- database and CLI -----------------------------------------------

    def db(self, isolation_level="", timeout=30):
        """A connection to the endpoint's rows, as sqlite3.connect() makes
        one (rows by position and by name; `?` placeholders) on either
        engine: close it, and commit what it wrote."""
        return self.store.connect(self.name, isolation_level=isolation_level, timeout=timeout)

    def query(self, sql, args=()):
        """The rows of one statement, as dicts."""
        if self.engine == "postgresql":
            return self._pg_query(sql, args)
        c = self.db()
        try:
            return [dict(r) for r in c.execute(sql, args).fetchall()]
        finally:
            c.close()

    def _pg_query(self, sql, args):
        psycopg2 = _psycopg2()
        for again in (True, False):
            if self._pg is None:
                self._pg = self.store.connect(self.name, isolation_level=None)
            try:
                cur = self._pg.execute(sql, args)
                return [dict(r) for r in cur.fetchall()] if cur.description else []
            except (psycopg2.OperationalError, psycopg2.InterfaceError):
                # The server cut the session (a restart): once more on a new one.
                self._pg.close()
                self._pg = None
                if not again:
                    raise

    def store_exists(self):
        """Whether the endpoint's store was created (a daemon or knockctl
        migrate made the .db file, or the schema)."""
        return self.store.exists(self.name)

    def knockctl(self, *args, env=None):
        e = dict(self.env)
        if env:
            e.update(env)
        p = subprocess.run([binary("knockctl"), "-e", self.name] + list(args), env=e,
                           capture_output=True, text=True, timeout=60)
        return p.returncode, p.stdout, p.stderr


# ---- signing (independent of the C code: written from the providers' docs) ----

def sign_github(secret, body):
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def sign_stripe(secret, body, ts):
    mac = hmac.new(secret.encode(), str(ts).encode() + b"." + body, hashlib.sha256).hexdigest()
    return "t=%d,v1=%s" % (ts, mac)


def sign_standard(secret, msg_id, ts, body):
    key = base64.b64decode(secret[len("whsec_"):] + "==="[: (4 - len(secret[6:]) % 4) % 4])
    mac = hmac.new(key, ("%s.%d." % (msg_id, ts)).encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def github_headers(secret, body, delivery, event="push"):
    return {"X-Hub-Signature-256": sign_github(secret, body), "X-GitHub-Delivery": delivery,
            "X-GitHub-Event": event, "Content-Type": "application/json"}


def metric(text, name, labels=""):
    """The value of series NAME{LABELS} in /metrics text, or None."""
    m = re.search(r"^%s%s ([0-9.e+-]+)$" % (re.escape(name), re.escape(labels)), text, re.M)
    return float(m.group(1)) if m else None


class GithubSender:
    """Posts signed GitHub webhooks to ep: sender(etype, doc) sends doc as JSON
    (default {"n": i}) with a fresh delivery id; returns the event id, or None
    when the answer is not 200."""

    def __init__(self, ep, secret):
        self.ep, self.secret, self.n = ep, secret, 0

    def __call__(self, etype, doc=None):
        self.n += 1
        body = json.dumps(doc if doc is not None else {"n": self.n}).encode()
        st, _, data = self.ep.post(body, github_headers(self.secret, body, "d-%d" % self.n, etype))
        return json.loads(data)["event_id"] if st == 200 else None


def journal_namespace_available():
    return (os.geteuid() == 0 and shutil.which("unshare") is not None
            and os.path.exists("/lib/systemd/systemd-journald"))


# ---- shared by several tests ------------------------------------------------------------

class QuietHandler(http.server.BaseHTTPRequestHandler):
    """A keep-alive (HTTP/1.1) request handler that does not log: the base of
    every test receiver."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass


def write_script(ep, name, body):
    """An executable /bin/sh script in the endpoint's temporary directory."""
    path = os.path.join(ep.tmp, name)
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + body)
    os.chmod(path, stat.S_IRWXU)
    return path


def record_handler(ep, fields):
    """An exec: handler (python) that appends one line per run to a log: the
    values of fields (Python expressions over d, the JSON body, a, the
    attempt, and os) joined by spaces; then sleeps d["sleep"] (0.02 s) and
    exits d["exit"][attempt] (0). Returns (its path, the log's path)."""
    rec = os.path.join(ep.tmp, "records")
    os.makedirs(rec, exist_ok=True)
    log = os.path.join(rec, "ran.log")
    path = os.path.join(ep.tmp, "record.py")
    with open(path, "w") as f:
        f.write("#!/usr/bin/env python3\n"
                "import json, os, sys, time\n"
                "d = json.load(sys.stdin)\n"
                "a = os.environ['KNOCK_ATTEMPT']\n"
                "with open(%r, 'a') as f:\n"
                "    f.write(' '.join(str(v) for v in [%s]) + '\\n')\n"
                "time.sleep(d.get('sleep', 0.02))\n"
                "sys.exit(d.get('exit', {}).get(a, 0))\n" % (log, ", ".join(fields)))
    os.chmod(path, stat.S_IRWXU)
    return path, log


def log_lines(path):
    """The lines of a record_handler log, split into words ([] before it exists)."""
    try:
        with open(path) as f:
            return [l.split() for l in f if l.strip()]
    except OSError:
        return []



def make_pki(d, certs, ca_name="knock test CA"):
    """A CA (ca.pem, ca.key) in directory d and, for each (name, subjectAltName)
    in certs, a server certificate NAME.pem with its key NAME.key signed by it.
    Needs the openssl CLI."""
    def openssl(*args):
        subprocess.run(["openssl"] + list(args), cwd=d, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=" + ca_name)
    for name, san in certs:
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", name + ".key", "-out",
                name + ".csr", "-subj", "/CN=" + name)
        with open(os.path.join(d, name + ".ext"), "w") as f:
            f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\n"
                    "extendedKeyUsage=serverAuth\n" % san)
        openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", name + ".pem", "-days", "2", "-extfile", name + ".ext")

def insert_event(ep, eid, etype, body=b"{}", content_type="application/json", **columns):
    """A received event and its delivery, as the ingress stores them; columns
    (status='processing', claimed_by=..., ...) override the event's, in the
    same transaction, so a running worker never sees it otherwise."""
    now = int(time.time() * 1000)
    row = {"id": eid, "provider_event_id": "pe-" + eid, "event_type": etype, "status": "received",
           "delivery_id": "dlv_" + eid, "received_at": now, "updated_at": now}
    row.update(columns)
    c = ep.db()
    with c:
        c.execute("INSERT INTO events (%s) VALUES (%s)" % (", ".join(row), ", ".join("?" * len(row))),
                  tuple(row.values()))
        c.execute("INSERT INTO deliveries (id, event_id, received_at, signature_valid, "
                  "http_status, provider_event_id, event_type, content_type, body, body_bytes) "
                  "VALUES (?, ?, ?, 1, 200, ?, ?, ?, ?, ?)",
                  ("dlv_" + eid, eid, now, "pe-" + eid, etype, content_type, body, len(body)))
    c.close()



def event_row(ep, eid):
    """The events row of eid, or None."""
    rows = ep.query("SELECT * FROM events WHERE id = ?", (eid,))
    return rows[0] if rows else None


def event_attempts(ep, eid):
    """The attempts rows of eid in order; output as text (a handler may print
    bytes that are not UTF-8)."""
    rows = ep.query("SELECT * FROM attempts WHERE event_id = ? ORDER BY attempt, started_at",
                    (eid,))
    for r in rows:
        if isinstance(r.get("output"), bytes):
            r["output"] = r["output"].decode("utf-8", "replace")
    return rows


def final_event(ep, eid, timeout=20):
    """Waits for eid to end handled, dead or ignored: its row, or None."""
    return wait_for(lambda: (event_row(ep, eid) or {}).get("status") in ("handled", "dead", "ignored")
                    and event_row(ep, eid), timeout=timeout)

def wake(ep, role="worker", ignore_errors=False):
    """The wake-up datagram the ingress (role worker) or the worker (role
    deliver) sends after a commit. A missing socket raises unless
    ignore_errors (for a daemon that may not be up yet)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.sendto(b"w", os.path.join(ep.runtime_dir, "%s.%s.sock" % (ep.name, role)))
    except OSError:
        if not ignore_errors:
            raise
    finally:
        s.close()


def start_private_journald():
    """Inside a private mount namespace (run_journal_child): tmpfs over the
    journal directories and a private systemd-journald; returns its Popen."""
    for d in ("/run/systemd/journal", "/var/log/journal", "/run/log/journal"):
        os.makedirs(d, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", d], check=True)
    jd = subprocess.Popen(["/lib/systemd/systemd-journald"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    wait_for(lambda: os.path.exists("/run/systemd/journal/socket"), 5)
    return jd


def journal_records(*matches):
    """journalctl -o json for the matches ("FIELD=value"), as dicts."""
    p = subprocess.run(["journalctl", "-o", "json", "--no-pager"] + list(matches),
                       capture_output=True, text=True)
    return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]


def journal_child_main(child):
    """When this script runs as `--journal-child` (run_journal_child): starts
    a private journald, runs child(t) with a fresh Tap, stops the journald and
    ends the plan (exits). Otherwise returns at once."""
    if len(sys.argv) < 2 or sys.argv[1] != "--journal-child":
        return
    t = Tap()
    jd = start_private_journald()
    try:
        child(t)
    finally:
        jd.terminate()
        jd.wait()
    t.done()


def run_journal_child(t, script):
    """Runs `script --journal-child` in a private mount namespace and relays
    its ok/not ok lines into t, then checks that it exited 0. Skips (one ok
    line) where journal_namespace_available() says it cannot run."""
    if not journal_namespace_available():
        t.ok(True, "journal: skipped (needs root, unshare, systemd-journald) # SKIP")
        return
    p = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable,
                        os.path.abspath(script), "--journal-child"],
                       capture_output=True, text=True, timeout=120)
    for line in p.stdout.splitlines():
        if line.startswith("ok ") or line.startswith("not ok "):
            t.ok(line.startswith("ok "), line.split(" - ", 1)[1] if " - " in line else line)
        elif line.startswith("#"):
            print(line)
    t.ok(p.returncode == 0, "journal child exits 0", p.stderr[-2000:])
