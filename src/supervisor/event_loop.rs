//! The loop: sleep in `poll(2)` until a signal, a network change, a held login's end or the
//! next tick; on a tick, observe what the link's state calls for (a probe, a reach check),
//! let the pure [`link::on_tick`] decide, and perform the [`Action`] it returns. What happens
//! when an ssh ends (SIGCHLD) is decided here too. No rule of timing lives here: they are in
//! [`super::policy`].

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;

use super::Supervisor;
use super::conn::{Conn, Ended, Master, stop};
use super::link::{self, Action, Link, Seen};
use super::policy::{
    CONNECT_LIMIT, CONNECT_POLL, DENIALS_RETRIED, DENIED_RETRY, DROPS_RETRIED, HEALTHY_RESET, PROBE_EVERY, REACH_EVERY,
    REFUSED_WITHIN, RUN_DIR_CHECK, SLOT_WAIT, STANDBY_STRIKES, TAKEOVER_LIMIT, YOUNG, backoff, busy_retry, random,
    recheck_timeout, seen_down_after, standby_delay,
};
use super::probe::Probe;
use super::remote_jupyter::Relaunch;
use crate::platform::{self, Signals};
use crate::profile::LoginKind;
use crate::state::Phase;

impl Supervisor {
    /// Runs until a stop signal (which it returns) or a failure it gives up on.
    pub(super) fn run_loop(&mut self, signals: &mut Signals) -> Result<Signal> {
        loop {
            let mut wake = self.next_tick.min(self.lease_checked + RUN_DIR_CHECK);
            if self.logins.is_none() && self.standby.as_ref().is_some_and(|c| c.slot.is_some()) {
                // Nothing reports the standby's login: look for it as often as for the active's.
                wake = wake.min(Instant::now() + CONNECT_POLL);
            }
            let wait = wake.saturating_duration_since(Instant::now());
            let millis = u16::try_from(wait.as_millis().min(60_000)).unwrap_or(u16::MAX);
            let mut fds = vec![PollFd::new(signals.fd(), PollFlags::POLLIN)];
            fds.extend(self.net.as_ref().map(|net| PollFd::new(net.fd(), PollFlags::POLLIN)));
            // A held login is not our child: its end shows as its control connection closing.
            let held_at = fds.len();
            if let Some(held) = self.active.as_ref().and_then(|c| c.child.held()) {
                fds.push(PollFd::new(held.fd(), PollFlags::POLLIN));
            }
            // The remote watch reports on its control connection.
            let watch_at = fds.len();
            if let Some(watch) = &self.watch {
                fds.push(PollFd::new(watch.session.fd(), PollFlags::POLLIN));
            }
            // While an attempt logs in: its control socket appearing wakes the loop. So does
            // the standby's while it holds a login slot (or would end a ride on another
            // alias's master).
            let logins_at = fds.len();
            let standby_pending = self.standby.as_ref().is_some_and(|c| c.slot.is_some()) || self.borrowing();
            let awaiting_login = (matches!(self.link, Link::Connecting { .. })
                && self.this_attempt.logged_in.is_none())
                || standby_pending;
            if let Some(logins) = self.logins.as_ref().filter(|_| awaiting_login) {
                fds.push(PollFd::new(logins.fd(), PollFlags::POLLIN));
            }
            let before = Instant::now();
            match poll(&mut fds, PollTimeout::from(millis)) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e).context("poll failed"),
            }
            let late = before.elapsed().saturating_sub(Duration::from_millis(millis.into()));
            let ready = |i: usize| fds.get(i).and_then(PollFd::revents).is_some_and(|r| !r.is_empty());
            let net_ready = self.net.is_some() && ready(1);
            let held_ready = watch_at > held_at && ready(held_at);
            let watch_ready = logins_at > watch_at && ready(watch_at);
            let logins_ready = fds.len() > logins_at && ready(logins_at);
            drop(fds);
            if let Some(logins) = self.logins.as_ref().filter(|_| awaiting_login) {
                // Read only while an attempt logs in: an idle loop makes no call for it. What
                // queued in between (the supervisor's own state writes) costs one early tick.
                logins.drain();
                if logins_ready && !standby_pending {
                    self.next_tick = Instant::now();
                }
            }
            if standby_pending {
                self.note_standby_ready();
            }
            let arrived = signals.pending();
            if let Some(&sig) = arrived.iter().find(|&&s| s != Signal::SIGCHLD && s != Signal::SIGUSR1) {
                self.event(&format!("received {sig}: stopping the tunnel"));
                return Ok(sig);
            }
            if arrived.contains(&Signal::SIGUSR1) {
                self.login_arrived();
            }
            if !arrived.is_empty() || held_ready || watch_ready {
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

    /// Handles a SIGCHLD, a held login's end or the remote watch's report: a lost standby is
    /// dropped; a lost active connection is replaced by the standby when it can be, else the
    /// next attempt is scheduled; an ended watch says why.
    fn reap(&mut self) -> Result<()> {
        if let Some(watch) = &mut self.watch
            && let Some(ended) = watch.ended()
        {
            let young = watch.started.elapsed() < YOUNG;
            self.watch = None;
            self.watch_ended(ended, young)?;
        }
        if let Some(standby) = &mut self.standby
            && let Some(why) = standby.child.ended()?
            && let Some(standby) = self.standby.take()
        {
            let young = standby.started.elapsed() < YOUNG;
            self.standby_strikes = if young { self.standby_strikes + 1 } else { 0 };
            if let Ended::Denied { .. } = self.said(&standby) {
                // A standby's login refused (first met where the tunnel rides on another
                // alias's master): no more standbys, each refusal counting towards a lockout,
                // until a reconnect of its own (which clears the strikes).
                self.standby_strikes = STANDBY_STRIKES;
            }
            self.event(&format!("standby connection lost: {why}"));
        }
        let Some(active) = &mut self.active else { return Ok(()) };
        let Some(why) = active.child.ended()? else {
            return Ok(());
        };
        let Some(ended) = self.active.take() else { return Ok(()) };
        self.withdraw();
        if matches!(ended.child, Master::Borrowed(_)) && !self.link.is_up() {
            // It did not carry this outage: the next attempt logs in itself.
            self.borrow_spent = true;
        }
        let said = self.said(&ended);
        self.session.ssh_pid = None;
        self.gate.set_route(None);
        let now = Instant::now();
        let lost = match self.link {
            Link::Up { .. } | Link::Rechecking { .. } => now,
            Link::Connecting { lost, .. } => lost.unwrap_or(now),
            Link::Waiting { lost, .. } => lost,
        };
        if self.human() {
            self.event(&format!("tunnel lost: {why}"));
            self.needs_login(now, lost);
            return Ok(());
        }
        // A job's node is reached through the login a human answered: once that has ended,
        // no attempt can succeed (nor does one reach the server) until the user logs in.
        if self.session.login == LoginKind::Prompt && !super::handle::login_alive(&self.run) {
            self.event(&format!("tunnel lost: {why}"));
            self.needs_login(now, lost);
            return Ok(());
        }
        self.session.phase = Phase::Reconnecting;
        self.session.last_error = Some(why.clone());
        if self.link.is_up() && self.take_over() {
            self.event(&format!("tunnel lost: {why}; the standby connection took over"));
            self.await_answer(now, lost, true);
            // `jssh status` must not name the master that just died.
            self.save();
            return Ok(());
        }
        if let Ended::Denied { host_key, said: words } = &said {
            self.denied += 1;
            self.event(&format!("reconnect attempt failed: {why}"));
            if *host_key || self.denied > DENIALS_RETRIED {
                self.denied_wait(now, lost, *host_key, words);
            } else {
                self.save();
                self.link = Link::Waiting {
                    due: now + DENIED_RETRY,
                    lost,
                    seen_down: false,
                };
                self.next_tick = now;
            }
            return Ok(());
        }
        let (delay, seen_down) = self.retry_after(&why, &ended, &said, lost);
        self.save();
        self.link = Link::Waiting {
            due: now + delay,
            lost,
            seen_down,
        };
        self.next_tick = now;
        Ok(())
    }

    /// After the active connection `ended` (`why`): how long until the next attempt, and
    /// whether the server counts as seen down (see [`Link::Waiting`]).
    fn retry_after(&mut self, why: &str, ended: &Conn, said: &Ended, lost: Instant) -> (Duration, bool) {
        // A link that was up is retried at once, and so is one whose standby took over but
        // went down in the same outage; only failed attempts back off.
        if self.link.is_up() || ended.started < lost {
            self.event(&format!("tunnel lost: {why}"));
            return (Duration::ZERO, false);
        }
        // ssh's own words say so, or the port says so now (without ssh's words, a look at it;
        // none when the server closed the connection itself: it answered).
        if ended.started.elapsed() < REFUSED_WITHIN
            && self.direct.is_some()
            && (*said == Ended::Refused || (*said == Ended::Other && !self.server_answers()))
        {
            // Word that it answers again counts from this attempt's start on.
            self.down_since = std::time::SystemTime::now().checked_sub(ended.started.elapsed());
            // Nothing listens on the server's port (an sshd restarting, a machine rebooting):
            // the port check paces the next attempt, at no cost to the server, so this one
            // counts towards a backoff of its own. The other backoff is for a server that
            // answers but does not let us in, and one refusal too many there would keep a
            // tunnel waiting while the others' logins go through.
            self.event(&format!(
                "reconnect attempt failed: {why} (the server's port does not answer)"
            ));
            self.refused += 1;
            return (backoff(self.refused), true);
        }
        if *said == Ended::BeforeLogin && self.dropped < DROPS_RETRIED {
            // Dropped before any login: sshd's MaxStartups turning away one of many new
            // connections (after one sshd restart, the other tunnels' reconnects). No login was
            // tried, so the next attempt follows after a short random pause, which spreads the
            // droppees, instead of climbing the backoff a few drops would: measured with 20
            // tunnels, the one dropped four times came back 1.4 s after the others.
            self.dropped += 1;
            self.event(&format!("reconnect attempt failed: {why} (the server is busy)"));
            return (busy_retry(random()), false);
        }
        self.event(&format!("reconnect attempt failed: {why}"));
        self.attempt += 1;
        (backoff(self.attempt - 1), seen_down_after(self.attempt))
    }

    /// One tick: observe what the link's state calls for, let [`link::on_tick`] decide, then
    /// do what it says (which may move the state further).
    fn tick(&mut self) -> Result<()> {
        self.job_tick(matches!(self.link, Link::Waiting { .. }))?;
        let now = Instant::now();
        let seen = match self.link {
            // Once seen refusing, whether it answers again is looked at by one supervisor for
            // all the aliases on that server.
            Link::Waiting { seen_down, .. } => Seen::Reach(
                (self.direct.is_some() && !self.awaiting_login && self.link.wants_reach_check(now)).then(|| {
                    if seen_down {
                        self.server_answers_again()
                    } else {
                        self.server_answers()
                    }
                }),
            ),
            Link::Connecting { .. } => {
                self.note_logged_in();
                Seen::Probe(self.checked_probe()?)
            }
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
            Action::CheckStall { lost }
                if now >= self.next_reach_check && !self.this_attempt.past_syn && self.direct.is_some() =>
            {
                self.next_reach_check = now + REACH_EVERY;
                // A SYN sent into a dead path is retried only after 1, 3, 7… s: once the
                // server answers a fresh one, start over instead of waiting for that.
                // Where the system cannot tell, an attempt is left to its own SYN retries.
                let syn_sent = self.active.as_ref().and_then(|c| platform::syn_sent(c.child.id()));
                // Once connected, the attempt is authenticating: reading the kernel's tables
                // every 100 ms would only take CPU from it (20 of them after one sshd restart).
                self.this_attempt.past_syn = syn_sent != Some(true);
                if syn_sent == Some(true) && self.server_answers() {
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

    pub(super) fn spawn_active(&mut self, now: Instant, lost: Instant) -> Result<()> {
        // After an outage the remote port may have changed hands: check it again. (A standby
        // taking over skips this: the remote side did not change in those milliseconds.)
        self.listener_ok = false;
        self.this_attempt = super::AttemptFacts::default();
        self.down_since = None;
        if let Some(reach) = &mut self.reach {
            reach.stop_leading();
        }
        if let Some((lender, conn)) = self.borrow(lost) {
            self.event(&format!(
                "riding on {lender}'s new connection to the same server until its own is up"
            ));
            self.this_attempt.borrowed_from = Some(lender);
            self.activate(conn);
            self.await_answer(now, lost, true);
            return Ok(());
        }
        let Some(slot) = self.login_slot() else {
            // Other aliases on this server are logging in: ride on the first of their new
            // connections, or log in once a slot is free.
            self.link = Link::Waiting {
                due: now + SLOT_WAIT,
                lost,
                seen_down: false,
            };
            self.next_tick = now + SLOT_WAIT;
            return Ok(());
        };
        let conn = match self.connect(slot) {
            Ok(conn) => conn,
            Err(_) if self.human() => {
                self.needs_login(now, lost);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if self.awaiting_login {
            self.awaiting_login = false;
            self.event(if self.human() {
                "a new login is there: resuming over it"
            } else {
                "trying the key again"
            });
        }
        self.activate(conn);
        self.await_answer(now, lost, false);
        Ok(())
    }

    /// Probes until Jupyter answers through the tunnel, counting the outage from `lost`: a
    /// new connection (or a relaunched Jupyter) often, for up to [`CONNECT_LIMIT`]; one that is
    /// `logged_in` already (a standby taking over, another alias's master) at once, and it
    /// carries the tunnel within [`TAKEOVER_LIMIT`] or the attempt is given up.
    fn await_answer(&mut self, now: Instant, lost: Instant, logged_in: bool) {
        let (limit, first) = if logged_in {
            (TAKEOVER_LIMIT, now)
        } else {
            (CONNECT_LIMIT, now + CONNECT_POLL)
        };
        self.link = Link::Connecting {
            since: now,
            lost: Some(lost),
            closed_since: None,
            deadline: now + limit,
        };
        self.next_tick = first;
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
                self.refused = 0;
                self.dropped = 0;
                self.denied = 0;
                self.borrow_spent = false;
                let down = now.duration_since(lost).as_secs_f64();
                let attempt = now.duration_since(since);
                let mut parts = format!("this attempt {:.2} s", attempt.as_secs_f64());
                if let Some(at) = self.this_attempt.logged_in {
                    let _ = write!(
                        parts,
                        ": logged in after {:.2} s",
                        at.duration_since(since).as_secs_f64()
                    );
                }
                if let Some(lender) = &self.this_attempt.borrowed_from {
                    let _ = write!(parts, ", over {lender}'s connection");
                }
                if let Some(took) = self.this_attempt.listener_check {
                    let how = if self.this_attempt.proved { "proved" } else { "check" };
                    let _ = write!(parts, ", listener {how} {:.2} s", took.as_secs_f64());
                }
                self.event(&format!("reconnected in {down:.2} s ({parts})"));
                self.standby_after = Some(now + standby_delay(attempt));
            }
            _ => self.event(&format!("ready: {}", self.session.page_url())),
        }
        self.session.phase = Phase::Up;
        self.save();
        self.lend_active();
        // Connections held while Jupyter was refusing try again now, not at their next turn.
        self.gate.set_route(self.route());
        self.link = Link::Up {
            since: now,
            failures: 0,
        };
        self.next_tick = now + PROBE_EVERY;
        if let Some(after) = self.standby_after.filter(|&t| t > now) {
            // The tick that starts the deferred standby (its probe costs a channel, no more).
            self.next_tick = self.next_tick.min(after);
        }
        self.ensure_standby();
        self.ensure_watch();
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
    pub(super) fn await_relaunch(&mut self, now: Instant) {
        self.session.phase = Phase::Reconnecting;
        self.save();
        self.await_answer(now, now, false);
    }

    /// A stalled or broken path: the standby shares it, so both connections are replaced.
    pub(super) fn abandon(&mut self, now: Instant) {
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
}
