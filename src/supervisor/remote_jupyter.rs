//! The far side: is the Jupyter the tunnel reaches this session's (the listener check, the
//! refusal of a request without the token), is it alive (probes, the remote watch that reports
//! its exit at once, the tmux session list), and starting it again within the restart budget,
//! only on the machine it ran on. Every remote command goes over one of [`super::conn`]'s
//! connections.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::Supervisor;
use super::link::Link;
use super::policy::{MAX_RESTARTS, PROBE_TIMEOUT_CAP, RESTART_WINDOW, STANDBY_STRIKES, backoff, probe_timeout};
use super::probe::{self, Probe};
use crate::process::Ended;
use crate::remote::{self, JupyterSpec, LaunchEvent, Marker};
use crate::state::Phase;

/// What [`Supervisor::relaunch`] found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Relaunch {
    /// Jupyter was gone and has been started again.
    Started,
    /// Jupyter still runs.
    Running,
    /// The connection reached another machine, or the launch failed: a new connection is on
    /// its way, after a backoff.
    Reconnecting,
}

/// The remote watch: a session of the active master (no ssh process of its own). Its stdin
/// is a pipe the supervisor holds open and never writes to: the remote side waits only as
/// long as it stays open (see [`remote::watch`]). Dropped, it ends: the master closes the
/// session with its control connection.
pub(super) struct Watch {
    pub(super) session: super::mux::Session,
    pub(super) started: Instant,
    _stdin: OwnedFd,
}

impl Watch {
    fn start(control: &Path, script: &str, log: BorrowedFd<'_>) -> Result<Self> {
        let (read, write) = std::io::pipe().context("could not make a pipe")?;
        // The master keeps its own copy of the read end.
        let session = super::mux::start(control, script, read.as_fd(), log).context("the master refused")?;
        Ok(Self {
            session,
            started: Instant::now(),
            _stdin: write.into(),
        })
    }

    /// How the watched command ended, once it has (see [`super::mux::Session::ended`]).
    pub(super) fn ended(&mut self) -> Option<Ended> {
        self.session.ended().map(Ended::Exited)
    }
}

impl Supervisor {
    /// Whether anything carrying the token (a probe, a browser's request) may go to the
    /// remote end: a socket in the user's 0700 dir always, a TCP port once checked.
    /// (A job's Jupyter on the node's interface cannot be asked from here: the job itself
    /// checked that Jupyter listens there before it said `ready`.)
    pub(super) fn trusted(&self) -> bool {
        self.listener_ok
            || self.session.remote_socket.is_some()
            || self.session.remote_port.is_none()
            || self
                .session
                .job
                .as_ref()
                .is_some_and(|j| j.reach == crate::slurm::Reach::NodePort)
    }

    /// A probe while connecting, after making sure the remote TCP port is this Jupyter's: a
    /// port number is public, and another user of the server can bind it while Jupyter
    /// starts, to receive the token from the first request. The listener proves it through
    /// the tunnel ([`probe::Prober::prove`]); one that cannot is checked by a remote command.
    pub(super) fn checked_probe(&mut self) -> Result<Probe> {
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
        // 25 ms while Jupyter imports would compete with it for the server's CPU. After a
        // reconnect Jupyter most likely still listens: the first question goes at once,
        // without a round trip to see whether something listens first.
        let reconnecting = self.session.phase == Phase::Reconnecting && self.this_attempt.listener_check.is_none();
        let route = self.route().context("no route")?;
        let started = Instant::now();
        // First the listener is asked to prove it is this Jupyter: one request through the
        // tunnel, no remote shell, and it doubles as the "does anything listen" look.
        if self.proofs {
            match self.prober.prove(&route, port, probe_timeout(self.probe_typical)) {
                Ok(true) => {
                    self.this_attempt.listener_check = Some(started.elapsed());
                    self.this_attempt.proved = true;
                    self.listener_ok = true;
                    self.gate.set_route(self.route());
                    return Ok(Probe::Ok);
                }
                // Once something answered without a proof (a Jupyter started without the
                // extension), the remote check alone decides, now and after every reconnect.
                Ok(false) => self.proofs = false,
                // It took the request but did not answer in time (a busy Jupyter, or a
                // program that only listens): the remote check says whose it is.
                Err(Probe::Unanswered) => {}
                Err(verdict) => return Ok(verdict),
            }
        } else if !reconnecting {
            match probe::listening(&route, probe_timeout(self.probe_typical)) {
                Probe::Ok => {}
                other => return Ok(other),
            }
        }
        let Ok(marker) = Marker::new() else {
            return Ok(Probe::Refused);
        };
        let check = remote::listener(&marker, &self.session.tmux_name, port, self.session.remote_pid);
        // A session of the master itself: no ssh to start, every reconnect.
        let Ok(out) = super::mux::run(&active.control, &check, PROBE_TIMEOUT_CAP) else {
            return Ok(Probe::Refused);
        };
        self.this_attempt.listener_check = Some(started.elapsed());
        let out = String::from_utf8_lossy(&out);
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

    /// Probes Jupyter through the tunnel, learning how long a good answer takes.
    pub(super) fn probe(&mut self) -> Probe {
        self.probe_within(probe_timeout(self.probe_typical))
    }

    pub(super) fn probe_within(&mut self, timeout: Duration) -> Probe {
        let started = Instant::now();
        let route = self.route();
        let result = self.prober.probe(route.as_ref(), timeout);
        if result == Probe::Ok {
            self.probe_typical = (self.probe_typical * 7 + started.elapsed()) / 8;
        }
        result
    }

    /// After a (re)start: Jupyter must refuse a request without the token. One that answers
    /// it runs without authentication (a token that did not arrive whole, a config that
    /// disables it), and anyone who can reach it could run code as the user: never served.
    pub(super) fn verify_auth(&mut self) -> Result<()> {
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

    /// Starts the remote watch unless one runs (or they keep failing, or tmux has no hooks).
    pub(super) fn ensure_watch(&mut self) {
        // Not on another alias's master: the watch would end with that, not with Jupyter.
        if self.watch.is_some() || self.watch_unsupported || self.watch_strikes >= STANDBY_STRIKES || self.borrowing() {
            return;
        }
        // Like the standby, after a reconnect: its remote shell would compete with other
        // clients' logins to the server that just came back.
        if self.standby_after.is_some_and(|t| Instant::now() < t) {
            return;
        }
        let Some(active) = &self.active else { return };
        let script = match (&self.session.job, self.session.remote_pid) {
            // The connection goes to the node only for Reach::NodeSsh.
            (Some(job), Some(pid)) if job.reach == crate::slurm::Reach::NodeSsh => crate::slurm::watch(pid),
            (Some(_), _) => return,
            (None, _) => remote::watch(&self.session.tmux_name),
        };
        match Watch::start(&active.control, &script, self.log.fd()) {
            Ok(watch) => self.watch = Some(watch),
            Err(e) => self.event(&format!("could not start the remote watch: {e:#}")),
        }
    }

    /// The remote watch ended: Jupyter exited or was already gone (relaunch it now), tmux has
    /// no hooks, or the watch ended for another reason (its connection went: the tunnel's own
    /// handling covers that, and a new watch follows the next good probe). Only the first two
    /// are reported as Jupyter's exit.
    pub(super) fn watch_ended(&mut self, ended: Ended, young: bool) -> Result<()> {
        match ended {
            // A job's Jupyter is the job: it is not restarted, Slurm says why it ended.
            Ended::Exited(0 | remote::EXIT_GONE) if self.session.job.is_some() => {
                self.event("the job's Jupyter exited");
                self.job_check()?;
            }
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

    /// A remote command over the active connection (or, without one, the alias's master).
    fn remote(&self, command: &str) -> crate::process::Cmd {
        match &self.active {
            Some(active) => self.over(&active.control, command),
            None if self.human() => self.ssh.exec_over_only(&self.alias, &self.run.login_control(), command),
            None => self.ssh.exec(&self.alias, command, true),
        }
    }

    /// A remote command over one of the connections, which never becomes a login of its own
    /// when that connection is gone (it fails; the supervisor replaces the connection). A
    /// fallback login was a refused login more where the key stopped working, and a key
    /// exchange more in every heal.
    pub(super) fn over(&self, control: &Path, command: &str) -> crate::process::Cmd {
        self.ssh.exec_over_only(&self.alias, control, command)
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
    pub(super) fn relaunch(&mut self) -> Result<Relaunch> {
        if self.session.job.is_some() {
            // Never resubmitted silently: if the job still runs, so may Jupyter (it may be
            // starting: Slurm is asked every few seconds, not at every closed probe).
            self.job_tick(true)?;
            return Ok(Relaunch::Running);
        }
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
        let spec = JupyterSpec::of(&self.session, self.session.remote_socket.is_some());
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
        // This Jupyter was started with the proof extension, whatever the one before had.
        self.proofs = true;
        // A watch still running waits for the old pane (a tmux whose hooks lack the pane
        // id never wakes it): the next good probe starts one for the new pane.
        self.watch = None;
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
}
