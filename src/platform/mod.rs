//! Everything that differs between the systems jssh runs on (Linux, macOS, the BSDs), behind
//! one small surface: nothing outside this module names an OS or reads `/proc`.
//!
//! - [`Signals`]: signals delivered into a `poll(2)` loop, by the same self-pipe everywhere.
//! - [`started_with`]: whether a process's command line holds a given argument.
//! - [`running`]: whether a process exists and is no zombie.
//! - [`syn_sent`]: whether a process's TCP connection still waits for the server's SYN-ACK.
//! - [`OPENER`] and [`install_hint`]: what opens a URL, and how a missing program is installed.
//! - [`notify`]: a desktop notification.
//! - [`NetWatch`]: network changes (links, addresses, routes) delivered into a `poll(2)` loop.
//! - [`asleep`]: how long the machine has been suspended, which `Instant` does not count.
//! - [`sd_notify`]: telling systemd that a service is ready, how it is, and that it stops.
//! - [`DirWatch`]: new entries in a directory (an ssh master's control socket appearing),
//!   delivered into a `poll(2)` loop where the system can (Linux's inotify).

#[cfg(any(not(target_os = "linux"), test))]
mod bsd;
#[cfg(target_os = "linux")]
mod linux;
pub(crate) mod sd_notify;

#[cfg(not(target_os = "linux"))]
use bsd as os;
#[cfg(target_os = "linux")]
use linux as os;

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use anyhow::{Context, Result};
use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::socket::{MsgFlags, recv};
use signal_hook::iterator::backend::SignalDelivery;
use signal_hook::iterator::exfiltrator::SignalOnly;

/// The program that opens a file or URL in the user's browser.
pub(crate) const OPENER: &str = os::OPENER;

/// Whether the user's services are launchd's LaunchAgents (macOS) rather than systemd's
/// `--user` units.
pub(crate) const LAUNCH_AGENTS: bool = cfg!(target_os = "macos");

/// Shows a desktop notification where the system has a way (`notify-send` on Linux and the
/// BSDs, `osascript` on macOS); nothing otherwise, and never waits for it.
pub(crate) fn notify(title: &str, body: &str) {
    let (program, args) = os::notification(title, body);
    if which::which(program).is_err() {
        return;
    }
    let null = std::process::Stdio::null;
    if let Ok(mut child) = crate::process::Cmd::new(program)
        .args(args)
        .spawn(null(), null(), null())
    {
        std::thread::spawn(move || child.wait());
    }
}

/// How to install `program` here ("openssh-client (…)", "Homebrew's openssh (…)").
pub(crate) fn install_hint(program: &str) -> &'static str {
    os::install_hint(program)
}

/// Whether process `pid` runs with `word` as one of its arguments; false when it does not
/// run, or when this system cannot tell (a caller that would signal it then does not).
pub(crate) fn started_with(pid: u32, word: &OsStr) -> bool {
    os::started_with(pid, word)
}

/// Whether process `pid` exists and is no zombie (on Linux; elsewhere, whether a signal would
/// reach it).
pub(crate) fn running(pid: u32) -> bool {
    os::running(pid)
}

/// Whether process `pid` has a TCP connection still waiting for the server's SYN-ACK;
/// `None` where the system cannot tell cheaply.
pub(crate) fn syn_sent(pid: u32) -> Option<bool> {
    os::syn_sent(pid)
}

/// How long the machine has been suspended since boot (Linux: `CLOCK_BOOTTIME` minus
/// `CLOCK_MONOTONIC`; elsewhere the wall clock against `Instant`, since this was first asked).
/// A suspend does not make a `poll(2)` timeout late, since both stop: this grows instead.
pub(crate) fn asleep() -> Option<Duration> {
    os::asleep()
}

/// Network changes, delivered into a `poll(2)` loop: poll [`NetWatch::fd`], then ask
/// [`NetWatch::changed`]. A netlink route socket on Linux, a `PF_ROUTE` socket on macOS and
/// the BSDs: the kernel writes to it when an interface, an address or a route changes (a
/// Wi-Fi switch, a VPN coming up, a cable pulled), so nothing polls.
pub(crate) struct NetWatch {
    socket: OwnedFd,
}

impl NetWatch {
    /// `None` where the socket cannot be opened (a sandbox may forbid it): then only a late
    /// wakeup or a failed probe tells.
    pub(crate) fn open() -> Option<Self> {
        let socket = os::route_socket().ok()?;
        // Not every system has SOCK_CLOEXEC: ssh must not inherit it.
        fcntl(&socket, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).ok()?;
        Some(Self { socket })
    }

    /// Readable when the kernel reported something.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }

    /// Reads everything queued, without blocking: whether any of it was a change of an
    /// interface, an address or a route. A queue that overflowed (ENOBUFS) lost messages,
    /// so it counts as a change.
    pub(crate) fn changed(&self) -> bool {
        let mut buf = [0u8; 8192];
        let mut changed = false;
        loop {
            match recv(self.socket.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                Ok(0) => return changed,
                Ok(n) => changed |= os::is_change(&buf[..n]),
                Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::ENOBUFS) => changed = true,
                Err(_) => return changed,
            }
        }
    }
}

/// New entries in a directory, delivered into a `poll(2)` loop: poll [`DirWatch::fd`], then
/// [`DirWatch::drain`] it. An inotify watch on Linux; elsewhere there is none and the caller
/// polls the directory as before.
pub(crate) struct DirWatch {
    fd: OwnedFd,
}

impl DirWatch {
    pub(crate) fn open(dir: &std::path::Path) -> Option<Self> {
        os::dir_watch(dir).map(|fd| Self { fd })
    }

    /// Readable when something was added since the last [`DirWatch::drain`].
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Reads everything queued, without blocking (the fd is non-blocking): what was added
    /// does not matter, only that something was.
    pub(crate) fn drain(&self) {
        let mut buf = [0u8; 4096];
        while let Ok(n) = nix::unistd::read(&self.fd, &mut buf) {
            if n == 0 {
                break;
            }
        }
    }
}

/// Signals delivered into a `poll(2)` loop: poll [`Signals::fd`], then read
/// [`Signals::pending`].
///
/// A self-pipe (signal-hook's), on every system. A signalfd exists only on Linux and kqueue's
/// `EVFILT_SIGNAL` only on macOS and the BSDs, so either would leave the code a Mac runs
/// untested here; the self-pipe is the same code everywhere. Its catch: a handled signal
/// interrupts whichever thread it lands on (a probe's `poll` would fail with EINTR, a
/// spurious "Jupyter does not answer"). So [`Signals::deliver`] blocks the signals in the
/// calling thread (threads it starts later inherit that), and one idle thread of its own
/// leaves them unblocked: the kernel delivers them there, the handler writes to the pipe, and
/// no other thread is ever interrupted. Children still start with an empty mask and default
/// dispositions (`Cmd::spawn_clean`; exec resets handled signals to default anyway).
pub(crate) struct Signals {
    delivery: SignalDelivery<UnixStream, SignalOnly>,
}

impl Signals {
    /// Starts delivering `signals`. Call it before starting any other thread.
    pub(crate) fn deliver(signals: &[Signal]) -> Result<Self> {
        let mut set = SigSet::empty();
        for &signal in signals {
            set.add(signal);
        }
        set.thread_block().context("could not block signals")?;
        let (read, write) = UnixStream::pair().context("could not make a socket pair")?;
        let numbers = signals.iter().map(|&s| s as i32);
        let delivery = SignalDelivery::with_pipe(read, write, SignalOnly, numbers)
            .context("could not install the signal handlers")?;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("signals".into())
            // It only ever runs the handler, which writes one byte.
            .stack_size(64 * 1024)
            .spawn(move || {
                let unblocked = set.thread_unblock();
                if unblocked.is_ok() {
                    let _ = ready_tx.send(unblocked);
                    loop {
                        std::thread::park();
                    }
                }
                let _ = ready_tx.send(unblocked);
            })
            .context("could not start the signal thread")?;
        ready_rx
            .recv()
            .context("the signal thread ended")?
            .context("could not unblock signals in the signal thread")?;
        Ok(Self { delivery })
    }

    /// Readable when a signal arrived.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.delivery.get_read().as_fd()
    }

    /// The signals that arrived since the last call (each once, however often it came).
    pub(crate) fn pending(&mut self) -> Vec<Signal> {
        self.delivery
            .pending()
            .filter_map(|n| Signal::try_from(n).ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

    #[test]
    fn a_signal_reaches_the_poll_loop_and_no_other_thread() {
        let mut signals = Signals::deliver(&[Signal::SIGUSR2]).unwrap();
        assert!(signals.pending().is_empty());
        nix::sys::signal::kill(nix::unistd::getpid(), Signal::SIGUSR2).unwrap();
        let mut fds = [PollFd::new(signals.fd(), PollFlags::POLLIN)];
        assert_eq!(poll(&mut fds, PollTimeout::from(5000u16)), Ok(1));
        assert_eq!(signals.pending(), [Signal::SIGUSR2]);
        assert!(signals.pending().is_empty(), "each arrival is reported once");
        // Blocked here, so this thread's own syscalls are never interrupted by it.
        let mask = SigSet::thread_get_mask().unwrap();
        assert!(mask.contains(Signal::SIGUSR2));
    }
}
