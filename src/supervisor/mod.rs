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
//! Where things are: this file holds the [`Supervisor`]'s state and its start and end. The
//! decisions about the link are pure, in [`link`] (a state machine on a fake clock) and
//! [`policy`] (every timing and backoff rule); [`event_loop`] waits for signals and ticks and
//! performs what [`link`] decides; [`conn`] starts, holds and ends the ssh connections;
//! [`remote_jupyter`] checks, watches and relaunches Jupyter on the far side; [`login`]
//! handles a login only a human can make; [`changes`] notices a sleep or a network change;
//! [`readiness`] tells systemd, under `jssh service`, when the tunnel is ready and how it is.
//!
//! This module never imports the CLI layer: `jssh up` starts it through [`handle`].

mod changes;
mod conn;
mod event_loop;
mod gate;
pub(crate) mod handle;
mod job;
mod link;
mod log;
mod login;
mod mux;
mod policy;
mod probe;
mod readiness;
mod remote_jupyter;

use std::collections::VecDeque;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::Signal;

use self::conn::{Conn, end_leftover_masters};
use self::gate::Gate;
use self::handle::Args;
use self::link::Link;
use self::log::Log;
use self::probe::Prober;
use self::readiness::Readiness;
use self::remote_jupyter::Watch;
use crate::paths::Paths;
use crate::platform::{self, DirWatch, NetWatch, Signals};
use crate::profile::LoginKind;
use crate::siblings::{Lenders, LoginSlots, ServerReach};
use crate::slurm::Reach;
use crate::ssh::Ssh;
use crate::state::{Lease, Phase, Session, StateDir};
use crate::target::Alias;

/// Everything one supervisor knows; its methods live in the rooms named above, one `impl`
/// block each.
struct Supervisor {
    ssh: Ssh,
    /// For the login host, where [`Supervisor::ssh`] goes to a Slurm job's node.
    login_ssh: Ssh,
    /// When Slurm was last asked about the job (see [`job`]).
    job_checked: Instant,
    alias: Alias,
    run: StateDir,
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
    /// No standby and no remote watch before this: after a reconnect they wait about as long
    /// again as the reconnect took (see [`policy::standby_delay`]).
    standby_after: Option<Instant>,
    /// `tmux wait-for` on the remote, over the active connection: ends when Jupyter exits.
    watch: Option<Watch>,
    /// Watches that ended young for no reason (like `standby_strikes`).
    watch_strikes: u32,
    /// The remote's tmux has no hooks: crashes are noticed by the probe alone.
    watch_unsupported: bool,
    /// When to look next whether a stalled attempt's server answers again.
    next_reach_check: Instant,
    /// What is known of the current connection attempt.
    this_attempt: AttemptFacts,
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
    /// Whether the listener is first asked to prove it is this Jupyter (see
    /// [`probe::Prober::prove`]): until something answers without a proof.
    proofs: bool,
    link: Link,
    attempt: u32,
    /// Attempts in a row that found nothing listening on the server's port (paced by the
    /// port check, so they have a backoff of their own).
    refused: u32,
    /// Attempts in a row the server dropped before any login (see [`policy::DROPS_RETRIED`]).
    dropped: u32,
    /// Attempts in a row the server did not let the key in (see [`policy::DENIALS_RETRIED`]).
    denied: u32,
    restarts: VecDeque<Instant>,
    next_tick: Instant,
    /// When the lease was last checked (see [`policy::RUN_DIR_CHECK`]).
    lease_checked: Instant,
    /// `host:port` of the sshd when reachable directly (no ProxyJump), to notice it is back.
    direct: Option<String>,
    /// Who looks whether that sshd answers again, among the aliases on it.
    reach: Option<ServerReach>,
    /// Login slots shared with the aliases on the same account of that sshd, and their
    /// masters, to ride on after an outage until this alias has its own (see
    /// [`crate::siblings`]).
    slots: Option<LoginSlots>,
    lenders: Option<Lenders>,
    /// A borrowed connection did not carry the tunnel in this outage: the next attempts log
    /// in themselves.
    borrow_spent: bool,
    /// Since when the sshd's port is known to refuse (for [`ServerReach::answered_since`]).
    down_since: Option<std::time::SystemTime>,
    /// Network changes, where the system reports them.
    net: Option<NetWatch>,
    /// New entries in the control sockets' directory, where the system reports them: a
    /// master's socket appearing is its login done, noticed at once instead of at the next
    /// tick (25 ms apart; where twenty logins take 0.3 s that is 4 % of a heal).
    logins: Option<DirWatch>,
    /// How long the machine had been suspended at the last wakeup ([`platform::asleep`]).
    asleep: Option<Duration>,
    /// When the last sleep or network change was noticed, until the probe it caused.
    changed_at: Option<Instant>,
    /// That login ended and the user has been told to log in again.
    awaiting_login: bool,
    /// Under a `Type=notify` unit (`jssh service`): what systemd has been told.
    readiness: Option<Readiness>,
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

    let run = StateDir::new(&paths, alias);
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
    let login_ssh = ssh.clone();
    let ssh = job_ssh(ssh, alias, &run, &session);
    let logins = run.control_path(0).parent().and_then(DirWatch::open);
    let mut sup = Supervisor {
        ssh,
        login_ssh,
        // The first question to Slurm (the walltime's end) a few seconds in, over the tunnel.
        job_checked: now.checked_sub(job::FIRST_JOB_CHECK).unwrap_or(now),
        alias: alias.clone(),
        run,
        lease,
        session,
        log,
        gate,
        active: None,
        standby: None,
        standby_strikes: 0,
        standby_after: None,
        watch: None,
        watch_strikes: 0,
        watch_unsupported: false,
        next_reach_check: now,
        this_attempt: AttemptFacts::default(),
        prober,
        probe_typical: Duration::ZERO,
        hung_since: None,
        check_auth: true,
        listener_ok: false,
        proofs: true,
        link: Link::Waiting {
            due: now,
            lost: now,
            seen_down: false,
        },
        attempt: 0,
        refused: 0,
        dropped: 0,
        denied: 0,
        restarts: VecDeque::new(),
        next_tick: now,
        lease_checked: now,
        direct: None,
        reach: None,
        slots: None,
        lenders: None,
        borrow_spent: false,
        down_since: None,
        net: NetWatch::open(),
        logins,
        asleep: platform::asleep(),
        changed_at: None,
        awaiting_login: false,
        readiness: Readiness::open(args.foreground),
    };
    // Even a TCP connect to its port shows in the server's log as a client that went away.
    let server = if sup.human() { None } else { sup.direct_server() };
    Lenders::withdraw_everywhere(&paths.state_dir, alias);
    if let Some((address, account)) = server {
        sup.reach = Some(ServerReach::new(&paths.state_dir, &address));
        sup.slots = Some(LoginSlots::new(&paths.state_dir, &account, policy::LOGIN_SLOTS));
        sup.lenders = Some(Lenders::new(&paths.state_dir, &account));
        sup.direct = Some(address);
    }
    sup.event(&format!(
        "supervising {} (pid {}), holding 127.0.0.1:{}",
        sup.alias,
        std::process::id(),
        sup.session.local_port
    ));
    let result = sup.run_loop(&mut signals);
    sup.finish(result.as_ref().err());
    result
}

impl Supervisor {
    /// After the loop: the connections ended, the session's last word written (unless the
    /// state dir is gone), the service manager told.
    fn finish(&mut self, error: Option<&anyhow::Error>) {
        self.stop_all();
        if let Some(e) = error
            && let Some(ended) = e.downcast_ref::<job::JobEnded>()
        {
            self.session.phase = Phase::JobEnded;
            self.session.last_error = Some(ended.to_string());
            self.event(&format!("{ended}: the tunnel stops (nothing is resubmitted)"));
        } else if let Some(e) = error {
            self.session.phase = Phase::Failed;
            self.session.last_error = Some(format!("{e:#}"));
            self.event(&format!("giving up: {e:#}"));
        } else {
            self.session.phase = Phase::Stopped;
            self.event("tunnel stopped");
        }
        self.session.ssh_pid = None;
        if self.lease.still_there() {
            let _ = self.run.write_session(&self.session);
        }
        self.notify_end();
    }
}

/// What the supervisor learns about one connection attempt as it goes.
#[derive(Default)]
struct AttemptFacts {
    /// Its TCP connection got past SYN_SENT: it cannot stall there any more, and the stall
    /// check stops reading the kernel's tables.
    past_syn: bool,
    /// When its master had logged in (its control socket appeared), and how long the
    /// listener check then took, and whether the listener proved itself (else the remote
    /// check decided): the reconnect's log line says where its time went.
    logged_in: Option<Instant>,
    listener_check: Option<Duration>,
    proved: bool,
    /// The alias whose master it rides on, where it borrowed one.
    borrowed_from: Option<String>,
}

/// A Slurm job's Jupyter on its node's loopback: every connection goes to the node, through
/// the login host.
fn job_ssh(ssh: Ssh, alias: &Alias, run: &StateDir, session: &Session) -> Ssh {
    match session.job.as_ref().filter(|j| j.reach == Reach::NodeSsh) {
        Some(crate::slurm::Job { node: Some(node), .. }) => {
            crate::slurm::node_ssh(&ssh, alias, run, session.login, node)
        }
        _ => ssh,
    }
}

impl Supervisor {
    /// Logins need a human ([`LoginKind::Prompt`]): the supervisor rides on the login the user
    /// answered and never logs in itself (no standby, no reconnect attempts, no reach checks).
    /// (A Slurm job's tunnel to the node's loopback makes its own connections to the node,
    /// riding on that login.)
    fn human(&self) -> bool {
        self.session.login == LoginKind::Prompt && self.session.job.as_ref().is_none_or(|j| j.reach == Reach::NodePort)
    }

    /// Appends a timestamped line to the log (a foreground `jssh up` shows it from there).
    fn event(&mut self, message: &str) {
        self.log.line(message);
    }

    fn save(&mut self) {
        if let Err(e) = self.run.write_session(&self.session) {
            self.event(&format!("could not save the session: {e:#}"));
        }
        self.notify_phase();
    }
}
