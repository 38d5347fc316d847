//! Every timing and backoff rule of the supervisor, in one place.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

/// How often a healthy tunnel is probed: a dead ssh (SIGCHLD) and an exited Jupyter (the
/// remote watch) are known at once without it, so it is there for a stalled path, and each
/// probe costs a request through ssh.
pub(crate) const PROBE_EVERY: Duration = Duration::from_secs(2);
/// How long a probe may take: four times the usual answer time (a slow link must not look
/// stalled), and not below this, nor above the cap.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_millis(800);
pub(crate) const PROBE_TIMEOUT_CAP: Duration = Duration::from_secs(5);
/// After one failed probe, the next comes this soon, to confirm before acting.
pub(crate) const PROBE_CONFIRM: Duration = Duration::from_millis(100);

/// The probe timeout for a link whose answers usually take `typical`.
pub(crate) fn probe_timeout(typical: Duration) -> Duration {
    typical.saturating_mul(4).clamp(PROBE_TIMEOUT, PROBE_TIMEOUT_CAP)
}

/// A wakeup this much later than asked for means the process did not run meanwhile: the
/// machine slept (or the process was stopped), and a NAT on the way may have forgotten its
/// connections. Far above a busy machine's scheduling delay, far below a keepalive's timeout.
pub(crate) const LATE_WAKEUP: Duration = Duration::from_secs(1);
/// The probe after a sleep or a network change decides alone, so it waits less than a
/// routine one (a slow link still gets four times its usual answer time).
const RECHECK_TIMEOUT: Duration = Duration::from_millis(200);
/// Reconnects caused by one event are spread over this much, so that twenty tunnels to one
/// sshd do not all log in at the same moment; small enough to heal within a second.
const JITTER_MAX: Duration = Duration::from_millis(150);

/// The timeout of the probe after a sleep or a network change.
pub(crate) fn recheck_timeout(typical: Duration) -> Duration {
    typical.saturating_mul(4).clamp(RECHECK_TIMEOUT, PROBE_TIMEOUT_CAP)
}

/// A reconnect's delay after an event, from a random number: 0 to [`JITTER_MAX`].
pub(crate) fn jitter(random: u64) -> Duration {
    let span = u64::try_from(JITTER_MAX.as_millis()).unwrap_or(0) + 1;
    Duration::from_millis(random % span)
}

/// How long after a reconnect that took `attempt` the standby connection is started: twice
/// as long, capped at [`STANDBY_DELAY_CAP`]. An sshd that was restarted meets every client's
/// reconnect at once, and its `MaxStartups` (10 unauthenticated connections, then random
/// drops) turns a standby's second handshake into someone else's failed reconnect and 0.2 s+
/// of backoff: measured with 20 hosts, the heal took 6.3–7.5 s with standbys started at
/// once, against 1.65–2.2 s for 20 plain parallel logins. A reconnect that took 0.3 s (an
/// idle server) delays its standby 0.6 s; a takeover (milliseconds) not at all.
pub(crate) fn standby_delay(attempt: Duration) -> Duration {
    (attempt * 2).min(STANDBY_DELAY_CAP)
}
pub(crate) const STANDBY_DELAY_CAP: Duration = Duration::from_secs(5);

/// Whether a reconnect attempt that failed (the `attempt`th in a row, 1-based) counts as
/// having seen the server down, so that its port answering again ends the backoff at once.
/// The first failures after a loss are likely an sshd still restarting (refused), and it may
/// be back before the first look at its port; later ones may be a server that answers but
/// refuses ssh, whose backoff an open port must not cut short.
pub(crate) fn seen_down_after(attempt: u32) -> bool {
    attempt <= 2
}

/// Attempts in a row the server may drop before any login (sshd's `MaxStartups`) that are
/// retried after [`busy_retry`] instead of backing off; more than this, and the server is
/// treated like any that does not let us in.
pub(crate) const DROPS_RETRIED: u32 = 5;

/// Attempts in a row the server may refuse the key that are retried (after [`DENIED_RETRY`]):
/// one, for a refusal that mends itself (a home directory not yet mounted after the
/// server's reboot, a directory service that hiccuped). After that, no attempt follows until
/// the user asks (`jssh login`, `jssh up`): every refused login counts towards the server's
/// lockout (fail2ban bans an address after five by default), so a loop could lock the user
/// out. Not even a network change or a wake resumes it: on a busy laptop (containers, VPNs,
/// address renewals) those come in bursts, four attempts in two seconds measured. A host key
/// that is not the one known is never retried on its own.
pub(crate) const DENIALS_RETRIED: u32 = 1;
/// How long after a refused key that one retry waits: what a home directory takes to mount
/// after a reboot, or a directory service to come back; at once, it would only be refused too.
pub(crate) const DENIED_RETRY: Duration = Duration::from_secs(10);

/// A random number for [`jitter`] and [`busy_retry`]: std's hasher is keyed afresh from the
/// system's randomness each time, which is all these need (no generator crate).
pub(crate) fn random() -> u64 {
    RandomState::new().hash_one(std::process::id())
}

/// The pause after an attempt dropped before any login, from a random number: 50 to 250 ms,
/// so that the tunnels a busy server turned away together do not come back together.
pub(crate) fn busy_retry(random: u64) -> Duration {
    Duration::from_millis(50 + random % 201)
}

/// Logins under way at once to one server, from all the aliases on the same account of it
/// (see [`crate::siblings`]). sshd's default `MaxStartups` starts dropping new connections
/// at ten unauthenticated ones; three leave room for other clients and for the moment
/// between our seeing a login done and sshd counting it. After one outage of twenty tunnels,
/// the first three logins take the time of three, and the others ride on them meanwhile.
pub(crate) const LOGIN_SLOTS: usize = 3;
/// While every slot is taken: how soon to look again for a free one, or for a master that
/// another alias's login just made (the outage ends for this alias when one is there).
pub(crate) const SLOT_WAIT: Duration = Duration::from_millis(20);
/// How long a master another alias lends may take to say it is alive (a local socket).
pub(crate) const BORROW_LIMIT: Duration = Duration::from_millis(200);

/// How often a starting tunnel is probed.
pub(crate) const CONNECT_POLL: Duration = Duration::from_millis(25);
const CLOSED_POLL_CAP: Duration = Duration::from_millis(250);
const CLOSED_CHECK: Duration = Duration::from_secs(1);
const CLOSED_CHECK_CAP: Duration = Duration::from_secs(5);

/// How often a new connection is probed while nothing listens behind it (Jupyter starting),
/// `waited` into the attempt: every 25 ms at first, then every twentieth of the wait, up to
/// 250 ms. The URL of a start that takes seconds answers within a few percent of its length,
/// and twenty tunnels starting at once (`up --all`) do not spend their CPU asking: each
/// probe is a channel through ssh, and so a connection attempt on the server.
pub(crate) fn closed_poll(waited: Duration) -> Duration {
    (waited / 20).clamp(CONNECT_POLL, CLOSED_POLL_CAP)
}

/// How long nothing may listen before the supervisor asks the remote whether Jupyter still
/// runs (and starts it again if not), `waited` into the attempt: after a second at first, then
/// every quarter of the wait, at most every 5 s. Each question is a remote command; a gone
/// Jupyter is still found within a second of a reconnect.
pub(crate) fn closed_check(waited: Duration) -> Duration {
    (waited / 4).clamp(CLOSED_CHECK, CLOSED_CHECK_CAP)
}
/// Backoff: first retry at once, then 0.2 s doubling to 30 s, reset after 60 s healthy.
const BACKOFF_FIRST: Duration = Duration::from_millis(200);
pub(crate) const BACKOFF_CAP: Duration = Duration::from_secs(30);
pub(crate) const HEALTHY_RESET: Duration = Duration::from_mins(1);

/// The backoff before reconnect attempt `n` (0-based). Every failed attempt counts: one that
/// ends early, one that logs in but never carries the tunnel, one that stalls.
pub(crate) fn backoff(attempt: u32) -> Duration {
    if attempt == 0 {
        return Duration::ZERO;
    }
    let factor = 2u32.saturating_pow(attempt - 1);
    BACKOFF_FIRST.saturating_mul(factor).min(BACKOFF_CAP)
}

/// Remote Jupyter restarts allowed in a window before the supervisor gives up.
pub(crate) const MAX_RESTARTS: usize = 5;
pub(crate) const RESTART_WINDOW: Duration = Duration::from_mins(10);
/// TERM, then KILL after this.
pub(crate) const GRACE: Duration = Duration::from_secs(2);

/// How long a new connection may take before the attempt is abandoned (ConnectTimeout bounds
/// the TCP part; this bounds a stalled authentication).
pub(crate) const CONNECT_LIMIT: Duration = Duration::from_secs(20);
/// An attempt that ends sooner than this while the server's port refuses connections found
/// nothing listening (a refused connection fails in milliseconds; one into a dead path only
/// after `ConnectTimeout`).
pub(crate) const REFUSED_WITHIN: Duration = Duration::from_secs(1);
/// A wait for the next attempt shorter than this has no look at the server's port before it,
/// unless the port was seen refusing (see [`super::link::Link::wants_reach_check`]).
pub(crate) const LOOK_AHEAD: Duration = Duration::from_secs(1);
/// How often a stalled attempt's SYN is looked at (and then whether the server answers).
pub(crate) const REACH_EVERY: Duration = Duration::from_millis(100);
const REACH_FIRST: Duration = Duration::from_millis(10);
const REACH_CAP: Duration = Duration::from_millis(250);

/// How often the supervisor looks whether a server whose port refuses answers again, `down`
/// into the outage: every 10 ms at first, then every twentieth of the outage, up to 250 ms.
/// A refused connection costs neither side anything, and an sshd restarting is back within
/// tens of milliseconds: a 100 ms step was, on average, 50 ms added to every tunnel's heal
/// (a sixth of it where twenty logins take 0.3 s). A server down for minutes (a reboot) is
/// looked at four times a second.
pub(crate) fn reach_every(down: Duration) -> Duration {
    (down / 20).clamp(REACH_FIRST, REACH_CAP)
}
/// How long a connection attempt may sit in SYN_SENT before it counts as stalled.
pub(crate) const STALL_AFTER: Duration = Duration::from_millis(500);
/// How long a standby that took over may take to carry the first probe.
pub(crate) const TAKEOVER_LIMIT: Duration = Duration::from_millis(750);
/// Standbys (and remote watches) that die young this many times in a row while the tunnel
/// stays up are not started again (e.g. a server limiting sessions); a reconnect clears it.
pub(crate) const STANDBY_STRIKES: u32 = 3;
/// A standby or watch that ends sooner than this "died young".
pub(crate) const YOUNG: Duration = Duration::from_secs(10);
/// How long the supervisor may go without checking that its state directory still exists.
/// It also checks on every tick; this is longer than a healthy link's tick interval, so an
/// idle supervisor does not wake up for it on its own.
pub(crate) const RUN_DIR_CHECK: Duration = Duration::from_secs(3);
/// Where logins need a human and that login ended: how often to look for a new one's control
/// socket (a local connect, never the server). `jssh login` signals at once; this is a fallback.
pub(crate) const LOGIN_RECHECK: Duration = Duration::from_secs(2);
/// How long a tunnel whose login only the user can mend waits on its own: for ever, in
/// effect (a year); the user's `jssh login` (or `up`) ends the wait.
pub(crate) const UNTIL_ASKED: Duration = Duration::from_hours(365 * 24);

/// How long a connection to the local port is held while no master can carry it; a
/// browser's own request timeouts are longer, and the tunnel's recovery is shorter.
pub(crate) const HOLD_LIMIT: Duration = Duration::from_secs(30);
/// How many connections may wait at once.
pub(crate) const MAX_WAITING: usize = 512;
/// When no master answers on the route (it is starting or just died), waiting connections
/// try again this soon (or at once when the supervisor names a new one).
pub(crate) const GATE_NO_MASTER_RETRY: Duration = Duration::from_millis(20);
/// When the remote refuses (Jupyter is starting or restarting), this soon.
pub(crate) const GATE_REFUSED_RETRY: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_link_gets_a_longer_probe_timeout() {
        assert_eq!(probe_timeout(Duration::ZERO), PROBE_TIMEOUT);
        assert_eq!(probe_timeout(Duration::from_millis(5)), PROBE_TIMEOUT);
        assert_eq!(probe_timeout(Duration::from_millis(400)), Duration::from_millis(1600));
        assert_eq!(probe_timeout(Duration::from_secs(3)), PROBE_TIMEOUT_CAP);
    }

    #[test]
    fn after_an_event_the_probe_is_shorter_and_reconnects_spread_over_150_ms() {
        assert_eq!(recheck_timeout(Duration::from_millis(5)), Duration::from_millis(200));
        assert_eq!(recheck_timeout(Duration::from_millis(400)), Duration::from_millis(1600));
        assert_eq!(jitter(0), Duration::ZERO);
        assert_eq!(jitter(150), JITTER_MAX);
        assert_eq!(jitter(151), Duration::ZERO);
        assert!((0..1000).map(jitter).all(|j| j <= JITTER_MAX));
    }

    #[test]
    fn a_standby_waits_twice_as_long_as_the_reconnect_took_up_to_a_cap() {
        assert_eq!(standby_delay(Duration::from_millis(10)), Duration::from_millis(20));
        assert_eq!(standby_delay(Duration::from_millis(1500)), Duration::from_secs(3));
        assert_eq!(standby_delay(Duration::from_mins(1)), STANDBY_DELAY_CAP);
    }

    #[test]
    fn only_the_first_failures_count_the_server_as_seen_down() {
        assert_eq!(
            (1..=4).map(seen_down_after).collect::<Vec<_>>(),
            [true, true, false, false]
        );
    }

    #[test]
    fn a_long_start_is_probed_and_asked_about_less_often() {
        let ms = Duration::from_millis;
        assert_eq!(closed_poll(ms(100)), CONNECT_POLL);
        assert_eq!(closed_poll(ms(2000)), ms(100));
        assert_eq!(closed_poll(ms(60_000)), CLOSED_POLL_CAP);
        assert_eq!(closed_check(ms(500)), CLOSED_CHECK);
        assert_eq!(closed_check(ms(8000)), ms(2000));
        assert_eq!(closed_check(ms(60_000)), CLOSED_CHECK_CAP);
    }

    #[test]
    fn a_refusing_port_is_looked_at_often_early_in_the_outage_then_less() {
        let ms = Duration::from_millis;
        assert_eq!(reach_every(Duration::ZERO), REACH_FIRST);
        assert_eq!(reach_every(ms(200)), REACH_FIRST);
        assert_eq!(reach_every(ms(400)), ms(20));
        assert_eq!(reach_every(ms(2000)), ms(100));
        assert_eq!(reach_every(Duration::from_mins(5)), REACH_CAP);
    }

    #[test]
    fn a_busy_server_is_retried_after_50_to_250_ms() {
        assert_eq!(busy_retry(0), Duration::from_millis(50));
        assert_eq!(busy_retry(200), Duration::from_millis(250));
        assert!((0..1000).map(busy_retry).all(|d| (50..=250).contains(&d.as_millis())));
    }

    #[test]
    fn backoff_starts_at_once_then_doubles_to_a_cap() {
        let ms: Vec<u128> = (0..10).map(|n| backoff(n).as_millis()).collect();
        assert_eq!(ms, [0, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000]);
        assert_eq!(backoff(200), BACKOFF_CAP);
    }
}
