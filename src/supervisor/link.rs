//! The link's state machine: what the supervisor does on each tick, as a pure function of
//! the state, what the tick observed, and the time. The loop in `mod.rs` observes (probes,
//! checks whether the server answers), calls [`on_tick`], stores the new state, and performs
//! the action, which may move the state further (a new connection, a relaunch, giving up).

use std::time::{Duration, Instant};

use super::policy::{
    CONNECT_POLL, LOOK_AHEAD, PROBE_CONFIRM, PROBE_EVERY, STALL_AFTER, closed_check, closed_poll, reach_every,
};
use super::probe::Probe;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Link {
    /// ssh started; waiting for the first good probe. `lost` is when the last good link ended;
    /// past `deadline` without an answer from ssh the attempt counts as failed.
    Connecting {
        since: Instant,
        lost: Option<Instant>,
        closed_since: Option<Instant>,
        deadline: Instant,
    },
    Up {
        since: Instant,
        failures: u32,
    },
    /// Up, but the machine slept or the network changed: a connection may have died without
    /// a word (a NAT that forgot it, an address that went away). The next probe, due at once
    /// and with a short timeout, decides alone; if it fails, the reconnect waits `jitter`,
    /// so that many tunnels hit by one event do not all log in at the same moment.
    Rechecking {
        since: Instant,
        jitter: Duration,
    },
    /// No connection; the next attempt is due at `due` (earlier if the server's port answers).
    Waiting {
        due: Instant,
        lost: Instant,
        /// Whether the server's port was seen not answering since: only then may its answering
        /// again cut the backoff short (a server that answers but refuses ssh must not).
        seen_down: bool,
    },
}

/// What a tick observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Waiting: whether the server's port answers, when that can be known (a direct
    /// connection, before the attempt is due; see [`Link::wants_reach_check`]).
    Reach(Option<bool>),
    /// Connecting or up: the probe's verdict.
    Probe(Probe),
    /// Not a tick's observation but an event: the machine slept, or the network changed.
    /// `jitter` (random, from the loop) spreads the reconnects this may cause.
    Changed { jitter: Duration },
}

/// What the loop must do after storing the new state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    Nothing,
    /// Start a new connection, the outage counted from `lost`.
    Connect {
        lost: Instant,
    },
    /// Jupyter answered through a new connection (after checking it refuses a request
    /// without the token): the link is up.
    Connected {
        since: Instant,
        lost: Option<Instant>,
    },
    /// Nothing has listened for a while: ask the remote whether Jupyter still runs.
    CheckJupyter,
    /// The attempt did not carry the tunnel in time: drop it, retry after a backoff.
    GiveUp {
        lost: Instant,
        last: Probe,
    },
    /// The attempt takes long: restart it if it is stuck in SYN_SENT and the server answers.
    CheckStall {
        lost: Instant,
    },
    /// A good probe on a link that is up (`since`: when it came up).
    Healthy {
        since: Instant,
    },
    /// The channel opened but Jupyter did not answer: it hangs; the connection is fine.
    Hung,
    /// Two probes in a row failed on a link that was up.
    Unhealthy(Probe),
    /// The probe after a sleep or a network change failed: drop the connections now (the
    /// state is already waiting for the next attempt).
    Drop,
}

impl Link {
    /// Whether a connection carries the tunnel (perhaps being rechecked).
    pub(crate) fn is_up(&self) -> bool {
        matches!(self, Self::Up { .. } | Self::Rechecking { .. })
    }

    /// Whether the loop should look whether the server's port answers before this tick: while
    /// it was seen refusing, until the attempt is due (its answering again ends the wait);
    /// otherwise only while the attempt is more than [`LOOK_AHEAD`] away. A look at an
    /// answering port starts an sshd process for nothing and takes one of its `MaxStartups`
    /// slots: after a short pause (a busy server's, 50-250 ms) the attempt itself is the look.
    pub(crate) fn wants_reach_check(&self, now: Instant) -> bool {
        match self {
            Self::Waiting { due, seen_down, .. } => now < *due && (*seen_down || now + LOOK_AHEAD < *due),
            _ => false,
        }
    }
}

/// One tick: the new state, the action, and when the next tick is due.
pub(crate) fn on_tick(link: Link, seen: &Seen, now: Instant) -> (Link, Action, Instant) {
    match (link, seen) {
        (Link::Up { since, .. } | Link::Rechecking { since, .. }, Seen::Changed { jitter }) => {
            (Link::Rechecking { since, jitter: *jitter }, Action::Nothing, now)
        }
        // A new network may reach the server: the backoff ends (after the jitter).
        (Link::Waiting { due, lost, seen_down }, Seen::Changed { jitter }) => {
            let due = due.min(now + *jitter);
            (Link::Waiting { due, lost, seen_down }, Action::Nothing, due)
        }
        // An attempt under way has its own deadline and stall check.
        (Link::Connecting { .. }, Seen::Changed { .. }) => (link, Action::Nothing, now + CONNECT_POLL),
        (Link::Rechecking { since, jitter }, Seen::Probe(probe)) => match probe {
            Probe::Ok => (
                Link::Up { since, failures: 0 },
                Action::Healthy { since },
                now + PROBE_EVERY,
            ),
            Probe::Unanswered => (Link::Up { since, failures: 0 }, Action::Hung, now + PROBE_EVERY),
            Probe::Refused | Probe::Timeout => {
                let due = now + jitter;
                let link = Link::Waiting {
                    due,
                    lost: now,
                    seen_down: false,
                };
                (link, Action::Drop, due)
            }
            // The path works, Jupyter does not (gone, or another answer): what a second
            // failed probe on a link that is up does.
            other => (Link::Up { since, failures: 1 }, Action::Unhealthy(other.clone()), now),
        },
        (Link::Waiting { due, lost, seen_down }, Seen::Reach(answers)) => {
            if now >= due || (*answers == Some(true) && seen_down) {
                return (link, Action::Connect { lost }, now);
            }
            let seen_down = seen_down || *answers == Some(false);
            // While the server's port does not answer, look again soon (sooner early in the
            // outage, see `reach_every`). One that answers cannot end the backoff (it was not
            // seen down): each look would only be another connection to a server busy with
            // others' logins, so wait for `due`.
            let step = if *answers == Some(false) {
                reach_every(now.saturating_duration_since(lost))
            } else {
                due - now
            };
            (
                Link::Waiting { due, lost, seen_down },
                Action::Nothing,
                (now + step).min(due),
            )
        }
        (
            Link::Connecting {
                since, lost, deadline, ..
            },
            Seen::Probe(probe),
        ) => {
            let next = now + CONNECT_POLL;
            match probe {
                Probe::Ok => (link, Action::Connected { since, lost }, next),
                Probe::Closed => nothing_listens(link, now),
                last if now > deadline => (
                    link,
                    Action::GiveUp {
                        lost: lost.unwrap_or(now),
                        last: last.clone(),
                    },
                    now,
                ),
                _ if now.duration_since(since) > STALL_AFTER => (
                    link,
                    Action::CheckStall {
                        lost: lost.unwrap_or(now),
                    },
                    next,
                ),
                _ => (link, Action::Nothing, next),
            }
        }
        (Link::Up { since, failures }, Seen::Probe(probe)) => match probe {
            Probe::Ok => (
                Link::Up { since, failures: 0 },
                Action::Healthy { since },
                now + PROBE_EVERY,
            ),
            Probe::Unanswered => (Link::Up { since, failures: 0 }, Action::Hung, now + PROBE_EVERY),
            // Confirm quickly, on a new channel, before acting on one lost probe.
            _ if failures == 0 => (Link::Up { since, failures: 1 }, Action::Nothing, now + PROBE_CONFIRM),
            other => (link, Action::Unhealthy(other.clone()), now),
        },
        // An observation that does not fit the state (the loop asks the right question for
        // each state, so this does not happen): look again soon.
        (link, _) => (link, Action::Nothing, now + CONNECT_POLL),
    }
}

/// A new connection's probe found nothing listening behind it (ssh is up): Jupyter is
/// starting, or gone. Look again soon; now and then ask the remote.
fn nothing_listens(link: Link, now: Instant) -> (Link, Action, Instant) {
    let Link::Connecting {
        since,
        lost,
        closed_since,
        deadline,
    } = link
    else {
        return (link, Action::Nothing, now + CONNECT_POLL);
    };
    let waited = now.duration_since(since);
    let first = closed_since.unwrap_or(now);
    let (closed_since, action) = if now.duration_since(first) < closed_check(waited) {
        (first, Action::Nothing)
    } else {
        (now, Action::CheckJupyter)
    };
    let link = Link::Connecting {
        since,
        lost,
        closed_since: Some(closed_since),
        deadline,
    };
    (link, action, now + closed_poll(waited))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Each row: a state, what the tick saw, the time; the expected state, action and next
    /// tick. Times are offsets from one fake `t0`.
    #[test]
    #[allow(clippy::too_many_lines, reason = "one row per transition: the table is the test")]
    fn transitions() {
        let t0 = Instant::now();
        let at = |n: u64| t0 + ms(n);
        let waiting = |due, seen_down| Link::Waiting {
            due: at(due),
            lost: t0,
            seen_down,
        };
        let connecting = |closed: Option<u64>| Link::Connecting {
            since: t0,
            lost: Some(t0),
            closed_since: closed.map(at),
            deadline: at(20_000),
        };
        let up = |failures| Link::Up { since: t0, failures };
        let probe = Seen::Probe;
        let mut rows: Vec<(Link, Seen, u64, Link, Action, u64)> = vec![
            // Due: connect at once.
            (
                waiting(100, false),
                Seen::Reach(None),
                100,
                waiting(100, false),
                Action::Connect { lost: t0 },
                100,
            ),
            // Not due, server not directly reachable: sleep until due.
            (
                waiting(3000, false),
                Seen::Reach(None),
                0,
                waiting(3000, false),
                Action::Nothing,
                3000,
            ),
            // Not due, the server's port is down: remember that, look again in 10 ms.
            (
                waiting(3000, false),
                Seen::Reach(Some(false)),
                0,
                waiting(3000, true),
                Action::Nothing,
                10,
            ),
            // Four seconds into the outage, every twentieth of it: in 200 ms.
            (
                waiting(10_000, true),
                Seen::Reach(Some(false)),
                4000,
                waiting(10_000, true),
                Action::Nothing,
                4200,
            ),
            // The port answers again after being seen down: the backoff is cut short.
            (
                waiting(3000, true),
                Seen::Reach(Some(true)),
                500,
                waiting(3000, true),
                Action::Connect { lost: t0 },
                500,
            ),
            // The port answers but was never seen down (it refuses ssh): no shortcut, and no
            // more looks at it either until the attempt is due.
            (
                waiting(3000, false),
                Seen::Reach(Some(true)),
                500,
                waiting(3000, false),
                Action::Nothing,
                3000,
            ),
            // A new connection carries the probe.
            (
                connecting(None),
                probe(Probe::Ok),
                300,
                connecting(None),
                Action::Connected {
                    since: t0,
                    lost: Some(t0),
                },
                325,
            ),
            // Nothing listens: wait, then after a second ask whether Jupyter runs.
            (
                connecting(None),
                probe(Probe::Closed),
                300,
                connecting(Some(300)),
                Action::Nothing,
                325,
            ),
            // The longer it has waited, the less often it looks (1.2 s: every 60 ms).
            (
                connecting(Some(300)),
                probe(Probe::Closed),
                1200,
                connecting(Some(300)),
                Action::Nothing,
                1260,
            ),
            (
                connecting(Some(300)),
                probe(Probe::Closed),
                1400,
                connecting(Some(1400)),
                Action::CheckJupyter,
                1470,
            ),
            // A long start (12 s in): probed every 250 ms, asked about every 3 s.
            (
                connecting(Some(10_000)),
                probe(Probe::Closed),
                12_000,
                connecting(Some(10_000)),
                Action::Nothing,
                12_250,
            ),
            (
                connecting(Some(10_000)),
                probe(Probe::Closed),
                13_500,
                connecting(Some(13_500)),
                Action::CheckJupyter,
                13_750,
            ),
            // No master yet, young: keep polling; older than STALL_AFTER: check for a stall.
            (
                connecting(None),
                probe(Probe::Refused),
                100,
                connecting(None),
                Action::Nothing,
                125,
            ),
            (
                connecting(None),
                probe(Probe::Timeout),
                600,
                connecting(None),
                Action::CheckStall { lost: t0 },
                625,
            ),
            // Past the deadline: give the attempt up.
            (
                connecting(None),
                probe(Probe::Refused),
                20_001,
                connecting(None),
                Action::GiveUp {
                    lost: t0,
                    last: Probe::Refused,
                },
                20_001,
            ),
            // Up: a good probe, a hang, one failure (confirm), two failures.
            (
                up(1),
                probe(Probe::Ok),
                5000,
                up(0),
                Action::Healthy { since: t0 },
                7000,
            ),
            (up(0), probe(Probe::Unanswered), 5000, up(0), Action::Hung, 7000),
            (up(0), probe(Probe::Timeout), 5000, up(1), Action::Nothing, 5100),
            (
                up(1),
                probe(Probe::Timeout),
                5100,
                up(1),
                Action::Unhealthy(Probe::Timeout),
                5100,
            ),
            (
                up(1),
                probe(Probe::Closed),
                5100,
                up(1),
                Action::Unhealthy(Probe::Closed),
                5100,
            ),
        ];
        let rechecking = Link::Rechecking {
            since: t0,
            jitter: ms(70),
        };
        let changed = Seen::Changed { jitter: ms(70) };
        rows.extend([
            // A sleep or a network change on a link that is up: probe at once.
            (up(0), changed.clone(), 5000, rechecking, Action::Nothing, 5000),
            (up(1), changed.clone(), 5000, rechecking, Action::Nothing, 5000),
            (rechecking, changed.clone(), 5000, rechecking, Action::Nothing, 5000),
            // That probe decides alone: good, hung (the path works), or dead: drop the
            // connections and reconnect after the jitter.
            (
                rechecking,
                probe(Probe::Ok),
                5010,
                up(0),
                Action::Healthy { since: t0 },
                7010,
            ),
            (rechecking, probe(Probe::Unanswered), 5010, up(0), Action::Hung, 7010),
            (
                rechecking,
                probe(Probe::Timeout),
                5200,
                Link::Waiting {
                    due: at(5270),
                    lost: at(5200),
                    seen_down: false,
                },
                Action::Drop,
                5270,
            ),
            (
                rechecking,
                probe(Probe::Refused),
                5200,
                Link::Waiting {
                    due: at(5270),
                    lost: at(5200),
                    seen_down: false,
                },
                Action::Drop,
                5270,
            ),
            // The path works but Jupyter is gone: the relaunch logic of an unhealthy link.
            (
                rechecking,
                probe(Probe::Closed),
                5010,
                up(1),
                Action::Unhealthy(Probe::Closed),
                5010,
            ),
            // Waiting out a backoff: a change ends it after the jitter (never later).
            (
                waiting(3000, true),
                changed.clone(),
                500,
                waiting(570, true),
                Action::Nothing,
                570,
            ),
            (
                waiting(520, false),
                changed.clone(),
                500,
                waiting(520, false),
                Action::Nothing,
                520,
            ),
            // An attempt under way keeps its own deadline.
            (connecting(None), changed, 300, connecting(None), Action::Nothing, 325),
        ]);
        for (i, (link, seen, now, want_link, want_action, want_next)) in rows.into_iter().enumerate() {
            let (got_link, got_action, got_next) = on_tick(link, &seen, at(now));
            assert_eq!(
                (got_link, got_action, got_next),
                (want_link, want_action, at(want_next)),
                "row {i}: {link:?} seeing {seen:?} at +{now} ms"
            );
        }
    }

    #[test]
    fn only_a_waiting_link_before_its_time_asks_whether_the_server_answers() {
        let t0 = Instant::now();
        let waiting = |due: u64, seen_down| Link::Waiting {
            due: t0 + ms(due),
            lost: t0,
            seen_down,
        };
        // Seen refusing: looked at until the attempt is due.
        assert!(waiting(10, true).wants_reach_check(t0));
        assert!(!waiting(10, true).wants_reach_check(t0 + ms(10)));
        // Not seen refusing: a look only while the attempt is far off.
        let far = u64::try_from(LOOK_AHEAD.as_millis()).unwrap() + 1000;
        assert!(waiting(far, false).wants_reach_check(t0));
        assert!(!waiting(far, false).wants_reach_check(t0 + ms(far - 200)));
        assert!(!waiting(250, false).wants_reach_check(t0));
        assert!(!Link::Up { since: t0, failures: 0 }.wants_reach_check(t0));
    }
}
