"""Results: medians and spreads per server x scenario, the Markdown report, the CSV files
and the gnuplot chart."""
import csv
import os
import shutil
import statistics
import subprocess

from . import pool_scenarios

ROW_FIELDS = ["round", "server", "scenario", "status", "rps", "requests", "seconds", "p50_ms",
              "p99_ms", "cpu_us_per_req", "cpu_pct", "client_cpu_us_per_req", "machine_cpu_us_per_req",
              "mb_s", "rss_kib", "socket_errors", "idle_open",
              "rss_before_kib", "rss_idle_kib", "rss_per_idle_kib", "base_rps", "base_p50_ms",
              "base_p99_ms", "base_cpu_us_per_req", "bg_rps", "bg_p99_ms", "bg_downloads",
              "bg_mb_s", "note", "wrk"]
SPREAD = ("rps", "cpu_us_per_req", "client_cpu_us_per_req", "machine_cpu_us_per_req", "mb_s",
          "rss_per_idle_kib")
MEDIAN_ONLY = ("p50_ms", "p99_ms", "cpu_pct", "rss_kib", "idle_open", "rss_before_kib",
               "rss_idle_kib", "base_rps", "base_p50_ms", "base_p99_ms",
               "base_cpu_us_per_req", "bg_rps", "bg_p99_ms", "bg_downloads", "bg_mb_s",
               "socket_errors")


def _median(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def ratios(rows, base="nginx", of="ringhttp"):
    """{scenario: {key: (median, min, max)}}: of's figure ÷ base's, round by round (both ran
    in the same round, alternating), for server CPU/req, client CPU/req and req/s."""
    by = {}
    for r in rows:
        if r["status"] == "ok":
            by[(r["server"], r["scenario"], r["round"])] = r
    out = {}
    for (sv, sc, rnd), r in by.items():
        b = by.get((base, sc, rnd))
        if sv != of or not b:
            continue
        for k in ("cpu_us_per_req", "client_cpu_us_per_req", "machine_cpu_us_per_req", "rps",
                  "mb_s"):
            if r.get(k) and b.get(k):
                out.setdefault(sc, {}).setdefault(k, []).append(r[k] / b[k])
    return {sc: {k: (statistics.median(v), min(v), max(v)) for k, v in d.items()}
            for sc, d in out.items()}


def summarize(rows):
    """{(server, scenario): summary}: status ok (medians; SPREAD keys also min and max),
    FAIL (any round failed: the message) or n/a."""
    groups = {}
    for r in rows:
        groups.setdefault((r["server"], r["scenario"]), []).append(r)
    out = {}
    for key, rs in groups.items():
        ok = [r for r in rs if r["status"] == "ok"]
        fails = [r for r in rs if r["status"] == "FAIL"]
        s = {"server": key[0], "scenario": key[1], "rounds": len(ok),
             "notes": sorted({r["note"] for r in rs if r.get("note")})}
        if fails:
            s["status"] = "FAIL"
        elif not ok:
            s["status"] = "n/a"
        else:
            s["status"] = "ok"
        for k in SPREAD:
            vals = [r[k] for r in ok if r.get(k) is not None]
            if vals:
                s[k] = statistics.median(vals)
                s[k + "_min"], s[k + "_max"] = min(vals), max(vals)
        for k in MEDIAN_ONLY:
            s[k] = _median(ok, k)
        out[key] = s
    return out


# ---- formatting ----------------------------------------------------------------------------

def _int(v):
    return "–" if v is None else f"{v:,.0f}"


def _ms(v):
    if v is None:
        return "–"
    return f"{v * 1000:.0f} µs" if v < 1 else f"{v:.2f} ms" if v < 10 else f"{v:.1f} ms"


def _us(v):
    return "–" if v is None else f"{v:.2f}" if v < 10 else f"{v:.1f}"


def _mib(kib):
    return "–" if kib is None else f"{kib / 1024:.1f} MiB"


def _spread(s, key, fmt):
    if s.get(key) is None:
        return "–"
    text = fmt(s[key])
    if s["rounds"] > 1:
        text += f" ({fmt(s[key + '_min'])}–{fmt(s[key + '_max'])})"
    return text


def _status_cell(s):
    if s is None:
        return "not run"
    return "**FAIL**" if s["status"] == "FAIL" else "n/a" if s["status"] == "n/a" else None


def _wide(title, summ, servers, scenarios, key, fmt):
    cols = [sc for sc in scenarios if not sc.special]
    lines = [f"### {title}", "", "| server | " + " | ".join(sc.name for sc in cols) + " |",
             "|---|" + "---:|" * len(cols)]
    for sv in servers:
        cells = []
        for sc in cols:
            s = summ.get((sv, sc.name))
            cells.append(_status_cell(s) or fmt(s.get(key)))
        lines.append(f"| {sv} | " + " | ".join(cells) + " |")
    return lines


def _scenario_table(sc, summ, servers):
    idle = sc.idle
    static = sc.resource.endswith(".bin")
    head = ["server", "req/s median (min–max)"] + (["MB/s (min–max)"] if static else []) + \
        ["p50", "p99", "CPU µs/req (min–max)", "server CPU", "client CPU µs/req (min–max)",
         "both CPUs µs/req (min–max)", "RSS peak"]
    if idle:
        head += ["idle conns", "RSS before → with idle", "KiB per idle conn (min–max)"]
    lines = [f"### {sc.name}: {sc.title}", "", "| " + " | ".join(head) + " |",
             "|---|" + "---:|" * (len(head) - 1)]
    notes = []
    for sv in servers:
        s = summ.get((sv, sc.name))
        if s is None:
            continue
        for n in s["notes"]:
            notes.append(f"{sv}: {n}")
        bad = _status_cell(s)
        if bad:
            lines.append(f"| {sv} | {bad} |" + " |" * (len(head) - 2))
            continue
        if s.get("p99_ms") is None:
            notes.append(f"{sv}: wrk printed p99 0.00us (its percentiles fail under "
                         "pipelining at this rate): shown as –")
        if s.get("socket_errors"):
            notes.append(f"{sv}: wrk reported {s['socket_errors']:.0f} socket errors "
                         f"(median per run)")
        cells = [sv, _spread(s, "rps", _int)] + ([_spread(s, "mb_s", _int)] if static else []) \
            + [_ms(s["p50_ms"]), _ms(s["p99_ms"]), _spread(s, "cpu_us_per_req", _us),
               "–" if s["cpu_pct"] is None else f"{s['cpu_pct']:.0f}%",
               _spread(s, "client_cpu_us_per_req", _us),
               _spread(s, "machine_cpu_us_per_req", _us), _mib(s["rss_kib"])]
        if idle:
            cells += [_int(s["idle_open"]),
                      f"{_mib(s['rss_before_kib'])} → {_mib(s['rss_idle_kib'])}",
                      _spread(s, "rss_per_idle_kib", lambda v: f"{v:.2f}")]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [""] + [f"- {n}" for n in notes]
    return lines


def _mixed_table(sc, summ):
    s = summ.get(("ringhttp", sc.name))
    lines = [f"### {sc.name}: {sc.title}", ""]
    if s is None or s["status"] != "ok":
        lines.append("ringhttp: " + ("not run" if s is None else s["status"] + " " +
                                     "; ".join(s["notes"])))
        return lines
    lines += ["| /plaintext | req/s | p50 | p99 |", "|---|---:|---:|---:|",
              f"| alone | {_int(s['base_rps'])} | {_ms(s['base_p50_ms'])} | "
              f"{_ms(s['base_p99_ms'])} |",
              f"| with 20 connections on /blocking?ms=50 | {_int(s['rps'])} | "
              f"{_ms(s['p50_ms'])} | {_ms(s['p99_ms'])} |", "",
              f"- background: {_int(s['bg_rps'])} /blocking req/s (p99 {_ms(s['bg_p99_ms'])});"
              f" medians of {s['rounds']} round(s)"]
    return lines


def _ratio_table(rat, scenarios):
    cols = [sc for sc in scenarios if not sc.special and sc.name in rat]
    if not cols:
        return []
    fmt = lambda t: f"{t[0]:.2f}x ({t[1]:.2f}–{t[2]:.2f})"
    lines = ["### ringhttp ÷ nginx, round by round (median, min–max)", "",
             "| figure | " + " | ".join(sc.name for sc in cols) + " |",
             "|---|" + "---:|" * len(cols)]
    for k, title in (("cpu_us_per_req", "server CPU µs/req (lower is better)"),
                     ("client_cpu_us_per_req", "client CPU µs/req"),
                     ("machine_cpu_us_per_req", "both CPUs µs/req (lower is better)"),
                     ("rps", "req/s (higher is better)"),
                     ("mb_s", "MB/s (higher is better)")):
        lines.append(f"| {title} | " + " | ".join(
            fmt(rat[sc.name][k]) if k in rat[sc.name] else "–" for sc in cols) + " |")
    return lines + [""]


def _cold_table(sc, summ, servers):
    lines = [f"### {sc.name}: {sc.title}", "",
             "| server | /plaintext p50 / p99 alone | p50 / p99 beside cold downloads | "
             "req/s alone → beside | cold downloads (MB/s) |", "|---|---:|---:|---:|---:|"]
    for sv in servers:
        s = summ.get((sv, sc.name))
        if s is None:
            continue
        bad = _status_cell(s)
        if bad:
            lines.append(f"| {sv} | {bad} | | | |")
            continue
        lines.append(f"| {sv} | {_ms(s['base_p50_ms'])} / {_ms(s['base_p99_ms'])} | "
                     f"{_ms(s['p50_ms'])} / {_ms(s['p99_ms'])} | {_int(s['base_rps'])} → "
                     f"{_int(s['rps'])} | {_int(s['bg_downloads'])} "
                     f"({_int(s['bg_mb_s'])}) |")
    return lines + ["", "- medians over rounds; a server that reads files on its event loop "
                    "waits for the disk there, and every connection on it waits too"]


def markdown(meta, summ, servers, scenarios, rows=()):
    lines = [f"## ringhttp vs {', '.join(s for s in servers if s != 'ringhttp') or 'nothing'}",
             ""] + [f"- {m}" for m in meta] + [""]
    lines += _wide("Summary: requests/s (median; higher is better)", summ, servers,
                   scenarios, "rps", _int) + [""]
    lines += _wide("Summary: server CPU µs per request (median; lower is better)", summ,
                   servers, scenarios, "cpu_us_per_req", _us) + [""]
    lines += _wide("Summary: client (wrk) CPU µs per request (median; what the answers "
                   "cost the receiver)", summ, servers, scenarios, "client_cpu_us_per_req",
                   _us) + [""]
    lines += _wide("Summary: both CPUs' busy µs per request (median; server + client + "
                   "softirq: what loopback cannot move between them)", summ, servers,
                   scenarios, "machine_cpu_us_per_req", _us) + [""]
    if "ringhttp" in servers and "nginx" in servers:
        lines += _ratio_table(ratios(rows), scenarios)
    for sc in scenarios:
        lines += (pool_scenarios.table(sc, summ) if sc.custom else
                  _mixed_table(sc, summ) if sc.mixed else _cold_table(sc, summ, servers)
                  if sc.cold else _scenario_table(sc, summ, servers))
        lines.append("")
    return "\n".join(lines)


# ---- files ---------------------------------------------------------------------------------

def write_csv(out_dir, rows, summ):
    with open(os.path.join(out_dir, "rounds.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, ROW_FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    keys = ["server", "scenario", "status", "rounds"]
    for k in SPREAD:
        keys += [k, k + "_min", k + "_max"]
    keys += list(MEDIAN_ONLY) + ["notes"]
    with open(os.path.join(out_dir, "summary.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, keys, extrasaction="ignore")
        w.writeheader()
        for s in summ.values():
            w.writerow(dict(s, notes="; ".join(s["notes"])))


def write_chart(out_dir, summ, servers, scenarios, title):
    """chart.png: req/s and CPU µs/req per scenario per server (log scales). Returns the
    path, or why there is none."""
    if not shutil.which("gnuplot"):
        return None, "gnuplot not installed"
    cols = [sc.name for sc in scenarios if not sc.special]
    for key, name in (("rps", "chart-rps.dat"), ("cpu_us_per_req", "chart-cpu.dat")):
        with open(os.path.join(out_dir, name), "w") as f:
            f.write("scenario " + " ".join(servers) + "\n")
            for sc in cols:
                vals = []
                for sv in servers:
                    s = summ.get((sv, sc), {})
                    v = s.get(key) if s.get("status") == "ok" else None
                    vals.append("?" if v is None else f"{v:.4g}")
                f.write(sc + " " + " ".join(vals) + "\n")
    n = len(servers)
    plot = lambda dat: "plot " + ", ".join(
        f"'{dat}' using {i + 2}{':xtic(1)' if i == 0 else ''} title columnheader({i + 2})"
        for i in range(n))
    script = f"""set terminal pngcairo size 1400,1000 font "sans,10"
set output 'chart.png'
set datafile missing '?'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set key outside right top
set grid ytics
set logscale y
set multiplot layout 2,1 title "{title}"
set title "requests/s, median (log scale; higher is better)"
{plot('chart-rps.dat')}
set title "server CPU microseconds per request, median (log scale; lower is better)"
{plot('chart-cpu.dat')}
unset multiplot
"""
    with open(os.path.join(out_dir, "chart.gp"), "w") as f:
        f.write(script)
    res = subprocess.run(["gnuplot", "chart.gp"], cwd=out_dir, capture_output=True, text=True)
    if res.returncode != 0:
        return None, "gnuplot failed: " + res.stderr.strip()[-300:]
    return os.path.join(out_dir, "chart.png"), None
