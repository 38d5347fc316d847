//! The one spawn wrapper: a program plus a list of arguments (never a local shell string),
//! displayed as a quoted command line, with failures that carry the command, its exit status
//! and its stderr.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;

use anyhow::{Context, Result, bail};
use nix::fcntl::OFlag;
use nix::spawn::{PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags, posix_spawn};
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::stat::Mode;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::platform::sd_notify::NOTIFY_SOCKET;

/// A command to run, built as data.
#[derive(Debug, Clone)]
pub(crate) struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    stdin: Option<Vec<u8>>,
    envs: Vec<(OsString, OsString)>,
}

impl Cmd {
    pub(crate) fn new(program: impl AsRef<OsStr>) -> Self {
        Self {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            stdin: None,
            envs: Vec::new(),
        }
    }

    pub(crate) fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub(crate) fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// An environment variable for the child only.
    pub(crate) fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs.push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Bytes fed to the child's stdin (how secrets travel: never argv).
    pub(crate) fn stdin_bytes(mut self, bytes: Vec<u8>) -> Self {
        self.stdin = Some(bytes);
        self
    }

    #[cfg(test)]
    pub(crate) fn argv(&self) -> Vec<&OsStr> {
        std::iter::once(self.program.as_os_str())
            .chain(self.args.iter().map(OsString::as_os_str))
            .collect()
    }

    /// A `std::process::Command` for this program, after checking that it exists.
    pub(crate) fn command(&self) -> Result<Command> {
        let name = self.program.to_string_lossy();
        if which::which(&self.program).is_err() {
            bail!(
                "{name} not found on PATH: install {}",
                crate::platform::install_hint(&name)
            );
        }
        let mut cmd = Command::new(&self.program);
        // The service manager's socket is for jssh's own processes alone.
        cmd.args(&self.args)
            .env_remove(NOTIFY_SOCKET)
            .envs(self.envs.iter().map(|(k, v)| (k, v)));
        Ok(cmd)
    }

    /// Starts it with the given stdio, for a caller that talks to it while it runs.
    pub(crate) fn spawn(&self, stdin: Stdio, stdout: Stdio, stderr: Stdio) -> Result<Child> {
        self.command()?
            .stdin(stdin)
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("could not run `{self}`"))
    }

    /// Runs with stdout and stderr captured; a non-zero exit is not an error here.
    pub(crate) fn output(&self) -> Result<Output> {
        let stdin = if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        };
        let mut child = self.spawn(stdin, Stdio::piped(), Stdio::piped())?;
        if let (Some(bytes), Some(mut pipe)) = (&self.stdin, child.stdin.take()) {
            pipe.write_all(bytes)
                .with_context(|| format!("could not write to `{self}`"))?;
        }
        child
            .wait_with_output()
            .with_context(|| format!("could not wait for `{self}`"))
    }

    /// Runs captured and fails unless it exits 0; the error names the command, status and stderr.
    pub(crate) fn run(&self) -> Result<Output> {
        let out = self.output()?;
        if !out.status.success() {
            return Err(self.failure(&out));
        }
        Ok(out)
    }

    /// Runs attached to the terminal (prompts, passwords typed by the user).
    pub(crate) fn run_interactive(&self) -> Result<ExitStatus> {
        self.command()?
            .status()
            .with_context(|| format!("could not run `{self}`"))
    }

    /// Like [`Cmd::output`] (stdin closed), but the child is killed after `limit`: for probes
    /// that must not hang on an unreachable host.
    pub(crate) fn output_within(&self, limit: Duration) -> Result<Output> {
        let mut child = self.spawn(Stdio::null(), Stdio::piped(), Stdio::piped())?;
        let stdout = child.stdout.take().map(drain);
        let stderr = child.stderr.take().map(drain);
        let status = wait_or_kill(&mut child, limit)?
            .with_context(|| format!("`{self}` did not finish within {} s", limit.as_secs()))?;
        let collect = |h: Option<std::thread::JoinHandle<Vec<u8>>>| h.and_then(|h| h.join().ok()).unwrap_or_default();
        Ok(Output {
            status,
            stdout: collect(stdout),
            stderr: collect(stderr),
        })
    }

    /// The error for a finished command that failed.
    pub(crate) fn failure(&self, out: &Output) -> anyhow::Error {
        // `ssh -v` chatter would bury the one line that says what went wrong.
        let stderr = crate::sanitize::ssh_stderr(&out.stderr).join("\n");
        if stderr.is_empty() {
            anyhow::anyhow!("`{self}` failed ({})", out.status)
        } else {
            anyhow::anyhow!("`{self}` failed ({}): {stderr}", out.status)
        }
    }
}

/// Reads a pipe to its end on a thread (so a full stderr cannot block the child's stdout).
fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

/// The child's exit status, or `None` after killing (and reaping) it at `limit`.
pub(crate) fn wait_or_kill(child: &mut Child, limit: Duration) -> Result<Option<ExitStatus>> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().context("could not wait for a child")? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// How a [`CleanChild`] ended; displayed as "exited 255" or "killed by SIGKILL".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    Exited(i32),
    Killed(Signal),
}

impl fmt::Display for Ended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exited(code) => write!(f, "exited {code}"),
            Self::Killed(signal) => write!(f, "killed by {signal}"),
        }
    }
}

/// A child started by [`Cmd::spawn_clean`]; the owner waits for it.
#[derive(Debug)]
pub(crate) struct CleanChild {
    pid: Pid,
}

impl CleanChild {
    pub(crate) fn id(&self) -> u32 {
        self.pid.as_raw().unsigned_abs()
    }

    /// `Some(how it ended)` once it has exited (reaped), `None` while it runs.
    pub(crate) fn try_wait(&self) -> Result<Option<Ended>> {
        let status = waitpid(self.pid, Some(WaitPidFlag::WNOHANG)).context("could not wait for a child")?;
        Ok(match status {
            WaitStatus::Exited(_, code) => Some(Ended::Exited(code)),
            WaitStatus::Signaled(_, signal, _) => Some(Ended::Killed(signal)),
            _ => None,
        })
    }

    pub(crate) fn signal(&self, signal: Signal) {
        // It may have exited already; the caller reaps it either way.
        let _ = kill(self.pid, signal);
    }
}

fn cstring(bytes: &[u8]) -> Result<CString> {
    CString::new(bytes).context("an argument contains a NUL byte")
}

impl Cmd {
    /// Spawns with an empty signal mask and default signal dispositions, stdin on `stdin` (or
    /// /dev/null), stdout on /dev/null and stderr on `stderr`, whatever mask and handlers the
    /// caller has (the supervisor blocks its signals in all but one thread, see
    /// [`crate::platform::Signals`]): an ssh that blocks SIGTERM cannot be stopped gracefully.
    pub(crate) fn spawn_clean(&self, stdin: Option<BorrowedFd<'_>>, stderr: BorrowedFd<'_>) -> Result<CleanChild> {
        let name = self.program.to_string_lossy();
        let path = which::which(&self.program).map_err(|_| {
            anyhow::anyhow!(
                "{name} not found on PATH: install {}",
                crate::platform::install_hint(&name)
            )
        })?;
        let argv = std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| cstring(a.as_bytes()))
            .collect::<Result<Vec<_>>>()?;
        let mut env: Vec<CString> = Vec::new();
        // As in `command`: the service manager's socket is not for ssh.
        let inherited =
            std::env::vars_os().filter(|(k, _)| k != NOTIFY_SOCKET && !self.envs.iter().any(|(ek, _)| ek == k));
        for (k, v) in inherited {
            env.push(cstring(&[k.as_bytes(), b"=", v.as_bytes()].concat())?);
        }
        for (k, v) in &self.envs {
            env.push(cstring(&[k.as_bytes(), b"=", v.as_bytes()].concat())?);
        }
        let mut attr = PosixSpawnAttr::init().context("posix_spawnattr_init failed")?;
        let mut defaults = SigSet::empty();
        for signal in [
            Signal::SIGPIPE,
            Signal::SIGINT,
            Signal::SIGTERM,
            Signal::SIGHUP,
            Signal::SIGCHLD,
        ] {
            defaults.add(signal);
        }
        attr.set_sigmask(&SigSet::empty())
            .context("could not clear the signal mask")?;
        attr.set_sigdefault(&defaults)
            .context("could not reset signal dispositions")?;
        attr.set_flags(PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK | PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF)
            .context("could not set spawn flags")?;
        let mut actions = PosixSpawnFileActions::init().context("posix_spawn_file_actions_init failed")?;
        match stdin {
            Some(fd) => actions.add_dup2(fd.as_raw_fd(), 0),
            None => actions.add_open(0, "/dev/null", OFlag::O_RDONLY, Mode::empty()),
        }
        .context("could not redirect stdin")?;
        actions
            .add_open(1, "/dev/null", OFlag::O_WRONLY, Mode::empty())
            .context("could not redirect stdout")?;
        actions
            .add_dup2(stderr.as_raw_fd(), 2)
            .context("could not redirect stderr")?;
        let pid = posix_spawn(path.as_path(), &actions, &attr, &argv, &env)
            .with_context(|| format!("could not start `{self}`"))?;
        Ok(CleanChild { pid })
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let words = std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| a.to_string_lossy());
        let words: Vec<_> = words.collect();
        f.write_str(&shell_words::join(words.iter().map(AsRef::<str>::as_ref)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_arguments() {
        let cmd = Cmd::new("ssh").args(["-F", "/a b/config", "--", "host", "echo $(x); 'y'"]);
        assert_eq!(cmd.to_string(), r"ssh -F '/a b/config' -- host 'echo $(x); '\''y'\'''");
    }

    #[test]
    fn missing_program_names_its_package() {
        let err = Cmd::new("ssh-copy-id-that-does-not-exist").output().unwrap_err();
        assert!(err.to_string().contains("not found on PATH"), "{err}");
        let hint = crate::platform::install_hint("ssh-copy-id");
        assert!(hint.to_lowercase().contains("openssh"), "{hint}");
    }

    #[test]
    fn failure_carries_status_and_stderr() {
        let out = Cmd::new("sh").args(["-c", "echo boom >&2; exit 3"]).output().unwrap();
        let err = Cmd::new("sh").failure(&out).to_string();
        assert!(err.contains("exit status: 3") && err.contains("boom"), "{err}");
    }
}
