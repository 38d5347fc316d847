//! Helpers shared by the integration tests.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use assert_cmd::Command;

use crate::fixture::{Client, Sshd};

/// The jssh binary with the client's injectable paths set (and nothing from the real user).
pub(crate) fn jssh_std(client: &Client) -> std::process::Command {
    jssh_at(client, Path::new(env!("CARGO_BIN_EXE_jssh")))
}

/// [`jssh_std`] running the jssh executable at `exe`.
pub(crate) fn jssh_at(client: &Client, exe: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(exe);
    cmd.env_remove("JSSH_SSH_CONFIG").env_remove("SSH_AUTH_SOCK");
    for (k, v) in client.envs() {
        cmd.env(k, v);
    }
    cmd.env("HOME", client.root()).stdin(std::process::Stdio::null());
    cmd
}

/// [`jssh_std`] as an `assert_cmd` command.
pub(crate) fn jssh(client: &Client) -> Command {
    let mut cmd = Command::from_std(jssh_std(client));
    cmd.write_stdin("");
    cmd
}

/// Every regular file under `dirs` with its bytes and mode: a snapshot to compare after a run.
pub(crate) fn snapshot(dirs: &[&Path]) -> BTreeMap<PathBuf, (Vec<u8>, u32)> {
    let mut out = BTreeMap::new();
    let mut stack: Vec<PathBuf> = dirs.iter().map(|d| d.to_path_buf()).collect();
    while let Some(path) = stack.pop() {
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            out.insert(path.clone(), (Vec::new(), meta.permissions().mode() & 0o7777));
            for entry in fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
        } else if meta.is_file() {
            out.insert(
                path.clone(),
                (fs::read(&path).unwrap(), meta.permissions().mode() & 0o7777),
            );
        }
    }
    out
}

pub(crate) fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

pub(crate) fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The pinned Jupyter venv that `scripts/install-deps` makes.
pub(crate) fn venv() -> String {
    let venv = std::env::var("JSSH_TEST_VENV").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_default();
        format!("{home}/.cache/jssh-test-venv")
    });
    assert!(
        Path::new(&venv).join("bin/jupyter").exists(),
        "no Jupyter venv at {venv}: run scripts/install-deps"
    );
    venv
}

/// Plain `ssh` with the client's config, unattended; `own` gives it a connection of its own
/// (no ControlMaster), as a fresh login.
pub(crate) fn client_ssh(client: &Client, own: bool) -> std::process::Command {
    let mut cmd = std::process::Command::new("ssh");
    cmd.arg("-F").arg(client.ssh_config()).args(["-o", "BatchMode=yes"]);
    if own {
        cmd.args(["-o", "ControlMaster=no", "-o", "ControlPath=none"]);
    }
    cmd
}

/// `jssh setup ALIAS` arguments for the fixture, unattended.
pub(crate) fn setup_args(sshd: &Sshd, alias: &str) -> Vec<String> {
    [
        "setup",
        alias,
        "--host",
        "127.0.0.1",
        "--port",
        &sshd.port().to_string(),
        "--no-passphrase",
    ]
    .map(String::from)
    .to_vec()
}

/// Sets `alias` up on `sshd` for `client` (plus `extra` arguments), asserting it worked.
pub(crate) fn set_up(sshd: &Sshd, client: &Client, alias: &str, extra: &[&str]) {
    let out = jssh(client).args(setup_args(sshd, alias)).args(extra).output().unwrap();
    assert!(out.status.success(), "setup: {}{}", stdout(&out), stderr(&out));
}

/// [`set_up`] for an sshd at `host`, `port` (another network namespace, behind `--jump`).
pub(crate) fn set_up_at(client: &Client, host: &str, port: u16, alias: &str, extra: &[&str]) {
    let out = jssh(client)
        .args([
            "setup",
            alias,
            "--host",
            host,
            "--port",
            &port.to_string(),
            "--no-passphrase",
        ])
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "setup: {}{}", stdout(&out), stderr(&out));
}

/// A host key that is not the server's (`ssh-ed25519 AAAA…`, as `known_hosts` holds it),
/// made at `path`: a reinstalled server, or someone in between.
pub(crate) fn another_host_key(path: &Path) -> String {
    let keygen = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .output()
        .unwrap();
    assert!(keygen.status.success(), "{}", stderr(&keygen));
    let public = fs::read_to_string(path.with_extension("pub")).unwrap();
    public.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

/// A live process, as `ps` shows it.
#[derive(Debug, Clone)]
pub(crate) struct Proc {
    pub(crate) pid: u32,
    pub(crate) ppid: u32,
    /// The arguments, joined by spaces.
    pub(crate) command: String,
}

/// Every live (not zombie) process, from `ps -axww -o pid=,ppid=,stat=,command=`, which reads
/// the same on Linux (procps) and on macOS and the BSDs: the tests find processes the way a
/// Mac would. (A zombie counts as gone: PID 1 here reaps orphans slowly.)
pub(crate) fn process_table() -> Vec<Proc> {
    let out = std::process::Command::new("ps")
        .args(["-axww", "-o", "pid=,ppid=,stat=,command="])
        .output()
        .expect("ps is needed to find processes");
    assert!(out.status.success(), "ps failed: {}", stderr(&out));
    stdout(&out)
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let pid = fields.next()?.parse().ok()?;
            let parent = fields.next()?.parse().ok()?;
            let stat = fields.next()?;
            let command = fields.collect::<Vec<_>>().join(" ");
            (!stat.starts_with('Z')).then_some(Proc {
                pid,
                ppid: parent,
                command,
            })
        })
        .collect()
}

/// Sends `signal` (as kill(1) spells it: `-KILL`, `-INT`) to `pid`.
pub(crate) fn kill(pid: u32, signal: &str) {
    std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
}

/// `jssh status ALIAS --json`: the alias's row, the remote asked too.
pub(crate) fn status(client: &Client, alias: &str) -> serde_json::Value {
    status_row(client, &["status", alias, "--json"])
}

/// `jssh status ALIAS --json --local`: this machine's view of the alias, asking no remote.
pub(crate) fn local_status(client: &Client, alias: &str) -> serde_json::Value {
    status_row(client, &["status", alias, "--json", "--local"])
}

fn status_row(client: &Client, args: &[&str]) -> serde_json::Value {
    let out = jssh(client).args(args).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()[0].clone()
}

/// Whether `pid` runs (and is not a zombie).
pub(crate) fn alive(pid: u32) -> bool {
    std::process::Command::new("ps")
        .args(["-o", "stat=", "-p", &pid.to_string()])
        .output()
        .is_ok_and(|out| {
            let stat = stdout(&out);
            let stat = stat.trim();
            !stat.is_empty() && !stat.starts_with('Z')
        })
}
