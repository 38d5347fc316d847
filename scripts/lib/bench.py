"""The measuring half of scripts/bench (which builds the sandbox and installs the tools first).

Everything runs against the sandbox's sshds on 127.0.0.1, in one run, so every comparison
shares the machine's state: cold time-to-notebook (jssh against the same Jupyter started
directly, the manual seed workflow with and without a ControlMaster, and jupyter-forward),
warm commands, idle cost, the data path (throughput and time to first byte, jssh against a
plain `ssh -L` to the same Jupyter), and recovery from faults (jssh against autossh configured
as the seeds do and tuned). Writes results JSON, the markdown report and (through the plotting
venv) the chart.

Three sshds keep the subjects apart: `jssh` (jssh, the manual workflows, jupyter-forward),
`seed` and `tuned` (one autossh each), so a fault injected for one subject never touches
another's connections.

This file only reads the options and runs the sections in order. The shared harness (the
subjects, bookkeeping, fresh and settled states) is bench_harness.py; each measurement family
has a file of its own: start_bench.py (cold and warm), idle_bench.py, datapath_bench.py,
recovery_bench.py (faults), browser_bench.py.
"""

import argparse
import os
import sys
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, str(Path(__file__).resolve().parent))
import browser_bench  # noqa: E402
import datapath_bench  # noqa: E402
import idle_bench  # noqa: E402
import recovery_bench  # noqa: E402
import report  # noqa: E402
import start_bench  # noqa: E402
from bench_harness import ROOT, Bench  # noqa: E402
from jsshbench import log, now, term_as_exit  # noqa: E402


def datapath(bench):
    """Throughput and time to first byte through jssh's port against a plain `ssh -L` to
    the same Jupyter (scripts/lib/datapath_bench.py), on the tunnel that warm() (or, with
    `--only datapath`, jssh_up()) left up."""
    try:
        datapath_bench.measure(
            bench.results.setdefault("datapath", {}),
            bench.jssh,
            os.environ["JSSH_SSH_CONFIG"],
            max(bench.args.runs, 5),  # ~1 s a download: cheap enough for a steady median
        )
    except Exception as e:  # noqa: BLE001 - reported, the bench goes on
        bench.error("datapath", e)
    bench.save()


def main():
    p = argparse.ArgumentParser(prog="scripts/bench", description=__doc__)
    p.add_argument("--runs", type=int, default=5, help="runs per measurement (default 5)")
    p.add_argument("--quick", action="store_true", help="short idle window and blackholes; writes to target/bench")
    p.add_argument("--idle-secs", type=float)
    p.add_argument("--blackhole-secs", type=float)
    p.add_argument("--outage-secs", type=float, default=1.0, help="how long sshd stays down")
    p.add_argument("--stagger-secs", type=float, default=4.0)
    p.add_argument("--settle-secs", type=float, default=1.0)
    p.add_argument("--recover-timeout", type=float, default=60.0)
    p.add_argument("--sleep-secs", type=float, help="how long a sleep lasts (default 60, 15 with --quick)")
    p.add_argument("--skip-jf", action="store_true", help="leave out jupyter-forward")
    p.add_argument(
        "--only",
        default="cold,warm,idle,datapath,faults,browser",
        help="sections (cold,warm,idle,datapath,faults,browser)",
    )
    p.add_argument(
        "--faults",
        default=",".join(recovery_bench.FAULTS),
        help=f"faults to run (default all: {','.join(recovery_bench.FAULTS)})",
    )
    p.add_argument(
        "--netchange-cap",
        type=float,
        help="how long to wait for a tunnel after a network change (default 240, 60 with --quick)",
    )
    browser_bench.add_arguments(p)
    p.add_argument("--out", help="markdown report (default docs/BENCHMARKS.md, target/bench/ with --quick)")
    p.add_argument("--chart", help="PNG chart (default docs/bench-recovery.png)")
    p.add_argument("--json", help="raw results (default target/bench/results.json)")
    args = p.parse_args()
    args.idle_secs = args.idle_secs or (10.0 if args.quick else 60.0)
    args.blackhole_secs = args.blackhole_secs or (8.0 if args.quick else 20.0)
    args.sleep_secs = args.sleep_secs or (15.0 if args.quick else 60.0)
    args.netchange_cap = args.netchange_cap or (60.0 if args.quick else 240.0)
    args.faults = args.faults.split(",")
    out_dir = ROOT / ("target/bench" if args.quick else "docs")
    args.out = args.out or str(out_dir / "BENCHMARKS.md")
    args.chart = args.chart or str(out_dir / "bench-recovery.png")
    args.json = args.json or str(ROOT / "target/bench/results.json")
    sections = args.only.split(",")

    term_as_exit()
    bench = Bench(args)
    started = now()
    bench.meta()
    try:
        if "cold" in sections:
            start_bench.cold(bench)
        if {"warm", "idle", "faults", "browser"} & set(sections):
            start_bench.warm(bench)
        elif "datapath" in sections:
            bench.jssh_up()  # a tunnel to measure, without the warm commands' timings
        if {"idle", "faults", "browser"} & set(sections):
            bench.start_autossh()
        if "idle" in sections:
            idle_bench.measure(bench)
        # After idle (its heavy traffic must not fall in the idle window), before faults (which
        # restart the supervisor over and over).
        if "datapath" in sections:
            datapath(bench)
        if "faults" in sections:
            recovery_bench.measure(bench)
        # Last: user-visible recovery in a real browser (scripts/lib/browser_bench.py).
        if "browser" in sections:
            browser_bench.measure(bench)
    finally:
        bench.teardown()
        bench.results["meta"]["bench_secs"] = now() - started
        bench.save()
    report.write(bench.results, args.out, args.chart, os.environ.get("JSSH_BENCH_PLOT_PYTHON"))
    print()
    print(Path(args.out).read_text())
    log(f"wrote {args.out}, {args.chart} and {args.json}")


if __name__ == "__main__":
    main()
