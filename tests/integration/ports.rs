//! The supervisor owns the local port (issue 9): it never refuses a connection while the
//! tunnel heals, nobody else can take it, a killed supervisor leaves nothing behind, a stale
//! pidfile never makes jssh signal a stranger, and a token that did not arrive whole never
//! starts a Jupyter without authentication.

use std::fs;
use std::io::ErrorKind;
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::fixture::Client;
use crate::up::{free_port, parse_url, ready_host, up};
use crate::util::{alive, jssh, kill, local_status, process_table, stderr, stdout, venv};

/// The pid of the ssh carrying the tunnel, once the supervisor reports one that is not `old`.
fn live_ssh(client: &Client, alias: &str, old: Option<u64>) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = local_status(client, alias);
        if let Some(pid) = s["tunnel_ssh_pid"].as_u64()
            && Some(pid) != old
            && s["state"] == "up"
        {
            return pid;
        }
        assert!(Instant::now() < deadline, "no new tunnel ssh: {s}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Every ssh the client runs for `alias`'s supervisor (active, standby, watch).
fn supervisor_ssh(client: &Client, alias: &str) -> Vec<u32> {
    let needle = client.state_dir().join(alias).display().to_string();
    process_table()
        .into_iter()
        .filter(|p| p.command.starts_with("ssh ") && p.command.contains(&needle))
        .map(|p| p.pid)
        .collect()
}

#[test]
fn a_connect_storm_through_ssh_kills_and_standby_switches_is_never_refused() {
    let (_sshd, client) = ready_host("storm");
    let url = up(&client, "storm", &["--port", &free_port()]);
    let (port, _) = parse_url(&url);
    let stop = Arc::new(AtomicBool::new(false));
    let (refused, connected) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let storm = {
        let (stop, refused, connected) = (stop.clone(), refused.clone(), connected.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match TcpStream::connect(("127.0.0.1", port)) {
                    Ok(_) => connected.fetch_add(1, Ordering::Relaxed),
                    Err(e) if e.kind() == ErrorKind::ConnectionRefused => refused.fetch_add(1, Ordering::Relaxed),
                    Err(e) => panic!("connect failed: {e}"),
                };
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let mut ssh = live_ssh(&client, "storm", None);
    let standby_ready = || {
        let dir = client.state_dir().join("storm");
        // The standby follows a reconnect by twice the reconnect's time (up to 5 s), and its
        // own login: on a machine loaded by the whole suite, 10 s was once not enough.
        let deadline = Instant::now() + Duration::from_secs(30);
        // A master killed with SIGKILL leaves its socket file behind: only one that accepts
        // a connection is a live master.
        let live = |name: &str| std::os::unix::net::UnixStream::connect(dir.join(name)).is_ok();
        while !(live("ctl0") && live("ctl1")) {
            assert!(
                Instant::now() < deadline,
                "no standby; log:\n{}",
                fs::read_to_string(dir.join("supervisor.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    for round in 0..20 {
        if round % 7 == 3 {
            standby_ready();
            // A standby switch: only the live connection dies, the standby takes over.
            kill(u32::try_from(ssh).unwrap(), "-KILL");
        } else {
            // Every connection dies at once: a new one is made.
            for pid in supervisor_ssh(&client, "storm") {
                kill(pid, "-KILL");
            }
        }
        ssh = live_ssh(&client, "storm", Some(ssh));
    }
    stop.store(true, Ordering::Relaxed);
    storm.join().unwrap();
    let log = fs::read_to_string(client.state_dir().join("storm/supervisor.log")).unwrap();
    assert!(log.matches("the standby connection took over").count() >= 3, "{log}");
    assert!(connected.load(Ordering::Relaxed) > 500, "the storm ran");
    assert_eq!(refused.load(Ordering::Relaxed), 0, "refused connections; log:\n{log}");
    assert!(jssh(&client).args(["down", "storm"]).output().unwrap().status.success());
}

#[test]
fn nobody_else_can_take_the_port_while_the_tunnel_heals_and_a_killed_supervisor_leaves_nothing() {
    let (_sshd, client) = ready_host("hold");
    let url = up(&client, "hold", &["--port", &free_port()]);
    let (port, _) = parse_url(&url);
    // Another program spinning on bind(127.0.0.1:PORT) while the live ssh is killed (the
    // window in which, with `ssh -L`, it got the port, and the browser's token with it).
    let stop = Arc::new(AtomicBool::new(false));
    let squatter = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut tries = 0u64;
            while !stop.load(Ordering::Relaxed) {
                assert!(
                    TcpListener::bind(("127.0.0.1", port)).is_err(),
                    "another program got the port"
                );
                tries += 1;
            }
            tries
        })
    };
    let mut ssh = live_ssh(&client, "hold", None);
    for _ in 0..5 {
        for pid in supervisor_ssh(&client, "hold") {
            kill(pid, "-KILL");
        }
        ssh = live_ssh(&client, "hold", Some(ssh));
    }
    stop.store(true, Ordering::Relaxed);
    assert!(squatter.join().unwrap() > 1000, "the squatter spun");

    // kill -9 of the supervisor, then `up`: its ssh masters are ended, the port is the same.
    let sup = u32::try_from(local_status(&client, "hold")["supervisor_pid"].as_u64().unwrap()).unwrap();
    let old = supervisor_ssh(&client, "hold");
    assert!(!old.is_empty());
    kill(sup, "-KILL");
    while alive(sup) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let again = jssh(&client)
        .args(["up", "hold", "-d", "--timeout", "90", "--env"])
        .arg(format!("venv:{}", venv()))
        .output()
        .unwrap();
    let said = format!("up said: {}{}", stdout(&again), stderr(&again));
    assert!(again.status.success(), "{said}");
    assert_eq!(
        stdout(&again).lines().last(),
        Some(url.as_str()),
        "same port and token; {said}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while old.iter().any(|pid| alive(*pid)) {
        let argv: Vec<String> = old
            .iter()
            .filter(|pid| alive(**pid))
            .map(|pid| {
                process_table()
                    .into_iter()
                    .find(|p| p.pid == *pid)
                    .map(|p| p.command)
                    .unwrap_or_default()
            })
            .collect();
        let log = fs::read_to_string(client.state_dir().join("hold/supervisor.log")).unwrap_or_default();
        assert!(
            Instant::now() < deadline,
            "the old supervisor's ssh still runs: {argv:?}\n{log}\n{}\n{said}",
            who_runs(&client, "hold")
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // `down` after the state dir was deleted: the supervisor notices and stops on its own.
    let sup = u32::try_from(local_status(&client, "hold")["supervisor_pid"].as_u64().unwrap()).unwrap();
    let masters = supervisor_ssh(&client, "hold");
    fs::remove_dir_all(client.state_dir().join("hold")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(sup) || masters.iter().any(|pid| alive(*pid)) {
        assert!(Instant::now() < deadline, "the supervisor outlived its state dir");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(TcpListener::bind(("127.0.0.1", port)).is_ok(), "the port was released");
}

#[test]
fn a_stale_pidfile_never_makes_jssh_signal_another_process() {
    let (_sshd, client) = ready_host("stale");
    let dir = client.state_dir().join("stale");
    fs::create_dir_all(&dir).unwrap();
    // An unrelated process whose argv says `supervise`, named in both places a supervisor
    // would write its pid.
    let mut stranger = Command::new("bash")
        .args(["-c", "exec -a supervise sleep 300"])
        .spawn()
        .unwrap();
    let pid = stranger.id();
    for file in ["supervisor.pid", "supervisor.lock"] {
        fs::write(dir.join(file), format!("{pid}\n")).unwrap();
    }
    for args in [
        &["status", "stale"][..],
        &["url", "stale"],
        &["down", "stale", "--keep-remote"],
    ] {
        let _ = jssh(&client).args(args).output().unwrap();
        assert!(alive(pid), "`jssh {}` signalled an unrelated process", args.join(" "));
    }
    let url = up(&client, "stale", &["--port", &free_port()]);
    assert!(alive(pid), "`jssh up` signalled an unrelated process");
    let out = jssh(&client).args(["down", "stale"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(alive(pid), "`jssh down` signalled an unrelated process");
    assert!(url.contains("token="));
    stranger.kill().unwrap();
    stranger.wait().unwrap();
}

#[test]
fn a_login_shell_that_eats_the_token_starts_nothing() {
    let (sshd, client) = ready_host("eats");
    // bash sources ~/.bashrc for a command run by sshd; this line reads the launch's stdin.
    fs::write(sshd.home().join(".bashrc"), "[ -t 0 ] || read -t 1 junk\n").unwrap();
    let out = jssh(&client)
        .args(["up", "eats", "-d", "--timeout", "60", "--port", &free_port(), "--env"])
        .arg(format!("venv:{}", venv()))
        .output()
        .unwrap();
    let _ = fs::remove_file(sshd.home().join(".bashrc"));
    assert!(!out.status.success(), "up succeeded: {}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("token did not reach") && err.contains("bashrc"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(
        sshd.remote_processes("jupyter").is_empty(),
        "a Jupyter was started: {:?}",
        sshd.remote_processes("jupyter")
    );
}

#[test]
fn a_squatter_on_the_remote_port_never_receives_the_token() {
    let (sshd, client) = ready_host("squat");
    let port_file = sshd.home().join(".jssh/run/jssh-squat/port");
    // Another program on the server binds Jupyter's port the moment it is chosen, while
    // Jupyter still imports, and records everything it receives.
    let squatter = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_mins(1);
        let port: u16 = loop {
            if let Some(port) = fs::read_to_string(&port_file).ok().and_then(|p| p.trim().parse().ok()) {
                break port;
            }
            assert!(Instant::now() < deadline, "no port file");
            std::thread::sleep(Duration::from_millis(1));
        };
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind before Jupyter");
        listener.set_nonblocking(true).unwrap();
        let mut received = Vec::new();
        let until = Instant::now() + Duration::from_secs(15);
        while Instant::now() < until {
            if let Ok((mut s, _)) = listener.accept() {
                s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
                let _ = std::io::Read::read_to_end(&mut s, &mut received);
                // Answered as a proof would be (it cannot be the right one: no token).
                let fake = format!("HTTP/1.1 200 OK\r\nContent-Length: 64\r\n\r\n{}", "ab".repeat(32));
                let _ = std::io::Write::write_all(&mut s, fake.as_bytes());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        received
    });
    let out = jssh(&client)
        .args(["up", "squat", "-d", "--timeout", "60", "--port", &free_port(), "--env"])
        .arg(format!("venv:{}", venv()))
        .output()
        .unwrap();
    let received = squatter.join().unwrap();
    let text = String::from_utf8_lossy(&received).to_string();
    let session = fs::read_to_string(client.state_dir().join("squat/session.json")).unwrap_or_default();
    let token = serde_json::from_str::<serde_json::Value>(&session)
        .ok()
        .and_then(|s| s["token"].as_str().map(str::to_owned));
    if let Some(token) = token {
        assert!(!text.contains(&token), "the squatter got the token");
    }
    assert!(!text.contains("token"), "the squatter got a token: {text}");
    if out.status.success() {
        // Jupyter could not bind its port and `up` moved it to another one.
        assert!(stdout(&out).contains("token="));
    } else {
        let err = stderr(&out);
        assert!(
            err.contains("another program") || err.contains("already in use"),
            "not explained: {err}"
        );
    }
    let _ = jssh(&client).args(["down", "squat"]).output();
}

/// After a reconnect the listener proves it is this Jupyter through the tunnel
/// (remote/jssh_proof.py): no remote shell asks who listens. The proof is bound to the address
/// the connection reached, whatever the request claims: a relay on another port, passing the
/// challenge on to Jupyter, gets an answer that holds only for Jupyter's own port.
#[test]
fn a_reconnect_is_proved_through_the_tunnel_and_a_relay_cannot_prove_its_own_port() {
    let (_sshd, client) = ready_host("proof");
    up(&client, "proof", &[]);
    let log = || client.supervisor_log("proof");
    assert!(log().contains("ready: "), "{}", log());
    for pid in supervisor_ssh(&client, "proof") {
        kill(pid, "-KILL");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !log().contains("reconnected in") {
        assert!(Instant::now() < deadline, "no reconnect:\n{}", log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let line = log().lines().find(|l| l.contains("reconnected in")).unwrap().to_owned();
    assert!(line.contains("listener proved"), "{line}");

    let session: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(client.state_dir().join("proof/session.json")).unwrap()).unwrap();
    let jupyter = u16::try_from(session["remote_port"].as_u64().unwrap()).unwrap();
    let token = session["token"].as_str().unwrap().to_owned();
    // Another program's relay: its own port, every connection passed on to Jupyter's.
    let relay = TcpListener::bind("127.0.0.1:0").unwrap();
    let relay_port = relay.local_addr().unwrap().port();
    std::thread::spawn(move || {
        // The one connection the test makes through it.
        for mut theirs in relay.incoming().take(1).flatten() {
            let mut upstream = TcpStream::connect(("127.0.0.1", jupyter)).unwrap();
            let (mut back, mut ours) = (upstream.try_clone().unwrap(), theirs.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut back, &mut ours);
                let _ = ours.shutdown(std::net::Shutdown::Both);
            });
            let _ = std::io::copy(&mut theirs, &mut upstream);
        }
    });
    let challenge = "0123456789abcdef0123456789abcdef";
    let answer = |port: u16| {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let request = format!(
            "GET /jssh-proof/{challenge} HTTP/1.1\r\nHost: 127.0.0.1:{relay_port}\r\nConnection: close\r\n\r\n"
        );
        std::io::Write::write_all(&mut s, request.as_bytes()).unwrap();
        let mut response = String::new();
        std::io::Read::read_to_string(&mut s, &mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        response.rsplit("\r\n\r\n").next().unwrap().trim().to_owned()
    };
    let proof = |port: u16| {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(token.as_bytes()).unwrap();
        mac.update(format!("jssh-proof {challenge} 127.0.0.1 {port}").as_bytes());
        let bytes = mac.finalize().into_bytes();
        bytes.iter().fold(String::new(), |hex, b| hex + &format!("{b:02x}"))
    };
    assert_eq!(answer(jupyter), proof(jupyter), "Jupyter proves its own port");
    let relayed = answer(relay_port);
    assert_eq!(
        relayed,
        proof(jupyter),
        "the relay gets Jupyter's answer for Jupyter's port"
    );
    assert_ne!(relayed, proof(relay_port), "which does not hold for the relay's");
    let _ = jssh(&client).args(["down", "proof"]).output();
}

/// What runs of jssh's (pid, where it waits, state, command line), and which processes have
/// `alias`'s supervisor lease open: for a failure's message.
fn who_runs(client: &Client, alias: &str) -> String {
    let running: Vec<String> = process_table()
        .into_iter()
        .filter(|p| p.command.contains("jssh"))
        .map(|p| {
            let wchan = fs::read_to_string(format!("/proc/{}/wchan", p.pid)).unwrap_or_default();
            let stat = fs::read_to_string(format!("/proc/{}/stat", p.pid)).unwrap_or_default();
            let state = stat
                .rsplit_once(')')
                .map_or("", |(_, rest)| rest.trim_start().get(..1).unwrap_or(""));
            format!("{} [{wchan}] {state} :: {}", p.pid, p.command)
        })
        .collect();
    let lease = client.state_dir().join(alias).join("supervisor.lock");
    let mut holders = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        if fds
            .flatten()
            .any(|fd| fs::read_link(fd.path()).is_ok_and(|t| t == lease))
        {
            holders.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    format!("processes: {running:#?}\nthe lease is open in: {holders:?}")
}
