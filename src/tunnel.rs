//! The tunnel supervisor: owns one `ssh -N -L` child, probes Jupyter through it, and restarts
//! whatever broke — the ssh (with backoff, woken early when the server's port answers again)
//! or the remote Jupyter (at most 5 times in 10 minutes). One thread, no busy loop: it sleeps
//! in `poll(2)` on a signalfd that delivers SIGCHLD (ssh died) and SIGTERM/SIGINT/SIGHUP (stop).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::cmd::Ctx;
use crate::probe::{self, Probe};
use crate::process::CleanChild;
use crate::remote::{self, JupyterSpec, LaunchEvent};
use crate::ssh::parse_resolved;
use crate::state::{Phase, RunDir, Session};
use crate::target::Alias;

/// How often a healthy tunnel is probed, and how long a probe may take.
const PROBE_EVERY: Duration = Duration::from_secs(1);
const PROBE_TIMEOUT: Duration = Duration::from_millis(800);
/// How often a starting tunnel is probed.
const CONNECT_POLL: Duration = Duration::from_millis(25);
/// Backoff: first retry at once, then 0.2 s doubling to 30 s, reset after 60 s healthy.
const BACKOFF_FIRST: Duration = Duration::from_millis(200);
const BACKOFF_CAP: Duration = Duration::from_secs(30);
const HEALTHY_RESET: Duration = Duration::from_mins(1);
/// Remote Jupyter restarts allowed in a window before the supervisor gives up.
const MAX_RESTARTS: usize = 5;
const RESTART_WINDOW: Duration = Duration::from_mins(10);
/// TERM, then KILL after this.
const GRACE: Duration = Duration::from_secs(2);

/// The backoff before reconnect attempt `n` (0-based).
pub(crate) fn backoff(attempt: u32) -> Duration {
    if attempt == 0 {
        return Duration::ZERO;
    }
    let factor = 2u32.saturating_pow(attempt - 1);
    BACKOFF_FIRST.saturating_mul(factor).min(BACKOFF_CAP)
}

#[derive(Debug)]
enum Link {
    /// ssh started; waiting for the first good probe. `lost` is when the last good link ended.
    Connecting {
        since: Instant,
        lost: Option<Instant>,
        closed_since: Option<Instant>,
    },
    Up {
        since: Instant,
        failures: u32,
    },
    /// ssh exited; the next attempt is due at `due` (earlier if the server's port answers).
    Waiting {
        due: Instant,
        lost: Instant,
    },
}

struct Supervisor<'a> {
    ctx: &'a Ctx,
    alias: Alias,
    run: RunDir,
    session: Session,
    log: File,
    foreground: bool,
    child: Option<CleanChild>,
    link: Link,
    attempt: u32,
    restarts: VecDeque<Instant>,
    next_tick: Instant,
    /// `host:port` of the sshd when reachable directly (no ProxyJump), to notice it is back.
    direct: Option<String>,
}

/// Runs the supervisor for `alias` until signalled or it gives up.
pub(crate) fn supervise(ctx: &Ctx, alias: &Alias, foreground: bool) -> Result<()> {
    if !foreground {
        // Leave the terminal's session: a closed terminal must not take the tunnel down.
        let _ = nix::unistd::setsid();
    }
    let mut signals = SigSet::empty();
    for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        signals.add(s);
    }
    signals.thread_block().context("could not block signals")?;
    let sfd = SignalFd::with_flags(&signals, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .context("could not create a signalfd")?;

    let run = RunDir::new(&ctx.paths, alias);
    let session = run
        .read_session()?
        .context("no session to supervise: start it with `jssh up`")?;
    run.write_pid(std::process::id())?;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(run.log_path())
        .with_context(|| format!("could not open {}", run.log_path().display()))?;
    let now = Instant::now();
    let mut sup = Supervisor {
        ctx,
        alias: alias.clone(),
        run,
        session,
        log,
        foreground,
        child: None,
        link: Link::Waiting { due: now, lost: now },
        attempt: 0,
        restarts: VecDeque::new(),
        next_tick: now,
        direct: None,
    };
    sup.direct = sup.direct_address();
    sup.event(&format!("supervising {} (pid {})", sup.alias, std::process::id()));
    let result = sup.run_loop(&sfd);
    sup.stop_child();
    if let Err(e) = &result {
        sup.session.phase = Phase::Failed;
        sup.session.last_error = Some(format!("{e:#}"));
        sup.event(&format!("giving up: {e:#}"));
    } else {
        sup.session.phase = Phase::Stopped;
        sup.event("tunnel stopped");
    }
    let _ = sup.run.write_session(&sup.session);
    let _ = std::fs::remove_file(sup.run.pid_path());
    result
}

impl Supervisor<'_> {
    fn run_loop(&mut self, sfd: &SignalFd) -> Result<()> {
        loop {
            let wait = self.next_tick.saturating_duration_since(Instant::now());
            let millis = u16::try_from(wait.as_millis().min(60_000)).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(millis)) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e).context("poll failed"),
            }
            while let Some(info) = sfd.read_signal().context("could not read a signal")? {
                match Signal::try_from(i32::try_from(info.ssi_signo).unwrap_or(0)) {
                    Ok(Signal::SIGCHLD) => self.reap()?,
                    Ok(sig) => {
                        self.event(&format!("received {sig}: stopping the tunnel"));
                        return Ok(());
                    }
                    Err(_) => {}
                }
            }
            if Instant::now() >= self.next_tick {
                self.tick()?;
            }
        }
    }

    /// Appends a timestamped line to the log (and the terminal in the foreground).
    fn event(&mut self, message: &str) {
        let line = format!("{} {message}\n", clock());
        let _ = self.log.write_all(line.as_bytes());
        if self.foreground {
            print!("{line}");
            let _ = std::io::stdout().flush();
        }
    }

    fn save(&mut self) {
        if let Err(e) = self.run.write_session(&self.session) {
            self.event(&format!("could not save the session: {e:#}"));
        }
    }

    /// The sshd's address when ssh connects to it directly (for the "is it back?" check).
    fn direct_address(&self) -> Option<String> {
        let out = self.ctx.ssh.resolve(&self.alias).output().ok()?;
        let resolved = parse_resolved(&String::from_utf8_lossy(&out.stdout));
        if resolved.contains_key("proxyjump") || resolved.contains_key("proxycommand") {
            return None;
        }
        Some(format!("{}:{}", resolved.get("hostname")?, resolved.get("port")?))
    }

    fn spawn_ssh(&mut self) -> Result<()> {
        let cmd = self
            .ctx
            .ssh
            .tunnel(&self.alias, self.session.local_port, &self.session.remote_end());
        self.child = Some(cmd.spawn_clean(self.log.as_fd())?);
        Ok(())
    }

    /// Handles a SIGCHLD: if the tunnel's ssh exited, schedule the next attempt.
    fn reap(&mut self) -> Result<()> {
        let Some(child) = &mut self.child else { return Ok(()) };
        let Some(status) = child.try_wait().context("could not wait for ssh")? else {
            return Ok(());
        };
        self.child = None;
        let now = Instant::now();
        let lost = match self.link {
            Link::Up { .. } => now,
            Link::Connecting { lost, .. } => lost.unwrap_or(now),
            Link::Waiting { lost, .. } => lost,
        };
        let why = format!("ssh {status}");
        if matches!(self.link, Link::Up { .. }) {
            self.event(&format!("tunnel lost: {why}"));
        } else {
            self.event(&format!("reconnect attempt failed: {why}"));
        }
        self.session.phase = Phase::Reconnecting;
        self.session.last_error = Some(why);
        self.save();
        let delay = backoff(self.attempt);
        self.attempt += 1;
        self.link = Link::Waiting { due: now + delay, lost };
        self.next_tick = now;
        Ok(())
    }

    fn tick(&mut self) -> Result<()> {
        let now = Instant::now();
        match self.link {
            Link::Waiting { due, lost } => {
                if now >= due || self.server_answers() {
                    self.spawn_ssh()?;
                    self.link = Link::Connecting {
                        since: now,
                        lost: Some(lost),
                        closed_since: None,
                    };
                    self.next_tick = now + CONNECT_POLL;
                } else {
                    // While backing off, look every 250 ms whether the server is back.
                    let step = if self.direct.is_some() {
                        Duration::from_millis(250)
                    } else {
                        due - now
                    };
                    self.next_tick = (now + step).min(due);
                }
            }
            Link::Connecting {
                since,
                lost,
                closed_since,
            } => {
                match probe::api_status(self.session.local_port, Some(&self.session.token), PROBE_TIMEOUT) {
                    Probe::Ok => self.connected(since, lost),
                    Probe::Closed => {
                        // ssh is up but nothing answers remotely: Jupyter is starting or gone.
                        // Asked at most once a second, while it lasts.
                        let first = closed_since.unwrap_or(now);
                        let closed_since = if now.duration_since(first) < Duration::from_secs(1) {
                            Some(first)
                        } else if self.remote_alive() {
                            Some(now)
                        } else {
                            self.restart_remote()?;
                            None
                        };
                        self.link = Link::Connecting {
                            since,
                            lost,
                            closed_since,
                        };
                        self.next_tick = now + CONNECT_POLL.max(Duration::from_millis(100));
                    }
                    _ => self.next_tick = now + CONNECT_POLL,
                }
            }
            Link::Up { since, failures } => {
                let result = probe::api_status(self.session.local_port, Some(&self.session.token), PROBE_TIMEOUT);
                if result == Probe::Ok {
                    if now.duration_since(since) > HEALTHY_RESET {
                        self.attempt = 0;
                    }
                    self.link = Link::Up { since, failures: 0 };
                    self.next_tick = now + PROBE_EVERY;
                } else if failures == 0 {
                    // Confirm quickly before acting on one lost probe.
                    self.link = Link::Up { since, failures: 1 };
                    self.next_tick = now + Duration::from_millis(100);
                } else {
                    self.unhealthy(&result)?;
                }
            }
        }
        Ok(())
    }

    fn connected(&mut self, since: Instant, lost: Option<Instant>) {
        let now = Instant::now();
        match lost {
            Some(lost) if self.session.phase != Phase::Starting => {
                self.session.reconnects += 1;
                let down = now.duration_since(lost).as_secs_f64();
                let attempt = now.duration_since(since).as_secs_f64();
                self.event(&format!("reconnected in {down:.2} s (this attempt {attempt:.2} s)"));
            }
            _ => self.event(&format!(
                "ready: {}",
                self.session.url().split('?').next().unwrap_or_default()
            )),
        }
        self.session.phase = Phase::Up;
        self.save();
        self.link = Link::Up {
            since: now,
            failures: 0,
        };
        self.next_tick = now + PROBE_EVERY;
    }

    /// Two probes in a row failed on a tunnel that was up.
    fn unhealthy(&mut self, result: &Probe) -> Result<()> {
        let now = Instant::now();
        self.event(&format!("health probe failed twice ({result:?})"));
        if *result == Probe::Closed && !self.remote_alive() {
            // The path works, the server is gone: restart it and keep the tunnel.
            self.restart_remote()?;
            self.link = Link::Connecting {
                since: now,
                lost: Some(now),
                closed_since: None,
            };
            self.next_tick = now + CONNECT_POLL;
            return Ok(());
        }
        // A stalled or broken path: replace the ssh (SIGCHLD then schedules the retry).
        self.session.phase = Phase::Reconnecting;
        self.save();
        self.stop_child();
        let due = now + backoff(self.attempt);
        self.attempt += 1;
        self.link = Link::Waiting { due, lost: now };
        self.next_tick = due;
        Ok(())
    }

    /// Whether the sshd's port accepts a TCP connection (only known for direct connections).
    fn server_answers(&self) -> bool {
        let Some(addr) = &self.direct else { return false };
        let Ok(mut addrs) = addr.to_socket_addrs() else {
            return false;
        };
        addrs
            .next()
            .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_millis(200)).is_ok())
    }

    /// Asks the remote (through the ControlMaster) whether the tmux session still runs.
    fn remote_alive(&mut self) -> bool {
        let cmd = self.ctx.ssh.exec(&self.alias, &remote::list(), true);
        match cmd.output() {
            Ok(out) if out.status.success() => remote::parse_list(&String::from_utf8_lossy(&out.stdout))
                .iter()
                .any(|s| s.session == self.session.tmux_name),
            // Unknown: do not restart a server we cannot see.
            _ => true,
        }
    }

    fn restart_remote(&mut self) -> Result<()> {
        let now = Instant::now();
        while self
            .restarts
            .front()
            .is_some_and(|t| now.duration_since(*t) > RESTART_WINDOW)
        {
            self.restarts.pop_front();
        }
        if self.restarts.len() >= MAX_RESTARTS {
            bail!(
                "the remote Jupyter died {MAX_RESTARTS} times in 10 minutes: see `jssh logs {} --remote`",
                self.alias
            );
        }
        self.restarts.push_back(now);
        self.event("remote Jupyter is gone: restarting it");
        let spec = JupyterSpec {
            session: &self.session.tmux_name,
            notebook: self.session.notebook,
            socket: self.session.remote_socket.is_some(),
            dir: self.session.dir.as_deref(),
            env: &self.session.env,
            info: &self.session.jupyter,
        };
        let ports: Vec<u16> = self.session.remote_port.into_iter().collect();
        let cmd = self
            .ctx
            .ssh
            .exec(&self.alias, &remote::launch(&spec, &ports, false, false), true);
        let out = cmd.stdin_bytes(self.session.token.clone().into_bytes()).run()?;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some(LaunchEvent::Started { port, pid, .. }) = LaunchEvent::parse(line) {
                self.session.remote_pid = pid;
                if port.is_some() && port != self.session.remote_port {
                    // The old port was taken meanwhile: the forward must follow.
                    self.session.remote_port = port;
                    self.stop_child();
                }
            }
        }
        self.session.restarts += 1;
        self.save();
        Ok(())
    }

    /// TERM, a grace period, then KILL; always reaped, so no orphan and no zombie.
    fn stop_child(&mut self) {
        let Some(child) = self.child.take() else { return };
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
}

/// Wall-clock `HH:MM:SS` (UTC) for log lines.
fn clock() -> String {
    let secs = crate::state::unix_now() % 86_400;
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_starts_at_once_then_doubles_to_a_cap() {
        let ms: Vec<u128> = (0..10).map(|n| backoff(n).as_millis()).collect();
        assert_eq!(ms, [0, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000]);
        assert_eq!(backoff(200), BACKOFF_CAP);
    }
}
