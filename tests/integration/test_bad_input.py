"""Bad input: every error status, clients that go away, and the timeouts.

The contract: a malformed or over-limit request gets a clear HTTP error status with
"Connection: close", then the server closes the connection (it may shut down writing and
discard further input for a while); the server never crashes and keeps serving others.
"""
import os
import socket
import sys
import threading
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
from harness import check, eq, request, Reader  # noqa: E402

MAX_BODY = 1000
H.SHARED_ARGS = ["--max-body", str(MAX_BODY)]


def port():
    return H.shared_server().port


def expect_error(raw, status, what=None, send_pieces=None, close_timeout=3.0):
    """Sends raw on a fresh connection, asserts one `status` answer with Connection: close,
    then that the connection is closed, then that the server still serves a fresh one."""
    what = what or repr(H._short(raw, 80))
    with H.connect(port()) as s:
        if send_pieces:
            for piece in send_pieces(raw):
                s.sendall(piece)
                time.sleep(0.002)
        else:
            try:
                s.sendall(raw)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server answered and stopped reading early; the answer must be there
        rd = Reader(s)
        try:
            r = rd.read_response()
        except H.ConnectionClosed as e:
            raise H.TestFailure("%s: no response before close (%s)" % (what, e))
        if r.status != status:
            raise H.TestFailure("%s: expected status %d, got %d %s (body %r)"
                                % (what, status, r.status, r.reason, r.body))
        check(r.closes(), "%s: %d without Connection: close (headers %r)"
              % (what, status, r.headers))
        eq(int(r.header("content-length", "-1")), len(r.body), "%s: Content-Length" % what)
        check(H.wait_closed(s, close_timeout, rd),
              "%s: connection still open %.0f s after the %d" % (what, close_timeout, status))
        check(not rd.buf.startswith(b"HTTP/"), "%s: a second response after the error: %r"
              % (what, H._short(bytes(rd.buf))))
    H.get_ok(port())
    return r


def expect_ok(raw, what=None):
    r = H.exchange(port(), raw)
    check(r.status < 400, "%s: expected success, got %d %r" % (what or repr(raw[:80]), r.status,
                                                               r.body))
    return r


# ---- the request line ----

def test_uri_over_8192_is_414():
    expect_error(request("GET", "/" + "a" * 8200), 414)


def test_uri_far_over_head_limit_is_414():
    expect_error(request("GET", "/plaintext?" + "q" * 20000), 414)


def test_uri_over_8192_sent_in_pieces_is_414():
    raw = request("GET", "/" + "b" * 9000)
    expect_error(raw, 414, "9000-byte URI in 500-byte pieces",
                 send_pieces=lambda r: [r[i:i + 500] for i in range(0, len(r), 500)])


def test_uri_of_exactly_8192_is_accepted():
    # nginx's default (large_client_header_buffers 4 8k) takes an 8 KiB target
    uri = "/plaintext?" + "a" * (8192 - len("/plaintext?"))
    eq(len(uri), 8192, "uri length")
    r = expect_ok(request("GET", uri), "8192-byte URI")
    eq(r.body, b"Hello, World!", "body")


def test_unknown_wellformed_method_is_501():
    expect_error(b"FOO / HTTP/1.1\r\nHost: x\r\n\r\n", 501)


def test_unknown_method_is_501_whatever_its_first_letter():
    # A well-formed token is a method we do not implement (501), not garbage (400), even
    # when no method llhttp knows starts with its first letter (methods are case-sensitive).
    for m in (b"XYZ", b"QUERY", b"ZZZ", b"get"):
        expect_error(m + b" /plaintext HTTP/1.1\r\nHost: x\r\n\r\n", 501, "method %r" % m)


def test_known_but_unserved_method_is_501():
    expect_error(b"PROPFIND / HTTP/1.1\r\nHost: x\r\n\r\n", 501)


def test_garbage_is_400_and_closes():
    expect_error(b"\x00\x01\x02\xff garbage \r\n\r\n", 400)


def test_garbage_text_line_is_400():
    expect_error(b"this is not http\r\n\r\n", 400)


def test_binary_garbage_after_valid_request_is_400():
    with H.connect(port()) as s:
        s.sendall(request("GET", "/plaintext") + b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        rd = Reader(s)
        eq(rd.read_response().status, 200, "the valid request first")
        r = rd.read_response()
        eq(r.status, 400, "then the garbage")
        check(r.closes() and H.wait_closed(s, 3.0, rd), "not closed after 400")
    H.get_ok(port())


def test_http_2_0_is_505():
    expect_error(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505)


def test_http_3_1_is_505():
    expect_error(b"GET / HTTP/3.1\r\nHost: x\r\n\r\n", 505)


def test_control_char_in_uri_is_400():
    expect_error(b"GET /\x01abc HTTP/1.1\r\nHost: x\r\n\r\n", 400)


# ---- headers ----

def test_head_over_12288_in_one_write_is_431():
    # one header that takes the head past 12288 bytes, all sent at once
    expect_error(request("GET", "/plaintext", [("X-Big", "v" * 12400)]), 431)


def test_head_of_many_headers_over_12288_in_one_write_is_431():
    hdrs = [("X-H%02d" % i, "h" * 300) for i in range(45)]  # 45 headers, ~14 KB
    expect_error(request("GET", "/plaintext", hdrs), 431)


def test_head_of_16000_bytes_in_one_write_is_431():
    expect_error(request("GET", "/plaintext", [("X-Big", "v" * 16000)]), 431)


def test_head_over_12288_sent_slowly_is_431():
    raw = request("GET", "/plaintext", [("X-Big", "v" * 13000)])
    expect_error(raw, 431, "13 KB head in 1 KB pieces",
                 send_pieces=lambda r: [r[i:i + 1000] for i in range(0, len(r), 1000)])


def test_endless_header_is_431():
    # headers that never end, sent without waiting: the server must stop at its limit
    expect_error(b"GET / HTTP/1.1\r\nHost: x\r\nX-Endless: " + b"z" * 60000, 431)


def test_head_under_12288_is_accepted():
    raw = request("GET", "/plaintext", [("X-Big", "v" * 12000)])
    check(len(raw) < 12288, "head size %d" % len(raw))
    expect_ok(raw, "%d-byte head" % len(raw))


def test_8192_target_with_headers_is_accepted():
    uri = "/plaintext?" + "t" * (8192 - len("/plaintext?"))
    expect_ok(request("GET", uri, [("X-N%d" % i, "v" * 20) for i in range(60)]),
              "8 KiB target and 60 headers")


def test_101_headers_is_431():
    hdrs = [("X-N%d" % i, "v") for i in range(100)]  # + Host = 101
    expect_error(request("GET", "/plaintext", hdrs), 431)


def test_100_headers_is_accepted():
    hdrs = [("X-N%d" % i, "v") for i in range(99)]  # + Host = 100
    expect_ok(request("GET", "/plaintext", hdrs), "100 headers")


def test_missing_host_http11_is_400():
    expect_error(b"GET /plaintext HTTP/1.1\r\n\r\n", 400)


def test_missing_host_http10_is_accepted():
    r = H.exchange(port(), b"GET /plaintext HTTP/1.0\r\n\r\n")
    eq(r.status, 200, "status")


def test_two_host_headers_is_400():
    expect_error(b"GET /plaintext HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400)


def test_two_identical_host_headers_is_400():
    expect_error(b"GET /plaintext HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", 400)


def test_header_without_colon_is_400():
    expect_error(b"GET /plaintext HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n", 400)


def test_space_before_colon_is_400():
    expect_error(b"GET /plaintext HTTP/1.1\r\nHost : x\r\n\r\n", 400)


def test_nul_in_header_value_is_400():
    expect_error(b"GET /plaintext HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400)


def test_unsupported_expectation_is_417():
    expect_error(request("POST", "/echo", [("Expect", "something-else")], b"abc"), 417)


# ---- framing ----

def test_content_length_over_max_body_is_413_without_reading_body():
    # Only the head is sent: the 413 must come at once, not after a body that never comes.
    raw = request("POST", "/echo", [("Content-Length", "1000000")])
    t0 = time.monotonic()
    expect_error(raw, 413)
    check(time.monotonic() - t0 < 3.5, "413 took %.1f s" % (time.monotonic() - t0))


def test_content_length_just_over_max_body_is_413():
    expect_error(request("POST", "/echo", body=b"x" * (MAX_BODY + 1)), 413)


def test_content_length_at_max_body_is_accepted():
    body = b"y" * MAX_BODY
    r = expect_ok(request("POST", "/echo", body=body), "body of exactly --max-body")
    eq(r.body, body, "echoed body")


def test_chunked_body_over_max_body_is_413():
    pieces = [b"c" * 300] * 5  # 1500 > 1000
    expect_error(request("POST", "/echo", [("Transfer-Encoding", "chunked")])
                 + H.chunked(pieces), 413)


def test_413_readable_when_client_sends_the_body_anyway():
    # A client that does not wait sends the whole body after the head: the server answers
    # 413 early, and must keep reading (and discarding) so the answer is not lost to a reset.
    raw = request("POST", "/echo", body=b"B" * 300000)
    with H.connect(port()) as s:
        done = threading.Event()

        def writer():
            try:
                s.sendall(raw)
            except OSError:
                pass
            done.set()

        t = threading.Thread(target=writer, daemon=True)
        t.start()
        rd = Reader(s)
        try:
            r = rd.read_response()
        except H.ConnectionClosed as e:
            raise H.TestFailure("413 lost: %s" % e)
        eq(r.status, 413, "status")
        check(r.closes(), "413 without Connection: close")
        t.join(5)
        check(H.wait_closed(s, 4.0, rd), "not closed after 413")
    H.get_ok(port())


def test_expect_continue_over_max_body_gets_413_not_100():
    with H.connect(port()) as s:
        s.sendall(request("POST", "/echo", [("Expect", "100-continue"),
                                            ("Content-Length", "5000")]))
        rd = Reader(s)
        r = rd.read_response(allow_interim=True)
        eq(r.status, 413, "first answer to an oversized Expect: 100-continue request")
        check(H.wait_closed(s, 3.0, rd), "not closed after 413")


def test_huge_content_length_is_413_or_400():
    raw = request("POST", "/echo", [("Content-Length", "99999999999999999999999")])
    with H.connect(port()) as s:
        s.sendall(raw)
        rd = Reader(s)
        r = rd.read_response()
        check(r.status in (400, 413), "status %d" % r.status)
        check(r.closes() and H.wait_closed(s, 3.0, rd), "not closed")
    H.get_ok(port())


def test_content_length_and_transfer_encoding_is_400():
    raw = (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    expect_error(raw, 400)


def test_transfer_encoding_then_content_length_is_400():
    raw = (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
           b"Content-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    expect_error(raw, 400)


def test_invalid_content_length_is_400():
    for v in (b"abc", b"-1", b"1 2", b"0x10", b"+5", b""):
        expect_error(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: " + v
                     + b"\r\n\r\nhello", 400, "Content-Length %r" % v)


def test_conflicting_content_lengths_is_400():
    expect_error(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                 b"Content-Length: 6\r\n\r\nhello!", 400)


def test_transfer_encoding_not_ending_in_chunked_is_400():
    # RFC 9112 6.3: chunked not final in a request -> the server MUST answer 400 and close.
    expect_error(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"
                 b"5\r\nhello\r\n0\r\n\r\n", 400)


def test_bad_chunk_size_is_400():
    expect_error(request("POST", "/echo", [("Transfer-Encoding", "chunked")])
                 + b"zz\r\nhello\r\n0\r\n\r\n", 400)


def test_chunk_data_longer_than_size_is_400():
    expect_error(request("POST", "/echo", [("Transfer-Encoding", "chunked")])
                 + b"3\r\nhello\r\n0\r\n\r\n", 400)


def test_bad_request_after_good_ones_on_keepalive():
    with H.connect(port()) as s:
        rd = Reader(s)
        for _ in range(3):
            s.sendall(request("GET", "/plaintext"))
            eq(rd.read_response().status, 200, "good request")
        s.sendall(b"GET / HTTP/9.9\r\nHost: x\r\n\r\n")
        r = rd.read_response()
        eq(r.status, 505, "bad version after good requests")
        check(r.closes() and H.wait_closed(s, 3.0, rd), "not closed after 505")
    H.get_ok(port())


def test_no_request_served_after_error_in_pipeline():
    # An error ends the connection: requests pipelined after it are not answered.
    raw = b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n" + request("GET", "/plaintext")
    with H.connect(port()) as s:
        s.sendall(raw)
        rd = Reader(s)
        eq(rd.read_response().status, 400, "status")
        check(H.wait_closed(s, 3.0, rd), "not closed")
        eq(bytes(rd.buf), b"", "bytes after the 400")


def test_many_bad_requests_in_a_row_leave_server_healthy():
    bad = [b"\x00\x00\x00\r\n\r\n", b"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
           b"FOO / HTTP/1.1\r\nHost: x\r\n\r\n", b"GET / HTTP/1.1\r\n\r\n",
           request("GET", "/" + "u" * 5000),
           request("POST", "/echo", [("Content-Length", "5000")])]
    for i in range(200):
        with H.connect(port()) as s:
            s.sendall(bad[i % len(bad)])
            r = Reader(s).read_response()
            check(r.status >= 400, "bad request %d got %d" % (i, r.status))
    H.get_ok(port())


# ---- clients that go away ----

def test_disconnect_mid_header_then_server_still_answers():
    for i in range(50):
        s = H.connect(port())
        s.sendall(b"GET /plaintext HTTP/1.1\r\nHost: x\r\nX-Half: ab")
        if i % 2:
            H.rst_close(s)
        else:
            s.close()
    H.get_ok(port())


def test_disconnect_mid_body_then_server_still_answers():
    for i in range(50):
        s = H.connect(port())
        s.sendall(request("POST", "/echo", [("Content-Length", "900")]) + b"x" * 450)
        if i % 2:
            H.rst_close(s)
        else:
            s.close()
    H.get_ok(port())


def test_disconnect_mid_chunked_body_then_server_still_answers():
    for i in range(30):
        s = H.connect(port())
        s.sendall(request("POST", "/echo", [("Transfer-Encoding", "chunked")]) + b"100\r\nabc")
        s.close()
    H.get_ok(port())


def test_disconnect_before_reading_response():
    for i in range(100):
        s = H.connect(port())
        s.sendall(request("POST", "/echo", body=b"z" * 900) * 3)
        if i % 2:
            H.rst_close(s)
        else:
            s.close()
    H.get_ok(port())


def test_half_close_after_request_still_gets_answer():
    # The client shuts down writing after its request: the response must still arrive.
    with H.connect(port()) as s:
        s.sendall(request("GET", "/plaintext") + request("GET", "/json"))
        s.shutdown(socket.SHUT_WR)
        rd = Reader(s)
        eq(rd.read_response().body, b"Hello, World!", "first answer after half-close")
        eq(rd.read_response().body, b'{"message":"Hello, World!"}', "second answer")
        check(H.wait_closed(s, 3.0, rd), "not closed after answering a half-closed client")


def test_reset_while_large_responses_are_pending():
    # Big pipelined echoes that are never read, then a reset: the server's sends fail midway.
    from harness import Server
    with Server() as srv:
        body = b"r" * 500000
        for i in range(10):
            s = H.connect(srv.port)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            try:
                s.sendall(request("POST", "/echo", body=body) * 2)
            except OSError:
                pass
            time.sleep(0.02)
            H.rst_close(s)
        r = H.exchange(srv.port, request("GET", "/plaintext"))
        eq(r.status, 200, "after resets")
        others = []
        for _ in range(5):
            others.append(H.connect(srv.port))
        for s in others:
            s.sendall(request("GET", "/json"))
        for s in others:
            eq(Reader(s).read_response().status, 200, "other client")
            s.close()


def test_peer_reset_frees_connection_slot_once():
    # Regression: a recv that fails (ECONNRESET) closed the connection, then on_recv finished
    # the close a second time, pushing the slot onto the free list twice; the next two
    # concurrent connections shared one slot and the server crashed (SIGSEGV).
    with H.Server(threads=1) as srv:
        for how in ("after reading the response", "with the response unread"):
            s = H.connect(srv.port)
            s.sendall(request("GET", "/plaintext"))
            if how == "after reading the response":
                eq(Reader(s).read_response().status, 200, "first request")
            else:
                time.sleep(0.05)
            H.rst_close(s)
            time.sleep(0.1)
            conns = [H.connect(srv.port) for _ in range(3)]
            for c in conns:
                c.sendall(request("GET", "/json"))
            for i, c in enumerate(conns):
                try:
                    r = Reader(c).read_response()
                except H.TestFailure as e:
                    raise H.TestFailure("reset %s, then 3 concurrent connections: #%d got no "
                                        "answer (%s); server alive: %s"
                                        % (how, i, e, srv.alive()))
                eq(r.status, 200, "connection %d after a reset" % i)
                c.close()
            check(srv.alive(), "server died after a peer reset (%s)" % how)


def test_disconnects_do_not_disturb_a_concurrent_client():
    stop = threading.Event()
    errors = []

    def churn():
        i = 0
        while not stop.is_set():
            try:
                s = H.connect(port())
                s.sendall([b"GET /plaintext HTTP/1.1\r\nHo",
                           request("POST", "/echo", [("Content-Length", "500")]) + b"a" * 100,
                           request("GET", "/plaintext") * 5][i % 3])
                (H.rst_close if i % 2 else socket.socket.close)(s)
            except OSError as e:
                errors.append(e)
                return
            i += 1

    t = threading.Thread(target=churn, daemon=True)
    t.start()
    try:
        with H.connect(port()) as s:
            rd = Reader(s)
            for i in range(300):
                s.sendall(request("POST", "/echo", body=b"steady-%d" % i))
                r = rd.read_response()
                eq((r.status, r.body), (200, b"steady-%d" % i), "steady request %d" % i)
    finally:
        stop.set()
        t.join(10)
    check(not errors, "churn client failed to connect: %r" % errors)
    H.get_ok(port())


# ---- timeouts ----

_timeout_srv = None


def timeout_server():
    global _timeout_srv
    if _timeout_srv is None or not _timeout_srv.alive():
        _timeout_srv = H.Server("--header-timeout", "500", "--body-timeout", "500",
                                "--idle-timeout", "500").start()
    return _timeout_srv


def expect_408_or_close(s, within, what):
    """Within `within` seconds: a 408 (with Connection: close) then close, or just a close."""
    t0 = time.monotonic()
    rd = Reader(s)
    s.settimeout(within)
    try:
        r = rd.read_response()
    except H.ConnectionClosed:
        return time.monotonic() - t0, None
    except H.TestFailure as e:
        raise H.TestFailure("%s: nothing within %.1f s (%s)" % (what, within, e))
    eq(r.status, 408, "%s: status" % what)
    check(r.closes(), "%s: 408 without Connection: close" % what)
    check(H.wait_closed(s, 2.0, rd), "%s: not closed after 408" % what)
    return time.monotonic() - t0, r


def test_header_timeout_partial_head_gets_408():
    srv = timeout_server()
    with H.connect(srv.port) as s:
        s.sendall(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n")
        dt, r = expect_408_or_close(s, 2.5, "partial head")
        check(r is not None, "partial head: closed without a 408")
        check(dt >= 0.3, "408 after only %.2f s (timeout is 500 ms)" % dt)
    H.get_ok(srv.port)


def test_header_timeout_not_reset_by_dripping_bytes():
    # A slow-loris client sends a byte every 100 ms: the head timeout covers the whole head.
    srv = timeout_server()
    with H.connect(srv.port) as s:
        t0 = time.monotonic()
        s.sendall(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n")
        closed = False
        while time.monotonic() - t0 < 3.0:
            try:
                s.sendall(b"X")
            except OSError:
                closed = True
                break
            if not H.still_open(s, 0.1):
                closed = True
                break
            s.settimeout(0.05)
            try:
                if s.recv(1, socket.MSG_PEEK):
                    closed = True  # the 408 is on its way
                    break
            except socket.timeout:
                pass
            finally:
                s.settimeout(H.SOCK_TIMEOUT)
        dt = time.monotonic() - t0
        check(closed, "a head dripping a byte per 100 ms still open after %.1f s" % dt)
        check(dt < 2.5, "dripping head answered only after %.1f s" % dt)
    H.get_ok(srv.port)


def test_header_timeout_on_connection_that_sends_nothing():
    srv = timeout_server()
    with H.connect(srv.port) as s:
        dt, _ = expect_408_or_close(s, 2.5, "silent connection")
        check(dt >= 0.3, "silent connection closed after only %.2f s" % dt)


def test_header_timeout_on_second_request_of_keepalive():
    srv = timeout_server()
    with H.connect(srv.port) as s:
        rd = Reader(s)
        s.sendall(request("GET", "/plaintext"))
        eq(rd.read_response().status, 200, "first request")
        s.sendall(b"GET /json HTTP/1.1\r\nHo")
        s.settimeout(2.5)
        try:
            r = rd.read_response()
            eq(r.status, 408, "second, partial request")
        except H.ConnectionClosed:
            pass
        check(H.wait_closed(s, 2.0, rd), "not closed after the head timeout")


def test_body_timeout_partial_body_gets_408():
    srv = timeout_server()
    with H.connect(srv.port) as s:
        s.sendall(request("POST", "/echo", [("Content-Length", "100")]) + b"0123456789")
        dt, r = expect_408_or_close(s, 2.5, "partial body")
        check(r is not None, "partial body: closed without a 408")
        check(dt >= 0.3, "408 after only %.2f s" % dt)
    H.get_ok(srv.port)


def test_body_timeout_when_head_arrives_without_body():
    # Only the head of a POST: the body timeout must still run (slow-POST attack).
    srv = timeout_server()
    with H.connect(srv.port) as s:
        s.sendall(request("POST", "/echo", [("Content-Length", "100")]))
        dt, r = expect_408_or_close(s, 2.5, "head without its body")
        check(r is not None, "head without body: closed without a 408")
    H.get_ok(srv.port)


def test_body_timeout_after_body_bytes_in_later_segment():
    srv = timeout_server()
    with H.connect(srv.port) as s:
        s.sendall(request("POST", "/echo", [("Content-Length", "100")]))
        time.sleep(0.1)
        s.sendall(b"0123456789")
        dt, r = expect_408_or_close(s, 2.5, "body stalled after 10 bytes")
        check(r is not None, "stalled body: closed without a 408")
    H.get_ok(srv.port)


def test_body_timeout_is_between_reads():
    # Body bytes every 200 ms (under the 500 ms body timeout) keep the request alive.
    srv = timeout_server()
    with H.connect(srv.port) as s:
        s.sendall(request("POST", "/echo", [("Content-Length", "8")]))
        for i in range(8):
            time.sleep(0.2)
            s.sendall(b"%d" % i)
        r = Reader(s).read_response()
        eq((r.status, r.body), (200, b"01234567"), "slow but steady body")


def test_idle_timeout_closes_keepalive_connection():
    srv = timeout_server()
    with H.connect(srv.port) as s:
        rd = Reader(s)
        s.sendall(request("GET", "/plaintext"))
        eq(rd.read_response().status, 200, "request")
        t0 = time.monotonic()
        check(H.wait_closed(s, 2.5, rd), "idle keep-alive connection open after 2.5 s")
        dt = time.monotonic() - t0
        check(dt >= 0.3, "idle connection closed after only %.2f s" % dt)
        eq(bytes(rd.buf), b"", "bytes sent on idle close")


def test_idle_timeout_restarts_after_each_request():
    srv = timeout_server()
    with H.connect(srv.port) as s:
        rd = Reader(s)
        for i in range(8):  # 1.6 s of activity, gaps of 200 ms < 500 ms
            s.sendall(request("GET", "/plaintext"))
            eq(rd.read_response().status, 200, "request %d" % i)
            time.sleep(0.2)
        check(H.quiet_for(s, 0.05), "active keep-alive connection closed by the idle timer")


def test_write_timeout_closes_a_client_that_stops_reading():
    # A 12 MB answer to a client that reads nothing: once the socket buffers are full, the
    # send makes no progress and --write-timeout 500 must close the connection.
    size = 12 * 1024 * 1024
    with H.Server("--write-timeout", "500", "--max-body", str(size), threads=1) as srv:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        s.settimeout(10)
        s.connect((H.HOST, srv.port))
        try:
            s.sendall(request("POST", "/echo", body=b"w" * size))
            time.sleep(2.5)  # read nothing
            got = 0
            s.settimeout(3)
            try:
                while True:
                    chunk = s.recv(1 << 20)
                    if not chunk:
                        break
                    got += len(chunk)
            except socket.timeout:
                raise H.TestFailure("connection still open 2.5 s into a stalled send "
                                    "(%d bytes read before the wait ended)" % got)
            except ConnectionResetError:
                pass
            check(got < size, "the whole answer arrived (%d bytes): the stall was not real"
                  % got)
        finally:
            s.close()
        H.get_ok(srv.port)


def test_timeouts_server_exits_0():
    srv = timeout_server()
    srv.stop()


if __name__ == "__main__":
    H.run_tests(globals())
