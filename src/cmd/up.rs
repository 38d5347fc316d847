//! `jssh up`: start (or reuse) the remote Jupyter, start the supervisor, and hand out a URL
//! only once it answers.

use std::io::{BufRead, BufReader, IsTerminal, Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ExitCode, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{SigSet, Signal};

use super::login::{self, Login};
use super::{Ctx, lookup_profile, open_url};
use crate::UsageError;
use crate::cli::UpArgs;
use crate::fsutil;
use crate::profile::{LoginKind, Profiles};
use crate::remote::{self, DirCheck, EXIT_NO_TMUX, EXIT_TOKEN_LOST, JupyterSpec, LaunchEvent, Marker};
use crate::sanitize::{for_terminal, ssh_stderr};
use crate::state::{self, Phase, RunDir, Session, unix_now};
use crate::supervisor::handle;

/// Where a new server's local port comes from, in order: `--port` (must be free), the port
/// this alias used last, 8888 unless another alias keeps it, any free port. Each alias keeps
/// its port, so its URL stays the same and two aliases starting at once do not collide.
fn choose_port(
    explicit: Option<u16>,
    remembered: Option<u16>,
    taken: &[u16],
    free: impl Fn(u16) -> bool,
) -> Result<Option<u16>> {
    if let Some(port) = explicit {
        if !free(port) {
            return Err(UsageError(format!(
                "port {port} on 127.0.0.1 is busy: pick another --port, or leave it out to get a free one"
            ))
            .into());
        }
        return Ok(Some(port));
    }
    let default = Some(8888).filter(|p| !taken.contains(p));
    Ok(remembered.into_iter().chain(default).find(|&p| free(p)))
}

/// Whether nobody holds `127.0.0.1:port`. Binding alone is not proof: on macOS and the BSDs
/// it succeeds while another program listens on `*:port` (the wildcard address), so whoever
/// holds the port must also not answer a connection.
fn port_is_free(port: u16) -> bool {
    let here = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpListener::bind(here).is_ok() && TcpStream::connect_timeout(&here, Duration::from_millis(200)).is_err()
}

/// Picks and records the local port under a lock shared by all aliases.
fn claim_port(ctx: &Ctx, run: &RunDir, alias: &crate::target::Alias, explicit: Option<u16>) -> Result<u16> {
    let _ports = state::lock_ports(&ctx.paths)?;
    let taken = state::claimed_ports(&ctx.paths, alias);
    let port = if let Some(port) = choose_port(explicit, run.remembered_port(), &taken, port_is_free)? {
        port
    } else {
        let listener = TcpListener::bind("127.0.0.1:0").context("could not find a free local port")?;
        listener.local_addr().context("could not read the free port")?.port()
    };
    run.remember_port(port)?;
    Ok(port)
}

/// Remote ports to try, in order: random ones in 20000–32767, below Linux's ephemeral range
/// (32768–60999), where any outgoing connection may hold a port at any moment and make
/// Jupyter's bind fail after the launch script found it free.
fn remote_port_candidates() -> Result<Vec<u16>> {
    let hex = fsutil::random_hex(10)?;
    Ok((0..5)
        .map(|i| {
            let n = u16::from_str_radix(&hex[i * 4..i * 4 + 4], 16).unwrap_or(0);
            REMOTE_PORTS.start + n % (REMOTE_PORTS.end - REMOTE_PORTS.start)
        })
        .collect())
}

const REMOTE_PORTS: std::ops::Range<u16> = 20_000..32_768;

pub(crate) fn run(ctx: &Ctx, args: &UpArgs) -> Result<ExitCode> {
    let mut profiles = Profiles::load(&ctx.paths.hosts_file())?;
    let mut profile = lookup_profile(&profiles, &args.alias)?;
    if !args.env.is_empty() && args.env != profile.env {
        profile.env.clone_from(&args.env);
        profiles.upsert(profile.clone());
        profiles.save(&ctx.paths.hosts_file())?;
    }
    let run = RunDir::new(&ctx.paths, &args.alias);
    let lock = run.lock()?;
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    if let Some(pid) = handle::find(&run) {
        match run.read_session()? {
            // One that is dying (a kill -9 a moment ago) ends the reuse: then start anew.
            Some(session) => match log_in_again(ctx, args, &run, &session)
                .and_then(|()| reuse(args, &run, &session, pid, deadline))
            {
                Err(_) if handle::find(&run).is_none() => {}
                result => return result,
            },
            // A supervisor whose session file is unreadable (e.g. from another jssh version)
            // would fight a new one for the port.
            None => handle::stop(&run)?,
        }
    }

    // A remote port can be taken between the launch script's check and Jupyter's bind
    // (another server starting): then the start is retried once on other ports.
    let mut tries = 0;
    let (session, supervisor, log_start) = loop {
        tries += 1;
        match start(ctx, args, &profile, &run, deadline) {
            Err(e) if tries == 1 && format!("{e:#}").contains("is already in use") => {}
            result => break result?,
        }
    };
    drop(lock);
    println!("{}", session.url());
    if args.open {
        open_url(&run, &session.url())?;
    }
    if args.detach {
        return Ok(ExitCode::SUCCESS);
    }
    foreground(ctx, args, &run, supervisor, log_start)
}

/// Starts (or finds) the remote server and a supervisor, and waits until the URL answers.
/// On failure nothing this run started is left behind.
fn start(
    ctx: &Ctx,
    args: &UpArgs,
    profile: &crate::profile::Profile,
    run: &RunDir,
    deadline: Instant,
) -> Result<(Session, Child, u64)> {
    // No spinner before the launch has logged in: ssh may be asking for a passphrase.
    let (mut launch, events, session, reused) = start_remote(ctx, args, profile, run, deadline)?;
    let progress = Progress::start(&format!(
        "starting Jupyter on {}, forwarding it to 127.0.0.1:{}",
        args.alias, session.local_port
    ));
    let log_start = std::fs::metadata(run.log_path()).map_or(0, |m| m.len());
    let mut supervisor = handle::start(
        &handle::Args {
            alias: args.alias.clone(),
            ssh_config: ctx.paths.ssh_config.clone(),
            connect_timeout: ctx.ssh.connect_timeout(),
            foreground: !args.detach,
        },
        run,
    )?;
    let ready = wait_ready(&session, deadline, Some(&events), Some(&mut supervisor), run);
    progress.finish();
    let _ = launch.kill();
    let _ = launch.wait();
    if session.login != profile.login {
        // The key was enough this time: the supervisor makes its own connections.
        login::end(ctx, &args.alias, run);
    }
    if let Err(e) = ready {
        let _ = handle::stop(run);
        // One that never took its lease is stopped as the child it is.
        let _ = supervisor.kill();
        let _ = supervisor.wait();
        let mut message = format!("{e:#}");
        if !message.contains("its log ends")
            && let Some(tail) = remote_log_tail(ctx, &args.alias, run, &session)
        {
            message = format!("{message}\n{tail}");
        }
        // Leave nothing half-started behind: a server this run started goes too.
        if !reused {
            if let Ok(marker) = Marker::new() {
                let stop = remote::stop(&marker, &session.tmux_name, session.remote_node.as_deref());
                let _ = login::remote_command(ctx, &args.alias, run, session.login, &stop, true).output();
            }
            login::end(ctx, &args.alias, run);
            run.clear();
        }
        bail!(message);
    }
    Ok((session, supervisor, log_start))
}

/// Where logins need a human and the tunnel waits for one (its login ended), `up` is how the
/// user comes back: one prompt, handed to the running supervisor.
fn log_in_again(ctx: &Ctx, args: &UpArgs, run: &RunDir, session: &Session) -> Result<()> {
    if session.login != LoginKind::Prompt || handle::login_alive(run) {
        return Ok(());
    }
    login::log_in(ctx, &args.alias, run)?;
    handle::login_arrived(run)
}

/// The warm path: a supervisor already runs for this alias.
fn reuse(args: &UpArgs, run: &RunDir, session: &Session, pid: u32, deadline: Instant) -> Result<ExitCode> {
    if args.port.is_some_and(|p| p != session.local_port) {
        bail!(
            "{} is already up on port {}: `jssh down {}` first to move it to --port",
            args.alias,
            session.local_port,
            args.alias
        );
    }
    wait_ready(session, deadline, None, None, run)?;
    println!("{}", session.url());
    if args.open {
        open_url(run, &session.url())?;
    }
    if !args.detach {
        println!(
            "(the tunnel already runs in the background, pid {pid}; `jssh down {}` stops it)",
            args.alias
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether `--socket` can be honoured: the supervisor reaches a socket through OpenSSH's
/// stdio forward, which needs OpenSSH 9.4 here. Otherwise it says so and uses a port (the
/// supervisor checks who holds it before anything carries the token there).
fn sockets_supported() -> bool {
    let ok = crate::ssh::forwards_to_sockets();
    if !ok {
        println!(
            "note: --socket needs OpenSSH 9.4 or newer on this machine (`ssh -V`); Jupyter listens on a \
             port of the remote's 127.0.0.1 instead"
        );
    }
    ok
}

/// Runs the launch script (starting or finding the remote server) and records the session.
/// Returns the still-watching launch ssh, its events, the session, and whether it was reused.
fn start_remote(
    ctx: &Ctx,
    args: &UpArgs,
    profile: &crate::profile::Profile,
    run: &RunDir,
    deadline: Instant,
) -> Result<(Child, Receiver<LaunchEvent>, Session, bool)> {
    let local_port = claim_port(ctx, run, &args.alias, args.port)?;
    let token = fsutil::random_hex(24)?;
    let session_name = remote::session_name(&args.alias);
    let previous = run.read_session()?.filter(|s| s.tmux_name == session_name);
    let mut ports = remote_port_candidates()?;
    if let Some(port) = previous.as_ref().and_then(|s| s.remote_port) {
        ports.insert(0, port);
    }
    let spec = JupyterSpec {
        session: &session_name,
        notebook: args.notebook,
        socket: args.socket && sockets_supported(),
        dir: args.dir.as_deref(),
        env: &profile.env,
        info: &profile.jupyter,
    };
    let expect = previous.as_ref().and_then(|s| s.remote_node.as_deref());
    let check = args.dir.as_deref().map(DirCheck::new);
    let marker = Marker::new()?;
    // Where logins need a human, the one login comes first, and everything rides on it.
    let mut login = profile.login;
    if login == LoginKind::Prompt && login::log_in(ctx, &args.alias, run)? == Login::KeyOnly {
        println!(
            "note: the key alone logged in to {} this time: the tunnel reconnects by itself",
            args.alias
        );
        login = LoginKind::Key;
    }
    let launch_cmd = login::remote_command(
        ctx,
        &args.alias,
        run,
        profile.login,
        &remote::launch(&marker, &spec, &ports, true, true, expect, check.as_ref()),
        !std::io::stdin().is_terminal(),
    );
    let mut launch = launch_cmd.spawn(Stdio::piped(), Stdio::piped(), Stdio::piped())?;
    if let Some(mut stdin) = launch.stdin.take() {
        std::io::Write::write_all(&mut stdin, token.as_bytes()).context("could not send the token")?;
    }
    let events = read_events(&mut launch, marker);
    let started = match first_events(&events, deadline) {
        Ok(started) => started,
        Err(e) => return Err(launch_failure(&mut launch, e, &args.alias)),
    };
    if let (Some(alternative_exists), Some(check)) = (started.no_dir, &check) {
        let _ = launch.wait();
        return Err(check.missing(&args.alias, alternative_exists));
    }
    if let (Some(reached), Some(expected)) = (&started.elsewhere, expect) {
        let _ = launch.wait();
        bail!(
            "{alias}'s Jupyter from the last `jssh up` runs on {expected}, but this connection \
             reached {reached} (does the alias's address lead to several machines?); nothing was \
             started. Try again after `ssh -O exit {alias}` (a new connection may reach {expected}), \
             point the alias at that machine (`jssh setup {alias} --host {expected}`), or forget \
             that server with `jssh down {alias}`",
            alias = args.alias
        );
    }
    // A socket server has no port, whether it was started now or before.
    let remote_socket = started
        .port
        .is_none()
        .then(|| format!("{}/.jssh/run/{session_name}/jupyter.sock", started.home));
    let session = Session {
        alias: args.alias.clone(),
        tmux_name: session_name,
        local_port,
        remote_port: started.port,
        remote_socket,
        remote_pid: started.pid,
        ssh_pid: None,
        remote_node: started.node,
        token: started.token.unwrap_or(token),
        notebook: args.notebook,
        dir: args.dir.clone(),
        env: profile.env.clone(),
        jupyter: profile.jupyter.clone(),
        phase: Phase::Starting,
        login,
        started_unix: unix_now(),
        reconnects: 0,
        restarts: 0,
        last_error: None,
    };
    if started.reused {
        println!(
            "reusing the Jupyter already running on {} (pid {})",
            args.alias,
            started.pid.unwrap_or(0)
        );
    }
    if started.root {
        println!("note: the remote login is root, so Jupyter runs with --allow-root");
    }
    run.write_session(&session)?;
    Ok((launch, events, session, started.reused))
}

/// A spinner on stderr while `up` waits, only on a terminal; it blocks the stop signals in
/// its thread so Ctrl-C reaches the main thread.
struct Progress {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    fn start(message: &str) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self {
                stop: None,
                thread: None,
            };
        }
        let (tx, rx) = mpsc::channel();
        let message = message.to_owned();
        let thread = std::thread::spawn(move || {
            let _ = all_signals().thread_block();
            let started = Instant::now();
            for frame in ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"].iter().cycle() {
                eprint!("\r\x1b[2K{frame} {message} ({:.1} s)", started.elapsed().as_secs_f64());
                if rx.recv_timeout(Duration::from_millis(80)) != Err(mpsc::RecvTimeoutError::Timeout) {
                    break;
                }
            }
            eprint!("\r\x1b[2K");
        });
        Self {
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    fn finish(mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Lines from the launch script after its marker (whatever the login shell printed before
/// is not the script's), read on a thread so waiting can also watch the tunnel.
fn read_events(launch: &mut Child, marker: Marker) -> Receiver<LaunchEvent> {
    let (tx, rx) = mpsc::channel();
    if let Some(stdout) = launch.stdout.take() {
        std::thread::spawn(move || {
            // Signals are for the main thread (a foreground `up` waits out Ctrl-C there).
            let _ = all_signals().thread_block();
            let lines = BufReader::new(stdout).lines().map_while(Result::ok);
            for line in lines.skip_while(|l| !marker.is(l)).skip(1) {
                if let Some(event) = LaunchEvent::parse(&line)
                    && tx.send(event).is_err()
                {
                    break;
                }
            }
        });
    }
    rx
}

/// What the launch script said before watching.
struct Started {
    port: Option<u16>,
    pid: Option<u32>,
    reused: bool,
    home: String,
    token: Option<String>,
    root: bool,
    node: Option<String>,
    /// The machine reached, when the session runs on another one (nothing was started).
    elsewhere: Option<String>,
    /// The `--dir` does not exist (nothing was started); whether its alternative does.
    no_dir: Option<bool>,
}

fn first_events(events: &Receiver<LaunchEvent>, deadline: Instant) -> Result<Started> {
    let mut started = Started {
        port: None,
        pid: None,
        reused: false,
        home: String::new(),
        token: None,
        root: false,
        node: None,
        elsewhere: None,
        no_dir: None,
    };
    let mut seen_start = false;
    loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(wait) {
            Ok(LaunchEvent::Started { port, pid, reused }) => {
                (started.port, started.pid, started.reused, seen_start) = (port, pid, reused, true);
            }
            Ok(LaunchEvent::Token(t)) => started.token = Some(t),
            Ok(LaunchEvent::Root) => started.root = true,
            Ok(LaunchEvent::Node(node)) => started.node = Some(node),
            Ok(LaunchEvent::Elsewhere(node)) => {
                started.elsewhere = Some(node);
                return Ok(started);
            }
            Ok(LaunchEvent::NoDir { alternative_exists }) => {
                started.no_dir = Some(alternative_exists);
                return Ok(started);
            }
            Ok(LaunchEvent::Home(home)) if seen_start => {
                started.home = home;
                return Ok(started);
            }
            Ok(_) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => bail!("the remote did not answer in time"),
            Err(mpsc::RecvTimeoutError::Disconnected) => bail!("the launch over ssh ended early"),
        }
    }
}

/// The error for a launch that never reported a session.
fn launch_failure(launch: &mut Child, err: anyhow::Error, alias: &crate::target::Alias) -> anyhow::Error {
    let _ = launch.kill();
    let status = launch.wait().ok();
    let mut stderr = String::new();
    if let Some(mut pipe) = launch.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
    }
    let stderr = ssh_stderr(stderr.as_bytes()).join("\n");
    match status.and_then(|s| s.code()) {
        Some(EXIT_NO_TMUX) => anyhow::anyhow!(
            "tmux is not installed on {alias} (searched the login PATH): install it there \
             (e.g. `apt install tmux`, `dnf install tmux`, or `conda install -c conda-forge tmux`)"
        ),
        Some(EXIT_TOKEN_LOST) => anyhow::anyhow!(
            "the token did not reach {alias} whole, so nothing was started: the login shell there \
             reads its input (a `read` in ~/.bashrc or ~/.profile?), which would have started \
             Jupyter without authentication. Make that line run only in interactive shells, e.g. \
             put it after `case $- in *i*) ;; *) return ;; esac`"
        ),
        Some(255) => {
            anyhow::anyhow!("could not connect to {alias}: {stderr}: check `jssh doctor {alias}` or `ssh {alias}`")
        }
        _ => err.context(format!("starting Jupyter on {alias} failed: {stderr}")),
    }
}

/// Waits until the supervisor reports the tunnel up: it holds the local port and has seen
/// Jupyter answer with the token (and refuse without it) over its own channel. jssh never
/// sends the token to the local port itself: only the supervisor's own listener is there,
/// but the URL's first user should be the browser. Fails early when the remote session
/// ends or the supervisor dies, and at the deadline.
fn wait_ready(
    session: &Session,
    deadline: Instant,
    events: Option<&Receiver<LaunchEvent>>,
    mut supervisor: Option<&mut Child>,
    run: &RunDir,
) -> Result<()> {
    let mut log_tail = Vec::new();
    loop {
        if supervisor.is_none() && handle::find(run).is_none() {
            bail!("the supervisor of {} stopped", session.alias);
        }
        if run.read_session().ok().flatten().is_some_and(|s| s.phase == Phase::Up) {
            return Ok(());
        }
        if let Some(events) = events {
            while let Ok(event) = events.try_recv() {
                match event {
                    LaunchEvent::Log(line) => log_tail.push(for_terminal(&line)),
                    LaunchEvent::Exited => {
                        // Give the tail a moment to arrive.
                        while let Ok(LaunchEvent::Log(line)) = events.recv_timeout(Duration::from_millis(500)) {
                            log_tail.push(for_terminal(&line));
                        }
                        bail!(
                            "Jupyter exited on {} as it started; its log ends:\n{}",
                            session.alias,
                            log_tail.join("\n")
                        );
                    }
                    _ => {}
                }
            }
        }
        if let Some(child) = supervisor.as_deref_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            let log = std::fs::read_to_string(run.log_path()).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(10)..].join("\n");
            bail!(
                "the tunnel supervisor exited ({status}); its log ends:\n{}",
                for_terminal(&tail)
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "Jupyter on {} did not answer within the timeout (raise it with --timeout)",
                session.alias
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last 20 lines of the remote Jupyter log, for an error message.
fn remote_log_tail(ctx: &Ctx, alias: &crate::target::Alias, run: &RunDir, session: &Session) -> Option<String> {
    let command = remote::log(&session.tmux_name, false);
    let out = login::remote_command(ctx, alias, run, session.login, &command, true)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(20)..].join("\n");
    (!tail.is_empty()).then(|| format!("the remote Jupyter log ends:\n{}", for_terminal(&tail)))
}

/// The signals that stop jssh.
fn all_signals() -> SigSet {
    let mut set = SigSet::empty();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(signal);
    }
    set
}

/// The file now at `path`, when it is no longer `open` (the log was rotated).
fn replaced(path: &std::path::Path, open: &std::fs::File) -> Option<std::fs::File> {
    use std::os::unix::fs::MetadataExt;
    let (now, was) = (std::fs::metadata(path).ok()?, open.metadata().ok()?);
    if (now.dev(), now.ino()) == (was.dev(), was.ino()) {
        return None;
    }
    std::fs::File::open(path).ok()
}

/// Follows the foreground supervisor: shows its log from `log_start` on (the events of this
/// run) until it exits — Ctrl-C reaches it directly — and says what keeps running.
fn foreground(ctx: &Ctx, args: &UpArgs, run: &RunDir, mut supervisor: Child, log_start: u64) -> Result<ExitCode> {
    all_signals().thread_block().context("could not block signals")?;
    println!("Ctrl-C stops the tunnel; the server keeps running on {}", args.alias);
    let mut log = std::fs::File::open(run.log_path()).context("could not open the supervisor log")?;
    log.seek(SeekFrom::Start(log_start))
        .context("could not read the supervisor log")?;
    let show = |log: &mut std::fs::File| {
        let mut text = String::new();
        let _ = log.read_to_string(&mut text);
        // Not print!, which panics (an abort, in a release build) once the reader has gone.
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(for_terminal(&text).as_bytes());
        let _ = out.flush();
    };
    let status = loop {
        show(&mut log);
        // The supervisor rotated its log (see `supervisor::log`): the rest is in the new one.
        if let Some(new) = replaced(&run.log_path(), &log) {
            show(&mut log);
            log = new;
            continue;
        }
        if let Some(status) = supervisor.try_wait().context("could not wait for the supervisor")? {
            show(&mut log);
            break status;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if args.stop_remote {
        super::down::stop_remote(ctx, &args.alias, run)?;
    } else {
        println!(
            "Jupyter still runs on {}: `jssh up {}` reconnects, `jssh down {}` stops it",
            args.alias, args.alias, args.alias
        );
    }
    // The supervisor's status: 128 + the signal that stopped it (130 after Ctrl-C).
    Ok(status
        .code()
        .and_then(|c| u8::try_from(c).ok())
        .map_or(ExitCode::FAILURE, ExitCode::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_ports_stay_below_the_ephemeral_range() {
        // Regression: ports up to 49999 collided with outgoing connections' local ports.
        for _ in 0..200 {
            let ports = remote_port_candidates().unwrap();
            assert_eq!(ports.len(), 5);
            assert!(ports.iter().all(|p| (20_000..32_768).contains(p)), "{ports:?}");
        }
    }

    #[test]
    fn a_port_held_on_the_wildcard_address_is_not_free() {
        // Regression (macOS, the BSDs): binding 127.0.0.1:P succeeds there while another
        // program listens on *:P, so a bind alone called the port free.
        let wildcard = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
        let port = wildcard.local_addr().unwrap().port();
        assert!(!port_is_free(port));
        // (Not asserted: that the port is free once dropped. CI saw it taken again at once,
        // an ephemeral port being anyone's to reuse.)
        drop(wildcard);
    }

    #[test]
    fn ports_prefer_remembered_then_8888_unless_taken() {
        let all_free = |_| true;
        assert_eq!(choose_port(None, Some(9000), &[], all_free).unwrap(), Some(9000));
        assert_eq!(choose_port(None, None, &[], all_free).unwrap(), Some(8888));
        assert_eq!(
            choose_port(None, None, &[8888], all_free).unwrap(),
            None,
            "another alias keeps 8888"
        );
        assert_eq!(choose_port(None, Some(9000), &[], |p| p != 9000).unwrap(), Some(8888));
        assert_eq!(
            choose_port(Some(7000), Some(9000), &[7000], all_free).unwrap(),
            Some(7000)
        );
        let busy = choose_port(Some(7000), None, &[], |_| false).unwrap_err();
        assert!(busy.to_string().contains("7000") && busy.to_string().contains("--port"));
    }
}
