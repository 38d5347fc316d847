"""The data path, for scripts/bench (issue #9): what a byte costs through jssh's local port,
against a plain `ssh -N -L` to the same remote Jupyter, started in the same run.

- Throughput: a 200 MB file, made by the bench in Jupyter's root dir, downloaded through
  Jupyter's `/files/` endpoint over a new connection each time; MB/s from connect to the
  last byte.
- Time to first byte of a new connection: connect, send `GET /api/status`, wait for the first
  byte of the answer. This is what the browser pays for every request that cannot reuse a
  connection, and what a supervisor in the data path (accepting and handing connections on)
  would add to.

The subjects take turns, so a change in the machine's load during the run (another process,
the page cache, CPU frequency) falls on all of them alike. The token always travels in an
`Authorization` header, never in a URL, so it is in no log line. Everything jssh-side is read
through `jssh status --json`, the interface users and scripts have, not from its state files.

Standard library only; measure() fills a dict that scripts/lib/report.py renders.
"""

import json
import os
import shlex
import socket
import statistics
import subprocess
import time

from jsshbench import SANDBOX, free_port, log, now, parse_url, run, stop_process, wait_ok

SIZE = 200 * 1000 * 1000  # bytes; MB and MB/s here are 10^6 bytes
# The subjects, as the results (and report.py) name them.
JSSH, PLAIN, DIRECT = "jssh", "plain ssh -L", "direct"
TTFB_SAMPLES = 50
# Enough to read the whole answer of /api/status in one go, and big enough that Python's
# per-call overhead does not limit the download (a 64 kB buffer costs ~10 % at 1 GB/s).
BUF = 1 << 20


# --- one connection --------------------------------------------------------------------------


def connect(addr, timeout):
    """A new connection to addr: a local TCP port (int) or a Unix socket path (str)."""
    if isinstance(addr, int):
        s = socket.create_connection(("127.0.0.1", addr), timeout=timeout)
        # The request goes out in one write, and the first byte is timed: no Nagle delay.
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(addr)
    except OSError:
        s.close()
        raise
    return s


def request(path, token):
    # A fixed Host that Jupyter accepts (it checks the Host of a request to a loopback
    # server), the same for every subject, so their requests are byte for byte the same.
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: token {token}\r\n"
        "Accept-Encoding: identity\r\nConnection: close\r\n\r\n"
    ).encode()


def read_head(s, buf, first=b""):
    """Reads up to the end of the response header; (status, content length, the part of the
    body read with it)."""
    data = bytearray(first)
    view = memoryview(buf)
    while b"\r\n\r\n" not in data:
        n = s.recv_into(buf)
        if not n:
            raise RuntimeError(f"the connection closed before the end of the header: {bytes(data[:200])!r}")
        data += view[:n]
    head, _, rest = bytes(data).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    words = lines[0].split()
    if len(words) < 2 or not words[0].startswith("HTTP/"):
        raise RuntimeError(f"not an HTTP answer: {lines[0]!r}")
    length = None
    for line in lines[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == "content-length":
            length = int(value)
    return int(words[1]), length, rest


def download(addr, token, path, size):
    """GET path over a new connection, reading the body to its end; seconds from connect to
    the last byte."""
    buf = bytearray(BUF)
    t0 = now()
    with connect(addr, 60) as s:
        s.sendall(request(path, token))
        status, length, rest = read_head(s, buf)
        got = len(rest)
        if status != 200 or length != size:
            raise RuntimeError(f"GET {path} answered {status} with {length} bytes, expected 200 with {size}")
        while got < length:
            n = s.recv_into(buf)
            if not n:
                raise RuntimeError(f"GET {path}: the connection closed after {got} of {length} bytes")
            got += n
        t = now() - t0
    return t


def first_byte(addr, token):
    """Seconds from the start of connect() to the first byte of /api/status's answer, on a new
    connection; the answer must be a 200 (a 403 or a login page would be timed wrongly)."""
    buf = bytearray(BUF)
    t0 = now()
    with connect(addr, 10) as s:
        s.sendall(request("/api/status", token))
        first = s.recv(1)
        t = now() - t0
        if not first:
            raise RuntimeError("the connection closed without an answer")
        status, length, rest = read_head(s, buf, first)
        got = len(rest)
        # Drain the body, so the next sample does not overlap this one's teardown.
        while length is not None and got < length and (n := s.recv_into(buf)):
            got += n
    if status != 200:
        raise RuntimeError(f"/api/status answered {status}")
    return t


# --- the subjects ----------------------------------------------------------------------------


def remote_end(status):
    """What jssh forwards to on the remote, from `jssh status --json`: a Unix socket path or
    127.0.0.1:PORT (jssh's forward_spec in src/ssh.rs uses the remote's loopback)."""
    if status.get("remote_socket"):
        return status["remote_socket"]
    if status.get("remote_port"):
        return f"127.0.0.1:{status['remote_port']}"
    raise RuntimeError(
        "`jssh status --json` gives neither remote_socket nor remote_port: "
        "the plain `ssh -L` baseline needs one of them to reach the same Jupyter"
    )


class PlainForward:
    """`ssh -N -L 127.0.0.1:P:REMOTE ALIAS` through the same ssh config and alias as jssh, on
    a connection of its own: with a ControlMaster it would hand its forward to the master and
    exit (FIELD-NOTES), and the data would then ride someone else's connection."""

    def __init__(self, ssh_config, alias, remote, token):
        self.port = free_port()
        self.argv = [
            "ssh",
            "-F",
            ssh_config,
            "-o",
            "ControlMaster=no",
            "-o",
            "ControlPath=none",
            # Fail, rather than run without the forward, if the port was taken meanwhile.
            "-o",
            "ExitOnForwardFailure=yes",
            "-o",
            "BatchMode=yes",
            "-N",
            "-T",
            "-n",
            "-L",
            f"127.0.0.1:{self.port}:{remote}",
            "--",
            alias,
        ]
        with open(SANDBOX / "datapath-plain-ssh.log", "ab") as out:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        if wait_ok(self.port, token, 30) is None:
            self.stop()
            raise RuntimeError(f"the plain forward (`{shlex.join(self.argv)}`) did not answer within 30 s")

    def stop(self):
        stop_process(self.proc, 5)


# --- the measurements ------------------------------------------------------------------------


def remote_file(ssh_config, alias, action, name, size=0):
    """Makes (random bytes, so no compression on the way can flatter a subject) or removes the
    download in the remote's home, which is Jupyter's root dir when `jssh up` has no --dir
    (src/remote.rs: `cd` before starting it); `jssh status --json` has no root dir to ask.
    The values reach the remote shell as positional parameters."""
    scripts = {
        "make": 'head -c "$1" /dev/urandom > "$HOME/$2.part" && mv "$HOME/$2.part" "$HOME/$2"',
        "remove": 'rm -f "$HOME/$2" "$HOME/$2.part"',
    }
    remote = shlex.join(["sh", "-c", scripts[action], "sh", str(size), name])
    ssh = ["ssh", "-F", ssh_config, "-o", "ControlMaster=no", "-o", "ControlPath=none", "-o", "BatchMode=yes"]
    run([*ssh, "--", alias, remote], timeout=120)


def check_visible(port, token, name, size):
    """Jupyter sees the file, with its full size: the home dir was its root dir after all."""
    buf = bytearray(BUF)
    with connect(port, 10) as s:
        s.sendall(request(f"/api/contents/{name}?content=0", token))
        status, _, body = read_head(s, buf)
        while chunk := s.recv(BUF):  # Connection: close, so the body ends where the stream does
            body += chunk
    seen = json.loads(body).get("size") if status == 200 else None
    if seen != size:
        raise RuntimeError(
            f"Jupyter does not see {name} ({size} bytes) in its root dir (HTTP {status}, size {seen}): "
            "is its root dir not the remote's home (`jssh up --dir`)? "
            "`jssh status --json` would need a root_dir field"
        )


def rotated(i, subjects):
    """The order of round i: rotated every round, so no subject always goes first or always
    right after the same other one (whose connection may still be closing)."""
    k = i % len(subjects)
    return subjects[k:] + subjects[:k]


def p90(xs):
    return statistics.quantiles(xs, n=10, method="inclusive")[8] if len(xs) > 1 else xs[0]


def measure(out, jssh, ssh_config, runs, samples=TTFB_SAMPLES):
    """Fills `out` as it goes (so a failure keeps what was measured): the remote end, MB/s per
    download, first-byte ms per connection, per subject."""
    st = jssh.status()
    if st.get("state") != "up" or not st.get("url"):
        raise RuntimeError(f"jssh is not up: `jssh status --json` says {st.get('state')!r}")
    port, token = parse_url(st["url"])
    if st.get("local_port") not in (None, port):
        raise RuntimeError(f"the URL's port {port} is not local_port {st['local_port']}")
    remote = remote_end(st)
    out.update(size_bytes=SIZE, remote=remote, runs=runs, samples=samples, throughput_mbps={}, ttfb_ms={})
    name = f"jssh-bench-datapath-{os.urandom(4).hex()}.bin"
    plain = None
    try:
        remote_file(ssh_config, jssh.alias, "make", name, SIZE)
        check_visible(port, token, name, SIZE)
        plain = PlainForward(ssh_config, jssh.alias, remote, token)
        addrs = {JSSH: port, PLAIN: plain.port}
        # The sandbox's remote is this machine, so Jupyter itself can be reached without any
        # tunnel: the ceiling both tunnels are measured under (how much of the time is ssh).
        addrs[DIRECT] = remote if remote.startswith("/") else int(remote.rsplit(":", 1)[1])
        names = list(addrs)
        path = f"/files/{name}"
        log(f"datapath: {SIZE / 1e6:.0f} MB through jssh's port {port}, a plain ssh -L on {plain.port} and directly")
        for n in names:  # uncounted: the file into the page cache, each path warmed up
            download(addrs[n], token, path, SIZE)
        for r in range(runs):
            for n in rotated(r, names):
                secs = download(addrs[n], token, path, SIZE)
                out["throughput_mbps"].setdefault(n, []).append(SIZE / 1e6 / secs)
            log(
                f"datapath throughput {r + 1}/{runs}: "
                + ", ".join(f"{n} {out['throughput_mbps'][n][-1]:.0f} MB/s" for n in names)
            )
        for _ in range(5):  # uncounted
            for n in names:
                first_byte(addrs[n], token)
        for i in range(samples):
            for n in rotated(i, names):
                out["ttfb_ms"].setdefault(n, []).append(first_byte(addrs[n], token) * 1000)
                # Let the last connection's channel close: a new request from a browser usually
                # finds the tunnel idle.
                time.sleep(0.005)
        for n in names:
            xs, ms = out["throughput_mbps"][n], out["ttfb_ms"][n]
            log(
                f"datapath {n}: {statistics.median(xs):.0f} MB/s median of {len(xs)}; first byte "
                f"median {statistics.median(ms):.2f} ms, p90 {p90(ms):.2f} ms of {len(ms)}"
            )
    finally:
        if plain is not None:
            plain.stop()
        remote_file(ssh_config, jssh.alias, "remove", name)
    return out
