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
"""

import argparse
import datetime
import http.cookiejar
import json
import os
import platform
import queue
import random
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, str(Path(__file__).resolve().parent))
import browser_bench  # noqa: E402
import datapath_bench  # noqa: E402
import report  # noqa: E402
from jsshbench import (  # noqa: E402
    CLK_TCK,
    SANDBOX,
    Blackhole,
    Jssh,
    Sshd,
    Ticker,
    Watch,
    alive,
    api_status,
    child_replaced,
    children,
    cmdline,
    free_port,
    log,
    log_grew,
    now,
    parse_url,
    port_open,
    run,
    signal_all,
    stop_process,
    term_as_exit,
    usage,
    wait_gone,
    wait_ok,
)

ROOT = Path(__file__).resolve().parents[2]
VENV = os.environ.get("JSSH_TEST_VENV", "")
ALIAS = "bench"
MANUAL_CONFIG = SANDBOX / "ssh" / "manual_config"
TMUX_SOCKET = SANDBOX / "tmux" / f"tmux-{os.getuid()}" / "default"
JF_HOME = SANDBOX / "jf-home"

SEED = "autossh, seed config"
TUNED = "autossh, tuned"
FAULTS = ["ssh SIGKILL", "sshd restart", "blackhole", "Jupyter crash"]


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

    # --- cold: from nothing to the first 200 ------------------------------------------------

    def cold_floor(self):
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

    def cold_manual(self, master):
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

    def cold_jssh(self):
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

    def cold_jf(self):
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
            leftovers = [
                int(p) for p in os.listdir("/proc") if p.isdigit() and "--ip=localhost" in cmdline(int(p))
            ]
            signal_all(leftovers, signal.SIGTERM)
            wait_gone(leftovers, 10)

    def cold(self):
        subjects = {
            "floor": self.cold_floor,
            "manual": lambda: self.cold_manual(None),
            "manual_cm": lambda: self.cold_manual("cold"),
            "manual_warm_cm": lambda: self.cold_manual("warm"),
            "jssh": lambda: self._cold_jssh_round(),
            "jupyter_forward": self.cold_jf,
        }
        if self.args.skip_jf:
            del subjects["jupyter_forward"]
        cold = self.results["cold"]
        log("cold: warming up (uncounted: one direct Jupyter start and one jssh up/down)")
        for what, fn in (("floor", self.cold_floor), ("jssh", self._cold_jssh_round)):
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - reported, the bench goes on
                self.error(f"cold warm-up {what}", e)
        names = list(subjects)
        for r in range(self.args.runs):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                try:
                    secs = subjects[name]()
                    cold.setdefault(name, []).append(secs)
                    log(f"cold {r + 1}/{self.args.runs} {name}: {secs:.3f} s")
                except Exception as e:  # noqa: BLE001
                    self.error(f"cold run {r + 1} {name}", e)
            self.save()

    def _cold_jssh_round(self):
        try:
            return self.cold_jssh()
        finally:
            self.jssh_down()

    # --- warm commands --------------------------------------------------------------------------

    def warm(self):
        self.cold_jssh()  # leaves it up for the rest of the run
        commands = {
            "jssh up -d": ["up", ALIAS, "-d"],
            "jssh status": ["status"],
            "jssh url": ["url", ALIAS],
            "jssh --version": ["--version"],
        }
        for r in range(max(self.args.runs, 10)):
            for name, argv in commands.items():
                secs, _ = self.jssh.timed(*argv, timeout=30)
                self.results["warm"].setdefault(name, []).append(secs)
        for name, xs in self.results["warm"].items():
            log(f"warm {name}: median {statistics.median(xs):.3f} s")
        self.save()

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

    # --- idle -----------------------------------------------------------------------------------

    def idle(self):
        secs = self.args.idle_secs
        sup = self.jssh.supervisor_pid()
        self.jssh.steady()
        active = self.jssh.tunnel_ssh()
        procs = {"jssh supervisor": sup, "jssh's ssh (tunnel)": active}
        # Other children: a standby connection kept ready to take the forward over (`ssh -N`),
        # and the remote watch that reports a Jupyter exit (a client of the tunnel's connection).
        others = [k for k in children(sup) if k != active and alive(k)]
        standbys = [k for k in others if "-N" in cmdline(k)]
        for i, kid in enumerate(standbys):
            procs[f"jssh's ssh (standby{f' {i + 1}' if i else ''})"] = kid
        for i, kid in enumerate(k for k in others if k not in standbys):
            procs[f"jssh's ssh (remote watch{f' {i + 1}' if i else ''})"] = kid
        for variant in (TUNED, SEED):
            procs[f"autossh ({variant.split(', ')[1]})"] = self.autossh[variant]["proc"].pid
            procs[f"its ssh ({variant.split(', ')[1]})"] = self.autossh_ssh(variant)
        log(f"idle: sampling {len(procs)} processes over {secs:.0f} s")
        before = {name: usage(pid) for name, pid in procs.items()}
        time.sleep(secs)
        for name, pid in procs.items():
            if not alive(pid):
                self.error("idle", f"{name} (pid {pid}) ended during the idle window")
                continue
            after = usage(pid)
            b = before[name]
            self.results["idle"][name] = {
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
            r = self.results["idle"][name]
            log(
                f"idle {name}: RSS {r['rss_kb']} kB, CPU {r['cpu_ticks']} ticks ({r['cpu_pct']:.3f} %), "
                f"{r['wakeups_per_s']:.2f} wakeups/s"
            )
        self.save()

    # --- the data path --------------------------------------------------------------------------

    def datapath(self):
        """Throughput and time to first byte through jssh's port against a plain `ssh -L` to
        the same Jupyter (scripts/lib/datapath_bench.py), on the tunnel that warm() (or, with
        `--only datapath`, cold_jssh()) left up."""
        try:
            datapath_bench.measure(
                self.results.setdefault("datapath", {}),
                self.jssh,
                os.environ["JSSH_SSH_CONFIG"],
                max(self.args.runs, 5),  # ~1 s a download: cheap enough for a steady median
            )
        except Exception as e:  # noqa: BLE001 - reported, the bench goes on
            self.error("datapath", e)
        self.save()

    # --- faults ---------------------------------------------------------------------------------

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

    def log_mark(self):
        try:
            return self.jssh.log_path().stat().st_size
        except OSError:
            return 0

    def log_since(self, mark):
        with open(self.jssh.log_path(), "rb") as f:
            f.seek(mark)
            return f.read().decode(errors="replace").splitlines()

    def fault_kill(self, name):
        return self.sigkill(name, self.subject(name)[3]())

    def sigkill(self, name, pid):
        """SIGKILLs pid; when the subject reacts and when its URL answers again."""
        _, port, tok, _, reaction = self.subject(name)
        watch = Watch(reaction(), 60)
        t0 = now()
        os.kill(pid, signal.SIGKILL)
        t_ok = wait_ok(port, tok, 60)
        t_react = watch.stop()
        return {"recover": t_ok and t_ok - t0, "detect": t_react and t_react - t0}

    def fault_restart(self, name):
        sshd, port, tok, _, reaction = self.subject(name)
        watch = Watch(reaction(), 120)
        t0 = now()
        sshd.stop()
        time.sleep(self.args.outage_secs)
        t_back = sshd.start()
        t_ok = wait_ok(port, tok, self.args.recover_timeout)
        t_react = watch.stop()
        return {
            "recover": t_ok and t_ok - t_back,
            "total": t_ok and t_ok - t0,
            "detect": t_react and t_react - t0,
        }

    def fault_jupyter(self, name):
        pid = self.jssh.status()["remote_pid"]
        argv = " ".join(cmdline(pid))
        if "jupyter" not in argv:
            raise RuntimeError(f"remote_pid {pid} is not Jupyter: {argv!r}")
        return self.sigkill(name, pid)

    def blackhole_one(self, name, offset, out):
        """One subject's blackhole: starts after `offset` s, lasts blackhole_secs."""
        sshd, port, tok, _, reaction = self.subject(name)
        time.sleep(offset)
        hole = Blackhole(sshd.port)
        watch = Watch(reaction(), self.args.blackhole_secs + self.args.recover_timeout)
        # A user's open notebook tab keeps talking to the server; without any traffic an idle
        # ssh connection would not even notice a blackhole shorter than its keepalives.
        tab = Ticker(lambda: api_status(port, tok, 1.0), 1.0)
        try:
            t0 = hole.add()
            time.sleep(self.args.blackhole_secs)
        finally:
            t_back = hole.remove()
        tab.stop()
        t_ok = wait_ok(port, tok, self.args.recover_timeout)
        t_react = watch.stop()
        out[name] = {
            "recover": t_ok - t_back if t_ok else None,
            "detect": t_react - t0 if t_react and t_react < t_back else None,
        }

    def fault_blackholes(self, names):
        """The subjects' blackholes overlap, staggered so that their recoveries do not compete
        for the CPU (each has its own sshd, so its own port to drop)."""
        out = {}
        threads = [
            threading.Thread(target=self.blackhole_one, args=(name, i * self.args.stagger_secs, out))
            for i, name in enumerate(names)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return out

    def faults(self):
        subjects = ["jssh", SEED, TUNED]
        rec = self.results["recovery"]
        logs = self.results["logs"]
        plan = [
            ("ssh SIGKILL", self.fault_kill, subjects),
            ("Jupyter crash", self.fault_jupyter, ["jssh"]),
            ("sshd restart", self.fault_restart, subjects),
        ]
        for fault, fn, names in plan:
            if fault not in self.args.faults:
                continue
            runs = self.args.runs
            for r in range(runs):
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    try:
                        self.fresh(name)
                        self.settle(name)
                        mark = self.log_mark()
                        res = fn(name)
                        if name == "jssh":
                            time.sleep(0.2)
                            res["log"] = self.log_since(mark)
                        rec.setdefault(fault, {}).setdefault(name, []).append(res)
                        log(f"{fault} {r + 1}/{runs} {name}: {fmt(res)}")
                    except Exception as e:  # noqa: BLE001
                        self.error(f"{fault} run {r + 1} {name}", e)
                self.save()
        if "blackhole" in self.args.faults:
            for r in range(self.args.runs):
                order = subjects[r % 3 :] + subjects[: r % 3]
                try:
                    for name in order:
                        self.fresh(name)
                        self.settle(name)
                    mark = self.log_mark()
                    out = self.fault_blackholes(order)
                    time.sleep(0.3)  # the supervisor logs its reconnect after its own probe
                    out["jssh"]["log"] = self.log_since(mark)
                    for name, res in out.items():
                        rec.setdefault("blackhole", {}).setdefault(name, []).append(res)
                        log(f"blackhole {r + 1}/{self.args.runs} {name}: {fmt(res)}")
                except Exception as e:  # noqa: BLE001
                    self.error(f"blackhole run {r + 1}", e)
                self.save()
        logs["supervisor"] = self.jssh.log_path().read_text(errors="replace").splitlines()[-400:]

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
            "jupyter": ", ".join(
                f"{k} {versions.get(k, '?')}" for k in ("jupyter_server", "jupyterlab", "notebook")
            ),
            "autossh": out(["sh", "-c", "autossh -V 2>&1"]),
            "jupyter-forward": jf_versions.get("jupyter-forward", "?"),
            "jssh": f"{out([self.jssh.bin, '--version'])} ({commit or 'unknown commit'})",
            "runs": self.args.runs,
            "idle_secs": self.args.idle_secs,
            "blackhole_secs": self.args.blackhole_secs,
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


def fmt(res):
    return ", ".join(f"{k} {v:.3f} s" if isinstance(v, float) else f"{k} {v}" for k, v in res.items() if k != "log")


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
    p.add_argument("--skip-jf", action="store_true", help="leave out jupyter-forward")
    p.add_argument(
        "--only",
        default="cold,warm,idle,datapath,faults,browser",
        help="sections (cold,warm,idle,datapath,faults,browser)",
    )
    p.add_argument("--faults", default=",".join(FAULTS))
    browser_bench.add_arguments(p)
    p.add_argument("--out", help="markdown report (default docs/BENCHMARKS.md, target/bench/ with --quick)")
    p.add_argument("--chart", help="PNG chart (default docs/bench-recovery.png)")
    p.add_argument("--json", help="raw results (default target/bench/results.json)")
    args = p.parse_args()
    args.idle_secs = args.idle_secs or (10.0 if args.quick else 60.0)
    args.blackhole_secs = args.blackhole_secs or (8.0 if args.quick else 20.0)
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
            bench.cold()
        if {"warm", "idle", "faults", "browser"} & set(sections):
            bench.warm()
        elif "datapath" in sections:
            bench.cold_jssh()  # a tunnel to measure, without the warm commands' timings
        if {"idle", "faults", "browser"} & set(sections):
            bench.start_autossh()
        if "idle" in sections:
            bench.idle()
        # After idle (its heavy traffic must not fall in the idle window), before faults (which
        # restart the supervisor over and over).
        if "datapath" in sections:
            bench.datapath()
        if "faults" in sections:
            bench.faults()
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
