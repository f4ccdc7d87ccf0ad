"""Connection exhaustion and slow clients: idle connections are reclaimed (oldest first) at the
per-ring connection limit instead of locking new clients out; a wave of 16k header timeouts
closes in well under a second (the per-close cost is O(1)); a body trickled below the minimum
rate gets 408; the ring-fault and limit counters are in /metrics."""
import os
import resource
import select
import socket
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
from harness import check, eq, request, Reader  # noqa: E402

COUNTERS = ("ringhttp_connections_reclaimed_total", "ringhttp_connections_refused_total",
            "ringhttp_body_rate_timeouts_total", "ringhttp_ring_cq_overflow_total",
            "ringhttp_ring_cqe_dropped_total", "ringhttp_ring_sq_full_total",
            "ringhttp_close_forced_total")


def metrics(port):
    r = H.exchange(port, request("GET", "/metrics"))
    eq(r.status, 200, "/metrics status")
    out = {}
    for line in r.body.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def keepalive_get(s):
    H.send(s, request("GET", "/plaintext"))
    eq(Reader(s).read_response().status, 200, "keep-alive GET")


def test_fault_and_limit_counters_exist():
    srv = H.Server("--threads", "2").start()
    try:
        m = metrics(srv.port)
        for name in COUNTERS:
            check(name in m, "%s in /metrics" % name)
        eq(m["ringhttp_ring_cqe_dropped_total"], 0, "no completion dropped")
        eq(m["ringhttp_close_forced_total"], 0, "no close forced")
    finally:
        srv.stop()


def test_idle_connections_do_not_lock_out_a_new_client():
    srv = H.Server("--threads", "1", "--max-conns", "40").start()
    try:
        held = []
        for _ in range(40):
            s = H.connect(srv.port)
            keepalive_get(s)
            held.append(s)
        # The oldest is mid-request now (a partial head): busy, so never reclaimed.
        H.send(held[0], b"GET /plaintext HTTP/1.1\r\n")
        time.sleep(0.1)
        t0 = time.monotonic()
        H.get_ok(srv.port, timeout=3)
        check(time.monotonic() - t0 < 1.0, "new client answered at once at the limit")
        check(H.wait_closed(held[1], timeout=2), "the oldest idle connection was closed")
        check(H.still_open(held[0]), "a connection mid-request is not reclaimed")
        check(H.still_open(held[-1]), "the newest idle connection is kept")
        H.send(held[0], b"Host: t\r\n\r\n")
        eq(Reader(held[0]).read_response().status, 200, "the busy connection finishes")
        m = metrics(srv.port)
        check(m["ringhttp_connections_reclaimed_total"] >= 1,
              "reclaims counted: %s" % m["ringhttp_connections_reclaimed_total"])
        eq(m["ringhttp_connections_refused_total"], 0, "nobody refused")
        for s in held:
            s.close()
    finally:
        srv.stop()


def test_all_busy_at_the_limit_refuses_and_counts():
    srv = H.Server("--threads", "1", "--max-conns", "8").start()
    try:
        held = []
        for _ in range(8):
            s = H.connect(srv.port)
            H.send(s, b"GET /plaintext HTTP/1.1\r\n")  # all mid-request: nothing to reclaim
            held.append(s)
        time.sleep(0.2)
        s = H.connect(srv.port)
        H.send(s, request("GET", "/plaintext"))
        check(H.wait_closed(s, timeout=3), "refused when nothing is idle")
        for s in held:  # they finish, and free their slots
            H.send(s, b"Host: t\r\nConnection: close\r\n\r\n")
            eq(Reader(s).read_response().status, 200, "held request answered")
            s.close()
        time.sleep(0.1)
        eq(metrics(srv.port)["ringhttp_connections_refused_total"], 1, "refusal counted")
    finally:
        srv.stop()


def cpu_seconds(pid):
    """utime + stime of a process so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def instrumented(binary):
    with open(binary, "rb") as f:
        data = f.read()
    return b"__asan_init" in data or b"__tsan_init" in data


def test_16k_idle_connections_reclaim_then_timeout_wave_under_a_second():
    """One client holds the whole per-ring limit (16384) with connections that say nothing,
    as the attack in issue 10 did. A new client is still answered (the oldest is reclaimed);
    then the header timeouts fire for all of them. Each close costs O(1): the wave costs the
    server well under a second of CPU, and on a loaded machine still closes each connection
    within a second or so of its deadline (before: ~1,000 closes/s at 100% CPU, a cancel
    walked every armed poll of the ring; the wave took 15 s)."""
    want = 16384 + 200
    if H.raise_nofile_limit(want + 200) < want:
        print("     skipped: RLIMIT_NOFILE hard limit below %d" % want)
        return
    if instrumented(H.ARGS.binary):
        # A cost measured at scale: the sanitizer build runs the smaller tests above.
        print("     skipped: instrumented build")
        return
    slow = 1.0
    timeout_s = 25.0  # > the time to open 16k connections on a loaded machine
    # no-defer-accept: silent connections are accepted at once (and start their header
    # timer then), instead of waiting in a 4096-deep backlog for TCP_DEFER_ACCEPT.
    srv = H.Server("--threads", "1", "--max-conns", "16384", "--no-defer-accept",
                   "--header-timeout", str(int(timeout_s * 1000)), "--idle-timeout", "60000"
                   ).start()
    socks = {}
    try:
        t0 = time.monotonic()
        addr = (H.HOST, srv.port)
        checks = 0
        for i in range(16384):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(10)
            s.connect(addr)
            socks[s] = time.monotonic()
            # Keep the accept queue short: past its 4096 the kernel drops the handshake's
            # last ACK and the connection is accepted (and its deadline starts) 1-3 s after
            # connect() returned here, which would read as lateness.
            while i % 1024 == 1023 and i < 16384 - 1024:
                checks += 1
                accepted = metrics(srv.port)["ringhttp_connections_accepted_total"] - checks
                if accepted >= i + 1 - 256:
                    break
                time.sleep(0.01)
        t_open = time.monotonic() - t0
        # On a machine so loaded that opening outlasts the header timeout, the first ones
        # have timed out already (no limit to reach) and the wave overlaps the opening
        # (closes are read late): then only check that it all ends and the server serves.
        timely = t_open < timeout_s - 3
        time.sleep(0.3)  # the last accepts land
        t1 = time.monotonic()
        H.get_ok(srv.port, timeout=3)
        check(time.monotonic() - t1 < 1.0 * slow, "new client answered at the limit")
        m = metrics(srv.port)
        check(not timely or m["ringhttp_connections_reclaimed_total"] >= 1,
              "reclaimed at the limit")
        # One-shot epoll: a close costs this process one dict lookup, so a loaded machine
        # delays the reading of the wave as little as possible.
        ep = select.epoll()
        by_fd = {s.fileno(): s for s in socks}
        for fd in by_fd:
            ep.register(fd, select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLONESHOT)
        first_deadline = min(socks.values()) + timeout_s
        time.sleep(max(0.0, first_deadline - 0.5 - time.monotonic()))
        cpu0 = cpu_seconds(srv.proc.pid)
        lateness = []
        stop = time.monotonic() + timeout_s + 15
        while socks and time.monotonic() < stop:
            events = ep.poll(1)
            now = time.monotonic()
            for fd, _ in events:
                s = by_fd[fd]
                lateness.append(now - socks.pop(s) - timeout_s)
        cpu = cpu_seconds(srv.proc.pid) - cpu0
        ep.close()
        for s in by_fd.values():
            s.close()
        lateness.sort()
        # the reclaimed ones (the GET and /metrics) closed long before their deadline
        wave = [x for x in lateness if x > -timeout_s / 2]
        p99 = wave[int(len(wave) * 0.99)]
        print("     opened in %.1f s; wave: %d closed, server CPU %.2f s, lateness median "
              "%.3f s, p99 %.3f s, max %.3f s"
              % (t_open, len(wave), cpu, wave[len(wave) // 2], p99, wave[-1]))
        eq(len(socks), 0, "connections still open after the wave")
        if not timely:
            print("     opening took %.1f s (> header timeout - 3 s): bounds not checked" % t_open)
            return
        check(cpu < 1.0 * slow, "the wave cost the server %.2f s of CPU" % cpu)
        check(p99 < 1.0 * slow, "99%% closed within 1 s of their deadline (%.2f s)" % p99)
        check(wave[-1] < 3.0 * slow, "all closed within 3 s of it (%.2f s)" % wave[-1])
        H.get_ok(srv.port, timeout=2)
    finally:
        for s in socks:
            s.close()
        srv.stop()


def test_trickled_body_gets_408_and_a_steady_one_does_not():
    srv = H.Server("--threads", "1", "--min-body-rate", "100", "--body-rate-window", "1000").start()
    try:
        # 1 byte every 2 s: far below 100 B/s over a 1 s window.
        s = H.connect(srv.port, timeout=10)
        head = request("POST", "/echo", [("Content-Length", "100")])
        t0 = time.monotonic()
        H.send(s, head + b"x")
        r = None
        s.settimeout(2.0)
        for _ in range(5):
            try:
                r = Reader(s).read_response()
                break
            except socket.timeout:
                H.send(s, b"x")
        check(r is not None, "an answer to the trickled body")
        eq(r.status, 408, "trickled body status")
        dt = time.monotonic() - t0
        check(0.9 <= dt < 3.5, "408 at the first window's end (%.2f s)" % dt)
        s.close()
        # 50 bytes every 0.25 s (200 B/s) over 2.5 s: above the rate, answered in full.
        s = H.connect(srv.port, timeout=10)
        body = H.pattern(500)
        H.send(s, request("POST", "/echo", [("Content-Length", "500")]))
        for i in range(0, 500, 50):
            H.send(s, body[i:i + 50])
            time.sleep(0.25)
        r = Reader(s).read_response()
        eq(r.status, 200, "steady body status")
        eq(r.body, body, "steady body echoed")
        s.close()
        check(metrics(srv.port)["ringhttp_body_rate_timeouts_total"] >= 1, "408 counted")
    finally:
        srv.stop()


if __name__ == "__main__":
    H.run_tests(globals(), final_shutdown_check=False)
