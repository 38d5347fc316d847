//! Logins that need a human: a real TOTP second factor after the key (PAM's
//! `pam_google_authenticator` in the fixture's own PAM stack). Needs root.

use std::time::Duration;

use crate::fixture::{Client, Sshd};
use crate::pty::Terminal;

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
