"""Recovery from faults, for scripts/bench: jssh against autossh as the seeds configure it and
tuned, each through its own sshd, so a fault for one never touches another's connections. The
faults: the tunnel's ssh SIGKILLed, sshd restarted, the sshd's port silently blackholed, a
laptop's sleep (the subject's processes frozen while the path forgets their connections, as a
NAT does; new connections pass), a network change (a Wi-Fi switch: the client's address
changes under its connections, see netchange.py; each subject's client side runs in a network
namespace of its own for it), and (jssh only) the remote Jupyter SIGKILLed. Each subject is
made fresh and settled first (bench_harness.Bench.fresh/settle); each run says when the
subject reacted and when its URL answered again. measure(bench) fills
bench.results["recovery"] (with jssh's log lines of each run) and bench.results["logs"].
"""

import os
import signal
import subprocess
import threading
import time

import netchange
from bench_harness import SEED, TUNED
from jsshbench import TAG, Blackhole, Ticker, Watch, api_status, cmdline, descendants, log, now, wait_ok

FAULTS = ["ssh SIGKILL", "sshd restart", "blackhole", "Jupyter crash", "sleep", "network change"]


def log_mark(jssh):
    """Where jssh's supervisor log ends now."""
    try:
        return jssh.log_path().stat().st_size
    except OSError:
        return 0


def log_since(jssh, mark):
    """The supervisor log's lines since log_mark()."""
    with open(jssh.log_path(), "rb") as f:
        f.seek(mark)
        return f.read().decode(errors="replace").splitlines()


def fault_kill(bench, name):
    return sigkill(bench, name, bench.subject(name)[3]())


def sigkill(bench, name, pid):
    """SIGKILLs pid; when the subject reacts and when its URL answers again."""
    _, port, tok, _, reaction = bench.subject(name)
    watch = Watch(reaction(), 60)
    t0 = now()
    os.kill(pid, signal.SIGKILL)
    t_ok = wait_ok(port, tok, 60)
    t_react = watch.stop()
    return {"recover": t_ok and t_ok - t0, "detect": t_react and t_react - t0}


def fault_restart(bench, name):
    sshd, port, tok, _, reaction = bench.subject(name)
    watch = Watch(reaction(), 120)
    t0 = now()
    sshd.stop()
    time.sleep(bench.args.outage_secs)
    t_back = sshd.start()
    t_ok = wait_ok(port, tok, bench.args.recover_timeout)
    t_react = watch.stop()
    return {
        "recover": t_ok and t_ok - t_back,
        "total": t_ok and t_ok - t0,
        "detect": t_react and t_react - t0,
    }


def frozen_family(bench, name):
    """The processes a sleep freezes: jssh's supervisor, or autossh, and everything under it."""
    if name == "jssh":
        top = bench.jssh.supervisor_pid()
    else:
        top = bench.autossh[name]["proc"].pid
    return [top, *descendants(top)]


def established(sshd_port):
    """Local ports of the established connections to a subject's own sshd (each subject has
    its own, so these are all the subject's)."""
    out = subprocess.run(
        ["ss", "-Htn", "state", "established", f"( dport = :{sshd_port} )"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    return sorted({int(line.split()[2].rsplit(":", 1)[1]) for line in out.splitlines() if line.strip()})


def fault_sleep(bench, name):
    """A laptop's sleep: the subject's processes stopped for sleep_secs while the path forgets
    every connection they had (both directions dropped, by port pair; a new connection gets a
    new port and passes), then resumed. Time from resume until the URL answers."""
    sshd, port, tok, _, reaction = bench.subject(name)
    pids = frozen_family(bench, name)
    ports = established(sshd.port)
    rules = [
        ["-i", "lo", "-p", "tcp", "--sport", str(a), "--dport", str(b), "-m", "comment", "--comment", TAG, "-j", "DROP"]
        for local in ports
        for a, b in ((local, sshd.port), (sshd.port, local))
    ]
    added = []
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        for rule in rules:
            subprocess.run(["iptables", "-I", "INPUT", *rule], check=True, timeout=10)
            added.append(rule)
        time.sleep(bench.args.sleep_secs)
        watch = Watch(reaction(), bench.args.recover_timeout)
        t0 = now()
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
        t_ok = wait_ok(port, tok, bench.args.recover_timeout)
        t_react = watch.stop()
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except OSError:
                pass
        for rule in added:
            subprocess.run(["iptables", "-D", "INPUT", *rule], check=False, timeout=10)
    return {"recover": t_ok and t_ok - t0, "detect": t_react and t_react - t0, "connections": len(ports)}


def fault_jupyter(bench, name):
    pid = bench.jssh.status()["remote_pid"]
    argv = " ".join(cmdline(pid))
    if "jupyter" not in argv:
        raise RuntimeError(f"remote_pid {pid} is not Jupyter: {argv!r}")
    return sigkill(bench, name, pid)


def fault_netchange(bench, subject):
    """A Wi-Fi switch (netchange.Netns.change): the client's address changes under the
    subject's connections. Time from the change until the URL answers, given up after
    netchange_cap s (autossh's seed config needs its keepalives to expire: 30 s × 6)."""
    cap = bench.args.netchange_cap
    watch = Watch(subject.reaction(), cap)
    t0 = now()
    subject.netns.change()
    t_changed = now()
    t_ok = subject.wait_ok(cap)
    t_react = watch.stop()
    return {
        "recover": t_ok and t_ok - t0,
        "detect": t_react and t_react - t0,
        "change": t_changed - t0,
        "cap": cap,
        "login": subject.login_time(),
    }


def netchange_runs(bench):
    """The network change, bench.args.runs times per subject in a rotating order, each
    subject in a namespace of its own (netchange.Subject) for the whole fault."""
    why = netchange.missing()
    if why:
        log(f"network change: skipped: {why}")
        return
    rec = bench.results["recovery"]
    names = ["jssh", SEED, TUNED]
    subjects = {}
    try:
        for name in names:
            subjects[name] = netchange.Subject(bench, name)
        runs = bench.args.runs
        for r in range(runs):
            for name in names[r % 3 :] + names[: r % 3]:
                subject = subjects[name]
                try:
                    subject.fresh()
                    subject.settle(bench.args.settle_secs)
                    if name == "jssh":
                        mark = log_mark(subject.jssh)
                    res = fault_netchange(bench, subject)
                    if name == "jssh":
                        time.sleep(0.2)
                        res["log"] = log_since(subject.jssh, mark)
                    rec.setdefault("network change", {}).setdefault(name, []).append(res)
                    log(f"network change {r + 1}/{runs} {name}: {fmt(res)}")
                except Exception as e:  # noqa: BLE001
                    bench.error(f"network change run {r + 1} {name}", e)
            bench.save()
    except Exception as e:  # noqa: BLE001 - reported, the bench goes on
        bench.error("network change", e)
    finally:
        for subject in subjects.values():
            subject.close()
        if "jssh" in subjects and subjects["jssh"].jssh.log_path().exists():
            lines = subjects["jssh"].jssh.log_path().read_text(errors="replace").splitlines()
            bench.results["logs"]["supervisor, network change"] = lines[-200:]


def blackhole_one(bench, name, offset, out):
    """One subject's blackhole: starts after `offset` s, lasts blackhole_secs."""
    sshd, port, tok, _, reaction = bench.subject(name)
    time.sleep(offset)
    hole = Blackhole(sshd.port)
    watch = Watch(reaction(), bench.args.blackhole_secs + bench.args.recover_timeout)
    # A user's open notebook tab keeps talking to the server; without any traffic an idle
    # ssh connection would not even notice a blackhole shorter than its keepalives.
    tab = Ticker(lambda: api_status(port, tok, 1.0), 1.0)
    try:
        t0 = hole.add()
        time.sleep(bench.args.blackhole_secs)
    finally:
        t_back = hole.remove()
    tab.stop()
    t_ok = wait_ok(port, tok, bench.args.recover_timeout)
    t_react = watch.stop()
    out[name] = {
        "recover": t_ok - t_back if t_ok else None,
        "detect": t_react - t0 if t_react and t_react < t_back else None,
    }


def fault_blackholes(bench, names):
    """The subjects' blackholes overlap, staggered so that their recoveries do not compete
    for the CPU (each has its own sshd, so its own port to drop)."""
    out = {}
    threads = [
        threading.Thread(target=blackhole_one, args=(bench, name, i * bench.args.stagger_secs, out))
        for i, name in enumerate(names)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def measure(bench):
    """Each fault in bench.args.faults, bench.args.runs times per subject, in a rotating order."""
    subjects = ["jssh", SEED, TUNED]
    rec = bench.results["recovery"]
    logs = bench.results["logs"]
    plan = [
        ("ssh SIGKILL", fault_kill, subjects),
        ("Jupyter crash", fault_jupyter, ["jssh"]),
        ("sshd restart", fault_restart, subjects),
        ("sleep", fault_sleep, subjects),
    ]
    for fault, fn, names in plan:
        if fault not in bench.args.faults:
            continue
        runs = bench.args.runs
        for r in range(runs):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                try:
                    bench.fresh(name)
                    bench.settle(name)
                    mark = log_mark(bench.jssh)
                    res = fn(bench, name)
                    if name == "jssh":
                        time.sleep(0.2)
                        res["log"] = log_since(bench.jssh, mark)
                    rec.setdefault(fault, {}).setdefault(name, []).append(res)
                    log(f"{fault} {r + 1}/{runs} {name}: {fmt(res)}")
                except Exception as e:  # noqa: BLE001
                    bench.error(f"{fault} run {r + 1} {name}", e)
            bench.save()
    if "blackhole" in bench.args.faults:
        for r in range(bench.args.runs):
            order = subjects[r % 3 :] + subjects[: r % 3]
            try:
                for name in order:
                    bench.fresh(name)
                    bench.settle(name)
                mark = log_mark(bench.jssh)
                out = fault_blackholes(bench, order)
                time.sleep(0.3)  # the supervisor logs its reconnect after its own probe
                out["jssh"]["log"] = log_since(bench.jssh, mark)
                for name, res in out.items():
                    rec.setdefault("blackhole", {}).setdefault(name, []).append(res)
                    log(f"blackhole {r + 1}/{bench.args.runs} {name}: {fmt(res)}")
            except Exception as e:  # noqa: BLE001
                bench.error(f"blackhole run {r + 1}", e)
            bench.save()
    if "network change" in bench.args.faults:
        netchange_runs(bench)
    logs["supervisor"] = bench.jssh.log_path().read_text(errors="replace").splitlines()[-400:]


def fmt(res):
    return ", ".join(f"{k} {v:.3f} s" if isinstance(v, float) else f"{k} {v}" for k, v in res.items() if k != "log")
