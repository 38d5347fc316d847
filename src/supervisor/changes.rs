//! Noticing that the world changed under the supervisor: the machine slept (a wakeup much
//! later than asked for, or time the system reports as suspended) or the network changed.
//! Any connection may then have died without a word; this room only tells [`super::link`]
//! to recheck at once, which decides the rest.

use std::time::{Duration, Instant};

use super::Supervisor;
use super::link::{self, Seen};
use super::policy::{LATE_WAKEUP, jitter, random};
use crate::platform::{self, NetWatch};

impl Supervisor {
    /// A wakeup much later than asked for (the process did not run: the machine slept, or it
    /// was stopped), time spent suspended (which `poll`'s timeout does not count), or a
    /// network change: any connection may have died without a word, so the link's state
    /// machine rechecks at once, and spreads the reconnect this may cause by a random jitter.
    pub(super) fn notice_changes(&mut self, late: Duration, net_ready: bool) {
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
        if self.awaiting_login && self.denied > 0 {
            // The key was refused (or the host key changed): only the user resumes that.
            self.event(&format!("{what}; the tunnel still waits for you"));
            return;
        }
        let jitter = jitter(random());
        let now = Instant::now();
        let (link, _, next) = link::on_tick(self.link, &Seen::Changed { jitter }, now);
        self.event(&format!("{what}: checking the connection"));
        self.changed_at = Some(now);
        self.link = link;
        self.next_tick = self.next_tick.min(next);
    }
}
