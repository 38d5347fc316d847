//! Issue 11: a remote login shell that prints junk, `~` in `--dir`, and state under stress
//! (a full disk, a log that never stops growing, a corrupt session file), against a real
//! sshd, tmux and Jupyter.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::fixture::{Client, Sshd};
use crate::up::{answers_within, body, free_port, kill_jupyter_until_logged, parse_url, ready_host, status, up};
use crate::util::{jssh, snapshot, stderr, stdout, venv};

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
    answers_within(&client, port, &token, Duration::from_secs(30));

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
