"""The blocking-task pool through the binary: saturation answers 503 fast, deadlines answer
504, /db reads SQLite through its lane, and the ring keeps serving while the pool is busy."""
import json
import os
import sys
import threading
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
from harness import check, eq, request, Reader  # noqa: E402


def ask(port, path):
    s = H.connect(port, timeout=10)
    try:
        t0 = time.monotonic()
        H.send(s, request("GET", path))
        r = Reader(s).read_response()
        r.elapsed = time.monotonic() - t0
        return r
    finally:
        s.close()


def test_saturated_pool_answers_503_quickly():
    # The whole pool for one route (no bulkhead), so the bound under test is the queue's.
    srv = H.Server("--pool-threads", "2", "--pool-queue", "2", "--pool-group-share", "100").start()
    try:
        results = []
        lock = threading.Lock()

        def one():
            r = ask(srv.port, "/blocking?ms=400")
            with lock:
                results.append(r)

        threads = [threading.Thread(target=one) for _ in range(12)]
        # Two to run, then two to queue, then the rest: in steps, so the pool threads have
        # taken the first two before the queue fills (a ring wakes the pool once per
        # iteration: twelve in one burst would find the two cells still full).
        for i, t in enumerate(threads):
            t.start()
            if i in (1, 3):
                time.sleep(0.15)
        for t in threads:
            t.join(20)
        ok = [r for r in results if r.status == 200]
        busy = [r for r in results if r.status == 503]
        eq(len(results), 12, "answers")
        eq(len(ok), 4, "accepted: 2 running + 2 queued")
        eq(len(busy), 8, "refused")
        for r in busy:
            eq(r.header("Retry-After"), "1", "Retry-After on 503")
            check(r.elapsed < 0.3, "503 took %.3f s: it must not wait for the pool" % r.elapsed)
        for r in ok:
            eq(r.body, b"slept 400", "body")
        # Refused requests do not close the connection: it is back-pressure, not an error.
        s = H.connect(srv.port)
        H.send(s, request("GET", "/plaintext"))
        eq(Reader(s).read_response().status, 200, "still serving")
        s.close()
    finally:
        srv.stop()


def test_overrun_is_504():
    srv = H.Server("--pool-threads", "1", "--pool-timeout", "150").start()
    try:
        r = ask(srv.port, "/blocking?ms=1000")
        eq(r.status, 504, "overran its deadline")
        check(r.elapsed < 0.8, "504 came at the deadline, not after the full sleep")
    finally:
        srv.stop()


def test_expired_in_queue_is_503_and_never_runs():
    srv = H.Server("--pool-threads", "1", "--pool-timeout", "150").start()
    try:
        first = [None]
        # Holds the only pool thread for 500 ms and does not look at its deadline.
        t1 = threading.Thread(target=lambda: first.__setitem__(
            0, ask(srv.port, "/blocking?ms=500&cooperate=0")))
        t1.start()
        time.sleep(0.05)
        second = ask(srv.port, "/blocking?ms=10")  # queued past its deadline
        t1.join(10)
        eq(second.status, 503, "expired in the queue")
        eq(first[0].status, 200, "the uncooperative task finished (its answer is late, not lost)")
        m = ask(srv.port, "/metrics").body.decode()
        check('ringhttp_pool_expired_total{lane=""} 1' in m, "counted as expired: %s" % m[-600:])
    finally:
        srv.stop()


def test_db_lane_reads_sqlite():
    port = H.shared_server().port
    r = ask(port, "/db?id=42")
    eq(r.status, 200, "status")
    eq(r.header("Content-Type"), "application/json", "type")
    eq(json.loads(r.body), {"id": 42, "name": "item-42", "value": (42 * 7919) % 10007}, "row")
    eq(ask(port, "/db?id=10000").status, 200, "last row")
    eq(ask(port, "/db?id=10001").status, 404, "no such row")
    eq(ask(port, "/db?id=abc").status, 400, "bad id")
    eq(ask(port, "/db").status, 400, "missing id")
    m = ask(port, "/metrics").body.decode()
    check('ringhttp_pool_completed_total{lane="db"}' in m, "the db lane is in /metrics")


def test_ring_serves_while_pool_is_busy():
    srv = H.Server("--pool-threads", "2").start()
    try:
        stop = threading.Event()

        def hammer():
            while not stop.is_set():
                ask(srv.port, "/blocking?ms=100")

        threads = [threading.Thread(target=hammer) for _ in range(6)]
        for t in threads:
            t.start()
        time.sleep(0.2)
        worst = 0.0
        for _ in range(50):
            r = ask(srv.port, "/plaintext")
            eq(r.status, 200, "plaintext status")
            worst = max(worst, r.elapsed)
        stop.set()
        for t in threads:
            t.join(10)
        check(worst < 0.1, "plaintext waited %.3f s behind the pool" % worst)
    finally:
        srv.stop()


if __name__ == "__main__":
    H.run_tests(globals())
