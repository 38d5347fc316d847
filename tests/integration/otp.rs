//! Logins that need a human: a real TOTP second factor after the key (PAM's
//! `pam_google_authenticator` in the fixture's own PAM stack). Needs root.

use std::fs;
use std::time::Duration;

use crate::fixture::{Client, Sshd};
use crate::pty::Terminal;
use crate::util::{jssh, jssh_std, stderr, stdout};

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
        [
            "setup",
            alias,
            "--host",
            "127.0.0.1",
            "--port",
            &sshd.port().to_string(),
            "--no-copy-id",
            "--identity",
            key.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec()
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
}
