"""Request smuggling and RFC 9112 framing: issue 10's cases 1-10, each sent as raw bytes.

Every framing error must get one error status, then the connection closes, and nothing sent
after the error may be answered: each stream below carries a request after the bad framing
("GET /smuggled", a 404 if it were ever parsed), and the test asserts the exact list of
statuses the stream produced. What RFC 9112 allows (chunk extensions, an 8 KiB target, 100
header fields, a half-close after the request) must be served.
"""
import atexit
import os
import shutil
import socket
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
from harness import check, eq, Reader  # noqa: E402

_tmp = tempfile.mkdtemp(prefix="rh-smuggling-")
atexit.register(shutil.rmtree, _tmp, True)
BIG = H.pattern(1 << 20, 7)
with open(os.path.join(_tmp, "big.bin"), "wb") as f:
    f.write(BIG)
H.SHARED_ARGS = ["--root", _tmp]

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
GET = b"GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n"
CHUNKED = b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"


def port():
    return H.shared_server().port


def stream(raw, wait=3.0, shut=False, count=None):
    """Sends raw on a fresh connection; reads responses until the server closes, `wait`
    passes or `count` responses came. Returns (responses, closed)."""
    out = []
    with H.connect(port()) as s:
        try:
            s.sendall(raw)
            if shut:
                s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and stopped reading early; its answer must be there
        rd = Reader(s)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and len(out) != count:
            s.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                out.append(rd.read_response())
            except H.ConnectionClosed:
                return out, True
            except H.TestFailure:  # a timeout: the server neither answered nor closed
                return out, False
        return out, len(out) != count and H.wait_closed(s, 0.1, rd)


def expect(raw, statuses, closed=True, what=None, says_close=True, **kw):
    what = what or repr(H._short(raw, 100))
    rs, was_closed = stream(raw, count=None if closed else len(statuses), **kw)
    eq([r.status for r in rs], statuses, "%s: statuses" % what)
    if closed:
        check(was_closed, "%s: connection left open after the %d" % (what, statuses[-1]))
    if closed and says_close:
        check(rs[-1].closes(), "%s: the last answer lacks Connection: close" % what)
    return rs


def expect_refused(raw, status=400, what=None):
    """One `status`, then close: whatever follows the bad framing is never answered."""
    return expect(raw + GET + SMUGGLED, [status], what=what)


# ---- 1. Host ----

def test_invalid_host_is_400():
    for host in (b"a/b", b"a b", b"a/path?q", b"/", b"user@a", b"a:b", b"[::1", b"[x]",
                 b"a..b", b"a\\b", b"a:80/x", b"a?", b"a#f"):
        expect_refused(b"GET /plaintext HTTP/1.1\r\nHost: " + host + b"\r\n\r\n",
                       what="Host %r" % host)


def test_valid_hosts_are_served():
    for host in (b"example.com", b"example.com:8080", b"127.0.0.1:1", b"[::1]", b"[::1]:80",
                 b"xn--d1acj3b.example", b"a_b-c~d", b"%41", b"EXAMPLE.COM.", b""):
        rs = expect(b"GET /plaintext HTTP/1.1\r\nHost: " + host + b"\r\n\r\n" + GET,
                    [200, 200], closed=False, what="Host %r" % host)
        eq(rs[0].body, b"Hello, World!", "Host %r: body" % host)


# ---- 2. chunk data must be followed by CRLF ----

def test_chunk_data_not_followed_by_crlf_is_400():
    for tail in (b"5\r\nhelloXX0\r\n\r\n", b"5\r\nhello0\r\n\r\n", b"5\r\nhello\r0\r\n\r\n",
                 b"5\r\nhello\nX0\r\n\r\n", b"5\r\nhelloGET /smuggled HTTP/1.1\r\n\r\n",
                 b"3\r\nhello\r\n0\r\n\r\n"):
        expect_refused(CHUNKED + tail, what="chunked %r" % tail)


# ---- 3. Transfer-Encoding in HTTP/1.0 ----

def test_transfer_encoding_in_http10_is_400_and_closes():
    for te in (b"chunked", b"gzip, chunked", b"identity"):
        expect_refused(b"POST /echo HTTP/1.0\r\nTransfer-Encoding: " + te + b"\r\n\r\n"
                       b"5\r\nhello\r\n0\r\n\r\n", what="1.0 with TE %r" % te)


# ---- 4. chunk extensions are accepted and ignored ----

def test_chunk_extensions_are_ignored():
    for ext in (b";a=b", b';a=b;c="d"', b";a;b=1;c=\"x;y\"", b" ;a=b", b';q="\\"quoted\\""'):
        body = b"1" + ext + b"\r\nx\r\n3" + ext + b"\r\nyzw\r\n0" + ext + b"\r\n\r\n"
        rs = expect(CHUNKED + body + GET, [200, 200], closed=False,
                    what="ext %r" % ext)
        eq(rs[0].body, b"xyzw", "ext %r: decoded body" % ext)


def test_chunked_trailers_are_read_and_ignored():
    rs = expect(CHUNKED + b"2\r\nab\r\n0\r\nX-T: 1\r\nY-U:\tv v\r\n\r\n" + GET, [200, 200],
                closed=False, wait=0.5)
    eq(rs[0].body, b"ab", "body")


def test_chunked_bad_trailers_are_400():
    for trailer in (b"X-T 1\r\n\r\n", b"X-T: 1\r\n folded\r\n\r\n", b" X: 1\r\n\r\n",
                    b"X-T: a\rb\r\n\r\n", b"X-T: a\r\n\rX"):
        expect_refused(CHUNKED + b"2\r\nab\r\n0\r\n" + trailer, what="trailer %r" % trailer)


# ---- 5. an 8 KiB request target, 100 header fields ----

def test_8k_target_and_100_headers_are_served():
    target = b"/plaintext?" + b"q" * (8192 - 11)
    head = b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n"
    head += b"".join(b"X-H%d: v\r\n" % i for i in range(99))
    rs = expect(head + b"\r\n" + GET, [200, 200], closed=False)
    eq(rs[0].body, b"Hello, World!", "body")


# ---- 6. a half-close after the request ----

def test_half_close_still_gets_the_whole_static_file():
    with H.connect(port()) as s:
        s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: a\r\n\r\n")
        s.shutdown(socket.SHUT_WR)
        time.sleep(0.2)  # the EOF arrives while the body is being sent
        rd = Reader(s)
        r = rd.read_response()
        eq(r.status, 200, "status")
        check(r.body == BIG, "body: %d of %d bytes, equal %s" % (len(r.body), len(BIG),
                                                                 r.body == BIG[:len(r.body)]))
        check(H.wait_closed(s, 3.0, rd), "not closed after answering a half-closed client")


def test_half_close_pipelined_requests_all_answered():
    # The last answer may be out before the server reads the EOF: then it closes after it
    # without having said so.
    rs = expect(GET + b"GET /big.bin HTTP/1.1\r\nHost: a\r\n\r\n" + GET, [200, 200, 200],
                shut=True, wait=5.0, says_close=False)
    check(rs[1].body == BIG, "the file in the middle came whole")


# ---- 7. a CR not followed by LF ----

def test_bare_cr_in_chunked_framing_is_400():
    for tail in (b"5\rXhello\r\n0\r\n\r\n", b"5\r\nhello\rX0\r\n\r\n", b"5\r\nhello\r\n0\r\n\rX",
                 b"5;a=b\rXhello\r\n0\r\n\r\n", b"5\r\nhello\r\n0\r\rX", b"0\r\n\rX"):
        expect_refused(CHUNKED + tail, what="chunked %r" % tail)


def test_bare_cr_in_head_is_400():
    for head in (b"GET /plaintext HTTP/1.1\rHost: a\r\n\r\n",
                 b"GET /plaintext HTTP/1.1\r\nHost: a\rX: y\r\n\r\n",
                 b"GET /plaintext HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
                 b"GET /plaintext HTTP/1.1\r\nHost: a\r\n\rX",
                 b"GET /plaintext HTTP/1.1\r\nHost: a\r\nX\r: y\r\n\r\n",
                 b"GET /plaintext HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\r\n\r\n"):
        expect_refused(head, what="head %r" % head)


def test_bare_cr_split_across_reads_is_400():
    # the CR ends one read, the byte after it starts the next
    with H.connect(port()) as s:
        s.sendall(CHUNKED + b"5\r")
        time.sleep(0.1)
        s.sendall(b"Xhello\r\n0\r\n\r\n" + SMUGGLED)
        rd = Reader(s)
        eq(rd.read_response().status, 400, "status")
        check(H.wait_closed(s, 3.0, rd), "not closed")
        check(b"HTTP/" not in rd.buf, "answered after the error: %r" % bytes(rd.buf))


def test_cr_inside_a_body_is_data():
    rs = expect(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\na\rb\r" + GET,
                [200, 200], closed=False)
    eq(rs[0].body, b"a\rb\r", "body")
    rs = expect(CHUNKED + b"3\r\n\rx\r\r\n0\r\n\r\n" + GET, [200, 200], closed=False)
    eq(rs[0].body, b"\rx\r", "chunked body")


# ---- 8. obs-fold ----

def test_obs_fold_is_400_everywhere():
    for head in (b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n 35\r\n\r\n",
                 b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n",
                 b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\t,x\r\n\r\n",
                 b"GET /plaintext HTTP/1.1\r\nHost: a\r\nX-A: a\r\n b\r\n\r\n",
                 b"GET /plaintext HTTP/1.1\r\nHost: a\r\nX-A: a\n\tb\r\n\r\n",
                 b"GET /plaintext HTTP/1.1\r\n Host: a\r\n\r\n",
                 b"GET /plaintext HTTP/1.1\r\nHost:\r\n a\r\n\r\n"):
        expect_refused(head + b"0\r\n\r\n", what="fold %r" % head)


# ---- 9. a chunk size over the body limit ----

def test_huge_chunk_size_is_413_at_once():
    for size in (b"ffffffffffffffff", b"100001", b"fffffffffffffffffffffffff"):
        with H.connect(port()) as s:
            s.sendall(CHUNKED + size + b"\r\n")  # and nothing more: no data to wait for
            rd = Reader(s)
            t0 = time.monotonic()
            r = rd.read_response()
            eq(r.status, 413, "chunk size %r: status" % size)
            check(time.monotonic() - t0 < 2.0, "the 413 waited for data")
            check(H.wait_closed(s, 3.0, rd), "not closed after the 413")


def test_chunk_size_with_whitespace_before_extensions_is_served():
    rs = expect(CHUNKED + b"3 \t;a=b\r\nabc\r\n0\t\r\n\r\n" + GET, [200, 200], closed=False)
    eq(rs[0].body, b"abc", "body")


def test_chunk_size_with_leading_zeros_is_served():
    rs = expect(CHUNKED + b"0000000000000000000003\r\nabc\r\n00\r\n\r\n" + GET, [200, 200],
                closed=False, wait=0.5)
    eq(rs[0].body, b"abc", "body")


def test_bad_chunk_sizes_are_400():
    for size in (b"", b"x", b"-1", b"+1", b"0x5", b"5 5", b"5 ,", b"5\n", b"\r\n5", b"5\x00",
                 b"5;\x01", b"5;a\nb"):
        expect_refused(CHUNKED + size + b"\r\nhello\r\n0\r\n\r\n", what="size %r" % size)


# ---- 10. close wins ----

def test_connection_close_anywhere_wins():
    for ver, conn in ((b"1.0", b"keep-alive, close"), (b"1.0", b"close, keep-alive"),
                      (b"1.1", b"keep-alive, close"), (b"1.1", b"foo, close")):
        req = b"GET /plaintext HTTP/" + ver + b"\r\nHost: a\r\nConnection: " + conn + b"\r\n\r\n"
        expect(req + GET, [200], what="%r %r" % (ver, conn))
    req = (b"GET /plaintext HTTP/1.0\r\nConnection: keep-alive\r\n"
           b"Connection: close\r\n\r\n")
    expect(req + GET, [200], what="two Connection fields")


def test_http10_keep_alive_alone_keeps_the_connection():
    req = b"GET /plaintext HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    expect(req + req, [200, 200], closed=False)


# ---- framing headers that must not be guessed at ----

def test_framing_header_conflicts_are_refused():
    cases = [
        (b"Content-Length: 3\r\nContent-Length: 3\r\n", 400),
        (b"Content-Length: 3, 3\r\n", 400),
        (b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n", 400),
        (b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", 400),
        (b"Transfer-Encoding: chunked\t\r\nTransfer-Encoding: chunked\r\n", 400),
        (b"Transfer-Encoding: chunked, chunked\r\n", 400),
        (b"Transfer-Encoding: xchunked\r\n", 501),
        (b"Transfer-Encoding: chunked, identity\r\n", 400),
        (b"Content-Length: -3\r\n", 400),
        (b"Content-Length: 0x3\r\n", 400),
        (b"Content-Length : 3\r\n", 400),
        (b"Transfer-Encoding : chunked\r\n", 400),
    ]
    for hdr, status in cases:
        expect_refused(b"POST /echo HTTP/1.1\r\nHost: a\r\n" + hdr + b"\r\nabc", status,
                       what="fields %r" % hdr)


if __name__ == "__main__":
    H.run_tests(globals())
