"""Deployment: the drain a balancer follows (--drain-grace), the SIGUSR2 binary upgrade
(--pid-file, LISTEN_FDS handed to the successor) and systemd socket activation.

The HAProxy rolling restart is in test_haproxy.py."""
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import harness as H
from harness import Reader, check, eq, request
from loadgen import Load


def get(port, path, headers=None, sock=None):
    """One GET on sock (kept) or a new connection (closed after); returns the response."""
    s = sock or H.connect(port)
    try:
        s.sendall(request("GET", path, headers))
        return Reader(s).read_response()
    finally:
        if sock is None:
            s.close()


def refused(port):
    try:
        H.connect(port, timeout=1).close()
        return False
    except ConnectionRefusedError:
        return True


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (our child, not reaped yet) is gone for our purposes
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def reap(pid):
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def wait_gone(pid, timeout):
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        reap(pid)
        if not pid_alive(pid):
            return True
        time.sleep(0.02)
    return False


def read_pid(path, timeout=5.0):
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        try:
            with open(path) as f:
                text = f.read()
            if text.endswith("\n"):
                return int(text)
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    raise H.TestFailure("no pid in %s" % path)


def become_subreaper():
    """A successor outlives its parent (the old server): adopt it, so it can be reaped."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def stop_pid(pid, timeout=10.0):
    """SIGTERM a server that is not a Server object (a successor); SIGKILL if it lingers."""
    if not pid_alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    if not wait_gone(pid, timeout):
        os.kill(pid, signal.SIGKILL)
        wait_gone(pid, 5)
        raise H.TestFailure("pid %d ignored SIGTERM for %.0f s" % (pid, timeout))


# ---------------------------------------------------------------------------------------------
# The grace


def test_grace_healthz_503_while_serving_then_refuses():
    grace = 1.5
    srv = H.Server(drain_grace_ms=int(grace * 1000)).start()
    try:
        kept = H.connect(srv.port)
        r = get(srv.port, "/plaintext", sock=kept)
        check(r.status == 200 and not r.closes(), "kept-alive before the stop: %r" % r)
        eq(get(srv.port, "/healthz").status, 200, "/healthz before the stop")
        t0 = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        eq(get(srv.port, "/healthz").status, 503, "/healthz at once after SIGTERM")
        r = get(srv.port, "/plaintext")  # a new connection is still accepted and served
        eq(r.status, 200, "a new connection during the grace")
        r = get(srv.port, "/plaintext", sock=kept)
        eq(r.status, 200, "the kept-alive connection during the grace")
        check(r.closes(), "no Connection: close during the grace: %r" % r.headers)
        check(H.wait_closed(kept, 2.0), "kept-alive connection not retired after its answer")
        check(time.monotonic() - t0 < grace - 0.3, "the checks took too long to mean anything")
        check(not refused(srv.port), "refused during the grace")
        rc = srv.wait(grace + 5)
        dt = time.monotonic() - t0
        eq(rc, 0, "exit code")
        check(dt >= grace - 0.1, "exited %.2f s after SIGTERM, before the %.1f s grace" % (dt, grace))
        check(refused(srv.port), "port still open after exit")
    finally:
        srv.kill()


def test_sigint_skips_the_grace():
    srv = H.Server(drain_grace_ms=10000).start()
    try:
        H.get_ok(srv.port)
        t0 = time.monotonic()
        srv.send_signal(signal.SIGINT)
        eq(srv.wait(8), 0, "exit code after SIGINT")
        check(time.monotonic() - t0 < 3.0, "SIGINT waited for the grace")
    finally:
        srv.kill()


# ---------------------------------------------------------------------------------------------
# The SIGUSR2 upgrade


def upgrade_under_load(keepalive, grace_ms):
    become_subreaper()
    tmp = tempfile.mkdtemp(prefix="rh-upgrade-")
    pidfile = os.path.join(tmp, "ringhttp.pid")
    srv = H.Server("--pid-file", pidfile, drain_grace_ms=grace_ms).start()
    new_pid = None
    load = None
    try:
        old_pid = srv.proc.pid
        eq(read_pid(pidfile), old_pid, "pid file before the upgrade")
        load = Load(srv.port, threads=4, keepalive=keepalive).start()
        time.sleep(1.0)
        t0 = time.monotonic()
        srv.send_signal(signal.SIGUSR2)
        rc = srv.wait(8)
        check(rc is not None, "old process still running 8 s after SIGUSR2 (stderr %r)"
              % srv.stderr.text()[-1000:])
        eq(rc, 0, "old process's exit code")
        gone_after = time.monotonic() - t0
        new_pid = read_pid(pidfile)
        check(new_pid != old_pid, "pid file still names the old process")
        check(pid_alive(new_pid), "the new process (pid %d) is not running" % new_pid)
        time.sleep(1.0)  # the new one alone under load
        load.stop()
        print("     load: %s; old process gone %.2f s after SIGUSR2" % (load.summary(), gone_after))
        check(not load.errors and not load.statuses, "upgrade under load: " + load.summary())
        check(load.ok > 100, "too little load to mean anything: " + load.summary())
        check(load.ok_since(int(t0 - load.t0) + 1) > 20, "no answers after the upgrade: "
              + load.summary())
        check(gone_after < 6.0, "old process took %.1f s to exit" % gone_after)
        eq(get(srv.port, "/healthz").status, 200, "the new process's /healthz")
        stop_pid(new_pid)
        check(not os.path.exists(pidfile), "the new process left its pid file behind")
        new_pid = None
    finally:
        if load:
            load.stop()
        srv.kill()
        if new_pid and pid_alive(new_pid):
            os.kill(new_pid, signal.SIGKILL)
            wait_gone(new_pid, 5)
        shutil.rmtree(tmp, ignore_errors=True)


def test_upgrade_under_load_connection_close():
    upgrade_under_load(keepalive=False, grace_ms=0)


def test_upgrade_under_keepalive_load_with_grace():
    upgrade_under_load(keepalive=True, grace_ms=1000)


def test_failed_upgrade_leaves_the_old_one_serving():
    become_subreaper()
    tmp = tempfile.mkdtemp(prefix="rh-upgrade-")
    binary = os.path.join(tmp, "ringhttp")
    pidfile = os.path.join(tmp, "ringhttp.pid")
    shutil.copy2(H.ARGS.binary, binary)
    real = H.ARGS.binary
    H.ARGS.binary = binary  # the Server runs the copy, so the test can replace it
    try:
        srv = H.Server("--pid-file", pidfile).start()
    finally:
        H.ARGS.binary = real
    new_pid = None
    try:
        old_pid = srv.proc.pid
        broken = binary + ".new"
        with open(broken, "w") as f:
            f.write("#!/bin/sh\necho 'broken build' >&2\nexit 3\n")
        os.chmod(broken, 0o755)
        os.rename(broken, binary)  # a deploy replaces the file; the running one is untouched
        srv.send_signal(signal.SIGUSR2)
        until = time.monotonic() + 5
        while "upgrade failed" not in srv.stderr.text() and time.monotonic() < until:
            time.sleep(0.05)
        check("upgrade failed" in srv.stderr.text(), "no failure reported (stderr %r)"
              % srv.stderr.text()[-1000:])
        check(srv.alive(), "the old process stopped after a failed upgrade")
        eq(read_pid(pidfile), old_pid, "pid file after a failed upgrade")
        H.get_ok(srv.port)
        eq(get(srv.port, "/healthz").status, 200, "/healthz after a failed upgrade")
        # The fixed build goes in: the next SIGUSR2 succeeds.
        shutil.copy2(real, binary + ".new")
        os.rename(binary + ".new", binary)
        srv.send_signal(signal.SIGUSR2)
        eq(srv.wait(8), 0, "old process after the second, good upgrade")
        new_pid = read_pid(pidfile)
        check(new_pid != old_pid and pid_alive(new_pid), "no new process after the good upgrade")
        H.get_ok(srv.port)
        stop_pid(new_pid)
        new_pid = None
    finally:
        srv.kill()
        if new_pid and pid_alive(new_pid):
            os.kill(new_pid, signal.SIGKILL)
            wait_gone(new_pid, 5)
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Socket activation


def free_port():
    s = socket.socket()
    s.bind((H.HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def ring_of(r):
    """The ring that answered: the middle field of a generated X-Request-Id."""
    rid = r.header("x-request-id") or ""
    parts = rid.split("-")
    return parts[1] if len(parts) == 3 else None


def test_socket_activation_every_ring_accepts():
    tool = shutil.which("systemd-socket-activate")
    if not tool:
        print("SKIP: systemd-socket-activate not installed (scripts/install-deps)")
        return
    port = free_port()
    cmd = [tool, "-l", "%s:%d" % (H.HOST, port), H.ARGS.binary, "--threads", "2",
           "--drain-grace", "0", "--drain-timeout", "2000"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, preexec_fn=H._die_with_parent)
    err = H._Drain(proc.stderr)
    err.start()
    try:
        until = time.monotonic() + 5
        while time.monotonic() < until:  # the launcher listens before it runs us
            try:
                H.connect(port, timeout=1).close()
                break
            except ConnectionRefusedError:
                time.sleep(0.05)
        rings = set()
        for _ in range(200):
            r = get(port, "/plaintext", [("Connection", "close")])
            eq(r.status, 200, "status through the inherited socket")
            rings.add(ring_of(r))
            if len(rings) == 2:
                break
        eq(sorted(rings), ["0", "1"], "rings that accepted from the one inherited socket")
        check("inherited socket" in err.text(), "no note of the inherited socket (stderr %r)"
              % err.text())
        proc.send_signal(signal.SIGTERM)  # the launcher exec'd into ringhttp: same pid
        eq(proc.wait(10), 0, "exit code")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_listen_fds_not_a_socket_is_refused():
    script = 'exec 3</dev/null; LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" --threads 1'
    p = subprocess.run(["sh", "-c", script, H.ARGS.binary], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=10)
    eq(p.returncode, 2, "exit code with a LISTEN_FDS fd that is not a listening socket")
    check(b"LISTEN_FDS" in p.stderr, "no clear message: %r" % p.stderr)


if __name__ == "__main__":
    H.run_tests(globals(), final_shutdown_check=False)
