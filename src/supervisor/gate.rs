//! The local port: the supervisor binds `127.0.0.1:LOCAL` once and holds it for its whole
//! life, through every reconnect, standby switch and Jupyter restart.
//!
//! Why the supervisor and not ssh: when ssh owns the port (`ssh -L`), the port *refuses*
//! while one ssh dies and the next takes over (a few ms), and for a whole outage. JupyterLab
//! answers a refused reconnect by sleeping a random 10–30 s, and in that window another local
//! user can bind the port and receive the token from the browser. Here a connection is
//! accepted at once and handed to the live ssh master as a stdio forward ([`super::mux`]: the
//! master does the I/O, the supervisor copies no byte); while no master can carry it, it
//! *waits*, and is served the moment one can (a browser's retry lands here and is held, not
//! refused). Why a hand-off and not the other design (ssh forwards a private Unix socket and
//! the supervisor relays bytes): a relay copies every byte once more and needs a buffer per
//! connection in the process that must stay under 3 MB; the hand-off needs neither, and keeps
//! ssh's own flow control end to end. Measured (docs/BENCHMARKS.md, *Data path*): 0.91–1.07×
//! the throughput of a plain `ssh -L` and +0.3–0.5 ms to a new connection's first byte (one
//! round trip to the master's control socket). The relay was not built for comparison.
//!
//! The gate runs on a thread of its own, so nothing the supervisor does (a probe, a remote
//! relaunch) ever stalls a connection: the supervisor only tells it which master to use.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::mux::{self, Forward, Reply};
use super::policy;
use crate::ssh::RemoteEnd;

/// Where connections go: a live master's control socket and the remote end to ask it for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Route {
    pub(crate) control: PathBuf,
    pub(crate) end: RemoteEnd,
}

#[derive(Debug, Default)]
struct Shared {
    route: Option<Route>,
    stop: bool,
}

/// The thread that holds the port; dropping it stops the thread and releases the port.
pub(crate) struct Gate {
    shared: Arc<Mutex<Shared>>,
    wake: std::io::PipeWriter,
    thread: Option<JoinHandle<()>>,
}

/// Binds the local end, loopback only. Fails when another program holds the port: then
/// nothing is sent to it, ever.
pub(crate) fn bind(port: u16) -> Result<TcpListener> {
    TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).with_context(|| {
        format!("127.0.0.1:{port} is taken by another program: `jssh down` and `jssh up --port P` to use another")
    })
}

impl Gate {
    /// Starts serving `listener`. Call it after [`crate::platform::Signals::deliver`]: the
    /// thread inherits the mask that keeps the supervisor's signals off it.
    pub(crate) fn start(listener: TcpListener) -> Result<Self> {
        listener
            .set_nonblocking(true)
            .context("could not make the listener non-blocking")?;
        let (wake_rx, wake) = std::io::pipe().context("could not make a pipe")?;
        let shared = Arc::new(Mutex::new(Shared::default()));
        let theirs = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("gate".into())
            // It holds a few vectors and a poll set: a small stack keeps the resident set small.
            .stack_size(128 * 1024)
            .spawn(move || Serve::new(listener, wake_rx.into(), theirs).run())
            .context("could not start the port's thread")?;
        Ok(Self {
            shared,
            wake,
            thread: Some(thread),
        })
    }

    /// Sends new connections (and those waiting) to `route`; `None` makes them wait.
    pub(crate) fn set_route(&mut self, route: Option<Route>) {
        self.update(|s| s.route = route);
    }

    fn update(&mut self, change: impl FnOnce(&mut Shared)) {
        change(&mut self.shared.lock().unwrap_or_else(PoisonError::into_inner));
        let _ = std::io::Write::write(&mut self.wake, &[1]);
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.update(|s| s.stop = true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A connection not yet carried by a master.
struct Waiting {
    stream: TcpStream,
    since: Instant,
    /// When to ask a master again (after a refusal, not at once).
    next_try: Instant,
}

/// A connection handed to a master, waiting for its answer (our copy of the socket is kept
/// until then, so a refusal or a master that dies leaves the connection waiting, not closed).
struct Asking {
    stream: TcpStream,
    since: Instant,
    forward: Forward,
}

struct Serve {
    listener: TcpListener,
    wake: OwnedFd,
    shared: Arc<Mutex<Shared>>,
    route: Option<Route>,
    waiting: Vec<Waiting>,
    asking: Vec<Asking>,
    /// Connections the masters carry; each control connection lives as long as its forward.
    open: Vec<Forward>,
}

impl Serve {
    fn new(listener: TcpListener, wake: OwnedFd, shared: Arc<Mutex<Shared>>) -> Self {
        Self {
            listener,
            wake,
            shared,
            route: None,
            waiting: Vec::new(),
            asking: Vec::new(),
            open: Vec::new(),
        }
    }

    fn run(mut self) {
        loop {
            let now = Instant::now();
            self.expire(now);
            self.dispatch(now);
            let timeout = self.next_wakeup(now);
            let (wake, accept, asking, open) = {
                let mut fds = vec![
                    PollFd::new(self.wake.as_fd(), PollFlags::POLLIN),
                    PollFd::new(self.listener.as_fd(), PollFlags::POLLIN),
                ];
                fds.extend(
                    self.asking
                        .iter()
                        .map(|a| PollFd::new(a.forward.fd(), PollFlags::POLLIN)),
                );
                fds.extend(self.open.iter().map(|f| PollFd::new(f.fd(), PollFlags::POLLIN)));
                if let Err(e) = poll(&mut fds, timeout)
                    && e != nix::errno::Errno::EINTR
                {
                    // Nothing sensible is left to do but let the supervisor notice.
                    return;
                }
                let ready = |fd: &PollFd<'_>| fd.revents().is_some_and(|r| !r.is_empty());
                let flags: Vec<bool> = fds.iter().map(ready).collect();
                let asking: Vec<bool> = flags[2..2 + self.asking.len()].to_vec();
                let open: Vec<bool> = flags[2 + self.asking.len()..].to_vec();
                (flags[0], flags[1], asking, open)
            };
            if wake {
                let mut buf = [0u8; 64];
                let _ = nix::unistd::read(&self.wake, &mut buf);
                let shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
                if shared.stop {
                    return;
                }
                if shared.route != self.route {
                    self.route.clone_from(&shared.route);
                    // A new master: everyone waiting tries it now.
                    for w in &mut self.waiting {
                        w.next_try = now;
                    }
                }
            }
            if accept {
                self.accept(Instant::now());
            }
            self.answers(&asking);
            self.closed(&open);
        }
    }

    fn accept(&mut self, now: Instant) {
        while let Ok((stream, _)) = self.listener.accept() {
            if self.waiting.len() + self.asking.len() >= policy::MAX_WAITING {
                // Past this, a flood of connections would only exhaust descriptors.
                continue;
            }
            self.waiting.push(Waiting {
                stream,
                since: now,
                next_try: now,
            });
        }
    }

    /// Hands every connection that is due to the current master.
    fn dispatch(&mut self, now: Instant) {
        let Some(route) = &self.route else { return };
        let mut i = 0;
        while i < self.waiting.len() {
            if self.waiting[i].next_try > now {
                i += 1;
                continue;
            }
            let Ok(forward) = mux::forward(&route.control, &route.end, self.waiting[i].stream.as_fd()) else {
                // No master behind the route yet (it is starting) or any more (it died: the
                // supervisor is about to name another): everyone waits a little.
                for w in &mut self.waiting {
                    w.next_try = now + policy::GATE_NO_MASTER_RETRY;
                }
                return;
            };
            let w = self.waiting.swap_remove(i);
            self.asking.push(Asking {
                stream: w.stream,
                since: w.since,
                forward,
            });
        }
    }

    fn answers(&mut self, ready: &[bool]) {
        let now = Instant::now();
        for (i, _) in ready.iter().enumerate().filter(|(_, r)| **r).rev() {
            match self.asking[i].forward.reply() {
                Reply::Pending => {}
                Reply::Opened => {
                    // The master has its own copy now; ours would keep the connection open
                    // after the master closed it.
                    let asking = self.asking.swap_remove(i);
                    self.open.push(asking.forward);
                }
                reply => {
                    // Refused (Jupyter not listening: starting, or restarting) or the master
                    // went: the connection waits for the next try.
                    let asking = self.asking.swap_remove(i);
                    let delay = if reply == Reply::Lost {
                        policy::GATE_NO_MASTER_RETRY
                    } else {
                        policy::GATE_REFUSED_RETRY
                    };
                    self.waiting.push(Waiting {
                        stream: asking.stream,
                        since: asking.since,
                        next_try: now + delay,
                    });
                }
            }
        }
    }

    fn closed(&mut self, ready: &[bool]) {
        for (i, _) in ready.iter().enumerate().filter(|(_, r)| **r).rev() {
            if self.open[i].reply() == Reply::Lost {
                self.open.swap_remove(i);
            }
        }
    }

    /// Connections that waited longer than a browser would are closed (never refused early).
    fn expire(&mut self, now: Instant) {
        self.waiting
            .retain(|w| now.duration_since(w.since) < policy::HOLD_LIMIT);
        self.asking.retain(|a| now.duration_since(a.since) < policy::HOLD_LIMIT);
    }

    fn next_wakeup(&self, now: Instant) -> PollTimeout {
        let tries = self.waiting.iter().filter(|_| self.route.is_some()).map(|w| w.next_try);
        let limits = self
            .waiting
            .iter()
            .map(|w| w.since)
            .chain(self.asking.iter().map(|a| a.since))
            .map(|since| since + policy::HOLD_LIMIT);
        match tries.chain(limits).min() {
            None => PollTimeout::NONE,
            Some(at) => {
                let ms = at.saturating_duration_since(now).as_millis().min(60_000);
                PollTimeout::try_from(Duration::from_millis(u64::try_from(ms).unwrap_or(60_000)))
                    .unwrap_or(PollTimeout::MAX)
            }
        }
    }
}
