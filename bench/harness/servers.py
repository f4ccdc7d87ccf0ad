"""ringhttp and its peers: each writes its own config into the run's temp dir and says how
to start it in the foreground.

Common ground for a fair comparison: one worker process/thread, access log off, sendfile on
where the server has it, keep-alive without a request limit (or the largest the server
takes) and a 10-minute idle timeout, listening on 127.0.0.1, and every file it writes (pid,
logs, temp files) inside the run's temp dir. nginx answers /plaintext and /json inline
(`return 200 "..."`, as ringhttp's built-in handlers do) and its listener is `deferred`
(TCP_DEFER_ACCEPT, as ringhttp's); h2o and lighttpd serve them as static files with the
same bytes and Content-Type. All servers serve /4k.bin and /1m.bin from the same document
root. "floor" (bench/floor.c) is no HTTP server: the cost of a canned keep-alive answer.
"""
import os
import pwd
import shutil
import subprocess

NOFILE = 20000  # the hard RLIMIT_NOFILE here; each server stays under it
IDLE_S = 600

PLAINTEXT = b"Hello, World!"
JSON = b'{"message":"Hello, World!"}'
STATIC = {"4k.bin": 4096, "1m.bin": 1 << 20}


def make_docroot(path):
    """The files every peer serves; world-readable (nginx/h2o workers drop to nobody)."""
    os.makedirs(path, mode=0o755, exist_ok=True)
    files = {"plaintext": PLAINTEXT, "json": JSON}
    for name, size in STATIC.items():
        files[name] = bytes((i * 7 + 3) % 251 for i in range(size))
    for name, data in files.items():
        with open(os.path.join(path, name), "wb") as f:
            f.write(data)
        os.chmod(os.path.join(path, name), 0o644)
    return files


def _give_to_nobody(path):
    try:
        pw = pwd.getpwnam("nobody")
    except KeyError:
        return
    os.chown(path, pw.pw_uid, pw.pw_gid)


def _tool_version(argv, pattern):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    for line in (out.stdout + out.stderr).splitlines():
        if pattern in line:
            return line.strip()
    return "?"


class Server:
    name = "?"
    binary = None
    max_conns = NOFILE - 500  # connections it is configured to hold at once
    na_note = None  # why a resource is not served (n/a rows)

    def na_reason(self, resource):
        return self.na_note or f"does not serve {resource}"

    def available(self):
        """None if it can run here, else why not."""
        return None if self.binary and shutil.which(self.binary) else f"{self.binary} not found"

    def version(self):
        return "?"

    def url_path(self, logical):
        """The path that serves a scenario's resource; None: this server cannot."""
        return "/" + logical

    def setup(self, workdir, port, docroot):
        """Writes the config into workdir (fresh, ours); returns the argv to run."""
        raise NotImplementedError


class Ringhttp(Server):
    name = "ringhttp"
    max_conns = 16384  # --max-conns: per ring, and there is one ring

    def __init__(self, build_dir, extra_args=()):
        self.binary = os.path.join(build_dir, "ringhttp")
        self.extra_args = list(extra_args)
        self.static_prefix = None  # found by probing once --root works; None: n/a
        self.has_root = False

    def available(self):
        if not os.access(self.binary, os.X_OK):
            return f"{self.binary} not built (make build, or --build DIR)"
        helptext = subprocess.run([self.binary, "--help"], capture_output=True, text=True)
        self.has_root = "--root" in helptext.stdout
        return None

    def version(self):
        return _tool_version([self.binary, "--version"], "ringhttp").replace(" ", "/")

    def url_path(self, logical):
        if logical in STATIC:
            return None if self.static_prefix is None else self.static_prefix + logical
        return "/" + logical  # /plaintext and /json are built-in handlers

    def setup(self, workdir, port, docroot):
        argv = [self.binary, "--host", "127.0.0.1", "--port", str(port), "--threads", "1",
                "--quiet", "--access-log", "off", "--no-request-id",
                "--max-conns", str(self.max_conns), "--idle-timeout", str(IDLE_S * 1000),
                "--drain-timeout", "1000"]
        if self.has_root:
            argv += ["--root", docroot]
        return argv + self.extra_args


class Nginx(Server):
    name = "nginx"
    binary = "nginx"
    nopush = "on"

    def version(self):
        return _tool_version(["nginx", "-v"], "nginx version").replace("nginx version: ", "")

    def setup(self, workdir, port, docroot):
        temp = {t: os.path.join(workdir, t) for t in
                ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
        conf = f"""# written by bench/run
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile {NOFILE};
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{
    worker_connections {NOFILE - 500};
    use epoll;
}}
http {{
    access_log off;
    sendfile on;
    tcp_nopush {self.nopush};  # on: TCP_CORK around sendfile, full segments only
    open_file_cache max=1024 inactive=600s;  # lighttpd and h2o cache open files too
    open_file_cache_valid 600s;
    keepalive_timeout {IDLE_S}s;
    keepalive_requests 1000000000;
    client_body_temp_path {temp['client_body']};
    proxy_temp_path {temp['proxy']};
    fastcgi_temp_path {temp['fastcgi']};
    uwsgi_temp_path {temp['uwsgi']};
    scgi_temp_path {temp['scgi']};
    types {{ }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port} backlog=4096 deferred;
        root {docroot};
        location = /plaintext {{ default_type text/plain; return 200 "Hello, World!"; }}
        location = /json {{
            default_type application/json;
            return 200 '{{"message":"Hello, World!"}}';
        }}
    }}
}}
"""
        path = os.path.join(workdir, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        return ["nginx", "-p", workdir, "-e", os.path.join(workdir, "error.log"), "-c", path]


class H2o(Server):
    name = "h2o"
    binary = "h2o"

    def version(self):
        return _tool_version(["h2o", "--version"], "h2o version").replace("h2o version ", "h2o/")

    def setup(self, workdir, port, docroot):
        # h2o 2.2 has no sendfile switch (it reads files itself); its keep-alive idle limit is
        # http1-request-timeout and it has no per-connection request limit.
        conf = f"""# written by bench/run
listen:
  host: 127.0.0.1
  port: {port}
num-threads: 1
max-connections: {NOFILE - 500}
http1-request-timeout: {IDLE_S}
pid-file: {workdir}/h2o.pid
error-log: {workdir}/error.log
hosts:
  default:
    paths:
      /plaintext:
        file.file: {docroot}/plaintext
        file.mime.setdefaulttype: text/plain
      /json:
        file.file: {docroot}/json
        file.mime.setdefaulttype: application/json
      /:
        file.dir: {docroot}
        file.mime.setdefaulttype: application/octet-stream
"""
        if os.geteuid() == 0:
            _give_to_nobody(workdir)  # h2o started as root serves as nobody, pid file too
        path = os.path.join(workdir, "h2o.conf")
        with open(path, "w") as f:
            f.write(conf)
        return ["h2o", "-c", path]


class Lighttpd(Server):
    name = "lighttpd"
    binary = "lighttpd"
    max_conns = NOFILE // 2  # lighttpd refuses more than max-fds / 2

    def available(self):
        return None if shutil.which("lighttpd") or os.path.exists("/usr/sbin/lighttpd") \
            else "lighttpd not found"

    def version(self):
        return _tool_version([self._bin(), "-v"], "lighttpd/").split(" ")[0]

    def _bin(self):
        return shutil.which("lighttpd") or "/usr/sbin/lighttpd"

    def setup(self, workdir, port, docroot):
        os.makedirs(os.path.join(workdir, "upload"), exist_ok=True)
        # mimetype.assign matches the end of the file name: "plaintext" and "json" are the
        # whole names of those two files.
        conf = f"""# written by bench/run
server.modules = ()
server.document-root = "{docroot}"
server.bind = "127.0.0.1"
server.port = {port}
server.pid-file = "{workdir}/lighttpd.pid"
server.errorlog = "{workdir}/error.log"
server.upload-dirs = ( "{workdir}/upload" )
server.max-worker = 0
server.max-fds = {NOFILE}
server.max-connections = {self.max_conns}
server.listen-backlog = 4096
server.network-backend = "sendfile"
server.max-keep-alive-requests = 65535
server.max-keep-alive-idle = {IDLE_S}
server.max-read-idle = {IDLE_S}
mimetype.assign = ( "plaintext" => "text/plain", "json" => "application/json",
                    "" => "application/octet-stream" )
"""
        path = os.path.join(workdir, "lighttpd.conf")
        with open(path, "w") as f:
            f.write(conf)
        return [self._bin(), "-D", "-f", path]


class Floor(Server):
    """bench/floor: one io_uring thread, no HTTP parsing, the same canned answer to every
    request (each blank line): /plaintext keep-alive only, pipelined too; it never closes."""
    name = "floor"
    max_conns = NOFILE - 500
    SERVES = ("plaintext",)

    def __init__(self, build_dir):
        self.binary = os.path.join(build_dir, "bench", "floor")

    def available(self):
        return None if os.access(self.binary, os.X_OK) else \
            f"{self.binary} not built (cmake --build, target floor)"

    def version(self):
        return "floor (bench/floor.c)"

    def url_path(self, logical):
        return "/" + logical if logical in self.SERVES else None

    def na_reason(self, resource):
        return f"no HTTP parsing: serves only /plaintext keep-alive, not {resource}"

    def setup(self, workdir, port, docroot):
        return [self.binary, "--host", "127.0.0.1", "--port", str(port),
                "--body", PLAINTEXT.decode()]


class NginxNopush(Nginx):
    """nginx with tcp_nopush off (TCP_NODELAY alone): on loopback its server CPU per large
    body drops several-fold because the client's CPU then carries the transmit work
    (window-limited sends go out from the client's ACKs); the both-CPUs figure shows it."""
    name = "nginx-nopush"
    nopush = "off"


def make_servers(names, build_dir, ringhttp_args=()):
    table = {"ringhttp": lambda: Ringhttp(build_dir, ringhttp_args), "nginx": Nginx,
             "nginx-nopush": NginxNopush,
             "h2o": H2o, "lighttpd": Lighttpd, "floor": lambda: Floor(build_dir)}
    unknown = [n for n in names if n not in table]
    if unknown:
        raise ValueError(f"unknown server(s): {', '.join(unknown)} "
                         f"(known: {', '.join(table)})")
    return [table[n]() for n in names]
