#!/usr/bin/env python3
"""bench/idle_conns.py: holds N idle keep-alive connections open to a server on 127.0.0.1.

Each connection sends one GET and reads its whole answer (it must be 200), so the server has
done its per-connection setup; then it sits idle. At most --parallel connections are being
set up at once, so the listen backlog never overflows. Prints "ready open=N failed=M" once
every connection is answered or has failed, then holds them until stdin closes (or SIGTERM),
watching for connections the server closes; prints "done open=N closed_by_server=K" and
exits. Stays under the process open-file limit: --count must leave room for its own fds.

Usage: idle_conns.py --port P [--path /plaintext] [--count 10000] [--parallel 200]
"""
import argparse
import errno
import os
import resource
import selectors
import signal
import socket
import sys
import time


class Conn:
    __slots__ = ("sock", "state", "buf", "sent")

    def __init__(self, sock):
        self.sock, self.state, self.buf, self.sent = sock, "connect", b"", 0


def answer_complete(buf):
    """None while incomplete, else whether it is a 200 with its whole body."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    head = buf[:head_end].decode("latin-1").lower()
    length = 0
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip() == "content-length":
            length = int(value.strip())
    if len(buf) < head_end + 4 + length:
        return None
    return head.startswith("http/1.1 200")


def open_all(args, request):
    sel = selectors.DefaultSelector()
    held, failed, started = [], 0, 0
    in_setup = 0
    deadline = time.monotonic() + args.timeout

    def start_one():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        err = s.connect_ex((args.host, args.port))
        if err not in (0, errno.EINPROGRESS):
            s.close()
            return False
        sel.register(s, selectors.EVENT_WRITE, Conn(s))
        return True

    def drop(c):
        sel.unregister(c.sock)
        c.sock.close()

    while (started < args.count or in_setup) and time.monotonic() < deadline:
        while started < args.count and in_setup < args.parallel:
            started += 1
            if start_one():
                in_setup += 1
            else:
                failed += 1
        for key, _ in sel.select(timeout=1.0):
            c = key.data
            try:
                if c.state == "connect":
                    if c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                        raise OSError("connect failed")
                    c.state = "send"
                if c.state == "send":
                    c.sent += c.sock.send(request[c.sent:])
                    if c.sent == len(request):
                        c.state = "read"
                        sel.modify(c.sock, selectors.EVENT_READ, c)
                    continue
                data = c.sock.recv(65536)
                if not data:
                    raise OSError("closed before the answer")
                c.buf += data
                ok = answer_complete(c.buf)
                if ok is None:
                    continue
                in_setup -= 1
                if ok:
                    sel.unregister(c.sock)
                    c.buf = b""
                    held.append(c.sock)
                else:
                    failed += 1
                    drop(c)
            except OSError:
                in_setup -= 1
                failed += 1
                drop(c)
    for key in list(sel.get_map().values()):  # still in setup at the deadline
        failed += 1
        key.fileobj.close()
    sel.close()
    return held, failed


def hold(held):
    """Until stdin closes: count connections the server closes (they turn readable)."""
    sel = selectors.DefaultSelector()
    for s in held:
        sel.register(s, selectors.EVENT_READ)
    sel.register(sys.stdin, selectors.EVENT_READ)
    closed = 0
    while True:
        for key, _ in sel.select():
            if key.fileobj is sys.stdin:
                if not os.read(sys.stdin.fileno(), 4096):
                    return closed
                continue
            sel.unregister(key.fileobj)
            key.fileobj.close()
            closed += 1


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/plaintext")
    p.add_argument("--count", type=int, default=10000)
    p.add_argument("--parallel", type=int, default=200)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to set them all up")
    args = p.parse_args()
    if args.host not in ("127.0.0.1", "localhost"):
        p.error("loopback only")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if args.count + 64 > hard:
        p.error(f"--count {args.count} does not fit the open-file limit {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    request = (f"GET {args.path} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n\r\n").encode()
    held, failed = open_all(args, request)
    print(f"ready open={len(held)} failed={failed}", flush=True)
    closed = hold(held)
    print(f"done open={len(held) - closed} closed_by_server={closed}", flush=True)
    for s in held:
        s.close()


if __name__ == "__main__":
    main()
