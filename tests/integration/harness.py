"""Shared helpers for the ringhttp integration tests (python3, stdlib only).

Each tests/integration/test_*.py is run as
    python3 test_x.py --binary PATH --source-dir DIR
and ends with a line "N passed, N failed"; it exits non-zero if anything failed.

What is here:
  - Server: starts the binary on 127.0.0.1 with --port 0 (plus extra flags), parses the port
    from the start-up line on stdout, stops it with SIGTERM and checks the exit code is 0.
  - connect / send / Reader.read_response: raw sockets with timeouts; a response reader that
    understands Content-Length, chunked and close-delimited bodies and 1xx interim responses.
  - wait_closed: waits for the peer to close (EOF or reset), bounded in time.
  - run_tests: runs the module's test_* functions in file order, each under a watchdog, checks
    after each that the shared server is still alive, prints the closing summary line.

Everything is bounded in time: every socket has a timeout and only 127.0.0.1 is used.
"""
import argparse
import atexit
import faulthandler
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback

HOST = "127.0.0.1"
SOCK_TIMEOUT = 5.0  # default timeout of every socket operation
TEST_WATCHDOG_S = 90  # a single test that takes longer than this aborts the script
SCRIPT_BUDGET_S = 240  # past this, remaining tests are not run (counted as failed)
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 15.0

ARGS = None  # argparse namespace: binary, source_dir


def parse_args(argv=None):
    global ARGS
    p = argparse.ArgumentParser(description="ringhttp integration tests")
    here = os.path.dirname(os.path.abspath(__file__))
    src = os.path.abspath(os.path.join(here, "..", ".."))
    p.add_argument("--binary", default=os.path.join(src, "build", "ringhttp"))
    p.add_argument("--source-dir", default=src)
    p.add_argument("-k", dest="only", default=None, help="run only tests whose name contains this")
    ARGS = p.parse_args(argv)
    if not os.access(ARGS.binary, os.X_OK):
        print("binary not found or not executable: %s" % ARGS.binary)
        print("0 passed, 1 failed")
        sys.exit(2)
    return ARGS


class TestFailure(AssertionError):
    pass


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def eq(actual, expected, what="value"):
    if actual != expected:
        raise TestFailure("%s: expected %r, got %r" % (what, _short(expected), _short(actual)))


def _short(v, n=300):
    if isinstance(v, (bytes, str)) and len(v) > n:
        return v[: n // 2] + (b"..." if isinstance(v, bytes) else "...") + v[-n // 2:]
    return v


# ---------------------------------------------------------------------------------------------
# The server process


class _Drain(threading.Thread):
    """Reads a pipe to the end so the server never blocks on a full pipe; keeps the text."""

    def __init__(self, pipe):
        super().__init__(daemon=True)
        self.pipe = pipe
        self.data = bytearray()
        self.lock = threading.Lock()

    def run(self):
        while True:
            try:
                chunk = self.pipe.read1(65536) if hasattr(self.pipe, "read1") else self.pipe.read(4096)
            except (OSError, ValueError):
                return
            if not chunk:
                return
            with self.lock:
                self.data += chunk

    def text(self):
        with self.lock:
            return bytes(self.data).decode("utf-8", "replace")


def _die_with_parent():
    """In the child before exec: SIGKILL it if this test process dies (no orphan servers)."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort; atexit below covers normal exits
        pass


def _kill_all_servers():
    for srv in Server.started:
        srv.kill()


class Server:
    """The ringhttp binary on 127.0.0.1 and an ephemeral port."""

    started = []  # every Server started, for the runner's crash check

    def __init__(self, *extra, threads=2, drain_timeout_ms=2000, drain_grace_ms=0):
        self.reported = False
        self.extra = list(extra)
        self.threads = threads
        self.drain_timeout_ms = drain_timeout_ms
        self.drain_grace_ms = drain_grace_ms  # 0: SIGTERM drains at once (test_deploy tests the grace)
        self.proc = None
        self.port = None
        self.stderr = None

    def start(self):
        cmd = [ARGS.binary, "--host", HOST, "--port", "0"]
        if self.threads is not None:
            cmd += ["--threads", str(self.threads)]
        if self.drain_timeout_ms is not None:
            cmd += ["--drain-timeout", str(self.drain_timeout_ms)]
        if self.drain_grace_ms is not None:
            cmd += ["--drain-grace", str(self.drain_grace_ms)]
        cmd += self.extra
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, preexec_fn=_die_with_parent)
        Server.started.append(self)
        self.stderr = _Drain(self.proc.stderr)
        self.stderr.start()
        line = self._read_start_line()
        m = re.match(r"^ringhttp \S+ listening on http://127\.0\.0\.1:(\d+)/ \(\d+ threads\)$",
                     line)
        if not m:
            self.kill()
            raise TestFailure("unexpected start-up line %r (cmd %s, stderr %r)"
                              % (line, " ".join(cmd), self.stderr.text()))
        self.port = int(m.group(1))
        check(self.port > 0, "port 0 reported")
        self.stdout = _Drain(self.proc.stdout)
        self.stdout.start()
        return self

    def _read_start_line(self):
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        buf = b""
        deadline = time.monotonic() + START_TIMEOUT_S
        fd = self.proc.stdout.fileno()
        try:
            while b"\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.kill()
                    raise TestFailure("server printed no start-up line within %.0f s (stderr %r)"
                                      % (START_TIMEOUT_S, self.stderr.text()))
                if not sel.select(left):
                    continue
                chunk = os.read(fd, 4096)
                if not chunk:
                    rc = self.proc.wait(timeout=5)
                    raise TestFailure("server exited with %s before listening (stderr %r)"
                                      % (rc, self.stderr.text()))
                buf += chunk
        finally:
            sel.close()
        return buf.split(b"\n", 1)[0].decode("utf-8", "replace")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT_S):
        """Stops with SIGTERM; raises if it does not exit 0 within the timeout."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.wait(timeout)
        if rc is None:
            self.kill()
            raise TestFailure("server did not exit within %.0f s of %s" % (timeout, sig.name))
        if rc != 0:
            self.reported = True
            raise TestFailure("server exited with %d after %s (stderr %r)"
                              % (rc, sig.name, self.stderr.text()[-2000:]))
        return rc

    def crashed(self):
        """The exit code if the process ended by itself with a signal or a non-zero code."""
        if self.proc is None or getattr(self, "_killed", False):
            return None
        rc = self.proc.poll()
        return rc if rc not in (None, 0) else None

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self._killed = True
            self.proc.kill()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def describe_death(self):
        rc = self.proc.poll()
        how = ("signal %s" % signal.Signals(-rc).name) if rc is not None and rc < 0 else "code %s" % rc
        return "server died (%s); stderr tail: %r" % (how, self.stderr.text()[-2000:])

    def url(self, path="/"):
        return "http://%s:%d%s" % (HOST, self.port, path)

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.stop()
        else:
            self.kill()
        return False


# ---------------------------------------------------------------------------------------------
# Sockets


def connect(port, timeout=SOCK_TIMEOUT, nodelay=True):
    s = socket.create_connection((HOST, port), timeout=timeout)
    s.settimeout(timeout)
    if nodelay:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def send(sock, data):
    sock.sendall(data)


def rst_close(sock):
    """Closes with a reset (SO_LINGER 0) rather than a FIN."""
    import struct
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def request(method, path, headers=None, body=None, version="HTTP/1.1", host=True):
    """Builds request bytes. headers: list of (name, value). Adds Host unless host=False and
    Content-Length when a body is given and no framing header is present."""
    lines = ["%s %s %s" % (method, path, version)]
    hdrs = list(headers or [])
    names = {n.lower() for n, _ in hdrs}
    if host and "host" not in names:
        lines.append("Host: %s" % HOST)
    for n, v in hdrs:
        lines.append("%s: %s" % (n, v))
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        lines.append("Content-Length: %d" % len(body))
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    if body is not None:
        raw += body if isinstance(body, bytes) else body.encode()
    return raw


def chunked(pieces, ext=None, trailers=None):
    """Encodes a chunked body. ext: a chunk-extension string appended to each size line."""
    out = b""
    for p in pieces:
        out += b"%x" % len(p)
        if ext:
            out += ext.encode()
        out += b"\r\n" + p + b"\r\n"
    out += b"0\r\n"
    for n, v in trailers or []:
        out += ("%s: %s\r\n" % (n, v)).encode()
    return out + b"\r\n"


def pattern(n, seed=0):
    """n bytes that are not periodic over short spans (catches reordered or lost pieces)."""
    out = bytearray()
    i = seed
    while len(out) < n:
        out += b"%08x|" % ((i * 2654435761) & 0xFFFFFFFF)
        i += 1
    return bytes(out[:n])


class Response:
    def __init__(self, version, status, reason, headers, body, raw_head):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value) in order
        self.body = body
        self.raw_head = raw_head

    def header(self, name, default=None):
        name = name.lower()
        for n, v in self.headers:
            if n.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for n, v in self.headers if n.lower() == name]

    def closes(self):
        return "close" in (self.header("connection") or "").lower()

    def __repr__(self):
        return "<Response %d %s headers=%r body=%r>" % (self.status, self.reason, self.headers,
                                                       _short(self.body, 120))


class ConnectionClosed(TestFailure):
    pass


class Reader:
    """Reads HTTP/1.1 responses from a socket, keeping the bytes that follow each one."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.eof = False

    def _fill(self):
        if self.eof:
            raise ConnectionClosed("connection closed by the server (buffered %r)"
                                   % _short(bytes(self.buf)))
        try:
            chunk = self.sock.recv(262144)
        except ConnectionResetError:
            chunk = b""
        except socket.timeout:
            raise TestFailure("timed out waiting for the server (buffered %r)"
                              % _short(bytes(self.buf)))
        if not chunk:
            self.eof = True
            raise ConnectionClosed("connection closed by the server (buffered %r)"
                                   % _short(bytes(self.buf)))
        self.buf += chunk

    def _take_until(self, sep, limit=1 << 20):
        while True:
            i = self.buf.find(sep)
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[: i + len(sep)]
                return out
            if len(self.buf) > limit:
                raise TestFailure("no %r within %d bytes" % (sep, limit))
            self._fill()

    def _take(self, n):
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_head(self):
        head = self._take_until(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        m = re.match(rb"^(HTTP/\d\.\d) (\d{3}) ?(.*)$", lines[0])
        if not m:
            raise TestFailure("bad status line %r" % lines[0])
        headers = []
        for ln in lines[1:]:
            if b":" not in ln:
                raise TestFailure("bad response header line %r" % ln)
            n, v = ln.split(b":", 1)
            if n != n.strip() or not n:
                raise TestFailure("bad response header name %r" % n)
            headers.append((n.decode("latin-1"), v.strip().decode("latin-1")))
        return (m.group(1).decode(), int(m.group(2)), m.group(3).decode("latin-1"), headers,
                head)

    def read_response(self, head_request=False, allow_interim=False):
        """One response. head_request: it answers a HEAD (no body whatever the headers say).
        allow_interim: return a 1xx as is (otherwise 1xx responses are an error)."""
        version, status, reason, headers, raw = self.read_head()
        r = Response(version, status, reason, headers, b"", raw)
        if 100 <= status < 200:
            if not allow_interim:
                raise TestFailure("unexpected interim response %d %s" % (status, reason))
            return r
        if head_request or status in (204, 304):
            return r
        te = r.header("transfer-encoding")
        cl = r.header_all("content-length")
        if te is not None:
            check(not cl, "response has both Transfer-Encoding and Content-Length: %r" % headers)
            check(te.lower() == "chunked", "unexpected Transfer-Encoding %r" % te)
            r.body = self._read_chunked()
        elif cl:
            check(len(cl) == 1, "several Content-Length headers: %r" % cl)
            check(cl[0].isdigit(), "bad Content-Length %r" % cl[0])
            r.body = self._take(int(cl[0]))
        else:
            r.body = self.read_to_eof()
        return r

    def _read_chunked(self):
        body = bytearray()
        while True:
            line = self._take_until(b"\r\n", limit=4096)
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while self._take_until(b"\r\n", limit=65536):
                    pass  # trailers
                return bytes(body)
            body += self._take(size)
            check(self._take(2) == b"\r\n", "chunk not followed by CRLF")

    def read_to_eof(self):
        while not self.eof:
            try:
                self._fill()
            except ConnectionClosed:
                break
        out = bytes(self.buf)
        self.buf.clear()
        return out


class _NeedMore(Exception):
    pass


class _BufReader(Reader):
    """A Reader over bytes already received: raises _NeedMore instead of reading."""

    def __init__(self, data):
        super().__init__(None)
        self.buf = bytearray(data)

    def _fill(self):
        raise _NeedMore()


def try_parse_response(data, **kw):
    """(Response, bytes consumed) if data starts with a complete response (sized or chunked),
    else None."""
    rd = _BufReader(data)
    try:
        r = rd.read_response(**kw)
    except _NeedMore:
        return None
    return r, len(data) - len(rd.buf)


def raise_nofile_limit(want):
    """Raises the soft RLIMIT_NOFILE towards `want` (up to the hard limit); returns it."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    return soft


def read_response(sock, **kw):
    return Reader(sock).read_response(**kw)


def exchange(port, raw, timeout=SOCK_TIMEOUT, **kw):
    """A fresh connection, one request, one response."""
    with connect(port, timeout) as s:
        s.sendall(raw)
        return Reader(s).read_response(**kw)


def wait_closed(sock, timeout=3.0, reader=None):
    """True if the peer closes (EOF or reset) within timeout; data that arrives is discarded
    (and returned in reader.buf if a reader is given)."""
    deadline = time.monotonic() + timeout
    old = sock.gettimeout()
    try:
        if reader is not None and reader.eof:
            return True
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                return False
            except (ConnectionResetError, BrokenPipeError):
                return True
            if not chunk:
                if reader is not None:
                    reader.eof = True
                return True
            if reader is not None:
                reader.buf += chunk
    finally:
        try:
            sock.settimeout(old)
        except OSError:
            pass


def still_open(sock, wait=0.2):
    """True if the peer has not closed (no EOF, no reset) within `wait` seconds; bytes that
    arrive are left unread."""
    return _peek(sock, wait) != "closed"


def _peek(sock, wait):
    """What the peer does within `wait` seconds, without consuming it: "data", "closed"
    (EOF or an error), or "quiet"."""
    old = sock.gettimeout()
    sock.settimeout(wait)
    try:
        return "data" if sock.recv(1, socket.MSG_PEEK) else "closed"
    except socket.timeout:
        return "quiet"
    except OSError:
        return "closed"
    finally:
        sock.settimeout(old)


def quiet_for(sock, wait=0.3):
    """True if the peer sends nothing and does not close within `wait` seconds."""
    return _peek(sock, wait) == "quiet"


def get_ok(port, path="/plaintext", timeout=SOCK_TIMEOUT):
    """Asserts the server answers a plain GET on a fresh connection."""
    r = exchange(port, request("GET", path), timeout=timeout)
    eq(r.status, 200, "GET %s status on a fresh connection" % path)
    if path == "/plaintext":
        eq(r.body, b"Hello, World!", "GET /plaintext body")
    return r


def curl(*args, timeout=20):
    """Runs curl (no proxies, bounded), returns CompletedProcess with bytes stdout/stderr."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    cmd = ["curl", "-sS", "--noproxy", "*", "--max-time", "10"] + list(args)
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                          timeout=timeout)


# ---------------------------------------------------------------------------------------------
# The runner

_shared = None
SHARED_ARGS = []  # extra flags of the shared server; a script may set this before run_tests


def shared_server():
    """The script's default server (started on first use, restarted if a test killed it)."""
    global _shared
    if _shared is None or not _shared.alive():
        _shared = Server(*SHARED_ARGS).start()
    return _shared


def run_tests(module_globals, final_shutdown_check=True):
    parse_args()
    tests = [(n, f) for n, f in module_globals.items() if n.startswith("test_") and callable(f)]
    if ARGS.only:
        tests = [(n, f) for n, f in tests if ARGS.only in n]
    passed = failed = 0
    t_all = time.monotonic()

    def watchdog(name):
        # A test stuck past every socket timeout: report, kill the servers, exit non-zero.
        print("FAIL %s: still running after %d s (watchdog); stacks:" % (name, TEST_WATCHDOG_S),
              flush=True)
        faulthandler.dump_traceback(file=sys.stdout, all_threads=True)
        for srv in Server.started:
            srv.kill()
        print("%d passed, %d failed" % (passed, failed + 1), flush=True)
        os._exit(1)

    def run_one(name, fn, check_alive=True):
        nonlocal passed, failed
        t0 = time.monotonic()
        dog = threading.Timer(TEST_WATCHDOG_S, watchdog, args=(name,))
        dog.daemon = True
        dog.start()
        err = None
        try:
            if time.monotonic() - t_all > SCRIPT_BUDGET_S:
                raise TestFailure("not run: the script's %d s budget is spent" % SCRIPT_BUDGET_S)
            fn()
        except Exception:  # noqa: BLE001 - every failure is reported, the run goes on
            err = traceback.format_exc()
        finally:
            dog.cancel()
        global _shared
        for srv in Server.started:
            if not srv.reported and srv.crashed() is not None:
                srv.reported = True
                err = (err or "") + "\n%s%s" % ("shared " if srv is _shared else "",
                                                 srv.describe_death())
        if _shared is not None and not _shared.alive() and check_alive:
            _shared = None  # the next test that needs it starts a new one
        dt = time.monotonic() - t0
        if err:
            failed += 1
            print("FAIL %s (%.2fs)\n%s" % (name, dt, _indent(err.rstrip())), flush=True)
        else:
            passed += 1
            print("ok   %s (%.2fs)" % (name, dt), flush=True)

    for name, fn in tests:
        run_one(name, fn)

    if final_shutdown_check and _shared is not None and not ARGS.only:
        def shared_server_exits_0_on_sigterm():
            srv = _shared
            if srv.alive():
                srv.stop()
        run_one("shared_server_exits_0_on_sigterm", shared_server_exits_0_on_sigterm, False)
    for srv in Server.started:
        srv.kill()
    print("total %.1fs" % (time.monotonic() - t_all))
    print("%d passed, %d failed" % (passed, failed), flush=True)
    sys.exit(1 if failed else 0)


atexit.register(_kill_all_servers)


def _indent(text):
    return "\n".join("     " + ln for ln in text.splitlines())
