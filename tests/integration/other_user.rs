//! Another account on the same machine (the brief: "secure by default, against another user
//! on the same machine"), exercised with a real second account rather than reasoned about.
//! The user's own dirs are opened to everyone first (home dirs are 0755 on many systems), so
//! only jssh's own file modes stand between that account and the token. Needs root (to make
//! the account); without it the test says so and passes.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::fixture::throwaway_user_with_password;
use crate::up::{answers_within, free_port, get, parse_url, ready_host, tunnel_ssh, up};
use crate::util::{jssh, kill, stderr, stdout};

/// `script` run by `sh` as `user`, with `input` on its stdin (so that no secret of the test
/// is in anyone's argv either).
fn as_user(user: &str, script: &str, input: &str) -> Output {
    let mut child = Command::new("runuser")
        .args(["-u", user, "--", "/bin/sh", "-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// A bash script (read from stdin: its /dev/tcp makes the connection) that asks Jupyter at
/// 127.0.0.1:`port` for `path` without a token and prints the whole response.
fn request_without_token(port: u64, path: &str) -> String {
    format!(
        "exec 3<>/dev/tcp/127.0.0.1/{port}\n\
         printf 'GET {path} HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nConnection: close\\r\\n\\r\\n' >&3\n\
         cat <&3\n"
    )
}

/// Opens `dir` to everyone (read and search), as a home dir often is.
fn open_to_all(dir: &Path) {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Binds 127.0.0.1:PORT (from stdin) again and again for a few seconds; prints `bound` if it
/// ever got the port. The system's Python: a venv under root's home is not the other user's.
const SQUAT: &str = r#"exec /usr/bin/python3 -c '
import socket, sys, time
port = int(sys.stdin.read())
end = time.time() + 4
while time.time() < end:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port)); s.listen(); print("bound"); break
    except OSError:
        pass
    finally:
        s.close()
'"#;

#[test]
fn another_local_user_gets_neither_the_token_nor_the_port_nor_jupyter() {
    let Some(other) = throwaway_user_with_password() else {
        eprintln!("skipped: another account needs root");
        return;
    };
    let (sshd, client) = ready_host("own");
    for dir in [
        client.root(),
        &client.state_dir(),
        &client.config_dir(),
        &client.ssh_dir(),
    ] {
        open_to_all(dir);
    }
    // The server's side too (here the same machine): its home and Jupyter's dirs, all but
    // tmux's socket dir, which tmux itself insists on keeping private.
    let server = sshd.home().parent().unwrap().to_owned();
    for dir in [
        "",
        "home",
        "jupyter",
        "jupyter/runtime",
        "jupyter/config",
        "jupyter/data",
    ] {
        open_to_all(&server.join(dir));
    }
    let url = up(&client, "own", &["--port", &free_port()]);
    let (port, token) = parse_url(&url);
    let root = client.root().display().to_string();

    // No file the other account can read holds the token, on either side (grep reads it from
    // stdin).
    let grep = as_user(
        other.name(),
        &format!(
            "grep -rlF -f /dev/stdin '{root}' '{}' 2>/dev/null; exit 0",
            server.display()
        ),
        &format!("{token}\n"),
    );
    assert_eq!(stdout(&grep), "", "files with the token that another user can read");
    let readable = as_user(
        other.name(),
        &format!("find '{root}/state' -type f -readable 2>/dev/null; exit 0"),
        "",
    );
    assert_eq!(stdout(&readable), "", "jssh's state files that another user can read");
    // The token was really there to find: the user's own session file holds it.
    let own = Command::new("grep")
        .args(["-rlF", "-f", "/dev/stdin", &root])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(token.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(
        !stdout(&own).is_empty(),
        "the token is in none of the user's files either?"
    );

    // Jupyter through the tunnel, and straight at the remote Jupyter's port (from the server
    // itself): another account that connects gets nothing without the token.
    let remote_port = crate::util::status(&client, "own")["remote_port"].as_u64().unwrap();
    for (what, port) in [("the tunnel", u64::from(port)), ("the remote port", remote_port)] {
        let answer = as_user(
            other.name(),
            "exec /bin/bash",
            &request_without_token(port, "/api/status"),
        );
        assert!(
            stdout(&answer).starts_with("HTTP/1.1 403"),
            "{what} without the token: {}{}",
            stdout(&answer),
            stderr(&answer)
        );
    }
    // The page that proves the listener is this Jupyter answers anyone, with an HMAC of the
    // asker's challenge: never the token.
    let path = "/jssh-proof/0123456789abcdef0123456789abcdef";
    let answer = stdout(&as_user(
        other.name(),
        "exec /bin/bash",
        &request_without_token(remote_port, path),
    ));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(!answer.contains(&token), "the proof page gave the token away: {answer}");

    // While the tunnel heals (every ssh killed, three times), the other account spins on
    // binding the port: the supervisor holds it throughout.
    let squatter = std::thread::spawn({
        let name = other.name().to_owned();
        move || as_user(&name, SQUAT, &port.to_string())
    });
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(700));
        for (pid, _) in tunnel_ssh(&client) {
            kill(pid, "-KILL");
        }
    }
    let spun = squatter.join().unwrap();
    assert!(spun.status.success(), "the squatter ran: {}", stderr(&spun));
    assert_eq!(stdout(&spun), "", "another user bound the tunnel's port");
    answers_within(&client, port, &token, Duration::from_secs(20));
    assert_eq!(get(port, "/api/status", Some(&token)), 200);

    let out = jssh(&client).args(["down", "own"]).output().unwrap();
    assert!(out.status.success(), "down: {}", stderr(&out));
}
