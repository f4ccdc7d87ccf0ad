"""The scenarios, and one measurement: a fresh server, a curl check, a warm-up, then wrk
with the server's CPU time and RSS read from /proc around it.

Each measurement starts the server anew (its own temp dir and port) so no scenario inherits
another's memory or connections, and stops it afterwards.
"""
import os
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass

from . import load, pool_scenarios, procs, servers


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    resource: str  # "plaintext", "json", "4k.bin", "1m.bin"
    conns: int = 50
    pipeline: int = 0
    headers: tuple = ()
    idle: bool = False   # hold --idle-conns idle connections during the run
    mixed: bool = False  # ringhttp only: /plaintext alone, then beside /blocking load
    custom: str = ""     # ringhttp only (with mixed): measured by pool_scenarios.MEASURE
    cold: bool = False   # /plaintext alone, then beside downloads of a cold file

    @property
    def special(self):
        """Its figures are not one plain wrk run (own table, not in the summaries)."""
        return self.mixed or self.cold

    def only_for(self, server_name):
        if server_name == "floor":  # no parsing: it cannot honour Connection: close
            return not self.special and not self.headers
        return not self.mixed or server_name == "ringhttp"


SCENARIOS = [
    Scenario("plaintext", "GET /plaintext (13 bytes), 50 keep-alive connections", "plaintext"),
    Scenario("pipelined", "GET /plaintext, 50 connections, HTTP pipelining depth 16",
             "plaintext", pipeline=16),
    Scenario("json", "GET /json (27 bytes), 50 keep-alive connections", "json"),
    Scenario("static-4k", "GET a 4 KiB static file, 50 keep-alive connections", "4k.bin"),
    Scenario("static-1m", "GET a 1 MiB static file, 16 keep-alive connections", "1m.bin",
             conns=16),
    Scenario("close", "GET /plaintext, 50 connections, a new connection per request "
             "(Connection: close)", "plaintext", headers=("Connection: close",)),
    Scenario("idle10k", "GET /plaintext, 50 connections, while 10,000 idle keep-alive "
             "connections are held open", "plaintext", idle=True),
    Scenario("mixed", "ringhttp only: GET /plaintext (wrk --latency, 50 connections) alone, "
             "then while 20 connections hammer /blocking?ms=50", "plaintext", mixed=True),
    Scenario("pool-isolation", "ringhttp only: GET /work?us=200 (1 connection) alone, then "
             "while 40 connections hammer /blocking?ms=200", "plaintext", mixed=True,
             custom="isolation"),
    Scenario("db-hop", "ringhttp only: server CPU per request of /db?id=42 (through the db "
             "lane) over /plaintext, 50 connections each, same server", "plaintext",
             mixed=True, custom="hop"),
    Scenario("cold", "GET /plaintext (wrk --latency, 50 connections) alone, then while one "
             "client downloads a 64 MiB file whose pages are dropped from the page cache "
             "(posix_fadvise DONTNEED) before every download", "plaintext", cold=True),
]
COLD_FILE, COLD_MIB = "cold.bin", 64
BY_NAME = {s.name: s for s in SCENARIOS}


def expected(files, resource):
    """(body, Content-Type prefix or None) every server must answer for the resource."""
    ctype = {"plaintext": "text/plain", "json": "application/json"}.get(resource)
    return files[resource], ctype


class Env:
    """What every measurement needs: options, the tracker, the temp dir and the docroot."""

    def __init__(self, opts, tracker, tmp, docroot, files):
        self.opts, self.tracker, self.tmp = opts, tracker, tmp
        self.docroot, self.files = docroot, files
        self._port = opts.port_base

    def next_port(self):
        """The next port from --port-base that nothing holds (not even in TIME_WAIT)."""
        for _ in range(2000):
            port = self._port
            self._port = self._port + 1 if self._port < 32000 else self.opts.port_base
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                    return port
                except OSError:
                    continue
        raise RuntimeError("no free port")


class Running:
    """A server we started for one measurement."""

    def __init__(self, env, server):
        self.env, self.server = env, server
        self.port = env.next_port()
        self.workdir = tempfile.mkdtemp(prefix=server.name + "-", dir=env.tmp)
        os.chmod(self.workdir, 0o755)
        argv = server.setup(self.workdir, self.port, env.docroot)
        self.log_path = os.path.join(self.workdir, "output.log")
        with open(self.log_path, "w") as log:
            self.proc = env.tracker.spawn(server.name, argv, cpus=env.opts.server_cpus,
                                          stdout=log, stderr=subprocess.STDOUT)
        self._wait_listening()

    def _wait_listening(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.proc.alive():
                break
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        self.stop()
        raise load.CheckFailed(f"{self.server.name} did not start listening on port "
                               f"{self.port}: {self.log_tail()}")

    def log_tail(self):
        texts = []
        for name in ("output.log", "error.log"):
            try:
                with open(os.path.join(self.workdir, name), errors="replace") as f:
                    texts.append(f.read()[-600:].strip())
            except FileNotFoundError:
                pass
        return " | ".join(t for t in texts if t) or "(no output)"

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self):
        self.env.tracker.stop(self.proc)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def _wrk(env, url, scen, seconds, conns=None, latency=True):
    o = env.opts
    argv = load.wrk_argv(url, conns or scen.conns, seconds, o.client_threads, scen.headers,
                         scen.pipeline, latency)
    r = load.run_wrk(env.tracker, argv, o.client_cpus, seconds)
    if r["non2xx"]:
        raise load.CheckFailed(f"wrk got {r['non2xx']} non-2xx answers from {url}")
    r["argv"] = argv
    return r


def _timed_run(env, srv, url, scen, pids):
    """wrk for --duration with CPU ticks and peak RSS of pids around it."""
    cpus = env.opts.measured_cpus
    ticks0, busy0 = procs.cpu_ticks(pids), procs.cpus_busy_ticks(cpus)
    with load.RssSampler(procs.rss_kib, pids) as rss:
        r = _wrk(env, url, scen, env.opts.duration)
    cpu_s = (procs.cpu_ticks(pids) - ticks0) / procs.CLK_TCK
    busy_s = (procs.cpus_busy_ticks(cpus) - busy0) / procs.CLK_TCK
    r["cpu_us_per_req"] = cpu_s * 1e6 / r["requests"] if r["requests"] else None
    r["cpu_pct"] = 100.0 * cpu_s / r["seconds"]
    r["client_cpu_us_per_req"] = (r["client_cpu_s"] * 1e6 / r["requests"]
                                  if r["requests"] else None)
    # On loopback the receiver's TCP work runs on whichever CPU sends or acknowledges, so
    # a server can look cheaper by leaving work to the client's CPU: the busy time of both
    # CPUs (server's and client's, every process and softirq) per request cannot be moved.
    r["machine_cpu_us_per_req"] = busy_s * 1e6 / r["requests"] if r["requests"] else None
    r["rss_kib"] = rss.peak
    return r


def _idle_count(env, server, scen):
    """--idle-conns, capped to what the server is configured to hold beside the load."""
    return min(env.opts.idle_conns, server.max_conns - scen.conns - 50)


def measure(env, server, scen, round_no=1):
    """One measurement -> a row dict (status ok), or raises CheckFailed."""
    path = server.url_path(scen.resource)
    row = {"server": server.name, "scenario": scen.name}
    if path is None:
        return dict(row, status="n/a", note=server.na_reason(scen.resource))
    body, ctype = expected(env.files, scen.resource)
    with Running(env, server) as srv:
        url = srv.url(path)
        load.check_answer(url, body, ctype, scen.headers)
        if env.opts.warmup > 0:
            _wrk(env, url, scen, env.opts.warmup, latency=False)
        pids = srv.proc.tree()
        if scen.custom:
            return dict(row, **pool_scenarios.MEASURE[scen.custom](env, srv, scen, pids,
                                                                    round_no))
        if scen.mixed:
            return dict(row, **_measure_mixed(env, srv, url, scen, pids, round_no % 2 == 0))
        if scen.cold:
            return dict(row, **_measure_cold(env, srv, url, scen, pids, round_no % 2 == 0))
        holder = None
        try:
            if scen.idle:
                holder, idle = _open_idle(env, srv, scen, path, pids)
                row.update(idle)
            r = _timed_run(env, srv, url, scen, pids)
        finally:
            closed = holder.finish() if holder else None
        if closed:
            row["note"] = f"the server closed {closed} idle connections during the run"
        if not srv.proc.alive():
            raise load.CheckFailed(f"{server.name} died during the run: {srv.log_tail()}")
    row.update(status="ok", **{k: r[k] for k in ("rps", "requests", "seconds", "p50_ms",
                                                 "p99_ms", "cpu_us_per_req", "cpu_pct",
                                                 "client_cpu_us_per_req",
                                                 "machine_cpu_us_per_req", "rss_kib",
                                                 "socket_errors")})
    if scen.resource in servers.STATIC:
        row["mb_s"] = r["rps"] * servers.STATIC[scen.resource] / 1e6
    row["raw"] = r["raw"]
    row["wrk"] = " ".join(r["argv"])
    return row


def _open_idle(env, srv, scen, path, pids):
    count = _idle_count(env, srv.server, scen)
    time.sleep(0.3)
    before = procs.rss_kib(pids)
    holder = load.IdleHolder(env.tracker, srv.port, path, count, env.opts.client_cpus)
    try:
        opened, failed = holder.wait_ready()
    except Exception:
        holder.finish()
        raise
    time.sleep(0.5)
    with_idle = procs.rss_kib(pids)
    if opened < count * 0.99:
        holder.finish()
        raise load.CheckFailed(f"only {opened} of {count} idle connections were answered "
                               f"({failed} failed)")
    return holder, {"idle_open": opened, "rss_before_kib": before, "rss_idle_kib": with_idle,
                    "rss_per_idle_kib": (with_idle - before) / opened if opened else None}


def _measure_mixed(env, srv, url, scen, pids, loaded_first):
    """/plaintext alone, and while 20 connections keep /blocking?ms=50 busy; the order
    alternates between rounds so neither half always runs on a fresher server."""
    blocking = srv.url("/blocking?ms=50")
    load.check_answer(blocking, b"slept 50", "text/plain")
    if loaded_first:
        loaded, bgr, bg_argv = _run_beside_blocking(env, srv, url, scen, pids, blocking)
        base = _timed_run(env, srv, url, scen, pids)
    else:
        base = _timed_run(env, srv, url, scen, pids)
        loaded, bgr, bg_argv = _run_beside_blocking(env, srv, url, scen, pids, blocking)
    return {"status": "ok", "rps": loaded["rps"], "requests": loaded["requests"],
            "seconds": loaded["seconds"], "p50_ms": loaded["p50_ms"],
            "p99_ms": loaded["p99_ms"], "cpu_us_per_req": None, "cpu_pct": loaded["cpu_pct"],
            "rss_kib": loaded["rss_kib"], "socket_errors": loaded["socket_errors"],
            "base_rps": base["rps"], "base_p50_ms": base["p50_ms"],
            "base_p99_ms": base["p99_ms"], "base_cpu_us_per_req": base["cpu_us_per_req"],
            "bg_rps": bgr["rps"], "bg_p99_ms": bgr["p99_ms"],
            "raw": "--- alone ---\n" + base["raw"] + "\n--- with /blocking load ---\n" +
            loaded["raw"] + "\n--- the /blocking load ---\n" + bgr["raw"],
            "wrk": " ".join(loaded["argv"]) + " ; background: " + " ".join(bg_argv)}


def _run_beside_blocking(env, srv, url, scen, pids, blocking):
    d = env.opts.duration
    bg_argv = load.wrk_argv(blocking, 20, d + 2, 1)
    bg = env.tracker.spawn("wrk-blocking", bg_argv, cpus=env.opts.client_cpus,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(0.5)  # the pool is busy before the measured run starts
        loaded = _timed_run(env, srv, url, scen, pids)
        bg_out, _ = bg.popen.communicate(timeout=d + 30)
    finally:
        env.tracker.stop(bg)
    bgr = load.parse_wrk(bg_out)
    bgr["raw"] = bg_out
    if bgr["non2xx"]:
        raise load.CheckFailed(f"/blocking load got {bgr['non2xx']} non-2xx answers")
    return loaded, bgr, bg_argv


def _cold_file(env):
    """docroot/cold.bin (64 MiB of random bytes: no compression or dedup can help), made
    once per run; its path."""
    path = os.path.join(env.docroot, COLD_FILE)
    if not os.path.exists(path):
        with open(path, "wb") as f:
            for _ in range(COLD_MIB):
                f.write(os.urandom(1 << 20))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(path, 0o644)
    return path


def _drop_cache(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


class ColdDownloads:
    """A thread that drops the cold file's pages, downloads it whole over one fresh
    connection (checking the length), and again, until stopped."""

    def __init__(self, port, path, url_path):
        self.port, self.path, self.url_path = port, path, url_path
        self.size = os.path.getsize(path)
        self.done, self.bytes, self.error = 0, 0, None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.t0 = time.monotonic()
        self._thread.start()

    def _one(self):
        _drop_cache(self.path)
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as s:
            s.sendall(f"GET {self.url_path} HTTP/1.1\r\nHost: bench\r\n"
                      f"Connection: close\r\n\r\n".encode())
            got = 0
            while True:
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                got += len(chunk)
                self.bytes += len(chunk)
        if got < self.size:
            raise RuntimeError(f"cold download ended after {got} of {self.size} body bytes")
        self.done += 1

    def _run(self):
        try:
            while not self._stop.is_set():
                self._one()
        except Exception as e:  # noqa: BLE001 (reported by finish)
            self.error = e

    def finish(self):
        self._stop.set()
        self._thread.join(60)
        secs = time.monotonic() - self.t0
        if self.error:
            raise load.CheckFailed(f"cold download failed: {self.error}")
        return {"bg_downloads": self.done, "bg_mb_s": self.bytes / 1e6 / secs}


def _measure_cold(env, srv, url, scen, pids, loaded_first):
    """/plaintext alone and beside cold downloads, in alternating order between rounds."""
    path = _cold_file(env)
    url_path = "/" + COLD_FILE
    if srv.server.name == "ringhttp":
        if srv.server.static_prefix is None:
            raise load.CheckFailed("ringhttp serves no static files here")
        url_path = srv.server.static_prefix + COLD_FILE

    def beside():
        bg = ColdDownloads(srv.port, path, url_path)
        try:
            time.sleep(0.3)
            r = _timed_run(env, srv, url, scen, pids)
        finally:
            stats = bg.finish()
        return r, stats
    if loaded_first:
        loaded, stats = beside()
        base = _timed_run(env, srv, url, scen, pids)
    else:
        base = _timed_run(env, srv, url, scen, pids)
        loaded, stats = beside()
    return dict(stats, status="ok", rps=loaded["rps"], requests=loaded["requests"],
                seconds=loaded["seconds"], p50_ms=loaded["p50_ms"], p99_ms=loaded["p99_ms"],
                cpu_us_per_req=None, cpu_pct=loaded["cpu_pct"],
                client_cpu_us_per_req=None, rss_kib=loaded["rss_kib"],
                socket_errors=loaded["socket_errors"], base_rps=base["rps"],
                base_p50_ms=base["p50_ms"], base_p99_ms=base["p99_ms"],
                base_cpu_us_per_req=base["cpu_us_per_req"],
                raw="--- alone ---\n" + base["raw"] + "\n--- beside cold downloads ---\n" +
                loaded["raw"], wrk=" ".join(loaded["argv"]))


def find_ringhttp_static(env, server):
    """Starts ringhttp once with --root and finds where it serves the docroot's files; sets
    server.static_prefix, or leaves it None with the reason (then static rows are n/a)."""
    if not server.has_root:
        server.na_note = "ringhttp has no --root option"
        return
    size = servers.STATIC["4k.bin"]
    with Running(env, server) as srv:
        tried = []
        for prefix in ("/", "/static/", "/files/"):
            status = load.probe(srv.url(prefix + "4k.bin"))
            tried.append(f"{prefix}4k.bin -> {status or 'no answer'}")
            if status == 200:
                try:
                    load.check_answer(srv.url(prefix + "4k.bin"), env.files["4k.bin"], None)
                except load.CheckFailed as e:
                    tried[-1] += f" ({e})"
                    continue
                server.static_prefix = prefix
                return
    server.na_note = (f"--root does not serve files yet ({', '.join(tried)}; "
                      f"{size}-byte file in the root)")
