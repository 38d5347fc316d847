"""A network change for scripts/bench's recovery faults (issue 14): a laptop moving to another
Wi-Fi. The client's address changes, the connections it had die without a word (no RST: the
server's answers go to an address nobody has any more), and new connections work.

Each subject's client side (jssh's supervisor, or autossh, with their ssh and local port) runs
in a network namespace of its own, so the change and the netlink events it raises stay there
and never touch another subject or the machine. The namespace's `wlan0` is one end of a veth
pair; the other end, in the machine's namespace, holds the server's address 10.201.N.1, on
which an sshd of the subject's own listens (the same config as the subject's sandbox sshd,
same host key and port). The client has 10.201.N.2 at first, a /32 with a route to the server
that names it as the source; a change adds the next address, points the route at it, and
deletes the old one.

Needs root and `ip` (iproute2). Everything made here is removed by Lab.close() (call it in a
`finally`); the namespaces' names are also listed in $SANDBOX/netns, for scripts/bench's exit
trap should this process die without its `finally`.
"""

import ctypes
import os
import random
import shutil
import signal
import subprocess
import threading
import time

from bench_harness import MANUAL_CONFIG, SEED, TUNED, VENV, wait_port_free
from jsshbench import (
    SANDBOX,
    Jssh,
    Sshd,
    alive,
    child_replaced,
    children,
    descendants,
    free_port,
    log,
    log_grew,
    now,
    run,
    signal_all,
    stop_process,
    wait_gone,
    wait_ok,
)

ALIAS = "bench-nc"
CLONE_NEWNET = 0x40000000
LIBC = ctypes.CDLL(None, use_errno=True)
# The sandbox sshd each subject's own network-change sshd copies.
SSHD_OF = {"jssh": "jssh", SEED: "seed", TUNED: "tuned"}


def missing():
    """Why the network change cannot run here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "`ip` not found: install iproute2"
    return None


def ip(*args, check=True):
    return run(["ip", *args], timeout=10, check=check)


class Netns:
    """A client namespace and its veth pair (see the module's doc). `ip netns add` fails for a
    name that exists, so the first free `jsshbench-N` claims N: the subnet and the veth's name,
    also against another bench running at the same time."""

    def __init__(self):
        for n in range(1, 251):
            if ip("netns", "add", f"jsshbench-{n}", check=False).returncode == 0:
                break
        else:
            raise RuntimeError("no free network namespace name jsshbench-1…250")
        self.name, self.n = f"jsshbench-{n}", n
        with open(SANDBOX / "netns", "a") as f:
            f.write(self.name + "\n")
        self.host_if = f"jsbh{n}"
        self.server = f"10.201.{n}.1"
        self.host = 2  # the client's address is 10.201.N.host
        try:
            ip("link", "add", self.host_if, "type", "veth", "peer", "name", "wlan0", "netns", self.name)
            ip("addr", "add", f"{self.server}/32", "dev", self.host_if)
            ip("link", "set", self.host_if, "up")
            ip("route", "add", f"10.201.{n}.0/24", "dev", self.host_if, "src", self.server)
            self.batch("link set lo up", "link set wlan0 up", f"addr add {self.client()}/32 dev wlan0")
            self.batch(f"route add {self.server}/32 dev wlan0 src {self.client()}")
        except Exception:
            self.delete()
            raise

    def client(self):
        return f"10.201.{self.n}.{self.host}"

    def batch(self, *commands):
        """`ip` commands run in the namespace by one `ip -batch` (one process, no pause between)."""
        subprocess.run(
            ["ip", "-n", self.name, "-batch", "-"],
            input="\n".join(commands) + "\n",
            text=True,
            check=True,
            timeout=10,
            capture_output=True,
        )

    def change(self):
        """The change: a new address, the route through it, the old address gone."""
        old = self.client()
        self.host += 1
        if self.host > 254:
            raise RuntimeError(f"{self.name}: out of addresses")
        new = self.client()
        self.batch(
            f"addr add {new}/32 dev wlan0",
            f"route replace {self.server}/32 dev wlan0 src {new}",
            f"addr del {old}/32 dev wlan0",
        )

    def argv(self, *argv):
        """argv run inside the namespace (`ip netns exec` execs it in place: same pid)."""
        return ["ip", "netns", "exec", self.name, *map(str, argv)]

    def call(self, fn, *args):
        """fn(*args) on a thread that has entered the namespace (sockets it opens are there)."""
        out = {}

        def body():
            try:
                fd = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
                try:
                    if LIBC.setns(fd, CLONE_NEWNET) != 0:
                        err = ctypes.get_errno()
                        raise OSError(err, f"setns {self.name}: {os.strerror(err)}")
                finally:
                    os.close(fd)
                out["value"] = fn(*args)
            except Exception as e:  # noqa: BLE001 - raised again on the caller's thread
                out["error"] = e

        t = threading.Thread(target=body)
        t.start()
        t.join()
        if "error" in out:
            raise out["error"]
        return out["value"]

    def delete(self):
        ip("netns", "del", self.name, check=False)
        # The namespace outlives its name while a process is still in it; the veth goes now.
        ip("link", "del", self.host_if, check=False)


class NsJssh(Jssh):
    """jssh run inside a namespace (its daemon, ssh and local port stay there)."""

    def __init__(self, binary, alias, netns):
        super().__init__(binary, alias)
        self.netns = netns

    def __call__(self, *args, timeout=120, check=True):
        return run(self.netns.argv(self.bin, *args), timeout=timeout, check=check)


class Subject:
    """One subject with its client side in a namespace: jssh (alias bench-nc, a Jupyter of its
    own) or an autossh as the bench's (the same settings, to the same Jupyter)."""

    def __init__(self, bench, name):
        self.bench, self.name = bench, name
        self.proc = None  # autossh
        self.port = free_port()  # free here, and in a new namespace anything is
        self.netns = Netns()
        try:
            self.sshd = self.start_sshd()
            if name == "jssh":
                self.jssh = NsJssh(bench.jssh.bin, ALIAS, self.netns)
                self.jssh("setup", ALIAS, "--host", self.netns.server, "--port", self.sshd.port, "--no-passphrase")
                self.jssh_up("--env", f"venv:{VENV}")
            else:
                self.token = bench.auto_jupyter[1]
                self.start_autossh()
        except Exception:
            self.close()
            raise

    def start_sshd(self):
        """The subject's sandbox sshd's config, listening on the server's address instead."""
        base = SSHD_OF[self.name]
        name = f"nc-{base}"
        conf = (SANDBOX / f"sshd-{base}.conf").read_text()
        conf = conf.replace("ListenAddress 127.0.0.1", f"ListenAddress {self.netns.server}")
        conf = conf.replace(f"sshd-{base}.pid", f"sshd-{name}.pid")
        (SANDBOX / f"sshd-{name}.conf").write_text(conf)
        port = (SANDBOX / f"sshd-{base}.port").read_text().strip()
        (SANDBOX / f"sshd-{name}.port").write_text(port + "\n")
        key = " ".join((SANDBOX / "host_key.pub").read_text().split()[:2])
        with open(SANDBOX / "ssh" / "known_hosts", "a") as f:
            f.write(f"[{self.netns.server}]:{port} {key}\n")
        sshd = Sshd(name)
        # Sshd.start waits for the port on 127.0.0.1; this one listens elsewhere.
        run(["/usr/sbin/sshd", "-f", str(sshd.conf), "-E", str(SANDBOX / f"sshd-{name}.log")], timeout=10)
        return sshd

    # --- jssh ---------------------------------------------------------------------------------

    def jssh_up(self, *extra):
        proc = self.jssh("up", ALIAS, "-d", "--port", self.port, *extra, timeout=120)
        url = [line for line in proc.stdout.splitlines() if line.startswith("http")][-1]
        self.token = url.split("token=", 1)[1]

    # --- autossh ------------------------------------------------------------------------------

    def start_autossh(self):
        host = SSHD_OF[self.name]
        rport = self.bench.auto_jupyter[0]
        env = dict(os.environ, AUTOSSH_LOGFILE=str(SANDBOX / f"autossh-nc-{host}.log"), AUTOSSH_LOGLEVEL="7")
        if self.name == TUNED:
            env["AUTOSSH_GATETIME"] = "0"
        argv = ["autossh", "-M", "0", "-N", "-T", "-F", MANUAL_CONFIG, "-o", f"HostName={self.netns.server}"]
        argv += ["-L", f"127.0.0.1:{self.port}:127.0.0.1:{rport}", host]
        with open(SANDBOX / f"autossh-nc-{host}.out", "ab") as out:
            self.proc = subprocess.Popen(
                self.netns.argv(*argv), env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out
            )
        if self.wait_ok(30) is None:
            raise RuntimeError(f"{self.name} (in {self.netns.name}) did not connect")

    def autossh_ssh(self):
        kids = [k for k in children(self.proc.pid) if alive(k)]
        return kids[0] if kids else None

    # --- what recovery_bench uses ----------------------------------------------------------------

    def wait_ok(self, timeout):
        """jsshbench.wait_ok through the subject's local port, from inside its namespace."""
        return self.netns.call(wait_ok, self.port, self.token, timeout)

    def fresh(self):
        """A fresh supervisor (jssh: `down --keep-remote`, `up -d`) or autossh: no backoff and
        no dead ssh carried over from the run before (after a capped run autossh's ssh may
        still be waiting for its keepalives)."""
        if self.name == "jssh":
            self.jssh("down", ALIAS, "--keep-remote", timeout=60)
            self.jssh_up()
        else:
            stop_process(self.proc, 5)
            self.netns.call(wait_port_free, self.port, 5)
            self.start_autossh()

    def settle(self, settle_secs):
        """The tunnel answers and (jssh) the supervisor is in its steady state."""
        deadline = now() + 90
        while now() < deadline:
            if self.wait_ok(5) is not None and self.tunnel() is not None:
                if self.name != "jssh" or self.jssh.steady(30) is not None:
                    break
        else:
            raise RuntimeError(f"{self.name} (in {self.netns.name}) did not settle")
        # A random phase against jssh's probes, as Bench.settle does.
        time.sleep(settle_secs + random.uniform(0, 1))

    def login_time(self):
        """A yardstick: how long a fresh plain login (`ssh HOST true`, its own connection) from
        the namespace to the subject's sshd takes right now."""
        host = {"jssh": "manual", SEED: "seed", TUNED: "tuned"}[self.name]
        argv = ["ssh", "-F", MANUAL_CONFIG, "-o", f"HostName={self.netns.server}", host, "true"]
        t0 = now()
        run(self.netns.argv(*argv), timeout=30)
        return now() - t0

    def tunnel(self):
        return self.jssh.tunnel_ssh() if self.name == "jssh" else self.autossh_ssh()

    def reaction(self):
        """A Watch test: jssh logs a line; autossh starts a new ssh."""
        if self.name == "jssh":
            return log_grew(self.jssh.log_path())
        return child_replaced(self.proc.pid, self.autossh_ssh())

    def close(self):
        """Stops the subject, its sshd (and its sessions) and deletes the namespace."""
        try:
            if hasattr(self, "jssh"):
                self.jssh("down", ALIAS, check=False, timeout=60)
                config = os.environ["JSSH_SSH_CONFIG"]
                run(self.netns.argv("ssh", "-F", config, "-O", "exit", ALIAS), check=False, timeout=10)
            if self.proc is not None:
                stop_process(self.proc, 5)
        except Exception as e:  # noqa: BLE001 - the namespace goes anyway
            log(f"  ! {self.name}: stopping it: {e}")
        finally:
            listener = self.sshd.listener() if hasattr(self, "sshd") else None
            if listener:
                # Not Sshd.stop(): that waits for the port on 127.0.0.1 to refuse, where the
                # sandbox's own sshd of the same port still listens.
                pids = [listener, *descendants(listener)]
                signal_all(pids, signal.SIGTERM)
                if not wait_gone(pids, 3):
                    signal_all(pids, signal.SIGKILL)
            self.netns.delete()
