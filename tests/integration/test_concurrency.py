"""Many connections at once, the connection limit, and stopping with connections open."""
import os
import selectors
import signal
import sys
import threading
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
from harness import check, eq, request, Reader  # noqa: E402

JSON = b'{"message":"Hello, World!"}'
HELLO = b"Hello, World!"
NCONN = 1000


def port():
    return H.shared_server().port


def open_many(p, n):
    socks = []
    try:
        for i in range(n):
            socks.append(H.connect(p, timeout=10))
    except OSError as e:
        for s in socks:
            s.close()
        raise H.TestFailure("connect #%d of %d failed: %r" % (len(socks), n, e))
    return socks


def request_for(i, rnd):
    kind = (i + rnd) % 3
    if kind == 0:
        return request("GET", "/plaintext"), HELLO
    if kind == 1:
        return request("GET", "/json"), JSON
    body = b"conn-%d-round-%d" % (i, rnd)
    return request("POST", "/echo", body=body), body


def exchange_all(socks, rnd, deadline_s=30.0):
    """Sends one request on every socket, then reads every answer with a selector."""
    expect = {}
    for i, s in enumerate(socks):
        raw, body = request_for(i, rnd)
        s.sendall(raw)
        expect[s] = (i, body)
    sel = selectors.DefaultSelector()
    bufs = {}
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        bufs[s] = bytearray()
    pending = set(socks)
    bad = []
    deadline = time.monotonic() + deadline_s
    try:
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for key, _ in sel.select(min(left, 1.0)):
                s = key.fileobj
                try:
                    chunk = s.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as e:
                    chunk = b""
                    bad.append((expect[s][0], "recv error %r" % e))
                if not chunk:
                    if not bad or bad[-1][0] != expect[s][0]:
                        bad.append((expect[s][0], "closed after %r" % bytes(bufs[s][:80])))
                    sel.unregister(s)
                    pending.discard(s)
                    continue
                bufs[s] += chunk
                got = H.try_parse_response(bytes(bufs[s]))
                if got is None:
                    continue
                r, used = got
                i, body = expect[s]
                if r.status != 200 or r.body != body:
                    bad.append((i, "got %d %r, expected %r" % (r.status, r.body[:60], body)))
                elif used != len(bufs[s]):
                    bad.append((i, "extra bytes %r" % bytes(bufs[s][used:used + 60])))
                sel.unregister(s)
                pending.discard(s)
    finally:
        sel.close()
        for s in socks:
            s.setblocking(True)
            s.settimeout(H.SOCK_TIMEOUT)
    if pending:
        bad += [(expect[s][0], "no answer within %.0f s" % deadline_s) for s in pending]
    if bad:
        bad.sort()
        raise H.TestFailure("round %d: %d of %d connections failed, first: %s"
                            % (rnd, len(bad), len(socks), bad[:5]))


def test_1000_concurrent_connections_all_answered():
    H.raise_nofile_limit(NCONN * 2 + 200)
    p = port()
    socks = open_many(p, NCONN)
    try:
        exchange_all(socks, 0)
        exchange_all(socks, 1)  # the same connections, kept alive
    finally:
        for s in socks:
            s.close()
    H.get_ok(p)


def test_1000_connections_then_server_still_serves_many():
    # After the big batch is closed, the slots are free again: another full batch works.
    H.raise_nofile_limit(NCONN * 2 + 200)
    p = port()
    time.sleep(0.2)
    socks = open_many(p, NCONN)
    try:
        exchange_all(socks, 2)
    finally:
        for i, s in enumerate(socks):  # half of them closed with a reset
            if i % 2:
                H.rst_close(s)
            else:
                s.close()
    time.sleep(0.2)
    for path in ("/plaintext", "/json", "/healthz"):
        H.get_ok(p, path)


def churn(p, nthreads, per_thread, wait_for_server_close):
    """Threads that each open connections one after another: a request with Connection:
    close, read the answer, close (at once, or after the server's FIN). Returns failures."""
    errors = []

    def worker(k):
        for j in range(per_thread):
            try:
                with H.connect(p) as s:
                    body = b"t%d-%d" % (k, j)
                    if j % 2:
                        s.sendall(request("POST", "/echo", [("Connection", "close")], body))
                    else:
                        s.sendall(request("GET", "/plaintext", [("Connection", "close")]))
                        body = HELLO
                    rd = Reader(s)
                    r = rd.read_response()
                    if r.status != 200 or r.body != body:
                        errors.append((k, j, "got %d %r" % (r.status, r.body[:40])))
                    elif wait_for_server_close and not H.wait_closed(s, 3.0, rd):
                        errors.append((k, j, "not closed after Connection: close"))
            except Exception as e:  # noqa: BLE001 - collected and reported below
                errors.append((k, j, repr(e)[:120]))

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(nthreads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(45)
    check(not any(t.is_alive() for t in threads), "churn threads did not finish")
    return errors


def test_connection_churn_waiting_for_server_close():
    errors = churn(port(), 8, 150, wait_for_server_close=True)
    check(not errors, "%d of 1200 connections failed: %r" % (len(errors), errors[:5]))
    H.get_ok(port())


def test_server_close_after_response_does_not_hit_other_connections():
    # Regression: clients that close as soon as they have read a "Connection: close" answer
    # (curl, browsers) made other, fresh connections fail now and then: they were closed
    # (EOF) before any answer. Seen about once per 1,000 such connections, only when the
    # client closes before the server's FIN (the server's close/linger path racing new
    # accepts), never when it waits for the FIN (see the test above).
    for rnd in range(6):  # intermittent: up to 6 x 2,400 connections, stop at the first miss
        errors = churn(port(), 8, 300, wait_for_server_close=False)
        check(not errors, "round %d: %d of 2400 connections failed: %r"
              % (rnd, len(errors), errors[:5]))
    H.get_ok(port())


def test_concurrent_large_echoes():
    p = port()
    errors = []
    body_for = {k: bytes([65 + k % 26]) * (100000 + k * 997) for k in range(40)}

    def worker(k):
        try:
            with H.connect(p, timeout=15) as s:
                rd = Reader(s)
                for rnd in range(3):
                    s.sendall(request("POST", "/echo", body=body_for[k]))
                    r = rd.read_response()
                    if r.status != 200 or r.body != body_for[k]:
                        errors.append((k, rnd, r.status, len(r.body)))
                        return
        except Exception as e:  # noqa: BLE001 - collected and reported below
            errors.append((k, repr(e)))

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(45)
    check(not any(t.is_alive() for t in threads), "echo threads did not finish")
    check(not errors, "large echo errors: %r" % errors[:5])


def test_max_conns_limit_reclaims_the_oldest_idle_then_recovers():
    # At the limit the longest-idle keep-alive connection makes room (issue 10; refusing
    # locked new clients out); refusal when nothing is idle: test_conn_limits.py.
    with H.Server("--max-conns", "4", threads=1) as srv:
        held = open_many(srv.port, 4)
        for s in held:
            s.sendall(request("GET", "/plaintext"))
            eq(Reader(s).read_response().status, 200, "within the limit")
        extra = H.connect(srv.port)
        extra.sendall(request("GET", "/plaintext"))
        eq(Reader(extra).read_response().status, 200, "5th connection admitted at the limit")
        check(H.wait_closed(held[0], 3.0), "the oldest idle connection was not reclaimed")
        held.pop(0).close()
        extra.close()
        time.sleep(0.2)
        r = H.exchange(srv.port, request("GET", "/json"))
        eq(r.status, 200, "a new connection after one of the 4 closed")
        for s in held:  # the others are still served
            s.sendall(request("GET", "/plaintext"))
            eq(Reader(s).read_response().status, 200, "held connection")
            s.close()


def test_sigterm_with_connections_open_exits_0():
    srv = H.Server(threads=2, drain_timeout_ms=1000).start()
    try:
        idle = open_many(srv.port, 200)
        kept = open_many(srv.port, 20)
        for s in kept:  # answered, now idle keep-alive
            s.sendall(request("GET", "/plaintext"))
            eq(Reader(s).read_response().status, 200, "kept-alive request")
        partial = open_many(srv.port, 20)
        for s in partial:  # a head that never ends
            s.sendall(b"GET /plaintext HTTP/1.1\r\nHost: x\r\nX-Partial: ")
        time.sleep(0.1)
        t0 = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        rc = srv.wait(10)
        dt = time.monotonic() - t0
        check(rc is not None, "server still running 10 s after SIGTERM with %d connections open"
              % (len(idle) + len(kept) + len(partial)))
        eq(rc, 0, "exit code after SIGTERM with connections open")
        check(dt < 5.0, "stop took %.1f s (drain timeout 1 s)" % dt)
        for name, group in (("kept-alive", kept), ("partial", partial)):
            for s in group[:10]:
                check(H.wait_closed(s, 2.0), "%s connection still open after exit" % name)
        # Connections that never sent a byte were never accepted (TCP_DEFER_ACCEPT): the
        # kernel drops them silently with the listener. What matters for such a client is
        # that its first request fails at once instead of hanging.
        for s in idle[:10]:
            s.settimeout(2.0)
            try:
                s.sendall(request("GET", "/plaintext"))
                got = s.recv(100)
            except (ConnectionResetError, BrokenPipeError):
                got = b""
            eq(got, b"", "a never-accepted connection after exit: no answer, reset or EOF")
        for s in idle + kept + partial:
            s.close()
        try:
            H.connect(srv.port, timeout=1).close()
            refused = False
        except OSError:
            refused = True
        check(refused, "port still accepting after exit")
    finally:
        srv.kill()


def test_sigterm_lets_an_in_flight_request_finish():
    srv = H.Server(threads=1, drain_timeout_ms=3000).start()
    try:
        s = H.connect(srv.port)
        body = b"0123456789" * 100
        s.sendall(request("POST", "/echo", [("Content-Length", str(len(body)))]) + body[:500])
        time.sleep(0.1)
        srv.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        check(srv.alive(), "server exited at once with a request in flight")
        s.sendall(body[500:])
        r = Reader(s).read_response()
        eq((r.status, r.body), (200, body), "the in-flight request's answer")
        check(r.closes(), "answer during drain without Connection: close")
        s.close()
        rc = srv.wait(6)
        eq(rc, 0, "exit code after the drain")
    finally:
        srv.kill()


def test_sigterm_idle_server_exits_promptly():
    srv = H.Server(threads=2, drain_timeout_ms=5000).start()
    try:
        H.get_ok(srv.port)
        t0 = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        rc = srv.wait(10)
        eq(rc, 0, "exit code")
        check(time.monotonic() - t0 < 2.0, "an idle server took %.1f s to stop"
              % (time.monotonic() - t0))
    finally:
        srv.kill()


def test_sigint_exits_0():
    srv = H.Server(threads=1).start()
    try:
        conns = open_many(srv.port, 10)
        srv.send_signal(signal.SIGINT)
        eq(srv.wait(10), 0, "exit code after SIGINT")
        for s in conns:
            s.close()
    finally:
        srv.kill()


def test_sighup_does_not_stop_the_server():
    srv = H.Server(threads=1).start()
    try:
        srv.send_signal(signal.SIGHUP)
        time.sleep(0.3)
        check(srv.alive(), "SIGHUP stopped the server")
        H.get_ok(srv.port)
        srv.stop()
    finally:
        srv.kill()


if __name__ == "__main__":
    H.run_tests(globals())
