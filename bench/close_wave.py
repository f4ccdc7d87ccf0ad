#!/usr/bin/env python3
"""bench/close_wave.py: what closing N connections at once costs a server (issue 10).

For each binary given (e.g. an old and a new build of ringhttp, measured in the same run),
starts it on 127.0.0.1 with one ring, opens N silent connections (paced so the accept queue
never overflows), then:
  drain: one request on each (idle keep-alive connections), then SIGTERM: a graceful stop
         closes every idle connection at once (no drain grace). Reports the time to exit
         and the server's CPU seconds for it (utime+stime from /proc/PID/stat).
  wave:  (a second server) lets the header timeout fire for all of them; reports the
         server CPU the wave cost and how late the closes came after their deadlines.
Prints the machine's CPU model. Needs RLIMIT_NOFILE >= N + 200 (the hard limit is raised
to). Only ever talks to 127.0.0.1; every server it starts is stopped on exit.

Usage: bench/close_wave.py [--count 16000] [--timeout-ms 20000] BINARY [BINARY...]
"""
import argparse
import os
import re
import resource
import select
import signal
import socket
import subprocess
import time
import urllib.request


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(binary, *flags):
    p = subprocess.Popen([binary, "--host", "127.0.0.1", "--port", "0", "--threads", "1",
                          "--no-defer-accept", "--quiet"] + list(flags),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # --quiet: find the port from /proc
        ports = listening_ports(p.pid)
        if ports:
            return p, ports[0]
        time.sleep(0.05)
    p.kill()
    raise SystemExit("%s did not start listening" % binary)


def listening_ports(pid):
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            m = re.match(r"socket:\[(\d+)\]", os.readlink("/proc/%d/fd/%s" % (pid, fd)))
        except OSError:
            continue
        if m:
            inodes.add(m.group(1))
    ports = []
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            if parts[3] == "0A" and parts[9] in inodes:
                ports.append(int(parts[1].split(":")[1], 16))
    return ports


def accepted(port):
    body = urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
        "http://127.0.0.1:%d/metrics" % port, timeout=5).read().decode()
    m = re.search(r"^ringhttp_connections_accepted_total (\d+)", body, re.M)
    return int(m.group(1)) if m else None


def open_silent(port, n):
    socks, checks = {}, 0
    for i in range(n):
        s = socket.socket()
        s.connect(("127.0.0.1", port))
        socks[s] = time.monotonic()
        while i % 1024 == 1023 and i < n - 1024:  # keep the accept queue short
            checks += 1
            a = accepted(port)
            if a is None or a - checks >= i + 1 - 256:
                break
            time.sleep(0.01)
    return socks


def keepalive_idle(socks):
    """One request on each, answer read whole: idle keep-alive connections (a graceful stop
    closes those at once; one that never sent a request is left to its header timeout)."""
    for s in socks:
        s.sendall(b"GET /plaintext HTTP/1.1\r\nHost: b\r\n\r\n")
        data = b""
        while not data.endswith(b"Hello, World!"):
            chunk = s.recv(4096)
            if not chunk:
                raise SystemExit("connection closed before its answer")
            data += chunk


def drain(binary, n):
    with subprocess.Popen([binary, "--help"], stdout=subprocess.PIPE) as h:
        grace = ["--drain-grace", "0"] if b"--drain-grace" in h.stdout.read() else []
    p, port = start(binary, "--drain-timeout", "60000", *grace)
    socks = open_silent(port, n)
    keepalive_idle(socks)
    time.sleep(1)
    cpu0, t0 = cpu_seconds(p.pid), time.monotonic()
    p.send_signal(signal.SIGTERM)
    cpu = cpu0
    while p.poll() is None:
        cpu = cpu_seconds(p.pid)
        time.sleep(0.005)
    dt = time.monotonic() - t0
    for s in socks:
        s.close()
    return dt, cpu - cpu0


def wave(binary, n, timeout_ms):
    p, port = start(binary, "--header-timeout", str(timeout_ms), "--max-conns", str(n + 64))
    try:
        socks = open_silent(port, n)
        ep = select.epoll()
        by_fd = {s.fileno(): s for s in socks}
        for fd in by_fd:
            ep.register(fd, select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLONESHOT)
        first = min(socks.values()) + timeout_ms / 1000
        time.sleep(max(0.0, first - 0.5 - time.monotonic()))
        cpu0 = cpu_seconds(p.pid)
        late = []
        stop = time.monotonic() + timeout_ms / 1000 + 60
        while socks and time.monotonic() < stop:
            events = ep.poll(1)
            now = time.monotonic()
            for fd, _ in events:
                late.append(now - socks.pop(by_fd[fd]) - timeout_ms / 1000)
        cpu = cpu_seconds(p.pid) - cpu0
        for s in by_fd.values():
            s.close()
        late.sort()
        return cpu, late[len(late) // 2], late[-1], len(socks)
    finally:
        p.kill()
        p.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=16000)
    ap.add_argument("--timeout-ms", type=int, default=20000)
    ap.add_argument("binaries", nargs="+")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.count + 200:
        raise SystemExit("RLIMIT_NOFILE hard limit %d < %d" % (hard, args.count + 200))
    with open("/proc/cpuinfo") as f:
        model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
    print("# close_wave: %d connections, one ring; %s, %d CPUs" % (args.count, model,
                                                                   os.cpu_count()))
    print("| binary | drain: exit after | drain: server CPU | wave: server CPU "
          "| wave: median late | wave: max late | left open |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for b in args.binaries:
        d_t, d_cpu = drain(b, args.count)
        w_cpu, w_med, w_max, left = wave(b, args.count, args.timeout_ms)
        print("| %s | %.2f s | %.2f s | %.2f s | %.3f s | %.3f s | %d |"
              % (b, d_t, d_cpu, w_cpu, w_med, w_max, left), flush=True)


if __name__ == "__main__":
    main()
