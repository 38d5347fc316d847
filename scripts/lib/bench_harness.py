"""The shared harness of scripts/bench: the subjects every measurement family uses (jssh,
and two autossh tunnels to one Jupyter, each through its own sshd), the results and their
bookkeeping, bringing a subject to a fresh, settled state before a measurement, the run's
metadata, and the teardown. The families (start_bench, idle_bench, datapath_bench,
recovery_bench, browser_bench) each take a Bench and fill their part of bench.results.

jssh is driven only through its command line (`jssh status --json` for what it is doing, see
jsshbench.Jssh); the one private file read is its supervisor's log, for the event lines.
"""

import datetime
import json
import os
import platform
import random
import shlex
import shutil
import subprocess
import time
from pathlib import Path

from jsshbench import (
    SANDBOX,
    Jssh,
    Sshd,
    alive,
    child_replaced,
    children,
    free_port,
    log,
    log_grew,
    now,
    parse_url,
    port_open,
    run,
    stop_process,
    wait_gone,
    wait_ok,
)

ROOT = Path(__file__).resolve().parents[2]
VENV = os.environ.get("JSSH_TEST_VENV", "")
ALIAS = "bench"
MANUAL_CONFIG = SANDBOX / "ssh" / "manual_config"
TMUX_SOCKET = SANDBOX / "tmux" / f"tmux-{os.getuid()}" / "default"

SEED = "autossh, seed config"
TUNED = "autossh, tuned"


def token():
    return os.urandom(24).hex()


def jupyter_argv(port):
    """The same Jupyter every subject starts (jssh adds the same flags itself)."""
    return [
        f"{VENV}/bin/jupyter",
        "lab",
        "--no-browser",
        "--allow-root",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--port-retries=0",
    ]


def tmux_new(name, port, tok):
    """The seeds' start: a detached tmux session running Jupyter (token in argv, as they do)."""
    inner = f"JUPYTER_TOKEN={tok} exec {shlex.join(jupyter_argv(port))}"
    return shlex.join(["tmux", "new", "-d", "-s", name, inner])


def kill_tmux_session(name):
    run(["tmux", "-S", str(TMUX_SOCKET), "kill-session", "-t", name], check=False, timeout=10)


def wait_port_free(port, timeout=15):
    deadline = now() + timeout
    while port_open(port, 0.05) and now() < deadline:
        time.sleep(0.02)


class Bench:
    def __init__(self, args):
        self.args = args
        self.jssh = Jssh(os.environ["JSSH_BIN"], ALIAS)
        # A port of the run's own: left to itself the first `up` takes 8888, which another
        # program on the machine may take between a `down` and the next `up`.
        self.local_port = str(free_port())
        self.sshd = {name: Sshd(name) for name in ("jssh", "seed", "tuned")}
        self.results = {
            "meta": {},
            "cold": {},
            "warm": {},
            "idle": {},
            "recovery": {},
            "errors": [],
            "logs": {},
        }
        self.autossh = {}  # variant -> dict(proc, port, sshd)
        self.auto_jupyter = None  # (remote port, token)
        self.jssh_url = None

    # --- bookkeeping --------------------------------------------------------------------------

    def error(self, what, exc):
        message = f"{what}: {exc}"
        log(f"  ! {message}")
        self.results["errors"].append(message)

    def save(self):
        out = Path(self.args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(self.results, indent=1))

    # --- jssh -------------------------------------------------------------------------------------

    def jssh_up(self):
        """`jssh up` from nothing until its URL answers (leaving it up): the seconds it took."""
        t0 = now()
        try:
            proc = self.jssh("up", ALIAS, "-d", "--port", self.local_port, "--env", f"venv:{VENV}", timeout=120)
            url = [line for line in proc.stdout.splitlines() if line.startswith("http")][-1]
            port, tok = parse_url(url)
            t = wait_ok(port, tok, 10)
        except Exception:
            self.jssh_down()
            raise
        if t is None:
            self.jssh_down()
            raise RuntimeError(f"`jssh up` printed {url} but it does not answer")
        self.jssh_url = url
        return t - t0

    def jssh_down(self):
        self.jssh("down", ALIAS, check=False, timeout=60)
        # `from nothing` includes the ControlMaster that `jssh up` opened.
        run(["ssh", "-F", os.environ["JSSH_SSH_CONFIG"], "-O", "exit", ALIAS], check=False, timeout=10)
        wait_gone([p for p in [self.jssh.supervisor_pid()] if p], 5)

    # --- autossh --------------------------------------------------------------------------------

    def start_autossh(self):
        """One Jupyter (started the seeds' way) and two autossh tunnels to it, each through its
        own sshd: the seeds' settings (ServerAliveInterval 30, CountMax 6, autossh defaults)
        and tuned ones (2 / 2, AUTOSSH_GATETIME=0)."""
        rport, tok = free_port(), token()
        run(["ssh", "-F", str(MANUAL_CONFIG), "seed", tmux_new("bench-autossh", rport, tok)], timeout=30)
        if wait_ok(rport, tok, 60) is None:
            raise RuntimeError("the Jupyter for autossh did not start")
        self.auto_jupyter = (rport, tok)
        for variant in (SEED, TUNED):
            self.start_one_autossh(variant, free_port())

    def start_one_autossh(self, variant, lport):
        host = "seed" if variant == SEED else "tuned"
        rport, tok = self.auto_jupyter
        env = dict(os.environ, AUTOSSH_LOGFILE=str(SANDBOX / f"autossh-{host}.log"), AUTOSSH_LOGLEVEL="7")
        if variant == TUNED:
            env["AUTOSSH_GATETIME"] = "0"
        with open(SANDBOX / f"autossh-{host}.out", "ab") as out:
            proc = subprocess.Popen(
                ["autossh", "-M", "0", "-N", "-T", "-F", str(MANUAL_CONFIG)]
                + ["-L", f"127.0.0.1:{lport}:127.0.0.1:{rport}", host],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
        self.autossh[variant] = {"proc": proc, "port": lport, "sshd": self.sshd[host]}
        if wait_ok(lport, tok, 30) is None:
            raise RuntimeError(f"{variant} did not connect")

    def fresh(self, name):
        """A supervisor in its steady state, as after a minute of health (jssh and autossh both
        reset their backoff only after 60 s up): jssh's supervisor is restarted (`jssh up`
        re-attaches to the running Jupyter), tuned autossh too. The seed-configured autossh
        is left running: a fresh one gives up for good when its first ssh fails within 30 s
        (AUTOSSH_GATETIME), so its backoff from earlier runs stays in its numbers."""
        if name == "jssh":
            self.jssh("down", ALIAS, "--keep-remote", timeout=60)
            proc = self.jssh("up", ALIAS, "-d", "--port", self.local_port, timeout=60)
            self.jssh_url = [line for line in proc.stdout.splitlines() if line.startswith("http")][-1]
        elif name == TUNED:
            a = self.autossh[name]
            stop_process(a["proc"], 5)
            wait_port_free(a["port"], 5)
            self.start_one_autossh(name, a["port"])

    def autossh_ssh(self, variant):
        pid = self.autossh[variant]["proc"].pid
        kids = [k for k in children(pid) if alive(k)]
        return kids[0] if kids else None

    # --- before a measurement ------------------------------------------------------------------

    def subject(self, name):
        """(sshd, local port, token, tunnel pid fn, reaction test factory) of a subject."""
        if name == "jssh":
            port, tok = parse_url(self.jssh_url)
            return (
                self.sshd["jssh"],
                port,
                tok,
                self.jssh.tunnel_ssh,
                lambda: log_grew(self.jssh.log_path()),
            )
        a = self.autossh[name]
        pid = a["proc"].pid
        return (
            a["sshd"],
            a["port"],
            self.auto_jupyter[1],
            lambda: self.autossh_ssh(name),
            lambda: child_replaced(pid, self.autossh_ssh(name)),
        )

    def settle(self, name):
        """Before a fault: the tunnel answers, and jssh's supervisor is back in its steady
        state (phase up, probing every 2 s)."""
        _, port, tok, tunnel, _ = self.subject(name)
        deadline = now() + 90
        while now() < deadline:
            ok = wait_ok(port, tok, 5) is not None and tunnel() is not None
            if ok and (name != "jssh" or self.jssh.steady(30) is not None):
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"{name} did not settle")
        # A random phase against jssh's once-a-second probe, so detection is not phase-locked.
        time.sleep(self.args.settle_secs + random.uniform(0, 1))

    # --- the rest -------------------------------------------------------------------------------

    def meta(self):
        def out(argv):
            try:
                p = run(argv, check=False, timeout=30)
                return (p.stdout + p.stderr).strip().splitlines()[0]
            except (OSError, IndexError, subprocess.SubprocessError):
                return "?"

        cpu = "?"
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
        pip = run([f"{VENV}/bin/python", "-m", "pip", "list", "--format=json"], check=False).stdout
        versions = {p["name"].lower(): p["version"] for p in json.loads(pip or "[]")}
        jf_pip = Path(os.environ["JSSH_BENCH_JF"]).parent / "pip"
        jf_versions = {
            p["name"].lower(): p["version"]
            for p in json.loads(run([str(jf_pip), "list", "--format=json"], check=False).stdout or "[]")
        }
        commit = run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], check=False).stdout.strip()
        self.results["meta"] = {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cpu": f"{os.cpu_count()} × {cpu}",
            "memory": f"{mem_kb / 1024 / 1024:.0f} GiB",
            "os": f"{out(['sh', '-c', '. /etc/os-release; echo $PRETTY_NAME'])}, kernel {platform.release()}",
            "openssh": out(["ssh", "-V"]),
            "tmux": out(["tmux", "-V"]),
            "python": platform.python_version(),
            "jupyter": ", ".join(f"{k} {versions.get(k, '?')}" for k in ("jupyter_server", "jupyterlab", "notebook")),
            "autossh": out(["sh", "-c", "autossh -V 2>&1"]),
            "jupyter-forward": jf_versions.get("jupyter-forward", "?"),
            "jssh": f"{out([self.jssh.bin, '--version'])} ({commit or 'unknown commit'})",
            "runs": self.args.runs,
            "idle_secs": self.args.idle_secs,
            "blackhole_secs": self.args.blackhole_secs,
            "sleep_secs": self.args.sleep_secs,
            "outage_secs": self.args.outage_secs,
            "stagger_secs": self.args.stagger_secs,
            "quick": self.args.quick,
        }

    def keep_logs(self):
        """Copies the sandbox's logs to target/bench/logs for a post-mortem."""
        dest = ROOT / "target/bench/logs"
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        for f in [*SANDBOX.glob("*.log"), *SANDBOX.glob("autossh-*.out"), self.jssh.log_path()]:
            if f.exists():
                shutil.copy(f, dest / f.name)

    def teardown(self):
        self.keep_logs()
        for a in self.autossh.values():
            stop_process(a["proc"], 5)
        if self.auto_jupyter:
            kill_tmux_session("bench-autossh")
        self.jssh_down()
