"""Helpers shared by scripts/bench and scripts/faults: the sandbox's sshds (full restarts), a
silent network blackhole with iptables, the HTTP probe, /proc readings and a thin jssh wrapper.

Standard library only. Every wait here is bounded by a deadline. The sandbox itself is built
by scripts/lib/sandbox.sh, which exports SANDBOX and SANDBOX_TAG.
"""

import json
import os
import shlex
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

SANDBOX = Path(os.environ.get("SANDBOX", "/nonexistent"))
TAG = os.environ.get("SANDBOX_TAG", "jssh-sandbox")
CLK_TCK = os.sysconf("SC_CLK_TCK")

now = time.monotonic


def log(message):
    print(message, flush=True)


# --- processes -------------------------------------------------------------------------------


def alive(pid):
    """Whether pid runs (a zombie does not; PID 1 here reaps orphans slowly)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def stat_fields(pid):
    """Fields of /proc/PID/stat after the command name (index 0 is the state)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def children(pid):
    """Direct children of pid (all its threads')."""
    kids = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids += [int(p) for p in f.read().split()]
    except OSError:
        pass
    return kids


def descendants(pid):
    out, todo = [], [pid]
    while todo:
        for kid in children(todo.pop()):
            out.append(kid)
            todo.append(kid)
    return out


def zombies(pid):
    return [k for k in children(pid) if not alive(k)]


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def status_fields(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def usage(pid):
    """CPU ticks, RSS (kB) and context switches of pid right now."""
    st = stat_fields(pid)
    status = status_fields(pid)
    return {
        "ticks": int(st[11]) + int(st[12]),  # utime + stime
        "rss_kb": int(status["VmRSS"].split()[0]),
        "anon_kb": int(status["RssAnon"].split()[0]),
        "pss_kb": pss_kb(pid),
        "voluntary": int(status["voluntary_ctxt_switches"]),
        "involuntary": int(status["nonvoluntary_ctxt_switches"]),
    }


def pss_kb(pid):
    """Proportional set size: shared pages (libc, the binary) divided among their users."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def wait_gone(pids, timeout):
    deadline = now() + timeout
    while now() < deadline:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.01)
    return False


def signal_all(pids, sig):
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def stop_process(proc, timeout=5):
    """TERM, wait, KILL a Popen."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def run(argv, timeout=60, check=True, **kw):
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    kw.setdefault("stdin", subprocess.DEVNULL)
    proc = subprocess.run(argv, timeout=timeout, text=True, **kw)
    if check and proc.returncode != 0:
        raise RuntimeError(f"`{shlex.join(map(str, argv))}` exited {proc.returncode}: {proc.stderr.strip()}")
    return proc


def timed(argv, timeout=60, **kw):
    """Runs argv; returns (seconds, CompletedProcess)."""
    t0 = now()
    proc = run(argv, timeout=timeout, **kw)
    return now() - t0, proc


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port, timeout=0.2):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


class Watch:
    """Polls `test` on a thread every `every` s until it is true or `timeout` passes; `.time`
    is the monotonic time it first held (None if it never did)."""

    def __init__(self, test, timeout, every=0.005):
        self.time = None
        self._stop = threading.Event()
        self._test, self._deadline, self._every = test, now() + timeout, every
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set() and now() < self._deadline:
            try:
                if self._test():
                    self.time = now()
                    return
            except OSError:
                pass
            time.sleep(self._every)

    def stop(self):
        self._stop.set()
        self._thread.join()
        return self.time


class Ticker:
    """Calls `fn` every `every` s on a thread until stop()."""

    def __init__(self, fn, every):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(fn, every), daemon=True)
        self._thread.start()

    def _run(self, fn, every):
        while not self._stop.wait(every):
            fn()

    def stop(self):
        self._stop.set()
        self._thread.join()


def log_grew(path):
    """A test for Watch: the file has grown since now."""
    size = os.stat(path).st_size
    return lambda: os.stat(path).st_size > size


def child_replaced(parent, old):
    """A test for Watch: parent has a live child other than old (it started a new one)."""
    return lambda: any(k != old and alive(k) for k in children(parent))


# --- HTTP ------------------------------------------------------------------------------------


def api_status(port, token, timeout=0.5):
    """GET /api/status with the token, as jssh's own probe does; the HTTP status or None."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(
                f"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Authorization: token {token}\r\nConnection: close\r\n\r\n".encode()
            )
            data = b""
            while b"\n" not in data:
                chunk = s.recv(256)
                if not chunk:
                    break
                data += chunk
        words = data.split(b"\r\n", 1)[0].split()
        return int(words[1]) if len(words) > 1 and words[0].startswith(b"HTTP/") else None
    except (OSError, ValueError):
        return None


def wait_ok(port, token, timeout, every=0.01, attempt=0.5):
    """Polls until /api/status answers 200; the monotonic time of that answer, or None.
    An attempt that hangs (a stalled path) is given up after `attempt` s and retried at once;
    one that fails fast is retried after `every` s."""
    deadline = now() + timeout
    while now() < deadline:
        t = now()
        if api_status(port, token, min(attempt, max(deadline - t, 0.01))) == 200:
            return now()
        if now() - t < every:
            time.sleep(every)
    return None


def parse_url(url):
    """(port, token) of http://127.0.0.1:PORT/lab?token=TOKEN."""
    from urllib.parse import parse_qs, urlparse

    u = urlparse(url)
    return u.port, parse_qs(u.query)["token"][0]


# --- the sandbox's sshds ---------------------------------------------------------------------


class Sshd:
    """One of the sandbox's sshds (started by sandbox.sh's `sandbox_sshd NAME`)."""

    def __init__(self, name):
        self.name = name
        self.conf = SANDBOX / f"sshd-{name}.conf"
        self.pidfile = SANDBOX / f"sshd-{name}.pid"
        self.port = int((SANDBOX / f"sshd-{name}.port").read_text())

    def listener(self):
        try:
            pid = int(self.pidfile.read_text())
        except (OSError, ValueError):
            return None
        return pid if alive(pid) else None

    def stop(self):
        """A full outage: the listener and every session process (established connections
        close), as when the server goes down. Returns once the port refuses."""
        pid = self.listener()
        if pid is None:
            return
        pids = [pid, *descendants(pid)]
        signal_all(pids, signal.SIGTERM)
        if not wait_gone(pids, 3):
            signal_all(pids, signal.SIGKILL)
            wait_gone(pids, 3)
        deadline = now() + 3
        while port_open(self.port) and now() < deadline:
            time.sleep(0.01)

    def start(self, timeout=10):
        """Starts it again on the same port; the monotonic time it accepts connections."""
        subprocess.run(
            ["/usr/sbin/sshd", "-f", str(self.conf), "-E", str(SANDBOX / f"sshd-{self.name}.log")],
            check=True,
            timeout=timeout,
        )
        deadline = now() + timeout
        while now() < deadline:
            if port_open(self.port, 0.05):
                return now()
            time.sleep(0.002)
        raise RuntimeError(f"sshd {self.name} did not come back on port {self.port}")


class Blackhole:
    """Silently drops every TCP packet to and from a loopback port (iptables DROP, both
    directions), until removed. Removes exactly the rules it added, also on error: use it as a
    context manager, or call remove() in a finally. Rules carry the sandbox's tag, so
    sandbox.sh's cleanup removes them too if this process is killed."""

    def __init__(self, port):
        self.rules = [
            ["-i", "lo", "-p", "tcp", direction, str(port), "-m", "comment", "--comment", TAG, "-j", "DROP"]
            for direction in ("--dport", "--sport")
        ]
        self.added = []

    def add(self):
        for rule in self.rules:
            subprocess.run(["iptables", "-I", "INPUT", *rule], check=True, timeout=10)
            self.added.append(rule)
        return now()

    def remove(self):
        while self.added:
            rule = self.added.pop()
            subprocess.run(["iptables", "-D", "INPUT", *rule], check=False, timeout=10)
        return now()

    def __enter__(self):
        self.add()
        return self

    def __exit__(self, *exc):
        self.remove()


def term_as_exit():
    """SIGTERM/SIGHUP raise SystemExit, so `finally` blocks (rule removal) run."""

    def handler(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)


# --- jssh ------------------------------------------------------------------------------------


class Jssh:
    def __init__(self, binary, alias):
        self.bin, self.alias = str(binary), alias
        self.state_dir = Path(os.environ["JSSH_STATE_DIR"])

    def __call__(self, *args, timeout=120, check=True):
        return run([self.bin, *args], timeout=timeout, check=check)

    def timed(self, *args, timeout=120):
        return timed([self.bin, *args], timeout=timeout)

    def status(self):
        rows = json.loads(self(*["status", self.alias, "--json"]).stdout)
        return rows[0]

    def log_path(self):
        return self.state_dir / self.alias / "supervisor.log"

    def local_status(self):
        """`jssh status --json --local`: this machine's view, asking no remote (fast)."""
        try:
            return json.loads(self(*["status", self.alias, "--json", "--local"], check=False).stdout)[0]
        except (ValueError, IndexError):
            return {}

    def supervisor_pid(self):
        """The running supervisor, as jssh finds it (by the lease it holds, not a pidfile)."""
        return self.local_status().get("supervisor_pid")

    def tunnel_ssh(self, supervisor=None):
        """The ssh master carrying the tunnel right now (None while none does)."""
        del supervisor  # jssh knows which of its masters is live
        return self.local_status().get("tunnel_ssh_pid")

    def steady(self, timeout=30, quiet=1.2):
        """Waits until the supervisor is up and its children have not changed for `quiet` s
        (e.g. a standby connection it starts after coming up); its children, or None."""
        deadline = now() + timeout
        last, since = None, now()
        while now() < deadline:
            sup = self.supervisor_pid()
            kids = sorted(k for k in children(sup) if alive(k)) if sup else None
            if kids != last:
                last, since = kids, now()
            elif kids and self.is_up() and now() - since >= quiet:
                return kids
            time.sleep(0.05)
        return None

    def url(self):
        return self("url", self.alias).stdout.strip()

    def is_up(self):
        """Whether `jssh status` says the tunnel is up (its local view: no remote is asked)."""
        return self.local_status().get("state") == "up"
