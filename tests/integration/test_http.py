"""Happy paths of the ringhttp binary, with curl and with raw sockets."""
import os
import re
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
from harness import check, eq, request, Reader  # noqa: E402

DATE_RE = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d "
                     r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} "
                     r"\d\d:\d\d:\d\d GMT$")


def port():
    return H.shared_server().port




# ---- curl ----

def test_curl_plaintext_body_and_headers():
    p = H.curl("-i", H.shared_server().url("/plaintext"))
    eq(p.returncode, 0, "curl exit code (stderr %r)" % p.stderr)
    head, _, body = p.stdout.partition(b"\r\n\r\n")
    eq(body, b"Hello, World!", "body")
    lines = head.decode().split("\r\n")
    eq(lines[0], "HTTP/1.1 200 OK", "status line")
    hdrs = {}
    for ln in lines[1:]:
        n, v = ln.split(":", 1)
        check(n.lower() not in hdrs, "header %s sent twice" % n)
        hdrs[n.lower()] = v.strip()
    eq(hdrs.get("content-length"), "13", "Content-Length")
    eq(hdrs.get("content-type"), "text/plain", "Content-Type")
    check("server" in hdrs and hdrs["server"], "Server header missing: %r" % hdrs)
    check(DATE_RE.match(hdrs.get("date", "")), "Date missing or not IMF-fixdate: %r" % hdrs)


def test_curl_json():
    p = H.curl("-w", "\n%{http_code} %{content_type}", H.shared_server().url("/json"))
    eq(p.returncode, 0, "curl exit code (stderr %r)" % p.stderr)
    eq(p.stdout, b'{"message":"Hello, World!"}\n200 application/json', "curl output")


def test_curl_echo_post_small():
    p = H.curl("--data-binary", "hello, echo", "-H", "Content-Type: text/x-test",
               "-w", "\n%{http_code} %{content_type}", H.shared_server().url("/echo"))
    eq(p.returncode, 0, "curl exit code (stderr %r)" % p.stderr)
    eq(p.stdout, b"hello, echo\n200 text/x-test", "curl output")


def test_curl_echo_post_200k_body():
    body = H.pattern(200 * 1024)
    with tempfile.NamedTemporaryFile(prefix="rh-echo-") as f:
        f.write(body)
        f.flush()
        p = H.curl("--data-binary", "@" + f.name, "-H", "Content-Type: application/x-blob",
                   "-H", "Expect:", H.shared_server().url("/echo"))
    eq(p.returncode, 0, "curl exit code (stderr %r)" % p.stderr)
    eq(len(p.stdout), len(body), "echoed length")
    check(p.stdout == body, "echoed 200 KB body differs from the one sent")


def test_curl_head_plaintext():
    p = H.curl("-I", H.shared_server().url("/plaintext"))
    eq(p.returncode, 0, "curl exit code (stderr %r)" % p.stderr)
    text = p.stdout.decode()
    check(text.startswith("HTTP/1.1 200"), "status: %r" % text)
    check(re.search(r"(?im)^content-length: 13\r$", text), "Content-Length 13 missing: %r" % text)


def test_curl_404_and_405():
    srv = H.shared_server()
    p = H.curl("-o", "/dev/null", "-w", "%{http_code}", srv.url("/no/such/path"))
    eq(p.stdout, b"404", "unknown path status")
    p = H.curl("-X", "DELETE", "-i", srv.url("/json"))
    text = p.stdout.decode()
    check(text.startswith("HTTP/1.1 405"), "DELETE /json status: %r" % text)
    check(re.search(r"(?im)^allow: .*\bGET\b", text), "Allow with GET missing: %r" % text)


def test_curl_http10():
    p = H.curl("-0", "-i", H.shared_server().url("/plaintext"))
    text = p.stdout.decode()
    check(text.startswith("HTTP/1.1 200"), "status: %r" % text)
    check(text.endswith("\r\n\r\nHello, World!"), "body: %r" % text)


def test_curl_reuses_connection_for_keepalive():
    srv = H.shared_server()
    p = H.curl("-w", "%{num_connects}\n", srv.url("/plaintext"), srv.url("/json"),
               srv.url("/healthz"))
    eq(p.returncode, 0, "curl exit code (stderr %r)" % p.stderr)
    eq(p.stdout, b'Hello, World!1\n{"message":"Hello, World!"}0\nok\n0\n', "curl output")


# ---- raw sockets ----

def test_plaintext_raw_exact():
    r = H.exchange(port(), request("GET", "/plaintext"))
    eq(r.version, "HTTP/1.1", "version")
    eq(r.status, 200, "status")
    eq(r.reason, "OK", "reason")
    eq(r.body, b"Hello, World!", "body")
    eq(r.header_all("content-length"), ["13"], "Content-Length")
    eq(r.header("content-type"), "text/plain", "Content-Type")
    check(r.header("server"), "Server missing")
    eq(len(r.header_all("date")), 1, "Date count")
    check(DATE_RE.match(r.header("date")), "Date not IMF-fixdate: %r" % r.header("date"))
    check(r.header("transfer-encoding") is None, "Transfer-Encoding on a sized response")
    check(not r.closes(), "HTTP/1.1 response closes without being asked: %r" % r.headers)


def test_date_header_is_current():
    r = H.exchange(port(), request("GET", "/plaintext"))
    t = time.strptime(r.header("date"), "%a, %d %b %Y %H:%M:%S GMT")
    import calendar
    skew = abs(calendar.timegm(t) - time.time())
    check(skew < 5, "Date %r is %.0f s off" % (r.header("date"), skew))


def test_index_html():
    r = H.exchange(port(), request("GET", "/"))
    eq(r.status, 200, "status")
    check(r.header("content-type", "").startswith("text/html"), "Content-Type %r"
          % r.header("content-type"))
    check(b"/plaintext" in r.body and b"</html>" in r.body, "index body %r" % r.body)
    eq(int(r.header("content-length")), len(r.body), "Content-Length")


def test_json_raw():
    r = H.exchange(port(), request("GET", "/json"))
    eq(r.status, 200, "status")
    eq(r.header("content-type"), "application/json", "Content-Type")
    eq(r.body, b'{"message":"Hello, World!"}', "body")


def test_healthz():
    r = H.exchange(port(), request("GET", "/healthz"))
    eq((r.status, r.body), (200, b"ok\n"), "status, body")


def test_query_string_ignored_by_router():
    r = H.exchange(port(), request("GET", "/plaintext?a=1&b=%20x"))
    eq((r.status, r.body), (200, b"Hello, World!"), "status, body")


def test_echo_post_roundtrip_and_content_type():
    r = H.exchange(port(), request("POST", "/echo", [("Content-Type", "text/x-thing; a=b")],
                                   b"round trip \x00\xff bytes"))
    eq(r.status, 200, "status")
    eq(r.body, b"round trip \x00\xff bytes", "body")
    eq(r.header("content-type"), "text/x-thing; a=b", "echoed Content-Type")


def test_echo_without_content_type_is_octet_stream():
    r = H.exchange(port(), request("POST", "/echo", body=b"x"))
    eq(r.header("content-type"), "application/octet-stream", "default Content-Type")
    eq(r.body, b"x", "body")


def test_echo_put():
    r = H.exchange(port(), request("PUT", "/echo", [("Content-Type", "text/plain")], b"put!"))
    eq((r.status, r.body), (200, b"put!"), "status, body")


def test_echo_empty_body():
    r = H.exchange(port(), request("POST", "/echo", body=b""))
    eq(r.status, 200, "status")
    eq(r.header("content-length"), "0", "Content-Length")
    eq(r.body, b"", "body")


def test_echo_200k_raw():
    body = H.pattern(200 * 1024, seed=7)
    with H.connect(port()) as s:
        s.sendall(request("POST", "/echo", [("Content-Type", "application/x-blob")], body))
        r = Reader(s).read_response()
    eq(r.status, 200, "status")
    eq(len(r.body), len(body), "echoed length")
    check(r.body == body, "echoed 200 KB body differs")


def test_echo_200k_in_small_slow_writes():
    body = H.pattern(200 * 1024, seed=3)
    raw = request("POST", "/echo", body=body)
    with H.connect(port()) as s:
        for i in range(0, len(raw), 7919):
            s.sendall(raw[i:i + 7919])
            if i % (7919 * 8) == 0:
                time.sleep(0.002)
        r = Reader(s).read_response()
    check(r.status == 200 and r.body == body, "200 KB body in pieces: status %d, len %d"
          % (r.status, len(r.body)))


def test_echo_body_at_max_body_limit_accepted():
    body = H.pattern(1048576, seed=11)  # the default --max-body exactly
    with H.connect(port(), timeout=10) as s:
        s.sendall(request("POST", "/echo", body=body))
        r = Reader(s).read_response()
    eq(r.status, 200, "status of a body of exactly max-body")
    check(r.body == body, "1 MiB body echoed wrong (len %d)" % len(r.body))


def test_head_plaintext_has_length_but_no_body():
    with H.connect(port()) as s:
        # HEAD then GET on one connection: if HEAD sent body bytes, the GET reads garbage.
        s.sendall(request("HEAD", "/plaintext") + request("GET", "/json"))
        rd = Reader(s)
        r = rd.read_response(head_request=True)
        eq(r.status, 200, "HEAD status")
        eq(r.header("content-length"), "13", "HEAD Content-Length")
        eq(r.header("content-type"), "text/plain", "HEAD Content-Type")
        r2 = rd.read_response()
        eq(r2.status, 200, "GET after HEAD status (HEAD leaked a body?)")
        eq(r2.body, b'{"message":"Hello, World!"}', "GET after HEAD body")
        check(not rd.buf and H.quiet_for(s, 0.3), "stray bytes or close after the responses: %r"
              % bytes(rd.buf))


def test_404_unknown_path():
    r = H.exchange(port(), request("GET", "/nope"))
    eq(r.status, 404, "status")
    eq(int(r.header("content-length")), len(r.body), "Content-Length")
    r = H.exchange(port(), request("GET", "/plaintext/extra"))
    eq(r.status, 404, "status of /plaintext/extra")


def test_404_keeps_connection_open():
    with H.connect(port()) as s:
        rd = Reader(s)
        s.sendall(request("GET", "/nope"))
        eq(rd.read_response().status, 404, "status")
        s.sendall(request("GET", "/plaintext"))
        eq(rd.read_response().body, b"Hello, World!", "request after a 404")


def test_405_delete_json_with_allow():
    r = H.exchange(port(), request("DELETE", "/json"))
    eq(r.status, 405, "status")
    allow = r.header("allow")
    check(allow is not None, "no Allow header: %r" % r.headers)
    methods = {m.strip() for m in allow.split(",")}
    check("GET" in methods, "Allow %r lacks GET" % allow)
    check("DELETE" not in methods, "Allow %r lists DELETE" % allow)


def test_405_post_plaintext_and_get_echo():
    r = H.exchange(port(), request("POST", "/plaintext", body=b"x"))
    eq(r.status, 405, "POST /plaintext")
    r = H.exchange(port(), request("GET", "/echo"))
    eq(r.status, 405, "GET /echo")
    allow = {m.strip() for m in (r.header("allow") or "").split(",")}
    check({"POST", "PUT"} <= allow, "Allow for /echo: %r" % r.header("allow"))


def test_http10_closes_by_default():
    with H.connect(port()) as s:
        s.sendall(b"GET /plaintext HTTP/1.0\r\n\r\n")
        rd = Reader(s)
        r = rd.read_response()
        eq((r.status, r.body), (200, b"Hello, World!"), "status, body")
        check(H.wait_closed(s, 3.0, rd), "HTTP/1.0 connection not closed after the response")
        eq(bytes(rd.buf), b"", "bytes after the response")


def test_http10_keepalive_stays_open():
    with H.connect(port()) as s:
        rd = Reader(s)
        for i in range(3):
            s.sendall(b"GET /plaintext HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            r = rd.read_response()
            eq((r.status, r.body), (200, b"Hello, World!"), "request %d" % i)
            eq((r.header("connection") or "").lower(), "keep-alive",
               "Connection header of a kept-alive 1.0 response")
        check(H.quiet_for(s, 0.3), "HTTP/1.0 keep-alive connection closed (or stray bytes)")


def test_http11_connection_close_honoured():
    with H.connect(port()) as s:
        s.sendall(request("GET", "/plaintext", [("Connection", "close")]))
        rd = Reader(s)
        r = rd.read_response()
        eq(r.status, 200, "status")
        check(r.closes(), "no Connection: close in the answer: %r" % r.headers)
        check(H.wait_closed(s, 3.0, rd), "connection not closed after Connection: close")


def test_keepalive_100_sequential():
    paths = ["/plaintext", "/json", "/healthz", "/"]
    with H.connect(port()) as s:
        rd = Reader(s)
        for i in range(100):
            path = paths[i % len(paths)]
            s.sendall(request("GET", path))
            r = rd.read_response()
            eq(r.status, 200, "request %d (%s)" % (i, path))
            if path == "/plaintext":
                eq(r.body, b"Hello, World!", "body %d" % i)
            check(not r.closes(), "response %d closes the connection" % i)
        check(H.quiet_for(s, 0.1), "connection closed (or stray bytes) after 100 requests")


def test_keepalive_sequential_echo_sizes():
    with H.connect(port()) as s:
        rd = Reader(s)
        for i, n in enumerate([0, 1, 100, 4095, 4096, 4097, 16383, 16384, 16385, 70000]):
            body = H.pattern(n, seed=n)
            s.sendall(request("POST", "/echo", body=body))
            r = rd.read_response()
            check(r.status == 200 and r.body == body, "echo of %d bytes: status %d len %d"
                  % (n, r.status, len(r.body)))


def test_expect_100_continue():
    with H.connect(port()) as s:
        s.sendall(request("POST", "/echo", [("Expect", "100-continue"),
                                            ("Content-Length", "11")]))
        rd = Reader(s)
        interim = rd.read_response(allow_interim=True)
        eq(interim.status, 100, "first response status")
        eq(interim.raw_head, b"HTTP/1.1 100 Continue", "interim head")
        s.sendall(b"hello world")
        r = rd.read_response()
        eq((r.status, r.body), (200, b"hello world"), "final response")
        # the connection stays usable
        s.sendall(request("GET", "/plaintext"))
        eq(rd.read_response().body, b"Hello, World!", "request after 100-continue")


def test_expect_100_continue_case_insensitive():
    with H.connect(port()) as s:
        s.sendall(request("PUT", "/echo", [("expect", "100-Continue"),
                                           ("Content-Length", "2")]))
        rd = Reader(s)
        eq(rd.read_response(allow_interim=True).status, 100, "interim status")
        s.sendall(b"ok")
        eq(rd.read_response().body, b"ok", "body")


def test_expect_100_continue_without_body_gets_no_interim():
    with H.connect(port()) as s:
        s.sendall(request("POST", "/echo", [("Expect", "100-continue"),
                                            ("Content-Length", "0")]))
        r = Reader(s).read_response(allow_interim=True)
        eq(r.status, 200, "status (no 100 for an empty body)")


def test_expect_100_continue_body_sent_anyway():
    # Clients may send the body without waiting for 100; the answer must still be right.
    with H.connect(port()) as s:
        s.sendall(request("POST", "/echo", [("Expect", "100-continue")], b"eager"))
        rd = Reader(s)
        r = rd.read_response(allow_interim=True)
        if r.status == 100:
            r = rd.read_response()
        eq((r.status, r.body), (200, b"eager"), "final response")


def test_chunked_request_body():
    pieces = [b"Hello", b", ", b"chunked", b" ", H.pattern(5000, seed=1), b"!"]
    with H.connect(port()) as s:
        s.sendall(request("POST", "/echo", [("Transfer-Encoding", "chunked"),
                                            ("Content-Type", "text/plain")])
                  + H.chunked(pieces))
        r = Reader(s).read_response()
    eq(r.status, 200, "status")
    eq(r.body, b"".join(pieces), "decoded body")


def test_chunked_request_with_extensions():
    for ext in (";name=value", ";flag", ';q="a b; c"', ";a;b;c"):
        body = H.chunked([b"abc", b"defgh", b"ij"], ext=ext)
        r = H.exchange(port(), request("POST", "/echo", [("Transfer-Encoding", "chunked")])
                       + body)
        eq((r.status, r.body), (200, b"abcdefghij"), "chunk-ext %r: status, decoded body" % ext)


def test_chunked_request_with_several_valued_extensions():
    # RFC 9112 7.1.1 allows any number of extensions, valued or not, with BWS around ';'
    # and '=': all accepted and ignored (Debian's llhttp 8.1.0 refused "3;a=b;c=d": body.c
    # reads chunked framing itself).
    for ext in (";a=b;c=d", ';name=value;quoted="a b"', ' ; a = b ; c = "d;e"', ";a=\"\\\"\""):
        body = H.chunked([b"abc", b"defgh", b"ij"], ext=ext)
        r = H.exchange(port(), request("POST", "/echo", [("Transfer-Encoding", "chunked")])
                       + body)
        eq((r.status, r.body), (200, b"abcdefghij"), "chunk-ext %r: status, decoded body" % ext)


def test_chunked_request_uppercase_hex_and_trailers():
    body = b"A\r\n0123456789\r\n1F\r\n" + b"x" * 31 + b"\r\n0\r\nX-Trailer: t\r\n\r\n"
    r = H.exchange(port(), request("POST", "/echo", [("Transfer-Encoding", "chunked")]) + body)
    eq((r.status, r.body), (200, b"0123456789" + b"x" * 31), "status, decoded body")


def test_chunked_request_sent_in_pieces():
    pieces = [H.pattern(n, seed=n) for n in (1, 10, 4000, 9000, 3)]
    raw = request("POST", "/echo", [("Transfer-Encoding", "chunked")]) + H.chunked(pieces)
    with H.connect(port()) as s:
        for i in range(0, len(raw), 1000):
            s.sendall(raw[i:i + 1000])
            time.sleep(0.001)
        r = Reader(s).read_response()
    eq(r.status, 200, "status")
    check(r.body == b"".join(pieces), "decoded body differs (len %d)" % len(r.body))


def test_chunked_then_keepalive():
    with H.connect(port()) as s:
        rd = Reader(s)
        s.sendall(request("POST", "/echo", [("Transfer-Encoding", "chunked")])
                  + H.chunked([b"one", b"two"]))
        eq(rd.read_response().body, b"onetwo", "chunked body")
        s.sendall(request("GET", "/plaintext"))
        eq(rd.read_response().body, b"Hello, World!", "request after a chunked one")


def test_header_names_case_insensitive_and_ows():
    r = H.exchange(port(), b"POST /echo HTTP/1.1\r\nhOsT: x\r\ncontent-TYPE:  text/y \r\n"
                   b"CONTENT-length:\t3\r\n\r\nabc")
    eq((r.status, r.body), (200, b"abc"), "status, body")
    eq(r.header("content-type"), "text/y", "Content-Type with OWS trimmed")


# ---- the README ----

def test_readme_flag_list_equals_help():
    """The README's flag block is --help's text, line for line (it drifted twice)."""
    import subprocess
    out = subprocess.run([H.ARGS.binary, "--help"], capture_output=True, timeout=10)
    eq(out.returncode, 0, "--help exit code")
    help_lines = out.stdout.decode().splitlines()
    check(help_lines and help_lines[0].startswith("usage: ringhttp"), "usage line: %r" % help_lines[:1])
    readme = open(os.path.join(H.ARGS.source_dir, "README.md")).read()
    m = re.search(r"```\nringhttp \[options\]\n(.*?)```", readme, re.S)
    check(m, "README has a ```ringhttp [options] block")
    eq(m.group(1).splitlines(), help_lines[1:], "README flag list vs --help")


if __name__ == "__main__":
    H.run_tests(globals())
