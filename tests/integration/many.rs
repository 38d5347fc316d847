//! Issue 14, part 3: many hosts. Several aliases on one loopback sshd, each with its own
//! remote tmux session and Jupyter: `up --all` starts them in parallel with one line each,
//! `status` is one table, each idle supervisor stays small, one sshd restart heals them all,
//! and `down --all` leaves nothing behind.
//!
//! Eight, not twenty: twenty Jupyters starting at once on this 2-core machine take most of a
//! minute beside the other tests. `scripts/bench-many` runs twenty, and compares the heal with
//! twenty plain ssh logins to the same sshd.

use std::time::{Duration, Instant};

use crate::fixture::{Client, Sshd};
use crate::up::{get, parse_url, supervisors, tunnel_ssh};
use crate::util::{client_ssh, jssh, set_up, stderr, stdout, venv};

const HOSTS: usize = 8;

/// The largest idle supervisor the issue allows: 3 MB of resident memory, for the release
/// build users run (`cargo test --release`; `scripts/bench-many` measures it too). A debug
/// build's `jssh-supervisor` maps about 1 MB more of unoptimised code (4.0 MB measured).
const MAX_RSS_KB: u64 = if cfg!(debug_assertions) { 5 * 1024 } else { 3 * 1024 };

/// How long after an sshd restart every tunnel must answer again.
const HEALED_WITHIN: Duration = Duration::from_secs(2);

#[test]
fn many_aliases_start_together_show_in_one_table_heal_together_and_stop_together() {
    let (mut sshd, client, aliases) = fleet(HOSTS, "");
    let (urls, took) = up_all(&client, &aliases);
    eprintln!("`jssh up --all` of {HOSTS} aliases: {took:.1?}");
    assert_eq!(
        sshd.remote_processes("jupyter-lab").len(),
        HOSTS,
        "a remote Jupyter each"
    );
    assert_eq!(supervisors(&client).len(), HOSTS, "{:?}", supervisors(&client));

    // `status`: one table, a line per alias; the JSON keeps its fields.
    let out = jssh(&client).args(["status"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    let rows: Vec<&str> = table.lines().filter(|l| l.starts_with('m')).collect();
    assert!(table.starts_with("ALIAS"), "{table}");
    assert_eq!(rows.len(), HOSTS, "{table}");
    for (row, (port, token)) in rows.iter().zip(&urls) {
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[1], "up", "{table}");
        assert_eq!(cells[2], format!("http://127.0.0.1:{port}/lab"), "{table}");
        assert!(!row.contains(token.as_str()), "no token in the table: {table}");
    }
    for row in &status_json(&client) {
        for field in [
            "alias",
            "state",
            "url",
            "supervisor_pid",
            "uptime_secs",
            "reconnects",
            "last_error",
        ] {
            assert!(row.get(field).is_some(), "{field} kept: {row}");
        }
    }

    let rss = idle_rss(&client);
    eprintln!("idle supervisors' RSS (kB): {rss:?}");
    assert!(rss.iter().all(|&kb| kb > 0 && kb <= MAX_RSS_KB), "RSS (kB): {rss:?}");

    // One sshd restart cuts every tunnel. The issue's measure: all answer again within 1.2
    // times what as many parallel `ssh … true` logins to that sshd take, measured in the
    // same run. A few log in (their login slots, `LOGIN_SLOTS`), the others ride on those
    // new masters at once; measured here with eight: healed after 0.55–0.58 s, logins
    // 1.26–1.36 s (twenty: `scripts/bench-many`, docs/BENCHMARKS.md).
    let healed = heal_after_restart(&mut sshd, &urls);
    let logins = parallel_logins(&client, &aliases);
    let slowest = *healed.iter().max().unwrap();
    eprintln!(
        "sshd restart: slowest tunnel healed after {slowest:.2?} (all: {healed:.2?}); {HOSTS} parallel fresh logins: {logins:.2?}"
    );
    assert!(
        slowest <= HEALED_WITHIN && slowest <= logins.mul_f64(1.2),
        "healed after {healed:?}; {HOSTS} parallel logins took {logins:?}"
    );
    // Those that rode on another alias's master each have their own again soon after, and
    // then ride on nothing: every alias's tunnel ssh is its own (a master its supervisor
    // started, named after its own state dir).
    let rode = |alias: &String| client.supervisor_log(alias).matches("riding on m").count();
    let own_again = |alias: &String| {
        client
            .supervisor_log(alias)
            .matches("its own connection is ready")
            .count()
    };
    let riders = aliases.iter().filter(|a| rode(a) > 0).count();
    assert!(riders >= HOSTS / 2, "only {riders} of {HOSTS} rode on another's master");
    wait_until(
        Duration::from_secs(30),
        || aliases.iter().all(|a| own_again(a) == rode(a)),
        || {
            let counts: Vec<_> = aliases.iter().map(|a| (rode(a), own_again(a))).collect();
            format!("not all have their own connection again: {counts:?}")
        },
    );
    for row in status_json(&client) {
        assert!(on_own_master(&row), "its tunnel is its own master: {row}");
    }
    for row in status_json(&client) {
        assert_eq!(row["state"], "up", "{row}");
        assert!(row["reconnects"].as_u64().unwrap() >= 1, "the restart cut it: {row}");
    }

    // `down --all`: no supervisor, no ssh, no remote Jupyter, no session left.
    let out = jssh(&client).args(["down", "--all"]).output().unwrap();
    assert!(out.status.success(), "down --all: {}{}", stdout(&out), stderr(&out));
    assert_eq!(
        stdout(&out).matches("stopped Jupyter").count(),
        HOSTS,
        "each says so: {}",
        stdout(&out)
    );
    assert_nothing_left(&sshd, &client);
}

/// After an outage, an alias rides on another's new master while it has none of its own
/// (the test holds every login slot, so it cannot log in), through which its URL answers;
/// when that master goes (`jssh down` of its alias), the rider does not lose its tunnel for
/// good: it logs in itself as soon as a slot is free, and ends on its own master.
#[test]
fn a_tunnel_rides_on_another_aliass_new_master_and_logs_in_itself_when_that_goes() {
    let (mut sshd, client, aliases) = fleet(2, "");
    let (urls, _) = up_all(&client, &aliases);
    let slots = login_slot_files(&client, &aliases[0]);
    assert_eq!(
        login_slot_files(&client, &aliases[1]),
        slots,
        "one server, one account: shared"
    );
    let mut held: Vec<_> = slots
        .iter()
        .map(|path| take_slot(path, Duration::from_secs(20)))
        .collect();

    // An sshd restart cuts both; neither can log in until the test lets one slot go. The
    // first to take it logs in; the other rides on its new master (borrowing comes before a
    // free slot), and the slot is taken back before any standby could use it.
    sshd.outage();
    sshd.restart();
    std::thread::sleep(Duration::from_millis(500));
    let one = held.pop().unwrap();
    drop(one);
    // The first new master (its socket answers): its slot is free again, take it back.
    let live = |alias: &String| {
        (0..2).any(|n| {
            std::os::unix::net::UnixStream::connect(client.state_dir().join(alias).join(format!("ctl{n}"))).is_ok()
        })
    };
    let why = || format!("{:?}", logs(&client, &aliases));
    wait_until(Duration::from_secs(10), || aliases.iter().any(live), why);
    let again = take_slot(&slots[slots.len() - 1], Duration::from_secs(20));
    let rode = |alias: &String| client.supervisor_log(alias).contains("riding on ");
    wait_until(Duration::from_secs(10), || aliases.iter().any(rode), why);
    let (rider, lender) = if rode(&aliases[0]) { (0, 1) } else { (1, 0) };
    assert!(!rode(&aliases[lender]), "{:?}", logs(&client, &aliases));
    let (port, token) = &urls[rider];
    assert_eq!(get(*port, "/api/status", Some(token)), 200, "the rider answers");
    let row = |alias: &String| {
        status_json(&client)
            .into_iter()
            .find(|r| r["alias"] == alias.as_str())
            .unwrap()
    };
    assert_eq!(
        row(&aliases[rider])["tunnel_ssh_pid"],
        row(&aliases[lender])["tunnel_ssh_pid"],
        "on the lender's master"
    );

    // The lender goes: the rider's tunnel is lost, waits for a slot (all held), then logs
    // in itself and answers again, on its own master.
    let out = jssh(&client).args(["down", &aliases[lender]]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let lost = || {
        client
            .supervisor_log(&aliases[rider])
            .contains("the connection it rode on ended")
    };
    wait_until(Duration::from_secs(10), lost, why);
    drop((held, again));
    wait_until(
        Duration::from_secs(10),
        || get(*port, "/api/status", Some(token)) == 200,
        why,
    );
    assert!(on_own_master(&row(&aliases[rider])), "{}", why());
    let out = jssh(&client).args(["down", "--all"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_nothing_left(&sshd, &client);
}

/// Polls `done` until it holds; fails with `why()` after `limit`.
fn wait_until(limit: Duration, mut done: impl FnMut() -> bool, why: impl Fn() -> String) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{}", why());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether the tunnel ssh of a `status --json` row is its alias's own master: its argv
/// names a control socket in that alias's state dir.
fn on_own_master(row: &serde_json::Value) -> bool {
    let (alias, pid) = (row["alias"].as_str().unwrap(), row["tunnel_ssh_pid"].as_u64().unwrap());
    let argv = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&argv).contains(&format!("/{alias}/ctl"))
}

fn logs(client: &Client, aliases: &[String]) -> Vec<String> {
    aliases.iter().map(|a| client.supervisor_log(a)).collect()
}

/// The login slot files of `alias`'s server and account (`user@host:port` from `ssh -G`),
/// named as jssh names them (FNV-1a of the account; see `siblings.rs`).
fn login_slot_files(client: &Client, alias: &str) -> Vec<std::path::PathBuf> {
    let out = client_ssh(client, false).args(["-G", alias]).output().unwrap();
    let resolved = stdout(&out);
    let field = |name: &str| {
        resolved
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap()
            .to_owned()
    };
    let account = format!("{}@{}:{}", field("user"), field("hostname"), field("port"));
    let hash = account.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (0..3)
        .map(|i| client.state_dir().join(format!("login-{hash:016x}-{i}")))
        .collect()
}

/// Holds the lock of one login slot file (waiting at most `limit` for it).
fn take_slot(path: &std::path::Path, limit: Duration) -> nix::fcntl::Flock<std::fs::File> {
    let started = Instant::now();
    loop {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .unwrap();
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return lock,
            Err(_) => assert!(started.elapsed() < limit, "{} stays taken", path.display()),
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// `scripts/bench-many`: twenty aliases (`JSSH_BENCH_HOSTS`) on one sshd: as many `up`s in a
/// row (`JSSH_BENCH_IN_A_ROW=0` skips them), `down --all`, then `up --all`, idle
/// RSS, sshd restarts (`JSSH_BENCH_ROUNDS`, 3) healed against parallel plain logins, `down
/// --all`. Rounds are `JSSH_BENCH_GAP` seconds apart (65): the issue's measure is one
/// restart, and a supervisor keeps its backoff for a minute of health after failed attempts
/// (sshd's MaxStartups drops a few of twenty), so a restart sooner measures a series (one
/// tunnel took 13.5 s in a third round 6 s after the second). With `JSSH_BENCH_CPUACCT` (a
/// cgroup's `cpuacct.usage`, which `scripts/bench-many` sets up where it can), also the CPU
/// seconds each phase took: on a shared 2-core machine times move with the other load, CPU
/// seconds much less. `JSSH_BENCH_LOGS=DIR` keeps the supervisors' logs and sshd's; `JSSH_BENCH_PERF=DIR`
/// records each heal and each round of logins with `perf` (see [`Perf`]);
/// `JSSH_BENCH_SSHD_CONFIG` adds lines to sshd's config (`MaxStartups 100`: a server that
/// turns no login away, so the plain logins all succeed too).
#[test]
#[ignore = "a benchmark: run by scripts/bench-many"]
fn bench_many_hosts() {
    let setting = |name: &str, default: u64| std::env::var(name).map_or(default, |n| n.parse().unwrap());
    let hosts = usize::try_from(setting("JSSH_BENCH_HOSTS", 20)).unwrap();
    let sshd_config = std::env::var("JSSH_BENCH_SSHD_CONFIG").unwrap_or_default();
    let (mut sshd, client, aliases) = fleet(hosts, &sshd_config);
    // The yardstick for `up --all`, in the same run: the same aliases up one after another
    // (then down again, so that `up --all` starts every Jupyter afresh too).
    let in_a_row = (setting("JSSH_BENCH_IN_A_ROW", 1) == 1).then(|| {
        let started = Instant::now();
        for alias in &aliases {
            let out = jssh(&client)
                .args(["up", alias, "-d", "--timeout", "300", "--env"])
                .arg(format!("venv:{}", venv()))
                .output()
                .unwrap();
            assert!(out.status.success(), "up {alias}: {}{}", stdout(&out), stderr(&out));
        }
        let took = started.elapsed();
        let out = jssh(&client).args(["down", "--all"]).output().unwrap();
        assert!(out.status.success(), "down --all: {}{}", stdout(&out), stderr(&out));
        assert_nothing_left(&sshd, &client);
        took
    });
    let recording = Perf::record("up-all");
    let (urls, took) = up_all(&client, &aliases);
    drop(recording);
    match in_a_row {
        Some(row) => println!(
            "up --all, {hosts} aliases: {:.1} s; {hosts} `up`s in a row: {:.1} s (ratio {:.2})",
            took.as_secs_f64(),
            row.as_secs_f64(),
            took.as_secs_f64() / row.as_secs_f64()
        ),
        None => println!("up --all, {hosts} aliases: {:.1} s", took.as_secs_f64()),
    }
    let mut rss = idle_rss(&client);
    rss.sort_unstable();
    println!(
        "idle supervisor RSS: median {:.1} MB, max {:.1} MB ({} of {hosts} over 3 MB)",
        kb_as_mb(rss[rss.len() / 2]),
        kb_as_mb(*rss.last().unwrap()),
        rss.iter().filter(|&&kb| kb > 3 * 1024).count()
    );
    for round in 1..=setting("JSSH_BENCH_ROUNDS", 3) {
        if round > 1 {
            std::thread::sleep(Duration::from_secs(setting("JSSH_BENCH_GAP", 65)));
        }
        let cpu = cpu_seconds();
        let recording = Perf::record(&format!("heal-{round}"));
        let healed = heal_after_restart(&mut sshd, &urls);
        drop(recording);
        let cpu_heal = cpu_seconds() - cpu;
        let slowest = *healed.iter().max().unwrap();
        // After a reconnect each supervisor starts its standby later: a login as costly as
        // a plain one, which must not be timed beside the yardstick.
        let standbys = standbys_up(&client, &aliases);
        let cpu = cpu_seconds();
        let recording = Perf::record(&format!("logins-{round}"));
        let logins = parallel_logins(&client, &aliases);
        drop(recording);
        let cpu_logins = cpu_seconds() - cpu;
        let cpu = cpu_seconds();
        let retried = parallel_logins_retried(&client, &aliases);
        let cpu_retried = cpu_seconds() - cpu;
        println!(
            "sshd restart {round}: all {hosts} healed after {:.2} s; {hosts} parallel `ssh … true`: {:.2} s; ratio {:.2} (goal ≤ 1.2); each retried until it succeeds: {:.2} s, ratio {:.2} (standbys back {:.1} s after the heal)",
            slowest.as_secs_f64(),
            logins.as_secs_f64(),
            slowest.as_secs_f64() / logins.as_secs_f64(),
            retried.as_secs_f64(),
            slowest.as_secs_f64() / retried.as_secs_f64(),
            standbys.as_secs_f64(),
        );
        if cpu_heal > 0.0 {
            println!(
                "  CPU seconds: heal {cpu_heal:.2}, logins {cpu_logins:.2} (ratio {:.2}), retried logins {cpu_retried:.2} (ratio {:.2})",
                cpu_heal / cpu_logins,
                cpu_heal / cpu_retried
            );
        }
    }
    if let Ok(dir) = std::env::var("JSSH_BENCH_LOGS") {
        let out = std::process::Command::new("cp")
            .arg("-r")
            .arg(client.state_dir())
            .arg(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        std::fs::write(format!("{dir}/sshd.log"), sshd.log()).unwrap();
        println!("logs kept in {dir}");
    }
    let started = Instant::now();
    let out = jssh(&client).args(["down", "--all"]).output().unwrap();
    assert!(out.status.success(), "down --all: {}{}", stdout(&out), stderr(&out));
    println!("down --all, {hosts} aliases: {:.1} s", started.elapsed().as_secs_f64());
    assert_nothing_left(&sshd, &client);
}

#[test]
fn several_aliases_refuse_one_alias_flags_and_report_each_failure() {
    let sshd = Sshd::start();
    let client = Client::new(&sshd);
    set_up(&sshd, &client, "ok1", &[]);
    set_up(&sshd, &client, "ok2", &[]);
    for argv in [
        &["up", "ok1", "ok2", "--port", "9000"][..],
        &["up", "--all", "--stop-remote"],
        &["up", "ok1", "nope"],
        &["down", "ok1", "nope"],
        &["status", "ok1", "nope"],
    ] {
        let out = jssh(&client).args(argv).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{argv:?}: {}", stderr(&out));
        assert_eq!(stderr(&out).trim().lines().count(), 1, "{argv:?}: {}", stderr(&out));
    }
    assert!(supervisors(&client).is_empty(), "nothing started");

    // Aliases that cannot start (the --dir is missing there) fail each on its own line, and
    // the exit status says so.
    let out = jssh(&client)
        .args([
            "up",
            "ok1",
            "ok2",
            "-d",
            "--timeout",
            "120",
            "--dir",
            "/nonexistent-dir",
            "--env",
        ])
        .arg(format!("venv:{}", venv()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines
            .iter()
            .all(|l| l.contains("failed: ") && l.contains("/nonexistent-dir")),
        "{text}"
    );
    assert!(
        supervisors(&client).is_empty(),
        "nothing left: {:?}",
        supervisors(&client)
    );
}

fn status_json(client: &Client) -> Vec<serde_json::Value> {
    let out = jssh(client).args(["status", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A process's resident set, as `ps -o rss=` gives it (kB, on Linux and macOS alike).
fn rss_kb(pid: u64) -> u64 {
    let out = std::process::Command::new("ps")
        .args(["-o", "rss=", "-p", &pid.to_string()])
        .output()
        .unwrap();
    stdout(&out).trim().parse().unwrap_or(0)
}

/// An sshd with `n` aliases set up on it (m0, m1, …) for one client.
/// `n` aliases on one sshd, with `extra` lines in its config.
fn fleet(n: usize, extra: &str) -> (Sshd, Client, Vec<String>) {
    let sshd = Sshd::start_with(extra);
    let client = Client::new(&sshd);
    let aliases: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
    for alias in &aliases {
        set_up(&sshd, &client, alias, &[]);
    }
    (sshd, client, aliases)
}

/// `up --all` (in the foreground: backgrounded, and told so): one line per alias with its
/// URL, in the profiles' order, a port each, each answering. The `(port, token)`s and how
/// long it took.
fn up_all(client: &Client, aliases: &[String]) -> (Vec<(u16, String)>, Duration) {
    let started = Instant::now();
    let out = jssh(client)
        .args(["up", "--all", "--timeout", "300", "--env"])
        .arg(format!("venv:{}", venv()))
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(out.status.success(), "up --all: {}{}", stdout(&out), stderr(&out));
    assert!(
        stderr(&out).contains("run in the background"),
        "several in the foreground are backgrounded, and told so: {}",
        stderr(&out)
    );
    let text = stdout(&out);
    let mut sorted: Vec<&String> = aliases.iter().collect();
    sorted.sort();
    assert_eq!(text.lines().count(), aliases.len(), "one line each:\n{text}");
    let mut urls = Vec::new();
    for (line, alias) in text.lines().zip(sorted) {
        let (name, url) = line.split_once("  ").unwrap();
        assert_eq!(name.trim_end(), alias, "{text}");
        let (port, token) = parse_url(url.trim_start());
        assert_eq!(get(port, "/api/status", Some(&token)), 200, "{alias} answers: {line}");
        urls.push((port, token));
    }
    let ports: std::collections::BTreeSet<u16> = urls.iter().map(|(p, _)| *p).collect();
    assert_eq!(ports.len(), aliases.len(), "a port each:\n{text}");
    (urls, took)
}

/// Each supervisor's resident set (kB), idle for a moment.
fn idle_rss(client: &Client) -> Vec<u64> {
    std::thread::sleep(Duration::from_secs(2));
    status_json(client)
        .iter()
        .map(|row| rss_kb(row["supervisor_pid"].as_u64().unwrap()))
        .collect()
}

/// An sshd restart (every session cut, the listener back at once): how long after it each
/// URL answered again.
fn heal_after_restart(sshd: &mut Sshd, urls: &[(u16, String)]) -> Vec<Duration> {
    sshd.outage();
    let restarted = Instant::now();
    sshd.restart();
    std::thread::scope(|scope| {
        let waits: Vec<_> = urls
            .iter()
            .map(|(port, token)| {
                scope.spawn(move || {
                    while get(*port, "/api/status", Some(token)) != 200 && restarted.elapsed() < Duration::from_mins(1)
                    {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    restarted.elapsed()
                })
            })
            .collect();
        waits.into_iter().map(|w| w.join().unwrap()).collect()
    })
}

/// How long the slowest of one fresh `ssh ALIAS true` per alias, all at once, takes: what
/// the same sshd costs any client (the yardstick for the heal).
fn parallel_logins(client: &Client, aliases: &[String]) -> Duration {
    let started = Instant::now();
    let children: Vec<_> = aliases
        .iter()
        .map(|alias| {
            client_ssh(client, true)
                .args(["--", alias, "true"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        // Not asserted: sshd may refuse some of them (MaxStartups), as it would any client.
        let out = child.wait_with_output().unwrap();
        if !out.status.success() {
            eprintln!("a plain login failed: {}", stderr(&out).trim());
        }
    }
    started.elapsed()
}

/// Like [`parallel_logins`], but a login that sshd refuses (MaxStartups) is tried again
/// after 0.2 s until it succeeds, as a tunnel must: how long until every alias logged in.
fn parallel_logins_retried(client: &Client, aliases: &[String]) -> Duration {
    let started = Instant::now();
    std::thread::scope(|scope| {
        for alias in aliases {
            scope.spawn(move || {
                for _ in 0..20 {
                    let ok = client_ssh(client, true)
                        .args(["--", alias, "true"])
                        .stdin(std::process::Stdio::null())
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null())
                        .status()
                        .unwrap()
                        .success();
                    if ok {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                panic!("{alias}: 20 logins in a row failed");
            });
        }
    });
    started.elapsed()
}

/// Waits (at most 20 s) until every alias runs its standby connection too: both control
/// sockets accept (a killed master leaves its socket file behind). How long that took. An
/// alias named as missing may have its active and standby on one socket: the supervisor
/// picks `ctl0`/`ctl1` by a counter that a failed standby attempt (sshd's MaxStartups) also
/// advances, so the next standby takes the active connection's name.
fn standbys_up(client: &Client, aliases: &[String]) -> Duration {
    let started = Instant::now();
    let live = |alias: &String, name: &str| {
        std::os::unix::net::UnixStream::connect(client.state_dir().join(alias).join(name)).is_ok()
    };
    let missing = || -> Vec<&String> {
        aliases
            .iter()
            .filter(|a| !(live(a, "ctl0") && live(a, "ctl1")))
            .collect()
    };
    while !missing().is_empty() {
        if started.elapsed() > Duration::from_secs(20) {
            println!("  no standby after 20 s: {:?}", missing());
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    started.elapsed()
}

/// With `JSSH_BENCH_PERF=DIR`, a system-wide `perf record` of one phase into `DIR/NAME.data`
/// (`perf report -i … --sort comm` then says which programs the CPU went to); ended when
/// dropped.
struct Perf(Option<std::process::Child>);

impl Perf {
    fn record(name: &str) -> Self {
        let Ok(dir) = std::env::var("JSSH_BENCH_PERF") else {
            return Self(None);
        };
        let child = std::process::Command::new("perf")
            .args(["record", "-a", "-F", "499", "-q", "-o"])
            .arg(format!("{dir}/{name}.data"))
            .args(["--", "sleep", "600"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok();
        // perf opens its per-CPU buffers before it records anything.
        std::thread::sleep(Duration::from_millis(500));
        Self(child)
    }
}

impl Drop for Perf {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
            let _ = child.wait();
        }
    }
}

/// CPU seconds used so far by the cgroup whose `cpuacct.usage` `JSSH_BENCH_CPUACCT` names
/// (the benchmark's processes, daemonized ones included), or 0.
fn cpu_seconds() -> f64 {
    std::env::var("JSSH_BENCH_CPUACCT").map_or(0.0, |path| {
        let ns: u64 = std::fs::read_to_string(path).unwrap().trim().parse().unwrap();
        #[allow(clippy::cast_precision_loss, reason = "nanoseconds of a benchmark: far below 2^52")]
        let ns = ns as f64;
        ns / 1e9
    })
}

/// No supervisor, no tunnel ssh, no remote Jupyter, every alias down.
fn assert_nothing_left(sshd: &Sshd, client: &Client) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(supervisors(client).is_empty() && tunnel_ssh(client).is_empty()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(supervisors(client).is_empty(), "{:?}", supervisors(client));
    assert!(tunnel_ssh(client).is_empty(), "{:?}", tunnel_ssh(client));
    assert!(
        sshd.remote_processes("jupyter").is_empty(),
        "{:?}",
        sshd.remote_processes("jupyter")
    );
    assert!(status_json(client).iter().all(|row| row["state"] == "down"));
    let reach: Vec<_> = std::fs::read_dir(client.state_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|name| name.to_string_lossy().starts_with("reach-"))
        .collect();
    assert!(
        reach.is_empty(),
        "the servers' reach files go with the last tunnel: {reach:?}"
    );
}

#[allow(clippy::cast_precision_loss, reason = "kilobytes of a process: far below 2^52")]
fn kb_as_mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}
