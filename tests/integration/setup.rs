//! `jssh setup`, `jssh setup --remove` and `jssh hosts` against a real sshd.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::fixture::{Client, Sshd, throwaway_user_with_password};
use crate::util::{jssh, mode, setup_args, snapshot, stderr, stdout};

fn key_lines(sshd: &Sshd, client: &Client) -> usize {
    let public = fs::read_to_string(client.ssh_dir().join("jssh_ed25519.pub")).unwrap();
    let material = public.split_whitespace().nth(1).unwrap().to_owned();
    let authorized = fs::read_to_string(sshd.authorized_keys()).unwrap();
    authorized.lines().filter(|l| l.contains(&material)).count()
}

/// `ssh` through jssh's managed file alone (so only jssh's key can log in), in batch mode.
fn ssh_through_managed_file(client: &Client, alias: &str) -> std::process::Output {
    std::process::Command::new("ssh")
        .arg("-F")
        .arg(client.ssh_dir().join("config.d/jssh"))
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", client.known_hosts().display()))
        .args(["-o", "BatchMode=yes", "-o", "ControlMaster=no", "--", alias, "true"])
        .output()
        .unwrap()
}

#[test]
fn setup_installs_one_key_verifies_and_is_idempotent() {
    let sshd = Sshd::start();
    let client = Client::new(&sshd);
    let out = jssh(&client).args(setup_args(&sshd, "box")).output().unwrap();
    assert!(
        out.status.success(),
        "{}{}\nsshd log:\n{}",
        stdout(&out),
        stderr(&out),
        sshd.log()
    );
    assert!(stdout(&out).contains("installed the key on box"), "{}", stdout(&out));
    assert_eq!(key_lines(&sshd, &client), 1);

    let login = ssh_through_managed_file(&client, "box");
    assert!(login.status.success(), "jssh's key alone logs in: {}", stderr(&login));

    let ssh_dir = client.ssh_dir();
    assert_eq!(mode(&ssh_dir.join("jssh_ed25519")), 0o600);
    assert_eq!(mode(&ssh_dir.join("config.d/jssh")), 0o600);
    assert_eq!(mode(&ssh_dir.join("config.d")), 0o700);
    assert_eq!(mode(&client.config_dir().join("hosts.toml")), 0o600);
    assert_eq!(mode(&client.config_dir()), 0o700);
    let managed = fs::read_to_string(ssh_dir.join("config.d/jssh")).unwrap();
    for setting in [
        "Host box",
        "HostName 127.0.0.1",
        "IdentitiesOnly yes",
        "ControlMaster auto",
        "ControlPersist 10m",
    ] {
        assert!(managed.contains(setting), "{setting} missing from:\n{managed}");
    }

    let before = snapshot(&[client.root(), sshd.home()]);
    let again = jssh(&client).args(setup_args(&sshd, "box")).output().unwrap();
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(stdout(&again).contains("already installed"), "{}", stdout(&again));
    assert_eq!(
        key_lines(&sshd, &client),
        1,
        "a second setup must not add a second line"
    );
    assert!(
        before == snapshot(&[client.root(), sshd.home()]),
        "a second setup changed files"
    );
}

#[test]
fn user_config_keeps_every_byte() {
    let sshd = Sshd::start();
    let client = Client::new(&sshd);
    let original = fs::read_to_string(client.ssh_config()).unwrap().replace('\n', "\r\n");
    let user = format!(
        "# my settings\r\n{original}\tServerAliveInterval 60\r\n\r\nMatch host *.example exec \"true\"\r\n\
         \tUser someone # trailing comment\r\nHost other\r\n  HostName 192.0.2.1"
    );
    fs::write(client.ssh_config(), &user).unwrap();
    fs::set_permissions(client.ssh_config(), fs::Permissions::from_mode(0o640)).unwrap();

    let out = jssh(&client).args(setup_args(&sshd, "box")).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let include = format!("Include {}\r\n", client.ssh_dir().join("config.d/jssh").display());
    assert_eq!(
        fs::read_to_string(client.ssh_config()).unwrap(),
        format!("{include}{user}")
    );
    assert_eq!(mode(&client.ssh_config()), 0o640, "the user's mode is kept");
    let backup = client.ssh_dir().join("config.jssh-backup");
    assert_eq!(
        fs::read_to_string(&backup).unwrap(),
        user,
        "the one-time backup is the original"
    );

    // Through the user's config (not only the managed file) the alias now works.
    let login = std::process::Command::new("ssh")
        .arg("-F")
        .arg(client.ssh_config())
        .args(["-o", "BatchMode=yes", "--", "box", "true"])
        .output()
        .unwrap();
    assert!(login.status.success(), "{}", stderr(&login));

    let before = snapshot(&[client.root()]);
    let again = jssh(&client).args(setup_args(&sshd, "box")).output().unwrap();
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(before == snapshot(&[client.root()]), "a second setup changed files");
}

#[test]
fn dry_run_touches_nothing() {
    let sshd = Sshd::start();
    let client = Client::new(&sshd);
    let before = snapshot(&[client.root(), sshd.home()]);
    let out = jssh(&client)
        .args(setup_args(&sshd, "box"))
        .arg("--dry-run")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("+Include ") && text.contains("+Host box"), "{text}");
    assert!(text.contains("would create the key"), "{text}");
    assert!(
        before == snapshot(&[client.root(), sshd.home()]),
        "--dry-run changed files"
    );
}

/// A PATH whose ssh tools only record that they ran, to prove bad input runs nothing.
pub(crate) fn tripwire_path(client: &Client) -> (String, std::path::PathBuf) {
    let bin = client.root().join("tripwire");
    fs::create_dir_all(&bin).unwrap();
    let log = client.root().join("tripwire.log");
    for tool in ["ssh", "ssh-copy-id", "ssh-keygen"] {
        let script = format!("#!/bin/sh\necho {tool} \"$@\" >> '{}'\nexit 1\n", log.display());
        fs::write(bin.join(tool), script).unwrap();
        fs::set_permissions(bin.join(tool), fs::Permissions::from_mode(0o755)).unwrap();
    }
    (format!("{}:/usr/bin:/bin", bin.display()), log)
}

#[test]
fn bad_input_is_refused_before_anything_runs() {
    let sshd = Sshd::start();
    let client = Client::new(&sshd);
    let (path, log) = tripwire_path(&client);
    let port = sshd.port().to_string();
    let cases: &[&[&str]] = &[
        &["setup", "-oProxyCommand=touch /tmp/x", "--host", "127.0.0.1"],
        &["setup", "box", "--host", "-oProxyCommand=x"],
        &["setup", "box", "--host", "127.0.0.1 evil"],
        &["setup", "box\nHost *", "--host", "127.0.0.1"],
        &["setup", "box#1", "--host", "127.0.0.1"],
        &["setup", "box", "--host", "127.0.0.1", "--user", "a\"b"],
        &["setup", "box", "--host", "127.0.0.1", "--user", "a=b"],
        &["setup", "box", "--host", "127.0.0.1", "--jump", "ok,-oProxyCommand=x"],
        &["setup", "box", "--host", "127.0.0.1", "--port", "0"],
        &["setup", "box", "--host", "127.0.0.1", "--port", "65536"],
        &[
            "setup",
            "box",
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--connect-timeout",
            "0",
        ],
    ];
    let before = snapshot(&[client.root(), sshd.home()]);
    for argv in cases {
        let out = jssh(&client).env("PATH", &path).args(*argv).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{argv:?}: {}", stderr(&out));
        let err = stderr(&out);
        let says_why = [
            "not allowed",
            "starts with '-'",
            "1 to 65535",
            "unexpected argument",
            "not in 1..=3600",
        ];
        assert!(
            err.starts_with("error: ") && says_why.iter().any(|w| err.contains(w)),
            "{argv:?}: unclear: {err}"
        );
        assert!(!log.exists(), "{argv:?} ran {}", fs::read_to_string(&log).unwrap());
    }
    assert!(
        before == snapshot(&[client.root(), sshd.home()]),
        "bad input changed files"
    );
}

#[test]
fn unreachable_host_fails_fast_and_writes_nothing() {
    let sshd = Sshd::start();
    let client = Client::new(&sshd);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let before = snapshot(&[client.root()]);
    let start = Instant::now();
    let out = jssh(&client)
        .args([
            "setup",
            "gone",
            "--host",
            "127.0.0.1",
            "--port",
            &closed.to_string(),
            "--no-passphrase",
        ])
        .args(["--connect-timeout", "3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(stderr(&out).contains("cannot reach 127.0.0.1 port"), "{}", stderr(&out));
    assert!(before == snapshot(&[client.root()]), "a failed setup changed files");
}

#[test]
fn config_rejected_by_ssh_is_reported_and_kept() {
    let sshd = Sshd::start();
    let client = Client::new(&sshd);
    let mut text = fs::read_to_string(client.ssh_config()).unwrap();
    text.push_str("NoSuchDirective yes\n");
    fs::write(client.ssh_config(), &text).unwrap();
    let before = snapshot(&[client.root()]);
    let out = jssh(&client).args(setup_args(&sshd, "box")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("ssh rejects the config"), "{}", stderr(&out));
    assert!(before == snapshot(&[client.root()]), "files changed");
}

#[test]
fn unknown_host_key_and_refused_auth_are_explained() {
    let sshd = Sshd::start();
    let client = Client::new(&sshd);
    fs::write(client.known_hosts(), "").unwrap();
    let before = snapshot(&[client.root(), sshd.home()]);
    let out = jssh(&client).args(setup_args(&sshd, "box")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("host key of box is not known"),
        "{}",
        stderr(&out)
    );
    assert!(before == snapshot(&[client.root(), sshd.home()]), "files changed");

    // Another key on record for this host: a changed host key, with the advice to check.
    let other = client.root().join("other_host_key");
    let keygen = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(keygen.success());
    let other_pub = fs::read_to_string(other.with_extension("pub")).unwrap();
    let key = other_pub.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    fs::write(client.known_hosts(), format!("[127.0.0.1]:{} {key}\n", sshd.port())).unwrap();
    let before = snapshot(&[client.root(), sshd.home()]);
    let out = jssh(&client).args(setup_args(&sshd, "box")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("host key of box has changed"), "{}", stderr(&out));
    assert!(before == snapshot(&[client.root(), sshd.home()]), "files changed");

    fs::write(client.known_hosts(), sshd.known_hosts_line() + "\n").unwrap();
    let before = snapshot(&[client.root(), sshd.home()]);
    let out = jssh(&client)
        .args(setup_args(&sshd, "box"))
        .arg("--no-copy-id")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("without --no-copy-id"), "{}", stderr(&out));
    assert!(
        before == snapshot(&[client.root(), sshd.home()]),
        "no key is kept after a failed setup"
    );
}

#[test]
fn refuses_to_shadow_a_user_alias_unless_forced() {
    let sshd = Sshd::start();
    let client = Client::new(&sshd);
    let mut text = fs::read_to_string(client.ssh_config()).unwrap();
    text.push_str("Host box\n\tHostName 127.0.0.1\n");
    fs::write(client.ssh_config(), &text).unwrap();
    let out = jssh(&client).args(setup_args(&sshd, "box")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("already defined") && stderr(&out).contains("--force"),
        "{}",
        stderr(&out)
    );
    let forced = jssh(&client)
        .args(setup_args(&sshd, "box"))
        .arg("--force")
        .output()
        .unwrap();
    assert!(forced.status.success(), "{}", stderr(&forced));
}

#[test]
fn hosts_lists_and_remove_forgets() {
    let sshd = Sshd::start();
    let client = Client::new(&sshd);
    for alias in ["one", "two"] {
        let out = jssh(&client).args(setup_args(&sshd, alias)).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert_eq!(key_lines(&sshd, &client), 1, "one key serves both aliases");
    let json = jssh(&client).args(["hosts", "--json"]).output().unwrap();
    let hosts: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(hosts[0]["alias"], "one");
    assert_eq!(hosts[1]["port"], sshd.port());
    let names = jssh(&client).args(["hosts", "--names"]).output().unwrap();
    assert_eq!(stdout(&names), "one\ntwo\n");

    let out = jssh(&client).args(["setup", "--remove", "one"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("authorized_keys"),
        "says the key line stays: {}",
        stdout(&out)
    );
    let managed = fs::read_to_string(client.ssh_dir().join("config.d/jssh")).unwrap();
    assert!(
        !managed.contains("Host one") && managed.contains("Host two"),
        "{managed}"
    );
    assert_eq!(
        stdout(&jssh(&client).args(["hosts", "--names"]).output().unwrap()),
        "two\n"
    );
    assert!(client.ssh_dir().join("jssh_ed25519").exists(), "the key stays");

    let out = jssh(&client).args(["setup", "--remove", "one"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("known: two"), "{}", stderr(&out));
}

#[test]
fn password_login_installs_the_key() {
    let Some(user) = throwaway_user_with_password() else {
        eprintln!("skipped: creating a throwaway user with a password needs root");
        return;
    };
    let sshd = Sshd::start_with(&user.sshd_config());
    let client = Client::new(&sshd);
    let askpass = client.root().join("askpass");
    fs::write(&askpass, format!("#!/bin/sh\necho '{}'\n", user.password())).unwrap();
    fs::set_permissions(&askpass, fs::Permissions::from_mode(0o700)).unwrap();
    // No bootstrap key may work for this user: only the password can.
    let out = jssh(&client)
        .args(setup_args(&sshd, "pw"))
        .args(["--user", user.name()])
        .env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", ":0")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}\n{}", stdout(&out), stderr(&out), sshd.log());
    let login = ssh_through_managed_file(&client, "pw");
    assert!(login.status.success(), "{}", stderr(&login));
    assert!(Path::new(&user.authorized_keys()).exists());
}
