//! Checks through the alias's ControlMaster: the master itself, a real TCP forward to the
//! remote's sshd, and a real Unix-socket forward to a throwaway listener.

use std::io::{BufRead, BufReader, Read};
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use crate::fsutil::ScratchDir;
use crate::process;
use crate::remote::{self, Marker};
use crate::ssh::Ssh;
use crate::target::Alias;

use super::finding::Finding;
use super::login::ssh_error;
use super::{LOCAL_LIMIT, Resolved};

/// What the remote Unix-socket listener says to a connection that reached it.
const GREETING: &str = "jssh-doctor";

pub(super) fn master_check(ssh: &Ssh, alias: &Alias, settings: &Resolved) -> Finding {
    let out = match ssh.master_check(alias).output_within(LOCAL_LIMIT) {
        Ok(out) => out,
        Err(e) => return Finding::fail(MASTER, format!("{e:#}"), "check your OpenSSH install"),
    };
    master_verdict(settings, out.status.success(), &ssh_error(&out.stderr))
}

pub(super) const MASTER: &str = "ControlMaster";
pub(super) const MASTER_FIX: &str = "jssh's block sets ControlMaster auto, ControlPath and ControlPersist: remove the lines ahead \
                          of the Include in your ssh config that override them, and make sure the ControlPath's \
                          directory exists";

/// `ssh -O check`'s answer, read together with the settings that decide whether ssh starts a
/// new master once the running one exits.
fn master_verdict(settings: &Resolved, running: bool, said: &str) -> Finding {
    let path = settings.get("controlpath").map_or("none", String::as_str);
    let mode = settings.get("controlmaster").map_or("false", String::as_str);
    if !running {
        return Finding::fail(
            MASTER,
            format!("no usable master after a login ({said}; ssh -G: controlmaster {mode}, controlpath {path})"),
            MASTER_FIX,
        );
    }
    if matches!(mode, "false" | "no") {
        return Finding::fail(
            MASTER,
            format!("{said} on {path}, but ssh -G says controlmaster {mode}, so no new one starts after it exits"),
            MASTER_FIX,
        );
    }
    Finding::ok(MASTER, format!("{said} on {path}"))
}

/// How sshd answered a forward on a connection of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Forward {
    /// sshd tried and the target refused: forwarding works.
    Allowed,
    /// `administratively prohibited`: AllowTcpForwarding, DisableForwarding or the key's options.
    Prohibited,
    Unknown,
}

fn forward_verdict(stderr: &str) -> Forward {
    if stderr.contains("administratively prohibited") {
        Forward::Prohibited
    } else if stderr.contains("open failed: connect failed") {
        Forward::Allowed
    } else {
        Forward::Unknown
    }
}

/// A real forward through the master to the remote's own sshd (its address from
/// `$SSH_CONNECTION`), which answers with its banner. Only if that fails does a probe on its
/// own connection learn sshd's reason.
pub(super) fn tcp_forward_check(ssh: &Ssh, alias: &Alias, server: Option<(IpAddr, u16)>, limit: Duration) -> Finding {
    const NAME: &str = "TCP forwarding";
    if let Some((ip, port)) = server
        && let Ok(out) = ssh
            .stdio_forward(alias, &ip.to_string(), port, false)
            .output_within(limit)
        && out.stdout.starts_with(b"SSH-")
    {
        return Finding::ok(NAME, format!("a forward to {ip}:{port} on {alias} reached its sshd"));
    }
    let out = match ssh.stdio_forward(alias, "127.0.0.1", 1, true).output_within(limit) {
        Ok(out) => out,
        Err(e) => return Finding::fail(NAME, format!("{e:#}"), format!("run `ssh -v -W 127.0.0.1:22 {alias}`")),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    match forward_verdict(&stderr) {
        Forward::Allowed => Finding::ok(
            NAME,
            format!("allowed (a forward to 127.0.0.1:1 on {alias} was refused by the port, not by sshd)"),
        ),
        Forward::Prohibited => Finding::fail(
            NAME,
            format!(
                "{alias}'s sshd refuses to forward TCP ({}), and jssh's tunnel is a TCP forward",
                ssh_error(&out.stderr)
            ),
            format!(
                "ask {alias}'s admin for `AllowTcpForwarding local` (or yes) in sshd_config, and check that your key's \
                 line in ~/.ssh/authorized_keys there has no `restrict` or `no-port-forwarding`"
            ),
        ),
        Forward::Unknown => Finding::fail(
            NAME,
            format!("a forward through {alias} failed: {}", ssh_error(&out.stderr)),
            format!("run `ssh -v -W 127.0.0.1:22 {alias}` to see why"),
        ),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum UnixProbe {
    Works,
    Refused,
    NoPython,
}

/// sshd gives the same answer ("connect failed") whether Unix-socket forwarding is off or the
/// socket is missing, so the probe needs a socket that exists: a throwaway listener on the
/// remote, reached through a forward on the master.
pub(super) fn unix_forward_check(ssh: &Ssh, alias: &Alias, limit: Duration) -> Finding {
    const NAME: &str = "Unix-socket forwarding";
    match probe_unix_forward(ssh, alias, limit) {
        Ok(UnixProbe::Works) => Finding::ok(NAME, format!("a forward to a Unix socket on {alias} connected")),
        Ok(UnixProbe::Refused) => Finding::warn(
            NAME,
            format!(
                "{alias}'s sshd refuses to forward Unix sockets, so `jssh up --socket` cannot work there (TCP can)"
            ),
            "use `jssh up` without --socket, or ask the admin to allow it (AllowStreamLocalForwarding; OpenSSH's \
             `AllowTcpForwarding no` blocks it too)",
        ),
        Ok(UnixProbe::NoPython) => Finding::warn(
            NAME,
            format!("not checked: the probe needs python3 on {alias} to listen on a socket"),
            "nothing to do unless you use `jssh up --socket`",
        ),
        Err(e) => Finding::warn(NAME, format!("not checked: {e:#}"), "fix the ControlMaster (above)"),
    }
}

/// Listens on a fresh Unix socket in a private temp dir and greets one connection; stops and
/// cleans up on that connection, when jssh closes its stdin, or after 10 s.
const LISTENER_PY: &str = include_str!("../../../remote/doctor_listener.py");

/// Runs the Python program in `$1` with the remote's `python3` (or `python`); says `nopython`
/// when it has neither.
const PYTHON: &str = include_str!("../../../remote/python.sh");

fn probe_unix_forward(ssh: &Ssh, alias: &Alias, limit: Duration) -> Result<UnixProbe> {
    let marker = Marker::new()?;
    let cmd = ssh.exec(alias, &remote::marked(&marker, PYTHON, &[LISTENER_PY]), true);
    let mut listener = cmd.spawn(Stdio::piped(), Stdio::piped(), Stdio::null())?;
    let result = listener
        .stdout
        .take()
        .context("no stdout from the listener")
        .and_then(|stdout| forward_to_listener(ssh, alias, stdout, marker, limit));
    // End of its stdin tells the listener to clean up, if nothing connected.
    drop(listener.stdin.take());
    let _ = process::wait_or_kill(&mut listener, LOCAL_LIMIT);
    result
}

fn forward_to_listener(
    ssh: &Ssh,
    alias: &Alias,
    stdout: std::process::ChildStdout,
    marker: Marker,
    limit: Duration,
) -> Result<UnixProbe> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        // The listener's first line, after whatever the login shell printed.
        let lines = BufReader::new(stdout).lines().map_while(Result::ok);
        let line = lines.skip_while(|l| !marker.is(l)).nth(1).unwrap_or_default();
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(limit)
        .map_err(|_| anyhow!("the listener on {alias} did not start"))?;
    let line = line.trim_end();
    if line == "nopython" || line.is_empty() {
        return Ok(UnixProbe::NoPython);
    }
    let remote = line
        .strip_prefix("listening /")
        .filter(|p| !p.contains(':'))
        .map(|p| format!("/{p}"))
        .with_context(|| format!("unexpected answer from the listener on {alias}: {line:?}"))?;
    let scratch = ScratchDir::new_in(&std::env::temp_dir(), "doctor")?;
    let local = scratch.path().join("s");
    let forward = ssh.master_socket_forward(alias, &local, &remote, false);
    let out = forward.output_within(LOCAL_LIMIT)?;
    if !out.status.success() {
        bail!("the ControlMaster did not take the forward: {}", ssh_error(&out.stderr));
    }
    let mut answer = Vec::new();
    if let Ok(mut stream) = UnixStream::connect(&local) {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(3)));
        let _ = stream.read_to_end(&mut answer);
    }
    let _ = ssh
        .master_socket_forward(alias, &local, &remote, true)
        .output_within(LOCAL_LIMIT);
    Ok(if String::from_utf8_lossy(&answer).contains(GREETING) {
        UnixProbe::Works
    } else {
        UnixProbe::Refused
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::doctor::finding::Status;
    use crate::ssh::parse_resolved;

    #[test]
    fn a_master_must_also_be_renewable() {
        let auto = parse_resolved("controlmaster auto\ncontrolpath /s/cm-x\n");
        let ok = master_verdict(&auto, true, "Master running (pid=7)");
        assert_eq!(ok.line(), "✓ ControlMaster: Master running (pid=7) on /s/cm-x");
        assert_eq!(
            master_verdict(&auto, false, "Control socket connect(/s/cm-x): No such file").status,
            Status::Fail
        );
        let off = parse_resolved("controlmaster false\ncontrolpath /s/cm-x\n");
        assert_eq!(
            master_verdict(&off, true, "Master running (pid=7)").status,
            Status::Fail
        );
    }

    #[test]
    fn forward_refusals_name_their_cause() {
        assert_eq!(
            forward_verdict("channel 0: open failed: connect failed: Connection refused\r\n"),
            Forward::Allowed
        );
        assert_eq!(
            forward_verdict("channel 0: open failed: administratively prohibited: open failed\r\n"),
            Forward::Prohibited
        );
        assert_eq!(
            forward_verdict("Stdio forwarding request failed: Session open refused by peer"),
            Forward::Unknown
        );
    }
}
