"""A small HTTP load client for the deployment tests (python3, stdlib only).

Load(port, threads=4, keepalive=True).start() ... .stop() runs GET requests from a few
threads until stopped, each thread on one kept-alive connection (reconnecting when the
server answers Connection: close) or on a new connection per request (keepalive=False, the
request says Connection: close). Every failure a real client would see is counted: a
refused or reset connect, a connection closed or reset before the whole answer, a timeout
and a malformed answer are errors; any status outside 2xx is counted apart. Requests only
ever go to 127.0.0.1, and the run ends when stop() is called (or after max_s).
"""
import collections
import socket
import threading
import time

import harness as H


class Load:
    def __init__(self, port, path="/plaintext", threads=4, keepalive=True, timeout=5.0,
                 max_s=60.0):
        self.port = port
        self.path = path
        self.threads = threads
        self.keepalive = keepalive
        self.timeout = timeout
        self.max_s = max_s
        self.lock = threading.Lock()
        self.ok = 0
        self.statuses = collections.Counter()  # non-2xx answers by status
        self.errors = []  # (seconds since start, repr of the failure)
        self.per_second = collections.Counter()  # successful answers per whole second
        self.max_latency = 0.0  # of a successful request, connect included
        self._stop = threading.Event()
        self._workers = []
        self.t0 = None
        headers = [] if keepalive else [("Connection", "close")]
        self.raw = H.request("GET", path, headers)

    def start(self):
        self.t0 = time.monotonic()
        for _ in range(self.threads):
            t = threading.Thread(target=self._run, daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def stop(self):
        self._stop.set()
        for t in self._workers:
            t.join(self.timeout + 5)
        return self

    def _record(self, status=None, error=None, latency=0.0):
        now = time.monotonic() - self.t0
        with self.lock:
            self.max_latency = max(self.max_latency, latency if error is None else 0.0)
            if error is not None:
                self.errors.append((round(now, 3), error))
            elif 200 <= status < 300:
                self.ok += 1
                self.per_second[int(now)] += 1
            else:
                self.statuses[status] += 1

    def _one(self, conn):
        """One request on conn (sock, reader) or a new connection; returns the connection to
        reuse, or None."""
        t0 = time.monotonic()
        if conn is None:
            s = socket.create_connection((H.HOST, self.port), timeout=self.timeout)
            s.settimeout(self.timeout)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = (s, H.Reader(s))
        s, reader = conn
        s.sendall(self.raw)
        r = reader.read_response()
        self._record(status=r.status, latency=time.monotonic() - t0)
        if not self.keepalive or r.closes():
            s.close()
            return None
        return conn

    def _run(self):
        conn = None
        deadline = self.t0 + self.max_s
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                conn = self._one(conn)
            except Exception as e:  # noqa: BLE001 - every failure is the client's error
                self._record(error="%s: %s" % (type(e).__name__, e))
                if conn is not None:
                    conn[0].close()
                conn = None
                time.sleep(0.01)
        if conn is not None:
            conn[0].close()

    def summary(self):
        with self.lock:
            return ("%d ok (slowest %.0f ms), %d non-2xx %s, %d errors%s"
                    % (self.ok, self.max_latency * 1000, sum(self.statuses.values()),
                       dict(self.statuses),
                       len(self.errors), (" (first: %r)" % self.errors[:5]) if self.errors else ""))

    def ok_since(self, t):
        """Successful answers in the whole seconds from t (since start) on."""
        with self.lock:
            return sum(n for sec, n in self.per_second.items() if sec >= t)
