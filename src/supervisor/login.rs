//! Logins that need a human: where every login does ([`crate::profile::LoginKind::Prompt`]),
//! when the login the user answered ends, the supervisor must not log in itself (every
//! attempt counts towards the server's lockout, or sends a push); where the key stopped
//! working, nor must it keep trying. It says so once and waits for `jssh login`.

use std::time::Instant;

use super::Supervisor;
use super::link::Link;
use super::policy::{LOGIN_RECHECK, UNTIL_ASKED};
use crate::platform;
use crate::state::Phase;

impl Supervisor {
    /// The login a human answered is gone: no attempt to log in follows (each would count
    /// towards the server's lockout, or send a push). The port keeps holding connections; the
    /// user is told once, and `jssh login` brings a new login (SIGUSR1). Until then the only
    /// check is for that login's local control socket.
    pub(super) fn needs_login(&mut self, now: Instant, lost: Instant) {
        let alias = self.alias.clone();
        self.wait_for_you(
            format!(
                "the login to {alias} has ended, and logging in again needs you: run `jssh login {alias}` \
                 (or `jssh up {alias}`); connections to the port wait meanwhile"
            ),
            &format!("{alias}: the login has ended. Run `jssh login {alias}` to resume the notebook."),
        );
        self.link = Link::Waiting {
            due: now + LOGIN_RECHECK,
            lost,
            seen_down: false,
        };
        self.next_tick = now + LOGIN_RECHECK;
    }

    /// The server refused the key again, or its host key is not the one known: no attempt
    /// follows on its own (see [`super::policy::DENIALS_RETRIED`]) until the user asks
    /// (`jssh login`, `jssh up`: SIGUSR1); then one attempt, no more.
    pub(super) fn denied_wait(&mut self, now: Instant, lost: Instant, host_key: bool, said: &str) {
        let alias = self.alias.clone();
        let (why, note) = if host_key {
            (
                format!(
                    "{alias}'s host key is not the one known ({said}): jssh logs in no more until you have \
                     checked it (`jssh doctor {alias}` says how), then `jssh login {alias}`"
                ),
                format!("{alias}: the server's host key changed. Run `jssh doctor {alias}`."),
            )
        } else {
            (
                format!(
                    "{alias} refused the key {} times in a row ({said}): jssh stopped logging in, so that the \
                     server does not lock you out; `jssh doctor {alias}` says what is wrong, then run \
                     `jssh login {alias}`",
                    self.denied
                ),
                format!("{alias}: the server refused the key. Run `jssh doctor {alias}`."),
            )
        };
        self.wait_for_you(why, &note);
        self.link = Link::Waiting {
            due: now + UNTIL_ASKED,
            lost,
            seen_down: false,
        };
        self.next_tick = now + UNTIL_ASKED;
    }

    /// Says once (in the log, the session, a desktop notification) why only the user can
    /// resume the tunnel, and waits for them.
    fn wait_for_you(&mut self, why: String, note: &str) {
        let first = !self.awaiting_login;
        self.awaiting_login = true;
        if first {
            self.event(&why);
            platform::notify("jssh", note);
        }
        // Also after a `jssh login` that brought nothing (the phase moved on for it).
        if first || self.session.phase != Phase::NeedsLogin {
            self.session.phase = Phase::NeedsLogin;
            self.session.last_error = Some(why);
            self.session.ssh_pid = None;
            self.save();
        }
    }

    /// `jssh login` says a new login is there: take it now rather than at the next check.
    pub(super) fn login_arrived(&mut self) {
        if (self.human() || self.awaiting_login)
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
            // `jssh login` and `up` wait for the phase to move on: it does, now.
            self.session.phase = Phase::Reconnecting;
            self.save();
        }
    }
}
