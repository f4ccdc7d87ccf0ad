"""HAProxy (deploy/haproxy.cfg) in front of two ringhttp instances on 127.0.0.1, with its
default retry policy (retries 3, option redispatch, no retry-on) and health checks on
/healthz: a rolling restart (SIGTERM, restart, in turn) under keep-alive load for 12 s
must cost the client nothing: 0
errors and 0 non-2xx. The instances run with the binary's default --drain-grace (2 s):
HAProxy must see the draining instance's /healthz fail and take it out while it still
serves. Skips when haproxy is not installed (scripts/install-deps installs it)."""
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import harness as H
from harness import check, eq
from loadgen import Load

LOAD_S = 12.0


def free_low_port(used):
    """A free port below the ephemeral range: a restarting instance must get its port back,
    and an outgoing connection could take an ephemeral one meanwhile."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError):
        low = 32768
    for _ in range(200):
        port = random.randrange(10000, max(10001, low - 1))
        if port in used:
            continue
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((H.HOST, port))
            used.add(port)
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise H.TestFailure("no free port below %d" % low)


def config(ports):
    """deploy/haproxy.cfg, the configuration we ship, pointed at the test's ports."""
    with open(os.path.join(H.ARGS.source_dir, "deploy", "haproxy.cfg")) as f:
        text = f.read()
    subs = [
        (r"maxconn \d+", "maxconn 2000"),
        (r"bind :80\n", "bind {host}:{fe}\n"),
        (r"    server web1 .*\n    server web2 .*\n",
         "    server a {host}:{a} check\n    server b {host}:{b} check\n"),
        (r"bind 127\.0\.0\.1:8404\n", "bind {host}:{stats}\n"),
    ]
    for pattern, repl in subs:
        text, n = re.subn(pattern, repl.format(host=H.HOST, **ports), text)
        eq(n, 1, "lines matching %r in deploy/haproxy.cfg" % pattern)
    return text


class HAProxy:
    def __init__(self, tmp, ports):
        self.path = os.path.join(tmp, "haproxy.cfg")
        with open(self.path, "w") as f:
            f.write(config(ports))
        self.stats_port = ports["stats"]
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", self.path],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, preexec_fn=H._die_with_parent)
        self.err = H._Drain(self.proc.stderr)
        self.err.start()
        return self

    def status(self):
        """{server name: status} from the stats page, {} if it does not answer yet."""
        try:
            s = H.connect(self.stats_port, timeout=2)
            s.sendall(H.request("GET", "/stats;csv", [("Connection", "close")]))
            body = H.Reader(s).read_response().body.decode()
            s.close()
        except (OSError, H.TestFailure):
            return {}
        lines = body.splitlines()
        if not lines or not lines[0].startswith("# "):
            return {}
        cols = lines[0][2:].split(",")
        out = {}
        for ln in lines[1:]:
            f = ln.split(",")
            if len(f) == len(cols) and f[0] == "ringhttp" and f[1] in ("a", "b"):
                out[f[1]] = f[cols.index("status")]
        return out

    def wait_status(self, name, want, timeout):
        until = time.monotonic() + timeout
        while time.monotonic() < until:
            if self.status().get(name, "").startswith(want):
                return True
            time.sleep(0.02)
        return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def instance(port):
    # drain_grace_ms=None: the binary's default grace (2 s), as deployed
    return H.Server("--port", str(port), drain_grace_ms=None, drain_timeout_ms=5000).start()


def test_rolling_restart_behind_haproxy_under_keepalive_load():
    if not shutil.which("haproxy"):
        print("SKIP: haproxy not installed (scripts/install-deps)")
        return
    used = set()
    ports = {k: free_low_port(used) for k in ("fe", "a", "b", "stats")}
    tmp = tempfile.mkdtemp(prefix="rh-haproxy-")
    servers = {"a": instance(ports["a"]), "b": instance(ports["b"])}
    proxy = HAProxy(tmp, ports).start()
    load = None
    log = []
    try:
        for name in ("a", "b"):
            check(proxy.wait_status(name, "UP", 10), "HAProxy never saw %s UP (status %r, "
                  "stderr %r)" % (name, proxy.status(), proxy.err.text()[-1000:]))
        load = Load(ports["fe"], threads=4, keepalive=True).start()
        t_end = load.t0 + LOAD_S
        time.sleep(1.0)
        restarts = 0
        order = ["a", "b"]
        # One restart takes the grace (2 s) plus a start and two checks: stop starting new
        # ones when they could not end well inside the load's 12 s.
        while restarts < 2 or time.monotonic() + 3.5 < t_end:
            name = order[restarts % 2]
            srv = servers[name]
            t0 = time.monotonic()
            srv.send_signal(signal.SIGTERM)
            out = proxy.wait_status(name, "DOWN", 1.8)
            log.append("%.2f %s: SIGTERM; HAProxy DOWN after %.2f s, instance alive: %s"
                       % (t0 - load.t0, name, time.monotonic() - t0, srv.alive()))
            check(out and srv.alive(), "HAProxy did not take %s out while it drained (%s)"
                  % (name, log[-1]))
            eq(srv.wait(10), 0, "%s's exit code after SIGTERM" % name)
            servers[name] = instance(ports[name])
            check(proxy.wait_status(name, "UP", 5), "HAProxy did not see %s back UP" % name)
            log.append("%.2f %s: restarted and UP again" % (time.monotonic() - load.t0, name))
            restarts += 1
            if restarts >= 6:
                break
        time.sleep(max(0.0, t_end - time.monotonic()))
        load.stop()
        print("     load: %s; %d restarts" % (load.summary(), restarts))
        for ln in log:
            print("     " + ln)
        check(not load.errors and not load.statuses, "rolling restart: " + load.summary())
        check(load.ok > 1000, "too little load to mean anything: " + load.summary())
        check(restarts >= 2, "only %d restarts in %.0f s" % (restarts, LOAD_S))
        for sec in range(int(LOAD_S) - 1):
            check(load.per_second[sec] > 0, "no answer at all in second %d: %r"
                  % (sec, sorted(load.per_second.items())))
        for srv in servers.values():
            srv.stop(signal.SIGINT)  # no grace needed now
    finally:
        if load:
            load.stop()
        proxy.stop()
        for srv in servers.values():
            srv.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    H.run_tests(globals(), final_shutdown_check=False)
