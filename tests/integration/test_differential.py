"""Differential framing test: the same raw bytes to ringhttp and to nginx.

Each case is one stream of raw bytes: tricky framings (duplicate Content-Length, CL+TE,
Transfer-Encoding variants, whitespace before the colon, tabs, bare CR and LF, obs-fold,
chunk extensions and sizes, odd methods and versions, ...). Both servers get the stream,
then a probe request ("GET /plaintext?probe", Connection: close); the test compares how
many responses each stream produced and whether each was served or refused.

nginx (Debian's nginx-light) runs as the current user from a config written to a temp dir,
on 127.0.0.1 and a free port: `return 200` for /plaintext, 404 elsewhere, and /echo proxied
to a second server on a unix socket, so nginx reads the request body before answering, as
ringhttp's /echo does.

The rule: wherever ringhttp serves a request that nginx refuses (or answers a request nginx
never sees), the case must be listed in ALLOWED with what RFC 9112 says; any other such case
fails the test. Where ringhttp is stricter than nginx, the table says so (no failure). The
table is printed with every run.
"""
import concurrent.futures
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
from harness import check  # noqa: E402

PROBE = b"GET /plaintext?probe HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
HOST = b"Host: a\r\n"
GET = b"GET /plaintext HTTP/1.1\r\n" + HOST + b"\r\n"
POST = b"POST /echo HTTP/1.1\r\n" + HOST
TE = POST + b"Transfer-Encoding: chunked\r\n\r\n"
SMUGGLED = b"GET /smuggled HTTP/1.1\r\n" + HOST + b"\r\n"


def get_with(*fields, version=b"1.1"):
    return b"GET /plaintext HTTP/" + version + b"\r\n" + b"".join(fields) + b"\r\n"


def post_with(*fields, body=b""):
    return POST + b"".join(fields) + b"\r\n" + body


# name -> raw bytes (the probe follows each)
CASES = {
    # -- request lines --
    "plain GET": GET,
    "leading CRLF": b"\r\n" + GET,
    "leading bare LF": b"\n" + GET,
    "LF line ends": b"GET /plaintext HTTP/1.1\nHost: a\n\n",
    "double space after method": b"GET  /plaintext HTTP/1.1\r\n" + HOST + b"\r\n",
    "double space before version": b"GET /plaintext  HTTP/1.1\r\n" + HOST + b"\r\n",
    "tab as separator": b"GET\t/plaintext HTTP/1.1\r\n" + HOST + b"\r\n",
    "lowercase method": b"get /plaintext HTTP/1.1\r\n" + HOST + b"\r\n",
    "unknown method": b"BREW /plaintext HTTP/1.1\r\n" + HOST + b"\r\n",
    "method with dot": b"G.T /plaintext HTTP/1.1\r\n" + HOST + b"\r\n",
    "HTTP/1.2": b"GET /plaintext HTTP/1.2\r\n" + HOST + b"\r\n",
    "HTTP/1.10": b"GET /plaintext HTTP/1.10\r\n" + HOST + b"\r\n",
    "HTTP/01.1": b"GET /plaintext HTTP/01.1\r\n" + HOST + b"\r\n",
    "HTTP/2.0": b"GET /plaintext HTTP/2.0\r\n" + HOST + b"\r\n",
    "HTTP/0.9 line": b"GET /plaintext\r\n\r\n",
    "lowercase http/1.1": b"GET /plaintext http/1.1\r\n" + HOST + b"\r\n",
    "junk after version": b"GET /plaintext HTTP/1.1 x\r\n" + HOST + b"\r\n",
    "target without slash": b"GET plaintext HTTP/1.1\r\n" + HOST + b"\r\n",
    "absolute-form target": b"GET http://a/plaintext HTTP/1.1\r\n" + HOST + b"\r\n",
    "space in target": b"GET /plain text HTTP/1.1\r\n" + HOST + b"\r\n",
    "NUL in target": b"GET /plain\x00text HTTP/1.1\r\n" + HOST + b"\r\n",
    "bare CR after request line": b"GET /plaintext HTTP/1.1\rHost: a\r\n\r\n",
    "8 KiB target": b"GET /plaintext?" + b"q" * 8100 + b" HTTP/1.1\r\n" + HOST + b"\r\n",
    # -- header fields --
    "space before colon": get_with(b"Host : a\r\n"),
    "tab before colon": get_with(HOST, b"X-A\t: b\r\n"),
    "tab after colon": get_with(b"Host:\ta\r\n"),
    "trailing tab in value": get_with(b"Host: a\t\r\n"),
    "space in field name": get_with(HOST, b"X A: b\r\n"),
    "empty field name": get_with(HOST, b": b\r\n"),
    "field without colon": get_with(HOST, b"X-A b\r\n"),
    "leading space, first field": get_with(b" X-A: b\r\n", HOST),
    "obs-fold": get_with(HOST, b"X-A: b\r\n c\r\n"),
    "obs-fold with tab": get_with(HOST, b"X-A: b\r\n\tc\r\n"),
    "control byte in value": get_with(HOST, b"X-A: b\x01c\r\n"),
    "DEL in value": get_with(HOST, b"X-A: b\x7fc\r\n"),
    "obs-text in value": get_with(HOST, b"X-A: caf\xe9\r\n"),
    "bare CR in value": get_with(HOST, b"X-A: b\rc\r\n"),
    "bare CR ends fields": get_with(HOST) [:-2] + b"\rX" + SMUGGLED,
    "bare LF ends value": get_with(HOST, b"X-A: b\n"),
    "100 fields": get_with(HOST, *[b"X-%d: v\r\n" % i for i in range(99)]),
    "101 fields": get_with(HOST, *[b"X-%d: v\r\n" % i for i in range(100)]),
    "9 KiB field line": get_with(HOST, b"X-A: " + b"v" * 9000 + b"\r\n"),
    "underscore in name": get_with(HOST, b"X_A: b\r\n"),
    # -- Host --
    "no Host, 1.1": b"GET /plaintext HTTP/1.1\r\n\r\n",
    "no Host, 1.0": b"GET /plaintext HTTP/1.0\r\n\r\n",
    "two Hosts": get_with(HOST, b"Host: b\r\n"),
    "empty Host": get_with(b"Host:\r\n"),
    "Host with port": get_with(b"Host: a:8080\r\n"),
    "Host with path": get_with(b"Host: a/b\r\n"),
    "Host with space": get_with(b"Host: a b\r\n"),
    "Host with userinfo": get_with(b"Host: u@a\r\n"),
    "Host IPv6": get_with(b"Host: [::1]:80\r\n"),
    "Host a..b": get_with(b"Host: a..b\r\n"),
    # -- Content-Length --
    "CL body": post_with(b"Content-Length: 3\r\n", body=b"abc"),
    "CL 0": post_with(b"Content-Length: 0\r\n"),
    "CL leading zeros": post_with(b"Content-Length: 003\r\n", body=b"abc"),
    "CL twice, same": post_with(b"Content-Length: 3\r\nContent-Length: 3\r\n", body=b"abc"),
    "CL twice, differ": post_with(b"Content-Length: 3\r\nContent-Length: 5\r\n", body=b"abcde"),
    "CL list": post_with(b"Content-Length: 3, 3\r\n", body=b"abc"),
    "CL plus sign": post_with(b"Content-Length: +3\r\n", body=b"abc"),
    "CL negative": post_with(b"Content-Length: -3\r\n", body=b"abc"),
    "CL hex": post_with(b"Content-Length: 0x3\r\n", body=b"abc"),
    "CL with space inside": post_with(b"Content-Length: 3 3\r\n", body=b"abc"),
    "CL trailing space": post_with(b"Content-Length: 3 \r\n", body=b"abc"),
    "CL trailing tab": post_with(b"Content-Length: 3\t\r\n", body=b"abc"),
    "CL empty": post_with(b"Content-Length:\r\n", body=b"abc"),
    "CL overflow": post_with(b"Content-Length: 99999999999999999999999\r\n", body=b"abc"),
    "CL over body limit": post_with(b"Content-Length: 2000000\r\n", body=b"abc"),
    "CL space before colon": post_with(b"Content-Length : 3\r\n", body=b"abc"),
    "CL obs-fold": post_with(b"Content-Length:\r\n 3\r\n", body=b"abc"),
    "CL short body": post_with(b"Content-Length: 10\r\n", body=b"abc"),
    "GET with CL body": get_with(HOST, b"Content-Length: 3\r\n") + b"abc",
    "CL in 1.0": b"POST /echo HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc",
    # -- Transfer-Encoding --
    "chunked": TE + b"3\r\nabc\r\n0\r\n\r\n",
    "chunked, upper case": post_with(b"Transfer-Encoding: CHUNKED\r\n", body=b"3\r\nabc\r\n0\r\n\r\n"),
    "TE tab before value": post_with(b"Transfer-Encoding:\tchunked\r\n", body=b"3\r\nabc\r\n0\r\n\r\n"),
    "TE trailing tab": post_with(b"Transfer-Encoding: chunked\t\r\n", body=b"3\r\nabc\r\n0\r\n\r\n"),
    "TE chunked, chunked": post_with(b"Transfer-Encoding: chunked, chunked\r\n",
                                     body=b"3\r\nabc\r\n0\r\n\r\n"),
    "TE twice": post_with(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                          body=b"3\r\nabc\r\n0\r\n\r\n"),
    "TE gzip, chunked": post_with(b"Transfer-Encoding: gzip, chunked\r\n",
                                  body=b"3\r\nabc\r\n0\r\n\r\n"),
    "TE chunked, gzip": post_with(b"Transfer-Encoding: chunked, gzip\r\n", body=b"3\r\nabc"),
    "TE identity": post_with(b"Transfer-Encoding: identity\r\n", body=b"3\r\nabc\r\n0\r\n\r\n"),
    "TE xchunked": post_with(b"Transfer-Encoding: xchunked\r\n", body=b"3\r\nabc\r\n0\r\n\r\n"),
    "TE empty": post_with(b"Transfer-Encoding:\r\n", body=b"3\r\nabc\r\n0\r\n\r\n"),
    "TE space before colon": post_with(b"Transfer-Encoding : chunked\r\n",
                                       body=b"3\r\nabc\r\n0\r\n\r\n"),
    "TE obs-fold": post_with(b"Transfer-Encoding:\r\n chunked\r\n", body=b"3\r\nabc\r\n0\r\n\r\n"),
    "TE underscore name": post_with(b"Transfer_Encoding: chunked\r\n",
                                    body=b"3\r\nabc\r\n0\r\n\r\n"),
    "CL then TE": post_with(b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
                            body=b"0\r\n\r\n" + SMUGGLED),
    "TE then CL": post_with(b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
                            body=b"0\r\n\r\n" + SMUGGLED),
    "TE in 1.0": b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    # -- chunked framing --
    "chunk ext": TE + b"3;a=b\r\nabc\r\n0\r\n\r\n",
    "chunk exts, valued": TE + b'3;a=b;c="d"\r\nabc\r\n0;e\r\n\r\n',
    "chunk ext, BWS": TE + b"3 ;a=b\r\nabc\r\n0\r\n\r\n",
    "chunk size, leading zeros": TE + b"0003\r\nabc\r\n0\r\n\r\n",
    "chunk size, upper hex": TE + b"A\r\n0123456789\r\n0\r\n\r\n",
    "chunk size 0x": TE + b"0x3\r\nabc\r\n0\r\n\r\n",
    "chunk size negative": TE + b"-3\r\nabc\r\n0\r\n\r\n",
    "chunk size empty": TE + b"\r\nabc\r\n0\r\n\r\n",
    "chunk size, bare CR": TE + b"3\rXabc\r\n0\r\n\r\n",
    "chunk size, bare LF": TE + b"3\nabc\n0\n\n",
    "chunk data, no CRLF": TE + b"3\r\nabcXX0\r\n\r\n" + SMUGGLED,
    "chunk data, bare CR": TE + b"3\r\nabc\rX0\r\n\r\n",
    "chunk data, too long": TE + b"3\r\nabcdef\r\n0\r\n\r\n",
    "last chunk, bare CR": TE + b"3\r\nabc\r\n0\r\n\rX" + SMUGGLED,
    "chunk size over limit": TE + b"ffffffffffffffff\r\n",
    "chunk size overflow": TE + b"fffffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
    "trailer field": TE + b"3\r\nabc\r\n0\r\nX-T: v\r\n\r\n",
    "trailer obs-fold": TE + b"3\r\nabc\r\n0\r\nX-T: v\r\n w\r\n\r\n",
    "trailer without colon": TE + b"3\r\nabc\r\n0\r\nX-T v\r\n\r\n",
    # -- connection management --
    "1.0 keep-alive": b"GET /plaintext HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "1.0 keep-alive, close": b"GET /plaintext HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
    "1.1 close": get_with(HOST, b"Connection: close\r\n"),
    "1.1 keep-alive, close": get_with(HOST, b"Connection: keep-alive, close\r\n"),
    "Expect 100-continue": post_with(b"Expect: 100-continue\r\nContent-Length: 3\r\n",
                                     body=b"abc"),
    "pipelined GETs": GET * 3,
}

# Cases where ringhttp serves what nginx refuses, and why that is right (RFC 9112 unless
# said otherwise). Any other such case fails the test.
ALLOWED = {
    "tab after colon": "RFC 9110 5.6.3: OWS is SP or HTAB, so \"Host:\\ta\" is Host \"a\"; "
                       "nginx takes the tab into the value and refuses that Host",
    "trailing tab in value": "RFC 9110 5.5: trailing OWS (SP or HTAB) is not part of the "
                             "value; nginx keeps the tab and refuses that Host",
    "TE tab before value": "OWS again: the coding is \"chunked\" (RFC 9110 5.6.3); nginx "
                           "sees \"\\tchunked\", an unknown coding, and answers 501",
    "TE trailing tab": "OWS again: \"chunked\\t\" is chunked; nginx answers 501",
    "9 KiB field line": "no RFC limit on a field line; ringhttp bounds the whole head at "
                        "12 KiB, nginx each line at 8 KiB (large_client_header_buffers)",
    "empty Host": "RFC 9112 3.2: a client MUST send an empty Host when the target has no "
                  "authority; a server MUST reject only a missing or repeated Host or an "
                  "invalid value, and empty is valid (nginx refuses it)",
}

# Where nginx serves what ringhttp refuses: printed with the table, for the record.
STRICTER = {
    "LF line ends": "RFC 9112 2.2: a recipient MAY take a bare LF as a line end; llhttp "
                    "takes it after the request line only",
    "bare LF ends value": "the same MAY (RFC 9112 2.2)",
    "unknown method": "RFC 9110 9.1: 501 for a method the server does not implement",
    "HTTP/1.2": "RFC 9112 2.3 says SHOULD serve as 1.1; llhttp 8.1.0 has no lenient-version "
                "flag, so 505",
    "HTTP/1.10": "not an HTTP-version (DIGIT \".\" DIGIT, RFC 9112 2.3)",
    "HTTP/0.9 line": "no HTTP/0.9 (nginx answers a bare body)",
    "control byte in value": "RFC 9110 5.5: CTLs are not field-value bytes; rejecting is allowed",
    "DEL in value": "the same (DEL is a CTL)",
    "101 fields": "the limit (max_headers, 100 by default); nginx bounds only the head size",
    "Host with userinfo": "RFC 9112 3.2: Host is uri-host [\":\" port], no userinfo: 400",
    "chunk size, bare LF": "RFC 9112 7.1: chunk lines end in CRLF",
    "trailer obs-fold": "RFC 9112 5.2 and 7.1.2: trailer fields are field lines, no folding",
    "trailer without colon": "RFC 9112 7.1.2: a trailer line is a field line",
}


def served(status):
    """The request was parsed and routed (an answer from the application side)."""
    return status < 400 or status in (404, 405)


# ---------------------------------------------------------------------------------------------
# nginx


def free_port():
    with socket.socket() as s:
        s.bind((H.HOST, 0))
        return s.getsockname()[1]


NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log crit;
events {{ worker_connections 512; }}
http {{
    access_log off;
    default_type text/plain;
    client_max_body_size 1m;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen unix:{tmp}/up.sock;
        location / {{ return 200 "echo\\n"; }}
    }}
    server {{
        listen {host}:{port};
        location = /plaintext {{ return 200 "Hello, World!"; }}
        location = /echo {{ proxy_pass http://unix:{tmp}/up.sock:/; }}
        location / {{ return 404; }}
    }}
}}
"""


class Nginx:
    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="rh-nginx-")
        self.proc = None
        self.port = None

    def start(self):
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        check(os.access(binary, os.X_OK),
              "nginx not found: scripts/install-deps installs nginx-light")
        for _ in range(5):  # a free port may be taken between the probe and the bind
            self.port = free_port()
            conf = os.path.join(self.tmp, "nginx.conf")
            with open(conf, "w") as f:
                f.write(NGINX_CONF.format(tmp=self.tmp, host=H.HOST, port=self.port))
            self.proc = subprocess.Popen(
                [binary, "-p", self.tmp, "-c", conf, "-e", os.path.join(self.tmp, "error.log")],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                preexec_fn=H._die_with_parent)
            if self._wait_listening():
                return self
            self.stop()
        raise H.TestFailure("nginx did not start: %s" % self._log())

    def _wait_listening(self):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                socket.create_connection((H.HOST, self.port), timeout=0.2).close()
                return True
            except OSError:
                time.sleep(0.02)
        return False

    def _log(self):
        try:
            with open(os.path.join(self.tmp, "error.log")) as f:
                return f.read()[-2000:]
        except OSError:
            return "(no error log)"

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.tmp, True)


# ---------------------------------------------------------------------------------------------
# One stream against one server


def run_stream(port, raw, wait=3.0):
    """Sends raw + PROBE, reads until the server closes (or `wait` passes: a server still
    reading a body). Returns the statuses of the final responses (1xx skipped) and whether
    the server closed. (No half-close: nginx drops a proxied request when its client
    half-closes.)"""
    data = bytearray()
    closed = False
    with H.connect(port, timeout=wait) as s:
        try:
            s.sendall(raw + PROBE)
        except OSError:
            pass  # the server refused early and closed; its answer is still there to read
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except OSError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            data += chunk
    statuses = []
    while data:
        got = H.try_parse_response(bytes(data), allow_interim=True)
        if got is None:
            statuses.append(-1)  # a truncated or unparsable answer
            break
        r, used = got
        del data[:used]
        if r.status >= 200:
            statuses.append(r.status)
    return statuses, closed


def verdict(name, ring, nginx):
    r_ok = [served(s) for s in ring]
    n_ok = [served(s) for s in nginx]
    if r_ok == n_ok:
        return "same"
    more = sum(r_ok) > sum(n_ok) or any(a and not b for a, b in zip(r_ok, n_ok))
    if not more:
        return "stricter"
    return "allowed" if name in ALLOWED else "FAIL"


def _pair(name, names, ring, nginx):
    i = names.index(name)
    return ring[i][0], nginx[i][0]


def fmt(statuses, closed):
    return (" ".join(str(s) for s in statuses) or "-") + ("" if closed else " (open)")


def test_same_bytes_to_ringhttp_and_nginx():
    ngx = Nginx()
    try:
        ngx.start()
        ring_port = H.shared_server().port
        names = list(CASES)
        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            ring = list(pool.map(lambda n: run_stream(ring_port, CASES[n]), names))
            nginx = list(pool.map(lambda n: run_stream(ngx.port, CASES[n]), names))
    finally:
        ngx.cleanup()
    rows, counts, failures = [], {}, []
    for name, (rs, rc), (ns, nc) in zip(names, ring, nginx):
        v = verdict(name, rs, ns)
        counts[v] = counts.get(v, 0) + 1
        rows.append((name, fmt(rs, rc), fmt(ns, nc), v))
        if v == "FAIL":
            failures.append(name)
    w = max(len(r[0]) for r in rows)
    print("     %-*s  %-22s %-22s %s" % (w, "case (then the probe)", "ringhttp", "nginx",
                                         "verdict"))
    for name, r, n, v in rows:
        print("     %-*s  %-22s %-22s %s" % (w, name, r, n, v))
    print("     " + ", ".join("%s %d" % kv for kv in sorted(counts.items())))
    for name, why in ALLOWED.items():
        print("     allowed: %s: %s" % (name, why))
    for name, why in STRICTER.items():
        print("     stricter: %s: %s" % (name, why))
    stale = [n for n in ALLOWED if n in CASES and verdict(n, *_pair(n, names, ring, nginx))
             != "allowed"]
    if stale:
        print("     note: ALLOWED entries no longer differing: %s" % stale)
    check(not failures, "ringhttp serves what nginx refuses, unexplained: %s" % failures)
    unused = [n for n in ALLOWED if n not in CASES]
    check(not unused, "ALLOWED names no case: %s" % unused)


if __name__ == "__main__":
    H.run_tests(globals())
