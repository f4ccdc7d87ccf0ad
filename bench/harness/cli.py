"""bench/run: options, the round-robin schedule, progress on stderr, the microbenchmarks."""
import argparse
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from . import load, report, scenarios, servers
from .procs import Tracker

BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(BENCH_DIR)
MICRO = [  # (binary in <build>/bench, pin to the server CPUs? else any usable CPU)
    ("parse_throughput", True), ("ctx_getset", True), ("timer_wheel", True), ("alloc", True),
    ("pool_roundtrip", False),  # a loop thread and pool threads: both CPUs
]
ALL_SERVERS = "ringhttp,nginx,h2o,lighttpd,floor"
EXTRA_SERVERS = "nginx-nopush"  # known, not run unless named


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="bench/run",
        description="ringhttp against nginx, h2o and lighttpd on 127.0.0.1: one worker each, "
        "server pinned to one CPU and wrk to another; Markdown on stdout, CSV and a PNG chart "
        "in --out. Installs nothing (make bench runs scripts/install-deps --bench first).",
        epilog="scenarios: " + "; ".join(f"{s.name}: {s.title}" for s in scenarios.SCENARIOS))
    p.add_argument("--duration", type=int, default=4,
                   help="whole seconds per measured run (default 4)")
    p.add_argument("--rounds", type=int, default=3, help="rounds; servers alternate (default 3)")
    p.add_argument("--servers", default=ALL_SERVERS,
                   help=f"default {ALL_SERVERS}; also {EXTRA_SERVERS} (nginx with tcp_nopush off)")
    p.add_argument("--scenarios", default=",".join(s.name for s in scenarios.SCENARIOS),
                   help="comma-separated (default: all)")
    p.add_argument("--quick", action="store_true",
                   help="CI smoke: 1 round of 2 s, no warm-up")
    p.add_argument("--out", default=os.path.join(BENCH_DIR, "results", "latest"),
                   help="CSV, chart, report and wrk outputs (default bench/results/latest/; "
                   "published runs are copied to bench/results/<date>-<what>/ and committed)")
    p.add_argument("--server-cpus", default="0", help="taskset list for the server (default 0)")
    p.add_argument("--client-cpus", default="1",
                   help="taskset list for wrk and the idle holder (default 1)")
    p.add_argument("--warmup", type=int, default=1,
                   help="whole seconds of load before each run, 0: none (default 1)")
    p.add_argument("--idle-conns", type=int, default=10000,
                   help="idle connections for idle10k (default 10000)")
    p.add_argument("--build", default=os.environ.get("RH_BUILD", os.path.join(REPO, "build")),
                   help="build dir holding ringhttp and bench/* (default build/ or $RH_BUILD)")
    p.add_argument("--ringhttp-args", default="", help="extra ringhttp flags, one string")
    p.add_argument("--port-base", type=int, default=28000,
                   help="servers listen on free ports from here (default 28000)")
    p.add_argument("--micro", action="store_true", help="also run the C microbenchmarks")
    p.add_argument("--micro-only", action="store_true", help="only the microbenchmarks")
    p.add_argument("--keep-temp", action="store_true", help="keep configs and server logs")
    o = p.parse_args(argv)
    if o.quick:
        o.rounds, o.duration, o.warmup = 1, 2, 0
    o.build = os.path.abspath(o.build)
    o.server_list = [s for s in o.servers.split(",") if s]
    known = ALL_SERVERS.split(",") + EXTRA_SERVERS.split(",")
    bad = [s for s in o.server_list if s not in known]
    if bad or not o.server_list:
        p.error(f"unknown server(s) {', '.join(bad)}; known: {', '.join(known)}")
    names = [s for s in o.scenarios.split(",") if s]
    bad = [n for n in names if n not in scenarios.BY_NAME]
    if bad:
        p.error(f"unknown scenario(s) {', '.join(bad)}; known: "
                + ", ".join(scenarios.BY_NAME))
    o.scenario_list = [scenarios.BY_NAME[n] for n in names]
    if o.rounds < 1 or o.duration < 1 or o.warmup < 0:
        p.error("--rounds >= 1, --duration >= 1, --warmup >= 0")
    o.client_threads = len(_cpu_list(o.client_cpus))
    o.measured_cpus = set(_cpu_list(o.server_cpus)) | set(_cpu_list(o.client_cpus))
    online = o.usable_cpus = os.sched_getaffinity(0)
    for opt in ("server_cpus", "client_cpus"):
        if not set(_cpu_list(getattr(o, opt))) <= online:
            p.error(f"--{opt.replace('_', '-')} {getattr(o, opt)}: not all of them are usable"
                    f" here (CPUs {sorted(online)})")
    o.argv = argv
    return o


def _cpu_list(text):
    cpus = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        cpus += range(int(lo), int(hi or lo) + 1)
    return cpus


def _reproduce(o):
    if o.micro_only:
        args = ["bench/run", "--build", os.path.relpath(o.build, REPO), "--micro-only",
                "--server-cpus", o.server_cpus]
        return "cd " + shlex.quote(REPO) + " && " + " ".join(shlex.quote(a) for a in args)
    args = ["bench/run", "--build", os.path.relpath(o.build, REPO),
            "--duration", f"{o.duration:g}", "--rounds", str(o.rounds),
            "--servers", ",".join(o.server_list),
            "--scenarios", ",".join(s.name for s in o.scenario_list),
            "--server-cpus", o.server_cpus, "--client-cpus", o.client_cpus,
            "--warmup", f"{o.warmup:g}", "--idle-conns", str(o.idle_conns)]
    if o.ringhttp_args:
        args.append("--ringhttp-args=" + o.ringhttp_args)  # "=": it may start with "--"
    if o.micro:
        args.append("--micro")
    return "cd " + shlex.quote(REPO) + " && " + " ".join(shlex.quote(a) for a in args)


def machine_line():
    model = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} CPUs (nproc), {model}, Linux {platform.release()}"


def _git_rev():
    try:
        rev = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return rev + (" + uncommitted changes" if dirty else "")
    except OSError:
        return "?"


def _mtime(path):
    return time.strftime("%Y-%m-%d %H:%M %Z", time.localtime(os.path.getmtime(path)))


def _fmt_secs(s):
    return f"{int(s) // 60}:{int(s) % 60:02d}"


class Progress:
    def __init__(self, total):
        self.total, self.done, self.t0 = total, 0, time.monotonic()

    def line(self, text):
        self.done += 1
        el = time.monotonic() - self.t0
        left = el / self.done * (self.total - self.done)
        print(f"[{self.done:3d}/{self.total} {_fmt_secs(el)} elapsed, ~{_fmt_secs(left)} left] "
              f"{text}", file=sys.stderr, flush=True)


def _row_summary(row):
    if row["status"] != "ok":
        return f"{row['status']} {row.get('note', '')}"
    p99 = "–" if row.get("p99_ms") is None else f"{row['p99_ms']:.2f} ms"
    text = f"{row['rps']:>10,.0f} req/s  p99 {p99}"
    if row.get("cpu_us_per_req") is not None:
        text += f"  {row['cpu_us_per_req']:.2f} µs/req ({row['cpu_pct']:.0f}% CPU)"
    if row.get("client_cpu_us_per_req") is not None:
        text += f"  client {row['client_cpu_us_per_req']:.2f} µs/req"
    if row.get("rss_per_idle_kib") is not None:
        text += f"  {row['rss_per_idle_kib']:.2f} KiB/idle conn"
    if row.get("base_p99_ms") is not None:
        text += f"  (alone: p99 {row['base_p99_ms']:.2f} ms)"
    return text


def run_macro(o, tracker, out_dir):
    """All rounds; returns (rows, meta lines, failed?)."""
    tmp = tempfile.mkdtemp(prefix="ringhttp-bench-")
    os.chmod(tmp, 0o755)  # nginx and h2o workers run as nobody: they must reach the docroot
    try:
        return _rounds(o, tracker, tmp, out_dir)
    finally:
        tracker.stop_all()
        if o.keep_temp:
            print(f"bench/run: kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _rounds(o, tracker, tmp, out_dir):
    docroot = os.path.join(tmp, "www")
    files = servers.make_docroot(docroot)
    env = scenarios.Env(o, tracker, tmp, docroot, files)
    all_servers = servers.make_servers(o.server_list, o.build, shlex.split(o.ringhttp_args))
    usable, unavailable = [], []
    for sv in all_servers:
        why = sv.available()
        (unavailable.append(f"{sv.name}: not run: {why}") if why else usable.append(sv))
    for line in unavailable:
        print("bench/run: " + line, file=sys.stderr)
    rows, failed = [], False
    rh = next((sv for sv in usable if sv.name == "ringhttp"), None)
    if rh and any(sc.resource in servers.STATIC or sc.cold for sc in o.scenario_list):
        scenarios.find_ringhttp_static(env, rh)
        if rh.static_prefix is None:
            print(f"bench/run: ringhttp static scenarios are n/a: {rh.na_note}", file=sys.stderr)
    plan = [(r, sc, sv) for r in range(o.rounds) for sc in o.scenario_list for sv in usable
            if sc.only_for(sv.name)]
    progress = Progress(len(plan))
    wrk_dir = os.path.join(out_dir, "wrk")
    os.makedirs(wrk_dir, exist_ok=True)
    for r, sc, sv in plan:
        try:
            row = scenarios.measure(env, sv, sc, r + 1)
        except load.CheckFailed as e:
            row = {"server": sv.name, "scenario": sc.name, "status": "FAIL", "note": str(e)}
            print(f"bench/run: FAIL: {sv.name} {sc.name}: {e}", file=sys.stderr)
            failed = True
        row["round"] = r + 1
        if row.get("raw"):
            with open(os.path.join(wrk_dir, f"{sc.name}-{sv.name}-r{r + 1}.txt"), "w") as f:
                f.write(row["wrk"] + "\n" + row["raw"])
        rows.append(row)
        progress.line(f"round {r + 1}/{o.rounds}  {sc.name:<10} {sv.name:<9} {_row_summary(row)}")
    versions = ", ".join(sv.version() for sv in usable)
    wrk_version = load.wrk_version()
    meta = [f"Machine: {machine_line()}; server pinned to CPU {o.server_cpus}, wrk "
            f"(-t{o.client_threads}) and the idle holder to CPU {o.client_cpus}",
            f"Versions: {versions}, {wrk_version}; source tree at git {_git_rev()}"
            + (f"; {os.path.relpath(rh.binary, REPO)} built {_mtime(rh.binary)}" if rh else ""),
            f"Method: {o.rounds} round(s) of {o.duration:g} s per server × scenario after a "
            f"{o.warmup:g} s warm-up, a fresh server each time, servers alternating "
            f"({' '.join(sv.name for sv in usable)} …); medians, min–max in brackets",
            "CPU µs/req: utime+stime of all the server's processes and threads "
            "(/proc/PID/stat) over the run ÷ completed requests; server CPU: that time ÷ run "
            "time (100% = the server's one CPU saturated, below: wrk was the limit). "
            "Client CPU µs/req: wrk's own utime+stime (rusage) ÷ its requests: what the "
            "answers cost the receiver (loopback TCP work lands partly in the sender's "
            "stime and partly in the receiver's). Both CPUs µs/req: busy time (all but idle "
            "and iowait, /proc/stat) of the server's and wrk's CPUs ÷ requests: the total, "
            "which loopback cannot shift between server and client (valid on an otherwise "
            "idle machine). RSS: VmRSS summed over its processes, "
            "peak during the run",
            "Fairness: one worker each, access log off, sendfile on (h2o 2.2 has no "
            "sendfile; nginx with tcp_nopush and open_file_cache; nginx-nopush, when run, is the "
            "same nginx with tcp_nopush off), keep-alive unlimited; "
            "nginx answers /plaintext and /json inline (`return 200`) on a `deferred` "
            "listener, as ringhttp answers them from handlers with TCP_DEFER_ACCEPT; h2o "
            "and lighttpd serve them as static files with the same bytes; floor "
            "(bench/floor.c) is a minimal io_uring responder without HTTP parsing; every "
            "answer is checked with curl (status 200, exact body) and wrk's Non-2xx count "
            "before it counts",
            "Other builds and tests may share this machine while it runs: req/s and "
            "latency move with that, CPU µs/req much less",
            ] + [f"Not run: {u}" for u in unavailable]
    if rh:
        flags = " ".join(rh.setup("<tmp>", "<port>", "<docroot>")[1:])
        meta.insert(5, f"ringhttp runs as: `ringhttp {flags}`" + (
            "" if rh.static_prefix is None else f"; static files at {rh.static_prefix}"))
    if any(sc.idle for sc in o.scenario_list):
        meta.append("Idle: KiB per idle conn = (RSS with them − RSS before) ÷ their number; "
                    "each idle connection got one answered request first. lighttpd holds at "
                    "most max-fds/2 = 10,000 connections in all, so it gets "
                    f"{min(o.idle_conns, servers.Lighttpd.max_conns - 100):,} idle ones "
                    "beside the 50 loaded")
    return rows, meta, failed, usable


def run_micro(o):
    """Runs the C microbenchmarks; their combined output (or why not)."""
    chunks = []
    for name, pin in MICRO:
        path = os.path.join(o.build, "bench", name)
        if not os.access(path, os.X_OK):
            chunks.append(f"{name}: not built in {o.build}/bench (cmake --build {o.build})")
            continue
        cpus = o.server_cpus if pin else ",".join(map(str, sorted(o.usable_cpus)))
        argv = ["taskset", "-c", cpus, path]
        print(f"bench/run: micro: {' '.join(argv)}", file=sys.stderr, flush=True)
        res = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        chunks.append(res.stdout.strip() + (f"\n(exit {res.returncode}: {res.stderr.strip()})"
                                            if res.returncode else ""))
    return "\n\n".join(chunks)


def main(argv):
    o = parse_args(argv)
    os.makedirs(o.out, exist_ok=True)
    t0 = time.monotonic()
    # The harness itself (and so everything it spawns unpinned) stays off the server CPUs.
    os.sched_setaffinity(0, _cpu_list(o.client_cpus))
    tracker = Tracker()
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, _exit_on_signal)
    failed, parts = False, []
    try:
        if not o.micro_only:
            rows, meta, failed, usable = run_macro(o, tracker, o.out)
            summ = report.summarize(rows)
            names = [sv.name for sv in usable]
            meta.append(f"Total time: {_fmt_secs(time.monotonic() - t0)} (min:s)")
            meta.append(f"Reproduce: `{_reproduce(o)}`")
            chart, why = report.write_chart(o.out, summ, names, o.scenario_list,
                                            f"ringhttp vs peers: {machine_line()}")
            report.write_csv(o.out, rows, summ)
            meta.append(f"Files: {os.path.join(o.out, 'summary.csv')}, rounds.csv, "
                        + (f"chart.png" if chart else f"no chart ({why})") + ", wrk/*.txt")
            parts.append(report.markdown(meta, summ, names, o.scenario_list, rows))
        if o.micro or o.micro_only:
            if o.micro_only:
                parts.append(f"Machine: {machine_line()}\n\nReproduce: `{_reproduce(o)}`")
            micro = run_micro(o)
            with open(os.path.join(o.out, "micro.txt"), "w") as f:
                f.write(micro + "\n")
            parts.append("### Microbenchmarks\n\n```\n" + micro + "\n```\n")
    finally:
        tracker.stop_all()
    text = "\n".join(parts)
    with open(os.path.join(o.out, "report.md"), "w") as f:
        f.write(text + "\n")
    print(text)
    print(f"bench/run: done in {_fmt_secs(time.monotonic() - t0)}; {o.out}/report.md",
          file=sys.stderr)
    return 1 if failed else 0


def _exit_on_signal(signum, frame):
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop servers
