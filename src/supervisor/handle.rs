//! Starting, finding and stopping a supervisor, and the argument list it is started with
//! (built and parsed here, nowhere else).

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::state::{Phase, Session, StateDir};
use crate::target::Alias;

/// What a supervisor is started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Args {
    pub(crate) alias: Alias,
    pub(crate) ssh_config: PathBuf,
    pub(crate) connect_timeout: u32,
    /// Shares the terminal of a foreground `jssh up` (Ctrl-C reaches it) instead of leaving it.
    pub(crate) foreground: bool,
}

impl Args {
    /// `supervise ALIAS --ssh-config FILE --connect-timeout N [--foreground]`.
    fn to_argv(&self) -> Vec<OsString> {
        let mut argv: Vec<OsString> = vec![
            "supervise".into(),
            self.alias.as_str().into(),
            "--ssh-config".into(),
            self.ssh_config.clone().into(),
            "--connect-timeout".into(),
            self.connect_timeout.to_string().into(),
        ];
        if self.foreground {
            argv.push("--foreground".into());
        }
        argv
    }

    /// The inverse of [`Args::to_argv`], and nothing else: the supervisor has no clap.
    pub(crate) fn parse(args: &[OsString]) -> Option<Self> {
        let [sub, alias, config_flag, config, timeout_flag, timeout, rest @ ..] = args else {
            return None;
        };
        let foreground = match rest {
            [] => false,
            [flag] if flag == "--foreground" => true,
            _ => return None,
        };
        if sub != "supervise" || config_flag != "--ssh-config" || timeout_flag != "--connect-timeout" {
            return None;
        }
        Some(Self {
            alias: alias.to_str()?.parse().ok()?,
            ssh_config: config.into(),
            connect_timeout: timeout.to_str()?.parse().ok().filter(|t| (1..=3600).contains(t))?,
            foreground,
        })
    }
}

/// Starts a supervisor: detached (its own session, output to the log) or in the foreground
/// (sharing the terminal, so Ctrl-C reaches it).
pub(crate) fn start(args: &Args, run: &StateDir) -> Result<Child> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(run.log_path())
        .with_context(|| format!("could not open {}", run.log_path().display()))?;
    std::process::Command::new(exe()?)
        .args(args.to_argv())
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().context("could not share the log")?))
        .stderr(Stdio::from(log))
        .spawn()
        .context("could not start the supervisor")
}

/// `jssh-supervisor` from beside this executable (as `cargo install` and the release build
/// place it); if it was not installed, jssh itself, whose hidden `supervise` command does the
/// same work with a larger resident set.
fn exe() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("could not find the jssh executable")?;
    let helper = exe.with_file_name("jssh-supervisor");
    Ok(if helper.is_file() { helper } else { exe })
}

/// The running supervisor's pid, found by its lease ([`StateDir::take_lease`]): the one way
/// jssh finds a supervisor. Only a process holding the lease counts, so a stale or reused
/// pid can never make jssh signal an unrelated process.
pub(crate) fn find(run: &StateDir) -> Option<u32> {
    let file = File::open(run.lease_path()).ok()?;
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        // Nobody holds it: no supervisor (the lock is dropped again at once).
        Ok(_) => None,
        // Held, and by the supervisor it names. A supervisor killed while it started an ssh
        // leaves the lease held by that child between its fork and its exec (which closes
        // it): then the named pid is gone, and no supervisor runs. Taken for one, `up` once
        // reported a dead tunnel as up without starting anything.
        Err((file, _)) => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut &file, &mut text).ok()?;
            let pid = text.trim().parse().ok()?;
            crate::platform::running(pid).then_some(pid)
        }
    }
}

/// Whether the login a human answered ([`StateDir::login_control`]) is still connected: its
/// master answers on its control socket. Asks only that local socket, never the server.
pub(crate) fn login_alive(run: &StateDir) -> bool {
    super::mux::hold(&run.login_control(), Duration::from_secs(1)).is_ok()
}

/// Tells the running supervisor that a new login is there to ride on (SIGUSR1).
pub(crate) fn login_arrived(run: &StateDir) -> Result<()> {
    let pid = find(run).context("no supervisor runs")?;
    kill(
        Pid::from_raw(i32::try_from(pid).context("pid out of range")?),
        Signal::SIGUSR1,
    )
    .context("could not signal the supervisor")
}

/// Why the tunnel waits for the user, if it does: its phase says so and no login a human
/// answered is there for it to take (it would, by itself, within a moment).
pub(crate) fn waiting_for_user<'a>(run: &StateDir, session: &'a Session) -> Option<&'a str> {
    (session.phase == Phase::NeedsLogin && !login_alive(run))
        .then(|| session.last_error.as_deref().unwrap_or("the tunnel waits for a login"))
}

/// Tells a supervisor that waits for the user (a new login, a mended key) to try again, and
/// waits (up to 2 s) until it has taken the word: its phase moves on from `NeedsLogin`, so
/// that a caller then waiting for the tunnel does not read the old phase as the new verdict.
pub(crate) fn retry_login(run: &StateDir) -> Result<()> {
    login_arrived(run)?;
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline && run.read_session()?.is_some_and(|s| s.phase == Phase::NeedsLogin) {
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Stops the supervisor holding `run`'s lease: TERM (it stops its ssh and exits), then KILL
/// after a grace period. Only the lease holder is ever signalled.
pub(crate) fn stop(run: &StateDir) -> Result<()> {
    let Some(pid) = find(run) else { return Ok(()) };
    let target = Pid::from_raw(i32::try_from(pid).context("pid out of range")?);
    let _ = kill(target, Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while find(run) == Some(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if find(run) == Some(pid) {
        let _ = kill(target, Signal::SIGKILL);
        while find(run) == Some(pid) && Instant::now() < deadline + Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<OsString> {
        line.split(' ').map(Into::into).collect()
    }

    #[test]
    fn the_supervisor_starts_without_clap_only_in_its_own_shape() {
        let args = Args::parse(&words("supervise gpu --ssh-config /c --connect-timeout 7 --foreground")).unwrap();
        assert_eq!(
            (args.alias.as_str(), args.connect_timeout, args.foreground),
            ("gpu", 7, true)
        );
        assert_eq!(args.ssh_config, PathBuf::from("/c"));
        assert_eq!(Args::parse(&args.to_argv()), Some(args));
        for other in [
            "up gpu --ssh-config /c --connect-timeout 7",
            "supervise -oX --ssh-config /c --connect-timeout 7",
            "supervise gpu --ssh-config /c --connect-timeout x",
            "supervise gpu --ssh-config /c --connect-timeout 0",
            "supervise gpu --ssh-config /c --connect-timeout 7 --extra",
            "supervise gpu",
        ] {
            assert!(Args::parse(&words(other)).is_none(), "{other}");
        }
    }
}
