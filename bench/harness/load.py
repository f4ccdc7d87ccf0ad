"""Load and checks: wrk runs (parsed), curl checks of an answer, the idle-connection holder.

Every load goes to 127.0.0.1 only and is bounded in time (wrk -d, subprocess timeouts).
"""
import os
import re
import resource
import subprocess
import threading
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # bench/
PIPELINE_LUA = os.path.join(HERE, "pipeline.lua")
IDLE_HOLDER = os.path.join(HERE, "idle_conns.py")


class CheckFailed(Exception):
    """A server answered wrongly (status, body, Content-Type): never measure it."""


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    return float(m.group(1)) * _UNITS[m.group(2)] if m else None


def parse_wrk(out):
    """wrk's report -> dict(requests, seconds, rps, p50_ms, p99_ms, non2xx, socket_errors)."""
    r = {"non2xx": 0, "socket_errors": 0, "p50_ms": None, "p99_ms": None}
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m),", out)
    if not m:
        raise RuntimeError("unreadable wrk output:\n" + out)
    r["requests"] = int(m.group(1))
    r["seconds"] = _ms(m.group(2) + m.group(3)) / 1e3
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    r["rps"] = float(m.group(1)) if m else r["requests"] / r["seconds"]
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        if m:
            r[key] = _ms(m.group(1)) or None  # wrk prints 0.00us when its histogram overflows
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        r["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        r["socket_errors"] = sum(int(x) for x in m.groups())
        r["socket_errors_text"] = m.group(0)
    return r


def wrk_argv(url, conns, seconds, threads, headers=(), pipeline=0, latency=True):
    argv = ["wrk", "-t", str(min(threads, conns)), "-c", str(conns), "-d", f"{seconds}s",
            "--timeout", "5s"]
    if latency:
        argv.append("--latency")
    for h in headers:
        argv += ["-H", h]
    if pipeline:
        argv += ["-s", PIPELINE_LUA]
    argv.append(url)
    if pipeline:
        argv += ["--", str(pipeline)]
    return argv


def run_wrk(tracker, argv, cpus, seconds):
    """Runs wrk pinned to cpus; parsed result, with its output under 'raw' and its own CPU
    time (user + system, from the rusage of the reaped child) under 'client_cpu_s'."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = tracker.spawn("wrk", argv, cpus=cpus, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.popen.communicate(timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        tracker.stop(proc, timeout=1.0)
        raise RuntimeError(f"wrk did not finish: {' '.join(argv)}")
    tracker.stop(proc)
    if proc.popen.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.popen.returncode}): {out.strip()[-400:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = parse_wrk(out)
    r["raw"] = out
    # Only wrk is reaped between the two readings (the harness is one thread and reaps
    # servers after their runs); taskset execs wrk, so the child is wrk itself.
    r["client_cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return r


def check_answer(url, body, ctype, headers=(), timeout=10):
    """curl the url once: 200, exactly this body, this Content-Type; CheckFailed otherwise."""
    argv = ["curl", "-s", "-S", "--max-time", str(timeout), "-o", "-",
            "-w", "\n%{http_code} %{content_type}", url]
    for h in headers:
        argv += ["-H", h]
    out = subprocess.run(argv, capture_output=True, timeout=timeout + 5)
    got, _, tail = out.stdout.rpartition(b"\n")
    status, _, got_ctype = tail.decode(errors="replace").partition(" ")
    if out.returncode != 0:
        raise CheckFailed(f"curl {url}: {out.stderr.decode(errors='replace').strip()}")
    if status != "200":
        raise CheckFailed(f"GET {url} answered {status}, not 200")
    if got != body:
        raise CheckFailed(f"GET {url}: body of {len(got)} bytes is not the expected "
                          f"{len(body)} bytes")
    if ctype and not got_ctype.lower().startswith(ctype):
        raise CheckFailed(f"GET {url}: Content-Type {got_ctype!r}, expected {ctype!r}")


def wrk_version():
    out = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    m = re.search(r"wrk (\S+)", out.stdout + out.stderr)
    return f"wrk {m.group(1)}" if m else "wrk ?"


def probe(url, timeout=5):
    """HTTP status of one GET (0: no answer)."""
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "--max-time", str(timeout),
                          "-w", "%{http_code}", url], capture_output=True, text=True)
    return int(out.stdout or 0) if out.stdout.isdigit() else 0


class RssSampler:
    """Samples the summed VmRSS of a process list every interval on its own thread; peak."""

    def __init__(self, read_rss, pids, interval=0.25):
        self.read_rss, self.pids, self.interval = read_rss, pids, interval
        self.peak = read_rss(pids)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.read_rss(self.pids))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.read_rss(self.pids))


class IdleHolder:
    """bench/idle_conns.py: opens count keep-alive connections, one answered request each,
    then holds them idle until closed. Runs pinned to the client CPUs."""

    def __init__(self, tracker, port, path, count, cpus):
        self.tracker = tracker
        argv = ["python3", IDLE_HOLDER, "--port", str(port), "--path", path,
                "--count", str(count)]
        self.proc = tracker.spawn("idle_conns", argv, cpus=cpus, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)

    def wait_ready(self, timeout=90):
        """(open, failed) once every connection got its answer or failed."""
        deadline = time.monotonic() + timeout
        line = ""
        while time.monotonic() < deadline and self.proc.alive():
            line = self.proc.popen.stdout.readline()
            if line.startswith("ready"):
                fields = dict(kv.split("=") for kv in line.split()[1:])
                return int(fields["open"]), int(fields["failed"])
        raise RuntimeError("idle_conns did not get ready: " + line.strip())

    def finish(self):
        """Closes the connections; how many the server had closed meanwhile (None: unknown)."""
        closed = None
        try:
            self.proc.popen.stdin.close()
            line = self.proc.popen.stdout.readline()
            if line.startswith("done"):
                closed = int(dict(kv.split("=") for kv in line.split()[1:])["closed_by_server"])
        except (OSError, ValueError, KeyError):
            pass
        self.tracker.stop(self.proc, timeout=10.0)
        return closed
