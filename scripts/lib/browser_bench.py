"""User-visible recovery, for scripts/bench (issue #9): a notebook cell in a real browser after
each fault, jssh beside autossh (tuned) in the same run.

The tunnel-level figures say when `/api/status` answers again; a user in JupyterLab may wait
far longer. When its kernel websocket drops and the one retry it makes at once is refused,
JupyterLab waits a random 10–30 s before trying again; a cell queued meanwhile waits with it.
So here a headless Chromium (Debian's, driven by playwright-core through
tests/browser/notebook.mjs) keeps one notebook open per subject, as a user would, and after
each fault runs a cell and times it from the Shift+Enter to its output:

- ssh SIGKILL: `x + 1` right after the tunnel's ssh is killed;
- sshd restart: a full outage (listener and sessions killed) of --browser-outage-secs, then
  `x + 1` the moment sshd accepts again;
- blackhole: the sshd's port silently dropped for --blackhole-secs, then `x + 1` the moment
  the path returns;
- Jupyter crash (jssh only: autossh restarts no Jupyter): `x = 41; x + 1` right after the
  remote Jupyter is SIGKILLed. Its kernel dies with it, so the cell can only run in a new
  one: the driver acts as a user who accepts JupyterLab's dialogs (it asks which kernel to
  start) and runs the cell again while it has not started.

Beside each cell, the tunnel's own recovery from the same moment (`/api/status` polled through
the port), whether any JupyterLab dialog appeared (e.g. "Server Connection Error"), and whether
the kernel is the one from before the fault.

Before each run, the subject is made fresh and settled exactly as for the tunnel-level faults
(bench_harness.py's fresh() and settle()), then the tab is brought back to a working state with a
cell that must answer (`x = 41; x + 1`, however long JupyterLab's own reconnect takes): the
fault always meets a connected notebook.

measure(bench) fills bench.results["browser"]; section() and targets() render it for
scripts/lib/report.py. Standard library only.
"""

import json
import os
import queue
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

from jsshbench import SANDBOX, Blackhole, cmdline, log, now, wait_ok

ROOT = Path(__file__).resolve().parents[2]
DRIVER = ROOT / "tests/browser/notebook.mjs"
JSSH, TUNED = "jssh", "autossh, tuned"  # as bench_harness.py and report.py name them
SUBJECTS = [JSSH, TUNED]
FAULTS = ["ssh SIGKILL", "sshd restart", "blackhole", "Jupyter crash"]
# JupyterLab's reconnect alone can take 34 s (30 s random wait, up to 1 s, then a 3 s stall).
CELL_TIMEOUT = 90.0
# Issue #9's acceptance for jssh.
AFTER_KILL = 1.0
BEYOND_TUNNEL = 4.0
# What each fault's cell is pressed after, for the report.
PRESSED = {
    "ssh SIGKILL": "right after the kill",
    "sshd restart": "as sshd accepts again",
    "blackhole": "as the path returns",
    "Jupyter crash": "right after the kill",
}


def add_arguments(parser):
    parser.add_argument(
        "--browser-outage-secs",
        type=float,
        default=5.0,
        help="how long sshd stays down for the browser's sshd restart (default 5, as in issue #9)",
    )


# --- the browser ------------------------------------------------------------------------------


class Browser:
    """tests/browser/notebook.mjs: one headless Chromium with one notebook, driven one JSON
    line at a time. Its log (the page's console: JupyterLab logs every reconnect) goes to the
    sandbox, and bench_harness.py's keep_logs() copies it out."""

    def __init__(self, name):
        slug = re.sub(r"\W+", "-", name).strip("-")
        self.log_path = SANDBOX / f"browser-{slug}.log"
        tmp = SANDBOX / "browser-tmp"
        tmp.mkdir(exist_ok=True)
        # HOME is already the sandbox's (sandbox_client); TMPDIR too, for Chromium's profile,
        # so that nothing outlives the sandbox's cleanup.
        env = dict(os.environ, TMPDIR=str(tmp))
        with open(self.log_path, "ab") as err:
            self.proc = subprocess.Popen(
                ["node", str(DRIVER)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env=env,
                start_new_session=True,  # one group with its Chromium, for close()
            )
        self.answers = queue.Queue()
        threading.Thread(target=lambda: [self.answers.put(line) for line in self.proc.stdout], daemon=True).start()

    def call(self, **request):
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        timeout = request.get("timeout_ms", 60000) / 1000 + 60
        try:
            return json.loads(self.answers.get(timeout=timeout))
        except queue.Empty:
            raise RuntimeError(f"the browser driver did not answer {request['cmd']} within {timeout:.0f} s") from None

    def open(self, url):
        self.url = url
        answer = self.call(cmd="open", url=url, timeout_ms=120000)
        if not answer.get("ok"):
            raise RuntimeError(f"the browser could not open a notebook: {answer.get('error')}")
        return answer

    def run(self, code, expect, persist=False):
        return self.call(cmd="run", code=code, expect=expect, timeout_ms=CELL_TIMEOUT * 1000, persist=persist)

    def close(self):
        try:
            if self.proc.poll() is None:
                self.call(cmd="quit", timeout_ms=10000)
                self.proc.wait(10)
        except (OSError, RuntimeError, ValueError, subprocess.TimeoutExpired):
            pass
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def versions():
    chromium = subprocess.run(["/usr/bin/chromium", "--version"], capture_output=True, text=True, check=False)
    lock = json.loads((ROOT / "tests/browser/package-lock.json").read_text())
    core = lock["packages"]["node_modules/playwright-core"]["version"]
    return f"{chromium.stdout.strip() or 'chromium ?'}, playwright-core {core}, JupyterLab as above"


# --- one run --------------------------------------------------------------------------------


class Tunnel:
    """The tunnel's own recovery, timed on a thread from `t0` (as the cell is pressed)."""

    def __init__(self, port, token, t0):
        self.seconds = None
        self._thread = threading.Thread(target=self._wait, args=(port, token, t0), daemon=True)
        self._thread.start()

    def _wait(self, port, token, t0):
        t = wait_ok(port, token, CELL_TIMEOUT)
        self.seconds = t - t0 if t is not None else None

    def join(self):
        self._thread.join()
        return self.seconds


def result(answer, tunnel, kernel):
    out = {
        "cell": answer.get("seconds") if answer.get("ok") else None,
        "tunnel": tunnel,
        "dialogs": answer.get("dialogs", []),
        "same_kernel": answer.get("kernel") == kernel,
    }
    if not answer.get("ok"):
        out["error"] = f"{answer.get('error')} (outputs {answer.get('outputs')}, prompt {answer.get('prompt')})"
    if "reruns" in answer:
        out["reruns"] = answer["reruns"]
    return out


def run_kill(bench, name, browser, kernel):
    _, port, tok, tunnel_pid, _ = bench.subject(name)
    pid = tunnel_pid()
    if pid is None:
        raise RuntimeError(f"{name} has no tunnel ssh to kill")
    os.kill(pid, signal.SIGKILL)
    tunnel = Tunnel(port, tok, now())
    answer = browser.run("x + 1", "42")
    return result(answer, tunnel.join(), kernel)


def after_outage(bench, name, browser, kernel, begin, end, secs):
    """The cell after an outage of `secs` that `begin` starts and `end` ends (`end` returns
    when the path is back); `end` runs even when something fails on the way."""
    _, port, tok, _, _ = bench.subject(name)
    try:
        begin()
        time.sleep(secs)
    finally:
        t_back = end()
    tunnel = Tunnel(port, tok, t_back)
    answer = browser.run("x + 1", "42")
    return result(answer, tunnel.join(), kernel)


def run_restart(bench, name, browser, kernel):
    sshd = bench.subject(name)[0]
    return after_outage(bench, name, browser, kernel, sshd.stop, sshd.start, bench.args.browser_outage_secs)


def run_blackhole(bench, name, browser, kernel):
    hole = Blackhole(bench.subject(name)[0].port)
    return after_outage(bench, name, browser, kernel, hole.add, hole.remove, bench.args.blackhole_secs)


def run_crash(bench, name, browser, kernel):
    _, port, tok, _, _ = bench.subject(name)
    pid = bench.jssh.status()["remote_pid"]
    argv = " ".join(cmdline(pid))
    if "jupyter" not in argv:
        raise RuntimeError(f"remote_pid {pid} is not Jupyter: {argv!r}")
    os.kill(pid, signal.SIGKILL)
    tunnel = Tunnel(port, tok, now())
    # The kernel died with its server: x is set again in whatever kernel runs the cell.
    answer = browser.call(
        cmd="run", code="x = 41; x + 1", expect="42", timeout_ms=CELL_TIMEOUT * 1000, persist=True
    )
    return result(answer, tunnel.join(), kernel)


def ready(browser):
    """Brings the tab back to a working notebook after fresh() (which restarted the tunnel
    under it): a cell that must answer, however long JupyterLab's reconnect takes, and in
    whatever kernel (a Jupyter crash before left none). A notebook that stays stuck (seen
    when, in the gap of fresh(), another program took the port and answered the page with
    403s) is opened anew, so that one bad run does not spoil the ones after it. Returns the
    kernel the cell ran in."""
    answer = browser.run("x = 41; x + 1", "42", persist=True)
    if not answer.get("ok"):
        log(f"  the notebook did not answer ({answer.get('error')}, prompt {answer.get('prompt')}): opening a new one")
        browser.open(browser.url)
        answer = browser.run("x = 41; x + 1", "42", persist=True)
    if not answer.get("ok"):
        raise RuntimeError(f"the notebook did not answer before the fault: {answer}")
    return answer["kernel"]


# --- the measurement ----------------------------------------------------------------------------


def url_of(bench, name):
    if name == JSSH:
        return bench.jssh_url
    _, port, tok, _, _ = bench.subject(name)
    return f"http://127.0.0.1:{port}/lab?token={tok}"


def measure(bench):
    """Opens one notebook per subject, then for each fault and run: fresh, settle, ready, the
    fault, the cell. Subjects take turns in a rotating order; an error costs one run."""
    results = bench.results.setdefault("browser", {})
    bench.results["meta"]["browser"] = versions()
    bench.results["meta"]["browser_outage_secs"] = bench.args.browser_outage_secs
    plan = [
        ("ssh SIGKILL", run_kill, SUBJECTS),
        ("sshd restart", run_restart, SUBJECTS),
        ("blackhole", run_blackhole, SUBJECTS),
        ("Jupyter crash", run_crash, [JSSH]),
    ]
    browsers = {}
    try:
        for name in SUBJECTS:
            browsers[name] = Browser(name)
            opened = browsers[name].open(url_of(bench, name))
            log(f"browser: a notebook on {name} ({opened['seconds']:.1f} s to open)")
    except Exception as e:  # noqa: BLE001 - reported, the rest of the bench goes on
        bench.error("browser: opening the notebooks", e)
        plan = []
    try:
        for fault, fn, names in plan:
            if fault not in bench.args.faults:
                continue
            for r in range(bench.args.runs):
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    try:
                        bench.fresh(name)
                        bench.settle(name)
                        kernel = ready(browsers[name])
                        res = fn(bench, name, browsers[name], kernel)
                        results.setdefault(fault, {}).setdefault(name, []).append(res)
                        log(f"browser {fault} {r + 1}/{bench.args.runs} {name}: {describe(res)}")
                    except Exception as e:  # noqa: BLE001 - reported, the bench goes on
                        bench.error(f"browser {fault} run {r + 1} {name}", e)
                bench.save()
    finally:
        for b in browsers.values():
            b.close()


def describe(res):
    cell = "never" if res["cell"] is None else f"{res['cell']:.3f} s"
    tunnel = "never" if res["tunnel"] is None else f"{res['tunnel']:.3f} s"
    extra = f", {len(res['dialogs'])} dialog(s)" if res["dialogs"] else ""
    extra += "" if res["same_kernel"] else ", another kernel"
    extra += f", {res['reruns']} rerun(s)" if res.get("reruns") else ""
    extra += f", {res['error']}" if res.get("error") else ""
    return f"cell {cell} (tunnel {tunnel}){extra}"


# --- the report -----------------------------------------------------------------------------


def count(runs, test):
    return f"{sum(1 for r in runs if test(r))} of {len(runs)}" if runs else "—"


def targets(res):
    """Issue #9's browser targets as (target, goal, measured, verdict, reason) rows."""
    import report  # noqa: PLC0415 - report imports this module

    br = res.get("browser") or {}
    rows = []
    kills = br.get("ssh SIGKILL", {}).get(JSSH, [])
    if kills:
        cells = [r["cell"] for r in kills]
        worst = None if None in cells else max(cells)
        clean = all(not r["dialogs"] and r["same_kernel"] for r in kills)
        rows.append(
            (
                "browser: cell after the tunnel's ssh is SIGKILLed",
                f"≤ {AFTER_KILL:.0f} s every time, no dialog, same kernel",
                f"worst {report.s(worst)} of {len(kills)} (median {report.s(report.med(cells))})",
                *report.verdict(worst is not None and worst <= AFTER_KILL and clean, "see *User-visible recovery*"),
            )
        )
    outages = br.get("sshd restart", {}).get(JSSH, [])
    if outages:
        margins = [
            r["cell"] - r["tunnel"] if r["cell"] is not None and r["tunnel"] is not None else None for r in outages
        ]
        worst = None if None in margins else max(margins)
        clean = all(not r["dialogs"] and r["same_kernel"] for r in outages)
        secs = res["meta"].get("browser_outage_secs", 5)
        rows.append(
            (
                f"browser: cell after a {secs:.0f} s sshd outage",
                f"≤ tunnel recovery + {BEYOND_TUNNEL:.0f} s, no dialog, same kernel",
                f"at most tunnel + {report.s(worst)} (cells {report.spread([r['cell'] for r in outages])})",
                *report.verdict(worst is not None and worst <= BEYOND_TUNNEL and clean, "see *User-visible recovery*"),
            )
        )
    return rows


def section(res):
    """The markdown lines of the *User-visible recovery* section."""
    import report  # noqa: PLC0415 - report imports this module

    br = res.get("browser") or {}
    if not br:
        return []
    meta = res["meta"]
    out = ["", "## User-visible recovery: a notebook cell in a real browser", ""]
    out.append(
        "What a user sees, beside the tunnel-level figures above: one JupyterLab notebook per "
        f"subject open in a headless Chromium ({meta.get('browser', '?')}), never reloaded. "
        "After each fault a cell (`x + 1`, where `x = 41` was set before) is run, and timed "
        "from the Shift+Enter to its output, both on the page's clock. *Cell answered* is that "
        "time; *tunnel answered* is when `/api/status` answered through the port again, from the "
        "same moment. The cell is pressed right after an ssh or Jupyter kill, the moment sshd "
        f"accepts again after a {meta.get('browser_outage_secs', 5):.0f} s full outage, and the "
        f"moment the path returns after a blackhole of {meta.get('blackhole_secs', 20):.0f} s. "
        "JupyterLab, when its kernel websocket drops and its one immediate retry is refused, "
        "waits a random 10–30 s before trying again: a port that refuses for a few "
        "milliseconds can cost the user half a minute. A Jupyter crash takes the kernel with "
        "it, so that cell (`x = 41; x + 1`) can only run in a new kernel: the driver accepts "
        "JupyterLab's dialogs as they appear (it asks which kernel to start) and runs the cell "
        "again while it has not started, as a user would. Before each run the subject is made "
        "fresh and settled as for the tunnel-level faults, and the notebook answers a cell. "
        "autossh: the tuned one (2 / 2, AUTOSSH_GATETIME=0); it restarts no Jupyter."
    )
    out.append("")
    rows = []
    for fault in FAULTS:
        by = br.get(fault)
        if not by:
            continue
        runs = {n: by.get(n, []) for n in SUBJECTS}

        def cells(key, runs=runs):
            return [report.spread([r[key] for r in runs[n]]) if runs[n] else "—" for n in SUBJECTS]

        rows.append((f"{fault}: cell answered", PRESSED[fault], *cells("cell")))
        rows.append((f"{fault}: tunnel answered", PRESSED[fault], *cells("tunnel")))
        rows.append(
            (f"{fault}: a dialog appeared", "", *(count(runs[n], lambda r: r["dialogs"]) for n in SUBJECTS))
        )
        rows.append((f"{fault}: same kernel", "", *(count(runs[n], lambda r: r["same_kernel"]) for n in SUBJECTS)))
    out.append(report.table(["Fault", "Cell pressed", "jssh", "autossh (tuned)"], rows))
    # Each dialog by its first sentence (a title where it has one).
    dialogs = sorted(
        {
            re.split(r"(?<=\.)\s", d.splitlines()[0])[0]
            for by in br.values()
            for runs in by.values()
            for r in runs
            for d in r["dialogs"]
        }
    )
    if dialogs:
        out += ["", "Dialogs seen: " + "; ".join(f"“{d}”" for d in dialogs) + "."]
    return out
