#!/usr/bin/env python3
"""Soak: mixed load on ringhttp for a bounded time, with clients that vanish mid-request.

Passes when the server never dies, answers every completed request correctly, and its RSS
at the end is within 10% of its RSS after the warm-up. Load goes to 127.0.0.1 only.

    bench/soak.py --binary build/ringhttp --seconds 300 [--warmup 60] [--clients 24]
"""
import argparse
import os
import random
import socket
import subprocess
import sys
import threading
import time

MIX = [  # (weight, method, path, body)
    (30, "GET", "/plaintext", None),
    (15, "GET", "/json", None),
    (15, "POST", "/echo", "small"),
    (5, "POST", "/echo", "large"),
    (10, "GET", "/blocking?ms=20", None),
    (10, "GET", "/db?id=%d", None),
    (10, "PIPE", "/plaintext", None),
    (5, "GET", "/nope", None),
]


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def read_response(sock):
    """Status and body of one Content-Length response (the server sends no chunked here)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the head")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed mid-body")
        rest += chunk
    return status, rest[:length], rest[length:]


class Client(threading.Thread):
    def __init__(self, port, stop, stats, seed):
        super().__init__(daemon=True)
        self.port, self.stop, self.stats = port, stop, stats
        self.rnd = random.Random(seed)
        self.sock = None

    def connect(self):
        if self.sock:
            self.sock.close()
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def vanish(self, raw):
        """Sends part of a request, then closes (or resets) without reading."""
        cut = self.rnd.randrange(1, len(raw))
        self.sock.sendall(raw[:cut])
        if self.rnd.random() < 0.5:
            import struct
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()
        self.sock = None
        self.stats["vanished"] += 1

    def one(self):
        total = sum(w for w, *_ in MIX)
        pick = self.rnd.uniform(0, total)
        for w, method, path, body in MIX:
            pick -= w
            if pick <= 0:
                break
        if "%d" in path:
            path = path % self.rnd.randint(1, 10000)
        payload = b""
        if body == "small":
            payload = os.urandom(self.rnd.randint(1, 2000))
        elif body == "large":
            payload = os.urandom(self.rnd.randint(20000, 300000))
        count = 1
        if method == "PIPE":
            method, count = "GET", 16
        req = ("%s %s HTTP/1.1\r\nHost: soak\r\nContent-Length: %d\r\n\r\n"
               % (method, path, len(payload))).encode() + payload
        if not self.sock:
            self.connect()
        if self.rnd.random() < 0.03:
            self.vanish(req)
            return
        self.sock.sendall(req * count)
        rest = b""
        for _ in range(count):
            status, got, rest = self._read(rest)
            expect = 404 if path == "/nope" else 200
            if status != expect or (method == "POST" and got != payload):
                self.stats["wrong"] += 1
                print("soak: wrong answer %d for %s %s" % (status, method, path), file=sys.stderr)
            self.stats["ok"] += 1
        if self.rnd.random() < 0.05:  # sometimes a fresh connection
            self.sock.close()
            self.sock = None

    def _read(self, rest):
        # read_response with leftovers from pipelined answers
        class Prefixed:
            def __init__(s, sock, pre):
                s.sock, s.pre = sock, pre

            def recv(s, n):
                if s.pre:
                    out, s.pre = s.pre, b""
                    return out
                return s.sock.recv(n)
        return read_response(Prefixed(self.sock, rest))

    def run(self):
        while not self.stop.is_set():
            try:
                self.one()
            except (OSError, ConnectionError) as e:
                self.stats["errors"] += 1
                self.sock = None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default="build/ringhttp")
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--warmup", type=float, default=60)  # allocator caches settle by ~40 s
    ap.add_argument("--clients", type=int, default=24)
    args = ap.parse_args()
    srv = subprocess.Popen([args.binary, "--port", "0", "--access-log", "off"],
                           stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
    line = srv.stdout.readline()
    port = int(line.split(":")[2].split("/")[0])
    stop = threading.Event()
    stats = {"ok": 0, "wrong": 0, "errors": 0, "vanished": 0}
    clients = [Client(port, stop, stats, seed) for seed in range(args.clients)]
    for c in clients:
        c.start()
    t0 = time.monotonic()
    time.sleep(min(args.warmup, args.seconds))
    rss_warm = rss_kb(srv.pid)
    samples = []
    while time.monotonic() - t0 < args.seconds and srv.poll() is None:
        time.sleep(5)
        samples.append(rss_kb(srv.pid))
        print("soak: %4.0fs  requests %d  vanished %d  errors %d  rss %d kB"
              % (time.monotonic() - t0, stats["ok"], stats["vanished"], stats["errors"],
                 samples[-1]), file=sys.stderr, flush=True)
    alive = srv.poll() is None
    rss_end = rss_kb(srv.pid) if alive else 0
    stop.set()
    for c in clients:
        c.join(15)
    srv.terminate()
    code = srv.wait(30)
    growth = (rss_end - rss_warm) / rss_warm * 100 if rss_warm else 0
    print("soak: %.0f s, %d clients: %d requests answered, %d wrong, %d client-side errors, "
          "%d vanished mid-request" % (args.seconds, args.clients, stats["ok"], stats["wrong"],
                                         stats["errors"], stats["vanished"]))
    print("soak: server alive to the end: %s, exit code %s" % (alive, code))
    print("soak: RSS after warm-up %d kB, at the end %d kB (%+.1f%%), max %d kB"
          % (rss_warm, rss_end, growth, max(samples or [0])))
    ok = alive and code == 0 and stats["wrong"] == 0 and abs(growth) <= 10
    print("soak: %s" % ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
