"""Idle cost, for scripts/bench: what each tunnel's processes (jssh's supervisor and its ssh
connections; each autossh and its ssh) hold in memory and spend in CPU and wakeups while
nothing happens, over one window. measure(bench) fills bench.results["idle"].
"""

import time

from bench_harness import SEED, TUNED
from jsshbench import CLK_TCK, alive, children, cmdline, log, usage


def measure(bench):
    """Samples each process's memory, CPU ticks and wakeups over bench.args.idle_secs."""
    secs = bench.args.idle_secs
    sup = bench.jssh.supervisor_pid()
    bench.jssh.steady()
    active = bench.jssh.tunnel_ssh()
    procs = {"jssh supervisor": sup, "jssh's ssh (tunnel)": active}
    # The other child: a standby connection kept ready to take the forward over (`ssh -N`).
    # The remote watch that reports a Jupyter exit is a session of the tunnel's connection,
    # opened by the supervisor itself: no process of its own.
    others = [k for k in children(sup) if k != active and alive(k)]
    for i, kid in enumerate(others):
        procs[f"jssh's ssh (standby{f' {i + 1}' if i else ''})"] = kid
    for variant in (TUNED, SEED):
        procs[f"autossh ({variant.split(', ')[1]})"] = bench.autossh[variant]["proc"].pid
        procs[f"its ssh ({variant.split(', ')[1]})"] = bench.autossh_ssh(variant)
    log(f"idle: sampling {len(procs)} processes over {secs:.0f} s")
    before = {name: usage(pid) for name, pid in procs.items()}
    time.sleep(secs)
    for name, pid in procs.items():
        if not alive(pid):
            bench.error("idle", f"{name} (pid {pid}) ended during the idle window")
            continue
        after = usage(pid)
        b = before[name]
        bench.results["idle"][name] = {
            "pid": pid,
            "rss_kb": after["rss_kb"],
            "anon_kb": after["anon_kb"],
            "pss_kb": after["pss_kb"],
            "cpu_ticks": after["ticks"] - b["ticks"],
            "cpu_pct": (after["ticks"] - b["ticks"]) / CLK_TCK / secs * 100,
            "wakeups_per_s": (after["voluntary"] - b["voluntary"]) / secs,
            "involuntary_per_s": (after["involuntary"] - b["involuntary"]) / secs,
            "secs": secs,
        }
        r = bench.results["idle"][name]
        log(
            f"idle {name}: RSS {r['rss_kb']} kB, CPU {r['cpu_ticks']} ticks ({r['cpu_pct']:.3f} %), "
            f"{r['wakeups_per_s']:.2f} wakeups/s"
        )
    bench.save()
