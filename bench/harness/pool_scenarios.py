"""The pool's scenarios (ringhttp only; each on one server process, one ring):

- pool-isolation: /work?us=200 (a fast blocking route on the shared pool) p99 with one
  connection, alone and while 40 connections hammer /blocking?ms=200 (a slow one). Passes
  when the loaded p99 is within 2x the alone p99 + 2 ms, /work got no non-2xx answer and
  /blocking was still served (its 503s are the delay shedding at work, counted apart).
- db-hop: server CPU per request of /db?id=42 (a SQLite read through the "db" lane: ring ->
  lane thread -> ring) over /plaintext (no hop), wrk -c50 on both, same server, same run.

Rows use the mixed scenario's keys (base_* is the first figure, the plain keys the second)
so report.py's summary and CSV carry them; table() renders them.
"""
import subprocess
import time

from . import load, procs

WORK = "/work?us=200"
BLOCKING = "/blocking?ms=200"
HAMMERS = 40


def _wrk_any(env, url, conns, seconds, pids=None):
    """wrk without the non-2xx failure (the caller decides); with server CPU if pids."""
    argv = load.wrk_argv(url, conns, seconds, min(env.opts.client_threads, conns))
    ticks0 = procs.cpu_ticks(pids) if pids else 0
    r = load.run_wrk(env.tracker, argv, env.opts.client_cpus, seconds)
    if pids:
        cpu_s = (procs.cpu_ticks(pids) - ticks0) / procs.CLK_TCK
        r["cpu_us_per_req"] = cpu_s * 1e6 / r["requests"] if r["requests"] else None
        r["cpu_pct"] = 100.0 * cpu_s / r["seconds"]
    r["argv"] = argv
    return r


def measure_isolation(env, srv, scen, pids, round_no):
    load.check_answer(srv.url(WORK), b"worked 200", "text/plain")
    d = env.opts.duration
    _wrk_any(env, srv.url(WORK), 1, 1)  # warm-up: the pool's threads and caches
    alone = _wrk_any(env, srv.url(WORK), 1, d)
    bg_argv = load.wrk_argv(srv.url(BLOCKING), HAMMERS, d + 3, 1, latency=True)
    bg = env.tracker.spawn("wrk-blocking", bg_argv, cpus=env.opts.client_cpus,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(1.0)  # the flood has filled /blocking's queue and shedding has begun
        loaded = _wrk_any(env, srv.url(WORK), 1, d)
        bg_out, _ = bg.popen.communicate(timeout=d + 30)
    finally:
        env.tracker.stop(bg)
    bgr = load.parse_wrk(bg_out)
    bound = 2 * alone["p99_ms"] + 2.0 if alone["p99_ms"] else None
    ok = (bound is not None and loaded["p99_ms"] is not None and loaded["p99_ms"] <= bound
          and alone["non2xx"] == 0 and loaded["non2xx"] == 0
          and bgr["requests"] > bgr["non2xx"])
    served = bgr["requests"] - bgr["non2xx"]
    note = (f"round {round_no}: /work p99 {alone['p99_ms']:.3f} ms alone, "
            f"{loaded['p99_ms']:.3f} ms loaded (bound {bound:.3f}): "
            f"{'PASS' if ok else 'FAIL'}; /work non-2xx {alone['non2xx'] + loaded['non2xx']}; "
            f"/blocking {served} served, {bgr['non2xx']} shed (503)")
    return {"status": "ok", "rps": loaded["rps"], "requests": loaded["requests"],
            "seconds": loaded["seconds"], "p50_ms": loaded["p50_ms"],
            "p99_ms": loaded["p99_ms"], "cpu_us_per_req": None, "cpu_pct": None,
            "rss_kib": procs.rss_kib(pids), "socket_errors": loaded["socket_errors"],
            "base_rps": alone["rps"], "base_p50_ms": alone["p50_ms"],
            "base_p99_ms": alone["p99_ms"], "base_cpu_us_per_req": None,
            "bg_rps": served / bgr["seconds"], "bg_p99_ms": bgr["p99_ms"], "note": note,
            "raw": "--- /work alone ---\n" + alone["raw"] + "\n--- /work loaded ---\n" +
            loaded["raw"] + "\n--- /blocking ---\n" + bg_out,
            "wrk": " ".join(loaded["argv"]) + " ; background: " + " ".join(bg_argv)}


def measure_hop(env, srv, scen, pids, round_no):
    db = srv.url("/db?id=42")
    load.check_answer(db, b'{"id":42,"name":"item-42","value":2367}', "application/json")
    d, plain = env.opts.duration, srv.url("/plaintext")
    order = [(plain, "p"), (db, "d")]
    if round_no % 2 == 0:  # neither always runs on the fresher server
        order.reverse()
    res = {}
    for url, key in order:
        _wrk_any(env, url, scen.conns, 1)  # warm-up
        res[key] = _wrk_any(env, url, scen.conns, d, pids)
        if res[key]["non2xx"]:
            raise load.CheckFailed(f"{url}: {res[key]['non2xx']} non-2xx answers")
    p, q = res["p"], res["d"]
    ratio = q["cpu_us_per_req"] / p["cpu_us_per_req"] if p["cpu_us_per_req"] else None
    note = (f"round {round_no}: /db {q['cpu_us_per_req']:.2f} us, /plaintext "
            f"{p['cpu_us_per_req']:.2f} us per request: ratio {ratio:.2f}")
    return {"status": "ok", "rps": q["rps"], "requests": q["requests"],
            "seconds": q["seconds"], "p50_ms": q["p50_ms"], "p99_ms": q["p99_ms"],
            "cpu_us_per_req": q["cpu_us_per_req"], "cpu_pct": q["cpu_pct"],
            "rss_kib": procs.rss_kib(pids), "socket_errors": q["socket_errors"],
            "base_rps": p["rps"], "base_p50_ms": p["p50_ms"], "base_p99_ms": p["p99_ms"],
            "base_cpu_us_per_req": p["cpu_us_per_req"], "bg_rps": None, "bg_p99_ms": None,
            "note": note, "raw": "--- /plaintext ---\n" + p["raw"] + "\n--- /db ---\n" +
            q["raw"], "wrk": " ".join(q["argv"])}


MEASURE = {"isolation": measure_isolation, "hop": measure_hop}


def _f(v, fmt):
    return "–" if v is None else format(v, fmt)


def table(sc, summ):
    s = summ.get(("ringhttp", sc.name))
    lines = [f"### {sc.name}: {sc.title}", ""]
    if s is None or s["status"] != "ok":
        return lines + ["ringhttp: " + ("not run" if s is None else s["status"] + " " +
                                        "; ".join(s["notes"]))]
    if sc.custom == "isolation":
        bound = 2 * s["base_p99_ms"] + 2 if s["base_p99_ms"] is not None else None
        lines += ["| /work?us=200, 1 connection | req/s | p50 ms | p99 ms |",
                  "|---|---:|---:|---:|",
                  f"| alone | {_f(s['base_rps'], ',.0f')} | {_f(s['base_p50_ms'], '.3f')} | "
                  f"{_f(s['base_p99_ms'], '.3f')} |",
                  f"| while {HAMMERS} connections hammer {BLOCKING} | {_f(s['rps'], ',.0f')} | "
                  f"{_f(s['p50_ms'], '.3f')} | {_f(s['p99_ms'], '.3f')} |", "",
                  f"- bound (2x alone p99 + 2 ms, medians): {_f(bound, '.3f')} ms; "
                  f"/blocking served {_f(s['bg_rps'], '.1f')} req/s"]
    else:
        p, q = s["base_cpu_us_per_req"], s["cpu_us_per_req"]
        lines += ["| wrk -c50 | req/s | p99 ms | server CPU µs/request |",
                  "|---|---:|---:|---:|",
                  f"| /plaintext | {_f(s['base_rps'], ',.0f')} | {_f(s['base_p99_ms'], '.3f')} "
                  f"| {_f(p, '.2f')} |",
                  f"| /db?id=42 (db lane) | {_f(s['rps'], ',.0f')} | {_f(s['p99_ms'], '.3f')} "
                  f"| {_f(q, '.2f')} |", "",
                  f"- /db over /plaintext (medians): {_f(q / p if p and q else None, '.2f')}"]
    return lines + [f"- {n}" for n in s["notes"]]
