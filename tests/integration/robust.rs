//! Issue 11: a remote login shell that prints junk, `~` in `--dir`, and state under stress
//! (a full disk, a log that never stops growing, a corrupt session file), against a real
//! sshd, tmux and Jupyter.

use std::fs;
use std::io::{BufRead, Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::fixture::{Client, Sshd};
use crate::up::{
    answers_within, body, free_port, get, kill_jupyter_until_logged, parse_url, ready_host, tunnel_ssh, up,
};
use crate::util::{alive, jssh, jssh_at, jssh_std, kill, local_status, snapshot, status, stderr, stdout, venv};

/// What a `.bashrc` may print before every command sshd runs, none of it ending in a newline:
/// a greeting, a terminal-title escape, and a title set from the command about to run — which
/// holds every byte of jssh's command, the marker's nonce included.
const JUNK_BASHRC: &str = r#"printf 'Welcome! '
printf '\033]0;%s@%s\007' "$USER" "$(uname -n)"
trap 'printf "\033]0;%s\007" "$BASH_COMMAND"' DEBUG
"#;

/// `ssh ALIAS COMMAND` with the client's config; its stdout.
fn ssh(client: &Client, alias: &str, command: &str) -> String {
    let out = Command::new("ssh")
        .arg("-F")
        .arg(client.ssh_config())
        .args(["-o", "BatchMode=yes", "--", alias, command])
        .output()
        .unwrap();
    stdout(&out)
}

#[test]
fn case7_bashrc_junk_without_newline_breaks_nothing() {
    let (sshd, client) = ready_host("junk");
    fs::write(sshd.home().join(".bashrc"), JUNK_BASHRC).unwrap();
    let said = ssh(&client, "junk", "echo hi");
    assert!(
        said.starts_with("Welcome! \x1b]0;") && said.contains("echo hi\x07") && said.ends_with("\x07hi\n"),
        "the login shell does not print the junk this test is about: {said:?}"
    );
    let env = format!("venv:{}", venv());

    // The configuration updater's report (`jssh jupyter`).
    let out = jssh(&client).args(["jupyter", "junk", "--env", &env]).output().unwrap();
    assert!(out.status.success(), "jupyter: {}{}", stdout(&out), stderr(&out));

    // The launch protocol, the supervisor's check of who listens and its `up`.
    let url = up(&client, "junk", &["--port", &free_port()]);
    let (port, token) = parse_url(&url);
    answers_within(&client, port, &token, Duration::from_secs(10));
    let row = status(&client, "junk");
    assert_eq!(row["state"], "up", "{row}");
    assert_eq!(row["remote_checked"], true, "the remote's session list was read: {row}");

    // The supervisor's relaunch reads the launch script's answer too.
    kill_jupyter_until_logged(&client, "junk", "started it again");
    // A Jupyter start takes ~2 s alone, much longer on a loaded machine (the whole suite).
    answers_within(&client, port, &token, Duration::from_secs(90));

    // doctor reads the facts, the Jupyter probe and the socket listener through the same junk.
    let out = jssh(&client).args(["doctor", "junk"]).output().unwrap();
    let report = stdout(&out);
    for check in ["remote tmux", "remote Jupyter", "Unix-socket forwarding"] {
        assert!(
            report
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("✓ {check}"))),
            "{check}:\n{report}{}",
            stderr(&out)
        );
    }

    // The remote log, without what the login shell printed before it.
    let out = jssh(&client).args(["logs", "junk", "--remote"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Jupyter") && !stdout(&out).contains("Welcome"),
        "{}",
        stdout(&out)
    );

    // `down` says what it did, and did it.
    let out = jssh(&client).args(["down", "junk"]).output().unwrap();
    assert!(out.status.success(), "down: {}", stderr(&out));
    assert!(stdout(&out).contains("stopped Jupyter"), "{}", stdout(&out));
    assert!(
        sshd.remote_processes("jupyter").is_empty(),
        "left running: {:?}",
        sshd.remote_processes("jupyter")
    );
    assert!(!sshd.home().join(".jssh/run/jssh-junk").exists());
    let _ = fs::remove_file(sshd.home().join(".bashrc"));
}

/// `jssh jupyter`'s remote config file (`JUPYTER_CONFIG_DIR` is under the fixture's root).
fn remote_config_dir(sshd: &Sshd) -> std::path::PathBuf {
    sshd.home().parent().unwrap().join("jupyter/config")
}

/// Runs jssh with `args`, asserting that it fails with one line containing every `needle`.
fn fails_in_one_line(client: &Client, args: &[&str], needles: &[&str]) {
    let out = jssh(client).args(args).output().unwrap();
    let err = stderr(&out);
    assert!(!out.status.success(), "{args:?} succeeded: {}", stdout(&out));
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    for needle in needles {
        assert!(err.contains(needle), "{args:?}: no {needle:?} in {err}");
    }
}

#[test]
fn case8_tilde_in_dir_means_the_remote_home_and_a_local_one_is_named() {
    let (sshd, client) = ready_host("tilde");
    let env = format!("venv:{}", venv());
    fs::create_dir_all(sshd.home().join("project")).unwrap();
    fs::write(sshd.home().join("project/only-here.txt"), "x").unwrap();
    // What an unquoted `--dir ~/project` becomes in the local shell: the local home's path.
    let expanded = client.root().join("project").display().to_string();
    assert!(!Path::new(&expanded).exists());
    let suggestion = ["does not exist on tilde, but ~/project does", "--dir '~/project'"];

    // `jssh jupyter --dir` stores nothing it cannot use (issue 11, case 9), here or there.
    let dirs = [client.config_dir(), remote_config_dir(&sshd)];
    let before = snapshot(&[&dirs[0], &dirs[1]]);
    fails_in_one_line(
        &client,
        &["jupyter", "tilde", "--env", &env, "--dir", &expanded],
        &suggestion,
    );
    fails_in_one_line(
        &client,
        &["jupyter", "tilde", "--env", &env, "--dir", "~/nope"],
        &["--dir ~/nope does not exist on tilde"],
    );
    assert_eq!(snapshot(&[&dirs[0], &dirs[1]]), before, "a refused --dir changed files");
    let out = jssh(&client)
        .args(["jupyter", "tilde", "--env", &env, "--dir", "~/project"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let config = fs::read_to_string(remote_config_dir(&sshd).join("jssh_config.json")).unwrap();
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(
        config["ServerApp"]["root_dir"],
        sshd.home().join("project").display().to_string(),
        "{config}"
    );

    // `jssh up --dir`: refused before anything starts, and no guessing.
    fails_in_one_line(&client, &["up", "tilde", "-d", "--dir", &expanded], &suggestion);
    fails_in_one_line(
        &client,
        &["up", "tilde", "-d", "--dir", "/nonexistent/x"],
        &["--dir /nonexistent/x does not exist on tilde", "'~/…'"],
    );
    assert!(sshd.remote_processes("jupyter").is_empty());
    assert!(!sshd.home().join(".jssh/run/jssh-tilde").exists());

    // Quoted, `~` is the remote home.
    let url = up(&client, "tilde", &["--port", &free_port(), "--dir", "~/project"]);
    let (port, token) = parse_url(&url);
    answers_within(&client, port, &token, Duration::from_secs(10));
    assert!(body(port, "/api/contents", &token).contains("only-here.txt"));
    assert!(jssh(&client).args(["down", "tilde"]).output().unwrap().status.success());
}

/// A tmpfs mounted over `dir` for the test's life, so that the state disk can fill up (root
/// only); lazily unmounted on drop, as the supervisor may still hold files there.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Self> {
        if !nix::unistd::geteuid().is_root() {
            return None;
        }
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self(dir.to_owned()))
    }

    /// Fills it to the last byte, `log` included: a file's last page has room left after the
    /// disk is otherwise full, and a write there would still succeed.
    fn fill(&self, log: &Path) {
        let mut file = fs::File::create(self.0.join("filler")).unwrap();
        let block = vec![0u8; 4096];
        while file.write_all(&block).is_ok() {}
        while file.write_all(&[0]).is_ok() {}
        let mut log = fs::OpenOptions::new().append(true).open(log).unwrap();
        while log.write_all(b"\n").is_ok() {}
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// SIGKILLs every ssh of the client's tunnels and waits until the URL answers again.
fn kill_tunnels_and_heal(client: &Client, port: u16, token: &str) {
    for (pid, _) in tunnel_ssh(client) {
        let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    }
    std::thread::sleep(Duration::from_millis(300));
    answers_within(client, port, token, Duration::from_secs(20));
}

#[test]
fn case10_a_full_state_disk_never_stops_the_supervisor() {
    let (_sshd, client) = ready_host("full");
    let log = client.state_dir().join("full/supervisor.log");
    // As root, the state dir is a small tmpfs that fills up. (A log that is /dev/full would
    // not do for the running supervisor: reading it, as `up` does, never ends.)
    let tmpfs = Tmpfs::mount(&client.state_dir(), "1m");
    if tmpfs.is_none() {
        eprintln!("not root: no full disk; only the error exit is tested, its stderr on /dev/full");
    }
    let url = up(&client, "full", &["--port", &free_port()]);
    let (port, token) = parse_url(&url);
    answers_within(&client, port, &token, Duration::from_secs(10));
    if let Some(tmpfs) = &tmpfs {
        tmpfs.fill(&log);
    }
    let pid = status(&client, "full")["supervisor_pid"].as_u64().unwrap();
    // Every reconnect logs, and saves the session, into the full disk.
    for _ in 0..3 {
        kill_tunnels_and_heal(&client, port, &token);
    }
    assert!(alive(u32::try_from(pid).unwrap()), "the supervisor died");
    // A supervisor's error goes to its stderr, which is the log: a second one for the same
    // alias fails (the lease is taken) and must say so with exit 1, not abort on the write.
    let full = if tmpfs.is_some() {
        log.as_path()
    } else {
        Path::new("/dev/full")
    };
    let stderr_log = fs::OpenOptions::new().append(true).open(full).unwrap();
    let out = jssh_at(&client, Path::new(env!("CARGO_BIN_EXE_jssh-supervisor")))
        .args(["supervise", "full", "--ssh-config"])
        .arg(client.ssh_config())
        .args(["--connect-timeout", "5"])
        .stderr(stderr_log)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{:?}", out.status);
    assert_eq!(get(port, "/api/status", Some(&token)), 200);
    let out = jssh(&client).args(["down", "full"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn case10_the_supervisor_log_is_bounded_and_followed_across_rotation() {
    let (_sshd, client) = ready_host("rot");
    let log = client.state_dir().join("rot/supervisor.log");
    let limit = 500;
    let mut cmd = jssh_std(&client);
    cmd.args(["up", "rot", "--timeout", "90", "--port", &free_port(), "--env"])
        .arg(format!("venv:{}", venv()))
        .env("JSSH_SUPERVISOR_LOG_LIMIT", limit.to_string())
        .stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let url = loop {
        let mut line = String::new();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "no URL");
        if line.starts_with("http://") {
            break line.trim().to_owned();
        }
    };
    let (port, token) = parse_url(&url);
    for _ in 0..8 {
        kill_tunnels_and_heal(&client, port, &token);
    }
    let old = log.with_file_name("supervisor.log.1");
    assert!(old.exists(), "never rotated: {}", fs::read_to_string(&log).unwrap());
    // Each file stays within the limit (plus a line from ssh itself, which does not count).
    for file in [&log, &old] {
        let len = fs::metadata(file).unwrap().len();
        assert!(len <= limit + 200, "{}: {len} bytes", file.display());
    }
    assert_eq!(get(port, "/api/status", Some(&token)), 200);
    // `jssh logs` shows both files, the older first.
    let out = jssh(&client).args(["logs", "rot"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let older = fs::read_to_string(&old).unwrap();
    let newer = fs::read_to_string(&log).unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.starts_with(&older) && shown.contains(newer.lines().next().unwrap_or("?")),
        "{shown}"
    );
    // The foreground `up` kept showing the events, from the new file too.
    let pid = status(&client, "rot")["supervisor_pid"].as_u64().unwrap();
    kill(u32::try_from(pid).unwrap(), "-INT");
    child.wait().unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert!(rest.matches("reconnected").count() >= 7, "{rest}");
    assert!(rest.contains("tunnel stopped"), "{rest}");
    assert!(jssh(&client).args(["down", "rot"]).output().unwrap().status.success());
}

#[test]
fn case10_a_corrupt_session_file_does_not_make_status_say_down() {
    let (_sshd, client) = ready_host("torn");
    let url = up(&client, "torn", &["--port", &free_port()]);
    let (port, token) = parse_url(&url);
    let pid = status(&client, "torn")["supervisor_pid"].as_u64().unwrap();
    fs::write(
        client.state_dir().join("torn/session.json"),
        "{\"alias\": \"torn\", \"tmux_na",
    )
    .unwrap();
    for row in [&local_status(&client, "torn"), &status(&client, "torn")] {
        assert_eq!(row["state"], "running", "{row}");
        assert_eq!(row["supervisor_pid"], pid, "{row}");
        assert!(
            row["state_file_error"].as_str().unwrap().contains("session.json"),
            "{row}"
        );
    }
    let out = jssh(&client).args(["status", "torn"]).output().unwrap();
    let text = stdout(&out);
    assert!(text.starts_with("torn: running\n"), "{text}");
    let note: Vec<&str> = text.lines().filter(|l| l.contains("state file")).collect();
    assert_eq!(note.len(), 1, "{text}");
    assert!(
        note[0].contains(&format!("pid {pid}")) && note[0].contains("jssh up torn"),
        "{text}"
    );
    // The tunnel still serves, and `up` repairs the file.
    assert_eq!(get(port, "/api/status", Some(&token)), 200);
    let again = up(&client, "torn", &[]);
    assert_eq!(parse_url(&again).1, token, "the same server");
    assert_eq!(status(&client, "torn")["state"], "up");
    assert!(jssh(&client).args(["down", "torn"]).output().unwrap().status.success());
}
