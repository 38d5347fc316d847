//! A server that stops taking the key (removed from `authorized_keys`, a rotated key, a
//! directory service that forgot the user): the supervisor tries twice, then waits for the
//! user instead of logging in again and again (each refused login counts towards the server's
//! lockout: fail2ban bans an address after five). `jssh up` and `jssh login` each try once
//! more; once the key works again, the same URL answers. Against a real sshd and Jupyter.

use std::fs;
use std::time::{Duration, Instant};

use crate::fixture::{Client, Sshd};
use crate::up::{answers_within, free_port, get, parse_url, ready_host, tunnel_ssh, up};
use crate::util::{another_host_key, jssh, kill, local_status, status, stderr, stdout, venv};

/// What sshd logs (at INFO) for each connection that ended while authenticating: one per
/// refused login attempt of ours.
fn refused_logins(sshd: &Sshd) -> usize {
    sshd.log().matches("Connection closed by authenticating user").count()
}

/// A host set up as `alias`, its tunnel up: the sshd, the client, the URL's port and token.
fn tunnel(alias: &str) -> (Sshd, Client, u16, String) {
    let (sshd, client) = ready_host(alias);
    let url = up(&client, alias, &["--port", &free_port()]);
    let (port, token) = parse_url(&url);
    answers_within(&client, port, &token, Duration::from_secs(10));
    (sshd, client, port, token)
}

/// Kills the tunnel's connections and waits (at most 30 s) until the alias waits for the
/// user: its `status --local` row (asking the remote would be a login of its own, refused too).
fn cut_and_wait_for_the_user(client: &Client, alias: &str) -> serde_json::Value {
    for (pid, _) in tunnel_ssh(client) {
        kill(pid, "-KILL");
    }
    let started = Instant::now();
    loop {
        let row = local_status(client, alias);
        if row["state"] == "needs-login" {
            return row;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not waiting for the user after 30 s: {row}\n{}",
            client.supervisor_log(alias)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_refused_key_is_tried_twice_then_waits_for_the_user_and_login_resumes_the_same_url() {
    let (sshd, client, port, token) = tunnel("keyed");
    let log = || client.supervisor_log("keyed");

    // The server forgets the key; the tunnel's connections end.
    let keys = fs::read_to_string(sshd.authorized_keys()).unwrap();
    fs::write(sshd.authorized_keys(), "").unwrap();
    let before = refused_logins(&sshd);
    let row = cut_and_wait_for_the_user(&client, "keyed");
    let why = row["last_error"].as_str().unwrap_or_default().to_owned();
    assert!(
        why.contains("refused the key 2 times")
            && why.contains("Permission denied")
            && why.contains("jssh login keyed"),
        "{row}"
    );
    let tried = refused_logins(&sshd) - before;
    assert_eq!(tried, 2, "two attempts, no more:\n{}", log());

    // Waiting means no attempt at all: the backoff alone would have made several by now.
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(
        refused_logins(&sshd) - before,
        tried,
        "no attempt while waiting:\n{}",
        log()
    );
    assert_eq!(local_status(&client, "keyed")["state"], "needs-login");

    // `jssh up` asks once more, and says why it did not work; no loop follows.
    let out = jssh(&client)
        .args(["up", "keyed", "-d", "--timeout", "30", "--env"])
        .arg(format!("venv:{}", venv()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stderr(&out).contains("still refuses the key") && stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        refused_logins(&sshd) - before,
        tried + 1,
        "one attempt per ask:\n{}",
        log()
    );
    assert!(
        !log().contains("trying the key again"),
        "the key still fails: the supervisor is not asked:\n{}",
        log()
    );
    assert_eq!(get(port, "/api/status", Some(&token)), 0, "nothing answers yet");

    // The key works again: `jssh login` resumes the tunnel, at the same URL.
    fs::write(sshd.authorized_keys(), keys).unwrap();
    let out = jssh(&client).args(["login", "keyed"]).output().unwrap();
    assert!(out.status.success(), "{}{}\n{}", stdout(&out), stderr(&out), log());
    assert!(stdout(&out).contains(&format!("127.0.0.1:{port}")), "{}", stdout(&out));
    answers_within(&client, port, &token, Duration::from_secs(10));
    assert_eq!(status(&client, "keyed")["state"], "up");

    let out = jssh(&client).args(["down", "keyed"]).output().unwrap();
    assert!(out.status.success(), "down: {}", stderr(&out));
}

#[test]
fn a_changed_host_key_is_not_logged_in_to_again_and_up_resumes_once_it_is_trusted() {
    let (sshd, client, port, token) = tunnel("moved");
    let log = || client.supervisor_log("moved");

    // The known key is now another one (a reinstalled server, or someone in between).
    let known = fs::read_to_string(client.known_hosts()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let theirs = another_host_key(&dir.path().join("other"));
    let ours = sshd.known_hosts_line();
    let (host, _) = ours.split_once(' ').unwrap();
    assert!(known.contains(&ours), "{known}");
    fs::write(client.known_hosts(), known.replace(&ours, &format!("{host} {theirs}"))).unwrap();
    let row = cut_and_wait_for_the_user(&client, "moved");
    let why = row["last_error"].as_str().unwrap_or_default();
    assert!(why.contains("host key is not the one known"), "{row}");
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        log().matches("reconnect attempt failed").count(),
        1,
        "one attempt, none retried:\n{}",
        log()
    );

    // Trusted again: `jssh up` resumes it, at the same URL.
    fs::write(client.known_hosts(), known).unwrap();
    let again = up(&client, "moved", &[]);
    assert_eq!(parse_url(&again), (port, token.clone()), "{again}");
    answers_within(&client, port, &token, Duration::from_secs(10));
    let out = jssh(&client).args(["down", "moved"]).output().unwrap();
    assert!(out.status.success(), "down: {}", stderr(&out));
}
