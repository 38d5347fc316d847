//! Logins that need a human: a real TOTP second factor after the key (PAM's
//! `pam_google_authenticator` in the fixture's own PAM stack). Needs root.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::fixture::{Client, Sshd};
use crate::pty::Terminal;
use crate::up::{answers_within, free_port, parse_url};
use crate::util::{jssh, jssh_std, setup_args, stderr, stdout, venv};

/// The fixture itself: the key alone gets a partial success, BatchMode cannot go further,
/// and one code on a terminal logs in.
#[test]
fn the_otp_sshd_asks_for_a_code_after_the_key() {
    let Some(sshd) = Sshd::start_with_otp() else { return };
    let client = Client::new(&sshd);
    let ssh = |batch: bool| {
        let mut cmd = std::process::Command::new("ssh");
        cmd.arg("-F")
            .arg(client.ssh_config())
            .args(["-v", "-p", &sshd.port().to_string()]);
        if batch {
            cmd.args(["-o", "BatchMode=yes"]);
        }
        cmd.args(["--", "127.0.0.1", "echo in"]);
        cmd
    };
    let out = ssh(true).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "BatchMode cannot answer the code");
    assert!(stderr.contains("partial success"), "{stderr}");

    let mut term = Terminal::spawn(&ssh(false));
    assert!(
        term.wait_for("Verification code:", 1, Duration::from_secs(10)),
        "{}",
        term.output()
    );
    term.type_line(&sshd.otp_code());
    let (status, output) = term.finish(Duration::from_secs(10));
    assert!(status.success() && output.contains("in"), "{output}");
    assert_eq!(output.matches("Verification code:").count(), 1, "{output}");
    assert!(
        sshd.log().contains("Accepted keyboard-interactive/pam"),
        "{}",
        sshd.log()
    );
}

/// Setup on such a host: the key's partial success is not a refusal; in a terminal the code is
/// asked once to verify, without one setup says so; either way the profile says that logins
/// need a human.
#[test]
fn setup_tells_a_second_factor_from_a_refused_key() {
    let Some(sshd) = Sshd::start_with_otp() else { return };
    let client = Client::new(&sshd);
    let key = client.ssh_dir().join("bootstrap_ed25519");
    let args = |alias: &str| -> Vec<String> {
        let mut args = setup_args(&sshd, alias);
        args.extend(["--no-copy-id", "--identity", key.to_str().unwrap()].map(String::from));
        args
    };
    let mut cmd = jssh_std(&client);
    cmd.args(args("otp"));
    let mut term = Terminal::spawn(&cmd);
    assert!(
        term.wait_for("Verification code:", 1, Duration::from_secs(20)),
        "{}",
        term.output()
    );
    term.type_line(&sshd.otp_code());
    let (status, output) = term.finish(Duration::from_secs(20));
    assert!(status.success(), "{output}");
    assert_eq!(output.matches("Verification code:").count(), 1, "{output}");
    assert!(output.contains("logs in with the key and a second factor"), "{output}");
    let hosts = fs::read_to_string(client.config_dir().join("hosts.toml")).unwrap();
    assert!(hosts.contains("login = \"prompt\""), "{hosts}");

    let out = jssh(&client).args(args("otp2")).output().unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("asks for a second factor, which needs a terminal"),
        "{}",
        stdout(&out)
    );
    let hosts = fs::read_to_string(client.config_dir().join("hosts.toml")).unwrap();
    assert_eq!(hosts.matches("login = \"prompt\"").count(), 2, "{hosts}");

    // doctor reports it, and asks nothing that would need a human.
    let out = jssh(&client).args(["doctor", "otp"]).output().unwrap();
    let report = stdout(&out);
    assert!(out.status.success(), "{report}{}", stderr(&out));
    assert!(
        report.contains("then asks for a second factor: `jssh up otp` asks once"),
        "{report}"
    );
    assert!(
        report.contains("remote checks: skipped: logins to otp need you"),
        "{report}"
    );
}

/// One HTTP request with the token; the response's status code and body.
fn request(port: u16, method: &str, path: &str, token: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let body = if method == "POST" { "{}" } else { "" };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: token {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, response.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned())
}

/// Every connection the sshd accepted (VERBOSE logs each): a login attempt needs one.
fn connections(sshd: &Sshd) -> usize {
    sshd.log().matches("Connection from ").count()
}

/// `jssh up` on a pty, answering the one code it must ask for; its output.
fn up_answering_once(client: &Client, sshd: &Sshd, port: &str) -> String {
    let mut cmd = jssh_std(client);
    cmd.args(["up", "otp", "-d", "--timeout", "90", "--port", port, "--env"])
        .arg(format!("venv:{}", venv()));
    let mut term = Terminal::spawn(&cmd);
    assert!(
        term.wait_for("Verification code:", 1, Duration::from_secs(30)),
        "{}",
        term.output()
    );
    term.type_line(&sshd.otp_code());
    let (status, output) = term.finish(Duration::from_mins(2));
    assert!(status.success(), "up: {output}");
    assert_eq!(
        output.matches("Verification code:").count(),
        1,
        "exactly one prompt: {output}"
    );
    output
}

/// The whole life on a host that needs a human: `up` asks once and everything rides on that
/// login; when it drops, nothing logs in (not the supervisor, not `status`), the port holds
/// connections, the state says so; `up` asks once more and the same server, with the same
/// kernel, is back.
#[test]
fn a_dropped_login_makes_no_attempts_and_one_prompt_resumes_the_same_kernel() {
    let Some(sshd) = Sshd::start_with_otp() else { return };
    let client = Client::new(&sshd);
    let key = client.ssh_dir().join("bootstrap_ed25519");
    let out = jssh(&client)
        .args([
            "setup",
            "otp",
            "--host",
            "127.0.0.1",
            "--port",
            &sshd.port().to_string(),
        ])
        .args(["--no-copy-id", "--identity", key.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "setup: {}{}", stdout(&out), stderr(&out));
    let port = free_port();

    let output = up_answering_once(&client, &sshd, &port);
    // The spinner shares the URL's line on a terminal.
    let url = output.split("http://").last().unwrap().lines().next().unwrap().trim();
    let url = format!("http://{url}");
    let (local, token) = parse_url(&url);
    let (code, kernel) = request(local, "POST", "/api/kernels", &token);
    assert_eq!(code, 201, "a kernel starts: {kernel}");
    let kernel_id = kernel
        .split("\"id\": \"")
        .nth(1)
        .or_else(|| kernel.split("\"id\":\"").nth(1))
        .unwrap();
    let kernel_id = kernel_id.split('"').next().unwrap().to_owned();

    // The login drops (the network took it).
    let status = |local: bool| -> serde_json::Value {
        let mut cmd = jssh(&client);
        cmd.args(["status", "otp", "--json"]);
        if local {
            cmd.arg("--local");
        }
        let out = cmd.output().unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()[0].clone()
    };
    let login_pid = status(true)["tunnel_ssh_pid"]
        .as_u64()
        .expect("the login carries the tunnel");
    let before = connections(&sshd);
    kill(Pid::from_raw(i32::try_from(login_pid).unwrap()), Signal::SIGKILL).unwrap();
    let dropped = Instant::now();
    while status(true)["state"] != "needs-login" {
        assert!(dropped.elapsed() < Duration::from_secs(10), "state: {}", status(true));
        std::thread::sleep(Duration::from_millis(50));
    }
    let row = status(false);
    assert!(
        row["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("jssh login otp"),
        "{row}"
    );
    assert!(
        TcpStream::connect(("127.0.0.1", local)).is_ok(),
        "the port still accepts"
    );
    // 20 s by default (ten of the supervisor's looks for a new login); the 60 s with
    // JSSH_TEST_DROP_SECS=60.
    let quiet = std::env::var("JSSH_TEST_DROP_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    while dropped.elapsed() < Duration::from_secs(quiet) {
        std::thread::sleep(Duration::from_secs(1));
    }
    assert_eq!(
        connections(&sshd),
        before,
        "nothing connected to the server after the drop: {}",
        sshd.log()
    );

    // The user logs in again: one prompt, the same URL, the same kernel.
    let output = up_answering_once(&client, &sshd, &port);
    assert!(output.contains(&url), "{output}");
    answers_within(&client, local, &token, Duration::from_secs(20));
    let (code, kernels) = request(local, "GET", "/api/kernels", &token);
    assert!(
        code == 200 && kernels.contains(&kernel_id),
        "the same kernel: {kernels}"
    );
    assert_eq!(status(false)["state"], "up");

    let out = jssh(&client).args(["down", "otp"]).output().unwrap();
    assert!(out.status.success(), "down: {}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("stopped Jupyter"), "{}", stdout(&out));
    assert!(
        sshd.remote_processes("jupyter").is_empty(),
        "nothing left on the server"
    );
}
