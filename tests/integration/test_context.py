"""Per-request context across the pool hop, the request-id middleware, the access log and
/metrics: ids never cross between concurrent requests, and the log has one line each."""
import os
import re
import sys
import tempfile
import threading

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
from harness import check, eq, request, Reader  # noqa: E402

NREQ = 200


def ask(port, path, headers=()):
    s = H.connect(port, timeout=10)
    try:
        H.send(s, request("GET", path, list(headers)))
        return Reader(s).read_response()
    finally:
        s.close()


def test_200_concurrent_offloaded_requests_keep_their_ids():
    logdir = tempfile.mkdtemp(prefix="rh-log-")
    log = os.path.join(logdir, "access.log")
    # No delay shedding: this burst of 200 is a second of backlog on purpose.
    srv = H.Server("--access-log", log, "--pool-threads", "8", "--pool-shed-target", "0").start()
    try:
        results = [None] * NREQ
        # All connected and sent before any answer: the offloads overlap on the pool.
        socks = [H.connect(srv.port, timeout=15) for _ in range(NREQ)]
        for i, s in enumerate(socks):
            H.send(s, request("GET", "/blocking?ms=20", [("X-Request-Id", "req-%04d" % i)]))

        def collect(i):
            try:
                results[i] = Reader(socks[i]).read_response()
            except Exception as e:  # reported below, per request
                results[i] = e

        threads = [threading.Thread(target=collect, args=(i,)) for i in range(NREQ)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        for s in socks:
            s.close()
        for i, r in enumerate(results):
            check(isinstance(r, H.Response), "request %d: no response (%r)" % (i, r))
            eq(r.status, 200, "request %d status" % i)
            eq(r.body, b"slept 20", "request %d body" % i)
            eq(r.header("X-Request-Id"), "req-%04d" % i, "request %d echoed id" % i)
    finally:
        srv.stop()  # flushes the log
    with open(log, "rb") as f:
        lines = [l for l in f.read().decode().splitlines() if "/blocking" in l]
    eq(len(lines), NREQ, "access log lines for /blocking")
    ids = sorted(re.search(r" rid=(\S+) ", l).group(1) for l in lines)
    eq(ids, ["req-%04d" % i for i in range(NREQ)], "ids in the log")
    for l in lines:
        check(re.match(r'^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] '
                       r'"GET /blocking\?ms=20 HTTP/1\.1" 200 8 "-" "-" rid=\S+ dur_ms=\d+$', l),
              "combined log format: %r" % l)


def test_generated_ids_are_unique_and_invalid_ones_replaced():
    port = H.shared_server().port
    seen = set()
    for _ in range(50):
        rid = ask(port, "/plaintext").header("X-Request-Id")
        check(rid and re.match(r"^[0-9a-f]{8}-[0-9a-f]-[0-9a-f]{12}$", rid), "generated id %r" % rid)
        check(rid not in seen, "id %r repeated" % rid)
        seen.add(rid)
    for bad in ("has space", "x" * 37, "semi;colon", "quote\"d"):
        rid = ask(port, "/plaintext", [("X-Request-Id", bad)]).header("X-Request-Id")
        check(rid != bad and re.match(r"^[0-9a-f]{8}-", rid), "invalid id %r replaced, got %r" % (bad, rid))
    eq(ask(port, "/plaintext", [("X-Request-Id", "ok-id_1.2:3")]).header("X-Request-Id"),
       "ok-id_1.2:3", "valid id kept")


def test_log_escapes_and_logs_rejected_requests():
    logdir = tempfile.mkdtemp(prefix="rh-log-")
    log = os.path.join(logdir, "access.log")
    srv = H.Server("--access-log", log).start()
    try:
        ask(srv.port, "/plaintext", [("User-Agent", 'evil"agent\u00e9'), ("Referer", "r\\x")])
        s = H.connect(srv.port)
        H.send(s, b"\x01\x02 garbage\r\n\r\n")
        eq(Reader(s).read_response().status, 400, "garbage status")
        s.close()
    finally:
        srv.stop()
    text = open(log, "rb").read().decode()
    check(re.search(r'"evil\\x22agent(\\xC3\\xA9|\\xE9)"', text), "quote and non-ASCII escaped: %r" % text)
    check('"r\\x5Cx"' in text, "backslash escaped: %r" % text)
    check(re.search(r'"-" 400 ', text), "the rejected request is logged: %r" % text)


def test_log_reopens_on_sighup():
    import signal
    import time
    logdir = tempfile.mkdtemp(prefix="rh-log-")
    log = os.path.join(logdir, "access.log")
    srv = H.Server("--access-log", log).start()
    try:
        ask(srv.port, "/json")
        time.sleep(0.8)  # the per-ring buffer is flushed at least every 0.5 s
        os.rename(log, log + ".1")
        srv.send_signal(signal.SIGHUP)
        time.sleep(0.3)
        ask(srv.port, "/healthz")
    finally:
        srv.stop()
    check("/json" in open(log + ".1").read(), "old file keeps the earlier line")
    check("/healthz" in open(log).read(), "the new file gets the later line")


def test_metrics_counts_requests_and_pool():
    port = H.shared_server().port
    before = ask(port, "/metrics").body.decode()
    for _ in range(5):
        ask(port, "/blocking?ms=1")
    ask(port, "/nope")
    after = ask(port, "/metrics").body.decode()

    def val(text, name):
        m = re.search(r"^%s (\d+)$" % re.escape(name), text, re.M)
        check(m, "metric %s missing" % name)
        return int(m.group(1))

    check(val(after, 'ringhttp_requests_total{class="2x"}')
          - val(before, 'ringhttp_requests_total{class="2x"}') >= 6, "2xx counted")
    check(val(after, 'ringhttp_requests_total{class="4x"}')
          - val(before, 'ringhttp_requests_total{class="4x"}') >= 1, "4xx counted")
    eq(val(after, 'ringhttp_pool_completed_total{lane=""}')
       - val(before, 'ringhttp_pool_completed_total{lane=""}'), 5, "pool completions")
    check(val(after, "ringhttp_connections_open") >= 1, "open connections gauge")
    check("ringhttp_request_duration_seconds_bucket{le=\"+Inf\"}" in after, "histogram")


if __name__ == "__main__":
    H.run_tests(globals())
