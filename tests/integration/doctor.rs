//! `jssh doctor` against real sshds: a healthy host passes every check, fast; a server that
//! forbids TCP forwarding, a session PATH without tmux, and a key others can read each give
//! the right ✗ and exit status 1.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Output;
use std::time::{Duration, Instant};

use crate::fixture::{Client, Sshd};
use crate::util::{self, jssh, stderr, stdout, venv};

/// Every check a healthy, fully set up alias reports, in order.
const CHECKS: [&str; 15] = [
    "OpenSSH client",
    "ssh config",
    "key",
    "key directory",
    "ssh -G",
    "keepalive",
    "agent forwarding",
    "host key",
    "ssh login (BatchMode)",
    "ControlMaster",
    "TCP forwarding",
    "Unix-socket forwarding",
    "remote tmux",
    "remote Jupyter",
    "Jupyter config",
];

/// A client with `alias` set up on `sshd`, its remote environment pointed at the venv.
fn set_up(sshd: &Sshd, alias: &str) -> Client {
    let client = Client::new(sshd);
    let env = format!("venv:{}", venv());
    util::set_up(sshd, &client, alias, &["--env", &env]);
    client
}

fn doctor(client: &Client, args: &[&str]) -> (Output, Duration) {
    let start = Instant::now();
    let out = jssh(client).arg("doctor").args(args).output().unwrap();
    (out, start.elapsed())
}

/// The report line of `check` (text output), e.g. `✗ remote tmux: …`.
fn line<'a>(report: &'a str, check: &str) -> &'a str {
    let wanted = format!(" {check}: ");
    report
        .lines()
        .map(str::trim_start)
        .find(|l| {
            l.get(l.find(' ').unwrap_or(0)..)
                .is_some_and(|rest| rest.starts_with(&wanted))
        })
        .unwrap_or_else(|| panic!("no `{check}` line in:\n{report}"))
}

/// The checks that failed, by name.
fn failures(report: &str) -> Vec<String> {
    report
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("✗ "))
        .map(|l| l.split(": ").next().unwrap().to_owned())
        .collect()
}

#[test]
fn a_healthy_host_passes_every_check_in_under_two_seconds() {
    let sshd = Sshd::start();
    let client = set_up(&sshd, "good");
    // Cold: setup leaves no ControlMaster behind, so this run makes the handshakes.
    let (out, elapsed) = doctor(&client, &["good"]);
    let report = stdout(&out);
    assert!(out.status.success(), "{report}{}", stderr(&out));
    for check in CHECKS {
        assert!(line(&report, check).starts_with('✓'), "{check} is not ✓:\n{report}");
    }
    let checks = report.lines().filter(|l| !l.ends_with("):")).count();
    assert_eq!(checks, CHECKS.len(), "one line per check:\n{report}");
    assert!(
        line(&report, "ssh login (BatchMode)").contains(" s with "),
        "the handshake is timed:\n{report}"
    );
    assert!(
        line(&report, "remote Jupyter").contains("jupyter_server 2."),
        "{report}"
    );
    assert!(
        elapsed < Duration::from_secs(2),
        "doctor took {elapsed:?} on a healthy host:\n{report}"
    );

    // Without an alias: the local checks plus every alias's, here as JSON.
    let (out, _) = doctor(&client, &["--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let checks = json.as_array().unwrap();
    assert_eq!(checks.len(), CHECKS.len());
    for check in checks {
        assert_eq!(check["status"], "ok", "{check}");
        assert!(check["fix"].is_null() && check["detail"].is_string(), "{check}");
    }
    assert_eq!(checks[0]["alias"], serde_json::Value::Null);
    assert_eq!(checks[CHECKS.len() - 1]["alias"], "good");
    assert_eq!(checks[10]["check"], "TCP forwarding");
}

#[test]
fn a_server_without_tcp_forwarding_fails_that_check() {
    let sshd = Sshd::start_with("AllowTcpForwarding no");
    let client = set_up(&sshd, "notcp");
    let (out, _) = doctor(&client, &["notcp"]);
    let report = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{report}{}", stderr(&out));
    assert_eq!(failures(&report), ["TCP forwarding"], "{report}");
    let tcp = line(&report, "TCP forwarding");
    assert!(
        tcp.contains("administratively prohibited") && tcp.contains("AllowTcpForwarding local"),
        "{tcp}"
    );
    // OpenSSH's `AllowTcpForwarding no` also denies forwards to Unix sockets (sshd applies it
    // to every local forward), which only `jssh up --socket` needs: a warning, not a failure.
    assert!(line(&report, "Unix-socket forwarding").starts_with('!'), "{report}");
}

#[test]
fn a_session_path_without_tmux_fails_the_tmux_check() {
    // sshd's SetEnv cannot do this: only the first SetEnv that applies counts, and the
    // fixture's own (HOME, TMUX_TMPDIR, …) comes first. A key's `environment="PATH=…"` in
    // authorized_keys (allowed for PATH only) gives the session a real PATH without tmux.
    let sshd = Sshd::start_with("PermitUserEnvironment PATH");
    let client = set_up(&sshd, "notmux");
    let bin = client.root().join("bin-without-tmux");
    fs::create_dir(&bin).unwrap();
    for dir in ["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"] {
        for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
            let link = bin.join(entry.file_name());
            if entry.file_name() != "tmux" && !link.exists() {
                std::os::unix::fs::symlink(entry.path(), link).unwrap();
            }
        }
    }
    let public = fs::read_to_string(client.ssh_dir().join("jssh_ed25519.pub")).unwrap();
    let material = public.split_whitespace().nth(1).unwrap().to_owned();
    let keys = fs::read_to_string(sshd.authorized_keys()).unwrap();
    let keys: String = keys
        .lines()
        .map(|l| {
            if l.contains(&material) {
                format!("environment=\"PATH={}\" {l}\n", bin.display())
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    fs::write(sshd.authorized_keys(), keys).unwrap();

    let (out, _) = doctor(&client, &["notmux"]);
    let report = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{report}{}", stderr(&out));
    assert_eq!(failures(&report), ["remote tmux"], "{report}");
    let tmux = line(&report, "remote tmux");
    assert!(
        tmux.contains(&format!("PATH={}", bin.display())) && tmux.contains("apt install tmux"),
        "{tmux}"
    );
}

#[test]
fn a_key_others_can_read_fails_with_its_chmod() {
    let sshd = Sshd::start();
    let client = set_up(&sshd, "loose");
    let key = client.ssh_dir().join("jssh_ed25519");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let (out, _) = doctor(&client, &["loose"]);
    let report = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{report}{}", stderr(&out));
    assert!(
        line(&report, "key").ends_with(&format!(
            "is 0644, and ssh ignores a private key others can read: run chmod 600 {}",
            key.display()
        )),
        "{report}"
    );
    // ssh skips the key and gets in with the fixture's bootstrap key. Regression: the server's
    // "Server accepts key" for jssh's key (before ssh failed to load it) passed for a login
    // with that key.
    assert_eq!(failures(&report), ["key", "ssh login (BatchMode)"], "{report}");
    assert!(
        line(&report, "ssh login (BatchMode)").contains("bad permissions: run chmod 600"),
        "{report}"
    );

    // The fix it names is the whole fix.
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    let (out, _) = doctor(&client, &["loose"]);
    assert!(out.status.success(), "{}", stdout(&out));
}

/// Issue 11, case 9: a tmux socket dir that tmux refuses (another user's, or open to others)
/// is a ✗ with its fix, not a ✓: `tmux -V` works all the same, but no session can start.
#[test]
fn case9_a_tmux_socket_dir_tmux_refuses_fails_the_tmux_check() {
    let sshd = Sshd::start();
    let client = set_up(&sshd, "sockdir");
    let uid = nix::unistd::geteuid();
    // The fixture's sessions have TMUX_TMPDIR=<root>/tmux.
    let dir = sshd.home().parent().unwrap().join(format!("tmux/tmux-{uid}"));
    fs::create_dir(&dir).unwrap();
    let expected = if uid.is_root() {
        std::os::unix::fs::chown(&dir, Some(65534), None).unwrap();
        "belongs to uid 65534"
    } else {
        eprintln!("not root: the socket dir is the user's own, open to others");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        "chmod 700"
    };
    let (out, _) = doctor(&client, &["sockdir"]);
    let report = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{report}{}", stderr(&out));
    assert_eq!(failures(&report), ["remote tmux"], "{report}");
    let tmux = line(&report, "remote tmux");
    assert!(
        tmux.contains(expected) && tmux.contains(&dir.display().to_string()),
        "{tmux}"
    );
}
