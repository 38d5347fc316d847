//! `jssh setup`, `jssh setup --remove` and `jssh hosts` against a real sshd.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::fixture::{Client, Sshd, throwaway_user_with_password};
use crate::util::{another_host_key, jssh, mode, setup_args, snapshot, stderr, stdout};

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

/// Case 9 of issue 11: the error is one line, without the `\r` of ssh's `\r\n` shown as junk,
/// names the user's file and line (not a temporary copy), and changes nothing; with --force
/// (which skips the "already defined?" check) as without.
#[test]
fn case9_config_rejected_by_ssh_is_one_clean_line_and_kept() {
    let sshd = Sshd::start();
    let client = Client::new(&sshd);
    let text = fs::read_to_string(client.ssh_config()).unwrap().replace('\n', "\r\n");
    fs::write(client.ssh_config(), format!("{text}NoSuchDirective yes\r\n")).unwrap();
    let before = snapshot(&[client.root()]);
    for force in [false, true] {
        let out = jssh(&client)
            .args(setup_args(&sshd, "box"))
            .args(force.then_some("--force"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        let expected = format!(
            "{}: line 4: Bad configuration option: nosuchdirective",
            client.ssh_config().display()
        );
        assert!(
            err.contains("ssh rejects the config") && err.contains(&expected),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            !err.contains('\u{fffd}') && !err.contains('\r') && !err.contains("terminating"),
            "{err:?}"
        );
        assert!(!err.contains(".jssh-setup-"), "names a temporary file: {err}");
        assert!(before == snapshot(&[client.root()]), "files changed");
    }
}

#[test]
fn unknown_host_key_and_refused_auth_are_explained() {
    let sshd = Sshd::start();
    let client = Client::new(&sshd);
    fs::write(client.known_hosts(), "").unwrap();
    let before = snapshot(&[client.root(), sshd.home()]);
    let out = jssh(&client).args(setup_args(&sshd, "box")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("host key of box is not known"), "{err}");
    // Case 9 of issue 11: `ssh box` does not work before setup succeeds; this does.
    let direct = format!("`ssh -p {} {}@127.0.0.1`", sshd.port(), sshd.user());
    assert!(err.contains(&direct) && !err.contains("`ssh box`"), "{err}");
    assert_one_clean_line(&err);
    assert!(before == snapshot(&[client.root(), sshd.home()]), "files changed");

    // Another key on record for this host: a changed host key, with the advice to check.
    let key = another_host_key(&client.root().join("other_host_key"));
    fs::write(client.known_hosts(), format!("[127.0.0.1]:{} {key}\n", sshd.port())).unwrap();
    let before = snapshot(&[client.root(), sshd.home()]);
    let out = jssh(&client).args(setup_args(&sshd, "box")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("host key of box has changed"), "{err}");
    assert!(
        err.contains(&format!("ssh-keygen -R '[127.0.0.1]:{}'", sshd.port())),
        "{err}"
    );
    assert_one_clean_line(&err);
    assert!(before == snapshot(&[client.root(), sshd.home()]), "files changed");

    fs::write(client.known_hosts(), sshd.known_hosts_line() + "\n").unwrap();
    let before = snapshot(&[client.root(), sshd.home()]);
    let out = jssh(&client)
        .args(setup_args(&sshd, "box"))
        .arg("--no-copy-id")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("without --no-copy-id"), "{err}");
    assert_one_clean_line(&err);
    // Case 9 of issue 11: the key made for this run was thrown away: not "created".
    assert!(!stdout(&out).contains("created the key"), "{}", stdout(&out));
    assert!(
        before == snapshot(&[client.root(), sshd.home()]),
        "no key is kept after a failed setup"
    );
}

/// Case 9 of issue 11: a verification error says what went wrong on one line: not ssh's `-v`
/// banner and chatter, not an `ssh -F <temporary file>` command that is gone by then.
fn assert_one_clean_line(err: &str) {
    assert_eq!(err.lines().count(), 1, "{err}");
    for junk in ["OpenSSH_", "debug1", "-F ", ".jssh-setup-", "\u{fffd}"] {
        assert!(!err.contains(junk), "{junk:?} in {err}");
    }
}

/// Case 9 of issue 11: a ProxyCommand that the user's config gives every host, and so the
/// new alias, is named in the connection error with where it comes from; the failed setup
/// changes nothing.
#[test]
fn case9_inherited_proxy_command_is_named() {
    let sshd = Sshd::start();
    let client = Client::new(&sshd);
    let mut text = fs::read_to_string(client.ssh_config()).unwrap();
    text.push_str("Host other\n\tPort 2\nMatch all\n\tProxyCommand /bin/false %h\n");
    fs::write(client.ssh_config(), &text).unwrap();
    let before = snapshot(&[client.root(), sshd.home()]);
    let out = jssh(&client).args(setup_args(&sshd, "box")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let named = format!(
        "your ssh config gives every host `ProxyCommand /bin/false %h` ({} line 7), and jssh's box inherits it",
        client.ssh_config().display()
    );
    assert!(err.contains("cannot reach box") && err.contains(&named), "{err}");
    assert_one_clean_line(&err);
    assert!(before == snapshot(&[client.root(), sshd.home()]), "files changed");
}

/// Case 9 of issue 11: `--identity` naming a directory or a public key is a precise usage
/// error before anything runs or changes, not ssh's advice about permissions.
#[test]
fn case9_identity_that_is_a_directory_or_public_key_is_refused_first() {
    let sshd = Sshd::start();
    let client = Client::new(&sshd);
    let (path, log) = tripwire_path(&client);
    let public = client.ssh_dir().join("bootstrap_ed25519.pub");
    fs::write(&public, "ssh-ed25519 AAAA test\n").unwrap();
    let before = snapshot(&[client.root(), sshd.home()]);
    let dir = client.ssh_dir();
    for (identity, says) in [
        (&dir, "is a directory: give the private key file in it"),
        (&public, "is a public key: give its private key"),
    ] {
        let out = jssh(&client)
            .env("PATH", &path)
            .args(setup_args(&sshd, "box"))
            .arg("--identity")
            .arg(identity)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains(says), "{}", stderr(&out));
        assert_eq!(stderr(&out).lines().count(), 1);
        assert!(!log.exists(), "ran {}", fs::read_to_string(&log).unwrap());
    }
    assert!(before == snapshot(&[client.root(), sshd.home()]), "files changed");
}

/// Case 2 of issue 11: a symlinked `~/.ssh/config` and `config.d/jssh` (stow, yadm) are
/// written through to their targets, atomically there, keeping the links and the target's
/// mode; the one-time backup is a copy of the content.
#[test]
fn case2_symlinked_config_is_written_through_its_link() {
    let sshd = Sshd::start();
    let client = Client::new(&sshd);
    let dotfiles = client.root().join("dotfiles");
    fs::create_dir_all(dotfiles.join("ssh")).unwrap();
    let original = fs::read_to_string(client.ssh_config()).unwrap();
    let target = dotfiles.join("ssh/config");
    fs::write(&target, &original).unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();
    fs::remove_file(client.ssh_config()).unwrap();
    std::os::unix::fs::symlink("../dotfiles/ssh/config", client.ssh_config()).unwrap();
    fs::create_dir_all(client.ssh_dir().join("config.d")).unwrap();
    std::os::unix::fs::symlink(dotfiles.join("ssh/jssh"), client.ssh_dir().join("config.d/jssh")).unwrap();

    let out = jssh(&client).args(setup_args(&sshd, "box")).output().unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    for link in [client.ssh_config(), client.ssh_dir().join("config.d/jssh")] {
        assert!(
            fs::symlink_metadata(&link).unwrap().file_type().is_symlink(),
            "{} replaced",
            link.display()
        );
    }
    let include = format!("Include {}\n", client.ssh_dir().join("config.d/jssh").display());
    assert_eq!(fs::read_to_string(&target).unwrap(), format!("{include}{original}"));
    assert_eq!(mode(&target), 0o644, "the target's mode is kept");
    assert!(
        fs::read_to_string(dotfiles.join("ssh/jssh"))
            .unwrap()
            .contains("Host box")
    );
    let backup = client.ssh_dir().join("config.jssh-backup");
    assert!(fs::symlink_metadata(&backup).unwrap().is_file());
    assert_eq!(fs::read_to_string(&backup).unwrap(), original);
    let names: Vec<_> = fs::read_dir(dotfiles.join("ssh"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "no temp files left: {names:?}");
    let login = std::process::Command::new("ssh")
        .arg("-F")
        .arg(client.ssh_config())
        .args(["-o", "BatchMode=yes", "--", "box", "true"])
        .output()
        .unwrap();
    assert!(login.status.success(), "{}", stderr(&login));
}

/// A directory made read-only for the test, as home-manager's store is: a read-only bind
/// mount as root (for whom modes do not stop writes), modes otherwise; undone on drop.
struct ReadOnly {
    dir: std::path::PathBuf,
    mounted: bool,
}

impl ReadOnly {
    fn new(dir: &Path) -> ReadOnly {
        let mounted = nix::unistd::geteuid().is_root();
        if mounted {
            for args in [&["--bind"][..], &["-o", "remount,bind,ro"][..]] {
                let status = std::process::Command::new("mount")
                    .args(args)
                    .arg(dir)
                    .arg(dir)
                    .status()
                    .unwrap();
                assert!(status.success(), "mount {args:?}");
            }
        } else {
            for entry in fs::read_dir(dir).unwrap() {
                fs::set_permissions(entry.unwrap().path(), fs::Permissions::from_mode(0o444)).unwrap();
            }
            fs::set_permissions(dir, fs::Permissions::from_mode(0o555)).unwrap();
        }
        ReadOnly {
            dir: dir.to_owned(),
            mounted,
        }
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        if self.mounted {
            let _ = std::process::Command::new("umount").arg(&self.dir).status();
        } else {
            let _ = fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o755));
        }
    }
}

/// Case 2 of issue 11: a config linked into a read-only store is a one-line error saying
/// which line to add to which file, decided before anything is written, made or installed.
#[test]
fn case2_read_only_link_target_is_explained_and_nothing_changes() {
    let sshd = Sshd::start();
    let client = Client::new(&sshd);
    let store = client.root().join("store");
    fs::create_dir_all(&store).unwrap();
    let target = store.join("hm_ssh_config");
    fs::copy(client.ssh_config(), &target).unwrap();
    fs::remove_file(client.ssh_config()).unwrap();
    std::os::unix::fs::symlink(&target, client.ssh_config()).unwrap();
    let read_only = ReadOnly::new(&store);
    let before = snapshot(&[client.root(), sshd.home()]);
    for dry_run in [false, true] {
        let out = jssh(&client)
            .args(setup_args(&sshd, "box"))
            .args(dry_run.then_some("--dry-run"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        let line = format!(
            "add the line `Include {}` at the top",
            client.ssh_dir().join("config.d/jssh").display()
        );
        assert!(
            err.contains(&line) && err.contains(&target.display().to_string()),
            "{err}"
        );
        assert!(err.contains("nothing was changed"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(before == snapshot(&[client.root(), sshd.home()]), "files changed");
        assert!(!client.ssh_dir().join("jssh_ed25519").exists());
    }
    drop(read_only);
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
