//! The remote side: `--env` environments, `jssh jupyter` (jssh's own config file) and
//! `jssh password`, against the real sshd and the pinned Jupyter.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use crate::fixture::Sshd;
use crate::up::{free_port, parse_url, ready_host, up};
use crate::util::{jssh, stderr, stdout, venv};

/// jssh's config file in the fixture's remote Jupyter config dir.
fn remote_config(sshd: &Sshd) -> PathBuf {
    sshd.home().parent().unwrap().join("jupyter/config/jssh_config.json")
}

/// One raw HTTP exchange; returns the whole response.
fn http(port: u16, request: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// Logs in with a password as a browser would (xsrf cookie, then the form); the status code.
fn login(port: u16, password: &str) -> u16 {
    let page = http(
        port,
        &format!("GET /login HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"),
    );
    let xsrf = page
        .lines()
        .find_map(|l| l.strip_prefix("Set-Cookie: _xsrf="))
        .and_then(|v| v.split(';').next())
        .unwrap_or_else(|| panic!("no xsrf cookie in {page}"))
        .to_owned();
    let body = format!("_xsrf={xsrf}&password={password}");
    let response = http(
        port,
        &format!(
            "POST /login HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: _xsrf={xsrf}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// A Jupyter that dies as it starts is reported at once, with its log, and nothing is left
/// running (up watches its pane's process while it waits).
#[test]
fn a_jupyter_that_dies_on_start_is_reported_with_its_log() {
    let (_sshd, client) = ready_host("dies");
    let started = std::time::Instant::now();
    let out = jssh(&client)
        .args(["up", "dies", "-d", "--timeout", "90", "--port", &free_port(), "--env"])
        .arg("pre:echo 'no GPU left for you' >&2; exit 3")
        .output()
        .unwrap();
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}{}", stdout(&out), stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("Jupyter exited on"), "{err}");
    assert!(err.contains("no GPU left for you"), "its log: {err}");
    assert!(
        took < std::time::Duration::from_secs(30),
        "told within seconds, not at the timeout: {took:?}"
    );
    let status = jssh(&client).args(["status", "dies", "--json"]).output().unwrap();
    assert!(!stdout(&status).contains("\"up\""), "nothing runs: {}", stdout(&status));
}

#[test]
fn pre_snippets_run_once_exactly_as_written() {
    let (sshd, client) = ready_host("pre");
    let log = sshd.home().join("pre.log");
    let snippet = format!(
        "pre:printf '%s|%s\\n' \"a  b\" '$(not run)' >> {}; export JSSH_X=\"it's\"",
        log.display()
    );
    up(
        &client,
        "pre",
        &[
            "--port",
            &free_port(),
            "--env",
            &snippet,
            "--env",
            &format!("venv:{}", venv()),
        ],
    );
    assert_eq!(
        fs::read_to_string(&log).unwrap(),
        "a  b|$(not run)\n",
        "ran once, literally"
    );
    let hosts = jssh(&client).args(["hosts", "--json"]).output().unwrap();
    let hosts: serde_json::Value = serde_json::from_slice(&hosts.stdout).unwrap();
    let saved = hosts[0]["env"].as_array().unwrap();
    assert!(
        saved.iter().any(|e| e == snippet.as_str()),
        "the env is saved in the profile: {saved:?}"
    );
    jssh(&client).args(["down", "pre"]).assert().success();
}

#[test]
fn a_missing_conda_env_is_named() {
    let (_sshd, client) = ready_host("conda");
    let out = jssh(&client)
        .args(["up", "conda", "-d", "--env", "conda:no-such-env"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("conda:no-such-env"), "{}", stderr(&out));
}

#[test]
fn jupyter_config_and_password_round_trip() {
    let (sshd, client) = ready_host("pw");
    let env = format!("venv:{}", venv());
    let dir = client.root().join("notebooks");
    fs::create_dir_all(&dir).unwrap();

    // Remote access without a password is refused, and nothing is written.
    let out = jssh(&client)
        .args(["jupyter", "pw", "--allow-remote-access", "--env", &env])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("without a password"), "{}", stderr(&out));
    assert!(!remote_config(&sshd).exists());
    let hosts = fs::read_to_string(client.config_dir().join("hosts.toml")).unwrap();
    assert!(!hosts.contains("venv:"), "a refused request saved its --env: {hosts}");

    let out = jssh(&client)
        .args(["jupyter", "pw", "--env", &env, "--dir", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("jupyter_server 2."), "{}", stdout(&out));
    let config: serde_json::Value = serde_json::from_str(&fs::read_to_string(remote_config(&sshd)).unwrap()).unwrap();
    assert_eq!(config["ServerApp"]["ip"], "127.0.0.1");
    assert_eq!(config["ServerApp"]["open_browser"], false);
    assert_eq!(config["ServerApp"]["root_dir"], dir.to_str().unwrap());
    assert!(
        remote_config(&sshd).with_file_name("jupyter_server_config.py").exists(),
        "default config generated"
    );

    let password = "s3cret-Pass";
    let out = jssh(&client)
        .args(["password", "pw", "--stdin"])
        .write_stdin(format!("{password}\n"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = fs::read_to_string(remote_config(&sshd)).unwrap();
    assert!(!text.contains(password), "the password is stored only as a hash");
    let config: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(
        config["PasswordIdentityProvider"]["hashed_password"]
            .as_str()
            .unwrap()
            .starts_with("argon2:"),
        "{text}"
    );
    assert_eq!(
        fs::metadata(remote_config(&sshd)).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let url = up(&client, "pw", &["--port", &free_port()]);
    let (port, _token) = parse_url(&url);
    assert_eq!(login(port, "wrong"), 401, "a wrong password is refused");
    assert_eq!(login(port, password), 302, "the password logs in");
    jssh(&client).args(["down", "pw"]).assert().success();

    let out = jssh(&client).args(["password", "pw", "--clear"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!fs::read_to_string(remote_config(&sshd)).unwrap().contains("argon2"));
}

/// The classic Notebook venv that `scripts/install-deps` makes beside the main one.
fn classic_venv() -> String {
    let venv = std::env::var("JSSH_TEST_CLASSIC_VENV").unwrap_or_else(|_| {
        let main = std::path::PathBuf::from(venv());
        main.with_file_name("jssh-test-classic-venv").display().to_string()
    });
    assert!(
        PathBuf::from(&venv).join("bin/jupyter").exists(),
        "no classic venv at {venv}: run scripts/install-deps"
    );
    venv
}

#[test]
fn a_classic_notebook_gets_its_own_names() {
    let (sshd, client) = ready_host("old");
    let out = jssh(&client)
        .args(["jupyter", "old", "--env", &format!("venv:{}", classic_venv())])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("notebook 6.5.7"), "{}", stdout(&out));
    let config: serde_json::Value = serde_json::from_str(&fs::read_to_string(remote_config(&sshd)).unwrap()).unwrap();
    assert_eq!(config["NotebookApp"]["ip"], "127.0.0.1", "{config}");

    // `up` without --env: the profile remembers the classic venv.
    let out = jssh(&client)
        .args([
            "up",
            "old",
            "-d",
            "--notebook",
            "--timeout",
            "90",
            "--port",
            &free_port(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let url = stdout(&out).lines().last().unwrap().to_owned();
    assert!(url.contains("/tree?token="), "{url}");
    let (port, token) = parse_url(&url);
    let status = |auth: &str| {
        http(
            port,
            &format!("GET /api/status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}Connection: close\r\n\r\n"),
        )
    };
    assert!(status(&format!("Authorization: token {token}\r\n")).starts_with("HTTP/1.1 200"));
    assert!(status("").starts_with("HTTP/1.1 403"), "the token is enforced");
    let log = fs::read_to_string(sshd.home().join(".jssh/run/jssh-old/jupyter.log")).unwrap();
    assert!(log.contains("NotebookApp") && log.contains("6.5.7"), "{log}");
    jssh(&client).args(["down", "old"]).assert().success();
}
