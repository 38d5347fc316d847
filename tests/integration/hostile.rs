//! Hostile input against a real sshd (issue 11, cases 3–6): a key path holding shell code, a
//! hand-edited `hosts.toml`, `%` where ssh expands tokens, and aliases that would collide or
//! escape the state dir. Each test names the case it pins; bad input must change no file and
//! run no command.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::fixture::{Client, Sshd};
use crate::setup::tripwire_path;
use crate::up::{free_port, get, parse_url, up};
use crate::util::{jssh, set_up, setup_args, snapshot, stderr, stdout};

/// How many lines of the server's authorized_keys hold the public key of `key`.
fn key_lines(sshd: &Sshd, key: &Path) -> usize {
    let mut public = key.as_os_str().to_owned();
    public.push(".pub");
    let public = fs::read_to_string(PathBuf::from(public)).unwrap();
    let material = public.split_whitespace().nth(1).unwrap().to_owned();
    let authorized = fs::read_to_string(sshd.authorized_keys()).unwrap();
    authorized.lines().filter(|l| l.contains(&material)).count()
}

/// `ssh -G ALIAS` through jssh's managed file alone.
fn resolve_through_managed_file(client: &Client, alias: &str) -> std::process::Output {
    std::process::Command::new("ssh")
        .arg("-F")
        .arg(client.ssh_dir().join("config.d/jssh"))
        .args(["-G", "--", alias])
        .output()
        .unwrap()
}

/// `ssh ALIAS true` through jssh's managed file alone, so only the profile's key can log in.
fn login_through_managed_file(client: &Client, alias: &str) -> std::process::Output {
    std::process::Command::new("ssh")
        .arg("-F")
        .arg(client.ssh_dir().join("config.d/jssh"))
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", client.known_hosts().display()))
        .args(["-o", "BatchMode=yes", "-o", "ControlMaster=no", "--", alias, "true"])
        .output()
        .unwrap()
}

fn private_dir(path: &Path) -> PathBuf {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(path).unwrap();
    path.to_owned()
}

/// Every path under `dirs` whose file name is `name`.
fn find_named(dirs: &[&Path], name: &str) -> Vec<PathBuf> {
    snapshot(dirs)
        .into_keys()
        .filter(|p| p.file_name().is_some_and(|n| n == name))
        .collect()
}

/// Asserts that `out` failed with exactly one line of error.
fn one_line_error(out: &std::process::Output, says: &str) {
    let err = stderr(out);
    assert!(!out.status.success(), "should fail: {}{err}", stdout(out));
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains(says), "expected {says:?} in: {err}");
}

/// Case 3: ssh-copy-id `eval`s its `-i` path, so a key path holding `$(…)` or backquotes ran
/// as shell code. Such a path is odd but legal: setup must work with it, and run nothing.
#[test]
fn case3_identity_with_shell_code_runs_nothing() {
    let sshd = Sshd::start();
    let client = Client::new(&sshd);
    let cwd = private_dir(&client.root().join("cwd"));
    let tmp = private_dir(&client.root().join("tmp"));
    let keys = private_dir(&client.root().join("keys"));
    for (alias, name) in [("dollar", "k$(touch pwned)"), ("backquote", "k`touch pwned`")] {
        let key = keys.join(name);
        let out = jssh(&client)
            .current_dir(&cwd)
            .env("TMPDIR", &tmp)
            .args(setup_args(&sshd, alias))
            .arg("--identity")
            .arg(&key)
            .output()
            .unwrap();
        assert!(out.status.success(), "{alias}: {}{}", stdout(&out), stderr(&out));
        assert_eq!(key_lines(&sshd, &key), 1, "{alias}: installed exactly once");
        let pwned = find_named(&[client.root(), sshd.home()], "pwned");
        assert!(pwned.is_empty(), "{alias}: shell code ran: {pwned:?}");
        // The key itself logs in through the managed file (ssh read the path literally).
        let login = login_through_managed_file(&client, alias);
        assert!(login.status.success(), "{alias}: {}", stderr(&login));
    }
}

/// Case 4: a hand-edited `hosts.toml` was rendered into `config.d/jssh` unchecked by the next
/// `jssh setup` of any alias: `port = 0` broke every ssh, a newline in `identity` added a
/// ProxyCommand. Now it is refused on load, with one line naming the file, the entry and the
/// field; nothing is written and nothing runs.
#[test]
fn case4_hand_edited_hosts_toml_is_refused_before_anything_is_written() {
    let sshd = Sshd::start();
    let client = Client::new(&sshd);
    set_up(&sshd, &client, "box", &[]);
    let hosts = client.config_dir().join("hosts.toml");
    let good = fs::read_to_string(&hosts).unwrap();
    let (path, log) = tripwire_path(&client);
    let marker = client.root().join("proxy-ran");
    let port_line = format!("port = {}", sshd.port());
    assert!(good.contains(&port_line), "{good}");
    let injected = format!("identity = \"/k\\\"\\n\\tProxyCommand touch {}\"", marker.display());
    let identity_line = good.lines().find(|l| l.starts_with("identity = ")).unwrap().to_owned();
    for (bad, field) in [
        (good.replace(&port_line, "port = 0"), "field port): invalid port 0"),
        (
            good.replace(&identity_line, &injected),
            "field identity): invalid identity",
        ),
    ] {
        fs::write(&hosts, &bad).unwrap();
        let before = snapshot(&[client.root(), sshd.home()]);
        let out = jssh(&client)
            .env("PATH", &path)
            .args(setup_args(&sshd, "other"))
            .output()
            .unwrap();
        one_line_error(&out, field);
        assert!(stderr(&out).contains(&hosts.display().to_string()), "{}", stderr(&out));
        assert!(stderr(&out).contains("host entry 1 \"box\""), "{}", stderr(&out));
        // `status` reads the same file and says the same line (see Profiles::load).
        let status = jssh(&client)
            .env("PATH", &path)
            .args(["status", "--local"])
            .output()
            .unwrap();
        one_line_error(&status, field);
        assert!(!log.exists(), "ran {}", fs::read_to_string(&log).unwrap());
        assert!(!marker.exists(), "the injected ProxyCommand ran");
        assert!(before == snapshot(&[client.root(), sshd.home()]), "files changed");
    }
    // The same values on the command line are refused by the same types.
    let port = sshd.port().to_string();
    for argv in [
        &["--port", &port, "--identity", "/k\n\tProxyCommand touch /tmp/x"][..],
        &["--port", &port, "--identity", "/k\"x"],
        &["--port", &port, "--identity", "/k${HOME}"],
        &["--port", "0"],
    ] {
        let before = snapshot(&[client.root(), sshd.home()]);
        let out = jssh(&client)
            .env("PATH", &path)
            .args(["setup", "other", "--host", "127.0.0.1", "--no-passphrase"])
            .args(argv)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{argv:?}: {}", stderr(&out));
        assert!(!log.exists(), "{argv:?} ran {}", fs::read_to_string(&log).unwrap());
        assert!(
            before == snapshot(&[client.root(), sshd.home()]),
            "{argv:?} changed files"
        );
    }
}

/// Case 5: ssh expands `%` tokens in HostName: `--host fe80::1%lo` (an IPv6 zone) failed with
/// "unknown key %l". Nothing here routes to that address, so the proof is ssh reading the
/// literal host: setup's own check gets as far as connecting, and `ssh -G` of the managed
/// file shows the zone.
#[test]
fn case5_an_ipv6_zone_reaches_ssh_literally() {
    let sshd = Sshd::start();
    let client = Client::new(&sshd);
    let before = snapshot(&[client.root(), sshd.home()]);
    let out = jssh(&client)
        .args([
            "setup",
            "zone",
            "--host",
            "fe80::1%lo",
            "--port",
            &sshd.port().to_string(),
        ])
        .args(["--no-passphrase", "--connect-timeout", "3"])
        .output()
        .unwrap();
    one_line_error(&out, "cannot reach fe80::1%lo port");
    assert!(
        before == snapshot(&[client.root(), sshd.home()]),
        "a failed setup changed files"
    );

    // A profile with a zone (written by hand: setup refuses a host it cannot reach) is
    // rendered so that ssh reads the zone as written.
    set_up(&sshd, &client, "box", &[]);
    let hosts = client.config_dir().join("hosts.toml");
    let text = fs::read_to_string(&hosts).unwrap();
    fs::write(&hosts, text.replace("host = \"127.0.0.1\"", "host = \"fe80::1%lo\"")).unwrap();
    set_up(&sshd, &client, "other", &[]);
    let resolved = resolve_through_managed_file(&client, "box");
    assert!(resolved.status.success(), "{}", stderr(&resolved));
    assert!(
        stdout(&resolved).lines().any(|l| l == "hostname fe80::1%lo"),
        "{}",
        stdout(&resolved)
    );
}

/// Case 5: ssh expands `%h` in IdentityFile, so `--identity /x/k%h` verified another file and
/// every rerun appended the key to the server's authorized_keys again.
#[test]
fn case5_a_percent_in_the_key_path_installs_the_key_once() {
    let sshd = Sshd::start();
    let client = Client::new(&sshd);
    let key = private_dir(&client.root().join("keys")).join("k%h");
    for run in ["first", "second"] {
        let out = jssh(&client)
            .args(setup_args(&sshd, "box"))
            .arg("--identity")
            .arg(&key)
            .output()
            .unwrap();
        assert!(out.status.success(), "{run}: {}{}", stdout(&out), stderr(&out));
        assert_eq!(key_lines(&sshd, &key), 1, "{run} run: the key is on the server once");
    }
    // Only that key can log in through the managed file: ssh read `k%h`, not `k127.0.0.1`.
    let login = login_through_managed_file(&client, "box");
    assert!(login.status.success(), "{}", stderr(&login));
}

/// Case 6: `.` and `..` were aliases (their state and sockets landed in the state dir's
/// parent, and `down ..` deleted files there), and a 300-character alias passed setup, then
/// broke `up`, `down` and `status` for every alias. All are refused with one line at setup,
/// before anything is written or run.
#[test]
fn case6_bad_aliases_are_refused_at_setup() {
    let sshd = Sshd::start();
    let client = Client::new(&sshd);
    let (path, log) = tripwire_path(&client);
    let too_long = "a".repeat(300);
    let before = snapshot(&[client.root(), sshd.home()]);
    for alias in [".", "..", ".hidden", &too_long] {
        let out = jssh(&client)
            .env("PATH", &path)
            .args(setup_args(&sshd, alias))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{alias}: {}", stderr(&out));
        // One line (and clap's usual pointer to --help).
        let err = stderr(&out);
        assert!(err.lines().next().unwrap().contains("invalid alias"), "{alias}: {err}");
        assert!(err.lines().nth(1).is_none_or(str::is_empty), "{alias}: {err}");
        for cmd in ["down", "status", "up"] {
            let out = jssh(&client).env("PATH", &path).args([cmd, alias]).output().unwrap();
            assert_eq!(out.status.code(), Some(2), "{cmd} {alias}: {}", stderr(&out));
        }
        assert!(!log.exists(), "{alias}: ran {}", fs::read_to_string(&log).unwrap());
    }
    assert!(
        before == snapshot(&[client.root(), sshd.home()]),
        "bad aliases changed files"
    );
}

/// Case 6: a hand-edited `hosts.toml` with a bad alias, or with two aliases that differ only in
/// case (one state dir on macOS), is refused on load with one line; a second alias differing
/// only in case is refused at setup. Every command that reads the profiles says that line
/// rather than going on with the others: `setup` would write the file back without the bad
/// entry, and a line naming the fix is one edit away.
#[test]
fn case6_colliding_or_bad_aliases_in_hosts_toml_are_one_clear_line() {
    let sshd = Sshd::start();
    let client = Client::new(&sshd);
    set_up(&sshd, &client, "gpu", &[]);
    let before = snapshot(&[client.root(), sshd.home()]);
    let out = jssh(&client).args(setup_args(&sshd, "GPU")).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("only in case"), "{}", stderr(&out));
    assert!(before == snapshot(&[client.root(), sshd.home()]), "files changed");

    let hosts = client.config_dir().join("hosts.toml");
    let good = fs::read_to_string(&hosts).unwrap();
    let entry = &good[good.find("[[host]]").unwrap()..];
    for (bad, says) in [
        (
            good.replace("alias = \"gpu\"", "alias = \"..\""),
            "field alias): invalid alias \"..\"",
        ),
        (
            format!("{good}\n{}", entry.replace("\"gpu\"", "\"GPU\"")),
            "differ only in case",
        ),
    ] {
        fs::write(&hosts, &bad).unwrap();
        let before = snapshot(&[client.root(), sshd.home()]);
        for argv in [&["status", "--local"][..], &["hosts"], &["down", "--all"]] {
            let out = jssh(&client).args(argv).output().unwrap();
            one_line_error(&out, says);
            assert!(stderr(&out).contains("hosts.toml"), "{argv:?}: {}", stderr(&out));
        }
        assert!(before == snapshot(&[client.root(), sshd.home()]), "files changed");
    }
}

/// Case 6: tmux turns `.` into `_` in session names, so `a.b` and `a_b` were one tmux session
/// and one remote run dir, and `jssh down a_b` stopped `a.b`'s Jupyter.
#[test]
fn case6_dotted_and_underscored_aliases_keep_their_own_servers() {
    let sshd = Sshd::start();
    let client = Client::new(&sshd);
    set_up(&sshd, &client, "a.b", &[]);
    set_up(&sshd, &client, "a_b", &[]);
    let (dotted, dotted_token) = parse_url(&up(&client, "a.b", &["--port", &free_port()]));
    let (underscored, _) = parse_url(&up(&client, "a_b", &["--port", &free_port()]));
    assert_ne!(dotted, underscored);
    let runs: Vec<String> = fs::read_dir(sshd.home().join(".jssh/run"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(runs.len(), 2, "one run dir each: {runs:?}");

    let out = jssh(&client).args(["down", "a_b"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        get(dotted, "/api/status", Some(&dotted_token)),
        200,
        "a.b's Jupyter still serves after `down a_b`"
    );
    let out = jssh(&client).args(["down", "a.b"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}
