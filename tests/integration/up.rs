//! `jssh up`/`down`/`status`/`url` against a real sshd, real tmux and a real Jupyter from the
//! pinned venv: the URL works, the tunnel heals, nothing is left behind.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::fixture::{Client, Sshd};
use crate::util::{
    Proc, client_ssh, jssh, jssh_at, jssh_std, kill, local_status, mode, process_table, set_up, status, stderr, stdout,
    venv,
};

/// A fixture with `alias` set up and its remote environment pointed at the venv.
pub(crate) fn ready_host(alias: &str) -> (Sshd, Client) {
    let sshd = Sshd::start();
    let client = Client::new(&sshd);
    set_up(&sshd, &client, alias, &[]);
    (sshd, client)
}

pub(crate) fn up(client: &Client, alias: &str, extra: &[&str]) -> String {
    let out = jssh(client)
        .args(["up", alias, "-d", "--timeout", "90", "--env"])
        .arg(format!("venv:{}", venv()))
        .args(extra)
        .output()
        .unwrap();
    let log = client.supervisor_log(alias);
    assert!(
        out.status.success(),
        "up: {}{}\nsupervisor log:\n{log}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out).lines().last().unwrap().to_owned()
}

/// A free local port. Tests run in parallel: left to itself, each `up` would pick 8888 if free,
/// and two starting at once can both see it free.
pub(crate) fn free_port() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string()
}

/// `(port, token)` from a printed URL.
pub(crate) fn parse_url(url: &str) -> (u16, String) {
    let rest = url
        .strip_prefix("http://127.0.0.1:")
        .unwrap_or_else(|| panic!("not a loopback URL: {url}"));
    let port = rest.split('/').next().unwrap().parse().unwrap();
    let token = url.split("token=").nth(1).unwrap().to_owned();
    (port, token)
}

/// A plain HTTP GET; the status code, or 0 when nothing answered.
pub(crate) fn get(port: u16, path: &str, token: Option<&str>) -> u16 {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: token {t}\r\n"))
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}Connection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return 0;
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

pub(crate) fn body(port: u16, path: &str, token: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: token {token}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    buf
}

/// Waits until the URL answers 200; returns how long that took.
pub(crate) fn answers_within(client: &Client, port: u16, token: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    while start.elapsed() < limit {
        if get(port, "/api/status", Some(token)) == 200 {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = fs::read_dir(client.state_dir())
        .unwrap()
        .flatten()
        .map(|d| fs::read_to_string(d.path().join("supervisor.log")).unwrap_or_default())
        .collect::<String>();
    panic!("the URL did not answer within {limit:?}; supervisor log:\n{log}");
}

/// Live (non-zombie) processes whose command line contains `needle` and all of `also`.
fn processes(needle: &str, also: &[&str]) -> Vec<(u32, String)> {
    process_table()
        .into_iter()
        .filter(|p| p.command.contains(needle) && also.iter().all(|a| p.command.contains(a)))
        .map(|p| (p.pid, p.command))
        .collect()
}

pub(crate) fn tunnel_ssh(client: &Client) -> Vec<(u32, String)> {
    processes(&client.root().display().to_string(), &["ssh", " -N "])
}

/// The client's supervisors. A child the supervisor is spawning shows its parent's command
/// line until it execs, so a process whose parent is also listed is not counted (regression:
/// "one supervisor" saw two once, under load).
pub(crate) fn supervisors(client: &Client) -> Vec<(u32, String)> {
    let root = client.root().display().to_string();
    let found: Vec<Proc> = process_table()
        .into_iter()
        .filter(|p| p.command.contains(&root) && p.command.contains("supervise"))
        .collect();
    found
        .iter()
        .filter(|p| !found.iter().any(|q| q.pid == p.ppid))
        .map(|p| (p.pid, p.command.clone()))
        .collect()
}

/// The addresses that listen on local TCP `port`: from lsof, as on a Mac, or without it from
/// the kernel's tables in /proc (Linux).
fn listen_addresses(port: u16) -> Vec<String> {
    if let Ok(out) = Command::new("lsof")
        .args(["-nP", "-a", &format!("-iTCP:{port}"), "-sTCP:LISTEN", "-Fn"])
        .output()
    {
        return stdout(&out)
            .lines()
            .filter_map(|l| l.strip_prefix('n')?.rsplit_once(':').map(|(addr, _)| addr.to_owned()))
            .collect();
    }
    let hex = format!(":{port:04X}");
    let mut found = Vec::new();
    for (table, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        for line in fs::read_to_string(table).unwrap().lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields[3] != "0A" || !fields[1].ends_with(&hex) {
                continue;
            }
            let addr = fields[1].split(':').next().unwrap();
            found.push(if v6 {
                format!("[{addr}]")
            } else {
                // Little-endian hex: 0100007F is 127.0.0.1.
                let n = u32::from_str_radix(addr, 16).unwrap();
                std::net::Ipv4Addr::from(n.swap_bytes()).to_string()
            });
        }
    }
    found
}

fn remote_sessions(client: &Client, alias: &str) -> String {
    let out = client_ssh(client, false)
        .args([
            "--",
            alias,
            "tmux -L jssh list-sessions -F '#{session_name}' 2>/dev/null; true",
        ])
        .output()
        .unwrap();
    stdout(&out)
}

/// SIGKILLs the alias's remote Jupyter, then waits (10 s at most) for the supervisor to log
/// `line`.
pub(crate) fn kill_jupyter_until_logged(client: &Client, alias: &str, line: &str) {
    let pid = status(client, alias)["remote_pid"].as_u64().unwrap();
    kill(u32::try_from(pid).unwrap(), "-KILL");
    let log_path = client.state_dir().join(alias).join("supervisor.log");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fs::read_to_string(&log_path).unwrap().contains(line) {
        assert!(Instant::now() < deadline, "{}", fs::read_to_string(&log_path).unwrap());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn up_serves_a_token_protected_loopback_url_and_down_cleans_up() {
    let (sshd, client) = ready_host("nb");
    let url = up(&client, "nb", &["--port", &free_port()]);
    let (port, token) = parse_url(&url);
    assert_eq!(get(port, "/api/status", Some(&token)), 200);
    assert_eq!(get(port, "/api/status", None), 403, "the token is enforced");

    // The local listener is bound to loopback only (no IPv6, no wildcard).
    let listeners = listen_addresses(port);
    assert!(
        !listeners.is_empty() && listeners.iter().all(|a| a == "127.0.0.1"),
        "{listeners:?}"
    );

    // The token is in no process's argv, local or remote (they share this machine).
    assert!(
        processes(&token, &[]).is_empty(),
        "token in argv: {:?}",
        processes(&token, &[])
    );

    let st = status(&client, "nb");
    assert_eq!(st["state"], "up", "{st}");
    assert_eq!(st["local_port"], port);
    assert!(
        st["remote_port"].as_u64().is_some() && st["remote_pid"].as_u64().is_some(),
        "{st}"
    );
    assert_eq!(st["url"], url.as_str());
    assert_eq!(st["remote_checked"], true);
    // --local answers from local state alone.
    let local = &local_status(&client, "nb");
    assert_eq!(
        (&local["state"], &local["remote_checked"], &local["url"]),
        (&st["state"], &serde_json::Value::Bool(false), &st["url"]),
        "{local}"
    );
    let url_out = jssh(&client).args(["url", "nb"]).output().unwrap();
    assert_eq!(stdout(&url_out).trim(), url);

    // `open` hands the browser opener a private page, never the token itself. (A stand-in
    // for xdg-open, or macOS's open, records what it was given: there is no browser here.)
    let bin = client.root().join("opener");
    fs::create_dir(&bin).unwrap();
    let record = client.root().join("opened");
    let script = format!(
        "#!/bin/sh\n{{ printf '%s\\n' \"$@\"; ls -ln \"$1\" | cut -c1-10; cat \"$1\"; }} > '{}'\n",
        record.display()
    );
    let stand_in = bin.join(if cfg!(target_os = "macos") { "open" } else { "xdg-open" });
    fs::write(&stand_in, script).unwrap();
    fs::set_permissions(&stand_in, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    jssh(&client).args(["open", "nb"]).env("PATH", path).assert().success();
    let opened = fs::read_to_string(&record).unwrap();
    let mut lines = opened.lines();
    let argument = lines.next().unwrap();
    assert!(
        !argument.contains(&token),
        "the token reached the opener's argv: {argument}"
    );
    assert_eq!(lines.next(), Some("-rw-------"), "{opened}");
    assert!(opened.contains(&format!("url={url}")), "{opened}");

    // A second `up` reuses the server, quickly.
    let start = Instant::now();
    assert_eq!(up(&client, "nb", &[]), url);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "warm up took {:?}",
        start.elapsed()
    );
    let supervisor = supervisors(&client);
    assert_eq!(supervisor.len(), 1);
    // The small binary of its own supervises, not the whole CLI (the idle resident set).
    // (jssh starts it by its absolute path, so that is its first word.)
    let exe = supervisor[0].1.split(' ').next().unwrap();
    assert_eq!(Path::new(exe), Path::new(env!("CARGO_BIN_EXE_jssh-supervisor")));

    let out = jssh(&client).args(["down", "nb"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(get(port, "/api/status", Some(&token)), 0, "port closed");
    assert!(
        supervisors(&client).is_empty() && tunnel_ssh(&client).is_empty(),
        "processes left"
    );
    assert_eq!(remote_sessions(&client, "nb").trim(), "", "remote tmux session gone");
    assert!(
        !sshd.home().join(".jssh/run/jssh-nb").exists(),
        "token file and run dir removed"
    );
    assert_eq!(status(&client, "nb")["state"], "down");
}

#[test]
fn tunnel_heals_after_ssh_kill_outage_jupyter_crash_and_supervisor_crash() {
    let (mut sshd, client) = ready_host("heal");
    let url = up(&client, "heal", &["--port", &free_port()]);
    let (port, token) = parse_url(&url);

    // kill -9 of the tunnel's ssh: back within 2 s.
    let live = status(&client, "heal")["tunnel_ssh_pid"].as_u64().unwrap();
    assert!(tunnel_ssh(&client).iter().any(|(pid, _)| u64::from(*pid) == live));
    kill(u32::try_from(live).unwrap(), "-KILL");
    answers_within(&client, port, &token, Duration::from_secs(2));
    assert!(status(&client, "heal")["reconnects"].as_u64().unwrap() >= 1);

    // A 5 s sshd outage (listener gone, the tunnel's connection cut): back within 3 s of the restart.
    sshd.stop_listener();
    for (pid, _) in tunnel_ssh(&client) {
        kill(pid, "-KILL");
    }
    std::thread::sleep(Duration::from_secs(5));
    sshd.restart();
    answers_within(&client, port, &token, Duration::from_secs(3));

    // One remote watch, not one per connection it outlived: a lost connection ends its
    // `tmux wait-for` (regression: they stayed until Jupyter exited).
    let waiting = || sshd.remote_processes("wait-for jssh-exit-");
    let deadline = Instant::now() + Duration::from_secs(5);
    while waiting().len() != 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(waiting().len(), 1, "remote watches: {:?}", waiting());

    // The remote Jupyter killed: the watch reports it at once, and it is restarted.
    let pid = status(&client, "heal")["remote_pid"].as_u64().unwrap();
    kill(u32::try_from(pid).unwrap(), "-KILL");
    answers_within(&client, port, &token, Duration::from_secs(30));
    assert_eq!(status(&client, "heal")["restarts"], 1);
    let log = fs::read_to_string(client.state_dir().join("heal/supervisor.log")).unwrap();
    assert!(
        log.contains("remote Jupyter exited\n"),
        "not noticed by the watch:\n{log}"
    );

    // The supervisor killed: `up` recovers the same server on the same port.
    let remote_pid = status(&client, "heal")["remote_pid"].clone();
    let sup = supervisors(&client);
    assert_eq!(sup.len(), 1, "{sup:?}");
    kill(sup[0].0, "-KILL");
    for (pid, _) in tunnel_ssh(&client) {
        kill(pid, "-KILL");
    }
    assert_eq!(up(&client, "heal", &[]), url, "same port and token");
    assert_eq!(status(&client, "heal")["remote_pid"], remote_pid, "same server");
    let out = jssh(&client).args(["down", "heal"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn concurrent_ups_share_one_server() {
    let (_sshd, client) = ready_host("two");
    let port = free_port();
    let spawn = || {
        let mut cmd = jssh_std(&client);
        cmd.args(["up", "two", "-d", "--timeout", "90", "--port", &port, "--env"])
            .arg(format!("venv:{}", venv()));
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success() && b.status.success(), "{}{}", stderr(&a), stderr(&b));
    assert_eq!(stdout(&a).lines().last(), stdout(&b).lines().last(), "one URL");
    assert_eq!(supervisors(&client).len(), 1, "one supervisor");
    assert_eq!(remote_sessions(&client, "two").lines().count(), 1, "one server");
    jssh(&client).args(["down", "two"]).assert().success();
}

#[test]
fn a_jssh_installed_without_its_supervisor_binary_supervises_itself() {
    let (_sshd, client) = ready_host("lone");
    let dir = client.root().join("bin");
    fs::create_dir(&dir).unwrap();
    let lone = dir.join("jssh");
    fs::copy(env!("CARGO_BIN_EXE_jssh"), &lone).unwrap();
    let out = jssh_at(&client, &lone)
        .args(["up", "lone", "-d", "--timeout", "90", "--port", &free_port(), "--env"])
        .arg(format!("venv:{}", venv()))
        .output()
        .unwrap();
    assert!(out.status.success(), "up: {}{}", stdout(&out), stderr(&out));
    let (port, token) = parse_url(stdout(&out).lines().last().unwrap());
    assert_eq!(get(port, "/api/status", Some(&token)), 200);
    let supervisor = supervisors(&client);
    assert_eq!(supervisor.len(), 1);
    assert_eq!(Path::new(supervisor[0].1.split(' ').next().unwrap()), lone);
    jssh(&client).args(["down", "lone"]).assert().success();
}

#[test]
fn socket_mode_keep_remote_and_a_literal_dir() {
    let (sshd, client) = ready_host("sock");
    let pwned = client.root().join("pwned");
    let dir = client.root().join(format!("a b; $(touch {})", pwned.display()));
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("marker.txt"), "hi").unwrap();
    let url = up(
        &client,
        "sock",
        &["--socket", "--port", &free_port(), "--dir", &dir.display().to_string()],
    );
    let (port, token) = parse_url(&url);
    assert_eq!(get(port, "/api/status", Some(&token)), 200);
    let listing = body(port, "/api/contents", &token);
    assert!(
        listing.contains("marker.txt"),
        "root_dir is the literal --dir: {listing}"
    );
    assert!(!pwned.exists(), "the --dir was executed by a shell");
    let st = status(&client, "sock");
    // Before OpenSSH 9.4 no stdio forward reaches a socket: `up` said so and used a port.
    if let Some(socket) = st["remote_socket"].as_str() {
        assert!(socket.starts_with(&sshd.home().display().to_string()), "{st}");
        let mode = |p: &str| std::os::unix::fs::PermissionsExt::mode(&fs::metadata(p).unwrap().permissions()) & 0o777;
        assert_eq!(mode(socket), 0o600);
        assert_eq!(mode(Path::new(socket).parent().unwrap().to_str().unwrap()), 0o700);
    } else {
        let out = Command::new("ssh").arg("-V").output().unwrap();
        let version = stderr(&out);
        assert!(
            version.starts_with("OpenSSH_9.") && version.as_bytes()[10] < b'4',
            "{version}: {st}"
        );
    }

    let out = jssh(&client).args(["down", "sock", "--keep-remote"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(get(port, "/api/status", Some(&token)), 0);
    assert_eq!(status(&client, "sock")["state"], "remote-only");
    let out = jssh(&client).args(["down", "sock"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(status(&client, "sock")["state"], "down");
}

#[test]
fn bad_input_and_missing_parts_are_explained() {
    let (_sshd, client) = ready_host("bad");
    let out = jssh(&client).args(["up", "nosuch", "-d"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("known: bad") && stderr(&out).contains("jssh setup"),
        "{}",
        stderr(&out)
    );

    // Nothing to attach to yet: said plainly, with the next step.
    let out = jssh(&client).args(["attach", "bad"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("start it with `jssh up`"), "{}", stderr(&out));

    // The supervisor binary is started by `up`, not by hand.
    let out = Command::new(env!("CARGO_BIN_EXE_jssh-supervisor")).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("run that instead"), "{}", stderr(&out));

    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let out = jssh(&client)
        .args(["up", "bad", "-d", "--port", &port])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("is busy"), "{}", stderr(&out));

    // No --env: the login shell's PATH has no Jupyter here.
    let out = jssh(&client)
        .args(["up", "bad", "-d", "--env", "venv:/nonexistent/venv"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no jupyter in the venv"), "{}", stderr(&out));
    assert!(
        supervisors(&client).is_empty() && tunnel_ssh(&client).is_empty(),
        "nothing half-started left"
    );
    assert_eq!(remote_sessions(&client, "bad").trim(), "");
}

#[test]
fn foreground_prints_events_and_ctrl_c_leaves_the_server_running() {
    let (_sshd, client) = ready_host("fg");
    let mut cmd = jssh_std(&client);
    cmd.args(["up", "fg", "--timeout", "90", "--port", &free_port(), "--env"])
        .arg(format!("venv:{}", venv()));
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    let url = loop {
        let mut line = String::new();
        assert!(
            std::io::BufRead::read_line(&mut stdout, &mut line).unwrap() > 0,
            "no URL in {lines:?}"
        );
        if line.starts_with("http://") {
            break line.trim().to_owned();
        }
        lines.push(line);
    };
    let (port, token) = parse_url(&url);
    assert_eq!(get(port, "/api/status", Some(&token)), 200);
    // Ctrl-C reaches the foreground process group: jssh and its supervisor.
    let sup = supervisors(&client);
    assert_eq!(sup.len(), 1);
    kill(sup[0].0, "-INT");
    kill(child.id(), "-INT");
    let exit = child.wait().unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(exit.code(), Some(130), "128 + SIGINT: {rest}");
    assert!(rest.contains("ready:") && rest.contains("tunnel stopped"), "{rest}");
    assert!(
        rest.contains("Jupyter still runs on fg") && rest.contains("jssh down fg"),
        "{rest}"
    );
    assert_eq!(get(port, "/api/status", Some(&token)), 0, "the tunnel is gone");
    assert!(supervisors(&client).is_empty() && tunnel_ssh(&client).is_empty());
    assert_eq!(status(&client, "fg")["state"], "remote-only");
    jssh(&client).args(["down", "fg"]).assert().success();
}

/// A login address may lead to several machines (round-robin DNS in front of HPC login
/// nodes). Reaching another machine than Jupyter's must never start a second server there:
/// the user's kernels live on the first. Simulated by recording another machine name for
/// the session, which is exactly what the launch script compares with `uname -n`.
#[test]
fn a_connection_to_another_machine_starts_nothing_there() {
    let (_sshd, client) = ready_host("far");
    let url = up(&client, "far", &["--port", &free_port()]);
    let (port, token) = parse_url(&url);
    let here = stdout(&Command::new("uname").arg("-n").output().unwrap());
    assert_eq!(status(&client, "far")["remote_node"], here.trim());

    // The supervisor restarts with the session recorded on "login-elsewhere".
    let session_file = client.state_dir().join("far/session.json");
    let elsewhere = || {
        let mut session: serde_json::Value = serde_json::from_slice(&fs::read(&session_file).unwrap()).unwrap();
        session["remote_node"] = "login-elsewhere".into();
        fs::write(&session_file, serde_json::to_vec(&session).unwrap()).unwrap();
    };
    jssh(&client).args(["down", "far", "--keep-remote"]).assert().success();
    elsewhere();
    let mut supervisor = jssh_at(&client, Path::new(env!("CARGO_BIN_EXE_jssh-supervisor")))
        .args(["supervise", "far", "--ssh-config"])
        .arg(client.ssh_config())
        .args(["--connect-timeout", "10"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    answers_within(&client, port, &token, Duration::from_secs(10));

    // Jupyter exits; the relaunch finds this is not "login-elsewhere" and starts nothing.
    kill_jupyter_until_logged(&client, "far", "but Jupyter runs on login-elsewhere");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        remote_sessions(&client, "far").trim(),
        "",
        "a second server was started"
    );
    let st = status(&client, "far");
    assert_eq!(st["state"], "reconnecting", "{st}");
    assert!(st["last_error"].as_str().unwrap().contains("login-elsewhere"), "{st}");

    // `up` (after the supervisor is gone) refuses the same way and leaves the session as it was.
    jssh(&client).args(["down", "far", "--keep-remote"]).assert().success();
    assert_eq!(supervisor.wait().unwrap().code(), Some(128 + 15), "stopped by SIGTERM");
    let before = fs::read(&session_file).unwrap();
    let out = jssh(&client)
        .args(["up", "far", "-d", "--timeout", "60"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("runs on login-elsewhere") && stderr(&out).contains("nothing was started"),
        "{}",
        stderr(&out)
    );
    assert_eq!(remote_sessions(&client, "far").trim(), "");
    assert_eq!(fs::read(&session_file).unwrap(), before);
    // `attach` explains instead of tmux's "can't find session".
    let out = jssh(&client).args(["attach", "far"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("Jupyter runs on login-elsewhere"),
        "{}",
        stderr(&out)
    );

    // `down` says where the server would still run, and forgets it here.
    let out = jssh(&client).args(["down", "far"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("still runs there"), "{}", stderr(&out));
    assert_eq!(status(&client, "far")["state"], "down");
}

/// Regression: a relaunch that failed (here the remote cannot make its run directory; in life
/// a full disk, or the connection lost on the way) made the supervisor give up for good.
#[test]
fn a_failed_relaunch_is_retried() {
    let (sshd, client) = ready_host("retry");
    let (port, token) = parse_url(&up(&client, "retry", &["--port", &free_port()]));
    let run_dir = sshd.home().join(".jssh/run/jssh-retry");
    let moved = sshd.home().join("moved-run-dir");
    fs::rename(&run_dir, &moved).unwrap();
    fs::write(&run_dir, "not a directory").unwrap();

    kill_jupyter_until_logged(&client, "retry", "could not restart the remote Jupyter");
    assert_eq!(supervisors(&client).len(), 1, "the supervisor gave up");

    fs::remove_file(&run_dir).unwrap();
    answers_within(&client, port, &token, Duration::from_secs(40));
    assert_eq!(status(&client, "retry")["restarts"], 1);
    let _ = fs::remove_dir_all(&moved);
    jssh(&client).args(["down", "retry"]).assert().success();
}

/// macOS and the BSDs hold a socket path of 103 bytes, and ssh binds `PATH.` plus 16 random
/// characters first: a deep state dir gets its control sockets in a private dir under /tmp,
/// and the tunnel works and heals as usual (issue 10).
#[test]
fn a_deep_state_dir_keeps_the_control_sockets_short() {
    let (_sshd, client) = ready_host("deep");
    let state = client.root().join("s".repeat(90));
    let jssh_deep = |args: &[&str]| jssh(&client).env("JSSH_STATE_DIR", &state).args(args).output().unwrap();
    let env = format!("venv:{}", venv());
    let out = jssh_deep(&[
        "up",
        "deep",
        "-d",
        "--timeout",
        "90",
        "--port",
        &free_port(),
        "--env",
        &env,
    ]);
    let log = fs::read_to_string(state.join("deep/supervisor.log")).unwrap_or_default();
    assert!(out.status.success(), "{}{}\n{log}", stdout(&out), stderr(&out));
    let (port, token) = parse_url(stdout(&out).lines().last().unwrap());
    assert_eq!(get(port, "/api/status", Some(&token)), 200);

    let short = Path::new("/tmp").join(format!("jssh-{}", fs::metadata(client.root()).unwrap().uid()));
    let masters = fs::read_to_string(state.join("deep/masters")).unwrap();
    let (pid, control) = masters.lines().next().unwrap().split_once(' ').unwrap();
    assert!(
        Path::new(control).starts_with(&short) && control.len() <= 103 - 17,
        "{masters}"
    );
    assert!(Path::new(control).exists(), "ssh made its socket there");
    assert_eq!(mode(&short), 0o700);

    kill(pid.parse().unwrap(), "-KILL");
    answers_within(&client, port, &token, Duration::from_secs(10));

    let out = jssh_deep(&["down", "deep"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let left: Vec<_> = masters
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(_, c)| c))
        .filter(|c| Path::new(c).exists())
        .collect();
    assert!(left.is_empty(), "control sockets left behind: {left:?}");
}
