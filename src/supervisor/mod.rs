//! The tunnel supervisor. It holds the local port for its whole life ([`gate`]) and hands
//! each connection to the live ssh master as a stdio forward ([`mux`]); it keeps one
//! connection plus an authenticated standby, probes Jupyter over its own channel, and restarts
//! whatever broke — the ssh (the standby takes over at once: new connections simply go to it;
//! otherwise a new connection, with backoff, woken early when the server's port answers again)
//! or the remote Jupyter (at most 5 times in 10 minutes), which a watch over the tunnel's
//! connection reports the moment it exits. The supervisor's own thread sleeps in `poll(2)` on
//! a self-pipe that delivers SIGCHLD (an ssh ended) and SIGTERM/SIGINT/SIGHUP (stop) (see
//! [`crate::platform::Signals`]); the port's thread never waits for it.
//!
//! This module never imports the CLI layer: `jssh up` starts it through [`handle`].

mod gate;
pub(crate) mod handle;
mod link;
mod log;
mod mux;
mod policy;
mod probe;

use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;

use self::gate::{Gate, Route};
use self::handle::Args;
use self::link::{Action, Link, Seen};
use self::log::Log;
use self::policy::{
    CONNECT_LIMIT, CONNECT_POLL, GRACE, HEALTHY_RESET, MAX_RESTARTS, PROBE_EVERY, PROBE_TIMEOUT_CAP, REACH_EVERY,
    RESTART_WINDOW, RUN_DIR_CHECK, STANDBY_STRIKES, TAKEOVER_LIMIT, YOUNG, backoff, probe_timeout,
};
use self::policy::{LATE_WAKEUP, LOGIN_RECHECK, jitter, recheck_timeout};
use self::probe::{Probe, Prober};
use crate::paths::Paths;
use crate::platform::{self, NetWatch, Signals};
use crate::process::{CleanChild, Ended};
use crate::profile::LoginKind;
use crate::remote::{self, JupyterSpec, LaunchEvent, Marker};
use crate::ssh::{Ssh, parse_resolved};
use crate::state::{Lease, Phase, RunDir, Session};
use crate::target::Alias;

/// What [`Supervisor::relaunch`] found.
#[derive(Debug, PartialEq, Eq)]
enum Relaunch {
    /// Jupyter was gone and has been started again.
    Started,
    /// Jupyter still runs.
    Running,
    /// The connection reached another machine, or the launch failed: a new connection is on
    /// its way, after a backoff.
    Reconnecting,
}

/// One of the supervisor's ssh connections, a private master (see [`crate::ssh::Ssh::tunnel`]).
struct Conn {
    child: Master,
    control: PathBuf,
    started: Instant,
}

/// A connection's ssh: one the supervisor started, or the login a human answered, which
/// `jssh up`/`jssh login` started in the user's terminal and the supervisor holds.
enum Master {
    Spawned(CleanChild),
    Held(mux::Held),
}

impl Master {
    fn id(&self) -> u32 {
        match self {
            Self::Spawned(child) => child.id(),
            Self::Held(held) => held.pid,
        }
    }

    /// How it ended, once it has.
    fn ended(&mut self) -> Result<Option<String>> {
        Ok(match self {
            Self::Spawned(child) => child.try_wait()?.map(|status| format!("ssh {status}")),
            Self::Held(held) => held.gone().then(|| "the login ended".to_owned()),
        })
    }
}

/// The remote watch's ssh. Its stdin is a pipe the supervisor holds open and never writes
/// to: the remote side waits only as long as it stays open (see [`remote::watch`]).
struct Watch {
    child: CleanChild,
    started: Instant,
    _stdin: OwnedFd,
}

impl Watch {
    fn spawn(cmd: &crate::process::Cmd, log: BorrowedFd<'_>) -> Result<Self> {
        // std's pipes are close-on-exec on every platform: only the watch's ssh gets it.
        let (read, write) = std::io::pipe().context("could not make a pipe")?;
        let child = cmd.spawn_clean(Some(read.as_fd()), log)?;
        Ok(Self {
            child,
            started: Instant::now(),
            _stdin: write.into(),
        })
    }
}

struct Supervisor {
    ssh: Ssh,
    alias: Alias,
    run: RunDir,
    lease: Lease,
    session: Session,
    log: Log,
    /// The local port's thread: told which master carries connections.
    gate: Gate,
    /// The connection carrying the tunnel.
    active: Option<Conn>,
    /// An authenticated connection, ready to take over.
    standby: Option<Conn>,
    standby_strikes: u32,
    /// `tmux wait-for` on the remote, over the active connection: ends when Jupyter exits.
    watch: Option<Watch>,
    /// Watches that ended young for no reason (like `standby_strikes`).
    watch_strikes: u32,
    /// The remote's tmux has no hooks: crashes are noticed by the probe alone.
    watch_unsupported: bool,
    /// When to look next whether a stalled attempt's server answers again.
    next_reach_check: Instant,
    /// Alternates the two control socket names.
    generation: u32,
    prober: Prober,
    /// How long a good probe usually takes (a moving average), for [`probe_timeout`].
    probe_typical: Duration,
    /// Since when Jupyter does not answer on a working connection (it hangs).
    hung_since: Option<Instant>,
    /// Whether the next good probe must also prove that Jupyter refuses a request without
    /// the token (a fresh start or a restart): one running without authentication is never
    /// reported as ready.
    check_auth: bool,
    /// Whether the remote TCP port is known to be held by this Jupyter (see
    /// [`Supervisor::checked_probe`]); a socket in the user's private dir needs no check.
    listener_ok: bool,
    link: Link,
    attempt: u32,
    restarts: VecDeque<Instant>,
    next_tick: Instant,
    /// When the lease was last checked (see [`policy::RUN_DIR_CHECK`]).
    lease_checked: Instant,
    /// `host:port` of the sshd when reachable directly (no ProxyJump), to notice it is back.
    direct: Option<String>,
    /// Network changes, where the system reports them.
    net: Option<NetWatch>,
    /// How long the machine had been suspended at the last wakeup ([`platform::asleep`]).
    asleep: Option<Duration>,
    /// When the last sleep or network change was noticed, until the probe it caused.
    changed_at: Option<Instant>,
    /// Logins need a human ([`LoginKind::Prompt`]): the supervisor rides on the login the user
    /// answered and never logs in itself (no standby, no reconnect attempts, no reach checks).
    human: bool,
    /// That login ended and the user has been told to log in again.
    awaiting_login: bool,
}

/// `jssh-supervisor`'s entry point: its arguments are exactly what [`handle::start`] gives.
pub(crate) fn main(args: &[std::ffi::OsString]) -> Result<ExitCode> {
    let args = Args::parse(args)
        .ok_or_else(|| crate::UsageError("jssh-supervisor is started by `jssh up`; run that instead".into()))?;
    run(&args)
}

/// Runs until signalled, returning 128 + the signal, as a shell reports a signalled process.
pub(crate) fn run(args: &Args) -> Result<ExitCode> {
    supervise(args).map(|signal| ExitCode::from(128 + u8::try_from(signal as i32).unwrap_or(0)))
}

/// Runs the supervisor for `args.alias` until signalled (returning the signal) or it gives up.
fn supervise(args: &Args) -> Result<Signal> {
    if !args.foreground {
        // Leave the terminal's session: a closed terminal must not take the tunnel down.
        let _ = nix::unistd::setsid();
    }
    let paths = Paths::resolve(Some(args.ssh_config.clone()))?;
    let ssh = Ssh::new(paths.ssh_config_flag(), args.connect_timeout);
    let alias = &args.alias;
    // Before any thread starts: they inherit the mask that keeps these signals off them.
    // SIGUSR1: `jssh login` made a new login to ride on.
    let mut signals = Signals::deliver(&[
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGUSR1,
    ])?;

    let run = RunDir::new(&paths, alias);
    let lease = run
        .take_lease()
        .with_context(|| format!("a supervisor already runs for {alias}"))?;
    let session = run
        .read_session()?
        .context("no session to supervise: start it with `jssh up`")?;
    run.prepare_control_dir()?;
    end_leftover_masters(&ssh, alias, &run);
    let listener = gate::bind(session.local_port)?;
    let gate = Gate::start(listener)?;
    let log = Log::open(&run.log_path())?;
    let now = Instant::now();
    let prober = Prober::new(&session.token);
    let mut sup = Supervisor {
        ssh,
        alias: alias.clone(),
        run,
        lease,
        session,
        log,
        gate,
        active: None,
        standby: None,
        standby_strikes: 0,
        watch: None,
        watch_strikes: 0,
        watch_unsupported: false,
        next_reach_check: now,
        generation: 0,
        prober,
        probe_typical: Duration::ZERO,
        hung_since: None,
        check_auth: true,
        listener_ok: false,
        link: Link::Waiting {
            due: now,
            lost: now,
            seen_down: false,
        },
        attempt: 0,
        restarts: VecDeque::new(),
        next_tick: now,
        lease_checked: now,
        direct: None,
        net: NetWatch::open(),
        asleep: platform::asleep(),
        changed_at: None,
        human: false,
        awaiting_login: false,
    };
    sup.human = sup.session.login == LoginKind::Prompt;
    // Even a TCP connect to its port shows in the server's log as a client that went away.
    sup.direct = if sup.human { None } else { sup.direct_address() };
    sup.event(&format!(
        "supervising {} (pid {}), holding 127.0.0.1:{}",
        sup.alias,
        std::process::id(),
        sup.session.local_port
    ));
    let result = sup.run_loop(&mut signals);
    sup.stop_all();
    if let Err(e) = &result {
        sup.session.phase = Phase::Failed;
        sup.session.last_error = Some(format!("{e:#}"));
        sup.event(&format!("giving up: {e:#}"));
    } else {
        sup.session.phase = Phase::Stopped;
        sup.event("tunnel stopped");
    }
    sup.session.ssh_pid = None;
    if sup.lease.still_there() {
        let _ = sup.run.write_session(&sup.session);
    }
    result
}

impl Supervisor {
    fn run_loop(&mut self, signals: &mut Signals) -> Result<Signal> {
        loop {
            let wait = self
                .next_tick
                .min(self.lease_checked + RUN_DIR_CHECK)
                .saturating_duration_since(Instant::now());
            let millis = u16::try_from(wait.as_millis().min(60_000)).unwrap_or(u16::MAX);
            let mut fds = vec![PollFd::new(signals.fd(), PollFlags::POLLIN)];
            fds.extend(self.net.as_ref().map(|net| PollFd::new(net.fd(), PollFlags::POLLIN)));
            // A held login is not our child: its end shows as its control connection closing.
            let held_at = fds.len();
            if let Some(Conn {
                child: Master::Held(held),
                ..
            }) = &self.active
            {
                fds.push(PollFd::new(held.fd(), PollFlags::POLLIN));
            }
            let before = Instant::now();
            match poll(&mut fds, PollTimeout::from(millis)) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e).context("poll failed"),
            }
            let late = before.elapsed().saturating_sub(Duration::from_millis(millis.into()));
            let ready = |i: usize| fds.get(i).and_then(PollFd::revents).is_some_and(|r| !r.is_empty());
            let net_ready = self.net.is_some() && ready(1);
            let held_ready = held_at > 1 && ready(held_at);
            drop(fds);
            let arrived = signals.pending();
            if let Some(&sig) = arrived.iter().find(|&&s| s != Signal::SIGCHLD && s != Signal::SIGUSR1) {
                self.event(&format!("received {sig}: stopping the tunnel"));
                return Ok(sig);
            }
            if arrived.contains(&Signal::SIGUSR1) {
                self.login_arrived();
            }
            if !arrived.is_empty() || held_ready {
                self.reap()?;
            }
            self.notice_changes(late, net_ready);
            let now = Instant::now();
            // Checked on every tick (a stat), so an idle supervisor wakes no more often for it.
            if now >= self.next_tick || now >= self.lease_checked + RUN_DIR_CHECK {
                self.lease_checked = now;
                if !self.lease.still_there() {
                    // `jssh down` could no longer find this supervisor: nobody could stop it.
                    self.event("the state directory was removed: stopping the tunnel");
                    return Ok(Signal::SIGTERM);
                }
            }
            if now >= self.next_tick {
                self.tick()?;
            }
        }
    }

    /// A wakeup much later than asked for (the process did not run: the machine slept, or it
    /// was stopped), time spent suspended (which `poll`'s timeout does not count), or a
    /// network change: any connection may have died without a word, so the link's state
    /// machine rechecks at once, and spreads the reconnect this may cause by a random jitter.
    fn notice_changes(&mut self, late: Duration, net_ready: bool) {
        let asleep = platform::asleep();
        let suspended = asleep
            .zip(self.asleep)
            .map_or(Duration::ZERO, |(now, before)| now.saturating_sub(before));
        self.asleep = asleep;
        let network = net_ready && self.net.as_ref().is_some_and(NetWatch::changed);
        let what = if suspended > LATE_WAKEUP {
            format!("the machine was suspended for {:.1} s", suspended.as_secs_f64())
        } else if late > LATE_WAKEUP {
            format!(
                "woke up {:.1} s late (the machine slept, or jssh was stopped)",
                late.as_secs_f64()
            )
        } else if network {
            "the network changed".to_owned()
        } else {
            return;
        };
        let jitter = jitter(RandomState::new().hash_one(std::process::id()));
        let now = Instant::now();
        let (link, _, next) = link::on_tick(self.link, &Seen::Changed { jitter }, now);
        self.event(&format!("{what}: checking the connection"));
        self.changed_at = Some(now);
        self.link = link;
        self.next_tick = self.next_tick.min(next);
    }

    /// Appends a timestamped line to the log (a foreground `jssh up` shows it from there).
    fn event(&mut self, message: &str) {
        self.log.line(message);
    }

    fn save(&mut self) {
        if let Err(e) = self.run.write_session(&self.session) {
            self.event(&format!("could not save the session: {e:#}"));
        }
    }

    /// The sshd's address when ssh connects to it directly (for the "is it back?" check).
    fn direct_address(&self) -> Option<String> {
        let out = self.ssh.resolve(&self.alias).output().ok()?;
        let resolved = parse_resolved(&String::from_utf8_lossy(&out.stdout));
        if resolved.contains_key("proxyjump") || resolved.contains_key("proxycommand") {
            return None;
        }
        Some(format!("{}:{}", resolved.get("hostname")?, resolved.get("port")?))
    }

    /// Starts a connection (the active one or a standby: they are alike, a master without
    /// forwards, which the gate hands connections to). Where logins need a human, takes the
    /// login the user answered instead, or fails: it never logs in itself.
    fn connect(&mut self) -> Result<Conn> {
        if self.human {
            let control = self.run.login_control();
            let held = mux::hold(&control, GRACE).context("no login to ride on")?;
            return Ok(Conn {
                child: Master::Held(held),
                control,
                started: Instant::now(),
            });
        }
        self.generation += 1;
        let control = self.run.control_path(self.generation % 2);
        // A stale socket would make the new master run without one.
        let _ = std::fs::remove_file(&control);
        let cmd = self.ssh.tunnel(&self.alias, &control);
        let child = cmd.spawn_clean(None, self.log.fd())?;
        let mut masters: Vec<(u32, PathBuf)> = [&self.active, &self.standby]
            .into_iter()
            .flatten()
            .map(|c| (c.child.id(), c.control.clone()))
            .collect();
        masters.push((child.id(), control.clone()));
        if let Err(e) = self.run.write_masters(&masters) {
            self.event(&format!("could not record the ssh connections: {e:#}"));
        }
        Ok(Conn {
            child: Master::Spawned(child),
            control,
            started: Instant::now(),
        })
    }

    /// The login a human answered is gone: no attempt to log in follows (each would count
    /// towards the server's lockout, or send a push). The port keeps holding connections; the
    /// user is told once, and `jssh login` brings a new login (SIGUSR1). Until then the only
    /// check is for that login's local control socket.
    fn needs_login(&mut self, now: Instant, lost: Instant) {
        if !self.awaiting_login {
            self.awaiting_login = true;
            let alias = self.alias.clone();
            let why = format!(
                "the login to {alias} has ended, and logging in again needs you: run `jssh login {alias}` \
                 (or `jssh up {alias}`); connections to the port wait meanwhile"
            );
            self.event(&why);
            self.session.phase = Phase::NeedsLogin;
            self.session.last_error = Some(why);
            self.session.ssh_pid = None;
            self.save();
            platform::notify(
                "jssh",
                &format!("{alias}: the login has ended. Run `jssh login {alias}` to resume the notebook."),
            );
        }
        self.link = Link::Waiting {
            due: now + LOGIN_RECHECK,
            lost,
            seen_down: false,
        };
        self.next_tick = now + LOGIN_RECHECK;
    }

    /// `jssh login` says a new login is there: take it now rather than at the next check.
    fn login_arrived(&mut self) {
        if self.human
            && self.active.is_none()
            && let Link::Waiting { lost, .. } = self.link
        {
            let now = Instant::now();
            self.link = Link::Waiting {
                due: now,
                lost,
                seen_down: false,
            };
            self.next_tick = now;
        }
    }

    fn spawn_active(&mut self, now: Instant, lost: Instant) -> Result<()> {
        // After an outage the remote port may have changed hands: check it again. (A standby
        // taking over skips this: the remote side did not change in those milliseconds.)
        self.listener_ok = false;
        let conn = match self.connect() {
            Ok(conn) => conn,
            Err(_) if self.human => {
                self.needs_login(now, lost);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if self.awaiting_login {
            self.awaiting_login = false;
            self.event("a new login is there: resuming over it");
        }
        self.activate(conn);
        self.await_answer(now, lost);
        Ok(())
    }

    /// Makes `conn` the connection that carries the tunnel: the gate sends connections to it
    /// (those waiting try it at once; until its control socket exists, every 20 ms).
    fn activate(&mut self, conn: Conn) {
        self.session.ssh_pid = Some(conn.child.id());
        self.active = Some(conn);
        if self.trusted() {
            self.gate.set_route(self.route());
        }
    }

    /// Whether anything carrying the token (a probe, a browser's request) may go to the
    /// remote end: a socket in the user's 0700 dir always, a TCP port once checked.
    fn trusted(&self) -> bool {
        self.listener_ok || self.session.remote_socket.is_some() || self.session.remote_port.is_none()
    }

    /// A probe while connecting, after making sure the remote TCP port is this Jupyter's: a
    /// port number is public, and another user of the server can bind it while Jupyter
    /// starts, to receive the token from the first request.
    fn checked_probe(&mut self) -> Result<Probe> {
        if self.trusted() {
            return Ok(self.probe());
        }
        let (Some(active), Some(port)) = (&self.active, self.session.remote_port) else {
            return Ok(Probe::Refused);
        };
        if !active.control.exists() {
            return Ok(Probe::Refused);
        }
        // Who listens is asked (a remote command) only once something does: asking every
        // 25 ms while Jupyter imports would compete with it for the server's CPU.
        let route = self.route().context("no route")?;
        match probe::listening(&route, probe_timeout(self.probe_typical)) {
            Probe::Ok => {}
            other => return Ok(other),
        }
        let Ok(marker) = Marker::new() else {
            return Ok(Probe::Refused);
        };
        let check = remote::listener(&marker, &self.session.tmux_name, port);
        let cmd = self.over(&active.control, &check);
        let Ok(out) = cmd.output_within(PROBE_TIMEOUT_CAP) else {
            return Ok(Probe::Refused);
        };
        let out = String::from_utf8_lossy(&out.stdout);
        let said = marker.reply(&out).unwrap_or_default();
        let alias = &self.alias;
        match said.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["ours"] => {
                self.listener_ok = true;
                self.gate.set_route(self.route());
                Ok(self.probe())
            }
            ["other", uid] => bail!(
                "on {alias}, 127.0.0.1:{port} is held by another program (uid {uid}), not by this \
                 Jupyter, so the token was not sent there: someone may have taken the port. \
                 `jssh down {alias}` then `jssh up {alias}` starts Jupyter on another port, and \
                 `--socket` on a private socket no one else can take"
            ),
            ["unknown"] => bail!(
                "jssh cannot check who listens on 127.0.0.1:{port} on {alias} (it can where the remote \
                 runs Linux), and it never sends the token to a port it has not checked: use \
                 `jssh up {alias} --socket`"
            ),
            // Nobody listens yet: Jupyter is starting, or gone.
            _ => Ok(Probe::Closed),
        }
    }

    /// Where the gate and the probe send connections, while a connection is active.
    fn route(&self) -> Option<Route> {
        self.active.as_ref().map(|conn| Route {
            control: conn.control.clone(),
            end: self.session.remote_end(),
        })
    }

    /// Probes often until Jupyter answers through the tunnel (a new connection, or a
    /// relaunched Jupyter), counting the outage from `lost`.
    fn await_answer(&mut self, now: Instant, lost: Instant) {
        self.link = Link::Connecting {
            since: now,
            lost: Some(lost),
            closed_since: None,
            deadline: now + CONNECT_LIMIT,
        };
        self.next_tick = now + CONNECT_POLL;
    }

    /// Makes the standby the active connection, if it is alive and ready: new connections
    /// simply go to it. Returns whether it did.
    fn take_over(&mut self) -> bool {
        let Some(mut standby) = self.standby.take() else {
            return false;
        };
        if matches!(standby.child.ended(), Ok(None)) && standby.control.exists() {
            self.activate(standby);
            return true;
        }
        stop(standby);
        false
    }

    /// Handles a SIGCHLD: a lost standby is dropped; a lost active connection is replaced by
    /// the standby when it can be, else the next attempt is scheduled.
    fn reap(&mut self) -> Result<()> {
        if let Some(watch) = &self.watch
            && let Some(ended) = watch.child.try_wait()?
        {
            let young = watch.started.elapsed() < YOUNG;
            self.watch = None;
            self.watch_ended(ended, young)?;
        }
        if let Some(standby) = &mut self.standby
            && let Some(why) = standby.child.ended()?
        {
            let young = standby.started.elapsed() < YOUNG;
            self.standby_strikes = if young { self.standby_strikes + 1 } else { 0 };
            self.standby = None;
            self.event(&format!("standby connection lost: {why}"));
        }
        let Some(active) = &mut self.active else { return Ok(()) };
        let Some(why) = active.child.ended()? else {
            return Ok(());
        };
        self.active = None;
        self.session.ssh_pid = None;
        self.gate.set_route(None);
        let now = Instant::now();
        let lost = match self.link {
            Link::Up { .. } | Link::Rechecking { .. } => now,
            Link::Connecting { lost, .. } => lost.unwrap_or(now),
            Link::Waiting { lost, .. } => lost,
        };
        if self.human {
            self.event(&format!("tunnel lost: {why}"));
            self.needs_login(now, lost);
            return Ok(());
        }
        self.session.phase = Phase::Reconnecting;
        self.session.last_error = Some(why.clone());
        if self.link.is_up() && self.take_over() {
            self.event(&format!("tunnel lost: {why}; the standby connection took over"));
            self.link = Link::Connecting {
                since: now,
                lost: Some(lost),
                closed_since: None,
                deadline: now + TAKEOVER_LIMIT,
            };
            self.next_tick = now;
            return Ok(());
        }
        // A link that was up is retried at once; only failed attempts back off.
        let delay = if self.link.is_up() {
            self.event(&format!("tunnel lost: {why}"));
            Duration::ZERO
        } else {
            self.event(&format!("reconnect attempt failed: {why}"));
            self.attempt += 1;
            backoff(self.attempt - 1)
        };
        self.save();
        self.link = Link::Waiting {
            due: now + delay,
            lost,
            seen_down: false,
        };
        self.next_tick = now;
        Ok(())
    }

    /// One tick: observe what the link's state calls for, let [`link::on_tick`] decide, then
    /// do what it says (which may move the state further).
    fn tick(&mut self) -> Result<()> {
        let now = Instant::now();
        let seen = match self.link {
            Link::Waiting { .. } => {
                Seen::Reach((self.direct.is_some() && self.link.wants_reach_check(now)).then(|| self.server_answers()))
            }
            Link::Connecting { .. } => Seen::Probe(self.checked_probe()?),
            Link::Up { .. } => Seen::Probe(self.probe()),
            Link::Rechecking { .. } => {
                let probe = self.probe_within(recheck_timeout(self.probe_typical));
                if let Some(at) = self.changed_at.take() {
                    let ms = at.elapsed().as_millis();
                    self.event(&format!("probed {ms} ms after the change: {probe:?}"));
                }
                Seen::Probe(probe)
            }
        };
        let (link, action, next) = link::on_tick(self.link, &seen, now);
        self.link = link;
        self.next_tick = next;
        match action {
            Action::Connect { lost } => self.spawn_active(now, lost)?,
            Action::Connected { since, lost } => {
                self.verify_auth()?;
                self.connected(since, lost);
            }
            Action::CheckJupyter => {
                // A relaunch moves the state itself when it reconnects; when it started
                // Jupyter again the link keeps waiting for it to answer.
                self.relaunch()?;
            }
            Action::GiveUp { lost, last } => {
                self.event(&format!("the new connection does not carry the tunnel ({last:?})"));
                self.abandon(now);
                // Like an attempt that ended early: retried after a backoff, not in a loop.
                self.attempt += 1;
                self.link = Link::Waiting {
                    due: now + backoff(self.attempt),
                    lost,
                    seen_down: false,
                };
            }
            Action::CheckStall { lost } if now >= self.next_reach_check => {
                self.next_reach_check = now + REACH_EVERY;
                // A SYN sent into a dead path is retried only after 1, 3, 7… s: once the
                // server answers a fresh one, start over instead of waiting for that.
                // Where the system cannot tell, an attempt is left to its own SYN retries.
                let stalled = self
                    .active
                    .as_ref()
                    .is_some_and(|c| platform::syn_sent(c.child.id()) == Some(true));
                if stalled && self.server_answers() {
                    self.event("the server answers again: restarting the stalled connection attempt");
                    if let Some(conn) = self.active.take() {
                        stop(conn);
                    }
                    self.spawn_active(now, lost)?;
                }
            }
            Action::Nothing | Action::CheckStall { .. } => {}
            Action::Healthy { since } => {
                if now.duration_since(since) > HEALTHY_RESET {
                    self.attempt = 0;
                }
                if let Some(hung) = self.hung_since.take() {
                    let secs = now.duration_since(hung).as_secs_f64();
                    self.event(&format!("Jupyter answers again (it did not for {secs:.1} s)"));
                    self.session.last_error = None;
                    self.save();
                }
                self.ensure_standby();
                self.ensure_watch();
            }
            Action::Hung => {
                // The channel opened, so ssh and the server are fine: a new connection
                // would not help, and Jupyter (busy, or frozen) is not ours to kill.
                if self.hung_since.is_none() {
                    self.hung_since = Some(now);
                    let why = "Jupyter does not answer; the connection is fine";
                    self.event(why);
                    self.session.last_error = Some(why.into());
                    self.save();
                }
            }
            Action::Unhealthy(result) => self.unhealthy(&result)?,
            Action::Drop => {
                // The state machine already waits out the jitter before the new attempt.
                let why = "the connection did not survive the sleep or the network change";
                self.event(&format!("{why}: reconnecting"));
                self.session.phase = Phase::Reconnecting;
                self.session.last_error = Some(why.into());
                self.save();
                self.stop_all();
            }
        }
        Ok(())
    }

    /// Probes Jupyter through the tunnel, learning how long a good answer takes.
    fn probe(&mut self) -> Probe {
        self.probe_within(probe_timeout(self.probe_typical))
    }

    fn probe_within(&mut self, timeout: Duration) -> Probe {
        let started = Instant::now();
        let route = self.route();
        let result = self.prober.probe(route.as_ref(), timeout);
        if result == Probe::Ok {
            self.probe_typical = (self.probe_typical * 7 + started.elapsed()) / 8;
        }
        result
    }

    /// Starts a standby connection unless one runs (or standbys keep dying young).
    fn ensure_standby(&mut self) {
        if self.human {
            return; // It would need a login of its own.
        }
        if self.standby.is_none() && self.standby_strikes < STANDBY_STRIKES {
            match self.connect() {
                Ok(conn) => self.standby = Some(conn),
                Err(e) => self.event(&format!("could not start a standby connection: {e:#}")),
            }
        }
    }

    fn connected(&mut self, since: Instant, lost: Option<Instant>) {
        let now = Instant::now();
        match lost {
            Some(lost) if self.session.phase != Phase::Starting => {
                self.session.reconnects += 1;
                // The outage that ended may have taken young standbys down with it: that says
                // nothing about the server refusing a second session.
                self.standby_strikes = 0;
                self.watch_strikes = 0;
                let down = now.duration_since(lost).as_secs_f64();
                let attempt = now.duration_since(since).as_secs_f64();
                self.event(&format!("reconnected in {down:.2} s (this attempt {attempt:.2} s)"));
            }
            _ => self.event(&format!(
                "ready: {}",
                self.session.url().split('?').next().unwrap_or_default()
            )),
        }
        self.session.phase = Phase::Up;
        self.save();
        // Connections held while Jupyter was refusing try again now, not at their next turn.
        self.gate.set_route(self.route());
        self.link = Link::Up {
            since: now,
            failures: 0,
        };
        self.next_tick = now + PROBE_EVERY;
        self.ensure_standby();
        self.ensure_watch();
    }

    /// After a (re)start: Jupyter must refuse a request without the token. One that answers
    /// it runs without authentication (a token that did not arrive whole, a config that
    /// disables it), and anyone who can reach it could run code as the user: never served.
    fn verify_auth(&mut self) -> Result<()> {
        if !self.check_auth {
            return Ok(());
        }
        let Some(route) = self.route() else { return Ok(()) };
        match probe::once(&route, None, probe_timeout(self.probe_typical)) {
            Probe::Ok => bail!(
                "Jupyter on {} answers without the token: its authentication is disabled, so jssh \
                 will not serve it (look for a token or password setting in its Jupyter config, \
                 then `jssh down {}` and `jssh up {}`)",
                self.alias,
                self.alias,
                self.alias
            ),
            _ => self.check_auth = false,
        }
        Ok(())
    }

    /// Two probes in a row failed on a tunnel that was up.
    fn unhealthy(&mut self, result: &Probe) -> Result<()> {
        let now = Instant::now();
        self.event(&format!("health probe failed twice ({result:?})"));
        match (*result == Probe::Closed).then(|| self.relaunch()).transpose()? {
            // The path works, the server was gone: it starts again over the same tunnel.
            Some(Relaunch::Started) => self.await_relaunch(now),
            Some(Relaunch::Reconnecting) => {}
            Some(Relaunch::Running) | None => self.abandon(now),
        }
        Ok(())
    }

    /// Waits for a relaunched Jupyter to answer through the tunnel.
    fn await_relaunch(&mut self, now: Instant) {
        self.session.phase = Phase::Reconnecting;
        self.save();
        self.await_answer(now, now);
    }

    /// Starts the remote watch unless one runs (or they keep failing, or tmux has no hooks).
    fn ensure_watch(&mut self) {
        if self.watch.is_some() || self.watch_unsupported || self.watch_strikes >= STANDBY_STRIKES {
            return;
        }
        let Some(active) = &self.active else { return };
        let cmd = self.over(&active.control, &remote::watch(&self.session.tmux_name));
        match Watch::spawn(&cmd, self.log.fd()) {
            Ok(watch) => self.watch = Some(watch),
            Err(e) => self.event(&format!("could not start the remote watch: {e:#}")),
        }
    }

    /// The remote watch ended: Jupyter exited or was already gone (relaunch it now), tmux has
    /// no hooks, or the watch ended for another reason (its connection went: the tunnel's own
    /// handling covers that, and a new watch follows the next good probe). Only the first two
    /// are reported as Jupyter's exit.
    fn watch_ended(&mut self, ended: Ended, young: bool) -> Result<()> {
        match ended {
            Ended::Exited(code @ (0 | remote::EXIT_GONE)) => {
                if self.link.is_up() {
                    self.event(if code == 0 {
                        "remote Jupyter exited"
                    } else {
                        "remote Jupyter was already gone"
                    });
                    let now = Instant::now();
                    if self.relaunch()? == Relaunch::Started {
                        self.await_relaunch(now);
                    }
                }
            }
            Ended::Exited(remote::EXIT_NO_HOOKS) => {
                self.watch_unsupported = true;
                self.event("the remote tmux has no hooks: a Jupyter crash is noticed by the probe (within ~1 s)");
            }
            _ if young => self.watch_strikes += 1,
            _ => self.watch_strikes = 0,
        }
        Ok(())
    }

    /// A stalled or broken path: the standby shares it, so both connections are replaced.
    fn abandon(&mut self, now: Instant) {
        self.session.phase = Phase::Reconnecting;
        self.save();
        self.stop_all();
        // The first new attempt goes at once; if it stalls in a dead path, the stall check
        // replaces it as soon as the server answers again.
        self.link = Link::Waiting {
            due: now,
            lost: now,
            seen_down: false,
        };
        self.next_tick = now;
    }

    /// Whether the sshd's port accepts a TCP connection (only known for direct connections).
    fn server_answers(&self) -> bool {
        let Some(addr) = &self.direct else { return false };
        let Ok(mut addrs) = addr.to_socket_addrs() else {
            return false;
        };
        addrs
            .next()
            .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_millis(200)).is_ok())
    }

    /// A remote command over the active connection (or, without one, the alias's master).
    fn remote(&self, command: &str) -> crate::process::Cmd {
        match &self.active {
            Some(active) => self.over(&active.control, command),
            None if self.human => self.ssh.exec_over_only(&self.alias, &self.run.login_control(), command),
            None => self.ssh.exec(&self.alias, command, true),
        }
    }

    /// A remote command over one of the connections; where logins need a human, one that
    /// can never become a login of its own when that connection is gone.
    fn over(&self, control: &Path, command: &str) -> crate::process::Cmd {
        if self.human {
            self.ssh.exec_over_only(&self.alias, control, command)
        } else {
            self.ssh.exec_over(&self.alias, control, command)
        }
    }

    /// Asks the remote whether the tmux session still runs.
    fn remote_alive(&mut self) -> bool {
        // Unknown: do not restart a server we cannot see.
        let Ok(marker) = Marker::new() else { return true };
        let Ok(out) = self.remote(&remote::list(&marker)).output() else {
            return true;
        };
        marker.reply(&String::from_utf8_lossy(&out.stdout)).is_none_or(|said| {
            remote::parse_list(said)
                .iter()
                .any(|s| s.session == self.session.tmux_name)
        })
    }

    /// Starts the remote Jupyter again unless it still runs (the launch script then reuses
    /// it), within the restart budget, and only on the machine it ran on.
    fn relaunch(&mut self) -> Result<Relaunch> {
        let now = Instant::now();
        while self
            .restarts
            .front()
            .is_some_and(|t| now.duration_since(*t) > RESTART_WINDOW)
        {
            self.restarts.pop_front();
        }
        if self.restarts.len() >= MAX_RESTARTS {
            if self.remote_alive() {
                return Ok(Relaunch::Running);
            }
            bail!(
                "the remote Jupyter died {MAX_RESTARTS} times in 10 minutes: see `jssh logs {} --remote`",
                self.alias
            );
        }
        let spec = JupyterSpec {
            session: &self.session.tmux_name,
            notebook: self.session.notebook,
            socket: self.session.remote_socket.is_some(),
            dir: self.session.dir.as_deref(),
            env: &self.session.env,
            info: &self.session.jupyter,
        };
        let ports: Vec<u16> = self.session.remote_port.into_iter().collect();
        let expect = self.session.remote_node.as_deref();
        let sent = Marker::new().and_then(|marker| {
            let cmd = self.remote(&remote::launch(&marker, &spec, &ports, false, false, expect, None));
            Ok((cmd.stdin_bytes(self.session.token.clone().into_bytes()).run()?, marker))
        });
        let (out, marker) = match sent {
            Ok(sent) => sent,
            Err(e) => {
                // A connection lost on the way, or a remote that cannot start it right now
                // (a full disk): try again later, not give up on the tunnel.
                self.reconnect_later(format!("could not restart the remote Jupyter: {e:#}"));
                return Ok(Relaunch::Reconnecting);
            }
        };
        let mut started = false;
        let out = String::from_utf8_lossy(&out.stdout);
        for line in marker.reply(&out).unwrap_or_default().lines() {
            match LaunchEvent::parse(line) {
                Some(LaunchEvent::Started { port, pid, reused }) => {
                    started = !reused;
                    self.session.remote_pid = pid;
                    if started && port.is_some() && port != self.session.remote_port {
                        // The old port was taken meanwhile: the forward must follow.
                        self.session.remote_port = port;
                        self.stop_all();
                    }
                }
                Some(LaunchEvent::Elsewhere(reached)) => {
                    self.reconnect_later(format!(
                        "this connection reached {reached}, but Jupyter runs on {}: connecting \
                         again (does the alias's address lead to several machines?)",
                        self.session.remote_node.as_deref().unwrap_or("another machine")
                    ));
                    return Ok(Relaunch::Reconnecting);
                }
                _ => {}
            }
        }
        if !started {
            return Ok(Relaunch::Running);
        }
        // A watch still running waits for the old pane (a tmux whose hooks lack the pane
        // id never wakes it): the next good probe starts one for the new pane.
        if let Some(watch) = self.watch.take() {
            end(&watch.child);
        }
        self.restarts.push_back(now);
        self.check_auth = true;
        self.listener_ok = false;
        if !self.trusted() {
            self.gate.set_route(None);
        }
        self.session.restarts += 1;
        self.session.last_error = Some("the remote Jupyter exited".into());
        self.event(&format!(
            "remote Jupyter is gone: started it again ({} of {MAX_RESTARTS} restarts allowed in 10 minutes)",
            self.restarts.len()
        ));
        self.save();
        if self.active.is_none() {
            self.spawn_active(now, now)?;
        }
        Ok(Relaunch::Started)
    }

    /// Drops the connections and connects again after a backoff: the connection reached
    /// another machine than Jupyter's (a login address that leads to several), or the remote
    /// could not start Jupyter just now.
    fn reconnect_later(&mut self, why: String) {
        let now = Instant::now();
        self.event(&why);
        self.session.last_error = Some(why);
        self.abandon(now);
        self.attempt += 1;
        self.link = Link::Waiting {
            due: now + backoff(self.attempt),
            lost: now,
            seen_down: false,
        };
    }

    fn stop_all(&mut self) {
        self.gate.set_route(None);
        self.session.ssh_pid = None;
        if let Some(watch) = self.watch.take() {
            end(&watch.child);
        }
        for conn in [self.active.take(), self.standby.take()].into_iter().flatten() {
            stop(conn);
        }
    }
}

/// A supervisor killed with SIGKILL leaves its masters running: end them, through their
/// control sockets; one still logging in has none yet, so the pids the old supervisor
/// recorded are signalled too, but only a process whose command line names that control
/// socket (a private path in this alias's state dir), never one that merely got a reused pid.
fn end_leftover_masters(ssh: &Ssh, alias: &Alias, run: &RunDir) {
    for n in 0..2 {
        let control = run.control_path(n);
        if control.exists() {
            let _ = ssh.exit_master(alias, &control).output_within(GRACE);
            let _ = std::fs::remove_file(&control);
        }
    }
    for (pid, control) in run.read_masters() {
        if platform::started_with(pid, control.as_os_str())
            && let Ok(pid) = i32::try_from(pid)
        {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM);
        }
    }
}

/// Ends a connection and removes its control socket.
fn stop(conn: Conn) {
    let Conn { child, control, .. } = conn;
    match child {
        Master::Spawned(child) => {
            end(&child);
            let _ = std::fs::remove_file(control);
        }
        // The login a human answered is the CLI's: `jssh down` still needs it to stop the
        // remote Jupyter (logging in again would take another prompt), and ends it then. A
        // tunnel stopped with the server left running leaves it for the next `jssh up`.
        Master::Held(_) => {}
    }
}

/// TERM, a grace period, then KILL; always reaped, so no orphan and no zombie.
fn end(child: &CleanChild) {
    child.signal(Signal::SIGTERM);
    let deadline = Instant::now() + GRACE;
    while Instant::now() < deadline {
        if let Ok(Some(_)) | Err(_) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.signal(Signal::SIGKILL);
    while let Ok(None) = child.try_wait() {
        std::thread::sleep(Duration::from_millis(5));
    }
}
