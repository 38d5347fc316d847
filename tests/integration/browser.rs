//! What a user in a browser sees (issue 9): a JupyterLab notebook in a real, headless Chromium
//! (Debian's, driven by playwright-core through `tests/browser/notebook.mjs`), opened at the
//! URL `jssh up` prints, keeps working through faults without a reload: its next cell answers
//! within a second of the tunnel's ssh being killed, and soon after a full sshd outage, with
//! no "Server Connection Error" dialog and the same kernel throughout.
//!
//! A probe through the tunnel is not enough: JupyterLab, when its kernel websocket drops and
//! the one retry it makes at once is refused, waits a random 10–30 s before trying again. So a
//! tunnel that heals in 10 ms can still cost the user half a minute.
//!
//! Needs node, /usr/bin/chromium and playwright-core (`scripts/install-deps` installs them and
//! prints `JSSH_TEST_BROWSER_DIR`). Without them the test fails when `CI` is set, and is
//! skipped with a notice otherwise.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::fixture::Client;
use crate::up::{free_port, parse_url, ready_host, up};
use crate::util::{jssh, local_status, stderr};

/// The driver, compiled in: the test binary may run as a user who cannot read the checkout
/// (`scripts/test-as-user`), so it writes its own copy into the test's temp dir.
const DRIVER: &str = include_str!("../browser/notebook.mjs");
const CHROMIUM: &str = "/usr/bin/chromium";
const ALIAS: &str = "web";

/// The acceptance criteria of issue 9.
const AFTER_SSH_KILL: f64 = 1.0;
const AFTER_OUTAGE_BEYOND_TUNNEL: f64 = 4.0;
const OUTAGE: Duration = Duration::from_secs(5);
/// Generous: today a cell can wait 10–30 s for JupyterLab's reconnect, and the figure is
/// worth having even when it misses the target.
const RUN_TIMEOUT: Duration = Duration::from_secs(75);

#[test]
fn a_notebook_in_a_browser_survives_ssh_kills_and_an_sshd_outage_without_a_reload() {
    let Some(browser_dir) = browser_prerequisites() else {
        return;
    };
    let (mut sshd, client) = ready_host(ALIAS);
    let url = up(&client, ALIAS, &["--port", &free_port()]);
    let (port, token) = parse_url(&url);
    let mut driver = Driver::start(&client, &browser_dir);

    let opened = driver.call(&json!({"cmd": "open", "url": url, "timeout_ms": 120_000}));
    assert_eq!(opened["ok"], true, "open: {opened}\n{}", driver.log());
    let kernel = opened["kernel"].as_str().expect("a kernel id").to_owned();
    let first = driver.run("x = 41", None, Duration::from_mins(1));
    assert_eq!(first["ok"], true, "x = 41: {first}\n{}", driver.log());
    let first = driver.run("x + 1", Some("42"), Duration::from_mins(1));
    assert_eq!(first["ok"], true, "x + 1: {first}\n{}", driver.log());

    // Every figure is measured and printed before anything is asserted, so that one miss
    // still shows all the others.
    let mut misses = Vec::new();
    for attempt in 1..=3 {
        settle(&client);
        let ssh = live_tunnel_ssh(&client).expect("no live tunnel ssh found");
        kill9(ssh);
        let answer = driver.run("x + 1", Some("42"), RUN_TIMEOUT);
        let what = format!("cell after ssh kill {attempt} (pid {ssh})");
        eprintln!("browser: {what}: {}", summary(&answer));
        check(&mut misses, &what, &answer, &kernel, AFTER_SSH_KILL);
    }

    settle(&client);
    sshd.outage();
    thread::sleep(OUTAGE);
    sshd.restart();
    let back = Instant::now();
    // The tunnel's own recovery, measured beside the cell from the same moment.
    let tunnel = thread::spawn(move || answers_within(port, &token, back, RUN_TIMEOUT));
    let answer = driver.run("x += 1; x", Some("42"), RUN_TIMEOUT);
    let recovery = tunnel.join().expect("the probe thread");
    let what = "cell after a 5 s sshd outage";
    match recovery {
        Some(recovery) => {
            let limit = recovery.as_secs_f64() + AFTER_OUTAGE_BEYOND_TUNNEL;
            eprintln!(
                "browser: {what}: {} (the tunnel answered {:.3} s after sshd was back, so the limit is {limit:.3} s)",
                summary(&answer),
                recovery.as_secs_f64()
            );
            check(&mut misses, what, &answer, &kernel, limit);
        }
        None => misses.push(format!(
            "the tunnel did not answer within {RUN_TIMEOUT:?} after the sshd outage"
        )),
    }

    driver.quit();
    let down = jssh(&client).args(["down", ALIAS]).output().unwrap();
    assert!(down.status.success(), "down: {}", stderr(&down));
    assert!(
        misses.is_empty(),
        "{}\n\nsupervisor log:\n{}\n\nbrowser log (tail):\n{}",
        misses.join("\n"),
        fs::read_to_string(client.state_dir().join(ALIAS).join("supervisor.log")).unwrap_or_default(),
        tail(&driver.log(), 60)
    );
}

/// The directory holding playwright-core's node_modules, once node, Chromium and it are all
/// there; `None` (after a notice) when one is missing outside CI. In CI a missing part is a
/// failure: the test must never pass there by not running.
fn browser_prerequisites() -> Option<PathBuf> {
    let dir = std::env::var_os("JSSH_TEST_BROWSER_DIR").map_or_else(
        || {
            let home = std::env::var_os("HOME").unwrap_or_default();
            Path::new(&home).join(".cache/jssh-test-browser")
        },
        PathBuf::from,
    );
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let missing: Vec<String> = [
        (!node).then(|| "node (apt-get install nodejs, version 20 or later)".to_owned()),
        (!Path::new(CHROMIUM).exists()).then(|| format!("{CHROMIUM} (apt-get install chromium)")),
        (!dir.join("node_modules/playwright-core").is_dir()).then(|| format!("playwright-core in {}", dir.display())),
    ]
    .into_iter()
    .flatten()
    .collect();
    if missing.is_empty() {
        return Some(dir);
    }
    let message = format!(
        "the browser test needs {}: run scripts/install-deps (or scripts/test, which runs it)",
        missing.join(", ")
    );
    assert!(std::env::var_os("CI").is_none(), "{message}");
    eprintln!("skipped: {message}");
    None
}

/// `tests/browser/notebook.mjs` in a headless Chromium, one JSON request and answer per line.
struct Driver {
    child: Child,
    stdin: Option<ChildStdin>,
    answers: Receiver<String>,
    log: PathBuf,
}

impl Driver {
    fn start(client: &Client, browser_dir: &Path) -> Driver {
        // Inside the client's dir: its Drop ends every process whose argv names that dir, so a
        // failed test leaves no Chromium behind. HOME and TMPDIR there too: Chromium's profile
        // and caches never touch the real home.
        let dir = client.root().join("browser");
        let home = dir.join("home");
        let tmp = dir.join("tmp");
        fs::create_dir_all(&home).unwrap();
        fs::create_dir_all(&tmp).unwrap();
        let script = dir.join("notebook.mjs");
        fs::write(&script, DRIVER).unwrap();
        let log = dir.join("driver.log");
        let mut child = Command::new("node")
            .arg(&script)
            .env("JSSH_TEST_BROWSER_DIR", browser_dir)
            .env("HOME", &home)
            .env("TMPDIR", &tmp)
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_CACHE_HOME")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&log).unwrap())
            // Its own process group, so that Drop can end Chromium's processes with it.
            .process_group(0)
            .spawn()
            .expect("spawn node");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, answers) = mpsc::channel();
        thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Driver {
            stdin: child.stdin.take(),
            child,
            answers,
            log,
        }
    }

    /// Sends one request and waits for its answer (the request's own `timeout_ms` plus a
    /// minute for the driver's bookkeeping).
    fn call(&mut self, request: &Value) -> Value {
        let timeout = Duration::from_millis(request["timeout_ms"].as_u64().unwrap_or(60_000)) + Duration::from_mins(1);
        let stdin = self.stdin.as_mut().expect("driver already quit");
        writeln!(stdin, "{request}").expect("write to the driver");
        stdin.flush().unwrap();
        let line = self.answers.recv_timeout(timeout).unwrap_or_else(|e| {
            panic!(
                "no answer from the driver to {request} within {timeout:?} ({e}); its log:\n{}",
                tail(&self.log(), 80)
            )
        });
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("driver answered {line:?}: {e}"))
    }

    fn run(&mut self, code: &str, expect: Option<&str>, timeout: Duration) -> Value {
        let ms = u64::try_from(timeout.as_millis()).unwrap();
        self.call(&json!({"cmd": "run", "code": code, "expect": expect, "timeout_ms": ms}))
    }

    fn quit(&mut self) {
        let answer = self.call(&json!({"cmd": "quit", "timeout_ms": 10_000}));
        assert_eq!(answer["ok"], true, "quit: {answer}");
        self.stdin = None;
        self.child.wait().unwrap();
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let group = nix::unistd::Pid::from_raw(-i32::try_from(self.child.id()).unwrap());
            let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// Records a miss unless the run answered within `limit` seconds, without a dialog, in the
/// same kernel.
fn check(misses: &mut Vec<String>, what: &str, answer: &Value, kernel: &str, limit: f64) {
    match answer["seconds"].as_f64() {
        Some(s) if answer["ok"] == true && s <= limit => {}
        _ => misses.push(format!("{what}: not within {limit:.3} s: {answer}")),
    }
    if answer["dialog"] != false {
        misses.push(format!("{what}: a dialog appeared: {}", answer["dialogs"]));
    }
    if answer["kernel"] != kernel {
        misses.push(format!("{what}: kernel {} instead of {kernel}", answer["kernel"]));
    }
}

fn summary(answer: &Value) -> String {
    match answer["seconds"].as_f64() {
        Some(s) if answer["ok"] == true => format!("{s:.3} s, dialog: {}", answer["dialog"]),
        _ => format!("failed: {answer}"),
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn kill9(pid: u32) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).expect("SIGKILL the tunnel's ssh");
}

/// The pid of the ssh master carrying the tunnel right now, as the supervisor reports it.
fn live_tunnel_ssh(client: &Client) -> Option<u32> {
    local_status(client, ALIAS)["tunnel_ssh_pid"]
        .as_u64()
        .and_then(|pid| u32::try_from(pid).ok())
}

/// Live children of `pid` (of all its threads).
fn children(pid: u32) -> Vec<u32> {
    let mut kids = Vec::new();
    for task in fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let list = fs::read_to_string(task.path().join("children")).unwrap_or_default();
        kids.extend(list.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
    }
    kids.retain(|kid| {
        fs::read_to_string(format!("/proc/{kid}/stat")).is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
    });
    kids
}

/// Waits, before a fault, until the supervisor is up with a live tunnel ssh and its children
/// have not changed for 1.5 s (e.g. the standby connection it starts after a reconnect), so
/// that each fault meets the supervisor in its steady state.
fn settle(client: &Client) {
    let deadline = Instant::now() + Duration::from_mins(1);
    let mut last = None;
    let mut since = Instant::now();
    loop {
        let st = local_status(client, ALIAS);
        let mut kids = st["supervisor_pid"]
            .as_u64()
            .map(|pid| children(u32::try_from(pid).unwrap()));
        if let Some(kids) = kids.as_mut() {
            kids.sort_unstable();
        }
        if kids != last {
            last = kids;
            since = Instant::now();
        } else if st["state"] == "up" && st["tunnel_ssh_pid"].is_u64() && since.elapsed() >= Duration::from_millis(1500)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the supervisor did not settle ({st}); its log:\n{}",
            fs::read_to_string(client.state_dir().join(ALIAS).join("supervisor.log")).unwrap_or_default()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// How long after `since` the URL first answered 200 (polled every 10 ms), or `None`.
fn answers_within(port: u16, token: &str, since: Instant, limit: Duration) -> Option<Duration> {
    while since.elapsed() < limit {
        if api_status(port, token) == Some(200) {
            return Some(since.elapsed());
        }
        thread::sleep(Duration::from_millis(10));
    }
    None
}

/// `GET /api/status` with the token; the HTTP status, or `None` when nothing answered.
fn api_status(port: u16, token: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    let request = format!(
        "GET /api/status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: token {token}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(request.as_bytes()).ok()?;
    let mut head = [0; 64];
    let n = s.read(&mut head).ok()?;
    String::from_utf8_lossy(&head[..n])
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
