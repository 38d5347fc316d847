//! The supervisor's ssh connections: the active one and the standby, each a private master
//! it spawned or, where logins need a human, the login the user answered, which it holds but
//! does not own. Starting, promoting and ending them (TERM, grace, KILL; never an orphan),
//! ending the masters a killed supervisor left behind, and asking whether the sshd's port
//! answers again all live here.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use nix::sys::signal::Signal;

use super::Supervisor;
use super::gate::Route;
use super::mux;
use super::policy::{BORROW_LIMIT, CONNECT_LIMIT, GRACE, STANDBY_STRIKES, busy_retry, random};
use crate::platform;
use crate::process::CleanChild;
use crate::siblings::{LoginSlots, Slot};
use crate::ssh::{LoginFailure, Ssh, parse_resolved};
use crate::state::{Phase, StateDir};
use crate::target::Alias;

/// One of the supervisor's ssh connections, a private master (see [`crate::ssh::Ssh::tunnel`]).
pub(super) struct Conn {
    pub(super) child: Master,
    pub(super) control: PathBuf,
    /// Where its ssh writes its messages (`-E`), for one the supervisor spawned.
    pub(super) errors: Option<PathBuf>,
    pub(super) started: Instant,
    /// While its ssh logs in: its turn among the logins to that server (see
    /// [`crate::siblings::LoginSlots`]).
    pub(super) slot: Option<Slot>,
}

/// A connection's ssh: one the supervisor started, the login a human answered, which
/// `jssh up`/`jssh login` started in the user's terminal and the supervisor holds, or
/// another alias's master to the same account, ridden on until this alias has its own again.
pub(super) enum Master {
    Spawned(CleanChild),
    Held(mux::Held),
    Borrowed(mux::Held),
}

impl Master {
    pub(super) fn id(&self) -> u32 {
        match self {
            Self::Spawned(child) => child.id(),
            Self::Held(held) | Self::Borrowed(held) => held.pid,
        }
    }

    /// How it ended, once it has.
    pub(super) fn ended(&mut self) -> Result<Option<String>> {
        Ok(match self {
            Self::Spawned(child) => child.try_wait()?.map(|status| format!("ssh {status}")),
            Self::Held(held) => held.gone().then(|| "the login ended".to_owned()),
            Self::Borrowed(held) => held.gone().then(|| "the connection it rode on ended".to_owned()),
        })
    }

    /// A master held, not ours to end: its end shows as its control connection closing.
    pub(super) fn held(&self) -> Option<&mux::Held> {
        match self {
            Self::Spawned(_) => None,
            Self::Held(held) | Self::Borrowed(held) => Some(held),
        }
    }
}

impl Supervisor {
    /// Starts a connection (the active one or a standby: they are alike, a master without
    /// forwards, which the gate hands connections to). Where logins need a human, takes the
    /// login the user answered instead, or fails: it never logs in itself.
    /// `slot` is its turn among the logins to the server, held until it has logged in.
    pub(super) fn connect(&mut self, slot: Slot) -> Result<Conn> {
        if self.human() {
            let control = self.run.login_control();
            let held = mux::hold(&control, GRACE).context("no login to ride on")?;
            return Ok(Conn {
                child: Master::Held(held),
                control,
                errors: None,
                started: Instant::now(),
                slot: None,
            });
        }
        // Of the two names, the one no live connection uses (a standby is started only beside
        // an active one, and an active one only beside a standby at most).
        let in_use: Vec<&PathBuf> = [&self.active, &self.standby]
            .into_iter()
            .flatten()
            .map(|c| &c.control)
            .collect();
        let n = (0..2)
            .find(|&n| !in_use.contains(&&self.run.control_path(n)))
            .context("both control sockets are in use")?;
        let (control, errors) = (self.run.control_path(n), self.run.ssh_errors_path(n));
        // A stale socket would make the new master run without one; `-E` appends.
        let _ = std::fs::remove_file(&control);
        let _ = std::fs::remove_file(&errors);
        let cmd = self.ssh.tunnel(&self.alias, &control, &errors);
        let child = cmd.spawn_clean(None, self.log.fd())?;
        // Only its own: a supervisor after this one ends what is recorded here.
        let mut masters: Vec<(u32, PathBuf)> = [&self.active, &self.standby]
            .into_iter()
            .flatten()
            .filter(|c| matches!(c.child, Master::Spawned(_)))
            .map(|c| (c.child.id(), c.control.clone()))
            .collect();
        masters.push((child.id(), control.clone()));
        if let Err(e) = self.run.write_masters(&masters) {
            self.event(&format!("could not record the ssh connections: {e:#}"));
        }
        Ok(Conn {
            child: Master::Spawned(child),
            control,
            errors: Some(errors),
            started: Instant::now(),
            slot: Some(slot),
        })
    }

    /// A turn to log in, where the aliases on this server take turns: `None` while others'
    /// logins hold every slot.
    pub(super) fn login_slot(&self) -> Option<Slot> {
        self.slots.as_ref().map_or(Some(Slot::unshared()), LoginSlots::take)
    }

    /// After losing its connection at `lost`: a master another alias on the same account
    /// logged in since, to ride on until this alias has its own again, if one is offered
    /// and alive. Never where logins need a human (none is offered there), nor twice in an
    /// outage that one did not carry.
    pub(super) fn borrow(&mut self, lost: Instant) -> Option<(String, Conn)> {
        // A key refused in this outage is the user's to mend: riding on another alias's
        // master would hide it.
        if self.borrow_spent || self.denied > 0 || self.session.phase != Phase::Reconnecting {
            return None;
        }
        let since = SystemTime::now().checked_sub(lost.elapsed())?;
        let offered = self
            .lenders
            .as_ref()?
            .offered(&self.alias, since, std::process::id() as usize);
        offered.into_iter().find_map(|(lender, control)| {
            let held = mux::hold(&control, BORROW_LIMIT).ok()?;
            let conn = Conn {
                child: Master::Borrowed(held),
                control,
                errors: None,
                started: Instant::now(),
                slot: None,
            };
            Some((lender, conn))
        })
    }

    /// Offers the active connection, its own, to the aliases on the same account of the
    /// server: once it has just logged in, or carried the tunnel. (Not when a standby takes
    /// over: in an outage it is about to be found dead too, and the others would ride on it.)
    pub(super) fn lend_active(&mut self) {
        let (Some(lenders), Some(conn)) = (&self.lenders, &self.active) else {
            return;
        };
        if matches!(conn.child, Master::Spawned(_))
            && let Err(e) = lenders.lend(&self.alias, &conn.control)
        {
            self.event(&format!("could not offer the connection to the other aliases: {e:#}"));
        }
    }

    /// Stops offering this alias's master to the others (it is going or being replaced).
    pub(super) fn withdraw(&self) {
        if let Some(lenders) = &self.lenders {
            lenders.withdraw(&self.alias);
        }
    }

    /// Whether the tunnel rides on another alias's master.
    pub(super) fn borrowing(&self) -> bool {
        self.active
            .as_ref()
            .is_some_and(|c| matches!(c.child, Master::Borrowed(_)))
    }

    /// Once the standby has logged in, its slot goes back (and after [`CONNECT_LIMIT`] in
    /// any case: a login stuck that long must not keep the other aliases waiting); where the
    /// tunnel rides on another alias's master, the standby, its own again, takes over.
    pub(super) fn note_standby_ready(&mut self) {
        let Some(standby) = self.standby.as_mut() else { return };
        let ready = standby.control.exists();
        if ready || standby.started.elapsed() > CONNECT_LIMIT {
            standby.slot = None;
        }
        if ready && self.borrowing() {
            let borrowed = self.active.take();
            if self.take_over() {
                // Just logged in: alive, unlike a standby taking over in an outage.
                self.lend_active();
                self.event("its own connection is ready: no longer riding on another alias's");
                self.save();
            } else {
                self.active = borrowed;
            }
        }
    }

    /// Makes `conn` the connection that carries the tunnel: the gate sends connections to it
    /// (those waiting try it at once; until its control socket exists, every 20 ms).
    pub(super) fn activate(&mut self, conn: Conn) {
        self.withdraw();
        self.session.ssh_pid = Some(conn.child.id());
        self.active = Some(conn);
        // A channel kept over the connection this one replaces would only hold its fds.
        self.prober.forget();
        if self.trusted() {
            self.gate.set_route(self.route());
        }
    }

    /// Makes the standby the active connection, if it is alive and ready: new connections
    /// simply go to it. Returns whether it did.
    pub(super) fn take_over(&mut self) -> bool {
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

    /// Starts a standby connection unless one runs (or standbys keep dying young).
    pub(super) fn ensure_standby(&mut self) {
        if self.human() {
            return; // It would need a login of its own.
        }
        if self.standby_after.is_some_and(|t| Instant::now() < t) {
            return;
        }
        if self.standby.is_none() && self.standby_strikes < STANDBY_STRIKES {
            let Some(slot) = self.login_slot() else {
                // Other aliases' logins to this server first. One riding on another's master
                // asks again soon; any other at its next tick.
                if self.borrowing() {
                    let retry = Instant::now() + busy_retry(random());
                    self.next_tick = self.next_tick.min(retry);
                }
                return;
            };
            match self.connect(slot) {
                Ok(conn) => self.standby = Some(conn),
                Err(e) => self.event(&format!("could not start a standby connection: {e:#}")),
            }
        }
    }

    /// Where the gate and the probe send connections, while a connection is active.
    pub(super) fn route(&self) -> Option<Route> {
        self.active.as_ref().map(|conn| Route {
            control: conn.control.clone(),
            end: self.session.remote_end(),
        })
    }

    pub(super) fn stop_all(&mut self) {
        // A borrowed master dropped before it carried the tunnel (it reached another machine
        // of a round-robin name, or could not reach Jupyter): the next attempts log in.
        if self.borrowing() && !self.link.is_up() {
            self.borrow_spent = true;
        }
        self.withdraw();
        self.gate.set_route(None);
        self.session.ssh_pid = None;
        self.watch = None;
        for conn in [self.active.take(), self.standby.take()].into_iter().flatten() {
            stop(conn);
        }
    }

    /// The sshd's address when ssh connects to it directly (for the "is it back?" check),
    /// and the account there (`user@host:port`, what aliases share; see [`crate::siblings`]).
    pub(super) fn direct_server(&self) -> Option<(String, String)> {
        let out = self.ssh.resolve(&self.alias).output().ok()?;
        let resolved = parse_resolved(&String::from_utf8_lossy(&out.stdout));
        if resolved.contains_key("proxyjump") || resolved.contains_key("proxycommand") {
            return None;
        }
        let address = format!("{}:{}", resolved.get("hostname")?, resolved.get("port")?);
        let account = format!("{}@{address}", resolved.get("user")?);
        Some((address, account))
    }

    /// Notes when the active attempt has logged in (its control socket exists): its slot
    /// goes back, and its master is offered to the other aliases on the server.
    pub(super) fn note_logged_in(&mut self) {
        if self.this_attempt.logged_in.is_none()
            && let Some(active) = self.active.as_mut()
            && active.control.exists()
        {
            self.this_attempt.logged_in = Some(Instant::now());
            // Offered before its slot goes back: an alias waiting for a slot then finds a
            // master to ride on rather than starting a login of its own.
            let slot = active.slot.take();
            self.lend_active();
            drop(slot);
        }
    }

    /// Whether the sshd's port, seen refusing since `down_since`, answers again: looked at by
    /// one supervisor among those of the aliases on that server, which tells the others (see
    /// [`crate::siblings::ServerReach`]).
    pub(super) fn server_answers_again(&mut self) -> bool {
        let since = *self.down_since.get_or_insert_with(SystemTime::now);
        let Some(reach) = self.reach.as_mut() else {
            return self.server_answers();
        };
        if reach.answered_since(since) {
            return true;
        }
        if !reach.lead() {
            return false;
        }
        let answers = self.server_answers();
        if answers && let Some(reach) = self.reach.as_mut() {
            reach.answered();
        }
        answers
    }

    /// Whether the sshd's port accepts a TCP connection (only known for direct connections).
    pub(super) fn server_answers(&self) -> bool {
        let Some(addr) = &self.direct else { return false };
        let Ok(mut addrs) = addr.to_socket_addrs() else {
            return false;
        };
        addrs
            .next()
            .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_millis(200)).is_ok())
    }
}

impl Supervisor {
    /// What an ended connection's ssh said, into the log; whether the server closed the
    /// connection before any login (sshd's `MaxStartups` dropping one of many new
    /// connections does: "kex_exchange_identification: read: Connection reset by peer").
    pub(super) fn said(&mut self, conn: &Conn) -> Ended {
        let text = conn
            .errors
            .as_ref()
            .and_then(|path| std::fs::read_to_string(path).ok())
            .unwrap_or_default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            self.event(&format!("ssh: {}", crate::sanitize::for_terminal(line)));
        }
        // "ssh_exchange_identification" before OpenSSH 8.2. ssh's own words, not the
        // system's translated message: "connect to host H port P: Connection refused" is
        // strerror's, which ssh prints in the C locale's words on every system it runs on.
        let failure = LoginFailure::classify(Some(255), &text);
        if matches!(
            failure,
            LoginFailure::AuthRefused | LoginFailure::HostKeyChanged | LoginFailure::HostKeyUnknown
        ) {
            let said = crate::sanitize::ssh_stderr(text.as_bytes()).pop().unwrap_or_default();
            Ended::Denied {
                host_key: failure != LoginFailure::AuthRefused,
                said,
            }
        } else if text.contains("kex_exchange_identification") || text.contains("ssh_exchange_identification") {
            Ended::BeforeLogin
        } else if text.contains(": Connection refused") {
            Ended::Refused
        } else {
            Ended::Other
        }
    }
}

/// How a connection's ssh ended, as far as its messages tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Ended {
    /// The server closed the connection before the key exchange: no login was tried.
    BeforeLogin,
    /// Nothing listened on the server's port.
    Refused,
    /// The server did not take the key, or its host key is not the one known (`host_key`):
    /// only the user can mend either. `said` is ssh's last line about it.
    Denied {
        host_key: bool,
        said: String,
    },
    Other,
}

/// A supervisor killed with SIGKILL leaves its masters running: end them, through their
/// control sockets; one still logging in has none yet, so the pids the old supervisor
/// recorded are signalled too, but only a process whose command line names that control
/// socket (a private path in this alias's state dir), never one that merely got a reused pid.
pub(super) fn end_leftover_masters(ssh: &Ssh, alias: &Alias, run: &StateDir) {
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
pub(super) fn stop(conn: Conn) {
    let Conn { child, control, .. } = conn;
    match child {
        Master::Spawned(child) => {
            end(&child);
            let _ = std::fs::remove_file(control);
        }
        // The login a human answered is the CLI's: `jssh down` still needs it to stop the
        // remote Jupyter (logging in again would take another prompt), and ends it then. A
        // tunnel stopped with the server left running leaves it for the next `jssh up`.
        // A borrowed master is another alias's.
        Master::Held(_) | Master::Borrowed(_) => {}
    }
}

/// TERM, a grace period, then KILL; always reaped, so no orphan and no zombie.
pub(super) fn end(child: &CleanChild) {
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
