"""Start-up times, for scripts/bench: cold, from nothing to the first 200 through the URL
(jssh against the same Jupyter started directly, the manual seed workflow with and without a
ControlMaster, and jupyter-forward), and warm, the commands a user runs on a tunnel that is
already up. cold(bench) and warm(bench) fill bench.results["cold"] and ["warm"].
"""

import http.cookiejar
import os
import queue
import re
import signal
import statistics
import subprocess
import threading
import time
import urllib.parse
import urllib.request

from bench_harness import ALIAS, MANUAL_CONFIG, jupyter_argv, kill_tmux_session, tmux_new, token, wait_port_free
from jsshbench import SANDBOX, cmdline, free_port, log, now, run, signal_all, stop_process, wait_gone, wait_ok

JF_HOME = SANDBOX / "jf-home"

# --- cold: from nothing to the first 200 ------------------------------------------------------


def floor():
    """Jupyter started directly, no ssh: the floor every subject is measured against."""
    port, tok = free_port(), token()
    env = dict(
        os.environ,
        HOME=str(SANDBOX / "remote-home"),
        JUPYTER_TOKEN=tok,
        JUPYTER_RUNTIME_DIR=str(SANDBOX / "jupyter/runtime"),
        JUPYTER_CONFIG_DIR=str(SANDBOX / "jupyter/config"),
        JUPYTER_DATA_DIR=str(SANDBOX / "jupyter/data"),
    )
    with open(SANDBOX / "floor.log", "ab") as out:
        t0 = now()
        proc = subprocess.Popen(jupyter_argv(port), env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        try:
            t = wait_ok(port, tok, 60)
        finally:
            stop_process(proc, 10)
    if t is None:
        raise RuntimeError("Jupyter did not answer within 60 s")
    return t - t0


def manual(master):
    """The seeds' workflow: ssh exec `tmux new -d … jupyter …`, `ssh -N -L`, poll.
    master: None (own connections), "cold" (the first command opens a ControlMaster that
    the forward then rides), "warm" (a master is already up before the clock starts)."""
    name, rport, lport, tok = f"bench-manual-{os.urandom(3).hex()}", free_port(), free_port(), token()
    host = "manual" if master is None else "manual-cm"
    ssh = ["ssh", "-F", str(MANUAL_CONFIG)]
    if master == "warm":
        run([*ssh, host, "true"], timeout=30)
    forward = None
    try:
        t0 = now()
        run([*ssh, host, tmux_new(name, rport, tok)], timeout=30)
        forward = subprocess.Popen(
            [*ssh, "-N", "-L", f"127.0.0.1:{lport}:127.0.0.1:{rport}", host],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        t = wait_ok(lport, tok, 60)
        if t is None:
            raise RuntimeError("the manual tunnel did not answer within 60 s")
        return t - t0
    finally:
        if forward is not None:
            stop_process(forward, 5)
        if master is not None:
            run([*ssh, "-O", "exit", host], check=False, timeout=10)
        kill_tmux_session(name)
        wait_port_free(rport)


def jupyter_forward():
    """jupyter-forward until the URL it prints answers 200 with the notebook (not a login
    page). It needs --conda-env (a bug in this release: without it, it exits 1); with the
    venv on the login PATH, `source activate NAME` sources the venv's activate."""
    lport = free_port()
    env = dict(os.environ, HOME=str(JF_HOME), BROWSER="true", COLUMNS="400", TERM="dumb")
    lines = queue.Queue()
    t0 = now()
    proc = subprocess.Popen(
        [os.environ["JSSH_BENCH_JF"], "jf", "--port", str(lport), "--conda-env", "bench"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    output = []
    try:
        url = None
        deadline = t0 + 90
        while url is None and now() < deadline:
            try:
                line = lines.get(timeout=max(0.01, deadline - now()))
            except queue.Empty:
                break
            output.append(line)
            if m := re.search(r"Jupyter Lab URL: (http\S+)", line):
                url = m.group(1).replace("//localhost:", "//127.0.0.1:")
        if url is None:
            raise RuntimeError("jupyter-forward printed no URL: " + "".join(output[-5:]).strip())
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        while now() < deadline:
            try:
                with opener.open(url, timeout=2) as resp:
                    if resp.status == 200 and urllib.parse.urlparse(resp.geturl()).path.startswith("/lab"):
                        return now() - t0
            except OSError:
                pass
            time.sleep(0.01)
        raise RuntimeError("jupyter-forward's URL did not answer within 90 s")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(5)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        # Its Jupyter normally dies with the session's pty; make sure.
        leftovers = [int(p) for p in os.listdir("/proc") if p.isdigit() and "--ip=localhost" in cmdline(int(p))]
        signal_all(leftovers, signal.SIGTERM)
        wait_gone(leftovers, 10)


def cold(bench):
    subjects = {
        "floor": floor,
        "manual": lambda: manual(None),
        "manual_cm": lambda: manual("cold"),
        "manual_warm_cm": lambda: manual("warm"),
        "jssh": lambda: jssh_round(bench),
        "jupyter_forward": jupyter_forward,
    }
    if bench.args.skip_jf:
        del subjects["jupyter_forward"]
    cold = bench.results["cold"]
    log("cold: warming up (uncounted: one direct Jupyter start and one jssh up/down)")
    for what, fn in (("floor", floor), ("jssh", lambda: jssh_round(bench))):
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - reported, the bench goes on
            bench.error(f"cold warm-up {what}", e)
    names = list(subjects)
    for r in range(bench.args.runs):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            try:
                secs = subjects[name]()
                cold.setdefault(name, []).append(secs)
                log(f"cold {r + 1}/{bench.args.runs} {name}: {secs:.3f} s")
            except Exception as e:  # noqa: BLE001
                bench.error(f"cold run {r + 1} {name}", e)
        bench.save()


def jssh_round(bench):
    """`jssh up` from nothing to the first 200, then down again."""
    try:
        return bench.jssh_up()
    finally:
        bench.jssh_down()


# --- warm commands ----------------------------------------------------------------------------


def warm(bench):
    bench.jssh_up()  # leaves it up for the rest of the run
    commands = {
        "jssh up -d": ["up", ALIAS, "-d"],
        "jssh status": ["status"],
        "jssh url": ["url", ALIAS],
        "jssh --version": ["--version"],
    }
    for r in range(max(bench.args.runs, 10)):
        for name, argv in commands.items():
            secs, _ = bench.jssh.timed(*argv, timeout=30)
            bench.results["warm"].setdefault(name, []).append(secs)
    for name, xs in bench.results["warm"].items():
        log(f"warm {name}: median {statistics.median(xs):.3f} s")
    bench.save()
