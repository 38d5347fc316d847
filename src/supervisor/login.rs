//! Logins that need a human ([`crate::profile::LoginKind::Prompt`]): when the login the user
//! answered ends, the supervisor must not log in itself (every attempt counts towards the
//! server's lockout, or sends a push). It says so once and waits for `jssh login`.

use std::time::Instant;

use super::Supervisor;
use super::link::Link;
use super::policy::LOGIN_RECHECK;
use crate::platform;
use crate::state::Phase;

impl Supervisor {
    /// The login a human answered is gone: no attempt to log in follows (each would count
    /// towards the server's lockout, or send a push). The port keeps holding connections; the
    /// user is told once, and `jssh login` brings a new login (SIGUSR1). Until then the only
    /// check is for that login's local control socket.
    pub(super) fn needs_login(&mut self, now: Instant, lost: Instant) {
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
        }
    }
}
