//! `jssh service` (issue 14): the systemd unit passes `systemd-analyze verify`, the LaunchAgent
//! parses as one with Python's plistlib, install and remove are idempotent and touch only the
//! injected unit directory, what a unit runs is the same supervisor as `jssh up`, which
//! `jssh down` stops for good (until the next login), and it tells systemd when the tunnel is
//! ready (sd_notify).

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::fixture::{Client, Sshd};
use crate::up::{free_port, get, supervisors, tunnel_ssh};
use crate::util::{jssh, jssh_std, set_up, snapshot, status, stderr, stdout, venv};

/// Two aliases set up on one sshd, their Jupyter found through the test venv.
fn two_aliases() -> (Sshd, Client) {
    let sshd = Sshd::start();
    let client = Client::new(&sshd);
    let env = format!("venv:{}", venv());
    for alias in ["sv", "sw"] {
        set_up(&sshd, &client, alias, &["--env", &env]);
    }
    (sshd, client)
}

fn service(client: &Client, dir: &Path, manager: &str, args: &[&str]) -> std::process::Output {
    jssh(client)
        .env("JSSH_SERVICE_DIR", dir)
        .env("JSSH_SERVICE_MANAGER", manager)
        .arg("service")
        .args(args)
        .output()
        .unwrap()
}

/// The real user's unit directories, which no test may change.
fn real_unit_dirs() -> Vec<(String, Option<Vec<String>>)> {
    let home = nix::unistd::User::from_uid(nix::unistd::getuid()).unwrap().unwrap().dir;
    [
        ".config/systemd/user",
        ".config/systemd/user/default.target.wants",
        "Library/LaunchAgents",
    ]
    .iter()
    .map(|d| {
        let listing = fs::read_dir(home.join(d)).ok().map(|entries| {
            let mut names: Vec<String> = entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into())
                .collect();
            names.sort();
            names
        });
        ((*d).to_owned(), listing)
    })
    .collect()
}

#[test]
fn the_systemd_unit_verifies_and_install_remove_are_idempotent_and_touch_only_their_dir() {
    let (_sshd, client) = two_aliases();
    let units = tempfile::tempdir().unwrap();
    let dir = units.path().join("systemd/user");
    let before = snapshot(&[client.root()]);
    let real_before = real_unit_dirs();

    let out = service(&client, &dir, "systemd", &["install", "sv", "sw"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(
        said.contains("systemctl --user daemon-reload") && said.contains("jssh@sv.service"),
        "{said}"
    );
    assert!(
        said.contains("loginctl enable-linger") || said.contains("lingering"),
        "{said}"
    );
    let template = dir.join("jssh@.service");
    for alias in ["sv", "sw"] {
        let link = dir.join(format!("default.target.wants/jssh@{alias}.service"));
        assert_eq!(fs::read_link(&link).unwrap(), template, "enabled as systemctl would");
    }
    let unit = fs::read_to_string(&template).unwrap();
    assert!(
        unit.contains(&format!("JSSH_STATE_DIR={}", client.state_dir().display())),
        "{unit}"
    );
    // Readiness comes from the supervisor, a grandchild of the unit's main process.
    for line in ["Type=notify", "NotifyAccess=all", "TimeoutStartSec=infinity"] {
        assert!(unit.lines().any(|l| l == line), "{line} in\n{unit}");
    }

    if which::which("systemd-analyze").is_ok() {
        // The instance, as systemd would load it (the template beside it); no warning either:
        // systemd-analyze exits 0 on an unknown key and only says so.
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(dir.join("default.target.wants/jssh@sv.service"))
            .output()
            .unwrap();
        assert!(
            out.status.success() && stderr(&out).trim().is_empty(),
            "systemd-analyze verify: {}{}\n{unit}",
            stdout(&out),
            stderr(&out)
        );
    } else {
        eprintln!("not verified: no systemd-analyze (scripts/install-deps installs systemd)");
    }

    let installed = snapshot(&[units.path()]);
    let again = service(&client, &dir, "systemd", &["install", "sv", "sw"]);
    assert!(
        again.status.success() && stdout(&again).contains("already installed"),
        "{}",
        stdout(&again)
    );
    assert_eq!(snapshot(&[units.path()]), installed, "a second install changes nothing");

    let listed = service(&client, &dir, "systemd", &["status"]);
    assert!(
        stdout(&listed).contains("sv: ") && stdout(&listed).contains("sw: "),
        "{}",
        stdout(&listed)
    );
    assert!(stdout(&listed).contains("tunnel down"), "{}", stdout(&listed));

    let out = service(&client, &dir, "systemd", &["remove", "sv"]);
    assert!(out.status.success() && template.exists(), "sw still uses the template");
    assert!(!dir.join("default.target.wants/jssh@sv.service").exists());
    let out_all = service(&client, &dir, "systemd", &["remove", "--all"]);
    assert!(out_all.status.success(), "{}", stderr(&out_all));
    assert!(
        !template.exists() && fs::read_dir(&dir).unwrap().next().is_none(),
        "{}",
        stdout(&out_all)
    );
    let again = service(&client, &dir, "systemd", &["remove", "sv", "sw"]);
    assert!(again.status.success() && stdout(&again).contains("nothing to remove"));

    // An unknown alias: one line, exit 2, nothing written.
    let bad = service(&client, &dir, "systemd", &["install", "nope"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(!template.exists());

    assert_eq!(
        snapshot(&[client.root()]),
        before,
        "only the unit directory was touched"
    );
    assert_eq!(real_unit_dirs(), real_before, "the real user's unit dirs are untouched");
}

#[test]
fn the_launch_agent_parses_as_one() {
    let (_sshd, client) = two_aliases();
    let units = tempfile::tempdir().unwrap();
    let out = service(&client, units.path(), "launchd", &["install", "--all"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("launchctl bootstrap gui/"), "{}", stdout(&out));
    let plist = units.path().join("jssh.tunnel.sv.plist");
    let check = r#"
import plistlib, sys
with open(sys.argv[1], "rb") as f:
    p = plistlib.load(f)
assert p["Label"] == "jssh.tunnel.sv", p
args = p["ProgramArguments"]
assert args[0].startswith("/") and args[-3:] == ["service", "run", "sv"], args
assert p["RunAtLoad"] is True, p
assert p["KeepAlive"] == {"SuccessfulExit": False}, p
assert p["EnvironmentVariables"]["JSSH_STATE_DIR"] == sys.argv[2], p
print("ok")
"#;
    let out = Command::new("python3")
        .args(["-c", check])
        .arg(&plist)
        .arg(client.state_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(units.path().join("jssh.tunnel.sw.plist").exists());
    let gone = service(&client, units.path(), "launchd", &["remove", "--all"]);
    assert!(gone.status.success() && fs::read_dir(units.path()).unwrap().next().is_none());
}

/// What a unit runs: the same supervisor as `jssh up` (status sees it), no token in what
/// goes to the journal, and `jssh down` ends it with the status that keeps the service
/// manager from starting it again.
#[test]
fn a_service_runs_the_same_supervisor_and_down_stops_it_for_good() {
    let (_sshd, client) = two_aliases();
    // The port an alias keeps: a free one, not 8888 (tests run in parallel).
    let port: u16 = free_port().parse().unwrap();
    let up = jssh(&client)
        .args(["up", "sv", "-d", "--timeout", "90", "--port", &port.to_string()])
        .output()
        .unwrap();
    assert!(up.status.success(), "{}", stderr(&up));
    jssh(&client).args(["down", "sv"]).assert().success();

    let mut unit = jssh_std(&client)
        .args(["service", "run", "sv"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let journal = BufReader::new(unit.stdout.take().unwrap());
    let lines = std::thread::spawn(move || journal.lines().map_while(Result::ok).collect::<Vec<_>>());
    let deadline = Instant::now() + Duration::from_secs(90);
    let token = loop {
        let url = jssh(&client).args(["url", "sv"]).output().unwrap();
        if let Some(token) = stdout(&url).trim().split("token=").nth(1)
            && get(port, "/api/status", Some(token)) == 200
            && status(&client, "sv")["state"] == "up"
        {
            break token.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "the service's tunnel never answered, or status never saw it"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        status(&client, "sv")["state"],
        "up",
        "jssh status sees the service's tunnel"
    );

    jssh(&client).args(["down", "sv"]).assert().success();
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(code) = unit.try_wait().unwrap() {
            break code;
        }
        assert!(Instant::now() < deadline, "`service run` did not end after `jssh down`");
        std::thread::sleep(Duration::from_millis(50));
    };
    let journal = lines.join().unwrap().join("\n");
    assert_eq!(code.code(), Some(0), "stopped on purpose: not restarted\n{journal}");
    assert!(journal.contains("stopped on purpose"), "{journal}");
    assert!(journal.contains("token=…") && !journal.contains(&token), "{journal}");
}

/// Reads the next datagram the "service manager" gets, waiting until `deadline`.
fn next_message(manager: &UnixDatagram, deadline: Instant) -> Option<String> {
    let left = deadline.saturating_duration_since(Instant::now());
    manager
        .set_read_timeout(Some(left.max(Duration::from_millis(1))))
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = manager.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Waits for `jssh service run` to end after `jssh down`, returning its exit code and output.
fn ended(mut unit: std::process::Child, journal: std::thread::JoinHandle<Vec<String>>) -> (Option<i32>, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(code) = unit.try_wait().unwrap() {
            break code.code();
        }
        assert!(Instant::now() < deadline, "`service run` did not end after `jssh down`");
        std::thread::sleep(Duration::from_millis(50));
    };
    (code, journal.join().unwrap().join("\n"))
}

fn spawn_unit(client: &Client, socket: &Path) -> (std::process::Child, std::thread::JoinHandle<Vec<String>>) {
    let mut unit = jssh_std(client)
        .args(["service", "run", "sn"])
        .env("NOTIFY_SOCKET", socket)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let journal = BufReader::new(unit.stdout.take().unwrap());
    (
        unit,
        std::thread::spawn(move || journal.lines().map_while(Result::ok).collect()),
    )
}

/// Whether process `pid`'s environment names the notify socket (Linux's /proc).
fn has_notify_socket(pid: u32) -> Option<bool> {
    let environ = fs::read(format!("/proc/{pid}/environ")).ok()?;
    Some(environ.split(|&b| b == 0).any(|var| var.starts_with(b"NOTIFY_SOCKET=")))
}

/// The unit is `Type=notify` (issue 14): `READY=1` reaches systemd's socket only once the URL
/// answers, `STATUS=` lines say how the tunnel is and never carry the token, and `jssh down`
/// brings `STOPPING=1`. A tunnel started by hand makes the service ready at once. The socket
/// reaches the supervisor through `service run` and `up`, and none of its ssh.
#[test]
fn a_service_tells_systemd_it_is_ready_once_the_url_answers_and_stopping_on_down() {
    let sshd = Sshd::start();
    let client = Client::new(&sshd);
    set_up(&sshd, &client, "sn", &["--env", &format!("venv:{}", venv())]);
    let port: u16 = free_port().parse().unwrap();
    let manager_dir = tempfile::tempdir().unwrap();
    let socket = manager_dir.path().join("notify");
    let manager = UnixDatagram::bind(&socket).unwrap();

    // Started by hand first: the service waits for that tunnel, and is ready meanwhile.
    let up = jssh(&client)
        .args(["up", "sn", "-d", "--timeout", "90", "--port", &port.to_string()])
        .output()
        .unwrap();
    assert!(up.status.success(), "{}", stderr(&up));
    let (unit, journal) = spawn_unit(&client, &socket);
    let said = next_message(&manager, Instant::now() + Duration::from_secs(20)).expect("no word from the service");
    assert!(
        said.starts_with("READY=1\nSTATUS=") && said.contains("started by hand"),
        "{said}"
    );
    jssh(&client).args(["down", "sn"]).assert().success();
    let (code, journal) = ended(unit, journal);
    assert_eq!(code, Some(0), "{journal}");
    let said = next_message(&manager, Instant::now() + Duration::from_secs(5)).expect("no STOPPING=1");
    assert!(said.starts_with("STOPPING=1\n"), "{said}");

    // Started by the service: the supervisor says when the tunnel is up.
    let (unit, journal) = spawn_unit(&client, &socket);
    let mut messages = Vec::new();
    let deadline = Instant::now() + Duration::from_mins(2);
    let token = loop {
        let said = next_message(&manager, deadline).unwrap_or_else(|| panic!("never ready; said {messages:?}"));
        messages.push(said.clone());
        if said.contains("READY=1") {
            // At once, before anything else happens: the URL answers, with the token.
            let url = stdout(&jssh(&client).args(["url", "sn"]).output().unwrap());
            let token = url.trim().split("token=").nth(1).unwrap().to_owned();
            assert_eq!(
                get(port, "/api/status", Some(&token)),
                200,
                "READY=1 before the URL answers: {messages:?}"
            );
            break token;
        }
    };
    let ready = messages.last().unwrap();
    assert!(
        ready.starts_with("READY=1\nSTATUS=up: http://127.0.0.1:") && ready.contains(&format!(":{port}/")),
        "{messages:?}"
    );
    assert!(
        messages[0].starts_with("STATUS=starting"),
        "service run says what it waits for: {messages:?}"
    );

    let supervisor = supervisors(&client);
    let ssh = tunnel_ssh(&client);
    assert!(!supervisor.is_empty() && !ssh.is_empty(), "{supervisor:?} {ssh:?}");
    if has_notify_socket(supervisor[0].0).is_some() {
        assert_eq!(
            has_notify_socket(supervisor[0].0),
            Some(true),
            "the socket reaches the supervisor"
        );
        for (pid, command) in &ssh {
            assert_eq!(has_notify_socket(*pid), Some(false), "ssh must not get it: {command}");
        }
    }

    // Idle: nothing more is said.
    assert_eq!(next_message(&manager, Instant::now() + Duration::from_secs(3)), None);

    jssh(&client).args(["down", "sn"]).assert().success();
    let (code, journal) = ended(unit, journal);
    assert_eq!(code, Some(0), "{journal}");
    while let Some(said) = next_message(&manager, Instant::now() + Duration::from_millis(500)) {
        messages.push(said);
    }
    assert!(
        messages.iter().any(|m| m.starts_with("STOPPING=1\nSTATUS=stopped")),
        "{messages:?}"
    );
    assert!(
        messages.iter().all(|m| !m.contains(&token)),
        "the token reached systemd: {messages:?}"
    );
}
