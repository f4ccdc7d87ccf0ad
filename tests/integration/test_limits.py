"""Resource limits: running out of file descriptors on accept, and the graceful drain with
work out on the pool."""
import os
import signal
import sys
import threading
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
from harness import check, eq, request, Reader  # noqa: E402


def start_with_fd_limit(limit, *flags):
    """The limit must be in force when the ring arms its accept: the kernel reads
    RLIMIT_NOFILE when the (multishot) accept is prepared, not at each accept."""
    import tempfile
    wrapper = os.path.join(tempfile.mkdtemp(prefix="rh-ulimit-"), "ringhttp")
    with open(wrapper, "w") as f:
        f.write('#!/bin/sh\nulimit -n %d || exit 99\nexec "%s" "$@"\n' % (limit, H.ARGS.binary))
    os.chmod(wrapper, 0o755)
    real, H.ARGS.binary = H.ARGS.binary, wrapper
    try:
        return H.Server(*flags).start()
    finally:
        H.ARGS.binary = real


def test_emfile_keeps_serving_and_recovers():
    # The server holds ~10 fds of its own (rings, eventfds, listener, stdio): 64 leaves room
    # for a few dozen connections, then accept fails with EMFILE.
    srv = start_with_fd_limit(64, "--threads", "1")
    try:
        held = []
        for i in range(100):  # the kernel completes these handshakes; the server cannot
            held.append(H.connect(srv.port, timeout=10))
        for s in held:
            H.send(s, request("GET", "/plaintext"))
        answered = []
        deadline = time.monotonic() + 1.0
        for s in held:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                r = Reader(s).read_response()
                eq(r.status, 200, "status of an accepted connection")
                answered.append(s)
            except (OSError, H.TestFailure):
                pass
        check(20 <= len(answered) < 100, "some answered before the limit: %d" % len(answered))
        check(srv.alive(), "server alive at the fd limit")
        for s in answered:  # frees fds: the rest are accepted once the back-off retries
            s.close()
        waiting = [s for s in held if s not in answered]
        for s in waiting:
            s.settimeout(10)
            eq(Reader(s).read_response().status, 200, "answered after recovery")
            s.close()
        check("accept: Too many open files" in srv.stderr.text(), "EMFILE reported")
        check(srv.stderr.text().count("accept:") <= 2, "reported once per interval, not per failure")
    finally:
        srv.stop()


def test_buffer_ring_exhaustion_slows_reading_but_loses_nothing():
    # 8 provided buffers of 1 KiB for 40 clients each uploading 64 KiB at once: the ring runs
    # dry (ENOBUFS) again and again; every byte must still arrive, in order.
    srv = H.Server("--threads", "1", "--recv-buffers", "8", "--recv-buffer-size", "1024").start()
    try:
        bodies = [bytes((i + j) % 251 for j in range(65536)) for i in range(40)]
        socks = [H.connect(srv.port, timeout=20) for _ in bodies]
        results = [None] * len(bodies)

        def upload(i):
            H.send(socks[i], request("POST", "/echo", [("Content-Type", "application/x-test")],
                                     body=bodies[i]))
            results[i] = Reader(socks[i]).read_response()

        threads = [threading.Thread(target=upload, args=(i,)) for i in range(len(bodies))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        for i, r in enumerate(results):
            check(r is not None, "upload %d got no answer" % i)
            eq(r.status, 200, "upload %d status" % i)
            check(r.body == bodies[i], "upload %d came back altered (%d bytes)" % (i, len(r.body)))
        for s in socks:
            s.close()
        s = H.connect(srv.port)
        H.send(s, request("GET", "/metrics"))
        m = Reader(s).read_response().body.decode()
        import re
        n = int(re.search(r"^ringhttp_recv_buffer_exhausted_total (\d+)$", m, re.M).group(1))
        check(n > 0, "the buffer ring really ran dry (else this test proves nothing)")
    finally:
        srv.stop()


def test_pipelined_partial_head_after_a_send_still_times_out():
    # Regression (found by the fuzzer): the write timeout of the first answer replaced the
    # second request's header deadline, and a completed send then cancelled it: a partial
    # head behind a complete request was kept open for ever (slow-loris).
    srv = H.Server("--header-timeout", "500").start()
    try:
        s = H.connect(srv.port, timeout=5)
        H.send(s, request("GET", "/plaintext") + b"GET /json HTTP/1.1\r\nHo")
        r = Reader(s)
        eq(r.read_response().status, 200, "the complete request")
        t0 = time.monotonic()
        eq(r.read_response().status, 408, "the partial one times out")
        check(time.monotonic() - t0 < 2.0, "408 within the header timeout")
        s.close()
    finally:
        srv.stop()


def test_drain_finishes_pool_work_then_exits_0():
    srv = H.Server("--drain-timeout", "3000").start()
    results = [None, None]

    def one(i, path):
        s = H.connect(srv.port, timeout=10)
        H.send(s, request("GET", path))
        results[i] = Reader(s).read_response()
        s.close()

    t1 = threading.Thread(target=one, args=(0, "/blocking?ms=400"))
    t1.start()
    idle = H.connect(srv.port)  # an idle keep-alive connection: closed at once by the drain
    H.send(idle, request("GET", "/healthz"))
    eq(Reader(idle).read_response().status, 200, "idle connection first answer")
    time.sleep(0.1)
    t0 = time.monotonic()
    srv.send_signal(signal.SIGTERM)
    idle.settimeout(2)
    check(idle.recv(1) == b"", "idle keep-alive connection closed by the drain")
    # Every ring closes its own listener when its stop wake-up arrives: allow them a moment.
    refused = False
    until = time.monotonic() + 1.0
    while not refused and time.monotonic() < until:
        try:
            H.connect(srv.port, timeout=1).close()
            time.sleep(0.02)
        except ConnectionRefusedError:
            refused = True
    check(refused, "new connections are refused once the drain began (not left to be reset)")
    t1.join(10)
    eq(results[0].status, 200, "in-flight pool request finished during the drain")
    eq(results[0].body, b"slept 400", "its body")
    check(results[0].closes(), "answered with Connection: close while draining")
    eq(srv.wait(5), 0, "exit status")
    check(time.monotonic() - t0 < 2.5, "exited once the work was done, not at the timeout")


if __name__ == "__main__":
    H.run_tests(globals(), final_shutdown_check=False)
