"""Processes this run starts, and only those.

Every process is spawned pinned to a CPU list (taskset execs the program, so the pid we get
is the program's own) in its own session. We remember each process and every descendant we
have seen by (pid, start time), so stopping never signals a pid that has been reused by
someone else's process. CPU time and RSS are read from /proc for a server's whole process
tree (nginx master + worker, h2o, lighttpd, ringhttp with its threads).
"""
import os
import signal
import subprocess
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid):
    """Fields of /proc/PID/stat after the command name, or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return data[data.rindex(b")") + 2:].split()


def start_time(pid):
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None  # field 22 of stat: starttime


def _children_by_parent():
    by_parent = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = _stat_fields(int(name))
        if fields:
            by_parent.setdefault(int(fields[1]), []).append(int(name))
    return by_parent


def cpu_ticks(pids):
    """utime + stime (clock ticks) summed over pids; threads, live or exited, included."""
    total = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields:
            total += int(fields[11]) + int(fields[12])  # stat fields 14, 15
    return total


def cpus_busy_ticks(cpus):
    """Busy clock ticks (everything but idle and iowait: user, nice, system, irq, softirq,
    steal) summed over the given CPU numbers, from /proc/stat: whoever ran there."""
    total = 0
    with open("/proc/stat") as f:
        for line in f:
            name, *vals = line.split()
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
                v = [int(x) for x in vals]
                total += sum(v[:8]) - v[3] - v[4]
    return total


def rss_kib(pids):
    """VmRSS summed over pids, in KiB."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


class Started:
    """One process we spawned, plus the descendants we have seen it create."""

    def __init__(self, name, popen):
        self.name = name
        self.popen = popen
        self.pid = popen.pid
        self.known = {(self.pid, start_time(self.pid))}

    def alive(self):
        return self.popen.poll() is None

    def tree(self):
        """Live pids of the process and its descendants (refreshes what we know)."""
        by_parent = _children_by_parent()
        pids, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            st = start_time(pid)
            if st is None:
                continue
            pids.append(pid)
            self.known.add((pid, st))
            todo.extend(by_parent.get(pid, []))
        return pids

    def _our_live_pids(self):
        return [pid for pid, st in self.known if st is not None and start_time(pid) == st]


class Tracker:
    """Spawns processes and is the only thing that ever signals them."""

    def __init__(self):
        self.started = []

    def spawn(self, name, argv, cpus=None, **popen_args):
        if cpus:
            argv = ["taskset", "-c", cpus] + list(argv)
        popen_args.setdefault("stdin", subprocess.DEVNULL)
        popen = subprocess.Popen(argv, start_new_session=True, **popen_args)
        proc = Started(name, popen)
        self.started.append(proc)
        return proc

    def stop(self, proc, sig=signal.SIGTERM, timeout=5.0):
        """Signals the process, waits, then SIGKILLs it and any descendant still alive."""
        if proc.alive():
            proc.tree()  # remember the children before the parent goes
            try:
                os.kill(proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                proc.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.popen.wait()
        deadline = time.monotonic() + timeout
        while proc._our_live_pids() and time.monotonic() < deadline:
            time.sleep(0.05)  # workers exit shortly after their master
        for pid in proc._our_live_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if proc in self.started:
            self.started.remove(proc)

    def stop_all(self):
        for proc in list(reversed(self.started)):
            self.stop(proc, timeout=3.0)
