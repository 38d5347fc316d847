"""Turns scripts/bench's results (JSON) into docs/BENCHMARKS.md and, through the plotting
venv's Python, the recovery chart. Run alone to re-render: `python3 report.py RESULTS.json
OUT.md CHART.png [PLOT_PYTHON]`."""

import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in the source tree (when run alone)
import browser_bench  # noqa: E402 - renders its own section and targets
from datapath_bench import DIRECT, JSSH, PLAIN, p90  # noqa: E402 - the names the results use

HERE = Path(__file__).resolve().parent
SEED = "autossh, seed config"
TUNED = "autossh, tuned"
SUBJECTS = ["jssh", SEED, TUNED]

COLD_NAMES = {
    "floor": "Jupyter started directly on the host (the floor)",
    "manual": "manual: ssh exec tmux + `ssh -N -L`, own connections",
    "manual_cm": "manual with a ControlMaster (opened by the first command)",
    "manual_warm_cm": "manual with an already open ControlMaster",
    "jssh": "**`jssh up -d`**",
    "jupyter_forward": "jupyter-forward (to its printed URL)",
}

# What the recovery numbers are measured from, per fault.
FROM = {
    "ssh SIGKILL": "the kill",
    "sshd restart": "sshd accepting again",
    "blackhole": "the path returning",
    "Jupyter crash": "the kill",
    "sleep": "the resume",
    "network change": "the change",
}

# The faults, in the order the report shows them.
FAULT_ORDER = ["ssh SIGKILL", "sshd restart", "blackhole", "sleep", "network change", "Jupyter crash"]


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def s(x, digits=2):
    return "—" if x is None else f"{x:.{digits}f} s"


def spread(xs, digits=2, cap=None):
    """`median (min–max)`, with the count of failures if any (`> cap` rather than `never`
    when the wait was capped)."""
    ok = [x for x in xs if x is not None]
    never = "never" if cap is None else f"> {cap:.0f} s"
    if not ok:
        return f"{never} ({len(xs)} runs)" if xs else "—"
    text = f"{statistics.median(ok):.{digits}f} s ({min(ok):.{digits}f}–{max(ok):.{digits}f})"
    if len(ok) < len(xs):
        text += f", {len(xs) - len(ok)} of {len(xs)} {never}"
    return text


def capped(runs, key):
    """spread() of a field of runs that were given up after their `cap`."""
    caps = [r["cap"] for r in runs if r.get("cap")]
    return spread(field(runs, key), cap=max(caps) if caps else None)


def field(runs, key):
    return [r.get(key) for r in runs]


def attempts(runs):
    """From the supervisor log lines of jssh's runs: (down, this attempt) of each reconnect."""
    out = []
    for r in runs:
        for line in r.get("log", []):
            if m := re.search(r"reconnected in ([\d.]+) s \(this attempt ([\d.]+) s\)", line):
                out.append((float(m.group(1)), float(m.group(2))))
    return out


def verdict(ok, reason):
    return ("met", reason) if ok else ("**missed**", reason)


def targets(res):
    """(target, goal, measured, verdict, reason) rows."""
    rows = []
    cold, warm, rec, idle = res["cold"], res["warm"], res["recovery"], res["idle"]

    jssh, cm, wcm = med(cold.get("jssh", [])), med(cold.get("manual_cm", [])), med(cold.get("manual_warm_cm", []))
    if jssh and cm:
        ratio = jssh / cm
        extra = f"; against an already open master {jssh / wcm:.2f}×" if wcm else ""
        rows.append(
            (
                "cold `jssh up -d`",
                "≤ 1.10× manual with ControlMaster",
                f"{ratio:.2f}× ({s(jssh)} vs {s(cm)}{extra})",
                *verdict(ratio <= 1.10, "median against median, both from nothing"),
            )
        )

    if warm:
        worst = max(warm, key=lambda k: med(warm[k]))
        m = med(warm[worst])
        rows.append(
            (
                "warm commands",
                "≤ 0.25 s",
                ", ".join(f"{k.removeprefix('jssh ')} {s(med(v), 3)}" for k, v in warm.items()),
                *verdict(m <= 0.25, f"slowest: {worst}"),
            )
        )

    def recovery_row(fault, label, goal, limit, extra=""):
        runs = rec.get(fault, {}).get("jssh", [])
        if not runs:
            return
        m = med(field(runs, "recover"))
        att = attempts(runs)
        why = ""
        if att:
            down = statistics.median(a[0] for a in att)
            this = statistics.median(a[1] for a in att)
            why = (
                f"supervisor log: down {down:.2f} s, of which the successful attempt took {this:.2f} s"
                f" and {down - this:.2f} s went before it"
            )
        ok = m is not None and m <= limit
        rows.append((label, goal, s(m) + extra, *verdict(ok, why)))

    recovery_row("ssh SIGKILL", "recovery after the tunnel's ssh is SIGKILLed", "≤ 0.25 s", 0.25)
    recovery_row("sshd restart", "recovery after an sshd restart", "≤ 0.3 s after it is back", 0.3)

    bh = rec.get("blackhole", {}).get("jssh", [])
    if bh:
        d, r = med(field(bh, "detect")), med(field(bh, "recover"))
        ok = d is not None and d <= 4 and r is not None and r <= 0.5
        rows.append(
            (
                f"{res['meta'].get('blackhole_secs', 20):.0f} s blackhole",
                "detected ≤ 4 s, recovered ≤ 0.5 s after the path returns",
                f"detected {s(d)}, recovered {s(r)}",
                *verdict(ok, "" if ok else "see *Where the time goes*"),
            )
        )

    jc = rec.get("Jupyter crash", {}).get("jssh", [])
    floor = med(cold.get("floor", []))
    if jc and floor:
        m = med(field(jc, "recover"))
        ok = m is not None and m <= floor + 0.5
        rows.append(
            (
                "remote Jupyter crash",
                "recovered ≤ Jupyter's own start + 0.5 s",
                f"{s(m)} (Jupyter's own start {s(floor)}, so ≤ {floor + 0.5:.2f} s)",
                *verdict(ok, f"detected after {s(med(field(jc, 'detect')))}" + ("" if ok else "; see *Where the time goes*")),
            )
        )

    nc = rec.get("network change", {})
    if nc.get("jssh"):
        d, r = med(field(nc["jssh"], "detect")), med(field(nc["jssh"], "recover"))
        others = "; ".join(f"{n} {capped(nc.get(n, []), 'recover')}" for n in (SEED, TUNED) if nc.get(n))
        rows.append(
            (
                "network change (issue 14)",
                "noticed at once (≤ 0.1 s), then probed and reconnected",
                f"noticed after {s(d, 3)}, answering again after {s(r)}",
                *verdict(d is not None and d <= 0.1, f"from the `ip` command's start; {others}"),
            )
        )

    sup = idle.get("jssh supervisor")
    if sup:
        rss_ok, cpu_ok = sup["rss_kb"] <= 3072, sup["cpu_ticks"] <= 1
        why = []
        if not rss_ok:
            why.append(f"RSS over 3 MB ({sup.get('anon_kb', 0) / 1024:.1f} MB of it anonymous)")
        if not cpu_ok:
            why.append("CPU measurable")
        rows.append(
            (
                "idle supervisor",
                "RSS ≤ 3 MB, no measurable CPU",
                f"RSS {sup['rss_kb'] / 1024:.1f} MB, {sup['cpu_ticks']} CPU ticks "
                f"({sup['cpu_ticks'] * 10} ms) in {sup['secs']:.0f} s",
                *verdict(
                    rss_ok and cpu_ok,
                    "; ".join(why) + ("; " if why else "") + "no measurable CPU: at most one 10 ms tick",
                ),
            )
        )
    rows += datapath_targets(res)
    rows += browser_bench.targets(res)
    return rows


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render(res, chart_name):
    meta = res["meta"]
    out = ["# Benchmarks", ""]
    out.append(
        f"Measured by `scripts/bench` on {meta.get('date', '?')}, {meta.get('runs')} runs of everything "
        "(warm commands: at least 10), all against throwaway sshds on 127.0.0.1 in the same run. "
        "Cells are median (min–max). Re-run with `scripts/bench` (about 11 minutes; "
        "`scripts/bench --runs 2 --quick` for a rough look)."
    )
    if meta.get("quick"):
        out += ["", "**A quick run: short idle window and blackholes; not the published numbers.**"]
    out += ["", "## Targets (issue #5)", ""]
    out.append(
        table(
            ["Target", "Goal", "Measured (median)", "Verdict", "Notes"],
            [(t, g, m, v, r) for t, g, m, v, r in targets(res)],
        )
    )
    analysis = HERE / "bench-analysis.md"
    if analysis.exists():
        out += ["", analysis.read_text().strip()]

    cold = res["cold"]
    floor = med(cold.get("floor", []))
    out += ["", "## Cold: from nothing to the first 200", ""]
    out.append(
        "From the command's start to the first `200` from `/api/status` (with the token) through "
        "the tunnel; nothing running before (no server, no tunnel, no ControlMaster), except "
        "where the row says so. Subjects take turns in a rotating order."
    )
    out.append("")
    rows = []
    for key, name in COLD_NAMES.items():
        if key in cold:
            m = med(cold[key])
            rows.append((name, spread(cold[key]), f"{m / floor:.2f}×" if floor and m else "—", len(cold[key])))
    out.append(table(["Workflow", "Time to notebook", "vs floor", "Runs"], rows))

    warm = res["warm"]
    if warm:
        out += ["", "## Warm commands", "", "With the tunnel up (wall time of the whole process).", ""]
        out.append(table(["Command", "Time", "Runs"], [(f"`{k}`", spread(v, 3), len(v)) for k, v in warm.items()]))

    out += datapath_section(res)

    rec = res["recovery"]
    if rec:
        out += ["", "## Recovery from faults", ""]
        out.append(
            f"![recovery time per fault, jssh beside autossh]({chart_name})\n\n"
            "*Recovered*: until `/api/status` answers 200 through the tunnel again, measured from "
            "the moment in the second column. *Detected*: from the fault until the supervisor "
            "reacts (jssh: its first log line; autossh: it starts a new ssh). "
            f"sshd restart = listener and session processes killed (a full outage), started again "
            f"{meta.get('outage_secs', 1):.1f} s later on the same port. Blackhole = iptables DROP "
            f"of the sshd's port on loopback, both directions, for {meta.get('blackhole_secs', 20):.0f} s "
            "(each subject has its own sshd; their blackholes overlap, staggered by "
            f"{meta.get('stagger_secs', 4):.0f} s). autossh: `-M 0`; *seed config* = "
            "ServerAliveInterval 30, CountMax 6, autossh's defaults; *tuned* = 2 / 2 and "
            "AUTOSSH_GATETIME=0. autossh never restarts Jupyter, so it has no row for a crash. "
            "During a blackhole each tunnel carries one request a second, as an open notebook tab "
            "would (an idle connection does not notice a short blackhole at all). Before each run, "
            "jssh's supervisor is restarted (`jssh down --keep-remote`, `jssh up -d`) and so is the "
            "tuned autossh, so no backoff carries over from the run before (both reset theirs only "
            "after 60 s of health; `scripts/faults` covers faults in quick succession). The "
            "seed-configured autossh is left running, because a fresh one exits for good when its "
            "first ssh fails within 30 s (AUTOSSH_GATETIME): its backoff grows over the runs, "
            "which is what its sshd-restart spread shows. Sleep = the subject's processes "
            f"(supervisor or autossh, and their ssh) SIGSTOPped for {meta.get('sleep_secs', 60):.0f} s while "
            "iptables drops every connection they had (by port pair, as a NAT that forgot them; new "
            "connections pass), then SIGCONTed. Network change = a Wi-Fi switch: each subject's "
            "client side (supervisor or autossh, their ssh and the local port) runs in a network "
            "namespace of its own, joined to an sshd of its own by a veth pair; one `ip -batch` "
            "there adds a new address, points the route to the server at it and deletes the old "
            "address, so the connections die without a word (no RST) and new ones work; timed from "
            "the `ip` command's start (it takes ~0.03 s). Before each run every subject is started "
            "afresh there, the seed-configured autossh too (its ssh would otherwise still wait for "
            "its keepalives); a tunnel not back after the cap counts as `> cap`."
        )
        out.append("")
        rows = []
        for fault in FAULT_ORDER:
            if fault not in rec:
                continue
            by = rec[fault]
            rows.append((f"{fault}: recovered", FROM[fault], *(capped(by.get(n, []), "recover") for n in SUBJECTS)))
            # A sleep's fault lasts the whole sleep: its detection counts from the resume.
            since = FROM[fault] if fault in ("sleep", "network change") else "the fault"
            rows.append((f"{fault}: detected", since, *(capped(by.get(n, []), "detect") for n in SUBJECTS)))
            if fault == "network change":
                rows.append(
                    (
                        f"{fault}: a plain login (yardstick)",
                        "`ssh HOST true` after the run",
                        *(spread(field(by.get(n, []), "login")) for n in SUBJECTS),
                    )
                )
            if fault == "sshd restart":
                rows.append(
                    (
                        f"{fault}: total outage",
                        "sshd stopping",
                        *(spread(field(by.get(n, []), "total")) for n in SUBJECTS),
                    )
                )
        out.append(table(["Fault", "Measured from", "jssh", "autossh (seed config)", "autossh (tuned)"], rows))
        out += ["", "jssh's own account (supervisor log, `reconnected in DOWN s (this attempt A s)`), medians:", ""]
        rows = []
        for fault, by in rec.items():
            att = attempts(by.get("jssh", []))
            if att:
                down = statistics.median(a[0] for a in att)
                this = statistics.median(a[1] for a in att)
                rows.append((fault, f"{down:.2f} s", f"{this:.2f} s", f"{down - this:.2f} s", len(att)))
        out.append(table(["Fault", "down", "successful attempt", "before it", "reconnects"], rows))
    out += browser_bench.section(res)

    idle = res["idle"]
    if idle:
        secs = next(iter(idle.values()))["secs"]
        out += ["", f"## Idle cost over {secs:.0f} s", ""]
        out.append(
            "RSS from `/proc/PID/status` (VmRSS, and RssAnon: what is not file-backed) at the end, "
            "PSS from `smaps_rollup` (shared pages such as libc's divided among their users); CPU "
            "from utime+stime in `/proc/PID/stat` (10 ms ticks); wakeups from "
            "`voluntary_ctxt_switches`. jssh's supervisor probes `/api/status` through the tunnel "
            "every 2 s over one kept connection, so its ssh and Jupyter wake too."
        )
        out.append("")
        def mb(r, key):
            return f"{r[key] / 1024:.1f} MB" if r.get(key) is not None else "—"

        rows = [
            (
                name,
                mb(r, "rss_kb"),
                mb(r, "anon_kb"),
                mb(r, "pss_kb"),
                f"{r['cpu_ticks']} ({r['cpu_pct']:.3f} %)",
                f"{r['wakeups_per_s']:.2f}",
                f"{r['involuntary_per_s']:.2f}",
            )
            for name, r in idle.items()
        ]
        out.append(
            table(["Process", "RSS", "of it anonymous", "PSS", "CPU ticks (%)", "Wakeups/s", "Involuntary/s"], rows)
        )

    if res.get("errors"):
        out += ["", "## Errors during this run", ""]
        out += [f"- {e}" for e in res["errors"]]

    out += ["", "## Machine", ""]
    keys = ["cpu", "memory", "os", "openssh", "tmux", "python", "jupyter", "autossh", "jupyter-forward", "jssh"]
    out += [f"- {k}: {meta.get(k, '?')}" for k in keys]
    if "bench_secs" in meta:
        out.append(f"- the measuring part of this run took {meta['bench_secs'] / 60:.1f} min")
    return "\n".join(out) + "\n"


# --- the data path (issue #9, measured by datapath_bench.py) -----------------------------------

def datapath_targets(res):
    """The data path's (target, goal, measured, verdict, reason) rows: jssh against the plain
    `ssh -L` measured in the same run."""
    dp = res.get("datapath") or {}
    tp, ttfb = dp.get("throughput_mbps", {}), dp.get("ttfb_ms", {})
    rows = []
    if tp.get(JSSH) and tp.get(PLAIN):
        j, p = med(tp[JSSH]), med(tp[PLAIN])
        rows.append(
            (
                f"throughput, {dp['size_bytes'] / 1e6:.0f} MB download",
                "≥ 0.90× plain `ssh -L`",
                f"{j / p:.2f}× ({j:.0f} vs {p:.0f} MB/s)",
                *verdict(j / p >= 0.9, f"median of {len(tp[JSSH])} downloads each; see *Data path*"),
            )
        )
    if ttfb.get(JSSH) and ttfb.get(PLAIN):
        j, p = med(ttfb[JSSH]), med(ttfb[PLAIN])
        rows.append(
            (
                "first byte of a new connection",
                "≤ plain `ssh -L` + 2 ms",
                f"{j - p:+.2f} ms ({j:.2f} vs {p:.2f} ms; p90 {p90(ttfb[JSSH]):.2f} vs {p90(ttfb[PLAIN]):.2f} ms)",
                *verdict(j - p <= 2, f"median of {len(ttfb[JSSH])} connections each"),
            )
        )
    return rows


def datapath_section(res):
    dp = res.get("datapath") or {}
    tp, ttfb = dp.get("throughput_mbps", {}), dp.get("ttfb_ms", {})
    if not tp and not ttfb:
        return []
    out = ["", "## Data path", ""]
    out.append(
        "Through jssh's local port (the URL `jssh up` printed) against a plain `ssh -N -L "
        "127.0.0.1:P:REMOTE ALIAS` (the same ssh config and alias, `-o ControlMaster=no -o "
        "ControlPath=none`: a connection of its own) to the same remote Jupyter, REMOTE being "
        f"its port or socket as `jssh status --json` gives it (`{dp.get('remote', '?')}`), in "
        "the same run; the subjects take turns, in an order rotated every round. *Throughput*: "
        f"{dp.get('size_bytes', 0) / 1e6:.0f} MB of random bytes from Jupyter's `/files/` "
        "endpoint (the token in an `Authorization` header), a new connection each, timed from "
        "connect to the last byte (MB = 10⁶ bytes), after one uncounted download each. *First "
        "byte*: a new connection, `GET /api/status`, timed from connect to the answer's first "
        "byte, after 5 uncounted; p90 = the 90th percentile. *Jupyter directly*: the same "
        "requests straight to Jupyter's own port or socket, no ssh (the sandbox's remote is this "
        "machine): the ceiling both tunnels are under."
    )
    out.append("")

    def mbps(xs):
        return f"{med(xs):.0f} MB/s ({min(xs):.0f}–{max(xs):.0f})" if xs else "—"

    def ms(xs, stat):
        return f"{stat(xs):.2f} ms" if xs else "—"

    def against(by, text):
        """jssh against plain, or a dash when either is missing."""
        return text(by[JSSH], by[PLAIN]) if by.get(JSSH) and by.get(PLAIN) else "—"

    rows = [
        (
            "throughput (median, min–max)",
            *(mbps(tp.get(n, [])) for n in (JSSH, PLAIN)),
            against(tp, lambda a, b: f"{med(a) / med(b):.2f}×"),
            mbps(tp.get(DIRECT, [])),
            len(tp.get(JSSH, [])),
        ),
        *(
            (
                f"first byte, {label}",
                *(ms(ttfb.get(n, []), stat) for n in (JSSH, PLAIN)),
                against(ttfb, lambda a, b, stat=stat: f"{stat(a) - stat(b):+.2f} ms"),
                ms(ttfb.get(DIRECT, []), stat),
                len(ttfb.get(JSSH, [])),
            )
            for label, stat in (("median", med), ("p90", p90))
        ),
    ]
    out.append(
        table(["Measure", "jssh", "plain `ssh -L`", "jssh against plain", "Jupyter directly", "Runs"], rows)
    )
    return out


def chart_data(res):
    data = {}
    for fault in FAULT_ORDER:
        by = res["recovery"].get(fault)
        if not by:
            continue
        data[fault] = {
            n: {
                k: [x for x in field(by.get(n, []), k) if x is not None]
                for k in ("recover", "detect")
            }
            | {"runs": len(by.get(n, []))}
            for n in SUBJECTS
        }
    return {"faults": data, "from": FROM, "date": res["meta"].get("date", "")}


def write(res, out, chart, plot_python):
    out, chart = Path(out), Path(chart)
    out.parent.mkdir(parents=True, exist_ok=True)
    chart_name = chart.name if chart.parent == out.parent else str(chart)
    out.write_text(render(res, chart_name))
    if plot_python and res["recovery"]:
        with tempfile.NamedTemporaryFile("w", suffix=".json") as data:
            json.dump(chart_data(res), data)
            data.flush()
            subprocess.run([plot_python, str(HERE / "chart.py"), data.name, str(chart)], check=True, timeout=120)


if __name__ == "__main__":
    results = json.loads(Path(sys.argv[1]).read_text())
    write(results, sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)
