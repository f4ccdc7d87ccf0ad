"""Pipelining and odd segmentation: requests sent together, byte by byte, or split anywhere."""
import os
import random
import sys
import threading
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
from harness import check, eq, request, Reader  # noqa: E402

JSON = b'{"message":"Hello, World!"}'
HELLO = b"Hello, World!"


def port():
    return H.shared_server().port


def mixed_batch(n, tag="", body_sizes=(5,)):
    """n requests cycling /plaintext, /json, POST /echo (distinct bodies), /healthz.
    Returns (bytes, expected list of (status, body))."""
    raw = bytearray()
    expect = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            raw += request("GET", "/plaintext")
            expect.append((200, HELLO))
        elif kind == 1:
            raw += request("GET", "/json")
            expect.append((200, JSON))
        elif kind == 2:
            size = body_sizes[(i // 4) % len(body_sizes)]
            body = (("req-%s%d:" % (tag, i)).encode() * (size // 8 + 2))[:max(size, 1)]
            raw += request("POST", "/echo", [("Content-Type", "text/x-%d" % i)], body)
            expect.append((200, body))
        else:
            raw += request("GET", "/healthz")
            expect.append((200, b"ok\n"))
    return bytes(raw), expect


def read_all(sock, expect, what):
    rd = Reader(sock)
    for i, (status, body) in enumerate(expect):
        r = rd.read_response()
        if r.status != status or r.body != body:
            raise H.TestFailure("%s: response %d of %d: expected %d %r, got %d %r"
                                % (what, i, len(expect), status, H._short(body, 80), r.status,
                                   H._short(r.body, 80)))
    return rd


def test_pipelined_16_in_one_write():
    raw, expect = mixed_batch(16)
    with H.connect(port()) as s:
        s.sendall(raw)
        rd = read_all(s, expect, "16 pipelined")
        check(not rd.buf and H.quiet_for(s, 0.2), "extra bytes or close after 16 responses")


def test_pipelined_100_in_one_write_in_order():
    raw, expect = mixed_batch(100)
    with H.connect(port()) as s:
        s.sendall(raw)
        read_all(s, expect, "100 pipelined")
        s.sendall(request("GET", "/plaintext"))
        eq(Reader(s).read_response().body, HELLO, "request after the batch")


def test_pipelined_100_twice_on_one_connection():
    with H.connect(port()) as s:
        for rnd in range(2):
            raw, expect = mixed_batch(100, tag="r%d-" % rnd)
            s.sendall(raw)
            read_all(s, expect, "round %d" % rnd)


def test_pipelined_echo_content_types_in_order():
    raw = b"".join(request("POST", "/echo", [("Content-Type", "text/x-%d" % i)], b"%d" % i)
                   for i in range(50))
    with H.connect(port()) as s:
        s.sendall(raw)
        rd = Reader(s)
        for i in range(50):
            r = rd.read_response()
            eq((r.header("content-type"), r.body), ("text/x-%d" % i, b"%d" % i),
               "response %d" % i)


def test_pipelined_head_and_get_mix():
    raw = b""
    kinds = []
    for i in range(40):
        if i % 3 == 0:
            raw += request("HEAD", "/plaintext")
            kinds.append(True)
        else:
            raw += request("GET", "/plaintext")
            kinds.append(False)
    with H.connect(port()) as s:
        s.sendall(raw)
        rd = Reader(s)
        for i, is_head in enumerate(kinds):
            r = rd.read_response(head_request=is_head)
            eq(r.status, 200, "response %d" % i)
            eq(r.body, b"" if is_head else HELLO, "body %d" % i)


def test_pipelined_with_bodies_of_many_sizes():
    sizes = [0, 1, 100, 4095, 4096, 4097, 9000, 16384, 20000, 70000, 3]
    raw, expect = mixed_batch(4 * len(sizes), tag="b", body_sizes=sizes)
    with H.connect(port(), timeout=10) as s:
        s.sendall(raw)
        read_all(s, expect, "pipelined with bodies")


def test_pipelined_chunked_and_sized_bodies():
    raw = b""
    expect = []
    for i in range(30):
        body = (b"chunk%03d-" % i) * (i * 37 % 500 + 1)
        if i % 2:
            pieces = [body[j:j + 333] for j in range(0, len(body), 333)]
            raw += request("POST", "/echo", [("Transfer-Encoding", "chunked")]) + \
                H.chunked(pieces)
        else:
            raw += request("PUT", "/echo", body=body)
        expect.append((200, body))
    with H.connect(port()) as s:
        s.sendall(raw)
        read_all(s, expect, "chunked/sized mix")


def test_pipelined_large_batch_with_concurrent_reader():
    # 3,000 requests written while the responses are read: the server must apply
    # back-pressure rather than lose or reorder anything when the client is slow to read.
    raw, expect = mixed_batch(3000, tag="big", body_sizes=(5, 300, 3000))
    err = []

    def writer(sock):
        try:
            for i in range(0, len(raw), 65536):
                sock.sendall(raw[i:i + 65536])
        except OSError as e:
            err.append(e)

    with H.connect(port(), timeout=15) as s:
        t = threading.Thread(target=writer, args=(s,), daemon=True)
        t.start()
        read_all(s, expect, "3000 pipelined")
        t.join(15)
        check(not t.is_alive(), "writer still blocked")
        check(not err, "writer failed: %r" % err)


def test_pipelined_responses_when_client_reads_late():
    # The client writes 500 requests and only then starts to read.
    raw, expect = mixed_batch(500, tag="late", body_sizes=(40,))
    with H.connect(port(), timeout=10) as s:
        s.sendall(raw)
        time.sleep(0.3)
        read_all(s, expect, "500 read late")


def test_request_one_byte_at_a_time():
    raw = request("GET", "/plaintext", [("X-Slow", "yes"), ("Accept", "*/*")])
    with H.connect(port()) as s:
        for b in raw:
            s.sendall(bytes([b]))
            time.sleep(0.002)
        r = Reader(s).read_response()
    eq((r.status, r.body), (200, HELLO), "status, body")


def test_post_one_byte_at_a_time():
    raw = request("POST", "/echo", [("Content-Type", "text/plain")], b"slow body bytes")
    with H.connect(port()) as s:
        for b in raw:
            s.sendall(bytes([b]))
            time.sleep(0.002)
        r = Reader(s).read_response()
    eq((r.status, r.body), (200, b"slow body bytes"), "status, body")


def test_chunked_one_byte_at_a_time():
    raw = request("POST", "/echo", [("Transfer-Encoding", "chunked")]) + \
        H.chunked([b"ab", b"cde", b"f"], ext=";x=1")
    with H.connect(port()) as s:
        for b in raw:
            s.sendall(bytes([b]))
            time.sleep(0.002)
        r = Reader(s).read_response()
    eq((r.status, r.body), (200, b"abcdef"), "status, body")


def big_head_request(i, size=6000, method="GET", path="/plaintext", body=None):
    hdrs = []
    n = 0
    k = 0
    while n < size:
        v = ("v%d-%d-" % (i, k)) * 20
        hdrs.append(("X-Fill-%02d" % k, v))
        n += len(v) + 14
        k += 1
    return request(method, path, hdrs, body)


def test_6k_headers_split_at_every_region():
    raw = big_head_request(0)
    check(5800 < len(raw) < 7500, "head size %d" % len(raw))
    with H.connect(port()) as s:
        rd = Reader(s)
        # split once at many different points, one request per split point
        for cut in list(range(1, 80, 13)) + list(range(3000, len(raw), 397)) + [len(raw) - 1]:
            s.sendall(raw[:cut])
            time.sleep(0.002)
            s.sendall(raw[cut:])
            r = rd.read_response()
            eq((r.status, r.body), (200, HELLO), "split at %d" % cut)


def test_6k_headers_in_many_random_pieces():
    rng = random.Random(1234)
    with H.connect(port()) as s:
        rd = Reader(s)
        for i in range(10):
            raw = big_head_request(i)
            pos = 0
            while pos < len(raw):
                n = rng.randint(1, 1500)
                s.sendall(raw[pos:pos + n])
                pos += n
                time.sleep(0.001)
            r = rd.read_response()
            eq((r.status, r.body), (200, HELLO), "request %d" % i)


def test_pipelined_6k_heads_straddling_writes():
    # 20 requests with 6 KB heads (and some bodies) as one byte stream, cut into random pieces
    # that straddle request boundaries: the input buffer must compact without losing bytes.
    rng = random.Random(99)
    stream = b""
    expect = []
    for i in range(20):
        if i % 3 == 2:
            body = (b"body-%d|" % i) * (i * 300)
            stream += big_head_request(i, method="POST", path="/echo", body=body)
            expect.append((200, body))
        else:
            stream += big_head_request(i)
            expect.append((200, HELLO))
    result = {}

    def reader(sock):
        try:
            read_all(sock, expect, "20 big heads")
            result["ok"] = True
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            result["err"] = e

    with H.connect(port(), timeout=10) as s:
        t = threading.Thread(target=reader, args=(s,), daemon=True)
        t.start()
        pos = 0
        while pos < len(stream):
            n = rng.choice([1, 7, 500, 4096, 6000, 9000, 20000])
            s.sendall(stream[pos:pos + n])
            pos += n
            time.sleep(0.001)
        t.join(20)
        check(not t.is_alive(), "reader did not finish")
        if "err" in result:
            raise result["err"]


def test_pipelined_after_body_in_same_segment():
    # The end of a body and the start of the next request in one segment.
    body = b"x" * 5000
    raw = request("POST", "/echo", body=body) + request("GET", "/json")
    with H.connect(port()) as s:
        cut = len(raw) - len(request("GET", "/json")) + 10
        s.sendall(raw[:cut])
        time.sleep(0.01)
        s.sendall(raw[cut:])
        read_all(s, [(200, body), (200, JSON)], "body then GET")


def test_pipelined_batch_ending_with_connection_close():
    raw, expect = mixed_batch(10)
    raw += request("GET", "/plaintext", [("Connection", "close")])
    raw += request("GET", "/json")  # after close: must not be answered
    with H.connect(port()) as s:
        s.sendall(raw)
        rd = read_all(s, expect + [(200, HELLO)], "batch with close")
        check(H.wait_closed(s, 3.0, rd), "connection not closed after Connection: close")
        eq(bytes(rd.buf), b"", "bytes after the Connection: close response")


if __name__ == "__main__":
    H.run_tests(globals())
