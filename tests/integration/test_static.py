"""Static files (--root): containment, HTTP semantics, large bodies and slow readers.

The test root is made in a temporary directory at start, next to an "outside" directory whose
secret must never come back. The shared server serves it with the default body paths (small
files copied, large ones by sendfile while their pages are resident, through io-wq when they
are cold); three more servers run the body tests again with every body sent by sendfile
(--splice-min 1), and without sendfile: every body spliced, or every body read and sent.
"""
import atexit
import ctypes
import hashlib
import os
import shutil
import socket
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
from harness import check, eq, request, Reader  # noqa: E402

SECRET = b"TOP-SECRET-OUTSIDE-THE-ROOT"
BIG_MB = 100

_tmp = tempfile.mkdtemp(prefix="rh-static-")
atexit.register(shutil.rmtree, _tmp, True)
ROOT = os.path.join(_tmp, "root")
OUTSIDE = os.path.join(_tmp, "outside")




FILES = {
    "index.html": b"<!doctype html><title>root index</title>\n",
    "style.css": b"body { color: #333 }\n",
    "app.js": b"console.log('hi');\n",
    "data.json": b'{"a": 1}\n',
    "notes.txt": b"plain text\n",
    "img.png": b"\x89PNG\r\n\x1a\n" + H.pattern(300),
    "photo.jpg": b"\xff\xd8\xff" + H.pattern(200),
    "photo.JPEG": b"\xff\xd8\xff" + H.pattern(201),
    "anim.gif": b"GIF89a" + H.pattern(50),
    "logo.svg": b"<svg xmlns='http://www.w3.org/2000/svg'/>\n",
    "pic.webp": b"RIFF" + H.pattern(60),
    "favicon.ico": H.pattern(70),
    "mod.wasm": b"\x00asm" + H.pattern(40),
    "doc.pdf": b"%PDF-1.4" + H.pattern(80),
    "feed.xml": b"<feed/>\n",
    "clip.mp4": H.pattern(90),
    "font.woff": H.pattern(30),
    "font.woff2": H.pattern(31),
    "noext": b"no extension\n",
    "a b.txt": b"with a space\n",
    "100%.txt": b"percent in the name\n",
    "empty.txt": b"",
    "f4k.bin": H.pattern(4096, 1),
    "f300k.bin": H.pattern(300 * 1024, 2),
    "f1m.bin": H.pattern(1 << 20, 3),
    "sub/index.html": b"<p>sub index</p>\n",
    "sub/page.html": b"<p>sub page</p>\n",
    "empty/.keep-out": b"hidden\n",
    ".secret": b"hidden file\n",
    ".well-known/acme.txt": b"challenge\n",
    "mutable.txt": b"version one\n",
}

CTYPES = {
    "/index.html": "text/html; charset=utf-8",
    "/style.css": "text/css; charset=utf-8",
    "/app.js": "text/javascript; charset=utf-8",
    "/data.json": "application/json",
    "/notes.txt": "text/plain; charset=utf-8",
    "/img.png": "image/png",
    "/photo.jpg": "image/jpeg",
    "/photo.JPEG": "image/jpeg",
    "/anim.gif": "image/gif",
    "/logo.svg": "image/svg+xml",
    "/pic.webp": "image/webp",
    "/favicon.ico": "image/x-icon",
    "/mod.wasm": "application/wasm",
    "/doc.pdf": "application/pdf",
    "/feed.xml": "application/xml",
    "/clip.mp4": "video/mp4",
    "/font.woff": "font/woff",
    "/font.woff2": "font/woff2",
    "/noext": "application/octet-stream",
    "/f4k.bin": "application/octet-stream",
}


def make_tree():
    os.makedirs(OUTSIDE)
    with open(os.path.join(OUTSIDE, "secret.txt"), "wb") as f:
        f.write(SECRET)
    for name, data in FILES.items():
        path = os.path.join(ROOT, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    os.symlink(os.path.join(OUTSIDE, "secret.txt"), os.path.join(ROOT, "esc_abs"))
    os.symlink("../outside/secret.txt", os.path.join(ROOT, "esc_rel"))
    os.symlink("../outside", os.path.join(ROOT, "esc_dir"))
    os.symlink("/", os.path.join(ROOT, "esc_slash"))
    os.symlink("style.css", os.path.join(ROOT, "in_link.css"))
    os.symlink("sub", os.path.join(ROOT, "in_dir_link"))
    os.mkfifo(os.path.join(ROOT, "fifo"))
    os.makedirs(os.path.join(ROOT, "noindex"))
    os.makedirs(os.path.join(ROOT, "dir_index", "index.html"))  # the index is a directory
    with open(os.path.join(ROOT, "unreadable.txt"), "wb") as f:
        f.write(b"nobody may read this\n")
    os.chmod(os.path.join(ROOT, "unreadable.txt"), 0)


make_tree()
H.SHARED_ARGS = ["--root", ROOT, "--cache-control", "public, max-age=60"]


def port():
    return H.shared_server().port


def get(path, headers=None, method="GET", p=None, **kw):
    return H.exchange(p or port(), request(method, path, headers=headers), **kw)


def no_leak(r, what):
    """The answer carries neither the secret nor a file system path."""
    check(SECRET not in r.body, "%s: the secret outside the root came back" % what)
    for h in [r.body, r.raw_head]:
        check(_tmp.encode() not in h, "%s: a file system path leaked: %r" % (what, h[:200]))


# ---- containment ----

TRAVERSALS = [
    ("/../outside/secret.txt", 400),
    ("/%2e%2e/outside/secret.txt", 400),
    ("/%2E%2E/outside/secret.txt", 400),
    ("/.%2e/outside/secret.txt", 400),
    ("/sub/../../outside/secret.txt", 400),
    ("/..%2foutside%2fsecret.txt", 400),
    ("/%2e%2e%2f%2e%2e%2foutside%2fsecret.txt", 400),
    ("/sub%2f..%2f..%2foutside/secret.txt", 400),
    ("/%252e%252e/outside/secret.txt", 404),  # double encoding stays a literal name
    ("/%252e%252e%252foutside%252fsecret.txt", 404),
    ("/..%5coutside%5csecret.txt", 404),  # a backslash is an ordinary byte on Linux
    ("/%00", 400),
    ("/index.html%00.txt", 400),
    ("/sub/%00/page.html", 400),
    ("/%", 400),
    ("/%4", 400),
    ("/%zz", 400),
    ("/%%32%65", 400),
    ("/esc_abs", 403),  # symlinks whose target is outside the root
    ("/esc_rel", 403),
    ("/esc_dir/secret.txt", 403),
    ("/esc_slash/etc/passwd", 403),
    ("//etc/passwd", 404),
    ("/./../outside/secret.txt", 400),
]


def test_traversal_never_leaves_the_root():
    for path, want in TRAVERSALS:
        r = get(path)
        no_leak(r, path)
        eq(r.status, want, "status of GET %s" % path)
        eq(r.header("etag"), None, "ETag on an error for %s" % path)


def test_raw_backslash_and_dot_segments():
    # llhttp may refuse a raw backslash outright (400); either way nothing leaks.
    r = get("/..\\outside\\secret.txt")
    no_leak(r, "raw backslash")
    check(r.status in (400, 404), "raw backslash status %d" % r.status)
    r = get("/./sub/./page.html")
    eq((r.status, r.body), (200, FILES["sub/page.html"]), "dot segments inside the root")
    r = get("/sub/../style.css")
    eq((r.status, r.body), (200, FILES["style.css"]), ".. that stays inside")
    r = get("/sub//page.html")
    eq((r.status, r.body), (200, FILES["sub/page.html"]), "empty segment")


def test_symlinks_inside_the_root_are_followed():
    r = get("/in_link.css")
    eq((r.status, r.body), (200, FILES["style.css"]), "in-root file symlink")
    r = get("/in_dir_link/page.html")
    eq((r.status, r.body), (200, FILES["sub/page.html"]), "in-root directory symlink")


def test_encoded_names():
    r = get("/a%20b.txt")
    eq((r.status, r.body), (200, FILES["a b.txt"]), "%20")
    r = get("/100%25.txt")
    eq((r.status, r.body), (200, FILES["100%.txt"]), "%25")
    r = get("/%73tyle.css")
    eq((r.status, r.body), (200, FILES["style.css"]), "an encoded plain letter")


def test_hidden_names_are_404_but_well_known_is_served():
    for path in ["/.secret", "/empty/.keep-out", "/%2esecret"]:
        r = get(path)
        eq(r.status, 404, "status of %s" % path)
        no_leak(r, path)
    r = get("/.well-known/acme.txt")
    eq((r.status, r.body), (200, FILES[".well-known/acme.txt"]), ".well-known")


def test_403_for_non_regular_files_and_missing_index():
    t0 = time.monotonic()
    r = get("/fifo")  # opened O_NONBLOCK: must not hang a worker
    eq(r.status, 403, "FIFO")
    check(time.monotonic() - t0 < 2, "FIFO took %.1f s" % (time.monotonic() - t0))
    eq(get("/noindex/").status, 403, "directory without index.html")
    eq(get("/dir_index/").status, 403, "index.html that is a directory")
    eq(get("/nope/").status, 404, "missing directory")
    eq(get("/nope.html").status, 404, "missing file")
    eq(get("/style.css/").status, 404, "a file named as a directory")
    if os.geteuid() == 0:
        # root reads a mode-000 file anyway (CAP_DAC_OVERRIDE): this check cannot fail here,
        # so it is skipped; the FIFO, symlink and no-index cases above cover 403.
        pass
    else:
        r = get("/unreadable.txt")
        eq(r.status, 403, "a file without read permission")
        no_leak(r, "unreadable")


# ---- HTTP semantics ----

def test_content_types():
    for path, ctype in CTYPES.items():
        r = get(path)
        eq(r.status, 200, "status of %s" % path)
        eq(r.header("content-type"), ctype, "Content-Type of %s" % path)
        eq(r.body, FILES[path[1:]], "body of %s" % path)


def test_validators_and_cache_control():
    r = get("/style.css")
    etag, lm = r.header("etag"), r.header("last-modified")
    check(etag and etag.startswith('"') and etag.endswith('"'), "strong ETag: %r" % etag)
    st = os.stat(os.path.join(ROOT, "style.css"))
    eq(lm, time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(int(st.st_mtime))),
       "Last-Modified")
    eq(r.header("cache-control"), "public, max-age=60", "Cache-Control from the flag")
    eq(r.header("accept-ranges"), "bytes", "Accept-Ranges")
    eq(get("/app.js").header("etag") != etag, True, "ETags differ between files")


def test_conditionals_304_and_412():
    r = get("/style.css")
    etag, lm = r.header("etag"), r.header("last-modified")
    for hdrs in ([("If-None-Match", etag)], [("If-None-Match", "W/" + etag)],
                 [("If-None-Match", '"other", %s' % etag)], [("If-None-Match", "*")],
                 [("If-Modified-Since", lm)],
                 [("If-Modified-Since", "Fri, 31 Dec 2099 23:59:59 GMT")]):
        r = get("/style.css", hdrs)
        eq(r.status, 304, "status with %r" % hdrs)
        eq(r.body, b"", "304 body")
        eq(r.header("etag"), etag, "ETag on the 304")
        eq(r.header("content-length"), None, "Content-Length on a 304")
    for hdrs in ([("If-None-Match", '"other"')],
                 [("If-Modified-Since", "Thu, 01 Jan 1970 00:00:00 GMT")],
                 [("If-Modified-Since", "garbage")],
                 [("If-None-Match", '"other"'), ("If-Modified-Since", lm)]):  # INM wins
        r = get("/style.css", hdrs)
        eq((r.status, r.body), (200, FILES["style.css"]), "with %r" % hdrs)
    # the two obsolete date forms RFC 9110 still requires
    t = time.gmtime(os.stat(os.path.join(ROOT, "style.css")).st_mtime + 5)
    for fmt in ("%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"):
        r = get("/style.css", [("If-Modified-Since", time.strftime(fmt, t))])
        eq(r.status, 304, "If-Modified-Since in the form %r" % fmt)
    r = get("/style.css", [("If-Match", '"other"')])
    eq(r.status, 412, "If-Match mismatch")
    r = get("/style.css", [("If-Match", etag)])
    eq(r.status, 200, "If-Match match")
    r = get("/style.css", [("If-Unmodified-Since", "Thu, 01 Jan 1970 00:00:00 GMT")])
    eq(r.status, 412, "If-Unmodified-Since in the past")
    r = get("/style.css", [("If-None-Match", etag)], method="HEAD", head_request=True)
    eq(r.status, 304, "HEAD with If-None-Match")


def test_ranges():
    data = FILES["f4k.bin"]
    cases = [
        ("bytes=0-9", 206, data[:10], "bytes 0-9/4096"),
        ("bytes=0-0", 206, data[:1], "bytes 0-0/4096"),
        ("bytes=-10", 206, data[-10:], "bytes 4086-4095/4096"),
        ("bytes=4000-", 206, data[4000:], "bytes 4000-4095/4096"),
        ("bytes=100-99999", 206, data[100:], "bytes 100-4095/4096"),
        ("bytes=-99999", 206, data, "bytes 0-4095/4096"),
        ("bytes = 5-6", 206, data[5:7], "bytes 5-6/4096"),
        ("bytes=0-1,5-6", 200, data, None),  # several ranges: the whole file (documented)
        ("bytes=5-1", 200, data, None),  # invalid: ignored
        ("items=0-1", 200, data, None),  # another unit: ignored
        ("bytes=abc", 200, data, None),
    ]
    for value, status, body, crange in cases:
        r = get("/f4k.bin", [("Range", value)])
        eq(r.status, status, "status for Range: %s" % value)
        eq(r.body, body, "body for Range: %s" % value)
        eq(r.header("content-range"), crange, "Content-Range for Range: %s" % value)
        eq(r.header("content-length"), str(len(body)), "Content-Length for %s" % value)
    for value in ("bytes=4096-", "bytes=5000-6000", "bytes=-0"):
        r = get("/f4k.bin", [("Range", value)])
        eq(r.status, 416, "status for Range: %s" % value)
        eq(r.header("content-range"), "bytes */4096", "Content-Range of the 416")
    r = get("/empty.txt", [("Range", "bytes=0-")])
    eq(r.status, 416, "any range of an empty file")
    big = FILES["f1m.bin"]
    r = get("/f1m.bin", [("Range", "bytes=100000-899999")])
    eq((r.status, r.body == big[100000:900000]), (206, True), "a streamed range")
    r = get("/f1m.bin", [("Range", "bytes=-300000")])
    eq((r.status, r.body == big[-300000:]), (206, True), "a streamed suffix range")


def test_if_range():
    etag = get("/f4k.bin").header("etag")
    r = get("/f4k.bin", [("Range", "bytes=0-3"), ("If-Range", etag)])
    eq((r.status, r.body), (206, FILES["f4k.bin"][:4]), "If-Range that matches")
    r = get("/f4k.bin", [("Range", "bytes=0-3"), ("If-Range", '"stale"')])
    eq((r.status, len(r.body)), (200, 4096), "If-Range that does not match: the whole file")
    r = get("/f4k.bin", [("Range", "bytes=0-3"), ("If-Range", "W/" + etag)])
    eq(r.status, 200, "a weak If-Range never matches")


def test_head():
    with H.connect(port()) as s:
        s.sendall(request("HEAD", "/f300k.bin") + request("GET", "/style.css"))
        rd = Reader(s)
        r = rd.read_response(head_request=True)
        eq(r.status, 200, "HEAD status")
        eq(r.header("content-length"), str(300 * 1024), "HEAD Content-Length")
        check(r.header("etag"), "HEAD ETag")
        r2 = rd.read_response()  # a body after the HEAD would show up here
        eq((r2.status, r2.body), (200, FILES["style.css"]), "the GET after the HEAD")
    r = get("/f1m.bin", [("Range", "bytes=0-9")], method="HEAD", head_request=True)
    eq((r.status, r.header("content-length")), (200, str(1 << 20)), "HEAD ignores Range")


def test_index_and_redirects():
    r = get("/")
    eq((r.status, r.body), (200, FILES["index.html"]), "/ serves the root's index.html")
    eq(get("/index.html").body, FILES["index.html"], "/index.html")
    r = get("/sub/")
    eq((r.status, r.body), (200, FILES["sub/index.html"]), "/sub/")
    for path, loc in [("/sub", "/sub/"), ("/sub?x=1&y=2", "/sub/?x=1&y=2"),
                      ("/in_dir_link", "/in_dir_link/"), ("/noindex", "/noindex/"),
                      ("/sub/./", None)]:
        r = get(path)
        if loc is None:
            eq(r.status, 200, "status of %s" % path)
            continue
        eq(r.status, 301, "status of %s" % path)
        eq(r.header("location"), loc, "Location of %s" % path)
        no_leak(r, path)
    r = get("//sub")  # never an open redirect to //host
    eq((r.status, r.header("location")), (301, "/sub/"), "Location of //sub")


def test_methods_and_demo_routes():
    r = H.exchange(port(), request("POST", "/style.css", body=b"x"))
    eq(r.status, 405, "POST to a file")
    eq(r.header("allow"), "GET, HEAD", "Allow")
    r = H.exchange(port(), request("DELETE", "/nope"))
    eq(r.status, 405, "DELETE under the mount")
    eq(get("/plaintext").body, b"Hello, World!", "/plaintext still the demo's")
    eq(get("/json").body, b'{"message":"Hello, World!"}', "/json still the demo's")
    eq(get("/healthz").body, b"ok\n", "/healthz")
    r = H.exchange(port(), request("POST", "/echo", body=b"echo me"))
    eq((r.status, r.body), (200, b"echo me"), "POST /echo")
    check(b"ringhttp_requests_total" in get("/metrics").body, "/metrics")


def test_without_root_the_demo_index_is_served():
    with H.Server(threads=1) as srv:
        r = get("/", p=srv.port)
        eq(r.status, 200, "status")
        check(b"/plaintext" in r.body, "the demo's index page: %r" % r.body[:100])
        eq(get("/style.css", p=srv.port).status, 404, "no files without --root")


def test_changed_file_is_served_fresh():
    path = os.path.join(ROOT, "mutable.txt")
    eq(get("/mutable.txt").body, b"version one\n", "first version")
    with open(path, "wb") as f:
        f.write(b"version two, longer\n")
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:  # the cache re-checks within a second
        r = get("/mutable.txt")
        if r.body != b"version one\n":
            break
        time.sleep(0.1)
    eq(r.body, b"version two, longer\n", "the rewritten file")
    tmp = path + ".new"
    with open(tmp, "wb") as f:
        f.write(b"three\n")
    os.rename(tmp, path)  # an atomic replace: a new inode under the same name
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        r = get("/mutable.txt")
        if r.body == b"three\n":
            break
        time.sleep(0.1)
    eq(r.body, b"three\n", "the replaced file")
    os.unlink(path)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and r.status != 404:
        r = get("/mutable.txt")
        time.sleep(0.1)
    eq(r.status, 404, "the deleted file")


def test_pipelined_streams_stay_in_order():
    big, small = FILES["f300k.bin"], FILES["style.css"]
    with H.connect(port()) as s:
        s.sendall(request("GET", "/f300k.bin") + request("GET", "/style.css") +
                  request("GET", "/f1m.bin", [("Range", "bytes=10-20")]) +
                  request("GET", "/f300k.bin"))
        rd = Reader(s)
        for want in (big, small, FILES["f1m.bin"][10:21], big):
            r = rd.read_response()
            eq(r.body == want, True, "pipelined body (%d bytes, status %d)"
               % (len(r.body), r.status))


def test_connection_close_and_http10_with_a_large_body():
    for raw in (request("GET", "/f1m.bin", [("Connection", "close")]),
                request("GET", "/f1m.bin", version="HTTP/1.0")):
        with H.connect(port()) as s:
            s.sendall(raw)
            rd = Reader(s)
            r = rd.read_response()
            eq(r.body == FILES["f1m.bin"], True, "body of %r" % raw[:40])
            check(H.wait_closed(s, reader=rd), "closed after the body")


# ---- big files, slow readers, disconnects ----

def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


BIG = os.path.join(ROOT, "big.bin")
BIG_SHA = None


def make_big():
    global BIG_SHA
    if BIG_SHA:
        return BIG_SHA
    h = hashlib.sha256()
    with open(BIG, "wb") as f:
        for _ in range(BIG_MB):
            chunk = os.urandom(1 << 20)
            h.update(chunk)
            f.write(chunk)
    BIG_SHA = h.hexdigest()
    return BIG_SHA


def download(p, path, rcvbuf=None, pace=None, stop_after=None, extra_headers=None):
    """GET path on a fresh connection; returns (status, sha256 hex, bytes). pace(total) may
    sleep; stop_after closes (with a reset) after that many body bytes."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(20)
    s.connect((H.HOST, p))
    try:
        s.sendall(request("GET", path, headers=extra_headers))
        rd = Reader(s)
        _, status, _, headers, _ = rd.read_head()
        length = int(dict((n.lower(), v) for n, v in headers)["content-length"])
        h = hashlib.sha256()
        got = len(rd.buf)
        h.update(bytes(rd.buf))
        while got < length:
            if stop_after is not None and got >= stop_after:
                H.rst_close(s)
                return status, None, got
            chunk = s.recv(min(1 << 20, rcvbuf or (1 << 20)))
            if not chunk:
                break
            h.update(chunk)
            got += len(chunk)
            if pace:
                pace(got)
        return status, h.hexdigest(), got
    finally:
        s.close()


def plaintext_latencies(p, stop, out):
    while not stop.is_set():
        t0 = time.monotonic()
        r = H.exchange(p, request("GET", "/plaintext"))
        out.append((time.monotonic() - t0, r.status))
        time.sleep(0.01)


def latencies_ok(lat):
    """(ok, worst): /plaintext stayed under 100 ms beside a big body. A ring thread that
    waited on the body (a blocking splice, a disk read) stalls every request meanwhile; a
    loaded 2-core machine's scheduler can stall one: one sample may exceed 100 ms, none 1 s."""
    times = sorted(x for x, _ in lat)
    slow = sum(1 for t in times if t >= 0.1)
    return slow == 0 or (slow == 1 and len(times) >= 10 and times[-1] < 1.0), times[-1]


def big_file_checks(srv):
    sha = make_big()
    pid = srv.proc.pid
    get("/f1m.bin", p=srv.port)  # warm: the cache, the pipes, the chunk buffers
    rss0 = rss_kb(pid)
    stop, lat = threading.Event(), []
    t = threading.Thread(target=plaintext_latencies, args=(srv.port, stop, lat), daemon=True)
    t.start()
    try:
        t0 = time.monotonic()
        status, got_sha, n = download(srv.port, "/big.bin")
        dt = time.monotonic() - t0
    finally:
        stop.set()
        t.join(10)
    eq((status, n), (200, BIG_MB << 20), "100 MiB download status and size")
    eq(got_sha, sha, "100 MiB download sha256")
    check(lat, "no /plaintext request completed during the download")
    ok, worst = latencies_ok(lat)
    check(all(st == 200 for _, st in lat), "a /plaintext failed during the download")
    check(ok, "/plaintext took %.0f ms during the download (%d requests)"
          % (worst * 1000, len(lat)))
    growth = rss_kb(pid) - rss0
    check(growth < 4096, "RSS grew %d KiB over a 100 MiB download" % growth)
    return dt


def slow_reader_checks(srv):
    make_big()
    pid = srv.proc.pid
    get("/f1m.bin", p=srv.port)
    rss0, fds0 = rss_kb(pid), fd_count(pid)
    stop, lat = threading.Event(), []
    t = threading.Thread(target=plaintext_latencies, args=(srv.port, stop, lat), daemon=True)
    t.start()
    t_end = time.monotonic() + 2.5

    def pace(total):  # 64 KiB then a 50 ms nap: a few MB in 2.5 s of a 100 MiB file
        if total % (64 * 1024) < 16384:
            time.sleep(0.05)

    try:
        status, _, n = download(srv.port, "/big.bin", rcvbuf=4096,
                                pace=lambda total: pace(total) if time.monotonic() < t_end
                                else None,
                                stop_after=4 << 20)
        # other clients: a whole file and a range while the slow one was (or just was) busy
        r = get("/f1m.bin", p=srv.port)
        eq(r.body == FILES["f1m.bin"], True, "1 MiB download next to a slow reader")
    finally:
        stop.set()
        t.join(10)
    eq(status, 200, "slow reader status")
    check(n >= 4 << 20, "the slow reader got %d bytes" % n)
    ok, worst = latencies_ok(lat)
    check(ok, "/plaintext took %.0f ms next to a slow reader (%d requests)"
          % (worst * 1000, len(lat)))
    growth = rss_kb(pid) - rss0
    check(growth < 4096, "RSS grew %d KiB with a slow reader" % growth)
    # readers that vanish mid-file, with a reset or a plain close, many times
    for i in range(12):
        download(srv.port, "/big.bin", stop_after=(i + 1) * 256 * 1024)
    with H.connect(srv.port) as s:
        s.sendall(request("GET", "/big.bin"))
        s.recv(1000)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and fd_count(pid) > fds0 + 2:
        time.sleep(0.1)
    check(fd_count(pid) <= fds0 + 2, "fds: %d before, %d after the aborted downloads"
          % (fds0, fd_count(pid)))
    r = get("/f300k.bin", p=srv.port)
    eq(r.body == FILES["f300k.bin"], True, "served after the aborted downloads")


def test_big_file_intact_while_others_stay_fast():
    big_file_checks(H.shared_server())


def test_slow_reader_and_disconnects_disturb_nobody():
    slow_reader_checks(H.shared_server())


def body_path_checks(*args):
    """Whole files, a range, keep-alive, a 100 MiB download and a slow reader on a server
    whose bodies all take one path (--splice-min picks it)."""
    with H.Server("--root", ROOT, *args, threads=1) as srv:
        for name in ("f4k.bin", "f300k.bin", "f1m.bin", "style.css"):
            r = get("/" + name, p=srv.port)
            eq(r.body == FILES[name], True, "%s with %s" % (name, " ".join(args)))
        r = get("/f1m.bin", [("Range", "bytes=1000-")], p=srv.port)
        eq((r.status, r.body == FILES["f1m.bin"][1000:]), (206, True), "range with %s" % " ".join(args))
        keepalive_after_body(srv)
        big_file_checks(srv)
        slow_reader_checks(srv)


def test_every_body_sent_with_sendfile():
    body_path_checks("--splice-min", "1")  # sendfile (resident pages) even for 4 KiB


def test_every_body_spliced():
    body_path_checks("--no-sendfile", "--splice-min", "1")  # file -> pipe -> socket


def test_every_body_read_and_sent():
    body_path_checks("--no-sendfile", "--splice-min", str(1 << 40))  # READ then SEND


# ---- cold files: pages not in the page cache must never stall the ring thread ----

def _cachestat_pages(path):
    """Pages of path in the page cache (cachestat(2), syscall 451), or None if unknown."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        rng = (ctypes.c_uint64 * 2)(0, 0)  # off 0, len 0: to the end of the file
        cs = (ctypes.c_uint64 * 5)()
        if libc.syscall(ctypes.c_long(451), fd, rng, cs, 0) != 0:
            return None
        return cs[0]
    finally:
        os.close(fd)


def drop_cache(path):
    """posix_fadvise(DONTNEED) on the whole file (written back first); True if cachestat
    confirms that at most a tenth of it stayed resident."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    pages = _cachestat_pages(path)
    return pages is not None and pages * 4096 <= os.path.getsize(path) // 10


def cold_download(srv, headers=None):
    """Drops big.bin from the page cache and downloads it (or a range) while /plaintext runs
    beside it; (status, sha256, bytes, [(seconds, status)] of the /plaintext requests)."""
    if not drop_cache(BIG):
        print("  (note: the page cache could not be confirmed dropped here)")
    stop, lat = threading.Event(), []
    t = threading.Thread(target=plaintext_latencies, args=(srv.port, stop, lat), daemon=True)
    t.start()
    try:
        status, got_sha, n = download(srv.port, "/big.bin", extra_headers=headers)
    finally:
        stop.set()
        t.join(10)
    return status, got_sha, n, lat


def cold_download_checks(srv, what, headers=None, lo=0, hi=None):
    """The bytes of a cold download must be exact, and no /plaintext beside it may wait
    100 ms. A ring thread that waited for the disk would do so on every attempt; a loaded
    machine's scheduler may stall one: the latency bound gets a second attempt."""
    sha = make_big()
    want, size = sha, BIG_MB << 20
    if headers:
        with open(BIG, "rb") as f:
            f.seek(lo)
            want = hashlib.sha256(f.read(hi - lo + 1)).hexdigest()
        size = hi - lo + 1
    for attempt in (1, 2):
        status, got_sha, n, lat = cold_download(srv, headers)
        eq((status, n), (206 if headers else 200, size), what + ": status and size")
        eq(got_sha, want, what + ": sha256")
        check(lat, what + ": no /plaintext request completed meanwhile")
        check(all(st == 200 for _, st in lat), what + ": a /plaintext failed")
        ok, worst = latencies_ok(lat)
        if ok:
            return
        print("  (attempt %d: /plaintext took %.0f ms beside %s)" % (attempt, worst * 1000,
                                                                     what))
    check(False, "%s: /plaintext took %.0f ms (%d requests), twice"
          % (what, worst * 1000, len(lat)))


def test_cold_file_served_while_plaintext_stays_fast():
    srv = H.shared_server()
    cold_download_checks(srv, "a cold 100 MiB file")
    lo, hi = (37 << 20) + 5, (81 << 20) + 11
    cold_download_checks(srv, "a cold range", [("Range", "bytes=%d-%d" % (lo, hi))], lo, hi)


def keepalive_after_body(srv):
    """After a file body (spliced ones make the socket O_NONBLOCK) the ring's own recv and
    send on the same connection must still wait for data and for room, not fail (EAGAIN)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    s.settimeout(10)
    s.connect((H.HOST, srv.port))
    with s:
        rd = Reader(s)
        s.sendall(request("GET", "/f1m.bin"))
        eq(rd.read_response().body == FILES["f1m.bin"], True, "a 1 MiB body")
        time.sleep(0.3)  # idle: the multishot recv must still be armed and waiting
        s.sendall(request("GET", "/plaintext"))
        eq(rd.read_response().body, b"Hello, World!", "/plaintext after a file body")
        body = H.pattern(600 * 1024, 9)  # a large plain send into a small, slow window
        s.sendall(request("POST", "/echo", body=body))
        time.sleep(0.5)
        r = rd.read_response()
        eq((r.status, r.body == body), (200, True), "a 600 KiB echo after a file body")
        s.sendall(request("GET", "/f300k.bin"))
        eq(rd.read_response().body == FILES["f300k.bin"], True, "a file body again")


def test_zz_cleanup_big_file():
    if os.path.exists(BIG):
        os.unlink(BIG)


if __name__ == "__main__":
    H.run_tests(globals())
